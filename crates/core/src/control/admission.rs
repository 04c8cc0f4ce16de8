//! Who may hold a control connection: the budgets of a listener, as a sans-IO state
//! machine the transport consults on every accept and every login step.
//!
//! A connection that has not logged in costs the node a socket and a task while
//! proving nothing, so such connections (*waiting*: in the TLS/WebSocket handshake, or
//! open but not logged in) have their own budget, overall and per source network, and
//! short deadlines: the handshake must end within `handshake_timeout` of the accept,
//! the login within `login_timeout`. Logged-in *sessions* have a budget of their own
//! that waiting connections never touch, and a session is never evicted.
//!
//! When the waiting budget is full a newcomer still gets in: it takes the place of a
//! waiting connection of the source network that holds the most waiting slots (the
//! newcomer's own, when its source is at its per-source limit). Within that choice the
//! least advanced connection goes first (still in the handshake, then open and idle,
//! and only then one that has asked for a challenge), the oldest first. An attacker
//! who holds every slot therefore only ever evicts its own connections, and an honest
//! controller from another network, or one that is already logging in, gets through.
//!
//! Sources are keyed as the login rate limiter keys them: an IPv4 address, an IPv6
//! /64.
//!
//! Nothing here reads the clock: `now` is an input, deadlines are outputs
//! ([`Gate::poll_timeout`], [`Gate::handle_timeout`]).

use super::ratelimit::peer_key;
use crate::session::ConnId;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The budgets and deadlines (validated by the shell's config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Waiting (not logged in) connections overall.
    pub waiting_max: usize,
    /// Waiting connections per source network.
    pub waiting_per_source: usize,
    /// Logged-in sessions.
    pub sessions_max: usize,
    /// From accept to the end of the TLS/WebSocket handshake.
    pub handshake_timeout: Duration,
    /// From accept to the end of the login.
    pub login_timeout: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            waiting_max: 64,
            waiting_per_source: 8,
            sessions_max: 64,
            handshake_timeout: Duration::from_secs(3),
            login_timeout: Duration::from_secs(5),
        }
    }
}

/// How far a waiting connection got, least advanced first (the eviction order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// TLS/WebSocket handshake under way.
    Handshake,
    /// Open, nothing asked yet.
    Open,
    /// Has asked for a login challenge.
    Challenged,
}

/// Why a waiting connection must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The handshake did not end within `handshake_timeout`.
    Handshake,
    /// The login did not end within `login_timeout`.
    Login,
}

impl Expiry {
    /// The close reason the peer reads (when it got as far as a WebSocket).
    pub fn reason(self) -> &'static str {
        match self {
            Expiry::Handshake => "handshake timeout",
            Expiry::Login => "login timeout",
        }
    }
}

/// The answer to a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Promotion {
    /// The connection is a session now (or already was).
    Admitted,
    /// Every session slot is taken: the connection must be closed.
    Full,
}

/// What the gate has done since it started, for operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateStats {
    /// Waiting connections that made room for a newcomer.
    pub evicted: u64,
    /// Waiting connections past their deadline.
    pub expired: u64,
    /// Logins refused because every session slot was taken.
    pub sessions_full: u64,
}

#[derive(Debug)]
struct Waiting {
    source: IpAddr,
    stage: Stage,
    accepted: Instant,
    deadline: Instant,
    /// Arrival order: the oldest is evicted first.
    seq: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Gate {
    cfg: AdmissionConfig,
    waiting: HashMap<ConnId, Waiting>,
    per_source: HashMap<IpAddr, usize>,
    sessions: HashSet<ConnId>,
    next_seq: u64,
    stats: GateStats,
}

impl Gate {
    pub fn new(cfg: AdmissionConfig) -> Gate {
        Gate {
            cfg,
            waiting: HashMap::new(),
            per_source: HashMap::new(),
            sessions: HashSet::new(),
            next_seq: 0,
            stats: GateStats::default(),
        }
    }

    /// A connection from `peer` was accepted. Always admitted; the answer is the
    /// waiting connection (if any) that must be closed to make room for it.
    pub fn arrive(&mut self, now: Instant, conn: ConnId, peer: IpAddr) -> Option<ConnId> {
        let source = peer_key(peer);
        let own = self.per_source.get(&source).copied().unwrap_or(0);
        let victim = if own >= self.cfg.waiting_per_source.max(1) {
            self.least_advanced(|s| s == source)
        } else if self.waiting.len() >= self.cfg.waiting_max.max(1) {
            let most = self.per_source.values().copied().max().unwrap_or(0);
            let top: HashSet<IpAddr> = self
                .per_source
                .iter()
                .filter(|(_, n)| **n == most)
                .map(|(s, _)| *s)
                .collect();
            self.least_advanced(|s| top.contains(&s))
        } else {
            None
        };
        if let Some(v) = victim {
            self.remove_waiting(v);
            self.stats.evicted += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        *self.per_source.entry(source).or_insert(0) += 1;
        self.waiting.insert(
            conn,
            Waiting {
                source,
                stage: Stage::Handshake,
                accepted: now,
                deadline: now + self.cfg.handshake_timeout,
                seq,
            },
        );
        victim
    }

    /// The handshake of `conn` ended: it now has until `login_timeout` after its
    /// accept to log in.
    pub fn opened(&mut self, conn: ConnId) {
        let login = self.cfg.login_timeout.max(self.cfg.handshake_timeout);
        if let Some(w) = self.waiting.get_mut(&conn) {
            if w.stage == Stage::Handshake {
                w.stage = Stage::Open;
                w.deadline = w.accepted + login;
            }
        }
    }

    /// `conn` asked for a login challenge: it is kept before idle connections.
    pub fn challenged(&mut self, conn: ConnId) {
        if let Some(w) = self.waiting.get_mut(&conn) {
            w.stage = Stage::Challenged;
        }
    }

    /// `conn` logged in (or needs no login): it leaves the waiting budget for a
    /// session slot, if there is one.
    pub fn logged_in(&mut self, conn: ConnId) -> Promotion {
        if self.sessions.contains(&conn) {
            return Promotion::Admitted;
        }
        self.remove_waiting(conn);
        if self.sessions.len() >= self.cfg.sessions_max {
            self.stats.sessions_full += 1;
            return Promotion::Full;
        }
        self.sessions.insert(conn);
        Promotion::Admitted
    }

    /// `conn` is gone (closed, evicted or expired).
    pub fn left(&mut self, conn: ConnId) {
        self.remove_waiting(conn);
        self.sessions.remove(&conn);
    }

    /// The earliest deadline of a waiting connection.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.values().map(|w| w.deadline).min()
    }

    /// Removes the waiting connections whose deadline is `now` or earlier, in
    /// deadline order (ties: arrival order), with why; the shell closes them.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(ConnId, Expiry)> {
        let mut due: Vec<(Instant, u64, ConnId, Expiry)> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(c, w)| {
                let why = match w.stage {
                    Stage::Handshake => Expiry::Handshake,
                    Stage::Open | Stage::Challenged => Expiry::Login,
                };
                (w.deadline, w.seq, *c, why)
            })
            .collect();
        due.sort_unstable_by_key(|&(at, seq, _, _)| (at, seq));
        for &(_, _, conn, _) in &due {
            self.remove_waiting(conn);
            self.stats.expired += 1;
        }
        due.into_iter().map(|(_, _, c, why)| (c, why)).collect()
    }

    /// Waiting connections now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Logged-in sessions now.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The stage of a waiting connection (`None`: not waiting).
    pub fn stage(&self, conn: ConnId) -> Option<Stage> {
        self.waiting.get(&conn).map(|w| w.stage)
    }

    pub fn stats(&self) -> GateStats {
        self.stats
    }

    /// The least advanced, then oldest, waiting connection of a source `pick` accepts.
    fn least_advanced(&self, pick: impl Fn(IpAddr) -> bool) -> Option<ConnId> {
        self.waiting
            .iter()
            .filter(|(_, w)| pick(w.source))
            .min_by_key(|(_, w)| (w.stage, w.seq))
            .map(|(c, _)| *c)
    }

    fn remove_waiting(&mut self, conn: ConnId) {
        let Some(w) = self.waiting.remove(&conn) else {
            return;
        };
        if let Some(n) = self.per_source.get_mut(&w.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&w.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scnf_media::testclock::anchor;

    fn cfg() -> AdmissionConfig {
        AdmissionConfig {
            waiting_max: 8,
            waiting_per_source: 4,
            sessions_max: 2,
            handshake_timeout: Duration::from_secs(2),
            login_timeout: Duration::from_secs(5),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// Fills the waiting budget from sources 2 and 3 (4 each), connections 100.. .
    fn full(gate: &mut Gate, t0: Instant) {
        for i in 0..8u64 {
            let evicted = gate.arrive(t0, ConnId(100 + i), ip(2 + (i % 2) as u8));
            assert_eq!(evicted, None);
        }
        assert_eq!(gate.waiting(), 8);
    }

    #[test]
    fn an_honest_newcomer_evicts_the_attackers_oldest_idle_connection() {
        let t0 = anchor();
        let mut gate = Gate::new(cfg());
        full(&mut gate, t0);
        // Source 2 (conns 100, 102, 104, 106) and 3 hold 4 each; 100 is the oldest.
        let evicted = gate.arrive(t0, ConnId(1), ip(9));
        assert_eq!(evicted, Some(ConnId(100)));
        gate.opened(ConnId(1));
        gate.challenged(ConnId(1));
        assert_eq!(gate.logged_in(ConnId(1)), Promotion::Admitted);
        assert_eq!((gate.waiting(), gate.sessions()), (7, 1));
        assert_eq!(gate.stats().evicted, 1);
    }

    #[test]
    fn a_source_at_its_limit_only_evicts_its_own_and_the_honest_one_stays() {
        let t0 = anchor();
        let mut gate = Gate::new(cfg());
        let honest = ConnId(1);
        gate.arrive(t0, honest, ip(9));
        gate.opened(honest);
        for i in 0..4u64 {
            assert_eq!(gate.arrive(t0, ConnId(100 + i), ip(2)), None);
        }
        // The attacker reconnects in a loop: each newcomer replaces its own oldest.
        for i in 4..40u64 {
            let evicted = gate.arrive(t0, ConnId(100 + i), ip(2)).expect("evicts");
            assert_eq!(evicted, ConnId(100 + i - 4));
        }
        assert_eq!(gate.stage(honest), Some(Stage::Open));
        assert_eq!(gate.waiting(), 5);
    }

    #[test]
    fn a_connection_that_asked_for_a_challenge_outlives_idle_ones_of_its_source() {
        let t0 = anchor();
        let mut gate = Gate::new(cfg());
        // The honest controller shares source 2 with the attacker, and is the oldest.
        let honest = ConnId(1);
        gate.arrive(t0, honest, ip(2));
        gate.opened(honest);
        gate.challenged(honest);
        for i in 0..3u64 {
            gate.arrive(t0, ConnId(100 + i), ip(2));
            gate.opened(ConnId(100 + i));
        }
        // Still-handshaking connections go before open ones, open before challenged.
        let evicted = gate.arrive(t0, ConnId(200), ip(2));
        assert_eq!(evicted, Some(ConnId(100)));
        let evicted = gate.arrive(t0, ConnId(201), ip(2));
        assert_eq!(
            evicted,
            Some(ConnId(200)),
            "the handshaking newcomer goes first"
        );
        for _ in 0..20 {
            let next = ConnId(gate.next_seq + 1000);
            let evicted = gate.arrive(t0, next, ip(2));
            assert_ne!(evicted, Some(honest));
        }
        assert_eq!(gate.stage(honest), Some(Stage::Challenged));
    }

    #[test]
    fn the_pool_full_evicts_from_the_source_holding_most() {
        let t0 = anchor();
        let mut gate = Gate::new(cfg());
        // Source 5 holds one (honest), source 2 four, source 3 three.
        gate.arrive(t0, ConnId(1), ip(5));
        for i in 0..4 {
            gate.arrive(t0, ConnId(10 + i), ip(2));
        }
        for i in 0..3 {
            gate.arrive(t0, ConnId(20 + i), ip(3));
        }
        assert_eq!(gate.arrive(t0, ConnId(30), ip(7)), Some(ConnId(10)));
        // Now 2 and 3 hold three each: the oldest least advanced of both goes.
        gate.opened(ConnId(11));
        assert_eq!(gate.arrive(t0, ConnId(31), ip(8)), Some(ConnId(12)));
        assert!(
            gate.stage(ConnId(1)).is_some(),
            "the lone source is never chosen"
        );
    }

    #[test]
    fn sessions_are_never_evicted_and_have_their_own_budget() {
        let t0 = anchor();
        let mut gate = Gate::new(cfg());
        for c in [1, 2] {
            gate.arrive(t0, ConnId(c), ip(9));
            gate.opened(ConnId(c));
            assert_eq!(gate.logged_in(ConnId(c)), Promotion::Admitted);
        }
        for i in 0..50u64 {
            let evicted = gate.arrive(t0, ConnId(100 + i), ip(2 + (i % 5) as u8));
            assert!(!matches!(evicted, Some(ConnId(1 | 2))));
        }
        assert_eq!(gate.sessions(), 2);
        assert_eq!(gate.handle_timeout(t0 + Duration::from_secs(60)).len(), 8);
        assert_eq!(gate.sessions(), 2, "sessions have no login deadline");
        // A third login finds every session slot taken.
        gate.arrive(t0, ConnId(3), ip(9));
        assert_eq!(gate.logged_in(ConnId(3)), Promotion::Full);
        assert_eq!(gate.stats().sessions_full, 1);
        assert_eq!(gate.waiting(), 0);
        gate.left(ConnId(1));
        gate.arrive(t0, ConnId(4), ip(9));
        assert_eq!(gate.logged_in(ConnId(4)), Promotion::Admitted);
        assert_eq!(gate.logged_in(ConnId(4)), Promotion::Admitted, "idempotent");
    }

    #[test]
    fn handshake_and_login_deadlines_count_from_the_accept() {
        let t0 = anchor();
        let mut gate = Gate::new(cfg());
        gate.arrive(t0, ConnId(1), ip(2));
        gate.arrive(t0 + Duration::from_millis(500), ConnId(2), ip(3));
        assert_eq!(gate.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        // Connection 2 finishes its handshake; 1 never does.
        gate.opened(ConnId(2));
        let before = t0 + Duration::from_millis(1_999);
        assert!(gate.handle_timeout(before).is_empty());
        let at = t0 + Duration::from_secs(2);
        assert_eq!(
            gate.handle_timeout(at),
            vec![(ConnId(1), Expiry::Handshake)]
        );
        assert_eq!(gate.poll_timeout(), Some(t0 + Duration::from_millis(5_500)));
        // Asking for a challenge does not extend the login deadline.
        gate.challenged(ConnId(2));
        let at = t0 + Duration::from_millis(5_500);
        assert_eq!(gate.handle_timeout(at), vec![(ConnId(2), Expiry::Login)]);
        assert_eq!(gate.poll_timeout(), None);
        assert_eq!(gate.stats().expired, 2);
        assert_eq!(Expiry::Login.reason(), "login timeout");
    }

    #[test]
    fn ipv6_sources_count_per_64() {
        let t0 = anchor();
        let mut gate = Gate::new(cfg());
        let net = |host: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, host]);
        for h in 0..4u16 {
            assert_eq!(gate.arrive(t0, ConnId(u64::from(h)), net(h)), None);
        }
        // A fifth address of the same /64 is at the limit: it replaces its own.
        assert_eq!(gate.arrive(t0, ConnId(9), net(77)), Some(ConnId(0)));
        let other = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
        assert_eq!(gate.arrive(t0, ConnId(10), other), None);
    }
}
