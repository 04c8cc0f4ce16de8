//! The scaler over real sockets on loopback: controllers log in to its control face
//! as to a node, nodes dial in to its node face. The node here is a fake: a
//! WebSocket client that logs in with the core's `LoginClient`, registers one
//! worker, and answers every operation `Done` (a snapshot with an empty snapshot),
//! keeping what it was asked for. Every wait is for an event, with a deadline.

mod common;

use common::{plain, Process};
use futures_util::{SinkExt, StreamExt};
use scnf::scaler::{self, ScalerConfig, ScalerHandle};
use scnf_core::cluster::is_cluster_id;
use scnf_core::cluster::link::{self, Load, NodeMsg, Register, ScalerMsg};
use scnf_core::control::login::{ClientStep, LoginClient, ServerAuth};
use scnf_core::control::msg::{self, CodecDesc, MediaOffer};
use scnf_core::engine::{MediaOp, MediaResult};
use scnf_core::session::WorkerAddrs;
use scnf_testkit::client::{CallAnswer, Client};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const SECRET: &str = "cluster-secret";
/// Bound on every wait.
const WAIT: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<TcpStream>;

/// A byte stream the fake node's WebSocket runs over (TCP, or TLS over TCP).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Io for T {}

/// A secret file with the editor's trailing newline (not part of the secret).
fn secret_file(test: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("scnf-scaler-{test}-{}", std::process::id()));
    std::fs::write(&path, format!("{SECRET}\n")).expect("writes the secret");
    path
}

/// A scaler on OS-chosen loopback ports, with `SECRET` for both faces.
async fn scaler(test: &str) -> ScalerHandle {
    let cfg = ScalerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        nodes_listen: "127.0.0.1:0".parse().unwrap(),
        password_file: Some(secret_file(test)),
        ..ScalerConfig::default()
    };
    scaler::start(&cfg).await.expect("the scaler starts")
}

async fn controller(s: &ScalerHandle) -> Client {
    let mut c = Client::connect(s.control).await.expect("connects");
    c.login("pbx", SECRET.as_bytes())
        .await
        .expect("logs in, and the scaler proves the secret");
    c
}

async fn dial(addr: SocketAddr) -> Ws {
    let tcp = TcpStream::connect(addr).await.expect("connects");
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .expect("WebSocket handshake");
    ws
}

/// The next text frame; `None` when the scaler closed the connection (or sent
/// nothing within [`WAIT`]).
async fn next_text<S: Io>(ws: &mut WebSocketStream<S>) -> Option<String> {
    loop {
        match timeout(WAIT, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

async fn send<S: Io>(ws: &mut WebSocketStream<S>, text: String) {
    ws.send(Message::Text(text.into())).await.expect("sends");
}

/// The node's side of the login: `Ok` once the scaler proved the secret too,
/// `Err` with why it failed (refused, or the connection closed).
async fn log_in<S: Io>(ws: &mut WebSocketStream<S>, secret: &[u8]) -> Result<(), String> {
    let mut login = LoginClient::new("fake-node", secret, "fake-node/1");
    let mut request = login.start();
    loop {
        send(ws, serde_json::to_string(&request).unwrap()).await;
        let text = next_text(ws).await.ok_or("closed during the login")?;
        let (answer, _) = msg::parse_server(&text).map_err(|e| format!("{e}: {text}"))?;
        match login.handle(&answer, "00112233445566778899aabbccddeeff") {
            ClientStep::Send(next) => request = next,
            ClientStep::Done(Ok(ServerAuth::Proven)) => return Ok(()),
            ClientStep::Done(Ok(ServerAuth::Open)) => return Err("no proof".into()),
            ClientStep::Done(Err(e)) => return Err(e.to_string()),
        }
    }
}

/// Where the fake node's one worker receives (nothing listens: no media flows here).
fn worker() -> WorkerAddrs {
    WorkerAddrs {
        rtp: "127.0.0.1:31000".parse().unwrap(),
        rtcp: "127.0.0.1:31001".parse().unwrap(),
    }
}

/// Registers as `name` with `channels`; returns the scaler's verdict.
async fn register<S: Io>(
    ws: &mut WebSocketStream<S>,
    name: &str,
    channels: u32,
) -> Result<(), String> {
    let reg = NodeMsg::Register(Register {
        name: name.into(),
        version: "test".into(),
        link_version: link::LINK_VERSION,
        workers: vec![worker()],
        channels,
        local: 0,
        holds: Vec::new(),
    });
    send(ws, reg.to_json()).await;
    loop {
        let text = next_text(ws).await.ok_or("closed before Registered")?;
        match serde_json::from_str::<ScalerMsg>(&text) {
            Ok(ScalerMsg::Registered { ok: true, .. }) => return Ok(()),
            Ok(ScalerMsg::Registered { error, .. }) => return Err(error.unwrap_or_default()),
            _ => continue, // heartbeats
        }
    }
}

/// A registered fake node: what it was asked, in order.
struct FakeNode {
    ops: mpsc::UnboundedReceiver<(usize, MediaOp)>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeNode {
    async fn start(s: &ScalerHandle, name: &str, channels: u32) -> FakeNode {
        let mut ws = dial(s.nodes).await;
        log_in(&mut ws, SECRET.as_bytes())
            .await
            .expect("the right secret logs in");
        register(&mut ws, name, channels).await.expect("registered");
        let (tx, ops) = mpsc::unbounded_channel();
        let task = tokio::spawn(answer_ops(ws, tx));
        FakeNode { ops, task }
    }

    /// The next operation the scaler asked for.
    async fn next_op(&mut self) -> (usize, MediaOp) {
        timeout(WAIT, self.ops.recv())
            .await
            .expect("an operation within the bound")
            .expect("the fake node still runs")
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers every operation `Done` (snapshots with an empty one) and keeps its
/// heartbeat, until the scaler closes the connection.
async fn answer_ops(mut ws: Ws, ops: mpsc::UnboundedSender<(usize, MediaOp)>) {
    let mut beat = tokio::time::interval(link::HEARTBEAT);
    loop {
        tokio::select! {
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                };
                if let Ok(ScalerMsg::Op { req, worker, op }) = serde_json::from_str(&text) {
                    let result = match op {
                        MediaOp::Snapshot { .. } => MediaResult::Snapshot(Default::default()),
                        _ => MediaResult::Done,
                    };
                    let _ = ops.send((worker, op));
                    let answer = NodeMsg::Result { req, result }.to_json();
                    if ws.send(Message::Text(answer.into())).await.is_err() {
                        return;
                    }
                }
            }
            _ = beat.tick() => {
                let load = NodeMsg::Load(Load::default()).to_json();
                if ws.send(Message::Text(load.into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Asks `Health` until the cluster offers `capacity` channels (bounded).
async fn wait_for_capacity(c: &mut Client, capacity: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let h = c.health().await.expect("Health answered");
        if h.channels.capacity == capacity {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "capacity still {} (want {capacity})",
            h.channels.capacity
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn offer() -> MediaOffer {
    MediaOffer::plain("127.0.0.1:31500".parse().unwrap(), CodecDesc::pcmu())
}

#[tokio::test]
async fn the_control_face_answers_health_as_a_node_with_no_channels_before_any_node() {
    let s = scaler("health").await;
    let mut c = controller(&s).await;
    let h = c.health().await.expect("Health answered");
    assert_eq!(h.channels.capacity, 0, "{h:?}");
    assert_eq!((h.rooms, h.legs), (0, 0));
    assert_eq!(h.workers.len(), 1, "one virtual worker: {h:?}");
    // A controller without the secret is refused, as by a node.
    let mut wrong = Client::connect(s.control).await.expect("connects");
    assert!(wrong.login("pbx", b"guess").await.is_err());
    assert!(s.shutdown(WAIT).await);
}

#[tokio::test]
async fn with_no_node_registered_a_setup_is_released_with_cause_34() {
    let s = scaler("empty").await;
    let mut c = controller(&s).await;
    let answer = c
        .setup("c1", "*24242#", true, &offer())
        .await
        .expect("answered");
    assert!(
        matches!(answer, CallAnswer::Release { cause: 34, .. }),
        "{answer:?}"
    );
    assert!(s.shutdown(WAIT).await);
}

#[tokio::test]
async fn a_node_with_the_wrong_secret_is_refused_and_one_with_the_right_secret_registers() {
    let s = scaler("login").await;
    let mut ws = dial(s.nodes).await;
    let refused = log_in(&mut ws, b"not-the-cluster-secret").await;
    assert!(refused.is_err(), "the wrong secret logged in");
    let stats = s.stats().await.expect("the planner runs");
    assert_eq!(stats.logins_refused, 1, "{stats:?}");
    assert_eq!(stats.nodes, 0);

    let _node = FakeNode::start(&s, "scnf-08-03-01-1", 100).await;
    assert_eq!(s.stats().await.expect("the planner runs").nodes, 1);
    // The cluster's channels reach the conference core.
    let mut c = controller(&s).await;
    wait_for_capacity(&mut c, 100).await;
    assert!(s.shutdown(WAIT).await);
}

#[tokio::test]
async fn a_setup_through_the_scaler_reaches_the_node_and_connects_to_its_worker() {
    let s = scaler("setup").await;
    let mut node = FakeNode::start(&s, "scnf-08-03-01-1", 100).await;
    let mut c = controller(&s).await;
    wait_for_capacity(&mut c, 100).await;
    let answer = c
        .setup("c1", "*24242#", true, &offer())
        .await
        .expect("answered");
    assert!(matches!(answer, CallAnswer::Connect { .. }), "{answer:?}");
    assert_eq!(
        answer.media_addr(),
        Some(worker().rtp),
        "the caller sends to the node's worker"
    );
    // The node was asked to open the room and add the caller's leg, in that order,
    // with ids in the cluster's namespace (snapshots of Health polls aside).
    let mut asked = Vec::new();
    while asked.len() < 2 {
        let (worker, op) = node.next_op().await;
        if matches!(op, MediaOp::Snapshot { .. }) {
            continue;
        }
        assert_eq!(worker, 0);
        asked.push(op);
    }
    let MediaOp::OpenRoom { mix } = &asked[0] else {
        panic!("first OpenRoom: {asked:?}");
    };
    let MediaOp::AddLeg { mix: on, leg, .. } = &asked[1] else {
        panic!("then AddLeg: {asked:?}");
    };
    assert_eq!(mix, on);
    assert!(is_cluster_id(mix.0) && is_cluster_id(leg.0), "{asked:?}");
    // Releasing it takes the leg (and with the last member, the room) away on the
    // node.
    c.release("c1", None).await.expect("released");
    loop {
        match node.next_op().await.1 {
            MediaOp::RemoveLeg { leg: gone } if &gone == leg => break,
            MediaOp::CloseRoom { mix: gone } if &gone == mix => break,
            MediaOp::Snapshot { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(s.shutdown(WAIT).await);
}

#[tokio::test]
async fn stopping_the_scaler_releases_its_calls_with_cause_41_and_their_legs_on_the_node() {
    let s = scaler("stop").await;
    let mut node = FakeNode::start(&s, "scnf-08-03-01-2", 100).await;
    let mut c = controller(&s).await;
    wait_for_capacity(&mut c, 100).await;
    let answer = c
        .setup("c1", "*24243#", true, &offer())
        .await
        .expect("answered");
    assert!(matches!(answer, CallAnswer::Connect { .. }), "{answer:?}");
    let leg = loop {
        if let (_, MediaOp::AddLeg { leg, .. }) = node.next_op().await {
            break leg;
        }
    };
    let stopping = tokio::spawn(s.shutdown(WAIT));
    let release = c
        .wait_for("Release", |m| matches!(m, msg::ServerMsg::Release { .. }))
        .await
        .expect("the controller is told");
    assert!(
        matches!(&release, msg::ServerMsg::Release { call, cause: 41, .. } if call == "c1"),
        "{release:?}"
    );
    loop {
        match node.next_op().await.1 {
            MediaOp::RemoveLeg { leg: gone } if gone == leg => break,
            MediaOp::Snapshot { .. } | MediaOp::CloseRoom { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        stopping.await.unwrap(),
        "everything released within the bound"
    );
}

#[tokio::test]
async fn both_faces_speak_wss_when_given_a_certificate() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("scnf-scaler-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, pem) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&pem, key.signing_key.serialize_pem()).unwrap();
    let cfg = ScalerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        nodes_listen: "127.0.0.1:0".parse().unwrap(),
        password_file: Some(secret_file("wss")),
        tls_cert: Some(cert.clone()),
        tls_key: Some(pem.clone()),
        nodes_tls_cert: Some(cert),
        nodes_tls_key: Some(pem),
        ..ScalerConfig::default()
    };
    let s = scaler::start(&cfg).await.expect("the scaler starts");
    assert!(s.control_tls && s.nodes_tls);
    let trust = scnf::tls::client_config_trusting(key.cert.der()).unwrap();

    let tcp = TcpStream::connect(s.nodes).await.expect("connects");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(trust.clone())
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let url = format!("wss://localhost:{}/", s.nodes.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket handshake");
    log_in(&mut ws, SECRET.as_bytes()).await.expect("logs in");
    register(&mut ws, "scnf-wss-1", 10)
        .await
        .expect("registered");

    let mut c = Client::connect_tls(s.control, "localhost", trust)
        .await
        .expect("connects over wss");
    c.login("pbx", SECRET.as_bytes()).await.expect("logs in");
    wait_for_capacity(&mut c, 10).await;
    assert!(s.shutdown(WAIT).await);
}

/// The whole chain with a real node: `scnf node --scaler`'s link registers, a call
/// placed through the scaler connects to that node's worker, and the node's mix
/// reaches the caller from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_node_registers_and_a_call_through_the_scaler_gets_its_media_from_it() {
    use scnf::scaler_link::{self, LinkConfig};
    let s = scaler("real").await;
    let mut cfg = scnf::config::Config::default();
    cfg.rtp.workers = 1;
    cfg.rtp.port_min = 31_100;
    cfg.rtp.port_max = 31_199;
    let node = scnf::NodeHandle::start(&cfg).expect("the node starts");
    let url = scnf::config::scaler::parse_scaler_url(&format!("ws://{}", s.nodes)).unwrap();
    let link = scaler_link::spawn(
        node.clone(),
        LinkConfig {
            url,
            secret: SECRET.as_bytes().to_vec(),
            name: "scnf-real-1".into(),
            channels: 50,
            tls: None,
            local: None,
            seed: 1,
        },
    );
    let mut state = link.registered();
    timeout(WAIT, state.wait_for(|s| s.is_registered()))
        .await
        .expect("registered within the bound")
        .expect("the link runs");
    let mut c = controller(&s).await;
    wait_for_capacity(&mut c, 50).await;

    let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = MediaOffer {
        rtcp_mux: true,
        ..MediaOffer::plain(phone.local_addr().unwrap(), CodecDesc::pcmu())
    };
    let answer = c
        .setup("c1", "*24245#", true, &offer)
        .await
        .expect("answered");
    assert!(matches!(answer, CallAnswer::Connect { .. }), "{answer:?}");
    let worker = node.worker_addresses()[0];
    assert_eq!(answer.media_addr(), Some(worker));
    let mut buf = [0u8; 1500];
    let from = timeout(WAIT, async {
        loop {
            let (n, from) = phone.recv_from(&mut buf).await.expect("receives");
            if scnf_media::rtp::RtpPacket::parse(&buf[..n]).is_ok() {
                return from;
            }
        }
    })
    .await
    .expect("the node's mix arrives");
    assert_eq!(from, worker);

    c.release("c1", None).await.expect("released");
    assert!(s.shutdown(WAIT).await);
    link.close(WAIT).await;
    node.shutdown();
}

/// The scaler's log lines, as they come.
struct Log(std::sync::mpsc::Receiver<String>);

impl Log {
    /// The first line from now on that contains every one of `words` (bounded).
    fn wait_for(&self, words: &[&str]) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .0
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {words:?}"));
            if words.iter().all(|w| line.contains(w)) {
                return line;
            }
        }
    }
}

/// The `addr=` value of a log line.
fn addr_in(line: &str, key: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{key} in {line:?}"))
}

/// The binary with the flags operators script against: a refused node, a registered
/// one and a gone one each make one log line with the node's name and address, and
/// SIGTERM stops it with exit 0.
#[tokio::test]
async fn scnf_scaler_logs_nodes_registering_refused_and_gone_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let secret = secret_file("process");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scnf"))
        .args([
            "scaler",
            "--listen",
            "127.0.0.1:0",
            "--nodes-listen",
            "127.0.0.1:0",
        ])
        .arg("--password-file")
        .arg(&secret)
        .env("SCNF_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the scnf binary starts");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(plain(&line));
        }
    });
    let mut process = Process(child);
    let log = Log(rx);
    let line = log.wait_for(&["scaler listening"]);
    let (control, nodes) = (addr_in(&line, "control="), addr_in(&line, "nodes="));

    let mut wrong = dial(nodes).await;
    assert!(log_in(&mut wrong, b"guess").await.is_err());
    log.wait_for(&["login was refused", "127.0.0.1"]);

    let mut ws = dial(nodes).await;
    log_in(&mut ws, SECRET.as_bytes()).await.expect("logs in");
    register(&mut ws, "scnf-0a-0b-0c-1", 10)
        .await
        .expect("registered");
    log.wait_for(&["node registered", "scnf-0a-0b-0c-1", "127.0.0.1:"]);
    // A second node under the same name is refused, naming both.
    let mut twin = dial(nodes).await;
    log_in(&mut twin, SECRET.as_bytes()).await.expect("logs in");
    assert!(register(&mut twin, "scnf-0a-0b-0c-1", 10).await.is_err());
    log.wait_for(&["registration refused", "scnf-0a-0b-0c-1", "127.0.0.1:"]);
    drop(ws);
    log.wait_for(&["node gone", "scnf-0a-0b-0c-1", "127.0.0.1:"]);

    // The controllers' face takes the same secret.
    let mut c = Client::connect(control).await.expect("connects");
    c.login("pbx", SECRET.as_bytes()).await.expect("logs in");
    let pid = process.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("kill runs").success());
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = process.0.try_wait().expect("waits") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    log.wait_for(&["stopped"]);
}
