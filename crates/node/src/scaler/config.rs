//! The scaler's configuration: one serde [`ScalerConfig`], parsed and validated in
//! one place, like the node's ([`crate::config`]).
//!
//! Sources, later ones winning: built-in defaults < TOML file (`--config`,
//! `SCNF_SCALER_CONFIG`) < environment (`SCNF_SCALER_*`) < command-line flags. The
//! flags of `scnf scaler` (`--listen`, `--nodes-listen`, `--password-file`,
//! `--control-password-file`, `--nodes-password-file`, `--config`) are what
//! operators script against: their names do not change.
//!
//! The scaler has two faces: controllers (a PBX, rtpgen) log in on `listen` exactly
//! as to a node; nodes dial in on `nodes_listen`. `password_file` is the secret of
//! both unless `control_password_file` / `nodes_password_file` override it for one
//! face. The `[control]` table holds the controllers' limits, with the node's
//! `[control]` defaults and names.

use crate::config::{
    file_or_default, parse_toml, read_secret_file, Config, ConfigError, ControlSection,
};
use scnf_core::cluster::planner::PlannerConfig;
use scnf_media::codec::CodecKind;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// The codec of the RTP legs that join the nodes of a room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LinkCodec {
    /// 16-bit linear at the mix rate: no second companding (default).
    #[default]
    L16,
    /// G.711 mu-law, for links that must save bandwidth.
    Pcmu,
    /// G.711 A-law.
    Pcma,
}

impl LinkCodec {
    pub fn kind(self) -> CodecKind {
        match self {
            LinkCodec::L16 => CodecKind::L16,
            LinkCodec::Pcmu => CodecKind::Pcmu,
            LinkCodec::Pcma => CodecKind::Pcma,
        }
    }
}

/// The whole scaler configuration. Every field documents its unit and default.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScalerConfig {
    /// Where controllers connect (the call-control protocol, as to a node). Default
    /// `127.0.0.1:7870`. A non-loopback address needs a secret for this face.
    pub listen: SocketAddr,
    /// Where nodes dial in to register. Default `127.0.0.1:7871`. A non-loopback
    /// address needs a secret for this face.
    pub nodes_listen: SocketAddr,
    /// File holding the cluster secret, for both faces (one trailing line end is
    /// not part of it). Default none: no login, loopback only.
    pub password_file: Option<PathBuf>,
    /// Overrides `password_file` for the controllers' face. Default none.
    pub control_password_file: Option<PathBuf>,
    /// Overrides `password_file` for the nodes' face. Default none.
    pub nodes_password_file: Option<PathBuf>,
    /// PEM certificate chain and key: wss for controllers. Default none (plain ws).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM certificate chain and key: wss for nodes. Default none (plain ws).
    pub nodes_tls_cert: Option<PathBuf>,
    pub nodes_tls_key: Option<PathBuf>,
    /// Codec of the legs between the nodes of a room: `l16`, `pcmu` or `pcma`.
    /// Default `l16`.
    pub link_codec: LinkCodec,
    /// Most registered nodes at once. Default 256.
    pub max_nodes: usize,
    /// How long a node whose connection is lost keeps its calls, waiting for it to
    /// register again (sooner dead when its links fall silent), in ms. 0: dead at
    /// once. Default 10000.
    pub node_grace_ms: u64,
    /// The controllers' limits (the node's `[control]` keys and defaults).
    pub control: ScalerControl,
    /// How video crosses between nodes.
    pub video: ScalerVideo,
}

/// `[video]`: the multicast group pool and how video crosses between nodes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScalerVideo {
    /// `multicast` (default) or `unicast` (one copy per receiving node).
    pub transport: scnf_core::cluster::video::VideoTransport,
    /// The pool's first and last group, within 239.0.0.0/8. Default
    /// 239.192.0.0-239.192.255.255.
    pub group_first: std::net::Ipv4Addr,
    pub group_last: std::net::Ipv4Addr,
    /// Every group's UDP port. Default 5004.
    pub port: u16,
    /// How long a stream nobody views is still sent, ms. Default 300.
    pub linger_ms: u64,
}

impl Default for ScalerVideo {
    fn default() -> Self {
        let d = scnf_core::cluster::video::VideoPoolConfig::default();
        ScalerVideo {
            transport: d.transport,
            group_first: d.first,
            group_last: d.last,
            port: d.port,
            linger_ms: d.linger.as_millis() as u64,
        }
    }
}

impl ScalerVideo {
    /// The planner's pool.
    pub fn pool(&self) -> scnf_core::cluster::video::VideoPoolConfig {
        scnf_core::cluster::video::VideoPoolConfig {
            first: self.group_first,
            last: self.group_last,
            port: self.port,
            linger: std::time::Duration::from_millis(self.linger_ms),
            transport: self.transport,
        }
    }
}

impl Default for ScalerConfig {
    fn default() -> Self {
        ScalerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7870)),
            nodes_listen: SocketAddr::from(([127, 0, 0, 1], 7871)),
            password_file: None,
            control_password_file: None,
            nodes_password_file: None,
            tls_cert: None,
            tls_key: None,
            nodes_tls_cert: None,
            nodes_tls_key: None,
            link_codec: LinkCodec::L16,
            max_nodes: 256,
            node_grace_ms: 10_000,
            control: ScalerControl::default(),
            video: ScalerVideo::default(),
        }
    }
}

/// `[control]`: the limits of the controllers' face; see the node's
/// [`ControlSection`] for each key's meaning, unit and default (the same).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScalerControl {
    pub overlap_timeout_ms: u64,
    pub max_connections: usize,
    pub max_waiting: usize,
    pub max_waiting_per_source: usize,
    pub handshake_timeout_ms: u64,
    pub login_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub idle_timeout_ms: u64,
    pub resume_grace_ms: u64,
    pub request_rate: u32,
    pub request_burst: u32,
    pub report_rate: u32,
    pub report_burst: u32,
}

impl Default for ScalerControl {
    /// The node's defaults, so the two cannot disagree.
    fn default() -> Self {
        let d = ControlSection::default();
        ScalerControl {
            overlap_timeout_ms: d.overlap_timeout_ms,
            max_connections: d.max_connections,
            max_waiting: d.max_waiting,
            max_waiting_per_source: d.max_waiting_per_source,
            handshake_timeout_ms: d.handshake_timeout_ms,
            login_timeout_ms: d.login_timeout_ms,
            ping_interval_ms: d.ping_interval_ms,
            idle_timeout_ms: d.idle_timeout_ms,
            resume_grace_ms: d.resume_grace_ms,
            request_rate: d.request_rate,
            request_burst: d.request_burst,
            report_rate: d.report_rate,
            report_burst: d.report_burst,
        }
    }
}

/// Command-line and environment overrides (the flags of `scnf scaler`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ScalerOverrides {
    /// TOML configuration file.
    #[arg(long, env = "SCNF_SCALER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Controllers' WebSocket address, `IP:PORT`.
    #[arg(long, env = "SCNF_SCALER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Nodes' WebSocket address, `IP:PORT`.
    #[arg(long, env = "SCNF_SCALER_NODES_LISTEN")]
    pub nodes_listen: Option<SocketAddr>,
    /// The cluster secret's file, for both faces.
    #[arg(long, env = "SCNF_SCALER_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// The controllers' secret file (overrides `--password-file` for them).
    #[arg(long, env = "SCNF_SCALER_CONTROL_PASSWORD_FILE")]
    pub control_password_file: Option<PathBuf>,
    /// The nodes' secret file (overrides `--password-file` for them).
    #[arg(long, env = "SCNF_SCALER_NODES_PASSWORD_FILE")]
    pub nodes_password_file: Option<PathBuf>,
    /// Codec of the legs between nodes.
    #[arg(long, env = "SCNF_SCALER_LINK_CODEC", value_enum)]
    pub link_codec: Option<LinkCodec>,
    /// How video crosses between nodes: `multicast` or `unicast`.
    #[arg(long, env = "SCNF_SCALER_VIDEO_TRANSPORT", value_parser = parse_transport)]
    pub video_transport: Option<scnf_core::cluster::video::VideoTransport>,
}

fn parse_transport(s: &str) -> Result<scnf_core::cluster::video::VideoTransport, String> {
    use scnf_core::cluster::video::VideoTransport;
    match s {
        "multicast" => Ok(VideoTransport::Multicast),
        "unicast" => Ok(VideoTransport::Unicast),
        other => Err(format!("{other:?}: expected multicast or unicast")),
    }
}

impl ScalerConfig {
    /// Parses TOML text (unknown keys are errors).
    pub fn from_toml(text: &str, path: &Path) -> Result<ScalerConfig, ConfigError> {
        parse_toml(text, path)
    }

    /// Defaults, then the file named by `o.config`, then the overrides; validated.
    pub fn load(o: &ScalerOverrides) -> Result<ScalerConfig, ConfigError> {
        let mut cfg: ScalerConfig = file_or_default(o.config.as_deref())?;
        cfg.apply(o);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies flag/environment overrides.
    pub fn apply(&mut self, o: &ScalerOverrides) {
        if let Some(v) = o.listen {
            self.listen = v;
        }
        if let Some(v) = o.nodes_listen {
            self.nodes_listen = v;
        }
        if let Some(v) = &o.password_file {
            self.password_file = Some(v.clone());
        }
        if let Some(v) = &o.control_password_file {
            self.control_password_file = Some(v.clone());
        }
        if let Some(v) = &o.nodes_password_file {
            self.nodes_password_file = Some(v.clone());
        }
        if let Some(v) = o.link_codec {
            self.link_codec = v;
        }
        if let Some(v) = o.video_transport {
            self.video.transport = v;
        }
    }

    /// Checks every field and the relations between them (the secret files are
    /// read by [`ScalerConfig::control_secret`] and [`ScalerConfig::nodes_secret`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && self.control_secret_file().is_none() {
            return Err(invalid(
                "listen",
                format!(
                    "{} is not a loopback address and no password_file or \
                     control_password_file is set",
                    self.listen
                ),
            ));
        }
        if !self.nodes_listen.ip().is_loopback() && self.nodes_secret_file().is_none() {
            return Err(invalid(
                "nodes_listen",
                format!(
                    "{} is not a loopback address and no password_file or \
                     nodes_password_file is set",
                    self.nodes_listen
                ),
            ));
        }
        if self.listen == self.nodes_listen && self.listen.port() != 0 {
            return Err(invalid(
                "listen/nodes_listen",
                format!("both faces on {}: give each its own port", self.listen),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                "tls_cert/tls_key",
                "wss needs both a certificate and a key",
            ));
        }
        if self.nodes_tls_cert.is_some() != self.nodes_tls_key.is_some() {
            return Err(invalid(
                "nodes_tls_cert/nodes_tls_key",
                "wss needs both a certificate and a key",
            ));
        }
        if !(1..=10_000).contains(&self.max_nodes) {
            return Err(invalid("max_nodes", "must be 1..=10000"));
        }
        if self.node_grace_ms > 600_000 {
            return Err(invalid("node_grace_ms", "must be 0..=600000"));
        }
        self.video
            .pool()
            .validate()
            .map_err(|e| invalid("video", e.to_string()))?;
        if self.video.linger_ms > 10_000 {
            return Err(invalid("video.linger_ms", "must be 0..=10000"));
        }
        // The limits are the node's: its checks, and the same field names.
        self.as_node().validate()
    }

    fn control_secret_file(&self) -> Option<&PathBuf> {
        self.control_password_file
            .as_ref()
            .or(self.password_file.as_ref())
    }

    fn nodes_secret_file(&self) -> Option<&PathBuf> {
        self.nodes_password_file
            .as_ref()
            .or(self.password_file.as_ref())
    }

    /// The controllers' login secret (`None`: no login).
    pub fn control_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let field = if self.control_password_file.is_some() {
            "control_password_file"
        } else {
            "password_file"
        };
        self.control_secret_file()
            .map(|p| read_secret_file(p, field))
            .transpose()
    }

    /// The secret nodes must prove (`None`: no login).
    pub fn nodes_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let field = if self.nodes_password_file.is_some() {
            "nodes_password_file"
        } else {
            "password_file"
        };
        self.nodes_secret_file()
            .map(|p| read_secret_file(p, field))
            .transpose()
    }

    /// A node configuration whose `[control]` carries the scaler's limits, so the
    /// node's checks ([`Config::validate`]) and typed limits apply unchanged. Its
    /// listen address and secret are not the scaler's (checked above).
    pub(crate) fn as_node(&self) -> Config {
        let c = &self.control;
        Config {
            control: ControlSection {
                overlap_timeout_ms: c.overlap_timeout_ms,
                max_connections: c.max_connections,
                max_waiting: c.max_waiting,
                max_waiting_per_source: c.max_waiting_per_source,
                handshake_timeout_ms: c.handshake_timeout_ms,
                login_timeout_ms: c.login_timeout_ms,
                ping_interval_ms: c.ping_interval_ms,
                idle_timeout_ms: c.idle_timeout_ms,
                resume_grace_ms: c.resume_grace_ms,
                request_rate: c.request_rate,
                request_burst: c.request_burst,
                report_rate: c.report_rate,
                report_burst: c.report_burst,
                ..ControlSection::default()
            },
            ..Config::default()
        }
    }

    /// The node face's limits: the controllers' deadlines and budgets for
    /// connections not logged in, and `max_nodes` logged-in sessions.
    pub fn nodes_limits(&self) -> crate::control::server::Limits {
        let mut l = self.as_node().control_limits();
        l.admission.sessions_max = self.max_nodes;
        l
    }

    /// The planner's settings with this secret and seed.
    pub fn planner_config(&self, secret: Option<Vec<u8>>, seed: [u8; 32]) -> PlannerConfig {
        let mut p = PlannerConfig::new(secret, seed);
        p.link_codec = self.link_codec.kind();
        p.node_grace = std::time::Duration::from_millis(self.node_grace_ms);
        p.video = self.video.pool();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, content: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("scnf-scaler-{name}-{}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn the_shipped_deploy_config_is_valid_and_says_the_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/scaler.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        let cfg = ScalerConfig::from_toml(&text, path).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg, ScalerConfig::default());
    }

    #[test]
    fn defaults_are_valid_and_on_loopback() {
        let c = ScalerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7870");
        assert_eq!(c.nodes_listen.to_string(), "127.0.0.1:7871");
        assert_eq!(c.link_codec, LinkCodec::L16);
        assert_eq!(c.control_secret().unwrap(), None);
        assert_eq!(c.nodes_limits().admission.sessions_max, 256);
    }

    #[test]
    fn one_password_file_serves_both_faces_and_each_face_may_override_it() {
        let both = temp("both", "cluster\n");
        let ctl = temp("ctl", "controllers\r\n");
        let mut c = ScalerConfig {
            password_file: Some(both.clone()),
            ..ScalerConfig::default()
        };
        assert_eq!(c.control_secret().unwrap().unwrap(), b"cluster");
        assert_eq!(c.nodes_secret().unwrap().unwrap(), b"cluster");
        c.control_password_file = Some(ctl.clone());
        assert_eq!(c.control_secret().unwrap().unwrap(), b"controllers");
        assert_eq!(c.nodes_secret().unwrap().unwrap(), b"cluster");
        c.password_file = None;
        assert_eq!(c.nodes_secret().unwrap(), None);
        std::fs::remove_file(both).unwrap();
        std::fs::remove_file(ctl).unwrap();
    }

    #[test]
    fn an_empty_secret_file_is_refused_naming_its_field() {
        let empty = temp("empty", "\n");
        let c = ScalerConfig {
            nodes_password_file: Some(empty.clone()),
            ..ScalerConfig::default()
        };
        let err = c.nodes_secret().unwrap_err().to_string();
        assert!(
            err.contains("nodes_password_file") && err.contains("empty"),
            "{err}"
        );
        std::fs::remove_file(empty).unwrap();
    }

    #[test]
    fn a_public_face_without_its_secret_is_refused() {
        let cases: &[(&str, &str)] = &[
            ("listen = \"0.0.0.0:7870\"\n", "invalid listen"),
            ("nodes_listen = \"0.0.0.0:7871\"\n", "invalid nodes_listen"),
            (
                "nodes_listen = \"0.0.0.0:7871\"\ncontrol_password_file = \"/s\"\n",
                "invalid nodes_listen",
            ),
            (
                "listen = \"127.0.0.1:7000\"\nnodes_listen = \"127.0.0.1:7000\"\n",
                "listen/nodes_listen",
            ),
            ("tls_cert = \"/c.pem\"\n", "tls_cert/tls_key"),
            ("nodes_tls_key = \"/k.pem\"\n", "nodes_tls_cert"),
            ("max_nodes = 0\n", "max_nodes"),
            (
                "[control]\nping_interval_ms = 5000\nidle_timeout_ms = 5000\n",
                "control.idle_timeout_ms",
            ),
        ];
        for (text, field) in cases {
            let err = ScalerConfig::from_toml(text, Path::new("s.toml"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{text:?} gave {err:?}");
        }
        let open = "listen = \"0.0.0.0:7870\"\nnodes_listen = \"0.0.0.0:7871\"\n\
                    password_file = \"/cluster.secret\"\n";
        ScalerConfig::from_toml(open, Path::new("s.toml"))
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn a_file_overrides_defaults_and_flags_override_the_file() {
        let text = "link_codec = \"pcmu\"\nlisten = \"127.0.0.1:9000\"\n\
                    [control]\nmax_connections = 8\n";
        let mut c = ScalerConfig::from_toml(text, Path::new("s.toml")).unwrap();
        assert_eq!(c.link_codec.kind(), CodecKind::Pcmu);
        assert_eq!(c.as_node().control_limits().admission.sessions_max, 8);
        c.apply(&ScalerOverrides {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            link_codec: Some(LinkCodec::Pcma),
            ..ScalerOverrides::default()
        });
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.link_codec, LinkCodec::Pcma);
        assert_eq!(
            c.control.report_rate, 50,
            "untouched keys keep the node's defaults"
        );
    }

    #[test]
    fn typos_are_parse_errors() {
        for text in ["lisen = \"127.0.0.1:1\"\n", "[control]\nchannels = 5\n"] {
            assert!(matches!(
                ScalerConfig::from_toml(text, Path::new("s.toml")),
                Err(ConfigError::Parse { .. })
            ));
        }
    }
}
