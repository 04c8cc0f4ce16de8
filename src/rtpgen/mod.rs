//! rtpgen: the bundled RTP load generator (see `src/bin/rtpgen.rs`).
//!
//! Drives many virtual participants against a mixer node and measures what they
//! hear. Work in progress.

pub mod janus;
pub mod media;
pub mod analysis;
pub mod cpu;
pub mod net;
pub mod plot;
pub mod reflector;
pub mod scenario;
pub mod report;
pub mod source;
pub mod target;
pub mod wav;
