//! The VP8 payload descriptor (RFC 7741 §4.2) and the first octet of the VP8
//! payload header (§4.3), the only parts of a VP8 packet the node reads.
//!
//! ```text
//!  descriptor           extensions (X=1)             payload header (S=1, PID=0)
//!  X R N S R PID(3)     I L T K RSV(4)               Size0(3) H VER(3) P
//!                       [M PictureID(7 or 15)]       P = 0: key frame
//!                       [TL0PICIDX]
//!                       [TID(2) Y KEYIDX(5)]  if T or K
//! ```
//!
//! Only the start of partition 0 carries the payload header, so only there can a
//! key frame be recognised; every other packet is inspected for its length alone.

use super::{FrameInfo, PayloadError};

/// X: the extension octet follows.
const X: u8 = 0x80;
/// S: this packet starts a VP8 partition.
const S: u8 = 0x10;
/// The partition index (PID) bits.
const PID: u8 = 0x07;
/// I, L, T, K: PictureID, TL0PICIDX, TID and KEYIDX are present.
const I: u8 = 0x80;
const L: u8 = 0x40;
const T: u8 = 0x20;
const K: u8 = 0x10;
/// M: the PictureID is 15 bits (two octets).
const M: u8 = 0x80;
/// P (inverse key frame flag) in the first octet of the payload header.
const P: u8 = 0x01;

/// `payload` is not empty (checked by the caller).
pub(super) fn inspect(payload: &[u8]) -> Result<FrameInfo, PayloadError> {
    let start = descriptor_len(payload)?;
    // A descriptor with nothing after it carries no VP8 data: no encoder sends
    // that, and a frame start without its payload header cannot be judged.
    let Some(&header) = payload.get(start) else {
        return Err(truncated(start + 1, payload));
    };
    let frame_start = payload[0] & S != 0 && payload[0] & PID == 0;
    Ok(FrameInfo {
        frame_start,
        keyframe: frame_start && header & P == 0,
    })
}

/// Length of the payload descriptor, checked against the buffer.
fn descriptor_len(p: &[u8]) -> Result<usize, PayloadError> {
    if p[0] & X == 0 {
        return Ok(1);
    }
    let ext = *p.get(1).ok_or_else(|| truncated(2, p))?;
    let mut len = 2;
    if ext & I != 0 {
        let picture_id = *p.get(len).ok_or_else(|| truncated(len + 1, p))?;
        len += if picture_id & M != 0 { 2 } else { 1 };
    }
    if ext & L != 0 {
        len += 1;
    }
    if ext & (T | K) != 0 {
        len += 1;
    }
    if p.len() < len {
        return Err(truncated(len, p));
    }
    Ok(len)
}

fn truncated(need: usize, p: &[u8]) -> PayloadError {
    PayloadError::Truncated {
        need,
        have: p.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{inspect as inspect_codec, VideoCodec};
    use super::*;

    fn vp8(p: &[u8]) -> Result<FrameInfo, PayloadError> {
        inspect_codec(VideoCodec::Vp8, p)
    }

    const START: FrameInfo = FrameInfo {
        frame_start: true,
        keyframe: false,
    };
    const KEY: FrameInfo = FrameInfo {
        frame_start: true,
        keyframe: true,
    };
    const MIDDLE: FrameInfo = FrameInfo {
        frame_start: false,
        keyframe: false,
    };

    #[test]
    fn descriptors_read_by_table() {
        let table: &[(&str, &[u8], Result<FrameInfo, PayloadError>)] = &[
            ("empty", &[], Err(PayloadError::Empty)),
            ("S, no extension, key frame", &[0x10, 0x00], Ok(KEY)),
            ("S, no extension, inter frame", &[0x10, 0x01], Ok(START)),
            ("no S: continuation", &[0x00, 0x00], Ok(MIDDLE)),
            ("S but partition 1", &[0x11, 0x00], Ok(MIDDLE)),
            ("N (non-reference) does not matter", &[0x30, 0x00], Ok(KEY)),
            ("reserved bits are ignored", &[0x58, 0x00], Ok(KEY)),
            ("I, 7-bit picture id", &[0x90, 0x80, 0x05, 0x00], Ok(KEY)),
            (
                "I, 15-bit picture id",
                &[0x90, 0x80, 0x81, 0x23, 0x01],
                Ok(START),
            ),
            ("L only", &[0x90, 0x40, 0x07, 0x00], Ok(KEY)),
            ("T only", &[0x90, 0x20, 0x40, 0x00], Ok(KEY)),
            ("K only", &[0x90, 0x10, 0x1f, 0x00], Ok(KEY)),
            (
                "T and K share one octet",
                &[0x90, 0x30, 0x5f, 0x01],
                Ok(START),
            ),
            (
                "all, 15-bit",
                &[0x90, 0xf0, 0xff, 0xff, 0x01, 0x40, 0x00],
                Ok(KEY),
            ),
            ("X with no extension bits", &[0x90, 0x00, 0x00], Ok(KEY)),
            (
                "the P bit is read only at a frame start",
                &[0x80, 0x80, 0x05, 0x00],
                Ok(MIDDLE),
            ),
            (
                "descriptor only",
                &[0x10],
                Err(PayloadError::Truncated { need: 2, have: 1 }),
            ),
            (
                "X without extension octet",
                &[0x90],
                Err(PayloadError::Truncated { need: 2, have: 1 }),
            ),
            (
                "I without picture id",
                &[0x90, 0x80],
                Err(PayloadError::Truncated { need: 3, have: 2 }),
            ),
            (
                "M without the second picture id octet",
                &[0x90, 0x80, 0x80],
                Err(PayloadError::Truncated { need: 4, have: 3 }),
            ),
            (
                "all extensions, no payload",
                &[0x90, 0xf0, 0xff, 0xff, 0x01, 0x40],
                Err(PayloadError::Truncated { need: 7, have: 6 }),
            ),
        ];
        for (name, payload, want) in table {
            assert_eq!(&vp8(payload), want, "{name}");
        }
    }

    /// A descriptor with the given extensions, then `payload_header`.
    fn build(ext: u8, wide_id: bool, first: u8, payload_header: u8) -> Vec<u8> {
        let mut v = vec![first | X, ext];
        if ext & I != 0 {
            if wide_id {
                v.extend_from_slice(&[M | 0x12, 0x34]);
            } else {
                v.push(0x12);
            }
        }
        if ext & L != 0 {
            v.push(0x99);
        }
        if ext & (T | K) != 0 {
            v.push(0xe5);
        }
        v.push(payload_header);
        v
    }

    #[test]
    fn every_extension_combination_is_skipped_and_every_truncation_reported() {
        for ext in (0..16u8).map(|bits| bits << 4) {
            for wide_id in [false, true] {
                for (first, header, want) in [
                    (S, 0x00, KEY),
                    (S, P, START),
                    (S | 0x03, 0x00, MIDDLE),
                    (0x00, 0x00, MIDDLE),
                ] {
                    let full = build(ext, wide_id, first, header);
                    let case = format!("ext {ext:#04x} wide {wide_id} first {first:#04x}");
                    assert_eq!(vp8(&full), Ok(want), "{case}");
                    for cut in 1..full.len() {
                        assert!(
                            matches!(
                                vp8(&full[..cut]),
                                Err(PayloadError::Truncated { have, need })
                                    if have == cut && need > cut && need <= full.len()
                            ),
                            "{case} cut at {cut}: {:?}",
                            vp8(&full[..cut])
                        );
                    }
                    // Bytes after the payload header are the codec's, never read.
                    let mut longer = full.clone();
                    longer.extend_from_slice(&[0xff; 20]);
                    assert_eq!(vp8(&longer), Ok(want), "{case} with data");
                }
            }
        }
    }
}
