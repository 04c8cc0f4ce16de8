//! G.722's 24-tap quadrature mirror filters (recommendation sections 3.2 and 4.4).
//!
//! [`Analysis`] splits 16 kHz PCM into the low (0-4 kHz) and high (4-8 kHz)
//! sub-bands, one sample of each per input pair; [`Synthesis`] merges them back.
//!
//! Gains, which matter to anyone joining an 8 kHz signal to a sub-band: the
//! coefficients of each polyphase half sum to 4096, so the analysis filter has a
//! pass-band gain of 1/2 (a full-scale 16 kHz tone becomes a half-scale low-band
//! sample, which the 15-bit band coders expect) and the synthesis filter a gain of
//! 2. An 8 kHz signal `x` therefore corresponds to the low-band signal `x / 2`.
//!
//! Arithmetic (bit-exact with the recommendation): products accumulate in 32 bits
//! without overflow (|sum| <= 6482 * 2 * 32768 < 2^31); the analysis output is the
//! accumulator shifted right by 14 and limited to 15 bits; the synthesis output is
//! the accumulator shifted right by 11 and saturated to 16 bits.

use super::ops::{add, sat16, sub};

/// The QMF coefficients h0..h23 (symmetric).
const H: [i32; 24] = [
    3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876, 3876, 951, -805, -210, 362, 32,
    -156, 12, 53, -11, -11, 3,
];

/// Sums the even and the odd taps of the delay line against the coefficients.
#[inline(always)]
fn polyphase(x: &[i16; 24]) -> (i32, i32) {
    let (mut even, mut odd) = (0i32, 0i32);
    for (h, x) in H.chunks_exact(2).zip(x.chunks_exact(2)) {
        even += h[0] * x[0] as i32;
        odd += h[1] * x[1] as i32;
    }
    (even, odd)
}

/// Transmit (analysis) QMF state. `Default` is the reset state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Analysis {
    /// Input delay line, newest first.
    x: [i16; 24],
}

impl Analysis {
    /// Takes two consecutive 16 kHz samples and returns the (low, high) sub-band
    /// samples, each 15-bit.
    #[inline]
    pub(crate) fn split(&mut self, first: i16, second: i16) -> (i16, i16) {
        self.x[0] = second;
        self.x[1] = first;
        let (even, odd) = polyphase(&self.x);
        self.x.copy_within(0..22, 2);
        let low = ((even + odd) >> 14).clamp(-16384, 16383) as i16;
        let high = ((even - odd) >> 14).clamp(-16384, 16383) as i16;
        (low, high)
    }
}

/// Receive (synthesis) QMF state. `Default` is the reset state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Synthesis {
    /// Sum/difference delay line, newest first.
    x: [i16; 24],
}

impl Synthesis {
    /// Takes one reconstructed sample of each sub-band and returns two consecutive
    /// 16 kHz output samples.
    #[inline]
    pub(crate) fn merge(&mut self, low: i16, high: i16) -> [i16; 2] {
        self.x[0] = sub(low, high);
        self.x[1] = add(low, high);
        let (even, odd) = polyphase(&self.x);
        self.x.copy_within(0..22, 2);
        [sat16(even >> 11), sat16(odd >> 11)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_polyphase_half_sums_to_4096() {
        let even: i32 = H.iter().step_by(2).sum();
        let odd: i32 = H.iter().skip(1).step_by(2).sum();
        assert_eq!((even, odd), (4096, 4096));
    }

    #[test]
    fn a_constant_input_is_halved_into_the_low_band_and_restored_by_synthesis() {
        let (mut a, mut s) = (Analysis::default(), Synthesis::default());
        let mut last = ((0, 0), [0, 0]);
        for _ in 0..40 {
            let (l, h) = a.split(10000, 10000);
            last = ((l, h), s.merge(l, h));
        }
        assert_eq!(last.0, (5000, 0));
        assert_eq!(last.1, [10000, 10000]);
    }

    #[test]
    fn full_scale_inputs_stay_within_the_limits() {
        let (mut a, mut s) = (Analysis::default(), Synthesis::default());
        for i in 0..200 {
            let v = if (i / 3) % 2 == 0 { i16::MAX } else { i16::MIN };
            let (l, h) = a.split(v, -v.saturating_neg());
            assert!((-16384..=16383).contains(&l) && (-16384..=16383).contains(&h));
            s.merge(16383, -16384);
        }
    }
}
