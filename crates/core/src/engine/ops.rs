//! Media operations as values: what a control root asks of a media worker, and what
//! the worker answers.
//!
//! The session root (see [`crate::session`]) never calls an engine directly: it emits
//! a [`MediaOp`] for a worker with a request id, and the shell (a worker thread, or a
//! test harness stepping engines on a virtual clock) applies it with
//! [`Engine::apply`] and hands back the [`MediaResult`]. One vocabulary for both
//! executors keeps the harness honest: it runs exactly the code the node runs.
//!
//! Operations on one worker are applied in the order they were emitted (the shell
//! keeps one FIFO per worker), so an `AddLeg` followed by `SetMuted` for the same leg
//! is always seen in that order.

use super::{Engine, EngineError, LegId, LegSpec, LegStats, MixId};
use super::{VideoId, VideoSinkSpec, VideoSourceSpec, VideoStats};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One media operation for one worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MediaOp {
    /// Opens an empty mix room. The mix tick starts with the first room.
    OpenRoom { mix: MixId },
    /// Closes a mix room and drops its legs: [`MediaResult::Legs`] with their final
    /// statistics.
    CloseRoom { mix: MixId },
    /// Adds an audio member leg to a room.
    AddLeg {
        mix: MixId,
        leg: LegId,
        spec: LegSpec,
    },
    /// Removes a leg: [`MediaResult::Legs`] with its final statistics.
    RemoveLeg { leg: LegId },
    /// Mutes (hold, remote control) or unmutes a leg's contribution to the mix.
    SetMuted { leg: LegId, muted: bool },
    /// Turns sending the mix to a leg on or off.
    SetReceives { leg: LegId, receives: bool },
    /// Turns encode-once off or on for a room (benchmarks measure its worth).
    SetEncodeOnce { mix: MixId, on: bool },
    /// One leg's statistics: [`MediaResult::Legs`] with one entry.
    LegStats { leg: LegId },
    /// The worker's counters, and with `legs` every leg's statistics, in one answer
    /// ([`MediaResult::Snapshot`]): monitoring costs one round trip per worker, never
    /// one per leg.
    Snapshot { legs: bool },
    /// Adds an incoming video stream (a member's send stream for one layer, or one
    /// relayed from another node) to a room.
    AddVideoSource {
        mix: MixId,
        video: VideoId,
        spec: VideoSourceSpec,
        /// The member whose stream it is (a scaler places it on that member's node;
        /// an engine does not look).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member: Option<LegId>,
    },
    /// Adds an outgoing video stream (a view slot, or a relay toward other nodes)
    /// forwarding `source` from its next keyframe: [`MediaResult::VideoSink`] with
    /// its SSRC.
    AddVideoSink {
        mix: MixId,
        video: VideoId,
        spec: VideoSinkSpec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<VideoId>,
        /// The member who views (as for `AddVideoSource`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member: Option<LegId>,
    },
    /// Points a sink at another source, from its next keyframe (`None`: pause).
    SwitchVideoSink {
        video: VideoId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<VideoId>,
    },
    /// Removes a video source or sink: [`MediaResult::Video`] with its figures.
    RemoveVideo { video: VideoId },
    /// Joins the multicast group a stream relayed from another node arrives on. The
    /// worker's shell does the socket work; an engine has nothing to do.
    JoinGroup { group: std::net::SocketAddrV4 },
    /// Leaves a group joined with `JoinGroup`.
    LeaveGroup { group: std::net::SocketAddrV4 },
}

impl MediaOp {
    /// The operation's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            MediaOp::OpenRoom { .. } => "open room",
            MediaOp::CloseRoom { .. } => "close room",
            MediaOp::AddLeg { .. } => "add leg",
            MediaOp::RemoveLeg { .. } => "remove leg",
            MediaOp::SetMuted { .. } => "mute",
            MediaOp::SetReceives { .. } => "receive",
            MediaOp::SetEncodeOnce { .. } => "encode once",
            MediaOp::LegStats { .. } => "leg statistics",
            MediaOp::Snapshot { .. } => "snapshot",
            MediaOp::AddVideoSource { .. } => "add video source",
            MediaOp::AddVideoSink { .. } => "add video sink",
            MediaOp::SwitchVideoSink { .. } => "switch video sink",
            MediaOp::RemoveVideo { .. } => "remove video",
            MediaOp::JoinGroup { .. } => "join group",
            MediaOp::LeaveGroup { .. } => "leave group",
        }
    }
}

/// A worker's answer to one [`MediaOp`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaResult {
    /// Done; nothing to report.
    Done,
    /// Legs and their statistics (closed, removed or asked about).
    Legs(Vec<(LegId, LegStats)>),
    /// The worker's counters and, when asked, its legs.
    Snapshot(WorkerSnapshot),
    /// The operation was refused or could not reach the worker.
    Failed(String),
    /// A scaler's answer to an `AddLeg`: the leg was placed on cluster node `node`,
    /// whose worker receives at `rtp`/`rtcp` (a node's own answer is `Done`: the
    /// session root knows its workers' addresses).
    Placed {
        rtp: SocketAddr,
        rtcp: SocketAddr,
        node: String,
    },
    /// No channel is free for the leg (a scaler whose nodes are all full): the call
    /// is refused with cause 34.
    NoChannel(String),
    /// A video sink was added; its stream carries `ssrc`. From a scaler, `placed`
    /// says on which node and from which address.
    VideoSink {
        ssrc: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placed: Option<Box<VideoPlaced>>,
    },
    /// A removed video stream's figures.
    Video(VideoStats),
}

/// Where a scaler put a video stream: the node and its worker's addresses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoPlaced {
    pub rtp: SocketAddr,
    pub rtcp: SocketAddr,
    pub node: String,
}

impl MediaResult {
    /// Whether the operation failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, MediaResult::Failed(_) | MediaResult::NoChannel(_))
    }
}

impl From<Result<(), EngineError>> for MediaResult {
    fn from(r: Result<(), EngineError>) -> MediaResult {
        match r {
            Ok(()) => MediaResult::Done,
            Err(e) => MediaResult::Failed(e.to_string()),
        }
    }
}

/// A worker's counters, as reported in `Status` and `Health` (serialised whole as
/// the `workers` entries, so a counter added here reaches controllers without more
/// plumbing; `docs/control-protocol.md` documents each one).
///
/// All counters are cumulative since the worker started: the leg counters
/// (`late` .. `decode_errors`) are summed over the worker's legs, those that have
/// gone included, so an exporter can rate them without seeing them drop when a
/// call ends. `truncated` and `send_errors` are the shell's (its socket layer's);
/// the engine reports them as 0 and the shell fills them in. Missing fields parse
/// as 0, so a controller reads older nodes' reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerStats {
    pub index: usize,
    pub rooms: usize,
    pub legs: usize,
    pub datagrams: u64,
    pub foreign: u64,
    pub malformed: u64,
    pub truncated: u64,
    pub send_errors: u64,
    /// Packets that arrived after their playout time, over all legs.
    pub late: u64,
    /// Packets received twice, over all legs.
    pub duplicates: u64,
    /// Packets with a payload type their leg did not negotiate, over all legs.
    pub unknown_payload_type: u64,
    /// Peer SSRC changes, over all legs.
    pub ssrc_changes: u64,
    /// Payloads a decoder refused, over all legs.
    pub decode_errors: u64,
    pub ticks: u64,
    pub late_ticks: u64,
    pub skipped_ticks: u64,
    pub encodes: u64,
    /// Encoder calls that failed (the frame was not sent, or went out empty).
    pub encode_failures: u64,
    pub shared_sends: u64,
    pub lateness_p50_us: u64,
    pub lateness_p99_us: u64,
    pub lateness_max_us: u64,
    /// Datagrams dropped unparsed because their leg was over its receive budget (a
    /// flood from a leg's address).
    pub flood_dropped: u64,
    /// Latching claims refused: the leg's current source was still sending.
    pub latch_refused: u64,
    /// Latching moves to a new address (each one reported to the controllers).
    pub latch_moves: u64,
    /// Video sources (incoming streams) and sinks (outgoing: views and relays).
    pub video_sources: usize,
    pub video_sinks: usize,
    /// Video packets forwarded (one per sink they went to) and their bytes.
    pub video_forwarded: u64,
    pub video_forwarded_bytes: u64,
    /// Video packets whose RTP header or payload descriptor could not be read.
    pub video_malformed: u64,
}

/// The per-leg input counters a worker also reports summed ([`WorkerStats`]). The
/// engine keeps the sum of the legs that have gone; the live ones are added at
/// each snapshot (a few additions per leg, once per report — nothing per packet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LegTotals {
    pub late: u64,
    pub duplicates: u64,
    pub unknown_payload_type: u64,
    pub ssrc_changes: u64,
    pub decode_errors: u64,
}

impl LegTotals {
    pub fn add(&mut self, s: &LegStats) {
        self.late += s.late;
        self.duplicates += s.duplicates;
        self.unknown_payload_type += s.unknown_payload_type;
        self.ssrc_changes += s.ssrc_changes;
        self.decode_errors += s.decode_errors;
    }
}

/// The drop counters of a worker that a flood moves, for its summary log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    pub foreign: u64,
    pub malformed: u64,
    pub truncated: u64,
    pub late: u64,
    pub duplicates: u64,
    pub unknown_payload_type: u64,
    pub ssrc_changes: u64,
    pub decode_errors: u64,
}

impl Drops {
    pub fn of(s: &WorkerStats) -> Drops {
        Drops {
            foreign: s.foreign,
            malformed: s.malformed,
            truncated: s.truncated,
            late: s.late,
            duplicates: s.duplicates,
            unknown_payload_type: s.unknown_payload_type,
            ssrc_changes: s.ssrc_changes,
            decode_errors: s.decode_errors,
        }
    }

    fn fields(&self) -> [(&'static str, u64); 8] {
        [
            ("foreign", self.foreign),
            ("malformed", self.malformed),
            ("truncated", self.truncated),
            ("late", self.late),
            ("duplicates", self.duplicates),
            ("unknown_payload_type", self.unknown_payload_type),
            ("ssrc_changes", self.ssrc_changes),
            ("decode_errors", self.decode_errors),
        ]
    }

    /// What grew since `earlier` (counters only grow; a smaller value reads as 0).
    fn since(&self, earlier: &Drops) -> Drops {
        Drops {
            foreign: self.foreign.saturating_sub(earlier.foreign),
            malformed: self.malformed.saturating_sub(earlier.malformed),
            truncated: self.truncated.saturating_sub(earlier.truncated),
            late: self.late.saturating_sub(earlier.late),
            duplicates: self.duplicates.saturating_sub(earlier.duplicates),
            unknown_payload_type: self
                .unknown_payload_type
                .saturating_sub(earlier.unknown_payload_type),
            ssrc_changes: self.ssrc_changes.saturating_sub(earlier.ssrc_changes),
            decode_errors: self.decode_errors.saturating_sub(earlier.decode_errors),
        }
    }

    pub fn is_zero(&self) -> bool {
        self.fields().iter().all(|(_, v)| *v == 0)
    }
}

/// `foreign=+12 malformed=+3`: the counters that moved, and only those.
impl std::fmt::Display for Drops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (name, v) in self.fields().into_iter().filter(|(_, v)| *v > 0) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{name}=+{v}")?;
        }
        Ok(())
    }
}

/// Rate-limits a worker's flood summary: at most one line per `period`, and only
/// when a drop counter moved, naming the deltas. A flood of bad datagrams must be
/// seen by an operator, yet never cost a log line per packet; the shell asks
/// [`FloodWatch::due`] (one comparison) each turn and takes a snapshot only then.
#[derive(Clone, Debug)]
pub struct FloodWatch {
    period: Duration,
    next: Instant,
    seen: Drops,
}

impl FloodWatch {
    /// The first summary may come one `period` after `now`.
    pub fn new(now: Instant, period: Duration) -> FloodWatch {
        FloodWatch {
            period,
            next: now + period,
            seen: Drops::default(),
        }
    }

    /// Whether a summary may be due: the shell then passes a snapshot to
    /// [`FloodWatch::observe`].
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// What moved since the last observation, when something did and a period has
    /// passed since the last one; `None` otherwise.
    pub fn observe(&mut self, now: Instant, stats: &WorkerStats) -> Option<Drops> {
        if !self.due(now) {
            return None;
        }
        self.next = now + self.period;
        let current = Drops::of(stats);
        let moved = current.since(&self.seen);
        self.seen = current;
        (!moved.is_zero()).then_some(moved)
    }
}

/// What [`MediaOp::Snapshot`] returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    pub stats: WorkerStats,
    /// Every leg's statistics (empty unless asked for).
    pub legs: Vec<(LegId, LegStats)>,
    /// Every video source's and sink's figures (only with `legs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub video: Vec<(VideoId, VideoStats)>,
    /// A scaler's view of its cluster (nodes, members' nodes, invisible
    /// participants); never set by a node's worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Box<crate::cluster::ClusterView>>,
}

impl Engine {
    /// Applies one media operation. Never panics: a refused operation is
    /// [`MediaResult::Failed`] and changes nothing.
    pub fn apply(&mut self, now: Instant, index: usize, op: MediaOp) -> MediaResult {
        self.clock = self.clock.max(now);
        match op {
            MediaOp::OpenRoom { mix } => self.open_room(now, mix).into(),
            MediaOp::CloseRoom { mix } => match self.close_room(mix) {
                Ok(legs) => MediaResult::Legs(legs),
                Err(e) => MediaResult::Failed(e.to_string()),
            },
            MediaOp::AddLeg { mix, leg, spec } => self.add_leg(now, mix, leg, spec).into(),
            MediaOp::RemoveLeg { leg } => match self.remove_leg(leg) {
                Ok(stats) => MediaResult::Legs(vec![(leg, stats)]),
                Err(e) => MediaResult::Failed(e.to_string()),
            },
            MediaOp::SetMuted { leg, muted } => self.set_muted(leg, muted).into(),
            MediaOp::SetReceives { leg, receives } => self.set_receives(leg, receives).into(),
            MediaOp::SetEncodeOnce { mix, on } => self.set_encode_once(mix, on).into(),
            MediaOp::LegStats { leg } => match self.leg_stats(leg) {
                Some(stats) => MediaResult::Legs(vec![(leg, stats)]),
                None => MediaResult::Failed(EngineError::NoSuchLeg(leg).to_string()),
            },
            MediaOp::Snapshot { legs } => MediaResult::Snapshot(self.snapshot(index, legs)),
            MediaOp::AddVideoSource {
                mix, video, spec, ..
            } => self.add_video_source(now, mix, video, spec).into(),
            MediaOp::AddVideoSink {
                mix,
                video,
                spec,
                source,
                ..
            } => match self.add_video_sink(now, mix, video, spec, source) {
                Ok(ssrc) => MediaResult::VideoSink { ssrc, placed: None },
                Err(e) => MediaResult::Failed(e.to_string()),
            },
            MediaOp::SwitchVideoSink { video, source } => {
                self.switch_video_sink(now, video, source).into()
            }
            MediaOp::RemoveVideo { video } => match self.remove_video(video) {
                Ok(stats) => MediaResult::Video(stats),
                Err(e) => MediaResult::Failed(e.to_string()),
            },
            // Socket work, done by the shell before it hands the op here.
            MediaOp::JoinGroup { .. } | MediaOp::LeaveGroup { .. } => MediaResult::Done,
        }
    }

    /// The worker's counters and, with `legs`, every leg's statistics. Visits every
    /// leg either way (to sum its counters), but copies them out only with `legs`.
    pub fn snapshot(&self, index: usize, legs: bool) -> WorkerSnapshot {
        let s = self.stats();
        let h = &s.lateness_us;
        let mut totals = self.retired;
        let mut out = Vec::with_capacity(if legs { self.leg_count() } else { 0 });
        for (_, l) in self.legs.iter() {
            let stats = l.snapshot();
            totals.add(&stats);
            if legs {
                out.push((l.id, stats));
            }
        }
        let (video_sources, video_sinks) = self.video.len();
        let vt = self.video.totals();
        WorkerSnapshot {
            stats: WorkerStats {
                index,
                rooms: self.room_count(),
                legs: self.leg_count(),
                datagrams: s.datagrams,
                foreign: s.foreign,
                malformed: s.malformed,
                truncated: 0,
                send_errors: 0,
                late: totals.late,
                duplicates: totals.duplicates,
                unknown_payload_type: totals.unknown_payload_type,
                ssrc_changes: totals.ssrc_changes,
                decode_errors: totals.decode_errors,
                ticks: s.ticks,
                late_ticks: s.late_ticks,
                skipped_ticks: s.skipped_ticks,
                encodes: s.encodes,
                encode_failures: s.encode_failures,
                shared_sends: s.shared_sends,
                lateness_p50_us: h.value_at_quantile(0.5),
                lateness_p99_us: h.value_at_quantile(0.99),
                lateness_max_us: h.max(),
                flood_dropped: s.flood_dropped,
                latch_refused: s.latch_refused,
                latch_moves: s.latch_moves,
                video_sources,
                video_sinks,
                video_forwarded: vt.forwarded,
                video_forwarded_bytes: vt.forwarded_bytes,
                video_malformed: vt.malformed,
            },
            legs: out,
            video: if legs {
                self.video.snapshot()
            } else {
                Vec::new()
            },
            cluster: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use scnf_media::codec::CodecKind;

    fn engine() -> (Engine, Instant) {
        let now = scnf_media::testclock::anchor();
        let cfg = EngineConfig::new("ops-test", (now, Duration::from_secs(1)));
        (Engine::new(cfg, 7), now)
    }

    #[test]
    fn a_refused_operation_is_a_failed_result_and_changes_nothing() {
        let (mut e, now) = engine();
        let spec = LegSpec::new("127.0.0.1:4000".parse().unwrap(), CodecKind::Pcmu);
        let leg = LegId(1);
        let r = e.apply(
            now,
            0,
            MediaOp::AddLeg {
                mix: MixId(9),
                leg,
                spec,
            },
        );
        assert!(r.is_failed(), "no such room: {r:?}");
        assert_eq!(e.leg_count(), 0);
        assert!(e.apply(now, 0, MediaOp::RemoveLeg { leg }).is_failed());
    }

    #[test]
    fn a_snapshot_carries_every_leg_in_one_answer_only_when_asked() {
        let (mut e, now) = engine();
        assert_eq!(
            e.apply(now, 3, MediaOp::OpenRoom { mix: MixId(1) }),
            MediaResult::Done
        );
        for i in 0..5u16 {
            let remote = format!("127.0.0.1:{}", 4000 + 2 * i).parse().unwrap();
            let spec = LegSpec::new(remote, CodecKind::Pcma);
            let r = e.apply(
                now,
                3,
                MediaOp::AddLeg {
                    mix: MixId(1),
                    leg: LegId(i.into()),
                    spec,
                },
            );
            assert_eq!(r, MediaResult::Done);
        }
        let MediaResult::Snapshot(full) = e.apply(now, 3, MediaOp::Snapshot { legs: true }) else {
            panic!("a snapshot answers a snapshot");
        };
        assert_eq!(
            (full.stats.index, full.stats.rooms, full.stats.legs),
            (3, 1, 5)
        );
        let mut ids: Vec<u64> = full.legs.iter().map(|(l, _)| l.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 2, 3, 4]);
        let MediaResult::Snapshot(light) = e.apply(now, 3, MediaOp::Snapshot { legs: false })
        else {
            panic!("a snapshot answers a snapshot");
        };
        assert!(light.legs.is_empty());
        assert_eq!(light.stats, full.stats);
    }

    #[test]
    fn closing_a_room_returns_its_legs_final_statistics() {
        let (mut e, now) = engine();
        e.apply(now, 0, MediaOp::OpenRoom { mix: MixId(2) });
        let spec = LegSpec::new("127.0.0.1:5000".parse().unwrap(), CodecKind::G722);
        e.apply(
            now,
            0,
            MediaOp::AddLeg {
                mix: MixId(2),
                leg: LegId(8),
                spec,
            },
        );
        let MediaResult::Legs(legs) = e.apply(now, 0, MediaOp::CloseRoom { mix: MixId(2) }) else {
            panic!("closing answers with the legs");
        };
        assert_eq!(legs.len(), 1);
        assert_eq!(legs[0].0, LegId(8));
        assert_eq!(e.room_count(), 0);
    }

    #[test]
    fn a_flood_is_summed_up_once_per_period_and_only_when_counters_moved() {
        let t0 = scnf_media::testclock::anchor();
        let period = Duration::from_secs(10);
        let mut watch = FloodWatch::new(t0, period);
        let mut stats = WorkerStats {
            foreign: 500,
            ..WorkerStats::default()
        };
        assert!(!watch.due(t0 + Duration::from_secs(9)));
        assert_eq!(watch.observe(t0 + Duration::from_secs(9), &stats), None);
        let first = watch
            .observe(t0 + period, &stats)
            .expect("the flood is told");
        assert_eq!((first.foreign, first.malformed), (500, 0));
        assert_eq!(first.to_string(), "foreign=+500");
        // More flood right after: held back until the next period, then the delta.
        stats.foreign = 800;
        stats.malformed = 3;
        stats.unknown_payload_type = 2;
        assert!(!watch.due(t0 + Duration::from_secs(15)));
        let second = watch
            .observe(t0 + Duration::from_secs(20), &stats)
            .expect("the flood goes on");
        assert_eq!(
            second.to_string(),
            "foreign=+300 malformed=+3 unknown_payload_type=+2"
        );
        // Nothing moved: no line, however much time passes.
        assert_eq!(watch.observe(t0 + Duration::from_secs(30), &stats), None);
        assert_eq!(watch.observe(t0 + Duration::from_secs(90), &stats), None);
    }
}
