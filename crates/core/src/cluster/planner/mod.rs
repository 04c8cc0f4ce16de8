//! The scaler's planner: executes the session root's media operations on the
//! registered nodes. Sans-IO: frames and time in, frames and results out.
//!
//! # Inputs and outputs
//! - The node face: [`Planner::handle_node_open`], [`Planner::handle_node_text`] (a
//!   text frame: the login, then [`NodeMsg`](super::link::NodeMsg)s), [`Planner::handle_node_closed`].
//!   The planner logs nodes in itself (the HMAC challenge, proof both ways), so a
//!   wrong secret is decided here, not in the shell.
//! - The session face: [`Planner::handle_op`] takes the root's
//!   `Output::Media { req, op, .. }` (one virtual worker, the root's own ids); every
//!   op is answered with [`PlanOutput::Result`] and the same `req`, to be fed to
//!   `Session::handle_media_result`; [`PlanOutput::Event`]s (root ids) go to
//!   `Session::handle_engine_event`; [`PlanOutput::Capacity`] to
//!   `Session::set_channels`.
//! - [`Planner::handle_timeout`] at [`Planner::poll_timeout`]: heartbeats, silent
//!   nodes, reports a slow node holds up.
//! - [`Planner::poll_output`] after every input, until `None`.
//!
//! # Placement (as the vendor's scaler, with the counts of its tables)
//! A room's first member goes to a random node with a free channel: that node is
//! the room's *primary*. Later members go to the node with the fewest of the room's
//! members, ties broken round-robin after the room's last choice, so per-node counts
//! differ by at most one. A node joining a room is linked to the primary: one link
//! leg on each side (an invisible participant, a channel on each), L16 at the mix
//! rate. A room of P members on N nodes therefore takes P + 2(N-1) channels. A node
//! without the channels a placement needs is skipped; with no node left the member
//! is refused ([`MediaResult::NoChannel`], cause 34).
//!
//! # Leaving
//! A secondary whose last member leaves is unlinked and its room closed there. A
//! primary whose last member leaves stays the room's mixing hub while two or more
//! secondaries remain (re-linking them all would cut everyone's audio for a
//! moment); once only one secondary is left, that one becomes the primary and the
//! old primary is unlinked. A node that disappears takes its members with it (their
//! calls are released, cause 41); if it was a room's primary, the remaining node
//! with the most members becomes primary and the others are re-linked to it.
//!
//! # Answering at once
//! A member's `AddLeg` is answered as soon as it is placed: where its peer must send
//! is the chosen worker's socket, which the planner knows from the registration.
//! The root therefore never waits for a node's round trip, and call setup through a
//! scaler runs at the rate of one node or better. The node's answer still comes:
//! a refusal, or no answer within `op_timeout`, loses the call (an
//! [`EngineEvent::Lost`], released with cause 41), and a silent node gets no new
//! members until it answers again.

mod keep;
mod nodes;
mod place;
mod report;
mod survive;
mod video;

pub use keep::Adoption;

use super::link::{self, ScalerMsg};
use crate::control::auth::{Challenges, LoginConfig};
use crate::control::login::LoginServer;
use crate::engine::{EngineEvent, LegId, MediaOp, MediaResult, MixId, WorkerStats};
use crate::session::{LoginStep, ReqId, WorkerAddrs};
use scnf_media::codec::CodecKind;
use scnf_media::util::Rng;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One node connection on the scaler's node face (the shell numbers them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// Settings of the planner.
#[derive(Clone)]
pub struct PlannerConfig {
    /// The cluster secret nodes must prove (`None`: no login, loopback only).
    pub secret: Option<Vec<u8>>,
    pub login: LoginConfig,
    /// Seed of the challenges and of the primaries' random choice.
    pub seed: [u8; 32],
    /// Codec of link legs: L16 (default, no second companding) or G.711.
    pub link_codec: CodecKind,
    /// Dynamic payload type of L16 on links (default 96).
    pub link_payload_type: u8,
    /// How long a `Status` waits for a slow node's snapshot before it answers
    /// without it. Default 1 s.
    pub report_timeout: Duration,
    /// A node silent this long is gone. Default [`super::link::SILENCE`].
    pub silence: Duration,
    /// The multicast group pool and how video crosses between nodes.
    pub video: crate::cluster::video::VideoPoolConfig,
    /// How often the scaler tells each node it is alive. Default
    /// [`super::link::HEARTBEAT`].
    pub heartbeat: Duration,
    /// A node that has not logged in and registered this long after its connection
    /// opened is closed. Default 5 s.
    pub register_timeout: Duration,
    /// A member's `AddLeg` a node has not confirmed this long after it was sent
    /// loses its call (and the leg is removed there); the node gets no new members
    /// until it answers again. Default 2 s.
    pub op_timeout: Duration,
    /// A registered node whose connection is lost (closed, or silent for
    /// `silence`) keeps its rooms and calls this long, waiting for it to register
    /// again: a link that broke while the node lives costs nobody their call. It is
    /// declared dead sooner when the media says so (a peer's link to it went
    /// silent, see [`crate::engine::EngineConfig::link_timeout`]). Zero: dead at
    /// once. Default 10 s.
    pub node_grace: Duration,
}

impl std::fmt::Debug for PlannerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannerConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("link_codec", &self.link_codec)
            .field("link_payload_type", &self.link_payload_type)
            .field("report_timeout", &self.report_timeout)
            .field("silence", &self.silence)
            .finish_non_exhaustive()
    }
}

impl PlannerConfig {
    /// Defaults with this secret and seed.
    pub fn new(secret: Option<Vec<u8>>, seed: [u8; 32]) -> PlannerConfig {
        PlannerConfig {
            secret,
            login: LoginConfig::default(),
            seed,
            link_codec: CodecKind::L16,
            link_payload_type: 96,
            report_timeout: Duration::from_secs(1),
            silence: super::link::SILENCE,
            heartbeat: super::link::HEARTBEAT,
            register_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(2),
            node_grace: Duration::from_secs(10),
            video: Default::default(),
        }
    }
}

/// What the planner asks its shell to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum PlanOutput {
    /// Send a text frame to a node.
    ToNode { node: NodeId, text: String },
    /// Close a node's connection (refused login or registration, silence).
    CloseNode { node: NodeId, reason: String },
    /// A node connection got further in its login (the transport's admission gate
    /// follows it, as for a controller's [`crate::session::Output::Login`]).
    Login { node: NodeId, step: LoginStep },
    /// The answer to the session root's `handle_op` with this `req`.
    Result { req: ReqId, result: MediaResult },
    /// A media event for the session root (its ids).
    Event(EngineEvent),
    /// The cluster's channels for callers changed (registered channels, minus the
    /// nodes' own use, minus invisible participants): the conference core counts
    /// against it, so reservations and `Channels` are cluster-wide.
    Capacity(u32),
    /// A room or member of the last scaler life, for the root to rebuild (see
    /// [`Adoption`]).
    Adopt(Adoption),
}

/// What the planner counted (for the scaler's logs and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlannerStats {
    pub nodes: usize,
    pub rooms: usize,
    pub members: usize,
    pub links: usize,
    /// Registrations refused (duplicate name, bad version, bad contents).
    pub registrations_refused: u64,
    /// Logins refused on the node face.
    pub logins_refused: u64,
    /// Frames from nodes that were not valid JSON or not a link message, or that
    /// named a request, room or leg the planner does not know.
    pub bad_frames: u64,
    /// Operations a node refused.
    pub node_refusals: u64,
    /// Nodes dropped for silence.
    pub silent_nodes: u64,
    /// Members refused for want of a channel.
    pub no_channel: u64,
    /// Status rounds answered without a node that did not answer in time.
    pub late_snapshots: u64,
    /// Nodes whose connection is lost and whose rooms wait for them now.
    pub detached: usize,
    /// Nodes that registered again within the grace and kept their calls.
    pub reattached: u64,
    /// Nodes declared dead (their calls released, their rooms repaired).
    pub nodes_lost: u64,
    /// Rooms and legs a registering node still held that the cluster had let go
    /// (torn down there).
    pub torn_down: u64,
    /// Legs the planner knew that a re-registering node no longer held (their
    /// calls released, or the link rebuilt).
    pub missing: u64,
    /// Rooms and members of the last scaler life taken over from the nodes' keeps.
    pub rooms_adopted: u64,
    pub members_adopted: u64,
}

/// A connection on the node face.
struct Conn {
    peer: SocketAddr,
    opened: Instant,
    challenges: Challenges,
    logged_in: bool,
    /// Set once it registered.
    node: Option<Node>,
    last_heard: Instant,
}

/// A registered node.
struct Node {
    name: String,
    version: String,
    workers: Vec<WorkerAddrs>,
    channels: u32,
    /// Channels its own controllers use.
    local: u32,
    /// Legs the planner placed there: members and links (invisible participants).
    members: u32,
    links: u32,
    worker_legs: Vec<u32>,
    /// Its workers' counters, from its last load report.
    stats: Vec<WorkerStats>,
    /// It let a member's `AddLeg` time out and has not answered anything since:
    /// no new member goes there until it does.
    stalled: bool,
    /// Its connection is lost at this instant: it takes no new member, and it is
    /// declared dead at `gone + node_grace` unless it registers again first.
    gone: Option<Instant>,
    /// A peer's link to it went silent: with its connection quiet or lost, that is
    /// enough to declare it dead.
    suspect: bool,
    /// Members' keeps and flag changes (mute, receive) made while it was away,
    /// sent when it registers again.
    unsent: Vec<crate::cluster::link::LegKeep>,
    unsent_ops: Vec<(usize, MediaOp)>,
}

impl Node {
    /// A node as it registers: nothing placed on it yet.
    fn new(
        name: String,
        version: String,
        workers: Vec<WorkerAddrs>,
        channels: u32,
        local: u32,
    ) -> Node {
        Node {
            name,
            version,
            worker_legs: vec![0; workers.len()],
            stats: Vec::new(),
            workers,
            channels,
            local: local.min(channels),
            members: 0,
            links: 0,
            stalled: false,
            gone: None,
            suspect: false,
            unsent: Vec::new(),
            unsent_ops: Vec::new(),
        }
    }

    /// Channels a placement may still take (none on a node that is away).
    fn free(&self) -> u32 {
        if self.gone.is_some() {
            return 0;
        }
        self.channels
            .saturating_sub(self.local)
            .saturating_sub(self.members)
            .saturating_sub(self.links)
    }

    /// Its least loaded worker (ties: the lowest index).
    fn quiet_worker(&self) -> usize {
        (0..self.worker_legs.len())
            .min_by_key(|&w| self.worker_legs[w])
            .unwrap_or(0)
    }
}

/// A room of the session root (its virtual mix), and where it lives.
#[derive(Default)]
struct Room {
    primary: Option<NodeId>,
    parts: BTreeMap<NodeId, Part>,
    /// The node the last member went to (round-robin).
    last: Option<NodeId>,
    /// Taken over from a keep, its state not handed to the root yet (that comes
    /// with its first member).
    unadopted: Option<serde_json::Value>,
    /// Taken over from a keep (not opened by this life's root).
    adopted: bool,
}

/// A room's share on one node.
struct Part {
    /// The node's mix id.
    mix: MixId,
    worker: usize,
    /// Member legs here (the root's ids).
    members: Vec<LegId>,
    /// On a secondary: its link to the primary.
    link: Option<LinkPair>,
}

/// A secondary's link: the leg on the secondary and the leg on the primary.
#[derive(Clone, Copy)]
struct LinkPair {
    here: LegId,
    there: LegId,
}

/// A member leg: the root's id -> where it lives.
#[derive(Clone, Copy)]
struct Member {
    room: MixId,
    node: NodeId,
    leg: LegId,
    worker: usize,
}

/// Who a node-side leg is.
#[derive(Clone, Copy)]
enum Owner {
    Member(LegId),
    /// An invisible participant of room `room` standing for node `peer`.
    Link {
        room: MixId,
        peer: NodeId,
    },
}

/// A node request whose answer matters.
enum Pending {
    /// A member's `AddLeg`. The root had its answer at once (the planner knows
    /// where the leg receives): a refusal, or no answer in time, loses the call.
    Member { vleg: LegId },
    /// A member's `LegStats`.
    Stats { req: ReqId, vleg: LegId },
    /// A worker's snapshot for status round `round`.
    Snapshot { round: u64, worker: usize },
    /// Only a refusal is worth noting.
    Quiet,
}

/// See the module docs.
pub struct Planner {
    cfg: PlannerConfig,
    login: LoginServer,
    rng: Rng,
    conns: BTreeMap<NodeId, Conn>,
    names: HashMap<String, NodeId>,
    rooms: HashMap<MixId, Room>,
    members: HashMap<LegId, Member>,
    owners: HashMap<(NodeId, LegId), Owner>,
    pending: HashMap<u64, (NodeId, Pending)>,
    /// Members' `AddLeg`s in the order sent, with their deadlines.
    deadlines: VecDeque<(Instant, u64)>,
    rounds: Vec<report::Round>,
    next_req: u64,
    next_id: u64,
    next_round: u64,
    next_heartbeat: Option<Instant>,
    capacity: Option<u32>,
    out: VecDeque<PlanOutput>,
    stats: PlannerStats,
    /// This scaler life (see [`keep`]), and what it keeps on the nodes: each room's
    /// state from the root, each member's, and the rooms whose keep must go out.
    epoch: u64,
    /// As JSON text: a tenth of the memory of a parsed value.
    room_states: HashMap<MixId, String>,
    dirty: std::collections::BTreeSet<MixId>,
    next_waiting: u64,
    /// Members' video streams and views, and what crosses between nodes.
    video: video::VideoPlan,
}

impl Planner {
    pub fn new(cfg: PlannerConfig) -> Planner {
        let seed = cfg.seed;
        let mut rng_seed = [0u8; 8];
        rng_seed.copy_from_slice(&crate::control::login::derive_key(&seed, "planner")[..8]);
        let demand = match crate::cluster::video::VideoDemand::new(cfg.video.clone()) {
            Ok(d) => Some(d),
            Err(e) => {
                // The shell validates its configuration first; a root of tests
                // may not: video between nodes is then refused, never a panic.
                tracing::error!(%e, "video between nodes is off: bad group pool");
                None
            }
        };
        let mut epoch = [0u8; 8];
        epoch.copy_from_slice(&crate::control::login::derive_key(&seed, "epoch")[..8]);
        Planner {
            login: LoginServer::new(
                cfg.secret.clone(),
                cfg.login.clone(),
                crate::control::login::derive_key(&seed, "node face"),
            ),
            rng: Rng::new(u64::from_le_bytes(rng_seed)),
            cfg,
            conns: BTreeMap::new(),
            names: HashMap::new(),
            rooms: HashMap::new(),
            members: HashMap::new(),
            owners: HashMap::new(),
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
            rounds: Vec::new(),
            next_req: 1,
            next_id: 1,
            next_round: 1,
            next_heartbeat: None,
            capacity: None,
            out: VecDeque::new(),
            stats: PlannerStats::default(),
            epoch: u64::from_le_bytes(epoch),
            room_states: HashMap::new(),
            dirty: Default::default(),
            next_waiting: 0,
            video: video::VideoPlan::new(demand),
        }
    }

    /// A media operation of the session root (`Output::Media`): answered with a
    /// [`PlanOutput::Result`] for `req`, now or when the node answers.
    pub fn handle_op(&mut self, now: Instant, req: ReqId, op: MediaOp) {
        let result = match op {
            MediaOp::OpenRoom { mix } => {
                self.rooms.entry(mix).or_default();
                Some(MediaResult::Done)
            }
            MediaOp::CloseRoom { mix } => {
                self.close_room(mix);
                Some(MediaResult::Done)
            }
            MediaOp::AddLeg { mix, leg, spec } => self.add_member(now, mix, leg, spec),
            MediaOp::RemoveLeg { leg } => Some(match self.remove_member(leg) {
                true => MediaResult::Done,
                false => MediaResult::Failed(format!("no leg {leg:?}")),
            }),
            MediaOp::SetMuted { leg, muted } => {
                Some(self.forward(leg, |leg| MediaOp::SetMuted { leg, muted }))
            }
            MediaOp::SetReceives { leg, receives } => {
                Some(self.forward(leg, |leg| MediaOp::SetReceives { leg, receives }))
            }
            MediaOp::SetEncodeOnce { mix, on } => {
                let parts: Vec<(NodeId, usize, MixId)> = self
                    .rooms
                    .get(&mix)
                    .map(|r| r.parts.iter().map(|(n, p)| (*n, p.worker, p.mix)).collect())
                    .unwrap_or_default();
                for (node, worker, mix) in parts {
                    self.op(
                        node,
                        worker,
                        MediaOp::SetEncodeOnce { mix, on },
                        Pending::Quiet,
                    );
                }
                Some(MediaResult::Done)
            }
            MediaOp::LegStats { leg } => match self.members.get(&leg).copied() {
                Some(m) => {
                    let op = MediaOp::LegStats { leg: m.leg };
                    self.op(m.node, m.worker, op, Pending::Stats { req, vleg: leg });
                    None
                }
                None => Some(MediaResult::Failed(format!("no leg {leg:?}"))),
            },
            MediaOp::Snapshot { legs } => self.snapshot(now, req, legs),
            MediaOp::AddVideoSource { .. }
            | MediaOp::AddVideoSink { .. }
            | MediaOp::SwitchVideoSink { .. }
            | MediaOp::RemoveVideo { .. } => Some(self.video_op(now, op)),
            // Nodes' socket work, which the scaler asks for itself; never the root's.
            MediaOp::JoinGroup { .. } | MediaOp::LeaveGroup { .. } => {
                Some(MediaResult::Failed("not an operation for a scaler".into()))
            }
        };
        if let Some(result) = result {
            self.out.push_back(PlanOutput::Result { req, result });
        }
        self.note_capacity();
    }

    /// A member's flag change, sent to its node as is (answered at once: ops on one
    /// worker keep their order, and a refusal is counted when it comes).
    fn forward(&mut self, vleg: LegId, op: impl FnOnce(LegId) -> MediaOp) -> MediaResult {
        match self.members.get(&vleg).copied() {
            Some(m) => {
                let op = op(m.leg);
                match self.node_mut(m.node) {
                    // Its node is away: the change waits for it (the last of each
                    // kind per leg), or its media would never learn it.
                    Some(n) if n.gone.is_some() => {
                        let same = |o: &(usize, MediaOp)| {
                            std::mem::discriminant(&o.1) == std::mem::discriminant(&op)
                                && link::op_ids(&o.1) == link::op_ids(&op)
                        };
                        n.unsent_ops.retain(|o| !same(o));
                        n.unsent_ops.push((m.worker, op));
                    }
                    _ => {
                        self.op(m.node, m.worker, op, Pending::Quiet);
                    }
                }
                MediaResult::Done
            }
            None => MediaResult::Failed(format!("no leg {vleg:?}")),
        }
    }

    /// Sends `op` to worker `worker` of `node`; its answer goes to `pending`.
    fn op(&mut self, node: NodeId, worker: usize, op: MediaOp, pending: Pending) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        self.pending.insert(req, (node, pending));
        let text = ScalerMsg::Op { req, worker, op }.to_json();
        self.out.push_back(PlanOutput::ToNode { node, text });
        req
    }

    /// A fresh node-side id (mix or leg), in the cluster's namespace.
    fn fresh(&mut self) -> u64 {
        let id = self.next_id | super::CLUSTER_ID_BIT;
        self.next_id += 1;
        id
    }

    /// Tells the root when the cluster's channels for callers changed.
    pub(super) fn note_capacity(&mut self) {
        let capacity: u32 = self
            .conns
            .values()
            .filter_map(|c| c.node.as_ref())
            .filter(|n| n.gone.is_none())
            .map(|n| n.channels.saturating_sub(n.local).saturating_sub(n.links))
            .fold(0u32, |a, b| a.saturating_add(b));
        if self.capacity != Some(capacity) {
            self.capacity = Some(capacity);
            self.out.push_back(PlanOutput::Capacity(capacity));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.video_timeout(now);
        self.expire_members(now);
        self.expire_rounds(now);
        if self.next_heartbeat.is_some_and(|t| t <= now) {
            self.heartbeat(now);
        } else {
            self.check_nodes(now);
        }
        self.note_capacity();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let silence = self
            .conns
            .values()
            .map(|c| match &c.node {
                Some(n) => self.node_deadline(c, n),
                None => c.opened + self.cfg.register_timeout,
            })
            .min();
        [
            self.next_heartbeat,
            silence,
            self.deadlines.front().map(|d| d.0),
            self.rounds.iter().map(|r| r.deadline).min(),
            self.video.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_output(&mut self) -> Option<PlanOutput> {
        if self.out.is_empty() && !self.dirty.is_empty() {
            self.flush_keeps();
        }
        self.out.pop_front()
    }

    pub fn stats(&self) -> PlannerStats {
        PlannerStats {
            nodes: self.names.len(),
            rooms: self.rooms.len(),
            members: self.members.len(),
            links: self
                .conns
                .values()
                .filter_map(|c| c.node.as_ref())
                .map(|n| n.links as usize)
                .sum(),
            detached: self
                .conns
                .values()
                .filter_map(|c| c.node.as_ref())
                .filter(|n| n.gone.is_some())
                .count(),
            ..self.stats.clone()
        }
    }

    /// Loses the members whose node did not answer their `AddLeg` in time (their
    /// calls are released), removes the leg there (applied after the add, whenever
    /// the node gets to it), and places no one else there until it answers.
    fn expire_members(&mut self, now: Instant) {
        while let Some(&(at, req)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            let Some((node, Pending::Member { vleg })) = self.pending.remove(&req) else {
                continue;
            };
            self.pending.insert(req, (node, Pending::Quiet));
            if let Some(n) = self.node_mut(node) {
                n.stalled = true;
            }
            tracing::warn!(node = %self.node_name(node), ?vleg, "a node did not answer an AddLeg in time");
            self.lose_member(vleg, true);
        }
    }

    /// A member whose leg could not be set up: the root releases its call.
    pub(super) fn lose_member(&mut self, vleg: LegId, remove_there: bool) {
        let Some(room) = self.members.get(&vleg).map(|m| m.room) else {
            return;
        };
        self.remove_member_on(vleg, remove_there);
        self.out
            .push_back(PlanOutput::Event(EngineEvent::Lost { room, leg: vleg }));
    }

    fn node(&self, id: NodeId) -> Option<&Node> {
        self.conns.get(&id).and_then(|c| c.node.as_ref())
    }

    fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.conns.get_mut(&id).and_then(|c| c.node.as_mut())
    }

    fn node_name(&self, id: NodeId) -> String {
        self.node(id).map(|n| n.name.clone()).unwrap_or_default()
    }
}
