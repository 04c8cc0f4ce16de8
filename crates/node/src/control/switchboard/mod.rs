//! The switchboard: one task that owns the node's call control.
//!
//! It receives [`Inbound`] items from whatever carries the protocol (the WebSocket
//! listener of [`super::server`] today, the node's outbound registration to a scaler
//! later: both only turn frames into `Inbound` values and forward [`Outbound`] ones),
//! logs sessions in, maps protocol call ids to the [`Conference`] core, executes the
//! core's outputs on the media node and turns them into protocol messages.
//!
//! One task, one owner: there is no lock around conference state, and every
//! connection sees the same order of events. Media control calls are awaited one by
//! one; each is a message to a worker thread that answers within a tick.
//!
//! Calls belong to the session that set them up. When a session ends, its calls are
//! released (the controller that could have ended them is gone).

mod execute;

use crate::{LegInfo, NodeHandle};
use scnf_core::conf::{CallRef, Cause, ConfError, Conference, MemberState};
use scnf_core::control::auth::{Challenges, LoginConfig, RateLimiter};
use scnf_core::control::msg::{
    self, ClientMsg, CodecDesc, Incoming, MediaOffer, ServerMsg, PROTOCOL_VERSION,
};
use scnf_core::engine::EngineEvent;
use scnf_media::codec::CodecKind;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// Identifies one protocol session (one WebSocket connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// What a transport tells the switchboard.
#[derive(Debug)]
pub enum Inbound {
    /// A session started; the switchboard answers through `tx`.
    Opened {
        conn: ConnId,
        peer: SocketAddr,
        tx: mpsc::Sender<Outbound>,
    },
    /// One text frame.
    Text { conn: ConnId, text: String },
    /// A frame the transport could not pass on (binary, not UTF-8, ...).
    Bad { conn: ConnId, problem: String },
    /// The session ended.
    Closed { conn: ConnId },
}

/// What the switchboard tells a transport.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    /// End the session (the reason goes into the close frame).
    Close(String),
}

/// Settings of the call-control layer.
#[derive(Clone)]
pub struct SwitchboardConfig {
    /// Shared login secret; `None` means sessions need no login (the listener is then
    /// loopback-only, see [`crate::config`]).
    pub secret: Option<Vec<u8>>,
    pub login: LoginConfig,
    pub conf: scnf_core::conf::ConfConfig,
    /// Seeds the random part of `*1` room ids.
    pub seed: u64,
    /// Sessions that have not logged in after this long are closed (a connection
    /// slot is not free for the taking).
    pub login_timeout: Duration,
}

/// How often sessions that never logged in are looked for.
const LOGIN_SWEEP: Duration = Duration::from_secs(1);

struct Session {
    peer: SocketAddr,
    opened: Instant,
    tx: mpsc::Sender<Outbound>,
    logged_in: bool,
    challenges: Challenges,
}

struct Call {
    conn: ConnId,
    id: String,
    offer: MediaOffer,
    codec: (CodecKind, CodecDesc),
    leg: Option<LegInfo>,
    /// Released by the node or the controller; purged after the outputs are drained.
    ended: bool,
}

/// The call-control owner. Build with [`Switchboard::new`], drive with
/// [`Switchboard::run`].
pub struct Switchboard {
    node: NodeHandle,
    cfg: SwitchboardConfig,
    conf: Conference,
    sessions: HashMap<ConnId, Session>,
    calls: HashMap<CallRef, Call>,
    by_id: HashMap<(ConnId, String), CallRef>,
    legs: HashMap<scnf_core::engine::LegId, CallRef>,
    rooms: HashMap<String, u64>,
    limiter: RateLimiter,
    next_call: u64,
}

impl Switchboard {
    pub fn new(node: NodeHandle, cfg: SwitchboardConfig) -> Switchboard {
        Switchboard {
            conf: Conference::new(cfg.conf.clone(), cfg.seed),
            limiter: RateLimiter::new(&cfg.login),
            node,
            cfg,
            sessions: HashMap::new(),
            calls: HashMap::new(),
            by_id: HashMap::new(),
            legs: HashMap::new(),
            rooms: HashMap::new(),
            next_call: 1,
        }
    }

    /// Runs until `inbound` closes: requests, node events and the conference's own
    /// timer (overlap-dialing timeouts), one at a time.
    pub async fn run(mut self, mut inbound: mpsc::Receiver<Inbound>) {
        let mut events = self.node.subscribe();
        let mut sweep = tokio::time::interval(LOGIN_SWEEP.min(self.cfg.login_timeout));
        loop {
            let deadline = self.conf.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = inbound.recv() => match item {
                    Some(item) => self.on_inbound(item).await,
                    None => break,
                },
                event = events.recv() => match event {
                    Ok(event) => self.on_engine_event(event).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "switchboard fell behind on node events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = sleep => {
                    self.conf.handle_timeout(Instant::now());
                    self.drain().await;
                }
                _ = sweep.tick() => self.close_idle_logins(Instant::now()),
            }
        }
    }

    async fn on_inbound(&mut self, item: Inbound) {
        match item {
            Inbound::Opened { conn, peer, tx } => {
                let logged_in = self.cfg.secret.is_none();
                self.sessions.insert(
                    conn,
                    Session {
                        peer,
                        opened: Instant::now(),
                        tx,
                        logged_in,
                        challenges: Challenges::new(),
                    },
                );
            }
            Inbound::Text { conn, text } => match msg::parse_client(&text) {
                Ok(req) => self.on_request(conn, req).await,
                Err(e) => {
                    let reply = ServerMsg::Error {
                        error: e.problem,
                        of: e.mt,
                        call: None,
                    };
                    self.send(conn, &reply, e.src.as_deref());
                }
            },
            Inbound::Bad { conn, problem } => {
                let reply = ServerMsg::Error {
                    error: problem,
                    of: None,
                    call: None,
                };
                self.send(conn, &reply, None);
            }
            Inbound::Closed { conn } => self.close_session(conn).await,
        }
    }

    /// Closes sessions that did not log in within the login timeout. They own no
    /// calls (nothing but the login is allowed before it).
    fn close_idle_logins(&mut self, now: Instant) {
        let timeout = self.cfg.login_timeout;
        for s in self.sessions.values() {
            if !s.logged_in && now.saturating_duration_since(s.opened) >= timeout {
                tracing::info!(peer = %s.peer, "control session did not log in in time");
                let _ = s.tx.try_send(Outbound::Close("login timeout".into()));
            }
        }
    }

    /// Ends a session and releases its calls.
    async fn close_session(&mut self, conn: ConnId) {
        if self.sessions.remove(&conn).is_none() {
            return;
        }
        let owned: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| c.conn == conn && !c.ended)
            .map(|(r, _)| *r)
            .collect();
        for call in owned {
            if self.conf.handle_release(call).is_ok() {
                self.drain().await;
            }
            self.forget(call);
        }
    }

    async fn on_request(&mut self, conn: ConnId, req: Incoming) {
        let Incoming { src, msg } = req;
        let src = src.as_deref();
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let needs_login = !matches!(
            msg,
            ClientMsg::AppChallenge { .. } | ClientMsg::AppLogin { .. }
        );
        if needs_login && !session.logged_in {
            let reply = error(&msg, "not logged in: send AppChallenge and AppLogin first");
            self.send(conn, &reply, src);
            return;
        }
        let reply = match msg {
            ClientMsg::AppChallenge { version } => self.challenge(conn, version),
            ClientMsg::AppLogin {
                name,
                cnonce,
                info,
                digest,
            } => self.login(conn, &name, &cnonce, &info, &digest),
            ClientMsg::Setup {
                call,
                called,
                complete,
                media,
            } => self.setup(conn, call, &called, complete, media, src).await,
            ClientMsg::Status => Some(self.status().await),
            ClientMsg::Health => Some(self.health().await),
            other => self.call_request(conn, other, src).await,
        };
        if let Some(reply) = reply {
            self.send(conn, &reply, src);
        }
    }

    fn challenge(&mut self, conn: ConnId, version: Option<u32>) -> Option<ServerMsg> {
        if let Some(v) = version.filter(|&v| v != PROTOCOL_VERSION) {
            return Some(ServerMsg::Error {
                error: format!(
                    "protocol version {v} is not supported (this node speaks {PROTOCOL_VERSION})"
                ),
                of: Some("AppChallenge".into()),
                call: None,
            });
        }
        let mut random = [0u8; 16];
        if let Err(e) = getrandom::fill(&mut random) {
            tracing::error!(%e, "no OS randomness for a login challenge");
            return Some(ServerMsg::Error {
                error: "the node cannot make a challenge now".into(),
                of: Some("AppChallenge".into()),
                call: None,
            });
        }
        let session = self.sessions.get_mut(&conn)?;
        // A locked-out peer gets no challenge either: it cannot even start trying.
        if self.cfg.secret.is_some() {
            if let Err(e) = self.limiter.check(Instant::now(), session.peer.ip()) {
                return Some(ServerMsg::AppLoginResult {
                    ok: false,
                    error: Some(e.to_string()),
                    proof: None,
                    version: PROTOCOL_VERSION,
                });
            }
        }
        let challenge = session.challenges.issue(Instant::now(), random);
        Some(ServerMsg::AppChallengeResult {
            challenge,
            version: PROTOCOL_VERSION,
        })
    }

    fn login(
        &mut self,
        conn: ConnId,
        name: &str,
        cnonce: &str,
        info: &str,
        digest: &str,
    ) -> Option<ServerMsg> {
        let now = Instant::now();
        let result = |ok: bool, error: Option<String>, proof: Option<String>| {
            Some(ServerMsg::AppLoginResult {
                ok,
                error,
                proof,
                version: PROTOCOL_VERSION,
            })
        };
        let session = self.sessions.get_mut(&conn)?;
        let Some(secret) = &self.cfg.secret else {
            session.logged_in = true;
            return result(true, None, None);
        };
        let ip = session.peer.ip();
        if let Err(e) = self.limiter.check(now, ip) {
            return result(false, Some(e.to_string()), None);
        }
        match session
            .challenges
            .verify(now, &self.cfg.login, secret, name, cnonce, info, digest)
        {
            Ok(proof) => {
                self.limiter.record_success(ip);
                session.logged_in = true;
                tracing::info!(peer = %session.peer, name, "control session logged in");
                result(true, None, Some(proof))
            }
            Err(e) => {
                self.limiter.record_failure(now, ip);
                tracing::warn!(peer = %session.peer, name, %e, "control login refused");
                result(false, Some(e.to_string()), None)
            }
        }
    }

    async fn setup(
        &mut self,
        conn: ConnId,
        id: String,
        called: &str,
        complete: bool,
        offer: MediaOffer,
        src: Option<&str>,
    ) -> Option<ServerMsg> {
        if id.is_empty() {
            return Some(call_error("Setup", &id, "the call id is empty"));
        }
        if self.by_id.contains_key(&(conn, id.clone())) {
            return Some(call_error("Setup", &id, "a call with this id exists"));
        }
        let Some(codec) = msg::choose_codec(&offer) else {
            let cause = Cause::INCOMPATIBLE;
            return Some(ServerMsg::Release {
                call: id,
                cause: cause.0,
                reason: format!("{}: no offered codec is supported", cause.text()),
            });
        };
        let call = CallRef(self.next_call);
        self.next_call += 1;
        let hold = offer.direction.is_hold();
        self.calls.insert(
            call,
            Call {
                conn,
                id: id.clone(),
                offer,
                codec,
                leg: None,
                ended: false,
            },
        );
        self.by_id.insert((conn, id.clone()), call);
        if let Err(e) = self
            .conf
            .handle_setup(Instant::now(), call, called, complete)
        {
            self.forget(call);
            return Some(call_error("Setup", &id, &e.to_string()));
        }
        self.drain_with(src).await;
        if hold && self.conf.handle_hold(call, true).is_ok() {
            self.drain_with(src).await;
        }
        None
    }

    /// Requests that name an existing call.
    async fn call_request(
        &mut self,
        conn: ConnId,
        msg: ClientMsg,
        src: Option<&str>,
    ) -> Option<ServerMsg> {
        let Some(id) = msg.call().map(String::from) else {
            return Some(error(&msg, "not a call request"));
        };
        let Some(&call) = self.by_id.get(&(conn, id.clone())) else {
            return Some(error(&msg, &format!("unknown call {id:?}")));
        };
        let now = Instant::now();
        let (result, ack) = match &msg {
            ClientMsg::Info {
                digits, complete, ..
            } => (
                self.conf.handle_info(now, call, digits, *complete),
                ServerMsg::InfoResult { call: id.clone() },
            ),
            ClientMsg::Dtmf { digit, .. } => {
                let mut chars = digit.chars();
                let result = match (chars.next(), chars.next()) {
                    (Some(d), None) => self.conf.handle_dtmf(now, call, d),
                    _ => Err(ConfError::BadDigit('?')),
                };
                (result, ServerMsg::DtmfResult { call: id.clone() })
            }
            ClientMsg::RemoteControl { code, .. } => (
                self.conf.handle_remote_control(call, *code),
                ServerMsg::RemoteControlResult {
                    call: id.clone(),
                    code: *code,
                },
            ),
            ClientMsg::Hold { .. } => (
                self.conf.handle_hold(call, true),
                ServerMsg::HoldResult { call: id.clone() },
            ),
            ClientMsg::Retrieve { .. } => (
                self.conf.handle_hold(call, false),
                ServerMsg::RetrieveResult { call: id.clone() },
            ),
            ClientMsg::Direction { direction, .. } => (
                self.conf.handle_hold(call, direction.is_hold()),
                ServerMsg::DirectionResult { call: id.clone() },
            ),
            ClientMsg::Release { .. } => {
                let result = self.conf.handle_release(call);
                if let Some(c) = self.calls.get_mut(&call) {
                    c.ended = true;
                }
                (result, ServerMsg::ReleaseResult { call: id.clone() })
            }
            _ => unreachable!("filtered above"),
        };
        match result {
            Ok(()) => {
                self.send(conn, &ack, src);
                self.drain_with(src).await;
                None
            }
            Err(e) => {
                // A release of a call the core no longer knows still ends it here.
                if matches!(msg, ClientMsg::Release { .. }) {
                    self.forget(call);
                    self.send(conn, &ack, src);
                    return None;
                }
                Some(error(&msg, &e.to_string()))
            }
        }
    }

    async fn on_engine_event(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::Dtmf { leg, digit, .. } => {
                if let Some(&call) = self.legs.get(&leg) {
                    if self.conf.handle_dtmf(Instant::now(), call, digit).is_ok() {
                        self.drain().await;
                    }
                }
            }
            EngineEvent::Talking { leg, talking, .. } => {
                let Some(&call) = self.legs.get(&leg) else {
                    return;
                };
                let Some(room) = self.conf.call_room(call).map(String::from) else {
                    return;
                };
                let Some(c) = self.calls.get(&call) else {
                    return;
                };
                let event = ServerMsg::Talking {
                    room,
                    participant: call.0,
                    call: c.id.clone(),
                    talking,
                };
                self.broadcast(&event);
            }
            EngineEvent::MediaTimeout { leg, .. } => {
                let Some(&call) = self.legs.get(&leg) else {
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
                    self.drain().await;
                }
            }
            EngineEvent::Latched { .. } => {}
        }
    }

    fn forget(&mut self, call: CallRef) {
        if let Some(c) = self.calls.remove(&call) {
            self.by_id.remove(&(c.conn, c.id));
            if let Some(leg) = c.leg {
                // The core removes members before releasing them; a leg left here
                // would be a bug, but it must not leak media either.
                self.legs.remove(&leg.id);
                let node = self.node.clone();
                tokio::spawn(async move {
                    let _ = node.remove_leg(leg.id).await;
                });
            }
        }
    }

    /// Sends to one session. A session whose queue is full is closed: a controller
    /// that does not read cannot be allowed to stall everyone else.
    fn send(&mut self, conn: ConnId, msg: &ServerMsg, src: Option<&str>) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let text = msg::to_text(msg, src);
        if session.tx.try_send(Outbound::Text(text)).is_err() {
            tracing::warn!(peer = %session.peer, "control session does not read; closing it");
            let _ = session.tx.try_send(Outbound::Close("not reading".into()));
        }
    }

    /// Sends an event to every logged-in session.
    fn broadcast(&mut self, msg: &ServerMsg) {
        let conns: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.logged_in)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.send(conn, msg, None);
        }
    }
}

fn error(msg: &ClientMsg, problem: &str) -> ServerMsg {
    ServerMsg::Error {
        error: problem.into(),
        of: Some(msg.mt().into()),
        call: msg.call().map(String::from),
    }
}

fn call_error(mt: &str, call: &str, problem: &str) -> ServerMsg {
    ServerMsg::Error {
        error: problem.into(),
        of: Some(mt.into()),
        call: Some(call.into()),
    }
}
