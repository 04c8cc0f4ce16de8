//! The reconnect schedule: jittered exponential backoff as a plain value.
//!
//! Retry `k` (0-based) waits uniformly in `[b/2, 3b/2)` with `b = FIRST · 2^k`, that
//! window clamped to `[CAP/2, CAP)`: the first retry within 250-750 ms, then
//! 0.5-1.5 s, 1-3 s, and from then on 2-4 s. The cap is what lets a cluster promise
//! that every node is back within 5 s of its scaler, however long the scaler was
//! away; the jitter (never less than a 2 s window) keeps nodes that lost their
//! scaler at once from knocking on its door in step when it comes back. A registration that lived longer
//! than [`RESET_AFTER`] starts the schedule again ([`Backoff::reset`]): a link that
//! works for a while and then drops is a new incident, not the next failure of a
//! series.
//!
//! The randomness is a seeded [`Rng`] (the shell draws the seed once from the OS), so
//! a test reproduces a schedule exactly.

use scnf_media::util::Rng;
use std::time::Duration;

/// The middle of the first retry's window.
pub const FIRST: Duration = Duration::from_millis(500);

/// No wait is this long.
pub const CAP: Duration = Duration::from_secs(4);

/// A registration that lived this long resets the schedule.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// The waits between connection attempts.
#[derive(Clone, Debug)]
pub struct Backoff {
    rng: Rng,
    /// Retries since the last reset.
    retries: u32,
}

impl Backoff {
    pub fn new(seed: u64) -> Backoff {
        Backoff {
            rng: Rng::new(seed),
            retries: 0,
        }
    }

    /// The wait before the next attempt (each call is one more retry).
    pub fn next_delay(&mut self) -> Duration {
        // 2^5 · 500 ms = 16 s is past the cap already: stop doubling there, so the
        // shift can never overflow however long the scaler stays away.
        let base = FIRST.as_micros() as u64 * (1u64 << self.retries.min(5));
        self.retries = self.retries.saturating_add(1);
        let cap = CAP.as_micros() as u64;
        let lo = (base / 2).min(cap / 2);
        let hi = (base * 3 / 2).min(cap);
        Duration::from_micros(lo + self.rng.below(hi - lo))
    }

    /// Starts over from the first retry's window.
    pub fn reset(&mut self) {
        self.retries = 0;
    }

    /// Retries since the last reset.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_retry_waits_within_its_doubling_window_up_to_the_cap() {
        // Over many seeds, retry k stays in [250·2^k, 750·2^k) ms, clamped to 2-4 s.
        let windows = [
            (ms(250), ms(750)),
            (ms(500), ms(1_500)),
            (ms(1_000), ms(3_000)),
            (ms(2_000), ms(4_000)),
            (ms(2_000), ms(4_000)),
            (ms(2_000), ms(4_000)),
            (ms(2_000), ms(4_000)),
            (ms(2_000), ms(4_000)),
        ];
        for seed in 0..500 {
            let mut b = Backoff::new(seed);
            for (k, &(lo, hi)) in windows.iter().enumerate() {
                let d = b.next_delay();
                assert!(
                    lo <= d && d < hi,
                    "seed {seed} retry {k}: {d:?} not in {lo:?}..{hi:?}"
                );
            }
        }
    }

    #[test]
    fn the_first_retry_is_spread_over_its_whole_window() {
        // Jitter, not a fixed wait: 1,000 nodes' first retries cover 250-750 ms.
        let firsts: Vec<Duration> = (0..1_000).map(|s| Backoff::new(s).next_delay()).collect();
        let min = *firsts.iter().min().unwrap();
        let max = *firsts.iter().max().unwrap();
        assert!(min < ms(270) && max > ms(730), "{min:?}..{max:?}");
    }

    #[test]
    fn a_reset_starts_again_from_the_first_window() {
        let mut b = Backoff::new(7);
        for _ in 0..10 {
            b.next_delay();
        }
        assert!(b.next_delay() >= ms(2_000));
        b.reset();
        assert_eq!(b.retries(), 0);
        let d = b.next_delay();
        assert!(ms(250) <= d && d < ms(750), "{d:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let run = |seed| {
            let mut b = Backoff::new(seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn a_scaler_that_never_comes_back_never_overflows_the_schedule() {
        let mut b = Backoff::new(1);
        for _ in 0..100_000 {
            assert!(b.next_delay() < CAP);
        }
    }
}
