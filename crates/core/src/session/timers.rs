//! The session root's named timers, in one table.
//!
//! The conference core keeps its own deadline (overlap dialling) and the root asks it
//! with `Conference::poll_timeout`; everything the root itself waits for is a
//! [`Timer`] here. [`Timers::next`] is the earliest; [`Timers::pop_due`] takes the due
//! ones in deadline order (ties: timer order), so a run is reproducible.

use super::{ConnId, ControllerId};
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// What the root waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// A connection that has not logged in yet is closed at this deadline.
    Login(ConnId),
    /// A detached controller's grace runs out: its calls are released.
    Resume(ControllerId),
    /// A restarted scaler's rebuild window is over: parked resume logins are
    /// answered.
    Rebuilt,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Timers {
    by_deadline: BTreeSet<(Instant, Timer)>,
    deadline: HashMap<Timer, Instant>,
}

impl Timers {
    /// Arms `timer` for `at`, replacing an earlier setting.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.clear(timer);
        self.by_deadline.insert((at, timer));
        self.deadline.insert(timer, at);
    }

    /// Disarms `timer` (nothing happens if it is not armed).
    pub fn clear(&mut self, timer: Timer) {
        if let Some(at) = self.deadline.remove(&timer) {
            self.by_deadline.remove(&(at, timer));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(at, _)| at)
    }

    /// Takes the earliest timer that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let &(at, timer) = self.by_deadline.first()?;
        if at > now {
            return None;
        }
        self.by_deadline.remove(&(at, timer));
        self.deadline.remove(&timer);
        Some(timer)
    }

    /// How many timers are armed.
    pub fn len(&self) -> usize {
        self.deadline.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadline.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_timers_come_out_in_deadline_order_and_rearming_replaces() {
        let t0 = scnf_media::testclock::anchor();
        let s = Duration::from_secs(1);
        let mut t = Timers::default();
        t.set(Timer::Login(ConnId(2)), t0 + 2 * s);
        t.set(Timer::Login(ConnId(1)), t0 + 3 * s);
        t.set(Timer::Login(ConnId(1)), t0 + s);
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(t0 + s));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(t.pop_due(t0 + 5 * s), Some(Timer::Login(ConnId(1))));
        assert_eq!(t.pop_due(t0 + 5 * s), Some(Timer::Login(ConnId(2))));
        assert_eq!(t.pop_due(t0 + 5 * s), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_cleared_timer_never_fires() {
        let t0 = scnf_media::testclock::anchor();
        let mut t = Timers::default();
        t.set(Timer::Login(ConnId(7)), t0);
        t.clear(Timer::Login(ConnId(7)));
        t.clear(Timer::Login(ConnId(7)));
        assert_eq!(t.next(), None);
        assert_eq!(t.pop_due(t0), None);
    }
}
