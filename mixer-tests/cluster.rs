//! The cluster over real sockets on 127.0.0.1: a scaler and three nodes registered
//! to it over WebSocket (the tasks of `scnf scaler` and `scnf node --scaler`, in
//! this process), synthetic phones sending tones, the test kit's controller talking
//! to the scaler exactly as to a node.

use crate::support::exclusive;
use scnf::demo::cluster::{ClusterOptions, LocalCluster};
use scnf_core::control::msg::{CodecDesc, MediaOffer, ServerMsg};
use scnf_media::codec::CodecKind;
use scnf_media::probe::{level_dbfs, Tone, TONES, TONE_DBFS};
use scnf_testkit::client::{CallAnswer, Client};
use scnf_testkit::participant::{Participant, Source};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// Each test's cluster gets its own port ranges (3 nodes x 100 ports).
static NEXT_PORT: AtomicU16 = AtomicU16::new(40_000);

async fn cluster(tune: impl FnOnce(&mut ClusterOptions)) -> LocalCluster {
    let base = NEXT_PORT.fetch_add(400, Ordering::Relaxed);
    let mut opts = ClusterOptions::new(3, base);
    tune(&mut opts);
    LocalCluster::start(&opts, Duration::from_secs(10))
        .await
        .expect("the scaler starts and every node registers")
}

async fn controller(cl: &LocalCluster) -> Client {
    let mut c = Client::connect(cl.control())
        .await
        .expect("connect to the scaler");
    c.login("test", cl.secret.as_bytes())
        .await
        .expect("log in to the scaler");
    c
}

/// Level of each of `n` tones in `pcm`, over its steady middle (the first second
/// and the last half second skipped).
fn tone_levels(pcm: &[i16], n: usize, talk: Duration) -> Vec<f64> {
    let from = 8000.min(pcm.len());
    let to = (talk.as_millis() as usize * 8)
        .saturating_sub(4000)
        .clamp(from, pcm.len());
    (0..n)
        .map(|j| level_dbfs(&pcm[from..to], TONES[j]))
        .collect()
}

/// Phones in `codecs` (phone `i` sends `TONES[i]`) join room `room` through `c`,
/// talk for `talk`, and each reports the level of every tone in what it heard;
/// with the node each was placed on.
async fn talk_in_room(
    c: &mut Client,
    room: &str,
    codecs: &[CodecKind],
    talk: Duration,
) -> (Vec<Vec<f64>>, Vec<String>) {
    let mut ready = Vec::new();
    for (i, &codec) in codecs.iter().enumerate() {
        let tone = Tone::at_dbfs(TONES[i], TONE_DBFS);
        let p = Participant::bind([127, 0, 0, 1].into(), codec, Source::Tone(tone))
            .await
            .expect("bind a phone");
        let out = c
            .setup(
                &format!("p{i}"),
                &format!("*3{room}#"),
                false,
                &p.offer(false),
            )
            .await
            .expect("setup");
        let remote = out.media_addr().unwrap_or_else(|| panic!("p{i}: {out:?}"));
        ready.push((p, remote));
    }
    let status = c.status().await.expect("status");
    let nodes: Vec<String> = (0..codecs.len())
        .map(|i| {
            status.rooms[0]
                .members
                .iter()
                .find(|m| m.call == format!("p{i}"))
                .and_then(|m| m.node.clone())
                .unwrap_or_default()
        })
        .collect();
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|(mut p, remote)| {
            tokio::spawn(
                async move { p.run(remote, start, talk, Duration::from_millis(300)).await },
            )
        })
        .collect();
    let mut levels = Vec::new();
    for t in tasks {
        let heard = t.await.expect("phone task").expect("phone ran");
        levels.push(tone_levels(&heard.pcm, codecs.len(), talk));
    }
    (levels, nodes)
}

fn count_on(nodes: &[String], name: &str) -> usize {
    nodes.iter().filter(|n| *n == name).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_callers_on_three_nodes_each_hear_the_other_eight_once_at_their_level() {
    let _machine = exclusive().await;
    let cl = cluster(|o| o.max_talkers = 9).await;
    let mut c = controller(&cl).await;
    // Callers 3, 4 and 5 land on three different nodes (round-robin): L16 ones
    // there measure the star's own-voice leak with no companding in the way.
    let codecs = [
        CodecKind::Pcma,
        CodecKind::Pcmu,
        CodecKind::G722,
        CodecKind::L16,
        CodecKind::L16,
        CodecKind::L16,
        CodecKind::Opus,
        CodecKind::Pcma,
        CodecKind::G722,
    ];
    let talk = Duration::from_secs(4);
    let (levels, nodes) = talk_in_room(&mut c, "900", &codecs, talk).await;
    // Placed 3/3/3, the L16 callers one per node.
    for n in &cl.nodes {
        assert_eq!(count_on(&nodes, &n.name), 3, "{nodes:?}");
        assert_eq!(count_on(&nodes[3..6], &n.name), 1, "{nodes:?}");
    }
    // The seed's channel count: the primary holds its 3 callers and 2 invisible
    // participants, the others 3 and 1.
    let status = c.status().await.expect("status");
    let mut channels: Vec<u32> = status
        .nodes
        .iter()
        .map(|n| n.members + n.invisible)
        .collect();
    channels.sort_unstable();
    assert_eq!(channels, vec![4, 4, 5], "{:?}", status.nodes);
    assert_eq!(
        status.rooms[0].members.len(),
        9,
        "invisible participants are not callers"
    );
    assert_eq!(status.rooms[0].invisible.len(), 4);
    for (i, heard) in levels.iter().enumerate() {
        for (j, &l) in heard.iter().enumerate() {
            if j == i {
                continue;
            }
            if codecs[i] == CodecKind::Opus {
                // Opus at 16 kbit/s does not keep eight pure tones within a dB (on
                // one node either): each is there, and not doubled (+6 dB).
                assert!(l > -32.0 && l < -17.0, "opus p{i} hears p{j} at {l:.1}");
            } else {
                // Once, at its level: a copy through the star twice would be +6 dB.
                assert!(
                    (l - TONE_DBFS).abs() <= 1.0,
                    "p{i} ({:?}) hears p{j} at {l:.1} dBFS",
                    nodes[i]
                );
            }
        }
        let weakest = heard
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, &l)| l)
            .fold(f64::INFINITY, f64::min);
        let below = weakest - heard[i];
        match codecs[i] {
            // Nothing but the mixers between the tones and this listener.
            CodecKind::L16 => assert!(below >= 60.0, "p{i} hears itself {below:.1} dB down"),
            // Opus at 16 kbit/s codes eight pure tones with artefacts some 30 dB
            // down (on one node too).
            CodecKind::Opus => assert!(below >= 20.0, "p{i} hears itself {below:.1} dB down"),
            // Eight tones companded in one mix leave intermodulation products some
            // 52-58 dB down at the own frequency, on one node as here (a leak through
            // the star would stand out of that floor).
            _ => assert!(below >= 45.0, "p{i} hears itself {below:.1} dB down"),
        }
    }
    drop(c);
    cl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tone_crosses_two_hops_at_its_level_and_nobody_hears_themselves() {
    let _machine = exclusive().await;
    let cl = cluster(|_| {}).await;
    let mut c = controller(&cl).await;
    let codecs = [CodecKind::Pcmu, CodecKind::Pcma, CodecKind::G722];
    let talk = Duration::from_secs(4);
    let (levels, nodes) = talk_in_room(&mut c, "31", &codecs, talk).await;
    let mut distinct = nodes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one caller per node: {nodes:?}");
    // Callers 1 and 2 are on secondaries: between them the audio crosses two links.
    for (i, heard) in levels.iter().enumerate() {
        for (j, &l) in heard.iter().enumerate() {
            if j != i {
                assert!(
                    (l - TONE_DBFS).abs() <= 1.0,
                    "p{i} hears p{j} at {l:.1} dBFS"
                );
            }
        }
        let weakest = (0..3)
            .filter(|&j| j != i)
            .map(|j| heard[j])
            .fold(f64::INFINITY, f64::min);
        assert!(
            weakest - heard[i] >= 60.0,
            "p{i} hears itself {:.1} dB down",
            weakest - heard[i]
        );
    }
    drop(c);
    cl.stop().await;
}

/// A bound UDP socket's media offer: calls that need an address, not audio.
fn quiet_offer(keep: &mut Vec<std::net::UdpSocket>) -> MediaOffer {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local: SocketAddr = sock.local_addr().expect("bound");
    keep.push(sock);
    MediaOffer::plain(local, CodecDesc::pcmu())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_control_and_channel_max_span_the_cluster() {
    let _machine = exclusive().await;
    let cl = cluster(|_| {}).await;
    let mut c = controller(&cl).await;
    let mut keep = Vec::new();
    // A *81 room; its members join with channel-max 5 (`*15`): the creator and four
    // members fit, spread over every node, and a sixth does not.
    let out = c
        .setup("boss", "*2555*81#", false, &quiet_offer(&mut keep))
        .await;
    assert!(matches!(out, Ok(CallAnswer::Connect { .. })), "{out:?}");
    for k in 0..4 {
        let out = c
            .setup(
                &format!("m{k}"),
                "*3555*15#",
                false,
                &quiet_offer(&mut keep),
            )
            .await;
        assert!(
            matches!(out, Ok(CallAnswer::Connect { .. })),
            "m{k}: {out:?}"
        );
    }
    let out = c
        .setup("extra", "*3555*15#", false, &quiet_offer(&mut keep))
        .await;
    assert!(
        matches!(out, Ok(CallAnswer::Release { cause: 34, .. })),
        "the sixth caller is over channel-max, counted over all nodes: {out:?}"
    );
    let status = c.status().await.expect("status");
    assert!(
        status.nodes.iter().all(|n| n.members >= 1),
        "{:?}",
        status.nodes
    );
    c.release("boss", None).await.expect("release");
    for k in 0..4 {
        let call = format!("m{k}");
        let m = c
            .wait_for(
                "member released",
                |m| matches!(m, ServerMsg::Release { call: x, .. } if *x == call),
            )
            .await
            .expect("every member is released, wherever it is");
        assert!(matches!(m, ServerMsg::Release { .. }));
    }
    let status = c.status().await.expect("status");
    assert!(status.rooms.is_empty());
    assert!(
        status
            .nodes
            .iter()
            .all(|n| n.members == 0 && n.invisible == 0),
        "{:?}",
        status.nodes
    );
    drop(c);
    cl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_refuses_with_cause_34() {
    let _machine = exclusive().await;
    // Three nodes of 2 channels: one-caller rooms take one channel each.
    let cl = cluster(|o| o.channels = 2).await;
    let mut c = controller(&cl).await;
    let mut keep = Vec::new();
    for k in 0..6 {
        let out = c
            .setup(
                &format!("c{k}"),
                &format!("*3{}#", 70 + k),
                false,
                &quiet_offer(&mut keep),
            )
            .await;
        assert!(
            matches!(out, Ok(CallAnswer::Connect { .. })),
            "c{k}: {out:?}"
        );
    }
    let out = c.setup("c6", "*376#", false, &quiet_offer(&mut keep)).await;
    assert!(
        matches!(out, Ok(CallAnswer::Release { cause: 34, .. })),
        "{out:?}"
    );
    let status = c.status().await.expect("status");
    assert!(
        status.nodes.iter().all(|n| n.members == 2),
        "a full node was skipped: {:?}",
        status.nodes
    );
    drop(c);
    cl.stop().await;
}

/// A tone counts as heard above this level (sent at -20 dBFS), as absent below the
/// other.
const HEARD_DBFS: f64 = -32.0;
const ABSENT_DBFS: f64 = -50.0;
const WINDOW: Duration = Duration::from_millis(300);

/// Polls until `cond` holds (up to 4 s): a listen change takes a few ticks to show.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..80 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// Waits until phone `i` hears exactly the tones of `heard` among the others'.
async fn expect_hearing(phones: &[Participant], i: usize, heard: &[usize]) {
    eventually(&format!("phone {i} hears exactly {heard:?}"), || {
        (0..phones.len()).filter(|&j| j != i).all(|j| {
            let l = phones[i].level(TONES[j], WINDOW);
            if heard.contains(&j) {
                l > HEARD_DBFS
            } else {
                l < ABSENT_DBFS
            }
        })
    })
    .await;
}

/// Three live PCMU phones on tones 0-2 in room `*3<room>#` (one per node, by
/// round-robin), with RFC 4733 offered when asked.
async fn live_phones(c: &mut Client, room: &str, rfc4733: bool) -> Vec<Participant> {
    let mut phones = Vec::new();
    for (i, &tone) in TONES.iter().enumerate().take(3) {
        let p = Participant::bind([127, 0, 0, 1].into(), CodecKind::Pcmu, Source::tone(tone))
            .await
            .expect("bind a phone");
        let out = c
            .setup(
                &format!("p{i}"),
                &format!("*3{room}#"),
                false,
                &p.offer(rfc4733),
            )
            .await
            .expect("setup");
        p.connect(out.media_addr().expect("connected"));
        phones.push(p);
    }
    phones
}

/// Waits until every phone hears every other one.
async fn expect_all_hear_all(phones: &[Participant]) {
    for i in 0..phones.len() {
        let all: Vec<usize> = (0..phones.len()).filter(|&j| j != i).collect();
        expect_hearing(phones, i, &all).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_listen_on_a_secondary_silences_everyone_else_on_every_node() {
    let _machine = exclusive().await;
    let cl = cluster(|_| {}).await;
    let mut c = controller(&cl).await;
    let phones = live_phones(&mut c, "820", true).await;
    let status = c.status().await.expect("status");
    let room = &status.rooms[0];
    let primary = room
        .primary
        .clone()
        .expect("a room on three nodes has a primary");
    let node_of = |i: usize| {
        let call = format!("p{i}");
        room.members
            .iter()
            .find(|m| m.call == call)
            .and_then(|m| m.node.clone())
    };
    let x = (0..3)
        .find(|&i| node_of(i).as_deref() != Some(primary.as_str()))
        .expect("two of three phones are on secondaries");
    let others: Vec<usize> = (0..3).filter(|&j| j != x).collect();
    expect_all_hear_all(&phones).await;
    // The member on a secondary turns exclusive listen on: everyone, on every node,
    // hears only it, and it hears nobody.
    phones[x].send_rfc4733("*21#");
    let call = format!("p{x}");
    let participant = room
        .members
        .iter()
        .find(|m| m.call == call)
        .map(|m| m.participant)
        .expect("its participant id");
    c.wait_for(
        "exclusive listen",
        |m| matches!(m, ServerMsg::ListenMode { exclusive: Some(p), .. } if *p == participant),
    )
    .await
    .expect("the scaler reports the listen mode");
    for &i in &others {
        expect_hearing(&phones, i, &[x]).await;
    }
    expect_hearing(&phones, x, &[]).await;
    // `*6#` returns the room to normal.
    phones[x].send_rfc4733("*6#");
    c.wait_for("normal listen", |m| {
        matches!(
            m,
            ServerMsg::ListenMode {
                exclusive: None,
                ..
            }
        )
    })
    .await
    .expect("back to normal");
    expect_all_hear_all(&phones).await;
    drop(c);
    cl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_primary_releases_its_callers_and_relinks_the_others() {
    let _machine = exclusive().await;
    let mut cl = cluster(|_| {}).await;
    let mut c = controller(&cl).await;
    let phones = live_phones(&mut c, "830", false).await;
    let status = c.status().await.expect("status");
    let room = &status.rooms[0];
    let primary = room.primary.clone().expect("a primary");
    let on_primary = room
        .members
        .iter()
        .find(|m| m.node.as_deref() == Some(primary.as_str()))
        .map(|m| m.call.clone())
        .expect("the first caller is on the primary");
    let x: usize = on_primary[1..].parse().unwrap();
    let rest: Vec<usize> = (0..3).filter(|&j| j != x).collect();
    expect_all_hear_all(&phones).await;
    // The primary node goes away.
    let at = cl.nodes.iter().position(|n| n.name == primary).unwrap();
    let dead = cl.nodes.remove(at);
    dead.link.close(Duration::from_millis(500)).await;
    dead.node.shutdown();
    let m = c
        .wait_for(
            "the lost node's caller released",
            |m| matches!(m, ServerMsg::Release { call, .. } if *call == on_primary),
        )
        .await
        .expect("released");
    assert!(matches!(m, ServerMsg::Release { cause: 41, .. }), "{m:?}");
    // The two others, on the secondaries, are linked to each other and hear each
    // other again.
    expect_hearing(&phones, rest[0], &[rest[1]]).await;
    expect_hearing(&phones, rest[1], &[rest[0]]).await;
    let status = c.status().await.expect("status");
    assert_eq!(status.rooms[0].members.len(), 2);
    assert_ne!(status.rooms[0].primary.as_deref(), Some(primary.as_str()));
    drop(c);
    cl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_own_calls_are_reported_and_left_to_it() {
    let _machine = exclusive().await;
    let cl = cluster(|o| o.channels = 10).await;
    // Node 1 also serves a controller of its own, on its standalone listener.
    let mut cfg = scnf::config::Config::default();
    cfg.control.listen = "127.0.0.1:0".parse().unwrap();
    cfg.control.channels = 10;
    let own = scnf::control::start(cl.nodes[0].node.clone(), &cfg)
        .await
        .expect("the node's own listener starts");
    let mut local = Client::connect(own.local)
        .await
        .expect("connect to the node");
    local.login_optional("local", b"").await.expect("open node");
    let mut keep = Vec::new();
    let out = local
        .setup("own", "*3777#", false, &quiet_offer(&mut keep))
        .await
        .expect("setup");
    assert!(matches!(out, CallAnswer::Connect { .. }), "{out:?}");
    // Its next load report tells the scaler, which counts it out of the cluster.
    let mut c = controller(&cl).await;
    let name = cl.nodes[0].name.clone();
    let mut seen = None;
    for _ in 0..40 {
        let h = c.health().await.expect("health");
        let n = h.nodes.iter().find(|n| n.name == name).cloned();
        if n.as_ref().is_some_and(|n| n.local == 1) {
            seen = Some((h.channels.capacity, n.unwrap().free));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        Some((29, 9)),
        "30 channels, one used by the node's own call"
    );
    // The node's own Status: its caller is a member of its room; what the scaler
    // placed there is listed apart, never as callers.
    // Three callers through the scaler: the room spans every node.
    for k in 0..3 {
        let out = c
            .setup(
                &format!("viacluster{k}"),
                "*3778#",
                false,
                &quiet_offer(&mut keep),
            )
            .await
            .expect("setup through the scaler");
        assert!(matches!(out, CallAnswer::Connect { .. }), "{out:?}");
    }
    let st = local.status().await.expect("the node's status");
    assert_eq!(
        st.rooms.len(),
        1,
        "only the node's own room: {:?}",
        st.rooms
    );
    assert_eq!(st.rooms[0].members.len(), 1);
    let placed = st.placed.expect("the scaler's legs are listed");
    assert_eq!(placed.members, 1, "{placed:?}");
    assert!((1..=2).contains(&placed.invisible), "{placed:?}");
    own.stop();
    drop(c);
    cl.stop().await;
}
