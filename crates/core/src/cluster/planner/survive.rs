//! Nodes that go away and come back: a lost connection is not a lost node.
//!
//! A registered node whose connection closes, or that falls silent, is *detached*:
//! its rooms, members and links stay as they are (its media runs on; it takes no new
//! member) for `node_grace`. Registering again under its name within the grace
//! *reattaches* it: the new connection takes the node's place and the planner
//! *reconciles* what the node says it still holds ([`Register::holds`]) with what
//! the cluster knows — held and unknown is torn down there, known and not held is
//! lost (its call released) or, for a link, rebuilt. A node that registers after
//! being declared dead is reconciled the same way against nothing: everything it
//! still holds is torn down, counted and logged.
//!
//! The grace would make a dead primary cost its rooms `node_grace` of silence, so
//! the media is asked too: a link leg that hears nothing for the engine's
//! `link_timeout` is reported by the node at its other end, and a node that is
//! detached, or whose connection has been quiet for more than a heartbeat and a
//! half, with such a report against it is declared dead at once (its rooms get a
//! new primary and are re-linked).

use super::{Conn, Node, NodeId, Owner, Pending, Planner};
use crate::cluster::link::{Held, Register, ScalerMsg};
use crate::engine::{LegId, MediaOp, MixId};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

impl Planner {
    /// When the planner must look at this registered node next.
    pub(super) fn node_deadline(&self, c: &Conn, n: &Node) -> Instant {
        match (n.gone, n.suspect) {
            (Some(gone), _) => gone + self.cfg.node_grace,
            (None, true) => c.last_heard + self.suspect_quiet(),
            (None, false) => c.last_heard + self.cfg.silence,
        }
    }

    /// Quiet this long with a silent link against it, a node is dead.
    fn suspect_quiet(&self) -> std::time::Duration {
        (self.cfg.heartbeat * 3 / 2).min(self.cfg.silence)
    }

    /// A registered node's connection is gone (`why`): detached for the grace, or
    /// dead at once (no grace, nothing on it, or its links already silent).
    pub(super) fn connection_lost(&mut self, now: Instant, node: NodeId, why: &str) {
        let grace = self.cfg.node_grace;
        let Some(n) = self.node_mut(node) else {
            return self.drop_node(node, why);
        };
        if n.gone.is_some() {
            return; // already waiting for it
        }
        if grace.is_zero() || n.members + n.links == 0 || n.suspect {
            return self.drop_node(node, why);
        }
        n.gone = Some(now);
        tracing::warn!(
            name = %n.name, why, members = n.members, links = n.links, ?grace,
            "node connection lost; its calls wait for it to register again"
        );
        self.note_capacity();
    }

    /// Registered nodes past their deadline, and connections that never
    /// registered.
    pub(super) fn check_nodes(&mut self, now: Instant) {
        let due: Vec<(NodeId, Verdict)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| {
                let verdict = match &c.node {
                    None if now >= c.opened + self.cfg.register_timeout => Verdict::Unregistered,
                    Some(n) if now >= self.node_deadline(c, n) => match (n.gone, n.suspect) {
                        (Some(_), _) => Verdict::GraceOver,
                        (None, true) => Verdict::SilentLinks,
                        (None, false) => Verdict::Silent,
                    },
                    _ => return None,
                };
                Some((*id, verdict))
            })
            .collect();
        for (node, verdict) in due {
            match verdict {
                Verdict::Unregistered => {
                    self.close(node, "did not register in time");
                    self.drop_node(node, "did not register in time");
                }
                Verdict::GraceOver => self.drop_node(node, "did not register again in time"),
                Verdict::SilentLinks => {
                    self.close(node, "silent, and its links are silent");
                    self.drop_node(node, "silent, and its links are silent");
                }
                Verdict::Silent => {
                    self.stats.silent_nodes += 1;
                    self.close(node, "silent");
                    self.connection_lost(now, node, "silent");
                }
            }
        }
    }

    /// `reporter`'s link to `peer` in `room` heard nothing for the link timeout.
    pub(super) fn link_silent(
        &mut self,
        now: Instant,
        reporter: NodeId,
        peer: NodeId,
        room: MixId,
    ) {
        let quiet = self.suspect_quiet();
        let heard = self.conns.get(&peer).map(|c| c.last_heard);
        let reporter_name = self.node_name(reporter);
        let Some(n) = self.node_mut(peer) else {
            return;
        };
        n.suspect = true;
        let name = n.name.clone();
        let dead = n.gone.is_some() || heard.is_some_and(|h| now >= h + quiet);
        tracing::warn!(node = %name, reporter = %reporter_name, ?room, dead, "a link to a node carries no media");
        if dead {
            if n.gone.is_none() {
                self.close(peer, "silent, and its links are silent");
            }
            self.drop_node(
                peer,
                "its links are silent and its connection is not answering",
            );
        }
    }

    /// A registration under the name of a detached node: the new connection takes
    /// its place (same media addresses), and what it holds is reconciled.
    /// Returns the registration back when the node cannot be taken over.
    pub(super) fn reattach(
        &mut self,
        now: Instant,
        new: NodeId,
        reg: Register,
    ) -> Option<Register> {
        let Some(&old) = self.names.get(&reg.name) else {
            return Some(reg);
        };
        // A node a kept room named before it registered has no addresses yet.
        let same = self.node(old).is_some_and(|n| {
            n.gone.is_some() && (n.workers == reg.workers || n.workers.is_empty())
        });
        if !same {
            if self.node(old).is_some_and(|n| n.gone.is_some()) {
                // Other media addresses: its legs are not where the cluster thinks.
                self.drop_node(old, "registered again with other media addresses");
            }
            return Some(reg);
        }
        let Some(mut node) = self.conns.remove(&old).and_then(|c| c.node) else {
            return Some(reg);
        };
        Self::fill_in(&mut node, &reg.workers);
        node.gone = None;
        node.suspect = false;
        node.stalled = false;
        node.channels = reg.channels;
        node.local = reg.local.min(reg.channels);
        node.version = reg.version;
        tracing::info!(name = %node.name, members = node.members, links = node.links, "node registered again; its calls go on");
        if let Some(c) = self.conns.get_mut(&new) {
            c.last_heard = now;
            c.node = Some(node);
        }
        self.names.insert(reg.name, new);
        self.rekey(old, new);
        self.stats.reattached += 1;
        // Accepted before the reconciliation's operations: a node takes no
        // operation before its registration is answered.
        let ok = ScalerMsg::Registered {
            ok: true,
            error: None,
        };
        self.send(new, &ok);
        self.adopt(now, new, &reg.holds);
        self.reconcile(new, reg.holds);
        self.rekeep(new);
        self.sweep_unadopted();
        None
    }

    /// Rooms taken over from keeps whose nodes have all registered (or were given
    /// up) without a single member to hand to the root: nobody is in them, they
    /// close.
    pub(super) fn sweep_unadopted(&mut self) {
        let empty: Vec<MixId> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.unadopted.is_some())
            .filter(|(_, r)| {
                r.parts
                    .keys()
                    .all(|id| self.node(*id).is_some_and(|n| n.gone.is_none()))
            })
            .map(|(v, _)| *v)
            .collect();
        for vmix in empty {
            tracing::info!(
                ?vmix,
                "a room taken over from a keep has no member left; closed"
            );
            self.close_room(vmix);
        }
    }

    /// Every reference to node `old` now names `new`; what was asked of `old` and
    /// not answered will never be (the reconciliation decides instead).
    fn rekey(&mut self, old: NodeId, new: NodeId) {
        for room in self.rooms.values_mut() {
            if let Some(part) = room.parts.remove(&old) {
                room.parts.insert(new, part);
            }
            for slot in [&mut room.primary, &mut room.last] {
                if *slot == Some(old) {
                    *slot = Some(new);
                }
            }
        }
        for m in self.members.values_mut() {
            if m.node == old {
                m.node = new;
            }
        }
        let keys: Vec<(NodeId, LegId)> = self
            .owners
            .keys()
            .filter(|(n, _)| *n == old)
            .copied()
            .collect();
        for key in keys {
            if let Some(owner) = self.owners.remove(&key) {
                self.owners.insert((new, key.1), owner);
            }
        }
        for owner in self.owners.values_mut() {
            if let Owner::Link { peer, .. } = owner {
                if *peer == old {
                    *peer = new;
                }
            }
        }
        self.fail_pending(old, new, "node reconnected");
    }

    /// Makes node `node` hold exactly what the cluster knows it holds (for a node
    /// the cluster does not know, new or declared dead before: nothing).
    pub(super) fn reconcile(&mut self, node: NodeId, holds: Vec<Held>) {
        let known: HashMap<MixId, MixId> = self
            .rooms
            .iter()
            .filter_map(|(v, r)| r.parts.get(&node).map(|p| (p.mix, *v)))
            .collect();
        let held_mixes: HashSet<MixId> = holds.iter().map(|h| h.mix).collect();
        let held_legs: HashSet<LegId> = holds.iter().flat_map(|h| h.legs.iter().copied()).collect();
        let name = self.node_name(node);
        let mut torn = 0u64;
        for h in &holds {
            if !known.contains_key(&h.mix) {
                self.op(
                    node,
                    h.worker,
                    MediaOp::CloseRoom { mix: h.mix },
                    Pending::Quiet,
                );
                torn += 1 + h.legs.len() as u64;
                continue;
            }
            for &leg in &h.legs {
                if !self.owners.contains_key(&(node, leg)) {
                    self.op(node, h.worker, MediaOp::RemoveLeg { leg }, Pending::Quiet);
                    torn += 1;
                }
            }
        }
        if torn > 0 {
            tracing::warn!(node = %name, torn, "a node held rooms or legs the cluster had let go; torn down there");
            self.stats.torn_down += torn;
        }
        // Known shares the node no longer has at all (it restarted, say).
        let lost_rooms: Vec<MixId> = known
            .iter()
            .filter(|(mix, _)| !held_mixes.contains(mix))
            .map(|(_, v)| *v)
            .collect();
        for vmix in lost_rooms {
            self.stats.missing += 1;
            self.lose_part(vmix, node);
        }
        // Known legs it no longer has, in rooms it still holds.
        let mut missing: Vec<(LegId, Owner)> = self
            .owners
            .iter()
            .filter(|((n, leg), _)| *n == node && !held_legs.contains(leg))
            .map(|((_, leg), o)| (*leg, *o))
            .collect();
        missing.sort_unstable_by_key(|(leg, _)| *leg);
        for (leg, owner) in missing {
            self.stats.missing += 1;
            tracing::warn!(node = %name, ?leg, "a node no longer holds a leg the cluster placed");
            match owner {
                Owner::Member(vleg) => {
                    let worker = self.members.get(&vleg).map_or(0, |m| m.worker);
                    self.forget_leg(node, worker, leg);
                    self.lose_member(vleg, false);
                }
                Owner::Link { room, peer } => self.rebuild_link(room, node, leg, peer),
            }
        }
        self.note_capacity();
    }

    /// A link end `leg` on `node` (towards `peer`) is missing: the pair is removed
    /// and the secondary linked to the primary again.
    fn rebuild_link(&mut self, vmix: MixId, node: NodeId, leg: LegId, peer: NodeId) {
        let Some(room) = self.rooms.get(&vmix) else {
            return;
        };
        let Some(primary) = room.primary else {
            return;
        };
        let secondary = if primary == node { peer } else { node };
        let worker = room.parts.get(&node).map_or(0, |p| p.worker);
        self.forget_leg(node, worker, leg);
        self.unlink(vmix, secondary);
        self.link(vmix, primary, secondary);
    }
}

/// What a node past its deadline gets.
enum Verdict {
    Unregistered,
    GraceOver,
    SilentLinks,
    Silent,
}
