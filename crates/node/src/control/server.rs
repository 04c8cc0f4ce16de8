//! The control listener: WebSocket (optionally over TLS) in, [`Inbound`] out.
//!
//! This is transport only. Each connection task turns text frames into
//! [`Inbound::Text`], refuses what cannot be a request (binary frames) with
//! [`Inbound::Bad`], writes the session driver's [`Outbound`] frames, and reports the end
//! of the connection. Limits protect the node from a misbehaving peer: a frame or
//! message larger than [`MAX_MESSAGE`] closes that connection (close code 1009), the
//! TLS and WebSocket handshakes must finish within [`HANDSHAKE_TIMEOUT`], and at most
//! `max_connections` sessions exist at once.

use super::driver::{Inbound, Outbound};
use futures_util::{SinkExt, StreamExt};
use scnf_core::session::ConnId;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

/// Largest accepted message, bytes. The biggest real request (a setup with a long
/// codec list) is well under 4 KiB.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Time allowed for the TLS and WebSocket handshakes together.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames queued towards one connection before it counts as not reading.
pub const OUTBOUND_QUEUE: usize = 1024;

/// Accepts connections until the listener fails or `inbound` closes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    inbound: mpsc::Sender<Inbound>,
    max_connections: usize,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut next = 1u64;
    loop {
        let (tcp, peer) = match listener.accept().await {
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
        if open.load(Ordering::Relaxed) >= max_connections {
            tracing::warn!(%peer, max_connections, "control connection refused: too many");
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let conn = ConnId(next);
        next += 1;
        let (tls, inbound, open) = (tls.clone(), inbound.clone(), open.clone());
        tokio::spawn(async move {
            connection(tcp, peer, tls, conn, inbound).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    conn: ConnId,
    inbound: mpsc::Sender<Inbound>,
) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    match tls {
        Some(acceptor) => {
            let handshake = async {
                let stream = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
                tokio_tungstenite::accept_async_with_config(stream, Some(config))
                    .await
                    .map_err(|e| e.to_string())
            };
            run_after(handshake, peer, conn, inbound).await;
        }
        None => {
            let handshake = async {
                tokio_tungstenite::accept_async_with_config(tcp, Some(config))
                    .await
                    .map_err(|e| e.to_string())
            };
            run_after(handshake, peer, conn, inbound).await;
        }
    }
}

/// Runs the session once `handshake` (TLS and/or WebSocket) succeeds within
/// [`HANDSHAKE_TIMEOUT`].
async fn run_after<S>(
    handshake: impl std::future::Future<Output = Result<tokio_tungstenite::WebSocketStream<S>, String>>,
    peer: SocketAddr,
    conn: ConnId,
    inbound: mpsc::Sender<Inbound>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => session(ws, peer, conn, inbound).await,
        Ok(Err(e)) => tracing::debug!(%peer, %e, "control handshake failed"),
        Err(_) => tracing::debug!(%peer, "control handshake timed out"),
    }
}

async fn session<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    peer: SocketAddr,
    conn: ConnId,
    inbound: mpsc::Sender<Inbound>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
    if inbound.send(opened).await.is_err() {
        return;
    }
    tracing::debug!(%peer, ?conn, "control session opened");
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            frame = stream.next() => {
                let item = match frame {
                    Some(Ok(Message::Text(text))) => Inbound::Text { conn, text: text.to_string() },
                    Some(Ok(Message::Binary(_))) => Inbound::Bad {
                        conn,
                        problem: "binary frames are not supported: send JSON text frames".into(),
                    },
                    Some(Ok(Message::Close(_))) | None => break,
                    // Pings are answered by tungstenite itself.
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::info!(%peer, %e, "control connection error");
                        let close = CloseFrame {
                            code: CloseCode::Size,
                            reason: "message too big or malformed frame".into(),
                        };
                        let _ = sink.send(Message::Close(Some(close))).await;
                        break;
                    }
                };
                if frames.send(item).await.is_err() {
                    break;
                }
            }
            reason = &mut killed => {
                close(&mut sink, reason.unwrap_or_else(|_| "node stopping".into())).await;
                break;
            }
            out = rx.recv() => match out {
                Some(Outbound::Text(text)) => {
                    // A write blocks while the peer does not read: the driver's kill
                    // must still get through.
                    tokio::select! {
                        sent = sink.send(Message::Text(text.into())) => if sent.is_err() {
                            break;
                        },
                        reason = &mut killed => {
                            close(&mut sink, reason.unwrap_or_else(|_| "node stopping".into())).await;
                            break;
                        }
                    }
                }
                Some(Outbound::Close(reason)) => {
                    close(&mut sink, reason).await;
                    break;
                }
                None => break,
            },
        }
    }
    let _ = frames.send(Inbound::Closed { conn }).await;
    tracing::debug!(%peer, ?conn, "control session closed");
}

/// How long a close frame may take to leave: a peer that does not read gets its
/// connection dropped without it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends a policy close frame, within [`CLOSE_TIMEOUT`].
async fn close<S>(sink: &mut S, reason: String)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Policy,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}
