//! RTCP feedback (RFC 4585 §6.1): writing the keyframe requests a video node
//! sends, PLI (§6.3.1) and FIR (RFC 5104 §4.3.1), and recognising the feedback
//! a viewer sends back.
//!
//! ```text
//!  V=2 P FMT(5)  PT(8)  length(16)      PT 205 RTPFB (transport), 206 PSFB (payload)
//!  SSRC of packet sender
//!  SSRC of media source                 FIR: 0, the target is in the FCI
//!  FCI ...                              FIR: SSRC(32) seq nr(8) reserved(24), per entry
//! ```
//!
//! [`parse_compound`](super::parse_compound) passes feedback through as
//! [`RtcpPacket::Other`](super::RtcpPacket::Other) with `count` = FMT;
//! [`parse_feedback`] reads those parts. It tells a node what a viewer asks for
//! (a keyframe: PLI or FIR; retransmission: NACK; a bandwidth estimate: REMB),
//! not the full contents: NACK lists and REMB bitrates are left to whoever
//! acts on them.

use super::{be32, put_header, RtcpError};

/// RTCP packet type: transport-layer feedback (NACK, ...).
pub const PT_RTPFB: u8 = 205;
/// RTCP packet type: payload-specific feedback (PLI, FIR, REMB, ...).
pub const PT_PSFB: u8 = 206;

/// RTPFB FMT of a generic NACK (RFC 4585 §6.2.1).
pub const FMT_NACK: u8 = 1;
/// PSFB FMT of a Picture Loss Indication (RFC 4585 §6.3.1).
pub const FMT_PLI: u8 = 1;
/// PSFB FMT of a Full Intra Request (RFC 5104 §4.3.1).
pub const FMT_FIR: u8 = 4;
/// PSFB FMT of application-layer feedback (RFC 4585 §6.4), which REMB uses.
pub const FMT_AFB: u8 = 15;

/// Bytes of a PLI packet.
pub const PLI_LEN: usize = 12;
/// Bytes of a FIR packet with one FCI entry.
pub const FIR_LEN: usize = 20;

/// The sender and media SSRCs every feedback body starts with.
const COMMON_LEN: usize = 8;
/// One FIR FCI entry: SSRC, sequence number, 3 reserved bytes.
const FIR_ENTRY_LEN: usize = 8;
/// One generic NACK FCI entry: PID, BLP.
const NACK_ENTRY_LEN: usize = 4;
/// The identifier REMB puts first in its FCI (draft-alvestrand-rmcat-remb).
const REMB_ID: &[u8; 4] = b"REMB";

/// Writes a Picture Loss Indication asking `media_ssrc`'s sender for a keyframe;
/// returns the 12 bytes written at the start of `out`.
pub fn write_pli(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtcpError> {
    let out = sized(out, PLI_LEN)?;
    put_header(out, FMT_PLI, PT_PSFB, PLI_LEN);
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    Ok(PLI_LEN)
}

/// Writes a Full Intra Request for `media_ssrc` with command sequence number
/// `seq_nr`; returns the 20 bytes written at the start of `out`.
///
/// RFC 5104 §4.3.1.2: the sender increments `seq_nr` for every *new* request
/// and repeats it for a retransmission of the same one, so that the media
/// sender answers each request once. The media source field is 0 (the target is
/// named in the FCI).
pub fn write_fir(
    out: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    seq_nr: u8,
) -> Result<usize, RtcpError> {
    let out = sized(out, FIR_LEN)?;
    put_header(out, FMT_FIR, PT_PSFB, FIR_LEN);
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].fill(0);
    out[12..16].copy_from_slice(&media_ssrc.to_be_bytes());
    out[16] = seq_nr;
    out[17..20].fill(0);
    Ok(FIR_LEN)
}

fn sized(out: &mut [u8], need: usize) -> Result<&mut [u8], RtcpError> {
    let have = out.len();
    out.get_mut(..need)
        .ok_or(RtcpError::BufferTooSmall { need, have })
}

/// What a feedback packet asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// Picture loss: `media` wants a keyframe.
    Pli { sender: u32, media: u32 },
    /// Full intra request, from its first FCI entry: `media` is the SSRC asked for
    /// a keyframe (the FCI's, not the header's media field, which FIR sets to 0).
    Fir { sender: u32, media: u32, seq_nr: u8 },
    /// Generic NACK: `media` lost packets (the lost sequence numbers are in the
    /// FCI, not read here).
    Nack { sender: u32, media: u32 },
    /// Receiver estimated maximum bitrate (the estimate is not read here).
    Remb { sender: u32 },
    /// Any other feedback message type.
    Other { pt: u8, fmt: u8 },
}

/// Reads a feedback packet from the parts [`parse_compound`](super::parse_compound)
/// yields as `RtcpPacket::Other { pt, count (= FMT), body }`. `None` if `pt` is not
/// 205/206, or the body is shorter than its type needs (the two SSRCs; PLI none
/// more, FIR and NACK at least one FCI entry). Never panics.
pub fn parse_feedback(pt: u8, fmt: u8, body: &[u8]) -> Option<Feedback> {
    if pt != PT_RTPFB && pt != PT_PSFB {
        return None;
    }
    if body.len() < COMMON_LEN {
        return None;
    }
    let sender = be32(body, 0);
    let media = be32(body, 4);
    let fci = &body[COMMON_LEN..];
    Some(match (pt, fmt) {
        (PT_PSFB, FMT_PLI) => Feedback::Pli { sender, media },
        (PT_PSFB, FMT_FIR) => {
            if fci.len() < FIR_ENTRY_LEN {
                return None;
            }
            Feedback::Fir {
                sender,
                media: be32(fci, 0),
                seq_nr: fci[4],
            }
        }
        (PT_RTPFB, FMT_NACK) => {
            if fci.len() < NACK_ENTRY_LEN {
                return None;
            }
            Feedback::Nack { sender, media }
        }
        (PT_PSFB, FMT_AFB) if fci.starts_with(REMB_ID) => Feedback::Remb { sender },
        _ => Feedback::Other { pt, fmt },
    })
}

#[cfg(test)]
mod tests {
    use super::super::{parse_compound, ReportWriter, RtcpPacket};
    use super::*;

    #[test]
    fn a_pli_is_twelve_bytes_as_rfc_4585_draws_it() {
        let mut buf = [0xaau8; 16];
        assert_eq!(write_pli(&mut buf, 0x0102_0304, 0x0a0b_0c0d), Ok(12));
        assert_eq!(
            buf[..12],
            [0x81, 206, 0, 2, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d]
        );
        assert_eq!(buf[12..], [0xaa; 4], "nothing written past the packet");
    }

    #[test]
    fn a_fir_is_twenty_bytes_with_the_target_in_its_fci() {
        let mut buf = [0xaau8; 20];
        assert_eq!(write_fir(&mut buf, 0x0102_0304, 0x0a0b_0c0d, 7), Ok(20));
        assert_eq!(
            buf,
            [0x84, 206, 0, 4, 1, 2, 3, 4, 0, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d, 7, 0, 0, 0]
        );
    }

    #[test]
    fn writers_refuse_small_buffers() {
        assert_eq!(
            write_pli(&mut [0; 11], 1, 2),
            Err(RtcpError::BufferTooSmall { need: 12, have: 11 })
        );
        assert_eq!(
            write_fir(&mut [0; 19], 1, 2, 3),
            Err(RtcpError::BufferTooSmall { need: 20, have: 19 })
        );
    }

    /// The feedback in a datagram, through the compound parser.
    fn feedback_in(datagram: &[u8]) -> Vec<Option<Feedback>> {
        parse_compound(datagram)
            .map(|p| match p.expect("well-formed") {
                RtcpPacket::Other { pt, count, body } => parse_feedback(pt, count, body),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn written_requests_parse_back_through_parse_compound() {
        // What a node sends: its receiver report, then the keyframe requests.
        let mut buf = [0u8; 128];
        let report = ReportWriter {
            ssrc: 0x51,
            sender: None,
            blocks: &[],
            cname: "node",
        };
        let mut n = report.write(&mut buf).unwrap();
        n += write_pli(&mut buf[n..], 0x51, 0xbeef).unwrap();
        n += write_fir(&mut buf[n..], 0x51, 0xcafe, 200).unwrap();
        assert_eq!(
            feedback_in(&buf[..n]),
            vec![
                None,
                None,
                Some(Feedback::Pli {
                    sender: 0x51,
                    media: 0xbeef
                }),
                Some(Feedback::Fir {
                    sender: 0x51,
                    media: 0xcafe,
                    seq_nr: 200
                }),
            ]
        );
    }

    #[test]
    fn viewers_feedback_reads_by_table() {
        let ssrcs = [0, 0, 0, 1, 0, 0, 0, 2];
        let with = |fci: &[u8]| [&ssrcs[..], fci].concat();
        /// Name, PT, FMT, body, what it reads as.
        type Row = (&'static str, u8, u8, Vec<u8>, Option<Feedback>);
        let table: &[Row] = &[
            (
                "PLI",
                206,
                1,
                with(&[]),
                Some(Feedback::Pli {
                    sender: 1,
                    media: 2,
                }),
            ),
            (
                "PLI with stray FCI bytes",
                206,
                1,
                with(&[0; 4]),
                Some(Feedback::Pli {
                    sender: 1,
                    media: 2,
                }),
            ),
            (
                "FIR, first of two entries",
                206,
                4,
                with(&[0, 0, 0, 9, 5, 0, 0, 0, 0, 0, 0, 8, 6, 0, 0, 0]),
                Some(Feedback::Fir {
                    sender: 1,
                    media: 9,
                    seq_nr: 5,
                }),
            ),
            ("FIR without an entry", 206, 4, with(&[]), None),
            ("FIR with a cut entry", 206, 4, with(&[0, 0, 0, 9, 5]), None),
            (
                "generic NACK",
                205,
                1,
                with(&[0x12, 0x34, 0, 1]),
                Some(Feedback::Nack {
                    sender: 1,
                    media: 2,
                }),
            ),
            ("NACK without an entry", 205, 1, with(&[]), None),
            (
                "REMB",
                206,
                15,
                with(b"REMB\x01\x0a\x00\x00\x00\x00\x00\x02"),
                Some(Feedback::Remb { sender: 1 }),
            ),
            (
                "other application feedback",
                206,
                15,
                with(b"XYZW"),
                Some(Feedback::Other { pt: 206, fmt: 15 }),
            ),
            (
                "transport-wide CC",
                205,
                15,
                with(&[0; 8]),
                Some(Feedback::Other { pt: 205, fmt: 15 }),
            ),
            (
                "SLI",
                206,
                2,
                with(&[0; 4]),
                Some(Feedback::Other { pt: 206, fmt: 2 }),
            ),
            ("no media SSRC", 206, 1, vec![0, 0, 0, 1, 0, 0, 0], None),
            ("empty", 205, 1, vec![], None),
            ("APP is no feedback", 204, 1, with(&[]), None),
            ("RR is no feedback", 201, 1, with(&[]), None),
        ];
        for (name, pt, fmt, body, want) in table {
            assert_eq!(parse_feedback(*pt, *fmt, body), *want, "{name}");
        }
    }
}
