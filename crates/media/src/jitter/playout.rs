//! The playout state machine of one RTP leg.
//!
//! # Timeline
//! Positions are extended RTP timestamps ("units"; one 8 kHz output sample is
//! `clock_rate / 8000` units). `cursor` is the position just after the last sample
//! committed to output (decoded into the frame FIFO, or concealed). A packet whose
//! whole span lies before `cursor` is late; a packet that overlaps it is played from
//! `cursor` on.
//!
//! # States
//! - `Idle`: nothing received since `new`/`reset`; frames are silence.
//! - `Waiting`: anchored on a packet (`cursor` = its timestamp), frames are silence
//!   until its playout time. A packet that arrives meanwhile with an earlier
//!   timestamp (reordering around the anchor) moves the anchor back to it.
//! - `Playing`: each tick takes 160 samples from the timeline: decoded packets in
//!   sequence order, concealment for holes, silence once concealment has faded.
//!
//! # Delay rule
//! `delay = (now - playout position) - min transit over the last second` is how long
//! the fastest recent packet waits in the buffer; `target` comes from
//! [`super::adapt`]. Playout time for an anchor is `min transit + target + ts`.
//! - At a talk-spurt boundary — the next packet carries the marker bit, or the
//!   stream had gone silent (concealment faded out) — and there is a gap before it,
//!   the playout re-anchors on it: the silence is lengthened or shortened so the delay
//!   becomes exactly the target. No audio is touched.
//! - Mid-spurt, when `delay < target - 3 ms` (late packets raised the target, or the
//!   sender's clock is slow), one 20 ms frame of pitch-repetition is inserted at once:
//!   grow fast. The 3 ms slack absorbs measurement noise: playout starts on the first
//!   tick at or past the target, so the delay may start just above it, and a tick
//!   that runs less late than that one reads a millisecond or two below it. It is the
//!   target's own safety margin, so the delay still covers the jitter percentile.
//! - Mid-spurt, when `delay > target + 20 ms + 4 ms` (a whole frame of delay is
//!   spare: the start delay was more than the path needs, the sender's clock is fast,
//!   or the path calmed down) for 0.5 s, 20 ms is skipped with a 5 ms cross-fade,
//!   preferably in a quiet frame, in any frame after 2 s: shrink slowly. So the delay
//!   settles at the first tick at or past the target, as at a spurt start (the 4 ms
//!   absorb tick-timer noise). After a skip the delay is still above
//!   `target + 4 ms`, far from the grow threshold, so a skip can never cause an
//!   insert; and no skip comes within 10 s of an insert, so the delay does not pump.
//!
//! On a steady path this converges from the start delay in one or two skips (each
//! bit-exact except the 20 ms it removes) and then never acts; at 0.5% clock drift it
//! takes one step about every 4 s.
//!
//! # Counting concealment
//! When the buffer runs dry the playout conceals, then fades to silence, whether audio
//! was lost or the sender paused (DTX without comfort noise) or hung up: it cannot yet
//! tell. Sequence numbers tell later. Concealed frames count in
//! [`PlayoutStats::concealed_frames`] at once when a later packet is already buffered
//! past a sequence gap, otherwise when the next packet arrives showing a gap (or being
//! late for concealed audio); when it is the next sequence number at or after the
//! playout point (a pause), or none comes, they are not counted.
//!
//! # Resynchronisation
//! The stream is re-anchored (buffer flushed, state `Waiting`) when a packet's
//! timestamp is more than `max_delay + 100 ms` ahead of the playout position or
//! behind `cursor` (a timestamp jump), when a late packet carries the marker bit, or
//! after 8 late packets in a row (the stream fell behind and would otherwise never
//! be played). Sequence numbers and timestamps are unwrapped, so their wrap is
//! invisible.

use super::adapt::DelayEstimator;
use super::buffer::Ring;
use super::plc::{Plc, FADED};
use super::{FrameDecoder, FrameKind, Inserted, JitterConfig, PlayoutStats, Rejected};
use crate::codec::{FRAME_SAMPLES, MAX_PACKET_SAMPLES, MIX_RATE};
use crate::rtp::seq::{nearest_seq, nearest_ts};
use std::time::{Duration, Instant};

/// Largest payload accepted, in bytes.
pub const MAX_PAYLOAD: usize = 1500;

const CROSSFADE: usize = 40;
const LATE_RUN_RESYNC: u32 = 8;
/// Mean square below which a frame counts as quiet (RMS 500, about -36 dBFS).
const QUIET: i64 = 500 * 500;
/// Spare delay, beyond one whole frame, before the playout skips a frame: the tick
/// timer's noise (ticks run 0-3 ms late), so a delay just one frame above the target
/// is not shrunk and grown back.
const SHRINK_SLACK_MS: i64 = 4;
const FRAME_MS: i64 = 20;
/// A delay this far below the target is measurement noise, not a risk: each tick is
/// measured at the instant it runs (a timer fires 0-3 ms late, and playout starts on
/// whichever tick first reaches the target). The target holds exactly this much of
/// safety above what the jitter needs, so growing below it still comes before a
/// packet is late.
const GROW_SLACK_MS: i64 = super::adapt::SAFETY_MS;
const JUMP_MARGIN_MS: i64 = 100;
const SHRINK_AFTER: Duration = Duration::from_millis(500);
const FORCE_SHRINK_AFTER: Duration = Duration::from_secs(2);
/// No shrinking this soon after growing: a path that just made packets late is
/// likely to do it again, and pumping the delay up and down is audible.
const CALM_AFTER_GROWTH: Duration = Duration::from_secs(10);
/// Extended numbers start here so that they stay positive across backward moves.
const SEQ_BASE: i64 = 1 << 20;
const TS_BASE: i64 = 1 << 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Waiting,
    Playing,
}

enum Action {
    Play,
    Stretch,
    Compress,
}

/// What a packet holds for the ring: its bytes, or the one value all its samples
/// decode to ([`FrameDecoder::uniform`]).
#[derive(Clone, Copy)]
enum Body<'a> {
    Bytes(&'a [u8]),
    Uniform(i16),
}

#[derive(Default)]
struct Tally {
    decoded: usize,
    concealed: usize,
    synthetic: usize,
    /// Some of the concealment covers sequence numbers known to be missing.
    missing: bool,
    /// Samples output from uniform payloads (one repeated value, see
    /// [`FrameDecoder::uniform`]), all of `uniform`'s value unless `mixed_values`.
    uniform_len: usize,
    uniform: i16,
    mixed_values: bool,
}

impl Tally {
    /// `k` samples of value `v` went out as they were decoded.
    fn uniform(&mut self, v: i16, k: usize) {
        if self.uniform_len > 0 && self.uniform != v {
            self.mixed_values = true;
        }
        self.uniform = v;
        self.uniform_len += k;
    }

    /// The value of every sample of a played frame, when they all came unaltered from
    /// uniform payloads of one value (a listener's silence).
    fn uniform_frame(&self) -> Option<i16> {
        (self.uniform_len == FRAME_SAMPLES && !self.mixed_values).then_some(self.uniform)
    }
}

/// Jitter buffer, decoder driver and concealment of one leg. See the module docs.
pub struct Playout {
    /// RTP units per 8 kHz sample, and per second.
    ups: i64,
    units_per_sec: i64,
    /// `max_delay + 100 ms` in units: beyond it a timestamp is a jump.
    jump: i64,
    base: Option<Instant>,
    state: State,
    ring: Ring,
    /// Extended sequence number of the next packet to play.
    head: i64,
    seq_ref: i64,
    ts_ref: i64,
    cursor: i64,
    /// In `Waiting`, the anchor may move back to a packet no earlier than this.
    floor: i64,
    /// End of the latest packet accepted.
    max_end: i64,
    /// Decoded samples of the current packet; `fifo_pos..fifo_len` not yet output.
    fifo: Vec<i16>,
    fifo_pos: usize,
    fifo_len: usize,
    /// The one value of every fifo sample, when its packet was a uniform payload
    /// (the fifo's own contents are then not written).
    fifo_uniform: Option<i16>,
    plc: Plc,
    est: DelayEstimator,
    /// Samples concealed in the current loss.
    erasure: usize,
    /// Concealment faded out: the next packet after a gap starts a new spurt.
    dry: bool,
    late_run: u32,
    above_since: Option<Instant>,
    /// When the delay was last grown mid-spurt; shrinking waits `CALM_AFTER_GROWTH`.
    grown_at: Option<Instant>,
    last_energy: i64,
    /// Frames of the current erasure concealed while no packet after it had arrived:
    /// a loss, or the sender pausing or stopping. The next packet says which.
    unproven: u64,
    /// The playout delay the last tick measured (units; see the delay rule).
    delay: i64,
    stats: PlayoutStats,
}

impl Playout {
    /// A playout for a stream with RTP clock `clock_rate` (a multiple of 8000; other
    /// rates are treated as the multiple below, at least 8000). `cfg` should have
    /// passed [`JitterConfig::validate`]; out-of-range values are clamped.
    pub fn new(cfg: &JitterConfig, clock_rate: u32) -> Self {
        let ups = i64::from((clock_rate / MIX_RATE).max(1));
        let units_per_sec = ups * i64::from(MIX_RATE);
        let max_ms = (cfg.max_delay.as_millis() as i64).clamp(20, 1000);
        // One slot per 10 ms packet over the jump horizon, plus room for reordering.
        let slots = ((max_ms + JUMP_MARGIN_MS) / 10 + 16) as usize;
        Playout {
            ups,
            units_per_sec,
            jump: (max_ms + JUMP_MARGIN_MS) * units_per_sec / 1000,
            base: None,
            state: State::Idle,
            ring: Ring::new(slots),
            head: 0,
            seq_ref: 0,
            ts_ref: 0,
            cursor: 0,
            floor: 0,
            max_end: 0,
            fifo: vec![0; MAX_PACKET_SAMPLES],
            fifo_pos: 0,
            fifo_len: 0,
            fifo_uniform: None,
            plc: Plc::new(),
            est: DelayEstimator::new(cfg, units_per_sec),
            erasure: 0,
            dry: false,
            late_run: 0,
            above_since: None,
            grown_at: None,
            last_energy: 0,
            unproven: 0,
            delay: 0,
            stats: PlayoutStats::default(),
        }
    }

    /// A packet arrived at `now`. Never panics; an expected drop is a [`Rejected`].
    /// Starts loading what [`Playout::insert`] of the stream's next packet will
    /// touch first: the playout's own fields, its delay estimator's and the ring
    /// slot of the sequence number after the latest (see
    /// [`crate::util::prefetch`]). A hint; it changes nothing.
    pub fn prefetch(&self) {
        crate::util::prefetch(self);
        crate::util::prefetch(&self.est);
        self.ring.prefetch(self.seq_ref + 1);
    }

    pub fn insert(
        &mut self,
        now: Instant,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        dec: &impl FrameDecoder,
    ) -> Result<Inserted, Rejected> {
        self.stats.received += 1;
        let now_u = self.units(now);
        if payload.len() > MAX_PAYLOAD {
            self.stats.too_large += 1;
            return Err(Rejected::TooLarge);
        }
        let samples = match dec.samples_in(payload) {
            Ok(n) if n > 0 => n,
            _ => {
                self.stats.undecodable += 1;
                return Err(Rejected::Undecodable);
            }
        };
        if samples > MAX_PACKET_SAMPLES {
            self.stats.too_large += 1;
            return Err(Rejected::TooLarge);
        }
        let len = samples as i64 * self.ups;
        self.est.set_packet_samples(samples, self.ups);
        let body = match dec.uniform(payload) {
            Some(v) => Body::Uniform(v),
            None => Body::Bytes(payload),
        };

        if self.state == State::Idle {
            let (eseq, ets) = (SEQ_BASE + i64::from(seq), TS_BASE + i64::from(ts));
            self.rebase(now_u, eseq, ets, len, marker, body);
            return Ok(Inserted::Started);
        }
        let eseq = nearest_seq(self.seq_ref, seq);
        let ets = nearest_ts(self.ts_ref, ts);
        if self.ring.holds(eseq) {
            self.stats.duplicate += 1;
            return Err(Rejected::Duplicate);
        }
        self.settle_erasure(eseq, ets);
        let forward = ets - self.play_pos() > self.jump;
        let backward = self.cursor - ets > self.jump && eseq >= self.head;
        if forward || backward {
            return Ok(self.resync(now_u, eseq, ets, len, marker, body));
        }
        self.seq_ref = self.seq_ref.max(eseq);
        self.ts_ref = self.ts_ref.max(ets);
        let r = self.est.observe(now_u, ets);

        let late = match self.state {
            State::Waiting if eseq < self.head => {
                if ets < self.cursor && ets >= self.floor {
                    // Reordered around the anchor: start from the earlier packet.
                    self.head = eseq;
                    self.cursor = ets;
                    false
                } else {
                    true
                }
            }
            State::Waiting => false,
            _ => eseq < self.head || ets + len <= self.cursor,
        };
        if late {
            return self.reject_late(now_u, r, eseq, ets, len, marker, body);
        }
        if eseq - self.head >= self.ring.capacity() {
            if self.ring.queued() > 0 {
                self.stats.overflow += 1;
                return Err(Rejected::Overflow);
            }
            // Nothing buffered: a long loss left the head behind; catch up.
            self.head = eseq - self.ring.capacity() + 1;
        }
        if let Err(e) = self.store(eseq, ets, len, marker, body) {
            self.count(e);
            return Err(e);
        }
        self.late_run = 0;
        self.max_end = self.max_end.max(ets + len);
        Ok(Inserted::Queued)
    }

    /// Fills `out` with this tick's audio.
    pub fn next_frame(
        &mut self,
        now: Instant,
        dec: &mut impl FrameDecoder,
        out: &mut [i16; FRAME_SAMPLES],
    ) -> FrameKind {
        let now_u = self.units(now);
        if self.state == State::Waiting && self.ready(now_u) {
            self.state = State::Playing;
        }
        let mut tally = Tally::default();
        let mut uniform = None;
        if self.state == State::Playing {
            match self.decide(now, now_u) {
                Action::Play => {
                    self.pull(now_u, dec, out, &mut tally);
                    uniform = tally.uniform_frame();
                }
                Action::Stretch => {
                    self.stats.stretched += 1;
                    if self.dry {
                        out.fill(0);
                        self.plc.record(out);
                    } else {
                        self.plc.conceal(out);
                        tally.synthetic = FRAME_SAMPLES;
                    }
                }
                Action::Compress => {
                    self.stats.compressed += 1;
                    self.compress(now_u, dec, out, &mut tally);
                }
            }
        } else {
            out.fill(0);
            self.plc.record(out);
        }
        self.last_energy = match uniform {
            // A listener's silence: no pass over the frame.
            Some(v) => i64::from(v) * i64::from(v) * FRAME_SAMPLES as i64,
            None => out.iter().map(|&x| i64::from(x) * i64::from(x)).sum(),
        };
        if tally.concealed > 0 {
            if tally.missing {
                self.stats.concealed_frames += 1 + std::mem::take(&mut self.unproven);
            } else {
                self.unproven += 1;
            }
        }
        if tally.concealed + tally.synthetic > 0 {
            FrameKind::Concealed
        } else if tally.decoded > 0 {
            self.stats.decoded_frames += 1;
            FrameKind::Decoded
        } else {
            self.stats.silence_frames += 1;
            FrameKind::Silence
        }
    }

    /// Forgets the stream (e.g. its SSRC changed); counters are kept.
    pub fn reset(&mut self) {
        self.stats.flushed += self.ring.flush() as u64;
        self.state = State::Idle;
        self.fifo_pos = 0;
        self.fifo_len = 0;
        self.plc.reset();
        self.est.reset();
        self.erasure = 0;
        self.dry = false;
        self.late_run = 0;
        self.above_since = None;
        self.grown_at = None;
        // The stream ended; nothing will show that its tail was lost.
        self.unproven = 0;
    }

    /// The counters, and the gauges as they stand now (computed here rather than
    /// after every packet and tick: they are read a few times per second at most).
    pub fn stats(&self) -> PlayoutStats {
        let upm = self.est.units_per_ms();
        let buffered = if self.state == State::Idle {
            0
        } else {
            (self.max_end - self.play_pos()).max(0)
        };
        PlayoutStats {
            buffered_ms: (buffered / upm) as u32,
            target_delay_ms: (self.est.target() / upm) as u32,
            delay_ms: (self.delay.max(0) / upm) as u32,
            ..self.stats.clone()
        }
    }

    /// Packets received and waiting to be played.
    pub fn queued(&self) -> usize {
        self.ring.queued()
    }

    /// Sum of squares of the frame the last `next_frame` produced (the mixer's
    /// talker detection reads it instead of measuring the frame again).
    pub fn frame_energy(&self) -> u64 {
        self.last_energy as u64
    }

    fn units(&mut self, now: Instant) -> i64 {
        let base = *self.base.get_or_insert(now);
        let d = now.saturating_duration_since(base);
        // Seconds and their fraction apart: the same floor as over the whole
        // nanosecond count, without a 128-bit division per packet and per tick.
        d.as_secs() as i64 * self.units_per_sec
            + i64::from(d.subsec_nanos()) * self.units_per_sec / 1_000_000_000
    }

    /// Timeline position of the next sample to be output.
    fn play_pos(&self) -> i64 {
        self.cursor - (self.fifo_len - self.fifo_pos) as i64 * self.ups
    }

    fn count(&mut self, e: Rejected) {
        let c = match e {
            Rejected::Duplicate => &mut self.stats.duplicate,
            Rejected::Late => &mut self.stats.late,
            Rejected::Overflow => &mut self.stats.overflow,
            Rejected::TooLarge => &mut self.stats.too_large,
            Rejected::Undecodable => &mut self.stats.undecodable,
        };
        *c += 1;
    }

    /// Anchors playout on a packet: `Waiting` until its playout time.
    fn anchor(&mut self, eseq: i64, ets: i64, floor: i64) {
        self.state = State::Waiting;
        self.head = eseq;
        self.cursor = ets;
        self.floor = floor;
        self.erasure = 0;
        self.dry = false;
        self.above_since = None;
    }

    /// Starts over on a packet: flush, fresh references and transit window.
    fn rebase(&mut self, now_u: i64, eseq: i64, ets: i64, len: i64, marker: bool, body: Body<'_>) {
        self.stats.flushed += self.ring.flush() as u64;
        self.fifo_pos = 0;
        self.fifo_len = 0;
        self.seq_ref = eseq;
        self.ts_ref = ets;
        self.est.clear_window();
        self.est.observe(now_u, ets);
        self.anchor(eseq, ets, ets - self.jump);
        // The ring was just flushed, so this slot is free.
        if let Err(e) = self.store(eseq, ets, len, marker, body) {
            self.count(e);
        }
        self.max_end = ets + len;
        self.late_run = 0;
    }

    fn resync(
        &mut self,
        now_u: i64,
        eseq: i64,
        ets: i64,
        len: i64,
        marker: bool,
        body: Body<'_>,
    ) -> Inserted {
        self.stats.resyncs += 1;
        self.rebase(now_u, eseq, ets, len, marker, body);
        Inserted::Resynced
    }

    #[allow(clippy::too_many_arguments)]
    fn reject_late(
        &mut self,
        now_u: i64,
        r: i64,
        eseq: i64,
        ets: i64,
        len: i64,
        marker: bool,
        body: Body<'_>,
    ) -> Result<Inserted, Rejected> {
        self.late_run += 1;
        if (marker && eseq >= self.head) || self.late_run >= LATE_RUN_RESYNC {
            return Ok(self.resync(now_u, eseq, ets, len, marker, body));
        }
        self.stats.late += 1;
        self.est.late(r);
        Err(Rejected::Late)
    }

    fn store(
        &mut self,
        eseq: i64,
        ets: i64,
        len: i64,
        marker: bool,
        body: Body<'_>,
    ) -> Result<(), Rejected> {
        match body {
            Body::Bytes(payload) => self.ring.store(eseq, ets, len, marker, payload),
            Body::Uniform(v) => self.ring.store_uniform(eseq, ets, len, marker, v),
        }
    }

    /// Whether the anchored packet is due at `at_u`.
    fn ready(&self, at_u: i64) -> bool {
        self.est
            .min_transit(at_u)
            .map_or(true, |m| at_u >= m + self.est.target() + self.cursor)
    }

    fn decide(&mut self, now: Instant, now_u: i64) -> Action {
        let Some(min_transit) = self.est.min_transit(now_u) else {
            self.above_since = None;
            return Action::Play;
        };
        let delay = now_u - self.play_pos() - min_transit;
        let upm = self.est.units_per_ms();
        self.delay = delay;
        let target = self.est.target();
        if delay < target - GROW_SLACK_MS * upm {
            self.above_since = None;
            self.grown_at = Some(now);
            return Action::Stretch;
        }
        if delay <= target + (FRAME_MS + SHRINK_SLACK_MS) * upm {
            self.above_since = None;
            return Action::Play;
        }
        let calm = self.grown_at.map_or(true, |t| {
            now.saturating_duration_since(t) >= CALM_AFTER_GROWTH
        });
        if !calm {
            return Action::Play;
        }
        let since = *self.above_since.get_or_insert(now);
        let held = now.saturating_duration_since(since);
        let quiet = self.dry || self.last_energy < QUIET * FRAME_SAMPLES as i64;
        if held >= FORCE_SHRINK_AFTER || (held >= SHRINK_AFTER && quiet) {
            self.above_since = None;
            Action::Compress
        } else {
            Action::Play
        }
    }

    /// Outputs 160 samples while consuming 320: 40, skip 120, then 160 whose first 40
    /// are cross-faded with the first 40.
    fn compress(
        &mut self,
        now_u: i64,
        dec: &mut impl FrameDecoder,
        out: &mut [i16; FRAME_SAMPLES],
        tally: &mut Tally,
    ) {
        let mut lead = [0i16; CROSSFADE];
        let mut skipped = [0i16; FRAME_SAMPLES - CROSSFADE];
        self.pull(now_u, dec, &mut lead, tally);
        self.pull(now_u, dec, &mut skipped, tally);
        self.pull(now_u, dec, out, tally);
        for (i, (o, &l)) in out.iter_mut().zip(&lead).enumerate() {
            let w = (i + 1) as f32 / (CROSSFADE + 1) as f32;
            let v = f32::from(l) * (1.0 - w) + f32::from(*o) * w;
            *o = v.round() as i16;
        }
    }

    /// Takes `out.len()` samples from the timeline.
    fn pull(
        &mut self,
        now_u: i64,
        dec: &mut impl FrameDecoder,
        out: &mut [i16],
        tally: &mut Tally,
    ) {
        let n = out.len();
        let mut filled = 0;
        while filled < n {
            if self.state != State::Playing {
                out[filled..].fill(0);
                self.plc.record(&out[filled..]);
                return;
            }
            let avail = self.fifo_len - self.fifo_pos;
            if avail > 0 {
                let k = avail.min(n - filled);
                let chunk = &mut out[filled..filled + k];
                if let Some(v) = self.fifo_uniform {
                    chunk.fill(v);
                    if self.plc.good_uniform(v, k) {
                        tally.uniform(v, k);
                    } else {
                        self.plc.good(chunk);
                    }
                } else {
                    chunk.copy_from_slice(&self.fifo[self.fifo_pos..self.fifo_pos + k]);
                    self.plc.good(chunk);
                }
                self.fifo_pos += k;
                filled += k;
                tally.decoded += k;
                continue;
            }
            let Some(s) = self.ring.first_queued_from(self.head) else {
                self.conceal(dec, &mut out[filled..], tally, false);
                return;
            };
            let slot = self.ring.slot(s);
            let (ts, len, marker) = (slot.ts, slot.len, slot.marker);
            if ts + len <= self.cursor {
                // Its whole span was concealed while it waited behind a hole.
                self.ring.mark_played(s);
                self.head = s + 1;
                self.stats.late += 1;
                continue;
            }
            if ts <= self.cursor {
                self.decode(s, dec);
                continue;
            }
            if marker || self.dry {
                // Talk-spurt boundary: re-anchor on the next packet.
                self.stats.spurts += 1;
                let floor = self.cursor;
                self.anchor(s, ts, floor);
                if self.ready(now_u + filled as i64 * self.ups) {
                    self.state = State::Playing;
                }
                continue;
            }
            let gap = ((ts - self.cursor + self.ups - 1) / self.ups) as usize;
            let k = gap.min(n - filled);
            // A timestamp gap with no sequence gap is a sender pause, not a loss.
            let missing = s > self.head;
            self.conceal(dec, &mut out[filled..filled + k], tally, missing);
            filled += k;
        }
    }

    fn decode(&mut self, s: i64, dec: &mut impl FrameDecoder) {
        let slot = self.ring.slot(s);
        let ts = slot.ts;
        self.fifo_uniform = slot.uniform;
        let res = match slot.uniform {
            Some(_) => {
                // Decoded already, in effect: the decoder is stateless for such
                // payloads, so leaving it out changes nothing it would say later.
                // The fifo's samples are not written: `fifo_uniform` stands for them.
                Ok(((slot.len / self.ups) as usize).min(self.fifo.len()))
            }
            None => dec.decode(&slot.payload, &mut self.fifo),
        };
        self.ring.mark_played(s);
        self.head = s + 1;
        match res {
            Ok(n) if n > 0 => {
                let n = n.min(self.fifo.len());
                self.fifo_len = n;
                self.fifo_pos = (((self.cursor - ts) / self.ups).max(0) as usize).min(n);
                self.cursor = ts + n as i64 * self.ups;
                self.stats.played += 1;
                self.erasure = 0;
                self.dry = false;
            }
            // Its span stays a hole and is concealed like a loss.
            _ => self.stats.undecodable += 1,
        }
    }

    /// Conceals `out.len()` samples; `missing` when sequence numbers show that the
    /// sender sent audio for them.
    fn conceal(
        &mut self,
        dec: &mut impl FrameDecoder,
        out: &mut [i16],
        tally: &mut Tally,
        missing: bool,
    ) {
        let k = out.len();
        if self.erasure >= FADED {
            if self.plc.erased() > 0 {
                // Keeps the concealer's loss open, so audio fades back in.
                self.plc.conceal(out);
            } else {
                out.fill(0);
                self.plc.record(out);
            }
        } else {
            if dec.conceal(out) {
                self.plc.record(out);
            } else {
                self.plc.conceal(out);
            }
            tally.concealed += k;
            tally.missing |= missing;
        }
        self.erasure += k;
        self.dry = self.erasure >= FADED;
        self.cursor += k as i64 * self.ups;
    }

    /// A packet `eseq` at `ets` arrived: decides whether the frames concealed in the
    /// current erasure before any later packet was known stood in for lost audio
    /// (a sequence gap, or it is the awaited packet and starts inside the concealed
    /// span: it came late) or for a sender pause (the awaited packet, at or after the
    /// playout point, or with timestamps restarted behind the erasure).
    fn settle_erasure(&mut self, eseq: i64, ets: i64) {
        if self.unproven == 0 || eseq < self.head {
            return;
        }
        let unproven = std::mem::take(&mut self.unproven);
        let erased_from = self.cursor - self.erasure as i64 * self.ups;
        if eseq > self.head || (erased_from..self.cursor).contains(&ets) {
            self.stats.concealed_frames += unproven;
        }
    }
}

#[cfg(test)]
mod tests;
