//! Call-control connection support: the pieces the WebSocket control session builds on.
//!
//! - [`auth`]: the login handshake (HMAC-SHA256 challenge/response with a server proof)
//!   and the per-node failed-login rate limiter. Sans-IO: time and random bytes are
//!   arguments.
//! - [`tls`]: loading a certificate and key into a TLS acceptor, and a client
//!   configuration that trusts one given certificate (tests and tools).
//! - [`ratelimit`]: failed-login counting and lockout per peer network.
//! - [`hex`]: the lowercase hex used by the login fields.
//!
//! The wire format of the login is documented in `docs/login.md`.

pub mod auth;
pub mod hex;
pub mod ratelimit;
pub mod tls;
