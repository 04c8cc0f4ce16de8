//! Token buckets: how much one controller session or one phone may ask for.
//!
//! Call control is one task for the whole node, so anything one peer can make it do
//! without bound is taken from every other peer. A [`TokenBucket`] lets a peer spend
//! `burst` at once and then `per_second`; what goes over is refused (a session gets an
//! `Error` "rate-limited") or dropped and counted (a phone's digits), never queued.
//!
//! Sans-IO: `now` is an argument, the bucket refills lazily on each call, and the
//! arithmetic is integer nanoseconds (no drift, no floats, no timer).

use std::time::Instant;

/// A rate with a burst. `per_second == 0` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    /// No limit at all.
    pub const UNLIMITED: Rate = Rate {
        per_second: 0,
        burst: 0,
    };
}

/// The session root's budgets per controller session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budgets {
    /// Every frame a session sends (requests, and frames that are not requests).
    /// The default is far above what a PBX or the bundled `rtpgen` sends: rtpgen
    /// places its calls one round trip after the other, a few hundred a second on
    /// loopback.
    pub requests: Rate,
    /// Of those, `Status` and `Health`, which cost a round trip to every media worker
    /// and (Status) a reply that grows with the legs. Monitoring polls them a few
    /// times a second at most.
    pub reports: Rate,
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets {
            requests: Rate {
                per_second: 5_000,
                burst: 5_000,
            },
            reports: Rate {
                per_second: 50,
                burst: 100,
            },
        }
    }
}

const NANOS: u64 = 1_000_000_000;

/// See the module docs. Starts full.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Time one token takes to come back, ns; 0: unlimited.
    cost: u64,
    /// Most credit held (`burst` tokens), ns.
    cap: u64,
    credit: u64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: Rate) -> TokenBucket {
        let cost = if rate.per_second == 0 {
            0
        } else {
            NANOS / u64::from(rate.per_second)
        };
        let cap = cost.saturating_mul(u64::from(rate.burst.max(1)));
        TokenBucket {
            cost,
            cap,
            credit: cap,
            last: None,
        }
    }

    /// Takes one token if there is one. Time going backwards refills nothing.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.cost == 0 {
            return true;
        }
        if let Some(last) = self.last {
            let gained = now.saturating_duration_since(last).as_nanos();
            let gained = u64::try_from(gained).unwrap_or(u64::MAX);
            self.credit = self.credit.saturating_add(gained).min(self.cap);
        }
        if self.last.map_or(true, |last| now > last) {
            self.last = Some(now);
        }
        if self.credit >= self.cost {
            self.credit -= self.cost;
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

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let t0 = scnf_media::testclock::anchor();
        let mut b = TokenBucket::new(Rate {
            per_second: 10,
            burst: 3,
        });
        let taken = (0..10).filter(|_| b.take(t0)).count();
        assert_eq!(taken, 3, "the burst, at once");
        // One second later: ten more at most (the burst caps the credit at three).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..10).filter(|_| b.take(t1)).count(), 3);
        // Evenly spaced at the rate, every one passes.
        let mut t = t1;
        for _ in 0..100 {
            t += Duration::from_millis(100);
            assert!(b.take(t));
        }
        // Time going backwards gives nothing back.
        let mut empty = TokenBucket::new(Rate {
            per_second: 1,
            burst: 1,
        });
        assert!(empty.take(t1));
        assert!(!empty.take(t0));
        assert!(!empty.take(t1));
    }

    #[test]
    fn zero_means_unlimited() {
        let mut b = TokenBucket::new(Rate::UNLIMITED);
        let t0 = scnf_media::testclock::anchor();
        assert!((0..100_000).all(|_| b.take(t0)));
    }
}
