//! A deterministic, sans-IO network path emulator for tests and load generation.
//!
//! A [`Path`] takes `(now, bytes)` with [`Path::send`] and releases each packet at its
//! arrival time through [`Path::poll`]. It never reads a clock and draws every random
//! decision from a seeded [`Rng`], so the same seed and the same sends give the same
//! timeline, bit for bit, on every machine.
//!
//! What a packet can suffer, in the order the decisions are drawn:
//! 1. loss — [`Loss::Bernoulli`] (independent) or [`Loss::GilbertElliott`] (a two-state
//!    Markov chain: a good and a bad state, each with its own loss probability, which
//!    gives bursts);
//! 2. delay — the fixed `latency` plus a [`Jitter`] draw; packets overtake each other
//!    when their jitter differs by more than their spacing (reordering as a
//!    consequence of jitter);
//! 3. explicit reordering — with probability `reorder`, `reorder_delay` more, so the
//!    packet lands behind its successors;
//! 4. duplication — with probability `duplicate` a second copy with its own delay.
//!
//! Memory is bounded by `max_in_flight`: the packet pool grows up to that many
//! buffers, then a full path drops (counted as `overflow`). In steady state `send`
//! and `poll` do not allocate: buffers and heap entries are reused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

pub use crate::util::Rng;

/// Extra one-way delay added to `latency`, per packet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    None,
    /// Uniform in `[0, max]`.
    Uniform {
        max: Duration,
    },
    /// Half-normal (|N(0, std_dev)|) capped at `max`: mostly small, a long tail, as on
    /// real access links.
    Normal {
        std_dev: Duration,
        max: Duration,
    },
}

/// Which packets the path loses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    None,
    /// Each packet lost independently with probability `p`.
    Bernoulli {
        p: f64,
    },
    /// Gilbert-Elliott: before each packet the chain moves good->bad with
    /// `p_enter_bad` and bad->good with `p_leave_bad`; the packet is then lost with
    /// `loss_good` or `loss_bad`. Mean burst length in the bad state is
    /// `1 / p_leave_bad`; the long-run loss rate is
    /// `(p_enter_bad * loss_bad + p_leave_bad * loss_good) / (p_enter_bad + p_leave_bad)`.
    GilbertElliott {
        p_enter_bad: f64,
        p_leave_bad: f64,
        loss_good: f64,
        loss_bad: f64,
    },
}

/// How a [`Path`] treats packets. Probabilities are in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PathConfig {
    /// Fixed one-way delay. Default 20 ms.
    pub latency: Duration,
    /// Variable delay on top of `latency`. Default none.
    pub jitter: Jitter,
    /// Loss model. Default none.
    pub loss: Loss,
    /// Probability that a packet is held back by `reorder_delay`. Default 0.
    pub reorder: f64,
    /// Extra delay of an explicitly reordered packet. Default 30 ms.
    pub reorder_delay: Duration,
    /// Probability that a packet is delivered twice. Default 0.
    pub duplicate: f64,
    /// Most packets in flight at once; more are dropped as overflow. Default 4096.
    pub max_in_flight: usize,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig {
            latency: Duration::from_millis(20),
            jitter: Jitter::None,
            loss: Loss::None,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(30),
            duplicate: 0.0,
            max_in_flight: 4096,
        }
    }
}

impl PathConfig {
    /// Checks that every probability is in `[0, 1]` and the pool is not empty.
    pub fn validate(&self) -> Result<(), String> {
        let mut probs = vec![("reorder", self.reorder), ("duplicate", self.duplicate)];
        match self.loss {
            Loss::None => {}
            Loss::Bernoulli { p } => probs.push(("loss.p", p)),
            Loss::GilbertElliott {
                p_enter_bad,
                p_leave_bad,
                loss_good,
                loss_bad,
            } => probs.extend([
                ("loss.p_enter_bad", p_enter_bad),
                ("loss.p_leave_bad", p_leave_bad),
                ("loss.loss_good", loss_good),
                ("loss.loss_bad", loss_bad),
            ]),
        }
        for (name, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} = {p} is not a probability in [0, 1]"));
            }
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        Ok(())
    }
}

/// What happened to one [`Path::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Will arrive once.
    Queued,
    /// Will arrive twice.
    Duplicated,
    /// Dropped by the loss model.
    Lost,
    /// Dropped because `max_in_flight` packets were already in flight.
    Overflow,
}

/// Counters of a [`Path`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Packets given extra delay by the explicit reorder probability.
    pub reordered: u64,
    pub overflow: u64,
    /// Arrivals handed out by `poll` (duplicates count twice).
    pub delivered: u64,
}

/// One emulated one-way path. See the module docs.
pub struct Path {
    cfg: PathConfig,
    rng: Rng,
    /// Packet buffers, reused; `free` lists the indices not in flight.
    pool: Vec<Vec<u8>>,
    free: Vec<usize>,
    /// (arrival, send order, pool index, length), earliest first; the send order
    /// breaks ties so equal arrival times come out in a deterministic order.
    in_flight: BinaryHeap<Reverse<(Instant, u64, usize, usize)>>,
    order: u64,
    bad_state: bool,
    stats: PathStats,
}

impl Path {
    /// Creates a path. `cfg` should be validated; out-of-range probabilities act as
    /// clamped.
    pub fn new(cfg: PathConfig, seed: u64) -> Self {
        let cap = cfg.max_in_flight.max(1);
        Path {
            rng: Rng::new(seed),
            pool: Vec::with_capacity(cap),
            free: Vec::with_capacity(cap),
            in_flight: BinaryHeap::with_capacity(cap),
            order: 0,
            bad_state: false,
            stats: PathStats::default(),
            cfg,
        }
    }

    /// Sends `bytes` at `now`. The bytes are copied; the caller keeps its buffer.
    pub fn send(&mut self, now: Instant, bytes: &[u8]) -> Fate {
        self.stats.sent += 1;
        if self.lose() {
            self.stats.lost += 1;
            return Fate::Lost;
        }
        let mut delay = self.cfg.latency + self.jitter();
        if self.rng.chance(self.cfg.reorder) {
            self.stats.reordered += 1;
            delay += self.cfg.reorder_delay;
        }
        if !self.enqueue(now + delay, bytes) {
            self.stats.overflow += 1;
            return Fate::Overflow;
        }
        if self.rng.chance(self.cfg.duplicate) {
            let delay = self.cfg.latency + self.jitter();
            if self.enqueue(now + delay, bytes) {
                self.stats.duplicated += 1;
                return Fate::Duplicated;
            }
            self.stats.overflow += 1;
        }
        Fate::Queued
    }

    /// When the next packet arrives, if any is in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, ..))| *at)
    }

    /// The next packet whose arrival time is at or before `now`, with that arrival
    /// time. The slice is valid until the next call on the path.
    pub fn poll(&mut self, now: Instant) -> Option<(Instant, &[u8])> {
        if self.next_arrival()? > now {
            return None;
        }
        let Reverse((at, _, idx, len)) = self.in_flight.pop()?;
        // The buffer goes back to the free list now; it is only overwritten by a
        // later `send`, which needs `&mut self` and so ends this borrow first.
        self.free.push(idx);
        self.stats.delivered += 1;
        Some((at, &self.pool[idx][..len]))
    }

    /// Packets still in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn stats(&self) -> &PathStats {
        &self.stats
    }

    fn lose(&mut self) -> bool {
        match self.cfg.loss {
            Loss::None => false,
            Loss::Bernoulli { p } => self.rng.chance(p),
            Loss::GilbertElliott {
                p_enter_bad,
                p_leave_bad,
                loss_good,
                loss_bad,
            } => {
                let flip = if self.bad_state {
                    p_leave_bad
                } else {
                    p_enter_bad
                };
                if self.rng.chance(flip) {
                    self.bad_state = !self.bad_state;
                }
                let p = if self.bad_state { loss_bad } else { loss_good };
                self.rng.chance(p)
            }
        }
    }

    fn jitter(&mut self) -> Duration {
        match self.cfg.jitter {
            Jitter::None => Duration::ZERO,
            Jitter::Uniform { max } => max.mul_f64(self.rng.next_f64()),
            Jitter::Normal { std_dev, max } => std_dev.mul_f64(self.rng.normal().abs()).min(max),
        }
    }

    /// Copies `bytes` into a pooled buffer and schedules it; false when full.
    fn enqueue(&mut self, at: Instant, bytes: &[u8]) -> bool {
        let idx = match self.free.pop() {
            Some(idx) => idx,
            None if self.pool.len() < self.cfg.max_in_flight.max(1) => {
                self.pool.push(Vec::new());
                self.pool.len() - 1
            }
            None => return false,
        };
        let buf = &mut self.pool[idx];
        buf.clear();
        buf.extend_from_slice(bytes);
        self.in_flight
            .push(Reverse((at, self.order, idx, bytes.len())));
        self.order += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends `n` packets every 20 ms and returns (send index, arrival offset in µs).
    fn timeline(cfg: &PathConfig, seed: u64, n: u32) -> Vec<(u32, u128)> {
        let t0 = crate::testclock::anchor();
        let mut path = Path::new(cfg.clone(), seed);
        let mut got = Vec::new();
        for i in 0..n {
            let now = t0 + ms(20) * i;
            path.send(now, &i.to_be_bytes());
            while let Some((at, bytes)) = path.poll(now) {
                let idx = u32::from_be_bytes(bytes.try_into().expect("4-byte packets"));
                got.push((idx, (at - t0).as_micros()));
            }
        }
        while let Some(at) = path.next_arrival() {
            let (at, bytes) = path.poll(at).expect("a packet is due at next_arrival");
            let idx = u32::from_be_bytes(bytes.try_into().expect("4-byte packets"));
            got.push((idx, (at - t0).as_micros()));
        }
        got
    }

    fn lossy_jittery() -> PathConfig {
        PathConfig {
            jitter: Jitter::Normal {
                std_dev: ms(15),
                max: ms(100),
            },
            loss: Loss::Bernoulli { p: 0.05 },
            reorder: 0.02,
            duplicate: 0.01,
            ..PathConfig::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_timeline() {
        let cfg = lossy_jittery();
        assert_eq!(timeline(&cfg, 7, 2000), timeline(&cfg, 7, 2000));
        assert_ne!(timeline(&cfg, 7, 2000), timeline(&cfg, 8, 2000));
    }

    #[test]
    fn packets_arrive_in_arrival_order_after_the_latency() {
        let got = timeline(&lossy_jittery(), 3, 3000);
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
        for &(idx, at) in &got {
            let sent = u128::from(idx) * 20_000;
            assert!(
                at >= sent + 20_000,
                "packet {idx} arrived before the latency"
            );
            assert!(at <= sent + 20_000 + 100_000 + 30_000);
        }
        // Jitter of 15 ms on 20 ms spacing reorders some packets.
        assert!(got.windows(2).any(|w| w[0].0 > w[1].0));
    }

    #[test]
    fn a_clean_path_delivers_everything_in_order_after_the_latency() {
        let got = timeline(&PathConfig::default(), 1, 500);
        let want: Vec<_> = (0..500u32)
            .map(|i| (i, u128::from(i) * 20_000 + 20_000))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn loss_rates_land_near_the_configured_ones() {
        // (loss model, expected long-run rate)
        let cases = [
            (Loss::Bernoulli { p: 0.05 }, 0.05),
            (Loss::Bernoulli { p: 0.20 }, 0.20),
            (
                Loss::GilbertElliott {
                    p_enter_bad: 0.02,
                    p_leave_bad: 0.25,
                    loss_good: 0.0,
                    loss_bad: 1.0,
                },
                0.02 / 0.27,
            ),
        ];
        for (loss, want) in cases {
            let cfg = PathConfig {
                loss,
                ..PathConfig::default()
            };
            let mut path = Path::new(cfg, 42);
            let t0 = crate::testclock::anchor();
            let n = 100_000;
            for i in 0..n {
                path.send(t0 + ms(20) * i, &[0]);
                while path.poll(t0 + ms(20) * i).is_some() {}
            }
            let rate = path.stats().lost as f64 / f64::from(n);
            assert!(
                (rate - want).abs() < 0.1 * want,
                "{loss:?}: {rate} vs {want}"
            );
        }
    }

    #[test]
    fn gilbert_elliott_losses_come_in_bursts() {
        let cfg = PathConfig {
            loss: Loss::GilbertElliott {
                p_enter_bad: 0.01,
                p_leave_bad: 0.25,
                loss_good: 0.0,
                loss_bad: 1.0,
            },
            ..PathConfig::default()
        };
        let mut path = Path::new(cfg, 9);
        let t0 = crate::testclock::anchor();
        let (mut bursts, mut lost, mut in_burst) = (0u32, 0u32, false);
        for i in 0..200_000 {
            let fate = path.send(t0 + ms(20) * i, &[0]);
            while path.poll(t0 + ms(20) * i).is_some() {}
            let is_lost = fate == Fate::Lost;
            if is_lost && !in_burst {
                bursts += 1;
            }
            lost += u32::from(is_lost);
            in_burst = is_lost;
        }
        let mean_burst = f64::from(lost) / f64::from(bursts);
        assert!((mean_burst - 4.0).abs() < 0.4, "mean burst {mean_burst}");
    }

    #[test]
    fn duplicates_arrive_twice_and_are_counted() {
        let cfg = PathConfig {
            duplicate: 0.1,
            ..PathConfig::default()
        };
        let got = timeline(&cfg, 5, 10_000);
        let dups = got.len() - 10_000;
        assert!((800..1200).contains(&dups), "{dups} duplicates");
    }

    #[test]
    fn a_full_path_drops_as_overflow_and_recovers() {
        let cfg = PathConfig {
            max_in_flight: 2,
            ..PathConfig::default()
        };
        let mut path = Path::new(cfg, 1);
        let t0 = crate::testclock::anchor();
        assert_eq!(path.send(t0, b"a"), Fate::Queued);
        assert_eq!(path.send(t0, b"b"), Fate::Queued);
        assert_eq!(path.send(t0, b"c"), Fate::Overflow);
        let later = t0 + ms(20);
        assert_eq!(
            path.poll(later).map(|(_, b)| b.to_vec()),
            Some(b"a".to_vec())
        );
        assert_eq!(path.send(later, b"d"), Fate::Queued);
        assert_eq!(path.stats().overflow, 1);
    }

    #[test]
    fn rng_below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(0);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[rng.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
        assert_eq!(rng.below(0), 0);
        assert!((0..1000).all(|_| (0.0..1.0).contains(&rng.next_f64())));
    }
}
