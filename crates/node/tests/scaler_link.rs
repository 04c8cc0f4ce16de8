//! The node's link to a scaler, against a fake scaler on real sockets (127.0.0.1).
//!
//! The fake (`scaler_link/fake.rs`) checks the login with the core's `LoginServer`,
//! answers the registration and then speaks `ScalerMsg`; what it hears comes to the
//! test as `Seen` values, in arrival order. Every wait is on an
//! event (the link's state, a message seen) with a bounded timeout; the only time
//! figures asserted are the protocol's (first retry <= 1 s, silence 3 s).
//!
//! Ports: TCP 7900-7949, UDP 30000-30999 (one range per test).

#[path = "scaler_link/fake.rs"]
mod fake;

use fake::{fake_scaler, Mode, Seen};
use scnf::config::scaler::parse_scaler_url;
use scnf::config::Config;
use scnf::scaler_link::{self, LinkConfig, LinkHandle, LinkState};
use scnf::NodeHandle;
use scnf_core::cluster::link::{Held, ScalerMsg, LINK_VERSION};
use scnf_core::cluster::CLUSTER_ID_BIT;
use scnf_core::engine::{EngineEvent, LegId, LegSpec, MediaOp, MediaResult, MixId};
use scnf_media::codec::CodecKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const SECRET: &[u8] = b"cluster-secret-for-the-link-tests";

/// The longest any one wait of these tests lasts.
pub(crate) const BOUND: Duration = Duration::from_secs(8);

/// A node with `workers` workers on UDP ports `ports`, media timeouts after 300 ms.
fn node(workers: usize, ports: (u16, u16)) -> NodeHandle {
    let mut cfg = Config::default();
    cfg.rtp.workers = workers;
    cfg.rtp.port_min = ports.0;
    cfg.rtp.port_max = ports.1;
    cfg.rtp.recv_buffer = 1 << 18;
    cfg.rtp.send_buffer = 1 << 18;
    cfg.rtp.media_timeout_ms = 300;
    NodeHandle::start(&cfg).expect("the test's UDP ports are free")
}

fn link_config(scaler: SocketAddr, secret: &[u8], name: &str) -> LinkConfig {
    LinkConfig {
        url: parse_scaler_url(&format!("ws://{scaler}")).unwrap(),
        secret: secret.to_vec(),
        name: name.into(),
        channels: 77,
        tls: None,
        local: None,
        seed: 12_345,
    }
}

/// Waits until the link's state matches `pred`; returns it.
async fn state_where(
    rx: &mut watch::Receiver<LinkState>,
    what: &str,
    pred: impl Fn(&LinkState) -> bool,
) -> LinkState {
    let found = match tokio::time::timeout(BOUND, rx.wait_for(|s| pred(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        Ok(Err(_)) => panic!("the link ended while waiting for {what}"),
        Err(_) => None,
    };
    found.unwrap_or_else(|| panic!("no {what} within {BOUND:?}; state {:?}", *rx.borrow()))
}

fn cluster(n: u64) -> u64 {
    CLUSTER_ID_BIT | n
}

/// A phone's address on loopback (nothing listens there; the legs stay silent).
fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn spec(remote: SocketAddr) -> LegSpec {
    LegSpec {
        remote,
        codec: CodecKind::Pcmu,
        payload_type: 0,
        telephone_event_pt: None,
        latching: false,
        rtcp_mux: false,
        link: None,
    }
}

async fn stop(link: LinkHandle, node: NodeHandle) {
    assert!(link.close(Duration::from_secs(2)).await, "the link closes");
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_logs_in_registers_with_its_name_workers_and_channels_and_sends_load_heartbeats() {
    let mut scaler = fake_scaler(7900, SECRET, vec![Mode::Normal], None).await;
    let node = node(2, (30_000, 30_019));
    let link = scaler_link::spawn(
        node.clone(),
        link_config(scaler.addr, SECRET, "scnf-0a-0b-0c-1"),
    );
    let (conn, register, _to) = scaler.registered().await;
    assert_eq!(conn, 0, "the first connection registers");
    assert_eq!(register.name, "scnf-0a-0b-0c-1");
    assert_eq!(register.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(register.link_version, LINK_VERSION);
    assert_eq!(register.workers, node.workers());
    assert_eq!(register.channels, 77);
    assert_eq!(
        register.local, 0,
        "nothing tells the link the local channels here"
    );
    let mut state = link.registered();
    let s = state_where(&mut state, "Registered", LinkState::is_registered).await;
    assert_eq!(
        s,
        LinkState::Registered {
            name: "scnf-0a-0b-0c-1".into(),
            attempt: 1
        }
    );
    // Two heartbeats, each with both workers' counters; about a second apart.
    let first = scaler
        .expect("a Load", |s| match s {
            Seen::Load { conn: 0, load } => Some((Instant::now(), load)),
            _ => None,
        })
        .await;
    let second = scaler
        .expect("a second Load", |s| match s {
            Seen::Load { conn: 0, load } => Some((Instant::now(), load)),
            _ => None,
        })
        .await;
    for (_, load) in [&first, &second] {
        assert_eq!(load.workers.len(), 2, "{load:?}");
        assert_eq!(load.workers[1].index, 1);
    }
    let gap = second.0 - first.0;
    assert!(
        gap >= Duration::from_millis(700) && gap <= Duration::from_millis(1_500),
        "heartbeats {gap:?} apart"
    );
    stop(link, node).await;
    scaler
        .expect("the close", |s| {
            matches!(s, Seen::Closed { conn: 0 }).then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaler_ops_are_applied_and_answered_in_order_and_ops_on_the_nodes_own_ids_are_refused() {
    let mut scaler = fake_scaler(7901, SECRET, vec![Mode::Normal], None).await;
    let node = node(2, (30_020, 30_039));
    // The node's own room and leg (its standalone controllers' ids: no cluster bit).
    node.open_room(0, MixId(5)).await.unwrap();
    node.add_leg(0, MixId(5), LegId(5), spec(peer(30_999)))
        .await
        .unwrap();
    let link = scaler_link::spawn(node.clone(), link_config(scaler.addr, SECRET, "ops-node"));
    let (_, _, to) = scaler.registered().await;
    let (mix, a, b) = (MixId(cluster(1)), LegId(cluster(1)), LegId(cluster(2)));
    // Pipelined: every op is sent before any answer is read.
    let ops: Vec<(u64, usize, MediaOp)> = vec![
        (1, 0, MediaOp::OpenRoom { mix }),
        (
            2,
            0,
            MediaOp::AddLeg {
                mix,
                leg: a,
                spec: spec(peer(30_998)),
            },
        ),
        (3, 0, MediaOp::CloseRoom { mix: MixId(5) }),
        (
            4,
            0,
            MediaOp::AddLeg {
                mix,
                leg: b,
                spec: spec(peer(30_997)),
            },
        ),
        (5, 0, MediaOp::RemoveLeg { leg: LegId(5) }),
        (6, 0, MediaOp::RemoveLeg { leg: a }),
        (
            7,
            9,
            MediaOp::OpenRoom {
                mix: MixId(cluster(2)),
            },
        ),
        (
            8,
            1,
            MediaOp::OpenRoom {
                mix: MixId(cluster(3)),
            },
        ),
    ];
    for (req, worker, op) in ops {
        to.send(ScalerMsg::Op { req, worker, op }).unwrap();
    }
    let mut answers = Vec::new();
    while answers.len() < 8 {
        let (req, result) = scaler
            .expect("a Result", |s| match s {
                Seen::Result {
                    conn: 0,
                    req,
                    result,
                } => Some((req, result)),
                _ => None,
            })
            .await;
        answers.push((req, result));
    }
    let on_worker_0: Vec<u64> = answers
        .iter()
        .map(|(r, _)| *r)
        .filter(|r| (1..=6).contains(r))
        .collect();
    assert_eq!(
        on_worker_0,
        vec![1, 2, 3, 4, 5, 6],
        "worker 0's answers in op order"
    );
    let answer = |req: u64| &answers.iter().find(|(r, _)| *r == req).unwrap().1;
    assert_eq!(*answer(1), MediaResult::Done);
    assert_eq!(*answer(2), MediaResult::Done);
    assert_eq!(*answer(4), MediaResult::Done);
    assert!(
        matches!(answer(6), MediaResult::Legs(l) if l.len() == 1 && l[0].0 == a),
        "{:?}",
        answer(6)
    );
    assert_eq!(*answer(8), MediaResult::Done);
    for (req, says) in [
        (3, "mix 5 is not a cluster id"),
        (5, "leg 5 is not a cluster id"),
        (7, "no worker 9"),
    ] {
        assert!(
            matches!(answer(req), MediaResult::Failed(e) if e.contains(says)),
            "req {req}: {:?}",
            answer(req)
        );
    }
    // The node's own room and leg are untouched; the scaler's leg b is in its room.
    node.leg_stats(0, LegId(5))
        .await
        .expect("the node's own leg still runs");
    node.leg_stats(0, b)
        .await
        .expect("the scaler's second leg runs");
    assert!(
        node.leg_stats(0, a).await.is_err(),
        "the removed leg is gone"
    );
    stop(link, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_events_of_the_scalers_legs_are_forwarded_and_the_nodes_own_are_not() {
    let mut scaler = fake_scaler(7902, SECRET, vec![Mode::Normal], None).await;
    let node = node(1, (30_040, 30_049));
    let link = scaler_link::spawn(
        node.clone(),
        link_config(scaler.addr, SECRET, "events-node"),
    );
    let (_, _, to) = scaler.registered().await;
    // Both legs stay silent: each times out after 300 ms, on the node's own room
    // first, so its event would arrive first if it were forwarded.
    node.open_room(0, MixId(6)).await.unwrap();
    node.add_leg(0, MixId(6), LegId(6), spec(peer(30_996)))
        .await
        .unwrap();
    let (mix, leg) = (MixId(cluster(6)), LegId(cluster(6)));
    to.send(ScalerMsg::Op {
        req: 1,
        worker: 0,
        op: MediaOp::OpenRoom { mix },
    })
    .unwrap();
    to.send(ScalerMsg::Op {
        req: 2,
        worker: 0,
        op: MediaOp::AddLeg {
            mix,
            leg,
            spec: spec(peer(30_995)),
        },
    })
    .unwrap();
    let event = scaler
        .expect("an Event", |s| match s {
            Seen::Event { conn: 0, event } => Some(event),
            _ => None,
        })
        .await;
    assert_eq!(event, EngineEvent::MediaTimeout { room: mix, leg });
    // The node's own timeout went out on the same event stream no later than this
    // one: a round trip behind it, it would have been seen.
    to.send(ScalerMsg::Op {
        req: 3,
        worker: 0,
        op: MediaOp::Snapshot { legs: false },
    })
    .unwrap();
    let mut before = Vec::new();
    scaler
        .expect("the Snapshot answer", |s| match s {
            Seen::Result { req: 3, .. } => Some(()),
            other => {
                before.push(format!("{other:?}"));
                None
            }
        })
        .await;
    assert!(
        !before.iter().any(|s| s.starts_with("Event")),
        "only the scaler's leg's events are forwarded: {before:?}"
    );
    stop(link, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_and_retried_with_backoff_while_the_node_keeps_running() {
    let mut scaler = fake_scaler(7903, b"the-scalers-other-secret", vec![Mode::Normal], None).await;
    let node = node(1, (30_050, 30_059));
    let link = scaler_link::spawn(
        node.clone(),
        link_config(scaler.addr, SECRET, "wrong-secret"),
    );
    let mut state = link.registered();
    let s = state_where(&mut state, "a refusal", |s| {
        matches!(s, LinkState::Refused { .. })
    })
    .await;
    let LinkState::Refused { reason, attempt: 1 } = s else {
        panic!("the first attempt is refused: {s:?}");
    };
    assert!(reason.contains("refused our login"), "{reason}");
    let refused_at = scaler
        .expect("the first refusal", |s| {
            matches!(s, Seen::LoginRefused { conn: 0 }).then(Instant::now)
        })
        .await;
    // The retry comes after the first backoff window (250-750 ms), and is refused too.
    let retried_at = scaler
        .expect("a second attempt", |s| {
            matches!(s, Seen::Connected { conn: 1 }).then(Instant::now)
        })
        .await;
    let wait = retried_at - refused_at;
    assert!(wait <= Duration::from_secs(1), "first retry after {wait:?}");
    state_where(&mut state, "the second refusal", |s| {
        matches!(s, LinkState::Refused { attempt: 2, .. })
    })
    .await;
    // The node runs on, its media untouched by the link's trouble.
    assert_eq!(node.stats().await.unwrap().len(), 1);
    stop(link, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaler_that_cannot_prove_the_secret_or_refuses_the_registration_is_retried() {
    let mut scaler = fake_scaler(
        7904,
        SECRET,
        vec![Mode::NoProof, Mode::RefuseRegistration, Mode::Normal],
        None,
    )
    .await;
    let node = node(1, (30_060, 30_069));
    let link = scaler_link::spawn(node.clone(), link_config(scaler.addr, SECRET, "picky"));
    let mut state = link.registered();
    let s = state_where(&mut state, "no proof", |s| {
        matches!(s, LinkState::Refused { attempt: 1, .. })
    })
    .await;
    assert!(
        matches!(&s, LinkState::Refused { reason, .. } if reason.contains("could not prove")),
        "{s:?}"
    );
    let s = state_where(&mut state, "a refused registration", |s| {
        matches!(s, LinkState::Refused { attempt: 2, .. })
    })
    .await;
    assert!(
        matches!(&s, LinkState::Refused { reason, .. } if reason.contains("is taken")),
        "{s:?}"
    );
    state_where(&mut state, "registered at last", |s| {
        matches!(s, LinkState::Registered { attempt: 3, .. })
    })
    .await;
    let (conn, _, _) = scaler.registered().await;
    assert_eq!(conn, 2);
    stop(link, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_scaler_is_dropped_after_three_seconds_and_the_node_registers_again() {
    let mut scaler = fake_scaler(
        7905,
        SECRET,
        vec![Mode::SilentAfterRegister, Mode::Normal],
        None,
    )
    .await;
    let node = node(1, (30_070, 30_079));
    let link = scaler_link::spawn(node.clone(), link_config(scaler.addr, SECRET, "silence"));
    let mut state = link.registered();
    state_where(&mut state, "the first registration", |s| {
        matches!(s, LinkState::Registered { attempt: 1, .. })
    })
    .await;
    // The fake's Registered was its last word: the node's silence timer starts then.
    let silent_since = Instant::now();
    let (conn, _, _) = scaler.registered().await;
    assert_eq!(conn, 0);
    scaler
        .expect("the node dropping the silent link", |s| {
            matches!(s, Seen::Closed { conn: 0 }).then_some(())
        })
        .await;
    let dropped = silent_since.elapsed();
    state_where(&mut state, "the second registration", |s| {
        matches!(s, LinkState::Registered { attempt: 2, .. })
    })
    .await;
    let back = silent_since.elapsed();
    assert!(
        dropped >= Duration::from_millis(2_800) && dropped <= Duration::from_millis(3_600),
        "dropped after {dropped:?} of silence"
    );
    assert!(
        back <= Duration::from_millis(4_600),
        "registered again after {back:?}"
    );
    stop(link, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaler_that_closes_is_redialled_within_a_second() {
    let mut scaler = fake_scaler(
        7906,
        SECRET,
        vec![Mode::CloseAfterRegister, Mode::Normal],
        None,
    )
    .await;
    let node = node(1, (30_080, 30_089));
    let link = scaler_link::spawn(node.clone(), link_config(scaler.addr, SECRET, "redial"));
    let closed_at = scaler
        .expect("the scaler's close", |s| {
            matches!(s, Seen::Closed { conn: 0 }).then(Instant::now)
        })
        .await;
    let redial_at = scaler
        .expect("a redial", |s| {
            matches!(s, Seen::Connected { conn: 1 }).then(Instant::now)
        })
        .await;
    let wait = redial_at - closed_at;
    assert!(wait <= Duration::from_secs(1), "redialled after {wait:?}");
    let mut state = link.registered();
    state_where(&mut state, "registered again", |s| {
        matches!(s, LinkState::Registered { attempt: 2, .. })
    })
    .await;
    stop(link, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_runs_over_wss_and_trusts_only_the_configured_certificate() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let acceptor = scnf::tls::acceptor_from_pem(
        ck.cert.pem().as_bytes(),
        ck.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut scaler = fake_scaler(7907, SECRET, vec![Mode::Normal], Some(acceptor)).await;
    let node = node(1, (30_090, 30_099));
    let dir = std::env::temp_dir().join(format!("scnf-link-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let mut cfg = link_config(scaler.addr, SECRET, "tls-node");
    cfg.url = parse_scaler_url(&format!("wss://localhost:{}", scaler.addr.port())).unwrap();
    cfg.tls = Some(scnf::tls::client_config_from_ca_file(&ca).unwrap());
    let link = scaler_link::spawn(node.clone(), cfg);
    let (_, register, _) = scaler.registered().await;
    assert_eq!(register.name, "tls-node");
    stop(link, node).await;
    // A node trusting another certificate never gets as far as the login.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let node = node_again(30_090);
    let mut cfg = link_config(scaler.addr, SECRET, "tls-node");
    cfg.url = parse_scaler_url(&format!("wss://localhost:{}", scaler.addr.port())).unwrap();
    cfg.tls = Some(scnf::tls::client_config_from_ca_file(&ca).unwrap());
    let link = scaler_link::spawn(node.clone(), cfg);
    let mut state = link.registered();
    scaler
        .expect("a TLS attempt", |s| {
            matches!(s, Seen::Connected { conn: 1 }).then_some(())
        })
        .await;
    scaler
        .expect("its end", |s| {
            matches!(s, Seen::Closed { conn: 1 }).then_some(())
        })
        .await;
    assert!(!state.borrow_and_update().is_registered());
    stop(link, node).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second node on the ports of one that was shut down.
fn node_again(port_min: u16) -> NodeHandle {
    node(1, (port_min, port_min + 9))
}

/// Kills the binary if the test fails before it exits.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scnf_binary_registers_with_its_flags_and_closes_the_link_on_sigterm() {
    let mut scaler = fake_scaler(7908, SECRET, vec![Mode::Normal], None).await;
    let dir = std::env::temp_dir().join(format!("scnf-link-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("cluster.secret");
    // The editor's newline is not part of the secret.
    std::fs::write(&secret, [SECRET, b"\n"].concat()).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_scnf"))
        .args([
            "node",
            "--bind",
            "127.0.0.1",
            "--control-listen",
            "127.0.0.1:0",
        ])
        .args(["--rtp-ports", "30100-30109", "--workers", "1"])
        .args(["--scaler", &format!("ws://{}", scaler.addr)])
        .arg("--scaler-password-file")
        .arg(&secret)
        .env("SCNF_NODE_NAME", "bin-node")
        .env("SCNF_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the scnf binary starts");
    let mut child = Child(child);
    let (_, register, _) = scaler.registered().await;
    assert_eq!(register.name, "bin-node");
    assert_eq!(register.channels, 1000, "1000 per worker by default");
    let pid = child.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.expect("kill runs").success());
    scaler
        .expect("the link's close", |s| {
            matches!(s, Seen::Closed { conn: 0 }).then_some(())
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the node exits within 5 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_lost_link_the_scalers_rooms_run_on_and_the_next_registration_reports_them() {
    let mut scaler = fake_scaler(
        7908,
        SECRET,
        vec![Mode::CloseWhenDropped, Mode::Normal],
        None,
    )
    .await;
    let node = node(1, (30_100, 30_109));
    let link = scaler_link::spawn(node.clone(), link_config(scaler.addr, SECRET, "relink"));
    let (_, first, to) = scaler.registered().await;
    assert!(first.holds.is_empty(), "a fresh node holds nothing");
    let mix = MixId(cluster(1));
    let leg = LegId(cluster(1));
    let ops = [
        MediaOp::OpenRoom { mix },
        MediaOp::AddLeg {
            mix,
            leg,
            spec: spec(peer(30_996)),
        },
    ];
    for (req, op) in ops.into_iter().enumerate() {
        to.send(ScalerMsg::Op {
            req: req as u64,
            worker: 0,
            op,
        })
        .unwrap();
    }
    scaler
        .expect("the leg added", |s| {
            matches!(
                s,
                Seen::Result {
                    req: 1,
                    result: MediaResult::Done,
                    ..
                }
            )
            .then_some(())
        })
        .await;
    assert_eq!(node.stats().await.unwrap()[0].legs, 1);
    // The link drops. The media does not depend on it: the room and its leg run
    // on, and the node tells the scaler it still holds them when it registers
    // again (the scaler decides what stays).
    drop(to);
    let (_, again, _to) = scaler.registered().await;
    assert_eq!(
        again.holds,
        vec![Held {
            worker: 0,
            mix,
            legs: vec![leg],
            room: None,
            kept: vec![],
        }]
    );
    let stats = node.stats().await.unwrap();
    assert_eq!((stats[0].rooms, stats[0].legs), (1, 1));
    stop(link, node).await;
}
