//! Helpers shared by unit tests (compiled only for `cargo test`).

use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Reads a file under `vectors/` after checking its SHA-256 against
/// `vectors/SHA256SUMS`, so a test never runs against a damaged or swapped vector.
///
/// `rel` is the path as written in SHA256SUMS without the leading `./`, e.g.
/// `"g711/sweep.src"`.
pub fn read_vector(rel: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../vectors");
    let sums = std::fs::read_to_string(root.join("SHA256SUMS")).expect("vectors/SHA256SUMS");
    let want = sums
        .lines()
        .filter_map(|l| l.split_once("  "))
        .find(|(_, name)| name.trim_start_matches("./") == rel)
        .map(|(sum, _)| sum.to_string())
        .unwrap_or_else(|| panic!("{rel} is not listed in vectors/SHA256SUMS"));
    let data = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("vectors/{rel}: {e}"));
    let got: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got, want, "checksum of vectors/{rel}");
    data
}

/// Little-endian 16-bit words of a vector file.
pub fn words_le(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect()
}

/// Power of the `freq` component of `x` sampled at `rate` (Goertzel), normalised so
/// that a sine of amplitude A gives A^2 / 2.
pub fn tone_power(x: &[i16], freq: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s0 = v as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    2.0 * p / (x.len() as f64 * x.len() as f64)
}

/// Mean power of `x` (0 for an empty slice).
pub fn mean_power(x: &[i16]) -> f64 {
    x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64
}
