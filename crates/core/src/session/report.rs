//! What the session root tells controllers about calls and rooms: call answers,
//! room events, and the `Status` / `Health` reports.
//!
//! Both reports cost one media round trip per *worker*, whatever the load: the root
//! asks every worker for one [`crate::engine::WorkerSnapshot`] (with every leg's
//! statistics for `Status`) and answers when the last one is in.

use super::{ConnId, Query, ReqId, Session};
use crate::conf::{CallRef, ConfEvent, MemberState};
use crate::control::msg::{
    Channels, MediaAnswer, MemberInfo, RoomInfo, RoomOptions, ServerMsg, WorkerInfo,
    PROTOCOL_VERSION,
};
use crate::engine::{LegId, LegStats, MediaOp, MediaResult, WorkerSnapshot};
use std::collections::HashMap;

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
        let (conn, call_id) = (c.conn, c.id.clone());
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
        self.send(conn, &msg, src.as_deref());
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

    /// Starts a `Status` (`full`) or `Health` report: one snapshot per worker.
    pub(super) fn query(
        &mut self,
        conn: ConnId,
        src: Option<String>,
        full: bool,
    ) -> Option<ServerMsg> {
        let id = self.next_query;
        self.next_query += 1;
        let workers = self.table.workers().len();
        self.pending_queries.insert(
            id,
            Query {
                conn,
                src,
                full,
                snapshots: vec![None; workers],
            },
        );
        for worker in 0..workers {
            let req: ReqId = self.media(worker, MediaOp::Snapshot { legs: full });
            self.queries.insert(req, (id, worker));
        }
        None
    }

    /// One worker's snapshot for a pending report; answers when all are in. A worker
    /// that could not answer reports zeros rather than holding the report back.
    pub(super) fn on_snapshot(&mut self, query: u64, worker: usize, result: MediaResult) {
        let Some(q) = self.pending_queries.get_mut(&query) else {
            return;
        };
        q.snapshots[worker] = Some(match result {
            MediaResult::Snapshot(s) => s,
            other => {
                tracing::warn!(worker, ?other, "a worker did not answer a report");
                WorkerSnapshot::default()
            }
        });
        if q.snapshots.iter().any(Option::is_none) {
            return;
        }
        let q = self
            .pending_queries
            .remove(&query)
            .expect("the query was just looked up");
        let snapshots: Vec<WorkerSnapshot> = q.snapshots.into_iter().flatten().collect();
        let reply = if q.full {
            self.status(&snapshots)
        } else {
            self.health(&snapshots)
        };
        self.send(q.conn, &reply, q.src.as_deref());
    }

    fn status(&self, snapshots: &[WorkerSnapshot]) -> ServerMsg {
        let legs: HashMap<LegId, &LegStats> = snapshots
            .iter()
            .flat_map(|s| s.legs.iter().map(|(id, st)| (*id, st)))
            .collect();
        let rooms = self
            .conf
            .rooms()
            .into_iter()
            .map(|r| RoomInfo {
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
                        let stats = call
                            .and_then(|c| c.leg)
                            .and_then(|leg| legs.get(&leg.id).copied())
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
        }
    }

    fn channels(&self) -> Channels {
        Channels {
            capacity: self.cfg.conf.channels,
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
