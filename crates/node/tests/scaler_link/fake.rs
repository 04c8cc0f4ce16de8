//! The fake scaler of the link tests: a tokio-tungstenite server that checks the
//! login with the core's `LoginServer`, answers the registration and then speaks
//! `ScalerMsg`; what it hears goes to the test as [`Seen`] values, in arrival order.

use super::BOUND;
use futures_util::{SinkExt, StreamExt};
use scnf_core::cluster::link::{Load, NodeMsg, Register, ScalerMsg};
use scnf_core::control::auth::{Challenges, LoginConfig};
use scnf_core::control::login::{Admission, LoginServer};
use scnf_core::control::msg::{parse_client, to_text, ClientMsg, ServerMsg, PROTOCOL_VERSION};
use scnf_core::engine::{EngineEvent, MediaResult};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What the fake scaler does on a connection, after a good login.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Registers the node, sends a heartbeat every second, relays the test's ops.
    Normal,
    /// Registers the node, then never sends again (still reads; the TCP stays open).
    SilentAfterRegister,
    /// Registers the node, then closes the connection at once.
    CloseAfterRegister,
    /// Refuses the registration.
    RefuseRegistration,
    /// Lets the node in without a proof (a scaler that does not know the secret).
    NoProof,
    /// As `Normal`, and closes the connection once the test drops its op sender.
    CloseWhenDropped,
}

/// What the fake scaler saw, in order.
#[derive(Debug)]
pub enum Seen {
    Connected {
        conn: usize,
    },
    LoginRefused {
        conn: usize,
    },
    Registered {
        conn: usize,
        register: Register,
        to: mpsc::UnboundedSender<ScalerMsg>,
    },
    Load {
        conn: usize,
        load: Load,
    },
    Result {
        conn: usize,
        req: u64,
        result: MediaResult,
    },
    Event {
        conn: usize,
        event: EngineEvent,
    },
    Closed {
        conn: usize,
    },
}

pub struct FakeScaler {
    pub addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

/// Connection `i` behaves as `modes[i]` (the last mode for all later ones).
pub async fn fake_scaler(
    port: u16,
    secret: &'static [u8],
    modes: Vec<Mode>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> FakeScaler {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the test's TCP port is free");
    let addr = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                return;
            };
            let conn = count.fetch_add(1, Ordering::SeqCst);
            let mode = modes[conn.min(modes.len() - 1)];
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = tx.send(Seen::Connected { conn });
                match tls {
                    None => serve_conn(tcp, peer, conn, mode, secret, &tx).await,
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            serve_conn(s, peer, conn, mode, secret, &tx).await;
                        }
                    }
                }
                let _ = tx.send(Seen::Closed { conn });
            });
        }
    });
    FakeScaler { addr, seen }
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    conn: usize,
    mode: Mode,
    secret: &[u8],
    seen: &mpsc::UnboundedSender<Seen>,
) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    // The login, exactly as a node's listener does it.
    let mut server = LoginServer::new(Some(secret.to_vec()), LoginConfig::default(), [9; 32]);
    let mut challenges = Challenges::new();
    loop {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            return;
        };
        let msg = parse_client(text.as_str()).expect("the node sends valid login messages");
        let now = Instant::now();
        let reply = match msg.msg {
            ClientMsg::AppChallenge { version } => {
                server.challenge(now, peer.ip(), &mut challenges, version)
            }
            ClientMsg::AppLogin {
                name,
                cnonce,
                info,
                digest,
                ..
            } => {
                let (reply, admission) = server.login(
                    now,
                    peer.ip(),
                    &mut challenges,
                    &name,
                    &cnonce,
                    &info,
                    &digest,
                );
                let reply = if mode == Mode::NoProof {
                    ServerMsg::AppLoginResult {
                        ok: true,
                        error: None,
                        proof: None,
                        version: PROTOCOL_VERSION,
                        token: None,
                        resumed: false,
                        resume_error: None,
                    }
                } else {
                    reply
                };
                let _ = ws.send(Message::Text(to_text(&reply, None).into())).await;
                if mode != Mode::NoProof && admission == Admission::Refused {
                    let _ = seen.send(Seen::LoginRefused { conn });
                    return;
                }
                break;
            }
            other => panic!("the node sent {other:?} during its login"),
        };
        let _ = ws.send(Message::Text(to_text(&reply, None).into())).await;
    }
    // The registration.
    let register = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<NodeMsg>(t.as_str()) {
                Ok(NodeMsg::Register(r)) => break r,
                other => panic!("the node sent {other:?} before its registration"),
            },
            Some(Ok(_)) => {}
            _ => return,
        }
    };
    let send = |msg: &ScalerMsg| Message::Text(msg.to_json().into());
    if mode == Mode::RefuseRegistration {
        let refusal = ScalerMsg::Registered {
            ok: false,
            error: Some(format!("name {} is taken", register.name)),
        };
        let _ = ws.send(send(&refusal)).await;
        return;
    }
    let ok = ScalerMsg::Registered {
        ok: true,
        error: None,
    };
    if ws.send(send(&ok)).await.is_err() {
        return;
    }
    let (to, mut ops) = mpsc::unbounded_channel();
    let _ = seen.send(Seen::Registered { conn, register, to });
    if mode == Mode::CloseAfterRegister {
        let _ = ws.close(None).await;
        return;
    }
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    let serving = matches!(mode, Mode::Normal | Mode::CloseWhenDropped);
    let mut ops_open = true;
    loop {
        tokio::select! {
            _ = beat.tick(), if serving => {
                if ws.send(send(&ScalerMsg::Heartbeat)).await.is_err() {
                    return;
                }
            }
            op = ops.recv(), if serving && ops_open => match op {
                Some(op) => {
                    if ws.send(send(&op)).await.is_err() {
                        return;
                    }
                }
                None if mode == Mode::CloseWhenDropped => {
                    let _ = ws.close(None).await;
                    return;
                }
                // The test keeps no sender: go on with heartbeats.
                None => ops_open = false,
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let msg = serde_json::from_str::<NodeMsg>(t.as_str())
                        .expect("the node sends valid link messages");
                    let _ = seen.send(match msg {
                        NodeMsg::Load(load) => Seen::Load { conn, load },
                        NodeMsg::Result { req, result } => Seen::Result { conn, req, result },
                        NodeMsg::Event { event } => Seen::Event { conn, event },
                        NodeMsg::Register(_) => panic!("the node registered twice"),
                    });
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

impl FakeScaler {
    /// The first message matching `pick`, within [`BOUND`]; earlier ones are dropped.
    pub async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(Seen) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(s)) => {
                    if let Some(t) = pick(s) {
                        return t;
                    }
                }
                Ok(None) => panic!("the fake scaler ended while waiting for {what}"),
                Err(_) => panic!("no {what} within {BOUND:?}"),
            }
        }
    }

    pub async fn registered(&mut self) -> (usize, Register, mpsc::UnboundedSender<ScalerMsg>) {
        self.expect("registration", |s| match s {
            Seen::Registered { conn, register, to } => Some((conn, register, to)),
            _ => None,
        })
        .await
    }
}
