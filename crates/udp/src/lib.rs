//! Batched UDP, the one socket layer of scnf: datagrams moved in batches with
//! `recvmmsg`/`sendmmsg` (Linux), for the node's media workers (one socket shared
//! by all of a worker's legs), rtpgen's reflector, and the [`fleet`] socket that
//! is thousands of loopback participants at once.
//!
//! # Why
//! On the reference machine a bare loopback reflector does about 177k
//! reflections per CPU-second with batches of 64 on one socket, against ~120k with
//! one `recvfrom`/`sendto` per packet. Legs are told apart by remote address, so one
//! socket per worker is enough and every syscall carries many packets. The load
//! generator needs the same batching plus a few facts per datagram (which of its
//! addresses a datagram is from or for, when the kernel took it in, what its own
//! socket dropped); those ride in control messages on the same two syscalls, so
//! there is exactly one place that lays out `mmsghdr`/`iovec`/`sockaddr`/`cmsg`
//! arrays and calls them: [`RecvBatch`] and [`SendBatch`].
//!
//! # Contract
//! - [`bind_udp`] / [`bind_udp_with`] / [`bind_rtp_pair`] make a nonblocking,
//!   close-on-exec socket with the requested kernel buffers and report what the
//!   kernel actually granted ([`BufferSizes`]; Linux doubles the request and caps it
//!   at `net.core.rmem_max`/`wmem_max`). IPv6 sockets are `IPV6_V6ONLY`, so a
//!   worker binds v4 and v6 explicitly and a destination's family must match.
//! - [`bind_udp_with_meta`] also turns on the receive facts of [`RecvMeta`] before
//!   binding, so every datagram the socket ever receives carries them:
//!   [`Datagram::dst`] (`IP_PKTINFO`/`IPV6_RECVPKTINFO`), [`Datagram::stamp`]
//!   (`SO_TIMESTAMPNS`) and [`RecvBatch::overflow_count`] (`SO_RXQ_OVFL`). Without
//!   them these are `None` and cost nothing but a length check.
//! - A datagram may name its own source address ([`SendBatch::push_from`],
//!   [`SendBatch::push_in_place`]; `IP_PKTINFO`/`IPV6_PKTINFO`), so one socket
//!   bound to a wildcard address sends as many local hosts.
//! - [`RecvBatch`] and [`SendBatch`] own all their memory from construction: slot
//!   buffers, `mmsghdr`/`iovec`/`sockaddr_storage` arrays and control-message
//!   buffers. Pushing, `recv` and `flush` never allocate and never block
//!   (`MSG_DONTWAIT`, whatever the socket's mode).
//! - [`multicast`] turns a media socket into a sender of IPv4 multicast groups and
//!   binds the receive sockets that join them, for video between cluster nodes.
//! - Methods take `&impl AsRawFd`, so the same batch works on a `std` socket, a
//!   `socket2::Socket` or a `tokio::io::unix::AsyncFd<UdpSocket>`.
//!
//! # With tokio
//! Wrap the socket in `AsyncFd`. Readable: call [`RecvBatch::recv`] until it returns
//! `Ok(0)` (drained), then `guard.clear_ready()` — tokio's readiness is
//! edge-triggered, so readiness must only be cleared after the kernel said
//! `EAGAIN`. Writable: [`SendBatch::flush`]; when [`FlushStats::would_block`] is set
//! the unsent datagrams stay queued, clear the write readiness and flush again on
//! the next writable event.
//!
//! # Errors while sending
//! `sendmmsg` stops at the first datagram the kernel refuses and returns how many
//! went before it (the refusal itself is lost, or on some kernels left on the
//! socket for the next call); only when the very first datagram fails does it
//! return the error. A refusal can also be stale: an asynchronous ICMP error for an
//! earlier datagram (e.g. `ECONNREFUSED`, reported on connected sockets or with
//! `IP_RECVERR`) is reported once, by whatever call comes next. So
//! [`SendBatch::flush`] gives every datagram two tries: a short count or an error
//! is the head datagram's first strike, a second error skips it, counted in
//! [`FlushStats::failed`], and the rest of the batch goes on. A stale error thus
//! costs one extra syscall, a bad destination (port 0, wrong family, no route) one
//! or two, and neither wedges the batch. Only errors that mean the socket itself is
//! unusable (`EBADF`, `ENOTSOCK`, `EFAULT`) are returned as `Err`.
//!
//! # Unsafe
//! Confined to the two syscalls (`recv.rs`, `send.rs`), zero-initialising plain C
//! structs and reinterpreting `sockaddr_storage` (`sockaddr.rs`), and writing,
//! walking and switching on control messages (`cmsg.rs`), and setting the
//! multicast socket options (`multicast.rs`). The kernel-facing pointers in the
//! `mmsghdr` arrays are re-derived from `&mut self` right before every syscall, so
//! moving a batch or borrowing its buffers in between can never leave a stale
//! pointer. `fleet.rs` has no unsafe code.

mod cmsg;
pub mod fleet;
mod ifaddrs;
pub mod multicast;
mod recv;
mod send;
mod sockaddr;
mod sockopt;

pub use ifaddrs::{interface_addrs, interface_of, local_ips};
pub use recv::{Datagram, RecvBatch};
pub use send::{FlushStats, PushError, SendBatch};

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Default slot size: an RTP audio packet is < 500 bytes and a video packet fits a
/// 1500-byte MTU; 2048 leaves room and keeps slots cache-aligned.
pub const DEFAULT_SLOT_BYTES: usize = 2048;
/// Default number of datagrams per syscall.
pub const DEFAULT_BATCH: usize = 64;
/// The kernel caps `vlen` of `recvmmsg`/`sendmmsg` at `UIO_MAXIOV`.
pub const MAX_BATCH: usize = 1024;

/// Socket options for [`bind_udp_with`]. The default keeps the system's buffer
/// sizes and does not set `SO_REUSEADDR`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpOptions {
    /// Requested `SO_RCVBUF` in bytes; 0 keeps the system default.
    pub recv_buf: usize,
    /// Requested `SO_SNDBUF` in bytes; 0 keeps the system default.
    pub send_buf: usize,
    /// Set `SO_REUSEADDR` before binding. Default false.
    pub reuse_addr: bool,
    /// Send with the don't-fragment bit (`IP_PMTUDISC_PROBE`; IPv6: no local
    /// fragmentation). A datagram that may be fragmented costs the kernel an IP
    /// identifier from a shared generator (a hash and an atomic per datagram); a DF
    /// datagram from an unconnected socket has identifier 0 (RFC 6864). One above
    /// the interface's MTU is refused (`EMSGSIZE`) instead of fragmented. Default
    /// false.
    pub dont_fragment: bool,
}

/// Facts the kernel attaches to every received datagram, for
/// [`bind_udp_with_meta`]. Each costs a control message per datagram; the default
/// asks for none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// The local address each datagram was sent to ([`Datagram::dst`]): which of
    /// the host's addresses it is for, on a socket bound to a wildcard address.
    pub dst: bool,
    /// When the kernel took each datagram in ([`Datagram::stamp`]), so a latency
    /// measured from it does not grow when the reader drains late.
    pub stamp: bool,
    /// The socket's count of datagrams dropped for a full receive buffer
    /// ([`RecvBatch::overflow_count`]): the reader's own losses, not the network's.
    pub overflow: bool,
}

impl RecvMeta {
    /// Nothing attached: what [`bind_udp_with`] binds.
    pub const NONE: RecvMeta = RecvMeta {
        dst: false,
        stamp: false,
        overflow: false,
    };
    /// Destination address, kernel stamp and drop count.
    pub const ALL: RecvMeta = RecvMeta {
        dst: true,
        stamp: true,
        overflow: true,
    };
}

/// Kernel buffer sizes actually in force after binding, in bytes as the kernel
/// reports them (Linux reports twice the usable payload size it accounts for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSizes {
    pub recv: usize,
    pub send: usize,
}

/// Binds a nonblocking UDP socket on `addr` with the requested buffer sizes (0 keeps
/// the default). The granted sizes are logged; use [`bind_udp_with`] to get them.
pub fn bind_udp(addr: SocketAddr, recv_buf: usize, send_buf: usize) -> io::Result<UdpSocket> {
    let opts = UdpOptions {
        recv_buf,
        send_buf,
        ..UdpOptions::default()
    };
    bind_udp_with(addr, &opts).map(|(sock, _)| sock)
}

/// Binds a nonblocking UDP socket on `addr` and returns it with the buffer sizes
/// the kernel granted. A grant below the request is logged as a warning (raise
/// `net.core.rmem_max`/`wmem_max`), never an error.
pub fn bind_udp_with(addr: SocketAddr, opts: &UdpOptions) -> io::Result<(UdpSocket, BufferSizes)> {
    bind_udp_with_meta(addr, opts, RecvMeta::NONE)
}

/// [`bind_udp_with`], with the receive facts `meta` asks for turned on before the
/// socket is bound, so no datagram ever arrives without them.
pub fn bind_udp_with_meta(
    addr: SocketAddr,
    opts: &UdpOptions,
    meta: RecvMeta,
) -> io::Result<(UdpSocket, BufferSizes)> {
    // socket2 sets SOCK_CLOEXEC on Linux.
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    if opts.reuse_addr {
        sock.set_reuse_address(true)?;
    }
    if opts.recv_buf > 0 {
        sock.set_recv_buffer_size(opts.recv_buf)?;
    }
    if opts.send_buf > 0 {
        sock.set_send_buffer_size(opts.send_buf)?;
    }
    sock.set_nonblocking(true)?;
    if opts.dont_fragment {
        sockopt::dont_fragment(sock.as_raw_fd(), addr.is_ipv6())?;
    }
    cmsg::enable(sock.as_raw_fd(), addr.is_ipv6(), meta)?;
    sock.bind(&addr.into())?;
    let granted = BufferSizes {
        recv: sock.recv_buffer_size()?,
        send: sock.send_buffer_size()?,
    };
    let sock = UdpSocket::from(sock);
    let local = sock.local_addr()?;
    if granted.recv < opts.recv_buf || granted.send < opts.send_buf {
        tracing::warn!(%local, ?opts, ?granted, "kernel granted smaller UDP buffers than requested");
    } else {
        tracing::debug!(%local, ?granted, "bound UDP socket");
    }
    Ok((sock, granted))
}

/// Binds an RTP/RTCP socket pair on `ip`: RTP on the lowest even port `p` of
/// `ports` for which both `p` and `p + 1` are free and in the range, RTCP on `p + 1`
/// (the RFC 3550 convention). A port some other socket holds is skipped, so calling
/// this again while the first pair is open yields the next pair. Only `EADDRINUSE`
/// moves on; any other error is returned at once, since it would repeat for every
/// port.
pub fn bind_rtp_pair(
    ip: IpAddr,
    ports: RangeInclusive<u16>,
    rtp: &UdpOptions,
    rtcp: &UdpOptions,
) -> io::Result<(UdpSocket, UdpSocket)> {
    bind_rtp_pair_with_meta(ip, ports, rtp, rtcp, RecvMeta::NONE)
}

/// [`bind_rtp_pair`], both sockets with the receive facts `meta` asks for.
pub fn bind_rtp_pair_with_meta(
    ip: IpAddr,
    ports: RangeInclusive<u16>,
    rtp: &UdpOptions,
    rtcp: &UdpOptions,
    meta: RecvMeta,
) -> io::Result<(UdpSocket, UdpSocket)> {
    if ports.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty port range",
        ));
    }
    let first = ports.start().saturating_add(1) & !1;
    let mut port = first;
    while port < *ports.end() && port >= first {
        let bound = bind_udp_with_meta(SocketAddr::new(ip, port), rtp, meta).and_then(|(a, _)| {
            bind_udp_with_meta(SocketAddr::new(ip, port + 1), rtcp, meta).map(|(b, _)| (a, b))
        });
        match bound {
            Ok(pair) => return Ok(pair),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(e),
        }
        port = port.wrapping_add(2);
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "no free RTP/RTCP port pair in {}..={} on {ip}",
            ports.start(),
            ports.end()
        ),
    ))
}

/// Loopback sockets and receive loops shared by this module's tests.
#[cfg(test)]
pub(crate) mod test_sockets {
    use super::{bind_udp, RecvBatch};
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
    use std::time::{Duration, Instant};

    pub const LOCAL: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

    pub fn bind_local() -> UdpSocket {
        bind_udp(LOCAL, 1 << 20, 1 << 20).expect("binding 127.0.0.1:0 must work in tests")
    }

    /// Receives until `want` datagrams arrived or 2 s passed; returns them with the
    /// number of `recv` calls that returned data.
    pub fn recv_all(
        sock: &UdpSocket,
        batch: &mut RecvBatch,
        want: usize,
    ) -> (Vec<(SocketAddr, Vec<u8>, bool)>, usize) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        let mut calls = 0;
        while got.len() < want && Instant::now() < deadline {
            let n = batch.recv(sock).expect("recv on a healthy socket");
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            calls += 1;
            got.extend(batch.iter().map(|d| (d.src, d.data.to_vec(), d.truncated)));
        }
        (got, calls)
    }

    pub fn recv_per_source(rx: &UdpSocket, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut batch = RecvBatch::default();
        let (got, _) = recv_all(rx, &mut batch, want);
        got.into_iter().map(|(s, d, _)| (s, d)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_sockets::{bind_local, LOCAL};
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    #[test]
    fn granted_buffer_sizes_are_reported_and_reuse_addr_is_optional() {
        let opts = UdpOptions {
            recv_buf: 256 * 1024,
            send_buf: 128 * 1024,
            reuse_addr: true,
            dont_fragment: false,
        };
        let (sock, granted) = bind_udp_with(LOCAL, &opts).unwrap();
        assert!(granted.recv > 0 && granted.send > 0);
        let s2 = Socket::from(sock);
        assert!(s2.reuse_address().unwrap());
        assert!(s2.nonblocking().unwrap());
    }

    #[test]
    fn pairs_take_the_first_free_even_port_and_the_next_one() {
        // Find a free block of 6 ports around an ephemeral one; retry a few times in
        // case another process takes one meanwhile.
        for _ in 0..20 {
            let probe = bind_local();
            let base = probe.local_addr().unwrap().port() & !3;
            drop(probe);
            if !(1024..=u16::MAX - 6).contains(&base) {
                continue;
            }
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let opts = UdpOptions::default();
            // Someone holds the first RTCP port: the first pair is not free.
            let Ok(hold) = bind_udp(SocketAddr::new(ip, base + 1), 0, 0) else {
                continue;
            };
            let range = base..=base + 5;
            let Ok((a, a_rtcp)) = bind_rtp_pair(ip, range.clone(), &opts, &opts) else {
                continue;
            };
            let Ok((b, b_rtcp)) = bind_rtp_pair(ip, range.clone(), &opts, &opts) else {
                continue;
            };
            let ports = [&a, &a_rtcp, &b, &b_rtcp].map(|s| s.local_addr().unwrap().port());
            if ports != [base + 2, base + 3, base + 4, base + 5] {
                continue; // someone else took a port meanwhile
            }
            let err = bind_rtp_pair(ip, range, &opts, &opts).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            drop(hold);
            return;
        }
        panic!("never found a free block of six ports");
    }

    #[test]
    fn an_empty_port_range_is_invalid_input() {
        #[allow(clippy::reversed_empty_ranges)]
        let err = bind_rtp_pair(
            Ipv4Addr::LOCALHOST.into(),
            10..=9,
            &UdpOptions::default(),
            &UdpOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn batches_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<RecvBatch>();
        assert_send::<SendBatch>();
    }

    #[test]
    fn the_api_fits_tokio_async_fd() {
        use tokio::io::unix::AsyncFd;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            // SAFETY: a std UdpSocket owns its descriptor, which stays open and
            // unchanged until the AsyncFd (which owns the socket) is dropped.
            let (rx, tx) = unsafe {
                (
                    AsyncFd::register(bind_local()).expect("registering with the reactor"),
                    AsyncFd::register(bind_local()).expect("registering with the reactor"),
                )
            };
            let to = rx.get_ref().local_addr().unwrap();
            let mut out = SendBatch::default();
            for i in 0..10u8 {
                out.push(to, &[i]).unwrap();
            }
            let mut guard = tx.writable().await.unwrap();
            let stats = out.flush(&tx).unwrap();
            assert_eq!(stats.sent, 10);
            guard.retain_ready();

            let mut batch = RecvBatch::default();
            let mut got = Vec::new();
            let wait = async {
                while got.len() < 10 {
                    let mut guard = rx.readable().await.unwrap();
                    loop {
                        let n = batch.recv(&rx).unwrap();
                        if n == 0 {
                            guard.clear_ready();
                            break;
                        }
                        got.extend(batch.iter().map(|d| d.data[0]));
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(2), wait)
                .await
                .expect("datagrams arrive within 2 s");
            assert_eq!(got, (0..10).collect::<Vec<u8>>());
        });
    }
}
