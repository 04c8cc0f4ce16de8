//! The call-control shell: the WebSocket listener ([`server`]), the switchboard
//! task ([`switchboard`]) that owns all call state and drives the node, and the
//! controller side of the protocol ([`client`]) for tools, the demo and load tests.
//!
//! The decisions live in sans-IO cores: [`scnf_core::conf`] (the conference interface's
//! behaviour) and [`scnf_core::control`] (messages, login). This module only reads the
//! clock, sockets and OS randomness, and moves messages between them.

pub mod server;
pub mod switchboard;

use crate::config::{Config, ConfigError};
use crate::tls;
use crate::NodeHandle;
use scnf_core::control::auth;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard::{Switchboard, SwitchboardConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

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
}

impl ControlHandle {
    /// Stops accepting connections. The switchboard ends when the last connection
    /// task has gone.
    pub fn stop(&self) {
        self.server.abort();
    }
}

/// Inbound items queued towards the switchboard before transports wait (back
/// pressure reaches the peers' TCP windows instead of memory).
const INBOUND_QUEUE: usize = 1024;

/// Binds the control listener and starts the switchboard on the current tokio
/// runtime.
pub async fn start(node: NodeHandle, cfg: &Config) -> Result<ControlHandle, ControlError> {
    cfg.validate()?;
    let c = &cfg.control;
    let secret = cfg.control_secret()?;
    let acceptor = match (&c.tls_cert, &c.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(c.listen)
        .await
        .map_err(|source| ControlError::Listen {
            addr: c.listen,
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| ControlError::Listen {
            addr: c.listen,
            source,
        })?;
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| ControlError::Random(e.to_string()))?;
    let sb = SwitchboardConfig {
        secret,
        login: auth::LoginConfig::default(),
        conf: scnf_core::conf::ConfConfig {
            channels: cfg.channel_capacity(),
            overlap_timeout: Duration::from_millis(c.overlap_timeout_ms),
            default_id_length: 6,
        },
        seed: u64::from_le_bytes(seed),
        login_timeout: Duration::from_millis(c.login_timeout_ms),
    };
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    tokio::spawn(Switchboard::new(node, sb).run(rx));
    let tls = acceptor.is_some();
    let server = tokio::spawn(server::serve(listener, acceptor, tx, c.max_connections));
    tracing::info!(%local, tls, "call control listening");
    Ok(ControlHandle { local, tls, server })
}
