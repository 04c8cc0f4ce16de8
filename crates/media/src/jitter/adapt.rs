//! The playout-delay estimator: how much delay this path needs.
//!
//! All quantities are in RTP timestamp units of the stream ("units"), relative to the
//! playout's base instant, so there is no floating-point time.
//!
//! For every packet (played or late) we record its transit `D = arrival - ts`. The
//! path's *relative delay* for that packet is `r = D - min(D over the last second)`:
//! how much later than the fastest recent packet it came. A one-second window keeps
//! the minimum honest when the sender's clock drifts (at 0.5% drift the floor moves
//! 5 ms per second).
//!
//! The window minimum is kept in a monotonic deque (each entry is the smallest
//! transit from it onwards), so recording a packet and asking for the floor are O(1)
//! amortised instead of a scan of the window: the node asks several times per leg
//! per tick.
//!
//! The target delay is the 95th percentile of `r` plus a margin, clamped to
//! `[min_delay, max_delay]`, and held at `start_delay` until 50 packets have been seen.
//! The target is the wait from the fastest packet's arrival to the tick that plays it,
//! so the margin holds only what the percentile cannot see:
//! - the *lead* of the packetisation: a mix frame is taken whole at its tick, so when
//!   packets are shorter than a frame (or straddle frames) the last packet a frame
//!   needs starts up to 15 ms after the frame does and must be there at its tick
//!   ([`frame_lead`]; 0 for 20 ms packets);
//! - 3 ms of safety for the tick timer's noise: playout starts on the first tick at
//!   or past the target, and a tick that runs late there makes the later, punctual
//!   ones see up to that much less delay. The playout grows only when the delay falls
//!   more than this safety below the target, i.e. below what the jitter itself needs.
//!
//! The wait for the next tick (the tick phase, 0-20 ms) comes on top by itself:
//! playout starts on the first tick at or past the target, and the playout only
//! shrinks when a whole frame of delay is spare (see `playout.rs`).
//!
//! The percentile comes from a histogram of 2 ms buckets whose old entries fade
//! geometrically (factor 0.995 per packet, so it remembers about four seconds of
//! 20 ms packets): it shrinks slowly. A late packet raises a separate peak to its own
//! `r + margin` at once (it came later than the delay, so the delay is now below
//! `peak - safety` and the playout grows), which decays by 0.2% per packet (half-life
//! ~7 s at 20 ms): it grows fast.
//!
//! A sender that delivers in bursts (`ffmpeg -re` writes ~256 ms at once) is just a
//! path whose relative delay spans the burst: the first packet of a burst is the
//! latest relative to the last one. The percentile covers it as long as `max_delay`
//! does, which is why the default cap is well above such a burst.

use super::JitterConfig;

const WINDOW: usize = 128;
const FORGET: f32 = 0.995;
/// `1 / FORGET`: the weight of each new entry grows by it (a multiply per packet,
/// not a division).
const GROW: f32 = 1.0 / FORGET;
const PEAK_DECAY: f32 = 0.998;
const QUANTILE: f32 = 0.95;
const WARMUP: u32 = 50;
/// Safety on top of the percentile and the packetisation lead, ms; also the slack
/// the playout allows below the target before it grows.
pub(super) const SAFETY_MS: i64 = 3;
const FRAME: i64 = crate::codec::FRAME_SAMPLES as i64;

/// How long after a mix frame's start the last packet that frame needs may start, in
/// 8 kHz samples, for packets of `len` samples laid from the frame grid's origin (the
/// playout anchors its frames on a packet's start). 0 for packets of a whole number of
/// frames; 80 for 10 ms packets, 120 for 5 ms, 80 for 30 ms (every other frame).
pub(super) fn frame_lead(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let f = FRAME as usize;
    let mut lead = 0;
    // Frame starts fall on k * FRAME modulo len; len / gcd(len, FRAME) residues.
    let mut start = 0;
    loop {
        let first = (len - start % len) % len;
        if first < f {
            // Packet starts inside the frame: first, first + len, ... below f.
            lead = lead.max(first + (f - 1 - first) / len * len);
        }
        start = (start + f) % len;
        if start == 0 {
            break;
        }
    }
    lead
}

#[derive(Clone, Copy, Default)]
struct Entry {
    n: u64,
    at: i64,
    transit: i64,
}

pub(super) struct DelayEstimator {
    units_per_ms: i64,
    /// Monotonic deque of recent packets (a ring of `len` entries from `head`):
    /// transits strictly increase from front to back, so the front is the minimum of
    /// everything recorded since it.
    window: [Entry; WINDOW],
    head: usize,
    len: usize,
    /// Packets recorded so far (numbers the entries, for the count bound).
    count: u64,
    span: i64,
    /// Faded histogram of relative delay; `weight` is the weight of the next entry
    /// (grows by 1/FORGET per packet instead of decaying every bucket).
    hist: Vec<f32>,
    bucket: i64,
    weight: f32,
    total: f32,
    observed: u32,
    peak: f32,
    min: i64,
    start: i64,
    max: i64,
    /// Packetisation lead plus safety (see the module docs).
    margin: i64,
    /// Packet length (8 kHz samples) the lead was computed for.
    lead_for: usize,
    target: i64,
}

impl DelayEstimator {
    pub fn new(cfg: &JitterConfig, units_per_sec: i64) -> Self {
        let units_per_ms = (units_per_sec / 1000).max(1);
        let to_units =
            |d: std::time::Duration| (d.as_micros() as i64).saturating_mul(units_per_ms) / 1000;
        let max = to_units(cfg.max_delay).max(20 * units_per_ms);
        let min = to_units(cfg.min_delay).min(max);
        let start = to_units(cfg.start_delay).clamp(min, max);
        let bucket = 2 * units_per_ms;
        let buckets = (max / bucket + 2) as usize;
        DelayEstimator {
            units_per_ms,
            window: [Entry::default(); WINDOW],
            head: 0,
            len: 0,
            count: 0,
            span: 1000 * units_per_ms,
            hist: vec![0.0; buckets],
            bucket,
            weight: 1.0,
            total: 0.0,
            observed: 0,
            peak: 0.0,
            min,
            start,
            max,
            margin: SAFETY_MS * units_per_ms,
            lead_for: FRAME as usize,
            target: start,
        }
    }

    /// Forgets everything measured (a new source).
    pub fn reset(&mut self) {
        self.clear_window();
        self.hist.iter_mut().for_each(|b| *b = 0.0);
        self.weight = 1.0;
        self.total = 0.0;
        self.observed = 0;
        self.peak = 0.0;
        self.target = self.start;
    }

    /// Forgets the transit window only (timestamps jumped: old transits are
    /// meaningless), keeping the learned jitter.
    pub fn clear_window(&mut self) {
        self.len = 0;
        self.head = 0;
    }

    /// Packets of `samples` 8 kHz samples are arriving: sets the packetisation lead.
    /// Cheap when the length is unchanged (the usual case).
    pub fn set_packet_samples(&mut self, samples: usize, ups: i64) {
        if samples == self.lead_for {
            return;
        }
        self.lead_for = samples;
        let lead = frame_lead(samples) as i64 * ups;
        self.margin = lead + SAFETY_MS * self.units_per_ms;
    }

    pub fn target(&self) -> i64 {
        self.target
    }

    pub fn units_per_ms(&self) -> i64 {
        self.units_per_ms
    }

    fn entry(&self, k: usize) -> &Entry {
        &self.window[(self.head + k) % WINDOW]
    }

    /// The lowest transit seen in the last second (and the last `WINDOW` packets)
    /// before `now`, if any. Entries that have aged out sit at the front and are
    /// skipped; the first live one is the minimum of all live ones.
    pub fn min_transit(&self, now: i64) -> Option<i64> {
        (0..self.len)
            .map(|k| self.entry(k))
            .find(|e| now - e.at <= self.span)
            .map(|e| e.transit)
    }

    /// Records a packet's arrival; returns its relative delay `r`.
    pub fn observe(&mut self, now: i64, ts: i64) -> i64 {
        let transit = now - ts;
        self.count += 1;
        // Drop entries older than the last WINDOW packets or than the span.
        while self.len > 0 {
            let front = *self.entry(0);
            if self.count - front.n >= WINDOW as u64 || now - front.at > self.span {
                self.head = (self.head + 1) % WINDOW;
                self.len -= 1;
            } else {
                break;
            }
        }
        // Entries at the back with a transit no lower than this one can never be the
        // minimum again.
        while self.len > 0 && self.entry(self.len - 1).transit >= transit {
            self.len -= 1;
        }
        let back = (self.head + self.len) % WINDOW;
        self.window[back] = Entry {
            n: self.count,
            at: now,
            transit,
        };
        self.len += 1;
        let r = self.min_transit(now).map_or(0, |m| transit - m).max(0);

        let b = ((r / self.bucket) as usize).min(self.hist.len() - 1);
        self.hist[b] += self.weight;
        self.total += self.weight;
        self.weight *= GROW;
        if self.weight > 1e6 {
            // Renormalise before f32 loses the small buckets; ratios are unchanged.
            let w = self.weight;
            self.hist.iter_mut().for_each(|x| *x /= w);
            self.total /= w;
            self.weight = 1.0;
        }
        self.observed = self.observed.saturating_add(1);
        self.peak *= PEAK_DECAY;
        // The histogram fades by 0.5 % per packet, so the percentile moves slowly:
        // scanning it every fourth packet (every 80 ms at 20 ms packets) is enough.
        // Growth does not wait: `late` updates at once.
        if self.observed <= WARMUP || self.count % 4 == 0 {
            self.update_target();
        }
        r
    }

    /// A packet with relative delay `r` came too late: grow now.
    pub fn late(&mut self, r: i64) {
        self.peak = self.peak.max((r + self.margin) as f32);
        self.update_target();
    }

    /// The upper edge of the bucket holding the `QUANTILE` of the weight: the
    /// first bucket at which the weight below and in it reaches that share. Scanned
    /// from the bottom, where a clean path's weight all lies, so the usual scan is a
    /// bucket or two rather than the whole range up to `max_delay`.
    fn quantile(&self) -> i64 {
        if self.total <= 0.0 {
            return 0;
        }
        let body = QUANTILE * self.total;
        let mut acc = 0.0;
        for (i, &w) in self.hist.iter().enumerate() {
            acc += w;
            if acc >= body {
                return (i as i64 + 1) * self.bucket;
            }
        }
        // Rounding left the sum just short of `total`: the top bucket holds the rest.
        self.hist.len() as i64 * self.bucket
    }

    fn update_target(&mut self) {
        let base = if self.observed < WARMUP {
            self.start
        } else {
            self.quantile() + self.margin
        };
        self.target = base.max(self.peak as i64).clamp(self.min, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 8;

    fn est() -> DelayEstimator {
        DelayEstimator::new(&JitterConfig::default(), 8000)
    }

    #[test]
    fn a_steady_path_settles_at_the_minimum_delay() {
        let mut e = est();
        assert_eq!(e.target(), 40 * MS, "start delay before warm-up");
        for i in 0..100 {
            let ts = i * 160;
            assert_eq!(e.observe(ts + 30 * MS, ts), 0);
        }
        // 2 ms (the first bucket's edge) + 3 ms safety.
        assert_eq!(e.target(), 5 * MS);
    }

    #[test]
    fn the_target_covers_the_jitter_percentile() {
        let mut e = est();
        // Every tenth packet 40 ms late, the rest on time.
        for i in 0..500 {
            let ts = i * 160;
            let extra = if i % 10 == 0 { 40 * MS } else { 0 };
            e.observe(ts + 30 * MS + extra, ts);
        }
        let t = e.target();
        // The 40 ms bucket's edge (42 ms) plus 3 ms safety; 20 ms packets need no lead.
        assert!((42 * MS..=46 * MS).contains(&t), "target {} ms", t / MS);
    }

    #[test]
    fn a_late_packet_raises_the_target_at_once_and_it_decays_slowly() {
        let mut e = est();
        for i in 0..100 {
            e.observe(i * 160 + 30 * MS, i * 160);
        }
        e.late(100 * MS);
        assert_eq!(e.target(), 103 * MS);
        for i in 100..150 {
            e.observe(i * 160 + 30 * MS, i * 160);
        }
        let t = e.target();
        assert!((88 * MS..103 * MS).contains(&t), "target {} ms", t / MS);
    }

    #[test]
    fn the_target_stays_within_bounds() {
        let mut e = est();
        e.late(10_000 * MS);
        assert_eq!(e.target(), 500 * MS);
    }

    #[test]
    fn the_packetisation_lead_is_the_latest_packet_start_inside_a_frame() {
        // (packet samples, lead samples)
        let cases = [
            (160, 0),
            (320, 0),
            (960, 0),
            (80, 80),
            (40, 120),
            (240, 80),
            (400, 80),
        ];
        for (len, want) in cases {
            assert_eq!(frame_lead(len), want, "{len}-sample packets");
        }
    }

    #[test]
    fn ten_ms_packets_get_ten_ms_more_margin() {
        let mut e = est();
        e.set_packet_samples(80, 1);
        for i in 0..100 {
            let ts = i * 80;
            e.observe(ts + 30 * MS, ts);
        }
        // 2 ms bucket edge + 10 ms lead + 3 ms safety.
        assert_eq!(e.target(), 15 * MS);
    }

    #[test]
    fn the_transit_floor_forgets_packets_older_than_a_second() {
        let mut e = est();
        e.observe(0, 0);
        assert_eq!(e.min_transit(500 * MS), Some(0));
        assert_eq!(e.min_transit(1001 * MS), None);
        e.clear_window();
        assert_eq!(e.min_transit(0), None);
    }

    #[test]
    fn the_transit_floor_equals_a_brute_force_minimum_over_the_window() {
        let mut e = est();
        let mut rng = crate::util::Rng::new(17);
        let mut seen: Vec<(i64, i64)> = Vec::new();
        let mut now = 0;
        for i in 0..5_000i64 {
            // Arrivals 0-40 ms apart (so both bounds, time and count, get exercised).
            now += rng.below(40 * MS as u64) as i64;
            let ts = i * 160;
            e.observe(now, ts);
            seen.push((now, now - ts));
            let start = seen.len().saturating_sub(WINDOW);
            let want = seen[start..]
                .iter()
                .filter(|(at, _)| now - at <= 1000 * MS)
                .map(|&(_, d)| d)
                .min();
            assert_eq!(e.min_transit(now), want, "packet {i}");
        }
    }
}
