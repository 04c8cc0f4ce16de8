//! The call-control shell: the WebSocket listener ([`server`]) and the task that
//! drives the session root ([`driver`]).
//!
//! The decisions live in the sans-IO session root ([`scnf_core::session`]: logins,
//! call ids, the conference core, the room table). This module only reads the clock,
//! sockets and OS randomness, and moves values between them. The controller side of
//! the protocol is `scnf_testkit::client`.

pub mod driver;
pub mod frames;
pub mod server;

use crate::config::{Config, ConfigError};
use crate::tls;
use crate::NodeHandle;
use scnf_core::control::auth;
use scnf_core::session::budget::{Budgets, Rate};
use scnf_core::session::media_addr::OwnMedia;
use scnf_core::session::{Session, SessionConfig, WorkerAddrs};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// Why the control layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("no OS randomness: {0}")]
    Random(String),
}

/// A running control listener.
pub struct ControlHandle {
    /// Where it listens (useful when the configured port was 0).
    pub local: SocketAddr,
    /// Whether connections must use wss.
    pub tls: bool,
    server: tokio::task::JoinHandle<()>,
    /// The driver's way in, for [`ControlHandle::shutdown`]; weak, so the driver
    /// still ends when the last transport goes.
    inbound: mpsc::WeakSender<driver::Inbound>,
}

impl ControlHandle {
    /// The driver's way in (weak: it does not keep the driver alive), for a task
    /// that feeds it node items such as [`driver::Inbound::Channels`].
    pub(crate) fn inbound(&self) -> mpsc::WeakSender<driver::Inbound> {
        self.inbound.clone()
    }

    /// Stops accepting connections. The session driver ends when the last connection
    /// task has gone.
    pub fn stop(&self) {
        self.server.abort();
    }

    /// Releases every call towards its controller (cause
    /// [`scnf_core::session::SHUTDOWN_CAUSE`]), removes their legs (their peers get an
    /// RTCP BYE) and closes every session; returns whether all of it was through
    /// within `bound`. The node's workers must still run while it does.
    pub async fn shutdown(&self, bound: std::time::Duration) -> bool {
        let Some(tx) = self.inbound.upgrade() else {
            return true; // no driver left: nothing to release
        };
        let (done, finished) = tokio::sync::oneshot::channel();
        let work = async {
            tx.send(driver::Inbound::Shutdown { done }).await.is_ok() && finished.await.is_ok()
        };
        tokio::time::timeout(bound, work).await.unwrap_or(false)
    }
}

/// Inbound items queued towards the driver before transports wait (back pressure
/// reaches the peers' TCP windows instead of memory).
const INBOUND_QUEUE: usize = 1024;

/// Binds the control listener and starts the session driver on the current tokio
/// runtime. The driver is supervised: if it ever panics the process aborts, because a
/// node whose media runs on with nobody in control of its calls is worse than a node
/// that restarts.
pub async fn start(node: NodeHandle, cfg: &Config) -> Result<ControlHandle, ControlError> {
    cfg.validate()?;
    let c = &cfg.control;
    let secret = cfg.control_secret()?;
    let acceptor = match (&c.tls_cert, &c.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let session = session_config(
        cfg,
        secret,
        cfg.channel_capacity(),
        node.workers(),
        node.own_media(),
    );
    let limits = cfg.control_limits();
    launch(node, session, None, c.listen, acceptor, limits).await
}

/// The session root's settings from the `[control]` section, for a root with these
/// media workers and channels (the node's own, or a scaler's one virtual worker).
pub(crate) fn session_config(
    cfg: &Config,
    secret: Option<Vec<u8>>,
    channels: u32,
    workers: Vec<WorkerAddrs>,
    own_media: OwnMedia,
) -> SessionConfig {
    let c = &cfg.control;
    SessionConfig {
        secret,
        login: auth::LoginConfig::default(),
        conf: scnf_core::conf::ConfConfig {
            channels,
            overlap_timeout: Duration::from_millis(c.overlap_timeout_ms),
            default_id_length: 6,
        },
        login_timeout: Duration::from_millis(c.login_timeout_ms),
        workers,
        own_media,
        budgets: Budgets {
            requests: Rate {
                per_second: c.request_rate,
                burst: c.request_burst,
            },
            reports: Rate {
                per_second: c.report_rate,
                burst: c.report_burst,
            },
        },
        resume_grace: Duration::from_millis(c.resume_grace_ms),
    }
}

/// Binds `listen`, starts the supervised session driver over `media` and the
/// listener feeding it (what [`start`] does for a node, and `scnf scaler` for its
/// controllers' face). `keep_from`: the root keeps its rooms on the nodes, with ids
/// from this base on ([`Session::keep_on_nodes`]; a scaler's).
pub(crate) async fn launch<M: driver::Media>(
    media: M,
    session: SessionConfig,
    keep_from: Option<u64>,
    listen: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    limits: server::Limits,
) -> Result<ControlHandle, ControlError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ControlError::Listen {
            addr: listen,
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| ControlError::Listen {
            addr: listen,
            source,
        })?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| ControlError::Random(e.to_string()))?;
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    let inbound = tx.downgrade();
    let mut session = Session::new(session, seed);
    if let Some(base) = keep_from {
        session.keep_on_nodes(std::time::Instant::now(), base);
    }
    let driver = tokio::spawn(driver::run(session, media, rx));
    tokio::spawn(async move {
        if let Err(e) = driver.await {
            if e.is_panic() {
                tracing::error!(error = %e, "call control panicked; aborting the node");
                std::process::abort();
            }
        }
    });
    let tls = acceptor.is_some();
    let server = tokio::spawn(server::serve(listener, acceptor, tx, limits));
    tracing::info!(%local, tls, "call control listening");
    Ok(ControlHandle {
        local,
        tls,
        server,
        inbound,
    })
}
