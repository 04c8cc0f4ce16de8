//! The session driver: one task that runs the node's session root
//! ([`scnf_core::session::Session`]) on tokio.
//!
//! It only moves values: transport items ([`Inbound`]) and media events in, the
//! root's outputs out (frames to connections, closes, media operations to its
//! [`Media`] executor), media results back in, and one timer at the root's next
//! deadline. The decisions are the root's. What the transport is does not matter
//! here (the WebSocket listener of [`super::server`]), nor where the media runs: a
//! node's own workers ([`NodeHandle`]) or, in `scnf scaler`, the cluster's nodes
//! through the planner (`crate::scaler`).
//!
//! One task, one owner: there is no lock around call state and every connection sees
//! the same order of events. While the root waits for a leg
//! ([`Session::is_waiting`]) the driver reads only media results, so back pressure
//! reaches the peers' TCP windows instead of memory.
//!
//! # Fairness
//! Each session has its own bounded queue of frames ([`Inbound::Opened`] hands it
//! over), and the driver takes one frame from each ready session in turn. A session's
//! backlog (ten thousand pipelined `Setup`s, a `Status` flood) therefore delays only
//! itself: another session's next frame is taken after at most one frame of every
//! other session, and a full queue stops reading that one peer's socket only. One
//! session's frames are still handled strictly in order.
//!
//! Node events the driver could not keep up with (the broadcast channel overran) are
//! not lost silently: the root tells every controller ([`Session::handle_events_lost`]).

use crate::NodeHandle;
use scnf_core::cluster::planner::Adoption;
use scnf_core::engine::{EngineEvent, MediaOp, MediaResult};
use scnf_core::session::{ConnId, Kept, LoginStep, Output, ReqId, Session, SHUTDOWN_CAUSE};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Where the root's media operations run. The driver needs only these two things of
/// it, so a node (its workers) and a scaler (its planner, which runs them on the
/// cluster's nodes) drive the same root with the same driver.
pub trait Media: Send + 'static {
    /// Why an operation could not even be queued (it is then answered `Failed`).
    type Error: std::fmt::Display;

    /// Queues `op` for `worker`; its result must come to `results`, tagged `req`,
    /// exactly once. Operations on one worker are applied in submission order.
    fn submit(
        &self,
        worker: usize,
        req: ReqId,
        op: MediaOp,
        results: &mpsc::UnboundedSender<(ReqId, MediaResult)>,
    ) -> Result<(), Self::Error>;

    /// The media events (DTMF, talking, media timeouts, latching). A slow
    /// subscriber loses the oldest, it never slows the media.
    fn subscribe(&self) -> broadcast::Receiver<EngineEvent>;

    /// The root's channels in use now (after every turn of the driver).
    fn note_channels(&self, _used: u32) {}

    /// State the root keeps with the media ([`Output::Keep`]: a scaler's root keeps
    /// its rooms on the nodes). Ordered with the operations: it describes what they
    /// did. A node's own workers keep nothing.
    fn keep(&self, _what: Kept, _state: serde_json::Value) {}
}

impl Media for NodeHandle {
    type Error = crate::NodeError;

    fn submit(
        &self,
        worker: usize,
        req: ReqId,
        op: MediaOp,
        results: &mpsc::UnboundedSender<(ReqId, MediaResult)>,
    ) -> Result<(), crate::NodeError> {
        NodeHandle::submit(self, worker, req, op, results)
    }

    fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        NodeHandle::subscribe(self)
    }

    fn note_channels(&self, used: u32) {
        self.note_local_channels(used);
    }
}

/// What a transport tells the driver: `Opened` and `Channels` on the node's channel,
/// everything else on the session's own queue (`frames`), which the driver serves in turn with
/// the other sessions' queues.
#[derive(Debug)]
pub enum Inbound {
    /// A session started; the driver answers through `tx`, and ends the session
    /// through `kill` when `tx` cannot take another frame (a peer that does not read
    /// keeps its queue full, so a close queued behind its frames would never be
    /// seen). The session's `Text`, `Bad` and `Closed` come through `frames` (a
    /// queue that ends without `Closed` counts as closed).
    Opened {
        conn: ConnId,
        peer: SocketAddr,
        tx: mpsc::Sender<Outbound>,
        kill: oneshot::Sender<String>,
        frames: mpsc::Receiver<Inbound>,
    },
    /// One text frame.
    Text { conn: ConnId, text: String },
    /// A frame the transport could not pass on (binary, not UTF-8, ...).
    Bad { conn: ConnId, problem: String },
    /// The session ended; `reason` when the node closed it (what its close frame
    /// said), none when the peer did.
    Closed {
        conn: ConnId,
        reason: Option<String>,
    },
    /// The node is stopping ([`Session::handle_shutdown`]): `done` fires once the
    /// releases, the leg removals and the closes are through (every media result in,
    /// every session gone), and the driver then ends.
    Shutdown { done: oneshot::Sender<()> },
    /// The capacity in conference channels changed (a scaler's cluster grew or
    /// shrank: [`Session::set_channels`]).
    Channels(u32),
    /// A room or call a restarted scaler took over from its nodes
    /// ([`Session::handle_adopt`]).
    Adopt(Adoption),
}

/// What the driver tells a transport.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    /// End the session (the reason goes into the close frame).
    Close(String),
    /// The session got further in its login (the transport's budgets follow it).
    Login(LoginStep),
}

/// A transport's two ways in.
struct Conn {
    frames: mpsc::Sender<Outbound>,
    /// Taken when used: a session is killed once.
    kill: Option<oneshot::Sender<String>>,
}

impl Conn {
    fn kill(&mut self, reason: &str) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(reason.to_string());
        }
    }
}

/// Frames one session may have queued towards the driver before its transport waits
/// (and stops reading that peer's socket).
pub const SESSION_QUEUE: usize = 64;

/// One session's queue of frames.
pub(crate) struct Queue {
    pub conn: ConnId,
    pub frames: mpsc::Receiver<Inbound>,
}

/// The next frame of the sessions' queues, round-robin from `next`: the queue that
/// gave the last frame goes to the back of the turn.
pub(crate) fn poll_queues(
    queues: &mut [Queue],
    next: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<(ConnId, Option<Inbound>)> {
    let n = queues.len();
    for k in 0..n {
        let i = (*next + k) % n;
        if let Poll::Ready(item) = queues[i].frames.poll_recv(cx) {
            *next = (i + 1) % n;
            return Poll::Ready((queues[i].conn, item));
        }
    }
    Poll::Pending
}

/// Runs the root until `inbound` closes or the media executor is gone.
pub async fn run<M: Media>(mut session: Session, media: M, mut inbound: mpsc::Receiver<Inbound>) {
    let mut events = media.subscribe();
    let (results_tx, mut results) = mpsc::unbounded_channel::<(ReqId, MediaResult)>();
    let mut conns: HashMap<ConnId, Conn> = HashMap::new();
    // Media operations submitted and not answered yet, and the stopping node's
    // waiter: a shutdown is through when both the media and the sessions are done.
    let mut in_flight = 0usize;
    let mut channels_used = 0u32;
    let mut stopping: Option<oneshot::Sender<()>> = None;
    let mut queues: Vec<Queue> = Vec::new();
    let mut next = 0usize;
    loop {
        in_flight += flush(&mut session, &media, &results_tx, &mut conns);
        let used = session.conference().channels_used();
        if used != channels_used {
            channels_used = used;
            media.note_channels(used);
        }
        if stopping.is_some() && in_flight == 0 && conns.is_empty() {
            if let Some(done) = stopping.take() {
                let _ = done.send(());
            }
            break;
        }
        let waiting = session.is_waiting();
        let deadline = session.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let frame = std::future::poll_fn(|cx| poll_queues(&mut queues, &mut next, cx));
        tokio::select! {
            Some((req, result)) = results.recv() => {
                in_flight = in_flight.saturating_sub(1);
                session.handle_media_result(Instant::now(), req, result);
            }
            item = inbound.recv(), if !waiting => match item {
                Some(Inbound::Opened { conn, peer, tx, kill, frames }) => {
                    conns.insert(conn, Conn { frames: tx, kill: Some(kill) });
                    queues.push(Queue { conn, frames });
                    session.handle_open(Instant::now(), conn, peer);
                }
                Some(Inbound::Shutdown { done }) => {
                    stopping = Some(done);
                    session.handle_shutdown(SHUTDOWN_CAUSE);
                }
                Some(Inbound::Channels(n)) => session.set_channels(n),
                Some(Inbound::Adopt(a)) => session.handle_adopt(Instant::now(), a),
                Some(other) => tracing::warn!(?other, "a session frame on the node channel"),
                None => break,
            },
            (conn, item) = frame, if !waiting => match item {
                Some(Inbound::Text { text, .. }) => session.handle_text(Instant::now(), conn, &text),
                Some(Inbound::Bad { problem, .. }) => session.handle_bad_frame(conn, problem),
                Some(Inbound::Opened { .. }) => tracing::warn!(?conn, "Opened on a session queue"),
                item @ (Some(Inbound::Closed { .. }) | None) => {
                    if let Some(Inbound::Closed { reason: Some(reason), .. }) = &item {
                        session.note_closed(reason);
                    }
                    queues.retain(|q| q.conn != conn);
                    conns.remove(&conn);
                    session.handle_close(Instant::now(), conn);
                }
                Some(Inbound::Shutdown { .. } | Inbound::Channels(_) | Inbound::Adopt(_)) => {
                    tracing::warn!(?conn, "a node item on a session queue");
                }
            },
            event = events.recv(), if !waiting => match event {
                Ok(event) => session.handle_engine_event(Instant::now(), event),
                Err(broadcast::error::RecvError::Lagged(n)) => session.handle_events_lost(n),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = sleep, if !waiting => session.handle_timeout(Instant::now()),
        }
    }
}

/// Executes the root's outputs; returns how many media operations it submitted
/// (each one's result comes back, a failed submission's included).
fn flush<M: Media>(
    session: &mut Session,
    executor: &M,
    results: &mpsc::UnboundedSender<(ReqId, MediaResult)>,
    conns: &mut HashMap<ConnId, Conn>,
) -> usize {
    let mut media = 0;
    while let Some(out) = session.poll_output() {
        match out {
            Output::Send { conn, text } => {
                let Some(c) = conns.get_mut(&conn) else {
                    continue;
                };
                // A controller that does not read cannot be allowed to stall everyone
                // else: its session is ended, once.
                if c.frames.try_send(Outbound::Text(text)).is_err() && c.kill.is_some() {
                    tracing::warn!(?conn, "control session does not read; closing it");
                    c.kill("not reading");
                }
            }
            Output::Login { conn, step } => {
                if let Some(c) = conns.get_mut(&conn) {
                    if c.frames.try_send(Outbound::Login(step)).is_err() {
                        c.kill("not reading");
                    }
                }
            }
            Output::Close { conn, reason } => {
                if let Some(c) = conns.get_mut(&conn) {
                    if let Err(mpsc::error::TrySendError::Full(_)) =
                        c.frames.try_send(Outbound::Close(reason.clone()))
                    {
                        c.kill(&reason);
                    }
                }
            }
            Output::Media { req, worker, op } => {
                media += 1;
                if let Err(e) = executor.submit(worker, req, op, results) {
                    // The result still comes back, so the root never waits forever.
                    let _ = results.send((req, MediaResult::Failed(e.to_string())));
                }
            }
            Output::Keep { what, state } => executor.keep(what, state),
        }
    }
    media
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use scnf_core::conf::ConfConfig;
    use scnf_core::control::auth::LoginConfig;
    use scnf_core::control::msg::{self, ServerMsg};
    use scnf_core::session::budget::{Budgets, Rate};
    use scnf_core::session::SessionConfig;
    use std::time::Duration;

    fn node(port_min: u16) -> NodeHandle {
        let mut cfg = Config::default();
        cfg.rtp.workers = 1;
        cfg.rtp.port_min = port_min;
        cfg.rtp.port_max = port_min + 99;
        NodeHandle::start(&cfg).expect("the test node starts")
    }

    fn config(node: &NodeHandle, channels: u32, budgets: Budgets) -> SessionConfig {
        SessionConfig {
            secret: None,
            login: LoginConfig::default(),
            conf: ConfConfig::new(channels),
            login_timeout: Duration::from_secs(30),
            workers: node.workers(),
            own_media: node.own_media(),
            budgets,
            resume_grace: Duration::ZERO,
        }
    }

    /// A transport's ends of one session.
    struct Peer {
        frames: mpsc::Sender<Inbound>,
        killed: oneshot::Receiver<String>,
    }

    /// Opens session `conn` whose answers go to `tx`; `queue` frames may wait.
    fn opened(conn: u64, tx: mpsc::Sender<Outbound>, queue: usize) -> (Inbound, Peer) {
        let (kill, killed) = oneshot::channel();
        let (frames, rx) = mpsc::channel(queue);
        let peer = SocketAddr::from(([127, 0, 0, 1], 50_000 + conn as u16));
        let open = Inbound::Opened {
            conn: ConnId(conn),
            peer,
            tx,
            kill,
            frames: rx,
        };
        (open, Peer { frames, killed })
    }

    fn text(conn: u64, text: String) -> Inbound {
        Inbound::Text {
            conn: ConnId(conn),
            text,
        }
    }

    /// The next message to the session (login steps for the transport skipped:
    /// without a password every session is told at once that it is logged in).
    async fn next_text(rx: &mut mpsc::Receiver<Outbound>) -> (ServerMsg, Option<String>) {
        loop {
            let answer = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("answered within 5 s");
            match answer {
                Some(Outbound::Text(text)) => return msg::parse_server(&text).expect("valid JSON"),
                Some(Outbound::Login(LoginStep::LoggedIn)) => continue,
                other => panic!("a text frame: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_session_that_does_not_read_is_cut_at_once_and_the_others_are_served() {
        let node = node(38_800);
        let cfg = config(&node, 10, Budgets::default());
        let (inbound, rx) = mpsc::channel(16);
        let driver = tokio::spawn(run(Session::new(cfg, [1; 32]), node.clone(), rx));
        // Room for one frame, and nobody ever reads it.
        let (unread_tx, _unread) = mpsc::channel(1);
        let (open, peer) = opened(1, unread_tx, 16);
        inbound.send(open).await.unwrap();
        for _ in 0..3 {
            peer.frames.send(text(1, "not json".into())).await.unwrap();
        }
        let reason = tokio::time::timeout(Duration::from_secs(5), peer.killed)
            .await
            .expect("killed within 5 s")
            .expect("with a reason");
        assert_eq!(reason, "not reading");
        // Another controller is answered as usual.
        let (tx, mut answers) = mpsc::channel(16);
        let (open, other) = opened(2, tx, 16);
        inbound.send(open).await.unwrap();
        let health = r#"{"mt":"Health","src":"h"}"#.to_string();
        other.frames.send(text(2, health)).await.unwrap();
        let (reply, src) = next_text(&mut answers).await;
        assert!(matches!(reply, ServerMsg::HealthResult { .. }), "{reply:?}");
        assert_eq!(src.as_deref(), Some("h"));
        drop(inbound);
        driver
            .await
            .expect("the driver ends when its inbound closes");
        node.shutdown();
    }

    /// Ten thousand pipelined `Setup`s (each waits for its leg on the worker) from one
    /// session, then one request from another: the other's answer comes after at most
    /// one of the flood's. Before the sessions had their own queues it came after all
    /// ten thousand (one FIFO in front of the driver, ~100 s in the field).
    #[tokio::test]
    async fn ten_thousand_pipelined_setups_delay_another_session_by_one_request() {
        const SETUPS: usize = 10_000;
        let node = node(38_900);
        let unlimited = Budgets {
            requests: Rate::UNLIMITED,
            reports: Rate::UNLIMITED,
        };
        let cfg = config(&node, 20_000, unlimited);
        let (inbound, rx) = mpsc::channel(16);
        let driver = tokio::spawn(run(Session::new(cfg, [2; 32]), node.clone(), rx));
        // Both sessions answer into one channel, so its order is the driver's order.
        let (tx, mut answers) = mpsc::channel(4 * SETUPS);
        let (open, flood) = opened(1, tx.clone(), SETUPS);
        inbound.send(open).await.unwrap();
        let (open, other) = opened(2, tx, 16);
        inbound.send(open).await.unwrap();
        // Both sessions are known to the driver once each has had an answer.
        for (peer, conn) in [(&flood, 1), (&other, 2)] {
            let probe = r#"{"mt":"Health","src":"probe"}"#.to_string();
            peer.frames.send(text(conn, probe)).await.unwrap();
            let (reply, _) = next_text(&mut answers).await;
            assert!(matches!(reply, ServerMsg::HealthResult { .. }), "{reply:?}");
        }
        // Queued without yielding: the driver sees the whole flood and the other
        // request at once.
        for i in 0..SETUPS {
            let setup = format!(
                r#"{{"mt":"Setup","src":"s{i}","call":"c{i}","called":"*3{}#","media":{{"address":"198.51.100.1","port":{},"codecs":[{{"name":"PCMU","pt":0,"rate":8000}}]}}}}"#,
                100_000 + i / 10,
                2 + 2 * (i % 30_000)
            );
            flood
                .frames
                .try_send(text(1, setup))
                .expect("room in the queue");
        }
        let unknown = r#"{"mt":"Hold","call":"none","src":"other"}"#.to_string();
        other.frames.try_send(text(2, unknown)).unwrap();
        let mut flood_answers = 0;
        loop {
            let (reply, src) = next_text(&mut answers).await;
            match src.as_deref() {
                Some("other") => {
                    assert!(matches!(reply, ServerMsg::Error { .. }), "{reply:?}");
                    break;
                }
                Some(s) if s.starts_with('s') => flood_answers += 1,
                _ => {} // room events, to both sessions
            }
        }
        assert!(
            flood_answers <= 1,
            "{flood_answers} of the flood's answers came first"
        );
        drop(inbound);
        drop(flood);
        driver
            .await
            .expect("the driver ends when its inbound closes");
        node.shutdown();
    }
}
