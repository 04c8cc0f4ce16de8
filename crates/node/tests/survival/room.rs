//! The room the survival tests break: six phones over three nodes, recorded while a
//! process dies, and what the recordings and the controller say about it.

use crate::cluster::Cluster;
use crate::gaps;
use scnf_core::control::msg::ServerMsg;
use scnf_media::codec::CodecKind;
use scnf_media::probe::TONES;
use scnf_testkit::client::Client;
use scnf_testkit::participant::{Heard, Participant, Source};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Phones in the room: two per node of three. Their tones, `TONES[0..6]`, are at
/// least 244 Hz apart (one frame tells them apart); a redial takes `TONES[6]`.
pub const PHONES: usize = 6;
pub const REDIAL_TONE: usize = 6;

/// The phones of one room and where the cluster put them.
pub struct Room {
    pub phones: Vec<Participant>,
    /// Where each phone's media goes (its node's worker).
    pub remotes: Vec<SocketAddr>,
    /// The node each phone is on.
    pub node_of: Vec<String>,
    pub primary: String,
}

pub fn call(i: usize) -> String {
    format!("p{i}")
}

/// `PHONES` phones (PCMU, phone `i` on `TONES[i]`) join room `*3<room>#`.
pub async fn fill_room(cl: &Cluster, c: &mut Client, room: &str) -> Room {
    let mut phones = Vec::new();
    let mut remotes = Vec::new();
    for (i, &tone) in TONES.iter().enumerate().take(PHONES) {
        let p = Participant::bind(cl.phone_ip(), CodecKind::Pcmu, Source::tone(tone))
            .await
            .expect("binds a phone");
        let out = c
            .setup(&call(i), &format!("*3{room}#"), false, &p.offer(false))
            .await
            .expect("setup");
        remotes.push(out.media_addr().unwrap_or_else(|| panic!("p{i}: {out:?}")));
        phones.push(p);
    }
    let status = c.status().await.expect("status");
    let r = &status.rooms[0];
    let node_of: Vec<String> = (0..PHONES)
        .map(|i| {
            r.members
                .iter()
                .find(|m| m.call == call(i))
                .and_then(|m| m.node.clone())
                .unwrap_or_else(|| panic!("p{i} is a member on a node: {r:?}"))
        })
        .collect();
    for k in 0..cl.layout.nodes() {
        let on = node_of.iter().filter(|n| **n == cl.node_name(k)).count();
        assert_eq!(on, 2, "two phones per node: {node_of:?}");
    }
    let primary = r
        .primary
        .clone()
        .expect("a room on three nodes has a primary");
    Room {
        phones,
        remotes,
        node_of,
        primary,
    }
}

/// Every phone sends for `talk` from `start` and records what it hears.
pub fn record(
    phones: Vec<Participant>,
    remotes: &[SocketAddr],
    start: Instant,
    talk: Duration,
) -> Vec<JoinHandle<(Participant, std::io::Result<Heard>)>> {
    phones
        .into_iter()
        .zip(remotes.iter().copied())
        .map(|(mut p, remote)| {
            tokio::spawn(async move {
                let heard = p.run(remote, start, talk, Duration::from_millis(200)).await;
                (p, heard)
            })
        })
        .collect()
}

/// The recordings of the phones in `keep` (the others' are dropped with them).
pub async fn recordings(
    tasks: Vec<JoinHandle<(Participant, std::io::Result<Heard>)>>,
    keep: &[usize],
) -> Vec<(usize, Participant, Heard)> {
    let mut out = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (p, heard) = t.await.expect("the phone's task");
        if keep.contains(&i) {
            out.push((i, p, heard.expect("the phone recorded")));
        }
    }
    out
}

/// The longest silence, over every pair of recorded phones `pairs` admits, of one
/// phone's tone in what the other heard over the steady part of the recording.
pub fn worst_silence(
    recorded: &[(usize, Participant, Heard)],
    start: Instant,
    talk: Duration,
    pairs: impl Fn(usize, usize) -> bool,
) -> (gaps::Silence, usize, usize) {
    let mut worst: Option<(gaps::Silence, usize, usize)> = None;
    for (i, _, heard) in recorded {
        let window = gaps::steady(heard, start, talk);
        assert!(window.len() > 50, "p{i} recorded only {window:?}");
        for (j, _, _) in recorded {
            if i == j || !pairs(*i, *j) {
                continue;
            }
            let s = gaps::longest_silence(heard, TONES[*j], window.clone());
            assert!(s.closed, "p{i} does not hear p{j} at the end: {s:?}");
            if !matches!(worst, Some((w, _, _)) if w.frames >= s.frames) {
                worst = Some((s, *i, *j));
            }
        }
    }
    worst.expect("at least one pair of phones")
}

/// Waits (at most 10 s) for the controller to hear every call of `calls` released;
/// the causes.
pub async fn releases(c: &mut Client, calls: &[String]) -> Vec<u8> {
    let mut causes = Vec::new();
    for call in calls {
        let m = c
            .wait_for(
                &format!("{call} released"),
                |m| matches!(m, ServerMsg::Release { call: x, .. } if x == call),
            )
            .await
            .unwrap_or_else(|e| panic!("{call} is released: {e}"));
        let ServerMsg::Release { cause, .. } = m else {
            unreachable!("matched a Release")
        };
        causes.push(cause);
    }
    causes
}

/// Polls (every 50 ms, at most `within`) until `cond` holds.
pub async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within {within:?}: {what}");
}

/// Heard above this over the last 300 ms.
pub const HEARD_DBFS: f64 = -32.0;
pub const WINDOW: Duration = Duration::from_millis(300);

/// Waits (at most `within`) until every phone of `phones` (index, phone) hears the
/// tone of every other one.
pub async fn all_hear_all(phones: &[(usize, &Participant)], within: Duration) {
    eventually("every phone hears every other", within, || {
        phones.iter().all(|(i, p)| {
            phones
                .iter()
                .all(|(j, _)| i == j || p.level(TONES[*j], WINDOW) > HEARD_DBFS)
        })
    })
    .await;
}
