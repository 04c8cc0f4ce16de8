//! Goodbye (RFC 3550 §6.6): the SSRCs leaving and an optional reason.

use super::{be32, RtcpError, PT_BYE};

/// A BYE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye<'a> {
    /// Invariant: a multiple of 4 bytes.
    ssrcs: &'a [u8],
    /// The reason text (UTF-8 by the RFC, unchecked), if present.
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    /// Parses a BYE body (after the common header, padding removed).
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let need = 4 * usize::from(count);
        if body.len() < need {
            return Err(RtcpError::BadCount {
                pt: PT_BYE,
                count,
                need,
                have: body.len(),
            });
        }
        let (ssrcs, rest) = body.split_at(need);
        let reason = match rest.split_first() {
            None => None,
            Some((&len, text)) => match text.get(..usize::from(len)) {
                Some(t) => Some(t),
                None => return Err(RtcpError::BadByeReason { len }),
            },
        };
        Ok(Bye { ssrcs, reason })
    }

    /// The SSRCs saying goodbye.
    pub fn ssrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| be32(c, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bye_bodies_parse_or_fail_by_table() {
        type Row = (
            &'static str,
            u8,
            &'static [u8],
            Result<(Vec<u32>, Option<&'static [u8]>), RtcpError>,
        );
        let table: &[Row] = &[
            ("empty", 0, &[], Ok((vec![], None))),
            ("one ssrc", 1, &[0, 0, 0, 7], Ok((vec![7], None))),
            (
                "two ssrcs and a reason",
                2,
                &[0, 0, 0, 7, 0, 0, 0, 8, 3, b'b', b'y', b'e'],
                Ok((vec![7, 8], Some(b"bye"))),
            ),
            (
                "reason then padding",
                1,
                &[0, 0, 0, 7, 1, b'x', 0, 0],
                Ok((vec![7], Some(b"x"))),
            ),
            (
                "count overruns",
                2,
                &[0, 0, 0, 7],
                Err(RtcpError::BadCount {
                    pt: PT_BYE,
                    count: 2,
                    need: 8,
                    have: 4,
                }),
            ),
            (
                "reason overruns",
                1,
                &[0, 0, 0, 7, 9, b'x'],
                Err(RtcpError::BadByeReason { len: 9 }),
            ),
        ];
        for (name, count, body, want) in table {
            let got = Bye::parse(*count, body).map(|b| (b.ssrcs().collect::<Vec<_>>(), b.reason));
            assert_eq!(&got, want, "{name}");
        }
    }
}
