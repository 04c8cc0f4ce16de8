//! The output limiter: the identity below its knee, a smooth curve above it that
//! approaches full scale but never reaches it.
//!
//! Memoryless on purpose: it costs nothing when the mix is quiet (one compare per
//! sample), needs no per-listener state, and cannot pump. The curve above the knee is
//! `knee + r*d / (r + d)` with `d = |x| - knee` and `r = 32767 - knee`: its slope is
//! 1 at the knee (no corner to hear) and falls towards 0, so ten talkers at full
//! scale (|x| up to ~330,000) still land inside i16 without wrapping or clipping flat.

/// Default knee: 0.75 of full scale (-2.5 dBFS). Speech at normal telephone levels
/// (-20 dBov average, peaks below -6 dBov) never reaches it.
pub const DEFAULT_KNEE: i32 = 24_576;

/// Maps an i32 mix sample into i16 range.
#[inline]
pub fn limit_sample(x: i32, knee: i32) -> i16 {
    let mag = x.unsigned_abs() as i64;
    let knee = knee as i64;
    if mag <= knee {
        return x as i16;
    }
    let r = 32_767 - knee;
    let d = mag - knee;
    let y = (knee + (r * d) / (r + d)) as i32;
    if x < 0 {
        -y as i16
    } else {
        y as i16
    }
}

/// Limits a whole frame. Returns true when any sample was above the knee.
#[inline]
pub fn limit_frame(mix: &[i32], out: &mut [i16], knee: i32) -> bool {
    let mut touched = false;
    for (o, &x) in out.iter_mut().zip(mix) {
        if x.unsigned_abs() as i32 <= knee {
            *o = x as i16;
        } else {
            touched = true;
            *o = limit_sample(x, knee);
        }
    }
    touched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_up_to_the_knee_pass_unchanged() {
        for x in -DEFAULT_KNEE..=DEFAULT_KNEE {
            assert_eq!(limit_sample(x, DEFAULT_KNEE) as i32, x);
        }
    }

    #[test]
    fn the_curve_is_monotonic_and_stays_inside_i16() {
        let mut prev = limit_sample(DEFAULT_KNEE, DEFAULT_KNEE);
        // Ten full-scale talkers and far beyond: no wrap, no flat clip at the rail.
        for x in (DEFAULT_KNEE..=10 * 32_768 * 4).step_by(7) {
            let y = limit_sample(x, DEFAULT_KNEE);
            assert!(y >= prev, "not monotonic at {x}");
            assert!(y < i16::MAX, "reached the rail at {x}");
            assert_eq!(limit_sample(-x, DEFAULT_KNEE), -y, "not symmetric at {x}");
            prev = y;
        }
    }

    #[test]
    fn saturation_table() {
        // (input, expected output) around and beyond the knee.
        let cases: &[(i32, i16)] = &[
            (0, 0),
            (24_576, 24_576),
            (24_577, 24_576),
            (32_767, 28_671),
            (65_534, 31_401),
            (327_670, 32_551),
            (i32::MAX, 32_766),
            (i32::MIN, -32_766),
        ];
        for &(x, want) in cases {
            assert_eq!(limit_sample(x, DEFAULT_KNEE), want, "input {x}");
        }
    }

    #[test]
    fn limit_frame_reports_whether_it_touched_anything() {
        let quiet = [1000i32; 160];
        let mut out = [0i16; 160];
        assert!(!limit_frame(&quiet, &mut out, DEFAULT_KNEE));
        assert_eq!(out[0], 1000);
        let loud = [200_000i32; 160];
        assert!(limit_frame(&loud, &mut out, DEFAULT_KNEE));
        assert!(out.iter().all(|&s| s > 24_576 && s < i16::MAX));
    }
}
