//! Test tones and how to measure them.
//!
//! Levels are in dBFS with the AES17 convention: a sine whose peak is full scale
//! ([`FULL_SCALE`] = 32767) is 0 dBFS, for [`level_db`] and [`rms_db`] alike.
//!
//! [`level_db`] is a Hann-windowed DFT evaluated at exactly the asked frequency
//! (not at the nearest bin), so a tone reads its true level wherever it falls
//! between bins. Over 1 s of audio the Hann sidelobes of a tone 140 Hz away are far
//! below -100 dB; with at least 0.25 s the [`TEST_TONES_HZ`] stay separated by more
//! than 80 dB (proved by the tests below).

use std::f64::consts::TAU;

use scnf::codec::{FRAME_SAMPLES, MIX_RATE};

/// Peak of a 0 dBFS sine.
pub const FULL_SCALE: f64 = 32767.0;
/// What the meters return for silence.
pub const FLOOR_DB: f64 = -200.0;

/// Five tones for five participants, well apart inside the G.711 band.
///
/// Chosen so that (a) no intermodulation product of order three or less of any
/// four lands within 50 Hz of the fifth, and (b) after G.711 twice (each talker
/// encoded, the mix encoded again), over a 1 s window, the missing tone reads at
/// least 61.8 dB below the others for both laws and every subset of talkers — the
/// best of 700 seeded candidates near 550/830/1240/1450/1590 Hz.
///
/// Why not round numbers: G.711 is a memoryless quantiser, so a tone's error is a
/// comb of harmonics that decay slowly (the 37th aliased harmonic of 831.3 Hz is
/// still -57 dB) and fold around 4 kHz. Tones on a common grid (whole or tenth
/// Hz) make the mix periodic, and the error lines then land exactly on the
/// grid, on top of the missing tone (-57 to -59 dB measured). So a "60 dB below"
/// N-minus-one check is at the edge of what G.711 allows even on a perfect path;
/// with losses (gaps splatter) allow about 50 dB on G.711 legs.
pub const TEST_TONES_HZ: [f64; 5] = [552.9, 833.61, 1239.67, 1459.37, 1585.98];

/// A sine generator at 8 kHz, phase-continuous across calls.
#[derive(Clone, Debug)]
pub struct Tone {
    freq_hz: f64,
    peak: f64,
    /// Phase in cycles, kept in [0, 1) so precision does not decay over time.
    phase: f64,
}

impl Tone {
    /// A sine of `freq_hz` at `level_dbfs` (0 = full-scale peak), starting at phase 0.
    pub fn new(freq_hz: f64, level_dbfs: f64) -> Self {
        Tone {
            freq_hz,
            peak: FULL_SCALE * 10f64.powf(level_dbfs / 20.0),
            phase: 0.0,
        }
    }

    /// A generator of zeros.
    pub fn silence() -> Self {
        Tone {
            freq_hz: 0.0,
            peak: 0.0,
            phase: 0.0,
        }
    }

    pub fn freq_hz(&self) -> f64 {
        self.freq_hz
    }

    /// Fills `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        let step = self.freq_hz / MIX_RATE as f64;
        for o in out {
            let x = self.peak * (TAU * self.phase).sin();
            *o = x.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16;
            self.phase += step;
            self.phase -= self.phase.floor();
        }
    }

    /// The next 20 ms frame.
    pub fn frame(&mut self) -> [i16; FRAME_SAMPLES] {
        let mut f = [0i16; FRAME_SAMPLES];
        self.fill(&mut f);
        f
    }

    /// The next `n` samples.
    pub fn samples(&mut self, n: usize) -> Vec<i16> {
        let mut v = vec![0i16; n];
        self.fill(&mut v);
        v
    }
}

/// Level in dBFS of the component at `freq_hz` in `samples` (8 kHz), or
/// [`FLOOR_DB`] when there is none.
pub fn level_db(samples: &[i16], freq_hz: f64) -> f64 {
    let n = samples.len();
    if n < 2 {
        return FLOOR_DB;
    }
    let w_step = TAU / (n - 1) as f64;
    let f_step = TAU * freq_hz / MIX_RATE as f64;
    let (mut re, mut im, mut wsum) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &x) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (w_step * i as f64).cos();
        let (s, c) = (f_step * i as f64).sin_cos();
        let wx = w * x as f64;
        re += wx * c;
        im -= wx * s;
        wsum += w;
    }
    let peak = 2.0 * re.hypot(im) / wsum;
    to_db(peak / FULL_SCALE)
}

/// RMS level in dBFS (a full-scale sine reads 0 dB, a full-scale square +3 dB).
pub fn rms_db(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return FLOOR_DB;
    }
    let sum: f64 = samples.iter().map(|&x| (x as f64) * (x as f64)).sum();
    let rms = (sum / samples.len() as f64).sqrt();
    to_db(rms * std::f64::consts::SQRT_2 / FULL_SCALE)
}

fn to_db(ratio: f64) -> f64 {
    if ratio <= 0.0 {
        FLOOR_DB
    } else {
        (20.0 * ratio.log10()).max(FLOOR_DB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: usize = MIX_RATE as usize;

    #[test]
    fn frames_continue_the_phase_of_the_previous_frame() {
        let mut framed = Tone::new(1234.5, -6.0);
        let mut whole = Tone::new(1234.5, -6.0);
        let joined: Vec<i16> = (0..50).flat_map(|_| framed.frame()).collect();
        assert_eq!(joined, whole.samples(50 * FRAME_SAMPLES));
    }

    #[test]
    fn a_minus_20_dbfs_700_hz_tone_reads_minus_20_there_and_nothing_at_1100() {
        let s = Tone::new(700.0, -20.0).samples(SECOND);
        let at = level_db(&s, 700.0);
        assert!((at + 20.0).abs() < 0.5, "{at}");
        assert!(level_db(&s, 1100.0) < -80.0);
        assert!((rms_db(&s) + 20.0).abs() < 0.1);
    }

    #[test]
    fn levels_are_right_between_bins_and_for_odd_lengths() {
        // (frequency, level, length in samples)
        let rows: [(f64, f64, usize); 6] = [
            (700.5, -20.0, SECOND),
            (1234.56, -3.0, SECOND),
            (333.3, -40.0, 7777),
            (3000.25, -10.0, SECOND / 4),
            (550.0, -0.5, 2 * SECOND + 13),
            (1590.0, -60.0, SECOND),
        ];
        for (f, db, n) in rows {
            let s = Tone::new(f, db).samples(n);
            let got = level_db(&s, f);
            assert!((got - db).abs() < 0.5, "{f} Hz {db} dB over {n}: {got}");
            assert!((rms_db(&s) - db).abs() < 0.2, "{f} Hz rms");
        }
    }

    #[test]
    fn each_test_tone_leaks_less_than_minus_80_db_into_the_others() {
        for n in [SECOND / 4, SECOND] {
            for &f in &TEST_TONES_HZ {
                let s = Tone::new(f, -10.0).samples(n);
                let own = level_db(&s, f);
                for &g in TEST_TONES_HZ.iter().filter(|&&g| g != f) {
                    let leak = level_db(&s, g) - own;
                    assert!(leak < -80.0, "{f} -> {g} over {n}: {leak:.1} dB");
                }
            }
        }
    }

    #[test]
    fn in_a_mix_of_four_tones_each_reads_its_level_and_the_fifth_is_absent() {
        for missing in 0..TEST_TONES_HZ.len() {
            let mut mix = vec![0i16; SECOND];
            for (i, &f) in TEST_TONES_HZ
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
            {
                let t = Tone::new(f, -20.0 - i as f64).samples(SECOND);
                for (m, x) in mix.iter_mut().zip(t) {
                    *m += x;
                }
            }
            for (i, &f) in TEST_TONES_HZ.iter().enumerate() {
                let got = level_db(&mix, f);
                if i == missing {
                    assert!(got < -100.0, "{f}: {got}");
                } else {
                    assert!((got - (-20.0 - i as f64)).abs() < 0.5, "{f}: {got}");
                }
            }
        }
    }

    #[test]
    fn no_low_order_intermodulation_of_four_tones_lands_near_the_fifth() {
        for (i, &own) in TEST_TONES_HZ.iter().enumerate() {
            let others: Vec<f64> = TEST_TONES_HZ
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, &f)| f)
                .collect();
            // Every sum of coefficients in -3..=3 with total order 1..=3.
            let mut coefs = [-3i32; 4];
            loop {
                let order: i32 = coefs.iter().map(|c| c.abs()).sum();
                if (1..=3).contains(&order) {
                    let f: f64 = coefs.iter().zip(&others).map(|(&c, &o)| c as f64 * o).sum();
                    assert!(
                        (f.abs() - own).abs() >= 50.0,
                        "{coefs:?} of {others:?} near {own}"
                    );
                }
                let Some(k) = coefs.iter().position(|&c| c < 3) else {
                    break;
                };
                coefs[k] += 1;
                coefs[..k].fill(-3);
            }
        }
    }

    /// Through G.711 and back, as on a leg: encode, decode.
    fn companded(kind: scnf::codec::CodecKind, pcm: &[i16]) -> Vec<i16> {
        use scnf::codec::{Decoder, Encoder};
        let mut enc = Encoder::new(kind).expect("G.711 encoders always exist");
        let mut dec = Decoder::new(kind).expect("G.711 decoders always exist");
        let mut wire = vec![0u8; pcm.len()];
        let mut out = vec![0i16; pcm.len()];
        let n = enc.encode(pcm, &mut wire).expect("G.711 takes any length");
        dec.decode(&wire[..n], &mut out)
            .expect("G.711 decodes any byte");
        out
    }

    #[test]
    fn after_g711_twice_any_mix_of_the_others_lacks_the_missing_tone_by_60_db() {
        use scnf::codec::CodecKind;
        for kind in [CodecKind::Pcmu, CodecKind::Pcma] {
            // Each talker's tone crosses G.711 once on the way in...
            let talkers: Vec<Vec<i16>> = TEST_TONES_HZ
                .iter()
                .map(|&f| companded(kind, &Tone::new(f, -20.0).samples(SECOND)))
                .collect();
            for (missing, &missing_f) in TEST_TONES_HZ.iter().enumerate() {
                // ...every non-empty subset of the others is mixed...
                for mask in (1u32..32).filter(|m| m & (1 << missing) == 0) {
                    let mut mix = vec![0i32; SECOND];
                    for (_, t) in talkers
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                    {
                        for (m, &x) in mix.iter_mut().zip(t) {
                            *m += x as i32;
                        }
                    }
                    let mix: Vec<i16> =
                        mix.iter().map(|&x| x.clamp(-32768, 32767) as i16).collect();
                    // ...and the mix crosses G.711 again on the way out.
                    let heard = companded(kind, &mix);
                    let own = level_db(&heard, missing_f);
                    assert!(
                        own < -80.0,
                        "{kind:?} mask {mask:05b}: {missing_f} at {own:.1}"
                    );
                }
            }
        }
    }

    #[test]
    fn silence_and_empty_input_read_the_floor() {
        assert_eq!(level_db(&[], 700.0), FLOOR_DB);
        assert_eq!(level_db(&[0; 8000], 700.0), FLOOR_DB);
        assert_eq!(rms_db(&[]), FLOOR_DB);
        assert_eq!(rms_db(&Tone::silence().samples(100)), FLOOR_DB);
    }
}
