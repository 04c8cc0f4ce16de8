//! `scnf scaler`: the cluster's one call-control point, the shell around the
//! sans-IO planner ([`scnf_core::cluster::planner`]).
//!
//! Two faces, two tasks:
//! - **Controllers** (a PBX, rtpgen, the test kit's client) connect to `listen` and
//!   cannot tell the scaler from a node: it is the node's own listener
//!   ([`crate::control::server`]) and session driver ([`crate::control::driver`])
//!   over the same session root, whose media workers are *one virtual worker*
//!   (addresses 0.0.0.0:0; the planner answers each `AddLeg` with the address of the
//!   node it placed the leg on) and whose channels are the cluster's, 0 until the
//!   first node registers.
//! - **Nodes** dial in to `nodes_listen`, through the same listener code (admission
//!   gate, handshake and login deadlines, pings, frame limits), and their frames go
//!   to the planner task ([`planner_task`]), which logs them in, and executes the
//!   root's media operations on them.
//!
//! The driver and the planner task are supervised: a panic in either aborts the
//! process (a cluster whose calls run on with nobody in control of them is worse
//! than a scaler that restarts; the nodes keep their media meanwhile).

pub mod config;
pub mod planner_task;

use crate::control::{self, server, ControlError, ControlHandle};
use crate::tls;
pub use config::{LinkCodec, ScalerConfig, ScalerOverrides};
pub use planner_task::{FrontError, PlannerFront};
use scnf_core::cluster::planner::{Planner, PlannerStats};
use scnf_core::session::media_addr::OwnMedia;
use scnf_core::session::WorkerAddrs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Node-face items queued towards the planner task before the listener waits.
const NODES_QUEUE: usize = 1024;

/// Why the scaler could not start.
#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("controllers' face: {0}")]
    Control(#[from] ControlError),
    #[error("cannot listen for nodes on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("nodes' face tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("no OS randomness: {0}")]
    Random(String),
}

/// A running scaler. Dropping it stops the node face (the nodes' connections
/// close); call [`ScalerHandle::shutdown`] to release the calls first.
pub struct ScalerHandle {
    /// Where controllers connect (useful when the configured port was 0).
    pub control: SocketAddr,
    /// Where nodes connect.
    pub nodes: SocketAddr,
    /// Whether each face needs wss.
    pub control_tls: bool,
    pub nodes_tls: bool,
    face: ControlHandle,
    node_server: tokio::task::JoinHandle<()>,
    planner: tokio::task::JoinHandle<()>,
    commands: mpsc::UnboundedSender<planner_task::Command>,
    stop: Option<oneshot::Sender<()>>,
}

impl ScalerHandle {
    /// The planner's counters (`None` once it has stopped).
    pub async fn stats(&self) -> Option<PlannerStats> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(planner_task::Command::Stats(tx)).ok()?;
        rx.await.ok()
    }

    /// Releases every call towards its controller (cause 41) with its legs on the
    /// nodes, closes every controller session, then closes the nodes' connections
    /// and stops both listeners. Returns whether the calls were all released within
    /// `bound`.
    pub async fn shutdown(mut self, bound: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        let released = self.face.shutdown(bound).await;
        self.face.stop();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The planner queues its last operations (the calls' leg removals) and then
        // a close on every node connection, and ends when every connection has
        // written them. The node listener goes only after that: its end stops every
        // connection at once, and a connection stopped that way drops what it had
        // not written yet. The whole stop stays within `bound`.
        let _ = tokio::time::timeout_at(deadline, &mut self.planner).await;
        self.node_server.abort();
        released
    }
}

impl Drop for ScalerHandle {
    fn drop(&mut self) {
        self.face.stop();
        self.node_server.abort();
    }
}

/// Where this scaler life's ids start: 2^20 per second of the wall clock, so a
/// scaler started later never hands out an id of an earlier life whose rooms it
/// takes over (unless that life handed out a million ids per second it lived), and
/// ids stay below 2^53 (exact in every JSON reader) until the year 2242.
fn id_base() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    secs << 20
}

/// Binds both faces and starts the driver and the planner task on the current tokio
/// runtime.
pub async fn start(cfg: &ScalerConfig) -> Result<ScalerHandle, ScalerError> {
    cfg.validate()?;
    let node_cfg = cfg.as_node();
    let control_secret = cfg.control_secret()?;
    let nodes_secret = cfg.nodes_secret()?;
    let acceptor = |cert: &Option<PathBuf>, key: &Option<PathBuf>| match (cert, key) {
        (Some(cert), Some(key)) => tls::acceptor(cert, key).map(Some),
        _ => Ok(None),
    };
    let control_tls = acceptor(&cfg.tls_cert, &cfg.tls_key).map_err(ControlError::from)?;
    let nodes_tls = acceptor(&cfg.nodes_tls_cert, &cfg.nodes_tls_key)?;
    // Bound first, so a taken port fails the start before anything runs.
    let listener = TcpListener::bind(cfg.nodes_listen)
        .await
        .map_err(|source| ScalerError::Listen {
            addr: cfg.nodes_listen,
            source,
        })?;
    let nodes = listener
        .local_addr()
        .map_err(|source| ScalerError::Listen {
            addr: cfg.nodes_listen,
            source,
        })?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| ScalerError::Random(e.to_string()))?;
    let planner = Planner::new(cfg.planner_config(nodes_secret, seed));

    // The controllers' face: the node's session root over one virtual worker whose
    // media is wherever the planner puts it, with no channels until nodes come.
    let (front, commands, commands_rx, events) = planner_task::channels();
    let virtual_worker = WorkerAddrs {
        rtp: SocketAddr::from(([0, 0, 0, 0], 0)),
        rtcp: SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let session = control::session_config(
        &node_cfg,
        control_secret,
        0,
        vec![virtual_worker],
        OwnMedia::default(),
    );
    let face = control::launch(
        front,
        session,
        Some(id_base()),
        cfg.listen,
        control_tls,
        node_cfg.control_limits(),
    )
    .await?;

    let (nodes_tx, nodes_rx) = mpsc::channel(NODES_QUEUE);
    let (stop, stopped) = oneshot::channel();
    let task = planner_task::Task {
        planner,
        commands: commands_rx,
        nodes: nodes_rx,
        driver: face.inbound(),
        events,
        stop: stopped,
    };
    // Supervised like the driver: the handle awaits the supervisor.
    let planner = tokio::spawn(async move {
        if let Err(e) = tokio::spawn(planner_task::run(task)).await {
            if e.is_panic() {
                tracing::error!(error = %e, "the scaler's planner panicked; aborting");
                std::process::abort();
            }
        }
    });
    let tls = nodes_tls.is_some();
    let node_server = tokio::spawn(server::serve(
        listener,
        nodes_tls,
        nodes_tx,
        cfg.nodes_limits(),
    ));
    tracing::info!(control = %face.local, %nodes, nodes_tls = tls, link_codec = ?cfg.link_codec, "scaler listening");
    Ok(ScalerHandle {
        control: face.local,
        nodes,
        control_tls: face.tls,
        nodes_tls: tls,
        face,
        node_server,
        planner,
        commands,
        stop: Some(stop),
    })
}
