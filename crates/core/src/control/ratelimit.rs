//! Per-node limiter for failed control-connection logins, with lockout.
//!
//! Sans-IO: `now` is an argument and expiry is evaluated lazily on each call, so there
//! is no timer to drive. Re-exported as `control::auth::RateLimiter`, next to the login
//! it protects.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::auth::{LoginConfig, LoginError};

/// Longest duration the limiter honours for its window and lockout; longer configured
/// values are clamped so time arithmetic can never overflow.
const MAX_LIMITER_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Per node: failed login attempts per peer network, with lockout.
///
/// Peers are keyed by IPv4 address, or by IPv6 /64 prefix (one subscriber usually holds a
/// whole /64, so per-address counting would let them rotate addresses freely).
/// IPv4-mapped IPv6 addresses count as their IPv4 address.
///
/// Memory is bounded: at most `max_tracked_peers` entries. When a new peer arrives at a
/// full table, the peer whose tracking started longest ago is forgotten. Under a flood
/// from more networks than that, a lockout may be forgotten early; bounded memory is
/// the priority. A success clears the peer; a lapsed lockout or window resets it.
///
/// Intended use: `check` before issuing a challenge and before verifying a login;
/// `record_failure` for every failed verification; `record_success` after a login.
#[derive(Debug)]
pub struct RateLimiter {
    max_failures: u32,
    failure_window: Duration,
    lockout: Duration,
    capacity: usize,
    peers: HashMap<IpAddr, PeerState>,
    /// Insertion order as (key, generation); entries whose generation no longer matches
    /// the map are stale and skipped. Compacted when it grows past twice the capacity.
    order: VecDeque<(IpAddr, u64)>,
    next_generation: u64,
}

#[derive(Debug)]
struct PeerState {
    generation: u64,
    failures: u32,
    window_start: Instant,
    locked_at: Option<Instant>,
}

impl RateLimiter {
    pub fn new(cfg: &LoginConfig) -> Self {
        RateLimiter {
            max_failures: cfg.max_failures.max(1),
            failure_window: cfg.failure_window.min(MAX_LIMITER_DURATION),
            lockout: cfg.lockout.min(MAX_LIMITER_DURATION),
            capacity: cfg.max_tracked_peers.max(1),
            peers: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
        }
    }

    /// Ok if `peer` may attempt a login now; otherwise how long until it may.
    pub fn check(&mut self, now: Instant, peer: IpAddr) -> Result<(), LoginError> {
        let key = peer_key(peer);
        let Some(state) = self.peers.get(&key) else {
            return Ok(());
        };
        if let Some(locked_at) = state.locked_at {
            let elapsed = now.saturating_duration_since(locked_at);
            if elapsed < self.lockout {
                return Err(LoginError::RateLimited {
                    retry_after: self.lockout - elapsed,
                });
            }
            // The lockout has lapsed: the peer starts afresh.
            self.peers.remove(&key);
        }
        Ok(())
    }

    /// Counts a failed attempt; the `max_failures`-th within the window locks the peer
    /// out for `lockout`.
    pub fn record_failure(&mut self, now: Instant, peer: IpAddr) {
        let key = peer_key(peer);
        let (window, lockout, max_failures) =
            (self.failure_window, self.lockout, self.max_failures);
        if !self.peers.contains_key(&key) {
            self.insert(key, now);
        }
        let state = self
            .peers
            .get_mut(&key)
            .expect("the peer was just found or inserted");
        if let Some(locked_at) = state.locked_at {
            if now.saturating_duration_since(locked_at) < lockout {
                return; // already locked; attempts during a lockout are refused anyway
            }
            state.locked_at = None;
            state.failures = 0;
            state.window_start = now;
        }
        if now.saturating_duration_since(state.window_start) >= window {
            state.failures = 0;
            state.window_start = now;
        }
        state.failures += 1;
        if state.failures >= max_failures {
            state.locked_at = Some(now);
        }
    }

    /// Forgets the peer's failures after a successful login.
    pub fn record_success(&mut self, peer: IpAddr) {
        self.peers.remove(&peer_key(peer));
    }

    /// Number of peers currently remembered (never more than `max_tracked_peers`).
    pub fn tracked_peers(&self) -> usize {
        self.peers.len()
    }

    fn insert(&mut self, key: IpAddr, now: Instant) {
        while self.peers.len() >= self.capacity {
            let (old, generation) = self
                .order
                .pop_front()
                .expect("every live map entry has a queue entry, and the map is non-empty");
            if self
                .peers
                .get(&old)
                .is_some_and(|s| s.generation == generation)
            {
                self.peers.remove(&old);
            }
        }
        if self.order.len() >= 2 * self.capacity {
            let peers = &self.peers;
            self.order
                .retain(|(k, g)| peers.get(k).is_some_and(|s| s.generation == *g));
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.order.push_back((key, generation));
        self.peers.insert(
            key,
            PeerState {
                generation,
                failures: 0,
                window_start: now,
                locked_at: None,
            },
        );
    }
}

/// The address the limiter counts under: IPv4 as is (also when IPv4-mapped in IPv6),
/// IPv6 reduced to its /64 network.
pub(crate) fn peer_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn fail(limiter: &mut RateLimiter, now: Instant, peer: IpAddr, times: u32) {
        for _ in 0..times {
            limiter.record_failure(now, peer);
        }
    }

    #[test]
    fn a_peer_is_locked_out_after_max_failures_and_let_in_after_the_lockout() {
        let cfg = LoginConfig::default();
        let mut rl = RateLimiter::new(&cfg);
        let t0 = scnf_media::testclock::anchor();
        fail(&mut rl, t0, v4(1), cfg.max_failures - 1);
        assert_eq!(
            rl.check(t0, v4(1)),
            Ok(()),
            "one failure short of the limit"
        );
        rl.record_failure(t0 + Duration::from_secs(1), v4(1));
        let locked = t0 + Duration::from_secs(1);
        assert_eq!(
            rl.check(locked, v4(1)),
            Err(LoginError::RateLimited {
                retry_after: cfg.lockout
            })
        );
        let r = rl.check(locked + Duration::from_secs(45), v4(1));
        assert_eq!(
            r,
            Err(LoginError::RateLimited {
                retry_after: Duration::from_secs(15)
            })
        );
        assert_eq!(rl.check(locked + cfg.lockout, v4(1)), Ok(()));
        // Afresh after the lockout: one more failure does not lock again.
        rl.record_failure(locked + cfg.lockout, v4(1));
        assert_eq!(rl.check(locked + cfg.lockout, v4(1)), Ok(()));
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_lock_out() {
        let cfg = LoginConfig::default();
        let mut rl = RateLimiter::new(&cfg);
        let t0 = scnf_media::testclock::anchor();
        fail(&mut rl, t0, v4(1), cfg.max_failures - 1);
        let later = t0 + cfg.failure_window;
        fail(&mut rl, later, v4(1), cfg.max_failures - 1);
        assert_eq!(rl.check(later, v4(1)), Ok(()));
        rl.record_failure(later, v4(1));
        assert!(
            rl.check(later, v4(1)).is_err(),
            "max_failures inside the second window"
        );
    }

    #[test]
    fn a_locked_out_peer_does_not_affect_other_peers() {
        let cfg = LoginConfig::default();
        let mut rl = RateLimiter::new(&cfg);
        let t0 = scnf_media::testclock::anchor();
        fail(&mut rl, t0, v4(1), cfg.max_failures);
        assert!(rl.check(t0, v4(1)).is_err());
        assert_eq!(rl.check(t0, v4(2)), Ok(()));
        let other_v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1));
        assert_eq!(rl.check(t0, other_v6), Ok(()));
    }

    #[test]
    fn success_clears_earlier_failures() {
        let cfg = LoginConfig::default();
        let mut rl = RateLimiter::new(&cfg);
        let t0 = scnf_media::testclock::anchor();
        fail(&mut rl, t0, v4(1), cfg.max_failures - 1);
        rl.record_success(v4(1));
        assert_eq!(rl.tracked_peers(), 0);
        fail(&mut rl, t0, v4(1), cfg.max_failures - 1);
        assert_eq!(rl.check(t0, v4(1)), Ok(()));
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_counter_and_mapped_ipv4_counts_as_ipv4() {
        let cfg = LoginConfig::default();
        let mut rl = RateLimiter::new(&cfg);
        let t0 = scnf_media::testclock::anchor();
        for host in 0..cfg.max_failures {
            let addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, 0, host as u16 + 1);
            rl.record_failure(t0, IpAddr::V6(addr));
        }
        let same_net = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0xffff, 1, 2, 3));
        assert!(
            rl.check(t0, same_net).is_err(),
            "rotating host bits does not escape"
        );
        let next_net = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 8, 0, 0, 0, 1));
        assert_eq!(rl.check(t0, next_net), Ok(()));

        fail(&mut rl, t0, v4(9), cfg.max_failures);
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
        assert!(rl.check(t0, mapped).is_err());
    }

    #[test]
    fn memory_stays_bounded_under_100k_distinct_peers_and_the_newest_are_remembered() {
        let cfg = LoginConfig::default();
        let mut rl = RateLimiter::new(&cfg);
        let t0 = scnf_media::testclock::anchor();
        let peer = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..100_000 {
            fail(&mut rl, t0, peer(i), 2);
            if i % 3 == 1 {
                rl.record_success(peer(i)); // leaves stale queue entries behind
            }
            assert!(rl.tracked_peers() <= cfg.max_tracked_peers);
            assert!(rl.order.len() <= 2 * cfg.max_tracked_peers);
        }
        assert_eq!(rl.tracked_peers(), cfg.max_tracked_peers);
        // The latest peer is tracked: three more failures lock it.
        fail(&mut rl, t0, peer(99_999), cfg.max_failures - 2);
        assert!(rl.check(t0, peer(99_999)).is_err());
        // The earliest was forgotten to make room.
        assert!(!rl.peers.contains_key(&peer(0)));
    }
}
