//! scnf-testkit — what tests, the demo and the load tools use to play the other side.
//!
//! - [`client`]: the controller side of the call-control protocol over WebSocket (the
//!   library side of a PBX front end; `scnf demo`, rtpgen and tools use it), which
//!   also sends raw frames for the protocol-robustness tests.
//! - [`harness`]: session roots, engines, phones and controllers on one virtual clock.
//! - [`participant`]: a synthetic participant over real UDP: measured calls (demo,
//!   system tests) and live phones that play tones, DTMF and speech-like sound
//!   (call-control tests).
//! - [`swarm`]: thousands of cheap G.711 participants on one socket, for load.
//! - [`cpu`]: CPU time of a process from `/proc`, for load figures.
//! - [`impair`]: a seeded impaired UDP relay between a participant and a node.
//! - [`ffmpeg`]: the real ffmpeg as a video peer: a live VP8/H.264 RTP source and a
//!   decoder that counts frames and decode errors.

pub mod client;
pub mod cpu;
pub mod ffmpeg;
pub mod harness;
pub mod impair;
pub mod participant;
pub mod swarm;
