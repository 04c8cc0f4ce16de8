//! The two sides of the login as sans-IO state machines, run by whatever transport
//! carries the protocol.
//!
//! - [`LoginServer`] is a node's (later a scaler's) side for all its connections: it
//!   issues challenges, checks `AppLogin`, proves the secret back, and limits failed
//!   attempts per peer. Each connection keeps its own [`Challenges`].
//! - [`LoginClient`] is a controller's side (and a node's, when it logs in to a
//!   scaler): it builds `AppChallenge` and `AppLogin` and checks the server's proof.
//!
//! Neither reads the clock or the OS: `now`, the client's nonce and the server's
//! challenge seed are inputs. Challenges come from [`ChallengeSource`], an HMAC-SHA256
//! counter generator keyed by 32 bytes the shell draws once from the OS: unpredictable
//! to a peer, reproducible in a test.

use super::auth::{client_digest, verify_proof, Challenges, LoginConfig, RateLimiter};
use super::msg::{ClientMsg, ServerMsg, PROTOCOL_VERSION};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::time::Instant;

/// Unpredictable 16-byte challenges from a 32-byte seed: challenge `i` is the first
/// half of HMAC-SHA256(seed, "scnf-challenge" ‖ i). Without the seed, the next
/// challenge cannot be told from random (HMAC is a PRF), and the counter never
/// repeats for the life of the process.
#[derive(Clone)]
pub struct ChallengeSource {
    key: [u8; 32],
    counter: u64,
}

impl ChallengeSource {
    /// `seed` must come from a CSPRNG (the shell reads the OS once).
    pub fn new(seed: [u8; 32]) -> ChallengeSource {
        ChallengeSource {
            key: seed,
            counter: 0,
        }
    }

    /// The next challenge's 16 bytes.
    pub fn next_bytes(&mut self) -> [u8; 16] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"scnf-challenge");
        mac.update(&self.counter.to_be_bytes());
        self.counter += 1;
        let out = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&out[..16]);
        bytes
    }
}

/// A 32-byte key for one purpose (`label`) from a root seed: HMAC-SHA256(seed,
/// label). Keys for different labels are independent: learning one (or output made
/// from it) tells nothing about another.
pub fn derive_key(seed: &[u8; 32], label: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(seed).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

/// What a login attempt did to the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Logged in, as `name`.
    LoggedIn { name: String },
    /// Still not logged in.
    Refused,
}

/// The server side of the login, for all connections of one node.
pub struct LoginServer {
    secret: Option<Vec<u8>>,
    cfg: LoginConfig,
    limiter: RateLimiter,
    source: ChallengeSource,
}

impl LoginServer {
    /// `secret = None`: sessions need no login (the shell allows that on loopback only).
    pub fn new(secret: Option<Vec<u8>>, cfg: LoginConfig, seed: [u8; 32]) -> LoginServer {
        LoginServer {
            limiter: RateLimiter::new(&cfg),
            secret,
            cfg,
            source: ChallengeSource::new(seed),
        }
    }

    /// Whether sessions must log in.
    pub fn required(&self) -> bool {
        self.secret.is_some()
    }

    /// Answers `AppChallenge` on a connection from `peer`.
    pub fn challenge(
        &mut self,
        now: Instant,
        peer: IpAddr,
        conn: &mut Challenges,
        version: Option<u32>,
    ) -> ServerMsg {
        if let Some(v) = version.filter(|&v| v != PROTOCOL_VERSION) {
            return ServerMsg::Error {
                error: format!(
                    "protocol version {v} is not supported (this node speaks {PROTOCOL_VERSION})"
                ),
                of: Some("AppChallenge".into()),
                call: None,
            };
        }
        // A locked-out peer gets no challenge either: it cannot even start trying.
        if self.secret.is_some() {
            if let Err(e) = self.limiter.check(now, peer) {
                return result(false, Some(e.code().into()), None);
            }
        }
        let challenge = conn.issue(now, self.source.next_bytes());
        ServerMsg::AppChallengeResult {
            challenge,
            version: PROTOCOL_VERSION,
        }
    }

    /// Answers `AppLogin` on a connection from `peer`.
    #[allow(clippy::too_many_arguments)] // mirrors the AppLogin fields one to one
    pub fn login(
        &mut self,
        now: Instant,
        peer: IpAddr,
        conn: &mut Challenges,
        name: &str,
        cnonce: &str,
        info: &str,
        digest: &str,
    ) -> (ServerMsg, Admission) {
        let Some(secret) = &self.secret else {
            let name = name.to_string();
            return (result(true, None, None), Admission::LoggedIn { name });
        };
        if let Err(e) = self.limiter.check(now, peer) {
            return (
                result(false, Some(e.code().into()), None),
                Admission::Refused,
            );
        }
        match conn.verify(now, &self.cfg, secret, name, cnonce, info, digest) {
            Ok(proof) => {
                self.limiter.record_success(peer);
                let name = name.to_string();
                (
                    result(true, None, Some(proof)),
                    Admission::LoggedIn { name },
                )
            }
            Err(e) => {
                self.limiter.record_failure(now, peer);
                tracing::warn!(%peer, name, %e, "control login refused");
                (
                    result(false, Some(e.code().into()), None),
                    Admission::Refused,
                )
            }
        }
    }
}

fn result(ok: bool, error: Option<String>, proof: Option<String>) -> ServerMsg {
    ServerMsg::AppLoginResult {
        ok,
        error,
        proof,
        version: PROTOCOL_VERSION,
        token: None,
        resumed: false,
        resume_error: None,
    }
}

/// Whether the server proved that it knows the secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerAuth {
    /// It did (`proof` verified).
    Proven,
    /// It has no password and sent no proof.
    Open,
}

/// Why a client-side login failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientLoginError {
    /// The server refused (wrong secret, rate limited, expired challenge, ...).
    #[error("login failed: {error}")]
    Refused { error: String },
    /// The server's proof does not verify: it does not know the secret.
    #[error("the server's login proof does not verify")]
    BadProof,
    /// An answer came that does not fit the login's state.
    #[error("unexpected {got} during the login")]
    Unexpected { got: &'static str },
}

/// The client side of one login: `start()` → send; feed each answer to
/// [`LoginClient::handle`] until it returns a verdict.
pub struct LoginClient {
    name: String,
    secret: Vec<u8>,
    info: String,
    resume: Option<String>,
    state: ClientState,
}

enum ClientState {
    Idle,
    Challenged,
    LoggingIn {
        challenge: String,
        cnonce: String,
        digest: String,
    },
    Done,
}

/// What the client does next.
#[derive(Debug, PartialEq)]
pub enum ClientStep {
    /// Send this message and feed the answer back.
    Send(ClientMsg),
    /// The login is over.
    Done(Result<ServerAuth, ClientLoginError>),
}

impl LoginClient {
    pub fn new(name: &str, secret: &[u8], info: &str) -> LoginClient {
        LoginClient {
            name: name.into(),
            secret: secret.to_vec(),
            info: info.into(),
            resume: None,
            state: ClientState::Idle,
        }
    }

    /// Asks the login to resume the controller of an earlier login's `token`
    /// (`AppLogin.resume`; see `docs/control-protocol.md`).
    pub fn resume(&mut self, token: &str) {
        self.resume = Some(token.into());
    }

    /// The first message: `AppChallenge`.
    pub fn start(&mut self) -> ClientMsg {
        self.state = ClientState::Challenged;
        ClientMsg::AppChallenge {
            version: Some(PROTOCOL_VERSION),
        }
    }

    /// Feeds the server's answer. `cnonce` is the client's fresh nonce for the
    /// `AppLogin` (random from the shell; used only when the answer is a challenge).
    pub fn handle(&mut self, answer: &ServerMsg, cnonce: &str) -> ClientStep {
        let state = std::mem::replace(&mut self.state, ClientState::Done);
        match (state, answer) {
            (ClientState::Challenged, ServerMsg::AppChallengeResult { challenge, .. }) => {
                let digest = client_digest(&self.secret, &self.name, challenge, cnonce, &self.info);
                let msg = ClientMsg::AppLogin {
                    name: self.name.clone(),
                    cnonce: cnonce.into(),
                    info: self.info.clone(),
                    digest: digest.clone(),
                    resume: self.resume.clone(),
                };
                self.state = ClientState::LoggingIn {
                    challenge: challenge.clone(),
                    cnonce: cnonce.into(),
                    digest,
                };
                ClientStep::Send(msg)
            }
            // A locked-out peer is refused at the challenge already.
            (ClientState::Challenged, ServerMsg::AppLoginResult { error, .. }) => {
                ClientStep::Done(Err(refused(error)))
            }
            (
                ClientState::LoggingIn {
                    challenge,
                    cnonce,
                    digest,
                },
                ServerMsg::AppLoginResult {
                    ok, error, proof, ..
                },
            ) => ClientStep::Done(if !ok {
                Err(refused(error))
            } else {
                match proof {
                    None => Ok(ServerAuth::Open),
                    Some(proof) => {
                        let valid = verify_proof(
                            &self.secret,
                            &self.name,
                            &challenge,
                            &cnonce,
                            &self.info,
                            &digest,
                            proof,
                        );
                        if valid {
                            Ok(ServerAuth::Proven)
                        } else {
                            Err(ClientLoginError::BadProof)
                        }
                    }
                }
            }),
            (_, other) => ClientStep::Done(Err(ClientLoginError::Unexpected {
                got: server_mt(other),
            })),
        }
    }
}

fn refused(error: &Option<String>) -> ClientLoginError {
    ClientLoginError::Refused {
        error: error.clone().unwrap_or_else(|| "refused".into()),
    }
}

fn server_mt(msg: &ServerMsg) -> &'static str {
    match msg {
        ServerMsg::AppChallengeResult { .. } => "AppChallengeResult",
        ServerMsg::AppLoginResult { .. } => "AppLoginResult",
        ServerMsg::Error { .. } => "Error",
        _ => "a message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"login-test-secret";

    fn peer() -> IpAddr {
        "192.0.2.1".parse().unwrap()
    }

    /// Runs a whole login between a client and a server, message by message.
    fn exchange(
        server: &mut LoginServer,
        client_secret: &[u8],
        now: Instant,
    ) -> (Result<ServerAuth, ClientLoginError>, Admission) {
        let mut conn = Challenges::new();
        let mut client = LoginClient::new("pbx", client_secret, "test/1");
        let ClientMsg::AppChallenge { version } = client.start() else {
            panic!("a login starts with AppChallenge");
        };
        let answer = server.challenge(now, peer(), &mut conn, version);
        let ClientStep::Send(ClientMsg::AppLogin {
            name,
            cnonce,
            info,
            digest,
            ..
        }) = client.handle(&answer, "c0ffee")
        else {
            panic!("a challenge is answered with AppLogin");
        };
        let (answer, admission) =
            server.login(now, peer(), &mut conn, &name, &cnonce, &info, &digest);
        let ClientStep::Done(verdict) = client.handle(&answer, "unused") else {
            panic!("the login result ends the login");
        };
        (verdict, admission)
    }

    #[test]
    fn a_client_with_the_secret_logs_in_and_the_server_proves_it_back() {
        let mut server = LoginServer::new(Some(SECRET.to_vec()), LoginConfig::default(), [1; 32]);
        let (verdict, admission) = exchange(&mut server, SECRET, scnf_media::testclock::anchor());
        assert_eq!(verdict, Ok(ServerAuth::Proven));
        assert_eq!(admission, Admission::LoggedIn { name: "pbx".into() });
    }

    #[test]
    fn a_wrong_secret_is_refused_on_both_sides() {
        let mut server = LoginServer::new(Some(SECRET.to_vec()), LoginConfig::default(), [2; 32]);
        let (verdict, admission) = exchange(
            &mut server,
            b"not-the-secret",
            scnf_media::testclock::anchor(),
        );
        assert!(
            matches!(verdict, Err(ClientLoginError::Refused { .. })),
            "{verdict:?}"
        );
        assert_eq!(admission, Admission::Refused);
    }

    /// The `error` of each refusal, as the node sends it.
    fn refusal(reply: &ServerMsg) -> &str {
        let ServerMsg::AppLoginResult {
            ok: false, error, ..
        } = reply
        else {
            panic!("a refusal: {reply:?}");
        };
        error.as_deref().expect("a refusal carries a code")
    }

    #[test]
    fn refusals_carry_the_documented_codes_not_the_log_sentence() {
        let cfg = LoginConfig {
            max_failures: 3,
            ..LoginConfig::default()
        };
        let ttl = cfg.challenge_ttl;
        let mut server = LoginServer::new(Some(SECRET.to_vec()), cfg, [6; 32]);
        let t0 = scnf_media::testclock::anchor();
        let mut conn = Challenges::new();
        let digest = "ab".repeat(32);
        let (r, _) = server.login(t0, peer(), &mut conn, "pbx", "n", "", &digest);
        assert_eq!(refusal(&r), "no-challenge");
        server.challenge(t0, peer(), &mut conn, None);
        let (r, _) = server.login(t0, peer(), &mut conn, "pbx", "n", "", "xyz");
        assert_eq!(refusal(&r), "malformed");
        server.challenge(t0, peer(), &mut conn, None);
        let late = t0 + ttl;
        let (r, _) = server.login(late, peer(), &mut conn, "pbx", "n", "", &digest);
        assert_eq!(refusal(&r), "challenge-expired");
        // Three failures lock the peer out: the fourth attempt is refused unread,
        // and so is a new challenge.
        let other: IpAddr = "192.0.2.77".parse().unwrap();
        let mut conn = Challenges::new();
        for _ in 0..3 {
            server.challenge(t0, other, &mut conn, None);
            let (r, _) = server.login(t0, other, &mut conn, "pbx", "n", "", &digest);
            assert_eq!(refusal(&r), "bad-digest");
        }
        let (r, _) = server.login(t0, other, &mut conn, "pbx", "n", "", &digest);
        assert_eq!(refusal(&r), "rate-limited");
        let r = server.challenge(t0, other, &mut conn, None);
        assert_eq!(refusal(&r), "rate-limited");
    }

    #[test]
    fn a_server_without_a_password_is_open_and_sends_no_proof() {
        let mut server = LoginServer::new(None, LoginConfig::default(), [3; 32]);
        let (verdict, admission) = exchange(&mut server, SECRET, scnf_media::testclock::anchor());
        assert_eq!(verdict, Ok(ServerAuth::Open));
        assert_eq!(admission, Admission::LoggedIn { name: "pbx".into() });
    }

    #[test]
    fn a_forged_proof_fails_the_client() {
        let mut client = LoginClient::new("pbx", SECRET, "test/1");
        client.start();
        let challenge = ServerMsg::AppChallengeResult {
            challenge: "00".repeat(16),
            version: PROTOCOL_VERSION,
        };
        assert!(matches!(
            client.handle(&challenge, "n1"),
            ClientStep::Send(_)
        ));
        let forged = result(true, None, Some("ab".repeat(32)));
        assert_eq!(
            client.handle(&forged, "n2"),
            ClientStep::Done(Err(ClientLoginError::BadProof))
        );
    }

    #[test]
    fn an_answer_out_of_turn_ends_the_login_with_an_error() {
        let mut client = LoginClient::new("pbx", SECRET, "test/1");
        client.start();
        let stray = ServerMsg::Error {
            error: "bad".into(),
            of: None,
            call: None,
        };
        let step = client.handle(&stray, "n");
        assert_eq!(
            step,
            ClientStep::Done(Err(ClientLoginError::Unexpected { got: "Error" }))
        );
    }

    #[test]
    fn derived_keys_differ_by_label_and_are_reproducible() {
        let seed = [4; 32];
        assert_eq!(derive_key(&seed, "login"), derive_key(&seed, "login"));
        assert_ne!(derive_key(&seed, "login"), derive_key(&seed, "rooms"));
        assert_ne!(derive_key(&seed, "login"), derive_key(&[5; 32], "login"));
    }

    #[test]
    fn challenges_are_reproducible_from_the_seed_and_never_repeat() {
        let mut a = ChallengeSource::new([9; 32]);
        let mut b = ChallengeSource::new([9; 32]);
        let mut c = ChallengeSource::new([8; 32]);
        let first: Vec<[u8; 16]> = (0..100).map(|_| a.next_bytes()).collect();
        let again: Vec<[u8; 16]> = (0..100).map(|_| b.next_bytes()).collect();
        assert_eq!(first, again);
        let mut unique = first.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 100);
        assert_ne!(c.next_bytes(), first[0]);
    }
}
