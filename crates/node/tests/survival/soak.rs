//! The survival soak (not for CI; `bench/soak-survival` runs it): ten minutes or
//! more of calls coming and going in a few rooms over three node processes, and
//! every minute one node SIGKILLed under load and started again a few seconds
//! later. At the end of every minute all calls are released and nothing may be
//! left anywhere: no room, member, invisible participant or channel in the scaler's
//! `Status`, no room or leg in any node's own `Health`. Node 0 is never killed:
//! its memory (VmRSS, taken at those quiet points) may not grow by more than 1 %:
//! the median of the last three minutes' against the median of minutes 3-5. Memory
//! a process once used mostly stays its own, so the warm-up takes node 0 to its
//! worst case first (while the first minute's victim is down, the churn fills up
//! to its most calls on the two other nodes). Medians, because the allocator moves
//! a 10 MB RSS by a few hundred kB either way between two quiet points (3.6 % up
//! and back down in a trial run); a leak grows with the calls made, about 600 a
//! minute, and shows through that: 100 bytes a call is over 5 % in ten minutes.
//!
//! `SOAK_SECS` (default 600, at least 480) sets the length, `SOAK_SEED` the
//! sequence of calls. Every quiet point prints one `soak minute=...` line.

use crate::cluster::{Cluster, Layout};
use scnf_media::codec::CodecKind;
use scnf_media::probe::TONES;
use scnf_media::util::Rng;
use scnf_testkit::client::{CallAnswer, Client, Event};
use scnf_testkit::participant::{Participant, Source};
use std::time::Duration;
use tokio::time::Instant;

const ROOMS: u64 = 6;
/// Live calls the churn keeps between.
const FEWEST: usize = 12;
const MOST: usize = 36;
const MINUTE: Duration = Duration::from_secs(60);
/// Left at the end of a minute for releasing everything and checking.
const QUIET: Duration = Duration::from_secs(10);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One live call of the churn.
struct Call {
    name: String,
    _phone: Participant,
}

/// What the churn did, for the report.
#[derive(Default, Debug)]
struct Counts {
    setups: u64,
    /// Setups answered with a Release, by cause.
    refused: std::collections::BTreeMap<u8, u64>,
    released: u64,
    /// Calls the cluster released (those of a killed node).
    lost: u64,
}

/// Calls the cluster released by itself (those of a killed node) leave `live`.
fn take_releases(c: &mut Client, live: &mut Vec<Call>, counts: &mut Counts) {
    while let Some(e) = c.poll_event() {
        if let Event::Release { call, .. } = e {
            live.retain(|x| x.name != call);
            counts.lost += 1;
        }
    }
}

/// One step of churn: a setup or a release (a setup while `fill` and not at
/// [`MOST`]).
async fn step(
    cl: &Cluster,
    c: &mut Client,
    rng: &mut Rng,
    live: &mut Vec<Call>,
    counts: &mut Counts,
    next: &mut u64,
    fill: bool,
) {
    take_releases(c, live, counts);
    let setup = live.len() < FEWEST || (live.len() < MOST && (fill || rng.below(2) == 0));
    if setup {
        *next += 1;
        let name = format!("s{next}");
        let tone = TONES[rng.below(6) as usize];
        let phone = Participant::bind(cl.phone_ip(), CodecKind::Pcmu, Source::tone(tone))
            .await
            .expect("binds a phone");
        let room = 8000 + rng.below(ROOMS);
        let out = c
            .setup(&name, &format!("*3{room}#"), false, &phone.offer(false))
            .await
            .expect("the scaler answers a setup");
        counts.setups += 1;
        match out {
            CallAnswer::Connect { .. } => {
                phone.connect(out.media_addr().expect("a connected call's media"));
                live.push(Call {
                    name,
                    _phone: phone,
                });
            }
            CallAnswer::Release { cause, .. } => *counts.refused.entry(cause).or_default() += 1,
            other => panic!("{name}: {other:?}"),
        }
    } else {
        let at = rng.below(live.len() as u64) as usize;
        let call = live.swap_remove(at);
        // A call of a node just killed may be gone already (its Release unread).
        if c.release(&call.name, None).await.is_ok() {
            counts.released += 1;
        }
    }
}

/// Releases every call and waits (at most 10 s) until nothing is left anywhere.
async fn quiesce(cl: &Cluster, c: &mut Client, live: &mut Vec<Call>, counts: &mut Counts) {
    take_releases(c, live, counts);
    for call in live.drain(..) {
        if c.release(&call.name, None).await.is_ok() {
            counts.released += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.status().await.expect("the scaler's status");
        let clean = s.rooms.is_empty()
            && s.channels.used == 0
            && s.nodes.len() == cl.layout.nodes()
            && s.nodes
                .iter()
                .all(|n| n.members == 0 && n.invisible == 0 && n.rooms == 0);
        if clean {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scaler holds something with no calls: rooms {:?}, channels {:?}, nodes {:?}",
            s.rooms,
            s.channels,
            s.nodes
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for k in 0..cl.layout.nodes() {
        let addr = cl.node_control(k).await;
        let mut own = Client::connect(addr)
            .await
            .expect("the node's own listener");
        own.login_optional("soak", b"").await.expect("an open node");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let h = own.health().await.expect("the node's health");
            if (h.rooms, h.legs) == (0, 0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {k} holds {} rooms and {} legs with no calls",
                h.rooms,
                h.legs
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The median of a few samples.
fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

/// A node's resident memory, kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of 10 minutes or more, not for CI: bench/soak-survival runs it"]
async fn a_long_churn_with_a_node_killed_every_minute_leaks_nothing_and_keeps_its_memory() {
    let _machine = crate::exclusive().await;
    let total = Duration::from_secs(env_u64("SOAK_SECS", 600).clamp(480, 86_400));
    let mut rng = Rng::new(env_u64("SOAK_SEED", 13));
    let mut cl = Cluster::start(Layout::loopback(9, 3)).await;
    let mut c = cl.controller(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    let end = t0 + total;
    let (mut live, mut counts, mut next) = (Vec::new(), Counts::default(), 0u64);
    // Node 0's VmRSS at each minute's quiet point.
    let mut rss = Vec::new();
    let mut minute = 0u32;
    while Instant::now() + QUIET < end {
        minute += 1;
        let minute_end = (t0 + MINUTE * minute).min(end);
        let kill_at = minute_end - MINUTE / 2;
        let victim = 1 + minute as usize % 2;
        let mut killed = None;
        while Instant::now() + QUIET < minute_end {
            if killed.is_none() && Instant::now() >= kill_at {
                cl.kill_node(victim);
                killed = Some(Instant::now());
            }
            if killed.is_some_and(|t| t.elapsed() >= Duration::from_secs(3))
                && cl.node(victim).is_none()
            {
                cl.start_node(victim);
            }
            // The first minute's kill is the warm-up's worst case: every call the
            // churn allows, on two nodes.
            let fill = minute == 1 && cl.node(victim).is_none();
            step(
                &cl,
                &mut c,
                &mut rng,
                &mut live,
                &mut counts,
                &mut next,
                fill,
            )
            .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if cl.node(victim).is_none() {
            cl.start_node(victim);
        }
        let names: Vec<String> = (0..cl.layout.nodes()).map(|k| cl.node_name(k)).collect();
        cl.wait_registered(&mut c, &names, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("minute {minute}: {e}"));
        quiesce(&cl, &mut c, &mut live, &mut counts).await;
        let all: Vec<u64> = (0..cl.layout.nodes())
            .map(|k| cl.node(k).map_or(0, |p| rss_kb(p.pid())))
            .collect();
        rss.push(all[0]);
        println!("soak minute={minute} {counts:?} rss_kb={all:?} killed=node-{victim}",);
    }
    assert!(rss.len() >= 8, "a soak of at least eight minutes");
    let baseline = median(&rss[2..5]);
    let last = median(&rss[rss.len() - 3..]);
    let growth = (last as f64 - baseline as f64) / baseline as f64;
    println!(
        "soak rss_growth={:.2}% node0 rss_kb={rss:?}",
        growth * 100.0
    );
    assert!(
        growth <= 0.01,
        "node 0's memory grew from {baseline} to {last} kB (medians): {rss:?}"
    );
}
