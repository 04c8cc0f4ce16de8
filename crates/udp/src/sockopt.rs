//! `setsockopt` for plain C values: the one place the socket options are set.

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;

/// `setsockopt(fd, level, name, value)`.
pub(crate) fn set<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a reference to a plain C value (int, in_addr, ip_mreqn)
    // that lives across the call, passed with its true size; the kernel only reads
    // it. A bad fd or option is reported as an error, not undefined behaviour.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the don't-fragment bit on everything the socket sends, whatever the path
/// MTU the kernel has learnt (`IP_PMTUDISC_PROBE`; IPv6: `IPV6_PMTUDISC_PROBE`, no
/// local fragmentation). Media datagrams are far below any link's MTU, and a
/// datagram the kernel would fragment costs an IP identifier from the shared
/// generator (`__ip_select_ident`: a hash and an atomic per datagram), which DF
/// datagrams from an unconnected socket do without (their identifier is 0, RFC
/// 6864). A datagram larger than the interface's MTU is refused (`EMSGSIZE`, one
/// counted send error) instead of being sent in fragments.
pub(crate) fn dont_fragment(fd: RawFd, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        set(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            &libc::IPV6_PMTUDISC_PROBE,
        )
    } else {
        set(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            &libc::IP_PMTUDISC_PROBE,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::{bind_udp_with, UdpOptions};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    /// `getsockopt(fd, level, name)` of an int option.
    fn get_int(fd: std::os::fd::RawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a pointer to an int and its true length, both live across the call.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
        v
    }

    #[test]
    fn dont_fragment_puts_the_socket_in_probe_mode_and_datagrams_still_flow() {
        for (addr, level, name) in [
            ("127.0.0.1:0", libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            ("[::1]:0", libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let df = UdpOptions {
                dont_fragment: true,
                ..UdpOptions::default()
            };
            let Ok((tx, _)) = bind_udp_with(addr, &df) else {
                // No IPv6 loopback on this host: nothing to check for that family.
                assert!(addr.is_ipv6(), "binding {addr} must work");
                continue;
            };
            let (plain, _) = bind_udp_with(addr, &UdpOptions::default()).unwrap();
            assert_eq!(
                get_int(tx.as_raw_fd(), level, name),
                libc::IP_PMTUDISC_PROBE
            );
            assert_ne!(
                get_int(plain.as_raw_fd(), level, name),
                libc::IP_PMTUDISC_PROBE
            );

            // A full-size Ethernet datagram goes through as one.
            let payload = [0x5au8; 1472];
            plain.set_nonblocking(false).unwrap();
            plain
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            tx.send_to(&payload, plain.local_addr().unwrap()).unwrap();
            let mut buf = [0u8; 2048];
            let (n, from) = plain.recv_from(&mut buf).unwrap();
            assert_eq!((n, from), (payload.len(), tx.local_addr().unwrap()));
        }
    }
}
