//! Just enough RTP (RFC 3550 section 5.1) for a test participant: write a fixed
//! 12-byte header, and parse any valid header (CSRCs, extension, padding), since
//! a mixer may add the talkers as CSRCs. Written independently of the crate's own
//! RTP module on purpose: the system tests check the node against a second opinion.

/// Bytes in a header without CSRCs or extension.
pub const HEADER_LEN: usize = 12;

/// The fields of a parsed packet the tests look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub csrc_count: u8,
    pub payload: &'a [u8],
}

/// Why a datagram is not a valid RTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpError {
    TooShort,
    BadVersion(u8),
    BadPadding,
}

/// Writes a version-2 header without CSRCs into `buf[..12]`; returns 12, or 0 if
/// `buf` is too short.
pub fn write_header(buf: &mut [u8], marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32) -> usize {
    let Some(h) = buf.get_mut(..HEADER_LEN) else {
        return 0;
    };
    h[0] = 0x80;
    h[1] = (u8::from(marker) << 7) | (pt & 0x7f);
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    HEADER_LEN
}

/// Parses a packet; the payload excludes CSRCs, the extension and padding.
pub fn parse(pkt: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if pkt.len() < HEADER_LEN {
        return Err(RtpError::TooShort);
    }
    let version = pkt[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let padding = pkt[0] & 0x20 != 0;
    let extension = pkt[0] & 0x10 != 0;
    let cc = pkt[0] & 0x0f;
    let mut start = HEADER_LEN + 4 * cc as usize;
    if extension {
        let ext = pkt.get(start..start + 4).ok_or(RtpError::TooShort)?;
        start += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
    }
    let mut end = pkt.len();
    if padding {
        let pad = pkt[end - 1] as usize;
        if pad == 0 || pad > end.saturating_sub(start) {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    if start > end {
        return Err(RtpError::TooShort);
    }
    Ok(RtpPacket {
        marker: pkt[1] & 0x80 != 0,
        pt: pkt[1] & 0x7f,
        seq: u16::from_be_bytes([pkt[2], pkt[3]]),
        ts: u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]),
        ssrc: u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]),
        csrc_count: cc,
        payload: &pkt[start..end],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_header_parses_back() {
        let mut buf = [0u8; 15];
        assert_eq!(write_header(&mut buf, true, 9, 0xfffe, 0xdead_beef, 42), 12);
        buf[12..].copy_from_slice(&[1, 2, 3]);
        let p = parse(&buf).unwrap();
        assert_eq!(
            (p.marker, p.pt, p.seq, p.ts, p.ssrc),
            (true, 9, 0xfffe, 0xdead_beef, 42)
        );
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(write_header(&mut [0u8; 11], false, 0, 0, 0, 0), 0);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        // V=2 P=1 X=1 CC=2, PT 0; 2 CSRCs; extension of 1 word; payload 2 bytes;
        // 3 bytes of padding.
        let mut pkt = vec![0xb2, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        pkt.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        pkt.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // extension
        pkt.extend_from_slice(&[0x55, 0x66]); // payload
        pkt.extend_from_slice(&[0, 0, 3]); // padding
        let p = parse(&pkt).unwrap();
        assert_eq!(p.csrc_count, 2);
        assert_eq!(p.payload, &[0x55, 0x66]);
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        let cases: [(&[u8], RtpError); 5] = [
            (&[0x80; 11], RtpError::TooShort),
            (
                &[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                RtpError::BadVersion(1),
            ),
            (&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], RtpError::TooShort),
            (&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], RtpError::TooShort),
            (
                &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                RtpError::BadPadding,
            ),
        ];
        for (pkt, want) in cases {
            assert_eq!(parse(pkt), Err(want), "{pkt:?}");
        }
    }
}
