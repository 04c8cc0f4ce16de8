//! `[scaler]`: the node's outbound link to a scaler (`scnf node --scaler ws://…`).
//!
//! Unset `url`: a standalone node. Set: the node dials the scaler, logs in with the
//! cluster secret and registers (see [`crate::scaler_link`]); its own control
//! listener stays available either way.

use super::{invalid, read_secret_file, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Longest node name (the login's `name` field allows 256 bytes; a name shows in
/// every scaler log line and `Status`, so keep it short).
pub const MAX_NAME: usize = 64;

/// `[scaler]`: where the node registers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScalerSection {
    /// The scaler's node face, `ws://host:port` or `wss://host:port`. Default none
    /// (a standalone node).
    pub url: Option<String>,
    /// The cluster secret (HMAC key; never sent). Default none. Prefer
    /// `SCNF_SCALER_PASSWORD` or `password_file`.
    pub password: Option<String>,
    /// File holding the cluster secret (one trailing newline ignored). Default none.
    pub password_file: Option<PathBuf>,
    /// PEM file of the certificate(s) to trust for `wss://`. Default: the system
    /// bundle `/etc/ssl/certs/ca-certificates.crt`.
    pub ca_file: Option<PathBuf>,
    /// This node's name in the cluster, unique there. Default
    /// `scnf-<last 3 bytes of the media interface's MAC>-1`, or `scnf-<hostname>-1`
    /// when that interface has no MAC (loopback).
    pub name: Option<String>,
}

/// A parsed scaler URL: what to dial and what to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalerUrl {
    /// `wss://`.
    pub tls: bool,
    /// Host name or IP, without IPv6 brackets (what TLS checks the certificate for).
    pub host: String,
    /// Default 80 for ws, 443 for wss.
    pub port: u16,
    /// The URL as given (the WebSocket request's URI).
    pub text: String,
}

/// Parses `ws://host[:port][/path]` or `wss://…`.
pub fn parse_scaler_url(s: &str) -> Result<ScalerUrl, String> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("ws://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("wss://") {
        (true, r)
    } else {
        return Err(format!("{s:?} is not a ws:// or wss:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!(
            "{s:?}: credentials do not go in the URL (use the password file)"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed [ in the host"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{s:?}: junk after the IPv6 host"))?,
            ),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} names no host"));
    }
    let port = match port {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("{s:?}: bad port {p:?}")),
            Ok(p) => p,
        },
    };
    Ok(ScalerUrl {
        tls,
        host: host.to_string(),
        port,
        text: s.to_string(),
    })
}

/// Whether `name` can be a node name: 1 to [`MAX_NAME`] bytes of printable ASCII
/// without spaces (it travels in logs and JSON, and operators type it).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("must be 1 to {MAX_NAME} bytes, got {}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{name:?}: {c:?} is not a printable ASCII character"
        ));
    }
    Ok(())
}

impl ScalerSection {
    /// Checks the section (called from [`super::Config::validate`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(name) = &self.name {
            check_name(name).map_err(|m| invalid("scaler.name", m))?;
        }
        let Some(url) = &self.url else {
            return Ok(());
        };
        let url = parse_scaler_url(url).map_err(|m| invalid("scaler.url", m))?;
        match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "scaler.password/password_file",
                    "set one of them, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "scaler.password",
                    "a scaler link needs the cluster secret (scaler.password_file, \
                     --scaler-password-file or SCNF_SCALER_PASSWORD)",
                ))
            }
            (Some(p), None) if p.is_empty() => {
                return Err(invalid(
                    "scaler.password",
                    "is empty: an empty secret is no secret",
                ))
            }
            _ => {}
        }
        if self.ca_file.is_some() && !url.tls {
            return Err(invalid(
                "scaler.ca_file",
                "only a wss:// scaler URL uses a CA file",
            ));
        }
        Ok(())
    }

    /// The parsed URL, `None` for a standalone node. Only after `validate`.
    pub fn parsed_url(&self) -> Result<Option<ScalerUrl>, ConfigError> {
        self.url
            .as_deref()
            .map(|u| parse_scaler_url(u).map_err(|m| invalid("scaler.url", m)))
            .transpose()
    }

    /// The cluster secret: the password, or the password file's content.
    pub fn secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        if let Some(path) = &self.password_file {
            return read_secret_file(path, "scaler.password_file").map(Some);
        }
        match &self.password {
            Some(p) if p.is_empty() => Err(invalid("scaler.password", "is empty")),
            Some(p) => Ok(Some(p.as_bytes().to_vec())),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};
    use std::path::Path;

    #[test]
    fn scaler_urls_parse_into_what_to_dial() {
        let cases: &[(&str, bool, &str, u16)] = &[
            ("ws://127.0.0.1:7871", false, "127.0.0.1", 7871),
            ("ws://127.0.0.1:7871/", false, "127.0.0.1", 7871),
            (
                "wss://scaler.example:9443/nodes",
                true,
                "scaler.example",
                9443,
            ),
            ("ws://scaler", false, "scaler", 80),
            ("wss://scaler", true, "scaler", 443),
            ("ws://[::1]:7871", false, "::1", 7871),
            ("wss://[2001:db8::1]", true, "2001:db8::1", 443),
        ];
        for &(text, tls, host, port) in cases {
            let u = parse_scaler_url(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (u.tls, u.host.as_str(), u.port),
                (tls, host, port),
                "{text}"
            );
            assert_eq!(u.text, text);
        }
    }

    #[test]
    fn bad_scaler_urls_say_what_is_wrong() {
        for (text, says) in [
            ("http://x:1", "ws://"),
            ("127.0.0.1:7871", "ws://"),
            ("ws://", "no host"),
            ("ws://:7871", "no host"),
            ("ws://x:0", "bad port"),
            ("ws://x:99999", "bad port"),
            ("ws://x:port", "bad port"),
            ("ws://[::1", "unclosed"),
            ("ws://user:pw@x:1", "credentials"),
        ] {
            let err = parse_scaler_url(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn node_names_are_short_printable_and_without_spaces() {
        assert!(check_name("scnf-08-03-01-1").is_ok());
        assert!(check_name("IP800-08-03-01-TEL2").is_ok());
        for bad in ["", "a b", "tab\t", "ünï", &"x".repeat(MAX_NAME + 1)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_flags_and_the_file_configure_the_link() {
        let mut cfg = Config::from_toml(
            "[scaler]\nurl = \"ws://10.0.0.1:7871\"\npassword = \"from-file\"\nname = \"n1\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.scaler.secret().unwrap().unwrap(), b"from-file");
        cfg.apply(&Overrides {
            scaler: Some("wss://s.example:9443".into()),
            scaler_ca: Some("/etc/scnf/ca.pem".into()),
            node_name: Some("n2".into()),
            ..Overrides::default()
        });
        cfg.validate().unwrap();
        let url = cfg.scaler.parsed_url().unwrap().unwrap();
        assert!(url.tls);
        assert_eq!(cfg.scaler.name.as_deref(), Some("n2"));
        assert_eq!(
            cfg.scaler.ca_file.as_deref(),
            Some(Path::new("/etc/scnf/ca.pem"))
        );
    }

    #[test]
    fn a_password_file_beats_a_password_from_the_file_and_drops_its_newline() {
        let file = std::env::temp_dir().join(format!("scnf-scaler-secret-{}", std::process::id()));
        std::fs::write(&file, "cluster-secret\n").unwrap();
        let mut cfg = Config::from_toml(
            "[scaler]\nurl = \"ws://10.0.0.1:7871\"\npassword = \"x\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        // A file given by flag replaces a password from the file: one secret source.
        cfg.apply(&Overrides {
            scaler_password_file: Some(file.clone()),
            ..Overrides::default()
        });
        cfg.validate().unwrap();
        assert_eq!(cfg.scaler.secret().unwrap().unwrap(), b"cluster-secret");
        std::fs::write(&file, "\n").unwrap();
        let err = cfg.scaler.secret().unwrap_err().to_string();
        assert!(
            err.contains("scaler.password_file") && err.contains("empty"),
            "{err}"
        );
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn bad_scaler_sections_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                "[scaler]\nurl = \"http://x:1\"\npassword = \"s\"\n",
                "scaler.url",
            ),
            ("[scaler]\nurl = \"ws://x:1\"\n", "scaler.password"),
            (
                "[scaler]\nurl = \"ws://x:1\"\npassword = \"\"\n",
                "scaler.password",
            ),
            (
                "[scaler]\nurl = \"ws://x:1\"\npassword = \"s\"\npassword_file = \"/p\"\n",
                "scaler.password/password_file",
            ),
            (
                "[scaler]\nurl = \"ws://x:1\"\npassword = \"s\"\nca_file = \"/ca.pem\"\n",
                "scaler.ca_file",
            ),
            ("[scaler]\nname = \"two words\"\n", "scaler.name"),
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
    fn without_a_url_the_node_is_standalone() {
        let cfg = Config::default();
        assert_eq!(cfg.scaler.parsed_url().unwrap(), None);
        cfg.validate().unwrap();
    }
}
