//! The two sub-band ADPCM coders of G.722 (recommendation section 3 for the encoder,
//! section 4 for the decoder), without the QMF.
//!
//! - [`LowBand`] codes the 0-4 kHz sub-band with a 6-bit adaptive quantiser. Only the
//!   4 most significant bits of each code word drive the adaptation (scale factor and
//!   predictor), which is what lets a decoder drop 1 or 2 bits per word (56 and 48
//!   kbit/s, [`Mode`]) and still track the encoder exactly.
//! - [`HighBand`] codes the 4-8 kHz sub-band with a 2-bit quantiser.
//!
//! Both bands share the same pole-zero predictor, [`Predictor`] (two poles, six
//! zeros, sign-sign adaptation). Every quantity is a 16-bit word and the arithmetic
//! is the recommendation's: saturating adds and Q15 products ([`super::ops`]); the
//! block names in comments (QUANTL, LOGSCL, UPPOL2, ...) are the recommendation's.
//!
//! The reset state is all zero except the quantiser scale factors: `det = 32` in the
//! low band and `det = 8` in the high band. (A coder that starts at `det = 0` cannot
//! adapt out of it and is not bit-exact; see `vectors/README.md`.)

use super::ops::{add, magnitude, mult, sign, sub};

/// The low-band decoder's bit rate, which decides how many bits of each 6-bit
/// low-band code word the decoder's output quantiser uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Mode 1: 64 kbit/s, all 6 bits.
    #[default]
    Kbit64,
    /// Mode 2: 56 kbit/s, the 5 most significant bits (one auxiliary data bit).
    Kbit56,
    /// Mode 3: 48 kbit/s, the 4 most significant bits (two auxiliary data bits).
    Kbit48,
}

// ---------------------------------------------------------------------------------
// Tables. Levels are the recommendation's normalised values; the inverse quantiser
// tables hold them scaled by 8 (Q15 against `det`) and signed per code word.
// ---------------------------------------------------------------------------------

/// Low band: decision levels of the 6-bit quantiser (QUANTL), interval `m` is
/// `[Q6[m-1], Q6[m])` in units of `det / 4096`.
const Q6: [i16; 31] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 3200,
];

/// Low band: the 6-bit code word of quantiser interval `m` (1..=30) for a negative
/// and for a non-negative difference signal (index 0 is unused).
const IL_NEG: [u8; 31] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4,
];
const IL_POS: [u8; 31] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32,
];

/// Low band output levels of the 6-, 5- and 4-bit inverse quantisers.
const LEVELS6: [i16; 31] = [
    0, 17, 54, 91, 130, 170, 211, 254, 300, 347, 396, 447, 501, 558, 618, 682, 750, 822, 899, 982,
    1072, 1170, 1279, 1399, 1535, 1689, 1873, 2088, 2376, 2738, 3101,
];
const LEVELS5: [i16; 16] = [
    0, 35, 110, 190, 276, 370, 473, 587, 714, 858, 1023, 1219, 1458, 1765, 2195, 2919,
];
const LEVELS4: [i16; 8] = [0, 150, 323, 530, 786, 1121, 1612, 2557];

/// Level index of each code word, and (as a bit mask) which code words are negative.
const INDEX6: [u8; 64] = [
    1, 1, 1, 1, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10,
    9, 8, 7, 6, 5, 4, 3, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13,
    12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 2, 1,
];
const NEG6: u64 = 0xC000_0000_FFFF_FFFF;
const INDEX5: [u8; 32] = [
    1, 1, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,
    3, 2, 1, 1,
];
const NEG5: u64 = 0x8000_FFFF;
const INDEX4: [u8; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const NEG4: u64 = 0x00FF;

/// Signed inverse quantiser outputs per code word, scaled by 8 (INVQAL / INVQBL).
const INV6: [i16; 64] = inverse_table(&LEVELS6, &INDEX6, NEG6);
const INV5: [i16; 32] = inverse_table(&LEVELS5, &INDEX5, NEG5);
const INV4: [i16; 16] = inverse_table(&LEVELS4, &INDEX4, NEG4);

/// Low band log scale factor multipliers per 4-bit code word (LOGSCL).
const WL: [i16; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const WL4: [i16; 16] = {
    let mut t = [0; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = WL[INDEX4[i] as usize];
        i += 1;
    }
    t
};

/// High band: quantiser decision level (QUANTH), inverse quantiser outputs per
/// 2-bit code word scaled by 8 (INVQAH), log scale factor multipliers (LOGSCH).
const Q2: i32 = 564;
const INV2: [i16; 4] = [-926 * 8, -202 * 8, 926 * 8, 202 * 8];
const WH2: [i16; 4] = [798, -214, 798, -214];

/// Inverse log table for the scale factor (SCALEL / SCALEH): `2^(11 + i/32)`.
const ILB: [i16; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

/// Upper limits of the log scale factor `nb` in each band.
const NB_MAX_LOW: i16 = 18432;
const NB_MAX_HIGH: i16 = 22528;

const fn inverse_table<const N: usize>(levels: &[i16], index: &[u8; N], neg: u64) -> [i16; N] {
    let mut t = [0; N];
    let mut i = 0;
    while i < N {
        // Largest level is 3101, so the scaled value fits a word.
        let v = levels[index[i] as usize] * 8;
        t[i] = if (neg >> i) & 1 == 1 { -v } else { v };
        i += 1;
    }
    t
}

/// LIMIT: the reconstructed signals are 15-bit.
#[inline(always)]
fn limit(x: i16) -> i16 {
    x.clamp(-16384, 16383)
}

/// SCALEL / SCALEH: the linear scale factor from the log scale factor `nb`, with
/// `base` 8 for the low band and 10 for the high band. `nb` is within
/// `0..=NB_MAX_*`, so the shift is within `-1..=10` and `det` within 32..=16384
/// (low) or 8..=16384 (high).
#[inline(always)]
fn scale(nb: i16, base: i16) -> i16 {
    let mantissa = ILB[((nb >> 6) & 31) as usize];
    let shift = base - (nb >> 11);
    let wd = if shift < 0 {
        mantissa << -shift
    } else {
        mantissa >> shift
    };
    wd << 2
}

/// The adaptive pole-zero predictor shared by both bands.
///
/// Index 0 of the delay lines is the current sample, 1 and up are past samples.
#[derive(Clone, Debug, Default)]
pub(crate) struct Predictor {
    /// Pole coefficients a1, a2 (a[0] unused).
    a: [i16; 3],
    /// Zero coefficients b1..b6 (b[0] unused).
    b: [i16; 7],
    /// Quantised difference signal, current and 6 past.
    d: [i16; 7],
    /// Partially reconstructed signal (d + zero-section estimate), current and 2 past.
    p: [i16; 3],
    /// Reconstructed signal, current and 2 past.
    r: [i16; 3],
    /// Zero-section estimate.
    sz: i16,
    /// Signal estimate (pole + zero sections).
    s: i16,
}

impl Predictor {
    /// The estimate of the next sample.
    #[inline(always)]
    fn estimate(&self) -> i16 {
        self.s
    }

    /// Feeds the quantised difference `d` of the current sample and computes the
    /// estimate of the next one.
    fn update(&mut self, d: i16) {
        // RECONS and PARREC.
        self.d[0] = d;
        self.r[0] = add(self.s, d);
        self.p[0] = add(d, self.sz);

        // UPZERO: sign-sign update of the zero coefficients with leakage 1 - 2^-8,
        // no update when d is zero; then shift the d delay line.
        let step = if d == 0 { 0 } else { 128 };
        let sg0 = sign(d);
        for i in (1..7).rev() {
            let wd2 = if sign(self.d[i]) == sg0 { step } else { -step };
            self.b[i] = add(wd2, mult(self.b[i], 32640));
            self.d[i] = self.d[i - 1];
        }

        // UPPOL2 (uses the old a1), then UPPOL1 (uses the new a2).
        let sg = [sign(self.p[0]), sign(self.p[1]), sign(self.p[2])];
        let wd1 = (self.a[1] as i32 * 4).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
        let wd2 = (if sg[0] == sg[1] { sub(0, wd1) } else { wd1 }) >> 7;
        let wd3 = if sg[0] == sg[2] { 128 } else { -128 };
        let a2 = add(add(wd2, wd3), mult(self.a[2], 32512)).clamp(-12288, 12288);
        self.a[2] = a2;

        let wd1 = if sg[0] == sg[1] { 192 } else { -192 };
        let a1 = add(wd1, mult(self.a[1], 32640));
        // Stability constraint |a1| <= 1 - 2^-4 - a2; a2 is within +-12288 so the
        // bound is within 3072..=27648.
        let bound = 15360 - a2;
        self.a[1] = a1.clamp(-bound, bound);
        self.p[2] = self.p[1];
        self.p[1] = self.p[0];

        // FILTEZ: six-zero section over the shifted d line, accumulated with
        // saturation at each step as specified.
        let mut sz = 0;
        for i in (1..7).rev() {
            sz = add(sz, mult(add(self.d[i], self.d[i]), self.b[i]));
        }
        self.sz = sz;

        // FILTEP: two-pole section over the shifted r line.
        self.r[2] = self.r[1];
        self.r[1] = self.r[0];
        let sp = add(
            mult(self.a[1], add(self.r[1], self.r[1])),
            mult(self.a[2], add(self.r[2], self.r[2])),
        );

        // PREDIC.
        self.s = add(sp, sz);
    }
}

/// The low (0-4 kHz) sub-band ADPCM coder; the same state serves an encoder or a
/// decoder. `Default` is the reset state.
#[derive(Clone, Debug)]
pub(crate) struct LowBand {
    pred: Predictor,
    /// Quantiser scale factor.
    det: i16,
    /// Log scale factor, within `0..=NB_MAX_LOW`.
    nb: i16,
}

impl Default for LowBand {
    fn default() -> Self {
        LowBand {
            pred: Predictor::default(),
            det: 32,
            nb: 0,
        }
    }
}

impl LowBand {
    /// Encodes one low-band sample (15-bit, as the QMF delivers it) to a 6-bit code.
    pub(crate) fn encode(&mut self, xl: i16) -> u8 {
        // SUBTRA and QUANTL: find the interval m (1..=30) of |el| among the scaled
        // decision levels; interval 30 is open-ended. The scaled levels are
        // non-decreasing in m (det > 0), so a binary search finds the same interval
        // as the recommendation's linear scan.
        let el = sub(xl, self.pred.estimate());
        let wd = magnitude(el) as i32;
        let det = self.det as i32;
        let m = 1 + Q6[1..30].partition_point(|&q| (q as i32 * det) >> 12 <= wd);
        let il = if el < 0 { IL_NEG[m] } else { IL_POS[m] };
        self.adapt(il);
        il
    }

    /// Decodes one 6-bit code (higher bits ignored) to the reconstructed 15-bit
    /// low-band sample, using as many bits as `mode` allows.
    pub(crate) fn decode(&mut self, il: u8, mode: Mode) -> i16 {
        let il = il & 0x3f;
        // INVQBL.
        let level = match mode {
            Mode::Kbit64 => INV6[il as usize],
            Mode::Kbit56 => INV5[(il >> 1) as usize],
            Mode::Kbit48 => INV4[(il >> 2) as usize],
        };
        let out = limit(add(self.pred.estimate(), mult(self.det, level)));
        self.adapt(il);
        out
    }

    /// INVQAL, LOGSCL, SCALEL and the predictor update, driven by the 4 most
    /// significant bits of the code only.
    fn adapt(&mut self, il: u8) {
        let code4 = (il >> 2) as usize;
        let dlt = mult(self.det, INV4[code4]);
        self.nb = add(mult(self.nb, 32512), WL4[code4]).clamp(0, NB_MAX_LOW);
        self.det = scale(self.nb, 8);
        self.pred.update(dlt);
    }
}

/// The high (4-8 kHz) sub-band ADPCM coder. `Default` is the reset state.
#[derive(Clone, Debug)]
pub(crate) struct HighBand {
    pred: Predictor,
    det: i16,
    nb: i16,
}

impl Default for HighBand {
    fn default() -> Self {
        HighBand {
            pred: Predictor::default(),
            det: 8,
            nb: 0,
        }
    }
}

impl HighBand {
    /// Encodes one high-band sample to a 2-bit code.
    pub(crate) fn encode(&mut self, xh: i16) -> u8 {
        // SUBTRA and QUANTH: one decision level each side of zero.
        let eh = sub(xh, self.pred.estimate());
        let outer = magnitude(eh) as i32 >= (Q2 * self.det as i32) >> 12;
        let ih = match (eh < 0, outer) {
            (true, false) => 1,
            (true, true) => 0,
            (false, false) => 3,
            (false, true) => 2,
        };
        self.adapt(ih);
        ih
    }

    /// Decodes one 2-bit code (higher bits ignored) to the reconstructed 15-bit
    /// high-band sample.
    pub(crate) fn decode(&mut self, ih: u8) -> i16 {
        let ih = ih & 3;
        let out = limit(add(self.pred.estimate(), mult(self.det, INV2[ih as usize])));
        self.adapt(ih);
        out
    }

    /// INVQAH, LOGSCH, SCALEH and the predictor update.
    fn adapt(&mut self, ih: u8) {
        let dh = mult(self.det, INV2[ih as usize]);
        self.nb = add(mult(self.nb, 32512), WH2[ih as usize]).clamp(0, NB_MAX_HIGH);
        self.det = scale(self.nb, 10);
        self.pred.update(dh);
    }
}

#[cfg(test)]
mod tests {
    //! The ITU-T G.722 Appendix II digital test sequences, QMF bypassed. Each file
    //! is a sequence of little-endian words; a word with bit 0 set resets the codec
    //! and the expected output for it is 0x0001.
    use super::*;
    use crate::testvectors::{read_vector, words_le};

    const RESET: u16 = 0x0001;

    /// Compares two word sequences and names the first difference.
    fn assert_same(name: &str, got: &[u16], want: &[u16]) {
        assert_eq!(got.len(), want.len(), "{name}: length");
        let diffs: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
        if let Some(&first) = diffs.first() {
            panic!(
                "{name}: {} differences, first at word {first}: got {:04x}, want {:04x}",
                diffs.len(),
                got[first],
                want[first]
            );
        }
    }

    #[test]
    fn band_encoders_reproduce_the_itu_encoder_sequences() {
        for (input, reference) in [("bt1c1.xmt", "bt2r1.cod"), ("bt1c2.xmt", "bt2r2.cod")] {
            let input = words_le(&read_vector(&format!("g722/{input}")));
            let want = words_le(&read_vector(&format!("g722/{reference}")));
            let (mut low, mut high) = (LowBand::default(), HighBand::default());
            let got: Vec<u16> = input
                .iter()
                .map(|&w| {
                    if w & 1 == 1 {
                        (low, high) = (LowBand::default(), HighBand::default());
                        return RESET;
                    }
                    // QMF bypassed: the same 15-bit sample feeds both bands.
                    let x = (w as i16) >> 1;
                    let il = low.encode(x) as u16;
                    let ih = high.encode(x) as u16;
                    ((ih << 6) | il) << 8
                })
                .collect();
            // The data lies between 16 reset words at each end.
            assert!(input[..16]
                .iter()
                .chain(&input[input.len() - 16..])
                .all(|w| w & 1 == 1));
            assert_same(reference, &got, &want);
        }
    }

    #[test]
    fn band_decoders_reproduce_the_itu_decoder_sequences_in_all_three_modes() {
        let modes = [(Mode::Kbit64, 1), (Mode::Kbit56, 2), (Mode::Kbit48, 3)];
        for (n, input) in [(1, "bt2r1.cod"), (2, "bt2r2.cod"), (3, "bt1d3.cod")] {
            let input = words_le(&read_vector(&format!("g722/{input}")));
            for (mode, m) in modes {
                let want_low = words_le(&read_vector(&format!("g722/bt3l{n}.rc{m}")));
                let want_high = words_le(&read_vector(&format!("g722/bt3h{n}.rc0")));
                let (mut low, mut high) = (LowBand::default(), HighBand::default());
                let (mut got_low, mut got_high) = (Vec::new(), Vec::new());
                for &w in &input {
                    if w & 1 == 1 {
                        (low, high) = (LowBand::default(), HighBand::default());
                        got_low.push(RESET);
                        got_high.push(RESET);
                        continue;
                    }
                    let code = (w >> 8) as u8;
                    got_low.push((low.decode(code & 0x3f, mode) << 1) as u16);
                    got_high.push((high.decode(code >> 6) << 1) as u16);
                }
                assert_same(&format!("bt3l{n}.rc{m}"), &got_low, &want_low);
                assert_same(&format!("bt3h{n}.rc0 (mode {m})"), &got_high, &want_high);
            }
        }
    }

    #[test]
    fn scale_factor_starts_at_the_reset_values_and_stays_in_range() {
        // (nb, base, det)
        let cases = [
            (0, 8, 32),
            (0, 10, 8),
            (NB_MAX_LOW, 8, 16384),
            (NB_MAX_HIGH, 10, 16384),
            (NB_MAX_LOW - 1, 8, 4008 << 2),
            (2048, 8, 64),
        ];
        for (nb, base, want) in cases {
            assert_eq!(scale(nb, base), want, "nb {nb} base {base}");
        }
    }

    #[test]
    fn inverse_quantiser_tables_are_signed_per_code_word() {
        // (table value, expected): spot checks against the recommendation's tables.
        let cases = [
            (INV4[0], 0),
            (INV4[1], -2557 * 8),
            (INV4[15], 0),
            (INV4[8], 2557 * 8),
            (INV6[0], -17 * 8),
            (INV6[63], -17 * 8),
            (INV6[61], 17 * 8),
            (INV6[32], 3101 * 8),
            (INV5[31], -35 * 8),
            (INV5[16], 2919 * 8),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn extreme_inputs_do_not_overflow() {
        let (mut low, mut high) = (LowBand::default(), HighBand::default());
        for i in 0..20_000 {
            let x = if (i / 7) % 2 == 0 { 16383 } else { -16384 };
            let il = low.encode(x);
            let ih = high.encode(x);
            assert!(il < 64 && ih < 4);
        }
        let mut dec = LowBand::default();
        for code in (0..=255u8).cycle().take(20_000) {
            let y = dec.decode(code, Mode::Kbit64);
            assert!((-16384..=16383).contains(&y));
        }
    }
}
