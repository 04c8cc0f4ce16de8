//! One layer of a video publisher: a [`Clip`] looped as VP8 RTP, paced by `now`.
//!
//! Run loop (the crate's vocabulary): call [`ClipPublisher::poll`] with the time
//! whenever [`ClipPublisher::next_deadline`] has passed (the first call starts the
//! stream and sends the first frame at once); hand it every PLI the node sends with
//! [`ClipPublisher::on_pli`].
//!
//! - **Pacing**: frame `k` of the stream is due `media_time(k)` after the first
//!   poll, where media time advances by each frame's interval in the clip; a poll
//!   sends every frame then due, all its packets back to back (as an encoder's
//!   packetizer does).
//! - **Timestamps** are `base + media_time` in 90 kHz ticks, so they run on across
//!   loops and across PLI jumps; sequence numbers run on packet by packet. Base,
//!   first sequence number and first PictureID come from the seed (RFC 3550 §5.1
//!   wants them random).
//! - **PLI** (RFC 4585 §6.3.1): the next frame sent is a key frame. An encoder would
//!   encode one; a clip has one every second, so the publisher jumps to the key
//!   frame nearest to where it is ([`Clip::nearest_keyframe`]), repeating or
//!   skipping under half a second of picture. Time does not jump: the key frame
//!   goes out at the next frame's due time, with the next frame's timestamp.
//! - **Late polls**: a poll more than [`MAX_LAG`] behind does not burst the backlog
//!   (a load generator that stalled must not flood the node): the schedule moves
//!   forward to `now`, as a paused camera would, and timestamps stay continuous.
//!
//! Nothing is allocated after construction: packets are written into one buffer
//! the publisher owns and lent to the caller's closure.

use super::clip::Clip;
use super::packetize::{Vp8Packetizer, DEFAULT_MAX_PAYLOAD};
use super::VIDEO_CLOCK_HZ;
use scnf_media::rtp::{RtpHeader, RTP_HEADER_LEN};
use scnf_media::util::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How far behind its schedule a poll may be and still catch up by sending the
/// frames it missed.
pub const MAX_LAG: Duration = Duration::from_secs(1);

/// What a publisher has sent and received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// RTP packets sent.
    pub packets: u64,
    /// Bytes of those packets, RTP header included (no UDP/IP).
    pub bytes: u64,
    /// Frames sent.
    pub frames: u64,
    /// Key frames sent.
    pub keyframes: u64,
    /// PLIs handed to [`ClipPublisher::on_pli`].
    pub plis: u64,
    /// Times a late poll moved the schedule forward ([`MAX_LAG`]).
    pub resyncs: u64,
}

/// A clip looped as one RTP stream (one layer of a publisher).
#[derive(Debug)]
pub struct ClipPublisher {
    clip: Arc<Clip>,
    ssrc: u32,
    payload_type: u8,
    packetizer: Vp8Packetizer,
    seq: u16,
    ts_base: u32,
    /// Index of the next frame in the clip.
    frame: usize,
    /// Media time of the next frame since the stream started, 90 kHz ticks.
    media_90k: u64,
    /// When media time 0 was (the first poll), shifted by resyncs.
    start: Option<Instant>,
    /// One packet: RTP header and payload.
    buf: Vec<u8>,
    stats: PublisherStats,
}

impl ClipPublisher {
    /// A publisher of `clip` as SSRC `ssrc`, payload type `payload_type` (taken
    /// modulo 128), payloads of at most [`DEFAULT_MAX_PAYLOAD`] bytes. `seed`
    /// picks the first sequence number, timestamp and PictureID.
    pub fn new(clip: Arc<Clip>, ssrc: u32, payload_type: u8, seed: u64) -> ClipPublisher {
        let mut rng = Rng::new(seed);
        let seq = rng.next_u32() as u16;
        let ts_base = rng.next_u32();
        let picture_id = rng.next_u32() as u16;
        ClipPublisher {
            clip,
            ssrc,
            payload_type: payload_type & 0x7f,
            packetizer: Vp8Packetizer::new(DEFAULT_MAX_PAYLOAD, picture_id),
            seq,
            ts_base,
            frame: 0,
            media_90k: 0,
            start: None,
            buf: vec![0; RTP_HEADER_LEN + DEFAULT_MAX_PAYLOAD],
            stats: PublisherStats::default(),
        }
    }

    /// The same publisher with payloads of at most `max_payload` bytes (e.g. to
    /// leave room for a tunnel); at least the packetizer's minimum.
    pub fn with_max_payload(mut self, max_payload: usize) -> ClipPublisher {
        let picture_id = self.packetizer.next_picture_id();
        self.packetizer = Vp8Packetizer::new(max_payload, picture_id);
        self.buf = vec![0; RTP_HEADER_LEN + self.packetizer.max_payload()];
        self
    }

    /// The SSRC this publisher sends as.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The clip being looped.
    pub fn clip(&self) -> &Arc<Clip> {
        &self.clip
    }

    /// Counters so far.
    pub fn stats(&self) -> PublisherStats {
        self.stats
    }

    /// When the next frame is due; `None` before the first poll (which is due at
    /// once).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.start.map(|s| s + ticks_to_duration(self.media_90k))
    }

    /// Sends, through `out`, every packet due by `now`; returns how many. Each
    /// slice is one RTP packet, valid only during the call.
    pub fn poll(&mut self, now: Instant, out: &mut impl FnMut(&[u8])) -> usize {
        let start = *self.start.get_or_insert(now);
        let due = start + ticks_to_duration(self.media_90k);
        if now.saturating_duration_since(due) > MAX_LAG {
            self.start = Some(start + (now - due));
            self.stats.resyncs += 1;
        }
        let mut sent = 0;
        while self.next_deadline().is_some_and(|d| d <= now) {
            sent += self.send_frame(out);
        }
        sent
    }

    /// A PLI from the receiver: the next frame sent will be a key frame.
    pub fn on_pli(&mut self, _now: Instant) {
        self.stats.plis += 1;
        self.frame = self.clip.nearest_keyframe(self.frame);
    }

    fn send_frame(&mut self, out: &mut impl FnMut(&[u8])) -> usize {
        // Borrows `clip` while the other fields change: no Arc traffic per frame.
        let clip = &*self.clip;
        let frame = clip.frame(self.frame);
        let timestamp = self.ts_base.wrapping_add(self.media_90k as u32);
        let mut payloads = self.packetizer.frame(frame.data);
        let mut sent = 0;
        // The buffer holds the largest payload, so `next_into` never fails here.
        loop {
            let (head, body) = self.buf.split_at_mut(RTP_HEADER_LEN);
            let Some(Ok(p)) = payloads.next_into(body) else {
                break;
            };
            let header = RtpHeader {
                marker: p.last,
                payload_type: self.payload_type,
                sequence: self.seq,
                timestamp,
                ssrc: self.ssrc,
            };
            header
                .write(head)
                .expect("12-byte header buffer and a 7-bit payload type");
            let len = RTP_HEADER_LEN + p.len;
            out(&self.buf[..len]);
            self.seq = self.seq.wrapping_add(1);
            self.stats.packets += 1;
            self.stats.bytes += len as u64;
            sent += 1;
        }
        self.stats.frames += 1;
        self.stats.keyframes += u64::from(frame.keyframe);
        self.media_90k += clip.interval_90k(self.frame);
        self.frame = (self.frame + 1) % clip.len();
        sent
    }
}

/// Ticks of the 90 kHz clock as a duration.
fn ticks_to_duration(ticks: u64) -> Duration {
    let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(VIDEO_CLOCK_HZ);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::viewer::{ViewerJudge, Vp8Descriptor};
    use crate::video::Layer;
    use scnf_media::rtp::RtpPacket;
    use scnf_media::testclock::anchor;

    /// One packet as sent: when, and its header fields.
    #[derive(Debug, Clone, Copy)]
    struct Sent {
        at: Instant,
        seq: u16,
        ts: u32,
        marker: bool,
        key_start: bool,
        len: usize,
    }

    fn sent(at: Instant, pkt: &[u8]) -> Sent {
        let rtp = RtpPacket::parse(pkt).unwrap();
        let (d, data) = Vp8Descriptor::parse(rtp.payload).unwrap();
        Sent {
            at,
            seq: rtp.sequence,
            ts: rtp.timestamp,
            marker: rtp.marker,
            key_start: d.starts_keyframe(data),
            len: pkt.len(),
        }
    }

    fn publisher(layer: Layer) -> ClipPublisher {
        ClipPublisher::new(Arc::new(Clip::shipped(layer)), 0xabcd, 96, 7)
    }

    /// Polls `p` at every deadline from `from` up to `until`, calling `on_pli`
    /// first at each time in `plis` that has come; returns what was sent.
    fn run(p: &mut ClipPublisher, from: Instant, until: Instant, plis: &[Instant]) -> Vec<Sent> {
        let mut out = Vec::new();
        let mut plis = plis.iter().peekable();
        let mut now = from;
        while now <= until {
            while let Some(&&t) = plis.peek() {
                if t > now {
                    break;
                }
                p.on_pli(t);
                plis.next();
            }
            p.poll(now, &mut |pkt| out.push(sent(now, pkt)));
            let next = p.next_deadline().unwrap();
            now = match plis.peek() {
                Some(&&t) if t < next => t,
                _ => next,
            };
        }
        out
    }

    #[test]
    fn the_sent_bitrate_is_the_clips_over_two_loops() {
        for layer in Layer::ALL {
            let mut p = publisher(layer);
            let t0 = anchor();
            // 8 s: two passes of the 4 s clip, the 120th frame is the last one due.
            let out = run(&mut p, t0, t0 + Duration::from_millis(7_990), &[]);
            let s = p.stats();
            assert_eq!(s.frames, 120, "{layer:?}");
            assert_eq!(s.keyframes, 8, "{layer:?}");
            assert_eq!(s.packets, out.len() as u64);
            assert_eq!(s.bytes, out.iter().map(|s| s.len as u64).sum::<u64>());
            let sent_bps = s.bytes as f64 * 8.0 / 8.0;
            let clip_bps = p.clip().bitrate_bps();
            assert!(
                (sent_bps / clip_bps - 1.0).abs() < 0.25,
                "{layer:?}: sent {sent_bps:.0} bit/s, clip {clip_bps:.0}"
            );
        }
    }

    #[test]
    fn frames_go_out_on_time_with_continuous_numbers_across_loops() {
        let mut p = publisher(Layer::Medium);
        let t0 = anchor();
        let out = run(&mut p, t0, t0 + Duration::from_secs(9), &[]);
        let ts0 = out[0].ts;
        let mut frame = 0u32;
        for w in out.windows(2) {
            let (a, b) = (w[0], w[1]);
            assert_eq!(b.seq, a.seq.wrapping_add(1));
            if a.marker {
                frame += 1;
                assert_eq!(b.ts, ts0.wrapping_add(6000 * frame), "frame {frame}");
                let due = t0 + ticks_to_duration(6000 * u64::from(frame));
                assert_eq!(b.at, due, "frame {frame}");
                assert_eq!(b.key_start, frame % 15 == 0, "frame {frame}");
            } else {
                assert_eq!(b.ts, a.ts, "packets of one frame share its timestamp");
                assert_eq!(b.at, a.at, "a frame's packets go out together");
            }
        }
        assert_eq!(frame, 135);
    }

    #[test]
    fn a_pli_makes_the_next_frame_a_key_frame_within_one_frame_interval() {
        let interval = ticks_to_duration(6000);
        // PLI times in ms from the start: mid-GOP either side of the middle, just
        // after a key frame, and on a frame's due time.
        for pli_ms in [250u64, 700, 1010, 1400, 2600] {
            let mut p = publisher(Layer::Low);
            let t0 = anchor();
            let pli = t0 + Duration::from_millis(pli_ms);
            let out = run(&mut p, t0, t0 + Duration::from_secs(3), &[pli]);
            let first_after = out.iter().find(|s| s.at >= pli).unwrap();
            assert!(first_after.key_start, "PLI at {pli_ms} ms");
            assert!(first_after.at - pli <= interval, "PLI at {pli_ms} ms");
            assert_eq!(p.stats().plis, 1);
            for w in out.windows(2) {
                assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
                let step = w[1].ts.wrapping_sub(w[0].ts);
                assert!(step == 0 || step == 6000, "PLI at {pli_ms} ms: step {step}");
            }
        }
    }

    #[test]
    fn a_late_poll_does_not_burst_the_backlog() {
        let mut p = publisher(Layer::Low);
        let t0 = anchor();
        let mut packets = 0;
        p.poll(t0, &mut |_| packets += 1);
        let frames_before = p.stats().frames;
        let late = t0 + Duration::from_secs(5);
        p.poll(late, &mut |_| packets += 1);
        assert_eq!(p.stats().resyncs, 1);
        assert!(p.stats().frames - frames_before <= 16, "{:?}", p.stats());
        assert!(p.next_deadline().unwrap() > late);
    }

    #[test]
    fn the_seed_picks_sequence_timestamp_and_picture_id() {
        let first = |seed| {
            let mut p = ClipPublisher::new(Arc::new(Clip::shipped(Layer::Low)), 1, 96, seed);
            let mut pkt = Vec::new();
            p.poll(anchor(), &mut |b| {
                if pkt.is_empty() {
                    pkt = b.to_vec();
                }
            });
            pkt[..16].to_vec()
        };
        assert_eq!(first(1), first(1));
        assert_ne!(first(1)[2..8], first(2)[2..8]);
        assert_ne!(first(1)[14..16], first(2)[14..16]);
    }

    #[test]
    fn a_publisher_seen_by_the_judge_is_a_clean_stream() {
        let mut p = publisher(Layer::High).with_max_payload(900);
        let mut judge = ViewerJudge::new();
        let t0 = anchor();
        judge.on_request(t0, "high");
        let mut now = t0;
        while now < t0 + Duration::from_secs(5) {
            p.poll(now, &mut |pkt| {
                assert!(pkt.len() <= RTP_HEADER_LEN + 900);
                judge.on_packet(now, pkt);
            });
            now = p.next_deadline().unwrap();
        }
        let r = judge.report(now);
        assert!(r.faults().is_empty(), "{:?}", r.faults());
        let high = r.label("high").unwrap();
        assert_eq!(high.key_delays, [Duration::ZERO]);
        assert_eq!(high.packets, p.stats().packets);
        let rel = high.bitrate_bps() / p.clip().bitrate_bps() - 1.0;
        assert!(rel.abs() < 0.25, "{rel}");
    }
}
