//! What the conference core asks of its shell, and what it reports.
//!
//! [`Output`]s are executed in the order they are polled: media outputs on the media
//! engine, signalling towards the controller, and room [`ConfEvent`]s. The status types
//! answer the controller's status request.

use super::{CallRef, Cause, MemberState};

/// What the shell must do or tell, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open a room on the media engine (before its first `AddMember`).
    OpenRoom {
        room: String,
    },
    /// Add the call's leg to the room.
    AddMember {
        call: CallRef,
        room: String,
        heard: bool,
        receives: bool,
    },
    /// `heard = false`: the leg is muted for all.
    SetHeard {
        call: CallRef,
        heard: bool,
    },
    /// Whether the leg is sent the mix.
    SetReceives {
        call: CallRef,
        receives: bool,
    },
    RemoveMember {
        call: CallRef,
    },
    /// Close a room (after its last `RemoveMember`).
    CloseRoom {
        room: String,
    },
    Alerting {
        call: CallRef,
        room: String,
    },
    /// The connected number is the room id.
    Connected {
        call: CallRef,
        room: String,
        multivideo: bool,
    },
    /// The node ends the call (reject or clear).
    Released {
        call: CallRef,
        cause: Cause,
    },
    Event(ConfEvent),
}

/// Room events for the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfEvent {
    RoomCreated {
        room: String,
        reserve: u32,
        disconnect_control: bool,
        remote_connect: bool,
        multivideo: bool,
    },
    RoomClosed {
        room: String,
    },
    Joined {
        room: String,
        call: CallRef,
    },
    Left {
        room: String,
        call: CallRef,
        cause: Cause,
    },
    /// Sent whenever a member's `heard` flips.
    Muted {
        room: String,
        call: CallRef,
        muted: bool,
    },
    ListenMode {
        room: String,
        exclusive: Option<CallRef>,
    },
}

/// A room, for the status request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomStatus {
    pub id: String,
    pub reserve: u32,
    pub disconnect_control: bool,
    pub remote_connect: bool,
    pub multivideo: bool,
    pub creator: Option<CallRef>,
    pub exclusive: Option<CallRef>,
    pub members: Vec<MemberStatus>,
}

/// A member, for the status request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub call: CallRef,
    pub state: MemberState,
    pub held: bool,
    pub receive_off: bool,
    pub heard: bool,
}

impl From<&super::listen::Member> for MemberStatus {
    fn from(m: &super::listen::Member) -> MemberStatus {
        MemberStatus {
            call: m.call,
            state: m.state,
            held: m.held,
            receive_off: m.receive_off,
            heard: m.heard,
        }
    }
}
