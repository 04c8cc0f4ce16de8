//! One connection to the scaler: dial, log in, register, serve until it ends.
//!
//! While serving, one loop reads the scaler's frames, the workers' answers, the
//! node's events and two timers (the heartbeat and the scaler's silence). Frames
//! out go through a bounded queue to a writer task, so a scaler that stops reading
//! blocks nothing here: a full queue drops the connection ("not reading"), and the
//! silence timer keeps running whatever the socket does.

use super::answers::Answers;
use super::placed::Placed;
use super::{stopped, LinkConfig, LinkState};
use crate::NodeHandle;
use futures_util::{SinkExt, StreamExt};
use scnf_core::cluster::link::{
    self, event_is_cluster, op_allowed, op_ids, Held, NodeMsg, Register, ScalerMsg, HEARTBEAT,
    LINK_VERSION, SILENCE,
};
use scnf_core::control::login::{ClientLoginError, ClientStep, LoginClient, ServerAuth};
use scnf_core::control::msg::{parse_server, ClientMsg, ServerMsg};
use scnf_core::engine::{MediaOp, MediaResult, WorkerStats};
use scnf_core::session::ReqId;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// TCP, TLS and WebSocket handshakes together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Each answer of the login and the registration.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames queued towards the scaler; beyond it the scaler is not reading.
const OUT_QUEUE: usize = 8192;

/// Largest frame the scaler may send (its ops are small; this bounds what a
/// hostile endpoint can make the node buffer before the login).
const MAX_FRAME: usize = 1 << 20;

/// How long a closing link waits for its close frame to go out.
const CLOSE_BOUND: Duration = Duration::from_secs(1);

/// What `AppLogin.info` says.
const INFO: &str = concat!("scnf-node/", env!("CARGO_PKG_VERSION"));

/// How one connection ended.
pub(super) enum Outcome {
    /// The link was asked to stop.
    Stopped,
    /// The scaler refused us, or could not prove the secret; `reason` is the one
    /// error line the operator reads.
    Refused { reason: String },
    /// The connection, login or registration failed (unreachable, broken, timeout).
    Failed { reason: String },
    /// A registered connection ended after `lived`.
    Lost { reason: String, lived: Duration },
}

/// A byte stream a WebSocket can run over (TCP, or TLS over TCP).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Ws = WebSocketStream<Box<dyn Io>>;

/// Runs attempt `attempt` to its end.
pub(super) async fn run(
    node: &NodeHandle,
    cfg: &LinkConfig,
    attempt: u64,
    state: &watch::Sender<LinkState>,
    stop: &mut watch::Receiver<bool>,
    placed: &mut Placed,
) -> Outcome {
    let setup = async {
        let mut ws = dial(cfg)
            .await
            .map_err(|reason| Outcome::Failed { reason })?;
        login(&mut ws, cfg).await?;
        register(&mut ws, node, cfg, placed.holds()).await?;
        Ok::<Ws, Outcome>(ws)
    };
    let ws = tokio::select! {
        r = setup => match r {
            Ok(ws) => ws,
            Err(outcome) => return outcome,
        },
        _ = stopped(stop) => return Outcome::Stopped,
    };
    tracing::info!(scaler = %cfg.url.text, name = %cfg.name, attempt, held = placed.len(), "registered to the scaler");
    state.send_replace(LinkState::Registered {
        name: cfg.name.clone(),
        attempt,
    });
    serve(ws, node, cfg, stop, placed).await
}

/// TCP (and TLS for wss), then the WebSocket handshake.
async fn dial(cfg: &LinkConfig) -> Result<Ws, String> {
    let url = &cfg.url;
    let work = async {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("connect to {}:{}: {e}", url.host, url.port))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &cfg.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                    .map_err(|_| format!("{:?} is not a TLS server name", url.host))?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", url.host))?;
                Box::new(stream)
            }
        };
        let ws_cfg = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME))
            .max_frame_size(Some(MAX_FRAME));
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url.text.as_str(), io, Some(ws_cfg))
                .await
                .map_err(|e| format!("websocket handshake: {e}"))?;
        Ok(ws)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()))?
}

/// The next text frame, within [`ANSWER_TIMEOUT`]; `what` names the wait.
async fn next_text(ws: &mut Ws, what: &str) -> Result<String, Outcome> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| failed(format!("no {what} within {} s", ANSWER_TIMEOUT.as_secs())))?;
        match frame {
            None | Some(Ok(Message::Close(_))) => {
                return Err(failed(format!(
                    "the scaler closed the connection before {what}"
                )))
            }
            Some(Err(e)) => return Err(failed(format!("websocket, waiting for {what}: {e}"))),
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(_)) => {} // pings, pongs, binary: not an answer
        }
    }
}

fn failed(reason: String) -> Outcome {
    Outcome::Failed { reason }
}

async fn send_text(ws: &mut Ws, text: String) -> Result<(), Outcome> {
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| failed(format!("websocket send: {e}")))
}

/// The HMAC challenge login as the client; the scaler must prove the secret back.
async fn login(ws: &mut Ws, cfg: &LinkConfig) -> Result<(), Outcome> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| failed(format!("no OS randomness: {e}")))?;
    let cnonce = scnf_core::control::hex::encode(&nonce);
    let mut client = LoginClient::new(&cfg.name, &cfg.secret, INFO);
    let mut request: ClientMsg = client.start();
    loop {
        let text = serde_json::to_string(&request).expect("client messages always serialise");
        send_text(ws, text).await?;
        let answer = next_text(ws, "login answer").await?;
        let answer: ServerMsg = match parse_server(&answer) {
            Ok((msg, _)) => msg,
            Err(e) => return Err(failed(format!("the scaler's login answer: {e}"))),
        };
        match client.handle(&answer, &cnonce) {
            ClientStep::Send(next) => request = next,
            ClientStep::Done(Ok(ServerAuth::Proven)) => return Ok(()),
            ClientStep::Done(Ok(ServerAuth::Open))
            | ClientStep::Done(Err(ClientLoginError::BadProof)) => {
                return Err(Outcome::Refused {
                    reason: "scaler could not prove the cluster secret (wrong secret there, \
                             or not our scaler)"
                        .into(),
                });
            }
            ClientStep::Done(Err(ClientLoginError::Refused { error })) => {
                return Err(Outcome::Refused {
                    reason: format!("scaler refused our login (wrong cluster secret?): {error}"),
                });
            }
            ClientStep::Done(Err(e @ ClientLoginError::Unexpected { .. })) => {
                return Err(failed(format!("login: {e}")));
            }
        }
    }
}

/// Sends the registration and waits for the scaler's verdict.
async fn register(
    ws: &mut Ws,
    node: &NodeHandle,
    cfg: &LinkConfig,
    holds: Vec<Held>,
) -> Result<(), Outcome> {
    let register = NodeMsg::Register(Register {
        name: cfg.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        link_version: LINK_VERSION,
        workers: node.workers(),
        channels: cfg.channels,
        local: local(cfg),
        holds,
    });
    send_text(ws, register.to_json()).await?;
    loop {
        let text = next_text(ws, "registration answer").await?;
        match serde_json::from_str::<ScalerMsg>(&text) {
            Ok(ScalerMsg::Registered { ok: true, .. }) => return Ok(()),
            Ok(ScalerMsg::Registered { ok: false, error }) => {
                let error = error.unwrap_or_else(|| "no reason given".into());
                return Err(Outcome::Refused {
                    reason: format!("scaler refused our registration as {}: {error}", cfg.name),
                });
            }
            Ok(ScalerMsg::Heartbeat) => {}
            Ok(ScalerMsg::Op { .. } | ScalerMsg::Keep(_)) => {
                return Err(failed(
                    "the scaler sent an op or state before registering us".into(),
                ))
            }
            Err(e) => return Err(failed(format!("the scaler's registration answer: {e}"))),
        }
    }
}

fn local(cfg: &LinkConfig) -> u32 {
    cfg.local.as_ref().map_or(0, |w| *w.borrow())
}

/// The frames queued towards the scaler.
struct Out {
    tx: mpsc::Sender<Message>,
}

impl Out {
    /// Queues `msg`; `Err` when the connection must go (the scaler does not read,
    /// or the writer is gone).
    fn send(&self, msg: &NodeMsg) -> Result<(), String> {
        match self.tx.try_send(Message::Text(msg.to_json().into())) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(format!(
                "the scaler is not reading ({OUT_QUEUE} frames queued)"
            )),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err("the connection to the scaler broke (send)".into())
            }
        }
    }

    fn results(&self, out: &mut Vec<(u64, MediaResult)>) -> Result<(), String> {
        for (req, result) in out.drain(..) {
            self.send(&NodeMsg::Result { req, result })?;
        }
        Ok(())
    }
}

/// Serves a registered connection until it ends.
async fn serve(
    ws: Ws,
    node: &NodeHandle,
    cfg: &LinkConfig,
    stop: &mut watch::Receiver<bool>,
    placed: &mut Placed,
) -> Outcome {
    let since = Instant::now();
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        // The queue ended: the link closes (a close frame, then the TCP end).
        let _ = sink.close().await;
    });
    let out = Out { tx };
    let mut state = Serving::new(node, cfg, placed);
    let silence = tokio::time::sleep(SILENCE);
    tokio::pin!(silence);
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (loads_tx, mut loads) = mpsc::channel::<Vec<WorkerStats>>(1);
    let (results_tx, mut results) = mpsc::unbounded_channel::<(ReqId, MediaResult)>();
    let mut events = node.subscribe();
    let mut events_open = true;
    let mut ready = Vec::new();
    let ended: Result<(), String> = loop {
        // Unbiased: a scaler that floods frames cannot starve the answers, the events
        // or the timers.
        let step: Result<(), String> = tokio::select! {
            _ = stopped(stop) => {
                // A close frame from the writer, bounded; then the node goes on.
                drop(out);
                let _ = tokio::time::timeout(CLOSE_BOUND, writer).await;
                return Outcome::Stopped;
            }
            _ = &mut silence => Err(format!(
                "nothing from the scaler for {} s", SILENCE.as_secs()
            )),
            frame = stream.next() => match frame {
                None => Err("the scaler closed the connection".into()),
                Some(Err(e)) => Err(format!("websocket: {e}")),
                Some(Ok(Message::Close(_))) => Err("the scaler closed the connection".into()),
                Some(Ok(m)) => {
                    silence.as_mut().reset(Instant::now() + SILENCE);
                    match m {
                        Message::Text(t) => {
                            state.frame(t.as_str(), &results_tx, &mut ready);
                            out.results(&mut ready)
                        }
                        Message::Binary(_) => {
                            state.bad_frame("a binary frame");
                            Ok(())
                        }
                        _ => Ok(()), // ping/pong: tungstenite answers pings itself
                    }
                }
            },
            Some((id, result)) = results.recv() => {
                state.answers.completed(id, result, &mut ready);
                out.results(&mut ready)
            }
            ev = events.recv(), if events_open => match ev {
                Ok(event) if event_is_cluster(&event) => out.send(&NodeMsg::Event { event }),
                Ok(_) => Ok(()),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    state.events_lost += n;
                    tracing::warn!(
                        lost = n, total = state.events_lost,
                        "scaler link fell behind the node's events; some were not forwarded"
                    );
                    Ok(())
                }
                Err(broadcast::error::RecvError::Closed) => {
                    events_open = false;
                    Ok(())
                }
            },
            _ = beat.tick() => state.heartbeat(&loads_tx, &out),
            Some(workers) = loads.recv() => state.loaded(workers, &out),
        };
        if let Err(reason) = step {
            break Err(reason);
        }
    };
    writer.abort();
    let reason = ended.err().unwrap_or_default();
    Outcome::Lost {
        reason,
        lived: since.elapsed(),
    }
}

/// The per-connection state of a registered link (what the loop's arms share).
struct Serving<'a> {
    node: &'a NodeHandle,
    cfg: &'a LinkConfig,
    placed: &'a mut Placed,
    workers: usize,
    answers: Answers,
    /// The workers' last counters, for a heartbeat that cannot wait for fresh ones.
    last_stats: Vec<WorkerStats>,
    /// A stats round is running.
    fetching: bool,
    /// A heartbeat is owed as soon as the running round answers.
    owed: bool,
    bad_frames: u64,
    refused_ops: u64,
    events_lost: u64,
}

impl<'a> Serving<'a> {
    fn new(node: &'a NodeHandle, cfg: &'a LinkConfig, placed: &'a mut Placed) -> Serving<'a> {
        let workers = node.workers().len();
        Serving {
            node,
            cfg,
            placed,
            workers,
            answers: Answers::new(workers),
            last_stats: Vec::new(),
            fetching: false,
            owed: false,
            bad_frames: 0,
            refused_ops: 0,
            events_lost: 0,
        }
    }

    /// One text frame from the scaler.
    fn frame(
        &mut self,
        text: &str,
        results: &mpsc::UnboundedSender<(ReqId, MediaResult)>,
        ready: &mut Vec<(u64, MediaResult)>,
    ) {
        match serde_json::from_str::<ScalerMsg>(text) {
            Ok(ScalerMsg::Op { req, worker, op }) => self.op(req, worker, op, results, ready),
            Ok(ScalerMsg::Keep(keep)) => {
                if !self.placed.keep(keep) {
                    self.bad_frame("state to keep for a room or leg it did not place");
                }
            }
            Ok(ScalerMsg::Heartbeat) | Ok(ScalerMsg::Registered { .. }) => {}
            Err(e) => self.bad_frame(&format!("an unreadable message ({e})")),
        }
    }

    /// A scaler op: checked, then pipelined to its worker (never awaited here).
    fn op(
        &mut self,
        req: u64,
        worker: usize,
        op: MediaOp,
        results: &mpsc::UnboundedSender<(ReqId, MediaResult)>,
        ready: &mut Vec<(u64, MediaResult)>,
    ) {
        if !op_allowed(&op) {
            self.refused_ops += 1;
            let reason = not_cluster(&op);
            tracing::warn!(req, worker, %reason, total = self.refused_ops, "scaler op refused");
            self.answers
                .answered_here(worker, req, MediaResult::Failed(reason), ready);
            return;
        }
        if worker >= self.workers {
            let reason = format!("no worker {worker} (this node has {})", self.workers);
            self.answers
                .answered_here(worker, req, MediaResult::Failed(reason), ready);
            return;
        }
        self.placed.note(worker, &op);
        let id = self.answers.submitted(worker, req);
        if let Err(e) = self.node.submit(worker, id, op, results) {
            self.answers
                .completed(id, MediaResult::Failed(e.to_string()), ready);
        }
    }

    fn bad_frame(&mut self, what: &str) {
        self.bad_frames += 1;
        // One line for the first and then at each power of two: a scaler bug is
        // visible without flooding the log.
        if self.bad_frames.is_power_of_two() {
            tracing::warn!(total = self.bad_frames, "scaler sent {what}; dropped");
        }
    }

    /// The heartbeat tick: a fresh stats round, and a Load now if one is already
    /// running (the heartbeat never waits for a slow worker).
    fn heartbeat(
        &mut self,
        loads: &mpsc::Sender<Vec<WorkerStats>>,
        out: &Out,
    ) -> Result<(), String> {
        if self.fetching {
            return out.send(&self.load());
        }
        self.fetching = true;
        self.owed = true;
        let node = self.node.clone();
        let loads = loads.clone();
        tokio::spawn(async move {
            let stats = match node.stats().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "worker statistics for the scaler");
                    Vec::new()
                }
            };
            let _ = loads.send(stats).await;
        });
        Ok(())
    }

    /// A stats round answered.
    fn loaded(&mut self, workers: Vec<WorkerStats>, out: &Out) -> Result<(), String> {
        self.fetching = false;
        if !workers.is_empty() {
            self.last_stats = workers;
        }
        if std::mem::take(&mut self.owed) {
            out.send(&self.load())?;
        }
        Ok(())
    }

    fn load(&self) -> NodeMsg {
        NodeMsg::Load(link::Load {
            local: local(self.cfg),
            workers: self.last_stats.clone(),
        })
    }
}

/// The refusal of an op that names an id without the cluster bit.
fn not_cluster(op: &MediaOp) -> String {
    let (mix, leg) = op_ids(op);
    let id = match (mix, leg) {
        (Some(m), _) if !scnf_core::cluster::is_cluster_id(m) => format!("mix {m}"),
        (_, Some(l)) => format!("leg {l}"),
        _ => "an id".into(),
    };
    format!("{}: {id} is not a cluster id", op.name())
}
