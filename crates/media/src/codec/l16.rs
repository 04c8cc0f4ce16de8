//! L16: 16-bit linear PCM in network byte order (RFC 3551 section 4.5.11).

/// Decodes big-endian samples into `out`; returns the number written.
pub fn decode(payload: &[u8], out: &mut [i16]) -> usize {
    let mut n = 0;
    for (o, pair) in out.iter_mut().zip(payload.chunks_exact(2)) {
        *o = i16::from_be_bytes([pair[0], pair[1]]);
        n += 1;
    }
    n
}

/// Encodes samples big-endian into `out`; returns the number of bytes written.
pub fn encode(pcm: &[i16], out: &mut [u8]) -> usize {
    for (x, pair) in pcm.iter().zip(out.chunks_exact_mut(2)) {
        pair.copy_from_slice(&x.to_be_bytes());
    }
    pcm.len().min(out.len() / 2) * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_round_trip_in_network_byte_order() {
        let pcm = [0i16, 1, -1, i16::MAX, i16::MIN, 0x1234];
        let mut wire = [0u8; 12];
        assert_eq!(encode(&pcm, &mut wire), 12);
        assert_eq!(&wire[10..], &[0x12, 0x34]);
        let mut back = [0i16; 6];
        assert_eq!(decode(&wire, &mut back), 6);
        assert_eq!(back, pcm);
    }
}
