//! scnf — a software conference mixer node.
//!
//! # Shape
//! A sans-IO core wrapped in a thin I/O shell:
//! - [`codec`], [`rtp`], [`jitter`] and [`mixer`] are plain types you can call from a
//!   test: bytes and `now` in, bytes and decisions out.
//! - [`conf`] is the conference interface's behaviour (dial language, rooms, channel
//!   accounting, listen modes, remote controls, hold): commands in, outputs out.
//! - [`dsp`] analyses a leg's decoded audio (in-band DTMF).
//! - [`engine`] is one media worker's state machine: the rooms and legs it owns. It
//!   never reads the clock, the network or the environment.
//! - [`io`] is the tokio shell: sockets, the one timer per worker, the control API.
//! - [`control`] is the call-control protocol: its JSON messages, the HMAC login,
//!   TLS; [`io::control`] runs it (WebSocket listener, the switchboard that drives
//!   [`conf`] and the node).
//!
//! # The run-loop vocabulary
//! Every core type that reacts to time follows the same contract:
//! - `handle_*(now, ..)` feeds an input (a datagram, a command, a timeout);
//! - `poll_transmit()` / `poll_event()` drain what the input produced, until `None`;
//! - `poll_timeout()` says when the core next wants `handle_timeout(now)`.
//!
//! The shell calls them in that order, then sleeps until the next deadline or the
//! next datagram, whichever comes first.

pub mod codec;
pub mod conf;
pub mod config;
pub mod control;
pub mod dsp;
pub mod engine;
pub mod io;
pub mod jitter;
pub mod mixer;
pub mod netsim;
pub mod probe;
pub mod rtp;
pub mod rtpgen;
pub mod util;

#[cfg(test)]
pub(crate) mod testutil;
