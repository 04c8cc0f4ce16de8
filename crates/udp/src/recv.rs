//! [`RecvBatch`]: one `recvmmsg` fills up to N preallocated slots, each with room
//! for the control messages of [`RecvMeta`](crate::RecvMeta), which are parsed
//! once per datagram right after the call (a socket without those options gets no
//! control data and costs one length check).

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::SystemTime;

use super::cmsg::{self, RecvControl, RecvInfo};
use super::sockaddr::{decode_addr, empty_iovec, empty_mmsghdr, empty_storage, point_message};
use super::{DEFAULT_BATCH, DEFAULT_SLOT_BYTES, MAX_BATCH};

/// One received datagram, borrowed from a [`RecvBatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Sender address. `0.0.0.0:0` if the kernel reported an address family other
    /// than IPv4/IPv6, which an AF_INET/AF_INET6 UDP socket never does.
    pub src: SocketAddr,
    /// The bytes received; only the first slot-size bytes when `truncated`.
    pub data: &'a [u8],
    /// The datagram was larger than the slot (`MSG_TRUNC`): drop it, the tail is lost.
    pub truncated: bool,
    /// The local address it was sent to, when the socket was bound with
    /// [`RecvMeta::dst`](crate::RecvMeta::dst) (`IP_PKTINFO`/`IPV6_PKTINFO`).
    pub dst: Option<IpAddr>,
    /// When the kernel took it in (realtime clock), when the socket was bound with
    /// [`RecvMeta::stamp`](crate::RecvMeta::stamp) (`SO_TIMESTAMPNS`).
    pub stamp: Option<SystemTime>,
}

/// Receives up to N datagrams per syscall into preallocated slots.
pub struct RecvBatch {
    slot: usize,
    bufs: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    controls: Box<[RecvControl]>,
    /// What the control messages of each held datagram said.
    infos: Box<[RecvInfo]>,
    /// Datagrams filled by the last `recv`.
    len: usize,
    /// Of those, how many were truncated.
    truncated: usize,
    /// The last drop count carried by those.
    overflow: Option<u32>,
}

// SAFETY: the raw pointers inside `iovecs`/`hdrs` only ever point into this
// struct's own boxed arrays, are rewritten from `&mut self` before each syscall and
// are never dereferenced by Rust code; moving the batch to another thread moves the
// allocations they point to with it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `slots` datagrams (clamped to 1..=[`MAX_BATCH`]) of `slot_bytes` each
    /// (at least 1).
    pub fn new(slots: usize, slot_bytes: usize) -> Self {
        let n = slots.clamp(1, MAX_BATCH);
        let slot = slot_bytes.max(1);
        RecvBatch {
            slot,
            bufs: vec![0u8; n * slot].into_boxed_slice(),
            names: (0..n).map(|_| empty_storage()).collect(),
            iovecs: (0..n).map(|_| empty_iovec()).collect(),
            hdrs: (0..n).map(|_| empty_mmsghdr()).collect(),
            controls: vec![RecvControl::EMPTY; n].into_boxed_slice(),
            infos: vec![RecvInfo::default(); n].into_boxed_slice(),
            len: 0,
            truncated: 0,
            overflow: None,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Bytes per slot; longer datagrams arrive truncated.
    pub fn slot_bytes(&self) -> usize {
        self.slot
    }

    /// Datagrams held from the last [`recv`](Self::recv).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the last [`recv`](Self::recv) emptied the socket: it came back
    /// short of [`capacity`](Self::capacity) (the kernel fills a batch while it
    /// has datagrams), so what another read would find arrived after it.
    pub fn emptied(&self) -> bool {
        self.len < self.capacity()
    }

    /// How many of the held datagrams are truncated.
    pub fn truncated(&self) -> usize {
        self.truncated
    }

    /// The socket's cumulative count of datagrams the kernel dropped because its
    /// receive buffer was full, as carried by the held datagrams (the newest
    /// count). `None` when the socket was not bound with
    /// [`RecvMeta::overflow`](crate::RecvMeta::overflow) or has dropped nothing
    /// yet: the kernel attaches the count only once a drop happened, to every
    /// datagram queued after it, so the drops show with the next datagram that
    /// gets in. The count wraps at `u32::MAX`.
    pub fn overflow_count(&self) -> Option<u32> {
        self.overflow
    }

    /// One `recvmmsg(MSG_DONTWAIT)`: replaces the held datagrams with up to
    /// `capacity()` new ones and returns how many. `Ok(0)` means the socket is
    /// drained (`EAGAIN`). `EINTR` is retried. A pending asynchronous error on the
    /// socket (an ICMP error for something we sent earlier, e.g. `ECONNREFUSED`)
    /// is consumed by the kernel when reported, so it is skipped and the receive
    /// retried, at most a few times.
    pub fn recv(&mut self, sock: &impl AsRawFd) -> io::Result<usize> {
        self.len = 0;
        self.truncated = 0;
        self.overflow = None;
        let n = self.prepare();
        let fd = sock.as_raw_fd();
        let mut async_errors = 0;
        let got = loop {
            // SAFETY: `prepare` just pointed every header at this batch's own
            // name/iovec/control entries and every iovec at its own slot of `bufs`,
            // with lengths no larger than those buffers; `n` is the array length.
            // All of it stays borrowed mutably (through `self`) for the duration of
            // the call. A null timeout is allowed.
            let rc = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    n as _,
                    libc::MSG_DONTWAIT as _,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                break rc as usize;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ if is_async_peer_error(&err) && async_errors < 4 => async_errors += 1,
                _ => return Err(err),
            }
        };
        self.len = got.min(n);
        let held = self.hdrs[..self.len].iter().zip(self.controls.iter());
        for ((hdr, control), info) in held.zip(self.infos.iter_mut()) {
            let mh = &hdr.msg_hdr;
            if mh.msg_flags & libc::MSG_TRUNC != 0 {
                self.truncated += 1;
            }
            #[allow(clippy::unnecessary_cast)] // size_t on glibc, socklen_t on musl
            let controllen = mh.msg_controllen as usize;
            *info = cmsg::parse_recv(control, controllen);
            self.overflow = info.overflow.or(self.overflow);
        }
        Ok(self.len)
    }

    /// The `i`-th datagram of the last `recv`, or `None` past [`len`](Self::len).
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.len {
            return None;
        }
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(self.slot);
        let start = i * self.slot;
        let info = &self.infos[i];
        Some(Datagram {
            src: decode_addr(&self.names[i], hdr.msg_hdr.msg_namelen)
                .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))),
            data: &self.bufs[start..start + len],
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            dst: info.dst,
            stamp: info.stamp,
        })
    }

    /// The datagrams of the last `recv`, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        (0..self.len).filter_map(move |i| self.get(i))
    }

    /// Points every header at its name buffer, iovec, slot and whole control
    /// buffer; returns the count.
    fn prepare(&mut self) -> usize {
        let namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let slots = self.bufs.chunks_exact_mut(self.slot);
        let parts = self.hdrs.iter_mut().zip(self.iovecs.iter_mut());
        let bufs = self
            .names
            .iter_mut()
            .zip(slots)
            .zip(self.controls.iter_mut());
        for ((hdr, iov), ((name, buf), control)) in parts.zip(bufs) {
            let len = buf.len();
            point_message(
                hdr,
                iov,
                name,
                namelen,
                buf,
                len,
                control.bytes_mut(usize::MAX),
            );
        }
        self.hdrs.len()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new(DEFAULT_BATCH, DEFAULT_SLOT_BYTES)
    }
}

/// Errors about a peer or a route, which concern one datagram (or an earlier one,
/// reported late), not the socket.
fn is_async_peer_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::EPROTO
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sockets::{bind_local, recv_all};
    use crate::{bind_udp_with_meta, RecvMeta, SendBatch, UdpOptions};
    use std::net::{Ipv6Addr, UdpSocket};
    use std::time::{Duration, Instant};

    /// Receives until `want` datagrams arrived or 2 s passed; returns each one's
    /// first byte, destination and stamp.
    fn recv_meta(sock: &UdpSocket, want: usize) -> Vec<(u8, Option<IpAddr>, Option<SystemTime>)> {
        let mut batch = RecvBatch::default();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while got.len() < want && Instant::now() < deadline {
            if batch.recv(sock).unwrap() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(batch.overflow_count(), None, "nothing was dropped");
            got.extend(batch.iter().map(|d| (d.data[0], d.dst, d.stamp)));
        }
        got
    }

    fn assert_stamped_between(stamp: Option<SystemTime>, from: SystemTime, to: SystemTime) {
        // A second of slack either way, for a clock stepped meanwhile.
        let stamp = stamp.expect("a kernel stamp");
        let slack = Duration::from_secs(1);
        assert!(stamp + slack >= from && stamp <= to + slack, "{stamp:?}");
    }

    fn payload(tag: u8, i: usize) -> Vec<u8> {
        // Sizes 1..=1400 varying with i; content identifies tag and index.
        let len = 1 + (i * 97) % 1400;
        (0..len)
            .map(|k| tag ^ (i as u8).wrapping_add(k as u8))
            .collect()
    }

    #[test]
    fn a_batch_of_64_from_several_senders_arrives_in_few_calls_with_sources_and_contents() {
        let rx = bind_local();
        let to = rx.local_addr().unwrap();
        let senders: Vec<UdpSocket> = (0..4).map(|_| bind_local()).collect();
        let mut expected = Vec::new();
        for i in 0..64 {
            let s = &senders[i % 4];
            let data = payload(i as u8, i);
            s.send_to(&data, to).unwrap();
            expected.push((s.local_addr().unwrap(), data, false));
        }
        let mut batch = RecvBatch::new(64, 2048);
        let (got, calls) = recv_all(&rx, &mut batch, 64);
        assert_eq!(got.len(), 64);
        assert!(calls <= 4, "took {calls} recv calls");
        // Loopback keeps the order of sends on one host.
        assert_eq!(got, expected);
        assert_eq!(batch.truncated(), 0);
    }

    #[test]
    fn a_full_batch_may_leave_datagrams_behind_and_a_short_one_emptied_the_socket() {
        let rx = bind_local();
        let to = rx.local_addr().unwrap();
        let tx = bind_local();
        for i in 0..12 {
            tx.send_to(&payload(7, i), to).unwrap();
        }
        let mut batch = RecvBatch::new(8, 2048);
        let mut reads = Vec::new();
        // Loopback delivers on send; a read may still see fewer than were sent
        // only if they are not all queued yet, so read until all 12 are in.
        let mut seen = 0;
        while seen < 12 {
            let n = batch.recv(&rx).unwrap();
            if n > 0 {
                reads.push((n, batch.emptied()));
            }
            seen += n;
        }
        assert_eq!(reads[0], (8, false), "{reads:?}");
        assert!(
            reads[1..].iter().all(|&(n, emptied)| emptied == (n < 8)),
            "{reads:?}"
        );
        assert_eq!(batch.recv(&rx).unwrap(), 0);
        assert!(batch.emptied());
    }

    #[test]
    fn recv_on_an_idle_socket_returns_zero_without_blocking() {
        let rx = bind_local();
        let mut batch = RecvBatch::default();
        // Even a blocking socket must not block: MSG_DONTWAIT.
        rx.set_nonblocking(false).unwrap();
        assert_eq!(batch.recv(&rx).unwrap(), 0);
        assert!(batch.is_empty());
        assert!(batch.get(0).is_none());
    }

    #[test]
    fn destinations_and_kernel_stamps_arrive_when_the_socket_asks_for_them() {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let (rx, _) = bind_udp_with_meta(any, &UdpOptions::default(), RecvMeta::ALL).unwrap();
        let port = rx.local_addr().unwrap().port();
        let tx = bind_local();
        let hosts = [
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(127, 1, 2, 3),
            Ipv4Addr::new(127, 9, 0, 254),
        ];
        let before = SystemTime::now();
        for (i, host) in hosts.iter().enumerate() {
            tx.send_to(&[i as u8], (*host, port)).unwrap();
        }
        let got = recv_meta(&rx, hosts.len());
        let after = SystemTime::now();
        assert_eq!(got.len(), hosts.len());
        for (i, (tag, dst, stamp)) in got.into_iter().enumerate() {
            assert_eq!((tag as usize, dst), (i, Some(IpAddr::V4(hosts[i]))));
            assert_stamped_between(stamp, before, after);
        }
    }

    #[test]
    fn a_socket_bound_without_meta_gets_none_of_it() {
        let rx = bind_local();
        let tx = bind_local();
        tx.send_to(&[1], rx.local_addr().unwrap()).unwrap();
        assert_eq!(recv_meta(&rx, 1), vec![(1, None, None)]);
    }

    #[test]
    fn ipv6_sources_destinations_and_stamps_work_when_available() {
        let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
        let opts = UdpOptions::default();
        let (Ok((rx, _)), Ok((tx, _))) = (
            bind_udp_with_meta(any6, &opts, RecvMeta::ALL),
            bind_udp_with_meta(any6, &opts, RecvMeta::NONE),
        ) else {
            eprintln!("skipping: no IPv6 here");
            return;
        };
        let to = SocketAddr::from((Ipv6Addr::LOCALHOST, rx.local_addr().unwrap().port()));
        let mut out = SendBatch::new(4, 64);
        out.push_from(Ipv6Addr::LOCALHOST.into(), to, &[6]).unwrap();
        let before = SystemTime::now();
        if out.flush(&tx).map(|s| s.sent).ok() != Some(1) {
            eprintln!("skipping: IPv6 loopback does not route here");
            return;
        }
        let got = recv_meta(&rx, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_stamped_between(got[0].2, before, SystemTime::now());
    }

    #[test]
    fn a_datagram_larger_than_the_slot_is_flagged_truncated() {
        let rx = bind_local();
        let tx = bind_local();
        let to = rx.local_addr().unwrap();
        tx.send_to(&[7u8; 100], to).unwrap();
        tx.send_to(&[9u8; 300], to).unwrap();
        tx.send_to(&[5u8; 256], to).unwrap();
        let mut batch = RecvBatch::new(8, 256);
        let (got, _) = recv_all(&rx, &mut batch, 3);
        let flags: Vec<(usize, bool)> = got.iter().map(|(_, d, t)| (d.len(), *t)).collect();
        assert_eq!(flags, vec![(100, false), (256, true), (256, false)]);
    }
}
