//! One viewer's outgoing video stream: a stable SSRC with continuous sequence
//! numbers and timestamps, whichever incoming stream feeds it at the moment.
//!
//! A viewer's decoder sees a single RTP stream. Behind it the node forwards one
//! source at a time (a layer of one publisher) and changes source when the
//! viewer's layer or the shown publisher changes. The change may only happen at a
//! keyframe of the new source, since the decoder cannot start anywhere else, so a
//! [`Rewriter`] keeps the old source flowing until then ([`Rewriter::pending`]
//! says who is waited for, [`Rewriter::wants_keyframe`] tells the caller to ask
//! that publisher for one).
//!
//! The mapping is two offsets per source, fixed at the switch: within one source
//! `out = in + offset` (mod 2^16 and 2^32), so the source's own losses and
//! reordering reach the viewer unchanged, and its receiver statistics and NACKs
//! stay meaningful. At a switch the offsets are chosen so that the new source's
//! first packet follows the highest packet sent so far: sequence number + 1, and
//! a timestamp advanced by the wall time that passed (the sources' own timestamp
//! bases are unrelated random numbers, so only the arrival clock links them), but
//! by at least one frame interval of the old source: layers are encoded apart, so
//! the new layer's keyframe may arrive a millisecond after the old layer's last
//! frame, and two frames a millisecond apart would be shown as one (a player or
//! muxer at the frame rate sees a timestamp that does not advance). The stream
//! runs at most one frame ahead of the wall clock per switch.
//!
//! Known limit: the switch happens on the first keyframe-start packet of the new
//! source *that arrives*; a packet of that keyframe overtaken by later ones in the
//! network is lost to the viewer, as any loss, and the viewer's NACK or PLI
//! repairs it.

use std::time::{Duration, Instant};

use super::{FrameInfo, VIDEO_CLOCK_RATE};

/// How far behind the switch packet (in sequence numbers) a packet of the new
/// source is taken for a late packet from before the switch, and dropped: with
/// the old offsets gone, it would reuse a sequence number the previous source
/// already sent. Further behind than this it is a sequence jump of the source
/// (a restarted sender), forwarded like any packet.
const SWITCH_GUARD_BEHIND: u16 = 1024;
/// Once the source is this far ahead of its switch packet, the guard is lifted:
/// long before its sequence numbers wrap around to the guarded range.
const SWITCH_GUARD_AHEAD: u16 = 16384;
/// A timestamp this far behind the highest one sent is taken as a jump of the
/// source rather than reordering (5 s at 90 kHz; reordering is milliseconds).
const TS_JUMP_BEHIND: u32 = 5 * VIDEO_CLOCK_RATE;
/// The longest gap carried into the timestamp at a switch: more would read as a
/// step backwards to a receiver comparing timestamps by the nearest-value rule.
const MAX_GAP_TICKS: u32 = i32::MAX as u32;

/// Counters of one [`Rewriter`], for status and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RewriteStats {
    /// Packets given an output sequence number and timestamp.
    pub forwarded: u64,
    /// Packets of the pending source dropped while waiting for its keyframe.
    pub dropped_waiting: u64,
    /// Packets of the current source from before its switch packet, dropped.
    pub dropped_late: u64,
    /// Sources started at a keyframe, the first subscription included.
    pub switches: u64,
}

/// The source being forwarded and its offsets.
#[derive(Debug, Clone, Copy)]
struct Flow {
    src: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// The input sequence number of the switch packet, while packets from before
    /// it may still arrive.
    guard: Option<u16>,
    /// The last input timestamp, and the last step between two frames of this
    /// source (its frame interval), in ticks.
    last_ts: u32,
    frame_ticks: u32,
}

/// The highest output position sent so far, where the next source continues.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u16,
    ts: u32,
    /// When the most recent packet was sent.
    at: Instant,
}

/// One viewer's outgoing stream: a stable SSRC with continuous sequence numbers
/// and timestamps across layer switches and publisher changes.
#[derive(Debug, Clone)]
pub struct Rewriter {
    ssrc: u32,
    first_seq: u16,
    first_ts: u32,
    current: Option<Flow>,
    pending: Option<u32>,
    sent: Option<Sent>,
    stats: RewriteStats,
}

impl Rewriter {
    /// A stream that will start at `first_seq` / `first_ts` (RFC 3550 wants both
    /// random: the caller draws them from its seeded source).
    pub fn new(ssrc: u32, first_seq: u16, first_ts: u32) -> Rewriter {
        Rewriter {
            ssrc,
            first_seq,
            first_ts,
            current: None,
            pending: None,
            sent: None,
            stats: RewriteStats::default(),
        }
    }

    /// The SSRC every forwarded packet is sent under.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Ask to forward source `src` (an opaque id the caller assigns to each
    /// incoming stream). Takes effect at that source's next keyframe start; until
    /// then the current source (if any) keeps flowing. Switching to the current
    /// source cancels a pending one.
    pub fn switch_to(&mut self, src: u32) {
        if self.current.map(|f| f.src) == Some(src) {
            self.pending = None;
        } else {
            self.pending = Some(src);
        }
    }

    /// Stop forwarding anything (viewer paused); a later [`Rewriter::switch_to`]
    /// needs a keyframe again. Sequence numbers and timestamps continue from
    /// where they stopped.
    pub fn stop(&mut self) {
        self.current = None;
        self.pending = None;
    }

    /// The source being forwarded.
    pub fn current(&self) -> Option<u32> {
        self.current.map(|f| f.src)
    }

    /// The source waited for, which starts at its next keyframe.
    pub fn pending(&self) -> Option<u32> {
        self.pending
    }

    /// True while a switch (or the first subscribe) waits for a keyframe of the
    /// pending source: the caller should request one (through a
    /// `KeyframeThrottle`).
    pub fn wants_keyframe(&self) -> bool {
        self.pending.is_some()
    }

    /// A packet of source `src` arrived at `now`. Returns the (sequence,
    /// timestamp) to send it with under [`Rewriter::ssrc`], or `None` to drop it
    /// (not our source, waiting for a keyframe, or an old packet from before a
    /// switch). `info` is what [`inspect`](super::inspect) said of its payload.
    ///
    /// Within one source `out_seq = in_seq + offset` and `out_ts = in_ts + offset`;
    /// at a switch (the pending source's packet with `info.keyframe &&
    /// info.frame_start`) the new offsets make `out_seq` one past the highest sent
    /// and `out_ts` the highest sent plus the wall time since the last packet, in
    /// 90 kHz units (at least 1 tick).
    #[must_use]
    pub fn on_packet(
        &mut self,
        now: Instant,
        src: u32,
        seq: u16,
        ts: u32,
        info: FrameInfo,
    ) -> Option<(u16, u32)> {
        if self.pending == Some(src) {
            if !(info.keyframe && info.frame_start) {
                self.stats.dropped_waiting += 1;
                return None;
            }
            let frame = self.current.map_or(0, |f| f.frame_ticks);
            let (out_seq, out_ts) = match self.sent {
                None => (self.first_seq, self.first_ts),
                Some(s) => {
                    let gap = gap_ticks(now.saturating_duration_since(s.at)).max(frame);
                    (s.seq.wrapping_add(1), s.ts.wrapping_add(gap))
                }
            };
            self.current = Some(Flow {
                src,
                seq_offset: out_seq.wrapping_sub(seq),
                ts_offset: out_ts.wrapping_sub(ts),
                guard: Some(seq),
                last_ts: ts,
                frame_ticks: 0,
            });
            self.pending = None;
            self.stats.switches += 1;
            return Some(self.send(now, out_seq, out_ts));
        }
        let flow = self.current.as_mut().filter(|f| f.src == src)?;
        if let Some(switch_seq) = flow.guard {
            let behind = switch_seq.wrapping_sub(seq);
            let ahead = seq.wrapping_sub(switch_seq);
            if (1..=SWITCH_GUARD_BEHIND).contains(&behind) {
                self.stats.dropped_late += 1;
                return None;
            }
            if ahead >= SWITCH_GUARD_AHEAD {
                // Far ahead, or far behind (a jump): no late packet can be told
                // from the source's own numbering any more.
                flow.guard = None;
            }
        }
        let step = ts.wrapping_sub(flow.last_ts);
        if step > 0 && step <= MAX_FRAME_TICKS {
            // A new frame: how far apart this source's frames are.
            flow.frame_ticks = step;
            flow.last_ts = ts;
        }
        let out = (
            seq.wrapping_add(flow.seq_offset),
            ts.wrapping_add(flow.ts_offset),
        );
        Some(self.send(now, out.0, out.1))
    }

    /// Counters for status and tests.
    pub fn stats(&self) -> RewriteStats {
        self.stats
    }

    /// Records a forwarded packet and returns its output position.
    fn send(&mut self, now: Instant, seq: u16, ts: u32) -> (u16, u32) {
        self.stats.forwarded += 1;
        self.sent = Some(match self.sent {
            None => Sent { seq, ts, at: now },
            Some(s) => Sent {
                seq: if seq_moves_to(s.seq, seq) { seq } else { s.seq },
                ts: if ts_moves_to(s.ts, ts) { ts } else { s.ts },
                at: now.max(s.at),
            },
        });
        (seq, ts)
    }
}

/// Whether `seq` replaces `highest` as where the next source continues: it is
/// newer, or so far behind that the source jumped (the viewer follows the jump).
fn seq_moves_to(highest: u16, seq: u16) -> bool {
    let behind = highest.wrapping_sub(seq);
    seq != highest && (behind >= 0x8000 || behind > SWITCH_GUARD_BEHIND)
}

/// [`seq_moves_to`] for timestamps.
fn ts_moves_to(highest: u32, ts: u32) -> bool {
    let behind = highest.wrapping_sub(ts);
    ts != highest && (behind >= 0x8000_0000 || behind > TS_JUMP_BEHIND)
}

/// `gap` in 90 kHz ticks, at least 1 (two packets of different frames never share
/// a timestamp) and at most [`MAX_GAP_TICKS`].
/// The longest step between two frames taken as a frame interval (5 fps); a
/// longer one is a pause, not a frame rate.
const MAX_FRAME_TICKS: u32 = VIDEO_CLOCK_RATE / 5;

fn gap_ticks(gap: Duration) -> u32 {
    let ticks = gap.as_nanos() * u128::from(VIDEO_CLOCK_RATE) / 1_000_000_000;
    ticks.clamp(1, u128::from(MAX_GAP_TICKS)) as u32
}
