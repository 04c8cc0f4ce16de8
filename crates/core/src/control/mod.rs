//! Call control: the protocol a PBX-side controller speaks to the node.
//!
//! - [`msg`]: the JSON messages (serde types), parsing and serialisation.
//! - [`auth`]: the challenge/response login (HMAC-SHA256, server proof); sans-IO.
//! - [`login`]: the server and client sides of the login as state machines.
//! - [`ratelimit`]: failed-login counting and lockout per peer network.
//! - [`admission`]: the listener's connection budgets (waiting vs logged in) and
//!   pre-login deadlines.
//! - [`hex`]: the lowercase hex of the login fields.
//!
//! The conference behaviour itself (dial language, rooms, channels, listen modes)
//! lives in the sans-IO [`crate::conf`] core; the session root that runs a node's
//! sessions is [`crate::session`]; the WebSocket shell around it is in the `scnf`
//! crate.
//! `docs/control-protocol.md` documents the protocol with a full example session,
//! `docs/login.md` the login's wire construction.

pub mod admission;
pub mod auth;
pub mod hex;
pub mod login;
pub mod msg;
pub mod ratelimit;
