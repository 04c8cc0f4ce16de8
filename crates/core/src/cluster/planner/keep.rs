//! What survives the scaler: each room's state kept on its nodes, and a scaler that
//! starts again taking the rooms back from them.
//!
//! The scaler holds the only copy of what it decided (where each room lives, and the
//! conference state of its session root), so it keeps a copy where the rooms are:
//! every node of a room keeps a [`RoomKeep`] (placement, written here, and the
//! root's room state), and the node of each member leg keeps a [`LegKeep`] (the
//! root's state of that member's call). The nodes report them when they register
//! ([`Held`]). No store of its own: the state lives exactly as long as the media it
//! describes, and is lost exactly when the media is.
//!
//! A registration whose holds carry a keep of *another* scaler life (its `epoch`)
//! is taken over: the room is rebuilt here from the keep, with each of its nodes —
//! a node not registered yet stands as a node whose connection is lost, so it has
//! `node_grace` to come back — and each member the registering node kept is handed
//! to the root ([`PlanOutput::Adopt`]) to rebuild its call. Keeps of this life that
//! the planner does not know are what it let go: reconciled away as before.

use super::{Conn, LinkPair, Member, Node, NodeId, Owner, Part, PlanOutput, Planner, Room};
use crate::cluster::link::{Held, Keep, LegKeep, PartKeep, RoomKeep, ScalerMsg};
use crate::cluster::CLUSTER_ID_BIT;
use crate::engine::{LegId, MixId};
use crate::session::{Kept, WorkerAddrs};
use std::net::SocketAddr;
use std::time::Instant;

/// What the planner hands its session root to rebuild after a restart.
#[derive(Clone, Debug, PartialEq)]
pub enum Adoption {
    /// A room of the last scaler life, with the root's state of it (before its
    /// first member).
    Room {
        vmix: MixId,
        state: serde_json::Value,
    },
    /// A member of an adopted room: its leg `vleg` runs on `node`, whose worker
    /// receives at `addrs`.
    Member {
        vmix: MixId,
        vleg: LegId,
        node: String,
        addrs: WorkerAddrs,
        state: serde_json::Value,
    },
}

/// Node ids of nodes a keep names that have not registered yet (far above the
/// shell's connection numbers).
const WAITING_IDS: u64 = 1 << 60;

impl Planner {
    /// The root's `Output::Keep`: a room's or a member's state changed.
    pub fn handle_keep(&mut self, what: Kept, state: serde_json::Value) {
        match what {
            Kept::Room(vmix) => self.keep_room(vmix, state),
            Kept::Member(vleg) => self.keep_member(vleg, state),
        }
    }

    /// The root's state of room `vmix` changed: kept on the room's nodes.
    fn keep_room(&mut self, vmix: MixId, state: serde_json::Value) {
        if self.rooms.contains_key(&vmix) {
            self.room_states.insert(vmix, state.to_string());
            self.touch(vmix);
        }
    }

    /// The root's state of member `vleg` changed: kept on its node (or, while the
    /// node is away, sent when it is back).
    fn keep_member(&mut self, vleg: LegId, state: serde_json::Value) {
        let Some(m) = self.members.get(&vleg).copied() else {
            return;
        };
        let keep = LegKeep {
            leg: m.leg,
            vleg,
            session: state,
        };
        let Some(n) = self.node_mut(m.node) else {
            return;
        };
        if n.gone.is_some() {
            n.unsent.retain(|k| k.vleg != vleg);
            n.unsent.push(keep);
        } else {
            self.send(m.node, &ScalerMsg::Keep(Keep::Leg { state: keep }));
        }
    }

    /// Room `vmix`'s placement changed: its keep goes out again.
    pub(super) fn touch(&mut self, vmix: MixId) {
        self.dirty.insert(vmix);
    }

    /// Sends the keeps of the rooms that changed to every node of theirs that is
    /// connected (after the operations that changed them).
    pub(super) fn flush_keeps(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for vmix in dirty {
            let (Some(room), Some(session)) = (self.rooms.get(&vmix), self.room_states.get(&vmix))
            else {
                continue;
            };
            let name = |id: &NodeId| self.node(*id).map(|n| n.name.clone());
            let Ok(session) = serde_json::from_str::<serde_json::Value>(session) else {
                continue;
            };
            let Some(primary) = room.primary.as_ref().and_then(name) else {
                continue;
            };
            let parts: Vec<PartKeep> = room
                .parts
                .iter()
                .filter_map(|(id, p)| {
                    Some(PartKeep {
                        node: name(id)?,
                        mix: p.mix,
                        worker: p.worker,
                        link: p.link.map(|l| (l.here, l.there)),
                    })
                })
                .collect();
            let keep = RoomKeep {
                epoch: self.epoch,
                vmix,
                primary,
                parts,
                session,
            };
            let to: Vec<(NodeId, MixId)> = room
                .parts
                .iter()
                .filter(|(id, _)| self.node(**id).is_some_and(|n| n.gone.is_none()))
                .map(|(id, p)| (*id, p.mix))
                .collect();
            for (node, mix) in to {
                let state = keep.clone();
                self.send(node, &ScalerMsg::Keep(Keep::Room { mix, state }));
            }
        }
    }

    /// A node that registered again missed what changed while it was away: its
    /// rooms' keeps go out again, and its members' keeps and flag changes.
    pub(super) fn rekeep(&mut self, node: NodeId) {
        let rooms: Vec<MixId> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.parts.contains_key(&node))
            .map(|(v, _)| *v)
            .collect();
        for vmix in rooms {
            self.touch(vmix);
        }
        let unsent = self
            .node_mut(node)
            .map(|n| std::mem::take(&mut n.unsent))
            .unwrap_or_default();
        let ops = self
            .node_mut(node)
            .map(|n| std::mem::take(&mut n.unsent_ops))
            .unwrap_or_default();
        // Only for members still placed there: the node refuses what names a leg
        // it no longer has.
        let placed = |p: &Planner, leg: LegId| p.owners.contains_key(&(node, leg));
        for (worker, op) in ops {
            if crate::cluster::link::op_ids(&op)
                .1
                .is_some_and(|l| placed(self, LegId(l)))
            {
                self.op(node, worker, op, super::Pending::Quiet);
            }
        }
        for keep in unsent {
            if placed(self, keep.leg) {
                self.send(node, &ScalerMsg::Keep(Keep::Leg { state: keep }));
            }
        }
    }

    /// Takes over what registering node `node` holds from another scaler life
    /// (see the module docs); the reconciliation that follows then keeps it.
    pub(super) fn adopt(&mut self, now: Instant, node: NodeId, holds: &[Held]) {
        for h in holds {
            let ids = std::iter::once(h.mix.0).chain(h.legs.iter().map(|l| l.0));
            for id in ids {
                self.next_id = self.next_id.max((id & !CLUSTER_ID_BIT) + 1);
            }
        }
        let Some(name) = self.node(node).map(|n| n.name.clone()) else {
            return;
        };
        // The rooms first (their links count against the cluster's channels), then
        // the capacity, then the members, which the root admits against it.
        let mut mine = Vec::new();
        for h in holds {
            let Some(keep) = h.room.as_ref().filter(|k| k.epoch != self.epoch) else {
                continue;
            };
            if !keep.parts.iter().any(|p| p.node == name && p.mix == h.mix) {
                continue; // a keep that does not describe this share
            }
            if !self.rooms.contains_key(&keep.vmix) && !self.adopt_room(now, keep) {
                continue;
            }
            let Some(room) = self.rooms.get(&keep.vmix) else {
                continue;
            };
            // A room of this life under that id (a clock gone back between lives)
            // is not the kept one; nor is a share another node's keep disagrees on.
            if !room.adopted || !room.parts.get(&node).is_some_and(|p| p.mix == h.mix) {
                continue;
            }
            mine.push((h, keep.vmix));
        }
        self.note_capacity();
        for (h, vmix) in mine {
            for k in &h.kept {
                if h.legs.contains(&k.leg) {
                    self.adopt_member(node, h.worker, vmix, k);
                }
            }
        }
    }

    /// Rebuilds room `keep.vmix`'s placement from a keep; whether it could.
    fn adopt_room(&mut self, now: Instant, keep: &RoomKeep) -> bool {
        if !keep.parts.iter().any(|p| p.node == keep.primary) {
            return false;
        }
        let mut parts = std::collections::BTreeMap::new();
        let mut ids = Vec::new();
        for p in &keep.parts {
            let id = match self.names.get(&p.node) {
                Some(&id) => id,
                None => self.wait_for(now, &p.node),
            };
            ids.push((id, p));
        }
        let primary = ids
            .iter()
            .find(|(_, p)| p.node == keep.primary)
            .map(|x| x.0);
        for (id, p) in &ids {
            let link = p.link.map(|(here, there)| LinkPair { here, there });
            parts.insert(
                *id,
                Part {
                    mix: p.mix,
                    worker: p.worker,
                    members: Vec::new(),
                    link,
                },
            );
            let primary_worker = keep.parts.iter().find(|x| x.node == keep.primary);
            if let (Some(pair), Some(primary), Some(pw)) = (link, primary, primary_worker) {
                let room = keep.vmix;
                let here = Owner::Link {
                    room,
                    peer: primary,
                };
                self.owners.insert((*id, pair.here), here);
                let there = Owner::Link { room, peer: *id };
                self.owners.insert((primary, pair.there), there);
                self.count_leg(*id, p.worker, false);
                self.count_leg(primary, pw.worker, false);
            }
        }
        self.rooms.insert(
            keep.vmix,
            Room {
                primary,
                parts,
                last: None,
                unadopted: Some(keep.session.clone()),
                adopted: true,
            },
        );
        self.room_states.insert(keep.vmix, keep.session.to_string());
        // Its keeps are rewritten as this life's: a node that brings it back later,
        // after this life let it go, has it torn down, not taken over again.
        self.touch(keep.vmix);
        self.stats.rooms_adopted += 1;
        tracing::info!(vmix = ?keep.vmix, primary = %keep.primary, nodes = keep.parts.len(), "took over a room of the last scaler life");
        true
    }

    /// A member `k` of adopted room `vmix` on `node`: placed here, and handed to the
    /// root (after its room's state, for the first).
    fn adopt_member(&mut self, node: NodeId, worker: usize, vmix: MixId, k: &LegKeep) {
        if self.members.contains_key(&k.vleg) || self.owners.contains_key(&(node, k.leg)) {
            return;
        }
        let Some(n) = self.node(node) else {
            return;
        };
        let (name, Some(addrs)) = (n.name.clone(), n.workers.get(worker).copied()) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&vmix) else {
            return;
        };
        if let Some(state) = room.unadopted.take() {
            self.out
                .push_back(PlanOutput::Adopt(Adoption::Room { vmix, state }));
        }
        if let Some(p) = room.parts.get_mut(&node) {
            p.members.push(k.vleg);
        }
        let m = Member {
            room: vmix,
            node,
            leg: k.leg,
            worker,
        };
        self.members.insert(k.vleg, m);
        self.owners.insert((node, k.leg), Owner::Member(k.vleg));
        self.count_leg(node, worker, true);
        self.stats.members_adopted += 1;
        self.out.push_back(PlanOutput::Adopt(Adoption::Member {
            vmix,
            vleg: k.vleg,
            node: name,
            addrs,
            state: k.session.clone(),
        }));
    }

    /// A node a keep names that has not registered yet: it stands as a node whose
    /// connection is lost, with the grace to register.
    fn wait_for(&mut self, now: Instant, name: &str) -> NodeId {
        let id = NodeId(WAITING_IDS + self.next_waiting);
        self.next_waiting += 1;
        let mut node = Node::new(name.to_string(), String::new(), Vec::new(), 0, 0);
        node.gone = Some(now);
        let conn = Conn {
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            opened: now,
            challenges: crate::control::auth::Challenges::new(),
            logged_in: false,
            node: Some(node),
            last_heard: now,
        };
        self.conns.insert(id, conn);
        self.names.insert(name.to_string(), id);
        tracing::info!(
            node = name,
            "a kept room names a node not registered yet; waiting for it"
        );
        id
    }

    /// One more leg taken over on a node: a member or a link end.
    fn count_leg(&mut self, node: NodeId, worker: usize, member: bool) {
        let Some(n) = self.node_mut(node) else {
            return;
        };
        match member {
            true => n.members += 1,
            false => n.links += 1,
        }
        // A node waited for has no workers yet; its counts wait with it.
        if n.worker_legs.len() <= worker {
            n.worker_legs.resize(worker + 1, 0);
        }
        n.worker_legs[worker] += 1;
    }

    /// A node that was waited for registers: it takes its media addresses from the
    /// registration.
    pub(super) fn fill_in(node: &mut Node, workers: &[WorkerAddrs]) {
        if node.workers.is_empty() {
            node.workers = workers.to_vec();
            node.worker_legs.resize(workers.len(), 0);
        }
    }
}
