//! Call-control behaviour end to end on the deterministic harness: a controller
//! speaks JSON to a node's session root, phones send and hear RTP through the node's
//! engines, all on one virtual clock. What used to wait on wall-clock sleeps and
//! polls in the real-socket tests is asserted here at exact virtual times.

use scnf_core::control::auth::client_digest;
use scnf_core::control::msg::{ServerMsg, PROTOCOL_VERSION};
use scnf_media::netsim::{Jitter, Loss, PathConfig};
use scnf_media::probe::TONES;
use scnf_testkit::harness::{Harness, NodeSpec};
use serde_json::json;
use std::time::{Duration, Instant};

/// A tone counts as heard above this level ...
const HEARD_DBFS: f64 = -32.0;
/// ... and as absent below this one.
const ABSENT_DBFS: f64 = -50.0;
const WINDOW: Duration = Duration::from_millis(300);

fn lan() -> PathConfig {
    PathConfig {
        latency: Duration::from_millis(5),
        ..PathConfig::default()
    }
}

fn hears(h: &Harness, phone: usize, tone: usize) -> bool {
    h.phones[phone].level(TONES[tone], WINDOW) > HEARD_DBFS
}

fn misses(h: &Harness, phone: usize, tone: usize) -> bool {
    h.phones[phone].level(TONES[tone], WINDOW) < ABSENT_DBFS
}

/// Phones 0..n on tones TONES[0..n], joined to room `room` as calls p0, p1, ...
fn room_of(h: &mut Harness, ctl: usize, room: &str, n: usize) {
    for (i, &tone) in TONES.iter().enumerate().take(n) {
        let phone = h.add_phone(Some(tone), lan());
        let out = h.dial(ctl, &format!("p{i}"), &format!("*3{room}#"), phone);
        assert!(matches!(out, ServerMsg::Connect { .. }), "{out:?}");
    }
}

/// Runs until phone `i` hears exactly the tones of `heard` among phones 0..n (at most
/// 2 s of virtual time) and returns how long that took.
fn expect_hearing(h: &mut Harness, n: usize, i: usize, heard: &[usize]) -> Duration {
    let t0 = h.elapsed();
    let ok = h.run_until(Duration::from_secs(2), |h| {
        (0..n).filter(|&j| j != i).all(|j| {
            if heard.contains(&j) {
                hears(h, i, j)
            } else {
                misses(h, i, j)
            }
        })
    });
    assert!(ok, "phone {i} never heard exactly {heard:?}");
    h.elapsed() - t0
}

fn rc(h: &mut Harness, ctl: usize, call: &str, code: u32) {
    let reply = h.request(
        ctl,
        json!({"mt": "RemoteControl", "call": call, "code": code}),
    );
    assert!(
        matches!(reply, ServerMsg::RemoteControlResult { .. }),
        "{reply:?}"
    );
}

#[test]
fn remote_connect_rooms_keep_joiners_alerting_and_silent_until_connect() {
    let mut h = Harness::new(Instant::now());
    let node = h.add_node(NodeSpec::default());
    let ctl = h.connect(node);
    let host = h.add_phone(Some(TONES[0]), lan());
    let out = h.dial(ctl, "host", "*260*82#", host);
    assert!(matches!(out, ServerMsg::Connect { .. }), "{out:?}");
    let guest = h.add_phone(Some(TONES[1]), lan());
    let out = h.dial(ctl, "guest", "60", guest);
    assert!(matches!(out, ServerMsg::Alerting { .. }), "{out:?}");
    // Long past any jitter-buffer start: the alerting guest is still not mixed.
    h.run_for(Duration::from_secs(1));
    assert!(misses(&h, host, 1), "the alerting guest is heard");
    assert!(misses(&h, guest, 0), "the alerting guest hears the room");
    rc(&mut h, ctl, "guest", 0);
    assert!(
        h.controllers[ctl].saw(|m| matches!(m, ServerMsg::Connect { call, .. } if call == "guest"))
    );
    let took = expect_hearing(&mut h, 2, host, &[1]);
    expect_hearing(&mut h, 2, guest, &[0]);
    assert!(
        took < Duration::from_millis(500),
        "connect took {took:?} to be heard"
    );
}

#[test]
fn remote_controls_follow_the_override_rules() {
    let mut h = Harness::new(Instant::now());
    let node = h.add_node(NodeSpec::default());
    let ctl = h.connect(node);
    room_of(&mut h, ctl, "90", 3);
    expect_hearing(&mut h, 3, 0, &[1, 2]);
    // 25 receive off: p1 is muted for everyone.
    rc(&mut h, ctl, "p1", 25);
    expect_hearing(&mut h, 3, 0, &[2]);
    expect_hearing(&mut h, 3, 2, &[0]);
    // 27 normal listen overrides an earlier receive off of another member.
    rc(&mut h, ctl, "p0", 27);
    expect_hearing(&mut h, 3, 0, &[1, 2]);
    // 26 exclusive listen: only p2 is heard.
    rc(&mut h, ctl, "p2", 26);
    expect_hearing(&mut h, 3, 0, &[2]);
    expect_hearing(&mut h, 3, 1, &[2]);
    // 24 receive on overrides the exclusive mode for p0.
    rc(&mut h, ctl, "p0", 24);
    expect_hearing(&mut h, 3, 1, &[0, 2]);
    // 26 again (from p2) overrides p0's earlier receive on.
    rc(&mut h, ctl, "p2", 26);
    expect_hearing(&mut h, 3, 1, &[2]);
    rc(&mut h, ctl, "p2", 27);
    expect_hearing(&mut h, 3, 1, &[0, 2]);
    // Unknown codes and Connect on a connected call are errors; nothing changes.
    for code in [0u32, 99] {
        let e = h.request(
            ctl,
            json!({"mt": "RemoteControl", "call": "p0", "code": code}),
        );
        assert!(
            matches!(&e, ServerMsg::Error { call: Some(c), .. } if c == "p0"),
            "{e:?}"
        );
    }
    h.run_for(Duration::from_millis(500));
    expect_hearing(&mut h, 3, 1, &[0, 2]);
    let muted: Vec<(u64, bool)> = h.controllers[ctl]
        .seen
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Muted {
                participant, muted, ..
            } => Some((*participant, *muted)),
            _ => None,
        })
        .collect();
    assert!(
        muted.contains(&(2, true)) && muted.contains(&(2, false)),
        "{muted:?}"
    );
}

#[test]
fn hold_mutes_the_member_and_retrieve_restores_it() {
    let mut h = Harness::new(Instant::now());
    let node = h.add_node(NodeSpec::default());
    let ctl = h.connect(node);
    room_of(&mut h, ctl, "91", 2);
    expect_hearing(&mut h, 2, 1, &[0]);
    let r = h.request(ctl, json!({"mt": "Hold", "call": "p0"}));
    assert!(matches!(r, ServerMsg::HoldResult { .. }), "{r:?}");
    assert!(h.controllers[ctl].saw(|m| matches!(m, ServerMsg::Muted { muted: true, .. })));
    expect_hearing(&mut h, 2, 1, &[]);
    h.request(ctl, json!({"mt": "Retrieve", "call": "p0"}));
    assert!(h.controllers[ctl].saw(|m| matches!(m, ServerMsg::Muted { muted: false, .. })));
    expect_hearing(&mut h, 2, 1, &[0]);
    // The same through a direction change (re-INVITE a=sendonly / a=sendrecv).
    h.request(
        ctl,
        json!({"mt": "Direction", "call": "p0", "direction": "sendonly"}),
    );
    expect_hearing(&mut h, 2, 1, &[]);
    let ServerMsg::StatusResult { rooms, .. } = h.request(ctl, json!({"mt": "Status"})) else {
        panic!("a status answer");
    };
    assert!(
        rooms[0].members[0].held && !rooms[0].members[0].heard,
        "{rooms:?}"
    );
    h.request(
        ctl,
        json!({"mt": "Direction", "call": "p0", "direction": "sendrecv"}),
    );
    expect_hearing(&mut h, 2, 1, &[0]);
}

#[test]
fn status_reports_rooms_members_channels_and_leg_figures() {
    let mut h = Harness::new(Instant::now());
    let node = h.add_node(NodeSpec {
        channels: 10,
        ..NodeSpec::default()
    });
    let ctl = h.connect(node);
    // A lossy, jittery access network: the figures must show it.
    let path = PathConfig {
        latency: Duration::from_millis(20),
        jitter: Jitter::Uniform {
            max: Duration::from_millis(10),
        },
        loss: Loss::Bernoulli { p: 0.05 },
        ..PathConfig::default()
    };
    for (i, call) in ["a", "b"].into_iter().enumerate() {
        let phone = h.add_phone(Some(TONES[i]), path.clone());
        let out = h.dial(ctl, call, "*355#", phone);
        assert!(matches!(out, ServerMsg::Connect { .. }), "{out:?}");
    }
    h.run_for(Duration::from_secs(2));
    let ServerMsg::StatusResult {
        version,
        channels,
        rooms,
        workers,
        ..
    } = h.request(ctl, json!({"mt": "Status"}))
    else {
        panic!("a status answer");
    };
    assert_eq!(version, PROTOCOL_VERSION);
    assert_eq!(
        (channels.capacity, channels.used, channels.free),
        (10, 2, 8)
    );
    assert_eq!(workers.iter().map(|w| w.legs).sum::<usize>(), 2);
    // 2 s of 20 ms ticks, give or take the first.
    assert!(workers[0].ticks >= 99, "{workers:?}");
    assert_eq!(rooms[0].room, "55");
    for m in &rooms[0].members {
        assert_eq!((m.state.as_str(), m.codec.as_str()), ("connected", "PCMU"));
        // ~100 sent by the phone in 2 s, minus 5 % loss.
        assert!((80..=101).contains(&m.packets_received), "{m:?}");
        assert!(m.packets_lost > 0, "loss on the path shows: {m:?}");
        assert!(m.jitter_ms > 0.5 && m.jitter_ms < 10.0, "{m:?}");
    }
    let ServerMsg::HealthResult {
        channels,
        rooms,
        legs,
        ..
    } = h.request(ctl, json!({"mt": "Health"}))
    else {
        panic!("a health answer");
    };
    assert_eq!((channels.used, channels.free, rooms, legs), (2, 8, 1, 2));
}

#[test]
fn a_connection_that_never_logs_in_is_closed_at_the_login_timeout_and_a_logged_in_one_is_not() {
    const SECRET: &[u8] = b"harness-secret";
    let mut h = Harness::new(Instant::now());
    let node = h.add_node(NodeSpec {
        secret: Some(SECRET.to_vec()),
        ..NodeSpec::default()
    });
    let idle = h.connect(node);
    let quick = h.connect(node);
    let ServerMsg::AppChallengeResult { challenge, .. } =
        h.request(quick, json!({"mt": "AppChallenge"}))
    else {
        panic!("a challenge");
    };
    let digest = client_digest(SECRET, "pbx", &challenge, "n", "");
    let r = h.request(
        quick,
        json!({"mt": "AppLogin", "name": "pbx", "cnonce": "n", "digest": digest}),
    );
    assert!(
        matches!(r, ServerMsg::AppLoginResult { ok: true, .. }),
        "{r:?}"
    );
    h.run_for(Duration::from_millis(29_999));
    assert!(h.closed.is_empty(), "closed early: {:?}", h.closed);
    h.run_for(Duration::from_millis(1));
    let idle_conn = h.controllers[idle].conn;
    assert_eq!(h.closed, [(node, idle_conn, "login timeout".to_string())]);
    h.run_for(Duration::from_secs(60));
    assert_eq!(
        h.closed.len(),
        1,
        "the logged-in session outlives the timeout"
    );
    assert!(matches!(
        h.request(quick, json!({"mt": "Health"})),
        ServerMsg::HealthResult { .. }
    ));
}

#[test]
fn a_connected_member_that_sends_no_media_is_released_at_the_media_timeout_but_a_held_one_is_not() {
    let mut h = Harness::new(Instant::now());
    let node = h.add_node(NodeSpec::default());
    let ctl = h.connect(node);
    let talker = h.add_phone(Some(TONES[0]), lan());
    h.dial(ctl, "talker", "*392#", talker);
    let mute = h.add_phone(None, lan());
    h.phones[mute].sends = false;
    let out = h.dial(ctl, "mute", "92", mute);
    assert!(matches!(out, ServerMsg::Connect { .. }), "{out:?}");
    let held = h.add_phone(None, lan());
    h.phones[held].sends = false;
    h.dial(ctl, "held", "92", held);
    h.request(ctl, json!({"mt": "Hold", "call": "held"}));
    let released = |h: &Harness, who: &str| {
        h.controllers[ctl]
            .saw(|m| matches!(m, ServerMsg::Release { call, cause: 102, .. } if call == who))
    };
    h.run_for(Duration::from_secs(29));
    assert!(
        !released(&h, "mute"),
        "released before the 30 s media timeout"
    );
    assert!(h.run_until(Duration::from_secs(2), |h| released(h, "mute")));
    h.run_for(Duration::from_secs(60));
    assert!(!released(&h, "held"), "a held member is not released");
    assert!(!released(&h, "talker"));
}

#[test]
fn two_nodes_run_side_by_side_on_one_clock_without_hearing_each_other() {
    let mut h = Harness::new(Instant::now());
    let a = h.add_node(NodeSpec::default());
    let b = h.add_node(NodeSpec {
        workers: 2,
        ..NodeSpec::default()
    });
    let (ca, cb) = (h.connect(a), h.connect(b));
    for (ctl, room, base) in [(ca, "10", 0), (cb, "10", 2)] {
        for i in 0..2 {
            let phone = h.add_phone(Some(TONES[base + i]), lan());
            let out = h.dial(ctl, &format!("p{i}"), &format!("*3{room}#"), phone);
            assert!(matches!(out, ServerMsg::Connect { .. }), "{out:?}");
        }
    }
    h.run_for(Duration::from_secs(1));
    // The same room number on two nodes is two conferences.
    assert!(hears(&h, 0, 1) && misses(&h, 0, 2) && misses(&h, 0, 3));
    assert!(hears(&h, 2, 3) && misses(&h, 2, 0) && misses(&h, 2, 1));
}
