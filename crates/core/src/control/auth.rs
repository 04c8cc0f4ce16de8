//! Control-connection login: HMAC-SHA256 challenge/response with a server proof, and a
//! per-node limiter for failed attempts.
//!
//! # Flow
//! Client `AppChallenge` → node `AppChallengeResult {challenge}` (from
//! [`Challenges::issue`]) → client `AppLogin {name, cnonce, info, digest}` → node checks it
//! with [`Challenges::verify`] and answers `AppLoginResult {ok, error, proof}`. The exact
//! byte layout, a worked example and the reasoning are in `docs/login.md`; a test keeps
//! that example and this code in agreement.
//!
//! # Contract
//! Sans-IO: nothing here reads the clock or the OS random source. `now` and the 16
//! random challenge bytes are arguments; the shell draws them from the OS (the
//! project's `util::Rng` is seeded and predictable, so it must never feed a challenge).
//!
//! Invariants:
//! - a challenge is single-use: [`Challenges::verify`] consumes it whatever the outcome,
//!   so one challenge admits at most one guess;
//! - digests are compared in constant time (the MAC crate's `verify_slice`);
//! - the [`RateLimiter`] (in `control::ratelimit`, re-exported here) holds at most
//!   `max_tracked_peers` entries, whatever the traffic.
//!
//! # Departure from the ecosystem
//! The message names are the vendor's; the digest is not. The vendor hashes colon-joined
//! fields with plain SHA-256, which is ambiguous (a `:` inside a field moves bytes
//! between fields), gives the client no way to tell a real node from an impostor, and
//! makes the stored value password-equivalent. See `docs/login.md`.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use super::hex;
pub use super::ratelimit::RateLimiter;

type HmacSha256 = Hmac<Sha256>;

/// Protocol version string; the first field of every signed message, so a future
/// construction can never produce a digest that verifies under this one.
pub const LOGIN_VERSION: &str = "scnf-login-1";

/// Upper bound on `name`, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Upper bound on `cnonce`, in bytes.
pub const MAX_CNONCE_LEN: usize = 256;
/// Upper bound on `info`, in bytes (free-form client description).
pub const MAX_INFO_LEN: usize = 4096;

/// Why a login (or an attempt to start one) was refused.
///
/// `Display` is a human sentence for logs; [`LoginError::code`] is the stable short
/// string for the `error` field of `AppLoginResult`.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum LoginError {
    /// `AppLogin` arrived with no outstanding challenge on this connection (none asked
    /// for, or already used by an earlier attempt).
    #[error("no outstanding challenge; send AppChallenge first")]
    NoChallenge,
    /// The challenge was older than `challenge_ttl` when the login arrived.
    #[error("challenge expired; request a new one")]
    ChallengeExpired,
    /// The digest does not match: wrong secret, or fields changed in transit.
    #[error("digest does not match")]
    BadDigest,
    /// A field is out of bounds or not in the expected form.
    #[error("malformed login: {0}")]
    Malformed(&'static str),
    /// Too many recent failures from this peer's address.
    #[error("too many failed logins; retry in {} s", ceil_secs(*retry_after))]
    RateLimited { retry_after: Duration },
}

impl LoginError {
    /// Stable machine-readable code for the wire (`AppLoginResult.error`).
    pub fn code(&self) -> &'static str {
        match self {
            LoginError::NoChallenge => "no-challenge",
            LoginError::ChallengeExpired => "challenge-expired",
            LoginError::BadDigest => "bad-digest",
            LoginError::Malformed(_) => "malformed",
            LoginError::RateLimited { .. } => "rate-limited",
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Login policy. Every field states its unit and default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginConfig {
    /// How long an issued challenge stays valid. Default 30 s.
    pub challenge_ttl: Duration,
    /// Failures within `failure_window` that lock a peer out. Default 5 (0 acts as 1).
    pub max_failures: u32,
    /// The window failures are counted in, from the first failure. Default 60 s.
    pub failure_window: Duration,
    /// How long a locked-out peer is refused. Default 60 s.
    pub lockout: Duration,
    /// Most peers the limiter remembers; the oldest is forgotten first. Default 4096
    /// (0 acts as 1).
    pub max_tracked_peers: usize,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            challenge_ttl: Duration::from_secs(30),
            max_failures: 5,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
            max_tracked_peers: 4096,
        }
    }
}

/// The bytes the MAC covers: `lp(LOGIN_VERSION) ‖ lp(label) ‖ lp(field)…`, where
/// `lp(x)` is `x`'s length as 4 bytes big-endian followed by `x`.
///
/// # Panics
/// If a field is 4 GiB or longer. [`Challenges::verify`] bounds every client field far
/// below that before calling; direct callers must do the same.
fn signed_message(label: &str, fields: &[&str]) -> Vec<u8> {
    let mut msg = Vec::new();
    for part in [LOGIN_VERSION, label].iter().chain(fields) {
        let len = u32::try_from(part.len()).expect("login fields are bounded far below 4 GiB");
        msg.extend_from_slice(&len.to_be_bytes());
        msg.extend_from_slice(part.as_bytes());
    }
    msg
}

fn keyed_mac(secret: &[u8], label: &str, fields: &[&str]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(&signed_message(label, fields));
    mac
}

/// The client's digest: HMAC-SHA256 keyed by `secret` over
/// `lp(LOGIN_VERSION) ‖ lp("client") ‖ lp(name) ‖ lp(challenge) ‖ lp(cnonce) ‖ lp(info)`,
/// as 64 lowercase hex characters.
pub fn client_digest(
    secret: &[u8],
    name: &str,
    challenge: &str,
    cnonce: &str,
    info: &str,
) -> String {
    let mac = keyed_mac(secret, "client", &[name, challenge, cnonce, info]);
    hex::encode(&mac.finalize().into_bytes())
}

/// The node's proof: the same construction with label `"server"` and the client's
/// digest (its hex text) appended as a sixth field. Only a holder of the secret can
/// produce it, and it is bound to this exact exchange, so a client that checks it knows
/// it is talking to a real node rather than one replaying or guessing.
pub fn server_proof(
    secret: &[u8],
    name: &str,
    challenge: &str,
    cnonce: &str,
    info: &str,
    client_digest: &str,
) -> String {
    let mac = keyed_mac(
        secret,
        "server",
        &[name, challenge, cnonce, info, client_digest],
    );
    hex::encode(&mac.finalize().into_bytes())
}

/// Client side: checks a node's `proof` in constant time. False for a wrong secret, any
/// changed field, or a proof that is not 64 hex characters.
pub fn verify_proof(
    secret: &[u8],
    name: &str,
    challenge: &str,
    cnonce: &str,
    info: &str,
    client_digest: &str,
    proof: &str,
) -> bool {
    let Ok(proof) = hex::decode_array::<32>(proof) else {
        return false;
    };
    keyed_mac(
        secret,
        "server",
        &[name, challenge, cnonce, info, client_digest],
    )
    .verify_slice(&proof)
    .is_ok()
}

/// Per connection: the outstanding challenge, if any.
///
/// At most one challenge exists at a time; issuing replaces it, and verifying consumes
/// it. Expiry is checked lazily at verification, so there is no timer to drive.
#[derive(Debug, Default)]
pub struct Challenges {
    outstanding: Option<Outstanding>,
}

#[derive(Debug)]
struct Outstanding {
    challenge: String,
    issued_at: Instant,
}

impl Challenges {
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues a challenge from 16 random bytes (which must come from a CSPRNG: the
    /// shell draws them from the OS): 32 lowercase hex characters. Any earlier challenge on
    /// this connection stops being valid.
    pub fn issue(&mut self, now: Instant, random: [u8; 16]) -> String {
        let challenge = hex::encode(&random);
        self.outstanding = Some(Outstanding {
            challenge: challenge.clone(),
            issued_at: now,
        });
        challenge
    }

    /// Whether a challenge is waiting for a login (expired or not).
    pub fn is_outstanding(&self) -> bool {
        self.outstanding.is_some()
    }

    /// Verifies an `AppLogin` against the outstanding challenge and, on success, returns
    /// the proof for `AppLoginResult`. The challenge is consumed whatever the outcome.
    ///
    /// Checks, in order: a challenge exists, the fields are well-formed, the challenge is
    /// younger than `cfg.challenge_ttl`, the digest matches (constant time).
    #[allow(clippy::too_many_arguments)] // mirrors the AppLogin fields one to one
    pub fn verify(
        &mut self,
        now: Instant,
        cfg: &LoginConfig,
        secret: &[u8],
        name: &str,
        cnonce: &str,
        info: &str,
        digest: &str,
    ) -> Result<String, LoginError> {
        let Outstanding {
            challenge,
            issued_at,
        } = self.outstanding.take().ok_or(LoginError::NoChallenge)?;
        check_fields(name, cnonce, info)?;
        let digest_bytes = hex::decode_array::<32>(digest)
            .map_err(|_| LoginError::Malformed("digest must be 64 hex characters"))?;
        if now.saturating_duration_since(issued_at) >= cfg.challenge_ttl {
            return Err(LoginError::ChallengeExpired);
        }
        keyed_mac(secret, "client", &[name, &challenge, cnonce, info])
            .verify_slice(&digest_bytes)
            .map_err(|_| LoginError::BadDigest)?;
        // Sign the canonical (lowercase) digest, whatever case the client sent.
        let canonical = hex::encode(&digest_bytes);
        Ok(server_proof(
            secret, name, &challenge, cnonce, info, &canonical,
        ))
    }
}

fn check_fields(name: &str, cnonce: &str, info: &str) -> Result<(), LoginError> {
    if name.is_empty() {
        return Err(LoginError::Malformed("name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(LoginError::Malformed("name is longer than 256 bytes"));
    }
    if cnonce.is_empty() {
        return Err(LoginError::Malformed("cnonce is empty"));
    }
    if cnonce.len() > MAX_CNONCE_LEN {
        return Err(LoginError::Malformed("cnonce is longer than 256 bytes"));
    }
    if info.len() > MAX_INFO_LEN {
        return Err(LoginError::Malformed("info is longer than 4096 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"example-shared-secret";
    const NAME: &str = "conference-app";
    const CHALLENGE: &str = "000102030405060708090a0b0c0d0e0f";
    const CNONCE: &str = "5f1e2d3c4b5a6978";
    const INFO: &str = "demo-client/1.0";
    /// Computed independently (Python's `hmac` module) when the construction was written.
    const EXAMPLE_DIGEST: &str = "3b18f6c68b2b4eb381306d619cc268f5e95ac26df918faf227afc788e076cf2a";
    const EXAMPLE_PROOF: &str = "b35361c37aa8a7f85062057a57e1133f4671f9e3f4b71517443e15a0aacfbae2";

    const LOGIN_DOC: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/login.md"));

    /// The body of the first ```text block after `heading` in docs/login.md.
    fn doc_block(heading: &str) -> &'static str {
        let after = LOGIN_DOC
            .split_once(heading)
            .expect("heading present in docs/login.md")
            .1;
        let body = after
            .split_once("```text\n")
            .expect("a text block follows the heading")
            .1;
        body.split_once("```").expect("the text block is closed").0
    }

    fn doc_value(block: &str, key: &str) -> String {
        let values: Vec<&str> = block
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim())
            .collect();
        assert_eq!(
            values.len(),
            1,
            "exactly one `{key} = ...` line in the worked example"
        );
        values[0].to_string()
    }

    fn issued(now: Instant) -> Challenges {
        let mut c = Challenges::new();
        c.issue(now, [7; 16]);
        c
    }

    /// The standard login fields against `c`, with the default configuration.
    fn login(c: &mut Challenges, at: Instant, digest: &str) -> Result<String, LoginError> {
        c.verify(
            at,
            &LoginConfig::default(),
            SECRET,
            NAME,
            CNONCE,
            INFO,
            digest,
        )
    }

    fn login_digest(challenges: &Challenges, secret: &[u8]) -> (String, String) {
        let challenge = challenges
            .outstanding
            .as_ref()
            .expect("a challenge was issued")
            .challenge
            .clone();
        let digest = client_digest(secret, NAME, &challenge, CNONCE, INFO);
        (challenge, digest)
    }

    #[test]
    fn the_worked_example_gives_the_independently_computed_digest_and_proof() {
        let digest = client_digest(SECRET, NAME, CHALLENGE, CNONCE, INFO);
        assert_eq!(digest, EXAMPLE_DIGEST);
        assert_eq!(
            server_proof(SECRET, NAME, CHALLENGE, CNONCE, INFO, &digest),
            EXAMPLE_PROOF
        );
    }

    #[test]
    fn the_worked_example_in_the_docs_matches_the_code() {
        let block = doc_block("## Worked example");
        let secret = doc_value(block, "secret");
        let (name, challenge) = (doc_value(block, "name"), doc_value(block, "challenge"));
        let (cnonce, info) = (doc_value(block, "cnonce"), doc_value(block, "info"));
        assert_eq!(
            (
                secret.as_bytes(),
                name.as_str(),
                challenge.as_str(),
                cnonce.as_str(),
                info.as_str()
            ),
            (SECRET, NAME, CHALLENGE, CNONCE, INFO)
        );
        let digest = client_digest(secret.as_bytes(), &name, &challenge, &cnonce, &info);
        assert_eq!(doc_value(block, "digest"), digest);
        let proof = server_proof(
            secret.as_bytes(),
            &name,
            &challenge,
            &cnonce,
            &info,
            &digest,
        );
        assert_eq!(doc_value(block, "proof"), proof);
    }

    #[test]
    fn the_signed_message_bytes_in_the_docs_match_the_code() {
        // Each line: length hex, field hex, then a comment.
        let doc_hex: String = doc_block("### Client message bytes")
            .lines()
            .flat_map(|l| l.split_whitespace().take(2))
            .collect();
        let msg = signed_message("client", &[NAME, CHALLENGE, CNONCE, INFO]);
        assert_eq!(doc_hex, hex::encode(&msg));
    }

    #[test]
    fn hmac_wiring_matches_the_rfc_4231_test_vector() {
        let mut mac = HmacSha256::new_from_slice(b"Jefe").expect("any key length");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn length_prefixing_keeps_field_boundaries_distinct() {
        // Plain concatenation would make these identical.
        let a = client_digest(SECRET, "ab", "c", CNONCE, INFO);
        let b = client_digest(SECRET, "a", "bc", CNONCE, INFO);
        assert_ne!(a, b);
        let c = client_digest(SECRET, NAME, CHALLENGE, "x:y", "");
        let d = client_digest(SECRET, NAME, CHALLENGE, "x", ":y");
        assert_ne!(c, d);
    }

    #[test]
    fn client_digest_and_server_proof_differ_for_the_same_fields() {
        let digest = client_digest(SECRET, NAME, CHALLENGE, CNONCE, INFO);
        // The label keeps a proof from ever being replayed as a digest or vice versa.
        assert_ne!(
            server_proof(SECRET, NAME, CHALLENGE, CNONCE, INFO, ""),
            digest
        );
    }

    #[test]
    fn a_correct_login_succeeds_and_returns_a_proof_the_client_accepts() {
        let t0 = scnf_media::testclock::anchor();
        let mut c = issued(t0);
        let (challenge, digest) = login_digest(&c, SECRET);
        let proof = login(&mut c, t0, &digest);
        let proof = proof.expect("correct login");
        assert!(verify_proof(
            SECRET, NAME, &challenge, CNONCE, INFO, &digest, &proof
        ));
    }

    #[test]
    fn a_wrong_secret_fails_with_bad_digest() {
        let t0 = scnf_media::testclock::anchor();
        let mut c = issued(t0);
        let (_, digest) = login_digest(&c, b"not-the-secret");
        let r = login(&mut c, t0, &digest);
        assert_eq!(r, Err(LoginError::BadDigest));
    }

    #[test]
    fn changing_any_field_after_signing_fails() {
        let t0 = scnf_media::testclock::anchor();
        let cfg = LoginConfig::default();
        let cases: [(&str, &str, &str); 3] = [
            ("other-app", CNONCE, INFO),
            (NAME, "other-nonce", INFO),
            (NAME, CNONCE, "other-info"),
        ];
        for (name, cnonce, info) in cases {
            let mut c = issued(t0);
            let (_, digest) = login_digest(&c, SECRET);
            let r = c.verify(t0, &cfg, SECRET, name, cnonce, info, &digest);
            assert_eq!(r, Err(LoginError::BadDigest), "{name} {cnonce} {info}");
        }
    }

    #[test]
    fn a_challenge_works_once_only() {
        let t0 = scnf_media::testclock::anchor();
        let mut c = issued(t0);
        let (_, digest) = login_digest(&c, SECRET);
        assert!(login(&mut c, t0, &digest).is_ok());
        assert!(!c.is_outstanding());
        let replay = login(&mut c, t0, &digest);
        assert_eq!(replay, Err(LoginError::NoChallenge));
    }

    #[test]
    fn a_failed_attempt_also_uses_up_the_challenge() {
        let t0 = scnf_media::testclock::anchor();
        let mut c = issued(t0);
        let (_, good) = login_digest(&c, SECRET);
        let wrong = "0".repeat(64);
        assert_eq!(login(&mut c, t0, &wrong), Err(LoginError::BadDigest));
        assert_eq!(login(&mut c, t0, &good), Err(LoginError::NoChallenge));
    }

    #[test]
    fn a_challenge_is_valid_until_just_before_its_ttl_and_expired_from_then_on() {
        let t0 = scnf_media::testclock::anchor();
        let cfg = LoginConfig::default();
        let mut c = issued(t0);
        let (_, digest) = login_digest(&c, SECRET);
        let just_before = t0 + cfg.challenge_ttl - Duration::from_millis(1);
        assert!(login(&mut c, just_before, &digest).is_ok());

        let mut c = issued(t0);
        let r = login(&mut c, t0 + cfg.challenge_ttl, &digest);
        assert_eq!(r, Err(LoginError::ChallengeExpired));
    }

    #[test]
    fn a_login_without_a_challenge_fails() {
        let mut c = Challenges::new();
        let digest = client_digest(SECRET, NAME, "", CNONCE, INFO);
        let r = login(&mut c, scnf_media::testclock::anchor(), &digest);
        assert_eq!(r, Err(LoginError::NoChallenge));
    }

    #[test]
    fn issuing_again_replaces_the_earlier_challenge() {
        let t0 = scnf_media::testclock::anchor();
        let mut c = Challenges::new();
        let first = c.issue(t0, [1; 16]);
        let second = c.issue(t0, [2; 16]);
        assert_eq!((first.len(), second.len()), (32, 32));
        assert_eq!(second, "02".repeat(16));
        let stale = client_digest(SECRET, NAME, &first, CNONCE, INFO);
        let r = login(&mut c, t0, &stale);
        assert_eq!(r, Err(LoginError::BadDigest));
    }

    #[test]
    fn an_uppercase_digest_is_accepted_and_the_proof_signs_the_lowercase_form() {
        let t0 = scnf_media::testclock::anchor();
        let mut c = issued(t0);
        let (challenge, digest) = login_digest(&c, SECRET);
        let upper = digest.to_uppercase();
        let proof = login(&mut c, t0, &upper);
        let proof = proof.expect("case does not change the digest bytes");
        assert!(verify_proof(
            SECRET, NAME, &challenge, CNONCE, INFO, &digest, &proof
        ));
    }

    #[test]
    fn malformed_fields_are_rejected_with_a_reason() {
        let t0 = scnf_media::testclock::anchor();
        let cfg = LoginConfig::default();
        let long = "n".repeat(257);
        let long_info = "i".repeat(4097);
        let ok_digest = "a".repeat(64);
        let cases: [(&str, &str, &str, &str, &str); 7] = [
            ("", CNONCE, INFO, &ok_digest, "name is empty"),
            (
                &long,
                CNONCE,
                INFO,
                &ok_digest,
                "name is longer than 256 bytes",
            ),
            (NAME, "", INFO, &ok_digest, "cnonce is empty"),
            (
                NAME,
                &long,
                INFO,
                &ok_digest,
                "cnonce is longer than 256 bytes",
            ),
            (
                NAME,
                CNONCE,
                &long_info,
                &ok_digest,
                "info is longer than 4096 bytes",
            ),
            (
                NAME,
                CNONCE,
                INFO,
                "abc",
                "digest must be 64 hex characters",
            ),
            (
                NAME,
                CNONCE,
                INFO,
                &"z".repeat(64),
                "digest must be 64 hex characters",
            ),
        ];
        for (name, cnonce, info, digest, why) in cases {
            let mut c = issued(t0);
            let r = c.verify(t0, &cfg, SECRET, name, cnonce, info, digest);
            assert_eq!(r, Err(LoginError::Malformed(why)));
            assert!(
                !c.is_outstanding(),
                "a malformed attempt still uses up the challenge"
            );
        }
    }

    #[test]
    fn a_proof_from_a_wrong_secret_or_for_other_fields_is_refused() {
        let digest = client_digest(SECRET, NAME, CHALLENGE, CNONCE, INFO);
        let proof = server_proof(SECRET, NAME, CHALLENGE, CNONCE, INFO, &digest);
        assert!(verify_proof(
            SECRET, NAME, CHALLENGE, CNONCE, INFO, &digest, &proof
        ));
        let forged = server_proof(b"impostor", NAME, CHALLENGE, CNONCE, INFO, &digest);
        assert!(!verify_proof(
            SECRET, NAME, CHALLENGE, CNONCE, INFO, &digest, &forged
        ));
        assert!(!verify_proof(
            SECRET, NAME, CHALLENGE, "other", INFO, &digest, &proof
        ));
        assert!(!verify_proof(
            SECRET, NAME, CHALLENGE, CNONCE, INFO, &digest, "not hex"
        ));
        assert!(!verify_proof(
            SECRET, NAME, CHALLENGE, CNONCE, INFO, &digest, &digest
        ));
    }

    #[test]
    fn error_codes_are_stable_and_the_retry_delay_is_rounded_up_in_messages() {
        let limited = LoginError::RateLimited {
            retry_after: Duration::from_millis(2_001),
        };
        assert_eq!(limited.code(), "rate-limited");
        assert_eq!(limited.to_string(), "too many failed logins; retry in 3 s");
        assert_eq!(LoginError::BadDigest.code(), "bad-digest");
        assert_eq!(LoginError::Malformed("x").code(), "malformed");
        assert_eq!(LoginError::NoChallenge.code(), "no-challenge");
        assert_eq!(LoginError::ChallengeExpired.code(), "challenge-expired");
    }
}
