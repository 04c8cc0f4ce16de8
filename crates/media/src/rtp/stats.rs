//! Reception statistics for one RTP source (RFC 3550 Appendix A.1, A.3, A.8) and
//! the sender-side counters an SR carries.
//!
//! [`ReceptionStats`] follows the RFC's algorithms closely:
//! - **A.1 sequence validation.** A new source is on probation until
//!   [`MIN_SEQUENTIAL`] packets arrive in sequence. A step forward of less than
//!   [`MAX_DROPOUT`] is accepted (counting a cycle when it wraps); a packet up to
//!   [`MAX_MISORDER`] behind is late (or a duplicate) and still counted, as the RFC
//!   does, so cumulative loss can go negative. Anything else is a suspected jump:
//!   it is not counted, and if the next packet follows it in sequence the sender
//!   has restarted, and the sequence state restarts there.
//! - **A.3 loss.** `expected = extended_max - base + 1`; the cumulative loss in a
//!   report block is clamped to 24-bit signed; the fraction lost covers the
//!   interval since the previous [`ReceptionStats::report_block`].
//! - **A.8 jitter.** Transit is arrival time (converted to RTP units from the
//!   `now` passed in, relative to the first packet's `now`) minus the RTP
//!   timestamp; jitter moves 1/16 of the way to each new |transit difference|.
//!
//! The verdicts only drive the statistics: whether a leg plays a packet on
//! probation is the leg's choice.
//!
//! Deliberate differences: duplicates (detected over the last 128 sequence
//! numbers) are counted separately and do not update jitter, since a duplicate's
//! arrival time says nothing about the path's delay variation; after a confirmed
//! restart the transit baseline is reset (the sender's timestamps restarted too),
//! but the jitter estimate is kept. A change of SSRC resets everything.

use super::rtcp::ntp::compact_from_duration;
use super::rtcp::rr::{MAX_CUMULATIVE_LOST, MIN_CUMULATIVE_LOST};
use super::rtcp::{ReportBlock, SenderInfo};
use super::seq::{MAX_MISORDER, SEQ_MOD};
use std::time::Instant;

/// Packets in sequence needed before a new source is believed (RFC 3550 A.1).
pub const MIN_SEQUENTIAL: u16 = 2;
/// Largest forward step still taken as loss rather than a jump (RFC 3550 A.1).
pub const MAX_DROPOUT: u16 = 3000;

/// What [`ReceptionStats::on_packet`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In sequence, after a gap, or late but new: counted.
    Valid,
    /// Seen before (within the last 128 sequence numbers): counted as received,
    /// as RFC 3550 does, and in [`ReceptionStats::duplicates`].
    Duplicate,
    /// The source is still on probation; not counted.
    Probation,
    /// Far from the expected sequence; not counted unless the next packet
    /// confirms the jump.
    Jump,
    /// This packet confirmed a jump: the sequence state restarted here (counted).
    Restarted,
}

/// A.1 per-source sequence state.
#[derive(Debug, Clone)]
struct SeqState {
    max_seq: u16,
    /// Wrap count, shifted left by 16 (the RFC's `cycles`), widened so it never
    /// overflows.
    cycles: u64,
    base_seq: u64,
    /// Sequence number that would confirm a jump; `SEQ_MOD + 1` = none.
    bad_seq: u32,
    probation: u16,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Bit i set: sequence `extended_max - i` was received.
    recent: u128,
}

impl SeqState {
    /// A.1 `init_seq`.
    fn restart(&mut self, seq: u16) {
        self.base_seq = u64::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.recent = 1;
    }

    fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        (self.extended_max() + 1).saturating_sub(self.base_seq)
    }
}

/// Reception statistics for the RTP source of one leg. See the module docs.
#[derive(Debug, Clone)]
pub struct ReceptionStats {
    clock_rate: u32,
    ssrc: Option<u32>,
    seq: Option<SeqState>,
    /// Arrival-time origin: the `now` of the first packet ever seen.
    base_instant: Option<Instant>,
    /// Previous transit (arrival minus timestamp, RTP units, wrapping).
    transit: Option<u32>,
    /// Jitter estimate in RTP units.
    jitter: f64,
    duplicates: u64,
    /// Compact NTP time of the source's last SR and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl ReceptionStats {
    /// Statistics for a stream whose RTP clock runs at `clock_rate` Hz (> 0).
    pub fn new(clock_rate: u32) -> Self {
        ReceptionStats {
            clock_rate: clock_rate.max(1),
            ssrc: None,
            seq: None,
            base_instant: None,
            transit: None,
            jitter: 0.0,
            duplicates: 0,
            last_sr: None,
        }
    }

    /// Forgets the source entirely (as on an SSRC change).
    pub fn reset(&mut self) {
        *self = Self::new(self.clock_rate);
    }

    /// Feeds one received RTP packet's header fields, arriving at `now`.
    pub fn on_packet(&mut self, now: Instant, ssrc: u32, seq: u16, rtp_ts: u32) -> SeqVerdict {
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.reset();
            }
            self.ssrc = Some(ssrc);
        }
        let verdict = self.update_seq(seq);
        match verdict {
            SeqVerdict::Valid => self.update_jitter(now, rtp_ts),
            SeqVerdict::Restarted => {
                self.transit = None;
                self.update_jitter(now, rtp_ts);
            }
            SeqVerdict::Duplicate => self.duplicates += 1,
            SeqVerdict::Probation | SeqVerdict::Jump => {}
        }
        verdict
    }

    /// A.1 `update_seq`, plus duplicate detection.
    fn update_seq(&mut self, seq: u16) -> SeqVerdict {
        let s = self.seq.get_or_insert_with(|| {
            // A.1: a new source starts on probation with max_seq one before it.
            let mut s = SeqState {
                max_seq: 0,
                cycles: 0,
                base_seq: 0,
                bad_seq: 0,
                probation: 0,
                received: 0,
                expected_prior: 0,
                received_prior: 0,
                recent: 0,
            };
            s.restart(seq);
            s.max_seq = seq.wrapping_sub(1);
            s.probation = MIN_SEQUENTIAL;
            s
        });
        let udelta = seq.wrapping_sub(s.max_seq);

        if s.probation > 0 {
            if seq == s.max_seq.wrapping_add(1) {
                s.probation -= 1;
                s.max_seq = seq;
                if s.probation == 0 {
                    s.restart(seq);
                    s.received += 1;
                    return SeqVerdict::Valid;
                }
            } else {
                s.probation = MIN_SEQUENTIAL - 1;
                s.max_seq = seq;
            }
            return SeqVerdict::Probation;
        }

        if udelta < MAX_DROPOUT {
            if udelta == 0 {
                s.received += 1;
                return if s.recent & 1 != 0 {
                    SeqVerdict::Duplicate
                } else {
                    s.recent |= 1;
                    SeqVerdict::Valid
                };
            }
            if seq < s.max_seq {
                s.cycles += u64::from(SEQ_MOD);
            }
            s.max_seq = seq;
            s.recent = s.recent.checked_shl(u32::from(udelta)).unwrap_or(0) | 1;
            s.received += 1;
            SeqVerdict::Valid
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == s.bad_seq {
                // Two sequential packets: the sender restarted its sequence.
                s.restart(seq);
                s.received += 1;
                SeqVerdict::Restarted
            } else {
                s.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                SeqVerdict::Jump
            }
        } else {
            // Up to MAX_MISORDER behind: late or duplicate.
            let back = u32::from(udelta.wrapping_neg());
            s.received += 1;
            let bit = 1u128.checked_shl(back).unwrap_or(0);
            if s.recent & bit != 0 {
                SeqVerdict::Duplicate
            } else {
                s.recent |= bit;
                SeqVerdict::Valid
            }
        }
    }

    /// A.8 jitter update.
    fn update_jitter(&mut self, now: Instant, rtp_ts: u32) {
        let base = *self.base_instant.get_or_insert(now);
        let elapsed = now.saturating_duration_since(base);
        // Truncation to u32 is the RTP clock's own wrap; transit differences are
        // taken modulo 2^32 too.
        let arrival = ((elapsed.as_nanos() * u128::from(self.clock_rate)) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(prev) = self.transit {
            let d = f64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// Records a sender report from the source, for LSR/DLSR in our next report.
    /// The caller routes SRs by SSRC; this does not check it.
    pub fn on_sender_report(&mut self, now: Instant, info: &SenderInfo) {
        let lsr = super::rtcp::ntp::ntp_compact(info.ntp_time);
        self.last_sr = Some((lsr, now));
    }

    /// The report block for this source, starting a new fraction-lost interval.
    /// `None` until the source has passed probation.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let jitter = self.jitter as u32;
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => (
                lsr,
                compact_from_duration(now.saturating_duration_since(at)),
            ),
            None => (0, 0),
        };
        let s = self.seq.as_mut().filter(|s| s.probation == 0)?;
        let expected = s.expected();
        let lost = expected as i64 - s.received as i64;
        let expected_interval = expected.saturating_sub(s.expected_prior);
        let received_interval = s.received.saturating_sub(s.received_prior);
        s.expected_prior = expected;
        s.received_prior = s.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            // lost_interval <= expected_interval, so the quotient is at most 256;
            // exactly 256 (all lost) saturates to 255.
            ((lost_interval as u64) * 256 / expected_interval).min(255) as u8
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(
                i64::from(MIN_CUMULATIVE_LOST),
                i64::from(MAX_CUMULATIVE_LOST),
            ) as i32,
            extended_highest_seq: s.extended_max() as u32,
            jitter,
            last_sr,
            delay_since_last_sr,
        })
    }

    /// The SSRC being tracked.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Whether the source has passed probation.
    pub fn is_valid(&self) -> bool {
        self.seq.as_ref().is_some_and(|s| s.probation == 0)
    }

    /// Packets counted as received since the source became valid (includes
    /// duplicates, as the RFC counts them).
    pub fn received(&self) -> u64 {
        self.valid_seq().map_or(0, |s| s.received)
    }

    /// Packets expected since the source became valid.
    pub fn expected(&self) -> u64 {
        self.valid_seq().map_or(0, SeqState::expected)
    }

    /// Expected minus received (negative with duplicates), unclamped.
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received() as i64
    }

    /// Duplicates seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Highest sequence number with the wrap count in the upper bits.
    pub fn extended_highest_seq(&self) -> Option<u64> {
        self.valid_seq().map(SeqState::extended_max)
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate)
    }

    fn valid_seq(&self) -> Option<&SeqState> {
        self.seq.as_ref().filter(|s| s.probation == 0)
    }
}

/// Sender-side counters for SR sender info.
#[derive(Debug, Clone, Default)]
pub struct SenderStats {
    packets: u32,
    octets: u32,
    sent_since_report: bool,
}

impl SenderStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one sent RTP packet with `payload_len` payload octets.
    pub fn on_sent(&mut self, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.sent_since_report = true;
    }

    /// Sender info for the next report if we sent since the previous one (so the
    /// report is an SR), else `None` (an RR). `ntp_time` and `rtp_time` are the
    /// same instant on the wallclock and on the stream's RTP clock.
    pub fn take_sender_info(&mut self, ntp_time: u64, rtp_time: u32) -> Option<SenderInfo> {
        if !std::mem::take(&mut self.sent_since_report) {
            return None;
        }
        Some(SenderInfo {
            ntp_time,
            rtp_time,
            packet_count: self.packets,
            octet_count: self.octets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SSRC: u32 = 0x5151;

    /// Feeds sequence numbers at 20 ms spacing with matching 8 kHz timestamps.
    fn feed(stats: &mut ReceptionStats, t0: Instant, seqs: &[u16]) -> Vec<SeqVerdict> {
        seqs.iter()
            .enumerate()
            .map(|(i, &s)| {
                let now = t0 + Duration::from_millis(20 * i as u64);
                stats.on_packet(now, SSRC, s, u32::from(s) * 160)
            })
            .collect()
    }

    #[test]
    fn sequence_validation_follows_rfc3550_a1() {
        use SeqVerdict::*;
        // (name, sequence numbers, verdicts, received, expected)
        type Row = (
            &'static str,
            &'static [u16],
            &'static [SeqVerdict],
            u64,
            u64,
        );
        let table: &[Row] = &[
            (
                "probation then valid",
                &[10, 11, 12],
                &[Probation, Valid, Valid],
                2,
                2,
            ),
            (
                "probation restarts on a gap",
                &[10, 12, 13, 14],
                &[Probation, Probation, Valid, Valid],
                2,
                2,
            ),
            (
                "a gap counts as loss",
                &[1, 2, 3, 6, 7],
                &[Probation, Valid, Valid, Valid, Valid],
                4,
                6,
            ),
            (
                "wrap 65535 -> 0",
                &[65533, 65534, 65535, 0, 1],
                &[Probation, Valid, Valid, Valid, Valid],
                4,
                4,
            ),
            (
                "late packet is counted, not a loss",
                &[1, 2, 4, 3, 5],
                &[Probation, Valid, Valid, Valid, Valid],
                4,
                4,
            ),
            (
                "duplicate is counted and flagged",
                &[1, 2, 3, 3, 2],
                &[Probation, Valid, Valid, Duplicate, Duplicate],
                4,
                2,
            ),
            (
                "forward jump beyond MAX_DROPOUT is held",
                &[1, 2, 3, 5000, 4],
                &[Probation, Valid, Valid, Jump, Valid],
                3,
                3,
            ),
            (
                "jump confirmed by two sequential packets restarts",
                &[1, 2, 3, 5000, 5001, 5002],
                &[Probation, Valid, Valid, Jump, Restarted, Valid],
                2,
                2,
            ),
            (
                "backward beyond MAX_MISORDER is a jump",
                &[500, 501, 502, 300, 301],
                &[Probation, Valid, Valid, Jump, Restarted],
                1,
                1,
            ),
            (
                "backward within MAX_MISORDER is late",
                &[500, 501, 502, 410],
                &[Probation, Valid, Valid, Valid],
                3,
                2,
            ),
        ];
        for (name, seqs, verdicts, received, expected) in table {
            let mut st = ReceptionStats::new(8000);
            let got = feed(&mut st, crate::testclock::anchor(), seqs);
            assert_eq!(&got, verdicts, "{name}");
            assert_eq!(st.received(), *received, "{name} received");
            assert_eq!(st.expected(), *expected, "{name} expected");
        }
    }

    #[test]
    fn an_ssrc_change_restarts_probation_and_counters() {
        let t0 = crate::testclock::anchor();
        let mut st = ReceptionStats::new(8000);
        feed(&mut st, t0, &[1, 2, 3, 4]);
        assert_eq!(st.received(), 3);
        let v = st.on_packet(t0, SSRC + 1, 9000, 0);
        assert_eq!(v, SeqVerdict::Probation);
        assert_eq!(st.received(), 0);
        assert_eq!(st.ssrc(), Some(SSRC + 1));
        assert_eq!(st.on_packet(t0, SSRC + 1, 9001, 160), SeqVerdict::Valid);
        assert_eq!(st.extended_highest_seq(), Some(9001));
    }

    #[test]
    fn report_blocks_carry_interval_fraction_and_clamped_cumulative_loss() {
        let t0 = crate::testclock::anchor();
        let mut st = ReceptionStats::new(8000);
        assert_eq!(st.report_block(t0), None);
        // Valid from 1; 1..=10 with 3 and 4 lost: expected 10, received 8.
        feed(&mut st, t0, &[0, 1, 2, 5, 6, 7, 8, 9, 10]);
        let b = st.report_block(t0).unwrap();
        assert_eq!(b.ssrc, SSRC);
        assert_eq!(b.cumulative_lost, 2);
        assert_eq!(b.fraction_lost, (2 * 256 / 10) as u8);
        assert_eq!(b.extended_highest_seq, 10);
        assert_eq!((b.last_sr, b.delay_since_last_sr), (0, 0));
        // Next interval: 11..=20 all received.
        feed(&mut st, t0, &(11..=20).collect::<Vec<_>>());
        let b = st.report_block(t0).unwrap();
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 2));
        // Duplicates make the interval's loss negative: fraction 0.
        feed(&mut st, t0, &[20, 20, 21]);
        let b = st.report_block(t0).unwrap();
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 0));
        assert_eq!(st.duplicates(), 2);
        // An empty interval reports fraction 0.
        assert_eq!(st.report_block(t0).unwrap().fraction_lost, 0);
    }

    #[test]
    fn total_loss_in_an_interval_saturates_the_fraction() {
        let t0 = crate::testclock::anchor();
        let mut st = ReceptionStats::new(8000);
        feed(&mut st, t0, &[0, 1]);
        st.report_block(t0);
        feed(&mut st, t0, &[1000]); // 999 expected, 1 received: 998 lost
        let b = st.report_block(t0).unwrap();
        assert_eq!(b.fraction_lost, (998 * 256 / 999) as u8);
        assert_eq!(b.cumulative_lost, 998);
    }

    #[test]
    fn extended_highest_sequence_counts_cycles_across_many_wraps() {
        let t0 = crate::testclock::anchor();
        let mut st = ReceptionStats::new(8000);
        let mut seq = 65000u16;
        for i in 0..200_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 20);
            st.on_packet(now, SSRC, seq, i * 160);
            seq = seq.wrapping_add(1);
        }
        // Valid from 65001; last = 65000 + 199_999.
        assert_eq!(st.extended_highest_seq(), Some(65_000 + 199_999));
        assert_eq!(st.expected(), 199_999);
        assert_eq!(st.lost(), 0);
        assert_eq!(st.jitter(), 0.0);
    }

    #[test]
    fn jitter_matches_the_a8_recurrence_on_a_known_pattern() {
        // 20 ms packets at 8 kHz; arrivals alternately on time and 10 ms late, so
        // every transit difference is 80 RTP units and J_n = 80 (1 - (15/16)^n).
        let t0 = crate::testclock::anchor();
        let mut st = ReceptionStats::new(8000);
        let n = 40u32;
        for i in 0..=n {
            let late = if i % 2 == 1 { 10 } else { 0 };
            let now = t0 + Duration::from_millis(u64::from(i) * 20 + late);
            st.on_packet(now, SSRC, 100 + i as u16, 1000 + i * 160);
        }
        // Packet 0 is probation (no jitter), packet 1 sets the transit baseline,
        // packets 2..=n each contribute one difference: n - 1 updates.
        let want = 80.0 * (1.0 - (15.0f64 / 16.0).powi(n as i32 - 1));
        assert!(
            (st.jitter() - want).abs() < 1e-9,
            "{} vs {want}",
            st.jitter()
        );
        assert!((st.jitter_ms() - want / 8.0).abs() < 1e-9);
        assert_eq!(st.report_block(t0).unwrap().jitter, want as u32);
    }

    #[test]
    fn jitter_is_zero_for_constant_delay_and_survives_timestamp_wrap() {
        let t0 = crate::testclock::anchor();
        let mut st = ReceptionStats::new(48_000);
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 20 + 35);
            let ts = (u32::MAX - 20 * 960).wrapping_add(i * 960);
            st.on_packet(now, SSRC, i as u16, ts);
        }
        assert_eq!(st.jitter(), 0.0);
    }

    #[test]
    fn lsr_and_dlsr_echo_the_last_sender_report() {
        let t0 = crate::testclock::anchor();
        let mut st = ReceptionStats::new(8000);
        feed(&mut st, t0, &[1, 2]);
        let info = SenderInfo {
            ntp_time: 0x1111_2222_3333_4444,
            ..SenderInfo::default()
        };
        st.on_sender_report(t0, &info);
        let b = st.report_block(t0 + Duration::from_millis(1500)).unwrap();
        assert_eq!(b.last_sr, 0x2222_3333);
        assert_eq!(b.delay_since_last_sr, 65536 * 3 / 2);
    }

    #[test]
    fn sender_info_is_offered_only_after_sending() {
        let mut s = SenderStats::new();
        assert_eq!(s.take_sender_info(1, 2), None);
        s.on_sent(160);
        s.on_sent(160);
        let info = s.take_sender_info(7, 8).unwrap();
        assert_eq!(
            (
                info.ntp_time,
                info.rtp_time,
                info.packet_count,
                info.octet_count
            ),
            (7, 8, 2, 320)
        );
        assert_eq!(s.take_sender_info(9, 10), None);
    }
}
