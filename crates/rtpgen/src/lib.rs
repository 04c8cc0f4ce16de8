//! rtpgen: the bundled RTP load generator (binary `src/main.rs`).
//!
//! Drives thousands of virtual participants against a mixer and measures what they
//! hear and how the target copes. Operators load-test a node with it; the project
//! uses it to compare scnf with a bare reflector and Janus (`bench/compare`).
//!
//! - the fleet socket (`scnf_udp::fleet`): one socket is thousands of loopback hosts
//!   (`IP_PKTINFO` both ways, kernel receive stamps), batched with `sendmmsg`/`recvmmsg`.
//! - [`source`]: pre-encoded frame loops (a tone per talker slot, speech, silence)
//!   and talk/silence patterns, so sending costs no encoding.
//! - [`media`]: the one media thread: 1 ms send groups for exact 20 ms pacing,
//!   decoding, analysis, a report each second, its own lateness.
//! - [`analysis`]: N-1 judgement and mouth-to-ear latency from tone onsets.
//! - [`scenario`]: steady runs, churn, ramps to capacity; [`target`]: scnf over the
//!   call-control protocol, a reflector, Janus ([`janus`]); [`reflector`]: the bare
//!   baseline.
//! - [`video`]: VP8 clips looped as RTP by publishers, and a judge of what a viewer
//!   receives (layer switches at key frames, continuity, PLI to key-frame delay).
//! - [`videobench`]: video forwarding cost on real sockets against the reflector.
//! - [`report`], [`plot`], [`wav`]: what comes out, and from where (CPU figures:
//!   `scnf_testkit::cpu`).

pub mod analysis;
pub mod janus;
pub mod media;
pub mod plc_bench;
pub mod plot;
pub mod reflector;
pub mod report;
pub mod scenario;
pub mod source;
pub mod target;
pub mod video;
pub mod videobench;
pub mod wav;
