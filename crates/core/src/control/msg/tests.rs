//! Round trips of every message, parse errors, codec choice, the documented example.
use super::*;

fn offer() -> MediaOffer {
    MediaOffer {
        address: "127.0.0.1".parse().unwrap(),
        port: 40000,
        codecs: vec![
            CodecDesc {
                name: "G722".into(),
                pt: 9,
                rate: 8000,
            },
            CodecDesc {
                name: "PCMU".into(),
                pt: 0,
                rate: 8000,
            },
        ],
        ptime: 20,
        telephone_event: Some(101),
        direction: Direction::Sendrecv,
        rtcp_mux: false,
        latching: true,
    }
}

fn answer() -> MediaAnswer {
    MediaAnswer {
        address: "127.0.0.1".parse().unwrap(),
        port: 20000,
        rtcp_port: 20001,
        codec: offer().codecs[0].clone(),
        ptime: 20,
        telephone_event: None,
    }
}

fn video_offer() -> VideoOffer {
    let mut o = VideoOffer::plain("192.0.2.5:5000".parse().unwrap(), CodecDesc::vp8(100));
    o.codecs.push(CodecDesc::h264(102));
    o.feedback.push("fir".into());
    o
}

fn video_answer() -> VideoAnswer {
    VideoAnswer {
        address: "192.0.2.1".parse().unwrap(),
        port: 20_000,
        rtcp_port: 20_001,
        codec: CodecDesc::vp8(100),
    }
}

fn every_client_message() -> Vec<ClientMsg> {
    let call = || "c1".to_string();
    vec![
        ClientMsg::AppChallenge { version: Some(1) },
        ClientMsg::AppChallenge { version: None },
        ClientMsg::AppLogin {
            name: "pbx".into(),
            cnonce: "ab12".into(),
            info: "{}".into(),
            digest: "00".repeat(32),
            resume: None,
        },
        ClientMsg::AppLogin {
            name: "pbx".into(),
            cnonce: "ab13".into(),
            info: String::new(),
            digest: "00".repeat(32),
            resume: Some("5e".repeat(16)),
        },
        ClientMsg::Setup {
            call: call(),
            called: "*110*124*26#".into(),
            complete: true,
            media: offer(),
        },
        ClientMsg::Info {
            call: call(),
            digits: "34".into(),
            complete: false,
        },
        ClientMsg::Dtmf {
            call: call(),
            digit: "#".into(),
        },
        ClientMsg::RemoteControl {
            call: call(),
            code: 26,
        },
        ClientMsg::Hold { call: call() },
        ClientMsg::Retrieve { call: call() },
        ClientMsg::Direction {
            call: call(),
            direction: Direction::Inactive,
        },
        ClientMsg::Release {
            call: call(),
            cause: Some(16),
        },
        ClientMsg::Release {
            call: call(),
            cause: None,
        },
        ClientMsg::Status,
        ClientMsg::Health,
        ClientMsg::VideoSend {
            call: call(),
            layer: VideoLayer::High,
            media: video_offer(),
        },
        ClientMsg::VideoSendStop {
            call: call(),
            layer: VideoLayer::Low,
        },
        ClientMsg::VideoView {
            call: call(),
            view: 2,
            participant: 5,
            layer: VideoLayer::Medium,
            media: video_offer(),
        },
        ClientMsg::VideoViewStop {
            call: call(),
            view: 2,
        },
    ]
}

fn every_server_message() -> Vec<ServerMsg> {
    let options = RoomOptions {
        reserve: 6,
        disconnect_control: true,
        remote_connect: false,
        multivideo: true,
    };
    let call = || "c1".to_string();
    let room = || "10123456".to_string();
    vec![
        ServerMsg::AppChallengeResult {
            challenge: "ff".repeat(16),
            version: 1,
        },
        ServerMsg::AppLoginResult {
            ok: true,
            error: None,
            proof: Some("aa".repeat(32)),
            version: 1,
            token: Some("7a".repeat(16)),
            resumed: true,
            resume_error: None,
        },
        ServerMsg::AppLoginResult {
            ok: true,
            error: None,
            proof: None,
            version: 1,
            token: Some("7b".repeat(16)),
            resumed: false,
            resume_error: Some("unknown-token".into()),
        },
        ServerMsg::Resync {
            calls: vec![ResyncCall {
                call: call(),
                participant: 3,
                room: Some(room()),
                state: "connected".into(),
                held: true,
                receive_off: false,
                heard: false,
            }],
        },
        ServerMsg::AppLoginResult {
            ok: false,
            error: Some("bad digest".into()),
            proof: None,
            version: 1,
            token: None,
            resumed: false,
            resume_error: None,
        },
        ServerMsg::Alerting {
            call: call(),
            room: room(),
            participant: 3,
            answer: answer(),
        },
        ServerMsg::Connect {
            call: call(),
            room: room(),
            participant: 3,
            answer: answer(),
            multivideo: false,
        },
        ServerMsg::Release {
            call: call(),
            cause: 34,
            reason: "no circuit/channel available".into(),
        },
        ServerMsg::ReleaseResult { call: call() },
        ServerMsg::InfoResult { call: call() },
        ServerMsg::DtmfResult { call: call() },
        ServerMsg::RemoteControlResult {
            call: call(),
            code: 0,
        },
        ServerMsg::HoldResult { call: call() },
        ServerMsg::RetrieveResult { call: call() },
        ServerMsg::DirectionResult { call: call() },
        ServerMsg::StatusResult {
            version: 1,
            channels: Channels {
                capacity: 100,
                used: 2,
                free: 92,
            },
            rooms: vec![RoomInfo {
                room: room(),
                options: options.clone(),
                exclusive: Some(3),
                members: vec![MemberInfo {
                    participant: 3,
                    call: call(),
                    state: "connected".into(),
                    held: false,
                    receive_off: false,
                    heard: true,
                    codec: "PCMU".into(),
                    packets_received: 10,
                    packets_sent: 9,
                    packets_lost: -1,
                    jitter_ms: 0.5,
                    talking: true,
                    counters: LegStats {
                        packets_received: 10,
                        unknown_payload_type: 2,
                        rtt_ms: Some(31.5),
                        ..LegStats::default()
                    },
                    node: Some("scnf-08-03-01-1".into()),
                }],
                primary: Some("scnf-08-03-01-1".into()),
                invisible: vec![InvisibleInfo {
                    node: "scnf-08-03-01-1".into(),
                    peer: "scnf-08-03-02-1".into(),
                    counters: LegStats::default(),
                }],
                video: vec![VideoChannelInfo {
                    participant: 3,
                    call: call(),
                    layer: Some(VideoLayer::Medium),
                    codec: "VP8".into(),
                    viewers: 4,
                    packets: 1000,
                    bitrate_kbps: 251,
                    keyframe_requests: 3,
                    group: Some("239.192.0.1:5004".into()),
                    ..VideoChannelInfo::default()
                }],
                views: vec![VideoViewInfo {
                    call: call(),
                    view: 1,
                    participant: 3,
                    layer: Some(VideoLayer::Low),
                    ssrc: 77,
                    packets_sent: 10,
                    switches: 1,
                    waiting_keyframe: false,
                }],
            }],
            workers: vec![WorkerInfo {
                index: 0,
                legs: 1,
                ticks: 500,
                late_ticks: 1,
                skipped_ticks: 0,
                lateness_p50_us: 900,
                lateness_p99_us: 5100,
                foreign: 7,
                malformed: 3,
                ..WorkerInfo::default()
            }],
            control: ControlInfo {
                sessions: 2,
                closed: [("idle timeout".to_string(), 1)].into_iter().collect(),
                rate_limited: 4,
                events_lost: 0,
                detached: 1,
                detached_calls: 2,
                resumes: 3,
                ..ControlInfo::default()
            },
            nodes: vec![NodeInfo {
                name: "scnf-08-03-01-1".into(),
                channels: 100,
                members: 1,
                invisible: 1,
                free: 98,
                ..NodeInfo::default()
            }],
            placed: Some(PlacedInfo {
                members: 1,
                invisible: 2,
            }),
        },
        ServerMsg::HealthResult {
            version: 1,
            channels: Channels {
                capacity: 100,
                used: 2,
                free: 92,
            },
            rooms: 1,
            legs: 2,
            workers: Vec::new(),
            control: ControlInfo::default(),
            nodes: Vec::new(),
        },
        ServerMsg::RoomCreated {
            room: room(),
            options,
        },
        ServerMsg::RoomClosed { room: room() },
        ServerMsg::ParticipantJoined {
            room: room(),
            participant: 3,
            call: call(),
            node: Some("scnf-08-03-01-1".into()),
        },
        ServerMsg::ParticipantLeft {
            room: room(),
            participant: 3,
            call: call(),
            cause: 16,
        },
        ServerMsg::Talking {
            room: room(),
            participant: 3,
            call: call(),
            talking: true,
        },
        ServerMsg::Muted {
            room: room(),
            participant: 3,
            call: call(),
            muted: true,
        },
        ServerMsg::ListenMode {
            room: room(),
            exclusive: None,
        },
        ServerMsg::MediaMoved {
            room: room(),
            participant: 3,
            call: call(),
            address: "198.51.100.7".parse().unwrap(),
            port: 40_002,
        },
        ServerMsg::VideoSendResult {
            call: call(),
            layer: VideoLayer::Low,
            answer: video_answer(),
        },
        ServerMsg::VideoSendStopResult {
            call: call(),
            layer: VideoLayer::Low,
        },
        ServerMsg::VideoViewResult {
            call: call(),
            view: 1,
            participant: 3,
            layer: VideoLayer::High,
            ssrc: 0xdead_beef,
            answer: video_answer(),
        },
        ServerMsg::VideoViewStopResult {
            call: call(),
            view: 1,
        },
        ServerMsg::VideoViewEnded {
            call: call(),
            view: 1,
            reason: "participant 3 left the room".into(),
        },
        ServerMsg::VideoStreams {
            room: room(),
            participant: 3,
            call: call(),
            layers: vec![VideoLayer::Low, VideoLayer::High],
        },
        ServerMsg::Error {
            error: "unknown call \"x\"".into(),
            of: Some("Hold".into()),
            call: Some("x".into()),
        },
    ]
}

#[test]
fn every_client_message_round_trips_through_json_with_its_src() {
    for msg in every_client_message() {
        let text = serde_json::to_string(&msg).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["src"] = "req-7".into();
        let back = parse_client(&value.to_string()).unwrap();
        assert_eq!(back.msg, msg, "{text}");
        assert_eq!(back.src.as_deref(), Some("req-7"));
    }
}

#[test]
fn every_server_message_round_trips_through_json_with_its_src() {
    for msg in every_server_message() {
        let text = to_text(&msg, Some("s1"));
        let (back, src) = parse_server(&text).unwrap();
        assert_eq!(back, msg, "{text}");
        assert_eq!(src.as_deref(), Some("s1"));
        let (plain, none) = parse_server(&to_text(&msg, None)).unwrap();
        assert_eq!((plain, none), (msg, None));
    }
}

#[test]
fn every_client_type_is_listed_and_every_listed_type_parses() {
    let listed: Vec<String> = every_client_message()
        .iter()
        .map(|m| {
            serde_json::to_value(m).unwrap()["mt"]
                .as_str()
                .unwrap()
                .into()
        })
        .collect();
    for m in every_client_message() {
        let tag = serde_json::to_value(&m).unwrap()["mt"].clone();
        assert_eq!(tag, m.mt(), "{m:?}");
    }
    for mt in CLIENT_TYPES {
        assert!(listed.iter().any(|l| l == mt), "{mt} has no example");
    }
}

#[test]
fn messages_use_mt_and_lower_case_fields() {
    let text = to_text(&ServerMsg::RoomClosed { room: "7".into() }, None);
    assert_eq!(text, r#"{"mt":"RoomClosed","room":"7"}"#);
    let setup = r#"{"mt":"Setup","call":"a","called":"12#",
        "media":{"address":"127.0.0.1","port":4000,
                 "codecs":[{"name":"PCMA","pt":8,"rate":8000}]}}"#;
    let msg = parse_client(setup).unwrap().msg;
    let ClientMsg::Setup {
        complete, media, ..
    } = msg
    else {
        panic!("not a setup: {msg:?}");
    };
    assert!(!complete);
    assert_eq!(media.ptime, 20);
    assert_eq!(media.direction, Direction::Sendrecv);
}

#[test]
fn bad_frames_are_errors_that_name_the_problem_and_keep_src() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("{not json", "malformed JSON", None),
        ("[1,2]", "must be a JSON object", None),
        (r#"{"src":"q"}"#, "missing mt", Some("q")),
        (r#"{"mt":7}"#, "mt must be a string", None),
        (
            r#"{"mt":"Explode","src":"q"}"#,
            "unknown message type",
            Some("q"),
        ),
        (r#"{"mt":"Hold","src":"q"}"#, "bad Hold", Some("q")),
        (
            r#"{"mt":"RemoteControl","call":"a","code":-1}"#,
            "bad RemoteControl",
            None,
        ),
        (r#"{"mt":"Status","src":5}"#, "src must be a string", None),
    ];
    for (text, problem, src) in cases {
        let err = parse_client(text).unwrap_err();
        assert!(err.problem.contains(problem), "{text}: {}", err.problem);
        assert_eq!(err.src.as_deref(), *src, "{text}");
    }
    let long = format!(r#"{{"mt":"Hold","call":"{}"}}"#, "x".repeat(MAX_FIELD + 1));
    assert!(parse_client(&long)
        .unwrap_err()
        .problem
        .contains("call is longer"));
}

#[test]
fn the_first_supported_offered_codec_is_chosen() {
    let mut o = offer();
    assert_eq!(choose_codec(&o).unwrap().0, CodecKind::G722);
    o.codecs.insert(
        0,
        CodecDesc {
            name: "GSM".into(),
            pt: 3,
            rate: 8000,
        },
    );
    o.codecs.insert(
        1,
        CodecDesc {
            name: "PCMA".into(),
            pt: 97,
            rate: 8000,
        },
    );
    assert_eq!(
        choose_codec(&o).unwrap().0,
        CodecKind::G722,
        "PCMA/97 is not PCMA"
    );
    o.codecs = vec![CodecDesc {
        name: "opus".into(),
        pt: 111,
        rate: 48000,
    }];
    assert_eq!(choose_codec(&o).unwrap().0, CodecKind::Opus);
    o.codecs[0].rate = 16000;
    assert_eq!(choose_codec(&o), None);
}

#[test]
fn every_line_of_the_documented_example_session_parses() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/control-protocol.md"
    );
    let doc = std::fs::read_to_string(path).unwrap();
    let (mut requests, mut answers) = (0, 0);
    for line in doc.lines() {
        if let Some(json) = line.strip_prefix("> {") {
            let text = format!("{{{json}");
            parse_client(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            requests += 1;
        } else if let Some(json) = line.strip_prefix("< {") {
            let text = format!("{{{json}");
            parse_server(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            answers += 1;
        }
    }
    assert!(requests >= 8 && answers >= 15, "{requests} {answers}");
}

#[test]
fn a_report_of_a_node_without_the_counters_still_parses() {
    // What nodes sent before per-leg and per-worker counters were reported.
    let text = r#"{"mt":"StatusResult","version":1,
        "channels":{"capacity":10,"used":1,"free":9},
        "rooms":[{"room":"12","options":{"reserve":0,"disconnect_control":false,
          "remote_connect":false,"multivideo":true},
          "members":[{"participant":1,"call":"a","state":"connected","held":false,
            "receive_off":false,"heard":true,"codec":"PCMU","packets_received":5,
            "packets_sent":4,"packets_lost":0,"jitter_ms":0.0,"talking":false}]}],
        "workers":[{"index":0,"legs":1,"ticks":50,"late_ticks":0,"skipped_ticks":0,
          "lateness_p50_us":100,"lateness_p99_us":200}]}"#;
    let (msg, _) = parse_server(text).expect("an older report parses");
    let ServerMsg::StatusResult { rooms, workers, .. } = msg else {
        panic!("a StatusResult: {msg:?}");
    };
    assert_eq!(rooms[0].members[0].packets_received, 5);
    assert_eq!(rooms[0].members[0].counters, LegStats::default());
    assert_eq!((workers[0].ticks, workers[0].foreign), (50, 0));
}
