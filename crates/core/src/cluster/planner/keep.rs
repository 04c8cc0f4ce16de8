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
use crate::session::WorkerAddrs;
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
    /// The root's state of room `vmix` changed: kept on the room's nodes.
    pub fn handle_keep_room(&mut self, vmix: MixId, state: serde_json::Value) {
        if self.rooms.contains_key(&vmix) {
            self.room_states.insert(vmix, state);
            self.touch(vmix);
        }
    }

    /// The root's state of member `vleg` changed: kept on its node.
    pub fn handle_keep_member(&mut self, vleg: LegId, state: serde_json::Value) {
        let Some(m) = self.members.get(&vleg).copied() else {
            return;
        };
        self.member_states.insert(vleg, state.clone());
        self.send_member_keep(m.node, m.leg, vleg, state);
    }

    fn send_member_keep(
        &mut self,
        node: NodeId,
        leg: LegId,
        vleg: LegId,
        state: serde_json::Value,
    ) {
        if self.node(node).is_some_and(|n| n.gone.is_none()) {
            let keep = Keep::Leg {
                state: LegKeep {
                    leg,
                    vleg,
                    session: state,
                },
            };
            self.send(node, &ScalerMsg::Keep(keep));
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
                session: session.clone(),
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

    /// A node that registered again missed the keeps of its rooms while it was
    /// away: they all go out again.
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
        let legs: Vec<(LegId, LegId)> = self
            .members
            .iter()
            .filter(|(_, m)| m.node == node)
            .map(|(v, m)| (*v, m.leg))
            .collect();
        for (vleg, leg) in legs {
            if let Some(state) = self.member_states.get(&vleg).cloned() {
                self.send_member_keep(node, leg, vleg, state);
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
            if !room.parts.get(&node).is_some_and(|p| p.mix == h.mix) {
                continue; // adopted from another node's keep, which disagrees
            }
            mine.push((h, keep.vmix));
        }
        self.recount(node);
        self.note_capacity();
        for (h, vmix) in mine {
            for k in &h.kept {
                if h.legs.contains(&k.leg) {
                    self.adopt_member(node, h.worker, vmix, k);
                }
            }
        }
        self.recount(node);
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
            if let (Some(pair), Some(primary)) = (link, primary) {
                let room = keep.vmix;
                self.owners.insert(
                    (*id, pair.here),
                    Owner::Link {
                        room,
                        peer: primary,
                    },
                );
                self.owners
                    .insert((primary, pair.there), Owner::Link { room, peer: *id });
            }
        }
        self.rooms.insert(
            keep.vmix,
            Room {
                primary,
                parts,
                last: None,
                unadopted: Some(keep.session.clone()),
            },
        );
        self.room_states.insert(keep.vmix, keep.session.clone());
        // Its keeps are rewritten as this life's: a node that brings it back later,
        // after this life let it go, has it torn down, not taken over again.
        self.touch(keep.vmix);
        self.stats.rooms_adopted += 1;
        tracing::info!(vmix = ?keep.vmix, primary = %keep.primary, nodes = keep.parts.len(), "took over a room of the last scaler life");
        for (id, _) in ids {
            self.recount(id);
        }
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
        self.member_states.insert(k.vleg, k.session.clone());
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
        let node = Node {
            name: name.to_string(),
            version: String::new(),
            workers: Vec::new(),
            channels: 0,
            local: 0,
            members: 0,
            links: 0,
            worker_legs: Vec::new(),
            stats: Vec::new(),
            stalled: false,
            gone: Some(now),
            suspect: false,
        };
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

    /// Recomputes a node's leg counts from what the planner knows is on it.
    pub(super) fn recount(&mut self, node: NodeId) {
        let mut members = 0;
        let mut links = 0;
        let mut per_worker: Vec<(usize, u32)> = Vec::new();
        for ((n, leg), owner) in &self.owners {
            if *n != node {
                continue;
            }
            let worker = match owner {
                Owner::Member(vleg) => {
                    members += 1;
                    self.members.get(vleg).map_or(0, |m| m.worker)
                }
                Owner::Link { room, .. } => {
                    links += 1;
                    let part = self.rooms.get(room).and_then(|r| r.parts.get(&node));
                    let _ = leg;
                    part.map_or(0, |p| p.worker)
                }
            };
            per_worker.push((worker, 1));
        }
        let Some(n) = self.node_mut(node) else {
            return;
        };
        n.members = members;
        n.links = links;
        n.worker_legs.iter_mut().for_each(|w| *w = 0);
        for (w, k) in per_worker {
            if let Some(slot) = n.worker_legs.get_mut(w) {
                *slot += k;
            }
        }
    }

    /// A node that was waited for registers: it takes its media addresses from the
    /// registration.
    pub(super) fn fill_in(node: &mut Node, workers: &[WorkerAddrs]) {
        if node.workers.is_empty() {
            node.workers = workers.to_vec();
            node.worker_legs = vec![0; workers.len()];
        }
    }
}
