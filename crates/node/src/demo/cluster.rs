//! A cluster on loopback in one process: a scaler and `n` nodes registered to it,
//! as `scnf scaler` and `scnf node --scaler` run them (the same tasks, only in one
//! runtime). `scnf demo --cluster N` and the cluster system tests start it.

use crate::config::Config;
use crate::scaler::config::{LinkCodec, ScalerConfig};
use crate::scaler::ScalerHandle;
use crate::scaler_link::{self, LinkConfig, LinkHandle, LinkState};
use crate::NodeHandle;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How a local cluster is built.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// First RTP port; node `i` takes `base_port + 100 i ..= + 99`.
    pub base_port: u16,
    /// Most talkers each node mixes at once.
    pub max_talkers: usize,
    /// Conference channels each node offers (0: the node's default).
    pub channels: u32,
    pub link_codec: LinkCodec,
}

impl ClusterOptions {
    pub fn new(nodes: usize, base_port: u16) -> ClusterOptions {
        ClusterOptions {
            nodes,
            base_port,
            max_talkers: 8,
            channels: 0,
            link_codec: LinkCodec::L16,
        }
    }
}

/// One node of a local cluster.
pub struct LocalNode {
    pub name: String,
    pub node: NodeHandle,
    pub link: LinkHandle,
}

/// A running local cluster.
pub struct LocalCluster {
    pub scaler: ScalerHandle,
    pub nodes: Vec<LocalNode>,
    /// The cluster secret (made for the run), for controllers of the scaler.
    pub secret: String,
    secret_file: PathBuf,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl LocalCluster {
    /// Starts the scaler on ephemeral loopback ports and the nodes, and waits until
    /// every node has registered (at most `timeout`).
    pub async fn start(opts: &ClusterOptions, timeout: Duration) -> Result<LocalCluster, Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
        let secret = scnf_core::control::hex::encode(&bytes);
        let secret_file = std::env::temp_dir().join(format!(
            "scnf-cluster-{}-{}.secret",
            std::process::id(),
            &secret[..8]
        ));
        write_private(&secret_file, &secret)?;
        let mut cfg = ScalerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            nodes_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            password_file: Some(secret_file.clone()),
            link_codec: opts.link_codec,
            ..ScalerConfig::default()
        };
        cfg.control.request_rate = 0;
        let scaler = crate::scaler::start(&cfg).await?;
        let mut nodes = Vec::with_capacity(opts.nodes);
        for i in 0..opts.nodes {
            let base = opts.base_port + 100 * i as u16;
            let mut cfg = Config::default();
            cfg.rtp.workers = 1;
            cfg.rtp.port_min = base;
            cfg.rtp.port_max = base + 99;
            cfg.mixer.max_talkers = opts.max_talkers;
            cfg.control.channels = opts.channels;
            cfg.scaler.url = Some(format!("ws://{}", scaler.nodes));
            cfg.scaler.password = Some(secret.clone());
            let name = format!("scnf-local-{}", i + 1);
            cfg.scaler.name = Some(name.clone());
            let node = NodeHandle::start(&cfg)?;
            let link_cfg: LinkConfig =
                LinkConfig::from_config(&cfg, &node)?.ok_or("a cluster node has a scaler URL")?;
            let link = scaler_link::spawn(node.clone(), link_cfg);
            nodes.push(LocalNode { name, node, link });
        }
        let cluster = LocalCluster {
            scaler,
            nodes,
            secret,
            secret_file,
        };
        for n in &cluster.nodes {
            let mut state = n.link.registered();
            let registered = tokio::time::timeout(
                timeout,
                state.wait_for(|s| matches!(s, LinkState::Registered { .. })),
            )
            .await;
            if !matches!(registered, Ok(Ok(_))) {
                return Err(format!("{} did not register within {timeout:?}", n.name).into());
            }
        }
        Ok(cluster)
    }

    /// Where controllers connect.
    pub fn control(&self) -> SocketAddr {
        self.scaler.control
    }

    /// Stops everything: the scaler releases its calls first, then the nodes go.
    pub async fn stop(self) {
        let LocalCluster {
            scaler,
            nodes,
            secret_file,
            ..
        } = self;
        // The nodes leave first (the scaler sees a node stop, not a link fail).
        for n in nodes {
            n.link.close(Duration::from_millis(500)).await;
            n.node.shutdown();
        }
        let _ = scaler.shutdown(Duration::from_secs(2)).await;
        let _ = std::fs::remove_file(&secret_file);
    }
}

/// Writes a secret file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}
