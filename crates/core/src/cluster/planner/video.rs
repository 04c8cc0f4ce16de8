//! Video across the cluster: a member's send streams and view slots placed on its
//! node, and streams carried between nodes only while someone there watches.
//!
//! The root's video operations name virtual ids; each becomes a source or sink on
//! the node of the member it belongs to (`member` in the operation). A view of a
//! stream on another node counts as one request of that node in the cluster's
//! [`VideoDemand`]; the demand says when the publisher's node must start or stop
//! sending the stream to a group (or, in unicast mode, to one node) and when a
//! receiving node must join or leave. A relay is a sink on the publisher's node
//! with an SSRC chosen here; on each receiving node a source tagged with that SSRC
//! takes the stream from the publisher node's media address, and its views are
//! pointed at it. Keyframe requests of the receiving node's views go, throttled
//! there, to the publisher's node, which passes them through its own throttle to
//! the publisher.

use super::{NodeId, Pending, Planner};
use crate::cluster::video::{Dest, StreamKey, VideoDemand, VideoOutput};
use crate::engine::ops::VideoPlaced;
use crate::engine::{LegId, MediaOp, MediaResult, MixId, VideoId, VideoSinkSpec, VideoSourceSpec};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// A member's send stream: where it lives.
#[derive(Clone)]
struct Source {
    room: MixId,
    node: NodeId,
    worker: usize,
    nid: VideoId,
    spec: VideoSourceSpec,
}

/// A member's view slot.
#[derive(Clone)]
struct Sink {
    node: NodeId,
    worker: usize,
    nid: VideoId,
    /// The root's source it shows.
    source: Option<VideoId>,
}

/// The cluster's video (see the module docs).
pub(super) struct VideoPlan {
    demand: Option<VideoDemand>,
    sources: HashMap<VideoId, Source>,
    sinks: HashMap<VideoId, Sink>,
    /// The relay sink on the publisher's node per (root source, destination), and
    /// its SSRC.
    relays: HashMap<(VideoId, Dest), (VideoId, u32)>,
    /// The tagged source on a receiving node per (root source, node).
    relayed: HashMap<(VideoId, NodeId), VideoId>,
    /// Node-side id -> root id of members' streams (for `Status`).
    pub(super) owners: HashMap<(NodeId, VideoId), VideoId>,
    /// The latest time a video input carried (a node lost carries none).
    clock: Option<Instant>,
}

impl VideoPlan {
    pub(super) fn new(demand: Option<VideoDemand>) -> VideoPlan {
        VideoPlan {
            demand,
            sources: HashMap::new(),
            sinks: HashMap::new(),
            relays: HashMap::new(),
            relayed: HashMap::new(),
            owners: HashMap::new(),
            clock: None,
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.demand.as_ref().and_then(VideoDemand::poll_timeout)
    }

    /// Views per root source (for `Status`).
    pub(super) fn viewers(&self, source: VideoId) -> u32 {
        self.sinks
            .values()
            .filter(|s| s.source == Some(source))
            .count() as u32
    }

    /// Every member stream's node.
    pub(super) fn placements(&self) -> Vec<(VideoId, NodeId)> {
        let mut v: Vec<(VideoId, NodeId)> =
            self.sources.iter().map(|(id, s)| (*id, s.node)).collect();
        v.sort_unstable();
        v
    }

    /// The group a root source is published to, if any.
    pub(super) fn group(&self, source: VideoId) -> Option<String> {
        let s = self.sources.get(&source)?;
        let key = StreamKey {
            node: s.node,
            stream: source.0,
        };
        self.demand.as_ref()?.group_of(key).map(|g| g.to_string())
    }
}

impl Planner {
    /// A video operation of the root, answered at once: the planner knows where
    /// everything goes (a node's refusal is counted when it comes).
    pub(super) fn video_op(&mut self, now: Instant, op: MediaOp) -> MediaResult {
        self.video.clock = Some(now);
        match op {
            MediaOp::AddVideoSource {
                mix,
                video,
                spec,
                member,
            } => self.add_video_source(mix, video, spec, member),
            MediaOp::AddVideoSink {
                mix,
                video,
                spec,
                source,
                member,
            } => self.add_video_sink(now, mix, video, spec, source, member),
            MediaOp::SwitchVideoSink { video, source } => {
                let Some(sink) = self.video.sinks.get(&video).cloned() else {
                    return MediaResult::Failed(format!("no video sink {video:?}"));
                };
                if sink.source == source {
                    return MediaResult::Done;
                }
                let local = source.and_then(|s| self.video_resolve(now, s, sink.node));
                if let Some(old) = sink.source {
                    self.video_unsubscribe(now, old, sink.node);
                }
                if let Some(s) = self.video.sinks.get_mut(&video) {
                    s.source = source;
                }
                let op = MediaOp::SwitchVideoSink {
                    video: sink.nid,
                    source: local,
                };
                self.op(sink.node, sink.worker, op, Pending::Quiet);
                self.video_drain(now);
                MediaResult::Done
            }
            MediaOp::RemoveVideo { video } => self.remove_video(now, video),
            other => MediaResult::Failed(format!("not a video operation: {}", other.name())),
        }
    }

    /// Where a member's media is: its node, the room's share there.
    fn member_place(
        &self,
        room: MixId,
        member: Option<LegId>,
    ) -> Result<(NodeId, usize, MixId), String> {
        let m = member
            .and_then(|l| self.members.get(&l))
            .ok_or_else(|| "the stream's member has no media in the cluster".to_string())?;
        let part = self
            .rooms
            .get(&room)
            .and_then(|r| r.parts.get(&m.node))
            .ok_or_else(|| format!("room {room:?} has no share on the member's node"))?;
        Ok((m.node, part.worker, part.mix))
    }

    fn video_placed(&self, node: NodeId, worker: usize) -> Option<VideoPlaced> {
        let n = self.node(node)?;
        let w = n.workers.get(worker)?;
        Some(VideoPlaced {
            rtp: w.rtp,
            rtcp: w.rtcp,
            node: n.name.clone(),
        })
    }

    fn add_video_source(
        &mut self,
        room: MixId,
        video: VideoId,
        spec: VideoSourceSpec,
        member: Option<LegId>,
    ) -> MediaResult {
        let (node, worker, mix) = match self.member_place(room, member) {
            Ok(p) => p,
            Err(e) => return MediaResult::Failed(e),
        };
        let nid = VideoId(self.fresh());
        let op = MediaOp::AddVideoSource {
            mix,
            video: nid,
            spec: spec.clone(),
            member: None,
        };
        self.op(node, worker, op, Pending::Quiet);
        self.video.owners.insert((node, nid), video);
        self.video.sources.insert(
            video,
            Source {
                room,
                node,
                worker,
                nid,
                spec,
            },
        );
        match self.video_placed(node, worker) {
            Some(p) => MediaResult::Placed {
                rtp: p.rtp,
                rtcp: p.rtcp,
                node: p.node,
            },
            None => MediaResult::Failed("the member's node is gone".into()),
        }
    }

    #[allow(clippy::too_many_arguments)] // the operation's fields, one to one
    fn add_video_sink(
        &mut self,
        now: Instant,
        room: MixId,
        video: VideoId,
        mut spec: VideoSinkSpec,
        source: Option<VideoId>,
        member: Option<LegId>,
    ) -> MediaResult {
        let (node, worker, mix) = match self.member_place(room, member) {
            Ok(p) => p,
            Err(e) => return MediaResult::Failed(e),
        };
        let Some(placed) = self.video_placed(node, worker) else {
            return MediaResult::Failed("the member's node is gone".into());
        };
        let ssrc = self.rng.next_u32();
        spec.ssrc = Some(ssrc);
        let local = source.and_then(|s| self.video_resolve(now, s, node));
        let nid = VideoId(self.fresh());
        let op = MediaOp::AddVideoSink {
            mix,
            video: nid,
            spec,
            source: local,
            member: None,
        };
        self.op(node, worker, op, Pending::Quiet);
        self.video.owners.insert((node, nid), video);
        self.video.sinks.insert(
            video,
            Sink {
                node,
                worker,
                nid,
                source,
            },
        );
        self.video_drain(now);
        MediaResult::VideoSink {
            ssrc,
            placed: Some(Box::new(placed)),
        }
    }

    fn remove_video(&mut self, now: Instant, video: VideoId) -> MediaResult {
        if let Some(sink) = self.video.sinks.remove(&video) {
            self.video.owners.remove(&(sink.node, sink.nid));
            if let Some(old) = sink.source {
                self.video_unsubscribe(now, old, sink.node);
            }
            let op = MediaOp::RemoveVideo { video: sink.nid };
            self.op(sink.node, sink.worker, op, Pending::Quiet);
            self.video_drain(now);
            return MediaResult::Done;
        }
        let Some(src) = self.video.sources.remove(&video) else {
            return MediaResult::Failed(format!("no video stream {video:?}"));
        };
        self.video.owners.remove(&(src.node, src.nid));
        let key = StreamKey {
            node: src.node,
            stream: video.0,
        };
        if let Some(d) = self.video.demand.as_mut() {
            d.stream_gone(now, key);
        }
        // The relays end with their source on the publisher's node.
        let relays: Vec<(VideoId, Dest)> = self
            .video
            .relays
            .keys()
            .filter(|(s, _)| *s == video)
            .copied()
            .collect();
        for k in relays {
            if let Some((nid, _)) = self.video.relays.remove(&k) {
                self.op(
                    src.node,
                    src.worker,
                    MediaOp::RemoveVideo { video: nid },
                    Pending::Quiet,
                );
            }
        }
        let op = MediaOp::RemoveVideo { video: src.nid };
        self.op(src.node, src.worker, op, Pending::Quiet);
        self.video_drain(now);
        MediaResult::Done
    }

    /// The node-side source a sink on `node` shows for root source `source`: the
    /// source itself on its own node, else the stream relayed there (asked for now
    /// if it is not yet).
    fn video_resolve(&mut self, now: Instant, source: VideoId, node: NodeId) -> Option<VideoId> {
        let src = self.video.sources.get(&source)?.clone();
        if src.node == node {
            return Some(src.nid);
        }
        let key = StreamKey {
            node: src.node,
            stream: source.0,
        };
        let demand = self.video.demand.as_mut()?;
        if let Err(e) = demand.subscribe(now, key, node) {
            tracing::warn!(%e, ?source, "a stream cannot reach another node");
            return None;
        }
        self.video_drain(now);
        self.video.relayed.get(&(source, node)).copied()
    }

    fn video_unsubscribe(&mut self, now: Instant, source: VideoId, node: NodeId) {
        let Some(src) = self.video.sources.get(&source) else {
            return;
        };
        if src.node == node {
            return;
        }
        let key = StreamKey {
            node: src.node,
            stream: source.0,
        };
        if let Some(d) = self.video.demand.as_mut() {
            d.unsubscribe(now, key, node);
        }
    }

    /// Carries out what the demand decided.
    pub(super) fn video_drain(&mut self, now: Instant) {
        let _ = now;
        loop {
            let Some(out) = self
                .video
                .demand
                .as_mut()
                .and_then(VideoDemand::poll_output)
            else {
                return;
            };
            match out {
                VideoOutput::Publish { key, to } => self.video_publish(key, to),
                VideoOutput::Unpublish { key, to } => {
                    let source = VideoId(key.stream);
                    if let Some((nid, _)) = self.video.relays.remove(&(source, to)) {
                        if let Some(src) = self.video.sources.get(&source) {
                            let (node, worker) = (src.node, src.worker);
                            self.op(
                                node,
                                worker,
                                MediaOp::RemoveVideo { video: nid },
                                Pending::Quiet,
                            );
                        }
                    }
                }
                VideoOutput::Join { node, key, group } => {
                    self.video_expect(node, key, Dest::Group(group), Some(group))
                }
                VideoOutput::Expect { node, key } => {
                    self.video_expect(node, key, Dest::Node(node), None)
                }
                VideoOutput::Leave { node, key, group } => {
                    self.video_unexpect(node, key, Some(group))
                }
                VideoOutput::Unexpect { node, key } => self.video_unexpect(node, key, None),
            }
        }
    }

    /// The publisher's node starts sending a stream to a group or a node.
    fn video_publish(&mut self, key: StreamKey, to: Dest) {
        let source = VideoId(key.stream);
        let Some(src) = self.video.sources.get(&source).cloned() else {
            return;
        };
        let remote: SocketAddr = match to {
            Dest::Group(g) => g.into(),
            Dest::Node(n) => match self.part_addr(src.room, n) {
                Some((_, addr)) => addr,
                None => return,
            },
        };
        let ssrc = self.rng.next_u32();
        let nid = VideoId(self.fresh());
        let spec = VideoSinkSpec {
            remote,
            rtcp_mux: true,
            payload_type: src.spec.payload_type,
            ssrc: Some(ssrc),
            relay: true,
        };
        let mix = match self
            .rooms
            .get(&src.room)
            .and_then(|r| r.parts.get(&src.node))
        {
            Some(p) => p.mix,
            None => return,
        };
        let op = MediaOp::AddVideoSink {
            mix,
            video: nid,
            spec,
            source: Some(src.nid),
            member: None,
        };
        self.op(src.node, src.worker, op, Pending::Quiet);
        self.video.relays.insert((source, to), (nid, ssrc));
    }

    /// The worker of a room's share on `node` and its RTP address.
    fn part_addr(&self, room: MixId, node: NodeId) -> Option<(usize, SocketAddr)> {
        let part = self.rooms.get(&room)?.parts.get(&node)?;
        let w = self.node(node)?.workers.get(part.worker)?;
        Some((part.worker, w.rtp))
    }

    /// A receiving node takes a stream relayed to it (joining its group first, in
    /// multicast), and its views of it are pointed there.
    fn video_expect(
        &mut self,
        node: NodeId,
        key: StreamKey,
        dest: Dest,
        group: Option<std::net::SocketAddrV4>,
    ) {
        let source = VideoId(key.stream);
        let Some(src) = self.video.sources.get(&source).cloned() else {
            return;
        };
        let Some(&(_, ssrc)) = self.video.relays.get(&(source, dest)) else {
            return;
        };
        let Some((_, from)) = self.part_addr(src.room, src.node) else {
            return;
        };
        let Some((worker, _)) = self.part_addr(src.room, node) else {
            return;
        };
        let Some(mix) = self
            .rooms
            .get(&src.room)
            .and_then(|r| r.parts.get(&node))
            .map(|p| p.mix)
        else {
            return;
        };
        if let Some(group) = group {
            self.op(node, worker, MediaOp::JoinGroup { group }, Pending::Quiet);
        }
        let nid = VideoId(self.fresh());
        let spec = VideoSourceSpec {
            remote: from,
            rtcp_mux: true,
            codec: src.spec.codec,
            payload_type: src.spec.payload_type,
            fir: false,
            peer_ssrc: Some(ssrc),
        };
        let op = MediaOp::AddVideoSource {
            mix,
            video: nid,
            spec,
            member: None,
        };
        self.op(node, worker, op, Pending::Quiet);
        self.video.relayed.insert((source, node), nid);
    }

    fn video_unexpect(
        &mut self,
        node: NodeId,
        key: StreamKey,
        group: Option<std::net::SocketAddrV4>,
    ) {
        let source = VideoId(key.stream);
        let Some(nid) = self.video.relayed.remove(&(source, node)) else {
            return;
        };
        let worker = self
            .video
            .sources
            .get(&source)
            .and_then(|s| self.part_addr(s.room, node))
            .map(|(w, _)| w)
            .unwrap_or(0);
        self.op(
            node,
            worker,
            MediaOp::RemoveVideo { video: nid },
            Pending::Quiet,
        );
        if let Some(group) = group {
            self.op(node, worker, MediaOp::LeaveGroup { group }, Pending::Quiet);
        }
    }

    /// Linger timers of the demand.
    pub(super) fn video_timeout(&mut self, now: Instant) {
        self.video.clock = Some(now);
        if let Some(d) = self.video.demand.as_mut() {
            d.handle_timeout(now);
        }
        self.video_drain(now);
    }

    /// A node is gone: the streams it published stop reaching the others, its
    /// views stop asking, and its sources and sinks are forgotten (the root
    /// releases its members' calls, whose video goes with them).
    pub(super) fn video_node_gone(&mut self, node: NodeId) {
        let Some(now) = self.video.clock else {
            return; // no video was ever asked for
        };
        if let Some(d) = self.video.demand.as_mut() {
            d.node_gone(now, node);
        }
        self.video.relays.retain(|(s, dest), _| {
            *dest != Dest::Node(node) && self.video.sources.get(s).is_some_and(|s| s.node != node)
        });
        self.video.relayed.retain(|(_, n), _| *n != node);
        self.video.owners.retain(|(n, _), _| *n != node);
        self.video.sources.retain(|_, s| s.node != node);
        self.video.sinks.retain(|_, s| s.node != node);
        self.video_drain(now);
    }
}
