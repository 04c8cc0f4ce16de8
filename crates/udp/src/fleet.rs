//! One UDP socket for thousands of virtual participants.
//!
//! A mixer tells its legs apart by remote address, so every participant needs an
//! address of its own; a socket per participant would make the generator as costly as
//! the node it measures. Instead one socket is bound to `0.0.0.0:port` and participant
//! `i` is the loopback host [`participant_ip`]`(i)` on that port:
//! - sending: each datagram carries its participant's address as source in an
//!   `IP_PKTINFO` control message, 64 datagrams per `sendmmsg`;
//! - receiving: the node's packets to any `127.x.y.z:port` arrive on this socket;
//!   `IP_PKTINFO` on receive says which address each was sent to (so which
//!   participant it is for), and `SO_TIMESTAMPNS` when the kernel took it in — a
//!   latency measured from that stamp does not grow when the generator drains late;
//! - `SO_RXQ_OVFL` counts what the kernel dropped because the generator's own
//!   receive buffer was full, so such drops are never blamed on the target.
//!
//! Loopback only: `127.0.0.0/8` routes to `lo` for every address in it, which is what
//! lets one socket be thousands of hosts.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// Largest datagram sent or received (an RTP audio packet is far smaller).
pub const SLOT: usize = 1500;
/// Room for one `in_pktinfo` control message (CMSG_SPACE(12) on 64-bit Linux).
const PKTINFO_SPACE: usize = 32;
/// Room for `in_pktinfo`, a `timespec` stamp and the `SO_RXQ_OVFL` drop count on
/// receive (CMSG_SPACE of 12, 16 and 4 bytes: 32 + 32 + 24).
const RECV_CMSG_SPACE: usize = 96;

/// Hosts per /16 used for participants (x.y.1 .. x.y.254).
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
    out: Box<[[u8; SLOT]; BATCH]>,
    out_len: [usize; BATCH],
    out_src: [Ipv4Addr; BATCH],
    out_dst: [SocketAddrV4; BATCH],
    queued: usize,
    recv: Box<[[u8; SLOT]; BATCH]>,
    recv_cmsg: Box<[[u8; RECV_CMSG_SPACE]; BATCH]>,
    /// Maps kernel (realtime) stamps to `Instant`s: the same moment on both clocks.
    clock_base: (Instant, SystemTime),
    pub counters: NetCounters,
}

impl FleetSocket {
    /// Binds `0.0.0.0:port` (0 = any) with `buffer` bytes of kernel buffers each way.
    pub fn bind(port: u16, buffer: usize) -> io::Result<FleetSocket> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        s.set_recv_buffer_size(buffer)?;
        s.set_send_buffer_size(buffer)?;
        s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
        s.set_nonblocking(true)?;
        let fd = s.as_raw_fd();
        set_int_opt(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        set_int_opt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
        set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)?;
        let socket: UdpSocket = s.into();
        let port = socket.local_addr()?.port();
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        Ok(FleetSocket {
            socket,
            port,
            out: Box::new([[0; SLOT]; BATCH]),
            out_len: [0; BATCH],
            out_src: [Ipv4Addr::UNSPECIFIED; BATCH],
            out_dst: [any; BATCH],
            queued: 0,
            recv: Box::new([[0; SLOT]; BATCH]),
            recv_cmsg: Box::new([[0; RECV_CMSG_SPACE]; BATCH]),
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
        if self.queued == BATCH {
            self.flush();
        }
        let k = self.queued;
        let len = fill(&mut self.out[k]).min(SLOT);
        self.out_len[k] = len;
        self.out_src[k] = src;
        self.out_dst[k] = dst;
        self.queued += 1;
    }

    /// Sends everything queued. Datagrams the kernel refuses are counted, not retried:
    /// a late retry would distort the pacing being measured.
    pub fn flush(&mut self) {
        let count = self.queued;
        self.queued = 0;
        if count == 0 {
            return;
        }
        let fd = self.socket.as_raw_fd();
        // SAFETY: plain-old-data C structs, fully initialised below before use.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut names: [libc::sockaddr_in; BATCH] = unsafe { zeroed() };
        let mut cmsgs = [[0u8; PKTINFO_SPACE]; BATCH];
        for k in 0..count {
            iovs[k] = libc::iovec {
                iov_base: self.out[k].as_mut_ptr().cast(),
                iov_len: self.out_len[k],
            };
            names[k] = sockaddr_in(self.out_dst[k]);
            fill_pktinfo(&mut cmsgs[k], self.out_src[k]);
            let mh = &mut hdrs[k].msg_hdr;
            mh.msg_name = (&mut names[k] as *mut libc::sockaddr_in).cast();
            mh.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
            mh.msg_iov = &mut iovs[k];
            mh.msg_iovlen = 1;
            mh.msg_control = cmsgs[k].as_mut_ptr().cast();
            mh.msg_controllen = PKTINFO_SPACE as _;
        }
        let mut done = 0;
        while done < count {
            // SAFETY: hdrs[done..count] point into buffers that outlive the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[done..].as_mut_ptr(),
                    (count - done) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                // The head datagram was refused: count it and go on with the rest.
                self.counters.send_errors += 1;
                done += 1;
                continue;
            }
            done += r as usize;
            self.counters.sent += r as u64;
        }
    }

    /// Reads what has arrived, up to `max_batches` batches, handing each datagram to
    /// `on`. Returns the number of datagrams.
    pub fn recv(&mut self, max_batches: usize, mut on: impl FnMut(Received<'_>)) -> usize {
        let fd = self.socket.as_raw_fd();
        let mut total = 0;
        for _ in 0..max_batches {
            // SAFETY: plain-old-data C structs; the pointers set below point into
            // self.recv / self.recv_cmsg / the local arrays, all alive across the call.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
            let mut names: [libc::sockaddr_in; BATCH] = unsafe { zeroed() };
            for k in 0..BATCH {
                iovs[k] = libc::iovec {
                    iov_base: self.recv[k].as_mut_ptr().cast(),
                    iov_len: SLOT,
                };
                let mh = &mut hdrs[k].msg_hdr;
                mh.msg_name = (&mut names[k] as *mut libc::sockaddr_in).cast();
                mh.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
                mh.msg_iov = &mut iovs[k];
                mh.msg_iovlen = 1;
                mh.msg_control = self.recv_cmsg[k].as_mut_ptr().cast();
                mh.msg_controllen = RECV_CMSG_SPACE as _;
            }
            // SAFETY: a valid array of BATCH headers.
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
            let read_at = Instant::now();
            let n = r as usize;
            for k in 0..n {
                let mh = &hdrs[k].msg_hdr;
                if mh.msg_flags & libc::MSG_TRUNC != 0 {
                    self.counters.truncated += 1;
                    continue;
                }
                let (to, stamp, overflowed) = parse_recv_cmsgs(mh);
                if let Some(o) = overflowed {
                    // The kernel's count is cumulative over the socket's life.
                    self.counters.overflowed = self.counters.overflowed.max(o as u64);
                }
                let at = stamp
                    .and_then(|t| self.instant_of(t))
                    .filter(|&t| t <= read_at)
                    .unwrap_or(read_at);
                let len = (hdrs[k].msg_len as usize).min(SLOT);
                on(Received {
                    to: to.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    from: from_sockaddr_in(&names[k]),
                    at,
                    read_at,
                    data: &self.recv[k][..len],
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

    /// The `Instant` of a kernel realtime stamp.
    fn instant_of(&self, t: SystemTime) -> Option<Instant> {
        let (i0, s0) = self.clock_base;
        match t.duration_since(s0) {
            Ok(d) => i0.checked_add(d),
            Err(e) => i0.checked_sub(e.duration()),
        }
    }
}

fn set_int_opt(fd: i32, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid fd and a pointer to an int of the stated size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The destination address (`IP_PKTINFO`), kernel stamp (`SCM_TIMESTAMPNS`) and the
/// socket's drop count so far (`SO_RXQ_OVFL`, present once a drop happened) of a
/// received message.
fn parse_recv_cmsgs(mh: &libc::msghdr) -> (Option<Ipv4Addr>, Option<SystemTime>, Option<u32>) {
    let (mut to, mut at, mut overflowed) = (None, None, None);
    // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG macros walk it
    // within those bounds and the data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(mh);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                let info: libc::in_pktinfo =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                to = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
            } else if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                if ts.tv_sec >= 0 && (0..1_000_000_000).contains(&ts.tv_nsec) {
                    at = UNIX_EPOCH.checked_add(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
            } else if level == libc::SOL_SOCKET && kind == libc::SO_RXQ_OVFL {
                overflowed = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
            }
            c = libc::CMSG_NXTHDR(mh, c);
        }
    }
    (to, at, overflowed)
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

fn from_sockaddr_in(s: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)),
        u16::from_be(s.sin_port),
    )
}

/// Writes an IP_PKTINFO control message asking for `src` as the source address.
fn fill_pktinfo(buf: &mut [u8; PKTINFO_SPACE], src: Ipv4Addr) {
    let info = libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(src).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    // SAFETY: buf is PKTINFO_SPACE bytes, enough for a cmsghdr and an in_pktinfo
    // (checked by the assertion), and is only written through the cmsg macros.
    unsafe {
        assert!(libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize <= PKTINFO_SPACE);
        let mut mh: libc::msghdr = zeroed();
        mh.msg_control = buf.as_mut_ptr().cast();
        mh.msg_controllen = PKTINFO_SPACE as _;
        let c = libc::CMSG_FIRSTHDR(&mh);
        (*c).cmsg_level = libc::IPPROTO_IP;
        (*c).cmsg_type = libc::IP_PKTINFO;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
