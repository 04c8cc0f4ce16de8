//! The session root: one node's call control as a sans-IO state machine.
//!
//! It owns the protocol sessions (one per controller connection) and their logins,
//! the controllers their calls belong to, the protocol call ids, the conference core ([`Conference`]), the room table
//! ([`RoomTable`]) and the timers. It never reads the clock, a socket or the OS:
//!
//! - inputs: [`Session::handle_open`], [`Session::handle_text`] /
//!   [`Session::handle_message`], [`Session::handle_bad_frame`],
//!   [`Session::handle_close`] (from the transport), [`Session::handle_engine_event`]
//!   (from the media workers), [`Session::handle_media_result`] (the answer to a media
//!   operation it asked for), [`Session::handle_timeout`] and
//!   [`Session::handle_shutdown`] (the node is stopping);
//! - outputs, drained with [`Session::poll_output`] after every input: a message for a
//!   connection, a connection to close, or a [`MediaOp`] for a worker with a request id
//!   whose [`MediaResult`] must come back through `handle_media_result`;
//! - [`Session::poll_timeout`]: when to call `handle_timeout` next.
//!
//! Randomness comes from a seed (room ids of `*1`, login challenges).
//!
//! # Ordering
//! Conference outputs are executed in order. Adding a leg is the one media operation
//! whose result decides what follows (a refused leg releases the call instead of
//! connecting it), so while an `AddLeg` is outstanding the root is *waiting*
//! ([`Session::is_waiting`]): it executes nothing further and defers every new input
//! but media results, replaying them in order once the result is in. Every connection
//! therefore sees one order of events, as if requests ran one at a time. A driver
//! should stop reading its inputs while the root waits (back pressure), but a root fed
//! anyway stays correct.
//!
//! Calls belong to the *controller* that set them up, not to its connection: a
//! controller whose connection is lost may log in again within
//! [`SessionConfig::resume_grace`] and resume its calls (see [`controllers`]).

pub mod budget;
pub mod controllers;
mod execute;
mod keep;
pub mod media_addr;
mod report;
mod requests;
pub mod table;
#[cfg(test)]
mod tests;
pub mod timers;
mod video;

use crate::conf::{CallRef, Cause, ConfConfig, ConfError, Conference, MemberState};
use crate::control::auth::{Challenges, LoginConfig};
use crate::control::login::ChallengeSource;
use crate::control::login::{derive_key, Admission, LoginServer};
use crate::control::msg::{self, ClientMsg, CodecDesc, Incoming, MediaOffer, ServerMsg};
use crate::engine::{EngineEvent, MediaOp, MediaResult};
use budget::{Budgets, TokenBucket};
pub use controllers::{ControllerId, ControllerRecord};
pub use keep::{CallKeep, Kept, REBUILD_WINDOW};
use scnf_media::codec::CodecKind;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
pub use table::{LegPlace, MixPlace, RoomId, RoomTable, WorkerAddrs};
use timers::{Timer, Timers};

/// Identifies one protocol session (one controller connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Identifies one media operation, so its result finds its way back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReqId(pub u64);

/// Settings of the session root (typed, already validated). Its `Debug` never
/// prints the secret.
#[derive(Clone)]
pub struct SessionConfig {
    /// Shared login secret; `None`: sessions need no login (the shell allows that on
    /// loopback only).
    pub secret: Option<Vec<u8>>,
    pub login: LoginConfig,
    pub conf: ConfConfig,
    /// A session not logged in after this long is closed (a connection slot is not
    /// free for the taking). The node's shell sets `control.login_timeout_ms` (5 s),
    /// which its connection gate also enforces, from the accept.
    pub login_timeout: Duration,
    /// The node's media workers, in index order.
    pub workers: Vec<WorkerAddrs>,
    /// The node's own media endpoints: a Setup that names one is refused.
    pub own_media: media_addr::OwnMedia,
    /// What one session may ask for (see [`budget`]).
    pub budgets: Budgets,
    /// How long a controller whose connection is lost keeps its calls, waiting for
    /// it to log in again with its resume token (see [`controllers`]); zero
    /// releases them when the connection closes. The node's shell sets
    /// `control.resume_grace_ms` (60 s).
    pub resume_grace: Duration,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("login", &self.login)
            .field("conf", &self.conf)
            .field("login_timeout", &self.login_timeout)
            .field("workers", &self.workers)
            .field("own_media", &self.own_media)
            .field("budgets", &self.budgets)
            .field("resume_grace", &self.resume_grace)
            .finish()
    }
}

/// What the root asks its shell to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send a text frame to a connection.
    Send { conn: ConnId, text: String },
    /// Close a connection (the reason goes into the close frame).
    Close { conn: ConnId, reason: String },
    /// A connection got further in its login; the transport's connection budgets
    /// ([`crate::control::admission`]) follow it.
    Login { conn: ConnId, step: LoginStep },
    /// Apply `op` on media worker `worker` and hand the result back with `req`.
    Media {
        req: ReqId,
        worker: usize,
        op: MediaOp,
    },
    /// Keep `state` with the media of `what` (only a root that keeps its rooms on
    /// the nodes, [`Session::keep_on_nodes`], asks; `docs/cluster.md` says why).
    Keep {
        what: Kept,
        state: serde_json::Value,
    },
}

/// How far a connection got in its login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginStep {
    /// It was issued a challenge (it is logging in).
    Challenged,
    /// It logged in, or needs no login.
    LoggedIn,
}

struct Conn {
    peer: SocketAddr,
    logged_in: bool,
    challenges: Challenges,
    /// A close was asked for; the transport's `handle_close` is still to come.
    closing: bool,
    /// Every request pays here, `Status`/`Health` in `reports` as well.
    requests: TokenBucket,
    reports: TokenBucket,
    /// Its `Status`/`Health` requests not answered yet.
    reports_pending: usize,
    /// The controller it speaks for (once logged in).
    controller: Option<ControllerId>,
}

struct Call {
    controller: ControllerId,
    id: String,
    offer: MediaOffer,
    codec: (CodecKind, CodecDesc),
    leg: Option<LegPlace>,
    /// The cluster node a scaler placed the leg on (`None` on a node).
    node: Option<String>,
    /// Released by the node or the controller; forgotten after the outputs are drained.
    ended: bool,
}

/// An input that arrived while the root was waiting for a leg.
enum Deferred {
    Open { conn: ConnId, peer: SocketAddr },
    Text { conn: ConnId, text: String },
    Message { conn: ConnId, msg: Incoming },
    Bad { conn: ConnId, problem: String },
    Close { conn: ConnId },
    Engine(EngineEvent),
    EventsLost(u64),
    Timeout,
    Shutdown(Cause),
    Adopt(crate::cluster::planner::Adoption),
}

/// Distinct close reasons counted before the rest go under "other".
const MAX_CLOSE_REASONS: usize = 16;

/// The control side's own counters (see `ControlInfo` in the protocol messages).
#[derive(Debug, Default)]
struct Counters {
    closed: std::collections::BTreeMap<String, u64>,
    rate_limited: u64,
    events_lost: u64,
    resumes: u64,
    resyncs: u64,
    expired: u64,
    expired_calls: u64,
    adopted: u64,
    adopt_refused: u64,
}

/// See the module docs.
pub struct Session {
    cfg: SessionConfig,
    conf: Conference,
    login: LoginServer,
    table: RoomTable,
    conns: HashMap<ConnId, Conn>,
    calls: HashMap<CallRef, Call>,
    by_id: HashMap<(ControllerId, String), CallRef>,
    controllers: HashMap<ControllerId, controllers::Controller>,
    /// Controller ids and resume tokens (independent streams from the seed).
    ids: ChallengeSource,
    tokens: ChallengeSource,
    /// A resume's missed messages, sent right after its login answer.
    pending_replay: Option<(ConnId, ControllerId, controllers::Replay)>,
    /// Bytes every detached controller's replay keeps together.
    replay_total: usize,
    next_call: u64,
    next_req: u64,
    timers: Timers,
    /// The outstanding `AddLeg` and its call.
    waiting: Option<(ReqId, CallRef)>,
    deferred: VecDeque<Deferred>,
    /// `src` of the request whose outputs are being executed.
    src: Option<String>,
    /// The `Status`/`Health` snapshot round in flight, and the reports asked for
    /// since, which the next round answers together (see [`report`]).
    round: Option<report::Round>,
    queued_reports: Vec<report::Report>,
    out: VecDeque<Output>,
    /// What the control side cut or refused (reported in `Status`/`Health`).
    counters: Counters,
    /// Set by [`Session::handle_shutdown`]: the cause new calls are refused with.
    stopping: Option<Cause>,
    /// Calls marked ended, forgotten once the outputs are drained (a list, so a
    /// drain never visits every call).
    ended: Vec<CallRef>,
    /// A scaler's root keeps its rooms on the nodes and takes them back after a
    /// restart (see [`keep`]).
    keep: keep::KeepState,
    /// Members' video streams and view slots.
    video: video::VideoState,
}

/// The cause calls are released with when their node stops (Q.850 41, temporary
/// failure): the call did nothing wrong and the controller may set it up again at
/// once, on another node or this one once it is back. 38 (network out of order)
/// would say the outage is long, and 16 (normal clearing) that someone hung up.
pub const SHUTDOWN_CAUSE: Cause = Cause::TEMPORARY_FAILURE;

/// The close reason of every control session when the node stops.
pub const SHUTDOWN_REASON: &str = "node shutting down";

impl Session {
    /// A root for a node with `cfg.workers`; `seed` (32 bytes from the OS in a node,
    /// fixed in a test) feeds room ids and login challenges.
    pub fn new(cfg: SessionConfig, seed: [u8; 32]) -> Session {
        // Independent streams: room ids are guessable from a few of them (the core's
        // PRNG is not a cipher), which must tell nothing about the challenge key.
        let rooms = derive_key(&seed, "rooms");
        let conf_seed = u64::from_le_bytes(rooms[..8].try_into().expect("8 bytes"));
        Session {
            conf: Conference::new(cfg.conf.clone(), conf_seed),
            login: LoginServer::new(
                cfg.secret.clone(),
                cfg.login.clone(),
                derive_key(&seed, "login"),
            ),
            table: RoomTable::new(cfg.workers.clone()),
            cfg,
            conns: HashMap::new(),
            calls: HashMap::new(),
            by_id: HashMap::new(),
            controllers: HashMap::new(),
            ids: ChallengeSource::new(derive_key(&seed, "controller-ids")),
            tokens: ChallengeSource::new(derive_key(&seed, "resume-tokens")),
            pending_replay: None,
            replay_total: 0,
            next_call: 1,
            next_req: 1,
            timers: Timers::default(),
            waiting: None,
            deferred: VecDeque::new(),
            src: None,
            round: None,
            queued_reports: Vec::new(),
            out: VecDeque::new(),
            counters: Counters::default(),
            stopping: None,
            ended: Vec::new(),
            keep: keep::KeepState::default(),
            video: video::VideoState::default(),
        }
    }

    // ---- inputs --------------------------------------------------------------

    /// A connection from `peer` opened.
    pub fn handle_open(&mut self, now: Instant, conn: ConnId, peer: SocketAddr) {
        if self.waiting.is_some() {
            return self.deferred.push_back(Deferred::Open { conn, peer });
        }
        if self.stopping.is_some() {
            let reason = SHUTDOWN_REASON.into();
            return self.out.push_back(Output::Close { conn, reason });
        }
        let logged_in = !self.login.required();
        self.conns.insert(
            conn,
            Conn {
                peer,
                logged_in,
                challenges: Challenges::new(),
                closing: false,
                requests: TokenBucket::new(self.cfg.budgets.requests),
                reports: TokenBucket::new(self.cfg.budgets.reports),
                reports_pending: 0,
                controller: None,
            },
        );
        if logged_in {
            self.new_controller(conn);
            let step = LoginStep::LoggedIn;
            self.out.push_back(Output::Login { conn, step });
        } else {
            self.timers
                .set(Timer::Login(conn), now + self.cfg.login_timeout);
        }
    }

    /// One text frame from a connection: parsed, then [`Session::handle_message`]; a
    /// frame that is not a request is answered with an `Error`.
    pub fn handle_text(&mut self, now: Instant, conn: ConnId, text: &str) {
        if self.waiting.is_some() {
            // Even a refusal waits its turn: answers keep the order of the requests.
            let text = text.to_string();
            return self.deferred.push_back(Deferred::Text { conn, text });
        }
        match msg::parse_client(text) {
            Ok(msg) => self.handle_message(now, conn, msg),
            Err(e) => {
                let reply = ServerMsg::Error {
                    error: e.problem,
                    of: e.mt,
                    call: None,
                };
                self.send(conn, &reply, e.src.as_deref());
            }
        }
    }

    /// One request from a connection.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, msg: Incoming) {
        if self.waiting.is_some() {
            return self.deferred.push_back(Deferred::Message { conn, msg });
        }
        self.on_request(now, conn, msg);
    }

    /// A frame the transport could not pass on (binary, not UTF-8, ...).
    pub fn handle_bad_frame(&mut self, conn: ConnId, problem: String) {
        if self.waiting.is_some() {
            return self.deferred.push_back(Deferred::Bad { conn, problem });
        }
        let reply = ServerMsg::Error {
            error: problem,
            of: None,
            call: None,
        };
        self.send(conn, &reply, None);
    }

    /// A connection ended: its controller waits for a resume until `now` plus the
    /// grace, or (no grace, or a controller that cannot resume) its calls are
    /// released now.
    pub fn handle_close(&mut self, now: Instant, conn: ConnId) {
        if self.waiting.is_some() {
            return self.deferred.push_back(Deferred::Close { conn });
        }
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.timers.clear(Timer::Login(conn));
        self.unpark_closed(conn);
        if let Some(ctl) = c.controller {
            self.detach(now, ctl);
        }
    }

    /// The node is stopping (SIGTERM): every call is released towards its controller
    /// with `cause` (the node uses [`SHUTDOWN_CAUSE`]), its leg removed (so its peer
    /// gets an RTCP BYE) and its room closed, then every control session is closed.
    /// A connection opened later is closed at once, a setup still arriving is
    /// refused with `cause`. The shell executes the outputs as usual and may exit
    /// once the media results are in and the connections are gone.
    pub fn handle_shutdown(&mut self, cause: Cause) {
        if self.waiting.is_some() {
            return self.deferred.push_back(Deferred::Shutdown(cause));
        }
        self.stopping = Some(cause);
        let creators: Vec<CallRef> = self.conf.rooms().iter().filter_map(|r| r.creator).collect();
        let mut calls: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| !c.ended)
            .map(|(r, _)| *r)
            .collect();
        // Members before creators: a `*81` creator leaving first would release the
        // others with cause 16, hiding why their calls ended.
        calls.sort_unstable_by_key(|c| (creators.contains(c), *c));
        for call in calls {
            if self.conf.handle_media_failed(call, cause).is_err() {
                self.forget(call);
            } else if let Some(c) = self.calls.get_mut(&call) {
                c.ended = true;
                self.ended.push(call);
            }
        }
        self.drain(None);
        // Nobody is coming back to a stopping node.
        let detached: Vec<ControllerId> = self.controllers().iter().map(|r| r.id).collect();
        for id in detached {
            if self.controllers.get(&id).is_some_and(|c| c.conn.is_none()) {
                self.remove_controller(id);
            }
        }
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            if !c.closing {
                c.closing = true;
                let reason = SHUTDOWN_REASON.into();
                self.out.push_back(Output::Close { conn, reason });
            }
        }
    }

    /// An event of a media worker (DTMF, talking, media timeout, latching).
    pub fn handle_engine_event(&mut self, now: Instant, event: EngineEvent) {
        if self.waiting.is_some() {
            return self.deferred.push_back(Deferred::Engine(event));
        }
        match event {
            EngineEvent::Dtmf { leg, digit, .. } => {
                if let Some(call) = self.table.call_of(leg) {
                    if self.conf.handle_dtmf(now, call, digit).is_ok() {
                        self.drain(None);
                    }
                }
            }
            EngineEvent::Talking { leg, talking, .. } => {
                let Some((call, room, id)) = self.member_of(leg) else {
                    return;
                };
                let event = ServerMsg::Talking {
                    room: room.to_string(),
                    participant: call.0,
                    call: id.to_string(),
                    talking,
                };
                self.broadcast(&event);
            }
            EngineEvent::MediaTimeout { leg, .. } => {
                let Some(call) = self.table.call_of(leg) else {
                    return;
                };
                let held = self
                    .conf
                    .member(call)
                    .is_some_and(|m| m.held || m.state != MemberState::Connected);
                if !held
                    && self
                        .conf
                        .handle_media_failed(call, Cause::TIMER_EXPIRY)
                        .is_ok()
                {
                    tracing::info!(?leg, "releasing a call that sent no media");
                    self.drain(None);
                }
            }
            EngineEvent::Lost { leg, .. } => {
                let Some(call) = self.table.call_of(leg) else {
                    return;
                };
                if self
                    .conf
                    .handle_media_failed(call, Cause::TEMPORARY_FAILURE)
                    .is_ok()
                {
                    tracing::warn!(?leg, "releasing a call whose media node was lost");
                    self.drain(None);
                }
            }
            EngineEvent::Latched { leg, remote, .. } => {
                let Some((call, room, id)) = self.member_of(leg) else {
                    return;
                };
                tracing::info!(call = %id, %room, %remote, "media moved (latching)");
                let event = ServerMsg::MediaMoved {
                    room: room.to_string(),
                    participant: call.0,
                    call: id.to_string(),
                    address: remote.ip(),
                    port: remote.port(),
                };
                self.broadcast(&event);
            }
        }
    }

    /// The member behind a leg: its call, its room and the controller's call id
    /// (none once it has left its room).
    fn member_of(&self, leg: crate::engine::LegId) -> Option<(CallRef, &str, &str)> {
        let call = self.table.call_of(leg)?;
        let room = self.conf.call_room(call)?;
        Some((call, room, self.calls.get(&call)?.id.as_str()))
    }

    /// The node's event stream lost `lost` engine events before the root saw them
    /// (its reader fell behind). What they would have caused is unknown, so every
    /// logged-in session is told, and resynchronises with `Status`.
    pub fn handle_events_lost(&mut self, lost: u64) {
        if self.waiting.is_some() {
            return self.deferred.push_back(Deferred::EventsLost(lost));
        }
        self.counters.events_lost += lost;
        tracing::warn!(lost, "call control lost node events; controllers are told");
        self.broadcast(&ServerMsg::EventsLost { lost });
    }

    /// The transport closed session `conn` for `reason` (it decided, or carried out
    /// a close the root or the driver asked for: not reading, idle timeout, login
    /// timeout, ...). Only counted, for `Status`/`Health`; the close itself comes
    /// with [`Session::handle_close`].
    pub fn note_closed(&mut self, reason: &str) {
        let closed = &mut self.counters.closed;
        // Reasons are the transport's own few texts; the map stays small whatever
        // a buggy transport sends.
        let key = if closed.contains_key(reason) || closed.len() < MAX_CLOSE_REASONS {
            reason
        } else {
            "other"
        };
        *closed.entry(key.to_string()).or_insert(0) += 1;
    }

    /// The result of the media operation `req`.
    pub fn handle_media_result(&mut self, now: Instant, req: ReqId, result: MediaResult) {
        if let Some(worker) = self.round.as_mut().and_then(|r| r.reqs.remove(&req)) {
            return self.on_snapshot(worker, result);
        }
        if self.video_pending(req) {
            self.video_result(req, result);
            return;
        }
        match self.waiting {
            Some((waited, call)) if waited == req => {
                self.waiting = None;
                let refused = match result {
                    MediaResult::Failed(e) => Some((e, Cause::RESOURCE_UNAVAILABLE)),
                    MediaResult::NoChannel(e) => Some((e, Cause::NO_CHANNEL)),
                    MediaResult::Placed { rtp, rtcp, node } => {
                        // A scaler placed the leg on a node: the peer sends there.
                        tracing::debug!(?call, %node, "leg placed");
                        if let Some(c) = self.calls.get_mut(&call) {
                            let mux = c.offer.rtcp_mux;
                            if let Some(leg) = c.leg.as_mut() {
                                leg.local = rtp;
                                leg.local_rtcp = if mux { rtp } else { rtcp };
                            }
                            c.node = Some(node);
                        }
                        None
                    }
                    _ => None,
                };
                if let Some((e, cause)) = refused {
                    tracing::warn!(%e, ?call, "cannot add a leg");
                    if let Some(leg) = self.calls.get_mut(&call).and_then(|c| c.leg.take()) {
                        self.table.remove_leg(&leg);
                    }
                    let _ = self.conf.handle_media_failed(call, cause);
                }
                let src = self.src.take();
                self.drain(src);
                self.replay(now);
            }
            _ => {
                if let MediaResult::Failed(e) = result {
                    tracing::warn!(%e, ?req, "media operation refused");
                }
            }
        }
    }

    /// The capacity in conference channels changed (a scaler's cluster: see
    /// [`crate::cluster::planner::PlanOutput::Capacity`]).
    pub fn set_channels(&mut self, channels: u32) {
        self.conf.set_channels(channels);
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.waiting.is_some() {
            if !matches!(self.deferred.back(), Some(Deferred::Timeout)) {
                self.deferred.push_back(Deferred::Timeout);
            }
            return;
        }
        if self.conf.poll_timeout().is_some_and(|at| at <= now) {
            self.conf.handle_timeout(now);
            self.drain(None);
        }
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Login(conn) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        if !c.logged_in && !c.closing {
                            tracing::info!(peer = %c.peer, "control session did not log in in time");
                            c.closing = true;
                            self.out.push_back(Output::Close {
                                conn,
                                reason: "login timeout".into(),
                            });
                        }
                    }
                }
                Timer::Resume(ctl) => self.expire(ctl),
                Timer::Rebuilt => self.unpark(now, true),
            }
        }
    }

    // ---- outputs -------------------------------------------------------------

    /// The next thing to do; drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Session::handle_timeout`] is due next (`None`: no timer is set).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.conf.poll_timeout(), self.timers.next()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the root waits for a media result before it takes further inputs.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// The room table (for reports and tests).
    pub fn table(&self) -> &RoomTable {
        &self.table
    }

    /// The conference core (for reports and tests).
    pub fn conference(&self) -> &Conference {
        &self.conf
    }

    // ---- requests ------------------------------------------------------------

    fn replay(&mut self, now: Instant) {
        while self.waiting.is_none() {
            let Some(item) = self.deferred.pop_front() else {
                return;
            };
            match item {
                Deferred::Open { conn, peer } => self.handle_open(now, conn, peer),
                Deferred::Text { conn, text } => self.handle_text(now, conn, &text),
                Deferred::Message { conn, msg } => self.handle_message(now, conn, msg),
                Deferred::Bad { conn, problem } => self.handle_bad_frame(conn, problem),
                Deferred::Close { conn } => self.handle_close(now, conn),
                Deferred::Engine(event) => self.handle_engine_event(now, event),
                Deferred::EventsLost(lost) => self.handle_events_lost(lost),
                Deferred::Timeout => self.handle_timeout(now),
                Deferred::Shutdown(cause) => self.handle_shutdown(cause),
                Deferred::Adopt(a) => self.handle_adopt(now, a),
            }
        }
    }

    fn send(&mut self, conn: ConnId, msg: &ServerMsg, src: Option<&str>) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let text = msg::to_text(msg, src);
        self.out.push_back(Output::Send { conn, text });
    }

    /// Sends an event to every logged-in session, in connection order, and keeps it
    /// for every detached controller.
    fn broadcast(&mut self, msg: &ServerMsg) {
        let mut conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.logged_in && !c.closing)
            .map(|(id, _)| *id)
            .collect();
        conns.sort_unstable();
        let text = msg::to_text(msg, None);
        for conn in conns {
            self.out.push_back(Output::Send {
                conn,
                text: text.clone(),
            });
        }
        self.keep_for_detached(&text);
    }
}

/// The `error` of a request refused by its session's budget ([`budget::Budgets`]).
pub const RATE_LIMITED: &str = "rate-limited";

/// `Status`/`Health` one session may have waiting for answers: one snapshot round
/// answers all of them at once, and that burst must fit the session's outbound queue
/// (a transport closes a session whose queue overflows as not reading).
pub const MAX_PENDING_REPORTS: usize = 256;
