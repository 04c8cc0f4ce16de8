//! The sans-IO conference core: which call is in which room, who is heard, and when a
//! call is accepted, alerted, connected or released.
//!
//! It reproduces the CONF/SCNF interface behaviour (call-setup commands, in-call DTMF
//! commands, remote controls, hold) without touching media or the network. The shell
//! feeds it with `handle_*` and executes what [`Conference::poll_output`] yields, in
//! order: media outputs on the engine, signalling towards the controller, events.
//! Time is an argument; room ids come from a seeded [`Rng`].
//!
//! Per call: *dialing* (collecting the called number, takes no channel) → *in a room*
//! (alerting or connected, takes one channel) → forgotten. See [`dial`] for the
//! command language, [`directory`] for ids and channel accounting, [`listen`] for who
//! is heard.
//!
//! Decisions where the reference is silent:
//! - syntax errors release with cause 28 (invalid number format), "cannot be
//!   satisfied" with 34 (no channel);
//! - the overlap timeout runs from the last digit received;
//! - a leg receives the mix once connected (hold does not change that);
//! - releases that came from the PBX yield no [`Output::Released`], only
//!   [`ConfEvent::Left`] with cause 16;
//! - the `*81` cascade releases the other members with cause 16;
//! - remote controls 24–27 on an alerting member set its flags; they take effect when
//!   remote control 0 connects it;
//! - `*3` joining an existing room ignores the creation options except `*1`
//!   (channel-max) and `*4` (match).

pub mod dial;
pub mod directory;
mod keep;
pub mod listen;
pub mod output;
pub mod table;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_chunking;

use dial::{Command, CommandKind, Dial};
use directory::{Directory, Room};
pub use keep::{AdoptError, MemberFlags, RoomState};
pub use listen::MemberState;
use listen::{Change, Listen};
pub use output::{ConfEvent, MemberStatus, Output, RoomStatus};
use scnf_media::util::Rng;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The shell's handle for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

/// Q.850 cause values used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cause(pub u8);

impl Cause {
    pub const NORMAL: Cause = Cause(16);
    pub const INVALID_NUMBER: Cause = Cause(28);
    pub const NO_CHANNEL: Cause = Cause(34);
    pub const TEMPORARY_FAILURE: Cause = Cause(41);
    pub const RESOURCE_UNAVAILABLE: Cause = Cause(47);
    pub const INCOMPATIBLE: Cause = Cause(88);
    /// The offer names a media address that cannot be a member's.
    pub const INVALID_CONTENTS: Cause = Cause(100);
    pub const TIMER_EXPIRY: Cause = Cause(102);

    /// The Q.850 name of the cause ("unknown cause" for values not used here).
    pub fn text(self) -> &'static str {
        match self.0 {
            16 => "normal call clearing",
            28 => "invalid number format",
            34 => "no circuit/channel available",
            41 => "temporary failure",
            47 => "resource unavailable, unspecified",
            88 => "incompatible destination",
            100 => "invalid information element contents",
            102 => "recovery on timer expiry",
            _ => "unknown cause",
        }
    }
}

/// Conference settings.
#[derive(Clone, Debug)]
pub struct ConfConfig {
    /// The node's capacity in conference channels (one per call in a room).
    pub channels: u32,
    /// A call still collecting digits longer than this after its last digit is
    /// released with cause 28. Default 10 s.
    pub overlap_timeout: Duration,
    /// Random digits of a `*1` room id when `*5` is absent. Default 6.
    pub default_id_length: u8,
}

impl ConfConfig {
    /// Defaults for a node with `channels` conference channels.
    pub fn new(channels: u32) -> ConfConfig {
        ConfConfig {
            channels,
            overlap_timeout: Duration::from_secs(10),
            default_id_length: dial::DEFAULT_ID_LENGTH,
        }
    }
}

/// Why an input was refused. A refused input never changes state.
///
/// The texts do not name the call: a [`CallRef`] is the shell's internal handle, and
/// the shell that reports the error to a controller names the call by the
/// controller's own id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    #[error("no such call")]
    NoSuchCall(CallRef),
    #[error("the call already exists")]
    CallExists(CallRef),
    #[error("the call is not collecting digits")]
    NotDialing(CallRef),
    #[error("the call is not alerting")]
    NotAlerting(CallRef),
    #[error("the call is not in a room")]
    NotInRoom(CallRef),
    #[error("unknown remote control {0}")]
    UnknownRemoteControl(u32),
    #[error("{0:?} is not a DTMF digit")]
    BadDigit(char),
}

/// Longest in-call DTMF command kept; longer ones are dropped (none is valid).
const MAX_DTMF_COMMAND: usize = 8;

#[derive(Clone, Debug)]
enum Call {
    Dialing {
        dialed: String,
        complete: bool,
        deadline: Instant,
    },
    InRoom {
        room: String,
        /// In-call command being collected (starts with `*`), empty when none.
        dtmf: String,
    },
}

/// The conference state machine of one node.
#[derive(Debug)]
pub struct Conference {
    cfg: ConfConfig,
    rng: Rng,
    calls: BTreeMap<CallRef, Call>,
    /// The calls in `calls` that are dialing: the only ones with a deadline, so the
    /// timeout is found without a walk over every call (a node holds thousands,
    /// and the session asks after every event). Kept by [`Conference::put`] and
    /// [`Conference::take`], the only writers of `calls`' membership.
    dialing: std::collections::BTreeSet<CallRef>,
    dir: Directory,
    out: VecDeque<Output>,
    changes: Vec<Change>,
    /// Rooms and calls whose kept state may have changed ([`Conference::take_touched`]).
    touched_rooms: std::collections::BTreeSet<String>,
    touched_calls: std::collections::BTreeSet<CallRef>,
}

impl Conference {
    /// `seed` drives the random part of `*1` room ids.
    pub fn new(cfg: ConfConfig, seed: u64) -> Self {
        Conference {
            cfg,
            rng: Rng::new(seed),
            calls: BTreeMap::new(),
            dialing: Default::default(),
            dir: Directory::default(),
            out: VecDeque::new(),
            changes: Vec::new(),
            touched_rooms: Default::default(),
            touched_calls: Default::default(),
        }
    }

    /// A new call with its called number (and sending-complete).
    pub fn handle_setup(
        &mut self,
        now: Instant,
        call: CallRef,
        called: &str,
        sending_complete: bool,
    ) -> Result<(), ConfError> {
        if self.calls.contains_key(&call) {
            return Err(ConfError::CallExists(call));
        }
        self.put(
            call,
            Call::Dialing {
                dialed: String::with_capacity(called.len()),
                complete: false,
                deadline: now + self.cfg.overlap_timeout,
            },
        );
        self.dial(call, called, sending_complete);
        Ok(())
    }

    /// More called-number digits for a call still dialing.
    pub fn handle_info(
        &mut self,
        now: Instant,
        call: CallRef,
        digits: &str,
        sending_complete: bool,
    ) -> Result<(), ConfError> {
        match self.calls.get_mut(&call) {
            None => Err(ConfError::NoSuchCall(call)),
            Some(Call::InRoom { .. }) => Err(ConfError::NotDialing(call)),
            Some(Call::Dialing { deadline, .. }) => {
                *deadline = now + self.cfg.overlap_timeout;
                self.dial(call, digits, sending_complete);
                Ok(())
            }
        }
    }

    /// Feeds dialed characters one at a time, deciding after each, so that how the
    /// number was cut into Setup and Info pieces never matters: a command is decided
    /// at the first character that decides it (`#`, the second digit of `*2`, a
    /// directory match, a syntax error), exactly as if the digits had come one by
    /// one. Characters after the decision are not part of the command and are
    /// ignored, as an Info after it would be refused. Sending-complete applies after
    /// the last character.
    fn dial(&mut self, call: CallRef, digits: &str, sending_complete: bool) {
        let mut chars = digits.chars().peekable();
        loop {
            let c = chars.next();
            let last = chars.peek().is_none();
            let Some(Call::Dialing {
                dialed, complete, ..
            }) = self.calls.get_mut(&call)
            else {
                return; // decided
            };
            if let Some(c) = c {
                dialed.push(c);
            }
            *complete |= last && sending_complete;
            self.evaluate(call);
            if last {
                return;
            }
        }
    }

    /// An in-call DTMF digit: `*21#` exclusive listen, `*6#` normal listen.
    pub fn handle_dtmf(
        &mut self,
        _now: Instant,
        call: CallRef,
        digit: char,
    ) -> Result<(), ConfError> {
        let (room, dtmf) = match self.calls.get_mut(&call) {
            None => return Err(ConfError::NoSuchCall(call)),
            Some(Call::Dialing { .. }) => return Err(ConfError::NotInRoom(call)),
            Some(Call::InRoom { room, dtmf }) => (room, dtmf),
        };
        if !matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D') {
            return Err(ConfError::BadDigit(digit));
        }
        let alerting = self
            .dir
            .get(room)
            .and_then(|r| r.listen.member(call))
            .map_or(true, |m| m.state == MemberState::Alerting);
        if alerting {
            return Ok(());
        }
        match digit {
            '*' => {
                dtmf.clear();
                dtmf.push('*');
            }
            '#' => {
                let command = std::mem::take(dtmf);
                let room = room.clone();
                match command.as_str() {
                    "*21" => self.listen_op(&room, call, Listen::exclusive_listen),
                    "*6" => self.listen_op(&room, call, Listen::normal_listen),
                    _ => {}
                }
                // Exclusive and normal listen change the others' flags too.
                self.touch_room(&room, true);
            }
            d if !dtmf.is_empty() && dtmf.len() < MAX_DTMF_COMMAND => dtmf.push(d),
            _ => dtmf.clear(),
        }
        Ok(())
    }

    /// An innovaphone remote control: 0 connect, 24 receive on, 25 receive off, 26
    /// exclusive listen, 27 normal listen.
    pub fn handle_remote_control(&mut self, call: CallRef, code: u32) -> Result<(), ConfError> {
        let room = self.room_of(call)?;
        let op: fn(&mut Listen, CallRef, &mut Vec<Change>) = match code {
            0 => return self.connect(&room, call),
            24 => Listen::receive_on,
            25 => Listen::receive_off,
            26 => Listen::exclusive_listen,
            27 => Listen::normal_listen,
            _ => return Err(ConfError::UnknownRemoteControl(code)),
        };
        self.listen_op(&room, call, op);
        self.touch_room(&room, matches!(code, 26 | 27));
        Ok(())
    }

    /// Hold (`held`) or retrieve notified by the PBX.
    pub fn handle_hold(&mut self, call: CallRef, held: bool) -> Result<(), ConfError> {
        let room = self.room_of(call)?;
        self.listen_op(&room, call, |l, c, ch| l.hold(c, held, ch));
        Ok(())
    }

    /// The PBX released the call.
    pub fn handle_release(&mut self, call: CallRef) -> Result<(), ConfError> {
        match self.calls.get(&call) {
            None => Err(ConfError::NoSuchCall(call)),
            Some(Call::Dialing { .. }) => {
                self.take(call);
                Ok(())
            }
            Some(Call::InRoom { .. }) => {
                self.leave(call, Cause::NORMAL, false);
                Ok(())
            }
        }
    }

    /// The shell could not set up the call's media: the node releases it with `cause`.
    pub fn handle_media_failed(&mut self, call: CallRef, cause: Cause) -> Result<(), ConfError> {
        match self.calls.get(&call) {
            None => Err(ConfError::NoSuchCall(call)),
            Some(Call::Dialing { .. }) => {
                self.reject(call, cause);
                Ok(())
            }
            Some(Call::InRoom { .. }) => {
                self.leave(call, cause, true);
                Ok(())
            }
        }
    }

    /// Releases calls whose overlap timeout passed (cause 28).
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<CallRef> = self
            .dialing_deadlines()
            .filter(|&(_, deadline)| deadline <= now)
            .map(|(call, _)| call)
            .collect();
        for call in expired {
            self.reject(call, Cause::INVALID_NUMBER);
        }
    }

    /// The next output, in the order the shell must execute them.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Conference::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dialing_deadlines().map(|(_, deadline)| deadline).min()
    }

    /// Each dialing call and its deadline.
    fn dialing_deadlines(&self) -> impl Iterator<Item = (CallRef, Instant)> + '_ {
        #[cfg(test)]
        {
            let walked: Vec<CallRef> = (self.calls.iter())
                .filter(|(_, c)| matches!(c, Call::Dialing { .. }))
                .map(|(k, _)| *k)
                .collect();
            let kept: Vec<CallRef> = self.dialing.iter().copied().collect();
            assert_eq!(kept, walked, "the dialing index follows the calls");
        }
        self.dialing
            .iter()
            .filter_map(|call| match self.calls.get(call) {
                Some(Call::Dialing { deadline, .. }) => Some((*call, *deadline)),
                _ => None,
            })
    }

    /// Sets `call`'s state, keeping the dialing index.
    fn put(&mut self, call: CallRef, state: Call) {
        if matches!(state, Call::Dialing { .. }) {
            self.dialing.insert(call);
        } else {
            self.dialing.remove(&call);
        }
        self.calls.insert(call, state);
    }

    /// Forgets `call`, keeping the dialing index.
    fn take(&mut self, call: CallRef) -> Option<Call> {
        self.dialing.remove(&call);
        self.calls.remove(&call)
    }

    /// Changes the capacity (a scaler's cluster grows, shrinks or links rooms).
    /// Calls already in rooms stay; new ones count against the new figure.
    pub fn set_channels(&mut self, channels: u32) {
        self.cfg.channels = channels;
    }

    /// The capacity in conference channels.
    pub fn channels(&self) -> u32 {
        self.cfg.channels
    }

    /// Channels taken by calls in rooms (alerting included).
    pub fn channels_used(&self) -> u32 {
        self.dir.used()
    }

    /// Channels neither used nor reserved: capacity − used − outstanding reservations.
    pub fn channels_free(&self) -> u32 {
        self.cfg
            .channels
            .saturating_sub(self.dir.used())
            .saturating_sub(self.dir.outstanding())
    }

    /// Channels reserved by rooms and not yet taken by members.
    pub fn channels_reserved(&self) -> u32 {
        self.dir.outstanding()
    }

    /// How many rooms are open.
    pub fn room_count(&self) -> usize {
        self.dir.rooms().count()
    }

    /// All rooms, sorted by id.
    pub fn rooms(&self) -> Vec<RoomStatus> {
        self.dir
            .rooms()
            .map(|r| RoomStatus {
                id: r.id.clone(),
                reserve: r.reserve,
                disconnect_control: r.disconnect_control,
                remote_connect: r.remote_connect,
                multivideo: r.multivideo,
                creator: Some(r.creator),
                exclusive: r.listen.exclusive(),
                members: r.listen.members().iter().map(MemberStatus::from).collect(),
            })
            .collect()
    }

    /// The status of one call's membership (alerting or connected), without
    /// building the whole room list.
    pub fn member(&self, call: CallRef) -> Option<MemberStatus> {
        let room = self.call_room(call)?;
        let m = self.dir.get(room)?.listen.member(call)?;
        Some(MemberStatus::from(m))
    }

    /// Whether a room takes video (`false` for a `*83` room); `None`: no such room.
    pub fn room_multivideo(&self, room: &str) -> Option<bool> {
        self.dir.get(room).map(|r| r.multivideo)
    }

    /// The room a call is in (alerting or connected).
    pub fn call_room(&self, call: CallRef) -> Option<&str> {
        match self.calls.get(&call)? {
            Call::InRoom { room, .. } => Some(room),
            Call::Dialing { .. } => None,
        }
    }

    fn room_of(&self, call: CallRef) -> Result<String, ConfError> {
        match self.calls.get(&call) {
            None => Err(ConfError::NoSuchCall(call)),
            Some(Call::Dialing { .. }) => Err(ConfError::NotInRoom(call)),
            Some(Call::InRoom { room, .. }) => Ok(room.clone()),
        }
    }

    /// Re-reads a dialing call's number and acts on it.
    fn evaluate(&mut self, call: CallRef) {
        let parsed = match self.calls.get(&call) {
            Some(Call::Dialing {
                dialed, complete, ..
            }) => dial::parse(dialed, *complete),
            _ => return,
        };
        match parsed {
            Err(_) => self.reject(call, Cause::INVALID_NUMBER),
            Ok(Dial::Incomplete) => {}
            Ok(Dial::Plain { digits, ended }) => match self.dir.room_for(&digits) {
                Some(id) => {
                    let id = id.to_string();
                    self.try_join(call, &id, self.cfg.channels);
                }
                None if !ended && (digits.is_empty() || self.dir.is_head_of_any(&digits)) => {}
                None => self.reject(call, Cause::NO_CHANNEL),
            },
            Ok(Dial::Command(cmd)) => self.command(call, cmd),
        }
    }

    fn command(&mut self, call: CallRef, cmd: Command) {
        if cmd
            .matches
            .as_ref()
            .is_some_and(|m| !cmd.number.starts_with(m.as_str()))
        {
            return self.reject(call, Cause::NO_CHANNEL);
        }
        let limit = cmd
            .channel_max
            .map_or(self.cfg.channels, |m| m.min(self.cfg.channels));
        match cmd.kind {
            CommandKind::CreateRandom => {
                let len = cmd.id_length.unwrap_or(self.cfg.default_id_length);
                match self.dir.random_id(&mut self.rng, &cmd.number, len) {
                    Some(id) => self.try_create(call, id, &cmd, limit),
                    None => self.reject(call, Cause::NO_CHANNEL),
                }
            }
            CommandKind::CreateGiven if self.dir.overlaps_any(&cmd.number) => {
                self.reject(call, Cause::NO_CHANNEL)
            }
            CommandKind::CreateOrJoin if self.dir.get(&cmd.number).is_some() => {
                let id = cmd.number.clone();
                self.try_join(call, &id, limit)
            }
            CommandKind::CreateOrJoin if self.dir.overlaps_any(&cmd.number) => {
                self.reject(call, Cause::NO_CHANNEL)
            }
            CommandKind::CreateGiven | CommandKind::CreateOrJoin => {
                let id = cmd.number.clone();
                self.try_create(call, id, &cmd, limit)
            }
        }
    }

    fn try_create(&mut self, call: CallRef, id: String, cmd: &Command, limit: u32) {
        if !self.dir.can_create(cmd.reserve, limit) {
            return self.reject(call, Cause::NO_CHANNEL);
        }
        self.out.push_back(Output::OpenRoom { room: id.clone() });
        self.out.push_back(Output::Event(ConfEvent::RoomCreated {
            room: id.clone(),
            reserve: cmd.reserve,
            disconnect_control: cmd.disconnect_control,
            remote_connect: cmd.remote_connect,
            multivideo: cmd.multivideo,
        }));
        self.dir.insert(Room {
            id: id.clone(),
            reserve: cmd.reserve,
            disconnect_control: cmd.disconnect_control,
            remote_connect: cmd.remote_connect,
            multivideo: cmd.multivideo,
            creator: call,
            listen: Listen::default(),
        });
        self.touched_rooms.insert(id.clone());
        self.admit(call, &id);
    }

    fn try_join(&mut self, call: CallRef, id: &str, limit: u32) {
        if self.dir.can_join(id, limit) {
            self.admit(call, id);
        } else {
            self.reject(call, Cause::NO_CHANNEL);
        }
    }

    /// Puts a call into an existing room (capacity already checked).
    fn admit(&mut self, call: CallRef, id: &str) {
        let Some(room) = self.dir.get(id) else {
            return;
        };
        let alerting = room.remote_connect && room.creator != call;
        let multivideo = room.multivideo;
        let state = if alerting {
            MemberState::Alerting
        } else {
            MemberState::Connected
        };
        let Some(heard) = self.dir.add_member(id, call, state) else {
            return;
        };
        self.put(
            call,
            Call::InRoom {
                room: id.to_string(),
                dtmf: String::new(),
            },
        );
        self.touched_calls.insert(call);
        let room = id.to_string();
        self.out.push_back(Output::AddMember {
            call,
            room: room.clone(),
            heard,
            receives: !alerting,
        });
        self.out.push_back(if alerting {
            Output::Alerting {
                call,
                room: room.clone(),
            }
        } else {
            Output::Connected {
                call,
                room: room.clone(),
                multivideo,
            }
        });
        self.out
            .push_back(Output::Event(ConfEvent::Joined { room, call }));
    }

    fn connect(&mut self, id: &str, call: CallRef) -> Result<(), ConfError> {
        let Some(room) = self.dir.get_mut(id) else {
            return Err(ConfError::NotInRoom(call));
        };
        if !room.listen.connect(call, &mut self.changes) {
            return Err(ConfError::NotAlerting(call));
        }
        self.touched_calls.insert(call);
        let multivideo = room.multivideo;
        self.out.push_back(Output::SetReceives {
            call,
            receives: true,
        });
        self.flush_changes(id);
        self.out.push_back(Output::Connected {
            call,
            room: id.to_string(),
            multivideo,
        });
        Ok(())
    }

    fn listen_op(
        &mut self,
        id: &str,
        call: CallRef,
        op: impl FnOnce(&mut Listen, CallRef, &mut Vec<Change>),
    ) {
        if let Some(room) = self.dir.get_mut(id) {
            op(&mut room.listen, call, &mut self.changes);
            self.touched_calls.insert(call);
            self.flush_changes(id);
        }
    }

    fn flush_changes(&mut self, id: &str) {
        for change in self.changes.drain(..) {
            match change {
                Change::Exclusive(exclusive) => {
                    self.touched_rooms.insert(id.to_string());
                    self.out.push_back(Output::Event(ConfEvent::ListenMode {
                        room: id.to_string(),
                        exclusive,
                    }))
                }
                Change::Heard { call, heard } => {
                    self.touched_calls.insert(call);
                    self.out.push_back(Output::SetHeard { call, heard });
                    self.out.push_back(Output::Event(ConfEvent::Muted {
                        room: id.to_string(),
                        call,
                        muted: !heard,
                    }));
                }
            }
        }
    }

    /// Releases a call that is not in a room.
    fn reject(&mut self, call: CallRef, cause: Cause) {
        self.take(call);
        self.out.push_back(Output::Released { call, cause });
    }

    /// Takes a call out of its room; `notify` when the node (not the PBX) ends it.
    fn leave(&mut self, call: CallRef, cause: Cause, notify: bool) {
        let Some(Call::InRoom { room: id, .. }) = self.take(call) else {
            return;
        };
        self.dir.remove_member(&id, call, &mut self.changes);
        let Some(room) = self.dir.get(&id) else {
            return;
        };
        let cascade = room.disconnect_control && room.creator == call;
        let others: Vec<CallRef> = if cascade {
            room.listen.members().iter().map(|m| m.call).collect()
        } else {
            Vec::new()
        };
        let empty = room.listen.members().is_empty();
        self.out.push_back(Output::RemoveMember { call });
        if notify {
            self.out.push_back(Output::Released { call, cause });
        }
        self.out.push_back(Output::Event(ConfEvent::Left {
            room: id.clone(),
            call,
            cause,
        }));
        if cascade {
            // The room is going away: nobody needs to hear about listen changes.
            self.changes.clear();
            for other in others {
                self.leave(other, Cause::NORMAL, true);
            }
        } else {
            self.flush_changes(&id);
        }
        if empty {
            self.dir.remove(&id);
            self.out.push_back(Output::CloseRoom { room: id.clone() });
            self.out
                .push_back(Output::Event(ConfEvent::RoomClosed { room: id }));
        }
    }
}
