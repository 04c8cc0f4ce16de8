//! What the session root tells controllers about calls and rooms: call answers,
//! room events, and the `Status` / `Health` reports.
//!
//! Both reports cost one media round trip per *worker*, whatever the load: the root
//! asks every worker for one [`crate::engine::WorkerSnapshot`] (with every leg's
//! statistics for `Status`) and answers when the last one is in. At most one such
//! round is in flight: reports asked for meanwhile share the next one, so a session
//! that sends ten thousand `Status` costs the workers two rounds, not ten thousand,
//! and another session's `Health` waits for at most those two.

use super::{ConnId, ReqId, RoomId, Session};
use crate::conf::{CallRef, ConfEvent, MemberState};
use crate::control::msg::{
    Channels, ControlInfo, MediaAnswer, MemberInfo, RoomInfo, RoomOptions, ServerMsg, WorkerInfo,
    PROTOCOL_VERSION,
};
use crate::control::msg::{InvisibleInfo, NodeInfo};
use crate::engine::{LegId, LegStats, MediaOp, MediaResult, MixId, WorkerSnapshot};
use std::collections::HashMap;

/// A `Status` (`full`) or `Health` request waiting for a snapshot round.
pub(super) struct Report {
    conn: ConnId,
    src: Option<String>,
    full: bool,
}

/// The snapshot round in flight.
pub(super) struct Round {
    /// The outstanding snapshot requests and their workers.
    pub(super) reqs: HashMap<ReqId, usize>,
    snapshots: Vec<Option<WorkerSnapshot>>,
    /// Answered when the round is complete, in this order.
    reports: Vec<Report>,
}

impl Session {
    /// Sends the Alerting or Connect message of a call that has its leg.
    pub(super) fn answer(
        &mut self,
        call: CallRef,
        room: String,
        connected: bool,
        multivideo: bool,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some(leg) = c.leg else {
            return;
        };
        let answer = MediaAnswer {
            address: leg.local.ip(),
            port: leg.local.port(),
            rtcp_port: leg.local_rtcp.port(),
            codec: c.codec.1.clone(),
            ptime: 20,
            telephone_event: c.offer.telephone_event,
        };
        let (ctl, call_id) = (c.controller, c.id.clone());
        let msg = if connected {
            ServerMsg::Connect {
                call: call_id,
                room,
                participant: call.0,
                answer,
                multivideo,
            }
        } else {
            ServerMsg::Alerting {
                call: call_id,
                room,
                participant: call.0,
                answer,
            }
        };
        let src = self.src.clone();
        self.send_to(ctl, &msg, src.as_deref());
    }

    fn call_name(&self, call: CallRef) -> String {
        self.calls
            .get(&call)
            .map(|c| c.id.clone())
            .unwrap_or_default()
    }

    pub(super) fn event_message(&self, event: ConfEvent) -> ServerMsg {
        match event {
            ConfEvent::RoomCreated {
                room,
                reserve,
                disconnect_control,
                remote_connect,
                multivideo,
            } => ServerMsg::RoomCreated {
                room,
                options: RoomOptions {
                    reserve,
                    disconnect_control,
                    remote_connect,
                    multivideo,
                },
            },
            ConfEvent::RoomClosed { room } => ServerMsg::RoomClosed { room },
            ConfEvent::Joined { room, call } => ServerMsg::ParticipantJoined {
                room,
                participant: call.0,
                call: self.call_name(call),
                node: self.calls.get(&call).and_then(|c| c.node.clone()),
            },
            ConfEvent::Left { room, call, cause } => ServerMsg::ParticipantLeft {
                room,
                participant: call.0,
                call: self.call_name(call),
                cause: cause.0,
            },
            ConfEvent::Muted { room, call, muted } => ServerMsg::Muted {
                room,
                participant: call.0,
                call: self.call_name(call),
                muted,
            },
            ConfEvent::ListenMode { room, exclusive } => ServerMsg::ListenMode {
                room,
                exclusive: exclusive.map(|c| c.0),
            },
        }
    }

    /// Asks for a `Status` (`full`) or `Health` report. With no round in flight a
    /// round starts now; otherwise the report waits for the next one, which answers
    /// every report queued meanwhile (a snapshot taken before the request would not
    /// show what the session did just before it).
    pub(super) fn query(
        &mut self,
        conn: ConnId,
        src: Option<String>,
        full: bool,
    ) -> Option<ServerMsg> {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.reports_pending += 1;
        }
        self.queued_reports.push(Report { conn, src, full });
        if self.round.is_none() {
            self.start_round();
        }
        None
    }

    /// One snapshot per worker for every queued report.
    fn start_round(&mut self) {
        let reports = std::mem::take(&mut self.queued_reports);
        if reports.is_empty() {
            return;
        }
        let full = reports.iter().any(|r| r.full);
        let workers = self.table.workers().len();
        let mut reqs = HashMap::with_capacity(workers);
        for worker in 0..workers {
            let req: ReqId = self.media(worker, MediaOp::Snapshot { legs: full });
            reqs.insert(req, worker);
        }
        self.round = Some(Round {
            reqs,
            snapshots: vec![None; workers],
            reports,
        });
        if workers == 0 {
            self.finish_round();
        }
    }

    /// One worker's snapshot for the round in flight; answers when all are in. A
    /// worker that could not answer reports zeros rather than holding the round back.
    pub(super) fn on_snapshot(&mut self, worker: usize, result: MediaResult) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        round.snapshots[worker] = Some(match result {
            MediaResult::Snapshot(s) => s,
            other => {
                tracing::warn!(worker, ?other, "a worker did not answer a report");
                WorkerSnapshot::default()
            }
        });
        if round.snapshots.iter().all(Option::is_some) {
            self.finish_round();
        }
    }

    /// Answers the round's reports in the order they were asked (one session's
    /// answers keep the order of its requests), each kind built once, then starts
    /// the next round if reports are queued.
    fn finish_round(&mut self) {
        let Some(round) = self.round.take() else {
            return;
        };
        let snapshots: Vec<WorkerSnapshot> = round.snapshots.into_iter().flatten().collect();
        let mut status = None;
        let mut health = None;
        for r in round.reports {
            let reply = if r.full {
                status.get_or_insert_with(|| self.status(&snapshots))
            } else {
                health.get_or_insert_with(|| self.health(&snapshots))
            };
            let reply = reply.clone();
            if let Some(c) = self.conns.get_mut(&r.conn) {
                c.reports_pending = c.reports_pending.saturating_sub(1);
            }
            self.send(r.conn, &reply, r.src.as_deref());
        }
        self.start_round();
    }

    fn status(&self, snapshots: &[WorkerSnapshot]) -> ServerMsg {
        let legs: HashMap<LegId, &LegStats> = snapshots
            .iter()
            .flat_map(|s| s.legs.iter().map(|(id, st)| (*id, st)))
            .collect();
        let cluster = Cluster::of(snapshots);
        let video: HashMap<crate::engine::VideoId, &crate::engine::VideoStats> = snapshots
            .iter()
            .flat_map(|s| s.video.iter().map(|(id, st)| (*id, st)))
            .collect();
        let rooms = self
            .conf
            .rooms()
            .into_iter()
            .map(|r| {
                let mix = self.table.room(&RoomId(r.id.clone())).map(|p| p.mix);
                (r, mix)
            })
            .map(|(r, mix)| {
                let (video, views) = self.video_report(&r.id, &video, &cluster.video);
                (r, mix, video, views)
            })
            .map(|(r, mix, video, views)| RoomInfo {
                video,
                views,
                primary: mix.and_then(|m| cluster.primaries.get(&m).cloned()),
                invisible: mix
                    .and_then(|m| cluster.invisible.get(&m).cloned())
                    .unwrap_or_default(),
                room: r.id,
                options: RoomOptions {
                    reserve: r.reserve,
                    disconnect_control: r.disconnect_control,
                    remote_connect: r.remote_connect,
                    multivideo: r.multivideo,
                },
                exclusive: r.exclusive.map(|c| c.0),
                members: r
                    .members
                    .into_iter()
                    .map(|m| {
                        let call = self.calls.get(&m.call);
                        let leg = call.and_then(|c| c.leg).map(|l| l.id);
                        let stats = leg
                            .and_then(|leg| legs.get(&leg).copied())
                            .cloned()
                            .unwrap_or_default();
                        MemberInfo {
                            participant: m.call.0,
                            call: call.map(|c| c.id.clone()).unwrap_or_default(),
                            state: match m.state {
                                MemberState::Alerting => "alerting",
                                MemberState::Connected => "connected",
                            }
                            .into(),
                            held: m.held,
                            receive_off: m.receive_off,
                            heard: m.heard,
                            codec: call.map(|c| c.codec.1.name.clone()).unwrap_or_default(),
                            packets_received: stats.packets_received,
                            packets_sent: stats.packets_sent,
                            packets_lost: stats.packets_lost,
                            jitter_ms: stats.jitter_ms,
                            talking: stats.talking,
                            counters: stats,
                            node: leg.and_then(|l| cluster.members.get(&l).cloned()),
                        }
                    })
                    .collect(),
            })
            .collect();
        ServerMsg::StatusResult {
            workers: worker_infos(snapshots),
            version: PROTOCOL_VERSION,
            channels: self.channels(),
            rooms,
            control: self.control_info(),
            nodes: cluster.nodes,
            placed: placed(snapshots),
        }
    }

    fn health(&self, snapshots: &[WorkerSnapshot]) -> ServerMsg {
        let workers = worker_infos(snapshots);
        ServerMsg::HealthResult {
            version: PROTOCOL_VERSION,
            channels: self.channels(),
            rooms: self.conf.room_count(),
            legs: workers.iter().map(|w| w.legs).sum(),
            workers,
            control: self.control_info(),
            nodes: Cluster::of(snapshots).nodes,
        }
    }

    fn control_info(&self) -> ControlInfo {
        let c = &self.counters;
        let (detached, detached_calls) = self.detached_counts();
        ControlInfo {
            sessions: self.conns.len(),
            closed: c.closed.clone(),
            rate_limited: c.rate_limited,
            events_lost: c.events_lost,
            detached,
            detached_calls,
            resumes: c.resumes,
            resyncs: c.resyncs,
            expired: c.expired,
            expired_calls: c.expired_calls,
            adopted: c.adopted,
            adopt_refused: c.adopt_refused,
        }
    }

    fn channels(&self) -> Channels {
        Channels {
            capacity: self.conf.channels(),
            used: self.conf.channels_used(),
            free: self.conf.channels_free(),
        }
    }
}

/// The workers' blocks, in index order: each worker's counters whole.
fn worker_infos(snapshots: &[WorkerSnapshot]) -> Vec<WorkerInfo> {
    snapshots
        .iter()
        .enumerate()
        .map(|(index, s)| WorkerInfo {
            index,
            ..s.stats.clone()
        })
        .collect()
}

/// A scaler's cluster view (see [`crate::cluster::ClusterView`]) indexed for the
/// report; empty on a node.
#[derive(Default)]
struct Cluster {
    nodes: Vec<NodeInfo>,
    members: HashMap<LegId, String>,
    primaries: HashMap<MixId, String>,
    invisible: HashMap<MixId, Vec<InvisibleInfo>>,
    /// A member stream's node and multicast group.
    video: HashMap<crate::engine::VideoId, (String, Option<String>)>,
}

impl Cluster {
    fn of(snapshots: &[WorkerSnapshot]) -> Cluster {
        let mut c = Cluster::default();
        for view in snapshots.iter().filter_map(|s| s.cluster.as_deref()) {
            c.nodes.extend(view.nodes.iter().cloned());
            c.members.extend(view.members.iter().cloned());
            c.primaries.extend(view.primaries.iter().cloned());
            for (id, node, group) in &view.video {
                c.video.insert(*id, (node.clone(), group.clone()));
            }
            for (mix, inv) in &view.invisible {
                c.invisible.entry(*mix).or_default().push(inv.clone());
            }
        }
        c
    }
}

/// The legs a scaler placed on this node's workers (their ids carry
/// [`crate::cluster::CLUSTER_ID_BIT`]); `None` when there are none.
fn placed(snapshots: &[WorkerSnapshot]) -> Option<crate::control::msg::PlacedInfo> {
    let mut p = crate::control::msg::PlacedInfo::default();
    for (leg, stats) in snapshots.iter().flat_map(|s| &s.legs) {
        if crate::cluster::is_cluster_id(leg.0) {
            match stats.link {
                true => p.invisible += 1,
                false => p.members += 1,
            }
        }
    }
    (p.members + p.invisible > 0).then_some(p)
}
