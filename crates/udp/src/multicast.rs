//! IPv4 multicast between the nodes of a cluster (Linux): how video layers cross
//! the cluster once per publisher stream, whatever the number of receiving nodes.
//!
//! # The design these functions serve
//! One multicast port per cluster; every publisher stream gets a group of its own
//! from a pool in `239.0.0.0/8` (administratively scoped, RFC 2365: never routed
//! out of the organisation, so a misconfigured TTL cannot leak video to the
//! internet).
//! - A publishing node sends to `group:port` from its ordinary media socket, once
//!   [`configure_sender`] pinned the outgoing interface (`IP_MULTICAST_IF`: the
//!   media interface, not whatever the routing table's default would pick), the
//!   TTL (1 by default: one subnet, no router in between) and the loopback
//!   (`IP_MULTICAST_LOOP`, off by default: a node does not receive its own
//!   streams; only nodes that share a host need it on).
//! - Each media worker of a receiving node has one socket from [`bind_receiver`],
//!   bound to `0.0.0.0:port`, and [`join`]s / [`leave`]s groups on it. Several
//!   workers (and several nodes on one host) bind the same port, hence
//!   `SO_REUSEADDR`. By default Linux hands a multicast datagram to *every* socket
//!   bound to its port as soon as *any* socket of the host joined its group
//!   (`IP_MULTICAST_ALL` = 1); a receiver socket turns that off, so it gets exactly
//!   the groups it joined itself and a worker never sees streams meant for another.
//!   The group a datagram was sent to is its [`Datagram::dst`](crate::Datagram::dst)
//!   (`IP_PKTINFO`, always on for these sockets): that is how a worker tells the
//!   streams apart on its one socket.
//!
//! # Errors
//! Every function returns an `io::Error` whose message names the option, the group
//! and the interface, so a log line says what was refused. An address that is not
//! multicast is refused before the kernel sees it (`InvalidInput`). From the kernel:
//! joining a group twice on one socket is `AddrInUse`, leaving one the socket never
//! joined `AddrNotAvailable`; an interface address no interface has is `NotFound`
//! for [`join`] and [`leave`] (the kernel's `ENODEV`, which `std` leaves
//! uncategorised) and `AddrNotAvailable` for [`configure_sender`].

use crate::{cmsg, RecvMeta, UdpOptions};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// How a publishing node's media socket sends to multicast groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderOptions {
    /// The address of the interface multicast leaves by (the node's media
    /// interface). `0.0.0.0` leaves the choice to the routing table, which on a
    /// host without a multicast route fails with `ENETUNREACH` at the first send.
    pub interface: Ipv4Addr,
    /// Hops a datagram may cross (`IP_MULTICAST_TTL`), 0..=255. Default 1: the
    /// nodes of a cluster share a subnet and nothing should go past its router.
    pub ttl: u32,
    /// Whether the sending host gets its own datagrams back (`IP_MULTICAST_LOOP`).
    /// Default false; true only when nodes share a host.
    pub loopback: bool,
}

impl SenderOptions {
    /// TTL 1 and no loopback, leaving by `interface`.
    pub fn on(interface: Ipv4Addr) -> SenderOptions {
        SenderOptions {
            interface,
            ttl: 1,
            loopback: false,
        }
    }
}

impl Default for SenderOptions {
    /// [`SenderOptions::on`] the unspecified address (the routing table decides).
    fn default() -> SenderOptions {
        SenderOptions::on(Ipv4Addr::UNSPECIFIED)
    }
}

/// Sets `IP_MULTICAST_IF` (by interface address), `IP_MULTICAST_TTL` and
/// `IP_MULTICAST_LOOP` on an existing IPv4 UDP socket, so the node's one media
/// socket sends unicast and multicast alike. A TTL above 255 is `InvalidInput`.
pub fn configure_sender(sock: &impl AsRawFd, opts: &SenderOptions) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    if opts.ttl > 255 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("multicast TTL {} is above 255", opts.ttl),
        ));
    }
    let interface = in_addr(opts.interface);
    setsockopt(fd, libc::IP_MULTICAST_IF, &interface)
        .map_err(|e| context(e, format!("IP_MULTICAST_IF {}", opts.interface)))?;
    let ttl = opts.ttl as libc::c_int;
    setsockopt(fd, libc::IP_MULTICAST_TTL, &ttl)
        .map_err(|e| context(e, format!("IP_MULTICAST_TTL {}", opts.ttl)))?;
    let on = libc::c_int::from(opts.loopback);
    setsockopt(fd, libc::IP_MULTICAST_LOOP, &on)
        .map_err(|e| context(e, format!("IP_MULTICAST_LOOP {}", opts.loopback)))?;
    Ok(())
}

/// Binds a media worker's multicast receive socket on `0.0.0.0:port`: nonblocking,
/// close-on-exec, `SO_REUSEADDR` (whatever `opts.reuse_addr` says: every worker of
/// every node on the host binds this port), `IP_MULTICAST_ALL` = 0 (only the groups
/// this socket joins) and `IP_PKTINFO` (so [`Datagram::dst`](crate::Datagram::dst)
/// is the group), with `opts`' buffer sizes. All of it is set before binding, so no
/// datagram arrives without them. It receives nothing until it [`join`]s a group.
pub fn bind_receiver(port: u16, opts: &UdpOptions) -> io::Result<UdpSocket> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    // socket2 sets SOCK_CLOEXEC on Linux.
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    if opts.recv_buf > 0 {
        sock.set_recv_buffer_size(opts.recv_buf)?;
    }
    if opts.send_buf > 0 {
        sock.set_send_buffer_size(opts.send_buf)?;
    }
    sock.set_nonblocking(true)?;
    let off: libc::c_int = 0;
    setsockopt(sock.as_raw_fd(), libc::IP_MULTICAST_ALL, &off)
        .map_err(|e| context(e, "IP_MULTICAST_ALL 0".to_string()))?;
    let meta = RecvMeta {
        dst: true,
        ..RecvMeta::NONE
    };
    cmsg::enable(sock.as_raw_fd(), false, meta)?;
    sock.bind(&addr.into())
        .map_err(|e| context(e, format!("binding multicast receiver on {addr}")))?;
    let granted = (sock.recv_buffer_size()?, sock.send_buffer_size()?);
    if granted.0 < opts.recv_buf || granted.1 < opts.send_buf {
        tracing::warn!(%addr, ?opts, ?granted, "kernel granted smaller UDP buffers than requested");
    } else {
        tracing::debug!(%addr, ?granted, "bound multicast receiver");
    }
    Ok(UdpSocket::from(sock))
}

/// Joins `group` on the interface with address `interface` (`IP_ADD_MEMBERSHIP`):
/// the socket gets the group's datagrams to its port from now on, and the kernel
/// reports the membership by IGMP so switches that snoop forward the group.
pub fn join(sock: &impl AsRawFd, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
    membership(
        sock.as_raw_fd(),
        libc::IP_ADD_MEMBERSHIP,
        "join",
        group,
        interface,
    )
}

/// Leaves `group` on `interface` (`IP_DROP_MEMBERSHIP`): no more of its datagrams
/// reach this socket; when no socket of the host is left in the group the kernel
/// tells the network by IGMP.
pub fn leave(sock: &impl AsRawFd, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
    membership(
        sock.as_raw_fd(),
        libc::IP_DROP_MEMBERSHIP,
        "leave",
        group,
        interface,
    )
}

/// Whether `group` is an administratively scoped IPv4 multicast address
/// (`239.0.0.0/8`, RFC 2365): the only groups a cluster's pool may use.
pub fn is_admin_scoped(group: Ipv4Addr) -> bool {
    group.octets()[0] == 239
}

fn membership(
    fd: RawFd,
    name: libc::c_int,
    verb: &str,
    group: Ipv4Addr,
    interface: Ipv4Addr,
) -> io::Result<()> {
    if !group.is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot {verb} {group}: not an IPv4 multicast address"),
        ));
    }
    // ip_mreqn with ifindex 0: the kernel finds the interface by its address (or by
    // route for 0.0.0.0).
    let mreq = libc::ip_mreqn {
        imr_multiaddr: in_addr(group),
        imr_address: in_addr(interface),
        imr_ifindex: 0,
    };
    setsockopt(fd, name, &mreq).map_err(|e| {
        let e = if e.raw_os_error() == Some(libc::ENODEV) {
            io::Error::new(io::ErrorKind::NotFound, "no interface has that address")
        } else {
            e
        };
        context(e, format!("{verb} {group} on {interface}"))
    })
}

fn in_addr(ip: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from(ip).to_be(),
    }
}

/// The same error kind, with what was being done in front of the OS's message.
fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// `setsockopt(fd, IPPROTO_IP, name, value)`.
fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    crate::sockopt::set(fd, libc::IPPROTO_IP, name, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;
    use std::mem::size_of;

    fn udp() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 must work in tests")
    }

    #[test]
    fn only_239_slash_8_is_admin_scoped() {
        let table = [
            ([239, 0, 0, 0], true),
            ([239, 192, 0, 1], true),
            ([239, 255, 255, 255], true),
            ([238, 255, 255, 255], false),
            ([224, 0, 0, 1], false),
            ([240, 0, 0, 0], false),
            ([10, 239, 0, 1], false),
        ];
        for (octets, want) in table {
            assert_eq!(is_admin_scoped(octets.into()), want, "{octets:?}");
        }
    }

    #[test]
    fn sender_options_are_read_back_from_the_socket() {
        let sock = udp();
        let opts = SenderOptions {
            interface: Ipv4Addr::LOCALHOST,
            ttl: 7,
            loopback: true,
        };
        configure_sender(&sock, &opts).unwrap();
        let s = SockRef::from(&sock);
        assert_eq!(s.multicast_ttl_v4().unwrap(), 7);
        assert!(s.multicast_loop_v4().unwrap());
        assert_eq!(s.multicast_if_v4().unwrap(), Ipv4Addr::LOCALHOST);

        configure_sender(&sock, &SenderOptions::on(Ipv4Addr::LOCALHOST)).unwrap();
        assert_eq!(s.multicast_ttl_v4().unwrap(), 1);
        assert!(!s.multicast_loop_v4().unwrap());
    }

    #[test]
    fn a_ttl_above_255_is_invalid_input() {
        let opts = SenderOptions {
            ttl: 256,
            ..SenderOptions::on(Ipv4Addr::LOCALHOST)
        };
        let err = configure_sender(&udp(), &opts).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("256"), "{err}");
    }

    #[test]
    fn joining_or_leaving_a_unicast_address_is_an_error_that_names_it() {
        let sock = udp();
        for group in [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::BROADCAST] {
            let err = join(&sock, group, Ipv4Addr::LOCALHOST).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(&group.to_string()), "{err}");
            let err = leave(&sock, group, Ipv4Addr::LOCALHOST).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn an_interface_address_no_interface_has_is_refused_with_context() {
        let sock = udp();
        // TEST-NET-3: no interface of a test machine carries it.
        let nowhere = Ipv4Addr::new(203, 0, 113, 77);
        let err = join(&sock, Ipv4Addr::new(239, 192, 0, 1), nowhere).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert_eq!(
            err.to_string(),
            "join 239.192.0.1 on 203.0.113.77: no interface has that address"
        );
        let err = configure_sender(&sock, &SenderOptions::on(nowhere)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
        assert!(
            err.to_string()
                .starts_with("IP_MULTICAST_IF 203.0.113.77: "),
            "{err}"
        );
    }

    #[test]
    fn receivers_share_their_port_and_have_multicast_all_off() {
        let a = bind_receiver(0, &UdpOptions::default()).unwrap();
        let port = a.local_addr().unwrap().port();
        let b = bind_receiver(port, &UdpOptions::default()).expect("SO_REUSEADDR shares the port");
        for s in [&a, &b] {
            let s = SockRef::from(s);
            assert!(s.reuse_address().unwrap());
            assert!(s.nonblocking().unwrap());
        }
        let mut all: libc::c_int = 1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an int and its true length, both living across the call.
        let rc = unsafe {
            libc::getsockopt(
                a.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MULTICAST_ALL,
                (&mut all as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(all, 0, "IP_MULTICAST_ALL must be off");
    }
}
