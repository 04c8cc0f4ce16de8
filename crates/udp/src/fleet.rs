//! One UDP socket for thousands of virtual participants.
//!
//! A mixer tells its legs apart by remote address, so every participant needs an
//! address of its own; a socket per participant would make the generator as costly as
//! the node it measures. Instead one socket is bound to `0.0.0.0:port` and participant
//! `i` is the loopback host [`participant_ip`]`(i)` on that port:
//! - sending: each datagram carries its participant's address as source
//!   ([`SendBatch::push_in_place`], `IP_PKTINFO`), [`BATCH`] datagrams per `sendmmsg`;
//! - receiving: the node's packets to any `127.x.y.z:port` arrive on this socket;
//!   [`Datagram::dst`](crate::Datagram::dst) says which address each was sent to (so
//!   which participant it is for), and [`Datagram::stamp`](crate::Datagram::stamp)
//!   when the kernel took it in — a latency measured from that stamp does not grow
//!   when the generator drains late;
//! - the socket's drop count ([`RecvBatch::overflow_count`]) says what the kernel
//!   dropped because the generator's own receive buffer was full, so such drops are
//!   never blamed on the target.
//!
//! It is a thin layer over the crate's batches and binder ([`bind_udp_with_meta`]
//! with [`RecvMeta::ALL`]): it owns one [`RecvBatch`] and one [`SendBatch`] of
//! [`BATCH`] × [`SLOT`] from `bind` on, so pushing, flushing and receiving never
//! allocate. What it adds is the participant addressing, kernel stamps as
//! `Instant`s, and counters instead of errors: a datagram the kernel refuses, or
//! one still queued when the send buffer is full, is counted in
//! [`NetCounters::send_errors`] and dropped, never kept for later — a late send
//! would distort the pacing being measured.
//!
//! Loopback only: `127.0.0.0/8` routes to `lo` for every address in it, which is what
//! lets one socket be thousands of hosts.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Instant, SystemTime};

use super::{bind_udp_with_meta, RecvBatch, RecvMeta, SendBatch, UdpOptions};

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// Largest datagram sent or received (an RTP audio packet is far smaller).
pub const SLOT: usize = 1500;

/// Hosts per /24 used for participants (x.y.z.1 .. x.y.z.254).
const PER_24: u32 = 254;

/// The address of participant `i`: 127.1.0.1, 127.1.0.2, ... (never .0 or .255).
pub fn participant_ip(i: usize) -> Ipv4Addr {
    let n = i as u32;
    Ipv4Addr::new(
        127,
        1 + (n / (PER_24 * 256)) as u8,
        ((n / PER_24) % 256) as u8,
        (n % PER_24 + 1) as u8,
    )
}

/// The participant index of `ip`, if it is one of [`participant_ip`]'s addresses.
pub fn participant_index(ip: Ipv4Addr) -> Option<usize> {
    let [a, b, c, d] = ip.octets();
    if a != 127 || b == 0 || d == 0 || d == 255 {
        return None;
    }
    Some(((b as u32 - 1) * PER_24 * 256 + c as u32 * PER_24 + (d as u32 - 1)) as usize)
}

/// A received datagram, borrowed from the socket's buffers.
pub struct Received<'a> {
    /// The address it was sent to: which participant it is for.
    pub to: Ipv4Addr,
    pub from: SocketAddrV4,
    /// When the kernel received it (or when the batch was read, if unstamped).
    pub at: Instant,
    /// When the batch holding it was read.
    pub read_at: Instant,
    pub data: &'a [u8],
}

/// Counters of the socket's own troubles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub sent: u64,
    pub received: u64,
    /// Datagrams the kernel refused (full buffer, no route).
    pub send_errors: u64,
    /// Datagrams that arrived truncated (larger than [`SLOT`]).
    pub truncated: u64,
    /// Datagrams the kernel dropped because this socket's receive buffer was full
    /// (the generator fell behind, not the target's loss).
    pub overflowed: u64,
}

/// See the module docs.
pub struct FleetSocket {
    socket: UdpSocket,
    port: u16,
    out: SendBatch,
    inbox: RecvBatch,
    /// Maps kernel (realtime) stamps to `Instant`s: the same moment on both clocks.
    clock_base: (Instant, SystemTime),
    pub counters: NetCounters,
}

impl FleetSocket {
    /// Binds `0.0.0.0:port` (0 = any) with `buffer` bytes of kernel buffers each way
    /// (0 keeps the system's), destination addresses, kernel stamps and the drop
    /// count on.
    pub fn bind(port: u16, buffer: usize) -> io::Result<FleetSocket> {
        let opts = UdpOptions {
            recv_buf: buffer,
            send_buf: buffer,
            reuse_addr: false,
            // The generator's own cost per datagram, as the node's.
            dont_fragment: true,
        };
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let (socket, _) = bind_udp_with_meta(any, &opts, RecvMeta::ALL)?;
        let port = socket.local_addr()?.port();
        Ok(FleetSocket {
            socket,
            port,
            out: SendBatch::new(BATCH, SLOT),
            inbox: RecvBatch::new(BATCH, SLOT),
            clock_base: (Instant::now(), SystemTime::now()),
            counters: NetCounters::default(),
        })
    }

    /// The port every participant uses.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address of participant `i` as the node sees it.
    pub fn participant_addr(&self, i: usize) -> SocketAddrV4 {
        SocketAddrV4::new(participant_ip(i), self.port)
    }

    /// Queues one datagram from `src` to `dst`; `fill` writes it into the buffer and
    /// returns its length. Sends a batch when the queue is full.
    pub fn push(
        &mut self,
        src: Ipv4Addr,
        dst: SocketAddrV4,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) {
        if self.out.is_full() {
            self.flush();
        }
        // Full was just handled; a length beyond the slot is the caller's bug, and
        // like any unsendable datagram it is counted, not sent.
        if self
            .out
            .push_in_place(Some(IpAddr::V4(src)), SocketAddr::V4(dst), fill)
            .is_err()
        {
            self.counters.send_errors += 1;
        }
    }

    /// Sends everything queued. Datagrams the kernel refuses (twice, see
    /// [`SendBatch::flush`]) or has no room for are counted and dropped, not kept:
    /// a late retry would distort the pacing being measured.
    pub fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        match self.out.flush(&self.socket) {
            Ok(stats) => {
                self.counters.sent += stats.sent as u64;
                self.counters.send_errors += (stats.failed + stats.pending) as u64;
            }
            Err(_) => self.counters.send_errors += self.out.len() as u64,
        }
        self.out.clear();
    }

    /// Reads what has arrived, up to `max_batches` batches, handing each datagram to
    /// `on` (truncated ones are only counted). Returns the number of datagrams.
    pub fn recv(&mut self, max_batches: usize, mut on: impl FnMut(Received<'_>)) -> usize {
        let mut total = 0;
        for _ in 0..max_batches {
            // A socket error ends the read like an empty socket: the fleet's socket
            // is never closed under it, and the next call tries again.
            let n = self.inbox.recv(&self.socket).unwrap_or(0);
            if n == 0 {
                break;
            }
            let read_at = Instant::now();
            if let Some(o) = self.inbox.overflow_count() {
                // The kernel's count is cumulative over the socket's life.
                self.counters.overflowed = self.counters.overflowed.max(o as u64);
            }
            for d in self.inbox.iter() {
                if d.truncated {
                    self.counters.truncated += 1;
                    continue;
                }
                let at = d
                    .stamp
                    .and_then(|t| instant_of(self.clock_base, t))
                    .filter(|&t| t <= read_at)
                    .unwrap_or(read_at);
                on(Received {
                    to: match d.dst {
                        Some(IpAddr::V4(ip)) => ip,
                        _ => Ipv4Addr::UNSPECIFIED,
                    },
                    from: match d.src {
                        SocketAddr::V4(a) => a,
                        // An IPv4 socket never reports another family.
                        SocketAddr::V6(_) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    },
                    at,
                    read_at,
                    data: d.data,
                });
            }
            total += n;
            if n < BATCH {
                break;
            }
        }
        self.counters.received += total as u64;
        total
    }
}

/// The `Instant` of a kernel realtime stamp, given one moment on both clocks.
fn instant_of((i0, s0): (Instant, SystemTime), t: SystemTime) -> Option<Instant> {
    match t.duration_since(s0) {
        Ok(d) => i0.checked_add(d),
        Err(e) => i0.checked_sub(e.duration()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn participant_addresses_are_distinct_loopback_hosts_and_map_back() {
        for i in (0..200_000).step_by(7) {
            let ip = participant_ip(i);
            assert!(ip.is_loopback() && ip.octets()[3] != 0 && ip.octets()[3] != 255);
            assert_eq!(participant_index(ip), Some(i));
        }
        assert_eq!(participant_index(Ipv4Addr::new(127, 0, 0, 1)), None);
        assert_eq!(participant_index(Ipv4Addr::new(10, 1, 0, 1)), None);
        assert_eq!(participant_index(Ipv4Addr::new(127, 1, 0, 255)), None);
    }

    #[test]
    fn each_participant_sends_from_its_own_address_and_replies_reach_it() {
        let mut fleet = FleetSocket::bind(0, 1 << 20).unwrap();
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(node) = echo.local_addr().unwrap() else {
            unreachable!()
        };
        for i in 0..3 {
            fleet.push(participant_ip(i), node, |b| {
                b[0] = i as u8;
                b[1] = 0xAB;
                2
            });
        }
        fleet.flush();
        assert_eq!(fleet.counters.sent, 3);
        echo.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            let (n, from) = echo.recv_from(&mut buf).unwrap();
            assert_eq!(n, 2);
            let SocketAddr::V4(from) = from else {
                unreachable!()
            };
            assert_eq!(from, fleet.participant_addr(buf[0] as usize));
            echo.send_to(&buf[..n], from).unwrap();
        }
        let t0 = Instant::now();
        let mut got = Vec::new();
        while got.len() < 3 && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(5));
            fleet.recv(4, |r| {
                got.push((participant_index(r.to), r.data[0], r.from, r.at));
            });
        }
        got.sort_by_key(|g| g.1);
        assert_eq!(got.len(), 3);
        for (k, (idx, first, from, at)) in got.iter().enumerate() {
            assert_eq!(*idx, Some(k));
            assert_eq!(*first as usize, k);
            assert_eq!(*from, node);
            assert!(*at >= t0 - Duration::from_secs(1) && *at <= Instant::now());
        }
    }

    #[test]
    fn datagrams_dropped_on_a_full_receive_buffer_are_counted() {
        let mut fleet = FleetSocket::bind(0, 4096).unwrap();
        let to = SocketAddr::from((participant_ip(0), fleet.port()));
        let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = 1000;
        for _ in 0..sent {
            flood.send_to(&[0u8; 200], to).unwrap();
        }
        let queued = fleet.recv(usize::MAX, |_| {});
        assert!(queued < sent, "a 4 KiB buffer held {queued} datagrams");
        assert_eq!(
            fleet.counters.overflowed, 0,
            "nothing read carried a drop yet"
        );
        // The kernel reports its cumulative count on the next datagram it queues.
        flood.send_to(&[0u8; 200], to).unwrap();
        assert_eq!(fleet.recv(usize::MAX, |_| {}), 1);
        assert_eq!(fleet.counters.overflowed, (sent - queued) as u64);
    }
}
