//! scnf-core — the sans-IO core of the scnf conference mixer.
//!
//! Everything here takes time, randomness and bytes as inputs and returns what to do
//! as values; the tokio shell in the `scnf` crate only moves them.
//! - [`engine`]: one media worker's state machine: the mix rooms and legs it owns.
//! - [`conf`]: the conference interface's behaviour (dial language, rooms, channel
//!   accounting, listen modes, remote controls, hold): commands in, outputs out.
//! - [`control`]: the call-control protocol: JSON messages, the HMAC login (server and
//!   client side), failed-login limiting.
//! - [`session`]: the session root: logins, call ids, the conference core, the room
//!   table and timers of one node, driven by messages, engine events and media
//!   results.
//!
//! # The run-loop vocabulary
//! Every core type that reacts to time follows the same contract:
//! - `handle_*(now, ..)` feeds an input (a datagram, a message, a timeout, a result);
//! - `poll_*()` (`poll_transmit`, `poll_event`, `poll_output`) drains what the input
//!   produced, until `None`;
//! - `poll_timeout()` says when the core next wants `handle_timeout(now)`.
//!
//! The shell calls them in that order, then sleeps until the next deadline or the
//! next input, whichever comes first.

pub mod cluster;
pub mod conf;
pub mod control;
pub mod engine;
pub mod session;
