//! Test tones and the measurement of one frequency's level in a signal.
//!
//! [`level_dbfs`] is a single-bin DFT under a 4-term Blackman-Harris window (side
//! lobes below -92 dB), normalised so that a sine of amplitude `A` measures
//! `20*log10(A/32768)` dBFS. With one second of audio the main lobe is ±4 Hz wide,
//! so tones a hundred hertz apart do not leak into each other's measurement above
//! the window's side-lobe floor — which is what lets a test say "the own tone is more
//! than 60 dB below the others".

use crate::codec::MIX_RATE;
use std::f64::consts::PI;

/// The participants' tones. G.711 companding and G.722 ADPCM are nonlinear: the
/// others' tones leave intermodulation products all over the spectrum, and a product
/// landing on a listener's own frequency reads as "hearing itself". The first five
/// were chosen by simulating the whole codec chain (A-law, mu-law, G.722 sources,
/// mixed, re-encoded for each listener) over random candidate sets: their worst
/// own-tone rejection is 69.5 dB where the 60 dB the tests require is the bar. The
/// last four extend the set for larger demos (nine: a room spread 3/3/3 over a
/// cluster). With eight others in the mix, companding leaves the own frequency about
/// 52 dB below the others for the worst listener, on one node as on a cluster.
pub const TONES: [f64; 9] = [
    518.0, 762.0, 1539.0, 1799.0, 2109.0, 2380.0, 2650.0, 2950.0, 3090.0,
];
/// Sent level of every tone, dBFS (peak).
pub const TONE_DBFS: f64 = -20.0;

/// A phase-continuous sine generator at the 8 kHz mix rate.
#[derive(Clone, Debug)]
pub struct Tone {
    pub freq: f64,
    pub amplitude: f64,
    phase: f64,
}

impl Tone {
    pub fn new(freq: f64, amplitude: f64) -> Tone {
        Tone {
            freq,
            amplitude,
            phase: 0.0,
        }
    }

    /// A tone at `dbfs` (peak level relative to full scale).
    pub fn at_dbfs(freq: f64, dbfs: f64) -> Tone {
        Tone::new(freq, 32768.0 * 10f64.powf(dbfs / 20.0))
    }

    /// Writes the next samples, continuing the phase.
    pub fn fill(&mut self, out: &mut [i16]) {
        let step = 2.0 * PI * self.freq / f64::from(MIX_RATE);
        for o in out {
            *o = (self.amplitude * self.phase.sin()).round() as i16;
            self.phase = (self.phase + step) % (2.0 * PI);
        }
    }
}

/// Level of `freq` in `samples` (8 kHz), in dBFS; -200 for silence.
pub fn level_dbfs(samples: &[i16], freq: f64) -> f64 {
    let n = samples.len();
    if n < 2 {
        return -200.0;
    }
    let (a0, a1, a2, a3) = (0.35875, 0.48829, 0.14128, 0.01168);
    let w = 2.0 * PI * freq / f64::from(MIX_RATE);
    let (mut re, mut im, mut wsum) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &s) in samples.iter().enumerate() {
        let t = 2.0 * PI * i as f64 / (n - 1) as f64;
        let win = a0 - a1 * t.cos() + a2 * (2.0 * t).cos() - a3 * (3.0 * t).cos();
        let x = s as f64 * win;
        re += x * (w * i as f64).cos();
        im -= x * (w * i as f64).sin();
        wsum += win;
    }
    let amp = 2.0 * (re * re + im * im).sqrt() / wsum;
    if amp <= 0.0 {
        -200.0
    } else {
        20.0 * (amp / 32768.0).log10()
    }
}

/// Level of `freq` measured in consecutive blocks of `block` samples and
/// power-averaged, in dBFS. Robust where the audio's phase jumps — a concealed frame or a playout
/// adjustment shifts everything after it by a fraction of a period, and a single long
/// coherent DFT would read that as a lower level.
pub fn level_dbfs_blocked(samples: &[i16], freq: f64, block: usize) -> f64 {
    let blocks: Vec<f64> = samples
        .chunks_exact(block.max(2))
        .map(|b| 10f64.powf(level_dbfs(b, freq) / 10.0))
        .collect();
    if blocks.is_empty() {
        return level_dbfs(samples, freq);
    }
    let p = blocks.iter().sum::<f64>() / blocks.len() as f64;
    if p <= 0.0 {
        -200.0
    } else {
        10.0 * p.log10()
    }
}

/// RMS level of `samples` in dBFS (full-scale sine = -3 dBFS); -200 for silence.
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return -200.0;
    }
    let p: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64;
    if p == 0.0 {
        -200.0
    } else {
        10.0 * (p / (32768.0 * 32768.0)).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &mut Tone, n: usize) -> Vec<i16> {
        let mut v = vec![0; n];
        t.fill(&mut v);
        v
    }

    #[test]
    fn a_tone_measures_its_own_level_at_its_frequency_and_nothing_elsewhere() {
        let s = render(&mut Tone::at_dbfs(700.0, -20.0), 8000);
        assert!((level_dbfs(&s, 700.0) + 20.0).abs() < 0.1);
        assert!(level_dbfs(&s, 1100.0) < -100.0);
        assert!((rms_dbfs(&s) + 23.0).abs() < 0.1);
    }

    #[test]
    fn the_test_tones_do_not_leak_into_each_other() {
        let freqs = TONES;
        for &f in &freqs {
            let s = render(&mut Tone::at_dbfs(f, -10.0), 8000);
            for &g in freqs.iter().filter(|&&g| g != f) {
                assert!(level_dbfs(&s, g) < -95.0, "{f} Hz leaks into {g} Hz");
            }
        }
    }

    #[test]
    fn phase_continues_across_frames() {
        let mut a = Tone::new(440.0, 1000.0);
        let whole = render(&mut a.clone(), 320);
        let mut parts = render(&mut a, 160);
        parts.extend(render(&mut a, 160));
        assert_eq!(whole, parts);
    }
}
