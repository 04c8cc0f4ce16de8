//! Controllers that lose their control connection, over real sockets: the calls
//! and their media outlive the connection, a login with the resume token takes
//! them back, and a controller that never returns has them released with cause 102.

use crate::support::{control_node, controller, exclusive, new_phone, wait};
use scnf_core::control::msg::ServerMsg;
use scnf_media::codec::CodecKind;
use scnf_media::probe::tone::TONES;
use scnf_testkit::client::{CallAnswer, Client};
use scnf_testkit::participant::{Participant, Source};
use std::time::{Duration, Instant};

const SECRET: &str = "resume-test-secret";
const WINDOW: Duration = Duration::from_millis(300);

/// A logged-in controller.
async fn pbx(addr: std::net::SocketAddr) -> Client {
    let mut c = controller(addr).await;
    c.login("pbx", SECRET.as_bytes()).await.expect("login");
    c
}

/// Phones on TONES[0..n] in room `*3<room>#`, calls `p0`, `p1`, ...
async fn phones_in(c: &mut Client, room: &str, n: usize) -> Vec<Participant> {
    let mut phones = Vec::new();
    for (i, &tone) in TONES.iter().enumerate().take(n) {
        let phone = new_phone(CodecKind::Pcmu, Source::tone(tone)).await;
        let out = c
            .setup(
                &format!("p{i}"),
                &format!("*3{room}#"),
                false,
                &phone.offer(true),
            )
            .await
            .expect("answered");
        assert!(matches!(out, CallAnswer::Connect { .. }), "{out:?}");
        phone.connect(out.media_addr().expect("a connected call has media"));
        phones.push(phone);
    }
    phones
}

fn hear(p: &Participant, freq: f64) -> bool {
    p.level(freq, WINDOW) > -32.0
}

/// Waits (at most 5 s) until the two phones hear each other.
async fn hearing_each_other(what: &str, phones: &[Participant]) {
    for _ in 0..100 {
        if hear(&phones[0], TONES[1]) && hear(&phones[1], TONES[0]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// Waits (at most 5 s) until the node counts `n` detached controllers.
async fn detached(watcher: &mut Client, n: usize) {
    for _ in 0..100 {
        if watcher.health().await.expect("health").control.detached == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never {n} detached controllers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_connection_is_cut_resumes_its_calls_and_their_media_never_stops() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|c| {
        c.control.password = Some(SECRET.into());
        c.control.resume_grace_ms = 20_000;
    })
    .await;
    let mut watcher = pbx(control.local).await;
    let mut first = pbx(control.local).await;
    let token = first.token().expect("the login gives a token").to_string();
    let phones = phones_in(&mut first, "4242", 2).await;
    hearing_each_other("the phones hear each other", &phones).await;
    // Cut: the connection goes, no close handshake, nothing released.
    drop(first);
    detached(&mut watcher, 1).await;
    // Meanwhile the room goes on: another call joins, both phones still hear.
    let third = new_phone(CodecKind::Pcmu, Source::Silence).await;
    let out = watcher
        .setup("w", "*34242#", false, &third.offer(true))
        .await
        .expect("answered");
    assert!(matches!(out, CallAnswer::Connect { .. }), "{out:?}");
    third.connect(out.media_addr().expect("media"));
    hearing_each_other("the media goes on while the controller is away", &phones).await;
    let mut back = controller(control.local).await;
    let resumed = back
        .resume("pbx", SECRET.as_bytes(), &token)
        .await
        .expect("login");
    assert!(resumed.resumed, "{resumed:?}");
    assert_eq!(resumed.error, None);
    assert_eq!(back.token(), Some(token.as_str()));
    // What it missed is replayed: the join of `w`.
    wait(
        &mut back,
        "the replayed join",
        |m| matches!(m, ServerMsg::ParticipantJoined { call, .. } if call == "w"),
    )
    .await;
    back.hold("p0")
        .await
        .expect("p0 is this controller's again");
    back.release("p0", None).await.expect("release p0");
    back.release("p1", None).await.expect("release p1");
    for call in ["p0", "p1"] {
        let left = wait(
            &mut watcher,
            "a release",
            |m| matches!(m, ServerMsg::ParticipantLeft { call: c, .. } if c == call),
        )
        .await;
        assert!(
            matches!(left, ServerMsg::ParticipantLeft { cause: 16, .. }),
            "{left:?}"
        );
    }
    let health = watcher.health().await.expect("health");
    assert_eq!(health.channels.used, 1, "only w is left");
    assert_eq!((health.control.resumes, health.control.detached), (1, 0));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_a_controller_that_does_not_come_back_are_released_with_cause_102_after_the_grace()
{
    let _machine = exclusive().await;
    let grace = Duration::from_millis(600);
    let (node, control) = control_node(|c| {
        c.control.password = Some(SECRET.into());
        c.control.resume_grace_ms = grace.as_millis() as u64;
    })
    .await;
    let mut watcher = pbx(control.local).await;
    let mut gone = pbx(control.local).await;
    let token = gone.token().expect("a token").to_string();
    let _phones = phones_in(&mut gone, "5151", 1).await;
    let cut = Instant::now();
    drop(gone);
    let left = wait(
        &mut watcher,
        "p0 leaves",
        |m| matches!(m, ServerMsg::ParticipantLeft { call, .. } if call == "p0"),
    )
    .await;
    assert!(cut.elapsed() >= grace, "released before the grace");
    assert!(
        matches!(left, ServerMsg::ParticipantLeft { cause: 102, .. }),
        "{left:?}"
    );
    let health = watcher.health().await.expect("health");
    assert_eq!(health.channels.used, 0);
    assert_eq!(
        (health.control.expired, health.control.expired_calls),
        (1, 1)
    );
    let mut late = controller(control.local).await;
    let answer = late.resume("pbx", SECRET.as_bytes(), &token).await.unwrap();
    assert!(!answer.resumed);
    assert_eq!(answer.error.as_deref(), Some("unknown-token"));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_of_a_scaler_resumes_its_calls_on_the_cluster_the_same_way() {
    use scnf::demo::cluster::{ClusterOptions, LocalCluster};
    let _machine = exclusive().await;
    // Ports apart from cluster.rs's (40000 on, 400 a cluster).
    let opts = ClusterOptions::new(2, 52_000);
    let cl = LocalCluster::start(&opts, Duration::from_secs(10))
        .await
        .expect("the scaler starts and every node registers");
    let secret = cl.secret.clone();
    let mut watcher = controller(cl.control()).await;
    watcher
        .login("pbx", secret.as_bytes())
        .await
        .expect("login");
    let mut first = controller(cl.control()).await;
    first.login("pbx", secret.as_bytes()).await.expect("login");
    let token = first.token().expect("a token").to_string();
    let phones = phones_in(&mut first, "6262", 2).await;
    hearing_each_other("the phones hear each other", &phones).await;
    drop(first);
    detached(&mut watcher, 1).await;
    hearing_each_other("the media goes on while the controller is away", &phones).await;
    let mut back = controller(cl.control()).await;
    let resumed = back.resume("pbx", secret.as_bytes(), &token).await.unwrap();
    assert!(resumed.resumed, "{resumed:?}");
    back.release("p0", None)
        .await
        .expect("p0 is this controller's again");
    back.release("p1", None).await.expect("p1 too");
    let health = watcher.health().await.expect("health");
    assert_eq!(health.channels.used, 0);
    assert_eq!((health.control.resumes, health.control.detached), (1, 0));
    cl.stop().await;
}
