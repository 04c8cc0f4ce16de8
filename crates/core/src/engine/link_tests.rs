//! Link legs (a room's invisible participants between two nodes): two rooms linked
//! between the same two worker sockets are told apart by SSRC, each link sends with
//! its own fixed SSRC, and a link reports no talking.

use super::*;
use scnf_media::codec::CodecKind;
use scnf_media::rtp::{RtpHeader, RtpPacket};

/// The other node's worker socket: both rooms' links send there and hear from it.
const PEER: &str = "198.51.100.7:20000";

fn tags(ssrc: u32, peer_ssrc: u32) -> LinkTags {
    LinkTags { ssrc, peer_ssrc }
}

fn l16(ssrc: u32, seq: u16, ts: u32, level: i16) -> Vec<u8> {
    let mut pkt = vec![0u8; 12 + 320];
    RtpHeader {
        marker: false,
        payload_type: 96,
        sequence: seq,
        timestamp: ts,
        ssrc,
    }
    .write(&mut pkt)
    .unwrap();
    for (k, s) in pkt[12..].chunks_exact_mut(2).enumerate() {
        let v = if k % 2 == 0 { level } else { -level };
        s.copy_from_slice(&v.to_be_bytes());
    }
    pkt
}

/// Rooms 1 and 2, each with a plain member and a link to the same peer socket.
fn two_linked_rooms() -> (Engine, Instant) {
    let now = scnf_media::testclock::anchor();
    let cfg = EngineConfig::new("link", (now, Duration::from_secs(1_700_000_000)));
    let mut e = Engine::new(cfg, 5);
    let peer: SocketAddr = PEER.parse().unwrap();
    for room in 1..=2u64 {
        e.open_room(now, MixId(room)).unwrap();
        let member: SocketAddr = format!("192.0.2.{room}:4000").parse().unwrap();
        e.add_leg(
            now,
            MixId(room),
            LegId(room),
            LegSpec::new(member, CodecKind::Pcmu),
        )
        .unwrap();
        let spec = LegSpec::link(
            peer,
            CodecKind::L16,
            96,
            tags(100 + room as u32, 200 + room as u32),
        );
        e.add_leg(now, MixId(room), LegId(10 + room), spec).unwrap();
    }
    (e, now)
}

#[test]
fn two_rooms_linked_between_the_same_sockets_are_told_apart_by_ssrc() {
    let (mut e, mut now) = two_linked_rooms();
    let peer: SocketAddr = PEER.parse().unwrap();
    for k in 0..5u16 {
        // Room 2's far side sends; room 1's is silent.
        e.handle_datagram(now, peer, Via::Rtp, &l16(202, k, 160 * k as u32, 4000));
        now += TICK;
        e.handle_timeout(now);
        while e.poll_transmit().is_some() {}
    }
    assert_eq!(e.leg_stats(LegId(12)).unwrap().packets_received, 5);
    assert_eq!(e.leg_stats(LegId(11)).unwrap().packets_received, 0);
    // An SSRC no link accepts is foreign, not a third room's audio.
    let before = e.stats().foreign;
    e.handle_datagram(now, peer, Via::Rtp, &l16(999, 9, 0, 4000));
    assert_eq!(e.stats().foreign, before + 1);
    // A second link for the same far SSRC is refused.
    let dup = LegSpec::link(peer, CodecKind::L16, 96, tags(300, 202));
    assert!(e.add_leg(now, MixId(1), LegId(50), dup).is_err());
}

#[test]
fn a_link_sends_with_its_own_ssrc_and_reports_no_talking() {
    let (mut e, mut now) = two_linked_rooms();
    let peer: SocketAddr = PEER.parse().unwrap();
    let mut ssrcs = Vec::new();
    let mut events = Vec::new();
    for k in 0..50u16 {
        e.handle_datagram(now, peer, Via::Rtp, &l16(201, k, 160 * k as u32, 8000));
        now += TICK;
        e.handle_timeout(now);
        while let Some(t) = e.poll_transmit() {
            if t.dst == peer {
                if let Ok(p) = RtpPacket::parse(t.data) {
                    ssrcs.push(p.ssrc);
                }
            }
        }
        events.extend(std::iter::from_fn(|| e.poll_event()));
    }
    ssrcs.sort_unstable();
    ssrcs.dedup();
    assert_eq!(
        ssrcs,
        vec![101, 102],
        "each room's link keeps its agreed SSRC"
    );
    assert!(
        !events
            .iter()
            .any(|ev| matches!(ev, EngineEvent::Talking { leg, .. } if leg.0 > 10)),
        "a link carries a mix, not a talker: {events:?}"
    );
    // The member of room 1 hears the far side through its link.
    assert!(e.leg_stats(LegId(1)).unwrap().packets_sent > 0);
}

#[test]
fn a_link_that_hears_nothing_for_its_timeout_says_so_and_a_quiet_room_keeps_its_links_alive() {
    let (mut e, start) = two_linked_rooms();
    let peer: SocketAddr = PEER.parse().unwrap();
    let mut now = start;
    let mut timeouts = Vec::new();
    let mut sent_per_tick = Vec::new();
    for k in 0..100u16 {
        // Room 2's far node sends its (silent) mix every period; room 1's is gone.
        e.handle_datagram(now, peer, Via::Rtp, &l16(202, k, 160 * k as u32, 0));
        now += TICK;
        e.handle_timeout(now);
        let mut to_peer = 0;
        while let Some(t) = e.poll_transmit() {
            if t.dst == peer && RtpPacket::parse(t.data).is_ok() {
                to_peer += 1;
            }
        }
        sent_per_tick.push(to_peer);
        for ev in std::iter::from_fn(|| e.poll_event()) {
            if let EngineEvent::MediaTimeout { leg, .. } = ev {
                timeouts.push((leg, now - start));
            }
        }
    }
    assert_eq!(
        timeouts.len(),
        1,
        "one report, for the silent link: {timeouts:?}"
    );
    let (leg, after) = timeouts[0];
    assert_eq!(leg, LegId(11));
    assert!(
        after >= LINK_TIMEOUT && after < LINK_TIMEOUT + 3 * TICK,
        "reported after {after:?}"
    );
    // Nobody talks, yet both links carry their room's mix every period: silence on
    // a link means the far node is gone, never a quiet room.
    assert!(
        sent_per_tick.iter().all(|&n| n >= 2),
        "packets to the peer per tick: {sent_per_tick:?}"
    );
}
