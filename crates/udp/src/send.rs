//! [`SendBatch`]: datagrams for many destinations, sent with as few `sendmmsg`
//! calls as the kernel allows; see the parent module for the error policy.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use super::sockaddr::{empty_iovec, empty_mmsghdr, empty_storage, encode_addr, point_message};
use super::{DEFAULT_BATCH, DEFAULT_SLOT_BYTES, MAX_BATCH};

/// Why [`SendBatch::push`] did not queue a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Every slot is taken: flush, then push again.
    #[error("send batch is full")]
    Full,
    /// The datagram can never fit a slot; flushing does not help.
    #[error("datagram of {len} bytes exceeds the {max}-byte slot")]
    TooLarge { len: usize, max: usize },
}

/// What one [`SendBatch::flush`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Datagrams refused twice in a row and skipped (dropped).
    pub failed: usize,
    /// Datagrams still queued because the socket buffer is full.
    pub pending: usize,
    /// The kernel said `EAGAIN`: clear write readiness, flush again when writable.
    pub would_block: bool,
    /// errno of the last skipped datagram, for logs.
    pub last_errno: Option<i32>,
}

impl FlushStats {
    /// The error that made the last datagram be skipped, if any.
    pub fn last_error(&self) -> Option<io::Error> {
        self.last_errno.map(io::Error::from_raw_os_error)
    }
}

/// Queues datagrams for many destinations and sends them with `sendmmsg`.
///
/// Datagrams leave in push order. On `EAGAIN` the unsent ones stay queued, in
/// order, at the front of the batch (see [`flush`](Self::flush)); call
/// [`clear`](Self::clear) to drop them instead.
pub struct SendBatch {
    slot: usize,
    bufs: Box<[u8]>,
    lens: Box<[usize]>,
    names: Box<[libc::sockaddr_storage]>,
    namelens: Box<[libc::socklen_t]>,
    iovecs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    len: usize,
}

// SAFETY: as for `RecvBatch`: the raw pointers point only into the batch's own
// boxed arrays, are rewritten before each syscall and never dereferenced in Rust.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// `slots` datagrams (clamped to 1..=[`MAX_BATCH`]) of up to `slot_bytes` each.
    pub fn new(slots: usize, slot_bytes: usize) -> Self {
        let n = slots.clamp(1, MAX_BATCH);
        let slot = slot_bytes.max(1);
        SendBatch {
            slot,
            bufs: vec![0u8; n * slot].into_boxed_slice(),
            lens: vec![0; n].into_boxed_slice(),
            names: (0..n).map(|_| empty_storage()).collect(),
            namelens: vec![0; n].into_boxed_slice(),
            iovecs: (0..n).map(|_| empty_iovec()).collect(),
            hdrs: (0..n).map(|_| empty_mmsghdr()).collect(),
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Largest datagram a slot holds.
    pub fn slot_bytes(&self) -> usize {
        self.slot
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.capacity()
    }

    /// Drops every queued datagram.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Copies `data` into the next slot, addressed to `dst`.
    pub fn push(&mut self, dst: SocketAddr, data: &[u8]) -> Result<(), PushError> {
        self.push_with(dst, data.len(), |slot| slot.copy_from_slice(data))
    }

    /// Queues a datagram of exactly `len` bytes written in place by `fill`, which
    /// gets the `len`-byte slot (e.g. an RTP header and an already-encoded payload
    /// copied in without an intermediate buffer). `fill` is not called on error.
    pub fn push_with(
        &mut self,
        dst: SocketAddr,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), PushError> {
        if len > self.slot {
            return Err(PushError::TooLarge {
                len,
                max: self.slot,
            });
        }
        if self.is_full() {
            return Err(PushError::Full);
        }
        let i = self.len;
        let start = i * self.slot;
        fill(&mut self.bufs[start..start + len]);
        self.lens[i] = len;
        self.namelens[i] = encode_addr(dst, &mut self.names[i]);
        self.len += 1;
        Ok(())
    }

    /// Sends the queued datagrams with as few `sendmmsg(MSG_DONTWAIT)` calls as the
    /// kernel allows. Never blocks. A datagram refused twice in a row is skipped and
    /// counted (see the module docs). On `EAGAIN` the rest stay queued
    /// (`pending`, `would_block`): for media, a datagram delayed by one writable
    /// event is still useful, while dropping would hide a saturated socket; the
    /// caller that prefers to drop calls [`clear`](Self::clear). Returns `Err` only
    /// when the socket itself is unusable; the unsent datagrams then stay queued.
    pub fn flush(&mut self, sock: &impl AsRawFd) -> io::Result<FlushStats> {
        let mut stats = FlushStats::default();
        let n = self.prepare();
        let fd = sock.as_raw_fd();
        let mut pos = 0;
        // Index of a datagram that failed once and is being retried.
        let mut retrying: Option<usize> = None;
        let mut fatal = None;
        while pos < n {
            // SAFETY: `prepare` pointed headers `0..n` at this batch's own names,
            // iovecs and slots with their true lengths; `pos < n`, so the pointer
            // and count stay inside `hdrs`. Everything is borrowed through `&mut
            // self` for the duration of the call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(pos),
                    (n - pos) as _,
                    libc::MSG_DONTWAIT as _,
                )
            };
            if rc > 0 {
                let k = (rc as usize).min(n - pos);
                stats.sent += k;
                pos += k;
                // A short count means the kernel already tried the datagram now at
                // `pos` and refused it (or the buffer filled): the next error for
                // it is its second.
                retrying = (pos < n).then_some(pos);
                continue;
            }
            let err = if rc == 0 {
                // Not documented for a nonzero vlen; treat as "try later".
                io::Error::from(io::ErrorKind::WouldBlock)
            } else {
                io::Error::last_os_error()
            };
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    stats.would_block = true;
                    break;
                }
                _ if is_fatal_socket_error(&err) => {
                    fatal = Some(err);
                    break;
                }
                _ if retrying == Some(pos) => {
                    stats.failed += 1;
                    stats.last_errno = err.raw_os_error();
                    pos += 1;
                    retrying = None;
                }
                _ => retrying = Some(pos),
            }
        }
        self.drop_front(pos);
        stats.pending = self.len;
        match fatal {
            Some(err) => Err(err),
            None => Ok(stats),
        }
    }

    /// Removes the first `k` datagrams, moving the rest (rare: only after
    /// `EAGAIN` or a fatal error) to the front so push order is kept.
    fn drop_front(&mut self, k: usize) {
        let k = k.min(self.len);
        if k == self.len {
            self.len = 0;
            return;
        }
        for (to, from) in (k..self.len).enumerate() {
            let src = from * self.slot;
            self.bufs
                .copy_within(src..src + self.lens[from], to * self.slot);
            self.lens[to] = self.lens[from];
            self.names[to] = self.names[from];
            self.namelens[to] = self.namelens[from];
        }
        self.len -= k;
    }

    /// Points headers `0..len` at their names, iovecs and slots; returns `len`.
    fn prepare(&mut self) -> usize {
        let n = self.len;
        let slots = self.bufs.chunks_exact_mut(self.slot);
        let parts = self.hdrs.iter_mut().zip(self.iovecs.iter_mut());
        let meta = self.names.iter_mut().zip(self.namelens.iter());
        for (((hdr, iov), (name, &namelen)), (buf, &len)) in
            parts.zip(meta).zip(slots.zip(self.lens.iter())).take(n)
        {
            point_message(hdr, iov, name, namelen, buf, len);
        }
        n
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new(DEFAULT_BATCH, DEFAULT_SLOT_BYTES)
    }
}
/// Errors that mean the descriptor is not a usable socket at all.
fn is_fatal_socket_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EFAULT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind_udp;
    use crate::test_sockets::{bind_local, recv_per_source, LOCAL};
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
    use std::time::Duration;

    #[test]
    fn two_hundred_messages_to_three_destinations_leave_in_one_flush_in_order() {
        let tx = bind_local();
        let rxs: Vec<UdpSocket> = (0..3).map(|_| bind_local()).collect();
        let mut batch = SendBatch::new(256, 2048);
        for i in 0..200usize {
            let dst = rxs[i % 3].local_addr().unwrap();
            batch.push(dst, &(i as u32).to_be_bytes()).unwrap();
        }
        assert_eq!(batch.len(), 200);
        let stats = batch.flush(&tx).unwrap();
        assert_eq!((stats.sent, stats.failed, stats.pending), (200, 0, 0));
        assert!(batch.is_empty());
        for (r, rx) in rxs.iter().enumerate() {
            let want: Vec<u32> = (0..200u32).filter(|i| *i as usize % 3 == r).collect();
            let got = recv_per_source(rx, want.len());
            let seq: Vec<u32> = got
                .iter()
                .map(|(src, d)| {
                    assert_eq!(*src, tx.local_addr().unwrap());
                    u32::from_be_bytes(d[..4].try_into().unwrap())
                })
                .collect();
            assert_eq!(seq, want, "destination {r}");
        }
    }

    #[test]
    fn push_reports_full_and_too_large() {
        let mut batch = SendBatch::new(2, 16);
        assert_eq!(
            batch.push(LOCAL, &[0; 17]),
            Err(PushError::TooLarge { len: 17, max: 16 })
        );
        batch.push(LOCAL, &[1; 16]).unwrap();
        batch.push(LOCAL, &[]).unwrap();
        assert!(batch.is_full());
        assert_eq!(batch.push(LOCAL, &[2]), Err(PushError::Full));
        batch.clear();
        assert!(batch.is_empty());
    }

    #[test]
    fn datagrams_left_after_a_partial_flush_keep_their_order_and_contents() {
        let tx = bind_local();
        let rx = bind_local();
        let to = rx.local_addr().unwrap();
        let mut batch = SendBatch::new(8, 64);
        for tag in 0..6u8 {
            batch.push(to, &vec![tag; 1 + tag as usize]).unwrap();
        }
        // What flush does after EAGAIN at index 2 (hard to provoke on loopback).
        batch.drop_front(2);
        assert_eq!(batch.len(), 4);
        batch.push(to, &[9]).unwrap();
        let stats = batch.flush(&tx).unwrap();
        assert_eq!((stats.sent, stats.pending), (5, 0));
        let got: Vec<Vec<u8>> = recv_per_source(&rx, 5)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        let want: Vec<Vec<u8>> = [2u8, 3, 4, 5]
            .iter()
            .map(|&t| vec![t; 1 + t as usize])
            .chain([vec![9]])
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn refused_destinations_do_not_stop_later_messages_in_the_batch() {
        let tx = bind_local();
        let rx = bind_local();
        let good = rx.local_addr().unwrap();
        // A port nobody listens on (bound then closed), a port the kernel refuses
        // outright (0: EINVAL), and a destination of the wrong family
        // (EAFNOSUPPORT). Only loopback is ever addressed.
        let closed = bind_local().local_addr().unwrap();
        let port0 = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0);
        let v6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 9);
        // Make the closed port answer with ICMP port unreachable and leave the
        // resulting ECONNREFUSED pending on `tx`: connected UDP sockets record it.
        tx.connect(closed).unwrap();
        tx.send(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));

        let rows: [(SocketAddr, u8); 8] = [
            (good, 0),
            (port0, 1),
            (good, 2),
            (closed, 3),
            (good, 4),
            (v6, 5),
            (port0, 6),
            (good, 7),
        ];
        let mut batch = SendBatch::default();
        for (dst, tag) in rows {
            batch.push(dst, &[tag]).unwrap();
        }
        let stats = batch.flush(&tx).unwrap();
        assert_eq!(stats.pending, 0);
        assert_eq!(
            stats.failed, 3,
            "port 0 twice and the IPv6 destination: {stats:?}"
        );
        assert_eq!(stats.sent, 5);
        let tags: Vec<u8> = recv_per_source(&rx, 4).iter().map(|(_, d)| d[0]).collect();
        assert_eq!(tags, vec![0, 2, 4, 7]);
    }

    #[test]
    fn ipv6_loopback_works_when_available() {
        let any6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0);
        let (Ok(rx), Ok(tx)) = (bind_udp(any6, 0, 0), bind_udp(any6, 0, 0)) else {
            eprintln!("skipping: no IPv6 loopback here");
            return;
        };
        let mut out = SendBatch::new(4, 64);
        out.push(rx.local_addr().unwrap(), b"hello six").unwrap();
        if out.flush(&tx).map(|s| s.sent).ok() != Some(1) {
            eprintln!("skipping: IPv6 loopback does not route here");
            return;
        }
        let got = recv_per_source(&rx, 1);
        assert_eq!(got, vec![(tx.local_addr().unwrap(), b"hello six".to_vec())]);
    }
}
