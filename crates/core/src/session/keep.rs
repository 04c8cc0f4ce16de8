//! A scaler's root keeps what it decided where the media is, and takes it back after
//! a restart (see `crate::cluster::planner::keep` for the planner's half).
//!
//! After every input, the rooms and members whose state may have changed (the
//! conference core says which: [`Conference::take_touched`](crate::conf::Conference::take_touched))
//! go out as [`Output::Keep`]: a room's [`RoomState`] under its mix, a member's
//! [`CallKeep`] under its leg. The planner stores them on the nodes. A root that
//! starts again is handed them back ([`Session::handle_adopt`]) and rebuilds each
//! room, each call, and each call's controller — detached, so the controller has
//! the resume grace to log in again with its token and find its calls as they were.
//!
//! What cannot be taken back (a room id now used by a room of the new life, a call
//! id taken, no channel left in a smaller cluster, a controller that never logged
//! in and so cannot resume) is torn down with ordinary media operations and counted.
//!
//! A controller may log in to the new scaler before the nodes that keep its calls
//! have registered. Its `resume` names a token the root cannot know yet, so for
//! [`REBUILD_WINDOW`] after the start such a login is *parked*: answered as soon as
//! an adoption brings the token's controller back, or at the end of the window as a
//! login whose resume failed.

use super::controllers::ControllerId;
use super::timers::Timer;
use super::{Call, ConnId, Output, RoomId, Session};
use crate::cluster::planner::Adoption;
use crate::conf::{CallRef, MemberFlags, RoomState};
use crate::control::hex;
use crate::control::msg::{CodecDesc, MediaOffer, ServerMsg};
use crate::engine::{LegId, MediaOp, MixId};
use scnf_media::codec::CodecKind;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How long after its start a scaler waits for the nodes to bring back a resume
/// token's controller before it answers that login as a failed resume. Nodes
/// redial at most 4 s apart, so a live node is back well within it.
pub const REBUILD_WINDOW: Duration = Duration::from_secs(10);

/// The root's keeping: whether it keeps, until when it is rebuilding, and the
/// logins waiting for a token.
#[derive(Default)]
pub(super) struct KeepState {
    on: bool,
    rebuild_until: Option<Instant>,
    parked: Vec<Parked>,
    /// Calls whose keep must go out again though the conference did not change
    /// them (their controller got a new token).
    calls: std::collections::BTreeSet<CallRef>,
}

/// A login whose resume names a token nobody has brought back yet.
pub(super) struct Parked {
    pub conn: ConnId,
    pub token: String,
    pub reply: ServerMsg,
    pub src: Option<String>,
}

/// What a kept state is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// A room, by its mix.
    Room(MixId),
    /// A member's call, by its leg.
    Member(LegId),
}

/// A member's call as kept: enough to rebuild the call, its membership and its
/// controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallKeep {
    /// The root's handle (the `participant` of events).
    pub call: u64,
    /// The controller's id of the call.
    pub id: String,
    pub room: String,
    pub flags: MemberFlags,
    pub offer: MediaOffer,
    pub codec: CodecDesc,
    pub kind: CodecKind,
    /// Its controller, and the digest of the controller's resume token (hex; none
    /// for a controller that never logged in, which cannot resume).
    pub controller: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Session {
    /// This root runs on a scaler started at `now`: it keeps its rooms' state on
    /// the cluster's nodes ([`Output::Keep`]), and its ids start at `id_base` (the
    /// shell passes one that grows with the wall clock, so they do not meet the ids
    /// of the last life, whose rooms it may take over).
    pub fn keep_on_nodes(&mut self, now: Instant, id_base: u64) {
        self.keep.on = true;
        self.keep.rebuild_until = Some(now + REBUILD_WINDOW);
        self.table.start_ids_at(id_base);
        self.next_call = self.next_call.max(id_base);
        self.timers.set(Timer::Rebuilt, now + REBUILD_WINDOW);
    }

    /// Controller `ctl` has a new token: its calls' keeps carry the old one's
    /// digest, and go out again.
    pub(super) fn rekeep_controller(&mut self, ctl: ControllerId) {
        if self.keep.on {
            let calls = self.calls_of(ctl);
            self.keep.calls.extend(calls);
            self.keep_touched();
        }
    }

    /// Whether a resume login with an unknown token should wait (see the module
    /// docs).
    pub(super) fn may_park(&self, now: Instant) -> bool {
        self.keep.rebuild_until.is_some_and(|t| now < t)
    }

    pub(super) fn park(&mut self, parked: Parked) {
        self.keep.parked.push(parked);
    }

    /// A parked login whose connection closed is forgotten.
    pub(super) fn unpark_closed(&mut self, conn: ConnId) {
        self.keep.parked.retain(|p| p.conn != conn);
    }

    /// Answers the parked logins whose token is known now, or all of them once the
    /// rebuild window is over.
    pub(super) fn unpark(&mut self, now: Instant, all: bool) {
        if all {
            self.keep.rebuild_until = None;
        }
        let parked = std::mem::take(&mut self.keep.parked);
        for p in parked {
            if all || self.token_known(&p.token) {
                self.finish_login(now, p.conn, Some(&p.token), p.reply, p.src);
            } else {
                self.keep.parked.push(p);
            }
        }
    }

    /// Sends out the state of what the last input changed (after its media
    /// operations, which the state describes).
    pub(super) fn keep_touched(&mut self) {
        let (rooms, mut calls) = self.conf.take_touched();
        if !self.keep.on {
            return;
        }
        if !self.keep.calls.is_empty() {
            calls.extend(std::mem::take(&mut self.keep.calls));
            calls.sort_unstable();
            calls.dedup();
        }
        for id in rooms {
            let (Some(place), Some(state)) = (
                self.table.room(&RoomId(id.clone())),
                self.conf.room_state(&id),
            ) else {
                continue;
            };
            let state = serde_json::to_value(state).expect("a room state serialises");
            self.out.push_back(Output::Keep {
                what: Kept::Room(place.mix),
                state,
            });
        }
        for call in calls {
            let (Some(c), Some((room, flags))) =
                (self.calls.get(&call), self.conf.member_flags(call))
            else {
                continue;
            };
            let Some(leg) = c.leg.filter(|_| !c.ended) else {
                continue;
            };
            let ctl = c.controller;
            let digest = self
                .controllers
                .get(&ctl)
                .and_then(|x| x.digest())
                .map(|d| hex::encode(&d));
            let keep = CallKeep {
                call: call.0,
                id: c.id.clone(),
                room: room.to_string(),
                flags,
                offer: c.offer.clone(),
                codec: c.codec.1.clone(),
                kind: c.codec.0,
                controller: ctl.0,
                digest,
            };
            let state = serde_json::to_value(keep).expect("a call keep serialises");
            self.out.push_back(Output::Keep {
                what: Kept::Member(leg.id),
                state,
            });
        }
    }

    /// A room or member the planner took over from the nodes' keeps after this
    /// scaler started: rebuilt here, or torn down there.
    pub fn handle_adopt(&mut self, now: Instant, adoption: Adoption) {
        if self.waiting.is_some() {
            return self.deferred.push_back(super::Deferred::Adopt(adoption));
        }
        match adoption {
            Adoption::Room { vmix, state } => {
                if let Err(why) = self.adopt_room(vmix, state) {
                    tracing::warn!(?vmix, %why, "cannot take back a kept room; closing it");
                    self.counters.adopt_refused += 1;
                    self.media(0, MediaOp::CloseRoom { mix: vmix });
                }
            }
            Adoption::Member {
                vmix,
                vleg,
                node,
                addrs,
                state,
            } => match self.adopt_member(now, vmix, vleg, node, addrs, state) {
                // A controller back: a login parked for its token can go on.
                Ok(true) => self.unpark(now, false),
                Ok(false) => {}
                Err(why) => {
                    tracing::warn!(?vleg, %why, "cannot take back a kept call; removing its leg");
                    self.counters.adopt_refused += 1;
                    self.media(0, MediaOp::RemoveLeg { leg: vleg });
                }
            },
        }
    }

    fn adopt_room(&mut self, vmix: MixId, state: serde_json::Value) -> Result<(), String> {
        let state: RoomState = serde_json::from_value(state).map_err(|e| e.to_string())?;
        if self.table.room(&RoomId(state.id.clone())).is_some() {
            return Err(format!("room {} exists", state.id));
        }
        self.conf.adopt_room(&state).map_err(|e| e.to_string())?;
        if self
            .table
            .adopt_room(RoomId(state.id.clone()), vmix)
            .is_none()
        {
            // The mix id is taken by a room of this life: undo the core's room.
            let _ = self.conf.forget_adopted_room(&state.id);
            return Err(format!("mix {vmix:?} is taken"));
        }
        self.next_call = self.next_call.max(state.creator + 1);
        tracing::info!(room = %state.id, "took back a kept room");
        Ok(())
    }

    /// Whether the call brought its controller back.
    fn adopt_member(
        &mut self,
        now: Instant,
        vmix: MixId,
        vleg: LegId,
        node: String,
        addrs: crate::session::WorkerAddrs,
        state: serde_json::Value,
    ) -> Result<bool, String> {
        let k: CallKeep = serde_json::from_value(state).map_err(|e| e.to_string())?;
        let place = self
            .table
            .room(&RoomId(k.room.clone()))
            .filter(|p| p.mix == vmix)
            .ok_or_else(|| format!("room {} was not taken back", k.room))?;
        let call = CallRef(k.call);
        if self.calls.contains_key(&call) {
            return Err("its call handle is taken".into());
        }
        let owner = ControllerId(k.controller);
        if self.by_id.contains_key(&(owner, k.id.clone())) {
            return Err(format!("call id {} is taken", k.id));
        }
        if self.table.call_of(vleg).is_some() {
            return Err(format!("leg {vleg:?} is taken"));
        }
        self.conf
            .adopt_member(&k.room, call, &k.flags)
            .map_err(|e| e.to_string())?;
        let new_controller = !self.controllers.contains_key(&owner);
        if new_controller {
            let digest = k
                .digest
                .as_deref()
                .ok_or("its controller never logged in")?;
            let digest: [u8; 32] =
                hex::decode_array(digest).map_err(|_| "its controller's digest is malformed")?;
            let deadline = now + self.cfg.resume_grace;
            self.insert_detached(owner, digest, deadline)
                .map_err(|e| e.to_string())?;
        }
        let leg = self
            .table
            .adopt_leg(call, vleg, place, addrs, k.offer.rtcp_mux)
            .ok_or("its leg id is taken")?;
        self.next_call = self.next_call.max(k.call + 1);
        self.by_id.insert((owner, k.id.clone()), call);
        self.calls.insert(
            call,
            Call {
                controller: owner,
                id: k.id,
                offer: k.offer,
                codec: (k.kind, k.codec),
                leg: Some(leg),
                node: Some(node),
                ended: false,
            },
        );
        self.counters.adopted += 1;
        Ok(new_controller)
    }
}
