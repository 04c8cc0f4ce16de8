//! Executing the conference core's outputs: media calls on the node, answers to the
//! call's owner, events to every session, and the status report.

use super::{ConnId, Switchboard};
use crate::{LegInfo, NodeError};
use scnf_core::conf::{CallRef, Cause, ConfEvent, MemberState, Output};
use scnf_core::control::msg::{
    Channels, MediaAnswer, MemberInfo, RoomInfo, RoomOptions, ServerMsg, WorkerInfo,
    PROTOCOL_VERSION,
};
use scnf_core::engine::LegSpec;
use std::net::SocketAddr;

impl Switchboard {
    pub(super) async fn drain(&mut self) {
        self.drain_with(None).await;
    }

    /// Executes the conference core's outputs in order, then purges ended calls.
    pub(super) async fn drain_with(&mut self, src: Option<&str>) {
        while let Some(out) = self.conf.poll_output() {
            self.execute(out, src).await;
        }
        let ended: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| c.ended)
            .map(|(r, _)| *r)
            .collect();
        for call in ended {
            self.forget(call);
        }
    }

    pub(super) async fn execute(&mut self, out: Output, src: Option<&str>) {
        match out {
            Output::OpenRoom { room } => match self.node.open_room().await {
                Ok(id) => {
                    self.rooms.insert(room, id);
                }
                Err(e) => tracing::error!(%e, room, "cannot open a media room"),
            },
            Output::CloseRoom { room } => {
                if let Some(id) = self.rooms.remove(&room) {
                    if let Err(e) = self.node.close_room(id).await {
                        tracing::warn!(%e, room, "closing a media room");
                    }
                }
            }
            Output::AddMember {
                call,
                room,
                heard,
                receives,
            } => {
                if let Err(e) = self.add_member(call, &room, heard, receives).await {
                    tracing::warn!(%e, ?call, room, "cannot add a leg");
                    let _ = self
                        .conf
                        .handle_media_failed(call, Cause::RESOURCE_UNAVAILABLE);
                }
            }
            Output::SetHeard { call, heard } => {
                if let Some(leg) = self.leg_of(call) {
                    if let Err(e) = self.node.set_muted(leg.id, !heard).await {
                        tracing::warn!(%e, ?call, "mute");
                    }
                }
            }
            Output::SetReceives { call, receives } => {
                if let Some(leg) = self.leg_of(call) {
                    if let Err(e) = self.node.set_receives(leg.id, receives).await {
                        tracing::warn!(%e, ?call, "receive");
                    }
                }
            }
            Output::RemoveMember { call } => {
                let leg = self.calls.get_mut(&call).and_then(|c| c.leg.take());
                if let Some(leg) = leg {
                    self.legs.remove(&leg.id);
                    if let Err(e) = self.node.remove_leg(leg.id).await {
                        tracing::warn!(%e, ?call, "removing a leg");
                    }
                }
            }
            Output::Alerting { call, room } => {
                if let Some((conn, reply)) = self.answer(call, &room, false, false) {
                    self.send(conn, &reply, src);
                }
            }
            Output::Connected {
                call,
                room,
                multivideo,
            } => {
                if let Some((conn, reply)) = self.answer(call, &room, true, multivideo) {
                    self.send(conn, &reply, src);
                }
            }
            Output::Released { call, cause } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                c.ended = true;
                let (conn, id) = (c.conn, c.id.clone());
                let reply = ServerMsg::Release {
                    call: id,
                    cause: cause.0,
                    reason: cause.text().into(),
                };
                self.send(conn, &reply, src);
            }
            Output::Event(event) => {
                let msg = self.event_message(event);
                self.broadcast(&msg);
            }
        }
    }

    pub(super) async fn add_member(
        &mut self,
        call: CallRef,
        room: &str,
        heard: bool,
        receives: bool,
    ) -> Result<(), NodeError> {
        let Some(&media_room) = self.rooms.get(room) else {
            return Err(NodeError::NoSuchRoom(0));
        };
        let Some(c) = self.calls.get(&call) else {
            return Ok(());
        };
        let mut spec = LegSpec::new(SocketAddr::new(c.offer.address, c.offer.port), c.codec.0);
        spec.payload_type = c.codec.1.pt;
        spec.telephone_event_pt = c.offer.telephone_event;
        spec.latching = c.offer.latching;
        spec.rtcp_mux = c.offer.rtcp_mux;
        let info = self.node.add_leg(media_room, spec).await?;
        self.legs.insert(info.id, call);
        if let Some(c) = self.calls.get_mut(&call) {
            c.leg = Some(info);
        }
        if !heard {
            self.node.set_muted(info.id, true).await?;
        }
        if !receives {
            self.node.set_receives(info.id, false).await?;
        }
        Ok(())
    }

    pub(super) fn leg_of(&self, call: CallRef) -> Option<LegInfo> {
        self.calls.get(&call)?.leg
    }

    /// The Alerting or Connect message for a call that has its leg.
    pub(super) fn answer(
        &self,
        call: CallRef,
        room: &str,
        connected: bool,
        multivideo: bool,
    ) -> Option<(ConnId, ServerMsg)> {
        let c = self.calls.get(&call)?;
        let leg = c.leg?;
        let answer = MediaAnswer {
            address: leg.local.ip(),
            port: leg.local.port(),
            rtcp_port: if c.offer.rtcp_mux {
                leg.local.port()
            } else {
                leg.local_rtcp.port()
            },
            codec: c.codec.1.clone(),
            ptime: 20,
            telephone_event: c.offer.telephone_event,
        };
        let (call_id, room) = (c.id.clone(), room.to_string());
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
        Some((c.conn, msg))
    }

    pub(super) fn call_name(&self, call: CallRef) -> String {
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

    pub(super) async fn status(&self) -> ServerMsg {
        let mut rooms = Vec::new();
        for r in self.conf.rooms() {
            let mut members = Vec::new();
            for m in r.members {
                let call = self.calls.get(&m.call);
                let stats = match call.and_then(|c| c.leg) {
                    Some(leg) => self.node.leg_stats(leg.id).await.ok(),
                    None => None,
                }
                .unwrap_or_default();
                members.push(MemberInfo {
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
                });
            }
            rooms.push(RoomInfo {
                room: r.id,
                options: RoomOptions {
                    reserve: r.reserve,
                    disconnect_control: r.disconnect_control,
                    remote_connect: r.remote_connect,
                    multivideo: r.multivideo,
                },
                exclusive: r.exclusive.map(|c| c.0),
                members,
            });
        }
        ServerMsg::StatusResult {
            workers: self.workers().await,
            version: PROTOCOL_VERSION,
            channels: self.channels(),
            rooms,
        }
    }

    /// `HealthResult`: one round trip to the media workers, whatever the load.
    pub(super) async fn health(&self) -> ServerMsg {
        let workers = self.workers().await;
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

    async fn workers(&self) -> Vec<WorkerInfo> {
        self.node
            .stats()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|w| WorkerInfo {
                index: w.index,
                legs: w.legs,
                ticks: w.ticks,
                late_ticks: w.late_ticks,
                skipped_ticks: w.skipped_ticks,
                lateness_p50_us: w.lateness_p50_us,
                lateness_p99_us: w.lateness_p99_us,
            })
            .collect()
    }
}
