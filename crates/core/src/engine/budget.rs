//! A leg's receive budget: a token bucket, refilled by time, that every datagram from
//! the leg's own addresses spends before the engine parses it.
//!
//! A flood from a leg's address (or from a spoofer using it) must cost the worker one
//! address lookup and one subtraction per excess datagram, never a parse, a decode or a
//! jitter-buffer insert, or it delays the mix tick of every room on the worker.
//!
//! Sizing: a real sender sends 50 packets/s (20 ms ptime), 100 at 10 ms ptime, plus up
//! to 50/s of RFC 4733 events while a key is down and an RTCP report every few
//! seconds: at most ~150/s. The refill ([`RATE_PER_S`] = 300/s) leaves twice that. The
//! bucket holds [`BURST`] = 64 packets, so bursty but honest senders pass whole:
//! `ffmpeg -re` style senders deliver ~13 packets at once every ~256 ms, and a network
//! stall of one second releases a backlog of 50 when it clears. What goes beyond is
//! dropped and counted (`flood_dropped`).

use std::time::Instant;

/// Datagrams per second a leg may keep sending.
pub const RATE_PER_S: u64 = 300;
/// Datagrams a leg may send at once after being quiet.
pub const BURST: u64 = 64;

/// Nanoseconds of refill that one datagram costs.
const COST_NS: u64 = 1_000_000_000 / RATE_PER_S;
/// The bucket's capacity, in nanoseconds of refill.
const CAP_NS: u64 = BURST * COST_NS;

/// See the module docs. Integer arithmetic, no allocation.
#[derive(Clone, Debug)]
pub struct Budget {
    credit_ns: u64,
    last: Instant,
    cost_ns: u64,
    cap_ns: u64,
}

impl Budget {
    /// A full bucket at `now`, for an audio leg.
    pub fn new(now: Instant) -> Budget {
        Budget {
            credit_ns: CAP_NS,
            last: now,
            cost_ns: COST_NS,
            cap_ns: CAP_NS,
        }
    }

    /// A full bucket at `now` for `rate_per_s` datagrams a second in bursts of
    /// `burst` (video: a keyframe is dozens of packets at once).
    pub fn with_rate(now: Instant, rate_per_s: u64, burst: u64) -> Budget {
        let cost_ns = 1_000_000_000 / rate_per_s.max(1);
        let cap_ns = burst.max(1).saturating_mul(cost_ns);
        Budget {
            credit_ns: cap_ns,
            last: now,
            cost_ns,
            cap_ns,
        }
    }

    /// Spends one datagram's worth; `false` when the leg is over its budget (drop it).
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        if now > self.last {
            self.last = now;
        }
        let refill = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.credit_ns = self.credit_ns.saturating_add(refill).min(self.cap_ns);
        if self.credit_ns >= self.cost_ns {
            self.credit_ns -= self.cost_ns;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn passed(b: &mut Budget, at: Instant, n: usize) -> usize {
        (0..n).filter(|_| b.take(at)).count()
    }

    #[test]
    fn a_burst_of_the_bucket_size_passes_and_the_rest_is_dropped() {
        let t0 = scnf_media::testclock::anchor();
        let mut b = Budget::new(t0);
        assert_eq!(passed(&mut b, t0, 1000), BURST as usize);
    }

    #[test]
    fn a_steady_sender_at_ten_ms_ptime_with_events_never_loses_a_packet() {
        let t0 = scnf_media::testclock::anchor();
        let mut b = Budget::new(t0);
        // 150 packets/s for a minute, delivered in bunches of 13 every ~87 ms.
        let mut lost = 0;
        for i in 0..(150 * 60 / 13) {
            let at = t0 + Duration::from_micros(86_667 * i as u64);
            lost += 13 - passed(&mut b, at, 13);
        }
        assert_eq!(lost, 0);
    }

    #[test]
    fn a_flood_gets_the_refill_rate_through_and_no_more() {
        let t0 = scnf_media::testclock::anchor();
        let mut b = Budget::new(t0);
        // One million datagrams over 2 s (0.5 M/s).
        let mut ok = 0;
        for i in 0..1_000_000u64 {
            ok += usize::from(b.take(t0 + Duration::from_nanos(2_000 * i)));
        }
        let most = (BURST + 2 * RATE_PER_S) as usize;
        assert!((most - 2..=most).contains(&ok), "{ok} passed");
    }

    #[test]
    fn a_clock_that_steps_back_neither_refills_nor_panics() {
        let t0 = scnf_media::testclock::anchor() + Duration::from_secs(1);
        let mut b = Budget::new(t0);
        assert_eq!(passed(&mut b, t0, 100), BURST as usize);
        assert_eq!(passed(&mut b, t0 - Duration::from_millis(500), 10), 0);
    }
}
