//! The media of a call in the protocol: the member's offer (where it receives, the
//! codecs it takes, DTMF, direction, RTCP and latching) and the node's answer.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Media direction, SDP words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Sendrecv,
    Sendonly,
    Recvonly,
    Inactive,
}

impl Direction {
    /// Whether this direction, offered by the member, means the call is on hold.
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::Sendonly | Direction::Inactive)
    }
}

/// One codec of an offer or the answer's chosen codec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecDesc {
    /// SDP encoding name: `PCMU`, `PCMA`, `G722`, `opus`, `L16`.
    pub name: String,
    /// RTP payload type.
    pub pt: u8,
    /// RTP clock rate, Hz (8000; G.722 uses 8000 by RFC 3551; opus 48000).
    pub rate: u32,
}

/// Where and how the member's media flows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaOffer {
    /// Where the member receives RTP.
    pub address: IpAddr,
    pub port: u16,
    /// In order of preference; the node takes the first one it supports.
    pub codecs: Vec<CodecDesc>,
    /// Packet time, milliseconds (the node sends 20 ms; 10-60 accepted on receive).
    #[serde(default = "default_ptime")]
    pub ptime: u32,
    /// RFC 4733 telephone-event payload type, when the member sends DTMF that way;
    /// without it the node listens for in-band DTMF tones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone_event: Option<u8>,
    #[serde(default)]
    pub direction: Direction,
    /// RTCP on the RTP port (RFC 5761).
    #[serde(default)]
    pub rtcp_mux: bool,
    /// Follow the member to the address its RTP really comes from (NAT).
    #[serde(default)]
    pub latching: bool,
}

fn default_ptime() -> u32 {
    20
}

impl MediaOffer {
    /// The plainest offer: media at `at` in one `codec`, 20 ms packets, no
    /// telephone-events (in-band DTMF), `sendrecv`, RTCP on the next port, no
    /// latching; what a test or a simple controller changes from there.
    pub fn plain(at: std::net::SocketAddr, codec: CodecDesc) -> MediaOffer {
        MediaOffer {
            address: at.ip(),
            port: at.port(),
            codecs: vec![codec],
            ptime: default_ptime(),
            telephone_event: None,
            direction: Direction::Sendrecv,
            rtcp_mux: false,
            latching: false,
        }
    }
}

impl CodecDesc {
    /// G.711 mu-law on its static payload type.
    pub fn pcmu() -> CodecDesc {
        CodecDesc {
            name: "PCMU".into(),
            pt: 0,
            rate: 8000,
        }
    }
}

/// The node's side of the media: where to send, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaAnswer {
    pub address: IpAddr,
    pub port: u16,
    /// Where the node receives RTCP (equal to `port` with rtcp-mux).
    pub rtcp_port: u16,
    pub codec: CodecDesc,
    pub ptime: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone_event: Option<u8>,
}
