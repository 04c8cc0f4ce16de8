//! Video forwarding, as a viewer and a publisher see it: one stream per view slot
//! with its own SSRC and continuous numbering across switches, switches only at
//! keyframes, keyframe requests on subscribe and switch and never more often than
//! the throttle allows, and bad input counted, never forwarded.

use super::video::{KEYFRAME_MAX_PER_WINDOW, KEYFRAME_MIN_INTERVAL};
use super::*;
use scnf_media::rtp::rtcp::feedback::{self, Feedback};
use scnf_media::rtp::{parse_compound, RtcpPacket, RtpHeader, RtpPacket};
use scnf_media::video::VideoCodec;

const ROOM: MixId = MixId(1);
const LOW: VideoId = VideoId(1);
const HIGH: VideoId = VideoId(2);
const OTHER: VideoId = VideoId(3);
const VIEW: VideoId = VideoId(10);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Publisher P sends LOW from :5000 and HIGH from :5002; Q sends from :6000; the
/// viewer receives at V.
const P_LOW: &str = "192.0.2.1:5000";
const P_HIGH: &str = "192.0.2.1:5002";
const Q: &str = "192.0.2.2:6000";
const V: &str = "192.0.2.9:7000";

/// A VP8 payload: descriptor with S set (a frame's first packet) or not, then the
/// VP8 payload header whose P bit says key (0) or delta (1).
fn vp8(start: bool, key: bool) -> Vec<u8> {
    let mut p = vec![if start { 0x10 } else { 0x00 }];
    if start {
        p.extend_from_slice(&[if key { 0x10 } else { 0x11 }, 0x02, 0x00]);
        if key {
            p.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
        }
    }
    p.resize(200, 0xab);
    p
}

fn rtp(ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut pkt = vec![0u8; 12];
    RtpHeader {
        marker: true,
        payload_type: 96,
        sequence: seq,
        timestamp: ts,
        ssrc,
    }
    .write(&mut pkt)
    .unwrap();
    pkt.extend_from_slice(payload);
    pkt
}

fn source(remote: &str) -> VideoSourceSpec {
    VideoSourceSpec {
        remote: addr(remote),
        rtcp_mux: true,
        codec: VideoCodec::Vp8,
        payload_type: 96,
        fir: false,
        peer_ssrc: None,
    }
}

fn sink(remote: &str, pt: u8) -> VideoSinkSpec {
    VideoSinkSpec {
        remote: addr(remote),
        rtcp_mux: true,
        payload_type: pt,
        ssrc: None,
        relay: false,
    }
}

fn engine() -> (Engine, Instant) {
    let now = scnf_media::testclock::anchor();
    let cfg = EngineConfig::new("video", (now, Duration::from_secs(1_700_000_000)));
    let mut e = Engine::new(cfg, 11);
    e.open_room(now, ROOM).unwrap();
    e.add_video_source(now, ROOM, LOW, source(P_LOW)).unwrap();
    e.add_video_source(now, ROOM, HIGH, source(P_HIGH)).unwrap();
    e.add_video_source(now, ROOM, OTHER, source(Q)).unwrap();
    (e, now)
}

/// What one drain of the engine sent: RTP to `to` as (ssrc, seq, ts, pt, first
/// payload byte), and the keyframe requests (PLI/FIR) to each address.
#[derive(Default)]
struct Sent {
    rtp: Vec<(u32, u16, u32, u8, Vec<u8>)>,
    pli: Vec<(SocketAddr, u32)>,
    fir: Vec<(SocketAddr, u32)>,
    sr: Vec<SocketAddr>,
    rr: Vec<SocketAddr>,
}

fn drain(e: &mut Engine, to: &str) -> Sent {
    let to = addr(to);
    let mut s = Sent::default();
    while let Some(t) = e.poll_transmit() {
        if scnf_media::rtp::is_rtcp(t.data) {
            for p in parse_compound(t.data).flatten() {
                match p {
                    RtcpPacket::Other { pt, count, body } => {
                        match feedback::parse_feedback(pt, count, body) {
                            Some(Feedback::Pli { media, .. }) => s.pli.push((t.dst, media)),
                            Some(Feedback::Fir { media, .. }) => s.fir.push((t.dst, media)),
                            _ => {}
                        }
                    }
                    RtcpPacket::SenderReport(_) => s.sr.push(t.dst),
                    RtcpPacket::ReceiverReport(_) => s.rr.push(t.dst),
                    _ => {}
                }
            }
        } else if t.dst == to {
            let p = RtpPacket::parse(t.data).unwrap();
            s.rtp.push((
                p.ssrc,
                p.sequence,
                p.timestamp,
                p.payload_type,
                p.payload.to_vec(),
            ));
        }
    }
    s
}

/// A publisher's frame: one packet, key or delta, at 30 fps from `frame`.
fn frame(e: &mut Engine, now: Instant, from: &str, ssrc: u32, frame: u16, key: bool) {
    let pkt = rtp(
        ssrc,
        1000 + frame,
        90_000 + 3000 * frame as u32,
        &vp8(true, key),
    );
    e.handle_datagram(now, addr(from), Via::Rtp, &pkt);
}

#[test]
fn a_view_gets_its_own_ssrc_and_payload_type_from_the_first_keyframe_on() {
    let (mut e, mut now) = engine();
    let ssrc = e
        .add_video_sink(now, ROOM, VIEW, sink(V, 100), Some(LOW))
        .unwrap();
    // No packet from the publisher yet: nothing to name in a PLI.
    assert!(drain(&mut e, V).pli.is_empty());
    frame(&mut e, now, P_LOW, 0xaaaa, 0, false);
    frame(&mut e, now, P_LOW, 0xaaaa, 1, false);
    let sent = drain(&mut e, V);
    assert!(sent.rtp.is_empty(), "deltas before a keyframe are dropped");
    assert_eq!(
        sent.pli,
        vec![(addr(P_LOW), 0xaaaa)],
        "the waiting view asks the publisher once it knows its SSRC"
    );
    now += Duration::from_millis(300);
    frame(&mut e, now, P_LOW, 0xaaaa, 2, true);
    frame(&mut e, now, P_LOW, 0xaaaa, 3, false);
    let sent = drain(&mut e, V);
    assert_eq!(sent.rtp.len(), 2);
    for (s, _, _, pt, _) in &sent.rtp {
        assert_eq!((*s, *pt), (ssrc, 100));
    }
    assert_eq!(sent.rtp[1].1, sent.rtp[0].1.wrapping_add(1));
    assert_eq!(sent.rtp[1].2.wrapping_sub(sent.rtp[0].2), 3000);
    assert_eq!(
        sent.rtp[0].4,
        vp8(true, true),
        "the payload goes through untouched"
    );
}

#[test]
fn a_layer_switch_waits_for_the_new_layers_keyframe_and_numbering_runs_on() {
    let (mut e, mut now) = engine();
    e.add_video_sink(now, ROOM, VIEW, sink(V, 96), Some(LOW))
        .unwrap();
    frame(&mut e, now, P_LOW, 1, 0, true);
    frame(&mut e, now, P_HIGH, 2, 0, true);
    let mut got = drain(&mut e, V).rtp;
    assert_eq!(got.len(), 1);
    e.switch_video_sink(now, VIEW, Some(HIGH)).unwrap();
    assert_eq!(
        drain(&mut e, V).pli,
        vec![(addr(P_HIGH), 2)],
        "one PLI to the new layer"
    );
    for f in 1..4 {
        now += Duration::from_millis(33);
        frame(&mut e, now, P_LOW, 1, f, false);
        frame(&mut e, now, P_HIGH, 2, f + 500, false);
    }
    let low_only = drain(&mut e, V).rtp;
    assert_eq!(
        low_only.len(),
        3,
        "the old layer flows until the new one's keyframe"
    );
    got.extend(low_only);
    now += Duration::from_millis(33);
    frame(&mut e, now, P_HIGH, 2, 600, true);
    frame(&mut e, now, P_LOW, 1, 4, false);
    now += Duration::from_millis(33);
    frame(&mut e, now, P_HIGH, 2, 601, false);
    let after = drain(&mut e, V).rtp;
    assert_eq!(
        after.len(),
        2,
        "after the switch only the new layer: {after:?}"
    );
    assert_eq!(after[0].4, vp8(true, true));
    got.extend(after);
    for w in got.windows(2) {
        assert_eq!(w[1].0, w[0].0, "one SSRC");
        assert_eq!(w[1].1, w[0].1.wrapping_add(1), "sequence runs on: {got:?}");
        let dt = w[1].2.wrapping_sub(w[0].2);
        assert!(dt > 0 && dt < 90_000, "timestamps move forward: {dt}");
    }
    let stats = e.video_stats();
    let view = &stats.iter().find(|(id, _)| *id == VIEW).unwrap().1;
    assert_eq!((view.switches, view.forwarding), (1, Some(HIGH)));
    let low = &stats.iter().find(|(id, _)| *id == LOW).unwrap().1;
    assert_eq!(low.viewers, 0, "the old layer let the view go");
}

#[test]
fn a_viewer_spamming_keyframe_requests_cannot_make_the_publisher_send_keyframes_continuously() {
    let (mut e, mut now) = engine();
    e.add_video_sink(now, ROOM, VIEW, sink(V, 96), Some(LOW))
        .unwrap();
    frame(&mut e, now, P_LOW, 7, 0, true);
    drain(&mut e, V);
    let mut pli = vec![0u8; 12];
    feedback::write_pli(&mut pli, 0x1234, 0).unwrap();
    let mut to_publisher = Vec::new();
    let start = now;
    // 10 s of a PLI every millisecond from the viewer, the mix tick running.
    for ms in 0..10_000u64 {
        now = start + Duration::from_millis(ms);
        e.handle_datagram(now, addr(V), Via::Rtp, &pli);
        if ms % 20 == 0 {
            e.handle_timeout(now);
        }
        let sent = drain(&mut e, V);
        to_publisher.extend(sent.pli.iter().map(|_| now));
    }
    let n = to_publisher.len() as u32;
    assert!(n >= 10, "the viewer is still served: {n} requests");
    assert!(
        n <= KEYFRAME_MAX_PER_WINDOW * 11,
        "throttled: {n} requests in 10 s"
    );
    for w in to_publisher.windows(2) {
        assert!(
            w[1] - w[0] >= KEYFRAME_MIN_INTERVAL,
            "spacing {:?}",
            w[1] - w[0]
        );
    }
    let stats = e.video_stats();
    let low = &stats.iter().find(|(id, _)| *id == LOW).unwrap().1;
    assert_eq!(low.keyframe_requests, n as u64);
    assert!(low.keyframe_requests_suppressed > 0);
}

#[test]
fn a_publisher_change_keeps_the_views_stream_continuous() {
    let (mut e, mut now) = engine();
    e.add_video_sink(now, ROOM, VIEW, sink(V, 96), Some(LOW))
        .unwrap();
    frame(&mut e, now, P_LOW, 1, 0, true);
    frame(&mut e, now, P_LOW, 1, 1, false);
    e.switch_video_sink(now, VIEW, Some(OTHER)).unwrap();
    now += Duration::from_millis(500);
    // Q's numbering is unrelated to P's.
    let pkt = rtp(9, 40_000, 7, &vp8(true, true));
    e.handle_datagram(now, addr(Q), Via::Rtp, &pkt);
    let got = drain(&mut e, V).rtp;
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].1, got[1].1.wrapping_add(1));
    let dt = got[2].2.wrapping_sub(got[1].2);
    assert!((40_000..50_000).contains(&dt), "500 ms at 90 kHz: {dt}");
}

#[test]
fn a_removed_source_leaves_its_views_dark_until_a_new_stream_sends_a_keyframe() {
    let (mut e, now) = engine();
    e.add_video_sink(now, ROOM, VIEW, sink(V, 96), Some(LOW))
        .unwrap();
    frame(&mut e, now, P_LOW, 1, 0, true);
    assert_eq!(drain(&mut e, V).rtp.len(), 1);
    e.remove_video(LOW).unwrap();
    frame(&mut e, now, P_LOW, 1, 1, false);
    assert!(drain(&mut e, V).rtp.is_empty());
    // The publisher re-opens the layer (a new id) and the view is pointed at it.
    e.add_video_source(now, ROOM, VideoId(4), source(P_LOW))
        .unwrap();
    e.switch_video_sink(now, VIEW, Some(VideoId(4))).unwrap();
    frame(&mut e, now, P_LOW, 5, 2, false);
    assert!(drain(&mut e, V).rtp.is_empty(), "waits for a keyframe");
    frame(&mut e, now, P_LOW, 5, 3, true);
    assert_eq!(drain(&mut e, V).rtp.len(), 1);
}

#[test]
fn bad_video_input_is_counted_and_never_forwarded() {
    let (mut e, now) = engine();
    e.add_video_sink(now, ROOM, VIEW, sink(V, 96), Some(LOW))
        .unwrap();
    frame(&mut e, now, P_LOW, 1, 0, true);
    drain(&mut e, V);
    // An empty VP8 payload, a truncated RTP header, a wrong payload type, RTP from
    // the viewer's own address, RTCP garbage.
    e.handle_datagram(now, addr(P_LOW), Via::Rtp, &rtp(1, 1001, 3000, &[]));
    e.handle_datagram(now, addr(P_LOW), Via::Rtp, &[0x80, 96, 0]);
    let mut wrong_pt = rtp(1, 1002, 3000, &vp8(true, false));
    wrong_pt[1] = 97;
    e.handle_datagram(now, addr(P_LOW), Via::Rtp, &wrong_pt);
    e.handle_datagram(now, addr(V), Via::Rtp, &rtp(1, 5, 5, &vp8(true, true)));
    e.handle_datagram(now, addr(V), Via::Rtp, &[0x81, 206, 0xff, 0xff, 1, 2]);
    assert!(drain(&mut e, V).rtp.is_empty());
    let stats = e.video_stats();
    let low = &stats.iter().find(|(id, _)| *id == LOW).unwrap().1;
    assert_eq!((low.malformed, low.unknown_payload_type), (2, 1));
    assert_eq!(low.packets, 1, "only the good keyframe counted as received");
    // An address no stream owns is foreign, video or not.
    let foreign = e.stats().foreign;
    e.handle_datagram(
        now,
        addr("192.0.2.77:5000"),
        Via::Rtp,
        &rtp(1, 1, 1, &vp8(true, true)),
    );
    assert_eq!(e.stats().foreign, foreign + 1);
    // Operations on streams that do not exist fail cleanly.
    assert!(e.switch_video_sink(now, VideoId(99), Some(LOW)).is_err());
    assert!(e.switch_video_sink(now, VIEW, Some(VideoId(99))).is_err());
    assert!(e.remove_video(VideoId(99)).is_err());
    assert!(e
        .add_video_source(now, ROOM, LOW, source("192.0.2.50:1"))
        .is_err());
    assert!(e
        .add_video_source(now, ROOM, VideoId(50), source(P_LOW))
        .is_err());
    assert!(e
        .add_video_sink(now, MixId(9), VideoId(51), sink(V, 96), None)
        .is_err());
}

#[test]
fn a_flooding_publisher_is_cut_at_its_budget() {
    let (mut e, now) = engine();
    e.add_video_sink(now, ROOM, VIEW, sink(V, 96), Some(LOW))
        .unwrap();
    for k in 0..5_000u16 {
        let pkt = rtp(1, k, 0, &vp8(true, true));
        e.handle_datagram(now, addr(P_LOW), Via::Rtp, &pkt);
    }
    let forwarded = drain(&mut e, V).rtp.len();
    let stats = e.video_stats();
    let low = &stats.iter().find(|(id, _)| *id == LOW).unwrap().1;
    assert!(
        forwarded < 500,
        "a burst passes, a flood does not: {forwarded}"
    );
    assert_eq!(low.flood_dropped as usize + forwarded, 5_000);
}

#[test]
fn relays_between_nodes_are_told_apart_by_ssrc_and_take_keyframe_requests_by_ssrc() {
    let (mut e, now) = engine();
    let node = "198.51.100.7:20000";
    // A relay of LOW toward a group: its SSRC is the scaler's choice.
    let relay = VideoSinkSpec {
        remote: addr("239.192.0.1:5004"),
        rtcp_mux: true,
        payload_type: 96,
        ssrc: Some(0x5151),
        relay: true,
    };
    assert_eq!(
        e.add_video_sink(now, ROOM, VideoId(20), relay, Some(LOW))
            .unwrap(),
        0x5151
    );
    frame(&mut e, now, P_LOW, 1, 0, true);
    let to_group = drain(&mut e, "239.192.0.1:5004").rtp;
    assert_eq!(to_group.len(), 1);
    assert_eq!(to_group[0].0, 0x5151);
    // A receiving node asks for a keyframe of the relay by its SSRC.
    let mut pli = vec![0u8; 12];
    feedback::write_pli(&mut pli, 0x7777, 0x5151).unwrap();
    let later = now + Duration::from_millis(300);
    e.handle_datagram(later, addr(node), Via::Rtp, &pli);
    assert_eq!(drain(&mut e, V).pli, vec![(addr(P_LOW), 1)]);
    // The receiving side: two streams relayed from one node address, by SSRC.
    for (id, ssrc) in [(30u64, 0x100u32), (31, 0x200)] {
        let mut spec = source(node);
        spec.peer_ssrc = Some(ssrc);
        e.add_video_source(now, ROOM, VideoId(id), spec).unwrap();
    }
    e.add_video_sink(now, ROOM, VIEW, sink(V, 96), Some(VideoId(31)))
        .unwrap();
    e.handle_datagram(
        now,
        addr(node),
        Via::Rtp,
        &rtp(0x100, 1, 1, &vp8(true, true)),
    );
    e.handle_datagram(
        now,
        addr(node),
        Via::Rtp,
        &rtp(0x200, 1, 1, &vp8(true, true)),
    );
    let got = drain(&mut e, V).rtp;
    assert_eq!(got.len(), 1, "only the stream the view wants");
    let stats = e.video_stats();
    let of = |id| {
        stats
            .iter()
            .find(|(v, _)| *v == VideoId(id))
            .unwrap()
            .1
            .packets
    };
    assert_eq!((of(30), of(31)), (1, 1));
}

#[test]
fn the_node_reports_on_both_ends_and_says_goodbye_for_a_closed_view() {
    let (mut e, mut now) = engine();
    e.add_video_sink(now, ROOM, VIEW, sink(V, 96), Some(LOW))
        .unwrap();
    frame(&mut e, now, P_LOW, 1, 0, true);
    let (mut sr, mut rr) = (0, 0);
    for _ in 0..400 {
        now += TICK;
        e.handle_timeout(now);
        let sent = drain(&mut e, V);
        sr += sent.sr.iter().filter(|a| **a == addr(V)).count();
        rr += sent.rr.iter().filter(|a| **a == addr(P_LOW)).count();
    }
    assert!(
        sr >= 1 && rr >= 1,
        "SR to the viewer {sr}, RR to the publisher {rr}"
    );
    e.remove_video(VIEW).unwrap();
    let mut bye = false;
    while let Some(t) = e.poll_transmit() {
        bye |= t.dst == addr(V)
            && parse_compound(t.data)
                .flatten()
                .any(|p| matches!(p, RtcpPacket::Bye(_)));
    }
    assert!(bye, "the viewer learns the stream ended");
    // Closing the room removes the rest.
    e.close_room(ROOM).unwrap();
    assert!(e.video_stats().is_empty());
}
