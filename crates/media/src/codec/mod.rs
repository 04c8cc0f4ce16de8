//! Audio codecs behind one interface, over 20 ms frames at the 8 kHz mix rate.
//!
//! The mixer works on 8 kHz linear PCM. Every codec decodes *to* and encodes *from*
//! that rate directly, without a resampler:
//! - G.711 A/mu-law and L16 are 8 kHz already;
//! - G.722's lower sub-band is the 0-4 kHz signal sampled at 8 kHz, so the decoder
//!   runs only the low-band ADPCM (no QMF) and the encoder feeds 8 kHz PCM into the
//!   low band with a silent high band — still a valid G.722 stream;
//! - Opus decodes and encodes at 8 kHz natively (narrowband).
//!
//! [`Decoder`] and [`Encoder`] are enums rather than trait objects: the set is closed,
//! dispatch is a jump table, and each value is small enough to live inline in a leg.

pub mod g711;
pub mod g722;
pub mod l16;
pub mod opus;

use serde::{Deserialize, Serialize};

/// Sample rate of the mix, in Hz.
pub const MIX_RATE: u32 = 8000;
/// Samples in one 20 ms mix frame at [`MIX_RATE`].
pub const FRAME_SAMPLES: usize = 160;
/// Largest payload any encoder writes for one 20 ms frame (L16: 320 bytes).
pub const MAX_FRAME_PAYLOAD: usize = 400;
/// The longest packet any codec carries, in samples at [`MIX_RATE`]: 120 ms, the
/// Opus maximum (RFC 6716 section 3.2.5, R5).
pub const MAX_PACKET_SAMPLES: usize = 120 * MIX_RATE as usize / 1000;

/// The codecs a leg can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CodecKind {
    /// G.711 mu-law (RTP/AVP static payload type 0).
    Pcmu,
    /// G.711 A-law (static payload type 8).
    Pcma,
    /// G.722 at 64 kbit/s (static payload type 9, RTP clock 8000 by RFC 3551).
    G722,
    /// Opus (dynamic payload type, RTP clock 48000 by RFC 7587).
    Opus,
    /// 16-bit linear, network byte order, 8 kHz mono (dynamic payload type); used
    /// between nodes so cascaded audio is not companded twice.
    L16,
}

impl CodecKind {
    /// All codecs, in a stable order (used for per-codec tables).
    pub const ALL: [CodecKind; 5] = [
        CodecKind::Pcmu,
        CodecKind::Pcma,
        CodecKind::G722,
        CodecKind::Opus,
        CodecKind::L16,
    ];

    /// Index into per-codec tables of length [`CodecKind::ALL`]`.len()`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// RTP timestamp units per second.
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            _ => 8_000,
        }
    }

    /// RTP timestamp units in one 20 ms frame.
    pub fn frame_ts(self) -> u32 {
        self.rtp_clock_rate() / MIX_RATE * FRAME_SAMPLES as u32
    }

    /// Frames of digital silence after which a peer's decoder can switch from one
    /// encoder's stream to another's of this codec without hearing a seam: the
    /// silence has brought both encoders and the decoder to the same state (Opus).
    /// `None`: switch at any frame. G.711 and L16 have no state; G.722's adaptive
    /// decoder re-converges on the new stream within a few hundred milliseconds of
    /// signal, while silence would freeze its mismatch until the next onset. Measured
    /// by the test `a_switched_stream_decodes_as_its_own_after_the_seam`.
    pub fn seam_silence_frames(self) -> Option<u32> {
        match self {
            CodecKind::Opus => Some(3),
            _ => None,
        }
    }

    /// The static payload type, when RFC 3551 assigns one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
            CodecKind::G722 => Some(9),
            CodecKind::Opus | CodecKind::L16 => None,
        }
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::G722 => "G722",
            CodecKind::Opus => "opus",
            CodecKind::L16 => "L16",
        }
    }

    /// Parses an SDP encoding name, case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        CodecKind::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

/// Why a codec call failed. Decode errors are counted per leg and the frame is
/// concealed; they never end a call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("output buffer of {have} samples/bytes is smaller than the {need} needed")]
    BufferTooSmall { need: usize, have: usize },
    #[error("payload of {len} bytes is not valid for {codec:?}")]
    BadPayload { codec: CodecKind, len: usize },
    #[error("opus: {0}")]
    Opus(String),
}

/// A per-leg decoder: payload in, 8 kHz PCM out.
pub enum Decoder {
    Pcmu,
    Pcma,
    G722(Box<g722::LowBandDecoder>),
    Opus(Box<opus::OpusDecoder>),
    L16,
}

impl Decoder {
    /// Creates a decoder in its reset state.
    pub fn new(kind: CodecKind) -> Result<Self, CodecError> {
        Ok(match kind {
            CodecKind::Pcmu => Decoder::Pcmu,
            CodecKind::Pcma => Decoder::Pcma,
            CodecKind::G722 => Decoder::G722(Box::default()),
            CodecKind::Opus => Decoder::Opus(Box::new(opus::OpusDecoder::new()?)),
            CodecKind::L16 => Decoder::L16,
        })
    }

    pub fn kind(&self) -> CodecKind {
        match self {
            Decoder::Pcmu => CodecKind::Pcmu,
            Decoder::Pcma => CodecKind::Pcma,
            Decoder::G722(_) => CodecKind::G722,
            Decoder::Opus(_) => CodecKind::Opus,
            Decoder::L16 => CodecKind::L16,
        }
    }

    /// How many 8 kHz samples `payload` decodes to, or an error when the payload
    /// cannot be valid for this codec (e.g. odd-length L16).
    pub fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        match self {
            Decoder::Pcmu | Decoder::Pcma | Decoder::G722(_) => Ok(payload.len()),
            Decoder::L16 if payload.len() % 2 == 0 => Ok(payload.len() / 2),
            Decoder::L16 => Err(CodecError::BadPayload {
                codec: CodecKind::L16,
                len: payload.len(),
            }),
            Decoder::Opus(d) => d.samples_in(payload),
        }
    }

    /// Decodes `payload` into `out` and returns the number of samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let need = self.samples_in(payload)?;
        if out.len() < need {
            return Err(CodecError::BufferTooSmall {
                need,
                have: out.len(),
            });
        }
        match self {
            Decoder::Pcmu => {
                for (o, &b) in out.iter_mut().zip(payload) {
                    *o = g711::ulaw_decode(b);
                }
                Ok(need)
            }
            Decoder::Pcma => {
                for (o, &b) in out.iter_mut().zip(payload) {
                    *o = g711::alaw_decode(b);
                }
                Ok(need)
            }
            Decoder::G722(d) => Ok(d.decode(payload, out)),
            Decoder::L16 => Ok(l16::decode(payload, out)),
            Decoder::Opus(d) => d.decode(payload, out),
        }
    }

    /// The one sample value `payload` decodes to throughout, when that is known
    /// without decoding: a G.711 payload of one repeated byte (what a muted or
    /// silent phone sends: 0xFF in mu-law, 0xD5 in A-law). G.711 decodes each byte
    /// on its own, so such a payload decodes to that byte's sample, every time.
    /// `None` for anything else, and for every other codec.
    pub fn uniform(&self, payload: &[u8]) -> Option<i16> {
        let (&first, _) = payload.split_first()?;
        let decode: fn(u8) -> i16 = match self {
            Decoder::Pcmu => g711::ulaw_decode,
            Decoder::Pcma => g711::alaw_decode,
            _ => return None,
        };
        // A fold without an early exit: the compiler vectorises it.
        let differs = payload.iter().fold(0u8, |acc, &b| acc | (b ^ first));
        (differs == 0).then(|| decode(first))
    }

    /// Fills `out` for a lost frame with the codec's own concealment and returns
    /// true, or returns false when the codec has none (then the caller applies the
    /// generic waveform-repetition concealment).
    pub fn conceal(&mut self, out: &mut [i16]) -> bool {
        match self {
            Decoder::Opus(d) => d.conceal(out).is_ok(),
            _ => false,
        }
    }
}

/// A per-leg (or per-mix) encoder: 8 kHz PCM in, payload out.
pub enum Encoder {
    Pcmu,
    Pcma,
    G722(Box<g722::LowBandEncoder>),
    Opus(Box<opus::OpusEncoder>),
    L16,
}

impl Encoder {
    /// Creates an encoder in its reset state.
    pub fn new(kind: CodecKind) -> Result<Self, CodecError> {
        Ok(match kind {
            CodecKind::Pcmu => Encoder::Pcmu,
            CodecKind::Pcma => Encoder::Pcma,
            CodecKind::G722 => Encoder::G722(Box::default()),
            CodecKind::Opus => Encoder::Opus(Box::new(opus::OpusEncoder::new()?)),
            CodecKind::L16 => Encoder::L16,
        })
    }

    pub fn kind(&self) -> CodecKind {
        match self {
            Encoder::Pcmu => CodecKind::Pcmu,
            Encoder::Pcma => CodecKind::Pcma,
            Encoder::G722(_) => CodecKind::G722,
            Encoder::Opus(_) => CodecKind::Opus,
            Encoder::L16 => CodecKind::L16,
        }
    }

    /// Encodes `pcm` (8 kHz) into `out` and returns the payload length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let need = match self {
            Encoder::L16 => pcm.len() * 2,
            Encoder::Opus(_) => 1, // Opus sizes itself; it checks `out` on its own.
            _ => pcm.len(),
        };
        if out.len() < need {
            return Err(CodecError::BufferTooSmall {
                need,
                have: out.len(),
            });
        }
        match self {
            Encoder::Pcmu => {
                for (o, &x) in out.iter_mut().zip(pcm) {
                    *o = g711::ulaw_encode(x);
                }
                Ok(pcm.len())
            }
            Encoder::Pcma => {
                for (o, &x) in out.iter_mut().zip(pcm) {
                    *o = g711::alaw_encode(x);
                }
                Ok(pcm.len())
            }
            Encoder::G722(e) => Ok(e.encode(pcm, out)),
            Encoder::L16 => Ok(l16::encode(pcm, out)),
            Encoder::Opus(e) => e.encode(pcm, out),
        }
    }
}

impl Encoder {
    /// Makes this encoder continue exactly where `other` (same codec) stands, so a
    /// listener can switch from the room's shared stream to its own without a
    /// discontinuity its decoder would hear. Stateless codecs ignore it.
    pub fn clone_state_from(&mut self, other: &Encoder) {
        match (self, other) {
            (Encoder::G722(mine), Encoder::G722(theirs)) => {
                mine.as_mut().clone_from(theirs.as_ref())
            }
            (Encoder::Opus(mine), Encoder::Opus(theirs)) => mine.clone_state_from(theirs),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_g711_payload_of_one_repeated_byte_is_uniform() {
        let g722 = Decoder::new(CodecKind::G722).unwrap();
        let l16 = Decoder::new(CodecKind::L16).unwrap();
        let mut almost = [0xffu8; 160];
        almost[159] = 0xfe;
        // (decoder, payload, want)
        let cases: [(&Decoder, &[u8], Option<i16>); 8] = [
            (&Decoder::Pcmu, &[0xff; 160], Some(0)),
            (&Decoder::Pcmu, &[0x7f; 80], Some(0)),
            (&Decoder::Pcma, &[0xd5; 160], Some(g711::alaw_decode(0xd5))),
            (&Decoder::Pcmu, &[0x80; 160], Some(g711::ulaw_decode(0x80))),
            (&Decoder::Pcmu, &almost, None),
            (&Decoder::Pcmu, &[], None),
            (&g722, &[0xff; 160], None),
            (&l16, &[0; 320], None),
        ];
        for (dec, payload, want) in cases {
            assert_eq!(
                dec.uniform(payload),
                want,
                "{:?} {:?}",
                dec.kind(),
                &payload[..payload.len().min(2)]
            );
            if let Some(v) = want {
                // What decoding would have given, sample for sample.
                let mut out = vec![0i16; payload.len()];
                let mut fresh = Decoder::new(dec.kind()).unwrap();
                fresh.decode(payload, &mut out).unwrap();
                assert!(out.iter().all(|&x| x == v));
            }
        }
    }

    #[test]
    fn an_encoder_that_takes_over_anothers_state_continues_its_stream_exactly() {
        // The room's shared encoder has been running; a listener becomes a talker and
        // its own encoder takes over from there. Both stateful codecs hand over.
        for codec in [CodecKind::G722, CodecKind::Opus] {
            let mut shared = Encoder::new(codec).unwrap();
            let mut own = Encoder::new(codec).unwrap();
            let mut fresh = Encoder::new(codec).unwrap();
            let mut pcm = [0i16; FRAME_SAMPLES];
            let frame = |k: usize, pcm: &mut [i16; FRAME_SAMPLES]| {
                for (i, s) in pcm.iter_mut().enumerate() {
                    let t = (k * FRAME_SAMPLES + i) as f64;
                    *s = ((t * 0.3).sin() * 6000.0 + (t * 0.071).sin() * 3000.0) as i16;
                }
            };
            let (mut a, mut b) = ([0u8; MAX_FRAME_PAYLOAD], [0u8; MAX_FRAME_PAYLOAD]);
            for k in 0..20 {
                frame(k, &mut pcm);
                shared.encode(&pcm, &mut a).unwrap();
            }
            own.clone_state_from(&shared);
            let mut differs_from_fresh = false;
            for k in 20..30 {
                frame(k, &mut pcm);
                let n = shared.encode(&pcm, &mut a).unwrap();
                let m = own.encode(&pcm, &mut b).unwrap();
                assert_eq!(
                    a[..n],
                    b[..m],
                    "{codec:?} frame {k}: same state, same bytes"
                );
                // Without the hand-over a fresh encoder produces other bytes.
                let f = fresh.encode(&pcm, &mut b).unwrap();
                differs_from_fresh |= a[..n] != b[..f];
            }
            assert!(differs_from_fresh, "{codec:?}");
        }
    }

    /// Two voices, each swelling and fading, at `seed`'s pitches: enough like speech
    /// to exercise the predictors of G.722 and SILK.
    fn voice(seed: f64, t: usize) -> f64 {
        let x = t as f64 / MIX_RATE as f64;
        let envelope = ((x * 3.0 + seed).sin() * 0.5 + 0.5).powi(2);
        let w = 2.0 * std::f64::consts::PI;
        envelope
            * ((x * (180.0 + seed * 40.0) * w).sin() * 5000.0
                + (x * (700.0 + seed * 90.0) * w).sin() * 2500.0
                + (x * 1900.0 * w + seed).sin() * 900.0)
    }

    /// The signal-to-difference ratio in dB of `got` against `want`.
    fn snr_db(want: &[i16], got: &[i16]) -> f64 {
        let sq = |v: f64| v * v;
        let p: f64 = want.iter().map(|&a| sq(a as f64)).sum();
        let e: f64 = want
            .iter()
            .zip(got)
            .map(|(&a, &b)| sq(a as f64 - b as f64))
            .sum();
        10.0 * ((p + 1.0) / (e + 1.0)).log10()
    }

    /// A peer's decoder follows a talker's own encoder (the room minus itself), then
    /// is switched to the room's shared encoder after `silence` frames of a silent
    /// mix. Returns, for the 20 frames of speech after the silence, the SNR of what it
    /// decodes against what the shared stream's own decoder decodes.
    fn after_a_switch(codec: CodecKind, silence: usize) -> Vec<f64> {
        let mut own = Encoder::new(codec).unwrap();
        let mut shared = Encoder::new(codec).unwrap();
        let mut switched = Decoder::new(codec).unwrap();
        let mut reference = Decoder::new(codec).unwrap();
        let (talk, quiet_end) = (100, 100 + silence);
        let mut snrs = Vec::new();
        for k in 0..quiet_end + 20 {
            let (mut mix, mut minus) = ([0i16; FRAME_SAMPLES], [0i16; FRAME_SAMPLES]);
            if !(talk..quiet_end).contains(&k) {
                for i in 0..FRAME_SAMPLES {
                    let (a, b) = (
                        voice(0.0, k * FRAME_SAMPLES + i),
                        voice(1.3, k * FRAME_SAMPLES + i),
                    );
                    mix[i] = (a + b) as i16;
                    minus[i] = if k < talk { b as i16 } else { mix[i] };
                }
            }
            let (mut ps, mut po) = ([0u8; MAX_FRAME_PAYLOAD], [0u8; MAX_FRAME_PAYLOAD]);
            let ns = shared.encode(&mix, &mut ps).unwrap();
            let no = own.encode(&minus, &mut po).unwrap();
            let (mut want, mut got) = ([0i16; FRAME_SAMPLES], [0i16; FRAME_SAMPLES]);
            reference.decode(&ps[..ns], &mut want).unwrap();
            // The switch is made on the last silent frame, the latest a room can know
            // the silence has lasted long enough.
            let payload = if k + 1 < quiet_end {
                &po[..no]
            } else {
                &ps[..ns]
            };
            switched.decode(payload, &mut got).unwrap();
            if k >= quiet_end {
                snrs.push(snr_db(&want, &got));
            }
        }
        snrs
    }

    #[test]
    fn a_switched_stream_decodes_as_its_own_after_the_seam() {
        // Opus: after the codec's silence, the switch is seamless from the first frame
        // of speech; without it the first frames are far off.
        let n = CodecKind::Opus.seam_silence_frames().unwrap() as usize;
        let seamless = after_a_switch(CodecKind::Opus, n);
        assert!(seamless.iter().all(|&s| s > 60.0), "{seamless:.0?}");
        let abrupt = after_a_switch(CodecKind::Opus, 0);
        assert!(abrupt[0] < 30.0, "{abrupt:.0?}");
        // G.722: switched during speech, the decoder re-converges within 20 frames,
        // and waiting for silence first does not help the onset after it.
        assert_eq!(CodecKind::G722.seam_silence_frames(), None);
        let abrupt = after_a_switch(CodecKind::G722, 0);
        assert!(abrupt[0] < 30.0 && abrupt[19] > 60.0, "{abrupt:.0?}");
        let after_silence = after_a_switch(CodecKind::G722, 3);
        assert!(after_silence[0] < abrupt[0] + 3.0, "{after_silence:.0?}");
        // Stateless codecs: every frame is a seam-free switch.
        for codec in [CodecKind::Pcmu, CodecKind::Pcma, CodecKind::L16] {
            assert_eq!(codec.seam_silence_frames(), None);
            let abrupt = after_a_switch(codec, 0);
            assert!(abrupt.iter().all(|&s| s > 90.0), "{codec:?}: {abrupt:.0?}");
        }
    }

    #[test]
    fn codec_names_round_trip_and_clock_rates_follow_the_rtp_profiles() {
        for c in CodecKind::ALL {
            assert_eq!(CodecKind::from_name(c.name()), Some(c));
            assert_eq!(CodecKind::from_name(&c.name().to_lowercase()), Some(c));
        }
        assert_eq!(CodecKind::from_name("G729"), None);
        assert_eq!(
            CodecKind::G722.rtp_clock_rate(),
            8000,
            "RFC 3551's G.722 quirk"
        );
        assert_eq!(CodecKind::Opus.frame_ts(), 960);
        assert_eq!(CodecKind::Pcma.static_payload_type(), Some(8));
    }
}
