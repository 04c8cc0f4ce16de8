//! What a video run found ([`super::scenario::run`]): per layer, what the viewers
//! received and how fast key frames came; per publisher layer, what was sent and
//! how often the node asked for a key frame; and every fault.
//!
//! The per-layer figures add up all viewers' [`LabelReport`]s of that layer: a
//! bitrate over the time the layer was on the wire for some viewer (so it is
//! comparable to the clip's whatever the switch pattern), all request-to-key-frame
//! delays, and every continuity fault. A fault is anything the node must never
//! do ([`ViewerReport::faults`], plus packets under an SSRC the view was not
//! answered with, plus refused requests); [`VideoReport::check`] adds the bounds a
//! run is held to (bitrate near the clip's, key frames in time).

use super::viewer::{LabelReport, ViewerReport};
use super::Layer;
use scnf_core::control::msg::{VideoChannelInfo, VideoViewInfo};
use std::fmt::Write as _;
use std::time::Duration;

/// What the viewers received of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSummary {
    pub layer: Layer,
    /// Views and switches to it.
    pub requests: u64,
    pub packets: u64,
    /// RTP header included.
    pub bytes: u64,
    /// Summed over viewers: how long it was what a viewer received.
    pub current_for: Duration,
    /// The shipped clip's own bitrate.
    pub clip_bps: f64,
    /// What one publisher sent of this layer on average, bit/s (0: unknown). Above
    /// the clip's, by the key frames the node asked for: this is what a clean
    /// forward must come close to.
    pub sent_bps: f64,
    /// Request (open or switch) to first key frame, sorted.
    pub key_delays: Vec<Duration>,
    pub unanswered: u64,
    pub lost: u64,
    pub seq_discontinuities: u64,
    pub ts_backwards: u64,
    pub ssrc_changes: u64,
}

impl LayerSummary {
    fn new(layer: Layer, clip_bps: f64) -> LayerSummary {
        LayerSummary {
            layer,
            requests: 0,
            packets: 0,
            bytes: 0,
            current_for: Duration::ZERO,
            clip_bps,
            sent_bps: 0.0,
            key_delays: Vec::new(),
            unanswered: 0,
            lost: 0,
            seq_discontinuities: 0,
            ts_backwards: 0,
            ssrc_changes: 0,
        }
    }

    fn add(&mut self, l: &LabelReport) {
        self.requests += l.requests;
        self.packets += l.packets;
        self.bytes += l.bytes;
        self.current_for += l.current_for;
        self.key_delays.extend_from_slice(&l.key_delays);
        self.unanswered += l.unanswered;
        self.lost += l.lost;
        self.seq_discontinuities += l.seq_discontinuities;
        self.ts_backwards += l.ts_backwards;
        self.ssrc_changes += l.ssrc_changes;
    }

    /// Bits per second while on the wire (0 if never).
    pub fn bitrate_bps(&self) -> f64 {
        let secs = self.current_for.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 * 8.0 / secs
        } else {
            0.0
        }
    }

    /// The median request-to-key-frame delay.
    pub fn median_key_delay(&self) -> Option<Duration> {
        self.key_delays.get(self.key_delays.len() / 2).copied()
    }

    pub fn max_key_delay(&self) -> Option<Duration> {
        self.key_delays.last().copied()
    }
}

/// What the publishers sent of one layer, all publishers together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentSummary {
    pub layer: Layer,
    pub packets: u64,
    pub bytes: u64,
    pub keyframes: u64,
    /// PLIs/FIRs from the node naming the stream, each honoured with a key frame.
    pub keyframe_requests: u64,
    /// RTCP datagrams from the node (receiver reports and feedback).
    pub rtcp: u64,
    pub send_errors: u64,
}

impl SentSummary {
    pub fn new(layer: Layer) -> SentSummary {
        SentSummary {
            layer,
            packets: 0,
            bytes: 0,
            keyframes: 0,
            keyframe_requests: 0,
            rtcp: 0,
            send_errors: 0,
        }
    }
}

/// One viewer's findings.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewerSummary {
    /// Its call.
    pub call: String,
    /// The publisher it viewed (index in the run).
    pub publisher: usize,
    pub report: ViewerReport,
    pub foreign_ssrc: u64,
    pub rtcp: u64,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoReport {
    /// How long media ran.
    pub duration: Duration,
    /// Received, per layer asked for, lowest first.
    pub layers: Vec<LayerSummary>,
    /// Sent, per layer published, lowest first.
    pub sent: Vec<SentSummary>,
    pub viewers: Vec<ViewerSummary>,
    /// Calls placed only to steer the placement (viewers apart from publishers).
    pub fillers: usize,
    /// Requests the target refused or failed (a fault each).
    pub refused: Vec<String>,
    /// The target's view of the room's video at the end of the run (its status),
    /// for a report that must say what the node saw.
    pub status_video: Vec<VideoChannelInfo>,
    pub status_views: Vec<VideoViewInfo>,
}

impl VideoReport {
    /// Adds up the viewers' reports per layer.
    pub fn new(
        duration: Duration,
        sent: Vec<SentSummary>,
        viewers: Vec<ViewerSummary>,
        clip_bps: impl Fn(Layer) -> f64,
    ) -> VideoReport {
        let mut layers: Vec<LayerSummary> = Vec::new();
        for layer in Layer::ALL {
            let mut sum = LayerSummary::new(layer, clip_bps(layer));
            let mut seen = false;
            for v in &viewers {
                if let Some(l) = v.report.label(layer.label()) {
                    sum.add(l);
                    seen = true;
                }
            }
            if seen {
                sum.key_delays.sort();
                layers.push(sum);
            }
        }
        VideoReport {
            duration,
            layers,
            sent,
            viewers,
            fillers: 0,
            refused: Vec::new(),
            status_video: Vec::new(),
            status_views: Vec::new(),
        }
    }

    /// The summary of `layer`, if any viewer asked for it.
    pub fn layer(&self, layer: Layer) -> Option<&LayerSummary> {
        self.layers.iter().find(|l| l.layer == layer)
    }

    /// Everything the node did wrong, one sentence each: each viewer's judge's
    /// faults, packets under a foreign SSRC, refused requests.
    pub fn faults(&self) -> Vec<String> {
        let mut f = self.refused.clone();
        for v in &self.viewers {
            for fault in v.report.faults() {
                f.push(format!("{}: {fault}", v.call));
            }
            if v.foreign_ssrc > 0 {
                f.push(format!(
                    "{}: {} packets under an SSRC other than the view's",
                    v.call, v.foreign_ssrc
                ));
            }
        }
        f
    }

    /// [`VideoReport::faults`], and every layer asked for held to: some packets, a
    /// bitrate within `tolerance` (relative) of what its publishers sent (of the
    /// clip's where that is unknown), no request-to-key-frame delay over
    /// `max_key_delay`.
    pub fn check(&self, tolerance: f64, max_key_delay: Duration) -> Vec<String> {
        let mut f = self.faults();
        for l in &self.layers {
            let name = l.layer.label();
            if l.packets == 0 {
                f.push(format!("{name}: asked for, nothing received"));
                continue;
            }
            let (reference, what) = if l.sent_bps > 0.0 {
                (l.sent_bps, "its publishers sent")
            } else {
                (l.clip_bps, "the clip has")
            };
            let rel = l.bitrate_bps() / reference - 1.0;
            if rel.abs() > tolerance {
                f.push(format!(
                    "{name}: {:.0} kbit/s received, {what} {:.0} ({:+.0} %)",
                    l.bitrate_bps() / 1000.0,
                    reference / 1000.0,
                    rel * 100.0
                ));
            }
            if let Some(max) = l.max_key_delay().filter(|&d| d > max_key_delay) {
                f.push(format!(
                    "{name}: a key frame came {} ms after its request (at most {} ms)",
                    max.as_millis(),
                    max_key_delay.as_millis()
                ));
            }
        }
        f
    }

    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "video: {} viewers over {:.1} s ({} filler calls)",
            self.viewers.len(),
            self.duration.as_secs_f64(),
            self.fillers
        );
        for t in &self.sent {
            let _ = writeln!(
                s,
                "  sent     {:<6} {:>7} pkts {:>9} B  {:>4} key frames, {:>3} asked for, {} RTCP in, {} send errors",
                t.layer.label(),
                t.packets,
                t.bytes,
                t.keyframes,
                t.keyframe_requests,
                t.rtcp,
                t.send_errors
            );
        }
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| d.as_millis().to_string());
        for l in &self.layers {
            let _ = writeln!(
                s,
                "  received {:<6} {:>7} pkts {:>6.0} kbit/s (sent {:.0}, clip {:.0})  key after request: median {} ms, max {} ms ({} requests, {} unanswered)  lost {}, seq jumps {}, ts back {}, SSRC changes {}",
                l.layer.label(),
                l.packets,
                l.bitrate_bps() / 1000.0,
                l.sent_bps / 1000.0,
                l.clip_bps / 1000.0,
                ms(l.median_key_delay()),
                ms(l.max_key_delay()),
                l.requests,
                l.unanswered,
                l.lost,
                l.seq_discontinuities,
                l.ts_backwards,
                l.ssrc_changes
            );
        }
        let total = |f: fn(&ViewerReport) -> u64| -> u64 {
            self.viewers.iter().map(|v| f(&v.report)).sum()
        };
        let _ = writeln!(
            s,
            "  unrequested {}, within the stop grace {}, before the first key frame {}, malformed {}",
            total(|r| r.unrequested),
            total(|r| r.after_stop),
            total(|r| r.before_first_key),
            total(|r| r.malformed)
        );
        s
    }

    /// The target's status of the room's video, one line per stream and view.
    pub fn status_lines(&self) -> String {
        let mut s = String::new();
        for c in &self.status_video {
            let _ = writeln!(
                s,
                "  status stream participant {} {:?} on {:?}: {} viewers, {} pkts, {} kbit/s, {} key frames, {} key requests ({} held back), group {:?}",
                c.participant,
                c.layer,
                c.node,
                c.viewers,
                c.packets,
                c.bitrate_kbps,
                c.keyframes,
                c.keyframe_requests,
                c.keyframe_requests_suppressed,
                c.group
            );
        }
        for v in &self.status_views {
            let _ = writeln!(
                s,
                "  status view {} #{} of participant {} {:?}: {} pkts sent, {} switches, waiting for a key frame {}",
                v.call, v.view, v.participant, v.layer, v.packets_sent, v.switches, v.waiting_keyframe
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, bytes: u64, secs: u64, delays: &[u64]) -> LabelReport {
        LabelReport {
            label: name.into(),
            requests: delays.len() as u64,
            key_delays: delays.iter().map(|&d| Duration::from_millis(d)).collect(),
            packets: bytes / 1000,
            bytes,
            current_for: Duration::from_secs(secs),
            ..LabelReport::default()
        }
    }

    fn viewer(call: &str, labels: Vec<LabelReport>) -> ViewerSummary {
        ViewerSummary {
            call: call.into(),
            publisher: 0,
            report: ViewerReport {
                labels,
                ..ViewerReport::default()
            },
            foreign_ssrc: 0,
            rtcp: 0,
        }
    }

    fn clip(layer: Layer) -> f64 {
        match layer {
            Layer::Low => 80_000.0,
            Layer::Medium => 250_000.0,
            Layer::High => 1_000_000.0,
        }
    }

    #[test]
    fn layers_add_up_over_viewers_and_delays_are_sorted() {
        let r = VideoReport::new(
            Duration::from_secs(6),
            Vec::new(),
            vec![
                viewer("a", vec![label("low", 10_000, 1, &[300])]),
                viewer(
                    "b",
                    vec![
                        label("high", 250_000, 2, &[90]),
                        label("low", 10_000, 1, &[50]),
                    ],
                ),
            ],
            clip,
        );
        assert_eq!(r.layers.len(), 2, "medium was never asked for");
        let low = r.layer(Layer::Low).unwrap();
        assert_eq!(low.bytes, 20_000);
        assert_eq!(low.bitrate_bps(), 80_000.0);
        assert_eq!(low.median_key_delay(), Some(Duration::from_millis(300)));
        assert_eq!(low.max_key_delay(), Some(Duration::from_millis(300)));
        assert_eq!(
            low.key_delays,
            [Duration::from_millis(50), Duration::from_millis(300)]
        );
        assert!(r.check(0.35, Duration::from_millis(1500)).is_empty());
    }

    #[test]
    fn the_check_names_a_wrong_bitrate_a_late_key_frame_and_a_silent_layer() {
        let mut r = VideoReport::new(
            Duration::from_secs(6),
            Vec::new(),
            vec![viewer(
                "v1",
                vec![
                    label("low", 5_000, 1, &[100]),
                    label("medium", 62_500, 2, &[2000]),
                    label("high", 0, 0, &[]),
                ],
            )],
            clip,
        );
        r.viewers[0].foreign_ssrc = 3;
        let f = r.check(0.35, Duration::from_millis(1500));
        assert_eq!(
            f,
            [
                "v1: 3 packets under an SSRC other than the view's",
                "low: 40 kbit/s received, the clip has 80 (-50 %)",
                "medium: a key frame came 2000 ms after its request (at most 1500 ms)",
                "high: asked for, nothing received",
            ]
        );
    }
}
