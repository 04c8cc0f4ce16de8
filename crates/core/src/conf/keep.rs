//! A room's conference state as data, and a room rebuilt from it: what a scaler
//! keeps on its nodes so that a scaler that restarts decides as the last one did
//! (`*81` still knows its creator, exclusive listen its member, channel-max its
//! reservation, `*82` its alerting members).

use super::directory::Room;
use super::listen::{Listen, Member, MemberState};
use super::{Call, CallRef, Conference};
use serde::{Deserialize, Serialize};

/// What the conference decided about a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    pub id: String,
    pub reserve: u32,
    pub disconnect_control: bool,
    pub remote_connect: bool,
    pub multivideo: bool,
    /// The call that created it (`*81`, `*82`).
    pub creator: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<u64>,
}

/// A member's listen flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberFlags {
    pub state: MemberState,
    pub held: bool,
    pub receive_off: bool,
    pub receive_on: bool,
}

/// Why a kept room or member could not be taken back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdoptError {
    #[error("room {0} overlaps a room that exists")]
    Overlaps(String),
    #[error("no room {0}")]
    NoRoom(String),
    #[error("the call is known already")]
    CallExists,
    #[error("no channel is free for it")]
    NoChannel,
}

impl Conference {
    /// The state of room `id` to keep.
    pub fn room_state(&self, id: &str) -> Option<RoomState> {
        let r = self.dir.get(id)?;
        Some(RoomState {
            id: r.id.clone(),
            reserve: r.reserve,
            disconnect_control: r.disconnect_control,
            remote_connect: r.remote_connect,
            multivideo: r.multivideo,
            creator: r.creator.0,
            exclusive: r.listen.exclusive().map(|c| c.0),
        })
    }

    /// The room and flags of member `call` to keep.
    pub fn member_flags(&self, call: CallRef) -> Option<(&str, MemberFlags)> {
        let room = self.call_room(call)?;
        let m = self.dir.get(room)?.listen.member(call)?;
        let flags = MemberFlags {
            state: m.state,
            held: m.held,
            receive_off: m.receive_off,
            receive_on: m.receive_on,
        };
        Some((room, flags))
    }

    /// Rooms and calls whose kept state may have changed since the last call (each
    /// once, in order).
    pub fn take_touched(&mut self) -> (Vec<String>, Vec<CallRef>) {
        let rooms = std::mem::take(&mut self.touched_rooms)
            .into_iter()
            .collect();
        let calls = std::mem::take(&mut self.touched_calls)
            .into_iter()
            .collect();
        (rooms, calls)
    }

    /// Marks a room's state for keeping, and with `members` all its members'.
    pub(super) fn touch_room(&mut self, id: &str, members: bool) {
        self.touched_rooms.insert(id.to_string());
        if members {
            if let Some(r) = self.dir.get(id) {
                self.touched_calls
                    .extend(r.listen.members().iter().map(|m| m.call));
            }
        }
    }

    /// Rebuilds a kept room (no members yet; no outputs: its media exists).
    pub fn adopt_room(&mut self, state: &RoomState) -> Result<(), AdoptError> {
        if self.dir.overlaps_any(&state.id) {
            return Err(AdoptError::Overlaps(state.id.clone()));
        }
        let mut listen = Listen::default();
        listen.restore_exclusive(state.exclusive.map(CallRef));
        self.dir.insert(Room {
            id: state.id.clone(),
            reserve: state.reserve,
            disconnect_control: state.disconnect_control,
            remote_connect: state.remote_connect,
            multivideo: state.multivideo,
            creator: CallRef(state.creator),
            listen,
        });
        Ok(())
    }

    /// Forgets a room [`Conference::adopt_room`] just rebuilt, before any member.
    pub fn forget_adopted_room(&mut self, id: &str) -> bool {
        match self.dir.get(id) {
            Some(r) if r.listen.members().is_empty() => self.dir.remove(id).is_some(),
            _ => false,
        }
    }

    /// Puts a kept member back into its rebuilt room (no outputs: its leg exists
    /// and was told what it hears). A member the capacity no longer fits is still
    /// refused: the cluster that comes back may be smaller.
    pub fn adopt_member(
        &mut self,
        room: &str,
        call: CallRef,
        flags: &MemberFlags,
    ) -> Result<(), AdoptError> {
        if self.calls.contains_key(&call) {
            return Err(AdoptError::CallExists);
        }
        let Some(r) = self.dir.get(room) else {
            return Err(AdoptError::NoRoom(room.to_string()));
        };
        if r.unused_reserve() == 0 && self.channels_free() == 0 {
            return Err(AdoptError::NoChannel);
        }
        let member = Member {
            call,
            state: flags.state,
            held: flags.held,
            receive_off: flags.receive_off,
            receive_on: flags.receive_on,
            heard: false,
        };
        if !self.dir.restore_member(room, member) {
            return Err(AdoptError::CallExists);
        }
        let (room, dtmf) = (room.to_string(), String::new());
        self.put(call, Call::InRoom { room, dtmf });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::{ConfConfig, Output};
    use std::time::Instant;

    const A: CallRef = CallRef(1);
    const B: CallRef = CallRef(2);
    const C: CallRef = CallRef(3);

    fn drain(conf: &mut Conference) -> Vec<Output> {
        std::iter::from_fn(|| conf.poll_output()).collect()
    }

    /// Room 10: `*81` (A created it, its leaving ends the room), reserve 6, C
    /// exclusive, B held.
    fn room(now: Instant) -> Conference {
        let mut conf = Conference::new(ConfConfig::new(30), 1);
        conf.handle_setup(now, A, "*210*81*206", true).unwrap();
        conf.handle_setup(now, B, "10#", true).unwrap();
        conf.handle_setup(now, C, "10#", true).unwrap();
        conf.handle_remote_control(C, 26).unwrap();
        conf.handle_hold(B, true).unwrap();
        drain(&mut conf);
        conf
    }

    /// A new core rebuilt from what `old` would have kept.
    fn rebuilt(old: &Conference) -> Conference {
        let mut new = Conference::new(ConfConfig::new(30), 2);
        for r in old.rooms() {
            new.adopt_room(&old.room_state(&r.id).unwrap()).unwrap();
            for m in &r.members {
                let (room, flags) = old.member_flags(m.call).unwrap();
                new.adopt_member(room, m.call, &flags).unwrap();
            }
        }
        assert!(
            drain(&mut new).is_empty(),
            "taking back asks nothing of the media"
        );
        new
    }

    #[test]
    fn a_room_rebuilt_from_its_kept_state_is_the_room_it_was() {
        let now = scnf_media::testclock::anchor();
        let old = room(now);
        let new = rebuilt(&old);
        assert_eq!(new.rooms(), old.rooms());
        assert_eq!(
            new.channels_free(),
            old.channels_free(),
            "the reserve still counts"
        );
        assert_eq!(new.channels_reserved(), 3);
    }

    #[test]
    fn the_rebuilt_room_still_ends_with_its_creator_and_ends_exclusive_listen_as_before() {
        let now = scnf_media::testclock::anchor();
        let mut new = rebuilt(&room(now));
        // *6# from A: normal listen again, B is still held so only A and C heard.
        new.handle_remote_control(A, 27).unwrap();
        drain(&mut new);
        let r = &new.rooms()[0];
        assert_eq!(r.exclusive, None);
        let heard: Vec<bool> = r.members.iter().map(|m| m.heard).collect();
        assert_eq!(heard, [true, false, true]);
        // *81: the creator's leaving releases the others.
        new.handle_release(A).unwrap();
        let released: Vec<CallRef> = drain(&mut new)
            .into_iter()
            .filter_map(|o| match o {
                Output::Released { call, .. } => Some(call),
                _ => None,
            })
            .collect();
        assert_eq!(released, [B, C]);
        assert_eq!(new.room_count(), 0);
    }

    #[test]
    fn what_changed_is_reported_once_for_keeping() {
        let now = scnf_media::testclock::anchor();
        let mut conf = room(now);
        let (rooms, calls) = conf.take_touched();
        assert_eq!(rooms, ["10"]);
        assert_eq!(calls, [A, B, C]);
        assert_eq!(conf.take_touched(), (vec![], vec![]));
        conf.handle_hold(B, false).unwrap();
        assert_eq!(conf.take_touched(), (vec![], vec![B]));
        // Exclusive listen changes everyone's flags, and the room's.
        conf.handle_remote_control(A, 26).unwrap();
        assert_eq!(conf.take_touched(), (vec!["10".to_string()], vec![A, B, C]));
    }

    #[test]
    fn a_kept_room_that_overlaps_a_room_of_the_new_life_or_a_member_twice_is_refused() {
        let now = scnf_media::testclock::anchor();
        let old = room(now);
        let mut new = Conference::new(ConfConfig::new(30), 2);
        new.handle_setup(now, CallRef(9), "*3100#", true).unwrap();
        drain(&mut new);
        let state = old.room_state("10").unwrap();
        assert_eq!(
            new.adopt_room(&state),
            Err(AdoptError::Overlaps("10".into()))
        );
        let mut new = Conference::new(ConfConfig::new(30), 2);
        new.adopt_room(&state).unwrap();
        let (_, flags) = old.member_flags(B).unwrap();
        new.adopt_member("10", B, &flags).unwrap();
        assert_eq!(
            new.adopt_member("10", B, &flags),
            Err(AdoptError::CallExists)
        );
        assert_eq!(
            new.adopt_member("11", C, &flags),
            Err(AdoptError::NoRoom("11".into()))
        );
    }
}
