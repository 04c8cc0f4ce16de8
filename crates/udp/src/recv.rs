//! [`RecvBatch`]: one `recvmmsg` fills up to N preallocated slots.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

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
}

/// Receives up to N datagrams per syscall into preallocated slots.
pub struct RecvBatch {
    slot: usize,
    bufs: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Datagrams filled by the last `recv`.
    len: usize,
    /// Of those, how many were truncated.
    truncated: usize,
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
            len: 0,
            truncated: 0,
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

    /// How many of the held datagrams are truncated.
    pub fn truncated(&self) -> usize {
        self.truncated
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
        let n = self.prepare();
        let fd = sock.as_raw_fd();
        let mut async_errors = 0;
        let got = loop {
            // SAFETY: `prepare` just pointed every header at this batch's own
            // name/iovec entries and every iovec at its own slot of `bufs`, with
            // lengths no larger than those buffers; `n` is the array length. All of
            // it stays borrowed mutably (through `self`) for the duration of the
            // call. A null timeout is allowed.
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
        self.truncated = self.hdrs[..self.len]
            .iter()
            .filter(|h| h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0)
            .count();
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
        Some(Datagram {
            src: decode_addr(&self.names[i], hdr.msg_hdr.msg_namelen)
                .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))),
            data: &self.bufs[start..start + len],
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        })
    }

    /// The datagrams of the last `recv`, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        (0..self.len).filter_map(move |i| self.get(i))
    }

    /// Points every header at its name buffer, iovec and slot; returns the count.
    fn prepare(&mut self) -> usize {
        let namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let slots = self.bufs.chunks_exact_mut(self.slot);
        let parts = self.hdrs.iter_mut().zip(self.iovecs.iter_mut());
        for ((hdr, iov), (name, buf)) in parts.zip(self.names.iter_mut().zip(slots)) {
            let len = buf.len();
            point_message(hdr, iov, name, namelen, buf, len);
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
    use std::net::UdpSocket;

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
