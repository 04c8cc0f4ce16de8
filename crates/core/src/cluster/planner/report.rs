//! What the planner answers the root's `Snapshot`: the cluster as one virtual
//! worker, with a [`ClusterView`] of nodes, members' nodes and invisible
//! participants.
//!
//! `Health` (`legs: false`) is answered at once from what the nodes' load reports
//! said: it never waits for a node. `Status` asks every worker of every node for
//! its legs and answers when all are in, or after `report_timeout` without the
//! nodes that did not answer (counted): a slow node delays a report by at most that.

use super::{NodeId, Owner, Pending, PlanOutput, Planner};
use crate::cluster::ClusterView;
use crate::control::msg::{InvisibleInfo, NodeInfo};
use crate::engine::{LegId, LegStats, MediaOp, MediaResult, MixId, WorkerSnapshot, WorkerStats};
use crate::engine::{VideoId, VideoStats};
use crate::session::ReqId;
use std::collections::HashMap;
use std::time::Instant;

/// A `Status` snapshot in flight.
pub(super) struct Round {
    id: u64,
    req: ReqId,
    pub(super) deadline: Instant,
    /// Worker snapshots still awaited.
    waiting: usize,
    legs: Vec<(LegId, LegStats)>,
    invisible: Vec<(MixId, InvisibleInfo)>,
    /// Members' video streams and views, by the root's ids.
    video: Vec<(VideoId, VideoStats)>,
}

impl Planner {
    pub(super) fn snapshot(&mut self, now: Instant, req: ReqId, legs: bool) -> Option<MediaResult> {
        let targets: Vec<(NodeId, usize)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| c.node.as_ref().map(|n| (*id, n)))
            // A node that is away cannot answer: the round would wait for nothing.
            .filter(|(_, n)| n.gone.is_none())
            .map(|(id, n)| (id, n.workers.len()))
            .flat_map(|(id, n)| (0..n).map(move |w| (id, w)))
            .collect();
        if !legs || targets.is_empty() {
            return Some(MediaResult::Snapshot(self.view(
                legs,
                Vec::new(),
                Vec::new(),
                Vec::new(),
            )));
        }
        let id = self.next_round;
        self.next_round += 1;
        for &(node, worker) in &targets {
            let op = MediaOp::Snapshot { legs: true };
            self.op(node, worker, op, Pending::Snapshot { round: id, worker });
        }
        self.rounds.push(Round {
            id,
            req,
            deadline: now + self.cfg.report_timeout,
            waiting: targets.len(),
            legs: Vec::new(),
            invisible: Vec::new(),
            video: Vec::new(),
        });
        None
    }

    /// One worker's snapshot for round `round`.
    pub(super) fn on_snapshot(
        &mut self,
        node: NodeId,
        round: u64,
        worker: usize,
        result: MediaResult,
    ) {
        let name = self.node_name(node);
        let mut names: HashMap<NodeId, String> = HashMap::new();
        if let MediaResult::Snapshot(s) = &result {
            if let Some(n) = self.node_mut(node) {
                if n.stats.len() < n.workers.len() {
                    n.stats.resize(n.workers.len(), WorkerStats::default());
                }
                if let Some(slot) = n.stats.get_mut(worker) {
                    *slot = s.stats.clone();
                }
            }
            for (leg, _) in &s.legs {
                if let Some(Owner::Link { peer, .. }) = self.owners.get(&(node, *leg)) {
                    let peer = *peer;
                    names.entry(peer).or_insert_with(|| self.node_name(peer));
                }
            }
        }
        let Some(at) = self.rounds.iter().position(|r| r.id == round) else {
            return; // answered already without this node
        };
        let r = &mut self.rounds[at];
        r.waiting = r.waiting.saturating_sub(1);
        if let MediaResult::Snapshot(s) = result {
            for (nid, mut stats) in s.video {
                // Relays and relayed streams are the cluster's own: not shown.
                if let Some(&vid) = self.video.owners.get(&(node, nid)) {
                    if stats.source {
                        stats.viewers = self.video.viewers(vid);
                    }
                    r.video.push((vid, stats));
                }
            }
            for (leg, stats) in s.legs {
                match self.owners.get(&(node, leg)) {
                    Some(Owner::Member(vleg)) => r.legs.push((*vleg, stats)),
                    Some(Owner::Link { room, peer }) => r.invisible.push((
                        *room,
                        InvisibleInfo {
                            node: name.clone(),
                            peer: names.get(peer).cloned().unwrap_or_default(),
                            counters: stats,
                        },
                    )),
                    // The node's own calls, or a leg being removed.
                    None => {}
                }
            }
        }
        if r.waiting == 0 {
            let r = self.rounds.swap_remove(at);
            self.finish(r);
        }
    }

    /// Answers the rounds a node kept waiting past their deadline.
    pub(super) fn expire_rounds(&mut self, now: Instant) {
        while let Some(at) = self.rounds.iter().position(|r| r.deadline <= now) {
            let r = self.rounds.swap_remove(at);
            self.stats.late_snapshots += 1;
            tracing::warn!(
                missing = r.waiting,
                "a status report went out without slow nodes"
            );
            let id = r.id;
            self.pending
                .retain(|_, (_, p)| !matches!(p, Pending::Snapshot { round, .. } if *round == id));
            self.finish(r);
        }
    }

    fn finish(&mut self, r: Round) {
        let snapshot = self.view(true, r.legs, r.invisible, r.video);
        self.out.push_back(PlanOutput::Result {
            req: r.req,
            result: MediaResult::Snapshot(snapshot),
        });
    }

    /// The cluster as one virtual worker.
    fn view(
        &self,
        full: bool,
        legs: Vec<(LegId, LegStats)>,
        invisible: Vec<(MixId, InvisibleInfo)>,
        video: Vec<(VideoId, VideoStats)>,
    ) -> WorkerSnapshot {
        let mut rooms: HashMap<NodeId, (u32, u32)> = HashMap::new();
        for room in self.rooms.values() {
            for id in room.parts.keys() {
                let e = rooms.entry(*id).or_default();
                e.0 += 1;
                if room.primary == Some(*id) {
                    e.1 += 1;
                }
            }
        }
        let nodes: Vec<NodeInfo> = self
            .conns
            .iter()
            .filter_map(|(id, c)| c.node.as_ref().map(|n| (id, n)))
            .map(|(id, n)| {
                let (rooms, primary) = rooms.get(id).copied().unwrap_or_default();
                NodeInfo {
                    name: n.name.clone(),
                    version: n.version.clone(),
                    channels: n.channels,
                    local: n.local,
                    members: n.members,
                    invisible: n.links,
                    free: n.free(),
                    rooms,
                    primary,
                    workers: n
                        .stats
                        .iter()
                        .enumerate()
                        .map(|(index, s)| WorkerStats { index, ..s.clone() })
                        .collect(),
                }
            })
            .collect();
        let (members, primaries) = if full {
            (
                self.members
                    .iter()
                    .map(|(v, m)| (*v, self.node_name(m.node)))
                    .collect(),
                self.rooms
                    .iter()
                    .filter_map(|(v, r)| r.primary.map(|p| (*v, self.node_name(p))))
                    .collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        WorkerSnapshot {
            stats: WorkerStats {
                index: 0,
                rooms: self.rooms.len(),
                legs: nodes
                    .iter()
                    .map(|n| (n.members + n.invisible) as usize)
                    .sum(),
                ..WorkerStats::default()
            },
            legs,
            video,
            cluster: Some(Box::new(ClusterView {
                nodes,
                members,
                primaries,
                invisible,
                video: if full {
                    self.video
                        .placements()
                        .into_iter()
                        .map(|(v, n)| (v, self.node_name(n), self.video.group(v)))
                        .collect()
                } else {
                    Vec::new()
                },
            })),
        }
    }
}
