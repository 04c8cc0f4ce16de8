//! The host's interface addresses (getifaddrs(3)).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Every IPv4 and IPv6 address configured on the host's interfaces: what a socket
/// bound to the wildcard address answers on.
pub fn local_ips() -> io::Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = interface_addrs()?.into_iter().map(|(_, ip)| ip).collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The interface that carries `ip` (its name, e.g. `eth0`), if any: how a node finds
/// its media interface (and from it a MAC address for its default name).
pub fn interface_of(ip: IpAddr) -> io::Result<Option<String>> {
    Ok(interface_addrs()?
        .into_iter()
        .find(|(_, a)| *a == ip)
        .map(|(name, _)| name))
}

/// Every (interface name, address) pair of the host, IPv4 and IPv6, in the order
/// getifaddrs lists them.
pub fn interface_addrs() -> io::Result<Vec<(String, IpAddr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr whose family says its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            let ip = if family == libc::AF_INET {
                // SAFETY: family AF_INET means a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            } else if family == libc::AF_INET6 {
                // SAFETY: family AF_INET6 means a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            } else {
                None
            };
            if let Some(ip) = ip {
                let name = if ifa.ifa_name.is_null() {
                    String::new()
                } else {
                    // SAFETY: ifa_name is a NUL-terminated string owned by the list.
                    unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                        .to_string_lossy()
                        .into_owned()
                };
                out.push((name, ip));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_address_is_among_the_hosts_addresses() {
        let ips = local_ips().expect("getifaddrs works");
        assert!(ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{ips:?}");
    }

    #[test]
    fn the_loopback_address_is_on_the_loopback_interface() {
        let name = interface_of(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("getifaddrs works");
        assert_eq!(name.as_deref(), Some("lo"));
        let none = interface_of("192.0.2.77".parse().unwrap()).expect("getifaddrs works");
        assert_eq!(none, None, "a documentation address is on no interface");
    }
}
