//! Video for rtpgen: publishers that loop pre-encoded VP8 clips as RTP, and a judge
//! of what a viewer receives.
//!
//! The node forwards video without decoding it: a publisher sends up to three
//! layers ([`Layer`]), a viewer gets one of them, rewritten to its own SSRC and
//! continuous sequence numbers and timestamps, switched only at key frames, and the
//! node asks the publisher for a key frame (RTCP PLI) when a viewer needs one. So
//! the load generator must send real VP8 at no encoding cost and check what comes
//! back without decoding it:
//! - [`ivf`]: the IVF container reader (errors, not panics, on a damaged file);
//! - [`clip`]: a clip in memory, with its frame times and key frames; the three
//!   shipped clips (`vectors/video/`) are built into the binary;
//! - [`packetize`]: the RFC 7741 packetizer (PictureID, S bit, marker);
//! - [`publisher`]: [`ClipPublisher`], one layer of one publisher, paced by `now`,
//!   jumping to a key frame on PLI;
//! - [`viewer`]: [`ViewerJudge`], which parses the VP8 descriptor itself (a check
//!   independent of the node's parser in scnf-media) and counts what is wrong;
//! - [`scenario`]: [`VideoScenario`], publishers and switching viewers run against
//!   a node or a scaler over the call-control protocol, on sockets driven by
//!   [`drive`] (one task), judged into a [`VideoReport`] ([`summary`]).
//!
//! Like the audio side, these types never read the clock: `now` is an argument
//! (only [`scenario`] and [`drive`], the I/O shell, do).

pub mod clip;
pub mod drive;
pub mod ivf;
pub mod packetize;
pub mod publisher;
pub mod scenario;
pub mod summary;
pub mod viewer;

pub use clip::{Clip, ClipError};
pub use publisher::{ClipPublisher, PublisherStats};
pub use scenario::{VideoError, VideoScenario, VideoTarget};
pub use summary::{LayerSummary, SentSummary, VideoReport};
pub use viewer::{ViewerJudge, ViewerReport};

/// RTP clock rate of video (RFC 7741 §4.1, RFC 6184 §8.2.1).
pub const VIDEO_CLOCK_HZ: u32 = 90_000;

/// A simulcast layer, with the clip shipped for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// 320x180, 80 kbit/s target (under 100 kbit/s).
    Low,
    /// 640x360, 250 kbit/s target.
    Medium,
    /// 1280x720, 1000 kbit/s target.
    High,
}

impl Layer {
    /// Lowest first.
    pub const ALL: [Layer; 3] = [Layer::Low, Layer::Medium, Layer::High];

    /// `"low"`, `"medium"`, `"high"`: the clip's file stem and the label a
    /// [`ViewerJudge`] reports under.
    pub fn label(self) -> &'static str {
        match self {
            Layer::Low => "low",
            Layer::Medium => "medium",
            Layer::High => "high",
        }
    }

    /// The shipped IVF file of this layer.
    pub fn shipped_ivf(self) -> &'static [u8] {
        match self {
            Layer::Low => include_bytes!("../../../../vectors/video/low.ivf"),
            Layer::Medium => include_bytes!("../../../../vectors/video/medium.ivf"),
            Layer::High => include_bytes!("../../../../vectors/video/high.ivf"),
        }
    }
}
