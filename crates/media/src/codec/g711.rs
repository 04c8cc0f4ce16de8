//! G.711 A-law and mu-law, bit-exact with the ITU-T STL reference (`g711.c`).
//!
//! The STL encoders form the magnitude of a negative input with one's complement
//! (`!x`), not two's complement (`-x`). Most public encoders use the latter and differ
//! from the reference on some negative inputs; the ITU sweep vectors in
//! `vectors/g711/` are the ground truth and the tests check all 65,536 inputs.
//!
//! Decoding goes through 256-entry tables built at compile time, and so does
//! encoding: the code of a sample depends only on its top 12 (A-law) or 14 (mu-law)
//! bits, so tables of 4 KiB and 16 KiB built from the rule replace a leading-zeros
//! count and a few branches per sample (PCMU encoding was 7x slower than decoding).

/// Encodes one 16-bit linear sample to an A-law octet (even bits inverted, as sent).
#[inline]
pub fn alaw_encode(x: i16) -> u8 {
    // The code depends on `x >> 4` only (see `alaw_encode_const`).
    ALAW_ENCODE[(i32::from(x >> 4) + 2048) as usize]
}

/// Encodes one 16-bit linear sample to a mu-law octet (all bits inverted, as sent).
#[inline]
pub fn ulaw_encode(x: i16) -> u8 {
    // The code depends on `x >> 2` only (see `ulaw_encode_const`).
    ULAW_ENCODE[(i32::from(x >> 2) + 8192) as usize]
}

/// The A-law rule itself, which builds the encoding table. It reads `x` only
/// through `x >> 4` (the sign, and the one's complement magnitude, since
/// `!x >> 4 == !(x >> 4)`), so a table of the 4,096 values of `x >> 4` holds every
/// code: one load per sample instead of a leading-zeros count and a few branches.
const fn alaw_encode_const(x: i16) -> u8 {
    // 12-bit magnitude of the 13-bit A-law input; one's complement for negatives.
    let mag = (if x < 0 { (!x) >> 4 } else { x >> 4 }) as u16;
    let code = if mag < 32 {
        // Segments 0 and 1 share the linear step: the magnitude is the code.
        mag
    } else {
        // Position of the highest set bit (5..=11) picks the segment (2..=7).
        let top = 15 - mag.leading_zeros() as u16;
        let seg = top - 3;
        (seg << 4) | ((mag >> (top - 4)) & 0x0f)
    };
    let sign = if x >= 0 { 0x80 } else { 0 };
    ((code | sign) as u8) ^ 0x55
}

/// The mu-law rule itself, which builds the encoding table; it reads `x` only
/// through `x >> 2` (as A-law through `x >> 4`), so 16,384 entries hold every code.
const fn ulaw_encode_const(x: i16) -> u8 {
    // 14-bit magnitude plus the bias of 33; one's complement for negatives.
    let biased = if x < 0 {
        (((!x) >> 2) as i32) + 33
    } else {
        ((x >> 2) as i32) + 33
    };
    let abs = (if biased < 0x1fff { biased } else { 0x1fff }) as u32;
    // Segment number is the bit length of abs >> 6, plus one.
    let segno = 33 - (abs >> 6).leading_zeros(); // 1..=8
    let high = 8 - segno;
    let low = 0x0f - ((abs >> segno) & 0x0f);
    let mut code = (high << 4) | low;
    if x >= 0 {
        code |= 0x80;
    }
    code as u8
}

/// `table[(x >> shift) + N / 2]` = the code of `x`, built from the rule (A-law with
/// `alaw`, else mu-law).
const fn build_encode_table<const N: usize>(shift: u32, alaw: bool) -> [u8; N] {
    let mut t = [0u8; N];
    let offset = (N / 2) as i32;
    let mut i = 0;
    while i < N {
        // The smallest input with this `x >> shift`; any other gives the same code.
        let x = ((i as i32 - offset) << shift) as i16;
        t[i] = if alaw {
            alaw_encode_const(x)
        } else {
            ulaw_encode_const(x)
        };
        i += 1;
    }
    t
}

static ALAW_ENCODE: [u8; 4096] = build_encode_table(4, true);
static ULAW_ENCODE: [u8; 16384] = build_encode_table(2, false);

const fn alaw_decode_const(code: u8) -> i16 {
    let ix = code ^ 0x55;
    let exp = ((ix & 0x7f) >> 4) as i32;
    let mut mant = (ix & 0x0f) as i32;
    if exp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 8;
    if exp > 1 {
        mant <<= exp - 1;
    }
    if ix > 127 {
        mant as i16
    } else {
        -mant as i16
    }
}

const fn ulaw_decode_const(code: u8) -> i16 {
    let sign: i32 = if code < 0x80 { -1 } else { 1 };
    let inv = !code;
    let exponent = ((inv >> 4) & 0x07) as i32;
    let mantissa = (inv & 0x0f) as i32;
    let step = 4 << (exponent + 1);
    (sign * ((0x80 << exponent) + step * mantissa + step / 2 - 4 * 33)) as i16
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode_const(i as u8)
        } else {
            ulaw_decode_const(i as u8)
        };
        i += 1;
    }
    t
}

static ALAW_TABLE: [i16; 256] = build_table(true);
static ULAW_TABLE: [i16; 256] = build_table(false);

/// Decodes one A-law octet to 16-bit linear.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[code as usize]
}

/// Decodes one mu-law octet to 16-bit linear.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[code as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_extremes_encode_to_the_textbook_codes() {
        // (input, A-law, mu-law)
        let cases: &[(i16, u8, u8)] = &[
            (0, 0xd5, 0xff),
            (-1, 0x55, 0x7f),
            (i16::MAX, 0xaa, 0x80),
            (i16::MIN, 0x2a, 0x00),
        ];
        for &(x, a, u) in cases {
            assert_eq!(alaw_encode(x), a, "A-law of {x}");
            assert_eq!(ulaw_encode(x), u, "mu-law of {x}");
        }
    }

    #[test]
    fn the_encoding_tables_give_the_rule_for_all_65536_inputs() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(alaw_encode(x), alaw_encode_const(x), "A-law of {x}");
            assert_eq!(ulaw_encode(x), ulaw_encode_const(x), "mu-law of {x}");
        }
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#x}");
            // mu-law has two zero codes: 0x7f decodes to 0, which encodes as 0xff.
            let back = ulaw_encode(ulaw_decode(code));
            let want = if code == 0x7f { 0xff } else { code };
            assert_eq!(back, want, "mu-law {code:#x}");
        }
    }
}

#[cfg(test)]
mod vector_tests {
    use super::*;
    use crate::testvectors::{read_vector, words_le};

    #[test]
    fn all_65536_encodes_and_256_decodes_equal_the_itu_sweep_files() {
        let src = words_le(&read_vector("g711/sweep.src"));
        let a = words_le(&read_vector("g711/sweep-r.a"));
        let u = words_le(&read_vector("g711/sweep-r.u"));
        let aa = words_le(&read_vector("g711/sweep-r.a-a"));
        let uu = words_le(&read_vector("g711/sweep-r.u-u"));
        assert_eq!(src.len(), 65_536);
        let mut a_diff = 0;
        let mut u_diff = 0;
        for i in 0..src.len() {
            let x = src[i] as i16;
            a_diff += usize::from(alaw_encode(x) as u16 != a[i] & 0xff);
            u_diff += usize::from(ulaw_encode(x) as u16 != u[i] & 0xff);
            // Each code decoded back must equal the reference expansion.
            assert_eq!(
                alaw_decode(a[i] as u8),
                aa[i] as i16,
                "A-law decode of {:#x}",
                a[i]
            );
            assert_eq!(
                ulaw_decode(u[i] as u8),
                uu[i] as i16,
                "mu-law decode of {:#x}",
                u[i]
            );
        }
        assert_eq!(
            (a_diff, u_diff),
            (0, 0),
            "encoder differences (A-law, mu-law)"
        );
        // The sweep covers every code at least once, so all 256 decodes were checked.
        let mut seen_a = [false; 256];
        let mut seen_u = [false; 256];
        for i in 0..src.len() {
            seen_a[(a[i] & 0xff) as usize] = true;
            seen_u[(u[i] & 0xff) as usize] = true;
        }
        assert!(seen_a.iter().all(|&s| s), "A-law sweep misses a code");
        assert!(seen_u.iter().all(|&s| s), "mu-law sweep misses a code");
    }
}
