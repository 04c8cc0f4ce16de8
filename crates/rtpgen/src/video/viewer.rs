//! What a viewer receives, judged: one RTP stream from the node, which should be a
//! clean VP8 stream whatever layer switches were asked for.
//!
//! The judge is told when the viewer asked for what ([`ViewerJudge::on_request`]
//! to subscribe or switch to a layer, [`ViewerJudge::on_stop`] to want nothing)
//! and is handed every packet received ([`ViewerJudge::on_packet`]). A layer
//! becomes *current* at the first packet after its request that starts a key
//! frame, since that is where the node may switch (until then the old layer keeps
//! coming and is counted under the old label). It checks, per label:
//! - **request to key frame**: how long after each request the first key frame
//!   came (a request still waiting, or replaced before its key frame came, is
//!   *unanswered*);
//! - **packets, bytes, bitrate** over the time the label was current;
//! - **sequence continuity**: each packet's sequence number is the last one + 1;
//!   a forward gap of up to [`MAX_LOSS_GAP`] is counted as loss, anything else (a
//!   jump back, a repeat, a bigger jump) as a discontinuity, which the node's
//!   rewriting must never produce;
//! - **timestamps** never go back (counted);
//! - **SSRC** stays the same (changes counted).
//!
//! Over the whole stream it counts packets received while nothing was asked for
//! (beyond a grace of [`STOP_GRACE`] after a stop, for packets in flight), packets
//! received after a subscription but before its first key frame (a decoder would
//! have to throw them away, so the node should not send them), and malformed
//! packets. [`ViewerReport::faults`] lists whatever is wrong.
//!
//! The VP8 payload descriptor (RFC 7741 §4.2) is parsed here by [`Vp8Descriptor`],
//! deliberately not by scnf-media's parser: the node uses that one, and a check
//! that shares the code it checks would share its bugs.

use scnf_media::rtp::RtpPacket;
use std::time::{Duration, Instant};

/// Largest forward sequence gap counted as loss rather than a discontinuity.
pub const MAX_LOSS_GAP: u16 = 100;
/// How long after [`ViewerJudge::on_stop`] packets still count as in flight.
pub const STOP_GRACE: Duration = Duration::from_millis(200);

/// Why a payload has no valid VP8 payload descriptor.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum Vp8DescriptorError {
    #[error("payload descriptor cut off after {len} bytes")]
    Truncated { len: usize },
    #[error("no VP8 payload after the descriptor")]
    NoPayload,
}

/// The fields of a VP8 payload descriptor this judge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// S: the packet starts a partition.
    pub start: bool,
    /// PID: the partition index.
    pub partition: u8,
    /// N: the frame is not a reference frame.
    pub non_reference: bool,
    /// The PictureID (7 or 15 bits), if present.
    pub picture_id: Option<u16>,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the start of an RTP payload; returns it and the
    /// VP8 data after it (never empty).
    pub fn parse(payload: &[u8]) -> Result<(Vp8Descriptor, &[u8]), Vp8DescriptorError> {
        let truncated = Vp8DescriptorError::Truncated { len: payload.len() };
        let b0 = *payload.first().ok_or(truncated)?;
        let mut at = 1;
        let mut picture_id = None;
        if b0 & 0x80 != 0 {
            let x = *payload.get(at).ok_or(truncated)?;
            at += 1;
            if x & 0x80 != 0 {
                let m = *payload.get(at).ok_or(truncated)?;
                if m & 0x80 != 0 {
                    let lo = *payload.get(at + 1).ok_or(truncated)?;
                    picture_id = Some(u16::from(m & 0x7f) << 8 | u16::from(lo));
                    at += 2;
                } else {
                    picture_id = Some(u16::from(m));
                    at += 1;
                }
            }
            // L: TL0PICIDX; T or K: one byte of TID/Y/KEYIDX.
            at += usize::from(x & 0x40 != 0) + usize::from(x & 0x30 != 0);
        }
        let data = payload.get(at..).ok_or(truncated)?;
        if data.is_empty() {
            return Err(Vp8DescriptorError::NoPayload);
        }
        Ok((
            Vp8Descriptor {
                start: b0 & 0x10 != 0,
                partition: b0 & 0x07,
                non_reference: b0 & 0x20 != 0,
                picture_id,
            },
            data,
        ))
    }

    /// Whether a packet with this descriptor and VP8 `data` starts a key frame:
    /// the start of partition 0, whose frame tag has the inverse key-frame bit
    /// clear (RFC 7741 §4.3).
    pub fn starts_keyframe(&self, data: &[u8]) -> bool {
        self.start && self.partition == 0 && data.first().is_some_and(|b| b & 0x01 == 0)
    }
}

/// What one label (layer) received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelReport {
    pub label: String,
    /// Times it was asked for.
    pub requests: u64,
    /// Request to first key frame, per answered request, in order.
    pub key_delays: Vec<Duration>,
    /// Requests that got no key frame (replaced, stopped or still waiting).
    pub unanswered: u64,
    /// Packets and their bytes (RTP header included) while it was current.
    pub packets: u64,
    pub bytes: u64,
    /// How long it was current.
    pub current_for: Duration,
    /// Packets missing in forward sequence gaps of up to [`MAX_LOSS_GAP`].
    pub lost: u64,
    /// Sequence jumps back, repeats or jumps over [`MAX_LOSS_GAP`].
    pub seq_discontinuities: u64,
    /// Packets whose timestamp is before the previous packet's.
    pub ts_backwards: u64,
    /// Packets whose SSRC differs from the previous packet's.
    pub ssrc_changes: u64,
}

impl LabelReport {
    /// Bits per second over the time the label was current (0 if never).
    pub fn bitrate_bps(&self) -> f64 {
        let secs = self.current_for.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 * 8.0 / secs
        } else {
            0.0
        }
    }

    /// The longest request-to-key-frame delay.
    pub fn max_key_delay(&self) -> Option<Duration> {
        self.key_delays.iter().max().copied()
    }
}

/// The judge's findings at one moment ([`ViewerJudge::report`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewerReport {
    /// In the order the labels were first asked for.
    pub labels: Vec<LabelReport>,
    /// Packets received while nothing was asked for (past the stop grace).
    pub unrequested: u64,
    /// Packets received within [`STOP_GRACE`] after a stop.
    pub after_stop: u64,
    /// Packets received after a subscription, before its first key frame.
    pub before_first_key: u64,
    /// Packets that are not RTP with a VP8 payload descriptor.
    pub malformed: u64,
}

impl ViewerReport {
    /// The report of `label`, if it was ever asked for.
    pub fn label(&self, label: &str) -> Option<&LabelReport> {
        self.labels.iter().find(|l| l.label == label)
    }

    /// Everything that is wrong, one sentence each (empty: a clean stream). Loss
    /// is not listed: it is the network's doing, not the node's.
    pub fn faults(&self) -> Vec<String> {
        let mut f = Vec::new();
        let mut count = |n: u64, what: &str| {
            if n > 0 {
                f.push(format!("{n} {what}"));
            }
        };
        count(self.unrequested, "packets while nothing was requested");
        count(self.before_first_key, "packets before the first key frame");
        count(self.malformed, "malformed packets");
        for l in &self.labels {
            let name = &l.label;
            count(
                l.unanswered,
                &format!("{name}: requests without a key frame"),
            );
            count(
                l.seq_discontinuities,
                &format!("{name}: sequence discontinuities"),
            );
            count(l.ts_backwards, &format!("{name}: timestamps going back"));
            count(l.ssrc_changes, &format!("{name}: SSRC changes"));
        }
        f
    }
}

/// The previous packet, for the continuity checks.
#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u16,
    ts: u32,
    ssrc: u32,
}

/// Judges the stream one viewer receives; see the module doc.
#[derive(Debug, Default)]
pub struct ViewerJudge {
    labels: Vec<LabelReport>,
    /// What is asked for now.
    wanted: Option<usize>,
    /// A request waiting for its key frame: label and when it was made.
    pending: Option<(usize, Instant)>,
    /// The label on the wire, and since when.
    current: Option<(usize, Instant)>,
    stopped_at: Option<Instant>,
    last: Option<Last>,
    unrequested: u64,
    after_stop: u64,
    before_first_key: u64,
    malformed: u64,
}

impl ViewerJudge {
    /// A judge of a viewer that has asked for nothing yet.
    pub fn new() -> ViewerJudge {
        ViewerJudge::default()
    }

    /// The viewer asked, at `now`, to receive `label` (subscribe, or switch).
    pub fn on_request(&mut self, now: Instant, label: &str) {
        let idx = match self.labels.iter().position(|l| l.label == label) {
            Some(i) => i,
            None => {
                self.labels.push(LabelReport {
                    label: label.to_string(),
                    ..LabelReport::default()
                });
                self.labels.len() - 1
            }
        };
        self.labels[idx].requests += 1;
        if let Some((old, _)) = self.pending.replace((idx, now)) {
            self.labels[old].unanswered += 1;
        }
        self.wanted = Some(idx);
        self.stopped_at = None;
    }

    /// The viewer asked, at `now`, to receive nothing any more.
    pub fn on_stop(&mut self, now: Instant) {
        self.close_current(now);
        if let Some((old, _)) = self.pending.take() {
            self.labels[old].unanswered += 1;
        }
        self.wanted = None;
        self.stopped_at = Some(now);
        // A new subscription is a new stream: continuity starts over.
        self.last = None;
    }

    /// A datagram the viewer received at `now`.
    pub fn on_packet(&mut self, now: Instant, datagram: &[u8]) {
        let Ok(rtp) = RtpPacket::parse(datagram) else {
            self.malformed += 1;
            return;
        };
        let Ok((desc, data)) = Vp8Descriptor::parse(rtp.payload) else {
            self.malformed += 1;
            return;
        };
        let Some(wanted) = self.wanted else {
            if self
                .stopped_at
                .is_some_and(|t| now.saturating_duration_since(t) <= STOP_GRACE)
            {
                self.after_stop += 1;
            } else {
                self.unrequested += 1;
            }
            return;
        };
        if let Some((idx, asked)) = self.pending {
            if desc.starts_keyframe(data) {
                self.labels[idx]
                    .key_delays
                    .push(now.saturating_duration_since(asked));
                self.close_current(now);
                self.current = Some((idx, now));
                self.pending = None;
            }
        }
        let label = match self.current {
            Some((idx, _)) => {
                let l = &mut self.labels[idx];
                l.packets += 1;
                l.bytes += datagram.len() as u64;
                idx
            }
            None => {
                self.before_first_key += 1;
                wanted
            }
        };
        let this = Last {
            seq: rtp.sequence,
            ts: rtp.timestamp,
            ssrc: rtp.ssrc,
        };
        if let Some(last) = self.last.replace(this) {
            let l = &mut self.labels[label];
            match this.seq.wrapping_sub(last.seq) {
                1 => {}
                d @ 2..=MAX_LOSS_GAP => l.lost += u64::from(d - 1),
                _ => l.seq_discontinuities += 1,
            }
            if (this.ts.wrapping_sub(last.ts) as i32) < 0 {
                l.ts_backwards += 1;
            }
            if this.ssrc != last.ssrc {
                l.ssrc_changes += 1;
            }
        }
    }

    /// The findings so far, with the current label's time counted up to `now`
    /// and a request still waiting counted as unanswered.
    pub fn report(&self, now: Instant) -> ViewerReport {
        let mut labels = self.labels.clone();
        if let Some((idx, since)) = self.current {
            labels[idx].current_for += now.saturating_duration_since(since);
        }
        if let Some((idx, _)) = self.pending {
            labels[idx].unanswered += 1;
        }
        ViewerReport {
            labels,
            unrequested: self.unrequested,
            after_stop: self.after_stop,
            before_first_key: self.before_first_key,
            malformed: self.malformed,
        }
    }

    fn close_current(&mut self, now: Instant) {
        if let Some((idx, since)) = self.current.take() {
            self.labels[idx].current_for += now.saturating_duration_since(since);
        }
    }
}

#[cfg(test)]
mod tests;
