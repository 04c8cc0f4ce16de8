//! The control listener: WebSocket (optionally over TLS) in, [`Inbound`] out.
//!
//! This is transport only. Each connection task turns text frames into
//! [`Inbound::Text`], refuses what cannot be a request (binary frames) with
//! [`Inbound::Bad`], writes the session driver's [`Outbound`] frames, and reports the end
//! of the connection.
//!
//! Limits protect the node and its honest controllers from a misbehaving peer:
//! - who holds a connection is the [`Gate`]'s decision: connections that have not
//!   logged in have their own budget (overall and per source network) and deadlines
//!   (handshake, login) counted from the accept, and a newcomer evicts such a
//!   connection of the source holding most of them, so nobody without the secret can
//!   lock a controller out; logged-in sessions have their own budget;
//! - a session is pinged every `ping_interval`, and closed when nothing at all (no
//!   frame, no pong) arrived for `idle_timeout`, or when a write to it has not gone
//!   through by then: a controller that froze cannot keep its calls up; a message
//!   sent in fragments must be finished within `idle_timeout` of its first one
//!   ([`super::frames`] watches for that, as tungstenite does not show fragments);
//! - a frame or message larger than [`MAX_MESSAGE`] closes the connection with 1009,
//!   a text frame that is not UTF-8 with 1007, another protocol violation with 1002.

use super::driver::{Inbound, Outbound};
use super::frames::{start_watching, Assembly, Watched};
use futures_util::{Sink, SinkExt, StreamExt};
use scnf_core::control::admission::{AdmissionConfig, Gate, Promotion};
use scnf_core::session::{ConnId, LoginStep};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Largest accepted message, bytes. The biggest real request (a setup with a long
/// codec list) is well under 4 KiB.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Frames queued towards one connection before it counts as not reading.
pub const OUTBOUND_QUEUE: usize = 1024;

/// The listener's limits (typed; the node's config validates them).
#[derive(Clone, Debug)]
pub struct Limits {
    pub admission: AdmissionConfig,
    /// Between two pings to a session.
    pub ping_interval: Duration,
    /// A session from which nothing arrived for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            admission: AdmissionConfig::default(),
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// The gate, and how to stop each connection it may evict or expire.
struct Door {
    gate: Gate,
    stops: HashMap<ConnId, oneshot::Sender<&'static str>>,
    /// Sessions the node closed because their controller stopped taking part, by
    /// reason, for the operator's log.
    dead: HashMap<&'static str, u64>,
}

/// The reasons a session is closed for a controller that is gone or stuck.
const DEAD: [&str; 3] = ["idle timeout", "not reading", "message not finished"];

impl Door {
    /// Counts a close for `reason`; the running total when it is one of [`DEAD`].
    fn count_dead(&mut self, reason: &str) -> Option<u64> {
        let reason = DEAD.into_iter().find(|r| *r == reason)?;
        let n = self.dead.entry(reason).or_insert(0);
        *n += 1;
        Some(*n)
    }
}

type Shared = Arc<Mutex<Door>>;

fn lock(door: &Shared) -> MutexGuard<'_, Door> {
    // Nothing under this lock can leave the gate half-changed.
    door.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes a connection out of the gate however its task ends (closed, cut, aborted).
struct Leave {
    door: Shared,
    conn: ConnId,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let mut d = lock(&self.door);
        d.gate.left(self.conn);
        d.stops.remove(&self.conn);
    }
}

/// What one connection task needs.
struct Ctx {
    peer: SocketAddr,
    conn: ConnId,
    inbound: mpsc::Sender<Inbound>,
    /// The gate's word: evicted or past a deadline.
    stopped: oneshot::Receiver<&'static str>,
    limits: Arc<Limits>,
    door: Shared,
    /// The message the peer is sending in fragments, if any.
    assembly: Assembly,
}

/// Accepts connections until the listener fails or `inbound` closes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    inbound: mpsc::Sender<Inbound>,
    limits: Limits,
) {
    let door: Shared = Arc::new(Mutex::new(Door {
        gate: Gate::new(limits.admission.clone()),
        stops: HashMap::new(),
        dead: HashMap::new(),
    }));
    let limits = Arc::new(limits);
    let mut next = 1u64;
    loop {
        // Waiting connections past their deadline are cut here, by one timer for all.
        let wake = lock(&door)
            .gate
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + limits.admission.handshake_timeout);
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tokio::time::sleep_until(wake.into()) => {
                let mut d = lock(&door);
                for (conn, why) in d.gate.handle_timeout(Instant::now()) {
                    tracing::debug!(?conn, why = why.reason(), "control connection cut");
                    if let Some(stop) = d.stops.remove(&conn) {
                        let _ = stop.send(why.reason());
                    }
                }
                continue;
            }
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(%e, "control accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if inbound.is_closed() {
            return;
        }
        let _ = tcp.set_nodelay(true);
        let conn = ConnId(next);
        next += 1;
        let (stop, stopped) = oneshot::channel();
        {
            let mut d = lock(&door);
            if let Some(victim) = d.gate.arrive(Instant::now(), conn, peer.ip()) {
                let evicted = d.gate.stats().evicted;
                tracing::info!(%peer, ?victim, evicted, "control connection not logged in evicted for a newcomer");
                if let Some(stop) = d.stops.remove(&victim) {
                    let _ = stop.send("evicted: too many connections not logged in");
                }
            }
            d.stops.insert(conn, stop);
        }
        let leave = Leave {
            door: door.clone(),
            conn,
        };
        let ctx = Ctx {
            peer,
            conn,
            inbound: inbound.clone(),
            stopped,
            limits: limits.clone(),
            door: door.clone(),
            assembly: Assembly::default(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _leave = leave;
            connection(tcp, tls, ctx).await;
        });
    }
}

async fn connection(tcp: TcpStream, tls: Option<TlsAcceptor>, ctx: Ctx) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let assembly = ctx.assembly.clone();
    match tls {
        Some(acceptor) => {
            let handshake = async {
                let stream = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
                let stream = Watched::new(stream, assembly);
                let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config))
                    .await
                    .map_err(|e| e.to_string())?;
                start_watching(ws.get_mut());
                Ok(ws)
            };
            run_after(handshake, ctx).await;
        }
        None => {
            let handshake = async {
                let stream = Watched::new(tcp, assembly);
                let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config))
                    .await
                    .map_err(|e| e.to_string())?;
                start_watching(ws.get_mut());
                Ok(ws)
            };
            run_after(handshake, ctx).await;
        }
    }
}

/// Runs the session once `handshake` (TLS and/or WebSocket) succeeds, unless the gate
/// cuts it first (its deadline, or an eviction).
async fn run_after<S>(
    handshake: impl std::future::Future<Output = Result<WebSocketStream<S>, String>>,
    mut ctx: Ctx,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = ctx.peer;
    tokio::select! {
        done = handshake => match done {
            Ok(ws) => {
                lock(&ctx.door).gate.opened(ctx.conn);
                session(ws, ctx).await;
            }
            Err(e) => tracing::debug!(%peer, %e, "control handshake failed"),
        },
        why = &mut ctx.stopped => {
            let why = why.unwrap_or("node stopping");
            tracing::debug!(%peer, why, "control handshake cut");
        }
    }
}

/// How a session ends: with a close frame (code, reason), or without one (the peer
/// closed, or the connection broke).
type End = Option<(CloseCode, String)>;

async fn session<S>(ws: WebSocketStream<S>, mut ctx: Ctx)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (peer, conn) = (ctx.peer, ctx.conn);
    let (tx, mut rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (kill, mut killed) = oneshot::channel();
    // The session's own queue: a backlog here waits for this peer's turn only.
    let (frames, queue) = mpsc::channel(super::driver::SESSION_QUEUE);
    let opened = Inbound::Opened {
        conn,
        peer,
        tx,
        kill,
        frames: queue,
    };
    if ctx.inbound.send(opened).await.is_err() {
        return;
    }
    tracing::debug!(%peer, ?conn, "control session opened");
    let (mut sink, mut stream) = ws.split();
    let (every, idle) = (ctx.limits.ping_interval, ctx.limits.idle_timeout);
    let mut ping = tokio::time::interval_at((Instant::now() + every).into(), every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    let end: End = loop {
        let idle_at = heard + idle;
        tokio::select! {
            frame = stream.next() => {
                heard = Instant::now();
                let item = match frame {
                    Some(Ok(Message::Text(text))) => Inbound::Text { conn, text: text.to_string() },
                    Some(Ok(Message::Binary(_))) => Inbound::Bad {
                        conn,
                        problem: "binary frames are not supported: send JSON text frames".into(),
                    },
                    Some(Ok(Message::Close(_))) | None => break None,
                    // Pings are answered by tungstenite itself; pongs only prove life.
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break stream_error(peer, &e),
                };
                if frames.send(item).await.is_err() {
                    break None;
                }
            }
            () = tokio::time::sleep_until(idle_at.into()) => {
                break Some((CloseCode::Policy, "idle timeout".into()));
            }
            _ = ping.tick() => {
                // tungstenite shows no fragment until the last: a peer that started a
                // message and answers pings would otherwise never be idle.
                if ctx.assembly.started().is_some_and(|at| at.elapsed() >= idle) {
                    break Some((CloseCode::Policy, "message not finished".into()));
                }
                let mut cut = Cut { killed: &mut killed, stopped: &mut ctx.stopped, idle_at };
                if let Err(end) = cut.write(&mut sink, Message::Ping(Default::default())).await {
                    break end;
                }
            }
            reason = &mut killed => {
                break Some((CloseCode::Policy, reason.unwrap_or_else(|_| "node stopping".into())));
            }
            why = &mut ctx.stopped => {
                break Some((CloseCode::Again, why.unwrap_or("node stopping").into()));
            }
            out = rx.recv() => match out {
                Some(Outbound::Text(text)) => {
                    let mut cut = Cut { killed: &mut killed, stopped: &mut ctx.stopped, idle_at };
                    if let Err(end) = cut.write(&mut sink, Message::Text(text.into())).await {
                        break end;
                    }
                }
                Some(Outbound::Close(reason)) => break Some((CloseCode::Policy, reason)),
                Some(Outbound::Login(LoginStep::Challenged)) => {
                    lock(&ctx.door).gate.challenged(conn);
                }
                Some(Outbound::Login(LoginStep::LoggedIn)) => {
                    if lock(&ctx.door).gate.logged_in(conn) == Promotion::Full {
                        tracing::warn!(%peer, ?conn, "control session refused: every session slot is taken");
                        break Some((CloseCode::Again, "too many sessions".into()));
                    }
                }
                None => break None,
            },
        }
    };
    let reason = end.as_ref().map(|(_, reason)| reason.clone());
    if let Some((code, reason)) = end {
        // Logged once per session, with how many have gone the same way.
        if let Some(total) = lock(&ctx.door).count_dead(&reason) {
            tracing::warn!(%peer, ?conn, reason, total, "control session closed: its controller stopped taking part");
        }
        close(&mut sink, &mut stream, code, reason).await;
    }
    let _ = frames.send(Inbound::Closed { conn, reason }).await;
    tracing::debug!(%peer, ?conn, "control session closed");
}

/// What may end a session while one of its writes waits for the peer to read.
struct Cut<'a> {
    killed: &'a mut oneshot::Receiver<String>,
    stopped: &'a mut oneshot::Receiver<&'static str>,
    idle_at: Instant,
}

impl Cut<'_> {
    /// Writes `msg`, unless the driver or the gate ends the session first, or the
    /// write is still blocked at the idle deadline (a peer that stopped reading).
    async fn write<S>(&mut self, sink: &mut S, msg: Message) -> Result<(), End>
    where
        S: Sink<Message> + Unpin,
    {
        tokio::select! {
            sent = sink.send(msg) => sent.map_err(|_| None),
            reason = &mut *self.killed => {
                Err(Some((CloseCode::Policy, reason.unwrap_or_else(|_| "node stopping".into()))))
            }
            why = &mut *self.stopped => {
                Err(Some((CloseCode::Again, why.unwrap_or("node stopping").into())))
            }
            () = tokio::time::sleep_until(self.idle_at.into()) => {
                Err(Some((CloseCode::Policy, "not reading".into())))
            }
        }
    }
}

/// The close a broken stream gets: 1007 for a text frame that is not UTF-8, 1009 for
/// a frame or message over [`MAX_MESSAGE`], 1002 for another protocol violation;
/// none when the connection itself failed.
fn stream_error(peer: SocketAddr, e: &WsError) -> End {
    let (code, reason) = match e {
        WsError::Utf8(_) => (CloseCode::Invalid, "text frame is not valid UTF-8"),
        WsError::Capacity(_) => (CloseCode::Size, "message too big"),
        WsError::Protocol(_) => (CloseCode::Protocol, "WebSocket protocol violation"),
        _ => {
            tracing::debug!(%peer, %e, "control connection failed");
            return None;
        }
    };
    tracing::info!(%peer, %e, code = u16::from(code), "control connection error; closing it");
    Some((code, reason.into()))
}

/// How long the closing handshake may take: a peer that does not read, or does
/// not answer the close, gets its connection dropped without it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The closing handshake (RFC 6455, 7.1.1), within [`CLOSE_TIMEOUT`]: sends the
/// close frame, then reads (and drops) what the peer still sends until its own
/// close or the end of the stream. Dropping the TCP connection while the peer's
/// last frames sit unread makes the kernel answer with a reset, and a reset can
/// destroy, at the peer, frames this side wrote just before: the last operations
/// a scaler sends to a node, or the releases a node sends to its controller.
async fn close<S, R>(sink: &mut S, stream: &mut R, code: CloseCode, reason: String)
where
    S: Sink<Message> + Unpin,
    R: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let handshake = async {
        if sink.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = stream.next().await {
            if msg.is_close() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, handshake).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_for_a_stuck_controller_are_counted_per_reason_and_no_others() {
        let mut door = Door {
            gate: Gate::new(AdmissionConfig::default()),
            stops: HashMap::new(),
            dead: HashMap::new(),
        };
        assert_eq!(door.count_dead("idle timeout"), Some(1));
        assert_eq!(door.count_dead("not reading"), Some(1));
        assert_eq!(door.count_dead("idle timeout"), Some(2));
        assert_eq!(door.count_dead("login timeout"), None);
        assert_eq!(door.count_dead("too many sessions"), None);
        assert_eq!(door.count_dead("message not finished"), Some(1));
    }
}
