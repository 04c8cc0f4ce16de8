//! RTP data packets (RFC 3550 §5.1): a zero-copy parser and a header writer.
//!
//! [`RtpPacket::parse`] borrows the datagram and validates everything the fixed
//! header promises (version 2, CSRC list, header extension, padding) before it hands
//! out a payload slice, so code downstream never indexes past the end of a buffer.
//! [`RtpPacket::parse_bytes`] does the same over a [`Bytes`] and returns the payload
//! as a `Bytes` view of the same allocation (no copy), for a jitter buffer to keep.
//!
//! Sending needs only the 12-byte fixed header: [`RtpHeader::write`]. The mixer
//! never sends CSRCs, extensions or padding.

use bytes::Bytes;
use std::ops::Range;

/// Length of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;
/// The only RTP version this code speaks.
pub const RTP_VERSION: u8 = 2;

/// Why a buffer is not a well-formed RTP packet, or a header could not be written.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("{len} bytes is shorter than the 12-byte RTP header")]
    TooShort { len: usize },
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("CSRC list of {count} entries needs {need} bytes, packet has {have}")]
    TruncatedCsrc { count: u8, need: usize, have: usize },
    #[error("header extension needs {need} bytes, packet has {have}")]
    TruncatedExtension { need: usize, have: usize },
    #[error("padding count {count} does not fit the {available} bytes after the header")]
    BadPadding { count: u8, available: usize },
    #[error("payload type {0} does not fit in 7 bits")]
    BadPayloadType(u8),
    #[error("output buffer of {have} bytes is smaller than the {need} needed")]
    BufferTooSmall { need: usize, have: usize },
}

/// A header extension (RFC 3550 §5.3.1): the profile-defined 16-bit value and the
/// extension data (a multiple of 4 bytes; RFC 8285 elements are not parsed here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Number of padding bytes removed from the end (0 when the P bit is clear).
    pub padding: u8,
    pub extension: Option<Extension<'a>>,
    pub payload: &'a [u8],
    /// Raw CSRC list, 4 bytes per entry (validated length); see [`RtpPacket::csrcs`].
    csrc_raw: &'a [u8],
    /// Byte offset of `payload` within the parsed buffer.
    payload_start: usize,
}

impl<'a> RtpPacket<'a> {
    /// Parses and validates `buf` as one RTP packet.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < RTP_HEADER_LEN {
            return Err(RtpError::TooShort { len: buf.len() });
        }
        let version = buf[0] >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = buf[0] & 0x20 != 0;
        let has_extension = buf[0] & 0x10 != 0;
        let csrc_count = buf[0] & 0x0f;
        let marker = buf[1] & 0x80 != 0;
        let payload_type = buf[1] & 0x7f;
        let sequence = u16::from_be_bytes([buf[2], buf[3]]);
        let timestamp = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);

        let csrc_end = RTP_HEADER_LEN + 4 * usize::from(csrc_count);
        if buf.len() < csrc_end {
            return Err(RtpError::TruncatedCsrc {
                count: csrc_count,
                need: csrc_end,
                have: buf.len(),
            });
        }
        let csrc_raw = &buf[RTP_HEADER_LEN..csrc_end];

        let mut header_end = csrc_end;
        let mut extension = None;
        if has_extension {
            let ext_head_end = csrc_end + 4;
            if buf.len() < ext_head_end {
                return Err(RtpError::TruncatedExtension {
                    need: ext_head_end,
                    have: buf.len(),
                });
            }
            let profile = u16::from_be_bytes([buf[csrc_end], buf[csrc_end + 1]]);
            let words = u16::from_be_bytes([buf[csrc_end + 2], buf[csrc_end + 3]]);
            let ext_end = ext_head_end + 4 * usize::from(words);
            if buf.len() < ext_end {
                return Err(RtpError::TruncatedExtension {
                    need: ext_end,
                    have: buf.len(),
                });
            }
            extension = Some(Extension {
                profile,
                data: &buf[ext_head_end..ext_end],
            });
            header_end = ext_end;
        }

        // The last octet counts the padding including itself, so 0 is malformed, and
        // the padding may not reach back into the header.
        let mut padding = 0u8;
        let mut payload_end = buf.len();
        if has_padding {
            let available = buf.len() - header_end;
            let count = buf[buf.len() - 1];
            if count == 0 || usize::from(count) > available {
                return Err(RtpError::BadPadding { count, available });
            }
            padding = count;
            payload_end -= usize::from(count);
        }

        Ok(RtpPacket {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            padding,
            extension,
            payload: &buf[header_end..payload_end],
            csrc_raw,
            payload_start: header_end,
        })
    }

    /// Parses `buf` like [`RtpPacket::parse`] and also returns the payload as a
    /// [`Bytes`] sharing `buf`'s allocation (reference-counted, no copy).
    pub fn parse_bytes(buf: &'a Bytes) -> Result<(Self, Bytes), RtpError> {
        let packet = Self::parse(buf)?;
        let payload = buf.slice(packet.payload_range());
        Ok((packet, payload))
    }

    /// The CSRC identifiers, in order, without allocating.
    pub fn csrcs(&self) -> Csrcs<'a> {
        Csrcs { raw: self.csrc_raw }
    }

    /// Where the payload lies in the parsed buffer.
    pub fn payload_range(&self) -> Range<usize> {
        self.payload_start..self.payload_start + self.payload.len()
    }

    /// The fixed-header fields, e.g. to re-send the packet with a rewritten SSRC.
    pub fn header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.marker,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        }
    }
}

/// Iterator over a packet's CSRC list (`u32`s in network order on the wire).
#[derive(Debug, Clone)]
pub struct Csrcs<'a> {
    /// Invariant: a multiple of 4 bytes long (checked by the parser).
    raw: &'a [u8],
}

impl Iterator for Csrcs<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (head, rest) = self.raw.split_first_chunk::<4>()?;
        self.raw = rest;
        Some(u32::from_be_bytes(*head))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.raw.len() / 4;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Csrcs<'_> {}

/// The fixed RTP header of an outgoing packet (no CSRCs, extension or padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader {
    pub marker: bool,
    /// 0..=127.
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Writes the 12-byte header at the start of `out`; returns 12.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtpError> {
        if self.payload_type > 0x7f {
            return Err(RtpError::BadPayloadType(self.payload_type));
        }
        let Some(out) = out.get_mut(..RTP_HEADER_LEN) else {
            return Err(RtpError::BufferTooSmall {
                need: RTP_HEADER_LEN,
                have: out.len(),
            });
        };
        out[0] = RTP_VERSION << 6;
        out[1] = (u8::from(self.marker) << 7) | self.payload_type;
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(RTP_HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// V=2, P, X, CC=2, M, PT=96, seq 0x1234, ts 0xdeadbeef, ssrc 0x01020304,
    /// CSRCs 0xaaaaaaaa 0xbbbbbbbb, extension profile 0xbede with one word,
    /// payload "hi!", 5 padding bytes.
    fn full_packet() -> Vec<u8> {
        let mut p = vec![0xb2, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4];
        p.extend_from_slice(&[0xaa; 4]);
        p.extend_from_slice(&[0xbb; 4]);
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0x55, 0x00, 0x00]);
        p.extend_from_slice(b"hi!");
        p.extend_from_slice(&[0, 0, 0, 0, 5]);
        p
    }

    #[test]
    fn a_packet_with_csrcs_extension_and_padding_parses_every_field() {
        let buf = full_packet();
        let p = RtpPacket::parse(&buf).unwrap();
        assert!(p.marker);
        assert_eq!(p.payload_type, 96);
        assert_eq!(p.sequence, 0x1234);
        assert_eq!(p.timestamp, 0xdead_beef);
        assert_eq!(p.ssrc, 0x0102_0304);
        assert_eq!(
            p.csrcs().collect::<Vec<_>>(),
            vec![0xaaaa_aaaa, 0xbbbb_bbbb]
        );
        assert_eq!(p.csrcs().len(), 2);
        let ext = p.extension.unwrap();
        assert_eq!(ext.profile, 0xbede);
        assert_eq!(ext.data, &[0x10, 0x55, 0, 0]);
        assert_eq!(p.payload, b"hi!");
        assert_eq!(p.padding, 5);
        assert_eq!(p.payload_range(), 28..31);
    }

    #[test]
    fn a_plain_packet_round_trips_through_the_header_writer() {
        let h = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 65535,
            timestamp: 160,
            ssrc: 0xcafe_f00d,
        };
        let mut buf = [0u8; 14];
        assert_eq!(h.write(&mut buf), Ok(12));
        buf[12] = 0xd5;
        buf[13] = 0x55;
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.header(), h);
        assert_eq!(p.payload, &[0xd5, 0x55]);
        assert_eq!(p.csrcs().count(), 0);
        assert_eq!(p.extension, None);
        assert_eq!(p.padding, 0);
    }

    #[test]
    fn the_writer_rejects_short_buffers_and_wide_payload_types() {
        let h = RtpHeader::default();
        assert_eq!(
            h.write(&mut [0u8; 11]),
            Err(RtpError::BufferTooSmall { need: 12, have: 11 })
        );
        let h = RtpHeader {
            payload_type: 128,
            ..h
        };
        assert_eq!(h.write(&mut [0u8; 12]), Err(RtpError::BadPayloadType(128)));
    }

    #[test]
    fn the_bytes_variant_shares_the_input_allocation() {
        let buf = Bytes::from(full_packet());
        let (p, payload) = RtpPacket::parse_bytes(&buf).unwrap();
        assert_eq!(&payload[..], b"hi!");
        assert_eq!(payload.as_ptr(), p.payload.as_ptr());
        assert_eq!(payload.as_ptr(), buf[28..].as_ptr());
    }

    #[test]
    fn malformed_packets_get_a_typed_error() {
        let full = full_packet();
        let mut bad_version = full.clone();
        bad_version[0] = 0x72; // V=1
        let mut zero_pad = full.clone();
        *zero_pad.last_mut().unwrap() = 0;
        let mut huge_pad = full.clone();
        *huge_pad.last_mut().unwrap() = 9; // 8 bytes after the extension
        let mut pad_exactly_all = full.clone();
        *pad_exactly_all.last_mut().unwrap() = 8;
        let mut no_ext_room = vec![0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        no_ext_room.extend_from_slice(&[0xbe, 0xde]);
        let mut ext_too_long = vec![0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        ext_too_long.extend_from_slice(&[0xbe, 0xde, 0, 2, 1, 2, 3, 4]);
        let pad_only_header = {
            let mut p = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            p.push(1); // one padding byte, empty payload: valid
            p
        };

        let table: &[(&str, &[u8], Result<usize, RtpError>)] = &[
            ("empty", &[], Err(RtpError::TooShort { len: 0 })),
            ("11 bytes", &full[..11], Err(RtpError::TooShort { len: 11 })),
            ("version 1", &bad_version, Err(RtpError::BadVersion(1))),
            (
                "CSRC list cut",
                &full[..19],
                Err(RtpError::TruncatedCsrc {
                    count: 2,
                    need: 20,
                    have: 19,
                }),
            ),
            (
                "extension header cut",
                &no_ext_room,
                Err(RtpError::TruncatedExtension { need: 16, have: 14 }),
            ),
            (
                "extension data cut",
                &ext_too_long,
                Err(RtpError::TruncatedExtension { need: 24, have: 20 }),
            ),
            (
                "padding count zero",
                &zero_pad,
                Err(RtpError::BadPadding {
                    count: 0,
                    available: 8,
                }),
            ),
            (
                "padding into the header",
                &huge_pad,
                Err(RtpError::BadPadding {
                    count: 9,
                    available: 8,
                }),
            ),
            ("padding is the whole body", &pad_exactly_all, Ok(0)),
            ("one padding byte, no payload", &pad_only_header, Ok(0)),
            ("valid", &full, Ok(3)),
        ];
        for (name, buf, want) in table {
            let got = RtpPacket::parse(buf).map(|p| p.payload.len());
            assert_eq!(&got, want, "{name}");
        }
    }
}
