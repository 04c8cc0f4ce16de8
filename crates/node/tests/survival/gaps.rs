//! How long a phone did not hear another: per 20 ms frame of what it heard, whether
//! the other's tone is in it (a Goertzel level through `scnf_media::probe`), and the
//! longest run of frames without it.
//!
//! A [`Heard`] places decoded audio by RTP timestamp from the first packet, so frame
//! `k` is the node's `k`-th frame after it; a packet that never came leaves a frame
//! of zeros, which counts as silence like a frame that came without the tone. The
//! tones of one test are at least 244 Hz apart, wider than the main lobe of the
//! probe's window over 160 samples (+-200 Hz), so one frame tells them apart.

use scnf_media::probe::level_dbfs;
use scnf_testkit::participant::Heard;
use std::ops::Range;
use std::time::Duration;
use tokio::time::Instant;

/// Samples in a frame at 8 kHz.
pub const FRAME: usize = 160;
const FRAME_MS: u64 = 20;
/// A tone sent at -20 dBFS counts as present in a frame above this.
pub const PRESENT_DBFS: f64 = -32.0;

/// The frame of `heard` that `t` falls in, counted from the first packet's arrival.
pub fn frame_at(heard: &Heard, t: Instant) -> usize {
    let Some(&first) = heard.arrivals.first() else {
        return 0;
    };
    (t.saturating_duration_since(first).as_millis() as u64 / FRAME_MS) as usize
}

/// The longest run of frames without a tone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Silence {
    /// Its length in frames (0: the tone was in every frame).
    pub frames: usize,
    /// The frame it started at.
    pub start: usize,
    /// Whether the tone was there at the end of the window (else some silence never
    /// ended, as far as the test can tell).
    pub closed: bool,
}

impl Silence {
    pub fn ms(&self) -> u64 {
        self.frames as u64 * FRAME_MS
    }
}

/// The longest silence of `freq` in frames `window` of `heard` (a window past what
/// was recorded is cut to it).
pub fn longest_silence(heard: &Heard, freq: f64, window: Range<usize>) -> Silence {
    let recorded = heard.pcm.len() / FRAME;
    let window = window.start.min(recorded)..window.end.min(recorded);
    let mut best = Silence {
        frames: 0,
        start: window.start,
        closed: true,
    };
    let mut run: Option<usize> = None;
    for k in window.clone() {
        let frame = &heard.pcm[k * FRAME..(k + 1) * FRAME];
        if level_dbfs(frame, freq) > PRESENT_DBFS {
            run = None;
            continue;
        }
        let start = *run.get_or_insert(k);
        let frames = k + 1 - start;
        if frames > best.frames {
            best.frames = frames;
            best.start = start;
        }
    }
    best.closed = run.is_none();
    best
}

/// Packets `heard` missed among those that arrived between `from` and `to`: the
/// sum of the jumps in their sequence numbers beyond one (arrival order; a
/// reordered packet counts as a jump too, which loopback does not do).
pub fn lost_between(heard: &Heard, from: Instant, to: Instant) -> u64 {
    let seqs: Vec<u16> = heard
        .payloads
        .iter()
        .zip(&heard.arrivals)
        .filter(|(_, &t)| t >= from && t <= to)
        .map(|((seq, _), _)| *seq)
        .collect();
    seqs.windows(2)
        .map(|w| u64::from(w[1].wrapping_sub(w[0]).wrapping_sub(1)))
        .sum()
}

/// How long after its start a recording is measured: the node's jitter buffers
/// have settled (they start at 40 ms).
pub const SETTLE: Duration = Duration::from_millis(600);

/// The frames of a recording that started at `start` and talked for `talk` worth
/// measuring: from [`SETTLE`] in to the end of the talk.
pub fn steady(heard: &Heard, start: Instant, talk: Duration) -> Range<usize> {
    frame_at(heard, start + SETTLE)..frame_at(heard, start + talk)
}
