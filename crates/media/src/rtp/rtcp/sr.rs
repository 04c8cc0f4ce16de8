//! Sender reports (RFC 3550 §6.4.1): sender info followed by report blocks.

use super::rr::split_blocks;
use super::{be32, ReportBlocks, RtcpError, PT_SR};

/// Bytes of sender info on the wire (NTP 8, RTP timestamp 4, packets 4, octets 4).
pub const SENDER_INFO_LEN: usize = 20;

/// What a sender says about its own stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// Wallclock when the report was sent, 64-bit NTP format (see [`super::ntp`]).
    pub ntp_time: u64,
    /// The same instant in the stream's RTP timestamp units.
    pub rtp_time: u32,
    /// Packets sent since the start (wraps).
    pub packet_count: u32,
    /// Payload octets sent since the start (wraps).
    pub octet_count: u32,
}

impl SenderInfo {
    /// Parses from exactly [`SENDER_INFO_LEN`] bytes.
    pub(crate) fn parse(b: &[u8; SENDER_INFO_LEN]) -> Self {
        SenderInfo {
            ntp_time: (u64::from(be32(b, 0)) << 32) | u64::from(be32(b, 4)),
            rtp_time: be32(b, 8),
            packet_count: be32(b, 12),
            octet_count: be32(b, 16),
        }
    }

    /// Writes into exactly [`SENDER_INFO_LEN`] bytes.
    pub(crate) fn write(&self, out: &mut [u8; SENDER_INFO_LEN]) {
        out[0..8].copy_from_slice(&self.ntp_time.to_be_bytes());
        out[8..12].copy_from_slice(&self.rtp_time.to_be_bytes());
        out[12..16].copy_from_slice(&self.packet_count.to_be_bytes());
        out[16..20].copy_from_slice(&self.octet_count.to_be_bytes());
    }
}

/// A sender report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderReport<'a> {
    pub ssrc: u32,
    pub info: SenderInfo,
    pub blocks: ReportBlocks<'a>,
    /// Profile-specific extension after the blocks (usually empty).
    pub extension: &'a [u8],
}

impl<'a> SenderReport<'a> {
    /// Parses an SR body (after the common header, padding removed).
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let (blocks, extension) = split_blocks(PT_SR, count, body, 4 + SENDER_INFO_LEN)?;
        // split_blocks checked body.len() >= 4 + SENDER_INFO_LEN.
        let info_bytes = body[4..4 + SENDER_INFO_LEN]
            .first_chunk::<SENDER_INFO_LEN>()
            .expect("split_blocks guarantees the sender info is present");
        Ok(SenderReport {
            ssrc: be32(body, 0),
            info: SenderInfo::parse(info_bytes),
            blocks,
            extension,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_info_round_trips() {
        let info = SenderInfo {
            ntp_time: 0xe000_0001_8000_0000,
            rtp_time: 123_456,
            packet_count: 50,
            octet_count: 8000,
        };
        let mut raw = [0u8; SENDER_INFO_LEN];
        info.write(&mut raw);
        assert_eq!(SenderInfo::parse(&raw), info);
    }

    #[test]
    fn a_sender_report_too_short_for_its_sender_info_is_rejected() {
        for len in 0..24 {
            let body = vec![0u8; len];
            assert!(SenderReport::parse(0, &body).is_err(), "len {len}");
        }
        let body = vec![0u8; 24];
        let sr = SenderReport::parse(0, &body).unwrap();
        assert_eq!(sr.blocks.len(), 0);
        assert!(sr.extension.is_empty());
    }
}
