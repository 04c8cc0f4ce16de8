//! A controller client of the call-control protocol: the library side of what a PBX
//! front end, the bundled load generator, `scnf demo` and tools do over the WebSocket.
//!
//! One [`Client`] is one session. Requests are sent one at a time and each carries a
//! fresh `src` (a counter), so an answer is matched to its request by `src`, never by
//! guessing from its type. Everything else the node sends while the client waits for an
//! answer (events, a node-initiated `Release`, outcomes decided after their request was
//! answered) is kept, in arrival order, for [`Client::next_event`].
//!
//! Contract:
//! - every wait is bounded by [`Client::timeout`] (default [`DEFAULT_TIMEOUT`]) and ends
//!   in [`ClientError::Timeout`] naming what was awaited;
//! - a refused request (`Error` answer) is [`ClientError::Refused`]; a refused *call*
//!   (`Release` answer) is not an error of the client but a [`CallAnswer::Release`];
//! - nothing the node sends can panic the client: unparseable frames are counted
//!   ([`Client::ignored`]) and only fail a wait when they carry the awaited `src`.
//!
//! The node is silent while it waits for more digits of a call (overlap dialing). When
//! the client cannot tell from the request that the number is complete (`complete` is
//! false and it does not end in `#`), it sends a `Status` right behind it: the node
//! handles a session's requests in order and answers each before reading the next, so a
//! `StatusResult` arriving first means the node is waiting for digits
//! ([`CallAnswer::AwaitingDigits`]). Complete numbers need no such probe, which keeps
//! the load generator's setups at one round trip.
//!
//! The same client is the raw controller of the protocol's own tests (malformed
//! frames, unknown ids, login abuse), so there is one WebSocket controller, not a
//! typed one and a test one that drift apart:
//! - [`Client::send_text`], [`Client::send_json`] and [`Client::send_binary`] send
//!   exactly what they are given, without a `src`: whatever the node answers is
//!   unasked;
//! - [`Client::wait_for`] takes the first unasked message matching a predicate,
//!   [`Client::arrives`] only tells whether one comes within a time;
//! - [`Client::set_keep_seen`] keeps every message read, in order, for
//!   [`Client::seen`] (off by default: a load generator's session would grow without
//!   bound);
//! - [`Client::closed_within`] tells whether the node ends the session.
//!
//! Typed and raw use share one queue of unasked messages: what [`Client::wait_for`]
//! takes, [`Client::next_event`] never returns, and the other way round.

mod answer;
mod video;
pub use video::ViewAnswer;

pub use answer::{CallAnswer, Event, NodeAuth, NodeHealth, NodeStatus};

use futures_util::{SinkExt, StreamExt};
use scnf_core::control::login::{ClientLoginError, ClientStep, LoginClient, ServerAuth};
use scnf_core::control::msg::{self, ClientMsg, Direction, MediaOffer, ServerMsg};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a wait lasts unless [`Client::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client says about itself in `AppLogin.info`.
const CLIENT_INFO: &str = concat!("scnf-client/", env!("CARGO_PKG_VERSION"));

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("the node closed the connection")]
    Closed,
    #[error("no {waiting_for} within the timeout")]
    Timeout { waiting_for: String },
    /// The node answered the request with `Error`.
    #[error("refused{}: {error}", of.as_deref().map(|o| format!(" ({o})")).unwrap_or_default())]
    Refused { error: String, of: Option<String> },
    /// The node refused the login (wrong secret, rate limited, expired challenge).
    #[error("login failed: {error}")]
    LoginFailed { error: String },
    /// The node's login proof does not verify: it does not know the secret.
    #[error("the node's login proof does not verify")]
    BadProof,
    /// The node let the client in without a proof (it has no password), and the
    /// caller asked for a node that proves it knows the secret ([`Client::login`]).
    #[error("the node has no password and sent no proof")]
    NoProof,
    /// `server_name` of [`Client::connect_tls`] is not a DNS name or IP address.
    #[error("bad TLS server name {0:?}")]
    BadServerName(String),
    /// The node sent something that breaks the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

/// A byte stream a WebSocket can run over (TCP, or TLS over TCP).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One control session with a node.
pub struct Client {
    ws: WebSocketStream<Box<dyn Io>>,
    /// Messages nobody waited for, in arrival order: events for [`Client::next_event`],
    /// anything for [`Client::wait_for`].
    unasked: VecDeque<Unasked>,
    next_src: u64,
    timeout: Duration,
    ignored: u64,
    keep_seen: bool,
    seen: Vec<ServerMsg>,
    /// The resume token of the last login (see [`Client::resume`]).
    token: Option<String>,
}

/// What a login that asked to resume got ([`Client::resume`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// The controller was resumed: its calls are this session's again, and what it
    /// missed (or a `Resync`) follows as events.
    pub resumed: bool,
    /// Why not (`malformed-token`, `unknown-token`): the session is a new controller.
    pub error: Option<String>,
}

/// A message read while no wait took it.
struct Unasked {
    msg: ServerMsg,
    /// Whether it carried a `src` (a late answer to one of this client's requests).
    had_src: bool,
}

/// What a wait does with one received message.
enum Take<T> {
    Done(T),
    Skip,
}

impl Client {
    /// Opens a `ws://` session.
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        let waiting_for = format!("connection to {addr}");
        bounded(DEFAULT_TIMEOUT, &waiting_for, async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Client::over(Box::new(tcp), &format!("ws://{addr}/")).await
        })
        .await
    }

    /// Opens a `wss://` session; `server_name` is what the node's certificate must
    /// name, `config` says whom to trust (e.g.
    /// `scnf::tls::client_config_trusting`).
    pub async fn connect_tls(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Client, ClientError> {
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|_| ClientError::BadServerName(server_name.into()))?;
        let waiting_for = format!("TLS connection to {addr}");
        bounded(DEFAULT_TIMEOUT, &waiting_for, async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            let url = format!("wss://{server_name}:{}/", addr.port());
            Client::over(Box::new(tls), &url).await
        })
        .await
    }

    async fn over(io: Box<dyn Io>, url: &str) -> Result<Client, ClientError> {
        let (ws, _) = tokio_tungstenite::client_async(url, io).await?;
        Ok(Client {
            ws,
            unasked: VecDeque::new(),
            next_src: 1,
            timeout: DEFAULT_TIMEOUT,
            ignored: 0,
            keep_seen: false,
            seen: Vec::new(),
            token: None,
        })
    }

    /// The resume token the last successful login gave (what a later session passes
    /// to [`Client::resume`] to get this one's calls back).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Logs in (a node without a password is fine) asking to resume the controller
    /// of `token`. The messages it missed arrive afterwards, as events.
    pub async fn resume(
        &mut self,
        name: &str,
        secret: &[u8],
        token: &str,
    ) -> Result<Resumed, ClientError> {
        let answer = self.login_with(name, secret, Some(token)).await?.1;
        let ServerMsg::AppLoginResult {
            resumed,
            resume_error,
            ..
        } = answer
        else {
            return Err(ClientError::Protocol("a login without a result".into()));
        };
        Ok(Resumed {
            resumed,
            error: resume_error,
        })
    }

    /// How long each wait lasts.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Frames from the node that were not protocol messages, so far.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Whether to keep, from now on, every message read (answers, events, anything)
    /// for [`Client::seen`].
    pub fn set_keep_seen(&mut self, keep: bool) {
        self.keep_seen = keep;
    }

    /// The messages read while [`Client::set_keep_seen`] was on, in arrival order.
    pub fn seen(&self) -> &[ServerMsg] {
        &self.seen
    }

    /// Logs in and requires the node to prove that it knows `secret` too: a node
    /// without a password fails with [`ClientError::NoProof`].
    pub async fn login(&mut self, name: &str, secret: &[u8]) -> Result<(), ClientError> {
        match self.login_optional(name, secret).await? {
            NodeAuth::Proven => Ok(()),
            NodeAuth::Open => Err(ClientError::NoProof),
        }
    }

    /// Logs in, accepting a node without a password (which sends no proof). A proof
    /// that is sent must still verify. The exchange and the checks are the core's
    /// [`LoginClient`]; this only carries its messages and supplies a fresh nonce.
    pub async fn login_optional(
        &mut self,
        name: &str,
        secret: &[u8],
    ) -> Result<NodeAuth, ClientError> {
        Ok(self.login_with(name, secret, None).await?.0)
    }

    /// The login exchange; the node's verdict and its `AppLoginResult`.
    async fn login_with(
        &mut self,
        name: &str,
        secret: &[u8],
        resume: Option<&str>,
    ) -> Result<(NodeAuth, ServerMsg), ClientError> {
        let cnonce = fresh_cnonce()?;
        let mut login = LoginClient::new(name, secret, CLIENT_INFO);
        if let Some(token) = resume {
            login.resume(token);
        }
        let mut request = login.start();
        loop {
            let what = format!("{}Result", request.mt());
            let src = self.send(request).await?;
            // A locked-out peer is refused at the challenge already: either result
            // may answer either request, and the login machine sorts them out.
            let answer = self
                .wait(&what, &src, |m| match m {
                    ServerMsg::AppChallengeResult { .. } | ServerMsg::AppLoginResult { .. } => {
                        Take::Done(m)
                    }
                    _ => Take::Skip,
                })
                .await?;
            request = match login.handle(&answer, &cnonce) {
                ClientStep::Send(next) => next,
                ClientStep::Done(verdict) => {
                    if let (Ok(_), ServerMsg::AppLoginResult { token, .. }) = (&verdict, &answer) {
                        self.token.clone_from(token);
                    }
                    return match verdict {
                        Ok(ServerAuth::Proven) => Ok((NodeAuth::Proven, answer)),
                        Ok(ServerAuth::Open) => Ok((NodeAuth::Open, answer)),
                        Err(ClientLoginError::Refused { error }) => {
                            Err(ClientError::LoginFailed { error })
                        }
                        Err(ClientLoginError::BadProof) => Err(ClientError::BadProof),
                        Err(e @ ClientLoginError::Unexpected { .. }) => {
                            Err(ClientError::Protocol(e.to_string()))
                        }
                    };
                }
            };
        }
    }

    /// Sends any request and returns the node's first answer to it (an `Error`
    /// answer is [`ClientError::Refused`]). Later answers to the same request (a
    /// call's outcome after its acknowledgement) go to the event queue.
    pub async fn request(&mut self, request: ClientMsg) -> Result<ServerMsg, ClientError> {
        let what = format!("answer to {}", request.mt());
        let src = self.send(request).await?;
        self.wait(&what, &src, Take::Done).await
    }

    /// Places a call: `called` is the call-setup command, `complete` the
    /// sending-complete flag. See the module docs for numbers that may be incomplete.
    pub async fn setup(
        &mut self,
        call: &str,
        called: &str,
        complete: bool,
        offer: &MediaOffer,
    ) -> Result<CallAnswer, ClientError> {
        let request = ClientMsg::Setup {
            call: call.into(),
            called: called.into(),
            complete,
            media: offer.clone(),
        };
        let src = self.send(request).await?;
        let known_complete = complete || called.ends_with('#');
        self.outcome(call, &src, known_complete).await
    }

    /// Sends more digits of a call the node is waiting for; returns the outcome they
    /// led to ([`CallAnswer::AwaitingDigits`] when the node still waits).
    pub async fn info(
        &mut self,
        call: &str,
        digits: &str,
        complete: bool,
    ) -> Result<CallAnswer, ClientError> {
        let src = self
            .send(ClientMsg::Info {
                call: call.into(),
                digits: digits.into(),
                complete,
            })
            .await?;
        self.wait("InfoResult", &src, |m| match m {
            ServerMsg::InfoResult { .. } => Take::Done(()),
            _ => Take::Skip,
        })
        .await?;
        let known_complete = complete || digits.ends_with('#');
        self.outcome(call, &src, known_complete).await
    }

    /// Remote-control facility `code` (0 connect, 24/25 receive on/off, 26/27 listen
    /// mode). The `Connect` that code 0 causes arrives as [`Event::Outcome`].
    pub async fn remote_control(&mut self, call: &str, code: u32) -> Result<(), ClientError> {
        let req = ClientMsg::RemoteControl {
            call: call.into(),
            code,
        };
        self.ack(req, |m| matches!(m, ServerMsg::RemoteControlResult { .. }))
            .await
    }

    /// A DTMF digit signalled out of band (in-call commands such as `*21#`).
    pub async fn dtmf(&mut self, call: &str, digit: char) -> Result<(), ClientError> {
        let req = ClientMsg::Dtmf {
            call: call.into(),
            digit: digit.to_string(),
        };
        self.ack(req, |m| matches!(m, ServerMsg::DtmfResult { .. }))
            .await
    }

    /// Puts a call on hold (its contribution is muted).
    pub async fn hold(&mut self, call: &str) -> Result<(), ClientError> {
        let req = ClientMsg::Hold { call: call.into() };
        self.ack(req, |m| matches!(m, ServerMsg::HoldResult { .. }))
            .await
    }

    pub async fn retrieve(&mut self, call: &str) -> Result<(), ClientError> {
        let req = ClientMsg::Retrieve { call: call.into() };
        self.ack(req, |m| matches!(m, ServerMsg::RetrieveResult { .. }))
            .await
    }

    /// A media direction change (re-INVITE): `sendonly`/`inactive` hold.
    pub async fn direction(&mut self, call: &str, direction: Direction) -> Result<(), ClientError> {
        let req = ClientMsg::Direction {
            call: call.into(),
            direction,
        };
        self.ack(req, |m| matches!(m, ServerMsg::DirectionResult { .. }))
            .await
    }

    /// Ends a call (`cause` Q.850, default normal clearing).
    pub async fn release(&mut self, call: &str, cause: Option<u8>) -> Result<(), ClientError> {
        let req = ClientMsg::Release {
            call: call.into(),
            cause,
        };
        self.ack(req, |m| matches!(m, ServerMsg::ReleaseResult { .. }))
            .await
    }

    /// Rooms, members, channels and per-leg media figures.
    pub async fn status(&mut self) -> Result<NodeStatus, ClientError> {
        let src = self.send(ClientMsg::Status).await?;
        self.wait("StatusResult", &src, |m| match m {
            ServerMsg::StatusResult {
                version,
                channels,
                rooms,
                workers,
                control,
                nodes,
                placed,
            } => Take::Done(NodeStatus {
                version,
                channels,
                rooms,
                workers,
                control,
                nodes,
                placed,
            }),
            _ => Take::Skip,
        })
        .await
    }

    /// Channels, counts and the media workers' clocks (cheap at any load).
    pub async fn health(&mut self) -> Result<NodeHealth, ClientError> {
        let src = self.send(ClientMsg::Health).await?;
        self.wait("HealthResult", &src, |m| match m {
            ServerMsg::HealthResult {
                version,
                channels,
                rooms,
                legs,
                workers,
                control,
                nodes,
            } => Take::Done(NodeHealth {
                version,
                channels,
                rooms,
                legs,
                workers,
                control,
                nodes,
            }),
            _ => Take::Skip,
        })
        .await
    }

    /// The next event: a queued one, or the next to arrive within the timeout.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(e) = self.poll_event() {
                return Ok(e);
            }
            self.read_one(deadline, "event", &[], |_, _| Take::<()>::Skip)
                .await?;
        }
    }

    /// The next queued event, without waiting or reading.
    pub fn poll_event(&mut self) -> Option<Event> {
        let u = self.unasked.pop_front()?;
        Event::from_msg(u.msg, u.had_src)
    }

    /// Sends a text frame exactly as given (no `src` is added).
    pub async fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Sends any JSON value as given (no `src` is added): the node's answers are
    /// unasked messages, for [`Client::wait_for`].
    pub async fn send_json(&mut self, value: &serde_json::Value) -> Result<(), ClientError> {
        self.send_text(&value.to_string()).await
    }

    /// Sends a binary frame (which the protocol does not use).
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// Takes the first unasked message matching `pred`: a queued one, or the next to
    /// arrive within the timeout. Unasked messages that do not match stay queued.
    pub async fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&ServerMsg) -> bool,
    ) -> Result<ServerMsg, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let i = self.find_unasked(deadline, what, pred).await?;
        Ok(self.unasked.remove(i).expect("an index just found").msg)
    }

    /// Whether an unasked message matching `pred` is queued or arrives within
    /// `within` (it stays queued). A session that ends first is `false`.
    pub async fn arrives(&mut self, within: Duration, pred: impl Fn(&ServerMsg) -> bool) -> bool {
        let deadline = Instant::now() + within;
        self.find_unasked(deadline, "a matching message", pred)
            .await
            .is_ok()
    }

    /// Whether the node ends the session within `within`. What arrives before the
    /// end is read and queued as usual.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let read = self
                .read_one(deadline, "the close", &[], |_, _| Take::<()>::Skip)
                .await;
            match read {
                Ok(_) => continue,
                Err(ClientError::Timeout { .. }) => return false,
                Err(_) => return true,
            }
        }
    }

    /// Closes the session (the node releases its calls).
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.ws.close(None).await?;
        Ok(())
    }

    /// The queue index of the first unasked message matching `pred`, reading until
    /// `deadline` when none is queued yet.
    async fn find_unasked(
        &mut self,
        deadline: Instant,
        what: &str,
        pred: impl Fn(&ServerMsg) -> bool,
    ) -> Result<usize, ClientError> {
        let mut looked = 0;
        loop {
            if let Some(i) = self.unasked.iter().skip(looked).position(|u| pred(&u.msg)) {
                return Ok(looked + i);
            }
            looked = self.unasked.len();
            self.read_one(deadline, what, &[], |_, _| Take::<()>::Skip)
                .await?;
        }
    }

    /// Queues a message no wait took, unless it says nothing new (see
    /// [`Event::from_msg`]).
    fn queue(&mut self, msg: ServerMsg, had_src: bool) {
        if Event::is_kept(&msg, had_src) {
            self.unasked.push_back(Unasked { msg, had_src });
        }
    }

    /// Sends `request` with a fresh `src`; returns the `src`.
    async fn send(&mut self, request: ClientMsg) -> Result<String, ClientError> {
        let src = self.next_src.to_string();
        self.next_src += 1;
        let mut value = serde_json::to_value(&request)
            .map_err(|e| ClientError::Protocol(format!("cannot encode a request: {e}")))?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("src".into(), src.clone().into());
        }
        self.ws
            .send(Message::Text(value.to_string().into()))
            .await?;
        Ok(src)
    }

    /// Sends a request whose answer is a plain acknowledgement.
    async fn ack(
        &mut self,
        request: ClientMsg,
        is_ack: impl Fn(&ServerMsg) -> bool,
    ) -> Result<(), ClientError> {
        let what = format!("{}Result", request.mt());
        let src = self.send(request).await?;
        self.wait(&what, &src, |m| {
            if is_ack(&m) {
                Take::Done(())
            } else {
                Take::Skip
            }
        })
        .await
    }

    /// Waits for the outcome of the request `src` about `call`. Unless the number is
    /// known to be complete, probes with a `Status` (see the module docs).
    async fn outcome(
        &mut self,
        call: &str,
        src: &str,
        known_complete: bool,
    ) -> Result<CallAnswer, ClientError> {
        let probe = if known_complete {
            None
        } else {
            Some(self.send(ClientMsg::Status).await?)
        };
        let deadline = Instant::now() + self.timeout;
        let what = format!("outcome of call {call:?}");
        let mut srcs = vec![src];
        srcs.extend(probe.as_deref());
        loop {
            let got = self
                .read_one(deadline, &what, &srcs, |m, from| {
                    if from != src {
                        return match m {
                            ServerMsg::StatusResult { .. } => {
                                Take::Done(CallAnswer::AwaitingDigits)
                            }
                            _ => Take::Skip,
                        };
                    }
                    match CallAnswer::from_msg(m) {
                        Some((c, answer)) if c == call => Take::Done(answer),
                        _ => Take::Skip,
                    }
                })
                .await?;
            if let Some(answer) = got {
                return Ok(answer);
            }
        }
    }

    /// Reads until `take` accepts a message carrying `src`, or the timeout.
    async fn wait<T>(
        &mut self,
        what: &str,
        src: &str,
        mut take: impl FnMut(ServerMsg) -> Take<T>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let got = self
                .read_one(deadline, what, &[src], |m, _| take(m))
                .await?;
            if let Some(v) = got {
                return Ok(v);
            }
        }
    }

    /// Reads one frame and sorts it: a message carrying one of the awaited `srcs` goes
    /// to `take` with that `src` (an `Error` with one is [`ClientError::Refused`]);
    /// anything else goes to the event queue. `Ok(None)` means "read something, keep
    /// waiting".
    async fn read_one<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        srcs: &[&str],
        mut take: impl FnMut(ServerMsg, &str) -> Take<T>,
    ) -> Result<Option<T>, ClientError> {
        let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    waiting_for: what.into(),
                })
            }
            Ok(None) => return Err(ClientError::Closed),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(frame))) => frame,
        };
        let text = match frame {
            Message::Text(text) => text,
            Message::Close(_) => return Err(ClientError::Closed),
            // Pings are answered by tungstenite; binary frames are not protocol.
            Message::Binary(_) => {
                self.ignored += 1;
                return Ok(None);
            }
            _ => return Ok(None),
        };
        let (m, msg_src) = match msg::parse_server(&text) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.ignored += 1;
                let about_ours = src_of(&text).is_some_and(|s| srcs.contains(&s.as_str()));
                if about_ours {
                    return Err(ClientError::Protocol(format!(
                        "unreadable answer while waiting for {what}: {e}"
                    )));
                }
                tracing::debug!(%e, "unreadable message from the node ignored");
                return Ok(None);
            }
        };
        if self.keep_seen {
            self.seen.push(m.clone());
        }
        let awaited = msg_src
            .as_deref()
            .and_then(|s| srcs.iter().copied().find(|&a| a == s));
        if let Some(from) = awaited {
            if let ServerMsg::Error { error, of, .. } = m {
                return Err(ClientError::Refused { error, of });
            }
            // Keep what the waiter does not take (a later outcome of the same request).
            let kept = m.clone();
            match take(m, from) {
                Take::Done(v) => return Ok(Some(v)),
                Take::Skip => self.queue(kept, true),
            }
        } else {
            self.queue(m, msg_src.is_some());
        }
        Ok(None)
    }
}

/// Runs `f` within `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| ClientError::Timeout {
            waiting_for: what.into(),
        })?
}

/// A fresh client nonce from the OS (never the seeded simulation generator).
fn fresh_cnonce() -> Result<String, ClientError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(scnf_core::control::hex::encode(&bytes))
}

/// `src` of a message that does not parse as a node message.
fn src_of(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("src")?.as_str().map(String::from)
}
