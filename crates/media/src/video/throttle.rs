//! Pacing of keyframe requests (PLI/FIR) toward one publisher stream.
//!
//! Every viewer that joins, switches layer or loses a keyframe packet wants a
//! keyframe of some publisher stream, and a keyframe costs that publisher several
//! times the bits of a normal frame. Fifty viewers joining within a second must
//! not turn into fifty keyframes: the requests are throttled per publisher stream,
//! and since one keyframe serves every viewer waiting on that stream, requests
//! refused now are not dropped but *coalesced* into one deferred request, sent as
//! soon as the limits allow, unless a keyframe arrives first and makes it moot.
//!
//! Two limits, both of which a send must satisfy: a minimum spacing (a keyframe
//! takes a round trip and an encode to arrive; asking again sooner only adds
//! load), and a cap per sliding window (a stream whose keyframes keep getting
//! lost should not be asked at the spacing rate forever).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Longer spacings and windows than this are taken as this: an `Instant` plus an
/// unbounded `Duration` could overflow, and no throttle needs more.
const MAX_SPAN: Duration = Duration::from_secs(24 * 3600);
/// Send times kept inline before the history grows (once, up to the window cap).
const PREALLOCATED: usize = 16;

/// Keyframe requests toward one publisher stream: at most one per `min_interval`
/// (200 ms in the node) and at most `max_per_window` per `window` (e.g. 3 per
/// 1 s); a request inside the limits is sent now, one outside is deferred
/// (coalesced: many deferred requests = one later send) and released by
/// [`KeyframeThrottle::poll`]; a keyframe arriving clears the deferred one.
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    min_interval: Duration,
    /// At least 1.
    max_per_window: usize,
    window: Duration,
    /// The last `max_per_window` send times, oldest first: a send is allowed when
    /// there are fewer, or the oldest has left the window.
    recent: VecDeque<Instant>,
    deferred: bool,
    sent: u64,
    suppressed: u64,
}

impl KeyframeThrottle {
    /// `max_per_window` 0 is taken as 1: a throttle that never lets a request
    /// through would leave a waiting viewer without video for good.
    pub fn new(min_interval: Duration, max_per_window: u32, window: Duration) -> Self {
        let max_per_window = (max_per_window as usize).max(1);
        KeyframeThrottle {
            min_interval: min_interval.min(MAX_SPAN),
            max_per_window,
            window: window.min(MAX_SPAN),
            recent: VecDeque::with_capacity(max_per_window.min(PREALLOCATED)),
            deferred: false,
            sent: 0,
            suppressed: 0,
        }
    }

    /// A keyframe is wanted at `now`. True: send a PLI/FIR now (counted as sent;
    /// any deferred request is served by it). False: deferred, or coalesced into
    /// the request already deferred (counted as suppressed); watch
    /// [`KeyframeThrottle::next_deadline`].
    #[must_use]
    pub fn request(&mut self, now: Instant) -> bool {
        if self.allowed(now) {
            self.record(now);
            return true;
        }
        self.deferred = true;
        self.suppressed += 1;
        false
    }

    /// True when a deferred request may go now: then it counts as sent and is
    /// cleared, and the caller sends the PLI/FIR. Call at
    /// [`KeyframeThrottle::next_deadline`].
    #[must_use]
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.deferred && self.allowed(now) {
            self.record(now);
            return true;
        }
        false
    }

    /// A keyframe of this stream arrived: whoever waited for one has it, so a
    /// deferred request is dropped. The limits are unchanged: they count
    /// requests sent, not keyframes received.
    pub fn on_keyframe(&mut self, _now: Instant) {
        self.deferred = false;
    }

    /// When [`KeyframeThrottle::poll`] could next return true: `None` when nothing
    /// is deferred.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.deferred {
            return None;
        }
        // A request is deferred only when some limit blocked it, so there is a
        // blocking send time; `earliest` is `None` only with no send at all.
        self.earliest()
    }

    /// Requests sent (by `request` or `poll`).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Requests deferred or coalesced.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// The first instant both limits allow a send, or `None` if nothing was ever
    /// sent.
    fn earliest(&self) -> Option<Instant> {
        let last = *self.recent.back()?;
        let spacing = last + self.min_interval;
        if self.recent.len() < self.max_per_window {
            return Some(spacing);
        }
        let oldest = *self.recent.front()?;
        Some(spacing.max(oldest + self.window))
    }

    fn allowed(&self, now: Instant) -> bool {
        self.earliest().map_or(true, |t| now >= t)
    }

    fn record(&mut self, now: Instant) {
        if self.recent.len() == self.max_per_window {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.deferred = false;
        self.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testclock::anchor;

    fn at(ms: u64) -> Instant {
        anchor() + Duration::from_millis(ms)
    }

    /// The node's setting: 200 ms apart, at most 3 per second.
    fn node() -> KeyframeThrottle {
        KeyframeThrottle::new(Duration::from_millis(200), 3, Duration::from_secs(1))
    }

    #[test]
    fn requests_are_spaced_by_the_minimum_interval() {
        let mut th = node();
        assert_eq!(th.next_deadline(), None);
        assert!(th.request(at(0)), "the first request goes at once");
        assert!(!th.request(at(50)), "50 ms later it is deferred");
        assert_eq!(th.next_deadline(), Some(at(200)));
        assert!(!th.poll(at(199)));
        assert!(th.poll(at(200)), "released at the deadline");
        assert!(!th.poll(at(201)), "and only once");
        assert_eq!(th.next_deadline(), None);
        assert!(th.request(at(400)), "200 ms after the last send: at once");
        assert_eq!((th.sent(), th.suppressed()), (3, 1));
    }

    #[test]
    fn the_window_caps_sends_even_when_spacing_allows() {
        let mut th = node();
        for ms in [0, 200, 400] {
            assert!(th.request(at(ms)), "{ms} ms");
        }
        assert!(!th.request(at(600)), "a 4th within 1 s is deferred");
        // Spacing would allow 600 ms; the window frees a slot when the send at
        // 0 ms leaves it.
        assert_eq!(th.next_deadline(), Some(at(1000)));
        assert!(!th.poll(at(999)));
        assert!(th.poll(at(1000)));
        assert!(!th.request(at(1150)), "200 ms apart from the send at 1000");
        assert_eq!(th.next_deadline(), Some(at(1200)));
    }

    #[test]
    fn many_deferred_requests_coalesce_into_one_send() {
        let mut th = node();
        assert!(th.request(at(0)));
        for ms in 1..=50 {
            assert!(!th.request(at(ms)));
        }
        assert!(th.poll(at(200)));
        assert!(!th.poll(at(400)), "the 50 were served by the one send");
        assert_eq!((th.sent(), th.suppressed()), (2, 50));
    }

    #[test]
    fn a_keyframe_clears_the_deferred_request() {
        let mut th = node();
        assert!(th.request(at(0)));
        assert!(!th.request(at(10)));
        th.on_keyframe(at(80));
        assert_eq!(th.next_deadline(), None);
        assert!(!th.poll(at(200)));
        assert!(
            !th.request(at(150)),
            "the spacing still counts from the send"
        );
        assert_eq!(th.sent(), 1);
    }

    #[test]
    fn a_request_after_the_deadline_goes_at_once_and_serves_the_deferred_one() {
        let mut th = node();
        assert!(th.request(at(0)));
        assert!(!th.request(at(10)));
        assert!(
            th.request(at(250)),
            "no poll happened, the request itself goes"
        );
        assert!(!th.poll(at(500)));
        assert_eq!(th.sent(), 2);
    }

    #[test]
    fn a_requester_spamming_at_1_khz_gets_at_most_the_window_cap() {
        let mut th = node();
        let mut sends = 0u64;
        for ms in 0..10_000u64 {
            let now = at(ms);
            if th.request(now) {
                sends += 1;
            }
            if th.poll(now) {
                sends += 1;
            }
        }
        // 3 per second over 10 s; steadily, the 4th of a window waits for the next.
        assert!(sends <= 3 * 10, "{sends} sends");
        assert!(
            sends >= 3 * 10 - 3,
            "{sends} sends: the throttle must not starve"
        );
        assert_eq!(th.sent(), sends);
        assert_eq!(th.suppressed(), 10_000 - sends);
    }

    #[test]
    fn a_zero_window_cap_is_taken_as_one() {
        let mut th = KeyframeThrottle::new(Duration::ZERO, 0, Duration::from_secs(1));
        assert!(th.request(at(0)));
        assert!(!th.request(at(500)));
        assert_eq!(th.next_deadline(), Some(at(1000)));
        assert!(th.poll(at(1000)));
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        let mut th = KeyframeThrottle::new(Duration::MAX, 1, Duration::MAX);
        assert!(th.request(at(0)));
        assert!(!th.request(at(1)));
        assert_eq!(th.next_deadline(), Some(at(0) + MAX_SPAN));
    }

    #[test]
    fn a_clock_read_out_of_order_does_not_release_early() {
        let mut th = node();
        assert!(th.request(at(500)));
        assert!(!th.request(at(100)));
        assert!(!th.poll(at(300)));
        assert!(th.poll(at(700)));
    }
}
