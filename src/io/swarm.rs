//! A swarm of G.711 participants driven from ONE socket, for load measurements.
//!
//! The node tells legs apart by remote address, so every participant needs its own
//! address. Opening a socket per participant would make the load generator as costly
//! as the node it measures; instead the swarm binds one socket to `0.0.0.0:port` and
//! gives each participant its own loopback address (`127.1.x.y`): outgoing datagrams
//! carry the participant's address as source through `IP_PKTINFO` control messages,
//! sent 64 at a time with `sendmmsg`, and the node's replies to every `127.1.x.y:port`
//! arrive on the same socket, drained with `recvmmsg`. Loopback only.

use crate::codec::{g711, FRAME_SAMPLES};
use crate::probe::Tone;
use crate::rtp::RtpHeader;
use crate::rtpgen::net::{fill_pktinfo, participant_ip, sockaddr_in, PKTINFO_SPACE};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

const BATCH: usize = 64;
const PKT: usize = 12 + FRAME_SAMPLES;
const CMSG_SPACE: usize = PKTINFO_SPACE;

/// See the module docs.
pub struct Swarm {
    socket: UdpSocket,
    port: u16,
    members: Vec<Member>,
    /// One pre-encoded 20 ms PCMU frame of a tone (talkers) and of silence.
    talk: [u8; FRAME_SAMPLES],
    quiet: [u8; FRAME_SAMPLES],
    out: Box<[[u8; PKT]; BATCH]>,
    recv: Box<[[u8; 2048]; BATCH]>,
    pub sent: u64,
    pub received: u64,
    pub send_errors: u64,
}

struct Member {
    ip: Ipv4Addr,
    node: SocketAddrV4,
    talks: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

impl Swarm {
    /// Binds `0.0.0.0:port` with large buffers.
    pub fn bind(port: u16) -> io::Result<Swarm> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        s.set_recv_buffer_size(16 << 20)?;
        s.set_send_buffer_size(16 << 20)?;
        s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
        s.set_nonblocking(true)?;
        let socket: UdpSocket = s.into();
        let port = socket.local_addr()?.port();
        let mut pcm = [0i16; FRAME_SAMPLES];
        // 400 Hz: exactly 8 periods per frame, so one frame repeats seamlessly.
        Tone::at_dbfs(400.0, -20.0).fill(&mut pcm);
        let mut talk = [0u8; FRAME_SAMPLES];
        for (o, &x) in talk.iter_mut().zip(&pcm) {
            *o = g711::ulaw_encode(x);
        }
        Ok(Swarm {
            socket,
            port,
            members: Vec::new(),
            talk,
            quiet: [0xff; FRAME_SAMPLES],
            out: Box::new([[0; PKT]; BATCH]),
            recv: Box::new([[0; 2048]; BATCH]),
            sent: 0,
            received: 0,
            send_errors: 0,
        })
    }

    /// Adds a participant sending to the node at `node`; returns its address.
    pub fn add(&mut self, node: SocketAddrV4, talks: bool) -> SocketAddr {
        let i = self.members.len();
        let ip = participant_ip(i);
        self.members.push(Member {
            ip,
            node,
            talks,
            seq: 0,
            ts: 0,
            ssrc: 0x5157_0000 + i as u32,
        });
        SocketAddr::V4(SocketAddrV4::new(ip, self.port))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Sends one 20 ms packet for every participant.
    pub fn send_period(&mut self) {
        let fd = self.socket.as_raw_fd();
        let n = self.members.len();
        let mut start = 0;
        while start < n {
            let count = BATCH.min(n - start);
            // SAFETY: plain-old-data C structs, fully initialised below before use.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
            let mut names: [libc::sockaddr_in; BATCH] = unsafe { zeroed() };
            let mut cmsgs = [[0u8; CMSG_SPACE]; BATCH];
            for k in 0..count {
                let m = &mut self.members[start + k];
                let h = RtpHeader {
                    marker: false,
                    payload_type: 0,
                    sequence: m.seq,
                    timestamp: m.ts,
                    ssrc: m.ssrc,
                }
                .write(&mut self.out[k])
                .expect("a packet buffer holds a 12-byte header");
                let payload = if m.talks { &self.talk } else { &self.quiet };
                self.out[k][h..h + FRAME_SAMPLES].copy_from_slice(payload);
                m.seq = m.seq.wrapping_add(1);
                m.ts = m.ts.wrapping_add(FRAME_SAMPLES as u32);
                iovs[k] = libc::iovec {
                    iov_base: self.out[k].as_mut_ptr().cast(),
                    iov_len: h + FRAME_SAMPLES,
                };
                names[k] = sockaddr_in(m.node);
                fill_pktinfo(&mut cmsgs[k], m.ip);
                let mh = &mut hdrs[k].msg_hdr;
                mh.msg_name = (&mut names[k] as *mut libc::sockaddr_in).cast();
                mh.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
                mh.msg_iov = &mut iovs[k];
                mh.msg_iovlen = 1;
                mh.msg_control = cmsgs[k].as_mut_ptr().cast();
                mh.msg_controllen = CMSG_SPACE as _;
            }
            let mut done = 0;
            while done < count {
                // SAFETY: hdrs[done..count] point into buffers that outlive the call.
                let r = unsafe {
                    libc::sendmmsg(fd, hdrs[done..].as_mut_ptr(), (count - done) as u32, 0)
                };
                if r <= 0 {
                    // Full buffer or a per-message error: count the rest as failed.
                    self.send_errors += (count - done) as u64;
                    break;
                }
                done += r as usize;
                self.sent += r as u64;
            }
            start += count;
        }
    }

    /// Drains whatever arrived; returns the number of datagrams.
    pub fn drain(&mut self) -> u64 {
        let fd = self.socket.as_raw_fd();
        let mut total = 0;
        loop {
            // SAFETY: as in send_period; the iovecs point into self.recv.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
            for k in 0..BATCH {
                iovs[k] = libc::iovec {
                    iov_base: self.recv[k].as_mut_ptr().cast(),
                    iov_len: 2048,
                };
                hdrs[k].msg_hdr.msg_iov = &mut iovs[k];
                hdrs[k].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: valid header array of BATCH entries.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r <= 0 {
                break;
            }
            total += r as u64;
            if (r as usize) < BATCH {
                break;
            }
        }
        self.received += total;
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_participant_sends_from_its_own_address_and_hears_replies() {
        let mut swarm = Swarm::bind(0).unwrap();
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let node = match echo.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let addrs: Vec<SocketAddr> = (0..3).map(|i| swarm.add(node, i == 0)).collect();
        swarm.send_period();
        assert_eq!(swarm.sent, 3);
        echo.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut froms = Vec::new();
        for _ in 0..3 {
            let (n, from) = echo.recv_from(&mut buf).unwrap();
            assert_eq!(n, PKT);
            echo.send_to(&buf[..n], from).unwrap();
            froms.push(from);
        }
        froms.sort();
        assert_eq!(froms, addrs);
        let t0 = std::time::Instant::now();
        while swarm.received < 3 && t0.elapsed() < std::time::Duration::from_secs(2) {
            swarm.drain();
        }
        assert_eq!(swarm.received, 3);
    }
}
