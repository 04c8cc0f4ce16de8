//! H.264 NAL unit headers as RFC 6184 packs them into RTP (§5.2, §5.7.1, §5.8).
//!
//! ```text
//!  NAL header       F(1) NRI(2) Type(5)     Type 1..=23: one NAL unit, as is
//!  STAP-A (24)      header, then per unit: size(16) NAL unit (size bytes)
//!  FU-A (28)        indicator (F NRI 28), FU header S E R Type(5), fragment
//! ```
//!
//! A keyframe here is what a decoder can start from: an IDR slice (type 5), or an
//! SPS (type 7), which encoders send right before an IDR. PPS (8) alone is not one:
//! it may be resent before any frame.

use super::{FrameInfo, PayloadError};

/// The forbidden_zero_bit: 1 means a syntax violation (§5.3).
const F: u8 = 0x80;
const TYPE: u8 = 0x1f;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;
/// FU header start and end bits.
const FU_S: u8 = 0x80;
const FU_E: u8 = 0x40;

/// `payload` is not empty (checked by the caller).
pub(super) fn inspect(payload: &[u8]) -> Result<FrameInfo, PayloadError> {
    match nal_type(payload[0])? {
        t @ 1..=23 => Ok(FrameInfo {
            frame_start: true,
            keyframe: is_key(t),
        }),
        STAP_A => stap_a(payload),
        FU_A => fu_a(payload),
        // STAP-B, MTAP16, MTAP24, FU-B: interleaved mode only, never negotiated.
        25..=27 | 29 => Ok(FrameInfo::default()),
        // 0, 30, 31: undefined by RFC 6184.
        t => Err(PayloadError::BadNal(t)),
    }
}

fn nal_type(header: u8) -> Result<u8, PayloadError> {
    if header & F != 0 {
        return Err(PayloadError::ForbiddenBit);
    }
    Ok(header & TYPE)
}

/// The type of a NAL unit carried inside a STAP-A or FU-A: a plain one (1..=23).
fn inner_type(header: u8) -> Result<u8, PayloadError> {
    match nal_type(header)? {
        t @ 1..=23 => Ok(t),
        t => Err(PayloadError::BadNal(t)),
    }
}

fn is_key(t: u8) -> bool {
    t == 5 || t == 7
}

/// Walks every aggregation unit so that a lying size field is caught here, not
/// by whoever depacketizes downstream.
fn stap_a(p: &[u8]) -> Result<FrameInfo, PayloadError> {
    if p.len() == 1 {
        return Err(PayloadError::EmptyAggregate);
    }
    let mut keyframe = false;
    let mut pos = 1;
    while pos < p.len() {
        let Some(size) = p.get(pos..pos + 2) else {
            return Err(PayloadError::Truncated {
                need: pos + 2,
                have: p.len(),
            });
        };
        let len = usize::from(u16::from_be_bytes([size[0], size[1]]));
        let remaining = p.len() - pos - 2;
        if len == 0 || len > remaining {
            return Err(PayloadError::BadAggregate { len, remaining });
        }
        keyframe |= is_key(inner_type(p[pos + 2])?);
        pos += 2 + len;
    }
    Ok(FrameInfo {
        frame_start: true,
        keyframe,
    })
}

fn fu_a(p: &[u8]) -> Result<FrameInfo, PayloadError> {
    // Indicator, FU header and at least one byte of the fragment.
    if p.len() < 3 {
        return Err(PayloadError::Truncated {
            need: 3,
            have: p.len(),
        });
    }
    let fu = p[1];
    if fu & FU_S != 0 && fu & FU_E != 0 {
        // §5.8: a NAL unit that fits one FU must not be fragmented.
        return Err(PayloadError::StartAndEnd);
    }
    let t = inner_type(fu & TYPE)?;
    let start = fu & FU_S != 0;
    Ok(FrameInfo {
        frame_start: start,
        keyframe: start && is_key(t),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{inspect as inspect_codec, VideoCodec};
    use super::*;

    fn h264(p: &[u8]) -> Result<FrameInfo, PayloadError> {
        inspect_codec(VideoCodec::H264, p)
    }

    const START: FrameInfo = FrameInfo {
        frame_start: true,
        keyframe: false,
    };
    const KEY: FrameInfo = FrameInfo {
        frame_start: true,
        keyframe: true,
    };
    const NEITHER: FrameInfo = FrameInfo {
        frame_start: false,
        keyframe: false,
    };

    #[test]
    fn nal_headers_read_by_table() {
        use PayloadError::*;
        let table: &[(&str, &[u8], Result<FrameInfo, PayloadError>)] = &[
            ("empty", &[], Err(Empty)),
            ("IDR slice", &[0x65, 0x88, 0x84], Ok(KEY)),
            ("non-IDR slice", &[0x41, 0x9a, 0x00], Ok(START)),
            ("SPS", &[0x67, 0x42, 0xc0, 0x1e], Ok(KEY)),
            (
                "PPS alone is no keyframe",
                &[0x68, 0xce, 0x3c, 0x80],
                Ok(START),
            ),
            ("SEI", &[0x06, 0x05], Ok(START)),
            ("a bare one-byte NAL (end of stream)", &[0x0b], Ok(START)),
            ("NRI does not matter", &[0x05, 0x88], Ok(KEY)),
            ("forbidden bit", &[0xe5, 0x88], Err(ForbiddenBit)),
            ("type 0 is undefined", &[0x00, 1], Err(BadNal(0))),
            ("type 30 is undefined", &[0x1e, 1], Err(BadNal(30))),
            ("type 31 is undefined", &[0x1f, 1], Err(BadNal(31))),
            ("STAP-B: not ours", &[0x19, 0, 0, 0, 1, 0x65], Ok(NEITHER)),
            ("MTAP16: not ours", &[0x1a, 0, 0], Ok(NEITHER)),
            ("MTAP24: not ours", &[0x1b, 0, 0], Ok(NEITHER)),
            ("FU-B: not ours", &[0x1d, 0x85, 0, 0, 0x88], Ok(NEITHER)),
            (
                "STAP-A with SPS, PPS, IDR",
                &[
                    0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce, 0, 3, 0x65, 0x88, 0x84,
                ],
                Ok(KEY),
            ),
            (
                "STAP-A with an IDR last",
                &[0x78, 0, 1, 0x06, 0, 2, 0x65, 0x88],
                Ok(KEY),
            ),
            (
                "STAP-A of non-IDR units",
                &[0x78, 0, 1, 0x06, 0, 2, 0x41, 0x9a],
                Ok(START),
            ),
            ("STAP-A header only", &[0x78], Err(EmptyAggregate)),
            (
                "STAP-A size cut",
                &[0x78, 0, 1, 0x06, 0],
                Err(Truncated { need: 6, have: 5 }),
            ),
            (
                "STAP-A size past the end",
                &[0x78, 0, 1, 0x06, 0, 9, 0x65, 0x88],
                Err(BadAggregate {
                    len: 9,
                    remaining: 2,
                }),
            ),
            (
                "STAP-A zero size",
                &[0x78, 0, 0, 0x06],
                Err(BadAggregate {
                    len: 0,
                    remaining: 1,
                }),
            ),
            (
                "STAP-A size without a unit",
                &[0x78, 0, 1],
                Err(BadAggregate {
                    len: 1,
                    remaining: 0,
                }),
            ),
            (
                "STAP-A inside a STAP-A",
                &[0x78, 0, 2, 0x78, 0],
                Err(BadNal(24)),
            ),
            (
                "STAP-A unit with the forbidden bit",
                &[0x78, 0, 1, 0x85],
                Err(ForbiddenBit),
            ),
            ("FU-A start of IDR", &[0x7c, 0x85, 0x88, 0x84], Ok(KEY)),
            ("FU-A middle of IDR", &[0x7c, 0x05, 0x12, 0x34], Ok(NEITHER)),
            ("FU-A end of IDR", &[0x7c, 0x45, 0x12, 0x34], Ok(NEITHER)),
            ("FU-A start of non-IDR", &[0x5c, 0x81, 0x9a], Ok(START)),
            ("FU-A start of SPS", &[0x7c, 0x87, 0x42], Ok(KEY)),
            ("FU-A start and end", &[0x7c, 0xc5, 0x88], Err(StartAndEnd)),
            ("FU-A of a FU-A", &[0x7c, 0x9c, 0x88], Err(BadNal(28))),
            ("FU-A of type 0", &[0x7c, 0x80, 0x88], Err(BadNal(0))),
            (
                "FU-A without fragment data",
                &[0x7c, 0x85],
                Err(Truncated { need: 3, have: 2 }),
            ),
            (
                "FU-A indicator only",
                &[0x7c],
                Err(Truncated { need: 3, have: 1 }),
            ),
            (
                "FU-A with the forbidden bit",
                &[0xfc, 0x85, 0x88],
                Err(ForbiddenBit),
            ),
        ];
        for (name, payload, want) in table {
            assert_eq!(&h264(payload), want, "{name}");
        }
    }

    #[test]
    fn a_stap_a_cut_anywhere_inside_a_unit_is_an_error() {
        let full: &[u8] = &[
            0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce, 0, 3, 0x65, 0x88, 0x84,
        ];
        // Cutting between units leaves a valid shorter STAP-A; anywhere else not.
        let boundaries = [5, 9];
        for cut in 1..full.len() {
            let got = h264(&full[..cut]);
            if boundaries.contains(&cut) {
                assert!(got.is_ok(), "cut at {cut}: {got:?}");
            } else {
                assert!(got.is_err(), "cut at {cut}: {got:?}");
            }
        }
    }
}
