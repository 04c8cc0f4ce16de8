//! A test controller: a real WebSocket client of the node's call-control listener.

use futures_util::{SinkExt, StreamExt};
use scnf_core::control::msg::{self, MediaOffer, ServerMsg};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How long a test waits for an expected message.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct Ctl {
    ws: WebSocketStream<Box<dyn Io>>,
    /// Received and not yet taken by [`Ctl::wait`].
    pending: VecDeque<ServerMsg>,
    /// Everything received, in order.
    pub seen: Vec<ServerMsg>,
}

impl Ctl {
    pub async fn connect(addr: SocketAddr) -> Ctl {
        let tcp = TcpStream::connect(addr).await.expect("connect to control");
        Ctl::over(Box::new(tcp), &format!("ws://{addr}/")).await
    }

    pub async fn connect_tls(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> Ctl {
        let tcp = TcpStream::connect(addr).await.expect("connect to control");
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .expect("tls handshake");
        Ctl::over(Box::new(tls), &format!("wss://localhost:{}/", addr.port())).await
    }

    async fn over(io: Box<dyn Io>, url: &str) -> Ctl {
        let (ws, _) = tokio_tungstenite::client_async(url, io)
            .await
            .expect("websocket handshake");
        Ctl {
            ws,
            pending: VecDeque::new(),
            seen: Vec::new(),
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.send_raw(&v.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_string().into()))
            .await
            .expect("send to control");
    }

    pub async fn send_message(&mut self, m: Message) -> Result<(), String> {
        self.ws.send(m).await.map_err(|e| e.to_string())
    }

    /// Reads one message (or `None` on timeout or close).
    async fn read(&mut self, timeout: Duration) -> Option<ServerMsg> {
        loop {
            let frame = tokio::time::timeout(timeout, self.ws.next()).await.ok()??;
            match frame {
                Ok(Message::Text(text)) => {
                    let (m, _) = msg::parse_server(&text)
                        .unwrap_or_else(|e| panic!("node sent unparseable {text}: {e}"));
                    self.seen.push(m.clone());
                    return Some(m);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Waits for the first message matching `pred` (earlier unmatched ones stay
    /// pending for later waits). Panics after [`WAIT`] with what did arrive.
    pub async fn wait(&mut self, what: &str, pred: impl Fn(&ServerMsg) -> bool) -> ServerMsg {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).expect("index from position");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                Some(m) if pred(&m) => return m,
                Some(m) => self.pending.push_back(m),
                None => panic!("no {what} within {WAIT:?}; pending: {:#?}", self.pending),
            }
        }
    }

    /// Whether a message matching `pred` arrives within `within` (it stays pending).
    pub async fn arrives(&mut self, within: Duration, pred: impl Fn(&ServerMsg) -> bool) -> bool {
        if self.pending.iter().any(&pred) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                Some(m) => {
                    let hit = pred(&m);
                    self.pending.push_back(m);
                    if hit {
                        return true;
                    }
                }
                None => return false,
            }
        }
    }

    /// Whether the node closes the connection within `within` (messages before the
    /// close are kept).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Waits for the answer to a request of this call: Connect, Alerting, Release or
    /// Error.
    pub async fn outcome(&mut self, call: &str) -> ServerMsg {
        let call = call.to_string();
        self.wait("call outcome", move |m| match m {
            ServerMsg::Connect { call: c, .. }
            | ServerMsg::Alerting { call: c, .. }
            | ServerMsg::Release { call: c, .. } => *c == call,
            ServerMsg::Error { call: Some(c), .. } => *c == call,
            _ => false,
        })
        .await
    }

    pub async fn setup(&mut self, call: &str, called: &str, complete: bool, offer: &MediaOffer) {
        self.send(json!({"mt": "Setup", "call": call, "called": called,
                         "complete": complete, "media": offer}))
            .await;
    }

    /// Places a call and returns its outcome.
    pub async fn dial(
        &mut self,
        call: &str,
        called: &str,
        complete: bool,
        offer: &MediaOffer,
    ) -> ServerMsg {
        self.setup(call, called, complete, offer).await;
        self.outcome(call).await
    }

    /// Logs in with `secret`; returns the AppLoginResult.
    pub async fn login(&mut self, name: &str, secret: &[u8]) -> ServerMsg {
        self.send(json!({"mt": "AppChallenge"})).await;
        // A locked-out peer is refused at the challenge already.
        let challenge = match self
            .wait("AppChallengeResult", |m| {
                matches!(
                    m,
                    ServerMsg::AppChallengeResult { .. } | ServerMsg::AppLoginResult { .. }
                )
            })
            .await
        {
            ServerMsg::AppChallengeResult { challenge, .. } => challenge,
            refused => return refused,
        };
        let cnonce = "c0ffee";
        let digest =
            scnf_core::control::auth::client_digest(secret, name, &challenge, cnonce, "test");
        self.send(json!({"mt": "AppLogin", "name": name, "cnonce": cnonce,
                         "info": "test", "digest": digest}))
            .await;
        let result = self
            .wait("AppLoginResult", |m| {
                matches!(m, ServerMsg::AppLoginResult { .. })
            })
            .await;
        if let ServerMsg::AppLoginResult {
            ok: true,
            proof: Some(proof),
            ..
        } = &result
        {
            assert!(
                scnf_core::control::auth::verify_proof(
                    secret, name, &challenge, cnonce, "test", &digest, proof
                ),
                "the node's proof does not verify"
            );
        }
        result
    }

    pub async fn status(&mut self) -> ServerMsg {
        self.send(json!({"mt": "Status"})).await;
        self.wait("StatusResult", |m| {
            matches!(m, ServerMsg::StatusResult { .. })
        })
        .await
    }

    pub async fn health(&mut self) -> ServerMsg {
        self.send(json!({"mt": "Health"})).await;
        self.wait("HealthResult", |m| {
            matches!(m, ServerMsg::HealthResult { .. })
        })
        .await
    }
}

/// The local media address in a Connect or Alerting answer.
pub fn answer_addr(m: &ServerMsg) -> SocketAddr {
    match m {
        ServerMsg::Connect { answer, .. } | ServerMsg::Alerting { answer, .. } => {
            SocketAddr::new(answer.address, answer.port)
        }
        other => panic!("not an answer: {other:?}"),
    }
}
