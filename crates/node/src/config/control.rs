//! `[control]`: the call-control WebSocket listener and the conference interface
//! (its addresses, secret, TLS files, channels, deadlines and budgets).

use super::{invalid, read_secret_file, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[control]`: the call-control WebSocket listener and the conference interface.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSection {
    /// Where the call-control WebSocket listens. Default `127.0.0.1:7880`. A
    /// non-loopback address needs `password` (an open control port would let anyone
    /// place calls).
    pub listen: SocketAddr,
    /// Shared login secret (HMAC key; it never crosses the wire). Default none: no
    /// login, loopback only. Prefer `SCNF_CONTROL_PASSWORD` or `password_file`.
    pub password: Option<String>,
    /// File holding the secret (trailing newline ignored). Default none.
    pub password_file: Option<PathBuf>,
    /// PEM certificate chain for wss. Default none (plain ws). Needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for wss. Default none.
    pub tls_key: Option<PathBuf>,
    /// Conference channels this node offers (one per call in a room). 0 = 1000 per
    /// media worker. Default 0.
    pub channels: u32,
    /// How long a call may wait for more dialled digits, milliseconds. Default 10000.
    pub overlap_timeout_ms: u64,
    /// Most logged-in control sessions (connections still logging in have their own
    /// budget, `max_waiting`). Default 64.
    pub max_connections: usize,
    /// Most connections not logged in yet, overall; when full, a newcomer evicts one
    /// of the source network holding most of them. Default 64.
    pub max_waiting: usize,
    /// Most connections not logged in yet per source (IPv4 address, IPv6 /64).
    /// Default 8.
    pub max_waiting_per_source: usize,
    /// The TLS and WebSocket handshakes must end this long after the accept,
    /// milliseconds. Default 3000.
    pub handshake_timeout_ms: u64,
    /// The login must end this long after the accept, milliseconds (without a
    /// password: the handshake). Default 5000.
    pub login_timeout_ms: u64,
    /// A logged-in session is pinged this often, milliseconds. Default 10000.
    pub ping_interval_ms: u64,
    /// A session from which nothing (no frame, no pong) arrived for this long is
    /// closed (its controller then waits for a resume), milliseconds. Default 30000.
    pub idle_timeout_ms: u64,
    /// How long a controller whose connection is lost keeps its calls, waiting for
    /// it to log in again with its resume token, milliseconds; then they are
    /// released with cause 102. 0: released when the connection closes. At most
    /// 3600000. Default 60000.
    pub resume_grace_ms: u64,
    /// Requests one session may send per second (0: unlimited) and at once; over it
    /// a request gets `Error` "rate-limited". Default 5000 and 5000.
    pub request_rate: u32,
    pub request_burst: u32,
    /// Of those, `Status`/`Health` per second (0: unlimited) and at once. Default 50
    /// and 100.
    pub report_rate: u32,
    pub report_burst: u32,
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 7880)),
            password: None,
            password_file: None,
            tls_cert: None,
            tls_key: None,
            channels: 0,
            overlap_timeout_ms: 10_000,
            max_connections: 64,
            max_waiting: 64,
            max_waiting_per_source: 8,
            handshake_timeout_ms: 3_000,
            login_timeout_ms: 5_000,
            ping_interval_ms: 10_000,
            idle_timeout_ms: 30_000,
            resume_grace_ms: 60_000,
            request_rate: 5_000,
            request_burst: 5_000,
            report_rate: 50,
            report_burst: 100,
        }
    }
}

impl ControlSection {
    /// Checks the section's fields and the relations between them.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let c = self;
        if c.password.as_ref().is_some_and(String::is_empty) {
            return Err(invalid(
                "control.password",
                "is empty: an empty secret is no secret (leave it unset for no login, \
                 loopback only)",
            ));
        }
        let has_secret = c.password.is_some() || c.password_file.is_some();
        if !c.listen.ip().is_loopback() && !has_secret {
            return Err(invalid(
                "control.listen",
                format!(
                    "{} is not a loopback address and no control.password is set",
                    c.listen
                ),
            ));
        }
        if c.password.is_some() && c.password_file.is_some() {
            return Err(invalid(
                "control.password/password_file",
                "set one of them, not both",
            ));
        }
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return Err(invalid(
                "control.tls_cert/tls_key",
                "wss needs both a certificate and a key",
            ));
        }
        if !(100..=600_000).contains(&c.overlap_timeout_ms) {
            return Err(invalid(
                "control.overlap_timeout_ms",
                "must be 100..=600000",
            ));
        }
        if !(100..=60_000).contains(&c.handshake_timeout_ms) {
            return Err(invalid(
                "control.handshake_timeout_ms",
                "must be 100..=60000",
            ));
        }
        if !(c.handshake_timeout_ms..=600_000).contains(&c.login_timeout_ms) {
            return Err(invalid(
                "control.login_timeout_ms",
                "must be handshake_timeout_ms..=600000",
            ));
        }
        if !(100..=600_000).contains(&c.ping_interval_ms) {
            return Err(invalid("control.ping_interval_ms", "must be 100..=600000"));
        }
        if !(c.ping_interval_ms + 1..=3_600_000).contains(&c.idle_timeout_ms) {
            return Err(invalid(
                "control.idle_timeout_ms",
                "must be longer than ping_interval_ms, at most 3600000",
            ));
        }
        if c.resume_grace_ms > 3_600_000 {
            return Err(invalid("control.resume_grace_ms", "must be 0..=3600000"));
        }
        if !(1..=10_000).contains(&c.max_connections) {
            return Err(invalid("control.max_connections", "must be 1..=10000"));
        }
        if !(1..=10_000).contains(&c.max_waiting) {
            return Err(invalid("control.max_waiting", "must be 1..=10000"));
        }
        if !(1..=c.max_waiting).contains(&c.max_waiting_per_source) {
            return Err(invalid(
                "control.max_waiting_per_source",
                "must be 1..=max_waiting",
            ));
        }
        Ok(())
    }

    /// The login secret: the password, or the password file's content.
    pub fn secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        if let Some(path) = &self.password_file {
            return read_secret_file(path, "control.password_file").map(Some);
        }
        match &self.password {
            Some(p) if p.is_empty() => Err(invalid("control.password", "is empty")),
            Some(p) => Ok(Some(p.as_bytes().to_vec())),
            None => Ok(None),
        }
    }
}
