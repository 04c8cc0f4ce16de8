//! A bank of Goertzel filters: the DFT of a block of samples at a few chosen
//! frequencies, one multiply-add per frequency per sample.
//!
//! Beyond the usual magnitude, [`GoertzelBank::coefficient`] gives each filter's
//! complex DFT coefficient referred to the block's first sample, and
//! [`GoertzelBank::phase_advance`] compares two consecutive blocks' coefficients:
//! a steady tone `Δf` Hz from a filter's frequency turns its coefficient by
//! `2π·Δf·N/rate` per block. That measures a tone's frequency far more finely than the block's
//! resolution (`rate/N`), as long as the turn stays within ±π.
//!
//! State is fixed-size; feeding never allocates. The recurrence runs in `f32`: over
//! blocks of a hundred-odd 16-bit samples its rounding error stays near 1e-6 of
//! full scale, far below anything a caller thresholds on.

use std::f32::consts::PI;

/// A complex number as (real, imaginary).
pub type Complex = (f32, f32);

/// `F` Goertzel filters over blocks of `block` samples at `rate` Hz.
#[derive(Clone, Debug)]
pub struct GoertzelBank<const F: usize> {
    /// `2·cos(ω)`: the recurrence coefficient.
    coef: [f32; F],
    /// `e^{-jω(N-1)}` and `e^{-jωN}`: turn the final state into the DFT coefficient
    /// referred to the block's first sample.
    c1: [Complex; F],
    c2: [Complex; F],
    s1: [f32; F],
    s2: [f32; F],
    /// Sum of squares of the samples fed since the last clear.
    energy: f32,
    filled: usize,
    block: usize,
}

impl<const F: usize> GoertzelBank<F> {
    /// Filters at `freqs` (Hz) over blocks of `block` samples at `rate` Hz.
    pub fn new(freqs: [f32; F], block: usize, rate: f32) -> Self {
        let n = block as f32;
        let mut bank = GoertzelBank {
            coef: [0.0; F],
            c1: [(0.0, 0.0); F],
            c2: [(0.0, 0.0); F],
            s1: [0.0; F],
            s2: [0.0; F],
            energy: 0.0,
            filled: 0,
            block,
        };
        for (i, &f) in freqs.iter().enumerate() {
            let w = 2.0 * PI * f / rate;
            bank.coef[i] = 2.0 * w.cos();
            bank.c1[i] = ((w * (n - 1.0)).cos(), -(w * (n - 1.0)).sin());
            bank.c2[i] = ((w * n).cos(), -(w * n).sin());
        }
        bank
    }

    /// Samples fed into the current block.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Samples still needed to complete the block.
    pub fn remaining(&self) -> usize {
        self.block - self.filled
    }

    /// Sum of squares of the current block's samples.
    pub fn energy(&self) -> f32 {
        self.energy
    }

    /// Starts a new block, as if `zeros` zero samples had already been fed (zeros
    /// leave the recurrence at rest, so only the count matters).
    pub fn clear(&mut self, zeros: usize) {
        self.s1 = [0.0; F];
        self.s2 = [0.0; F];
        self.energy = 0.0;
        self.filled = zeros.min(self.block);
    }

    /// Runs every filter over `x`, which must not overrun the block (callers feed
    /// at most [`GoertzelBank::remaining`] samples; extra samples are ignored).
    pub fn feed(&mut self, x: &[i16]) {
        let x = &x[..x.len().min(self.remaining())];
        let coef = self.coef;
        let (mut s1, mut s2, mut energy) = (self.s1, self.s2, self.energy);
        for &v in x {
            let v = f32::from(v);
            for i in 0..F {
                let s0 = v + coef[i] * s1[i] - s2[i];
                s2[i] = s1[i];
                s1[i] = s0;
            }
            energy += v * v;
        }
        (self.s1, self.s2, self.energy) = (s1, s2, energy);
        self.filled += x.len();
    }

    /// Squared magnitude of filter `i`'s DFT coefficient; a sine of amplitude `A`
    /// at the filter's frequency over a whole block gives `(A·N/2)²`.
    pub fn power(&self, i: usize) -> f32 {
        let (s1, s2) = (self.s1[i], self.s2[i]);
        s1 * s1 + s2 * s2 - self.coef[i] * s1 * s2
    }

    /// Filter `i`'s complex DFT coefficient, referred to the block's first sample.
    pub fn coefficient(&self, i: usize) -> Complex {
        let (s1, s2) = (self.s1[i], self.s2[i]);
        let (c1, c2) = (self.c1[i], self.c2[i]);
        (s1 * c1.0 - s2 * c2.0, s1 * c1.1 - s2 * c2.1)
    }

    /// How far (rad, in −π..=π) a tone turned between two consecutive blocks'
    /// coefficients of filter `i`, beyond what a tone exactly at the filter's
    /// frequency would: `2π·Δf·N/rate`.
    pub fn phase_advance(&self, i: usize, before: Complex, after: Complex) -> f32 {
        // after · conj(before) turns by ω'N; e^{-jωN} removes the nominal ωN.
        let p = (
            after.0 * before.0 + after.1 * before.1,
            after.1 * before.0 - after.0 * before.1,
        );
        let c = self.c2[i];
        let q = (p.0 * c.0 - p.1 * c.1, p.0 * c.1 + p.1 * c.0);
        q.1.atan2(q.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, amplitude: f64, from: usize, len: usize) -> Vec<i16> {
        (from..from + len)
            .map(|n| {
                (amplitude * (2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0).sin()).round()
                    as i16
            })
            .collect()
    }

    #[test]
    fn a_sine_on_a_filter_frequency_measures_its_amplitude_and_the_others_far_less() {
        let mut bank = GoertzelBank::new([697.0, 1000.0, 1633.0], 88, 8000.0);
        bank.feed(&sine(1000.0, 10_000.0, 0, 88));
        let expect = (10_000.0f32 * 88.0 / 2.0).powi(2);
        assert!(
            (bank.power(1) / expect - 1.0).abs() < 0.01,
            "{}",
            bank.power(1)
        );
        assert!(bank.power(0) < expect / 100.0 && bank.power(2) < expect / 100.0);
        let energy = 88.0 * 10_000.0f32.powi(2) / 2.0;
        assert!((bank.energy() / energy - 1.0).abs() < 0.03);
    }

    #[test]
    fn the_phase_advance_between_blocks_measures_the_frequency_offset() {
        for offset_hz in [-30.0, -10.0, 0.0, 7.0, 25.0] {
            let mut bank = GoertzelBank::new([770.0], 88, 8000.0);
            bank.feed(&sine(770.0 + offset_hz, 8000.0, 0, 88));
            let first = bank.coefficient(0);
            bank.clear(0);
            bank.feed(&sine(770.0 + offset_hz, 8000.0, 88, 88));
            let d = bank.phase_advance(0, first, bank.coefficient(0));
            let measured = d as f64 * 8000.0 / (2.0 * std::f64::consts::PI * 88.0);
            assert!(
                (measured - offset_hz).abs() < 1.0,
                "{offset_hz} Hz off measured as {measured:.2}"
            );
        }
    }

    #[test]
    fn feeding_stops_at_the_block_end_and_clear_counts_leading_zeros() {
        let mut bank = GoertzelBank::new([1000.0], 88, 8000.0);
        bank.feed(&[100; 200]);
        assert_eq!((bank.filled(), bank.remaining()), (88, 0));
        bank.clear(30);
        assert_eq!(
            (bank.filled(), bank.remaining(), bank.energy()),
            (30, 58, 0.0)
        );
    }
}
