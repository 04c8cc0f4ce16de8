//! The node's outbound link to a scaler (`scnf node --scaler ws://…`).
//!
//! One task dials the scaler's node face, logs in as a client with the cluster
//! secret (and checks the scaler's proof back), registers
//! ([`scnf_core::cluster::link::NodeMsg::Register`]) and then serves: the scaler's
//! media ops go to the workers, their answers, the node's load (every
//! [`HEARTBEAT`](scnf_core::cluster::link::HEARTBEAT)) and the events of the
//! scaler's legs go back. The protocol is in [`scnf_core::cluster::link`]; this is
//! only its shell.
//!
//! The link never ends the process. A refused login or registration is one clear
//! error line, then a retry; a lost connection (closed, broken, or a scaler silent
//! for [`SILENCE`](scnf_core::cluster::link::SILENCE)) is a warning, then a
//! reconnect; the waits between attempts follow [`backoff::Backoff`]. Legs the
//! scaler placed keep running while it is away: media state lives on the node, and
//! the next registration reports them for the scaler to reconcile
//! (`placed.rs`). The node's own control listener is independent of all this.
//!
//! Tests watch [`LinkHandle::registered`] instead of sleeping.

pub mod answers;
pub mod backoff;
pub mod name;
mod placed;
mod session;

use crate::config::{Config, ConfigError, ScalerUrl};
use crate::NodeHandle;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The system's CA bundle (Debian, Ubuntu, Alpine): whom a wss link trusts when no
/// `scaler.ca_file` is given.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why the link could not be set up (at start: configuration, TLS files).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("scaler.ca_file: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("no OS randomness: {0}")]
    Random(String),
}

/// What the link needs, typed and checked.
#[derive(Clone)]
pub struct LinkConfig {
    /// Where the scaler's node face is.
    pub url: ScalerUrl,
    /// The cluster secret.
    pub secret: Vec<u8>,
    /// This node's name in the cluster (also the login name).
    pub name: String,
    /// Conference channels the node offers.
    pub channels: u32,
    /// For `wss://`: whom to trust. `None` with a ws URL.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Channels the node's own controllers use now, when the node can tell; `None`
    /// reports 0.
    pub local: Option<watch::Receiver<u32>>,
    /// Seed of the backoff's jitter (drawn once from the OS).
    pub seed: u64,
}

impl std::fmt::Debug for LinkConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("url", &self.url.text)
            .field("name", &self.name)
            .field("channels", &self.channels)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl LinkConfig {
    /// The link of a node configured with `cfg`, `None` for a standalone node. The
    /// default name comes from the media interface of `node`.
    pub fn from_config(cfg: &Config, node: &NodeHandle) -> Result<Option<LinkConfig>, LinkError> {
        cfg.validate()?;
        let Some(url) = cfg.scaler.parsed_url()? else {
            return Ok(None);
        };
        let secret = cfg
            .scaler_secret()?
            .expect("validate: a scaler url comes with a secret");
        let tls = match (url.tls, &cfg.scaler.ca_file) {
            (false, _) => None,
            (true, Some(ca)) => Some(crate::tls::client_config_from_ca_file(ca)?),
            (true, None) => Some(crate::tls::client_config_from_ca_file(Path::new(
                SYSTEM_CA_BUNDLE,
            ))?),
        };
        let name = match &cfg.scaler.name {
            Some(n) => n.clone(),
            None => {
                let media = node.workers().first().map_or(cfg.rtp.bind, |w| w.rtp.ip());
                name::default_name(media, cfg.rtp.bind)
            }
        };
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| LinkError::Random(e.to_string()))?;
        Ok(Some(LinkConfig {
            url,
            secret,
            name,
            channels: cfg.channel_capacity(),
            tls,
            local: Some(node.local_channels()),
            seed: u64::from_le_bytes(seed),
        }))
    }
}

/// Where the link stands. `attempt` counts connection attempts from 1, so a test can
/// wait for "registered again" even if it missed the states in between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Dialling, logging in or registering (attempt `attempt`), or waiting to.
    Connecting { attempt: u64 },
    /// Registered as `name`; ops are served.
    Registered { name: String, attempt: u64 },
    /// The scaler refused the login or the registration, or could not prove the
    /// secret; the link retries after its backoff.
    Refused { reason: String, attempt: u64 },
    /// [`LinkHandle::close`] ended the link.
    Stopped,
}

impl LinkState {
    /// The attempt this state belongs to (0 once stopped).
    pub fn attempt(&self) -> u64 {
        match self {
            LinkState::Connecting { attempt }
            | LinkState::Registered { attempt, .. }
            | LinkState::Refused { attempt, .. } => *attempt,
            LinkState::Stopped => 0,
        }
    }

    pub fn is_registered(&self) -> bool {
        matches!(self, LinkState::Registered { .. })
    }
}

/// The running link.
pub struct LinkHandle {
    state: watch::Receiver<LinkState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkHandle {
    /// The link's state as it changes (what tests wait on).
    pub fn registered(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// The state now.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// Ends the link: a registered one closes its WebSocket (the scaler sees a
    /// close, not a silence). Returns whether that was done within `bound`.
    pub async fn close(self, bound: Duration) -> bool {
        let _ = self.stop.send(true);
        let mut task = self.task;
        match tokio::time::timeout(bound, &mut task).await {
            Ok(_) => true,
            Err(_) => {
                task.abort();
                false
            }
        }
    }
}

/// Starts the link on the current tokio runtime.
pub fn spawn(node: NodeHandle, cfg: LinkConfig) -> LinkHandle {
    let (state_tx, state) = watch::channel(LinkState::Connecting { attempt: 1 });
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(node, cfg, state_tx, stop_rx));
    LinkHandle { state, stop, task }
}

/// Resolves once the link is asked to stop (or its handle is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across an await.
    let _ = stop.wait_for(|s| *s).await.map(drop);
}

/// The reconnect loop: one [`session::run`] per attempt, the backoff in between.
async fn run(
    node: NodeHandle,
    cfg: LinkConfig,
    state: watch::Sender<LinkState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = backoff::Backoff::new(cfg.seed);
    let mut attempt = 0u64;
    let mut placed = placed::Placed::default();
    // Since when the scaler's rooms here have had no registered link.
    let mut unattended: Option<std::time::Instant> = None;
    tracing::info!(scaler = %cfg.url.text, name = %cfg.name, "registering to the scaler");
    loop {
        attempt += 1;
        state.send_replace(LinkState::Connecting { attempt });
        let outcome = session::run(&node, &cfg, attempt, &state, &mut stop, &mut placed).await;
        if let session::Outcome::Lost { lived, .. } = &outcome {
            if *lived > backoff::RESET_AFTER {
                backoff.reset();
            }
            unattended = None; // it was registered until now
        }
        let since = *unattended.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() >= placed::ORPHANED_AFTER {
            placed.close_all(&node).await;
        }
        // One line per attempt that ended: an error for a refusal (an operator must
        // act), a warning for a network problem (it may heal by itself).
        let delay = backoff.next_delay();
        let retry_ms = delay.as_millis() as u64;
        match outcome {
            session::Outcome::Stopped => break,
            session::Outcome::Refused { reason } => {
                tracing::error!(scaler = %cfg.url.text, attempt, retry_ms, "{reason}");
                state.send_replace(LinkState::Refused { reason, attempt });
            }
            session::Outcome::Failed { reason } => {
                tracing::warn!(scaler = %cfg.url.text, attempt, retry_ms, %reason, "cannot reach the scaler");
            }
            session::Outcome::Lost { reason, lived } => {
                tracing::warn!(
                    scaler = %cfg.url.text,
                    %reason,
                    registered_s = lived.as_secs(),
                    retry_ms,
                    "scaler link lost; the legs it placed run on, and the scaler takes them back when the link is back"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => break,
        }
    }
    state.send_replace(LinkState::Stopped);
    tracing::info!("scaler link closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_on(ports: (u16, u16)) -> (Config, NodeHandle) {
        let mut cfg = Config::default();
        cfg.rtp.workers = 1;
        cfg.rtp.port_min = ports.0;
        cfg.rtp.port_max = ports.1;
        cfg.rtp.recv_buffer = 1 << 17;
        cfg.rtp.send_buffer = 1 << 17;
        let node = NodeHandle::start(&cfg).expect("the test's UDP ports are free");
        (cfg, node)
    }

    #[test]
    fn a_node_without_a_scaler_url_has_no_link() {
        let (cfg, node) = node_on((30_110, 30_119));
        assert!(LinkConfig::from_config(&cfg, &node).unwrap().is_none());
        node.shutdown();
    }

    #[test]
    fn the_link_takes_the_configured_name_or_makes_one_from_the_media_interface() {
        let (mut cfg, node) = node_on((30_120, 30_129));
        cfg.scaler.url = Some("ws://127.0.0.1:7949".into());
        cfg.scaler.password = Some("s3cret".into());
        cfg.control.channels = 12;
        let link = LinkConfig::from_config(&cfg, &node).unwrap().unwrap();
        // The media address is loopback here: no MAC, so the host's name.
        assert!(
            link.name.starts_with("scnf-") && link.name.ends_with("-1"),
            "{}",
            link.name
        );
        assert_eq!(
            (link.secret.as_slice(), link.channels),
            (&b"s3cret"[..], 12)
        );
        assert!(link.tls.is_none());
        assert!(
            !format!("{link:?}").contains("s3cret"),
            "the secret is never printed"
        );
        cfg.scaler.name = Some("scnf-08-03-01-1".into());
        let link = LinkConfig::from_config(&cfg, &node).unwrap().unwrap();
        assert_eq!(link.name, "scnf-08-03-01-1");
        node.shutdown();
    }

    #[test]
    fn a_wss_link_with_an_unreadable_ca_file_is_refused_at_start() {
        let (mut cfg, node) = node_on((30_130, 30_139));
        cfg.scaler.url = Some("wss://scaler.example:7871".into());
        cfg.scaler.password = Some("s3cret".into());
        cfg.scaler.ca_file = Some("/nonexistent/scnf-ca.pem".into());
        let err = LinkConfig::from_config(&cfg, &node)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("scaler.ca_file") && err.contains("scnf-ca.pem"),
            "{err}"
        );
        node.shutdown();
    }
}
