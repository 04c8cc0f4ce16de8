//! The cluster: a scaler that nodes register to, and rooms that span nodes.
//!
//! The scaler runs the *same* session root as a node ([`crate::session::Session`]):
//! the conference core decides room semantics cluster-wide and emits media
//! operations for one virtual worker. The [`planner::Planner`] executes them on the
//! registered nodes: it places each member on a node, opens the room there, and
//! joins the nodes of a room with link legs (invisible participants, a star around
//! the room's primary node). The nodes are media executors: over one WebSocket they
//! take [`link::ScalerMsg::Op`]s and report results, events and their load
//! ([`link::NodeMsg`]). Video crosses between nodes by multicast (or one copy
//! per node) only while someone views it; [`video::VideoDemand`] decides which
//! streams go where and hands out their groups.
//!
//! Both ends are sans-IO: the shells (`scnf scaler`, `scnf node --scaler`) move
//! frames and time.

pub mod link;
pub mod planner;
#[cfg(test)]
mod tests;
pub mod video;

use crate::control::msg::{InvisibleInfo, NodeInfo};
use crate::engine::{LegId, MixId};
use serde::{Deserialize, Serialize};

/// Set in every mix and leg id a scaler gives a node, so the node's own session
/// root (its standalone listener) and the scaler can never name each other's rooms
/// or legs: a node refuses a scaler operation on an id without it.
pub const CLUSTER_ID_BIT: u64 = 1 << 62;

/// Whether a node-side id came from a scaler.
pub fn is_cluster_id(id: u64) -> bool {
    id & CLUSTER_ID_BIT != 0
}

/// What a scaler adds to its one virtual worker's snapshot, so `Status` and
/// `Health` describe the cluster: every node, the node of every member leg, and the
/// rooms' invisible participants. Ids are the session root's (virtual) ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    pub nodes: Vec<NodeInfo>,
    /// Member leg -> the name of the node it is on.
    pub members: Vec<(LegId, String)>,
    /// Room (virtual mix) -> its primary node's name.
    pub primaries: Vec<(MixId, String)>,
    /// Room (virtual mix) -> one of its invisible participants.
    pub invisible: Vec<(MixId, InvisibleInfo)>,
    /// Members' video streams (the root's ids): the node each is on, and the
    /// multicast group it is published to for other nodes, if it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub video: Vec<(crate::engine::VideoId, String, Option<String>)>,
}
