//! What virtual participants send: pre-encoded frame loops and talk/silence patterns.
//!
//! Encoding live for thousands of participants would make the generator costlier
//! than the node (one Opus encode costs ~115 µs here). So every source is encoded
//! once, before the run, into a loop of 20 ms frames that participants play from:
//! - a **tone** on the 50 Hz grid has a whole number of periods in a 160-sample
//!   frame, so one frame repeats seamlessly; G.711 needs just that frame, and the
//!   stateful codecs (G.722, Opus) get a loop encoded after a warm-up, so the loop
//!   starts from the encoder's steady state;
//! - **speech** (a WAV file) is encoded once per codec and shared, each participant
//!   starting at its own offset;
//! - **silence** is encoded zeros.
//!
//! Talkers switch between a talk loop and the silence loop by a [`Pattern`]; a talk
//! spurt always starts on a frame boundary with the tone's phase at zero, which is
//! the marker the latency measurement finds in the received audio.

use scnf_media::codec::{CodecError, CodecKind, Encoder, FRAME_SAMPLES, MAX_FRAME_PAYLOAD};
use scnf_media::probe::Tone;

/// Tone of each talker slot of a room, Hz. On the 50 Hz grid (whole periods in a
/// frame, so exactly orthogonal in a 160-sample analysis) and at least 350 Hz apart,
/// so an 8 ms window still tells them apart when the onset is located.
pub const SLOT_TONES: [f64; 8] = [500.0, 850.0, 1250.0, 1650.0, 2050.0, 2450.0, 2850.0, 3200.0];

/// Frames encoded before a loop starts, so it begins from steady encoder state.
const WARMUP_FRAMES: usize = 25;
/// Length of the loop for stateful codecs.
const STATEFUL_LOOP_FRAMES: usize = 25;

/// 20 ms frames pre-encoded in one codec, played in a loop.
#[derive(Clone, Debug, Default)]
pub struct FrameLoop {
    data: Vec<u8>,
    /// End offset of each frame in `data`.
    ends: Vec<u32>,
}

impl FrameLoop {
    /// Encodes `pcm` (8 kHz, cut to whole frames) after `warmup` frames of the same
    /// signal fed from its end, so the encoder state at the loop's start is the state
    /// it has when the loop wraps.
    pub fn encode(codec: CodecKind, pcm: &[i16], warmup: usize) -> Result<FrameLoop, CodecError> {
        let frames = pcm.len() / FRAME_SAMPLES;
        let mut enc = Encoder::new(codec)?;
        let mut out = [0u8; MAX_FRAME_PAYLOAD];
        for w in 0..warmup.min(frames) {
            let f = frames - warmup.min(frames) + w;
            enc.encode(&pcm[f * FRAME_SAMPLES..(f + 1) * FRAME_SAMPLES], &mut out)?;
        }
        let mut lp = FrameLoop::default();
        for f in 0..frames {
            let n = enc.encode(&pcm[f * FRAME_SAMPLES..(f + 1) * FRAME_SAMPLES], &mut out)?;
            lp.data.extend_from_slice(&out[..n]);
            lp.ends.push(lp.data.len() as u32);
        }
        Ok(lp)
    }

    /// A tone at `freq` Hz (a multiple of 50) and `dbfs`.
    pub fn tone(codec: CodecKind, freq: f64, dbfs: f64) -> Result<FrameLoop, CodecError> {
        let frames = loop_frames(codec);
        let mut pcm = vec![0i16; frames * FRAME_SAMPLES];
        Tone::at_dbfs(freq, dbfs).fill(&mut pcm);
        FrameLoop::encode(codec, &pcm, warmup_frames(codec))
    }

    /// Digital silence.
    pub fn silence(codec: CodecKind) -> Result<FrameLoop, CodecError> {
        let pcm = vec![0i16; loop_frames(codec) * FRAME_SAMPLES];
        FrameLoop::encode(codec, &pcm, warmup_frames(codec))
    }

    /// Number of frames in the loop.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Frame `i`, wrapping around (empty for an empty loop).
    pub fn frame(&self, i: usize) -> &[u8] {
        if self.ends.is_empty() {
            return &[];
        }
        let i = i % self.ends.len();
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }
}

/// Removes the talker slots' tones from a speech signal (notches 160 Hz wide, run
/// forward and backward so the speech is not delayed), so speech in a room never
/// reads as a talker's tone: the tone analysis stays exact with speech beside it.
pub fn notch_slot_tones(pcm: &mut [i16]) {
    let mut x: Vec<f64> = pcm.iter().map(|&v| v as f64).collect();
    for &f0 in &SLOT_TONES {
        for pass in 0..2 {
            if pass == 1 {
                x.reverse();
            }
            notch(&mut x, f0, 160.0);
            if pass == 1 {
                x.reverse();
            }
        }
    }
    for (o, v) in pcm.iter_mut().zip(x) {
        *o = v.round().clamp(-32768.0, 32767.0) as i16;
    }
}

/// A second-order notch at `f0` Hz, `bw` Hz wide at -3 dB (8 kHz), in place.
fn notch(x: &mut [f64], f0: f64, bw: f64) {
    let w0 = 2.0 * std::f64::consts::PI * f0 / 8000.0;
    let alpha = w0.sin() / (2.0 * (f0 / bw));
    let a0 = 1.0 + alpha;
    let (b0, b1, b2) = (1.0 / a0, -2.0 * w0.cos() / a0, 1.0 / a0);
    let (a1, a2) = (-2.0 * w0.cos() / a0, (1.0 - alpha) / a0);
    let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
    for v in x.iter_mut() {
        let y = b0 * *v + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
        x2 = x1;
        x1 = *v;
        y2 = y1;
        y1 = y;
        *v = y;
    }
}

fn stateful(codec: CodecKind) -> bool {
    !matches!(codec, CodecKind::Pcmu | CodecKind::Pcma | CodecKind::L16)
}

fn loop_frames(codec: CodecKind) -> usize {
    if stateful(codec) {
        STATEFUL_LOOP_FRAMES
    } else {
        1
    }
}

fn warmup_frames(codec: CodecKind) -> usize {
    if stateful(codec) {
        WARMUP_FRAMES
    } else {
        0
    }
}

/// When a talker talks: `talk_ms` on, then `silence_ms` off, repeating, shifted by a
/// per-participant offset. `silence_ms == 0` talks all the time; `talk_ms == 0`
/// never talks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub talk_ms: u32,
    pub silence_ms: u32,
}

impl Pattern {
    pub const ALWAYS: Pattern = Pattern {
        talk_ms: 1000,
        silence_ms: 0,
    };

    fn frames(ms: u32) -> u64 {
        (ms as u64).div_ceil(20)
    }

    fn cycle(&self) -> u64 {
        (Self::frames(self.talk_ms) + Self::frames(self.silence_ms)).max(1)
    }

    /// Whether frame `k` (counted from the participant's first) is a talk frame, with
    /// the cycle shifted by `offset` frames.
    pub fn is_on(&self, k: u64, offset: u64) -> bool {
        Self::frames(self.talk_ms) > 0 && (k + offset) % self.cycle() < Self::frames(self.talk_ms)
    }

    /// Whether the talk state is `on` in every frame of `k1..=k2` (true when empty).
    pub fn constant_over(&self, k1: u64, k2: u64, offset: u64, on: bool) -> bool {
        if k2 < k1 {
            return true;
        }
        let talk = Self::frames(self.talk_ms);
        let cycle = self.cycle();
        if talk == 0 {
            return !on;
        }
        if talk >= cycle {
            return on;
        }
        if k2 - k1 + 1 >= cycle {
            return false;
        }
        // The run of equal states that frame k1 belongs to ends at `run_end`.
        let pos = (k1 + offset) % cycle;
        let run_end = if pos < talk {
            k1 + (talk - pos) - 1
        } else {
            k1 + (cycle - pos) - 1
        };
        self.is_on(k1, offset) == on && k2 <= run_end
    }

    /// Whether frame `k` starts a talk spurt.
    pub fn is_onset(&self, k: u64, offset: u64) -> bool {
        self.is_on(k, offset) && (k == 0 || !self.is_on(k - 1, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scnf_media::codec::Decoder;
    use scnf_media::probe::tone::level_dbfs;

    #[test]
    fn a_g711_tone_is_one_seamless_frame_and_decodes_to_its_level() {
        for codec in [CodecKind::Pcmu, CodecKind::Pcma] {
            let lp = FrameLoop::tone(codec, 850.0, -20.0).unwrap();
            assert_eq!(lp.len(), 1);
            let mut dec = Decoder::new(codec).unwrap();
            let mut pcm = vec![0i16; 8000];
            for (k, chunk) in pcm.chunks_mut(FRAME_SAMPLES).enumerate() {
                dec.decode(lp.frame(k), chunk).unwrap();
            }
            let l = level_dbfs(&pcm, 850.0);
            assert!((l + 20.0).abs() < 0.5, "{codec:?} {l}");
            assert!(level_dbfs(&pcm, 1250.0) < -60.0);
        }
    }

    #[test]
    fn stateful_codec_loops_play_the_tone_across_the_wrap() {
        for codec in [CodecKind::G722, CodecKind::Opus] {
            let lp = FrameLoop::tone(codec, 1250.0, -20.0).unwrap();
            assert_eq!(lp.len(), STATEFUL_LOOP_FRAMES);
            let mut dec = Decoder::new(codec).unwrap();
            // Three times round the loop; measure the second second.
            let mut pcm = vec![0i16; 3 * STATEFUL_LOOP_FRAMES * FRAME_SAMPLES];
            for (k, chunk) in pcm.chunks_mut(FRAME_SAMPLES).enumerate() {
                dec.decode(lp.frame(k), chunk).unwrap();
            }
            let tail = &pcm[STATEFUL_LOOP_FRAMES * FRAME_SAMPLES..];
            let l = level_dbfs(tail, 1250.0);
            assert!((l + 20.0).abs() < 1.5, "{codec:?} {l}");
            assert!(level_dbfs(tail, 500.0) < l - 35.0, "{codec:?}");
        }
    }

    #[test]
    fn silence_loops_decode_to_silence() {
        for codec in [
            CodecKind::Pcmu,
            CodecKind::Pcma,
            CodecKind::G722,
            CodecKind::Opus,
        ] {
            let lp = FrameLoop::silence(codec).unwrap();
            let mut dec = Decoder::new(codec).unwrap();
            let mut pcm = [0i16; FRAME_SAMPLES];
            for k in 0..2 * lp.len() {
                dec.decode(lp.frame(k), &mut pcm).unwrap();
                let peak = pcm.iter().map(|x| x.unsigned_abs()).max().unwrap();
                // -60 dBFS: G.722 idles with a little ADPCM noise.
                assert!(peak <= 32, "{codec:?} frame {k}: peak {peak}");
            }
        }
    }

    #[test]
    fn notched_speech_keeps_its_body_but_loses_the_slot_tones() {
        // Stand-in for speech: every 50 Hz harmonic from 100 to 3400 Hz.
        let mut pcm = vec![0i16; 8000];
        for h in 2..=68 {
            let mut t = vec![0i16; 8000];
            Tone::at_dbfs(50.0 * h as f64, -40.0).fill(&mut t);
            for (p, v) in pcm.iter_mut().zip(t) {
                *p += v;
            }
        }
        notch_slot_tones(&mut pcm);
        for &f in &SLOT_TONES {
            assert!(level_dbfs(&pcm, f) < -80.0, "{f} Hz remains");
        }
        // Between the notches the harmonics keep their level (200 Hz off a notch
        // still loses a little: about 0.6 dB per notch and pass).
        for f in [300.0, 1050.0, 2250.0, 3000.0] {
            assert!((level_dbfs(&pcm, f) + 40.0).abs() < 3.0, "{f} Hz lost");
        }
    }

    #[test]
    fn slot_tones_are_on_the_grid_and_apart() {
        for w in SLOT_TONES.windows(2) {
            assert!(w[1] - w[0] >= 350.0);
        }
        assert!(SLOT_TONES.iter().all(|f| f % 50.0 == 0.0));
    }

    #[test]
    fn a_pattern_alternates_talk_and_silence_with_its_offset() {
        let p = Pattern {
            talk_ms: 100,
            silence_ms: 60,
        };
        let on: Vec<bool> = (0..16).map(|k| p.is_on(k, 0)).collect();
        let expect = [1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0];
        assert_eq!(on, expect.map(|x| x == 1));
        assert!(p.is_on(0, 0) && !p.is_on(0, 5) && p.is_on(0, 3));
        assert!(p.is_onset(0, 0) && p.is_onset(8, 0) && !p.is_onset(1, 0));
        assert!(Pattern::ALWAYS.is_on(12345, 7));
        let never = Pattern {
            talk_ms: 0,
            silence_ms: 100,
        };
        assert!(!never.is_on(3, 0) && never.constant_over(0, 100, 0, false));
    }

    #[test]
    fn constant_over_agrees_with_frame_by_frame() {
        let p = Pattern {
            talk_ms: 120,
            silence_ms: 80,
        };
        for offset in 0..10 {
            for k1 in 0..25u64 {
                for k2 in k1.saturating_sub(1)..k1 + 25 {
                    for on in [false, true] {
                        let slow = (k1..=k2).all(|k| p.is_on(k, offset) == on);
                        assert_eq!(
                            p.constant_over(k1, k2, offset, on),
                            slow,
                            "{k1} {k2} {offset} {on}"
                        );
                    }
                }
            }
        }
    }
}
