//! Video requests through the session root: send streams and view slots become
//! sources and sinks on the room's worker, answers carry the worker's address and
//! the slot's SSRC, `*83` rooms refuse video, and a publisher leaving ends the views
//! of it.

use super::*;
use crate::control::msg::{VideoChannelInfo, VideoLayer};

fn vp8_offer(port: u16) -> serde_json::Value {
    json!({"address": "198.51.100.1", "port": port, "rtcp_mux": true,
           "codecs": [{"name": "VP8", "pt": 100, "rate": 90000}], "feedback": ["pli"]})
}

/// Two members in room 10 on a login-free node: c1 (participant 1) and c2.
fn room_of_two() -> (Node, ConnId) {
    let mut n = Node::new(None);
    let c = n.open(1);
    n.setup(c, "c1", "*210#", 4000);
    n.run_media();
    n.setup(c, "c2", "10#", 4002);
    n.run_media();
    n.take_sent();
    (n, c)
}

fn participant(n: &Node, call: &str) -> u64 {
    n.session
        .calls
        .iter()
        .find(|(_, c)| c.id == call)
        .map(|(r, _)| r.0)
        .expect("the call exists")
}

#[test]
fn a_send_stream_and_a_view_become_a_source_and_a_sink_on_the_rooms_worker() {
    let (mut n, c) = room_of_two();
    let p1 = participant(&n, "c1");
    n.text(
        c,
        json!({"mt": "VideoSend", "src": "v1", "call": "c1", "layer": "medium",
                     "media": vp8_offer(5000)}),
    );
    let sent = n.take_sent();
    let answer = sent
        .iter()
        .find_map(|m| match m {
            ServerMsg::VideoSendResult {
                call,
                layer,
                answer,
            } if call == "c1" => Some((*layer, answer.clone())),
            _ => None,
        })
        .expect("VideoSendResult");
    assert_eq!(answer.0, VideoLayer::Medium);
    assert_eq!(
        (answer.1.address.to_string(), answer.1.port),
        ("192.0.2.10".into(), 20_000)
    );
    assert!(sent.iter().any(|m| matches!(m,
        ServerMsg::VideoStreams { participant, layers, .. }
            if *participant == p1 && layers == &[VideoLayer::Medium])));
    n.text(
        c,
        json!({"mt": "VideoView", "src": "w", "call": "c2", "view": 1, "participant": p1,
                     "layer": "medium", "media": vp8_offer(7000)}),
    );
    let ssrc = n
        .take_sent()
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::VideoViewResult {
                call,
                view: 1,
                ssrc,
                layer: VideoLayer::Medium,
                ..
            } if call == "c2" => Some(ssrc),
            _ => None,
        })
        .expect("VideoViewResult");
    let stats = n.engines[0].video_stats();
    assert_eq!(stats.len(), 2, "one source, one sink: {stats:?}");
    assert!(stats.iter().any(|(_, s)| !s.source && s.ssrc == ssrc));
    // The view's figures and the channel show in Status.
    n.text(c, json!({"mt": "Status"}));
    let Some(ServerMsg::StatusResult { rooms, .. }) = n.take_sent().pop() else {
        panic!("a StatusResult");
    };
    let video: &Vec<VideoChannelInfo> = &rooms[0].video;
    assert_eq!(video.len(), 1);
    assert_eq!(
        (video[0].participant, video[0].layer, video[0].viewers),
        (p1, Some(VideoLayer::Medium), 1)
    );
    assert_eq!(video[0].codec, "VP8");
    assert_eq!(rooms[0].views.len(), 1);
    assert_eq!(rooms[0].views[0].ssrc, ssrc);
}

#[test]
fn a_view_asked_for_before_its_stream_exists_is_pointed_at_it_when_it_does() {
    let (mut n, c) = room_of_two();
    let p1 = participant(&n, "c1");
    n.text(
        c,
        json!({"mt": "VideoView", "call": "c2", "view": 3, "participant": p1,
                     "layer": "high", "media": vp8_offer(7000)}),
    );
    assert!(n
        .take_sent()
        .iter()
        .any(|m| matches!(m, ServerMsg::VideoViewResult { view: 3, .. })));
    n.applied.clear();
    n.text(
        c,
        json!({"mt": "VideoSend", "call": "c1", "layer": "high", "media": vp8_offer(5000)}),
    );
    let names: Vec<&str> = n.applied.iter().map(MediaOp::name).collect();
    assert_eq!(names, ["add video source", "switch video sink"]);
    // Switching the slot to another layer is one switch on the same sink.
    n.text(
        c,
        json!({"mt": "VideoSend", "call": "c1", "layer": "low", "media": vp8_offer(5002)}),
    );
    n.applied.clear();
    n.text(
        c,
        json!({"mt": "VideoView", "src": "sw", "call": "c2", "view": 3, "participant": p1,
                     "layer": "low", "media": vp8_offer(7000)}),
    );
    assert_eq!(
        n.applied.iter().map(MediaOp::name).collect::<Vec<_>>(),
        ["switch video sink"]
    );
    assert!(n.take_sent().iter().any(|m| matches!(
        m,
        ServerMsg::VideoViewResult {
            view: 3,
            layer: VideoLayer::Low,
            ..
        }
    )));
}

#[test]
fn video_in_a_star83_room_is_refused_with_a_clear_error() {
    let mut n = Node::new(None);
    let c = n.open(1);
    n.setup(c, "c1", "*211*83#", 4000);
    n.run_media();
    n.take_sent();
    n.text(
        c,
        json!({"mt": "VideoSend", "call": "c1", "layer": "low", "media": vp8_offer(5000)}),
    );
    let msgs = n.take_sent();
    assert!(
        matches!(&msgs[..], [ServerMsg::Error { error, of: Some(of), .. }]
            if error.contains("does not take video") && of == "VideoSend"),
        "{msgs:?}"
    );
    assert!(n.engines.iter().all(|e| e.video_stats().is_empty()));
}

#[test]
fn impossible_video_requests_are_refused_one_by_one() {
    let (mut n, c) = room_of_two();
    let p1 = participant(&n, "c1");
    let cases = [
        (
            json!({"mt": "VideoSend", "call": "nope", "layer": "low", "media": vp8_offer(5000)}),
            "unknown call",
        ),
        (
            json!({"mt": "VideoSend", "call": "c1", "layer": "low",
                "media": {"address": "198.51.100.1", "port": 5000,
                          "codecs": [{"name": "VP9", "pt": 100, "rate": 90000}]}}),
            "no offered video codec",
        ),
        (
            json!({"mt": "VideoSend", "call": "c1", "layer": "low",
                "media": {"address": "192.0.2.10", "port": 20000,
                          "codecs": [{"name": "VP8", "pt": 100, "rate": 90000}]}}),
            "own",
        ),
        (
            json!({"mt": "VideoView", "call": "c2", "view": 1, "participant": 999, "layer": "low",
                "media": vp8_offer(7000)}),
            "not in room",
        ),
        (
            json!({"mt": "VideoSendStop", "call": "c1", "layer": "high"}),
            "sends no high video",
        ),
        (
            json!({"mt": "VideoViewStop", "call": "c2", "view": 8}),
            "has no view 8",
        ),
    ];
    for (req, want) in cases {
        n.text(c, req.clone());
        let msgs = n.take_sent();
        assert!(
            matches!(&msgs[..], [ServerMsg::Error { error, .. }] if error.contains(want)),
            "{req} -> {msgs:?}"
        );
    }
    // The stream exists in H.264: a VP8-only view of it is refused.
    n.text(
        c,
        json!({"mt": "VideoSend", "call": "c1", "layer": "low",
                     "media": {"address": "198.51.100.1", "port": 5000,
                               "codecs": [{"name": "H264", "pt": 102, "rate": 90000}]}}),
    );
    n.take_sent();
    n.text(
        c,
        json!({"mt": "VideoView", "call": "c2", "view": 1, "participant": p1, "layer": "low",
                     "media": vp8_offer(7000)}),
    );
    let msgs = n.take_sent();
    assert!(
        matches!(&msgs[..], [ServerMsg::Error { error, .. }] if error.contains("H264")),
        "{msgs:?}"
    );
}

#[test]
fn a_publisher_leaving_ends_the_views_that_showed_it() {
    let (mut n, c) = room_of_two();
    let p1 = participant(&n, "c1");
    n.text(
        c,
        json!({"mt": "VideoSend", "call": "c1", "layer": "low", "media": vp8_offer(5000)}),
    );
    n.text(
        c,
        json!({"mt": "VideoView", "call": "c2", "view": 2, "participant": p1,
                     "layer": "low", "media": vp8_offer(7000)}),
    );
    n.take_sent();
    n.text(c, json!({"mt": "Release", "call": "c1"}));
    let msgs = n.take_sent();
    assert!(
        msgs.iter().any(|m| matches!(m,
        ServerMsg::VideoViewEnded { call, view: 2, .. } if call == "c2")),
        "{msgs:?}"
    );
    assert!(
        n.engines[0].video_stats().is_empty(),
        "source and sink are gone"
    );
}
