//! [`SendBatch`]: datagrams for many destinations, each from the socket's own
//! address or from one given per datagram (`IP_PKTINFO`/`IPV6_PKTINFO`), sent with
//! as few `sendmmsg` calls as the kernel allows; see the parent module for the
//! error policy.
//!
//! A datagram's destination and source are encoded into its slot's
//! `sockaddr_storage` and control buffer when it is pushed, so `flush` only points
//! the headers at them.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use super::cmsg::{self, SendControl};
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
/// A datagram pushed with a source address ([`push_from`](Self::push_from),
/// [`push_in_place`](Self::push_in_place)) leaves from that address, which must be
/// local to the socket's host and of the destination's family (any `127.0.0.0/8`
/// address for an IPv4 socket bound to `0.0.0.0`); one the kernel will not use is
/// refused and skipped like any refused datagram.
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
    /// Each slot's source-address message, `controllens` bytes of it (0: none).
    controls: Box<[SendControl]>,
    controllens: Box<[usize]>,
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
            controls: vec![SendControl::EMPTY; n].into_boxed_slice(),
            controllens: vec![0; n].into_boxed_slice(),
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

    /// Copies `data` into the next slot, addressed to `dst` and sent from `src`.
    pub fn push_from(
        &mut self,
        src: IpAddr,
        dst: SocketAddr,
        data: &[u8],
    ) -> Result<(), PushError> {
        if data.len() > self.slot {
            return Err(PushError::TooLarge {
                len: data.len(),
                max: self.slot,
            });
        }
        self.push_in_place(Some(src), dst, |slot| {
            slot[..data.len()].copy_from_slice(data);
            data.len()
        })
        .map(drop)
    }

    /// Queues a datagram to `dst`, from `src` if given (else the socket's own
    /// address), written in place by `fill`: it gets the whole slot and returns how
    /// many bytes it wrote, for a datagram whose length is only known once written.
    /// Returns that length. `fill` is not called when the batch is full; a length
    /// beyond the slot (which `fill` cannot have written) queues nothing and is
    /// `TooLarge`.
    pub fn push_in_place(
        &mut self,
        src: Option<IpAddr>,
        dst: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<usize, PushError> {
        if self.is_full() {
            return Err(PushError::Full);
        }
        let start = self.len * self.slot;
        let len = fill(&mut self.bufs[start..start + self.slot]);
        if len > self.slot {
            return Err(PushError::TooLarge {
                len,
                max: self.slot,
            });
        }
        self.queue(src, dst, len);
        Ok(len)
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
        let start = self.len * self.slot;
        fill(&mut self.bufs[start..start + len]);
        self.queue(None, dst, len);
        Ok(())
    }

    /// Records the next free slot, its first `len` bytes written, as queued.
    fn queue(&mut self, src: Option<IpAddr>, dst: SocketAddr, len: usize) {
        let i = self.len;
        self.lens[i] = len;
        self.namelens[i] = encode_addr(dst, &mut self.names[i]);
        self.controllens[i] = match src {
            Some(src) => cmsg::encode_source(src, &mut self.controls[i]),
            None => 0,
        };
        self.len += 1;
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
            // iovecs, slots and control buffers with their true lengths; `pos < n`, so the pointer
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
            self.controls[to] = self.controls[from];
            self.controllens[to] = self.controllens[from];
        }
        self.len -= k;
    }

    /// Points headers `0..len` at their names, iovecs, slots and source messages;
    /// returns `len`.
    fn prepare(&mut self) -> usize {
        let n = self.len;
        let slots = self.bufs.chunks_exact_mut(self.slot);
        let parts = self.hdrs.iter_mut().zip(self.iovecs.iter_mut());
        let names = self.names.iter_mut().zip(self.namelens.iter());
        let controls = self.controls.iter_mut().zip(self.controllens.iter());
        let meta = names.zip(controls);
        for (((hdr, iov), ((name, &namelen), (control, &clen))), (buf, &len)) in
            parts.zip(meta).zip(slots.zip(self.lens.iter())).take(n)
        {
            let control = control.bytes_mut(clen);
            point_message(hdr, iov, name, namelen, buf, len, control);
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
    fn push_in_place_queues_the_length_fill_returns() {
        let mut batch = SendBatch::new(2, 16);
        let wrote = batch.push_in_place(None, LOCAL, |slot| {
            assert_eq!(slot.len(), 16, "fill gets the whole slot");
            slot[..3].copy_from_slice(b"abc");
            3
        });
        assert_eq!(wrote, Ok(3));
        let too_long = batch.push_in_place(None, LOCAL, |_| 17);
        assert_eq!(too_long, Err(PushError::TooLarge { len: 17, max: 16 }));
        let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            batch.push_from(src, LOCAL, &[0; 17]),
            Err(PushError::TooLarge { len: 17, max: 16 })
        );
        assert_eq!(batch.len(), 1, "nothing too large was queued");
        assert_eq!(batch.push_in_place(Some(src), LOCAL, |_| 0), Ok(0));
        let full = batch.push_in_place(None, LOCAL, |_| panic!("fill on a full batch"));
        assert_eq!(full, Err(PushError::Full));
        assert_eq!(batch.push_from(src, LOCAL, &[1]), Err(PushError::Full));
    }

    #[test]
    fn each_datagram_leaves_from_its_own_source_even_when_left_queued() {
        // A wildcard-bound socket may send as any loopback host.
        let tx = bind_udp(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), 0, 0).unwrap();
        let port = tx.local_addr().unwrap().port();
        let rx = bind_local();
        let to = rx.local_addr().unwrap();
        let hosts = [
            Some(Ipv4Addr::new(127, 1, 0, 1)),
            None,
            Some(Ipv4Addr::new(127, 1, 0, 2)),
            Some(Ipv4Addr::new(127, 200, 3, 4)),
        ];
        let mut batch = SendBatch::new(8, 64);
        batch
            .push_from(Ipv4Addr::new(127, 1, 0, 9).into(), to, &[99])
            .unwrap();
        for (tag, host) in hosts.iter().enumerate() {
            match host {
                Some(ip) => batch.push_from((*ip).into(), to, &[tag as u8]),
                None => batch.push(to, &[tag as u8]),
            }
            .unwrap();
        }
        // As after EAGAIN on the first: the rest move to the front of the batch.
        batch.drop_front(1);
        let stats = batch.flush(&tx).unwrap();
        assert_eq!((stats.sent, stats.failed), (hosts.len(), 0));
        let got = recv_per_source(&rx, hosts.len());
        let want: Vec<(SocketAddr, Vec<u8>)> = hosts
            .iter()
            .enumerate()
            .map(|(tag, host)| {
                // Without a source the kernel picks the route's: 127.0.0.1.
                let ip = host.unwrap_or(Ipv4Addr::LOCALHOST);
                (SocketAddr::from((ip, port)), vec![tag as u8])
            })
            .collect();
        assert_eq!(got, want);
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
