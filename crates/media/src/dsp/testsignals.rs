//! Test signals for the DSP tests: dual tones, synthetic voiced speech, noise and
//! chords, all at 8 kHz and seeded so every run hears the same thing.

use crate::codec::{CodecKind, Decoder, Encoder, FRAME_SAMPLES, MAX_FRAME_PAYLOAD, MIX_RATE};
use crate::testvectors::read_vector;
use crate::util::Rng;
use std::f64::consts::PI;

const RATE: f64 = MIX_RATE as f64;

/// Peak amplitude of a sine at `dbfs`.
pub fn amplitude(dbfs: f64) -> f64 {
    32768.0 * 10f64.powf(dbfs / 20.0)
}

/// Converts to i16 with rounding and saturation.
pub fn to_i16(x: &[f64]) -> Vec<i16> {
    x.iter()
        .map(|&v| v.round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// A dual tone of `samples` samples: `row_hz` at `row_dbfs` and `col_hz` at
/// `col_dbfs` (peak levels), starting at phases `phase` and `2·phase`.
pub fn dual(
    row_hz: f64,
    col_hz: f64,
    row_dbfs: f64,
    col_dbfs: f64,
    samples: usize,
    phase: f64,
) -> Vec<f64> {
    let (ar, ac) = (amplitude(row_dbfs), amplitude(col_dbfs));
    (0..samples)
        .map(|n| {
            let t = n as f64 / RATE;
            ar * (2.0 * PI * row_hz * t + phase).sin()
                + ac * (2.0 * PI * col_hz * t + 2.0 * phase).sin()
        })
        .collect()
}

/// `ms` milliseconds of zeros.
pub fn silence(ms: usize) -> Vec<f64> {
    vec![0.0; ms * 8]
}

/// Scales `x` to an RMS level of `dbfs` (relative to a full-scale square wave).
pub fn normalise(x: &mut [f64], dbfs: f64) {
    let rms = (x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64).sqrt();
    if rms > 0.0 {
        let g = 32768.0 * 10f64.powf(dbfs / 20.0) / rms;
        x.iter_mut().for_each(|v| *v *= g);
    }
}

/// A two-pole resonator at a moving centre frequency.
struct Resonator {
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn step(&mut self, x: f64, freq: f64, bandwidth: f64) -> f64 {
        let r = (-PI * bandwidth / RATE).exp();
        let a1 = 2.0 * r * (2.0 * PI * freq / RATE).cos();
        let a2 = -r * r;
        let y = (1.0 - r) * x + a1 * self.y1 + a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// A synthetic talker: the pitch range of the glottal pulse train, Hz.
#[derive(Clone, Copy, Debug)]
pub struct Voice {
    pub f0_low: f64,
    pub f0_high: f64,
}

/// `seconds` of synthetic voiced speech: a glottal pulse train whose pitch glides
/// within the voice's range, through three formant resonators that move from one
/// vowel target to the next every syllable, under a syllable-rate envelope with
/// short pauses and some unvoiced (noise) syllables. Normalised to −20 dBFS RMS.
pub fn voiced_speech(voice: Voice, seconds: f64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let len = (seconds * RATE) as usize;
    let mut out = Vec::with_capacity(len);
    let mut res = [
        Resonator { y1: 0.0, y2: 0.0 },
        Resonator { y1: 0.0, y2: 0.0 },
        Resonator { y1: 0.0, y2: 0.0 },
    ];
    // Formant targets (F1, F2, F3) roughly spanning the vowel space.
    let vowels = [
        [730.0, 1090.0, 2440.0],
        [270.0, 2290.0, 3010.0],
        [530.0, 1840.0, 2480.0],
        [570.0, 840.0, 2410.0],
        [300.0, 870.0, 2240.0],
        [660.0, 1720.0, 2410.0],
        [490.0, 1350.0, 1690.0],
        [440.0, 1020.0, 2240.0],
    ];
    let mut formants = vowels[0];
    let mut target = vowels[1];
    let mut syllable_left = 0usize;
    let mut syllable_len = 1usize;
    let mut unvoiced = false;
    let mut f0 = voice.f0_low;
    let mut f0_target = voice.f0_high;
    let mut phase = 0.0;
    let (mut tilt1, mut tilt2) = (0.0, 0.0);
    for _ in 0..len {
        if syllable_left == 0 {
            syllable_len = 1000 + rng.below(1600) as usize; // 125-325 ms
            syllable_left = syllable_len;
            target = vowels[rng.below(vowels.len() as u64) as usize];
            unvoiced = rng.chance(0.15);
            f0_target = voice.f0_low + (voice.f0_high - voice.f0_low) * rng.next_f64();
        }
        syllable_left -= 1;
        // Glide formants and pitch towards their targets (~30 ms time constant).
        for k in 0..3 {
            formants[k] += (target[k] - formants[k]) * 0.004;
        }
        f0 += (f0_target - f0) * 0.0008;
        let jittered = f0 * (1.0 + 0.01 * rng.normal());
        phase += jittered / RATE;
        let excitation = if unvoiced {
            0.3 * rng.normal()
        } else if phase >= 1.0 {
            phase -= 1.0;
            1.0
        } else {
            0.02 * rng.normal()
        };
        // Glottal spectral tilt: two one-pole low-passes.
        tilt1 += (excitation - tilt1) * 0.3;
        tilt2 += (tilt1 - tilt2) * 0.3;
        let mut y = 0.0;
        for (k, r) in res.iter_mut().enumerate() {
            let bandwidth = [80.0, 100.0, 140.0][k];
            y += [1.0, 0.6, 0.3][k] * r.step(tilt2, formants[k], bandwidth);
        }
        // Syllable envelope: raised sine over the syllable's first 85 %, then a gap.
        let pos = 1.0 - syllable_left as f64 / syllable_len as f64;
        let env = if pos < 0.85 {
            (PI * pos / 0.85).sin().powi(2)
        } else {
            0.0
        };
        out.push(y * env);
    }
    normalise(&mut out, -20.0);
    out
}

/// White Gaussian noise at `dbfs` RMS.
pub fn white_noise(samples: usize, dbfs: f64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut x: Vec<f64> = (0..samples).map(|_| rng.normal()).collect();
    normalise(&mut x, dbfs);
    x
}

/// Pink (1/f) noise at `dbfs` RMS, by summing random generators updated every
/// 1, 2, 4, ... samples (Voss).
pub fn pink_noise(samples: usize, dbfs: f64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut rows = [0.0f64; 10];
    let mut x: Vec<f64> = (0..samples)
        .map(|n| {
            for (k, r) in rows.iter_mut().enumerate() {
                if n % (1 << k) == 0 {
                    *r = rng.normal();
                }
            }
            rows.iter().sum::<f64>() + rng.normal()
        })
        .collect();
    normalise(&mut x, dbfs);
    x
}

/// Chords of three and four equal-tempered notes with six decaying harmonics each
/// (a plucked or struck instrument), a new chord every half second, at `dbfs` RMS.
pub fn chords(seconds: f64, dbfs: f64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let len = (seconds * RATE) as usize;
    let chord_len = 4000;
    let mut x = vec![0.0; len];
    for (c, chunk) in x.chunks_mut(chord_len).enumerate() {
        // Major, minor, dominant-seventh and minor-seventh shapes over a random root
        // between A3 (220 Hz) and A5 (880 Hz).
        let shapes: [&[i32]; 4] = [&[0, 4, 7], &[0, 3, 7], &[0, 4, 7, 10], &[0, 3, 7, 10]];
        let shape = shapes[c % shapes.len()];
        let root = rng.below(25) as i32;
        for &interval in shape {
            let f = 220.0 * 2f64.powf(f64::from(root + interval) / 12.0);
            for h in 1..=6 {
                let fh = f * h as f64;
                if fh >= RATE / 2.0 {
                    break;
                }
                for (n, v) in chunk.iter_mut().enumerate() {
                    let t = n as f64 / RATE;
                    let decay = (-t * (2.0 + h as f64)).exp();
                    *v += decay / h as f64 * (2.0 * PI * fh * t).sin();
                }
            }
        }
    }
    normalise(&mut x, dbfs);
    x
}

/// Adds `b` into `a` (which must be at least as long).
pub fn mix_into(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `x` encoded and decoded again by `codec`, 20 ms at a time.
pub fn through(codec: CodecKind, x: &[i16]) -> Vec<i16> {
    let mut enc = Encoder::new(codec).expect("encoder");
    let mut dec = Decoder::new(codec).expect("decoder");
    let mut out = Vec::with_capacity(x.len());
    let mut payload = [0u8; MAX_FRAME_PAYLOAD];
    let mut pcm = [0i16; FRAME_SAMPLES];
    for chunk in x.chunks_exact(FRAME_SAMPLES) {
        let n = enc.encode(chunk, &mut payload).expect("encode");
        let m = dec.decode(&payload[..n], &mut pcm).expect("decode");
        out.extend_from_slice(&pcm[..m]);
    }
    out
}

/// The real speech of the ITU G.722 vectors at 8 kHz: spandsp's low-band decode
/// of `codsp.cod`, and the 16 kHz original `inpsp.bin` decimated by two.
pub fn itu_speech() -> Vec<(&'static str, Vec<i16>)> {
    let samples = |b: Vec<u8>| -> Vec<i16> {
        b.chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]))
            .collect()
    };
    let low = samples(read_vector("derived/codsp_lowband8k.s16le"));
    // The 16 kHz original, decimated by two through a short low-pass.
    let wide = samples(read_vector("g722/inpsp.bin"));
    let taps = [
        -0.02, 0.0, 0.06, 0.0, -0.12, 0.0, 0.58, 1.0, 0.58, 0.0, -0.12, 0.0, 0.06, 0.0, -0.02,
    ];
    let norm: f64 = taps.iter().sum();
    let dec: Vec<f64> = (0..wide.len().saturating_sub(taps.len()) / 2)
        .map(|i| {
            taps.iter()
                .enumerate()
                .map(|(k, t)| t * f64::from(wide[2 * i + k]))
                .sum::<f64>()
                / norm
        })
        .collect();
    vec![("codsp low band", low), ("inpsp decimated", to_i16(&dec))]
}
