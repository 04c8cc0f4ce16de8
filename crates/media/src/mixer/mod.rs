//! N-minus-one mixing at 8 kHz.
//!
//! Per tick, for one room:
//! 1. every talking, unmuted leg is *offered* with its recent level;
//! 2. [`Mixer::select`] keeps the loudest `max_talkers` (legs already mixed get a 3 dB
//!    bonus, so two talkers of equal level do not flap in and out);
//! 3. the selected frames are summed into an i32 accumulator ([`Mixer::add`]);
//! 4. a listener who is not a mixed talker hears the *shared* mix, `limit(total)`,
//!    which is the same for all of them — it is encoded once per codec;
//! 5. a mixed talker hears `limit(total - own)` ([`Mixer::render_minus`]).
//!
//! Silent legs add nothing, so a 1,000-leg room with three talkers costs three frame
//! additions, not a thousand. When a listener's mix holds a single talker it is copied
//! without limiting, which is what makes one G.711 talker reach a G.711 listener
//! bit-exact; sums of two or more go through the soft limiter.

pub mod limiter;
pub mod talker;

use crate::codec::FRAME_SAMPLES;

/// Mixer settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MixConfig {
    /// Most talkers summed at once; the loudest win. Default 6.
    pub max_talkers: usize,
    /// Limiter knee, as a linear sample value. Default [`limiter::DEFAULT_KNEE`].
    pub knee: i32,
    /// Talker detection.
    pub talker: talker::TalkerConfig,
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig {
            max_talkers: 6,
            knee: limiter::DEFAULT_KNEE,
            talker: talker::TalkerConfig::default(),
        }
    }
}

/// A frame of 8 kHz PCM.
pub type Frame = [i16; FRAME_SAMPLES];

/// One room's mixing scratch space, reused every tick (no allocation after the first
/// ticks: `offered` keeps its capacity).
#[derive(Debug)]
pub struct Mixer {
    max_talkers: usize,
    knee: i32,
    total: [i32; FRAME_SAMPLES],
    /// Talker candidates this tick: (ranking level, leg index).
    offered: Vec<(u64, u32)>,
    /// Number of talkers summed into `total`.
    summed: usize,
    /// Leg indices mixed in the previous tick (sorted), for hysteresis.
    previous: Vec<u32>,
    /// Leg indices selected this tick (sorted).
    selected: Vec<u32>,
}

impl Mixer {
    pub fn new(cfg: &MixConfig) -> Self {
        Mixer {
            max_talkers: cfg.max_talkers.max(1),
            knee: cfg.knee,
            total: [0; FRAME_SAMPLES],
            offered: Vec::with_capacity(16),
            summed: 0,
            previous: Vec::with_capacity(cfg.max_talkers),
            selected: Vec::with_capacity(cfg.max_talkers),
        }
    }

    /// Starts a tick: forgets the last tick's sum and candidates.
    pub fn begin(&mut self) {
        std::mem::swap(&mut self.previous, &mut self.selected);
        self.selected.clear();
        self.offered.clear();
        self.total = [0; FRAME_SAMPLES];
        self.summed = 0;
    }

    /// Offers a talking leg (by the caller's index) with its level.
    pub fn offer(&mut self, index: u32, level: u64) {
        let bonus = if self.previous.binary_search(&index).is_ok() {
            level.saturating_mul(2)
        } else {
            level
        };
        self.offered.push((bonus, index));
    }

    /// Picks the loudest `max_talkers` of the offered legs and returns their indices,
    /// sorted ascending.
    pub fn select(&mut self) -> &[u32] {
        let k = self.max_talkers.min(self.offered.len());
        if k < self.offered.len() {
            // Loudest first; ties broken by index so the choice is deterministic.
            self.offered
                .select_nth_unstable_by(k - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        self.selected
            .extend(self.offered[..k].iter().map(|&(_, index)| index));
        self.selected.sort_unstable();
        &self.selected
    }

    /// Whether the leg at `index` is a mixed talker this tick.
    pub fn is_mixed(&self, index: u32) -> bool {
        self.selected.binary_search(&index).is_ok()
    }

    /// The mixed talkers of this tick (sorted).
    pub fn selected(&self) -> &[u32] {
        &self.selected
    }

    /// Adds a selected talker's frame to the sum.
    pub fn add(&mut self, pcm: &Frame) {
        for (t, &s) in self.total.iter_mut().zip(pcm) {
            *t += s as i32;
        }
        self.summed += 1;
    }

    /// Number of frames summed this tick.
    pub fn summed(&self) -> usize {
        self.summed
    }

    /// The mix every non-talker hears. Returns false when it is pure silence (nobody
    /// talks), so callers may skip encoding work they can share differently.
    pub fn render_shared(&self, out: &mut Frame) -> bool {
        match self.summed {
            0 => {
                *out = [0; FRAME_SAMPLES];
                return false;
            }
            // One talker: its samples exactly (the bit-exact path).
            1 => {
                for (o, &t) in out.iter_mut().zip(&self.total) {
                    *o = t as i16;
                }
            }
            _ => {
                limiter::limit_frame(&self.total, out, self.knee);
            }
        }
        true
    }

    /// The mix a mixed talker hears: everyone selected but itself. Returns false
    /// when it is pure silence (nobody else talks).
    pub fn render_minus(&self, own: &Frame, out: &mut Frame) -> bool {
        let others = self.summed.saturating_sub(1);
        match others {
            0 => {
                *out = [0; FRAME_SAMPLES];
                return false;
            }
            // A single other talker: its samples exactly, no limiter (bit-exact path).
            1 => {
                for ((o, &t), &s) in out.iter_mut().zip(&self.total).zip(own) {
                    *o = (t - s as i32) as i16;
                }
            }
            _ => {
                for ((o, &t), &s) in out.iter_mut().zip(&self.total).zip(own) {
                    *o = limiter::limit_sample(t - s as i32, self.knee);
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: i16) -> Frame {
        [v; FRAME_SAMPLES]
    }

    fn mixer(max_talkers: usize) -> Mixer {
        Mixer::new(&MixConfig {
            max_talkers,
            ..MixConfig::default()
        })
    }

    #[test]
    fn each_talker_hears_everyone_but_itself() {
        let mut m = mixer(4);
        m.begin();
        let frames = [frame(100), frame(20), frame(3)];
        for (i, _) in frames.iter().enumerate() {
            m.offer(i as u32, 10);
        }
        assert_eq!(m.select(), &[0, 1, 2]);
        for f in &frames {
            m.add(f);
        }
        let mut out = frame(0);
        assert!(m.render_minus(&frames[0], &mut out));
        assert_eq!(out[0], 23);
        m.render_minus(&frames[1], &mut out);
        assert_eq!(out[0], 103);
        assert!(m.render_shared(&mut out));
        assert_eq!(out[0], 123);
    }

    #[test]
    fn a_single_talker_reaches_listeners_unchanged_even_at_full_scale() {
        let mut m = mixer(4);
        m.begin();
        let mut talker = frame(0);
        for (i, s) in talker.iter_mut().enumerate() {
            *s = if i % 2 == 0 { i16::MAX } else { i16::MIN };
        }
        m.offer(0, 1);
        m.select();
        m.add(&talker);
        let mut out = frame(0);
        m.render_shared(&mut out);
        assert_eq!(out, talker);
        // ... and the talker itself hears silence, and is told so.
        assert!(!m.render_minus(&talker, &mut out));
        assert_eq!(out, frame(0));
    }

    #[test]
    fn ten_loud_talkers_never_wrap() {
        let mut m = mixer(10);
        m.begin();
        for i in 0..10 {
            m.offer(i, 1);
        }
        m.select();
        for _ in 0..10 {
            m.add(&frame(30_000));
        }
        let mut out = frame(0);
        m.render_shared(&mut out);
        assert!(out.iter().all(|&s| s > 30_000 && s < i16::MAX));
        m.render_minus(&frame(30_000), &mut out);
        assert!(out.iter().all(|&s| s > 30_000 && s < i16::MAX));
    }

    #[test]
    fn only_the_loudest_talkers_are_mixed_and_ties_do_not_flap() {
        let mut m = mixer(2);
        m.begin();
        for (i, level) in [(0u32, 5u64), (1, 50), (2, 40), (3, 1)] {
            m.offer(i, level);
        }
        assert_eq!(m.select(), &[1, 2]);
        assert!(m.is_mixed(1) && !m.is_mixed(0));
        // Next tick leg 0 is slightly louder than leg 2, but leg 2 keeps its place.
        m.begin();
        for (i, level) in [(0u32, 45u64), (1, 50), (2, 40)] {
            m.offer(i, level);
        }
        assert_eq!(m.select(), &[1, 2]);
        // Much louder wins through.
        m.begin();
        for (i, level) in [(0u32, 500u64), (1, 50), (2, 40)] {
            m.offer(i, level);
        }
        assert_eq!(m.select(), &[0, 1]);
    }

    #[test]
    fn nobody_talking_is_silence() {
        let mut m = mixer(4);
        m.begin();
        m.select();
        let mut out = frame(7);
        assert!(!m.render_shared(&mut out));
        assert_eq!(out, frame(0));
    }
}
