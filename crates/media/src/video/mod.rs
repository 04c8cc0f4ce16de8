//! Video forwarding without decoding: what the node must know of a payload, one
//! viewer's rewritten output stream, and keyframe-request pacing.
//!
//! The node never decodes video. It forwards RTP from publishers to viewers and
//! needs only two facts per packet: does it start a frame, and does it start a
//! keyframe? A viewer can only begin (or change) what it decodes at a keyframe, so
//! every layer or publisher switch waits for one; [`inspect`] answers both
//! questions from the payload descriptor (VP8) or NAL header (H.264) and never
//! looks further into the bitstream.
//!
//! - [`inspect`]: [`FrameInfo`] of one payload, or a [`PayloadError`] for bytes no
//!   conforming sender produces (counted by the caller, never a panic).
//! - [`rewrite`]: [`Rewriter`], one viewer's outgoing stream with its own SSRC and
//!   continuous sequence numbers and timestamps across switches.
//! - [`throttle`]: [`KeyframeThrottle`], at most so many PLI/FIR per publisher
//!   stream, the rest coalesced and released later.
//!
//! Deliberate departures from the payload RFCs, all on the tolerant side: reserved
//! bits are ignored (RFC 7741 and RFC 6184 ask receivers to), and the H.264
//! interleaved-mode packets (STAP-B, MTAP16/24, FU-B), which the node never
//! negotiates, are reported as neither frame start nor keyframe rather than as
//! errors, so a switch simply never happens on them.

mod h264;
pub mod rewrite;
#[cfg(test)]
mod rewrite_tests;
pub mod throttle;
mod vp8;

pub use rewrite::{RewriteStats, Rewriter};
pub use throttle::KeyframeThrottle;

use serde::{Deserialize, Serialize};

/// The RTP clock of every video payload format the node carries (RFC 7741 §6.1,
/// RFC 6184 §8.2.1 both fix 90 kHz).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// The video codecs the node can forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VideoCodec {
    /// VP8 (RFC 7741 payload format).
    Vp8,
    /// H.264 in non-interleaved or single-NAL mode (RFC 6184).
    H264,
}

impl VideoCodec {
    /// RTP timestamp units per second, the same for both: [`VIDEO_CLOCK_RATE`].
    pub const CLOCK_RATE: u32 = VIDEO_CLOCK_RATE;

    /// All codecs, in a stable order.
    pub const ALL: [VideoCodec; 2] = [VideoCodec::Vp8, VideoCodec::H264];

    /// Parses an SDP rtpmap encoding name, case-insensitively: "VP8", "H264", and
    /// "H.264", the spelling some endpoints use outside SDP.
    pub fn from_name(name: &str) -> Option<VideoCodec> {
        if name.eq_ignore_ascii_case("H.264") {
            return Some(VideoCodec::H264);
        }
        VideoCodec::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// The SDP encoding name: "VP8" or "H264".
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "VP8",
            VideoCodec::H264 => "H264",
        }
    }
}

/// What the node needs to know of one packet's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameInfo {
    /// This packet starts a frame (VP8: S bit set and partition index 0; H.264: a
    /// single NAL unit, a STAP-A, or an FU-A with the S bit). For H.264 that is a
    /// NAL-unit start, which a multi-slice frame has several of: enough for
    /// switching, since a switch also needs [`FrameInfo::keyframe`].
    pub frame_start: bool,
    /// This packet starts a keyframe: VP8 the start of a key frame (P bit of the VP8
    /// payload header is 0, RFC 7741 §4.3); H.264 an IDR slice (type 5) or SPS (7)
    /// in a single NAL, in any NAL of a STAP-A, or the first fragment of an FU-A
    /// whose type is 5 (or 7). Implies `frame_start`.
    pub keyframe: bool,
}

/// Why a payload could not be inspected: bytes no conforming sender produces.
/// The caller counts these and may still forward the packet; they never end a
/// stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("empty video payload")]
    Empty,
    #[error("payload of {have} bytes is shorter than the {need} its headers need")]
    Truncated { need: usize, have: usize },
    #[error("H.264 NAL unit type {0} is not valid here (RFC 6184 §5.2)")]
    BadNal(u8),
    #[error("H.264 NAL unit header has the forbidden_zero_bit set")]
    ForbiddenBit,
    #[error("STAP-A unit of {len} bytes overruns the {remaining} bytes left")]
    BadAggregate { len: usize, remaining: usize },
    #[error("STAP-A carries no NAL unit")]
    EmptyAggregate,
    #[error("FU-A header sets both the start and the end bit")]
    StartAndEnd,
}

/// Reads the payload descriptor (VP8, RFC 7741: X/I/M/L/T/K extensions, 7- or
/// 15-bit PictureID) or NAL header(s) (H.264, RFC 6184: single NAL, STAP-A with
/// length checks, FU-A; STAP-B/MTAP/FU-B are reported as non-start, non-key).
///
/// `payload` is the RTP payload, padding already removed. Reads only headers, a
/// few bytes per packet (a STAP-A: one length per aggregated unit); never panics.
pub fn inspect(codec: VideoCodec, payload: &[u8]) -> Result<FrameInfo, PayloadError> {
    if payload.is_empty() {
        return Err(PayloadError::Empty);
    }
    match codec {
        VideoCodec::Vp8 => vp8::inspect(payload),
        VideoCodec::H264 => h264::inspect(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names_parse_as_in_an_sdp_rtpmap() {
        let table: &[(&str, Option<VideoCodec>)] = &[
            ("VP8", Some(VideoCodec::Vp8)),
            ("vp8", Some(VideoCodec::Vp8)),
            ("H264", Some(VideoCodec::H264)),
            ("h264", Some(VideoCodec::H264)),
            ("H.264", Some(VideoCodec::H264)),
            ("h.264", Some(VideoCodec::H264)),
            ("VP9", None),
            ("", None),
            ("H264 ", None),
        ];
        for (name, want) in table {
            assert_eq!(VideoCodec::from_name(name), *want, "{name:?}");
        }
        for c in VideoCodec::ALL {
            assert_eq!(VideoCodec::from_name(c.name()), Some(c));
        }
        assert_eq!(VideoCodec::CLOCK_RATE, 90_000);
    }

    #[test]
    fn codecs_deserialize_from_their_sdp_names() {
        // Config and status spell codecs as SDP does (serde's rename_all).
        use serde::de::value::{Error, StrDeserializer};
        for c in VideoCodec::ALL {
            let de = StrDeserializer::<Error>::new(c.name());
            assert_eq!(VideoCodec::deserialize(de), Ok(c));
        }
        let de = StrDeserializer::<Error>::new("Vp8");
        assert!(VideoCodec::deserialize(de).is_err());
    }

    /// Payloads ffmpeg sent (`-f lavfi -i testsrc=size=320x240:rate=15 -g 10 -f rtp`,
    /// libvpx and libx264), cut to their first 16 bytes, which is more than
    /// `inspect` reads; the STAP-A is whole.
    #[test]
    fn packets_from_real_encoders_are_recognised() {
        const S: FrameInfo = FrameInfo {
            frame_start: true,
            keyframe: false,
        };
        const K: FrameInfo = FrameInfo {
            frame_start: true,
            keyframe: true,
        };
        const N: FrameInfo = FrameInfo {
            frame_start: false,
            keyframe: false,
        };
        use VideoCodec::*;
        let table: &[(&str, VideoCodec, &[u8], FrameInfo)] = &[
            (
                "VP8 key frame start, 15-bit picture id",
                Vp8,
                &[
                    0x90, 0x80, 0x80, 0x00, 0xb0, 0x5a, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0,
                    0x00, 0x00, 0x07,
                ],
                K,
            ),
            (
                "VP8 key frame, 2nd packet",
                Vp8,
                &[
                    0x80, 0x80, 0x80, 0x00, 0x7c, 0x20, 0x91, 0x15, 0x3d, 0x29, 0x88, 0xab, 0x49,
                    0x4a, 0x05, 0x73,
                ],
                N,
            ),
            (
                "VP8 key frame, last packet",
                Vp8,
                &[
                    0x80, 0x80, 0x80, 0x00, 0xcd, 0x04, 0xde, 0x63, 0x80, 0x8e, 0xf1, 0x23, 0xee,
                    0xc8, 0x44, 0x51,
                ],
                N,
            ),
            (
                "VP8 inter frame in one packet",
                Vp8,
                &[
                    0x90, 0x80, 0x80, 0x01, 0x51, 0x14, 0x00, 0x05, 0x10, 0x10, 0x00, 0x1e, 0xd3,
                    0x37, 0x8c, 0x40,
                ],
                S,
            ),
            (
                "H.264 STAP-A of SPS and PPS",
                H264,
                &[
                    0x18, 0x00, 0x19, 0x67, 0xf4, 0x00, 0x0c, 0x91, 0x96, 0x40, 0x50, 0x7e, 0xc0,
                    0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0x78, 0x3c, 0x50,
                    0xa9, 0x20, 0x00, 0x06, 0x68, 0xeb, 0xcc, 0x44, 0x84, 0x40,
                ],
                K,
            ),
            (
                "H.264 FU-A start of an IDR",
                H264,
                &[
                    0x7c, 0x85, 0x88, 0x82, 0x01, 0x5f, 0xfe, 0xf7, 0x84, 0x7e, 0x05, 0x37, 0x0c,
                    0xac, 0xff, 0xea,
                ],
                K,
            ),
            (
                "H.264 FU-A middle of an IDR",
                H264,
                &[
                    0x7c, 0x05, 0x7b, 0x4b, 0xa5, 0xcb, 0x4e, 0x6e, 0x33, 0x90, 0xf2, 0x3f, 0x8c,
                    0x69, 0x3c, 0xc6,
                ],
                N,
            ),
            (
                "H.264 FU-A end of an IDR",
                H264,
                &[
                    0x7c, 0x45, 0xef, 0x15, 0x26, 0xfe, 0x8f, 0x6f, 0x58, 0xc2, 0x39, 0x20, 0xdf,
                    0x7a, 0xda, 0xf6,
                ],
                N,
            ),
            (
                "H.264 P slice in one NAL",
                H264,
                &[
                    0x41, 0x9a, 0x3b, 0x10, 0x63, 0xff, 0xfe, 0xd4, 0xed, 0x13, 0xfe, 0xfa, 0x28,
                    0x41, 0x2f, 0xc4,
                ],
                S,
            ),
        ];
        for (name, codec, payload, want) in table {
            assert_eq!(inspect(*codec, payload), Ok(*want), "{name}");
        }
    }

    #[test]
    fn an_empty_payload_is_an_error_for_both_codecs() {
        for c in VideoCodec::ALL {
            assert_eq!(inspect(c, &[]), Err(PayloadError::Empty));
        }
    }
}
