//! Lowercase hexadecimal, as used by the login fields (`challenge`, `digest`, `proof`).
//!
//! Encoding always produces lowercase so the strings that go into the signed message
//! are canonical. Decoding accepts either case: the decoded bytes, not the text, are what
//! get compared, so a client that sends uppercase is not punished for it.

use thiserror::Error;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Why a hex string could not be decoded.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum HexError {
    #[error("hex string has {0} characters; expected {1}")]
    WrongLength(usize, usize),
    #[error("byte {0} is not a hex digit")]
    NotHex(usize),
}

/// Lowercase hex of `bytes`, two characters per byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes exactly `N` bytes from `2 * N` hex digits (either case).
///
/// A fixed-size result lets callers decode digests without allocating and rejects any
/// other length up front.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let raw = text.as_bytes();
    if raw.len() != 2 * N {
        return Err(HexError::WrongLength(raw.len(), 2 * N));
    }
    let mut out = [0u8; N];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        let hi = nibble(pair[0]).ok_or(HexError::NotHex(2 * i))?;
        let lo = nibble(pair[1]).ok_or(HexError::NotHex(2 * i + 1))?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_lowercase_with_two_digits_per_byte_including_leading_zeros() {
        assert_eq!(encode(&[0x00, 0x0f, 0xa0, 0xff, 0x5c]), "000fa0ff5c");
        assert_eq!(encode(&[]), "");
    }

    #[test]
    fn every_byte_value_survives_a_round_trip() {
        let all: [u8; 256] = std::array::from_fn(|i| i as u8);
        let text = encode(&all);
        assert_eq!(text.len(), 512);
        assert_eq!(decode_array::<256>(&text), Ok(all));
    }

    #[test]
    fn decoding_accepts_uppercase_and_mixed_case() {
        assert_eq!(decode_array::<3>("ABcdEf"), Ok([0xab, 0xcd, 0xef]));
    }

    #[test]
    fn decoding_rejects_wrong_lengths_and_names_them() {
        assert_eq!(decode_array::<2>("abc"), Err(HexError::WrongLength(3, 4)));
        assert_eq!(
            decode_array::<2>("abcdef"),
            Err(HexError::WrongLength(6, 4))
        );
        assert_eq!(decode_array::<1>(""), Err(HexError::WrongLength(0, 2)));
    }

    #[test]
    fn decoding_rejects_non_hex_characters_and_reports_their_position() {
        assert_eq!(decode_array::<2>("0g00"), Err(HexError::NotHex(1)));
        assert_eq!(decode_array::<2>("00 0"), Err(HexError::NotHex(2)));
        // Multi-byte UTF-8 has the right byte count here but is not hex.
        assert_eq!(decode_array::<1>("é"), Err(HexError::NotHex(0)));
    }
}
