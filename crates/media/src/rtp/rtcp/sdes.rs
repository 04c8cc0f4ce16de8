//! Source description (RFC 3550 §6.5): chunks of (SSRC, items), each item a
//! (type, length, text) triple, each chunk's item list ended by a zero octet and
//! padded to a 32-bit boundary.
//!
//! Chunks are validated lazily as [`Sdes::chunks`] walks them: a malformed chunk is
//! yielded as an error and ends the walk. A chunk that was yielded is fully
//! validated, so its [`SdesItems`] iterator is infallible.

use super::{be32, put_header, RtcpError, PT_SDES};

/// SDES item type: end of the item list.
pub const SDES_END: u8 = 0;
/// SDES item type: canonical name.
pub const SDES_CNAME: u8 = 1;

/// An SDES packet: `count` chunks in `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdes<'a> {
    pub count: u8,
    body: &'a [u8],
}

impl<'a> Sdes<'a> {
    pub(crate) fn new(count: u8, body: &'a [u8]) -> Self {
        Sdes { count, body }
    }

    /// Walks the chunks.
    pub fn chunks(&self) -> SdesChunks<'a> {
        SdesChunks {
            rest: self.body,
            left: self.count,
        }
    }

    /// The CNAME of the first chunk that has one, if every chunk up to it is valid.
    pub fn cname(&self) -> Option<(u32, &'a [u8])> {
        self.chunks()
            .map_while(Result::ok)
            .find_map(|c| c.cname().map(|n| (c.ssrc, n)))
    }
}

/// Iterator over the chunks of an SDES packet.
#[derive(Debug, Clone)]
pub struct SdesChunks<'a> {
    rest: &'a [u8],
    left: u8,
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = Result<SdesChunk<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match split_chunk(self.rest) {
            Ok((chunk, rest)) => {
                self.rest = rest;
                Some(Ok(chunk))
            }
            Err(e) => {
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}

/// Validates the chunk at the start of `buf`, returning it and what follows.
fn split_chunk(buf: &[u8]) -> Result<(SdesChunk<'_>, &[u8]), RtcpError> {
    if buf.len() < 4 {
        return Err(RtcpError::BadSdes);
    }
    let ssrc = be32(buf, 0);
    let mut pos = 4;
    loop {
        let Some(&kind) = buf.get(pos) else {
            return Err(RtcpError::BadSdes);
        };
        if kind == SDES_END {
            break;
        }
        let Some(&len) = buf.get(pos + 1) else {
            return Err(RtcpError::BadSdes);
        };
        pos += 2 + usize::from(len);
        if pos > buf.len() {
            return Err(RtcpError::BadSdes);
        }
    }
    let items = &buf[4..pos];
    // Skip the END octet and the padding to the next 32-bit boundary; a body that
    // stops short of the boundary is tolerated (nothing follows it anyway).
    let next = ((pos + 1).div_ceil(4) * 4).min(buf.len());
    Ok((SdesChunk { ssrc, items }, &buf[next..]))
}

/// One validated chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    /// Invariant: a well-formed sequence of items without the END octet.
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    pub fn items(&self) -> SdesItems<'a> {
        SdesItems { rest: self.items }
    }

    /// The first CNAME item's text.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items().find(|i| i.kind == SDES_CNAME).map(|i| i.value)
    }
}

/// One SDES item. `value` is meant to be UTF-8 but is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    pub kind: u8,
    pub value: &'a [u8],
}

/// Iterator over a validated chunk's items.
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = SdesItem<'a>;

    fn next(&mut self) -> Option<SdesItem<'a>> {
        // The chunk was validated, but stay total anyway: a short slice ends it.
        let (&kind, rest) = self.rest.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let value = rest.get(..usize::from(len))?;
        self.rest = &rest[usize::from(len)..];
        Some(SdesItem { kind, value })
    }
}

/// Bytes an SDES packet with one CNAME chunk takes.
pub(crate) fn cname_packet_len(cname: &str) -> usize {
    // header + ssrc + (type, len, text) + END, padded to 4.
    (4 + 4 + 2 + cname.len() + 1).div_ceil(4) * 4
}

/// Writes an SDES packet with one chunk carrying `cname`; returns bytes written.
pub(crate) fn write_cname(out: &mut [u8], ssrc: u32, cname: &str) -> Result<usize, RtcpError> {
    let text = cname.as_bytes();
    let Ok(len) = u8::try_from(text.len()) else {
        return Err(RtcpError::CnameTooLong { len: text.len() });
    };
    let total = cname_packet_len(cname);
    let Some(out) = out.get_mut(..total) else {
        return Err(RtcpError::BufferTooSmall {
            need: total,
            have: out.len(),
        });
    };
    put_header(out, 1, PT_SDES, total);
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    out[8] = SDES_CNAME;
    out[9] = len;
    out[10..10 + text.len()].copy_from_slice(text);
    // END octet plus zero padding.
    out[10 + text.len()..].fill(0);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(packet: &[u8]) -> &[u8] {
        &packet[4..]
    }

    #[test]
    fn a_written_cname_parses_back_for_every_padding_length() {
        for n in 0..12 {
            let cname: String = "abcdefghijkl"[..n].to_string();
            let mut buf = [0xffu8; 64];
            let len = write_cname(&mut buf, 0x5eed, &cname).unwrap();
            assert_eq!(len % 4, 0);
            assert_eq!(len, cname_packet_len(&cname));
            let sdes = Sdes::new(1, body_of(&buf[..len]));
            assert_eq!(sdes.cname(), Some((0x5eed, cname.as_bytes())), "n={n}");
        }
    }

    #[test]
    fn several_chunks_and_items_are_iterated_in_order() {
        let mut body = vec![0, 0, 0, 1, SDES_CNAME, 2, b'a', b'b', 2, 1, b'N', 0];
        body.extend_from_slice(&[0, 0, 0, 2, 6, 0, 0, 0]); // TOOL "" then END
        let sdes = Sdes::new(2, &body);
        let chunks: Vec<_> = sdes.chunks().map(Result::unwrap).collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].ssrc, 1);
        let items: Vec<_> = chunks[0].items().collect();
        assert_eq!(
            items,
            vec![
                SdesItem {
                    kind: SDES_CNAME,
                    value: b"ab"
                },
                SdesItem {
                    kind: 2,
                    value: b"N"
                }
            ]
        );
        assert_eq!(chunks[1].ssrc, 2);
        assert_eq!(chunks[1].items().count(), 1);
        assert_eq!(chunks[1].cname(), None);
    }

    #[test]
    fn malformed_chunks_yield_one_error_and_stop() {
        let table: &[(&str, &[u8], u8)] = &[
            ("no ssrc", &[0, 0], 1),
            ("no END", &[0, 0, 0, 1, 1, 1, b'x'], 1),
            ("item overruns", &[0, 0, 0, 1, 1, 9, b'x', 0], 1),
            ("item length missing", &[0, 0, 0, 1, 1], 1),
            ("count larger than chunks", &[0, 0, 0, 1, 0, 0, 0, 0], 3),
        ];
        for (name, body, count) in table {
            let sdes = Sdes::new(*count, body);
            let results: Vec<_> = sdes.chunks().collect();
            assert_eq!(results.last(), Some(&Err(RtcpError::BadSdes)), "{name}");
            assert!(results.len() <= usize::from(*count), "{name}");
        }
    }

    #[test]
    fn an_overlong_cname_or_small_buffer_is_an_error() {
        let long = "x".repeat(256);
        assert_eq!(
            write_cname(&mut [0u8; 300], 1, &long),
            Err(RtcpError::CnameTooLong { len: 256 })
        );
        assert_eq!(
            write_cname(&mut [0u8; 11], 1, "ab"),
            Err(RtcpError::BufferTooSmall { need: 16, have: 11 })
        );
    }
}
