//! Conversions between `SocketAddr` and the kernel's `sockaddr_storage`, the
//! zeroed C structs the batches start from, and the one function that points a
//! message header at its buffers.

use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

pub(super) fn empty_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is a plain C struct of integers; all-zero is a valid
    // value (family AF_UNSPEC).
    unsafe { mem::zeroed() }
}

pub(super) fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct of integers and raw pointers; all-zero
    // (null pointers, zero lengths) is a valid value. zeroed() also covers the
    // private padding fields some libcs declare.
    unsafe { mem::zeroed() }
}

pub(super) fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

/// Writes `addr` into `st` as a sockaddr_in/sockaddr_in6 and returns its length.
pub(super) fn encode_addr(addr: SocketAddr, st: &mut libc::sockaddr_storage) -> libc::socklen_t {
    *st = empty_storage();
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is sized and aligned to hold any sockaddr
            // type, sockaddr_in included; we write one whole value.
            unsafe { std::ptr::write((st as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                // Kept as given, like std does.
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((st as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads the address the kernel wrote into `st`; `None` for other families or a
/// short length.
pub(super) fn decode_addr(st: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match st.ss_family as libc::c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, the kernel
            // wrote at least that many bytes, and sockaddr_storage is aligned for it.
            let sin =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Points one message header at its own address slot, its iovec, the first `len`
/// bytes of `buf` and `control` (none when empty): the per-message setup recvmmsg
/// and sendmmsg share.
pub(super) fn point_message(
    hdr: &mut libc::mmsghdr,
    iov: &mut libc::iovec,
    name: &mut libc::sockaddr_storage,
    namelen: libc::socklen_t,
    buf: &mut [u8],
    len: usize,
    control: &mut [u8],
) {
    iov.iov_base = buf.as_mut_ptr().cast();
    iov.iov_len = len.min(buf.len());
    hdr.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
    hdr.msg_hdr.msg_namelen = namelen;
    hdr.msg_hdr.msg_iov = iov;
    hdr.msg_hdr.msg_iovlen = 1;
    hdr.msg_hdr.msg_control = if control.is_empty() {
        std::ptr::null_mut()
    } else {
        control.as_mut_ptr().cast()
    };
    hdr.msg_hdr.msg_controllen = control.len() as _;
    hdr.msg_hdr.msg_flags = 0;
    hdr.msg_len = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_sockaddr_storage() {
        let cases: [SocketAddr; 4] = [
            "127.0.0.1:5004".parse().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
            "[::1]:65535".parse().unwrap(),
            "[fe80::1%3]:40000".parse().unwrap(),
        ];
        for addr in cases {
            let mut st = empty_storage();
            let len = encode_addr(addr, &mut st);
            assert_eq!(decode_addr(&st, len), Some(addr));
            assert_eq!(decode_addr(&st, len - 1), None, "short length for {addr}");
        }
        assert_eq!(decode_addr(&empty_storage(), 128), None);
    }
}
