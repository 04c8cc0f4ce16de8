//! scnf-media — the media building blocks of the scnf conference mixer.
//!
//! Plain types you can call from a test: bytes and `now` in, bytes and decisions out.
//! Nothing here reads the clock, the network or the environment, and nothing depends
//! on tokio or libc.
//! - [`codec`]: G.711, G.722 (with its 8 kHz low-band path), Opus (libopus), L16.
//! - [`rtp`]: RTP/RTCP parsing and building, sequence extension, RFC 3550 statistics,
//!   RFC 4733 telephone events, comfort noise.
//! - [`jitter`]: the adaptive playout buffer and loss concealment of one leg.
//! - [`mixer`]: N-minus-one summing, talker detection, the soft limiter.
//! - [`video`]: forwarding video without decoding: keyframe detection in VP8 and
//!   H.264 payloads, one viewer's rewritten output stream, keyframe-request pacing.
//! - [`dsp`]: analysis of decoded audio (Goertzel bank, in-band DTMF).
//! - [`probe`]: test tones and level measurement (shared by tests, the demo, rtpgen).
//! - [`netsim`]: a seeded network emulator for deterministic scenario tests.
//! - [`util`]: the seeded PRNG every randomised choice takes as input.
//!
//! The engine that puts these together per media worker is in `scnf-core`.

pub mod codec;
pub mod dsp;
pub mod jitter;
pub mod mixer;
pub mod netsim;
pub mod probe;
pub mod rtp;
pub mod util;
pub mod video;

/// Reads the checksummed files under `vectors/` (tests only: it reads files).
#[cfg(any(test, feature = "test-vectors"))]
pub mod testvectors;

/// The fixed time anchor of tests and benchmarks (it reads the clock once).
#[cfg(any(test, feature = "test-clock"))]
pub mod testclock;
