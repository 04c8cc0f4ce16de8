//! What the client hands back: call outcomes, events, the node's status.
//!
//! A refused call is a [`CallAnswer::Release`], a value, because refusing is the
//! node's normal business (no room, no channel, no codec); only failures of the
//! session itself are errors of the client.

use scnf_core::control::msg::{
    Channels, ControlInfo, MediaAnswer, NodeInfo, PlacedInfo, RoomInfo, ServerMsg, WorkerInfo,
};
use std::net::SocketAddr;

/// How the node decided a call (the answer to `Setup`, or to the `Info` that
/// completed the number).
#[derive(Clone, Debug, PartialEq)]
pub enum CallAnswer {
    /// The call is in room `room`.
    Connect {
        room: String,
        participant: u64,
        answer: MediaAnswer,
        multivideo: bool,
    },
    /// The call reached a `*82` room and waits for remote control 0.
    Alerting {
        room: String,
        participant: u64,
        answer: MediaAnswer,
    },
    /// The node refused or ended the call; `cause` is Q.850.
    Release { cause: u8, reason: String },
    /// The node waits for more digits (send [`Client::info`](super::Client::info)).
    AwaitingDigits,
}

impl CallAnswer {
    /// The node's media side, when the call got one.
    pub fn answer(&self) -> Option<&MediaAnswer> {
        match self {
            CallAnswer::Connect { answer, .. } | CallAnswer::Alerting { answer, .. } => {
                Some(answer)
            }
            _ => None,
        }
    }

    /// Where the member sends its RTP, when the call got media.
    pub fn media_addr(&self) -> Option<SocketAddr> {
        self.answer().map(|a| SocketAddr::new(a.address, a.port))
    }

    /// Turns a call outcome message into an answer (`None` for other messages).
    pub(super) fn from_msg(m: ServerMsg) -> Option<(String, CallAnswer)> {
        Some(match m {
            ServerMsg::Connect {
                call,
                room,
                participant,
                answer,
                multivideo,
            } => (
                call,
                CallAnswer::Connect {
                    room,
                    participant,
                    answer,
                    multivideo,
                },
            ),
            ServerMsg::Alerting {
                call,
                room,
                participant,
                answer,
            } => (
                call,
                CallAnswer::Alerting {
                    room,
                    participant,
                    answer,
                },
            ),
            ServerMsg::Release {
                call,
                cause,
                reason,
            } => (call, CallAnswer::Release { cause, reason }),
            _ => return None,
        })
    }
}

/// Something that happened without being the answer the client waited for.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A room event exactly as the node sent it: `RoomCreated`, `RoomClosed`,
    /// `ParticipantJoined`, `ParticipantLeft`, `Talking`, `Muted` or `ListenMode`
    /// (see [`ServerMsg`]; [`ServerMsg::is_event`] tells them apart).
    Room(ServerMsg),
    /// The node ended one of this session's calls on its own (media timeout, the
    /// creator of a `*81` room left, digits never completed).
    Release {
        call: String,
        cause: u8,
        reason: String,
    },
    /// A call's outcome that arrived after its request was answered: the `Connect`
    /// after remote control 0, or one for a request whose wait had timed out.
    Outcome { call: String, answer: CallAnswer },
    /// Anything else the node sent unasked (e.g. an `Error` about no request).
    Other(ServerMsg),
}

impl Event {
    /// Whether an unsolicited message is worth keeping: everything but a late
    /// acknowledgement of a request given up on, which says nothing new.
    pub(super) fn is_kept(m: &ServerMsg, had_src: bool) -> bool {
        !had_src
            || m.is_event()
            || matches!(
                m,
                ServerMsg::Connect { .. } | ServerMsg::Alerting { .. } | ServerMsg::Release { .. }
            )
    }

    /// Sorts an unsolicited message: events by type, call outcomes as outcomes.
    pub(super) fn from_msg(m: ServerMsg, had_src: bool) -> Option<Event> {
        if !Event::is_kept(&m, had_src) {
            return None;
        }
        Some(match m {
            m if m.is_event() => Event::Room(m),
            ServerMsg::Release {
                call,
                cause,
                reason,
            } if !had_src => Event::Release {
                call,
                cause,
                reason,
            },
            m @ (ServerMsg::Connect { .. }
            | ServerMsg::Alerting { .. }
            | ServerMsg::Release { .. }) => {
                let (call, answer) = CallAnswer::from_msg(m)?;
                Event::Outcome { call, answer }
            }
            other => Event::Other(other),
        })
    }
}

/// Whether the node proved that it knows the secret ([`Client::login_optional`](super::Client::login_optional)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAuth {
    /// The node's proof verified.
    Proven,
    /// The node has no password: it let the client in without a proof.
    Open,
}

/// The node's `HealthResult`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeHealth {
    pub version: u32,
    pub channels: Channels,
    pub rooms: usize,
    pub legs: usize,
    pub workers: Vec<WorkerInfo>,
    /// What the control side cut or refused.
    pub control: ControlInfo,
    /// A scaler's nodes (empty from a node).
    pub nodes: Vec<NodeInfo>,
}

/// The node's `StatusResult`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStatus {
    pub version: u32,
    pub channels: Channels,
    pub rooms: Vec<RoomInfo>,
    pub workers: Vec<WorkerInfo>,
    /// What the control side cut or refused.
    pub control: ControlInfo,
    /// A scaler's nodes (empty from a node).
    pub nodes: Vec<NodeInfo>,
    /// A node's legs that a scaler placed.
    pub placed: Option<PlacedInfo>,
}
