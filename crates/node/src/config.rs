//! Node configuration: one serde [`Config`], parsed and validated in one place.
//!
//! Sources, later ones winning: built-in defaults < TOML file (`--config`) <
//! environment (`SCNF_*`) < command-line flags. [`Config::validate`] turns every
//! inconsistency into an error that names the field; the rest of the node receives
//! small typed configs built from a validated `Config`.

use scnf_media::jitter::JitterConfig;
use scnf_media::mixer::{talker::TalkerConfig, MixConfig};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod control;
pub mod scaler;
pub mod video;
pub use control::ControlSection;
pub use scaler::{ScalerSection, ScalerUrl};
pub use video::VideoSection;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// The whole node configuration. Every field documents its unit and default.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub rtp: RtpSection,
    pub jitter: JitterSection,
    pub mixer: MixerSection,
    pub control: ControlSection,
    pub scaler: ScalerSection,
    pub video: VideoSection,
}

/// `[rtp]`: sockets and workers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RtpSection {
    /// Address the media sockets bind to. Default `127.0.0.1` (safe; set `0.0.0.0`
    /// and `advertise` in production).
    pub bind: IpAddr,
    /// Address reported to peers as the leg's local address. Default: `bind`, or
    /// 127.0.0.1 when `bind` is unspecified (0.0.0.0 / ::).
    pub advertise: Option<IpAddr>,
    /// Lowest UDP port the node may use. Default 20000.
    pub port_min: u16,
    /// Highest UDP port the node may use. Default 29999.
    pub port_max: u16,
    /// Media workers (threads), each owning whole rooms. 0 = one per CPU core.
    /// Default 0.
    pub workers: usize,
    /// Socket receive buffer, bytes. Default 4 MiB.
    pub recv_buffer: usize,
    /// Socket send buffer, bytes. Default 4 MiB.
    pub send_buffer: usize,
    /// Datagrams per recvmmsg/sendmmsg call. Default 64.
    pub batch: usize,
    /// Interval between RTCP reports per leg, milliseconds. Default 5000.
    pub rtcp_interval_ms: u64,
    /// A leg that receives nothing for this long raises a media-timeout event,
    /// milliseconds; 0 disables. Default 30000.
    pub media_timeout_ms: u64,
    /// Send media with the don't-fragment bit: the kernel then spends no IP
    /// identifier per datagram (a shared hash and atomic, ~5 % of the node's CPU at
    /// load). Media datagrams are far below any MTU; one above the interface's is
    /// refused and counted as a send error instead of fragmented. Default true.
    pub dont_fragment: bool,
    /// Receive coalescing, microseconds: a worker that has just read datagrams
    /// sleeps this long before it reads again, instead of waking for each one
    /// that arrives. Audio is unchanged (datagrams carry their kernel arrival
    /// stamps, and whatever arrived is read before every tick); video and RTCP
    /// are handled up to this much later. 0 reads on every arrival. Default 1000.
    pub rx_coalesce_us: u64,
}

impl Default for RtpSection {
    fn default() -> Self {
        RtpSection {
            bind: IpAddr::from([127, 0, 0, 1]),
            advertise: None,
            port_min: 20_000,
            port_max: 29_999,
            workers: 0,
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            batch: 64,
            rtcp_interval_ms: 5_000,
            media_timeout_ms: 30_000,
            dont_fragment: true,
            rx_coalesce_us: 1_000,
        }
    }
}

/// `[jitter]`: playout delay bounds per leg, milliseconds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JitterSection {
    /// Smallest playout delay (on top of the wait for the next mix tick). Default 5.
    pub min_ms: u64,
    /// Playout delay at the start of a leg. Default 40.
    pub start_ms: u64,
    /// Largest playout delay; bursty senders (`ffmpeg -re`) need ~300. Default 500.
    pub max_ms: u64,
}

impl Default for JitterSection {
    /// The media crate's defaults, so the two cannot disagree.
    fn default() -> Self {
        let d = JitterConfig::default();
        JitterSection {
            min_ms: d.min_delay.as_millis() as u64,
            start_ms: d.start_delay.as_millis() as u64,
            max_ms: d.max_delay.as_millis() as u64,
        }
    }
}

/// `[mixer]`: talker selection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MixerSection {
    /// Most talkers mixed at once per room (loudest win). Default 6.
    pub max_talkers: usize,
    /// Frames quieter than this never count as speech, dBFS. Default -50.
    pub talker_threshold_dbfs: f64,
    /// How long a leg stays a talker after its last speech frame, ms. Default 400.
    pub talker_hangover_ms: u64,
}

impl Default for MixerSection {
    fn default() -> Self {
        MixerSection {
            max_talkers: 6,
            talker_threshold_dbfs: -50.0,
            talker_hangover_ms: 400,
        }
    }
}

/// Command-line and environment overrides (the flags of `scnf node`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "SCNF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Media bind address.
    #[arg(long, env = "SCNF_BIND")]
    pub bind: Option<IpAddr>,
    /// Address reported to peers.
    #[arg(long, env = "SCNF_ADVERTISE")]
    pub advertise: Option<IpAddr>,
    /// UDP port range, `MIN-MAX`.
    #[arg(long, env = "SCNF_RTP_PORTS", value_parser = parse_port_range)]
    pub rtp_ports: Option<(u16, u16)>,
    /// Media workers (0 = one per core).
    #[arg(long, env = "SCNF_WORKERS")]
    pub workers: Option<usize>,
    /// Jitter buffer minimum delay, ms.
    #[arg(long, env = "SCNF_JITTER_MIN_MS")]
    pub jitter_min_ms: Option<u64>,
    /// Jitter buffer start delay, ms.
    #[arg(long, env = "SCNF_JITTER_START_MS")]
    pub jitter_start_ms: Option<u64>,
    /// Jitter buffer maximum delay, ms.
    #[arg(long, env = "SCNF_JITTER_MAX_MS")]
    pub jitter_max_ms: Option<u64>,
    /// Most talkers mixed at once per room.
    #[arg(long, env = "SCNF_MAX_TALKERS")]
    pub max_talkers: Option<usize>,
    /// Call-control WebSocket address, `IP:PORT`.
    #[arg(long, env = "SCNF_CONTROL_LISTEN")]
    pub control_listen: Option<SocketAddr>,
    /// Call-control login secret (prefer the environment over the flag: flags show
    /// in `ps`).
    #[arg(long, env = "SCNF_CONTROL_PASSWORD", hide_env_values = true)]
    pub control_password: Option<String>,
    /// Conference channels this node offers (0 = 1000 per worker).
    #[arg(long, env = "SCNF_CHANNELS")]
    pub channels: Option<u32>,
    /// Register to this scaler, `ws://host:port` or `wss://host:port`.
    #[arg(long, env = "SCNF_SCALER")]
    pub scaler: Option<String>,
    /// File holding the cluster secret (trailing newline ignored).
    #[arg(long, env = "SCNF_SCALER_PASSWORD_FILE")]
    pub scaler_password_file: Option<PathBuf>,
    /// The cluster secret itself (prefer the file or the environment: flags show in
    /// `ps`).
    #[arg(long, env = "SCNF_SCALER_PASSWORD", hide_env_values = true)]
    pub scaler_password: Option<String>,
    /// PEM certificate(s) to trust for a wss:// scaler (default: the system bundle).
    #[arg(long, env = "SCNF_SCALER_CA")]
    pub scaler_ca: Option<PathBuf>,
    /// This node's name in the cluster (default `scnf-<MAC tail>-1`).
    #[arg(long = "name", env = "SCNF_NODE_NAME")]
    pub node_name: Option<String>,
}

/// Parses `20000-29999`.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {s:?}"))?;
    let a: u16 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    Ok((a, b))
}

impl Config {
    /// Parses TOML text (unknown keys are errors, so a typo is not silently ignored).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        parse_toml(text, path)
    }

    /// Defaults, then the file named by `o.config`, then the overrides; validated.
    pub fn load(o: &Overrides) -> Result<Config, ConfigError> {
        let mut cfg: Config = file_or_default(o.config.as_deref())?;
        cfg.apply(o);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies flag/environment overrides.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(v) = o.bind {
            self.rtp.bind = v;
        }
        if let Some(v) = o.advertise {
            self.rtp.advertise = Some(v);
        }
        if let Some((a, b)) = o.rtp_ports {
            self.rtp.port_min = a;
            self.rtp.port_max = b;
        }
        if let Some(v) = o.workers {
            self.rtp.workers = v;
        }
        if let Some(v) = o.jitter_min_ms {
            self.jitter.min_ms = v;
        }
        if let Some(v) = o.jitter_start_ms {
            self.jitter.start_ms = v;
        }
        if let Some(v) = o.jitter_max_ms {
            self.jitter.max_ms = v;
        }
        if let Some(v) = o.max_talkers {
            self.mixer.max_talkers = v;
        }
        if let Some(v) = o.control_listen {
            self.control.listen = v;
        }
        if let Some(v) = &o.control_password {
            self.control.password = Some(v.clone());
        }
        if let Some(v) = o.channels {
            self.control.channels = v;
        }
        let s = &mut self.scaler;
        if let Some(v) = &o.scaler {
            s.url = Some(v.clone());
        }
        // One secret source: the later one replaces the other, whichever it was.
        if let Some(v) = &o.scaler_password_file {
            s.password_file = Some(v.clone());
            s.password = None;
        }
        if let Some(v) = &o.scaler_password {
            s.password = Some(v.clone());
            s.password_file = None;
        }
        if let Some(v) = &o.scaler_ca {
            s.ca_file = Some(v.clone());
        }
        if let Some(v) = &o.node_name {
            s.name = Some(v.clone());
        }
    }

    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.rtp;
        if r.port_min == 0 || r.port_min > r.port_max {
            return Err(invalid(
                "rtp.port_min/port_max",
                format!("need 0 < min <= max, got {}-{}", r.port_min, r.port_max),
            ));
        }
        let ports = (r.port_max - r.port_min) as usize + 1;
        if ports < 2 * self.worker_count() {
            return Err(invalid(
                "rtp.port_min/port_max",
                format!(
                    "{ports} ports cannot hold an RTP+RTCP pair for each of {} workers",
                    self.worker_count()
                ),
            ));
        }
        if r.workers > 256 {
            return Err(invalid("rtp.workers", "at most 256"));
        }
        if !(1..=1024).contains(&r.batch) {
            return Err(invalid("rtp.batch", "must be 1..=1024"));
        }
        if r.recv_buffer < 65_536 || r.send_buffer < 65_536 {
            return Err(invalid(
                "rtp.recv_buffer/send_buffer",
                "at least 65536 bytes",
            ));
        }
        if r.rx_coalesce_us > 10_000 {
            return Err(invalid("rtp.rx_coalesce_us", "at most 10000"));
        }
        if !(500..=60_000).contains(&r.rtcp_interval_ms) {
            return Err(invalid("rtp.rtcp_interval_ms", "must be 500..=60000"));
        }
        let j = &self.jitter;
        if !(j.min_ms <= j.start_ms && j.start_ms <= j.max_ms) {
            return Err(invalid(
                "jitter",
                format!(
                    "need min_ms <= start_ms <= max_ms, got {} / {} / {}",
                    j.min_ms, j.start_ms, j.max_ms
                ),
            ));
        }
        if j.max_ms > 1_000 {
            return Err(invalid("jitter.max_ms", "at most 1000"));
        }
        self.control.validate()?;
        self.scaler.validate()?;
        self.video.validate()?;
        let m = &self.mixer;
        if !(1..=64).contains(&m.max_talkers) {
            return Err(invalid("mixer.max_talkers", "must be 1..=64"));
        }
        if !(-96.0..=0.0).contains(&m.talker_threshold_dbfs) {
            return Err(invalid("mixer.talker_threshold_dbfs", "must be -96..=0"));
        }
        if m.talker_hangover_ms > 10_000 {
            return Err(invalid("mixer.talker_hangover_ms", "at most 10000"));
        }
        Ok(())
    }

    /// The login secret: the password, or the password file's content.
    pub fn control_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        self.control.secret()
    }

    /// The cluster secret of the scaler link (see [`ScalerSection::secret`]).
    pub fn scaler_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        self.scaler.secret()
    }

    /// The control listener's typed limits.
    pub fn control_limits(&self) -> crate::control::server::Limits {
        let c = &self.control;
        let ms = Duration::from_millis;
        crate::control::server::Limits {
            admission: scnf_core::control::admission::AdmissionConfig {
                waiting_max: c.max_waiting,
                waiting_per_source: c.max_waiting_per_source,
                sessions_max: c.max_connections,
                handshake_timeout: ms(c.handshake_timeout_ms),
                login_timeout: ms(c.login_timeout_ms),
            },
            ping_interval: ms(c.ping_interval_ms),
            idle_timeout: ms(c.idle_timeout_ms),
        }
    }

    /// Conference channels offered: the configured number or 1000 per worker.
    pub fn channel_capacity(&self) -> u32 {
        match self.control.channels {
            0 => 1000 * self.worker_count() as u32,
            n => n,
        }
    }

    /// Workers to start: the configured count, or one per core.
    pub fn worker_count(&self) -> usize {
        match self.rtp.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The jitter buffer's typed config.
    pub fn jitter_config(&self) -> JitterConfig {
        JitterConfig {
            min_delay: Duration::from_millis(self.jitter.min_ms),
            start_delay: Duration::from_millis(self.jitter.start_ms),
            max_delay: Duration::from_millis(self.jitter.max_ms),
        }
    }

    /// The mixer's typed config.
    pub fn mix_config(&self) -> MixConfig {
        MixConfig {
            max_talkers: self.mixer.max_talkers,
            talker: TalkerConfig {
                threshold_dbfs: self.mixer.talker_threshold_dbfs,
                hangover_frames: (self.mixer.talker_hangover_ms / 20) as u32,
            },
            ..MixConfig::default()
        }
    }
}

/// Parses a TOML configuration (unknown keys are errors, so a typo is not silently
/// ignored); `path` names it in errors.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The configuration in the file at `path`, or the defaults without one.
pub(crate) fn file_or_default<T: serde::de::DeserializeOwned + Default>(
    path: Option<&Path>,
) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_toml(&text, path)
}

/// A secret from a file; `field` names it in errors. One trailing line end is the
/// editor's, not the secret's; a file holding nothing else is an empty secret, which
/// is refused.
pub(crate) fn read_secret_file(path: &Path, field: &'static str) -> Result<Vec<u8>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err(invalid(
            field,
            format!("{} holds an empty secret", path.display()),
        ));
    }
    Ok(secret.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn a_file_overrides_defaults_and_flags_override_the_file() {
        let cfg = Config::from_toml(
            "[rtp]\nport_min = 30000\nport_max = 30100\n[mixer]\nmax_talkers = 3\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(cfg.rtp.port_min, 30_000);
        assert_eq!(cfg.mixer.max_talkers, 3);
        assert_eq!(cfg.jitter, JitterSection::default());
        let mut cfg = cfg;
        cfg.apply(&Overrides {
            max_talkers: Some(6),
            rtp_ports: Some((40_000, 40_009)),
            ..Overrides::default()
        });
        assert_eq!(cfg.mixer.max_talkers, 6);
        assert_eq!((cfg.rtp.port_min, cfg.rtp.port_max), (40_000, 40_009));
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("[rtp]\nport_min = 5000\nport_max = 4000\n", "rtp.port_min"),
            ("[jitter]\nmin_ms = 50\nstart_ms = 40\n", "jitter"),
            ("[mixer]\nmax_talkers = 0\n", "mixer.max_talkers"),
            ("[rtp]\nbatch = 0\n", "rtp.batch"),
            ("[rtp]\nrx_coalesce_us = 20000\n", "rtp.rx_coalesce_us"),
            (
                "[rtp]\nworkers = 4\nport_min = 20000\nport_max = 20005\n",
                "rtp.port_min",
            ),
            ("[control]\nlisten = \"0.0.0.0:7880\"\n", "control.listen"),
            (
                "[control]\ntls_cert = \"/etc/cert.pem\"\n",
                "control.tls_cert",
            ),
            (
                "[control]\npassword = \"a\"\npassword_file = \"/p\"\n",
                "control.password",
            ),
            (
                "[control]\noverlap_timeout_ms = 5\n",
                "control.overlap_timeout_ms",
            ),
        ];
        for (text, field) in cases {
            let err = Config::from_toml(text, Path::new("x.toml"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn the_shipped_deploy_config_is_valid() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/scnf.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        Config::from_toml(&text, path).unwrap().validate().unwrap();
    }

    #[test]
    fn a_public_control_listener_is_allowed_with_a_password_or_file() {
        let mut c = Config::default();
        c.control.listen = "0.0.0.0:7880".parse().unwrap();
        assert!(c.validate().is_err());
        c.control.password = Some("s3cret".into());
        c.validate().unwrap();
        assert_eq!(c.control_secret().unwrap().unwrap(), b"s3cret");
        let file = std::env::temp_dir().join(format!("scnf-secret-{}", std::process::id()));
        std::fs::write(&file, "from-file\n").unwrap();
        c.control.password = None;
        c.control.password_file = Some(file.clone());
        c.validate().unwrap();
        assert_eq!(c.control_secret().unwrap().unwrap(), b"from-file");
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn an_empty_password_or_password_file_is_refused_at_start() {
        let mut c = Config::default();
        c.control.password = Some(String::new());
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("control.password") && err.contains("empty"),
            "{err}"
        );
        assert!(c.control_secret().is_err());
        let file = std::env::temp_dir().join(format!("scnf-empty-{}", std::process::id()));
        c.control.password = None;
        c.control.password_file = Some(file.clone());
        for (content, secret) in [
            ("\n", None),
            ("\r\n", None),
            ("", None),
            ("s\n\n", Some("s\n")),
        ] {
            std::fs::write(&file, content).unwrap();
            c.validate().unwrap();
            match secret {
                None => {
                    let err = c.control_secret().unwrap_err().to_string();
                    assert!(
                        err.contains("control.password_file") && err.contains("empty"),
                        "{err}"
                    );
                }
                Some(s) => assert_eq!(c.control_secret().unwrap().unwrap(), s.as_bytes()),
            }
        }
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn the_control_limits_are_checked_against_each_other() {
        let cases: &[(&str, &str)] = &[
            (
                "[control]\nhandshake_timeout_ms = 4000\nlogin_timeout_ms = 3000\n",
                "control.login_timeout_ms",
            ),
            (
                "[control]\nping_interval_ms = 5000\nidle_timeout_ms = 5000\n",
                "control.idle_timeout_ms",
            ),
            (
                "[control]\nmax_waiting = 4\nmax_waiting_per_source = 5\n",
                "control.max_waiting_per_source",
            ),
            (
                "[control]\nhandshake_timeout_ms = 0\n",
                "control.handshake_timeout_ms",
            ),
            (
                "[control]\nresume_grace_ms = 3600001\n",
                "control.resume_grace_ms",
            ),
        ];
        for (text, field) in cases {
            let err = Config::from_toml(text, Path::new("x.toml"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{text:?} gave {err:?}");
        }
        let l = Config::default().control_limits();
        assert_eq!(l.admission.sessions_max, 64);
        assert_eq!(l.idle_timeout, Duration::from_secs(30));
    }

    #[test]
    fn typos_and_wrong_types_are_parse_errors() {
        for text in [
            "[rtp]\nbnid = \"1.2.3.4\"\n",
            "[rtp]\nport_min = \"x\"\n",
            "[[[",
        ] {
            assert!(matches!(
                Config::from_toml(text, Path::new("x.toml")),
                Err(ConfigError::Parse { .. })
            ));
        }
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_port_range("20000-20010"), Ok((20_000, 20_010)));
        assert!(parse_port_range("20000").is_err());
        assert!(parse_port_range("a-b").is_err());
    }
}
