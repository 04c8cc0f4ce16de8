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
use scnf_core::session::{ConnId, Output, ReqId, Session};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc};

/// What a transport tells the driver.
#[derive(Debug)]
pub enum Inbound {
    /// A session started; the driver answers through `tx`.
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

/// What the driver tells a transport.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    /// End the session (the reason goes into the close frame).
    Close(String),
}

/// Runs the root until `inbound` closes or the node's workers are gone.
pub async fn run(mut session: Session, node: NodeHandle, mut inbound: mpsc::Receiver<Inbound>) {
    let mut events = node.subscribe();
    let (results_tx, mut results) = mpsc::unbounded_channel::<(ReqId, MediaResult)>();
    let mut conns: HashMap<ConnId, mpsc::Sender<Outbound>> = HashMap::new();
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
                Some(Inbound::Opened { conn, peer, tx }) => {
                    conns.insert(conn, tx);
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
    conns: &mut HashMap<ConnId, mpsc::Sender<Outbound>>,
) {
    while let Some(out) = session.poll_output() {
        match out {
            Output::Send { conn, text } => {
                let Some(tx) = conns.get(&conn) else {
                    continue;
                };
                // A controller that does not read cannot be allowed to stall everyone
                // else: its session is closed.
                if tx.try_send(Outbound::Text(text)).is_err() {
                    tracing::warn!(?conn, "control session does not read; closing it");
                    let _ = tx.try_send(Outbound::Close("not reading".into()));
                }
            }
            Output::Close { conn, reason } => {
                if let Some(tx) = conns.get(&conn) {
                    let _ = tx.try_send(Outbound::Close(reason));
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
