//! Receiver reports (RFC 3550 §6.4.2) and the report block they share with SRs.

use super::{be32, ntp, RtcpError, PT_RR};
use std::time::Duration;

/// Bytes in one report block on the wire.
pub const REPORT_BLOCK_LEN: usize = 24;

/// Largest and smallest cumulative loss a report block can carry (24-bit signed).
pub const MAX_CUMULATIVE_LOST: i32 = 0x7f_ffff;
pub const MIN_CUMULATIVE_LOST: i32 = -0x80_0000;

/// Reception quality for one source (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Packets lost in the last interval, as a fraction of 256.
    pub fraction_lost: u8,
    /// Expected minus received since the start; negative with duplicates. Written
    /// clamped to [`MIN_CUMULATIVE_LOST`]..=[`MAX_CUMULATIVE_LOST`].
    pub cumulative_lost: i32,
    /// Sequence-number cycles in the high 16 bits, highest sequence in the low 16.
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR from this source (0: none).
    pub last_sr: u32,
    /// Delay since that SR was received, in 1/65536 s (0 if `last_sr` is 0).
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Parses one block from exactly [`REPORT_BLOCK_LEN`] bytes.
    pub(crate) fn parse(b: &[u8; REPORT_BLOCK_LEN]) -> Self {
        let lost_word = be32(b, 4);
        ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: (lost_word >> 24) as u8,
            // Sign-extend the 24-bit field.
            cumulative_lost: ((lost_word << 8) as i32) >> 8,
            extended_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            last_sr: be32(b, 16),
            delay_since_last_sr: be32(b, 20),
        }
    }

    /// Writes the block into exactly [`REPORT_BLOCK_LEN`] bytes.
    pub(crate) fn write(&self, out: &mut [u8; REPORT_BLOCK_LEN]) {
        let lost = self
            .cumulative_lost
            .clamp(MIN_CUMULATIVE_LOST, MAX_CUMULATIVE_LOST) as u32
            & 0xff_ffff;
        let words = [
            self.ssrc,
            (u32::from(self.fraction_lost) << 24) | lost,
            self.extended_highest_seq,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        ];
        for (dst, w) in out.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&w.to_be_bytes());
        }
    }

    /// Round-trip time to the reporter, given our wallclock now in compact NTP
    /// (see [`ntp::rtt`]); `None` if the block echoes no SR or the clocks disagree.
    pub fn rtt(&self, now_compact_ntp: u32) -> Option<Duration> {
        ntp::rtt(now_compact_ntp, self.last_sr, self.delay_since_last_sr)
    }
}

/// Iterator over validated report blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    /// Invariant: a multiple of [`REPORT_BLOCK_LEN`] bytes (checked by the parser).
    raw: &'a [u8],
}

impl<'a> ReportBlocks<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        debug_assert!(raw.len() % REPORT_BLOCK_LEN == 0);
        ReportBlocks { raw }
    }
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let (head, rest) = self.raw.split_first_chunk::<REPORT_BLOCK_LEN>()?;
        self.raw = rest;
        Some(ReportBlock::parse(head))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.raw.len() / REPORT_BLOCK_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

/// Splits `count` report blocks off the front of `body`, returning them and the
/// rest (a profile-specific extension).
pub(crate) fn split_blocks(
    pt: u8,
    count: u8,
    body: &[u8],
    offset: usize,
) -> Result<(ReportBlocks<'_>, &[u8]), RtcpError> {
    let need = offset + usize::from(count) * REPORT_BLOCK_LEN;
    if body.len() < need {
        return Err(RtcpError::BadCount {
            pt,
            count,
            need,
            have: body.len(),
        });
    }
    Ok((ReportBlocks::new(&body[offset..need]), &body[need..]))
}

/// A receiver report: the reporter's SSRC and its report blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    pub ssrc: u32,
    pub blocks: ReportBlocks<'a>,
    /// Profile-specific extension after the blocks (usually empty).
    pub extension: &'a [u8],
}

impl<'a> ReceiverReport<'a> {
    /// Parses an RR body (after the common header, padding removed).
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let (blocks, extension) = split_blocks(PT_RR, count, body, 4)?;
        Ok(ReceiverReport {
            ssrc: be32(body, 0),
            blocks,
            extension,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_blocks_round_trip_with_24_bit_signed_loss() {
        let table: &[(i32, i32)] = &[
            (0, 0),
            (5, 5),
            (-1, -1),
            (MAX_CUMULATIVE_LOST, MAX_CUMULATIVE_LOST),
            (MAX_CUMULATIVE_LOST + 1, MAX_CUMULATIVE_LOST),
            (i32::MAX, MAX_CUMULATIVE_LOST),
            (MIN_CUMULATIVE_LOST, MIN_CUMULATIVE_LOST),
            (i32::MIN, MIN_CUMULATIVE_LOST),
        ];
        for &(lost, want) in table {
            let b = ReportBlock {
                ssrc: 0x1122_3344,
                fraction_lost: 0x80,
                cumulative_lost: lost,
                extended_highest_seq: 0x0001_ffff,
                jitter: 42,
                last_sr: 0xabcd_0123,
                delay_since_last_sr: 65536,
            };
            let mut raw = [0u8; REPORT_BLOCK_LEN];
            b.write(&mut raw);
            let back = ReportBlock::parse(&raw);
            assert_eq!(
                back,
                ReportBlock {
                    cumulative_lost: want,
                    ..b
                },
                "lost {lost}"
            );
        }
    }

    #[test]
    fn a_receiver_report_whose_count_overruns_the_body_is_rejected() {
        let mut body = vec![0, 0, 0, 1];
        body.extend_from_slice(&[0u8; 24]);
        assert_eq!(ReceiverReport::parse(1, &body).unwrap().blocks.len(), 1);
        assert_eq!(
            ReceiverReport::parse(2, &body),
            Err(RtcpError::BadCount {
                pt: PT_RR,
                count: 2,
                need: 52,
                have: 28
            })
        );
        assert!(ReceiverReport::parse(0, &[0, 0]).is_err());
    }
}
