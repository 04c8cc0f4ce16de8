//! Multicast between hosts, proven on the wire: a `scnf scaler` and three `scnf
//! node` processes, each in a network namespace of its own (a "host" with one
//! veth on a shared Linux bridge, `survival/netns.rs`), the test process on the
//! bridge too, as the controller and as every member's media. The bridge is
//! captured (tshark, `video_multicast/capture.rs`) from before the first video
//! request to after the last, and what crossed it is asserted frame by frame:
//!
//! - a layer viewed on two other nodes by three viewers crosses the bridge once:
//!   every packet the publisher's node received for it goes to its group exactly
//!   once (the same payload, byte for byte), and every viewer receives it;
//! - nothing goes to any other group: the layers nobody views elsewhere stay on
//!   the publisher's node, and nothing is sent to the group before the first view;
//! - the receiving nodes' IGMP follows the views: a membership report for the group
//!   from each after its views start, a leave from each after its last view stops,
//!   none from the publisher's node;
//! - once the last remote viewer stopped at T, nothing goes to the group after
//!   T + 1 s (the scaler's linger is 300 ms).
//!
//! Needs root, iproute2 and tshark (`.ci/run` installs tshark); it fails, never
//! skips, when one is missing. The namespaces go when the test ends, failed or
//! not; the logs and the capture (`bridge.pcap`) are kept when it fails
//! (`SURVIVAL_KEEP` keeps them always).

#[path = "video_multicast/capture.rs"]
mod capture;
#[allow(dead_code)] // the survival tests' cluster: this test uses a part of it
#[path = "survival/cluster.rs"]
mod cluster;
mod common;
#[path = "video_multicast/media.rs"]
mod media;
#[allow(dead_code)]
#[path = "survival/netns.rs"]
mod netns;
#[path = "video_multicast/pcap.rs"]
mod pcap;

use cluster::{Cluster, Layout};
use media::{Publisher, Viewer};
use pcap::{Frame, What};
use scnf_core::control::msg::{VideoChannelInfo, VideoLayer};
use scnf_media::codec::CodecKind;
use scnf_testkit::client::{CallAnswer, Client, NodeStatus};
use scnf_testkit::participant::{Participant, Source};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, SystemTime};

/// The test's number: its addresses are 10.R.20.x (`netns.rs`).
const TEST: u8 = 20;
/// Members in the room: two per node.
const MEMBERS: usize = 6;
/// How long the steady state is watched, with all three views open.
const STEADY: Duration = Duration::from_secs(3);
/// How long each phase between two view stops is watched.
const GAP: Duration = Duration::from_millis(700);
/// A packet that entered the publisher's node this long before a view stopped
/// reaches that view (the stop crosses the scaler; the packet only the bridge).
const IN_FLIGHT: Duration = Duration::from_millis(50);
/// How long the bridge is watched after the last view stopped.
const TAIL: Duration = Duration::from_millis(2500);
/// The bound on the publisher's node sending on after the last remote view.
const STOP_BOUND: Duration = Duration::from_secs(1);

fn call(i: usize) -> String {
    format!("m{i}")
}

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => panic!("the test network is IPv4: {ip}"),
    }
}

/// A publisher's channel of `layer` in the room's status.
fn channel(status: &NodeStatus, layer: VideoLayer) -> Option<&VideoChannelInfo> {
    status
        .rooms
        .first()?
        .video
        .iter()
        .find(|v| v.layer == Some(layer))
}

/// Polls the scaler's status (every 100 ms, at most `within`) until `cond` holds.
async fn status_until(
    c: &mut Client,
    what: &str,
    within: Duration,
    cond: impl Fn(&NodeStatus) -> bool,
) -> NodeStatus {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = c.status().await.expect("status");
        if cond(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}; the room: {:?}",
            status.rooms.first()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The UDP payloads from `src` to `dst` on the bridge, with their times.
fn udp_between(frames: &[Frame], src: SocketAddr, dst: SocketAddr) -> Vec<(SystemTime, &[u8])> {
    frames
        .iter()
        .filter_map(|f| match &f.what {
            What::Udp {
                sport,
                dport,
                payload,
            } if IpAddr::V4(f.src) == src.ip()
                && *sport == src.port()
                && IpAddr::V4(f.dst) == dst.ip()
                && *dport == dst.port() =>
            {
                Some((f.at, rtp_payload(payload)))
            }
            _ => None,
        })
        .collect()
}

/// An RTP packet's payload (past its CSRCs and header extension): what the node
/// forwards unchanged under a header of its own.
fn rtp_payload(p: &[u8]) -> &[u8] {
    let Some(&first) = p.first() else {
        return p;
    };
    let mut at = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = p
            .get(at + 2..at + 4)
            .map_or(0, |w| usize::from(u16::from_be_bytes([w[0], w[1]])));
        at += 4 + 4 * words;
    }
    p.get(at..).unwrap_or_default()
}

/// Seconds from `t0`, for messages.
fn secs(t: SystemTime, t0: SystemTime) -> f64 {
    match t.duration_since(t0) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_viewed_on_two_other_hosts_crosses_the_wire_once_and_only_while_it_is_viewed() {
    capture::tshark_present().unwrap_or_else(|e| {
        panic!("this test captures the bridge with tshark (apt-get install tshark): {e}")
    });
    let net = netns::Network::up(TEST, 3).unwrap_or_else(|e| {
        panic!("this test needs root and iproute2 (ip netns, veth, bridge): {e}")
    });
    let cl = Cluster::start(Layout {
        test: TEST,
        places: net.places(),
        node_grace_ms: 10_000,
        video: true,
    })
    .await;
    let node_ip: Vec<IpAddr> = cl.layout.places.nodes.iter().map(|p| p.ip).collect();
    let here = cl.phone_ip();
    let cap = tokio::task::block_in_place(|| {
        capture::Capture::start(
            &net.switch(),
            "sw0",
            "igmp or udp",
            &cl.dir.join("bridge.pcap"),
        )
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut c = cl.controller(Duration::from_secs(5)).await;

    // The room: two members per node (the scaler's placement); the first publishes,
    // and its node is the publisher's ("node 1" of the issue, whichever it is).
    let mut phones = Vec::new();
    let mut on = Vec::new();
    let mut publisher = 0;
    for i in 0..MEMBERS {
        let p = Participant::bind(here, CodecKind::Pcmu, Source::Silence)
            .await
            .expect("binds a phone");
        let out = c
            .setup(&call(i), "*3720#", false, &p.offer(false))
            .await
            .expect("setup");
        let remote = out
            .media_addr()
            .unwrap_or_else(|| panic!("{}: {out:?}", call(i)));
        p.connect(remote);
        let k = node_ip
            .iter()
            .position(|ip| *ip == remote.ip())
            .unwrap_or_else(|| panic!("{} answered from a node's address: {out:?}", call(i)));
        if let CallAnswer::Connect { participant, .. } = out {
            if i == 0 {
                publisher = participant;
            }
        }
        on.push(k);
        phones.push(p);
    }
    let x = on[0];
    let y = on[1];
    assert_ne!(
        x, y,
        "the second member goes to a node with none yet: {on:?}"
    );
    let z = 3 - x - y;
    let members_on = |k: usize| (1..MEMBERS).filter(|&i| on[i] == k).collect::<Vec<_>>();
    assert_eq!(members_on(y).len(), 2, "two members per node: {on:?}");
    // Two viewers on one other node, one on the third.
    let watchers: Vec<usize> = vec![members_on(y)[0], members_on(y)[1], members_on(z)[0]];

    // The publisher sends its three layers to its node.
    let mut pubs = Vec::new();
    let mut pubs_local = Vec::new();
    let mut to_node = Vec::new();
    for layer in VideoLayer::ALL {
        let mut p = Publisher::bind(here, layer).await.expect("binds a layer");
        let a = c
            .video_send(&call(0), layer, &p.offer())
            .await
            .unwrap_or_else(|e| panic!("VideoSend {layer}: {e}"));
        assert_eq!(
            a.address, node_ip[x],
            "{layer} goes to the publisher's node"
        );
        let at = SocketAddr::new(a.address, a.port);
        p.start(at);
        pubs_local.push(p.local);
        to_node.push(at);
        pubs.push(p);
    }
    let media_x = to_node[0];
    status_until(
        &mut c,
        "the publisher's node receives all three layers",
        Duration::from_secs(10),
        |s| {
            VideoLayer::ALL
                .iter()
                .all(|&l| channel(s, l).is_some_and(|v| v.packets > 0))
        },
    )
    .await;

    // Three views of LOW: two on node y, one on node z.
    let viewers: Vec<Viewer> = {
        let mut v = Vec::new();
        for _ in &watchers {
            v.push(Viewer::bind(here).await.expect("binds a viewer"));
        }
        v
    };
    let t_views = SystemTime::now();
    let mut ssrcs = Vec::new();
    for (v, &m) in viewers.iter().zip(&watchers) {
        v.seen().judge.on_request(std::time::Instant::now(), "low");
        let a = c
            .video_view(&call(m), 1, publisher, VideoLayer::Low, &v.offer())
            .await
            .unwrap_or_else(|e| panic!("VideoView by {}: {e}", call(m)));
        assert_eq!(
            a.answer.address, node_ip[on[m]],
            "a view comes from its viewer's node"
        );
        ssrcs.push(a.ssrc);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while viewers.iter().any(|v| v.seen().packets.len() < 20) {
        let got: Vec<usize> = viewers.iter().map(|v| v.seen().packets.len()).collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "every viewer gets LOW within 10 s: packets {got:?} (logs in {:?})",
            cl.dir
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = c.status().await.expect("status");
    let low = channel(&status, VideoLayer::Low).expect("the LOW channel");
    assert_eq!(low.viewers, 3, "{low:?}");
    let group: SocketAddrV4 = low
        .group
        .as_deref()
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("LOW viewed on other nodes has a group: {low:?}"));
    for layer in [VideoLayer::Medium, VideoLayer::High] {
        let ch = channel(&status, layer).expect("the channel");
        assert!(
            ch.viewers == 0 && ch.group.is_none(),
            "{layer} is viewed nowhere: {ch:?}"
        );
    }

    // The steady state, watched.
    let a_time = SystemTime::now();
    let low_before = low.packets;
    tokio::time::sleep(STEADY).await;
    let b_time = SystemTime::now();
    let status = c.status().await.expect("status");
    let low_during = channel(&status, VideoLayer::Low)
        .map_or(0, |v| v.packets)
        .saturating_sub(low_before);

    // The viewers stop, a phase watched after each: one of node y's (y keeps its
    // other view, so its membership), then y's other, then node z's, the last
    // remote one, at T.
    let mut stops = Vec::new();
    for (i, (v, &m)) in viewers.iter().zip(&watchers).enumerate() {
        if i > 0 {
            tokio::time::sleep(GAP).await;
        }
        stops.push(SystemTime::now());
        v.seen().judge.on_stop(std::time::Instant::now());
        c.video_view_stop(&call(m), 1)
            .await
            .unwrap_or_else(|e| panic!("VideoViewStop by {}: {e}", call(m)));
    }
    let (t_stop_y, t_last) = (stops[1], stops[2]);
    tokio::time::sleep(TAIL).await;
    let status = c.status().await.expect("status");
    let low_after = channel(&status, VideoLayer::Low)
        .expect("the LOW channel")
        .clone();
    let mut sent = Vec::new();
    for p in pubs {
        sent.push((p.layer, p.stop().await));
    }
    drop(phones);
    let bytes = tokio::task::block_in_place(|| cap.stop()).unwrap_or_else(|e| panic!("{e}"));
    let frames = pcap::read(&bytes).unwrap_or_else(|e| panic!("the capture: {e}"));
    println!(
        "capture: {} IPv4 frames; sent by the publisher: {sent:?}; LOW at the end: {low_after:?}",
        frames.len()
    );
    let t0 = t_views;
    let ip_x = v4(node_ip[x]);

    // What the publisher's node received for each layer, as the bridge saw it.
    let from_publisher: Vec<Vec<(SystemTime, &[u8])>> = pubs_local
        .iter()
        .zip(&to_node)
        .map(|(&from, &to)| udp_between(&frames, from, to))
        .collect();
    for (layer, got) in VideoLayer::ALL.iter().zip(&from_publisher) {
        assert!(
            got.len() > 50,
            "the publisher's {layer} reached its node: {} packets",
            got.len()
        );
    }
    let low_in = &from_publisher[VideoLayer::Low.index()];
    // The publisher went on sending LOW after the bound, so silence on the group
    // then is the node's doing.
    assert!(
        low_in
            .iter()
            .any(|(t, _)| *t > t_last + STOP_BOUND + Duration::from_millis(500)),
        "the publisher sent LOW until the end"
    );

    // Multicast on the bridge: to LOW's group only, from the publisher's node's
    // media address, TTL 1, never before the first view.
    let mut to_groups: HashMap<SocketAddrV4, usize> = HashMap::new();
    let mut to_group = Vec::new();
    // The relay's own RTCP (sender reports, its BYE when it ends) goes to the
    // group too: counted apart, and in the time the group is sent to.
    let mut rtcp_to_group = Vec::new();
    for f in &frames {
        let What::Udp {
            sport,
            dport,
            payload,
        } = &f.what
        else {
            continue;
        };
        if !f.dst.is_multicast() || f.dst.is_link_local() {
            continue;
        }
        *to_groups
            .entry(SocketAddrV4::new(f.dst, *dport))
            .or_default() += 1;
        if SocketAddrV4::new(f.dst, *dport) == group {
            assert_eq!(
                (IpAddr::V4(f.src), *sport, f.ttl),
                (media_x.ip(), media_x.port(), 1),
                "LOW goes to its group from the publisher's node's media socket with TTL 1"
            );
            if media::is_rtcp(payload) {
                rtcp_to_group.push(f.at);
            } else {
                to_group.push((f.at, rtp_payload(payload)));
            }
        }
    }
    assert_eq!(
        to_groups.keys().copied().collect::<Vec<_>>(),
        vec![group],
        "multicast went to LOW's group and nowhere else (MEDIUM and HIGH are viewed \
         nowhere): datagrams per group {to_groups:?}"
    );
    let first = to_group.first().map(|(t, _)| *t).expect("LOW crossed");
    assert!(
        first >= t_views,
        "nothing goes to the group before the first view: {:.3} s before it",
        -secs(first, t0)
    );

    // Once: every LOW packet the node received while it was viewed elsewhere (by
    // three viewers on two nodes, then two on two, then one on one) went to the
    // group exactly once, and no payload went twice.
    let mut on_group: HashMap<&[u8], usize> = HashMap::new();
    for (_, p) in &to_group {
        *on_group.entry(p).or_default() += 1;
    }
    let twice = on_group.values().filter(|&&n| n > 1).count();
    let steady: Vec<&[u8]> = low_in
        .iter()
        .filter(|(t, _)| *t >= a_time && *t <= b_time)
        .map(|(_, p)| *p)
        .collect();
    let viewed: Vec<&[u8]> = low_in
        .iter()
        .filter(|(t, _)| *t >= a_time && *t <= t_last)
        .map(|(_, p)| *p)
        .collect();
    let missing = viewed.iter().filter(|p| !on_group.contains_key(*p)).count();
    let foreign = to_group
        .iter()
        .filter(|(_, p)| !low_in.iter().any(|(_, q)| q == p))
        .count();
    let window = to_group
        .iter()
        .filter(|(t, _)| *t >= a_time && *t <= b_time)
        .count();
    println!(
        "steady {STEADY:?}: LOW in {} packets, to the group {window} (status counted {low_during} in), \
         {} views on 2 nodes; whole run: {} RTP and {} RTCP to the group",
        steady.len(),
        viewers.len(),
        to_group.len(),
        rtcp_to_group.len()
    );
    assert!(
        steady.len() > 20,
        "LOW flowed in the steady window: {}",
        steady.len()
    );
    assert_eq!(
        (twice, missing, foreign),
        (0, 0, 0),
        "of {} LOW packets received while viewed elsewhere, each crosses to the group once \
         (payloads sent twice, never sent, sent but never received)",
        viewed.len()
    );

    // Every viewer got each of them until its stop, in one clean stream from its
    // node, whoever else came or went.
    for (i, (v, &m)) in viewers.iter().zip(&watchers).enumerate() {
        let seen = v.seen();
        let got: std::collections::HashSet<&[u8]> =
            seen.packets.iter().map(|(_, p)| rtp_payload(p)).collect();
        let due: Vec<&[u8]> = low_in
            .iter()
            .filter(|(t, _)| *t >= a_time && *t + IN_FLIGHT <= stops[i])
            .map(|(_, p)| *p)
            .collect();
        let lost = due.iter().filter(|p| !got.contains(*p)).count();
        assert_eq!(
            lost,
            0,
            "viewer {i} ({} on node {}) received every LOW packet of {} until its stop",
            call(m),
            on[m],
            due.len()
        );
        assert_eq!(
            seen.ssrcs,
            vec![ssrcs[i]],
            "viewer {i}'s stream has its slot's SSRC"
        );
        assert_eq!(
            seen.sources,
            vec![SocketAddr::new(node_ip[on[m]], seen.sources[0].port())],
            "viewer {i}'s stream comes from its own node"
        );
        let report = seen.judge.report(std::time::Instant::now());
        assert!(
            report.faults().is_empty(),
            "viewer {i}: {:?}",
            report.faults()
        );
        assert_eq!(
            report.unrequested, 0,
            "viewer {i} got nothing after its stop"
        );
    }

    // Sending stops within 1 s of the last remote view; it went on until then.
    let last = to_group
        .iter()
        .map(|(t, _)| *t)
        .chain(rtcp_to_group.iter().copied())
        .max()
        .expect("LOW crossed");
    println!(
        "the last datagram to the group {:.3} s after the last view stopped",
        secs(last, t_last)
    );
    assert!(
        last <= t_last + STOP_BOUND,
        "the last datagram to the group went {:.3} s after the last view stopped",
        secs(last, t_last)
    );
    assert!(
        to_group.iter().any(|(t, _)| *t >= t_last),
        "the group was still sent to when the last view stopped (last {:.3} s before)",
        -secs(last, t_last)
    );
    assert_eq!(low_after.viewers, 0, "{low_after:?}");
    assert_eq!(
        low_after.group, None,
        "the group is released: {low_after:?}"
    );

    // IGMP: nodes y and z join after the views start and leave after their last
    // view stops; the publisher's node never joins; no other group is reported.
    let igmp: Vec<(SystemTime, Ipv4Addr, pcap::Membership)> = frames
        .iter()
        .filter_map(|f| match &f.what {
            What::Igmp(m) => Some(m.iter().map(move |m| (f.at, f.src, *m))),
            _ => None,
        })
        .flatten()
        .filter(|(_, _, m)| m.group.octets()[0] == 239)
        .collect();
    let told = |(t, from, m): &(SystemTime, Ipv4Addr, pcap::Membership)| {
        format!(
            "{:.3}s {from} {} {}",
            secs(*t, t0),
            if m.joined { "join" } else { "leave" },
            m.group
        )
    };
    let said: Vec<String> = igmp.iter().map(told).collect();
    println!(
        "IGMP (s from the first view; nodes: publisher {}, two views {}, one view {}): {said:?}",
        node_ip[x], node_ip[y], node_ip[z]
    );
    assert!(
        igmp.iter().all(|(_, _, m)| m.group == *group.ip()),
        "IGMP names LOW's group only: {said:?}"
    );
    assert!(
        igmp.iter().all(|(_, from, _)| *from != ip_x),
        "the publisher's node joins nothing: {said:?}"
    );
    for (k, stopped) in [(y, t_stop_y), (z, t_last)] {
        let ip = v4(node_ip[k]);
        let of: Vec<_> = igmp.iter().filter(|(_, from, _)| *from == ip).collect();
        let joins: Vec<SystemTime> = of
            .iter()
            .filter(|(_, _, m)| m.joined)
            .map(|(t, _, _)| *t)
            .collect();
        let leaves: Vec<SystemTime> = of
            .iter()
            .filter(|(_, _, m)| !m.joined)
            .map(|(t, _, _)| *t)
            .collect();
        assert!(
            !joins.is_empty() && joins.iter().all(|t| *t >= t_views && *t <= b_time),
            "node {k} ({ip}) reports its membership after its views start, while they run: {said:?}"
        );
        assert!(
            !leaves.is_empty() && leaves.iter().all(|t| *t >= stopped),
            "node {k} ({ip}) leaves after its last view stops ({:.3}s): {said:?}",
            secs(stopped, t0)
        );
    }
}
