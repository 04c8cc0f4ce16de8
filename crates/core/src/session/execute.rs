//! Executing the conference core's outputs: media operations for the room table's
//! workers, answers to a call's controller, events to every session.

use super::{LegPlace, Output, ReqId, RoomId, Session};
use crate::conf::{CallRef, Cause};
use crate::control::msg::ServerMsg;
use crate::engine::{LegSpec, MediaOp};
use std::net::SocketAddr;

impl Session {
    /// Executes the conference core's outputs in order until they run out or a leg
    /// must be waited for; then forgets ended calls.
    pub(super) fn drain(&mut self, src: Option<String>) {
        self.src = src;
        while self.waiting.is_none() {
            let Some(out) = self.conf.poll_output() else {
                break;
            };
            self.execute(out);
        }
        if self.waiting.is_some() {
            return;
        }
        self.src = None;
        let mut ended = std::mem::take(&mut self.ended);
        ended.sort_unstable();
        ended.dedup();
        for call in ended {
            self.forget(call);
        }
        self.keep_touched();
    }

    fn execute(&mut self, out: crate::conf::Output) {
        use crate::conf::Output as Conf;
        match out {
            Conf::OpenRoom { room } => {
                let place = self.table.open(RoomId(room));
                self.media(place.worker, MediaOp::OpenRoom { mix: place.mix });
            }
            Conf::CloseRoom { room } => {
                if let Some(place) = self.table.close(&RoomId(room)) {
                    self.media(place.worker, MediaOp::CloseRoom { mix: place.mix });
                }
            }
            Conf::AddMember {
                call,
                room,
                heard,
                receives,
            } => self.add_member(call, RoomId(room), heard, receives),
            Conf::SetHeard { call, heard } => {
                if let Some(leg) = self.leg_of(call) {
                    let op = MediaOp::SetMuted {
                        leg: leg.id,
                        muted: !heard,
                    };
                    self.media(leg.worker, op);
                }
            }
            Conf::SetReceives { call, receives } => {
                if let Some(leg) = self.leg_of(call) {
                    let op = MediaOp::SetReceives {
                        leg: leg.id,
                        receives,
                    };
                    self.media(leg.worker, op);
                }
            }
            Conf::RemoveMember { call } => {
                self.video_member_left(call);
                if let Some(leg) = self.calls.get_mut(&call).and_then(|c| c.leg.take()) {
                    self.table.remove_leg(&leg);
                    self.media(leg.worker, MediaOp::RemoveLeg { leg: leg.id });
                }
            }
            Conf::Alerting { call, room } => self.answer(call, room, false, false),
            Conf::Connected {
                call,
                room,
                multivideo,
            } => self.answer(call, room, true, multivideo),
            Conf::Released { call, cause } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                c.ended = true;
                self.ended.push(call);
                let (ctl, id) = (c.controller, c.id.clone());
                let reply = ServerMsg::Release {
                    call: id,
                    cause: cause.0,
                    reason: cause.text().into(),
                };
                let src = self.src.clone();
                self.send_to(ctl, &reply, src.as_deref());
            }
            Conf::Event(event) => {
                let msg = self.event_message(event);
                self.broadcast(&msg);
            }
        }
    }

    /// Allocates the call's leg, asks its room's worker to add it, and waits for the
    /// answer before anything else runs.
    fn add_member(&mut self, call: CallRef, room: RoomId, heard: bool, receives: bool) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some(place) = self.table.room(&room) else {
            tracing::error!(%room, ?call, "a member for a room that has no mix");
            let _ = self
                .conf
                .handle_media_failed(call, Cause::RESOURCE_UNAVAILABLE);
            return;
        };
        let offer = &c.offer;
        let mut spec = LegSpec::new(SocketAddr::new(offer.address, offer.port), c.codec.0);
        spec.payload_type = c.codec.1.pt;
        spec.telephone_event_pt = offer.telephone_event;
        spec.latching = offer.latching;
        spec.rtcp_mux = offer.rtcp_mux;
        let leg = self.table.add_leg(call, place, spec.rtcp_mux);
        if let Some(c) = self.calls.get_mut(&call) {
            c.leg = Some(leg);
        }
        let req = self.media(
            leg.worker,
            MediaOp::AddLeg {
                mix: leg.mix,
                leg: leg.id,
                spec,
            },
        );
        // Same worker, same queue: these run after the add, and fail harmlessly if
        // it did.
        if !heard {
            let op = MediaOp::SetMuted {
                leg: leg.id,
                muted: true,
            };
            self.media(leg.worker, op);
        }
        if !receives {
            let op = MediaOp::SetReceives {
                leg: leg.id,
                receives: false,
            };
            self.media(leg.worker, op);
        }
        self.waiting = Some((req, call));
    }

    pub(super) fn media(&mut self, worker: usize, op: MediaOp) -> ReqId {
        let req = ReqId(self.next_req);
        self.next_req += 1;
        self.out.push_back(Output::Media { req, worker, op });
        req
    }

    fn leg_of(&self, call: CallRef) -> Option<LegPlace> {
        self.calls.get(&call)?.leg
    }

    pub(super) fn forget(&mut self, call: CallRef) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        self.by_id.remove(&(c.controller, c.id));
        self.video_member_left(call);
        if let Some(leg) = c.leg {
            // The core removes members before releasing them; a leg left here would be
            // a bug, but it must not leak media either.
            self.table.remove_leg(&leg);
            self.media(leg.worker, MediaOp::RemoveLeg { leg: leg.id });
        }
    }
}
