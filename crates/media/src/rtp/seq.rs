//! Wrap-safe extension of RTP sequence numbers (16 bits) and timestamps (32 bits)
//! into monotone 64-bit values, so jitter buffers and statistics can compare and
//! subtract them without thinking about wrap-around.
//!
//! Both extenders map a new value to the extended value *nearest* to the highest one
//! seen so far (a forward step of less than half the range is "newer", anything else
//! "older"). The first value is placed in cycle 1, not 0 (`ext = 2^16 + seq` for
//! sequence numbers, `2^32 + ts` for timestamps), so that a packet sent just before a
//! wrap that arrives after the first packet still has a non-negative extended value.
//!
//! [`nearest_seq`] and [`nearest_ts`] are that mapping on its own, for a caller that
//! keeps (and may move back) its own reference: the jitter buffer re-anchors on a
//! resync. The extenders below are built on them.
//!
//! [`SeqExtender`] adds RFC 3550 A.1's resynchronisation: a packet far behind the
//! highest sequence number (more than [`MAX_MISORDER`]) is reported as old, but if
//! the very next packet follows it sequentially, the sender has jumped (restart,
//! SSRC reuse, a splice) and the extender re-anchors *forward* there, so the extended
//! sequence keeps increasing. Timestamps need no such rule: they legitimately jump by
//! silence gaps, and a jump of half the 32-bit range is hours of audio.

/// A packet further behind the highest sequence number than this is suspected to
/// be a jump rather than reordering (RFC 3550 A.1 uses the same value).
pub const MAX_MISORDER: u16 = 100;

/// Sequence numbers in one cycle (RFC 3550 A.1's `RTP_SEQ_MOD`).
pub(crate) const SEQ_MOD: u32 = 1 << 16;
const TS_MOD: u64 = 1 << 32;

/// The extended sequence number nearest to `reference` whose low 16 bits are `seq`:
/// a step forward of less than half the range is newer, anything else (exactly
/// half included) older.
pub fn nearest_seq(reference: i64, seq: u16) -> i64 {
    reference + i64::from(seq.wrapping_sub(reference as u16) as i16)
}

/// The extended timestamp nearest to `reference` whose low 32 bits are `ts` (the
/// same rule as [`nearest_seq`], over 32 bits).
pub fn nearest_ts(reference: i64, ts: u32) -> i64 {
    reference + i64::from(ts.wrapping_sub(reference as u32) as i32)
}

/// Extends 16-bit RTP sequence numbers into a monotone `u64` space.
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    /// Highest extended sequence number accepted; `None` before the first packet.
    highest: Option<u64>,
    /// The sequence number that would confirm a suspected jump (A.1's `bad_seq`).
    pending_jump: Option<u16>,
}

impl SeqExtender {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all history; the next packet starts a new cycle-1 anchor.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The highest extended sequence number seen, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Returns the extended value of `seq` and updates the highest seen.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            let ext = u64::from(SEQ_MOD) + u64::from(seq);
            self.highest = Some(ext);
            return ext;
        };
        // `highest` is at least SEQ_MOD (cycle 1) and only grows, and the nearest
        // value is at most 2^15 below it, so it stays positive.
        let ext = nearest_seq(highest as i64, seq) as u64;
        if ext >= highest {
            self.pending_jump = None;
            self.highest = Some(ext);
            return ext;
        }
        if highest - ext > u64::from(MAX_MISORDER) {
            if self.pending_jump == Some(seq) {
                // Two sequential packets far from the stream: the sender jumped.
                // Re-anchor forward (the same number one cycle up) so the extended
                // sequence stays monotone.
                self.pending_jump = None;
                let ext = ext + u64::from(SEQ_MOD);
                self.highest = Some(ext);
                return ext;
            }
            self.pending_jump = Some(seq.wrapping_add(1));
        }
        ext
    }
}

/// Extends 32-bit RTP timestamps into a monotone `u64` space.
#[derive(Debug, Clone, Default)]
pub struct TsExtender {
    highest: Option<u64>,
}

impl TsExtender {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all history.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The highest extended timestamp seen, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Returns the extended value of `ts` and updates the highest seen.
    pub fn extend(&mut self, ts: u32) -> u64 {
        let Some(highest) = self.highest else {
            let ext = TS_MOD + u64::from(ts);
            self.highest = Some(ext);
            return ext;
        };
        // highest >= TS_MOD and the nearest value is at most 2^31 below it.
        let ext = nearest_ts(highest as i64, ts) as u64;
        if ext > highest {
            self.highest = Some(ext);
        }
        ext
    }

    /// Signed distance in RTP units from the highest timestamp seen to `ts`, without
    /// updating anything (`None` before the first timestamp).
    pub fn delta(&self, ts: u32) -> Option<i64> {
        let highest = self.highest? as i64;
        Some(nearest_ts(highest, ts) - highest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: u64 = SEQ_MOD as u64;

    #[test]
    fn sequence_numbers_extend_across_wraps_reordering_and_jumps() {
        // (name, inputs, expected extended outputs)
        let table: &[(&str, &[u16], &[u64])] = &[
            ("first packet lands in cycle 1", &[7], &[C1 + 7]),
            (
                "in order",
                &[100, 101, 102],
                &[C1 + 100, C1 + 101, C1 + 102],
            ),
            (
                "wrap 65535 -> 0",
                &[65534, 65535, 0, 1],
                &[C1 + 65534, C1 + 65535, 2 * C1, 2 * C1 + 1],
            ),
            (
                "reordered across the wrap",
                &[65535, 1, 0, 2],
                &[C1 + 65535, 2 * C1 + 1, 2 * C1, 2 * C1 + 2],
            ),
            (
                "old packet from before the first one's wrap",
                &[2, 65534],
                &[C1 + 2, C1 - 2],
            ),
            (
                "backward by a few is old, not a new cycle",
                &[500, 501, 497, 502],
                &[C1 + 500, C1 + 501, C1 + 497, C1 + 502],
            ),
            ("duplicate", &[9, 9], &[C1 + 9, C1 + 9]),
            (
                "forward gap under half the range is a gap",
                &[10, 30000],
                &[C1 + 10, C1 + 30000],
            ),
            (
                "jump by more than 32768 is old until a second packet confirms it",
                &[100, 40000, 40001, 40002],
                &[C1 + 100, C1 + 100 - 25636, C1 + 40001, C1 + 40002],
            ),
            (
                "a lone stray far packet does not re-anchor",
                &[100, 40000, 101, 40001],
                &[C1 + 100, C1 + 100 - 25636, C1 + 101, C1 + 101 - 25636],
            ),
            (
                "backward jump confirmed by two packets re-anchors forward",
                &[5000, 1000, 1001, 1002],
                &[C1 + 5000, C1 + 1000, 2 * C1 + 1001, 2 * C1 + 1002],
            ),
            (
                "backward within MAX_MISORDER never re-anchors",
                &[5000, 4950, 4951, 4952],
                &[C1 + 5000, C1 + 4950, C1 + 4951, C1 + 4952],
            ),
        ];
        for (name, input, want) in table {
            let mut x = SeqExtender::new();
            let got: Vec<u64> = input.iter().map(|&s| x.extend(s)).collect();
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn sequence_numbers_unwrap_across_the_16_bit_boundary() {
        // (reference, wire value, extended)
        let cases = [
            (70_000i64, 70_000u32 as u16, 70_000i64),
            (65_535 + 65_536, 0, 65_536 * 2),
            (65_536 * 2, 65_535, 65_536 * 2 - 1),
            (65_536 + 100, 99, 65_536 + 99),
            (65_536 + 100, 100 + 32_767, 65_536 + 100 + 32_767),
            (65_536 + 100, 100 + 32_768, 100 + 32_768),
        ];
        for (reference, seq, want) in cases {
            assert_eq!(nearest_seq(reference, seq), want, "{reference} {seq}");
        }
    }

    #[test]
    fn timestamps_unwrap_across_the_32_bit_boundary() {
        let base = 1i64 << 32;
        let cases = [
            (base + 4_294_967_000, 200u32, base + (1 << 32) + 200),
            (base + (1 << 32) + 200, 4_294_967_000, base + 4_294_967_000),
            (base + 1000, 1160, base + 1160),
            (base + 1000, 840, base + 840),
            (base, 1 << 31, base - (1 << 31)),
        ];
        for (reference, ts, want) in cases {
            assert_eq!(nearest_ts(reference, ts), want, "{reference} {ts}");
        }
    }

    #[test]
    fn many_wraps_keep_counting_cycles() {
        let mut x = SeqExtender::new();
        let mut seq = 0u16;
        let mut last = 0;
        for _ in 0..(5 * 65536 / 1000) {
            last = x.extend(seq);
            seq = seq.wrapping_add(1000);
        }
        assert_eq!(last, C1 + 326 * 1000);
    }

    #[test]
    fn reset_forgets_the_anchor() {
        let mut x = SeqExtender::new();
        x.extend(60000);
        x.reset();
        assert_eq!(x.highest(), None);
        assert_eq!(x.extend(3), C1 + 3);
    }

    #[test]
    fn timestamps_extend_across_wraps_and_backward_steps() {
        const T1: u64 = TS_MOD;
        let table: &[(&str, &[u32], &[u64])] = &[
            ("first", &[160], &[T1 + 160]),
            (
                "wrap",
                &[u32::MAX - 159, 0, 160],
                &[T1 + u64::from(u32::MAX) - 159, 2 * T1, 2 * T1 + 160],
            ),
            (
                "reordered across the wrap",
                &[u32::MAX - 79, 80, u32::MAX - 39],
                &[
                    T1 + u64::from(u32::MAX) - 79,
                    2 * T1 + 80,
                    T1 + u64::from(u32::MAX) - 39,
                ],
            ),
            ("backward", &[1000, 840], &[T1 + 1000, T1 + 840]),
            (
                "big silence gap forward",
                &[0, 0x7fff_ffff],
                &[T1, T1 + 0x7fff_ffff],
            ),
            (
                "before the first one's wrap",
                &[10, u32::MAX],
                &[T1 + 10, T1 - 1],
            ),
        ];
        for (name, input, want) in table {
            let mut x = TsExtender::new();
            let got: Vec<u64> = input.iter().map(|&t| x.extend(t)).collect();
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn timestamp_delta_is_signed_and_wrap_aware() {
        let mut x = TsExtender::new();
        assert_eq!(x.delta(5), None);
        x.extend(u32::MAX - 9);
        assert_eq!(x.delta(10), Some(20));
        assert_eq!(x.delta(u32::MAX - 19), Some(-10));
    }
}
