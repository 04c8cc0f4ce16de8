//! Deterministic tests of what a leg accepts from the network: the receive budget
//! against a flood from its own address, SSRC changes, and latching against a hijack.
//! Virtual clock, hand-built packets; nothing sleeps.

use super::*;
use scnf_media::codec::CodecKind;
use scnf_media::rtp::RtpHeader;

const VICTIM: LegId = LegId(1);
const OTHER: LegId = LegId(2);
const SSRC: u32 = 0x5eed;

struct World {
    engine: Engine,
    now: Instant,
    /// The victim's (configured) address and the other leg's.
    victim: SocketAddr,
    other: SocketAddr,
    seq: u16,
    ts: u32,
}

impl World {
    /// Room 1 with a PCMU leg (latching as asked, telephone-events on 101) and a
    /// second, plain leg in room 2 on the same worker.
    fn new(latching: bool) -> World {
        let now = scnf_media::testclock::anchor();
        let cfg = EngineConfig::new("guard", (now, Duration::from_secs(1_700_000_000)));
        let mut engine = Engine::new(cfg, 3);
        let victim: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        let other: SocketAddr = "192.0.2.20:4000".parse().unwrap();
        engine.open_room(now, MixId(1)).unwrap();
        engine.open_room(now, MixId(2)).unwrap();
        let mut spec = LegSpec::new(victim, CodecKind::Pcmu);
        spec.latching = latching;
        spec.telephone_event_pt = Some(101);
        engine.add_leg(now, MixId(1), VICTIM, spec).unwrap();
        let spec = LegSpec::new(other, CodecKind::Pcmu);
        engine.add_leg(now, MixId(2), OTHER, spec).unwrap();
        World {
            engine,
            now,
            victim,
            other,
            seq: 100,
            ts: 0,
        }
    }

    fn stats(&self, leg: LegId) -> LegStats {
        self.engine.leg_stats(leg).unwrap()
    }

    /// Advances the clock by one tick, runs it and drops what it sent.
    fn tick(&mut self) {
        self.now += TICK;
        self.engine.handle_timeout(self.now);
        while self.engine.poll_transmit().is_some() {}
    }

    /// One 20 ms PCMU packet of the victim's stream from `from` (its next sequence
    /// number and timestamp).
    fn talk(&mut self, from: SocketAddr, ssrc: u32) {
        let pkt = packet(0, self.seq, self.ts, ssrc, &[0x55; 160]);
        self.engine.handle_datagram(self.now, from, Via::Rtp, &pkt);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
    }

    /// Where the victim's mix goes now.
    fn victim_destination(&mut self) -> SocketAddr {
        self.now += TICK;
        self.engine.handle_timeout(self.now);
        let dsts: Vec<SocketAddr> =
            std::iter::from_fn(|| self.engine.poll_transmit().map(|t| t.dst)).collect();
        *dsts
            .iter()
            .find(|d| **d != self.other && d.ip() == self.victim.ip())
            .expect("the victim's leg is sent its mix")
    }

    fn events(&mut self) -> Vec<EngineEvent> {
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }
}

fn packet(pt: u8, sequence: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut pkt = vec![0u8; 12 + payload.len()];
    RtpHeader {
        marker: false,
        payload_type: pt,
        sequence,
        timestamp,
        ssrc,
    }
    .write(&mut pkt)
    .unwrap();
    pkt[12..].copy_from_slice(payload);
    pkt
}

/// The packets of one RFC 4733 digit (three updates, the end bit three times).
fn digit_packets(event: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<Vec<u8>> {
    [(160u16, false), (320, false), (480, false)]
        .into_iter()
        .chain([(640, true); 3])
        .enumerate()
        .map(|(k, (dur, end))| {
            let mut p = [event, if end { 0x80 | 10 } else { 10 }, 0, 0];
            p[2..4].copy_from_slice(&dur.to_be_bytes());
            packet(101, seq.wrapping_add(k as u16), ts, ssrc, &p)
        })
        .collect()
}

#[test]
fn a_flood_from_a_legs_own_address_is_dropped_unparsed_beyond_its_budget() {
    let mut w = World::new(false);
    let mut pkt = packet(0, 0, 0, 0, &[0x55; 160]);
    // 200 000 datagrams in 1 s (200 k/s), each with a new SSRC, sequence, timestamp.
    for i in 0..200_000u32 {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: i as u16,
            timestamp: i.wrapping_mul(160),
            ssrc: i.wrapping_mul(2_654_435_761),
        }
        .write(&mut pkt)
        .unwrap();
        w.engine.handle_datagram(w.now, w.victim, Via::Rtp, &pkt);
        if i % 4000 == 3999 {
            w.tick();
        }
    }
    let s = w.stats(VICTIM);
    let passed = budget::BURST + budget::RATE_PER_S;
    assert!(s.flood_dropped >= 200_000 - passed, "{s:?}");
    assert_eq!(w.engine.stats().flood_dropped, s.flood_dropped);
    // What passed the budget is a stream of one-packet SSRCs: it resets nothing but
    // the first SSRC (adopted as the leg's) and, once per quiet period, one more.
    assert!(s.ssrc_changes <= 5, "{} resets", s.ssrc_changes);
    assert!(s.ssrc_refused >= passed - 20, "{s:?}");
    assert_eq!(
        s.flood_dropped + s.ssrc_refused + s.packets_received,
        200_000,
        "every datagram is accounted for"
    );
    // The other room's leg is untouched, and every tick ran.
    assert_eq!(w.stats(OTHER).flood_dropped, 0);
    assert_eq!(w.engine.stats().ticks, 50);
}

#[test]
fn a_stream_of_new_ssrcs_within_the_budget_resets_nothing() {
    let mut w = World::new(false);
    for _ in 0..50 {
        w.talk(w.victim, SSRC);
        w.tick();
    }
    let before = w.stats(VICTIM);
    // The victim keeps talking; between its packets come 4 packets with fresh SSRCs
    // (250 packets/s from its address: within the budget).
    for i in 0..250u32 {
        for k in 0..4 {
            let pkt = packet(0, i as u16, i * 160, 0x1000 + 4 * i + k, &[0x11; 160]);
            w.engine.handle_datagram(w.now, w.victim, Via::Rtp, &pkt);
        }
        w.talk(w.victim, SSRC);
        w.tick();
    }
    let s = w.stats(VICTIM);
    assert_eq!(s.flood_dropped, 0);
    assert_eq!(s.ssrc_changes, before.ssrc_changes, "no reset: {s:?}");
    assert_eq!(s.ssrc_refused, 1000);
    assert_eq!(s.packets_received, before.packets_received + 250);
    assert_eq!(s.resyncs, before.resyncs);
}

#[test]
fn a_real_ssrc_change_is_followed_within_three_packets() {
    let mut w = World::new(false);
    for _ in 0..50 {
        w.talk(w.victim, SSRC);
        w.tick();
    }
    // A transfer: the new stream starts at once, with its own SSRC.
    for _ in 0..leg::SSRC_CONFIRM {
        w.talk(w.victim, SSRC + 1);
        w.tick();
    }
    let s = w.stats(VICTIM);
    assert_eq!(s.ssrc_changes, 1);
    assert_eq!(s.ssrc_refused, u64::from(leg::SSRC_CONFIRM) - 1);
    // After a pause of the current stream, the next one is taken on its first packet.
    for _ in 0..(leg::SSRC_QUIET.as_millis() / TICK.as_millis()) {
        w.tick();
    }
    w.talk(w.victim, SSRC + 2);
    let s2 = w.stats(VICTIM);
    assert_eq!(s2.ssrc_changes, 2);
    assert_eq!(s2.ssrc_refused, s.ssrc_refused);
}

#[test]
fn a_hijack_on_the_same_ip_with_the_right_ssrc_is_refused_while_the_victim_talks() {
    let mut w = World::new(true);
    let hijacker: SocketAddr = "192.0.2.10:5555".parse().unwrap();
    for _ in 0..25 {
        w.talk(w.victim, SSRC);
        w.tick();
    }
    w.events();
    for _ in 0..100 {
        w.talk(w.victim, SSRC);
        let pkt = packet(0, w.seq, w.ts, SSRC, &[0x22; 160]);
        w.engine.handle_datagram(w.now, hijacker, Via::Rtp, &pkt);
        w.tick();
    }
    let s = w.stats(VICTIM);
    assert_eq!(s.latch_refused, 100, "{s:?}");
    assert_eq!((s.latch_moves, s.packets_received), (0, 125));
    assert_eq!(w.engine.stats().latch_refused, 100);
    assert!(
        !w.events()
            .iter()
            .any(|e| matches!(e, EngineEvent::Latched { .. })),
        "no move"
    );
    assert_eq!(w.victim_destination(), w.victim);
}

#[test]
fn telephone_events_from_a_hijacker_are_not_accepted() {
    let mut w = World::new(true);
    let hijacker: SocketAddr = "192.0.2.10:5555".parse().unwrap();
    for _ in 0..25 {
        w.talk(w.victim, SSRC);
        w.tick();
    }
    // `*21#` keyed by the hijacker in the victim's name, while the victim talks.
    for (k, event) in [10u8, 2, 1, 11].into_iter().enumerate() {
        for pkt in digit_packets(event, 5000 + 6 * k as u16, 80_000 + 800 * k as u32, SSRC) {
            w.engine.handle_datagram(w.now, hijacker, Via::Rtp, &pkt);
        }
        w.talk(w.victim, SSRC);
        w.tick();
    }
    // And from the victim's own address with another SSRC (a spoofer on its port).
    for pkt in digit_packets(1, 6000, 90_000, SSRC ^ 1) {
        w.engine.handle_datagram(w.now, w.victim, Via::Rtp, &pkt);
    }
    let digits: Vec<EngineEvent> = w
        .events()
        .into_iter()
        .filter(|e| matches!(e, EngineEvent::Dtmf { .. }))
        .collect();
    assert_eq!(digits, []);
    let s = w.stats(VICTIM);
    assert_eq!((s.dtmf_digits, s.latch_refused, s.ssrc_refused), (0, 24, 6));
    // The victim's own digits still count.
    for pkt in digit_packets(5, 7000, 100_000, SSRC) {
        w.engine.handle_datagram(w.now, w.victim, Via::Rtp, &pkt);
    }
    assert!(w.events().contains(&EngineEvent::Dtmf {
        room: MixId(1),
        leg: VICTIM,
        digit: '5'
    }));
}

#[test]
fn a_nat_rebinding_moves_the_leg_once_the_old_port_is_quiet_and_reports_it() {
    let mut w = World::new(true);
    let rebound: SocketAddr = "192.0.2.10:6000".parse().unwrap();
    for _ in 0..25 {
        w.talk(w.victim, SSRC);
        w.tick();
    }
    w.events();
    // The NAT now maps the phone's stream to a new port; the old one falls silent.
    let quiet_ticks = (LATCH_QUIET.as_millis() / TICK.as_millis()) as u64;
    let mut moved_after = None;
    for k in 0..2 * quiet_ticks {
        w.talk(rebound, SSRC);
        if moved_after.is_none() && w.stats(VICTIM).latch_moves == 1 {
            moved_after = Some(k);
        }
        w.tick();
    }
    // Refused until the old port was quiet for LATCH_QUIET, then moved once.
    assert_eq!(moved_after, Some(quiet_ticks));
    let s = w.stats(VICTIM);
    assert_eq!((s.latch_refused, s.latch_moves), (quiet_ticks, 1));
    assert_eq!(s.packets_received, 25 + quiet_ticks);
    let moves: Vec<EngineEvent> = w
        .events()
        .into_iter()
        .filter(|e| matches!(e, EngineEvent::Latched { .. }))
        .collect();
    assert_eq!(
        moves,
        [EngineEvent::Latched {
            room: MixId(1),
            leg: VICTIM,
            remote: rebound
        }]
    );
    assert_eq!(w.victim_destination(), rebound);
    // The old port is now the stranger: while the new one talks it cannot move back.
    w.talk(w.victim, SSRC);
    assert_eq!(w.stats(VICTIM).latch_moves, 1);
    assert_eq!(w.stats(VICTIM).latch_refused, s.latch_refused + 1);
}
