//! Video across nodes, as the scaler wires it: a layer viewed on other nodes is
//! published once to a group whatever the number of viewers, the receiving nodes
//! join it and forward it, nothing is sent for a layer nobody watches elsewhere,
//! and the publisher stops after the linger once the last remote viewer goes.

use super::*;
use crate::cluster::video::VideoTransport;
use crate::engine::Via;
use scnf_media::rtp::{RtpHeader, RtpPacket};

fn vp8_offer(port: u16) -> serde_json::Value {
    json!({"address": "192.0.2.50", "port": port, "rtcp_mux": true,
           "codecs": [{"name": "VP8", "pt": 100, "rate": 90000}]})
}

/// A VP8 keyframe (or delta) packet from the publisher at 192.0.2.50:`port`.
fn vp8(seq: u16, key: bool) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    RtpHeader {
        marker: true,
        payload_type: 100,
        sequence: seq,
        timestamp: 3000 * seq as u32,
        ssrc: 0x1111,
    }
    .write(&mut p)
    .unwrap();
    p.extend_from_slice(&[0x10, if key { 0x10 } else { 0x11 }, 0, 0]);
    p.extend_from_slice(&[0x9d, 0x01, 0x2a, 0, 0, 0, 0]);
    p.resize(300, 0x55);
    p
}

/// Room 10 over three nodes, one member each (round-robin): c1 on node 1 sends
/// LOW and HIGH; returns the cluster and c1's participant number.
fn spread_room(transport: VideoTransport) -> (Cluster, u64) {
    let now = scnf_media::testclock::anchor();
    let mut cfg = PlannerConfig::new(Some(SECRET.to_vec()), [3; 32]);
    cfg.video.transport = transport;
    let mut c = Cluster::new(0, 0);
    c.planner = Planner::new(cfg);
    c.now = now;
    for i in 0..3 {
        c.add_node(&format!("node{}", i + 1), 100);
    }
    let mut p1 = 0;
    for (k, call) in ["c1", "c2", "c3"].iter().enumerate() {
        let answer = c.setup(call, "10", 4000 + 2 * k as u16);
        assert_eq!(c.node_of(&answer), k, "{call} on node {}", k + 1);
        if k == 0 {
            let ServerMsg::Connect { participant, .. } = answer else {
                unreachable!()
            };
            p1 = participant;
        }
    }
    for (layer, port) in [("low", 5000), ("high", 5002)] {
        c.text(json!({"mt": "VideoSend", "call": "c1", "layer": layer, "media": vp8_offer(port)}));
    }
    (c, p1)
}

/// Node `i`'s transmits: (destination, bytes).
fn sent_by(c: &mut Cluster, i: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = c.nodes[i].engine.poll_transmit() {
        if t.via == Via::Rtp && !scnf_media::rtp::is_rtcp(t.data) {
            out.push((t.dst, t.data.to_vec()));
        }
    }
    out
}

fn view(c: &mut Cluster, call: &str, p1: u64, layer: &str, port: u16) {
    c.text(
        json!({"mt": "VideoView", "call": call, "view": 1, "participant": p1,
                  "layer": layer, "media": vp8_offer(port)}),
    );
    assert!(
        c.sent.iter().any(|(_, m)| matches!(m,
            ServerMsg::VideoViewResult { call: v, .. } if v == call)),
        "{call} got its view"
    );
}

#[test]
fn a_layer_viewed_on_two_other_nodes_crosses_once_to_one_group_and_stops_after_the_linger() {
    let (mut c, p1) = spread_room(VideoTransport::Multicast);
    view(&mut c, "c2", p1, "low", 7000);
    view(&mut c, "c3", p1, "low", 7002);
    // Node 1 gets the publisher's LOW and HIGH packets.
    let node1 = c.nodes[0].addrs.rtp;
    for seq in 0..5u16 {
        let low = vp8(seq, seq == 0);
        let from: SocketAddr = "192.0.2.50:5000".parse().unwrap();
        c.nodes[0]
            .engine
            .handle_datagram(c.now, from, Via::Rtp, &low);
        let high: SocketAddr = "192.0.2.50:5002".parse().unwrap();
        c.nodes[0]
            .engine
            .handle_datagram(c.now, high, Via::Rtp, &vp8(seq, seq == 0));
    }
    let out = sent_by(&mut c, 0);
    let groups: Vec<SocketAddr> = out.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        groups.len(),
        5,
        "LOW once per packet, HIGH not at all: {groups:?}"
    );
    let group = groups[0];
    assert!(groups.iter().all(|g| *g == group));
    assert!(matches!(group, SocketAddr::V4(g) if g.ip().octets()[0] == 239));
    // The group's datagrams reach nodes 2 and 3 from node 1's media address; each
    // forwards them to its viewer.
    for i in 1..3 {
        for (_, pkt) in &out {
            c.nodes[i]
                .engine
                .handle_datagram(c.now, node1, Via::Rtp, pkt);
        }
        let to_viewer = sent_by(&mut c, i);
        assert_eq!(to_viewer.len(), 5, "node {} forwards to its viewer", i + 1);
        let port = 7000 + 2 * (i as u16 - 1);
        assert!(to_viewer.iter().all(|(d, _)| d.port() == port));
        let p = RtpPacket::parse(&to_viewer[0].1).unwrap();
        assert_eq!(p.payload_type, 100);
    }
    // Status shows the channel, its viewers on every node and its group.
    let (rooms, _) = c.status();
    let low = rooms[0]
        .video
        .iter()
        .find(|v| v.layer == Some(crate::control::msg::VideoLayer::Low))
        .expect("the LOW channel");
    assert_eq!(low.viewers, 2);
    assert_eq!(low.group.as_deref(), Some(group.to_string().as_str()));
    assert_eq!(low.node.as_deref(), Some("node1"));
    // The viewers go; the relay ends only after the linger.
    c.text(json!({"mt": "VideoViewStop", "call": "c2", "view": 1}));
    c.text(json!({"mt": "VideoViewStop", "call": "c3", "view": 1}));
    let from: SocketAddr = "192.0.2.50:5000".parse().unwrap();
    c.nodes[0]
        .engine
        .handle_datagram(c.now, from, Via::Rtp, &vp8(6, false));
    assert_eq!(sent_by(&mut c, 0).len(), 1, "still sent during the linger");
    c.advance(Duration::from_secs(1));
    c.nodes[0]
        .engine
        .handle_datagram(c.now, from, Via::Rtp, &vp8(7, false));
    assert!(sent_by(&mut c, 0).is_empty(), "stopped within 1 s");
    assert_eq!(c.refusals(), 0, "every operation the nodes got was valid");
}

#[test]
fn in_unicast_mode_each_receiving_node_gets_its_own_copy_only_while_it_views() {
    let (mut c, p1) = spread_room(VideoTransport::Unicast);
    view(&mut c, "c2", p1, "high", 7000);
    view(&mut c, "c3", p1, "high", 7002);
    let from: SocketAddr = "192.0.2.50:5002".parse().unwrap();
    c.nodes[0]
        .engine
        .handle_datagram(c.now, from, Via::Rtp, &vp8(0, true));
    let mut dests: Vec<SocketAddr> = sent_by(&mut c, 0).into_iter().map(|(d, _)| d).collect();
    dests.sort();
    assert_eq!(dests, vec![c.nodes[1].addrs.rtp, c.nodes[2].addrs.rtp]);
    c.text(json!({"mt": "VideoViewStop", "call": "c2", "view": 1}));
    c.advance(Duration::from_secs(1));
    c.nodes[0]
        .engine
        .handle_datagram(c.now, from, Via::Rtp, &vp8(1, false));
    let dests: Vec<SocketAddr> = sent_by(&mut c, 0).into_iter().map(|(d, _)| d).collect();
    assert_eq!(dests, vec![c.nodes[2].addrs.rtp]);
    assert_eq!(c.refusals(), 0);
}

#[test]
fn a_view_on_the_publishers_own_node_needs_no_relay() {
    let mut c = Cluster::new(1, 100);
    c.setup("c1", "10", 4000);
    let answer = c.setup("c2", "10", 4002);
    let ServerMsg::Connect { .. } = answer else {
        panic!("{answer:?}")
    };
    c.text(json!({"mt": "VideoSend", "call": "c1", "layer": "medium", "media": vp8_offer(5000)}));
    let p1 = c
        .sent
        .iter()
        .find_map(|(_, m)| match m {
            ServerMsg::VideoStreams { participant, .. } => Some(*participant),
            _ => None,
        })
        .expect("VideoStreams");
    view(&mut c, "c2", p1, "medium", 7000);
    let from: SocketAddr = "192.0.2.50:5000".parse().unwrap();
    c.nodes[0]
        .engine
        .handle_datagram(c.now, from, Via::Rtp, &vp8(0, true));
    let dests: Vec<SocketAddr> = sent_by(&mut c, 0).into_iter().map(|(d, _)| d).collect();
    assert_eq!(dests, vec!["192.0.2.50:7000".parse().unwrap()]);
    assert_eq!(c.refusals(), 0);
}
