//! Helpers shared by unit tests (compiled only for `cargo test`).

use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Reads a file under `vectors/` after checking its SHA-256 against
/// `vectors/SHA256SUMS`, so a test never runs against a damaged or swapped vector.
///
/// `rel` is the path as written in SHA256SUMS without the leading `./`, e.g.
/// `"g711/sweep.src"`.
pub fn read_vector(rel: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors");
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
