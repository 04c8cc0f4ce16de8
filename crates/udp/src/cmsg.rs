//! Control messages (`cmsg`) the batches write and read, and the socket options
//! that make the kernel attach them.
//!
//! - Send: at most one per datagram, `IP_PKTINFO` (IPv4) or `IPV6_PKTINFO` (IPv6),
//!   asking for a source address. The socket needs no option for it, but the
//!   address must be one the kernel accepts as local for that socket (any
//!   `127.0.0.0/8` host for a socket bound to `0.0.0.0`).
//! - Receive: up to three per datagram, each only once its option is on
//!   ([`enable`]): `IP_PKTINFO`/`IPV6_PKTINFO` (the local address the datagram was
//!   sent to), `SCM_TIMESTAMPNS` (when the kernel took it in, realtime clock) and
//!   `SO_RXQ_OVFL` (the socket's cumulative count of datagrams dropped because its
//!   receive buffer was full; attached once the first drop happened).
//!
//! # Invariants
//! - [`Control`] buffers are aligned for `cmsghdr` and sized with `CMSG_SPACE` at
//!   compile time: a send buffer holds either source message, a receive buffer all
//!   three receive messages at once.
//! - Messages are laid out and walked only with libc's `CMSG_*` helpers, never with
//!   offsets of our own; payloads are read and written unaligned. A payload is read
//!   only when its `cmsg_len` says it is whole and inside the buffer.
//! - [`parse_recv`] reads only the buffer it is given, whatever the `msghdr` the
//!   kernel filled says, so it is safe to call with any length.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::RecvMeta;

const fn space(payload: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument; it touches no memory.
    unsafe { libc::CMSG_SPACE(payload as libc::c_uint) as usize }
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

const V4_INFO: usize = space(size_of::<libc::in_pktinfo>());
const V6_INFO: usize = space(size_of::<libc::in6_pktinfo>());
/// Room for one source-address message of either family.
pub(crate) const SEND_SPACE: usize = max(V4_INFO, V6_INFO);
/// Room for a destination address, a stamp and a drop count together.
pub(crate) const RECV_SPACE: usize =
    SEND_SPACE + space(size_of::<libc::timespec>()) + space(size_of::<u32>());

const _: () = assert!(SEND_SPACE >= V4_INFO && SEND_SPACE >= V6_INFO);
const _: () = assert!(std::mem::align_of::<RecvControl>() >= std::mem::align_of::<libc::cmsghdr>());

/// A control-message buffer of `N` bytes, aligned as the kernel's `cmsghdr`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Control<const N: usize> {
    _align: [libc::cmsghdr; 0],
    bytes: [u8; N],
}

pub(crate) type SendControl = Control<SEND_SPACE>;
pub(crate) type RecvControl = Control<RECV_SPACE>;

impl<const N: usize> Control<N> {
    pub(crate) const EMPTY: Self = Control {
        _align: [],
        bytes: [0; N],
    };

    /// The first `len` bytes (clamped to the buffer), to hand to the kernel.
    pub(crate) fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.bytes[..len.min(N)]
    }
}

/// A `msghdr` whose only content is `len` bytes of control data at `control`: what
/// the `CMSG_*` helpers need to walk a buffer.
fn control_view(control: *mut u8, len: usize) -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct of integers and raw pointers; all-zero is
    // a valid value (and covers the padding fields some libcs declare).
    let mut mh: libc::msghdr = unsafe { zeroed() };
    mh.msg_control = control.cast();
    mh.msg_controllen = len as _;
    mh
}

/// Writes the message asking for `src` as source address into `ctl` and returns
/// the `msg_controllen` to send it with.
pub(crate) fn encode_source(src: IpAddr, ctl: &mut SendControl) -> usize {
    let (level, kind, payload) = match src {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            size_of::<libc::in_pktinfo>(),
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            size_of::<libc::in6_pktinfo>(),
        ),
    };
    let len = space(payload);
    let mh = control_view(ctl.bytes.as_mut_ptr(), len);
    // SAFETY: `ctl` is aligned for cmsghdr and at least `len` = CMSG_SPACE(payload)
    // bytes long (SEND_SPACE is the larger of both families), so CMSG_FIRSTHDR is
    // the non-null start of the buffer, and the header plus `payload` bytes of data
    // at CMSG_DATA lie inside it. The data is written unaligned.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&mh);
        (*c).cmsg_level = level;
        (*c).cmsg_type = kind;
        (*c).cmsg_len = libc::CMSG_LEN(payload as libc::c_uint) as _;
        let data = libc::CMSG_DATA(c);
        match src {
            IpAddr::V4(ip) => std::ptr::write_unaligned(
                data.cast::<libc::in_pktinfo>(),
                libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                },
            ),
            IpAddr::V6(ip) => std::ptr::write_unaligned(
                data.cast::<libc::in6_pktinfo>(),
                libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                },
            ),
        }
    }
    len
}

/// What the kernel attached to one received datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecvInfo {
    pub dst: Option<IpAddr>,
    pub stamp: Option<SystemTime>,
    pub overflow: Option<u32>,
}

/// Reads the messages in the first `len` bytes of `ctl` (the `msg_controllen` the
/// kernel reported; clamped to the buffer). Unknown messages are skipped.
pub(crate) fn parse_recv(ctl: &RecvControl, len: usize) -> RecvInfo {
    let mut info = RecvInfo::default();
    let len = len.min(RECV_SPACE);
    if len < size_of::<libc::cmsghdr>() {
        return info;
    }
    let base = ctl.bytes.as_ptr();
    let end = base as usize + len;
    // The helpers take a *mut; nothing is written through it.
    let mh = control_view(base.cast_mut(), len);
    // SAFETY: `mh` describes exactly the first `len` bytes of `ctl`, which is
    // aligned for cmsghdr. CMSG_FIRSTHDR/CMSG_NXTHDR only return headers that lie
    // inside those bytes (or null), and `payload` reads data only when the
    // header's own length covers it and ends inside the buffer.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    if let Some(p) = payload::<libc::in_pktinfo>(c, end) {
                        let ip = Ipv4Addr::from(u32::from_be(p.ipi_addr.s_addr));
                        info.dst = Some(IpAddr::V4(ip));
                    }
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    if let Some(p) = payload::<libc::in6_pktinfo>(c, end) {
                        info.dst = Some(IpAddr::V6(Ipv6Addr::from(p.ipi6_addr.s6_addr)));
                    }
                }
                (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                    if let Some(ts) = payload::<libc::timespec>(c, end) {
                        info.stamp = system_time(&ts);
                    }
                }
                (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                    info.overflow = payload::<u32>(c, end);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }
    info
}

/// The `T` carried by the message at `c`, if the message is long enough for one
/// and ends by `end`.
///
/// # Safety
/// `c` points to a whole `cmsghdr` inside a buffer that ends at address `end`.
unsafe fn payload<T: Copy>(c: *const libc::cmsghdr, end: usize) -> Option<T> {
    // SAFETY: the caller guarantees the header itself is readable.
    #[allow(clippy::unnecessary_cast)] // size_t on glibc, socklen_t on musl
    let whole = unsafe { (*c).cmsg_len as usize };
    // SAFETY: CMSG_LEN is arithmetic on its argument.
    let needed = unsafe { libc::CMSG_LEN(size_of::<T>() as libc::c_uint) as usize };
    if whole < needed || (c as usize).saturating_add(whole) > end {
        return None;
    }
    // SAFETY: the data of a header the caller vouches for starts inside its
    // buffer, and the check above puts the whole message, so all of `T`, before
    // `end`. Read unaligned.
    Some(unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<T>()) })
}

fn system_time(ts: &libc::timespec) -> Option<SystemTime> {
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Turns on the receive options `meta` asks for; a destination address is
/// `IPV6_RECVPKTINFO` on an IPv6 socket, `IP_PKTINFO` otherwise.
pub(crate) fn enable(fd: RawFd, v6: bool, meta: RecvMeta) -> io::Result<()> {
    if meta.dst {
        if v6 {
            set_flag(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
        } else {
            set_flag(fd, libc::IPPROTO_IP, libc::IP_PKTINFO)?;
        }
    }
    if meta.stamp {
        set_flag(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS)?;
    }
    if meta.overflow {
        set_flag(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL)?;
    }
    Ok(())
}

fn set_flag(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    crate::sockopt::set(fd, level, name, &(1 as libc::c_int))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_source_message_is_one_whole_ip_pktinfo_naming_that_address() {
        let ip = Ipv4Addr::new(127, 1, 2, 3);
        let mut ctl = SendControl::EMPTY;
        let len = encode_source(ip.into(), &mut ctl);
        assert_eq!(len, V4_INFO);
        let base = ctl.bytes.as_mut_ptr();
        let mh = control_view(base, len);
        // SAFETY: `mh` describes the first `len` bytes of `ctl`, aligned for
        // cmsghdr; the first header lies inside them (len >= CMSG_SPACE(..)).
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&mh);
            assert!(!c.is_null());
            assert_eq!(
                ((*c).cmsg_level, (*c).cmsg_type),
                (libc::IPPROTO_IP, libc::IP_PKTINFO)
            );
            let info = payload::<libc::in_pktinfo>(c, base as usize + len).unwrap();
            assert_eq!(u32::from_be(info.ipi_spec_dst.s_addr), u32::from(ip));
            assert_eq!(info.ipi_ifindex, 0);
            assert!(libc::CMSG_NXTHDR(&mh, c).is_null(), "exactly one message");
        }
    }

    #[test]
    fn short_or_garbage_control_data_yields_nothing_and_stays_in_bounds() {
        let empty = RecvControl::EMPTY;
        for len in [0, 1, 15, RECV_SPACE, usize::MAX] {
            assert_eq!(parse_recv(&empty, len), RecvInfo::default(), "len {len}");
        }
        // A header claiming more data than the buffer has is not read.
        let mut bad = RecvControl::EMPTY;
        let mut src = SendControl::EMPTY;
        let n = encode_source(Ipv6Addr::LOCALHOST.into(), &mut src);
        bad.bytes[..n].copy_from_slice(&src.bytes[..n]);
        let whole = bad.bytes.len();
        let claimed = (whole + 1).to_ne_bytes();
        bad.bytes[..claimed.len()].copy_from_slice(&claimed);
        assert_eq!(parse_recv(&bad, RECV_SPACE), RecvInfo::default());
    }

    #[test]
    fn an_ipv6_source_message_reads_back_as_that_address() {
        // in6_pktinfo has one address field for both directions, so what the send
        // side writes is what the receive side reads.
        let ip: Ipv6Addr = "fe80::1234".parse().unwrap();
        let mut src = SendControl::EMPTY;
        let n = encode_source(ip.into(), &mut src);
        assert_eq!(n, V6_INFO);
        let mut ctl = RecvControl::EMPTY;
        ctl.bytes[..n].copy_from_slice(&src.bytes[..n]);
        let info = parse_recv(&ctl, n);
        assert_eq!(info.dst, Some(IpAddr::V6(ip)));
        assert_eq!((info.stamp, info.overflow), (None, None));
    }
}
