//! RTCP (RFC 3550 §6): a zero-copy compound-packet parser and a report writer.
//!
//! [`parse_compound`] walks a compound datagram and yields one
//! `Result<`[`RtcpPacket`]`, `[`RtcpError`]`>` per RTCP packet, borrowing the buffer
//! and never allocating. Every length is checked against the buffer before it is
//! used; the first malformation is yielded as an error and ends the iteration, so a
//! hostile datagram costs at most one pass and can neither panic nor loop.
//!
//! The parser is tolerant where tolerance is harmless: it does not insist that a
//! compound packet starts with SR/RR or carries a CNAME (RFC 3550 §6.1 asks that of
//! senders, and RFC 5506 reduced-size RTCP drops it), it accepts padding on any
//! packet (not just the last), and profile-specific extensions after SR/RR report
//! blocks are kept as bytes. APP (204) and every type it does not know (RTPFB/PSFB
//! feedback, XR, ...) come out as [`RtcpPacket::Other`] with their body;
//! [`parse_feedback`] reads the feedback ones.
//!
//! Sending: [`ReportWriter`] writes SR-or-RR followed by SDES CNAME. Round-trip time
//! bookkeeping lives in [`ntp`]: the receiver of an SR echoes its compact NTP time as
//! LSR together with the delay since (DLSR), and the SR's sender computes
//! `rtt = now - LSR - DLSR` with [`ntp::rtt`]. Keyframe requests for video (PLI,
//! FIR) are written by [`feedback`].

pub mod bye;
pub mod compound;
pub mod feedback;
pub mod ntp;
pub mod rr;
pub mod sdes;
pub mod sr;

pub use bye::Bye;
pub use compound::{parse_compound, ReportWriter, RtcpPackets};
pub use feedback::{parse_feedback, write_fir, write_pli, Feedback, PT_PSFB, PT_RTPFB};
pub use rr::{ReceiverReport, ReportBlock, ReportBlocks};
pub use sdes::{Sdes, SdesChunk, SdesChunks, SdesItem, SdesItems};
pub use sr::{SenderInfo, SenderReport};

/// RTCP packet type: sender report.
pub const PT_SR: u8 = 200;
/// RTCP packet type: receiver report.
pub const PT_RR: u8 = 201;
/// RTCP packet type: source description.
pub const PT_SDES: u8 = 202;
/// RTCP packet type: goodbye.
pub const PT_BYE: u8 = 203;
/// RTCP packet type: application-defined.
pub const PT_APP: u8 = 204;

/// Length of the common RTCP header (V/P/count, PT, length).
pub const RTCP_HEADER_LEN: usize = 4;
/// Most report blocks (or SDES chunks, BYE SSRCs) one packet can count: 5 bits.
pub const MAX_COUNT: usize = 31;

/// Why an RTCP buffer could not be parsed or a report could not be written.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum RtcpError {
    #[error("{len} bytes is shorter than the 4-byte RTCP header")]
    TooShort { len: usize },
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    #[error("RTCP packet declares {need} bytes, only {have} remain")]
    Truncated { need: usize, have: usize },
    #[error("padding count {count} does not fit the {available}-byte body")]
    BadPadding { count: u8, available: usize },
    #[error("RTCP type {pt} with count {count} needs {need} body bytes, has {have}")]
    BadCount {
        pt: u8,
        count: u8,
        need: usize,
        have: usize,
    },
    #[error("SDES chunk is truncated or its item list is not terminated")]
    BadSdes,
    #[error("BYE reason of {len} bytes overruns the packet")]
    BadByeReason { len: u8 },
    #[error("CNAME of {len} bytes is longer than 255")]
    CnameTooLong { len: usize },
    #[error("output buffer of {have} bytes is smaller than the {need} needed")]
    BufferTooSmall { need: usize, have: usize },
}

/// One RTCP packet from a compound datagram, borrowing the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    Sdes(Sdes<'a>),
    Bye(Bye<'a>),
    /// APP or any other type: passed through unparsed. `body` excludes the 4-byte
    /// header and any padding.
    Other {
        pt: u8,
        count: u8,
        body: &'a [u8],
    },
}

/// Reads a big-endian u32 at `at`; callers have checked `at + 4 <= buf.len()`.
fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Writes the common header for a packet of `total_len` bytes (a multiple of 4).
fn put_header(out: &mut [u8], count: u8, pt: u8, total_len: usize) {
    debug_assert!(total_len % 4 == 0 && total_len >= 4 && count <= 31);
    out[0] = (2 << 6) | count;
    out[1] = pt;
    let words = (total_len / 4 - 1) as u16;
    out[2..4].copy_from_slice(&words.to_be_bytes());
}
