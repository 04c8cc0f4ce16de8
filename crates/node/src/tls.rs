//! TLS for the control connection: a server acceptor from PEM files, and a client
//! configuration that trusts exactly one certificate.
//!
//! rustls with the `ring` provider only (chosen explicitly, never the process default,
//! so another crate enabling a second provider cannot change what this node negotiates).
//! Protocol versions are rustls' safe defaults (TLS 1.3 and 1.2). No client certificates:
//! the control peer authenticates with the login in [`scnf_core::control::auth`].
//!
//! The acceptor yields a stream that implements `AsyncRead + AsyncWrite`, so the
//! WebSocket layer runs over it unchanged.
//!
//! Errors name the file (or say "PEM bytes" when given bytes) and what was wrong, so an
//! operator can fix a configuration from the log line alone.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

/// Why a TLS configuration could not be built. `origin` is a file path, or
/// `"certificate PEM bytes"` / `"key PEM bytes"` for in-memory input.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{origin}: not valid PEM: {detail}")]
    BadPem { origin: String, detail: String },
    #[error("{origin}: no certificate found (expected a BEGIN CERTIFICATE block)")]
    NoCertificate { origin: String },
    #[error("{origin}: certificate is not valid DER: {reason}")]
    BadCertificate { origin: String, reason: String },
    #[error("{origin}: no private key found (expected a PKCS#8, RSA or SEC1 PRIVATE KEY block)")]
    NoKey { origin: String },
    #[error("{origin}: private key rejected: {reason}")]
    BadKey { origin: String, reason: String },
    #[error("private key in {key_origin} does not belong to the certificate in {cert_origin}")]
    KeyMismatch {
        cert_origin: String,
        key_origin: String,
    },
    #[error("trusted certificate rejected: {reason}")]
    BadTrustAnchor { reason: String },
    #[error("TLS configuration failed: {reason}")]
    Config { reason: String },
}

/// Loads a PEM certificate chain (leaf first) and private key (PKCS#8, RSA or SEC1)
/// from files into an acceptor.
pub fn acceptor(cert_pem: &Path, key_pem: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let (cert_bytes, key_bytes) = (read(cert_pem)?, read(key_pem)?);
    build_acceptor(
        &cert_bytes,
        &cert_pem.display().to_string(),
        &key_bytes,
        &key_pem.display().to_string(),
    )
}

/// Same as [`acceptor`], from PEM bytes (tests, embedded use).
pub fn acceptor_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, TlsError> {
    build_acceptor(cert_pem, "certificate PEM bytes", key_pem, "key PEM bytes")
}

/// A client configuration that trusts exactly `ca_der` (one DER certificate, which may
/// be the node's self-signed certificate itself) and nothing else: no system roots.
/// For tests and tools that talk to a node with a private certificate.
pub fn client_config_trusting(ca_der: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| TlsError::BadTrustAnchor {
            reason: e.to_string(),
        })?;
    client_config(roots)
}

/// A client configuration that trusts every certificate in the PEM file `ca_pem`
/// and nothing else (a scaler's private CA, or the system bundle). For the node's
/// outbound link to a wss:// scaler.
pub fn client_config_from_ca_file(ca_pem: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let bytes = std::fs::read(ca_pem).map_err(|source| TlsError::Read {
        path: ca_pem.to_path_buf(),
        source,
    })?;
    let origin = ca_pem.display().to_string();
    let mut roots = RootCertStore::empty();
    for cert in parse_chain(&bytes, &origin)? {
        roots.add(cert).map_err(|e| TlsError::BadTrustAnchor {
            reason: format!("{origin}: {e}"),
        })?;
    }
    client_config(roots)
}

/// A client configuration trusting `roots` only.
fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn build_acceptor(
    cert_pem: &[u8],
    cert_origin: &str,
    key_pem: &[u8],
    key_origin: &str,
) -> Result<TlsAcceptor, TlsError> {
    let chain = parse_chain(cert_pem, cert_origin)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            origin: key_origin.to_string(),
        },
        other => TlsError::BadPem {
            origin: key_origin.to_string(),
            detail: other.to_string(),
        },
    })?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert_origin: cert_origin.to_string(),
                    key_origin: key_origin.to_string(),
                }
            }
            rustls::Error::InvalidCertificate(_) => TlsError::BadCertificate {
                origin: cert_origin.to_string(),
                reason: e.to_string(),
            },
            other => TlsError::BadKey {
                origin: key_origin.to_string(),
                reason: other.to_string(),
            },
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate block in `pem`, in order; other block types (a key bundled in the
/// same file) are skipped.
fn parse_chain(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            origin: origin.to_string(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            origin: origin.to_string(),
        });
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsConnector;

    /// A fresh self-signed certificate for "localhost": (cert PEM, key PEM, cert DER).
    fn self_signed() -> (String, String, Vec<u8>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("rcgen makes a certificate for a plain DNS name");
        (
            ck.cert.pem(),
            ck.signing_key.serialize_pem(),
            ck.cert.der().to_vec(),
        )
    }

    /// Runs one TLS exchange over loopback: the server echoes what it reads, upper-cased.
    /// Returns what the client read back, or the client's handshake error.
    async fn exchange(acceptor: TlsAcceptor, client: Arc<ClientConfig>) -> io::Result<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut tls = acceptor.accept(tcp).await?;
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await?;
            tls.write_all(&buf.to_ascii_uppercase()).await?;
            tls.shutdown().await?;
            io::Result::Ok(())
        });
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("a valid DNS name");
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        tls.write_all(b"hello").await?;
        let mut back = Vec::new();
        tls.read_to_end(&mut back).await?;
        server.await.expect("server task does not panic")?;
        Ok(back)
    }

    #[tokio::test]
    async fn bytes_round_trip_over_tls_with_a_self_signed_certificate() {
        let (cert, key, der) = self_signed();
        let acceptor = acceptor_from_pem(cert.as_bytes(), key.as_bytes()).expect("valid PEM");
        let client = client_config_trusting(&der).expect("valid DER");
        let back = exchange(acceptor, client)
            .await
            .expect("handshake and echo");
        assert_eq!(back, b"HELLO");
    }

    #[tokio::test]
    async fn a_client_trusting_a_different_certificate_fails_the_handshake() {
        let (cert, key, _) = self_signed();
        let (_, _, other_der) = self_signed();
        let acceptor = acceptor_from_pem(cert.as_bytes(), key.as_bytes()).expect("valid PEM");
        let client = client_config_trusting(&other_der).expect("valid DER");
        let err = exchange(acceptor, client)
            .await
            .expect_err("untrusted certificate");
        let text = err.to_string().to_lowercase();
        assert!(
            text.contains("certificate"),
            "handshake error names the certificate: {err}"
        );
    }

    #[tokio::test]
    async fn the_acceptor_loads_certificate_and_key_files() {
        let dir = TestDir::new("files");
        let (cert, key, der) = self_signed();
        let (cert_path, key_path) = (dir.write("node.crt", &cert), dir.write("node.key", &key));
        let acceptor = acceptor(&cert_path, &key_path).expect("valid files");
        let back = exchange(acceptor, client_config_trusting(&der).expect("valid DER")).await;
        assert_eq!(back.expect("handshake and echo"), b"HELLO");
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let dir = TestDir::new("missing");
        let (_, key, _) = self_signed();
        let key_path = dir.write("node.key", &key);
        let missing = dir.0.join("absent.crt");
        let err = acceptor(&missing, &key_path).refused("file does not exist");
        assert!(
            matches!(&err, TlsError::Read { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("absent.crt"), "{err}");
    }

    #[test]
    fn garbage_and_misplaced_pem_give_the_matching_error() {
        let dir = TestDir::new("garbage");
        let (cert, key, _) = self_signed();
        let (cert_path, key_path) = (dir.write("node.crt", &cert), dir.write("node.key", &key));
        let garbage = dir.write("garbage.pem", "this is not PEM at all\n");
        let swapped = dir.write("swapped.pem", &key);

        let err = acceptor(&garbage, &key_path).refused("no certificate");
        assert!(
            matches!(&err, TlsError::NoCertificate { origin } if origin.contains("garbage.pem"))
        );
        let err = acceptor(&swapped, &key_path).refused("a key where the certificate goes");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        let err = acceptor(&cert_path, &garbage).refused("no key");
        assert!(matches!(&err, TlsError::NoKey { origin } if origin.contains("garbage.pem")));
        let err = acceptor(&cert_path, &cert_path).refused("a certificate where the key goes");
        assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    }

    #[test]
    fn broken_base64_and_unusable_keys_are_reported_as_such() {
        let (cert, key, _) = self_signed();
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let err = acceptor_from_pem(broken.as_bytes(), key.as_bytes()).refused("bad base64");
        assert!(matches!(err, TlsError::BadPem { .. }), "{err:?}");

        let junk_key = "-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n";
        let err = acceptor_from_pem(cert.as_bytes(), junk_key.as_bytes()).refused("junk key");
        assert!(matches!(&err, TlsError::BadKey { origin, .. } if origin == "key PEM bytes"));
    }

    #[test]
    fn a_key_that_does_not_belong_to_the_certificate_is_refused() {
        let (cert, _, _) = self_signed();
        let (_, other_key, _) = self_signed();
        let err = acceptor_from_pem(cert.as_bytes(), other_key.as_bytes()).refused("mismatch");
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    }

    #[test]
    fn a_trust_anchor_that_is_not_a_certificate_is_refused() {
        let err = client_config_trusting(b"not DER").expect_err("garbage anchor");
        assert!(matches!(err, TlsError::BadTrustAnchor { .. }), "{err:?}");
    }

    /// `expect_err` for acceptors, which do not implement `Debug`.
    trait Refused {
        fn refused(self, why: &str) -> TlsError;
    }

    impl Refused for Result<TlsAcceptor, TlsError> {
        fn refused(self, why: &str) -> TlsError {
            match self {
                Ok(_) => panic!("acceptor built, but expected a refusal: {why}"),
                Err(e) => e,
            }
        }
    }

    /// A scratch directory removed on drop; unique per test and process.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("scnf-tls-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir is writable");
            TestDir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("temp dir is writable");
            path
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
