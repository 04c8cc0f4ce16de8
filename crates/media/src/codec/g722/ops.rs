//! The 16-bit fixed-point operations G.722's ADPCM is specified in.
//!
//! The recommendation defines every ADPCM quantity as a 16-bit two's-complement word
//! and every addition, subtraction and Q15 product as *saturating* at the word's
//! range. Bit-exactness depends on saturating in exactly those places and nowhere
//! else, so the band code spells each one out through these helpers instead of using
//! `+` on `i16` (which would panic in debug builds and wrap in release).
//!
//! All helpers widen to `i32`, where no intermediate can overflow (|a*b| <= 2^30).

/// Clamps a 32-bit intermediate to the 16-bit word range.
#[inline(always)]
pub(super) fn sat16(x: i32) -> i16 {
    x.clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

/// Saturating 16-bit addition.
#[inline(always)]
pub(super) fn add(a: i16, b: i16) -> i16 {
    sat16(a as i32 + b as i32)
}

/// Saturating 16-bit subtraction.
#[inline(always)]
pub(super) fn sub(a: i16, b: i16) -> i16 {
    sat16(a as i32 - b as i32)
}

/// Q15 product: `(a * b) >> 15`, rounding toward minus infinity, saturating (only
/// `-32768 * -32768` reaches the limit).
#[inline(always)]
pub(super) fn mult(a: i16, b: i16) -> i16 {
    sat16((a as i32 * b as i32) >> 15)
}

/// The sign word of `x`: -1 when negative, 0 otherwise (the recommendation's
/// `x >> 15`). Sign comparisons in the adaptation treat zero as positive.
#[inline(always)]
pub(super) fn sign(x: i16) -> i16 {
    x >> 15
}

/// One's-complement magnitude used by the quantisers: `x` when `x >= 0`, else
/// `-(x + 1)`, which never overflows.
#[inline(always)]
pub(super) fn magnitude(x: i16) -> i16 {
    if x >= 0 {
        x
    } else {
        !x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_operations_saturate_at_the_16_bit_limits() {
        // (operation, got, want)
        let cases: [(&str, i16, i16); 9] = [
            ("add max", add(i16::MAX, 1), i16::MAX),
            ("add min", add(i16::MIN, -1), i16::MIN),
            ("sub min", sub(i16::MIN, 1), i16::MIN),
            ("sub negate min", sub(0, i16::MIN), i16::MAX),
            ("mult min*min", mult(i16::MIN, i16::MIN), i16::MAX),
            ("mult floors", mult(-1, 1), -1),
            ("mult half", mult(16384, 100), 50),
            ("magnitude of -1", magnitude(-1), 0),
            ("magnitude of min", magnitude(i16::MIN), i16::MAX),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }
}
