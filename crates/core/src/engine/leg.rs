//! One RTP leg: what the node knows about a participant's media.
//!
//! Receive side: RTP in → payload type demux (audio / telephone-event / comfort
//! noise / unknown) → playout (jitter buffer, decoder, concealment) → one 20 ms frame
//! per tick. Send side: the mix for this leg → (shared or own) encoder → RTP out.
//! RTCP: reception statistics per RFC 3550, a report every `rtcp_interval`.

use crate::session::budget::{Rate, TokenBucket};
use scnf_media::codec::{CodecKind, Decoder, Encoder, FRAME_SAMPLES};
use scnf_media::dsp::InbandDtmf;
use scnf_media::jitter::{JitterConfig, Playout};
use scnf_media::mixer::talker::{TalkerConfig, TalkerDetector};
use scnf_media::mixer::Frame;
use scnf_media::rtp::{DtmfReceiver, ReceptionStats, SenderStats};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::budget::Budget;

/// Packets in a row with the same new SSRC after which a leg adopts it while its
/// current SSRC is still heard. A transfer or re-INVITE that switches streams loses
/// `SSRC_CONFIRM - 1` packets (40 ms); a flood rotating the SSRC on every packet never
/// gets one adopted.
pub const SSRC_CONFIRM: u8 = 3;
/// Silence of the current SSRC after which a new one is adopted on its first packet
/// (the old stream has ended). Longer than any jitter gap of a live 50 packets/s
/// stream, so a stream that is still sending is not displaced; a rotating flood can
/// reset a silent leg at most once per period.
pub const SSRC_QUIET: Duration = Duration::from_millis(200);

/// What a leg makes of an audio packet's SSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SsrcCheck {
    /// The leg's current stream (or its first).
    Current,
    /// A new stream, adopted now: the receive state starts over.
    Adopted,
    /// Not the leg's stream (yet): drop the packet.
    Refused,
}

/// Identifies a leg across the node (unique for the node's lifetime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LegId(pub u64);

/// Identifies a mix room on a node: the media side of a conference room. Distinct
/// from the conference room id (the dialled digits, `conf`'s `RoomId`): the session
/// root maps one to the other, so the engine never sees a dialled string.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct MixId(pub u64);

impl std::fmt::Display for MixId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mix {}", self.0)
    }
}

/// What the caller says about a leg when adding it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LegSpec {
    /// Where the peer receives RTP (and, unless rtcp-mux, RTCP on port + 1).
    pub remote: SocketAddr,
    /// The codec both sides agreed on.
    pub codec: CodecKind,
    /// Payload type of that codec on this leg (the static one for G.711/G.722).
    pub payload_type: u8,
    /// Payload type of RFC 4733 telephone-events, when negotiated.
    pub telephone_event_pt: Option<u8>,
    /// Symmetric-RTP latching: follow the peer to the address its packets come from
    /// (NAT). Off by default: packets from other addresses are dropped.
    pub latching: bool,
    /// RTCP multiplexed on the RTP port (RFC 5761).
    pub rtcp_mux: bool,
    /// Set on a link between two mixers (a cascade leg of a room spread over
    /// nodes): see [`LinkTags`]. Absent from older peers' specs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkTags>,
}

/// The SSRCs of a link leg. Two nodes that share several rooms exchange every
/// room's audio between the same two worker sockets, so the address cannot tell the
/// rooms apart: each end sends with its own fixed `ssrc` and accepts only
/// `peer_ssrc`, and the receiving worker finds the leg by (address, SSRC). A link
/// carries mixed audio, so it detects no in-band DTMF and reports no talking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTags {
    pub ssrc: u32,
    pub peer_ssrc: u32,
}

impl LegSpec {
    /// A leg with the codec's static payload type, no telephone-events, no latching.
    pub fn new(remote: SocketAddr, codec: CodecKind) -> Self {
        LegSpec {
            remote,
            codec,
            payload_type: codec.static_payload_type().unwrap_or(96),
            telephone_event_pt: None,
            latching: false,
            rtcp_mux: false,
            link: None,
        }
    }

    /// A link leg to another mixer (see [`LinkTags`]): RTCP multiplexed, no
    /// latching, no telephone-events.
    pub fn link(remote: SocketAddr, codec: CodecKind, payload_type: u8, tags: LinkTags) -> Self {
        LegSpec {
            payload_type,
            rtcp_mux: true,
            link: Some(tags),
            ..LegSpec::new(remote, codec)
        }
    }
}

/// Counters and gauges of one leg, as reported to the control side (`Status`
/// carries it whole; missing fields parse as 0, so older nodes' reports read).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LegStats {
    /// A link between two nodes (an invisible participant), not a caller.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Packets lost per RFC 3550 (expected - received), cumulative.
    pub packets_lost: i64,
    /// Interarrival jitter, milliseconds (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Arrived after their playout time.
    pub late: u64,
    pub duplicates: u64,
    /// Frames concealed where sequence numbers show audio was missing (a sender
    /// that pauses or hangs up is not counted: its fade-out is not a loss).
    pub concealed_frames: u64,
    /// Playout adjustments: 20 ms inserted (stretch) or skipped (compress) to follow
    /// the network or the sender's clock.
    pub stretched: u64,
    pub compressed: u64,
    /// Times the playout re-anchored (timestamp jump, marker after lateness).
    pub resyncs: u64,
    /// Current playout delay target, milliseconds.
    pub playout_delay_ms: u64,
    /// Payloads the decoder refused.
    pub decode_errors: u64,
    /// Packets with a payload type this leg did not negotiate.
    pub unknown_payload_type: u64,
    /// Comfort-noise packets (tolerated, played as silence).
    pub comfort_noise: u64,
    /// DTMF digits received, as telephone-events or detected in-band.
    pub dtmf_digits: u64,
    /// Of `dtmf_digits`, those detected as tones in the decoded audio (legs that did
    /// not negotiate telephone-events).
    pub inband_dtmf_digits: u64,
    /// Telephone-event digits over the leg's digit budget ([`DTMF_RATE`]), dropped.
    pub dtmf_dropped: u64,
    /// SSRC changes adopted (each resets the playout).
    pub ssrc_changes: u64,
    /// RTCP packets received.
    pub rtcp_received: u64,
    /// Round-trip time from the peer's last report block about us, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Loss the peer reports about our stream (fraction lost, 0-255 scale).
    pub remote_fraction_lost: Option<u8>,
    pub talking: bool,
    /// Datagrams from the leg's own addresses dropped unparsed because the leg was over
    /// its receive budget (a flood; see `engine::budget`).
    pub flood_dropped: u64,
    /// Packets dropped because their SSRC was not (yet) the leg's: a new SSRC is only
    /// adopted once it repeats or the current one went quiet (a stream of new SSRCs
    /// changes nothing).
    pub ssrc_refused: u64,
    /// Packets from a new address that claimed this latching leg but were refused: its
    /// current source was still sending (a hijack attempt, or the first packets of a
    /// NAT rebinding before the old port went quiet).
    pub latch_refused: u64,
    /// Times latching moved the leg to a new address (each one reported as an event).
    pub latch_moves: u64,
}

/// Where a peer at `rtp` receives RTCP: the same port with rtcp-mux (RFC 5761),
/// else the next one (RFC 3550's convention).
pub fn rtcp_address(rtp: SocketAddr, mux: bool) -> SocketAddr {
    if mux {
        rtp
    } else {
        SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
    }
}

/// Digits one leg may send: a person keys at most ~12 a second (ITU-T Q.24: 40 ms
/// tone, 40 ms pause), and a burst holds a whole dial string or PIN.
pub const DTMF_RATE: Rate = Rate {
    per_second: 16,
    burst: 32,
};

/// Whose encoder a leg's packets come from: the peer's decoder follows that
/// encoder's state, which matters when the leg switches between the room's shared
/// encoding and its own (see the room's tick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Nothing sent yet: whichever stream comes first starts the peer's decoder.
    Fresh,
    /// The room's shared encoding for the leg's codec.
    Shared,
    /// The leg's own encoder.
    Own {
        /// Frames of silence it has encoded in a row.
        silent: u32,
        /// Ticks since the leg was last a mixed talker.
        unmixed: u32,
    },
}

/// A leg inside the engine.
pub struct Leg {
    pub id: LegId,
    pub room: MixId,
    pub spec: LegSpec,
    /// Where RTP goes now (differs from `spec.remote` after latching).
    pub remote: SocketAddr,
    /// Where RTCP goes.
    pub rtcp_remote: SocketAddr,
    /// Whether any packet was accepted yet (latching decides on the first one).
    pub latched: bool,
    pub decoder: Decoder,
    /// The leg's own encoder, used while it is a mixed talker (its mix differs from
    /// the shared one), and for an Opus leg until it can rejoin the shared stream
    /// without a seam.
    pub encoder: Encoder,
    /// Whose encoder the leg's packets came from last.
    pub stream: Stream,
    pub playout: Playout,
    pub talker: TalkerDetector,
    pub dtmf: DtmfReceiver,
    /// Digits this leg may still pass on (a peer can make a new RFC 4733 event of
    /// every packet; each digit may toggle a conference state that every controller
    /// hears about).
    pub dtmf_budget: TokenBucket,
    /// In-band DTMF detection on the decoded audio; only on legs without
    /// telephone-events (a peer that sends RFC 4733 events is believed, and its
    /// audio is not searched a second time).
    pub inband: Option<InbandDtmf>,
    pub reception: ReceptionStats,
    /// The frame played out this tick.
    pub frame: Frame,
    /// Muted: contributes nothing to the mix (hold, remote control). Still hears.
    pub muted: bool,
    /// Receives the mix. When false nothing is sent (remote control "receive off").
    pub receives: bool,
    /// Last SSRC seen from the peer.
    pub peer_ssrc: Option<u32>,
    /// When a packet of `peer_ssrc` was last accepted.
    pub ssrc_heard: Instant,
    /// A new SSRC seen on consecutive packets, and how many.
    pub ssrc_candidate: Option<(u32, u8)>,
    /// Any datagram from the leg's current addresses, accepted or not (latching asks
    /// whether the current source went quiet).
    pub last_rx: Instant,
    /// Spent by every datagram from the leg's addresses before it is parsed.
    pub budget: Budget,
    /// When a refused latch was last logged (refusals are logged once a second).
    pub latch_logged: Option<Instant>,
    pub timeout_reported: bool,
    // Send side.
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    pub first_packet: bool,
    /// Packet and octet counts for our sender reports.
    pub sender: SenderStats,
    pub next_rtcp: Instant,
    pub stats: LegStats,
}

impl Leg {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        id: LegId,
        room: MixId,
        spec: LegSpec,
        jitter: &JitterConfig,
        talker: &TalkerConfig,
        ssrc: u32,
        initial_seq: u16,
        initial_ts: u32,
        first_rtcp: Instant,
    ) -> Result<Leg, scnf_media::codec::CodecError> {
        let rtcp_remote = rtcp_address(spec.remote, spec.rtcp_mux);
        Ok(Leg {
            id,
            room,
            remote: spec.remote,
            rtcp_remote,
            latched: false,
            decoder: Decoder::new(spec.codec)?,
            encoder: Encoder::new(spec.codec)?,
            stream: Stream::Fresh,
            playout: Playout::new(jitter, spec.codec.rtp_clock_rate()),
            talker: TalkerDetector::new(talker),
            dtmf: DtmfReceiver::default(),
            dtmf_budget: TokenBucket::new(DTMF_RATE),
            inband: (spec.telephone_event_pt.is_none() && spec.link.is_none())
                .then(InbandDtmf::new),
            reception: ReceptionStats::new(spec.codec.rtp_clock_rate()),
            frame: [0; FRAME_SAMPLES],
            muted: false,
            receives: true,
            peer_ssrc: spec.link.map(|t| t.peer_ssrc),
            ssrc_heard: now,
            ssrc_candidate: None,
            last_rx: now,
            budget: Budget::new(now),
            latch_logged: None,
            timeout_reported: false,
            ssrc: spec.link.map_or(ssrc, |t| t.ssrc),
            seq: initial_seq,
            ts: initial_ts,
            first_packet: true,
            sender: SenderStats::new(),
            next_rtcp: first_rtcp,
            stats: LegStats::default(),
            spec,
        })
    }

    /// Decides whether an audio packet with `ssrc` belongs to the leg's stream (see
    /// [`SSRC_CONFIRM`] and [`SSRC_QUIET`]). Adopting a new SSRC resets the playout,
    /// the in-band DTMF detector and the reception statistics; a refusal is counted.
    pub fn check_ssrc(&mut self, now: Instant, ssrc: u32) -> SsrcCheck {
        let Some(current) = self.peer_ssrc else {
            self.peer_ssrc = Some(ssrc);
            self.ssrc_heard = now;
            return SsrcCheck::Current;
        };
        if current == ssrc {
            self.ssrc_candidate = None;
            self.ssrc_heard = now;
            return SsrcCheck::Current;
        }
        let seen = match &mut self.ssrc_candidate {
            Some((c, n)) if *c == ssrc => {
                *n = n.saturating_add(1);
                *n
            }
            other => {
                *other = Some((ssrc, 1));
                1
            }
        };
        let quiet = now.saturating_duration_since(self.ssrc_heard) >= SSRC_QUIET;
        if !quiet && seen < SSRC_CONFIRM {
            self.stats.ssrc_refused += 1;
            return SsrcCheck::Refused;
        }
        self.peer_ssrc = Some(ssrc);
        self.ssrc_candidate = None;
        self.ssrc_heard = now;
        self.stats.ssrc_changes += 1;
        self.playout.reset();
        if let Some(detector) = &mut self.inband {
            detector.reset();
        }
        self.reception = ReceptionStats::new(self.spec.codec.rtp_clock_rate());
        SsrcCheck::Adopted
    }

    /// Starts loading what the receive path touches of the leg (see
    /// [`scnf_media::util::prefetch`]): its budget, stream and reception state,
    /// counters and playout. A hint; it changes nothing.
    pub fn prefetch(&self) {
        use scnf_media::util::prefetch;
        prefetch(&self.budget);
        prefetch(&self.peer_ssrc);
        prefetch(&self.spec.payload_type);
        prefetch(&self.stats);
        prefetch(&self.reception);
        self.playout.prefetch();
    }

    /// A snapshot of the leg's statistics.
    pub fn snapshot(&self) -> LegStats {
        let mut s = self.stats.clone();
        let p = self.playout.stats();
        s.late = p.late;
        s.duplicates = p.duplicate;
        s.concealed_frames = p.concealed_frames;
        s.stretched = p.stretched;
        s.compressed = p.compressed;
        s.resyncs = p.resyncs;
        s.playout_delay_ms = p.target_delay_ms as u64;
        s.packets_lost = self.reception.lost();
        s.jitter_ms = self.reception.jitter_ms();
        s.talking = self.talker.is_talking();
        s.link = self.spec.link.is_some();
        s
    }
}
