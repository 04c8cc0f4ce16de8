//! The session driver: one task that runs the node's session root
//! ([`scnf_core::session::Session`]) on tokio.
//!
//! It only moves values: transport items ([`Inbound`]) and node events in, the
//! root's outputs out (frames to connections, closes, media operations to the
//! workers through [`NodeHandle::submit`]), media results back in, and one timer at
//! the root's next deadline. The decisions are the root's. What the transport is does
//! not matter here: the WebSocket listener of [`super::server`] today, the node's
//! outbound registration to a scaler later.
//!
//! One task, one owner: there is no lock around call state and every connection sees
//! the same order of events. While the root waits for a leg
//! ([`Session::is_waiting`]) the driver reads only media results, so back pressure
//! reaches the peers' TCP windows instead of memory.

use crate::NodeHandle;
use scnf_core::engine::MediaResult;
use scnf_core::session::{ConnId, LoginStep, Output, ReqId, Session};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// What a transport tells the driver.
#[derive(Debug)]
pub enum Inbound {
    /// A session started; the driver answers through `tx`, and ends the session
    /// through `kill` when `tx` cannot take another frame (a peer that does not read
    /// keeps its queue full, so a close queued behind its frames would never be
    /// seen).
    Opened {
        conn: ConnId,
        peer: SocketAddr,
        tx: mpsc::Sender<Outbound>,
        kill: oneshot::Sender<String>,
    },
    /// One text frame.
    Text { conn: ConnId, text: String },
    /// A frame the transport could not pass on (binary, not UTF-8, ...).
    Bad { conn: ConnId, problem: String },
    /// The session ended.
    Closed { conn: ConnId },
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

/// Runs the root until `inbound` closes or the node's workers are gone.
pub async fn run(mut session: Session, node: NodeHandle, mut inbound: mpsc::Receiver<Inbound>) {
    let mut events = node.subscribe();
    let (results_tx, mut results) = mpsc::unbounded_channel::<(ReqId, MediaResult)>();
    let mut conns: HashMap<ConnId, Conn> = HashMap::new();
    loop {
        flush(&mut session, &node, &results_tx, &mut conns);
        let waiting = session.is_waiting();
        let deadline = session.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((req, result)) = results.recv() => {
                session.handle_media_result(Instant::now(), req, result);
            }
            item = inbound.recv(), if !waiting => match item {
                Some(Inbound::Opened { conn, peer, tx, kill }) => {
                    conns.insert(conn, Conn { frames: tx, kill: Some(kill) });
                    session.handle_open(Instant::now(), conn, peer);
                }
                Some(Inbound::Text { conn, text }) => session.handle_text(Instant::now(), conn, &text),
                Some(Inbound::Bad { conn, problem }) => session.handle_bad_frame(conn, problem),
                Some(Inbound::Closed { conn }) => {
                    conns.remove(&conn);
                    session.handle_close(conn);
                }
                None => break,
            },
            event = events.recv(), if !waiting => match event {
                Ok(event) => session.handle_engine_event(Instant::now(), event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "call control fell behind on node events");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = sleep, if !waiting => session.handle_timeout(Instant::now()),
        }
    }
}

/// Executes the root's outputs.
fn flush(
    session: &mut Session,
    node: &NodeHandle,
    results: &mpsc::UnboundedSender<(ReqId, MediaResult)>,
    conns: &mut HashMap<ConnId, Conn>,
) {
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
                if let Err(e) = node.submit(worker, req, op, results) {
                    // The result still comes back, so the root never waits forever.
                    let _ = results.send((req, MediaResult::Failed(e.to_string())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use scnf_core::conf::ConfConfig;
    use scnf_core::control::auth::LoginConfig;
    use scnf_core::control::msg::{self, ServerMsg};
    use scnf_core::session::SessionConfig;
    use std::time::Duration;

    fn node() -> NodeHandle {
        let mut cfg = Config::default();
        cfg.rtp.workers = 1;
        cfg.rtp.port_min = 38_800;
        cfg.rtp.port_max = 38_899;
        NodeHandle::start(&cfg).expect("the test node starts")
    }

    fn opened(
        conn: u64,
        capacity: usize,
    ) -> (Inbound, mpsc::Receiver<Outbound>, oneshot::Receiver<String>) {
        let (tx, rx) = mpsc::channel(capacity);
        let (kill, killed) = oneshot::channel();
        let peer = SocketAddr::from(([127, 0, 0, 1], 50_000 + conn as u16));
        let open = Inbound::Opened {
            conn: ConnId(conn),
            peer,
            tx,
            kill,
        };
        (open, rx, killed)
    }

    #[tokio::test]
    async fn a_session_that_does_not_read_is_cut_at_once_and_the_others_are_served() {
        let node = node();
        let cfg = SessionConfig {
            secret: None,
            login: LoginConfig::default(),
            conf: ConfConfig::new(10),
            login_timeout: Duration::from_secs(30),
            workers: node.workers(),
        };
        let (inbound, rx) = mpsc::channel(16);
        let driver = tokio::spawn(run(Session::new(cfg, [1; 32]), node.clone(), rx));
        // Room for one frame, and nobody ever reads it.
        let (open, _unread, killed) = opened(1, 1);
        inbound.send(open).await.unwrap();
        for _ in 0..3 {
            let text = "not json".to_string();
            inbound
                .send(Inbound::Text {
                    conn: ConnId(1),
                    text,
                })
                .await
                .unwrap();
        }
        let reason = tokio::time::timeout(Duration::from_secs(5), killed)
            .await
            .expect("killed within 5 s")
            .expect("with a reason");
        assert_eq!(reason, "not reading");
        // Another controller is answered as usual.
        let (open, mut frames, _killed) = opened(2, 16);
        inbound.send(open).await.unwrap();
        // Without a password the transport is told at once that it is logged in.
        let first = frames.recv().await;
        assert!(
            matches!(first, Some(Outbound::Login(LoginStep::LoggedIn))),
            "{first:?}"
        );
        let text = r#"{"mt":"Health","src":"h"}"#.to_string();
        inbound
            .send(Inbound::Text {
                conn: ConnId(2),
                text,
            })
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), frames.recv())
            .await
            .expect("answered within 5 s");
        let Some(Outbound::Text(text)) = answer else {
            panic!("a text frame: {answer:?}");
        };
        let (reply, src) = msg::parse_server(&text).expect("valid JSON");
        assert!(matches!(reply, ServerMsg::HealthResult { .. }), "{reply:?}");
        assert_eq!(src.as_deref(), Some("h"));
        drop(inbound);
        driver
            .await
            .expect("the driver ends when its inbound closes");
        node.shutdown();
    }
}
