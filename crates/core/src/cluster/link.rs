//! The link between a node and its scaler: JSON text frames over one WebSocket that
//! the node dials (see `docs/cluster.md`).
//!
//! 1. Login, the project's HMAC challenge with proof both ways: the node sends
//!    [`crate::control::msg::ClientMsg::AppChallenge`] and `AppLogin` (the node is
//!    the client), the scaler answers `AppChallengeResult` and `AppLoginResult`
//!    with its proof, exactly as a controller logs in to a node.
//! 2. [`NodeMsg::Register`]; the scaler answers [`ScalerMsg::Registered`] (refused:
//!    a name another live node holds, an impossible registration).
//! 3. Then, both ways and pipelined: the scaler's [`ScalerMsg::Op`]s, each
//!    answered by one [`NodeMsg::Result`] with its `req`, in order per worker; the
//!    node's [`NodeMsg::Event`]s; [`NodeMsg::Load`] every [`HEARTBEAT`] (it is the
//!    node's heartbeat) and [`ScalerMsg::Heartbeat`] the other way. Either side
//!    that hears nothing for [`SILENCE`] drops the link (the node then reconnects
//!    with backoff).

use crate::engine::{EngineEvent, LegId, MediaOp, MediaResult, MixId, WorkerStats};
use crate::session::WorkerAddrs;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often each side speaks when it has nothing else to say.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Silence after which a peer counts as gone.
pub const SILENCE: Duration = Duration::from_secs(3);

/// Version of the link messages.
pub const LINK_VERSION: u32 = 1;

/// What a node tells its scaler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mt")]
pub enum NodeMsg {
    /// Sent once, after the login.
    Register(Register),
    /// The node's current load; also its heartbeat.
    Load(Load),
    /// The answer to the [`ScalerMsg::Op`] with this `req`.
    Result { req: u64, result: MediaResult },
    /// A media event on a leg the scaler placed (DTMF, talking, media timeout, a
    /// latching move). Events of the node's own calls are never sent.
    Event { event: EngineEvent },
}

/// A node's registration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Register {
    /// Unique in the cluster: by default `scnf-<last 3 bytes of the media
    /// interface's MAC>-<interface id>` (like `scnf-08-03-01-1`).
    pub name: String,
    /// The node's software version.
    pub version: String,
    /// [`LINK_VERSION`] the node speaks.
    pub link_version: u32,
    /// Its media workers, in index order: where a leg on worker `i` receives.
    pub workers: Vec<WorkerAddrs>,
    /// The conference channels it offers.
    pub channels: u32,
    /// Of those, what its own (standalone) controllers use now.
    pub local: u32,
    /// The rooms and legs a scaler placed that the node still runs (it keeps them
    /// while its link is down: media never depends on the scaler). The scaler
    /// reconciles: it takes back what it still knows and tears down the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<Held>,
}

/// One room a scaler placed on a node, as the node holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub worker: usize,
    pub mix: MixId,
    /// Its legs: members and links.
    pub legs: Vec<LegId>,
    /// The room's state as the scaler last kept it here ([`ScalerMsg::Keep`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomKeep>,
    /// The members' states kept here, one per member leg the scaler kept one for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<LegKeep>,
}

/// A room's state kept on every node of the room, so that a scaler that restarts
/// can take the room back whole ([`Register::holds`]): where it lives (written by
/// the planner) and what the conference decided (written by the session root,
/// opaque to the planner and the node).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomKeep {
    /// The scaler life that wrote it: a scaler takes back only rooms of another
    /// life (what its own life let go stays let go).
    pub epoch: u64,
    /// The room's id in the scaler's session root (its virtual mix).
    pub vmix: MixId,
    /// Node name of the room's primary.
    pub primary: String,
    /// Its share on each node.
    pub parts: Vec<PartKeep>,
    /// The session root's state of the room.
    pub session: serde_json::Value,
}

/// A room's share on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartKeep {
    pub node: String,
    pub mix: MixId,
    pub worker: usize,
    /// On a secondary, its link to the primary: the leg here and the leg there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<(LegId, LegId)>,
}

/// A member's state, kept on the node that carries its leg.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LegKeep {
    /// The leg on the node.
    pub leg: LegId,
    /// Its id in the scaler's session root.
    pub vleg: LegId,
    /// The session root's state of the member (its call).
    pub session: serde_json::Value,
}

/// A node's load, sent every [`HEARTBEAT`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Channels its own controllers use now (the scaler counts its own legs).
    pub local: u32,
    /// Its workers' counters and clocks, in index order.
    #[serde(default)]
    pub workers: Vec<WorkerStats>,
}

/// What a scaler tells a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mt")]
pub enum ScalerMsg {
    /// The answer to [`NodeMsg::Register`].
    Registered {
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Apply `op` on worker `worker`; answer with [`NodeMsg::Result`] and `req`.
    /// Every mix and leg id in it carries [`super::CLUSTER_ID_BIT`].
    Op {
        req: u64,
        worker: usize,
        op: MediaOp,
    },
    /// The scaler is alive.
    Heartbeat,
    /// Keep this state with the room (`Room`) or the member leg (`Leg`), replacing
    /// what was kept before; reported back in [`Register::holds`]. It is dropped
    /// with its room or leg. No answer.
    Keep(Keep),
}

/// What [`ScalerMsg::Keep`] carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "of")]
pub enum Keep {
    /// For the node's mix `mix`.
    Room { mix: MixId, state: RoomKeep },
    /// For a member leg on the node.
    Leg { state: LegKeep },
}

impl NodeMsg {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("link messages always serialise")
    }
}

impl ScalerMsg {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("link messages always serialise")
    }
}

/// The mix and leg ids an operation names (for the node's namespace check).
pub fn op_ids(op: &MediaOp) -> (Option<u64>, Option<u64>) {
    match op {
        MediaOp::OpenRoom { mix } | MediaOp::CloseRoom { mix } => (Some(mix.0), None),
        MediaOp::SetEncodeOnce { mix, .. } => (Some(mix.0), None),
        MediaOp::AddLeg { mix, leg, .. } => (Some(mix.0), Some(leg.0)),
        MediaOp::RemoveLeg { leg }
        | MediaOp::SetMuted { leg, .. }
        | MediaOp::SetReceives { leg, .. }
        | MediaOp::LegStats { leg } => (None, Some(leg.0)),
        MediaOp::AddVideoSource { mix, video, .. } | MediaOp::AddVideoSink { mix, video, .. } => {
            (Some(mix.0), Some(video.0))
        }
        MediaOp::SwitchVideoSink { video, .. } | MediaOp::RemoveVideo { video } => {
            (None, Some(video.0))
        }
        MediaOp::Snapshot { .. } | MediaOp::JoinGroup { .. } | MediaOp::LeaveGroup { .. } => {
            (None, None)
        }
    }
}

/// Whether a node may apply `op` for a scaler: every id it names carries
/// [`super::CLUSTER_ID_BIT`] (a scaler never touches the node's own calls).
pub fn op_allowed(op: &MediaOp) -> bool {
    let (mix, leg) = op_ids(op);
    let source = match op {
        MediaOp::AddVideoSink { source, .. } | MediaOp::SwitchVideoSink { source, .. } => {
            source.map(|s| s.0)
        }
        _ => None,
    };
    [mix, leg, source]
        .into_iter()
        .flatten()
        .all(super::is_cluster_id)
}

/// Whether an engine event is on a scaler's leg (the node forwards only those).
pub fn event_is_cluster(event: &EngineEvent) -> bool {
    let leg = match event {
        EngineEvent::Dtmf { leg, .. }
        | EngineEvent::Talking { leg, .. }
        | EngineEvent::MediaTimeout { leg, .. }
        | EngineEvent::Latched { leg, .. }
        | EngineEvent::Lost { leg, .. } => leg,
    };
    super::is_cluster_id(leg.0)
}
