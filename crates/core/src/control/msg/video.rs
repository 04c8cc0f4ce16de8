//! The video part of the protocol: a member's video-send streams (one per layer), the
//! views it asks for, and what the node answers and reports.
//!
//! Video is never mixed or transcoded (`../shared/reference/README.md`, multi-video
//! facts): after its audio call, an endpoint with a camera opens up to three send
//! streams, one per [`VideoLayer`], and every viewer gets one stream per view slot,
//! forwarded from the publisher's layer it asked for. A view slot keeps its SSRC,
//! sequence numbers and timestamps across layer switches, so a viewer's decoder
//! sees one continuous stream.

use super::CodecDesc;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One of the three video-send streams of a participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoLayer {
    /// Under 100 kbit/s.
    Low,
    /// About 250 kbit/s.
    Medium,
    /// About 1000 kbit/s.
    High,
}

impl VideoLayer {
    pub const ALL: [VideoLayer; 3] = [VideoLayer::Low, VideoLayer::Medium, VideoLayer::High];

    pub fn name(self) -> &'static str {
        match self {
            VideoLayer::Low => "low",
            VideoLayer::Medium => "medium",
            VideoLayer::High => "high",
        }
    }

    /// Index 0..3, for per-layer arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for VideoLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where and how one video stream flows on the member's side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoOffer {
    /// The member's RTP address for this stream: where a view is sent, and where a
    /// send stream comes from (symmetric RTP) and keyframe requests go.
    pub address: IpAddr,
    pub port: u16,
    /// `VP8` or `H264` with its dynamic payload type and rate 90000, in order of
    /// preference; the node takes the first it supports.
    pub codecs: Vec<CodecDesc>,
    /// RTCP on the RTP port (RFC 5761).
    #[serde(default)]
    pub rtcp_mux: bool,
    /// The RTCP feedback the member understands, as SDP `a=rtcp-fb` says it: `pli`
    /// (RFC 4585), `fir` (`ccm fir`, RFC 5104). A send stream without either is still
    /// asked for keyframes with PLI (most encoders honour it).
    #[serde(default)]
    pub feedback: Vec<String>,
}

impl VideoOffer {
    /// The plainest offer: one codec at `at`, RTCP on the next port, PLI.
    pub fn plain(at: std::net::SocketAddr, codec: CodecDesc) -> VideoOffer {
        VideoOffer {
            address: at.ip(),
            port: at.port(),
            codecs: vec![codec],
            rtcp_mux: false,
            feedback: vec!["pli".into()],
        }
    }

    /// Whether the member asked for FIR rather than (or besides) PLI.
    pub fn wants_fir(&self) -> bool {
        self.feedback.iter().any(|f| f.eq_ignore_ascii_case("fir"))
    }
}

impl CodecDesc {
    /// VP8 on dynamic payload type `pt`.
    pub fn vp8(pt: u8) -> CodecDesc {
        CodecDesc {
            name: "VP8".into(),
            pt,
            rate: 90_000,
        }
    }

    /// H.264 on dynamic payload type `pt`.
    pub fn h264(pt: u8) -> CodecDesc {
        CodecDesc {
            name: "H264".into(),
            pt,
            rate: 90_000,
        }
    }
}

/// The node's side of one video stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoAnswer {
    /// Where the node receives this stream's RTP (a send stream) or sends it from (a
    /// view), and its RTCP.
    pub address: IpAddr,
    pub port: u16,
    pub rtcp_port: u16,
    pub codec: CodecDesc,
}

/// One publisher stream in a status report: the seed's conference diagnostics
/// shows video channels per room with these figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VideoChannelInfo {
    pub participant: u64,
    pub call: String,
    pub layer: Option<VideoLayer>,
    pub codec: String,
    /// View slots forwarding this stream now (on every node, on a scaler).
    pub viewers: u32,
    pub packets: u64,
    pub bytes: u64,
    /// Received bitrate over the last whole second, kbit/s.
    pub bitrate_kbps: u32,
    pub keyframes: u64,
    /// Keyframe requests sent to the publisher (PLI/FIR), and those the throttle held
    /// back or merged.
    pub keyframe_requests: u64,
    pub keyframe_requests_suppressed: u64,
    /// Packets whose payload descriptor could not be read (dropped).
    pub malformed: u64,
    /// The cluster node the stream arrives on (a scaler's report only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Multicast group the stream is published to for other nodes (a scaler's report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// One view slot in a status report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VideoViewInfo {
    pub call: String,
    pub view: u32,
    /// The participant and layer it asked for.
    pub participant: u64,
    pub layer: Option<VideoLayer>,
    pub ssrc: u32,
    pub packets_sent: u64,
    pub switches: u64,
    /// Waiting for a keyframe of the layer it switches to.
    pub waiting_keyframe: bool,
}
