//! Conferences survive the loss of a process (issue 13), with real processes: a
//! `scnf scaler` and three `scnf node --scaler` processes, each with its own address
//! and config file, phones of the test kit sending tones, the test kit's controller
//! on the scaler. A process is lost by SIGKILL, or (in network namespaces) by cutting
//! its link.
//!
//! Each test records what every phone hears around the loss and measures, per 20 ms
//! frame, whether each other phone's tone is there (`survival/gaps.rs`). The loss
//! happens at a fixed point of the recording; what is asserted is measured (a gap,
//! a release, a registration) against a bound, never a sleep. The figures are
//! printed as `gap_ms=<n> kind=<kind>`, `release_ms=<n> kind=<kind>` and
//! `reregister_ms=<n>` lines, which `bench/survival-gaps` collects over many runs.

#[path = "survival/cluster.rs"]
mod cluster;
mod common;
#[path = "survival/gaps.rs"]
mod gaps;
#[path = "survival/load.rs"]
mod load;
#[path = "survival/netns.rs"]
mod netns;
#[path = "survival/room.rs"]
mod room;
#[path = "survival/soak.rs"]
mod soak;

use cluster::{Cluster, Layout};
use room::{Room, HEARD_DBFS, PHONES, REDIAL_TONE, WINDOW};
use scnf_media::codec::CodecKind;
use scnf_media::probe::TONES;
use scnf_testkit::client::Client;
use scnf_testkit::participant::{Heard, Participant, Source};
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// Real-time audio on a small shared machine: one survival test at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

async fn exclusive() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// How a node is lost.
enum Loss<'a> {
    /// SIGKILL: its sockets close with it (the scaler sees the connection end).
    Kill,
    /// Its link cut: it runs on, and nothing goes in or out (the scaler sees
    /// silence).
    Cut(&'a netns::Network),
}

/// A room of six over three nodes after one node was lost 2.5 s into an 8 s
/// recording, and once the controller had heard that node's calls released.
struct Lost {
    cl: Cluster,
    c: Client,
    room: Room,
    /// The room's number (dialled `*3<number>#`).
    number: String,
    victim: String,
    /// The recordings of the phones on the other nodes.
    recorded: Vec<(usize, Participant, Heard)>,
    start: Instant,
    talk: Duration,
    lost_at: Instant,
}

impl Lost {
    /// The frame the loss fell in, for messages.
    fn lost_frame(&self) -> usize {
        gaps::frame_at(&self.recorded[0].2, self.lost_at)
    }
}

/// Builds the cluster of `layout`, fills a room, and loses the node `pick` names.
async fn lose_a_node(
    layout: Layout,
    loss: Loss<'_>,
    kind: &str,
    pick: impl Fn(&Room) -> String,
) -> Lost {
    let test = layout.test;
    let mut cl = Cluster::start(layout).await;
    let mut c = cl.controller(Duration::from_secs(5)).await;
    let number = format!("7{test}");
    let mut room = room::fill_room(&cl, &mut c, &number).await;
    let victim = pick(&room);
    let survivors: Vec<usize> = (0..PHONES).filter(|&i| room.node_of[i] != victim).collect();
    let on_victim: Vec<String> = (0..PHONES)
        .filter(|&i| room.node_of[i] == victim)
        .map(room::call)
        .collect();
    let talk = Duration::from_secs(8);
    let start = Instant::now() + Duration::from_millis(200);
    let tasks = room::record(std::mem::take(&mut room.phones), &room.remotes, start, talk);
    let lost_at = start + Duration::from_millis(2500);
    tokio::time::sleep_until(lost_at).await;
    let k = cl.node_index(&victim);
    match loss {
        Loss::Kill => cl.kill_node(k),
        Loss::Cut(net) => net
            .cut(k)
            .unwrap_or_else(|e| panic!("cuts {victim} off: {e}")),
    }
    let causes = room::releases(&mut c, &on_victim).await;
    println!("release_ms={} kind={kind}", lost_at.elapsed().as_millis());
    assert!(
        causes.iter().all(|&x| x == 41),
        "the lost node's calls are released with cause 41: {causes:?}"
    );
    let recorded = room::recordings(tasks, &survivors).await;
    assert_eq!(recorded.len(), 4);
    Lost {
        cl,
        c,
        room,
        number,
        victim,
        recorded,
        start,
        talk,
        lost_at,
    }
}

/// Each node's late and skipped mix ticks, from the scaler's `Status` (a gap that
/// coincides with skipped ticks is the machine's, not the cluster's).
async fn worker_clocks(c: &mut Client) -> String {
    let status = c.status().await.expect("status");
    let clocks: Vec<String> = status
        .nodes
        .iter()
        .map(|n| {
            let late: u64 = n.workers.iter().map(|w| w.late_ticks).sum();
            let skipped: u64 = n.workers.iter().map(|w| w.skipped_ticks).sum();
            format!("{} late={late} skipped={skipped}", n.name)
        })
        .collect();
    clocks.join(", ")
}

/// For a failure's message: how many frames of `at` (a silence one phone heard,
/// widened by two frames each way) every other phone missed phone `j` too, and
/// the longest pause between two of `j`'s own sends (a phone of this process that
/// stalled is a loaded machine, not the cluster).
fn silences_of(recorded: &[(usize, Participant, Heard)], j: usize, at: &gaps::Silence) -> String {
    let window = at.start.saturating_sub(2)..at.start + at.frames + 2;
    let mut out = Vec::new();
    for (i, _, heard) in recorded {
        if *i == j {
            let pause = heard
                .sent_at
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default();
            out.push(format!("p{j} sent with pauses up to {pause:?}"));
        } else {
            let s = gaps::longest_silence(heard, TONES[j], window.clone());
            out.push(format!("p{i} missed it {} of frames {window:?}", s.frames));
        }
    }
    out.join(", ")
}

/// A secondary is lost: no survivor missed another for a frame, and a redial of a
/// lost caller lands on a live node of the same room, heard by all and hearing all.
async fn a_secondary_is_lost(layout: Layout, loss: Loss<'_>, kind: &str) {
    let lost = lose_a_node(layout, loss, kind, |room| {
        (0..PHONES)
            .map(|i| room.node_of[i].clone())
            .find(|n| *n != room.primary)
            .expect("a secondary")
    })
    .await;
    let (worst, i, j) = room::worst_silence(&lost.recorded, lost.start, lost.talk, |_, _| true);
    println!("gap_ms={} kind={kind}", worst.ms());
    let lost_frame = lost.lost_frame();
    let Lost {
        cl,
        mut c,
        room,
        number,
        victim,
        recorded,
        ..
    } = lost;
    if worst.frames > 0 {
        let clocks = worker_clocks(&mut c).await;
        let others = silences_of(&recorded, j, &worst);
        panic!(
            "p{i} (on {}) missed p{j} (on {}) for {} ms from frame {} (lost at frame {}); \
             the primary is {}; the workers' clocks: {clocks}; {others}",
            room.node_of[i],
            room.node_of[j],
            worst.ms(),
            worst.start,
            lost_frame,
            room.primary
        );
    }
    // The survivors stream on (the recording ended their schedule).
    let phones: Vec<(usize, Participant)> = recorded
        .into_iter()
        .map(|(i, p, _)| {
            p.connect(room.remotes[i]);
            (i, p)
        })
        .collect();
    let redial = Participant::bind(
        cl.phone_ip(),
        CodecKind::Pcmu,
        Source::tone(TONES[REDIAL_TONE]),
    )
    .await
    .expect("binds the redialling phone");
    let out = c
        .setup(
            "redial",
            &format!("*3{number}#"),
            false,
            &redial.offer(false),
        )
        .await
        .expect("setup");
    redial.connect(
        out.media_addr()
            .unwrap_or_else(|| panic!("redial: {out:?}")),
    );
    let status = c.status().await.expect("status");
    let node = status.rooms[0]
        .members
        .iter()
        .find(|m| m.call == "redial")
        .and_then(|m| m.node.clone())
        .expect("the redial is a member");
    assert_ne!(node, victim, "the redial lands on a live node");
    room::eventually(
        "the redial and the survivors hear each other",
        Duration::from_secs(5),
        || {
            phones.iter().all(|(i, p)| {
                p.level(TONES[REDIAL_TONE], WINDOW) > HEARD_DBFS
                    && redial.level(TONES[*i], WINDOW) > HEARD_DBFS
            })
        },
    )
    .await;
}

/// The primary is lost: a node's own phones hear each other all along, the two
/// survivors' phones hear across within 3 s, and a survivor is the new primary.
async fn the_primary_is_lost(layout: Layout, loss: Loss<'_>, kind: &str) {
    let lost = lose_a_node(layout, loss, kind, |room| room.primary.clone()).await;
    let node_of = &lost.room.node_of;
    let (local, i, j) = room::worst_silence(&lost.recorded, lost.start, lost.talk, |i, j| {
        node_of[i] == node_of[j]
    });
    if local.frames > 0 {
        let lost_frame = lost.lost_frame();
        let mut c = lost.c;
        let clocks = worker_clocks(&mut c).await;
        let others = silences_of(&lost.recorded, j, &local);
        panic!(
            "a node's own mix has no gap: p{i} missed p{j} (both on {}) for {} ms from \
             frame {} (lost at frame {}); the workers' clocks: {clocks}; {others}",
            node_of[i],
            local.ms(),
            local.start,
            lost_frame
        );
    }
    let (worst, i, j) = room::worst_silence(&lost.recorded, lost.start, lost.talk, |i, j| {
        node_of[i] != node_of[j]
    });
    println!("gap_ms={} kind={kind}", worst.ms());
    assert!(
        worst.ms() <= 3000,
        "p{i} missed p{j} for {} ms from frame {} (lost at frame {})",
        worst.ms(),
        worst.start,
        lost.lost_frame()
    );
    let mut c = lost.c;
    let status = c.status().await.expect("status");
    assert_eq!(status.rooms[0].members.len(), 4, "{:?}", status.rooms[0]);
    let primary = status.rooms[0].primary.clone();
    assert!(
        primary.is_some() && primary.as_deref() != Some(lost.victim.as_str()),
        "a survivor is the new primary: {primary:?}"
    );
    assert!(
        status.nodes.iter().all(|n| n.name != lost.victim),
        "the lost node is gone: {:?}",
        status.nodes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_secondary_costs_the_others_no_audio_and_its_callers_redial_into_the_room() {
    let _machine = exclusive().await;
    a_secondary_is_lost(Layout::loopback(1, 3), Loss::Kill, "secondary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_and_the_survivors_hear_each_other_within_3_s() {
    let _machine = exclusive().await;
    the_primary_is_lost(Layout::loopback(2, 3), Loss::Kill, "primary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_scaler_is_dead_every_phone_hears_every_other_and_the_nodes_register_again() {
    let _machine = exclusive().await;
    let mut cl = Cluster::start(Layout::loopback(3, 3)).await;
    let mut c = cl.controller(Duration::from_secs(5)).await;
    let mut room = room::fill_room(&cl, &mut c, "73").await;
    // Recorded: 1.2 s with the scaler, then 1.5 s without it. An outage much
    // longer would measure the nodes' reconnect backoff rather than the scaler: by
    // 1.75 s a node has made at most two attempts, so its next wait is at most 3 s
    // (the fourth one may be 6 s).
    let talk = Duration::from_millis(2700);
    let start = Instant::now() + Duration::from_millis(200);
    let tasks = room::record(std::mem::take(&mut room.phones), &room.remotes, start, talk);
    let kill_at = start + Duration::from_millis(1200);
    tokio::time::sleep_until(kill_at).await;
    drop(c);
    cl.kill_scaler();
    let all: Vec<usize> = (0..PHONES).collect();
    let recorded = room::recordings(tasks, &all).await;
    // Not one frame lost: every tone in every frame, no sequence number skipped.
    let (worst, i, j) = room::worst_silence(&recorded, start, talk, |_, _| true);
    println!("gap_ms={} kind=scaler", worst.ms());
    assert_eq!(
        worst.frames,
        0,
        "p{i} missed p{j} for {} ms from frame {} (kill at frame {})",
        worst.ms(),
        worst.start,
        gaps::frame_at(&recorded[0].2, kill_at)
    );
    for (i, _, heard) in &recorded {
        let lost = gaps::lost_between(heard, start + gaps::SETTLE, start + talk);
        assert_eq!(lost, 0, "p{i} lost packets during the outage");
    }
    // A new scaler on the same addresses: every node is back within 5 s.
    let restarted = Instant::now();
    cl.start_scaler();
    let mut c = cl.controller(Duration::from_secs(5)).await;
    let names: Vec<String> = (0..3).map(|k| cl.node_name(k)).collect();
    let polled = cl
        .wait_registered(&mut c, &names, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reregister = restarted.elapsed();
    println!("reregister_ms={}", reregister.as_millis());
    assert!(
        reregister <= Duration::from_secs(5),
        "re-registered in {reregister:?} (polled {polled:?})"
    );
}

/// However long the scaler was away, the nodes' reconnect waits stay under 4 s
/// (`scaler_link::backoff::CAP`), so every node is back within 5 s of it (with a
/// cap of 10 s: 6.1-6.8 s after outages of 8 s and 15 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_long_scaler_outage_every_node_registers_again_within_5_s() {
    let _machine = exclusive().await;
    let mut cl = Cluster::start(Layout::loopback(10, 3)).await;
    // A registration that lived 10 s starts the backoff over: this is its worst.
    tokio::time::sleep(Duration::from_secs(11)).await;
    cl.kill_scaler();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let restarted = Instant::now();
    cl.start_scaler();
    let mut c = cl.controller(Duration::from_secs(5)).await;
    let names: Vec<String> = (0..3).map(|k| cl.node_name(k)).collect();
    cl.wait_registered(&mut c, &names, Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reregister = restarted.elapsed();
    println!("reregister_ms={} outage_ms=12000", reregister.as_millis());
    assert!(reregister <= Duration::from_secs(5), "{reregister:?}");
}

/// The network of namespaces for test `test`, or a failure that says what is missing.
fn network(test: u8) -> netns::Network {
    netns::Network::up(test, 3).unwrap_or_else(|e| {
        panic!("the network-cut tests need root and iproute2 (ip netns, veth, bridge): {e}")
    })
}

fn in_network(test: u8, net: &netns::Network) -> Layout {
    Layout {
        test,
        places: net.places(),
        node_grace_ms: 10_000,
        video: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_cut_off_the_network_costs_the_others_no_audio() {
    let _machine = exclusive().await;
    let net = network(4);
    a_secondary_is_lost(in_network(4, &net), Loss::Cut(&net), "cut-secondary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_cut_off_the_network_is_replaced_within_3_s() {
    let _machine = exclusive().await;
    let net = network(5);
    the_primary_is_lost(in_network(5, &net), Loss::Cut(&net), "cut-primary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_after_being_declared_dead_has_what_it_held_torn_down() {
    let _machine = exclusive().await;
    let net = network(6);
    let cl = Cluster::start(in_network(6, &net)).await;
    let mut c = cl.controller(Duration::from_secs(5)).await;
    let room = room::fill_room(&cl, &mut c, "76").await;
    for (i, p) in room.phones.iter().enumerate() {
        p.connect(room.remotes[i]);
    }
    let all: Vec<(usize, &Participant)> = room.phones.iter().enumerate().collect();
    room::all_hear_all(&all, Duration::from_secs(5)).await;
    let victim = (0..PHONES)
        .map(|i| room.node_of[i].clone())
        .find(|n| *n != room.primary)
        .expect("a secondary");
    let k = cl.node_index(&victim);
    let on_victim: Vec<String> = (0..PHONES)
        .filter(|&i| room.node_of[i] == victim)
        .map(room::call)
        .collect();
    net.cut(k).expect("cuts the node off");
    let causes = room::releases(&mut c, &on_victim).await;
    assert!(causes.iter().all(|&x| x == 41), "{causes:?}");
    // Back on the network, it registers again (after its reconnect backoff) with
    // the room and legs it still runs, which the cluster let go: torn down there.
    net.restore(k).expect("puts the node back");
    let names = vec![victim.clone()];
    cl.wait_registered(&mut c, &names, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let line = cl
        .wait_log(
            "scaler",
            &["torn down there", &victim],
            Duration::from_secs(5),
        )
        .await;
    assert!(line.contains("torn="), "{line}");
    let status = c.status().await.expect("status");
    let back = status
        .nodes
        .iter()
        .find(|n| n.name == victim)
        .expect("the node is listed again");
    assert_eq!(
        (back.members, back.invisible, back.rooms),
        (0, 0, 0),
        "{back:?}"
    );
    assert_eq!(status.rooms[0].members.len(), 4, "{:?}", status.rooms[0]);
    // The rest of the room is as it was.
    let survivors: Vec<(usize, &Participant)> = all
        .into_iter()
        .filter(|(i, _)| room.node_of[*i] != victim)
        .collect();
    room::all_hear_all(&survivors, Duration::from_secs(2)).await;
}

/// The scaler is SIGKILLed and started again: the phones never notice, the nodes
/// register again and bring the room back, and the controller resumes its calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_scaler_rebuilds_the_room_from_the_nodes_and_nobody_misses_a_frame() {
    let _machine = exclusive().await;
    let mut cl = Cluster::start(Layout::loopback(7, 3)).await;
    let mut c = cl.controller(Duration::from_secs(5)).await;
    let mut room = room::fill_room(&cl, &mut c, "77").await;
    let before = c.status().await.expect("status");
    let token = c.token().expect("a resume token").to_string();
    // 1 s with the scaler, 1.5 s without, then 5.5 s with the new one: nothing of
    // it may show in what the phones hear.
    let talk = Duration::from_secs(8);
    let start = Instant::now() + Duration::from_millis(200);
    let tasks = room::record(std::mem::take(&mut room.phones), &room.remotes, start, talk);
    tokio::time::sleep_until(start + Duration::from_secs(1)).await;
    drop(c);
    cl.kill_scaler();
    tokio::time::sleep_until(start + Duration::from_millis(2500)).await;
    cl.start_scaler();
    let (mut c, resumed) = cl.controller_resuming(&token, Duration::from_secs(5)).await;
    assert!(
        resumed,
        "the controller gets its calls back from the new scaler"
    );
    let names: Vec<String> = (0..3).map(|k| cl.node_name(k)).collect();
    cl.wait_registered(&mut c, &names, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let all: Vec<usize> = (0..PHONES).collect();
    let recorded = room::recordings(tasks, &all).await;
    let (worst, i, j) = room::worst_silence(&recorded, start, talk, |_, _| true);
    println!("gap_ms={} kind=scaler-restart", worst.ms());
    assert_eq!(worst.frames, 0, "p{i} missed p{j}: {worst:?}");
    // The new scaler knows the room as the old one did.
    let after = c.status().await.expect("status");
    assert_eq!(after.rooms.len(), 1, "{:?}", after.rooms);
    assert_eq!(after.rooms[0].room, before.rooms[0].room);
    assert_eq!(after.rooms[0].primary, before.rooms[0].primary);
    let members = |s: &scnf_testkit::client::NodeStatus| {
        let mut m: Vec<(String, Option<String>)> = s.rooms[0]
            .members
            .iter()
            .map(|m| (m.call.clone(), m.node.clone()))
            .collect();
        m.sort();
        m
    };
    assert_eq!(members(&after), members(&before));
    // And it controls them as before: a release ends one call, on its node.
    c.release(&room::call(0), None)
        .await
        .expect("the resumed controller releases its call");
    let status = c.status().await.expect("status");
    assert_eq!(status.rooms[0].members.len(), PHONES - 1);
}

/// Calls belong to a controller identity, not to its connection: one that logs in
/// again with its resume token within the grace keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_reconnects_within_the_grace_keeps_its_calls_and_can_release_them() {
    let _machine = exclusive().await;
    let cl = Cluster::start(Layout::loopback(8, 3)).await;
    let mut c = cl.controller(Duration::from_secs(5)).await;
    let room = room::fill_room(&cl, &mut c, "78").await;
    for (i, p) in room.phones.iter().enumerate() {
        p.connect(room.remotes[i]);
    }
    let all: Vec<(usize, &Participant)> = room.phones.iter().enumerate().collect();
    room::all_hear_all(&all, Duration::from_secs(5)).await;
    let token = c.token().expect("a resume token").to_string();
    // The connection ends without a close handshake, as when the PBX's host dies.
    drop(c);
    let (mut c, resumed) = cl.controller_resuming(&token, Duration::from_secs(5)).await;
    assert!(resumed, "the calls wait for their controller");
    let status = c.status().await.expect("status");
    assert_eq!(status.rooms.len(), 1, "{:?}", status.rooms);
    assert_eq!(status.rooms[0].members.len(), PHONES);
    room::all_hear_all(&all, Duration::from_secs(1)).await;
    c.release(&room::call(0), None)
        .await
        .expect("the resumed session releases its call");
    let status = c.status().await.expect("status");
    assert_eq!(status.rooms[0].members.len(), PHONES - 1);
}
