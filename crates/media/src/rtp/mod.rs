//! The RTP layer shared by every leg (audio, cascade, video): packet parsing and
//! writing, RTCP, sequence/timestamp extension, reception statistics, DTMF and
//! comfort noise.
//!
//! Everything here is sans-IO and allocation-free per packet: parsers borrow the
//! datagram and return typed errors for malformed input (they never panic, which a
//! seeded random-input test and the cargo-fuzz targets in `fuzz/` exercise), and
//! time comes in as `now` arguments.
//!
//! - [`packet`]: [`RtpPacket`] (zero-copy parse, `Bytes` payload variant) and
//!   [`RtpHeader`] (12-byte header writer). RFC 3550 §5.
//! - [`rtcp`]: compound RTCP parse (SR, RR, SDES, BYE, others passed through), the
//!   SR/RR + SDES CNAME writer, NTP and round-trip helpers. RFC 3550 §6.
//! - [`seq`]: [`SeqExtender`] / [`TsExtender`], wrap-safe 64-bit extension (and the
//!   nearest-value rule they share with the jitter buffer).
//! - [`stats`]: [`ReceptionStats`] (RFC 3550 A.1, A.3, A.8) and [`SenderStats`].
//! - [`dtmf`]: RFC 4733 telephone events and [`DtmfReceiver`].
//! - [`cn`]: RFC 3389 comfort-noise level.
//! - [`is_rtcp`]: RFC 5761 demultiplexing of RTP and RTCP on one port.

pub mod cn;
pub mod dtmf;
pub mod packet;
pub mod rtcp;
pub mod seq;
pub mod stats;

#[cfg(test)]
mod robustness;

pub use cn::{CnError, ComfortNoise, PT_CN};
pub use dtmf::{DtmfDigit, DtmfEnd, DtmfError, DtmfReceiver, TelephoneEvent};
pub use packet::{Csrcs, Extension, RtpError, RtpHeader, RtpPacket, RTP_HEADER_LEN};
pub use rtcp::{parse_compound, ReportBlock, ReportWriter, RtcpError, RtcpPacket, SenderInfo};
pub use seq::{SeqExtender, TsExtender};
pub use stats::{ReceptionStats, SenderStats, SeqVerdict};

/// Whether a datagram on an RTP/RTCP-multiplexed port is RTCP (RFC 5761 §4).
///
/// RTCP packet types 192..=223 occupy the second octet where RTP has the marker
/// bit and payload type; RFC 5761 reserves RTP payload types 64..=95 so that
/// (with the marker set) they never collide. Only that octet is looked at: the
/// version is left to the parser the datagram is handed to, so a malformed packet
/// gets a typed error there rather than vanishing here.
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_is_told_from_rtp_by_the_second_octet() {
        let table: &[(&str, &[u8], bool)] = &[
            ("empty", &[], false),
            ("one byte", &[0x80], false),
            ("SR", &[0x80, 200, 0, 6], true),
            ("RR", &[0x81, 201], true),
            ("SDES", &[0x81, 202], true),
            ("BYE", &[0x81, 203], true),
            ("APP", &[0x80, 204], true),
            ("RTPFB", &[0x81, 205], true),
            ("lowest reserved", &[0x80, 192], true),
            ("highest reserved", &[0x80, 223], true),
            ("PCMU", &[0x80, 0], false),
            ("PCMU with marker", &[0x80, 0x80], false),
            ("dynamic 96 with marker", &[0x80, 0x80 | 96], false),
            ("PT 63 with marker", &[0x80, 0x80 | 63], false),
            ("PT 96 without marker", &[0x80, 96], false),
            ("PT 127 with marker", &[0x80, 0xff], false),
        ];
        for (name, buf, want) in table {
            assert_eq!(is_rtcp(buf), *want, "{name}");
        }
    }
}
