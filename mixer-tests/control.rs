//! Call control through the real WebSocket endpoint, with real RTP on 127.0.0.1:
//! the conference interface's behaviour as a PBX-side controller sees it.

use crate::support::{control_node, controller, exclusive, new_phone, wait};
use scnf_core::control::msg::{MediaOffer, ServerMsg};
use scnf_media::codec::CodecKind;
use scnf_media::probe::tone::TONES;
use scnf_testkit::client::{CallAnswer, Client};
use scnf_testkit::participant::{dtmf_samples, speechlike, Participant, Source};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A tone counts as heard above this level (sent at -20 dBFS) ...
const HEARD_DBFS: f64 = -32.0;
/// ... and as absent below this one.
const ABSENT_DBFS: f64 = -50.0;
const WINDOW: Duration = Duration::from_millis(300);

/// Polls until `cond` holds (up to 4 s): media paths take a few ticks to settle.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..80 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// A `Setup` as the raw protocol has it, without a `src`: its answers are unasked.
fn raw_setup(call: &str, called: &str, complete: bool, offer: &MediaOffer) -> Value {
    json!({"mt": "Setup", "call": call, "called": called, "complete": complete, "media": offer})
}

/// Waits for the decision about a call set up raw: Connect, Alerting, Release or
/// Error.
async fn call_outcome(c: &mut Client, call: &str) -> ServerMsg {
    wait(c, "call outcome", |m| match m {
        ServerMsg::Connect { call: id, .. }
        | ServerMsg::Alerting { call: id, .. }
        | ServerMsg::Release { call: id, .. } => id == call,
        ServerMsg::Error { call: Some(id), .. } => id == call,
        _ => false,
    })
    .await
}

/// Places a call through the typed client; the node must answer it.
async fn dial(
    c: &mut Client,
    call: &str,
    called: &str,
    complete: bool,
    offer: &MediaOffer,
) -> CallAnswer {
    c.setup(call, called, complete, offer)
        .await
        .unwrap_or_else(|e| panic!("{call} dialling {called:?}: {e}"))
}

/// The media offer of a new silent phone, kept in `keep` for the test (every call
/// needs its own media address).
async fn fresh(keep: &mut Vec<Participant>) -> MediaOffer {
    let phone = new_phone(CodecKind::Pcmu, Source::Silence).await;
    let offer = phone.offer(true);
    keep.push(phone);
    offer
}

fn hears(p: &Participant, freq: f64) -> bool {
    p.level(freq, WINDOW) > HEARD_DBFS
}

fn misses(p: &Participant, freq: f64) -> bool {
    p.level(freq, WINDOW) < ABSENT_DBFS
}

/// Phones on tones TONES[0..n] joined to one room `*3<room>#` over `c`; returns
/// them with their call ids `p0`, `p1`, ...
async fn room_of(c: &mut Client, room: &str, n: usize, rfc4733: bool) -> Vec<Participant> {
    let mut phones = Vec::new();
    for (i, &tone) in TONES.iter().enumerate().take(n) {
        let phone = new_phone(CodecKind::Pcmu, Source::tone(tone)).await;
        let out = dial(
            c,
            &format!("p{i}"),
            &format!("*3{room}#"),
            false,
            &phone.offer(rfc4733),
        )
        .await;
        assert!(matches!(out, CallAnswer::Connect { .. }), "{out:?}");
        phone.connect(out.media_addr().expect("a connected call has media"));
        phones.push(phone);
    }
    phones
}

/// Waits until phone `i` hears exactly the tones of `heard` among the room's.
async fn expect_hearing(phones: &[Participant], i: usize, heard: &[usize]) {
    let what = format!("phone {i} hears exactly {heard:?}");
    eventually(&what, || {
        (0..phones.len()).filter(|&j| j != i).all(|j| {
            if heard.contains(&j) {
                hears(&phones[i], TONES[j])
            } else {
                misses(&phones[i], TONES[j])
            }
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyone_hears_everyone_but_themselves_and_the_connected_number_is_the_room() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|_| {}).await;
    let mut c = controller(control.local).await;
    let phones = room_of(&mut c, "4711", 3, true).await;
    for i in 0..3 {
        let others: Vec<usize> = (0..3).filter(|&j| j != i).collect();
        expect_hearing(&phones, i, &others).await;
        assert!(misses(&phones[i], TONES[i]), "phone {i} hears itself");
    }
    let connects = c
        .seen()
        .iter()
        .filter(|m| matches!(m, ServerMsg::Connect { room, .. } if room == "4711"))
        .count();
    assert_eq!(connects, 3);
    // Everyone talks: each participant's talking event reached the controller.
    for p in 1..=3u64 {
        wait(&mut c, "Talking", |m| {
            matches!(m, ServerMsg::Talking { participant, talking: true, .. } if *participant == p)
        })
        .await;
    }
    // A phone that stops sending stops talking.
    phones[2].play(Source::Silence);
    wait(&mut c, "Talking stopped", |m| {
        matches!(
            m,
            ServerMsg::Talking {
                participant: 3,
                talking: false,
                ..
            }
        )
    })
    .await;
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_dialing_waits_for_more_digits_then_joins() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|_| {}).await;
    let mut c = controller(control.local).await;
    let mut keep = Vec::new();
    let phone = new_phone(CodecKind::Pcmu, Source::Silence).await;
    let out = dial(&mut c, "a", "*21234#", false, &phone.offer(true)).await;
    assert!(matches!(&out, CallAnswer::Connect { room, .. } if room == "1234"));
    // "12" is only the head of room 1234: the node waits.
    let setup = raw_setup("b", "12", false, &fresh(&mut keep).await);
    c.send_json(&setup).await.expect("sent");
    let early = c
        .arrives(Duration::from_millis(400), |m| {
            matches!(m, ServerMsg::Connect { call, .. } | ServerMsg::Release { call, .. } if call == "b")
        })
        .await;
    assert!(!early, "the node decided before the number was complete");
    c.send_json(&json!({"mt": "Info", "call": "b", "digits": "34"}))
        .await
        .expect("sent");
    let out = call_outcome(&mut c, "b").await;
    assert!(
        matches!(&out, ServerMsg::Connect { room, .. } if room == "1234"),
        "{out:?}"
    );
    // Head of an id with sending-complete: refused at once.
    let out = dial(&mut c, "c", "12", true, &fresh(&mut keep).await).await;
    assert!(
        matches!(out, CallAnswer::Release { cause: 34, .. }),
        "{out:?}"
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_with_cause_34_and_frees_the_channel_on_release() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|c| c.control.channels = 3).await;
    let mut c = controller(control.local).await;
    let mut keep = Vec::new();
    for call in ["a", "b", "c"] {
        let out = dial(&mut c, call, "*377#", false, &fresh(&mut keep).await).await;
        assert!(matches!(out, CallAnswer::Connect { .. }), "{call}: {out:?}");
    }
    let out = dial(&mut c, "d", "77", true, &fresh(&mut keep).await).await;
    assert!(
        matches!(out, CallAnswer::Release { cause: 34, .. }),
        "{out:?}"
    );
    let out = dial(&mut c, "e", "*1#", false, &fresh(&mut keep).await).await;
    assert!(
        matches!(out, CallAnswer::Release { cause: 34, .. }),
        "{out:?}"
    );
    let channels = c.status().await.expect("status").channels;
    assert_eq!((channels.capacity, channels.used, channels.free), (3, 3, 0));
    c.release("a", None).await.expect("ReleaseResult");
    wait(
        &mut c,
        "ParticipantLeft",
        |m| matches!(m, ServerMsg::ParticipantLeft { call, cause: 16, .. } if call == "a"),
    )
    .await;
    let out = dial(&mut c, "f", "77", true, &fresh(&mut keep).await).await;
    assert!(matches!(out, CallAnswer::Connect { .. }), "{out:?}");
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_disconnect_control_the_creator_leaving_releases_everyone() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|_| {}).await;
    let mut c = controller(control.local).await;
    let mut keep = Vec::new();
    let phone = new_phone(CodecKind::Pcmu, Source::Silence).await;
    let out = dial(&mut c, "boss", "*250*81#", false, &phone.offer(true)).await;
    assert!(matches!(out, CallAnswer::Connect { .. }), "{out:?}");
    for call in ["x", "y"] {
        let out = dial(&mut c, call, "50", true, &fresh(&mut keep).await).await;
        assert!(matches!(out, CallAnswer::Connect { .. }), "{out:?}");
    }
    c.send_json(&json!({"mt": "Release", "call": "boss"}))
        .await
        .expect("sent");
    for call in ["x", "y"] {
        let out = call_outcome(&mut c, call).await;
        assert!(
            matches!(out, ServerMsg::Release { cause: 16, .. }),
            "{out:?}"
        );
    }
    wait(
        &mut c,
        "RoomClosed",
        |m| matches!(m, ServerMsg::RoomClosed { room } if room == "50"),
    )
    .await;
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_video_off_is_reported_with_the_room() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|_| {}).await;
    let mut c = controller(control.local).await;
    let mut keep = Vec::new();
    let phone = new_phone(CodecKind::Pcmu, Source::Silence).await;
    let out = dial(&mut c, "a", "*270*83#", false, &phone.offer(true)).await;
    assert!(
        matches!(
            out,
            CallAnswer::Connect {
                multivideo: false,
                ..
            }
        ),
        "{out:?}"
    );
    let out = dial(&mut c, "b", "*271#", false, &fresh(&mut keep).await).await;
    assert!(
        matches!(
            out,
            CallAnswer::Connect {
                multivideo: true,
                ..
            }
        ),
        "{out:?}"
    );
    let rooms = c.status().await.expect("status").rooms;
    let mv: Vec<(String, bool)> = rooms
        .iter()
        .map(|r| (r.room.clone(), r.options.multivideo))
        .collect();
    assert_eq!(mv, [("70".to_string(), false), ("71".to_string(), true)]);
    node.shutdown();
}

/// `*21#` then `*6#` from the first phone, sent as `how`.
async fn listen_modes_by_dtmf(rfc4733: bool) {
    let _machine = exclusive().await;
    let (node, control) = control_node(|_| {}).await;
    let mut c = controller(control.local).await;
    let phones = room_of(&mut c, "80", 3, rfc4733).await;
    expect_hearing(&phones, 1, &[0, 2]).await;
    let send = |p: &Participant, digits: &str| {
        if rfc4733 {
            p.send_rfc4733(digits);
        } else {
            p.play(Source::Samples(Arc::new(dtmf_samples(digits, 80, 80))));
        }
    };
    send(&phones[0], "*21#");
    let m = wait(&mut c, "ListenMode", |m| {
        matches!(
            m,
            ServerMsg::ListenMode {
                exclusive: Some(_),
                ..
            }
        )
    })
    .await;
    assert!(
        matches!(
            m,
            ServerMsg::ListenMode {
                exclusive: Some(1),
                ..
            }
        ),
        "{m:?}"
    );
    phones[0].play(Source::tone(TONES[0]));
    expect_hearing(&phones, 1, &[0]).await;
    expect_hearing(&phones, 2, &[0]).await;
    expect_hearing(&phones, 0, &[]).await;
    if !rfc4733 {
        eventually("the digits have been played", || phones[0].done_playing()).await;
    }
    send(&phones[0], "*6#");
    wait(&mut c, "ListenMode normal", |m| {
        matches!(
            m,
            ServerMsg::ListenMode {
                exclusive: None,
                ..
            }
        )
    })
    .await;
    phones[0].play(Source::tone(TONES[0]));
    for i in 0..3 {
        let others: Vec<usize> = (0..3).filter(|&j| j != i).collect();
        expect_hearing(&phones, i, &others).await;
    }
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_21_hash_and_star_6_hash_switch_listen_modes_by_telephone_events() {
    listen_modes_by_dtmf(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_21_hash_and_star_6_hash_switch_listen_modes_by_in_band_tones() {
    listen_modes_by_dtmf(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_on_legs_without_telephone_events_never_switches_listen_modes() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|_| {}).await;
    let mut c = controller(control.local).await;
    let phones = room_of(&mut c, "81", 3, false).await;
    for (k, p) in phones.iter().enumerate() {
        p.play(Source::Samples(Arc::new(speechlike(3.0, 11 + k as u64))));
    }
    eventually("speech played", || phones.iter().all(|p| p.done_playing())).await;
    let switched = c
        .arrives(Duration::from_millis(300), |m| {
            matches!(m, ServerMsg::ListenMode { .. } | ServerMsg::Muted { .. })
        })
        .await;
    assert!(!switched, "speech was taken for DTMF: {:?}", c.seen());
    node.shutdown();
}

/// A bound UDP socket's media offer (PCMU): rooms set up for a table row only need
/// distinct media addresses, not audio.
fn quiet_offer(keep: &mut Vec<std::net::UdpSocket>) -> scnf_core::control::msg::MediaOffer {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = sock.local_addr().expect("bound");
    keep.push(sock);
    use scnf_core::control::msg::{CodecDesc, MediaOffer};
    MediaOffer {
        telephone_event: Some(101),
        ..MediaOffer::plain(local, CodecDesc::pcmu())
    }
}

/// Runs one row of `vectors/conf-commands.tsv` against a fresh node over WebSocket.
async fn run_row(row: &scnf_core::conf::table::Row) -> Result<(), String> {
    use scnf_core::conf::table::{Outcome, RoomOptions};
    use scnf_core::conf::Cause;
    let (node, control) = control_node(|c| c.control.channels = row.capacity).await;
    let mut c = controller(control.local).await;
    let mut keep = Vec::new();
    let mut n = 0;
    for room in &row.present {
        for k in 0..room.members {
            let dial = if k == 0 {
                room.create_dial()
            } else {
                room.join_dial()
            };
            n += 1;
            let out = c
                .setup(&format!("setup{n}"), &dial, false, &quiet_offer(&mut keep))
                .await;
            if !matches!(out, Ok(CallAnswer::Connect { .. })) {
                return Err(format!("line {}: setting up {dial}: {out:?}", row.line));
            }
        }
    }
    let before = c.seen().len();
    let setup = raw_setup("t", &row.dial, row.complete, &quiet_offer(&mut keep));
    c.send_json(&setup).await.expect("sent");
    let decided = |m: &ServerMsg| {
        matches!(m, ServerMsg::Connect { call, .. } | ServerMsg::Alerting { call, .. }
            | ServerMsg::Release { call, .. } if call == "t")
    };
    for digits in &row.info {
        c.send_json(&json!({"mt": "Info", "call": "t", "digits": digits}))
            .await
            .expect("sent");
    }
    let outcome = if c.arrives(Duration::from_millis(300), decided).await {
        let m = call_outcome(&mut c, "t").await;
        match m {
            ServerMsg::Release { cause, .. } => Outcome::Released(Cause(cause)),
            ServerMsg::Connect { room, .. } | ServerMsg::Alerting { room, .. } => {
                let created = c.seen()[before..].iter().find_map(|m| match m {
                    ServerMsg::RoomCreated { room: r, options } if *r == room => {
                        Some(RoomOptions {
                            reserve: options.reserve,
                            disconnect_control: options.disconnect_control,
                            remote_connect: options.remote_connect,
                            multivideo_off: !options.multivideo,
                        })
                    }
                    _ => None,
                });
                match created {
                    Some(options) => Outcome::Created { room, options },
                    None => Outcome::Joined(room),
                }
            }
            other => return Err(format!("line {}: {other:?}", row.line)),
        }
    } else {
        Outcome::Waiting
    };
    control.stop();
    node.shutdown();
    row.check(&outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_command_table_behaves_as_written_over_websocket() {
    let _machine = exclusive().await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors/conf-commands.tsv");
    let text = std::fs::read_to_string(path).expect("the command table");
    let rows = scnf_core::conf::table::parse(&text).expect("a valid table");
    assert!(rows.len() >= 40, "only {} rows", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        if let Err(e) = run_row(row).await {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
