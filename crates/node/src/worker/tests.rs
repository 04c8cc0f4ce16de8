//! The worker's turn logic against a datagram source that never runs dry, on a
//! virtual clock: the deterministic twin of a flood on the worker's socket.

use super::*;
use scnf_core::engine::{EngineConfig, LegId, LegSpec, MixId, TICK};
use scnf_media::codec::CodecKind;
use scnf_media::rtp::RtpHeader;
use std::cell::Cell;

/// Time that moves only when the flood says its work took time.
struct VirtualClock(Cell<Instant>);

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.0.get()
    }
}

/// Valid-looking RTP from one address with a new SSRC on every packet, a full batch
/// on every call; each datagram costs `cost` of (virtual) time.
struct Flood<'a> {
    clock: &'a VirtualClock,
    from: SocketAddr,
    batch: usize,
    cost: Duration,
    pkt: [u8; 172],
    sent: u32,
    batches: usize,
    /// Runs dry after this many batches (never, when `None`).
    dry_after: Option<usize>,
}

impl<'a> Flood<'a> {
    fn new(clock: &'a VirtualClock, from: SocketAddr) -> Flood<'a> {
        Flood {
            clock,
            from,
            batch: 64,
            cost: Duration::from_micros(2),
            pkt: [0x55; 172],
            sent: 0,
            batches: 0,
            dry_after: None,
        }
    }
}

impl Datagrams for Flood<'_> {
    fn recv_batch(&mut self, f: &mut dyn FnMut(SocketAddr, &[u8], bool)) -> std::io::Result<usize> {
        if self.dry_after.is_some_and(|n| self.batches >= n) {
            return Ok(0);
        }
        for _ in 0..self.batch {
            RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: self.sent as u16,
                timestamp: self.sent.wrapping_mul(160),
                ssrc: self.sent.wrapping_mul(2_654_435_761),
            }
            .write(&mut self.pkt)
            .unwrap();
            f(self.from, &self.pkt, false);
            self.sent += 1;
        }
        self.batches += 1;
        self.clock
            .0
            .set(self.clock.0.get() + self.cost * self.batch as u32);
        Ok(self.batch)
    }
}

/// An engine with three rooms of two PCMU legs; the first leg's address is returned.
fn worker_engine(t0: Instant) -> (Engine, SocketAddr) {
    let cfg = EngineConfig::new("worker-test", (t0, Duration::from_secs(1_700_000_000)));
    let mut engine = Engine::new(cfg, 1);
    for room in 0..3u64 {
        engine.open_room(t0, MixId(room)).unwrap();
        for k in 0..2u64 {
            let remote: SocketAddr = format!("192.0.2.{}:{}", room + 1, 4000 + 2 * k)
                .parse()
                .unwrap();
            let spec = LegSpec::new(remote, CodecKind::Pcmu);
            engine
                .add_leg(t0, MixId(room), LegId(10 * room + k), spec)
                .unwrap();
        }
    }
    (engine, "192.0.2.1:4000".parse().unwrap())
}

#[test]
fn the_mix_tick_keeps_its_schedule_while_the_socket_never_runs_dry() {
    let t0 = Instant::now();
    let clock = VirtualClock(Cell::new(t0));
    let (mut engine, flooded) = worker_engine(t0);
    let mut flood = Flood::new(&clock, flooded);
    let mut truncated = 0;
    let mut sent = 0usize;
    let mut drain = |e: &mut Engine| {
        while e.poll_transmit().is_some() {
            sent += 1;
        }
    };
    // Two seconds of a flood at 500 000 datagrams/s (2 µs each): every turn of the
    // loop finds the socket readable and full.
    while clock.now() < t0 + Duration::from_secs(2) {
        let r = receive(
            &mut engine,
            &mut flood,
            Via::Rtp,
            &clock,
            &mut truncated,
            &mut drain,
        );
        assert_eq!(r.unwrap(), Drained::Bounded);
    }
    let s = engine.snapshot(0, false).stats;
    let batch_us = (flood.cost * flood.batch as u32).as_micros() as u64;
    // Every tick of the 2 s ran (the first is due at 20 ms), none late or skipped,
    // each within one batch's work of its deadline.
    assert_eq!(s.ticks, 100, "{s:?}");
    assert_eq!((s.late_ticks, s.skipped_ticks), (0, 0), "{s:?}");
    assert!(s.lateness_max_us <= batch_us, "{s:?}");
    // The ticks' packets went out: 6 legs each tick.
    assert!(sent >= 6 * 100, "{sent} sent");
    // The flood itself was dropped unparsed, counted on the worker.
    assert!(
        s.flood_dropped >= u64::from(flood.sent) - 1000,
        "{} of {} dropped",
        s.flood_dropped,
        flood.sent
    );
    assert!(flood.sent >= 900_000);
}

#[test]
fn a_turn_handles_at_most_its_bound_of_batches_and_stops_when_dry() {
    let t0 = Instant::now();
    let clock = VirtualClock(Cell::new(t0));
    let (mut engine, flooded) = worker_engine(t0);
    let mut truncated = 0;
    let mut flood = Flood::new(&clock, flooded);
    let r = receive(
        &mut engine,
        &mut flood,
        Via::Rtp,
        &clock,
        &mut truncated,
        &mut |_| {},
    );
    assert_eq!(r.unwrap(), Drained::Bounded);
    assert_eq!(flood.batches, MAX_BATCHES_PER_TURN);
    let mut flood = Flood::new(&clock, flooded);
    flood.dry_after = Some(3);
    let r = receive(
        &mut engine,
        &mut flood,
        Via::Rtp,
        &clock,
        &mut truncated,
        &mut |_| {},
    );
    assert_eq!(r.unwrap(), Drained::Dry);
    assert_eq!(flood.batches, 3);
}

#[test]
fn a_tick_that_fell_due_during_a_batch_runs_before_the_next_one() {
    let t0 = Instant::now();
    let clock = VirtualClock(Cell::new(t0));
    let (mut engine, flooded) = worker_engine(t0);
    let mut flood = Flood::new(&clock, flooded);
    // One batch takes 15 ms (a slow machine): the tick due at 20 ms runs after the
    // second batch, at 30 ms, and before the third.
    flood.cost = Duration::from_micros(15_000 / 64);
    flood.dry_after = Some(3);
    let mut ticked_at = Vec::new();
    let mut truncated = 0;
    receive(
        &mut engine,
        &mut flood,
        Via::Rtp,
        &clock,
        &mut truncated,
        &mut |_| ticked_at.push(clock.now() - t0),
    )
    .unwrap();
    let batch = flood.cost * 64;
    assert_eq!(ticked_at, [batch * 2, batch * 3]);
    assert_eq!(engine.stats().ticks, 2);
    // Late by less than one batch.
    assert!(batch * 2 - TICK < batch);
}
