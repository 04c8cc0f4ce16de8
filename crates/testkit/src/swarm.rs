//! A swarm of G.711 participants driven from ONE socket, for load measurements.
//!
//! The node tells legs apart by remote address, so every participant needs its own
//! address. Opening a socket per participant would make the load generator as costly
//! as the node it measures; instead the swarm binds one socket to `0.0.0.0:port` and
//! gives each participant its own loopback address (`127.1.x.y`): outgoing datagrams
//! carry the participant's address as source through `IP_PKTINFO` control messages,
//! sent 64 at a time with `sendmmsg`, and the node's replies to every `127.1.x.y:port`
//! arrive on the same socket, drained with `recvmmsg` — all of it scnf-udp's
//! [`FleetSocket`], the batches the node itself uses. Loopback only. The swarm only adds the cheapest possible
//! participants (one PCMU frame, replayed) for the node's own load bench.

use scnf_media::codec::{g711, FRAME_SAMPLES};
use scnf_media::probe::Tone;
use scnf_media::rtp::RtpHeader;
use scnf_udp::fleet::{participant_ip, FleetSocket};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// See the module docs.
pub struct Swarm {
    socket: FleetSocket,
    members: Vec<Member>,
    /// One pre-encoded 20 ms PCMU frame of a tone (talkers) and of silence.
    talk: [u8; FRAME_SAMPLES],
    quiet: [u8; FRAME_SAMPLES],
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
        let socket = FleetSocket::bind(port, 16 << 20)?;
        let mut pcm = [0i16; FRAME_SAMPLES];
        // 400 Hz: exactly 8 periods per frame, so one frame repeats seamlessly.
        Tone::at_dbfs(400.0, -20.0).fill(&mut pcm);
        let mut talk = [0u8; FRAME_SAMPLES];
        for (o, &x) in talk.iter_mut().zip(&pcm) {
            *o = g711::ulaw_encode(x);
        }
        Ok(Swarm {
            socket,
            members: Vec::new(),
            talk,
            quiet: [0xff; FRAME_SAMPLES],
            sent: 0,
            received: 0,
            send_errors: 0,
        })
    }

    /// Adds a participant sending to the node at `node`; returns its address.
    pub fn add(&mut self, node: SocketAddrV4, talks: bool) -> SocketAddr {
        let i = self.members.len();
        self.members.push(Member {
            ip: participant_ip(i),
            node,
            talks,
            seq: 0,
            ts: 0,
            ssrc: 0x5157_0000 + i as u32,
        });
        SocketAddr::V4(self.socket.participant_addr(i))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Sends one 20 ms packet for every participant.
    pub fn send_period(&mut self) {
        for m in &mut self.members {
            let header = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: m.seq,
                timestamp: m.ts,
                ssrc: m.ssrc,
            };
            let payload = if m.talks { &self.talk } else { &self.quiet };
            self.socket.push(m.ip, m.node, |buf| {
                let h = header
                    .write(buf)
                    .expect("a datagram slot holds a 12-byte header");
                buf[h..h + FRAME_SAMPLES].copy_from_slice(payload);
                h + FRAME_SAMPLES
            });
            m.seq = m.seq.wrapping_add(1);
            m.ts = m.ts.wrapping_add(FRAME_SAMPLES as u32);
        }
        self.socket.flush();
        self.sent = self.socket.counters.sent;
        self.send_errors = self.socket.counters.send_errors;
    }

    /// Drains whatever arrived; returns the number of datagrams.
    pub fn drain(&mut self) -> u64 {
        let n = self.socket.recv(usize::MAX, |_| {}) as u64;
        self.received = self.socket.counters.received;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    const PKT: usize = 12 + FRAME_SAMPLES;

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
