//! Test-support library for the real-UDP system tests: tones and meters, an RTP
//! test participant, an impaired relay, and a batched echo server. Everything runs
//! on 127.0.0.1, every loop is bounded in time, and every random choice comes from
//! a seed.

// A library for tests that come later: not every item has a caller yet.
#![allow(dead_code)]

pub mod client;
pub mod echo;
pub mod impair;
pub mod rng;
pub mod rtp;
pub mod tones;
