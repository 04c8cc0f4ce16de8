//! Which leg a datagram belongs to: by its source address, and for link legs (see
//! [`super::LinkTags`]) by address and the SSRC they accept.

use std::collections::HashMap;
use std::net::SocketAddr;

/// Which leg (slab index) owns a remote address, for RTP and for RTCP; link legs
/// (see [`super::LinkTags`]) by address and the SSRC they accept.
#[derive(Debug, Default)]
pub(super) struct Addresses {
    pub(super) rtp: HashMap<SocketAddr, usize>,
    pub(super) rtcp: HashMap<SocketAddr, usize>,
    pub(super) links: HashMap<(SocketAddr, u32), usize>,
}

impl Addresses {
    pub(super) fn map(&mut self, idx: usize, rtp: SocketAddr, rtcp: SocketAddr) {
        self.rtp.insert(rtp, idx);
        if rtcp != rtp {
            self.rtcp.insert(rtcp, idx);
        }
    }

    /// The link leg a datagram from `from` belongs to, by the SSRC it carries
    /// (RTP: bytes 8-11; RTCP: the sender's, bytes 4-7).
    pub(super) fn link(&self, from: SocketAddr, data: &[u8], rtcp: bool) -> Option<usize> {
        if self.links.is_empty() {
            return None;
        }
        let at = if rtcp { 4 } else { 8 };
        let ssrc = data.get(at..at + 4)?;
        let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
        self.links.get(&(from, ssrc)).copied()
    }

    /// Forgets the leg's addresses (only where they still point at this leg).
    pub(super) fn unmap(&mut self, idx: usize, rtp: SocketAddr, rtcp: SocketAddr) {
        if self.rtp.get(&rtp) == Some(&idx) {
            self.rtp.remove(&rtp);
        }
        if self.rtcp.get(&rtcp) == Some(&idx) {
            self.rtcp.remove(&rtcp);
        }
    }
}
