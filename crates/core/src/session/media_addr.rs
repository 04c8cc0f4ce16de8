//! Which media addresses a Setup may name.
//!
//! A member's offer says where the node sends its RTP (and RTCP, on the next port
//! unless rtcp-mux). Some addresses can never be a phone: the node's own media sockets
//! (the room would hear itself at full level, and each packet sent would come back as
//! input), the unspecified address, port 0, multicast and broadcast. Such an offer is
//! refused before anything is set up, with a cause that names the problem.

use super::WorkerAddrs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why a media address cannot be a member's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadMediaAddress {
    #[error("media address {0} is one of the node's own media sockets")]
    OwnSocket(SocketAddr),
    #[error("media address {0}: port 0 cannot receive")]
    PortZero(SocketAddr),
    #[error("media address {0} is unspecified")]
    Unspecified(SocketAddr),
    #[error("media address {0} is multicast or broadcast, not a phone")]
    Group(SocketAddr),
}

/// The node's own media endpoints: the IPs its media sockets answer on and the ports
/// they use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnMedia {
    /// Every IP that reaches the media sockets (the bound one, or with a wildcard
    /// bind every local interface address), besides the advertised ones in
    /// [`WorkerAddrs`] and loopback, which always count.
    pub ips: Vec<IpAddr>,
}

impl OwnMedia {
    fn is_own_ip(&self, ip: IpAddr, workers: &[WorkerAddrs]) -> bool {
        ip.is_loopback()
            || self.ips.contains(&ip)
            || workers
                .iter()
                .any(|w| w.rtp.ip() == ip || w.rtcp.ip() == ip)
    }
}

/// Checks the address a member receives RTP on (`rtcp_mux`: RTCP on the same port,
/// else on the next one).
pub fn check(
    ip: IpAddr,
    port: u16,
    rtcp_mux: bool,
    own: &OwnMedia,
    workers: &[WorkerAddrs],
) -> Result<(), BadMediaAddress> {
    let at = SocketAddr::new(ip, port);
    if port == 0 {
        return Err(BadMediaAddress::PortZero(at));
    }
    if ip.is_unspecified() {
        return Err(BadMediaAddress::Unspecified(at));
    }
    if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(BadMediaAddress::Group(at));
    }
    if own.is_own_ip(ip, workers) {
        let rtcp = if rtcp_mux { port } else { port.wrapping_add(1) };
        let ours = |p: u16| {
            workers
                .iter()
                .any(|w| w.rtp.port() == p || w.rtcp.port() == p)
        };
        if ours(port) || ours(rtcp) {
            return Err(BadMediaAddress::OwnSocket(at));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers() -> Vec<WorkerAddrs> {
        vec![WorkerAddrs {
            rtp: "192.0.2.1:20000".parse().unwrap(),
            rtcp: "192.0.2.1:20001".parse().unwrap(),
        }]
    }

    fn own() -> OwnMedia {
        OwnMedia {
            ips: vec!["10.0.0.5".parse().unwrap()],
        }
    }

    fn verdict(addr: &str, mux: bool) -> Result<(), BadMediaAddress> {
        let a: SocketAddr = addr.parse().unwrap();
        check(a.ip(), a.port(), mux, &own(), &workers())
    }

    #[test]
    fn the_nodes_own_sockets_are_refused_on_every_address_that_reaches_them() {
        for a in [
            "192.0.2.1:20000",
            "192.0.2.1:20001",
            "10.0.0.5:20000",
            "127.0.0.1:20000",
            "127.3.4.5:20001",
            "[::1]:20000",
        ] {
            assert!(
                matches!(verdict(a, true), Err(BadMediaAddress::OwnSocket(_))),
                "{a}"
            );
        }
        // Without rtcp-mux the node's RTCP would go to port + 1: our RTP socket.
        assert!(matches!(
            verdict("192.0.2.1:19999", false),
            Err(BadMediaAddress::OwnSocket(_))
        ));
        assert_eq!(verdict("192.0.2.1:19999", true), Ok(()));
    }

    #[test]
    fn addresses_that_cannot_be_a_phone_are_refused() {
        assert!(matches!(
            verdict("198.51.100.7:0", false),
            Err(BadMediaAddress::PortZero(_))
        ));
        assert!(matches!(
            verdict("0.0.0.0:4000", false),
            Err(BadMediaAddress::Unspecified(_))
        ));
        assert!(matches!(
            verdict("[::]:4000", false),
            Err(BadMediaAddress::Unspecified(_))
        ));
        for a in ["239.1.2.3:4000", "255.255.255.255:4000", "[ff02::1]:4000"] {
            assert!(
                matches!(verdict(a, false), Err(BadMediaAddress::Group(_))),
                "{a}"
            );
        }
    }

    #[test]
    fn a_phone_on_the_nodes_ports_elsewhere_or_on_other_ports_here_is_fine() {
        for a in ["198.51.100.7:20000", "192.0.2.1:40000", "127.0.0.1:40000"] {
            assert_eq!(verdict(a, false), Ok(()), "{a}");
        }
    }
}
