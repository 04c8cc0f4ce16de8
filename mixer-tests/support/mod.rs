//! Test support for the real-UDP system tests: node fixtures and the controller
//! sessions of the protocol tests. Participants, controllers, tones and level
//! measurement come from the libraries (`scnf_testkit`, `scnf_media::probe`), shared
//! with `scnf demo`.

use scnf::config::Config;
use scnf::NodeHandle;
use scnf_core::control::msg::ServerMsg;
use scnf_media::codec::CodecKind;
use scnf_testkit::client::Client;
use scnf_testkit::participant::{Participant, Source};
use std::sync::atomic::{AtomicU16, Ordering};
use tokio::sync::{Mutex, MutexGuard};

/// System tests measure real-time audio on a small shared machine: they run one at a
/// time, so one test's load generator does not starve another's.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Holds the machine for one system test.
pub async fn exclusive() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The same, for tests that are not async (CPU-heavy ones would otherwise disturb
/// the real-time tests running beside them).
pub fn exclusive_blocking() -> MutexGuard<'static, ()> {
    SERIAL.blocking_lock()
}

/// Each test's node gets its own port range, so tests can run in parallel.
static NEXT_PORT: AtomicU16 = AtomicU16::new(24_000);

/// Starts a one-worker node on 127.0.0.1 with `max_talkers` and its own ports.
pub fn node(max_talkers: usize) -> NodeHandle {
    let base = NEXT_PORT.fetch_add(100, Ordering::Relaxed);
    let mut cfg = Config::default();
    cfg.rtp.workers = 1;
    cfg.rtp.port_min = base;
    cfg.rtp.port_max = base + 99;
    cfg.mixer.max_talkers = max_talkers;
    NodeHandle::start(&cfg).expect("the test node starts")
}

/// A one-worker node with its call-control listener on 127.0.0.1 (ephemeral port).
/// `tune` adjusts the configuration (channels, password, TLS) before the start.
pub async fn control_node(
    tune: impl FnOnce(&mut Config),
) -> (NodeHandle, scnf::control::ControlHandle) {
    let base = NEXT_PORT.fetch_add(100, Ordering::Relaxed);
    let mut cfg = Config::default();
    cfg.rtp.workers = 1;
    cfg.rtp.port_min = base;
    cfg.rtp.port_max = base + 99;
    cfg.control.listen = "127.0.0.1:0".parse().unwrap();
    tune(&mut cfg);
    let node = NodeHandle::start(&cfg).expect("the test node starts");
    let control = scnf::control::start(node.clone(), &cfg)
        .await
        .expect("the control listener starts");
    (node, control)
}

/// A controller session for the protocol tests, keeping every message it reads.
pub async fn controller(addr: std::net::SocketAddr) -> Client {
    let mut c = Client::connect(addr).await.expect("connect to control");
    c.set_keep_seen(true);
    c
}

/// Takes the first unasked message matching `pred`; panics after the client's
/// timeout with everything the session has read.
pub async fn wait(c: &mut Client, what: &str, pred: impl Fn(&ServerMsg) -> bool) -> ServerMsg {
    match c.wait_for(what, pred).await {
        Ok(m) => m,
        Err(e) => panic!("{e}; seen: {:#?}", c.seen()),
    }
}

/// A live phone on 127.0.0.1 playing `source`, silent until it is connected.
pub async fn new_phone(codec: CodecKind, source: Source) -> Participant {
    Participant::bind([127, 0, 0, 1].into(), codec, source)
        .await
        .expect("bind a phone")
}
