//! The worker's turn logic against a datagram source that never runs dry, on a
//! virtual clock: the deterministic twin of a flood on the worker's socket.

use super::*;
use scnf_core::engine::{EngineConfig, LegId, LegSpec, MixId, TICK};
use scnf_media::codec::CodecKind;
use scnf_media::rtp::RtpHeader;
use std::cell::Cell;
use std::net::SocketAddr;

/// Time that moves only when the flood says its work took time.
struct VirtualClock(Cell<Instant>);

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.0.get()
    }
    fn sleep_until(&self, at: Instant) {
        self.0.set(self.0.get().max(at));
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
    fn recv_batch(&mut self, f: &mut dyn FnMut(Pass, &Datagram<'_>)) -> std::io::Result<usize> {
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
            f(
                Pass::Handle,
                &Datagram {
                    src: self.from,
                    data: &self.pkt,
                    truncated: false,
                    dst: None,
                    stamp: None,
                },
            );
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

/// A virtual clock that also keeps the realtime clock, for kernel stamps.
struct StampClock {
    now: Cell<Instant>,
    t0: Instant,
    wall0: std::time::SystemTime,
}

impl StampClock {
    fn new(t0: Instant) -> StampClock {
        StampClock {
            now: Cell::new(t0),
            t0,
            wall0: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }
    fn wall_at(&self, at: Instant) -> std::time::SystemTime {
        self.wall0 + (at - self.t0)
    }
}

impl Clock for StampClock {
    fn now(&self) -> Instant {
        self.now.get()
    }
    fn wall(&self) -> std::time::SystemTime {
        self.wall_at(self.now.get())
    }
    fn sleep_until(&self, at: Instant) {
        self.now.set(self.now.get().max(at));
    }
}

/// Datagrams queued with their arrival instants, handed out with kernel stamps of
/// them: a batch is what has arrived by the clock's now, 64 at most.
struct Stamped<'a> {
    clock: &'a StampClock,
    queue: std::collections::VecDeque<(Instant, SocketAddr, Vec<u8>)>,
}

impl Datagrams for Stamped<'_> {
    fn recv_batch(&mut self, f: &mut dyn FnMut(Pass, &Datagram<'_>)) -> std::io::Result<usize> {
        let mut n = 0;
        while n < 64 && self.queue.front().is_some_and(|d| d.0 <= self.clock.now()) {
            let (at, src, data) = self.queue.pop_front().expect("checked above");
            f(
                Pass::Handle,
                &Datagram {
                    src,
                    data: &data,
                    truncated: false,
                    dst: None,
                    stamp: Some(self.clock.wall_at(at)),
                },
            );
            n += 1;
        }
        Ok(n)
    }
}

/// Six seconds of every leg of [`worker_engine`] sending a tone, 20 ms packets that
/// arrive 1 ms before a tick or, one in three, 1 ms after it: (arrival, source,
/// datagram), in arrival order.
fn toned_arrivals(t0: Instant) -> Vec<(Instant, SocketAddr, Vec<u8>)> {
    use scnf_media::codec::{Encoder, FRAME_SAMPLES};
    let mut out = Vec::new();
    for (n, room) in (0..3u64)
        .flat_map(|r| (0..2u64).map(move |k| (r, k)))
        .enumerate()
    {
        let (r, k) = room;
        let src: SocketAddr = format!("192.0.2.{}:{}", r + 1, 4000 + 2 * k)
            .parse()
            .unwrap();
        let mut tone = scnf_media::probe::Tone::at_dbfs(300.0 + 150.0 * n as f64, -20.0);
        let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
        for i in 0..300u32 {
            let mut pcm = [0i16; FRAME_SAMPLES];
            tone.fill(&mut pcm);
            let mut pkt = vec![0u8; 12 + FRAME_SAMPLES];
            let h = RtpHeader {
                marker: i == 0,
                payload_type: 0,
                sequence: i as u16,
                timestamp: i * 160,
                ssrc: 1000 + n as u32,
            }
            .write(&mut pkt)
            .unwrap();
            enc.encode(&pcm, &mut pkt[h..]).unwrap();
            // Just before the next tick or just after it: read only at the ticks,
            // without stamps, the jitter would look like a whole tick.
            let late = (i * 7 + n as u32) % 3 == 0;
            let at = t0 + TICK * (i + 1) - Duration::from_millis(1) + TICK / 10 * u32::from(late);
            out.push((at, src, pkt));
        }
    }
    out.sort_by_key(|d| d.0);
    out
}

/// Every RTP datagram an engine sent, by destination, in order.
fn sent_rtp(e: &mut Engine, into: &mut Sent) {
    while let Some(t) = e.poll_transmit() {
        if t.via == Via::Rtp {
            into.entry(t.dst).or_default().push(t.data.to_vec());
        }
    }
}

/// The six seconds of [`toned_arrivals`] and their end (the last datagrams
/// arrive just after 6 s), with what an engine fed on arrival sent
/// ([`on_arrival`]): what a worker reading some other way must match.
struct Replay {
    t0: Instant,
    end: Instant,
    arrivals: Vec<(Instant, SocketAddr, Vec<u8>)>,
    eager: Engine,
    heard_eager: Sent,
}

impl Replay {
    fn new() -> Replay {
        let t0 = Instant::now();
        let arrivals = toned_arrivals(t0);
        let end = t0 + Duration::from_secs(6) + 2 * TICK;
        let (eager, heard_eager) = on_arrival(t0, &arrivals, end);
        Replay {
            t0,
            end,
            arrivals,
            eager,
            heard_eager,
        }
    }

    /// The arrivals as a socket with kernel stamps, on `clock`.
    fn socket<'a>(&self, clock: &'a StampClock) -> Stamped<'a> {
        Stamped {
            clock,
            queue: self.arrivals.iter().cloned().collect(),
        }
    }
}

#[test]
fn reading_only_at_the_tick_with_kernel_stamps_sends_what_reading_on_arrival_sends() {
    let r = Replay::new();
    let (t0, end) = (r.t0, r.end);

    // A busy worker at the extreme: the socket is read only when a tick is due,
    // each datagram at its kernel stamp.
    let clock = StampClock::new(t0);
    let (mut late, _) = worker_engine(t0);
    let mut heard_late = Default::default();
    let mut src = r.socket(&clock);
    let mut truncated = 0;
    while let Some(due) = late.poll_timeout().filter(|&d| d <= end) {
        clock.now.set(due);
        read_waiting(&mut late, &mut src, Via::Rtp, &clock, &mut truncated);
        run_due(&mut late, due, &mut |e| sent_rtp(e, &mut heard_late));
    }

    // The playouts measured the same path and took the same steps: the 2 ms of
    // jitter lowered the delay from the start's 40 ms by a skipped frame. Read at
    // the ticks without stamps, the same path would look 20 ms jittery.
    same_as_on_arrival(&r.eager, &r.heard_eager, &late, &heard_late);
}

/// Sent = what [`worker_engine`] sends when every datagram of `arrivals` is
/// handled the instant it arrives, ticks in between, until `end`.
fn on_arrival(
    t0: Instant,
    arrivals: &[(Instant, SocketAddr, Vec<u8>)],
    end: Instant,
) -> (Engine, Sent) {
    let (mut eager, _) = worker_engine(t0);
    let mut heard = Default::default();
    let mut tick_until = |e: &mut Engine, until: Instant| {
        while let Some(due) = e.poll_timeout().filter(|&d| d <= until) {
            run_due(e, due, &mut |e| sent_rtp(e, &mut heard));
        }
    };
    for (at, src, data) in arrivals {
        tick_until(&mut eager, *at);
        eager.handle_datagram(*at, *src, Via::Rtp, data);
    }
    tick_until(&mut eager, end);
    (eager, heard)
}

/// RTP sent, by destination, in order.
type Sent = std::collections::BTreeMap<SocketAddr, Vec<Vec<u8>>>;

/// Asserts that `late` (fed some other way) took the playout steps `eager` took
/// (fed on arrival, [`on_arrival`]) and sent every leg the same packets.
fn same_as_on_arrival(eager: &Engine, heard_eager: &Sent, late: &Engine, heard_late: &Sent) {
    for id in [0, 1, 10, 11, 20, 21] {
        let (a, b) = (
            eager.leg_stats(LegId(id)).unwrap(),
            late.leg_stats(LegId(id)).unwrap(),
        );
        let steps =
            |s: &scnf_core::engine::LegStats| (s.playout_delay_ms, s.compressed, s.stretched);
        assert_eq!(steps(&a), steps(&b), "leg {id}");
        assert!(
            a.compressed >= 1 && a.playout_delay_ms < 10,
            "leg {id}: {a:?}"
        );
    }
    assert_eq!(heard_eager.len(), 6, "every leg was sent its mix");
    for (dst, eager) in heard_eager {
        assert!(eager.len() >= 300, "{dst}: a packet per tick");
        let late = &heard_late[dst];
        let first = eager.iter().zip(late).position(|(a, b)| a != b);
        assert!(
            first.is_none() && late.len() == eager.len(),
            "{dst} heard something else when the socket was read later: \
             packet {first:?} of {} / {}",
            eager.len(),
            late.len()
        );
    }
    assert_eq!(late.stats().datagrams, eager.stats().datagrams);
}

#[test]
fn a_resting_worker_reads_once_per_coalescing_period_and_sends_what_reading_on_arrival_sends() {
    let r = Replay::new();
    let (t0, end) = (r.t0, r.end);

    // The worker's resting loop: the read and the tick when one is due, else a
    // rest of 1 ms and a read.
    let coalesce = Duration::from_millis(1);
    let clock = StampClock::new(t0);
    let (mut rested, _) = worker_engine(t0);
    let mut heard = Default::default();
    let mut src = r.socket(&clock);
    let (mut truncated, mut turns, mut ticks_late) = (0, 0u32, 0u32);
    let mut state = Resting::default();
    while rested.poll_timeout().is_some_and(|d| d <= end) {
        if let Some(due) = rested.poll_timeout().filter(|&d| d <= clock.now()) {
            ticks_late += u32::from(clock.now() > due);
            read_waiting(&mut rested, &mut src, Via::Rtp, &clock, &mut truncated);
            run_due(&mut rested, clock.now(), &mut |e| sent_rtp(e, &mut heard));
        }
        rest_turn(&mut rested, &clock, coalesce, &mut state, &mut |e| {
            read_waiting(e, &mut src, Via::Rtp, &clock, &mut truncated)
        });
        turns += 1;
    }

    same_as_on_arrival(&r.eager, &r.heard_eager, &rested, &heard);
    assert_eq!(ticks_late, 0, "a rest ends at the tick, never after it");
    // 6 s in rests of at most 1 ms, each shortened at most once by a tick.
    let span = (end - t0).as_micros() as u32;
    assert!(
        turns >= span / 1000 && turns <= span / 1000 + 2 * 300 + 2,
        "{turns} turns"
    );
}

#[test]
fn a_rest_ends_at_the_tick_and_a_flood_is_read_on_without_one() {
    let t0 = Instant::now();
    let clock = VirtualClock(Cell::new(t0));
    let (mut engine, flooded) = worker_engine(t0);
    let due = engine.poll_timeout().unwrap();
    clock.0.set(due - Duration::from_micros(300));
    let mut flood = Flood::new(&clock, flooded);
    let mut truncated = 0;
    let coalesce = Duration::from_millis(1);
    let mut state = Resting::default();
    let mut turn = |e: &mut Engine, state: &mut Resting| {
        rest_turn(e, &clock, coalesce, state, &mut |e| {
            read_waiting(e, &mut flood, Via::Rtp, &clock, &mut truncated)
        });
    };
    let per_batch = Duration::from_micros(2) * 64;

    // The first rest ends at the tick (300 µs, not 1 ms), and the read is bounded.
    turn(&mut engine, &mut state);
    let read = per_batch * MAX_BATCHES_PER_TURN as u32;
    assert_eq!(clock.now(), due + read);
    assert_eq!(
        state,
        Resting {
            on: true,
            backlog: true
        }
    );
    // The flood left datagrams behind: the next turn reads on at once, as a
    // worker waiting for readiness would, instead of letting the socket's buffer
    // fill (and the kernel drop the other legs' datagrams with the flood's).
    turn(&mut engine, &mut state);
    assert_eq!(clock.now(), due + read * 2, "no rest after a bounded read");
    assert_eq!(
        engine.stats().ticks,
        0,
        "the tick is the loop's, after the rest"
    );
}

#[test]
fn arrivals_from_kernel_stamps_are_never_in_the_future_nor_older_than_the_bound() {
    let now = Instant::now();
    let wall = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let ms = Duration::from_millis;
    // (stamp relative to wall, want: how long before now)
    let cases = [
        (wall - ms(3), ms(3)),
        (wall, ms(0)),
        // The realtime clock stepped back after the datagram came in.
        (wall + ms(50), ms(0)),
        // Or forward: no older than the bound.
        (wall - Duration::from_secs(30), MAX_STAMP_AGE),
    ];
    for (stamp, before) in cases {
        assert_eq!(arrival(now, wall, stamp), now - before, "{stamp:?}");
    }
}

#[test]
fn the_read_before_a_tick_is_bounded_and_runs_no_tick() {
    let t0 = Instant::now();
    let clock = VirtualClock(Cell::new(t0 + TICK));
    let (mut engine, flooded) = worker_engine(t0);
    let mut flood = Flood::new(&clock, flooded);
    let mut truncated = 0;
    read_waiting(&mut engine, &mut flood, Via::Rtp, &clock, &mut truncated);
    assert_eq!(
        flood.batches, MAX_BATCHES_PER_TURN,
        "a flood is read a bounded amount"
    );
    assert_eq!(
        engine.stats().ticks,
        0,
        "the tick is the caller's, after the read"
    );
}
