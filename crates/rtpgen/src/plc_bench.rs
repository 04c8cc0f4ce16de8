//! Loss-concealment bench: real speech through a codec, a seeded loss model and the
//! node's own playout, once per way of filling the holes, so an objective metric
//! (PESQ, by `bench/plc/pesq_table.py`; segmental SNR here) can compare them.
//!
//! # What is compared
//! - [`Fill::Ours`]: the playout as the node runs it (the codec's own concealment,
//!   else [`scnf_media::jitter::plc`]);
//! - [`Fill::Zero`]: holes played as silence;
//! - [`Fill::Repeat`]: the last decoded 20 ms played again (and again), no smoothing.
//!
//! All three go through the same [`Playout`] on a virtual clock (packets every
//! 20 ms, a fixed 20 ms path, ticks 7 ms after arrivals), so the only difference is
//! what a codec-less concealment call returns: zero-fill and repetition are fake
//! codec concealments. The playout starts at its floor delay, so it never has to
//! converge by skipping a frame and every run is sample-aligned with the clean one.
//! After 60 ms of loss the playout goes silent whatever fills the hole.
//!
//! This is a bench tool (it allocates freely); the loss pattern depends only on the
//! model and the seed, the same for every fill.

use scnf_media::codec::{CodecError, CodecKind, Decoder, Encoder, FRAME_SAMPLES};
use scnf_media::jitter::{FrameDecoder, FrameKind, JitterConfig, Playout};
use scnf_media::util::Rng;
use std::time::{Duration, Instant};

/// How lost audio is filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    Ours,
    Zero,
    Repeat,
}

impl Fill {
    pub const ALL: [Fill; 3] = [Fill::Ours, Fill::Zero, Fill::Repeat];

    pub fn name(self) -> &'static str {
        match self {
            Fill::Ours => "ours",
            Fill::Zero => "zero",
            Fill::Repeat => "repeat",
        }
    }
}

/// Which packets are lost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossModel {
    /// Each packet independently with this probability.
    Random(f64),
    /// Gilbert-Elliott with a lossless good state and an all-lost bad state: enter
    /// bad with `enter`, leave it with `leave` (mean burst `1 / leave` packets).
    Bursty { enter: f64, leave: f64 },
}

impl LossModel {
    pub fn name(&self) -> String {
        match *self {
            LossModel::Random(p) => format!("random-{}pct", (p * 100.0).round()),
            LossModel::Bursty { enter, leave } => {
                let rate = enter / (enter + leave);
                format!(
                    "bursty-{}pct-mean{}",
                    (rate * 100.0).round(),
                    (1.0 / leave).round()
                )
            }
        }
    }

    /// Whether each of `packets` packets is lost. The first is never lost (it
    /// anchors the playout, so every run starts on the same tick).
    pub fn pattern(&self, packets: usize, seed: u64) -> Vec<bool> {
        let mut rng = Rng::new(seed);
        let mut bad = false;
        let mut lost: Vec<bool> = (0..packets)
            .map(|_| match *self {
                LossModel::Random(p) => rng.chance(p),
                LossModel::Bursty { enter, leave } => {
                    bad = if bad {
                        !rng.chance(leave)
                    } else {
                        rng.chance(enter)
                    };
                    bad
                }
            })
            .collect();
        if let Some(first) = lost.first_mut() {
            *first = false;
        }
        lost
    }
}

/// The decoder with a switchable concealment.
struct Bench {
    dec: Decoder,
    fill: Fill,
    last: [i16; FRAME_SAMPLES],
    pos: usize,
}

impl FrameDecoder for Bench {
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        self.dec.samples_in(payload)
    }
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let n = self.dec.decode(payload, out)?;
        if n >= FRAME_SAMPLES {
            self.last.copy_from_slice(&out[n - FRAME_SAMPLES..n]);
        }
        self.pos = 0;
        Ok(n)
    }
    fn conceal(&mut self, out: &mut [i16]) -> bool {
        match self.fill {
            Fill::Ours => self.dec.conceal(out),
            Fill::Zero => {
                out.fill(0);
                true
            }
            Fill::Repeat => {
                for o in out.iter_mut() {
                    *o = self.last[self.pos];
                    self.pos = (self.pos + 1) % FRAME_SAMPLES;
                }
                true
            }
        }
    }
}

/// Encodes `speech` (8 kHz) with `codec` in 20 ms packets, loses the packets
/// `lost` marks, plays the rest out through a [`Playout`] and returns what it played,
/// from its first decoded frame, as long as the input (whole frames).
pub fn play(speech: &[i16], codec: CodecKind, lost: &[bool], fill: Fill) -> Vec<i16> {
    let frames = speech.len() / FRAME_SAMPLES;
    let mut enc = Encoder::new(codec).expect("bench codecs need no setup");
    let mut dec = Bench {
        dec: Decoder::new(codec).expect("bench codecs need no setup"),
        fill,
        last: [0; FRAME_SAMPLES],
        pos: 0,
    };
    let d = JitterConfig::default();
    let cfg = JitterConfig {
        start_delay: d.min_delay,
        ..d
    };
    let mut playout = Playout::new(&cfg, codec.rtp_clock_rate());
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut payload = [0u8; 1500];
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut out = Vec::with_capacity(speech.len());
    let mut started = false;
    let (mut k, mut tick) = (0usize, 0u64);
    while out.len() < frames * FRAME_SAMPLES && tick < frames as u64 * 2 + 50 {
        let tick_ms = 7 + 20 * tick;
        // Packet k arrives 20 ms after it is sent at 20 k ms.
        while k < frames && 20 + 20 * k as u64 <= tick_ms {
            let pcm = &speech[k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES];
            let n = enc
                .encode(pcm, &mut payload)
                .expect("a whole frame encodes");
            if !lost.get(k).copied().unwrap_or(false) {
                let ts = (k as u32).wrapping_mul(codec.frame_ts());
                let _ = playout.insert(
                    at(20 + 20 * k as u64),
                    k as u16,
                    ts,
                    k == 0,
                    &payload[..n],
                    &dec,
                );
            }
            k += 1;
        }
        let kind = playout.next_frame(at(tick_ms), &mut dec, &mut frame);
        started |= kind == FrameKind::Decoded;
        if started {
            out.extend_from_slice(&frame);
        }
        tick += 1;
    }
    out.resize(frames * FRAME_SAMPLES, 0);
    out
}

/// Segmental SNR of `got` against `reference`, dB: the mean over 20 ms frames where
/// the reference is above -50 dBFS of each frame's SNR, clamped to [-10, 35] dB
/// (so a silent or a perfect frame does not dominate).
pub fn seg_snr_db(reference: &[i16], got: &[i16]) -> f64 {
    let floor = (32768.0f64 * 10f64.powf(-50.0 / 20.0)).powi(2) * FRAME_SAMPLES as f64;
    let mut sum = 0.0;
    let mut n = 0usize;
    for (r, g) in reference
        .chunks_exact(FRAME_SAMPLES)
        .zip(got.chunks_exact(FRAME_SAMPLES))
    {
        let sig: f64 = r.iter().map(|&x| f64::from(x).powi(2)).sum();
        if sig < floor {
            continue;
        }
        let err: f64 = r
            .iter()
            .zip(g)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        sum += (10.0 * (sig / err.max(1e-3)).log10()).clamp(-10.0, 35.0);
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Loudness-envelope error of `got` against `reference`, dB: the mean, over 5 ms
/// blocks where the reference is above -50 dBFS, of the absolute difference of the
/// two blocks' levels, each floored at -60 dBFS. Unlike SNR it does not punish a
/// continuation for being out of phase, only for being too loud or too quiet (a
/// hole filled with silence scores its full level difference); a crude stand-in for
/// what perceptual metrics such as PESQ weigh, cheap enough for a test.
pub fn envelope_error_db(reference: &[i16], got: &[i16]) -> f64 {
    const BLOCK: usize = 40;
    let level = |b: &[i16]| {
        let ms = b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / b.len() as f64;
        (10.0 * (ms / (32768.0 * 32768.0)).log10()).max(-60.0)
    };
    let mut sum = 0.0;
    let mut n = 0usize;
    for (r, g) in reference.chunks_exact(BLOCK).zip(got.chunks_exact(BLOCK)) {
        let lr = level(r);
        if lr < -50.0 {
            continue;
        }
        sum += (lr - level(g)).abs();
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// The conditions the bench reports: 2, 5 and 10 % random loss, and bursts.
pub fn conditions() -> Vec<LossModel> {
    vec![
        LossModel::Random(0.02),
        LossModel::Random(0.05),
        LossModel::Random(0.10),
        // 5 % of packets in bursts of 3 on average.
        LossModel::Bursty {
            enter: 0.05 / 0.95 / 3.0,
            leave: 1.0 / 3.0,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wav::read_wav;

    fn speech() -> Vec<i16> {
        let bytes = scnf_media::testvectors::read_vector("speech/speech-8k.wav");
        read_wav(&bytes).unwrap().mono_8k().unwrap()
    }

    #[test]
    fn without_loss_every_fill_plays_the_clean_decode() {
        let s = speech();
        let none = vec![false; s.len() / FRAME_SAMPLES];
        let clean = play(&s, CodecKind::Pcmu, &none, Fill::Ours);
        assert!(seg_snr_db(&s, &clean) > 30.0, "mu-law itself");
        for fill in Fill::ALL {
            assert_eq!(play(&s, CodecKind::Pcmu, &none, fill), clean, "{fill:?}");
        }
    }

    #[test]
    fn our_concealment_beats_zero_fill_on_shipped_speech() {
        // For every codec and loss model, the node's concealment must keep the
        // loudness envelope of the clean decode closer than zero-filling does.
        // (Segmental SNR is no use here: it rates any out-of-phase continuation below
        // silence. PESQ, the real measure, is in bench/plc.)
        let s = speech();
        let none = vec![false; s.len() / FRAME_SAMPLES];
        for codec in [CodecKind::Pcmu, CodecKind::G722] {
            let clean = play(&s, codec, &none, Fill::Ours);
            for model in conditions() {
                let lost = model.pattern(s.len() / FRAME_SAMPLES, 7);
                let err = |fill| envelope_error_db(&clean, &play(&s, codec, &lost, fill));
                let (ours, zero) = (err(Fill::Ours), err(Fill::Zero));
                let ctx = format!(
                    "{codec:?} {}: envelope error ours {ours:.2} zero {zero:.2} dB",
                    model.name()
                );
                assert!(ours < zero * 0.8, "{ctx}");
            }
        }
    }

    #[test]
    fn loss_patterns_have_the_rate_asked_and_bursts_are_longer() {
        let n = 100_000;
        let runs = |l: &[bool]| {
            let starts = l.windows(2).filter(|w| !w[0] && w[1]).count();
            l.iter().filter(|&&x| x).count() as f64 / starts.max(1) as f64
        };
        for model in conditions() {
            let l = model.pattern(n, 3);
            let rate = l.iter().filter(|&&x| x).count() as f64 / n as f64;
            let want = match model {
                LossModel::Random(p) => p,
                LossModel::Bursty { enter, leave } => enter / (enter + leave),
            };
            assert!((rate - want).abs() < want * 0.1, "{}: {rate}", model.name());
            let mean_run = runs(&l);
            match model {
                LossModel::Random(_) => assert!(mean_run < 1.2, "{mean_run}"),
                LossModel::Bursty { .. } => assert!(mean_run > 2.5, "{mean_run}"),
            }
        }
    }
}
