//! The call-control protocol's messages: JSON objects over WebSocket text frames.
//!
//! AppWebsocket style: every message has `mt` (its type) and may carry `src`, an opaque
//! string the node echoes in every message it sends in response, so a controller can
//! match answers to requests. Field names are lower-case; unknown fields are ignored
//! (a newer controller can talk to an older node), unknown `mt` values are refused with
//! an [`ServerMsg::Error`] naming them. `docs/control-protocol.md` is the prose version
//! with a full example session.
//!
//! Parsing is two-step on purpose ([`parse_client`]): first any JSON object, so that
//! `mt` and `src` can be reported even when the body is wrong, then the typed message.

mod media;
mod video;

pub use media::{CodecDesc, Direction, MediaAnswer, MediaOffer};
pub use video::{VideoAnswer, VideoChannelInfo, VideoLayer, VideoOffer, VideoViewInfo};

use crate::engine::LegStats;
use scnf_media::codec::CodecKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Version of this protocol; reported in `AppChallengeResult`, `AppLoginResult` and
/// `StatusResult`. A controller asking for another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest call id, called number, digit string, name or nonce accepted, bytes.
pub const MAX_FIELD: usize = 256;

/// Messages a controller sends to the node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mt")]
pub enum ClientMsg {
    /// Starts a login: the node answers with a fresh challenge.
    AppChallenge {
        /// Protocol version the controller speaks (default: this node's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
    /// Completes a login (see `docs/login.md` for the digest).
    AppLogin {
        name: String,
        cnonce: String,
        #[serde(default)]
        info: String,
        digest: String,
        /// The resume token of an earlier login (its `AppLoginResult.token`): this
        /// connection takes over that controller and its calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
    },
    /// A new call into the conference interface. `called` is the call-setup command
    /// (`*1...`, `*2...`, `*3...` or room digits); `complete` is the sending-complete
    /// flag.
    Setup {
        call: String,
        called: String,
        #[serde(default)]
        complete: bool,
        media: MediaOffer,
    },
    /// More called-number digits for a call still dialing (overlap dialing).
    Info {
        call: String,
        digits: String,
        #[serde(default)]
        complete: bool,
    },
    /// A DTMF digit signalled out of band by the controller (e.g. SIP INFO).
    Dtmf { call: String, digit: String },
    /// A remote-control facility (0 connect, 24/25 receive on/off, 26/27 listen mode).
    RemoteControl { call: String, code: u32 },
    /// The member put the call on hold (its contribution is muted).
    Hold { call: String },
    /// The member retrieved the call.
    Retrieve { call: String },
    /// A media direction change (re-INVITE): `sendonly`/`inactive` hold the call,
    /// `sendrecv`/`recvonly` retrieve it.
    Direction { call: String, direction: Direction },
    /// The controller ends a call.
    Release {
        call: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<u8>,
    },
    /// The member opens its video-send stream for `layer` (see [`VideoOffer`]); sent
    /// again for a layer it has, the new offer replaces the old one.
    VideoSend {
        call: String,
        layer: VideoLayer,
        media: VideoOffer,
    },
    /// The member closes its video-send stream for `layer`.
    VideoSendStop { call: String, layer: VideoLayer },
    /// The member asks to see `participant` at `layer` in its view slot `view` (a
    /// number it chooses; one stream per slot, at `media`). Sent again for a slot it
    /// has, it switches the slot to another participant or layer, at that stream's
    /// next keyframe, on the same stream (SSRC, sequence numbers, timestamps go on).
    VideoView {
        call: String,
        view: u32,
        participant: u64,
        layer: VideoLayer,
        media: VideoOffer,
    },
    /// The member closes view slot `view`.
    VideoViewStop { call: String, view: u32 },
    /// Asks for rooms, participants, channels and per-leg media figures.
    Status,
    /// Asks for the node's load and clock health only: channels, counts and the
    /// media workers. Cheap at any size, unlike `Status` (which visits every leg),
    /// so it is what monitoring and load generators poll.
    Health,
}

impl ClientMsg {
    /// The message's `mt`.
    pub fn mt(&self) -> &'static str {
        match self {
            ClientMsg::AppChallenge { .. } => "AppChallenge",
            ClientMsg::AppLogin { .. } => "AppLogin",
            ClientMsg::Setup { .. } => "Setup",
            ClientMsg::Info { .. } => "Info",
            ClientMsg::Dtmf { .. } => "Dtmf",
            ClientMsg::RemoteControl { .. } => "RemoteControl",
            ClientMsg::Hold { .. } => "Hold",
            ClientMsg::Retrieve { .. } => "Retrieve",
            ClientMsg::Direction { .. } => "Direction",
            ClientMsg::Release { .. } => "Release",
            ClientMsg::VideoSend { .. } => "VideoSend",
            ClientMsg::VideoSendStop { .. } => "VideoSendStop",
            ClientMsg::VideoView { .. } => "VideoView",
            ClientMsg::VideoViewStop { .. } => "VideoViewStop",
            ClientMsg::Status => "Status",
            ClientMsg::Health => "Health",
        }
    }

    /// The call id a request names, if it names one.
    pub fn call(&self) -> Option<&str> {
        match self {
            ClientMsg::Setup { call, .. }
            | ClientMsg::Info { call, .. }
            | ClientMsg::Dtmf { call, .. }
            | ClientMsg::RemoteControl { call, .. }
            | ClientMsg::Hold { call }
            | ClientMsg::Retrieve { call }
            | ClientMsg::Direction { call, .. }
            | ClientMsg::Release { call, .. }
            | ClientMsg::VideoSend { call, .. }
            | ClientMsg::VideoSendStop { call, .. }
            | ClientMsg::VideoView { call, .. }
            | ClientMsg::VideoViewStop { call, .. } => Some(call),
            ClientMsg::AppChallenge { .. }
            | ClientMsg::AppLogin { .. }
            | ClientMsg::Status
            | ClientMsg::Health => None,
        }
    }
}

/// Every `mt` a controller may send (for "unknown message type" errors).
pub const CLIENT_TYPES: [&str; 16] = [
    "AppChallenge",
    "AppLogin",
    "Setup",
    "Info",
    "Dtmf",
    "RemoteControl",
    "Hold",
    "Retrieve",
    "Direction",
    "Release",
    "VideoSend",
    "VideoSendStop",
    "VideoView",
    "VideoViewStop",
    "Status",
    "Health",
];

/// Room options as created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomOptions {
    /// Channels reserved for the room (`*2`).
    pub reserve: u32,
    /// `*81`: the creator leaving releases everyone.
    pub disconnect_control: bool,
    /// `*82`: joiners stay alerting until remote control 0.
    pub remote_connect: bool,
    /// `false` with `*83`.
    pub multivideo: bool,
}

/// The control side's own counters, since the node started: what it cut or refused,
/// so an operator sees an attack or a broken controller without reading its logs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlInfo {
    /// Control sessions open now (logged in or not yet).
    pub sessions: usize,
    /// Sessions the node closed, by reason (`not reading`, `idle timeout`, `message
    /// not finished`, `login timeout`, ...). A peer's own close is not counted.
    pub closed: BTreeMap<String, u64>,
    /// Requests refused over their session's budget (`Error` "rate-limited").
    pub rate_limited: u64,
    /// Node events call control lost (each loss also went out as `EventsLost`).
    pub events_lost: u64,
    /// Controllers whose connection is gone and whose grace runs (waiting for a
    /// resume), and the calls they hold.
    pub detached: usize,
    pub detached_calls: usize,
    /// Logins that resumed a controller, and of those the ones answered with a
    /// `Resync` (the missed messages overflowed the replay buffer).
    pub resumes: u64,
    pub resyncs: u64,
    /// Controllers whose grace ran out, and the calls released then (cause 102).
    pub expired: u64,
    pub expired_calls: u64,
    /// On a restarted scaler: calls taken back from the nodes' keeps, and kept
    /// rooms or calls that could not be (torn down).
    #[serde(default)]
    pub adopted: u64,
    #[serde(default)]
    pub adopt_refused: u64,
}

/// Channel accounting of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    pub capacity: u32,
    pub used: u32,
    /// What a new call could still take (capacity minus used minus outstanding
    /// reservations).
    pub free: u32,
}

/// One media worker in `StatusResult` / `HealthResult`: how well it keeps its 20 ms
/// mix clock (a late tick ran more than 10 ms after it was due,
/// `engine::LATE_TICK`; a load generator judges a node's capacity by them) and what
/// input it dropped. It is the worker's [`crate::engine::WorkerStats`] serialised
/// whole: a counter the engine adds reaches controllers with no more plumbing, and
/// the older fields (`index`, `legs`, `ticks`, `late_ticks`, `skipped_ticks`,
/// `lateness_p50_us`, `lateness_p99_us`) keep their names.
pub type WorkerInfo = crate::engine::WorkerStats;

/// One member in a status report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub participant: u64,
    pub call: String,
    /// `alerting` or `connected`.
    pub state: String,
    pub held: bool,
    pub receive_off: bool,
    /// Whether the others hear this member now.
    pub heard: bool,
    pub codec: String,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub packets_lost: i64,
    pub jitter_ms: f64,
    pub talking: bool,
    /// The leg's statistics whole (what the figures above are taken from, plus the
    /// input counters: late, duplicates, unknown payload types, SSRC changes, ...).
    /// Serialised as the engine's `LegStats`, so counters added there appear here
    /// with no more plumbing. Absent from older nodes (then all zero).
    #[serde(default)]
    pub counters: LegStats,
    /// The cluster node the member's media is on (a scaler's report only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// An invisible participant of a room spread over nodes (a scaler's report only):
/// the link leg on node `node` that stands for node `peer`. Links form a star
/// around the room's primary: the primary has one per other node, every other node
/// one to the primary. Each takes a channel on its node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvisibleInfo {
    pub node: String,
    pub peer: String,
    #[serde(default)]
    pub counters: LegStats,
}

/// What a scaler placed on this node (a node's `StatusResult`): legs of its callers
/// and its invisible participants (links to other nodes), which the node's own
/// rooms and members never include.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlacedInfo {
    pub members: usize,
    pub invisible: usize,
}

/// One cluster node in a scaler's `StatusResult` / `HealthResult`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeInfo {
    pub name: String,
    pub version: String,
    /// The channels it offers, and how many are in use: by its own controllers
    /// (`local`), by the cluster's members (`members`) and by invisible
    /// participants (`invisible`).
    pub channels: u32,
    pub local: u32,
    pub members: u32,
    pub invisible: u32,
    pub free: u32,
    /// Rooms open on it, and of those the rooms it is the primary of.
    pub rooms: u32,
    pub primary: u32,
    /// Its media workers, as its last load report gave them.
    pub workers: Vec<WorkerInfo>,
}

/// One call in a [`ServerMsg::Resync`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncCall {
    pub call: String,
    pub participant: u64,
    /// Its room (absent while it is still dialling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// `dialing`, `alerting` or `connected`.
    pub state: String,
    pub held: bool,
    pub receive_off: bool,
    pub heard: bool,
}

/// One room in a status report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub room: String,
    pub options: RoomOptions,
    /// Participant whose exclusive listen mode is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<u64>,
    pub members: Vec<MemberInfo>,
    /// The node that mixes the room's nodes together (a scaler's report only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Its invisible participants (a scaler's report of a room on several nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invisible: Vec<InvisibleInfo>,
    /// Its video channels: every publisher stream (participant and layer) with its
    /// viewers and figures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub video: Vec<VideoChannelInfo>,
    /// Its members' view slots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<VideoViewInfo>,
}

/// Messages the node sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mt")]
pub enum ServerMsg {
    AppChallengeResult {
        challenge: String,
        version: u32,
    },
    AppLoginResult {
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// HMAC proof that the node knows the secret (absent when no password is set).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<String>,
        version: u32,
        /// The controller's resume token (32 hex digits): sent in a later `AppLogin`
        /// as `resume`, it gets this controller's calls back (absent on a refusal).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The login resumed the controller its `resume` named.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
        /// Why the `resume` did not: `malformed-token` or `unknown-token` (wrong, or its
        /// controller's grace ran out). The login went on as a new controller.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_error: Option<String>,
    },
    /// The call reached a `*82` room: it waits for remote control 0.
    Alerting {
        call: String,
        room: String,
        participant: u64,
        answer: MediaAnswer,
    },
    /// The call is in the room; `room` is the connected number.
    Connect {
        call: String,
        room: String,
        participant: u64,
        answer: MediaAnswer,
        multivideo: bool,
    },
    /// The node ends (or refuses) a call; `cause` is Q.850.
    Release {
        call: String,
        cause: u8,
        reason: String,
    },
    /// Answer to the controller's `Release`.
    ReleaseResult {
        call: String,
    },
    /// Answer to `Info` while digits are still awaited.
    InfoResult {
        call: String,
    },
    DtmfResult {
        call: String,
    },
    RemoteControlResult {
        call: String,
        code: u32,
    },
    HoldResult {
        call: String,
    },
    RetrieveResult {
        call: String,
    },
    DirectionResult {
        call: String,
    },
    /// Answer to `VideoSend`: send the stream's RTP to `answer`.
    VideoSendResult {
        call: String,
        layer: VideoLayer,
        answer: VideoAnswer,
    },
    VideoSendStopResult {
        call: String,
        layer: VideoLayer,
    },
    /// Answer to `VideoView`: the slot's stream comes from `answer` with `ssrc` (the
    /// same for the slot's whole life).
    VideoViewResult {
        call: String,
        view: u32,
        participant: u64,
        layer: VideoLayer,
        ssrc: u32,
        answer: VideoAnswer,
    },
    VideoViewStopResult {
        call: String,
        view: u32,
    },
    /// A view slot ended without the member asking: the participant it showed left
    /// the room (sent to the viewer's controller).
    VideoViewEnded {
        call: String,
        view: u32,
        reason: String,
    },
    StatusResult {
        version: u32,
        channels: Channels,
        rooms: Vec<RoomInfo>,
        /// The media workers' clocks (absent from older nodes).
        #[serde(default)]
        workers: Vec<WorkerInfo>,
        /// The control side's counters (absent from older nodes).
        #[serde(default)]
        control: ControlInfo,
        /// A scaler's nodes (absent from a node's report).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<NodeInfo>,
        /// A node's legs that a scaler placed (absent when there are none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placed: Option<PlacedInfo>,
    },
    HealthResult {
        version: u32,
        channels: Channels,
        /// Rooms open on this node.
        rooms: usize,
        /// Media legs on this node's workers.
        legs: usize,
        workers: Vec<WorkerInfo>,
        /// The control side's counters (absent from older nodes).
        #[serde(default)]
        control: ControlInfo,
        /// A scaler's nodes (absent from a node's report).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<NodeInfo>,
    },
    // Events, sent to every logged-in session.
    RoomCreated {
        room: String,
        options: RoomOptions,
    },
    RoomClosed {
        room: String,
    },
    ParticipantJoined {
        room: String,
        participant: u64,
        call: String,
        /// The cluster node its media is on (from a scaler only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    ParticipantLeft {
        room: String,
        participant: u64,
        call: String,
        cause: u8,
    },
    Talking {
        room: String,
        participant: u64,
        call: String,
        talking: bool,
    },
    Muted {
        room: String,
        participant: u64,
        call: String,
        muted: bool,
    },
    ListenMode {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exclusive: Option<u64>,
    },
    /// A latching member's media moved to a new address (a NAT rebinding, or a NAT
    /// that changed the port before the first packet): the node now sends there.
    MediaMoved {
        room: String,
        participant: u64,
        call: String,
        address: IpAddr,
        port: u16,
    },
    /// The video-send streams of a participant changed: `layers` are the ones it
    /// sends now (empty: none). The participant block's "which video streams exist".
    VideoStreams {
        room: String,
        participant: u64,
        call: String,
        layers: Vec<VideoLayer>,
    },
    /// After a resume whose missed messages did not fit the replay buffer: every
    /// call the controller has, as it is now. Events were lost: ask `Status` for
    /// the rooms.
    Resync {
        calls: Vec<ResyncCall>,
    },
    /// The node lost `lost` media events (DTMF, talking, media timeouts) before call
    /// control saw them: room state may differ from the events sent; ask `Status`.
    EventsLost {
        lost: u64,
    },
    /// A request was refused; `error` names the problem, `of` the request's `mt`.
    Error {
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        of: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<String>,
    },
}

impl ServerMsg {
    /// Whether this is a room event (sent to every logged-in session, no `src`).
    pub fn is_event(&self) -> bool {
        matches!(
            self,
            ServerMsg::RoomCreated { .. }
                | ServerMsg::RoomClosed { .. }
                | ServerMsg::ParticipantJoined { .. }
                | ServerMsg::ParticipantLeft { .. }
                | ServerMsg::Talking { .. }
                | ServerMsg::Muted { .. }
                | ServerMsg::ListenMode { .. }
                | ServerMsg::MediaMoved { .. }
                | ServerMsg::VideoStreams { .. }
                | ServerMsg::EventsLost { .. }
        )
    }
}

/// A parsed request: the message and the `src` to echo.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    pub src: Option<String>,
    pub msg: ClientMsg,
}

/// Why a text frame is not a request. Carries what could be read of it, so the error
/// answer can still echo `src` and name `mt`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{problem}")]
pub struct ParseError {
    pub problem: String,
    pub mt: Option<String>,
    pub src: Option<String>,
}

/// Parses one text frame from a controller.
pub fn parse_client(text: &str) -> Result<Incoming, ParseError> {
    let fail =
        |problem: String, mt: Option<String>, src: Option<String>| ParseError { problem, mt, src };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| fail(format!("malformed JSON: {e}"), None, None))?;
    let serde_json::Value::Object(map) = &value else {
        return Err(fail("a message must be a JSON object".into(), None, None));
    };
    let src = match map.get("src") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.len() <= MAX_FIELD => Some(s.clone()),
        Some(_) => {
            return Err(fail(
                format!("src must be a string of at most {MAX_FIELD} bytes"),
                None,
                None,
            ))
        }
    };
    let mt = match map.get("mt") {
        Some(serde_json::Value::String(mt)) => mt.clone(),
        Some(_) => return Err(fail("mt must be a string".into(), None, src)),
        None => return Err(fail("missing mt".into(), None, src)),
    };
    if !CLIENT_TYPES.contains(&mt.as_str()) {
        let shown: String = mt.chars().take(64).collect();
        return Err(fail(
            format!("unknown message type {shown:?}"),
            Some(shown),
            src,
        ));
    }
    let msg: ClientMsg = serde_json::from_value(value)
        .map_err(|e| fail(format!("bad {mt}: {e}"), Some(mt.clone()), src.clone()))?;
    check_lengths(&msg).map_err(|field| {
        fail(
            format!("bad {mt}: {field} is longer than {MAX_FIELD} bytes"),
            Some(mt.clone()),
            src.clone(),
        )
    })?;
    Ok(Incoming { src, msg })
}

/// Names the first string field that exceeds [`MAX_FIELD`].
fn check_lengths(msg: &ClientMsg) -> Result<(), &'static str> {
    let long = |s: &str| s.len() > MAX_FIELD;
    let fields: &[(&'static str, &str)] = match msg {
        ClientMsg::AppLogin {
            name,
            cnonce,
            info,
            digest,
            resume,
        } => &[
            ("name", name),
            ("cnonce", cnonce),
            ("info", info),
            ("digest", digest),
            ("resume", resume.as_deref().unwrap_or_default()),
        ],
        ClientMsg::Setup { call, called, .. } => &[("call", call), ("called", called)],
        ClientMsg::Info { call, digits, .. } => &[("call", call), ("digits", digits)],
        ClientMsg::Dtmf { call, digit } => &[("call", call), ("digit", digit)],
        ClientMsg::RemoteControl { call, .. }
        | ClientMsg::Hold { call }
        | ClientMsg::Retrieve { call }
        | ClientMsg::Direction { call, .. }
        | ClientMsg::Release { call, .. }
        | ClientMsg::VideoSend { call, .. }
        | ClientMsg::VideoSendStop { call, .. }
        | ClientMsg::VideoView { call, .. }
        | ClientMsg::VideoViewStop { call, .. } => &[("call", call)],
        ClientMsg::AppChallenge { .. } | ClientMsg::Status | ClientMsg::Health => &[],
    };
    match fields.iter().find(|(_, v)| long(v)) {
        Some((name, _)) => Err(name),
        None => Ok(()),
    }
}

/// Serialises a node message, adding `src` when the request carried one.
pub fn to_text(msg: &ServerMsg, src: Option<&str>) -> String {
    let mut value = serde_json::to_value(msg).expect("server messages are plain data");
    if let (Some(src), serde_json::Value::Object(map)) = (src, &mut value) {
        map.insert("src".into(), serde_json::Value::String(src.into()));
    }
    value.to_string()
}

/// Parses a node message (controllers, tests, the load generator).
pub fn parse_server(text: &str) -> Result<(ServerMsg, Option<String>), serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let src = value.get("src").and_then(|s| s.as_str()).map(String::from);
    Ok((serde_json::from_value(value)?, src))
}

/// The codec the node answers with: the first offered one it supports, with the
/// offer's payload type. `None` when nothing matches (the call is refused, cause 88).
pub fn choose_codec(offer: &MediaOffer) -> Option<(CodecKind, CodecDesc)> {
    offer.codecs.iter().find_map(|c| {
        let kind = CodecKind::from_name(&c.name)?;
        let rate_ok = c.rate == kind.rtp_clock_rate();
        let pt_ok = match kind.static_payload_type() {
            Some(pt) => pt == c.pt,
            None => (96..128).contains(&c.pt),
        };
        (rate_ok && pt_ok).then(|| (kind, c.clone()))
    })
}

#[cfg(test)]
mod tests;
