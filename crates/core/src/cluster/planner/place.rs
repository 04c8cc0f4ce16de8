//! Rooms on nodes: placing members, linking nodes around a room's primary, and
//! undoing both (see the module docs of [`super`]).

use super::{LinkPair, Member, NodeId, Owner, Part, Pending, PlanOutput, Planner};
use crate::engine::{EngineEvent, LegId, LegSpec, LinkTags, MediaOp, MediaResult, MixId};
use std::time::Instant;

impl Planner {
    /// Places a member and answers at once with where its peer sends (the node's
    /// worker socket is known): call setup never waits for a node's round trip. The
    /// node's answer comes later; a refusal loses the call (see `lose_member`).
    pub(super) fn add_member(
        &mut self,
        now: Instant,
        vmix: MixId,
        vleg: LegId,
        spec: LegSpec,
    ) -> Option<MediaResult> {
        if !self.rooms.contains_key(&vmix) {
            return Some(MediaResult::Failed(format!("no room {vmix:?}")));
        }
        if self.members.contains_key(&vleg) {
            return Some(MediaResult::Failed(format!("leg {vleg:?} exists")));
        }
        if self.is_cluster_media(spec.remote) {
            return Some(MediaResult::Failed(format!(
                "{} is a cluster node's own media address",
                spec.remote
            )));
        }
        let Some(node) = self.choose(vmix) else {
            self.stats.no_channel += 1;
            return Some(MediaResult::NoChannel(
                "no cluster node has a free channel".into(),
            ));
        };
        let part = self.join(vmix, node);
        let leg = LegId(self.fresh());
        let room = self.rooms.get_mut(&vmix).expect("checked above");
        room.last = Some(node);
        let p = room.parts.get_mut(&node).expect("joined above");
        p.members.push(vleg);
        let (nmix, worker) = (p.mix, p.worker);
        debug_assert_eq!(nmix, part);
        if let Some(n) = self.node_mut(node) {
            n.members += 1;
            n.worker_legs[worker] += 1;
        }
        self.members.insert(
            vleg,
            Member {
                room: vmix,
                node,
                leg,
                worker,
            },
        );
        self.owners.insert((node, leg), Owner::Member(vleg));
        let op = MediaOp::AddLeg {
            mix: nmix,
            leg,
            spec,
        };
        let nreq = self.op(node, worker, op, Pending::Member { vleg });
        self.deadlines.push_back((now + self.cfg.op_timeout, nreq));
        Some(
            self.placed(node, vleg)
                .unwrap_or_else(|| MediaResult::Failed("the chosen node is gone".into())),
        )
    }

    /// Whether `addr` is one of the registered nodes' worker sockets (a member there
    /// would have a node send its mix to itself).
    fn is_cluster_media(&self, addr: std::net::SocketAddr) -> bool {
        self.conns
            .values()
            .filter_map(|c| c.node.as_ref())
            .any(|n| n.workers.iter().any(|w| w.rtp == addr || w.rtcp == addr))
    }

    /// The node for a room's next member (see the module docs), if any has the
    /// channels it needs.
    fn choose(&mut self, vmix: MixId) -> Option<NodeId> {
        let room = self.rooms.get(&vmix)?;
        let ids: Vec<NodeId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.node.is_some())
            .map(|(id, _)| *id)
            .collect();
        // A stalled node takes no new member (its links to existing rooms stay).
        let free = |id: NodeId| self.node(id).filter(|n| !n.stalled).map_or(0, |n| n.free());
        let Some(primary) = room.primary.filter(|p| room.parts.contains_key(p)) else {
            let open: Vec<NodeId> = ids.into_iter().filter(|&id| free(id) >= 1).collect();
            if open.is_empty() {
                return None;
            }
            return Some(open[self.rng.below(open.len() as u64) as usize]);
        };
        let last = room
            .last
            .and_then(|l| ids.iter().position(|&id| id == l))
            .unwrap_or(ids.len().saturating_sub(1));
        let n = ids.len();
        (1..=n)
            .map(|k| ids[(last + k) % n])
            .filter(|&id| match room.parts.contains_key(&id) {
                true => free(id) >= 1,
                // A new node takes the member and its link; the primary the other end.
                false => free(id) >= 2 && free(primary) >= 1,
            })
            .enumerate()
            .min_by_key(|&(turn, id)| (room.parts.get(&id).map_or(0, |p| p.members.len()), turn))
            .map(|(_, id)| id)
    }

    /// Opens the room on `node` if it is not there yet (linked to the primary, or as
    /// the primary); its node-side mix.
    fn join(&mut self, vmix: MixId, node: NodeId) -> MixId {
        if let Some(p) = self.rooms.get(&vmix).and_then(|r| r.parts.get(&node)) {
            return p.mix;
        }
        let worker = self.node(node).map_or(0, |n| n.quiet_worker());
        let mix = MixId(self.fresh());
        self.op(node, worker, MediaOp::OpenRoom { mix }, Pending::Quiet);
        let room = self.rooms.get_mut(&vmix).expect("callers check the room");
        room.parts.insert(
            node,
            Part {
                mix,
                worker,
                members: Vec::new(),
                link: None,
            },
        );
        match room
            .primary
            .filter(|p| *p != node && room.parts.contains_key(p))
        {
            Some(primary) => self.link(vmix, primary, node),
            None => room.primary = Some(node),
        }
        self.touch(vmix);
        mix
    }

    /// Joins secondary `s` to primary `p` in a room: a link leg on each side, each
    /// sending to the other's worker socket with its own SSRC.
    pub(super) fn link(&mut self, vmix: MixId, p: NodeId, s: NodeId) {
        let Some(room) = self.rooms.get(&vmix) else {
            return;
        };
        let (Some(pp), Some(sp)) = (room.parts.get(&p), room.parts.get(&s)) else {
            return;
        };
        let (pw, pmix, sw, smix) = (pp.worker, pp.mix, sp.worker, sp.mix);
        let (Some(paddr), Some(saddr)) = (
            self.node(p).and_then(|n| n.workers.get(pw)).map(|w| w.rtp),
            self.node(s).and_then(|n| n.workers.get(sw)).map(|w| w.rtp),
        ) else {
            return;
        };
        let (here, there) = (LegId(self.fresh()), LegId(self.fresh()));
        let s_ssrc = self.rng.next_u32() | 1;
        let p_ssrc = loop {
            let x = self.rng.next_u32() | 1;
            if x != s_ssrc {
                break x;
            }
        };
        let codec = self.cfg.link_codec;
        let pt = codec
            .static_payload_type()
            .unwrap_or(self.cfg.link_payload_type);
        let on_s = LegSpec::link(
            paddr,
            codec,
            pt,
            LinkTags {
                ssrc: s_ssrc,
                peer_ssrc: p_ssrc,
            },
        );
        let on_p = LegSpec::link(
            saddr,
            codec,
            pt,
            LinkTags {
                ssrc: p_ssrc,
                peer_ssrc: s_ssrc,
            },
        );
        let add_s = MediaOp::AddLeg {
            mix: smix,
            leg: here,
            spec: on_s,
        };
        let add_p = MediaOp::AddLeg {
            mix: pmix,
            leg: there,
            spec: on_p,
        };
        self.op(s, sw, add_s, Pending::Quiet);
        self.op(p, pw, add_p, Pending::Quiet);
        if let Some(part) = self.rooms.get_mut(&vmix).and_then(|r| r.parts.get_mut(&s)) {
            part.link = Some(LinkPair { here, there });
        }
        self.touch(vmix);
        self.owners.insert(
            (s, here),
            Owner::Link {
                room: vmix,
                peer: p,
            },
        );
        self.owners.insert(
            (p, there),
            Owner::Link {
                room: vmix,
                peer: s,
            },
        );
        for (node, worker) in [(s, sw), (p, pw)] {
            if let Some(n) = self.node_mut(node) {
                n.links += 1;
                n.worker_legs[worker] += 1;
            }
        }
    }

    /// Removes secondary `s`'s link to the room's primary, on both sides (a side
    /// that is gone is skipped).
    pub(super) fn unlink(&mut self, vmix: MixId, s: NodeId) {
        let Some(room) = self.rooms.get_mut(&vmix) else {
            return;
        };
        let primary = room.primary;
        let Some(part) = room.parts.get_mut(&s) else {
            return;
        };
        let Some(pair) = part.link.take() else {
            return;
        };
        let sw = part.worker;
        let pw = primary.and_then(|p| room.parts.get(&p)).map(|p| p.worker);
        self.touch(vmix);
        self.drop_leg(s, sw, pair.here);
        if let (Some(p), Some(pw)) = (primary, pw) {
            self.drop_leg(p, pw, pair.there);
        }
    }

    /// Removes one planner-placed leg on a node and its accounting.
    fn drop_leg(&mut self, node: NodeId, worker: usize, leg: LegId) {
        if self.forget_leg(node, worker, leg) && self.node(node).is_some() {
            self.op(node, worker, MediaOp::RemoveLeg { leg }, Pending::Quiet);
        }
    }

    /// The accounting of a leg that is going (whether it was known).
    pub(super) fn forget_leg(&mut self, node: NodeId, worker: usize, leg: LegId) -> bool {
        let Some(owner) = self.owners.remove(&(node, leg)) else {
            return false;
        };
        if let Some(n) = self.node_mut(node) {
            match owner {
                Owner::Member(_) => n.members = n.members.saturating_sub(1),
                Owner::Link { .. } => n.links = n.links.saturating_sub(1),
            }
            if let Some(w) = n.worker_legs.get_mut(worker) {
                *w = w.saturating_sub(1);
            }
        }
        true
    }

    /// Removes a member; whether it existed.
    pub(super) fn remove_member(&mut self, vleg: LegId) -> bool {
        self.remove_member_on(vleg, true)
    }

    /// Removes a member, and its leg on its node when `remove_there`.
    pub(super) fn remove_member_on(&mut self, vleg: LegId, remove_there: bool) -> bool {
        let Some(m) = self.members.remove(&vleg) else {
            return false;
        };
        if let Some(part) = self
            .rooms
            .get_mut(&m.room)
            .and_then(|r| r.parts.get_mut(&m.node))
        {
            part.members.retain(|&l| l != vleg);
        }
        match remove_there {
            true => self.drop_leg(m.node, m.worker, m.leg),
            false => {
                self.forget_leg(m.node, m.worker, m.leg);
            }
        }
        self.settle(m.room);
        true
    }

    /// After members left: unlinks and closes emptied secondaries, and hands the
    /// primary role on when an emptied primary would link a single secondary.
    pub(super) fn settle(&mut self, vmix: MixId) {
        let Some(room) = self.rooms.get(&vmix) else {
            return;
        };
        let primary = room.primary;
        let empty: Vec<NodeId> = room
            .parts
            .iter()
            .filter(|(id, p)| Some(**id) != primary && p.members.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for s in empty {
            self.unlink(vmix, s);
            self.close_part(vmix, s);
        }
        let Some(room) = self.rooms.get(&vmix) else {
            return;
        };
        let Some(p) = primary.filter(|p| room.parts.get(p).is_some_and(|x| x.members.is_empty()))
        else {
            return;
        };
        let others: Vec<NodeId> = room.parts.keys().copied().filter(|&id| id != p).collect();
        if let [s] = others[..] {
            self.unlink(vmix, s);
            self.close_part(vmix, p);
            if let Some(room) = self.rooms.get_mut(&vmix) {
                room.primary = Some(s);
            }
            self.touch(vmix);
        }
    }

    /// Closes a room's share on one node (its remaining legs go with it).
    fn close_part(&mut self, vmix: MixId, node: NodeId) {
        let Some(part) = self
            .rooms
            .get_mut(&vmix)
            .and_then(|r| r.parts.remove(&node))
        else {
            return;
        };
        self.touch(vmix);
        for vleg in &part.members {
            if let Some(m) = self.members.remove(vleg) {
                self.forget_leg(node, m.worker, m.leg);
            }
        }
        if let Some(pair) = part.link {
            // A linked secondary closed outright (the room's close).
            self.forget_leg(node, part.worker, pair.here);
        }
        if self.node(node).is_some() {
            let op = MediaOp::CloseRoom { mix: part.mix };
            self.op(node, part.worker, op, Pending::Quiet);
        }
    }

    /// The root closed a room: every node's share goes (a node's CloseRoom drops
    /// the link legs in it too).
    pub(super) fn close_room(&mut self, vmix: MixId) {
        let Some(room) = self.rooms.get(&vmix) else {
            return;
        };
        let primary = room.primary;
        let pw = primary.and_then(|p| room.parts.get(&p)).map(|p| p.worker);
        let ends: Vec<LegId> = room
            .parts
            .values()
            .filter_map(|p| p.link)
            .map(|l| l.there)
            .collect();
        let nodes: Vec<NodeId> = room.parts.keys().copied().collect();
        if let (Some(p), Some(pw)) = (primary, pw) {
            for leg in ends {
                self.forget_leg(p, pw, leg);
            }
        }
        for s in nodes {
            self.close_part(vmix, s);
        }
        self.rooms.remove(&vmix);
        self.room_states.remove(&vmix);
        self.dirty.remove(&vmix);
    }

    /// A node is gone: its members are lost (the root releases their calls), its
    /// links are removed on the other side, and a room it was the primary of gets a
    /// new primary, the node with the most members, re-linked to the others.
    pub(super) fn lose_node(&mut self, node: NodeId) {
        let rooms: Vec<MixId> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.parts.contains_key(&node))
            .map(|(id, _)| *id)
            .collect();
        for vmix in rooms {
            self.lose_part(vmix, node);
        }
        self.owners.retain(|(n, _), _| *n != node);
        self.video_node_gone(node);
    }

    /// Room `vmix`'s share on `node` is gone with its media: its members are lost,
    /// the primary's end of its link goes, and if it was the primary the room gets a
    /// new one.
    pub(super) fn lose_part(&mut self, vmix: MixId, node: NodeId) {
        let Some(room) = self.rooms.get_mut(&vmix) else {
            return;
        };
        let was_primary = room.primary == Some(node);
        let Some(part) = room.parts.remove(&node) else {
            return;
        };
        self.touch(vmix);
        for vleg in &part.members {
            if let Some(m) = self.members.remove(vleg) {
                self.forget_leg(node, m.worker, m.leg);
            }
            self.out.push_back(PlanOutput::Event(EngineEvent::Lost {
                room: vmix,
                leg: *vleg,
            }));
        }
        if let Some(pair) = part.link {
            self.forget_leg(node, part.worker, pair.here);
            // A secondary: the primary's end of its link goes.
            if let Some(p) = self.rooms.get(&vmix).and_then(|r| r.primary) {
                let pw = self.rooms[&vmix].parts.get(&p).map(|x| x.worker);
                if let Some(pw) = pw {
                    self.drop_leg(p, pw, pair.there);
                }
            }
        }
        if was_primary {
            self.repair(vmix, node, part.worker);
        }
        self.settle(vmix);
        if let Some(room) = self.rooms.get_mut(&vmix) {
            if room.parts.is_empty() {
                room.primary = None;
            }
        }
    }

    /// The room's primary `dead` is gone: the remaining node with the most members
    /// becomes primary and every other remaining node is linked to it.
    fn repair(&mut self, vmix: MixId, dead: NodeId, dead_worker: usize) {
        let Some(room) = self.rooms.get_mut(&vmix) else {
            return;
        };
        let Some(new) = room
            .parts
            .iter()
            .max_by_key(|(id, p)| (p.members.len(), std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)
        else {
            room.primary = None;
            return;
        };
        room.primary = Some(new);
        let parts: Vec<(NodeId, usize, Option<LinkPair>)> = room
            .parts
            .iter_mut()
            .map(|(id, p)| (*id, p.worker, p.link.take()))
            .collect();
        for (id, worker, link) in &parts {
            if let Some(pair) = link {
                // Its link to the dead primary.
                self.drop_leg(*id, *worker, pair.here);
                self.forget_leg(dead, dead_worker, pair.there);
            }
        }
        for (id, _, _) in parts {
            if id != new {
                self.link(vmix, new, id);
            }
        }
    }
}
