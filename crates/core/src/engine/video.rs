//! Video forwarding of one worker: publisher streams in, view slots out, no decode.
//!
//! A **source** is one incoming video stream: a member's send stream for one layer
//! (from the member's address), or a stream another node relays here (from that
//! node's media address, told apart from its other streams by SSRC). A **sink** is
//! one outgoing stream: a member's view slot, or a relay of a source toward other
//! nodes (a multicast group, or one node in unicast mode). Every sink has its own
//! SSRC and a [`Rewriter`], so its sequence numbers and timestamps run on across
//! switches between layers and publishers, and a switch happens only at a keyframe
//! of the new source ([`scnf_media::video::inspect`]).
//!
//! Per packet: one address lookup (after the audio maps missed), the source's
//! receive budget, an RTP parse and a payload-descriptor read, then for each sink of
//! the source a 12-byte header written in front of the payload in the worker's
//! transmit queue. Nothing allocates: fanout lists and the queue grow to their
//! steady-state size and stay there.
//!
//! Keyframes are asked for (RTCP PLI, or FIR where the publisher negotiated it) when
//! a sink subscribes or switches, when a viewer asks (its PLI/FIR is terminated here,
//! never passed on), and again while a switch still waits one second later. Every
//! request goes through the source's [`KeyframeThrottle`]: at most one per
//! [`KEYFRAME_MIN_INTERVAL`] and [`KEYFRAME_MAX_PER_WINDOW`] per second, the rest
//! merged into one deferred request, so no viewer can make a publisher send
//! keyframes continuously.
//!
//! RTCP: the node is the RTP peer of both ends (RFC 7667 "media translator" with
//! SSRC rewriting): it sends receiver reports about each source to its publisher and
//! sender reports for each sink, and absorbs what comes back.

use super::budget::Budget;
use super::slab::Slab;
use super::tx::{TxQueue, Via};
use super::{EngineError, MixId};
use scnf_media::rtp::rtcp::feedback::{self, Feedback};
use scnf_media::rtp::rtcp::ntp;
use scnf_media::rtp::stats::{ReceptionStats, SenderStats};
use scnf_media::rtp::{parse_compound, ReportWriter, RtcpPacket, RtpHeader, RtpPacket};
use scnf_media::util::Rng;
use scnf_media::video::{self, FrameInfo, KeyframeThrottle, Rewriter, VideoCodec};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod rtcp;
use rtcp::{send_keyframe_request, send_sink_report};

/// The shortest time between two keyframe requests to one publisher stream.
pub const KEYFRAME_MIN_INTERVAL: Duration = Duration::from_millis(200);
/// Keyframe requests one publisher stream gets per second at most.
pub const KEYFRAME_MAX_PER_WINDOW: u32 = 3;
const KEYFRAME_WINDOW: Duration = Duration::from_secs(1);
/// A switch still waiting for its keyframe this long asks again (a request or the
/// keyframe itself may have been lost).
const KEYFRAME_RETRY: Duration = Duration::from_secs(1);
/// Receive budget of one video source: a 1 Mbit/s layer is ~100-150 packets/s with
/// keyframes of 30-60 packets at once; four times that passes, a flood does not.
const VIDEO_RATE_PER_S: u64 = 1_000;
const VIDEO_BURST: u64 = 256;
/// Largest RTP packet forwarded (header rewritten to 12 bytes).
const MAX_VIDEO_PACKET: usize = 1500;
/// RR/SR with at most one block plus SDES CNAME.
const MAX_REPORT: usize = 28 + 24 + 4 + 8 + 260;

/// Names one video source or sink, chosen by the control side (unique per worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VideoId(pub u64);

/// How an incoming video stream arrives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoSourceSpec {
    /// Where its RTP comes from (the member's offered address: symmetric RTP), and
    /// where keyframe requests and receiver reports go.
    pub remote: SocketAddr,
    pub rtcp_mux: bool,
    pub codec: VideoCodec,
    pub payload_type: u8,
    /// Ask for keyframes with FIR (RFC 5104) instead of PLI.
    #[serde(default)]
    pub fir: bool,
    /// A stream relayed from another node: `remote` is that node's media address,
    /// shared by its other streams and links, so only this SSRC is taken from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_ssrc: Option<u32>,
}

/// How an outgoing video stream leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoSinkSpec {
    /// Where it is sent: a viewer's address, a multicast group, another node.
    pub remote: SocketAddr,
    pub rtcp_mux: bool,
    /// The payload type the viewer negotiated.
    pub payload_type: u8,
    /// Its SSRC, when the control side chooses it (a relay: the receiving nodes
    /// must know it); `None`: a random one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssrc: Option<u32>,
    /// A relay toward other nodes: their keyframe requests name this sink by its
    /// SSRC and may come from any of their addresses.
    #[serde(default)]
    pub relay: bool,
}

/// One source's or sink's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VideoStats {
    pub mix: MixId,
    /// A source (incoming stream); otherwise a sink.
    pub source: bool,
    // Source figures.
    pub packets: u64,
    pub bytes: u64,
    /// Bytes received in the last whole second, as kbit/s.
    pub bitrate_kbps: u32,
    pub keyframes: u64,
    pub keyframe_requests: u64,
    pub keyframe_requests_suppressed: u64,
    /// Payload descriptor unreadable (dropped).
    pub malformed: u64,
    pub unknown_payload_type: u64,
    pub ssrc_refused: u64,
    pub flood_dropped: u64,
    pub lost: i64,
    /// Sinks of this source.
    pub viewers: u32,
    // Sink figures.
    pub ssrc: u32,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub switches: u64,
    pub waiting_keyframe: bool,
    /// Keyframe requests (PLI/FIR) a viewer or receiving node sent us.
    pub feedback_keyframe: u64,
    /// The source it forwards now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<VideoId>,
}

/// Worker-wide video counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoTotals {
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    pub malformed: u64,
}

struct Source {
    id: VideoId,
    mix: MixId,
    spec: VideoSourceSpec,
    rtcp_remote: SocketAddr,
    /// Our SSRC toward the publisher (reports, keyframe requests).
    ssrc: u32,
    publisher_ssrc: Option<u32>,
    budget: Budget,
    reception: ReceptionStats,
    throttle: KeyframeThrottle,
    /// A keyframe was asked for before the publisher's SSRC was known (nothing to
    /// name in a PLI yet): asked for at its first packet unless that is one.
    keyframe_owed: bool,
    fir_seq: u8,
    /// Sinks forwarding or switching to this source.
    fanout: Vec<usize>,
    next_rtcp: Instant,
    /// Start of the current one-second bitrate window and its bytes.
    window: (Instant, u64),
    stats: VideoStats,
}

struct Sink {
    id: VideoId,
    mix: MixId,
    spec: VideoSinkSpec,
    rtcp_remote: SocketAddr,
    rewriter: Rewriter,
    sender: SenderStats,
    /// The source asked for (the rewriter may still forward the previous one).
    wanted: Option<usize>,
    /// When it last asked for a keyframe of `wanted`.
    asked: Option<Instant>,
    budget: Budget,
    next_rtcp: Instant,
    /// When the last packet went and its timestamp (an SR's RTP time is extrapolated
    /// from it).
    last_sent: Option<(Instant, u32)>,
    stats: VideoStats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Source(usize),
    Sink(usize),
}

/// See the module docs.
#[derive(Default)]
pub struct Video {
    sources: Slab<Source>,
    sinks: Slab<Sink>,
    ids: HashMap<VideoId, Slot>,
    /// Member sources' RTP and RTCP addresses, viewers' addresses.
    by_addr: HashMap<SocketAddr, Slot>,
    /// Relayed sources by (node address, SSRC).
    by_tag: HashMap<(SocketAddr, u32), usize>,
    /// Relay sinks by their SSRC.
    relays: HashMap<u32, usize>,
    /// Sinks whose switch completed in the packet just forwarded: (sink, old source).
    switched: Vec<(usize, usize)>,
    totals: VideoTotals,
}

fn rtcp_of(remote: SocketAddr, mux: bool) -> SocketAddr {
    super::leg::rtcp_address(remote, mux)
}

fn rtcp_via(mux: bool) -> Via {
    if mux {
        Via::Rtp
    } else {
        Via::Rtcp
    }
}

impl Video {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn len(&self) -> (usize, usize) {
        (self.sources.len(), self.sinks.len())
    }

    pub fn totals(&self) -> VideoTotals {
        self.totals
    }

    /// Whether an address is one of the video streams' (audio legs must not take it).
    pub fn owns(&self, addr: SocketAddr) -> bool {
        self.by_addr.contains_key(&addr)
    }

    pub fn add_source(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        rtcp_interval: Duration,
        mix: MixId,
        id: VideoId,
        spec: VideoSourceSpec,
    ) -> Result<(), EngineError> {
        if self.ids.contains_key(&id) {
            return Err(EngineError::VideoExists(id));
        }
        let rtcp_remote = rtcp_of(spec.remote, spec.rtcp_mux);
        match spec.peer_ssrc {
            Some(ssrc) if self.by_tag.contains_key(&(spec.remote, ssrc)) => {
                return Err(EngineError::RemoteInUse(spec.remote))
            }
            None if self.by_addr.contains_key(&spec.remote)
                || self.by_addr.contains_key(&rtcp_remote) =>
            {
                return Err(EngineError::RemoteInUse(spec.remote))
            }
            _ => {}
        }
        let source = Source {
            id,
            mix,
            rtcp_remote,
            ssrc: rng.next_u32(),
            publisher_ssrc: spec.peer_ssrc,
            budget: Budget::with_rate(now, VIDEO_RATE_PER_S, VIDEO_BURST),
            reception: ReceptionStats::new(video::VIDEO_CLOCK_RATE),
            throttle: KeyframeThrottle::new(
                KEYFRAME_MIN_INTERVAL,
                KEYFRAME_MAX_PER_WINDOW,
                KEYFRAME_WINDOW,
            ),
            keyframe_owed: false,
            fir_seq: 0,
            fanout: Vec::new(),
            next_rtcp: now + rtcp_interval.mul_f64(0.5 + 0.5 * rng.next_f64()),
            window: (now, 0),
            stats: VideoStats {
                mix,
                source: true,
                ..VideoStats::default()
            },
            spec,
        };
        let (remote, tag) = (source.spec.remote, source.spec.peer_ssrc);
        let idx = self.sources.insert(source);
        self.ids.insert(id, Slot::Source(idx));
        match tag {
            Some(ssrc) => {
                self.by_tag.insert((remote, ssrc), idx);
            }
            None => {
                self.by_addr.insert(remote, Slot::Source(idx));
                self.by_addr.insert(rtcp_remote, Slot::Source(idx));
            }
        }
        Ok(())
    }

    /// Adds a sink forwarding `source` (from its next keyframe); returns its SSRC.
    #[allow(clippy::too_many_arguments)] // an add: who, where, what, and the engine's own inputs
    pub fn add_sink(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        rtcp_interval: Duration,
        mix: MixId,
        id: VideoId,
        spec: VideoSinkSpec,
        source: Option<VideoId>,
        tx: &mut TxQueue,
    ) -> Result<u32, EngineError> {
        if self.ids.contains_key(&id) {
            return Err(EngineError::VideoExists(id));
        }
        let src = match source {
            Some(s) => Some(self.source_index(s)?),
            None => None,
        };
        let rtcp_remote = rtcp_of(spec.remote, spec.rtcp_mux);
        if !spec.relay
            && (self.by_addr.contains_key(&spec.remote) || self.by_addr.contains_key(&rtcp_remote))
        {
            return Err(EngineError::RemoteInUse(spec.remote));
        }
        let ssrc = spec.ssrc.unwrap_or_else(|| rng.next_u32());
        if spec.relay && self.relays.contains_key(&ssrc) {
            return Err(EngineError::VideoExists(id));
        }
        let sink = Sink {
            id,
            mix,
            rtcp_remote,
            rewriter: Rewriter::new(ssrc, rng.next_u32() as u16, rng.next_u32()),
            sender: SenderStats::new(),
            wanted: None,
            asked: None,
            budget: Budget::with_rate(now, VIDEO_RATE_PER_S, VIDEO_BURST),
            next_rtcp: now + rtcp_interval.mul_f64(0.5 + 0.5 * rng.next_f64()),
            last_sent: None,
            stats: VideoStats {
                mix,
                ssrc,
                ..VideoStats::default()
            },
            spec,
        };
        let (relay, remote) = (sink.spec.relay, sink.spec.remote);
        let idx = self.sinks.insert(sink);
        self.ids.insert(id, Slot::Sink(idx));
        if relay {
            self.relays.insert(ssrc, idx);
        } else {
            self.by_addr.insert(remote, Slot::Sink(idx));
            self.by_addr.insert(rtcp_remote, Slot::Sink(idx));
        }
        self.subscribe(now, idx, src, tx);
        Ok(ssrc)
    }

    /// Points a sink at another source (`None`: pause), from that source's next
    /// keyframe.
    pub fn switch_sink(
        &mut self,
        now: Instant,
        id: VideoId,
        source: Option<VideoId>,
        tx: &mut TxQueue,
    ) -> Result<(), EngineError> {
        let Some(&Slot::Sink(idx)) = self.ids.get(&id) else {
            return Err(EngineError::NoSuchVideo(id));
        };
        let src = match source {
            Some(s) => Some(self.source_index(s)?),
            None => None,
        };
        self.subscribe(now, idx, src, tx);
        Ok(())
    }

    fn source_index(&self, id: VideoId) -> Result<usize, EngineError> {
        match self.ids.get(&id) {
            Some(&Slot::Source(i)) => Ok(i),
            _ => Err(EngineError::NoSuchVideo(id)),
        }
    }

    fn subscribe(&mut self, now: Instant, sink: usize, src: Option<usize>, tx: &mut TxQueue) {
        let s = self.sinks.get_mut(sink).expect("sink index is live");
        if s.wanted == src {
            return;
        }
        let old_wanted = s.wanted;
        let current = s.rewriter.current().map(|c| c as usize);
        s.wanted = src;
        match src {
            Some(i) => {
                s.rewriter.switch_to(i as u32);
                if let Some(source) = self.sources.get_mut(i) {
                    if !source.fanout.contains(&sink) {
                        source.fanout.push(sink);
                    }
                }
            }
            None => s.rewriter.stop(),
        }
        // A pending source that is neither wanted nor flowing any more lets go.
        if let Some(o) = old_wanted {
            if Some(o) != src && (Some(o) != current || src.is_none()) {
                self.unfan(o, sink);
            }
        }
        if src.is_none() {
            if let Some(c) = current {
                self.unfan(c, sink);
            }
        }
        let s = self.sinks.get_mut(sink).expect("sink index is live");
        if s.rewriter.wants_keyframe() {
            s.asked = Some(now);
            if let Some(i) = src {
                self.request_keyframe(now, i, tx);
            }
        }
    }

    fn unfan(&mut self, source: usize, sink: usize) {
        if let Some(s) = self.sources.get_mut(source) {
            s.fanout.retain(|&k| k != sink);
        }
    }

    /// Removes a source or sink. A source's sinks stay, paused until switched.
    pub fn remove(
        &mut self,
        now: Instant,
        wall: Duration,
        cname: &str,
        id: VideoId,
        tx: &mut TxQueue,
    ) -> Result<VideoStats, EngineError> {
        let slot = self.ids.remove(&id).ok_or(EngineError::NoSuchVideo(id))?;
        match slot {
            Slot::Source(idx) => {
                let s = self.sources.remove(idx).expect("ids point at live sources");
                match s.spec.peer_ssrc {
                    Some(ssrc) => {
                        self.by_tag.remove(&(s.spec.remote, ssrc));
                    }
                    None => {
                        self.by_addr.remove(&s.spec.remote);
                        self.by_addr.remove(&s.rtcp_remote);
                    }
                }
                let me = idx as u32;
                for &k in &s.fanout {
                    let Some(sink) = self.sinks.get_mut(k) else {
                        continue;
                    };
                    if sink.wanted == Some(idx) {
                        sink.wanted = None;
                    }
                    if sink.rewriter.current() == Some(me) {
                        // It showed this source: dark until what it wants sends a keyframe.
                        sink.rewriter.stop();
                        if let Some(w) = sink.wanted {
                            sink.rewriter.switch_to(w as u32);
                        }
                    } else if sink.rewriter.pending() == Some(me) {
                        // It was switching here: it stays on what it shows.
                        match sink.rewriter.current() {
                            Some(c) => sink.rewriter.switch_to(c),
                            None => sink.rewriter.stop(),
                        }
                    }
                }
                let mut stats = s.stats.clone();
                stats.viewers = s.fanout.len() as u32;
                Ok(stats)
            }
            Slot::Sink(idx) => {
                let mut s = self.sinks.remove(idx).expect("ids point at live sinks");
                if s.spec.relay {
                    self.relays.remove(&s.stats.ssrc);
                } else {
                    self.by_addr.remove(&s.spec.remote);
                    self.by_addr.remove(&s.rtcp_remote);
                }
                for i in [s.wanted, s.rewriter.current().map(|c| c as usize)]
                    .into_iter()
                    .flatten()
                {
                    self.unfan(i, idx);
                }
                send_sink_report(&mut s, now, wall, cname, tx, true);
                Ok(sink_stats(&s, &self.sources))
            }
        }
    }

    /// Removes everything of a room (it closed).
    pub fn close_room(
        &mut self,
        now: Instant,
        wall: Duration,
        cname: &str,
        mix: MixId,
        tx: &mut TxQueue,
    ) {
        let mut ids: Vec<VideoId> = self
            .sinks
            .iter()
            .filter(|(_, s)| s.mix == mix)
            .map(|(_, s)| s.id)
            .collect();
        ids.extend(
            self.sources
                .iter()
                .filter(|(_, s)| s.mix == mix)
                .map(|(_, s)| s.id),
        );
        for id in ids {
            let _ = self.remove(now, wall, cname, id, tx);
        }
    }

    // ---- input -----------------------------------------------------------------

    /// A datagram that no audio leg owns: `true` when it was a video stream's
    /// (handled, or dropped and counted), `false` when it is foreign to video too.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        is_rtcp: bool,
        tx: &mut TxQueue,
    ) -> bool {
        let slot = match self.by_addr.get(&from) {
            Some(&slot) => slot,
            None => {
                let tagged = (!self.by_tag.is_empty())
                    .then(|| {
                        let at = if is_rtcp { 4 } else { 8 };
                        let b = data.get(at..at + 4)?;
                        let ssrc = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        self.by_tag.get(&(from, ssrc)).copied()
                    })
                    .flatten();
                match tagged {
                    Some(i) => Slot::Source(i),
                    None if is_rtcp && !self.relays.is_empty() => {
                        return self.relay_feedback(now, data, tx);
                    }
                    None => return false,
                }
            }
        };
        match slot {
            Slot::Source(idx) => {
                let s = self
                    .sources
                    .get_mut(idx)
                    .expect("maps point at live sources");
                if !s.budget.take(now) {
                    s.stats.flood_dropped += 1;
                    return true;
                }
                if is_rtcp {
                    self.source_rtcp(now, idx, data);
                } else {
                    self.forward(now, idx, data, tx);
                }
            }
            Slot::Sink(idx) => {
                let s = self.sinks.get_mut(idx).expect("maps point at live sinks");
                if !s.budget.take(now) {
                    s.stats.flood_dropped += 1;
                    return true;
                }
                if is_rtcp {
                    self.sink_rtcp(now, idx, data, tx);
                } else {
                    // A viewer's address sends no RTP to us: counted, dropped.
                    s.stats.unknown_payload_type += 1;
                }
            }
        }
        true
    }

    fn forward(&mut self, now: Instant, idx: usize, data: &[u8], tx: &mut TxQueue) {
        let Ok(pkt) = RtpPacket::parse(data) else {
            self.totals.malformed += 1;
            if let Some(s) = self.sources.get_mut(idx) {
                s.stats.malformed += 1;
            }
            return;
        };
        let s = self.sources.get_mut(idx).expect("caller checked");
        if pkt.payload_type != s.spec.payload_type {
            s.stats.unknown_payload_type += 1;
            return;
        }
        match s.publisher_ssrc {
            Some(ssrc) if ssrc != pkt.ssrc && s.spec.peer_ssrc.is_some() => {
                s.stats.ssrc_refused += 1;
                return;
            }
            Some(ssrc) if ssrc != pkt.ssrc => {
                // A restarted encoder: a new stream from the member's own address.
                s.reception = ReceptionStats::new(video::VIDEO_CLOCK_RATE);
                s.publisher_ssrc = Some(pkt.ssrc);
            }
            None => s.publisher_ssrc = Some(pkt.ssrc),
            Some(_) => {}
        }
        let info = match video::inspect(s.spec.codec, pkt.payload) {
            Ok(info) => info,
            Err(_) => {
                s.stats.malformed += 1;
                self.totals.malformed += 1;
                return;
            }
        };
        if pkt.payload.len() + 12 > MAX_VIDEO_PACKET {
            s.stats.malformed += 1;
            self.totals.malformed += 1;
            return;
        }
        s.stats.packets += 1;
        s.stats.bytes += data.len() as u64;
        s.window.1 += data.len() as u64;
        s.reception
            .on_packet(now, pkt.ssrc, pkt.sequence, pkt.timestamp);
        if info.keyframe && info.frame_start {
            s.stats.keyframes += 1;
            s.throttle.on_keyframe(now);
            s.keyframe_owed = false;
        } else if s.keyframe_owed {
            s.keyframe_owed = false;
            if s.throttle.request(now) {
                send_keyframe_request(s, tx);
            }
        }
        self.fan_out(now, idx, &pkt, info, tx);
    }

    fn fan_out(
        &mut self,
        now: Instant,
        idx: usize,
        pkt: &RtpPacket<'_>,
        info: FrameInfo,
        tx: &mut TxQueue,
    ) {
        let Some(source) = self.sources.get(idx) else {
            return;
        };
        let sinks = &mut self.sinks;
        let switched = &mut self.switched;
        let totals = &mut self.totals;
        for &k in &source.fanout {
            let Some(sink) = sinks.get_mut(k) else {
                continue;
            };
            let before = sink.rewriter.current();
            let Some((seq, ts)) =
                sink.rewriter
                    .on_packet(now, idx as u32, pkt.sequence, pkt.timestamp, info)
            else {
                continue;
            };
            if let Some(old) = before.filter(|&b| b != idx as u32) {
                switched.push((k, old as usize));
                sink.stats.switches += 1;
                sink.asked = None;
            } else if before.is_none() {
                sink.asked = None;
            }
            let header = RtpHeader {
                marker: pkt.marker,
                payload_type: sink.spec.payload_type,
                sequence: seq,
                timestamp: ts,
                ssrc: sink.stats.ssrc,
            };
            let payload = pkt.payload;
            let len = 12 + payload.len();
            tx.push_with(sink.spec.remote, Via::Rtp, len, |buf| {
                header.write(buf).ok()?;
                buf[12..len].copy_from_slice(payload);
                Some(len)
            });
            sink.sender.on_sent(payload.len());
            sink.last_sent = Some((now, ts));
            sink.stats.packets_sent += 1;
            sink.stats.bytes_sent += len as u64;
            totals.forwarded += 1;
            totals.forwarded_bytes += len as u64;
        }
        while let Some((k, old)) = self.switched.pop() {
            self.unfan(old, k);
        }
    }

    /// Every source's and sink's figures.
    pub fn snapshot(&self) -> Vec<(VideoId, VideoStats)> {
        let mut out = Vec::with_capacity(self.ids.len());
        for (_, s) in self.sources.iter() {
            let mut stats = s.stats.clone();
            stats.viewers = s
                .fanout
                .iter()
                .filter(|&&k| self.sinks.get(k).is_some_and(|k| !k.spec.relay))
                .count() as u32;
            stats.keyframe_requests = s.throttle.sent();
            stats.keyframe_requests_suppressed = s.throttle.suppressed();
            stats.lost = s.reception.lost();
            out.push((s.id, stats));
        }
        for (_, s) in self.sinks.iter() {
            out.push((s.id, sink_stats(s, &self.sources)));
        }
        out.sort_unstable_by_key(|(id, _)| *id);
        out
    }
}

fn sink_stats(s: &Sink, sources: &Slab<Source>) -> VideoStats {
    let mut stats = s.stats.clone();
    stats.waiting_keyframe = s.rewriter.wants_keyframe();
    stats.forwarding = s
        .rewriter
        .current()
        .and_then(|i| sources.get(i as usize))
        .map(|src| src.id);
    stats
}
