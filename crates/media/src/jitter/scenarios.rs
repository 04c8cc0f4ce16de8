//! End-to-end playout scenarios: a synthetic sender, a [`crate::netsim::Path`] and a
//! [`Playout`] ticked every 20 ms, all on a virtual clock (no sleeping), so a
//! ten-minute call runs in a fraction of a second and the same seed always gives the
//! same outcome.

use super::*;
use crate::codec::{g711, l16, CodecKind};
use crate::netsim::{Jitter, Loss, Path, PathConfig, PathStats, Rng};

mod adaptation;

const TICK_PHASE_MS: u64 = 7;

/// The sender's waveform: two tones and an offset, so samples are rarely zero and a
/// shifted or altered frame cannot pass for the right one.
fn signal(n: usize) -> i16 {
    let t = n as f64 / 8000.0;
    let v = 6000.0 * (std::f64::consts::TAU * 300.0 * t).sin()
        + 3000.0 * (std::f64::consts::TAU * 1130.0 * t).sin()
        + 700.0;
    v.round() as i16
}

fn ulaw_roundtrip(n: usize) -> i16 {
    g711::ulaw_decode(g711::ulaw_encode(signal(n)))
}

/// An Opus stand-in: RTP clock 48000, L16 payload at 8 kHz, its own concealment.
struct FakeOpus {
    concealed: usize,
}

const FAKE_PLC: i16 = 1234;

impl FrameDecoder for FakeOpus {
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        if payload.len() % 2 == 0 {
            Ok(payload.len() / 2)
        } else {
            Err(CodecError::BadPayload {
                codec: CodecKind::Opus,
                len: payload.len(),
            })
        }
    }
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        Ok(l16::decode(payload, out))
    }
    fn conceal(&mut self, out: &mut [i16]) -> bool {
        out.fill(FAKE_PLC);
        self.concealed += out.len();
        true
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Ulaw,
    L16,
}

struct Pause {
    /// First packet not sent.
    at: usize,
    packets: usize,
    /// Whether timestamps count the paused time (RFC 3551 DTX) or carry on from the
    /// last packet sent.
    ts_advances: bool,
}

struct Scenario {
    ptime_ms: usize,
    clock: u32,
    wire: Wire,
    /// Sender clock error in parts per million; positive means fast.
    drift_ppm: i64,
    seconds: u64,
    path: PathConfig,
    seed: u64,
    seq0: u16,
    ts0: u32,
    /// From packet `.0` on, timestamps are shifted by `.1` units.
    ts_jump: Option<(usize, i64)>,
    pause: Option<Pause>,
    /// Packets the sender loses itself (sequence numbers are skipped).
    skip: Vec<usize>,
    jitter: JitterConfig,
    /// The sender writes what it has every this many ms (`ffmpeg -re` style), each
    /// packet still stamped for its own 20 ms.
    burst_ms: Option<u64>,
}

/// Frames after the first decoded one by which a steady path has converged from the
/// start delay (warm-up 1 s, then at most two 20 ms skips 2 s apart).
const SETTLE_FRAMES: usize = 300;

/// A leg that starts at its floor: nothing to converge, so a steady path plays out
/// bit-exactly from its first frame (for scenarios about something else).
fn floor_start() -> JitterConfig {
    let d = JitterConfig::default();
    JitterConfig {
        start_delay: d.min_delay,
        ..d
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            ptime_ms: 20,
            clock: 8000,
            wire: Wire::Ulaw,
            drift_ppm: 0,
            seconds: 10,
            path: PathConfig {
                latency: Duration::from_millis(30),
                ..PathConfig::default()
            },
            seed: 1,
            seq0: 1000,
            ts0: 160_000,
            ts_jump: None,
            pause: None,
            skip: Vec::new(),
            jitter: JitterConfig::default(),
            burst_ms: None,
        }
    }
}

struct Run {
    out: Vec<i16>,
    kinds: Vec<FrameKind>,
    stats: PlayoutStats,
    path: PathStats,
    max_buffered_ms: u32,
    /// Tick index at which each sent packet index arrived first.
    arrival_tick: Vec<Option<usize>>,
    /// Packets still buffered when the run ended.
    queued: usize,
    /// The playout's stats after each tick.
    by_tick: Vec<PlayoutStats>,
}

impl Run {
    fn first_decoded(&self) -> usize {
        self.kinds
            .iter()
            .position(|&k| k == FrameKind::Decoded)
            .expect("some frame was decoded")
    }

    fn count(&self, kind: FrameKind, from: usize) -> usize {
        self.kinds[from..].iter().filter(|&&k| k == kind).count()
    }

    /// Asserts that from the first decoded frame on, output equals the sender's
    /// signal from sample 0, for `frames` frames.
    fn assert_bit_exact(&self, expect: impl Fn(usize) -> i16, frames: usize) {
        let f0 = self.first_decoded();
        assert!(self.kinds.len() >= f0 + frames, "run too short");
        for f in f0..f0 + frames {
            let got = &self.out[f * FRAME_SAMPLES..(f + 1) * FRAME_SAMPLES];
            let n0 = (f - f0) * FRAME_SAMPLES;
            let want: Vec<i16> = (n0..n0 + FRAME_SAMPLES).map(&expect).collect();
            assert_eq!(got, &want[..], "frame {f} ({:?})", self.kinds[f]);
        }
    }

    /// Asserts that from `SETTLE_FRAMES` after the first decoded frame on, for
    /// `frames` frames, output equals the sender's signal shifted by the playout's
    /// net adjustments (a skip moves it a frame ahead, an insert a frame back): so
    /// every adjustment came before, and the rest is bit-exact.
    fn assert_bit_exact_settled(&self, expect: impl Fn(usize) -> i16, frames: usize) {
        let f0 = self.first_decoded();
        let shift = self.stats.compressed as i64 - self.stats.stretched as i64;
        let from = f0 + SETTLE_FRAMES;
        assert!(self.kinds.len() >= from + frames, "run too short");
        for f in from..from + frames {
            let got = &self.out[f * FRAME_SAMPLES..(f + 1) * FRAME_SAMPLES];
            let n0 = ((f - f0) as i64 + shift) as usize * FRAME_SAMPLES;
            let want: Vec<i16> = (n0..n0 + FRAME_SAMPLES).map(&expect).collect();
            assert_eq!(got, &want[..], "frame {f} ({:?})", self.kinds[f]);
        }
    }
}

fn run<D: FrameDecoder>(sc: &Scenario, dec: &mut D) -> Run {
    let t0 = crate::testclock::anchor();
    let ptime = sc.ptime_ms * 8;
    let ups = i64::from(sc.clock / 8000);
    let ticks = sc.seconds as usize * 50;
    let send_at = |k: usize| {
        let mut nominal_ns = k as u128 * sc.ptime_ms as u128 * 1_000_000;
        if let Some(b) = sc.burst_ms {
            let b = u128::from(b) * 1_000_000;
            nominal_ns = nominal_ns.div_ceil(b) * b;
        }
        t0 + Duration::from_nanos(
            (nominal_ns * 1_000_000 / (1_000_000 + sc.drift_ppm) as u128) as u64,
        )
    };
    let tick_at = |j: usize| t0 + Duration::from_millis(TICK_PHASE_MS + 20 * j as u64);
    let mut path = Path::new(sc.path.clone(), sc.seed);
    let mut playout = Playout::new(&sc.jitter, sc.clock);
    let mut wire = Vec::with_capacity(7 + 2 * ptime);
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut r = Run {
        out: Vec::with_capacity(ticks * FRAME_SAMPLES),
        kinds: Vec::with_capacity(ticks),
        stats: PlayoutStats::default(),
        path: PathStats::default(),
        max_buffered_ms: 0,
        arrival_tick: Vec::new(),
        queued: 0,
        by_tick: Vec::with_capacity(ticks),
    };
    let (mut k, mut j, mut unsent) = (0usize, 0usize, 0usize);
    while j < ticks {
        let (send_t, tick_t) = (send_at(k), tick_at(j));
        if let Some(at) = path.next_arrival().filter(|&at| at <= send_t.min(tick_t)) {
            let (at, b) = path.poll(at).expect("a packet is due at next_arrival");
            let seq = u16::from_be_bytes([b[0], b[1]]);
            let ts = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
            let idx = u32::from_be_bytes([b[6], b[7], b[8], b[9]]) as usize;
            let marker = b[10] == 1;
            r.arrival_tick[idx].get_or_insert(j);
            let _ = playout.insert(at, seq, ts, marker, &b[11..], dec);
            continue;
        }
        if send_t <= tick_t {
            r.arrival_tick.push(None);
            let paused = sc
                .pause
                .as_ref()
                .is_some_and(|p| (p.at..p.at + p.packets).contains(&k));
            if paused || sc.skip.contains(&k) {
                unsent += usize::from(paused);
                k += 1;
                continue;
            }
            let mut ts = i64::from(sc.ts0) + (k * ptime) as i64 * ups;
            if let Some((at, shift)) = sc.ts_jump.filter(|&(at, _)| k >= at) {
                let _ = at;
                ts += shift;
            }
            let resumed = sc.pause.as_ref().filter(|p| k >= p.at + p.packets);
            if let Some(p) = resumed.filter(|p| !p.ts_advances) {
                ts -= (p.packets * ptime) as i64 * ups;
            }
            let marker = k == 0 || resumed.is_some_and(|p| k == p.at + p.packets);
            let seq = sc.seq0.wrapping_add((k - unsent) as u16);
            wire.clear();
            wire.extend_from_slice(&seq.to_be_bytes());
            wire.extend_from_slice(&(ts as u32).to_be_bytes());
            wire.extend_from_slice(&(k as u32).to_be_bytes());
            wire.push(u8::from(marker));
            for n in k * ptime..(k + 1) * ptime {
                match sc.wire {
                    Wire::Ulaw => wire.push(g711::ulaw_encode(signal(n))),
                    Wire::L16 => wire.extend_from_slice(&signal(n).to_be_bytes()),
                }
            }
            path.send(send_t, &wire);
            k += 1;
            continue;
        }
        let kind = playout.next_frame(tick_t, dec, &mut frame);
        r.out.extend_from_slice(&frame);
        r.kinds.push(kind);
        r.max_buffered_ms = r.max_buffered_ms.max(playout.stats().buffered_ms);
        r.by_tick.push(playout.stats());
        j += 1;
    }
    r.stats = playout.stats();
    r.path = path.stats().clone();
    r.queued = playout.queued();
    r
}

fn ulaw() -> Decoder {
    Decoder::new(CodecKind::Pcmu).expect("mu-law needs no setup")
}

#[test]
fn a_clean_path_converges_from_the_start_delay_then_plays_bit_exact() {
    let r = run(&Scenario::default(), &mut ulaw());
    // First packet arrives at 30 ms; 40 ms later is 70 ms; ticks fall at 7 + 20k.
    assert_eq!(r.first_decoded(), 4);
    // Each packet waits 17 ms for its tick plus 40 ms of start delay: more than a
    // frame above what a clean path needs (5 ms), so two frames are skipped, then
    // the delay is the 17 ms of tick phase alone.
    let s = &r.stats;
    assert_eq!(
        (s.late, s.concealed_frames, s.stretched, s.compressed),
        (0, 0, 0, 2)
    );
    assert_eq!(s.delay_ms, 17);
    assert_eq!(s.target_delay_ms, 5);
    r.assert_bit_exact_settled(ulaw_roundtrip, 190);
    // Two more packets than frames decoded: the skips.
    assert_eq!(s.played, 498);
}

#[test]
fn reordered_and_duplicated_packets_within_the_window_stay_bit_exact() {
    let sc = Scenario {
        path: PathConfig {
            latency: Duration::from_millis(30),
            jitter: Jitter::Uniform {
                max: Duration::from_millis(4),
            },
            reorder: 0.1,
            reorder_delay: Duration::from_millis(15),
            duplicate: 0.05,
            ..PathConfig::default()
        },
        seed: 3,
        ..Scenario::default()
    };
    let r = run(&sc, &mut ulaw());
    assert!(r.path.reordered > 30 && r.path.duplicated > 10);
    r.assert_bit_exact_settled(ulaw_roundtrip, 190);
    assert_eq!(r.stats.duplicate, r.path.duplicated);
    assert_eq!((r.stats.late, r.stats.stretched), (0, 0));
    assert!(r.stats.compressed <= 2, "{:?}", r.stats);
}

#[test]
fn loss_jitter_and_reordering_are_concealed_with_few_late_packets() {
    let sc = Scenario {
        seconds: 120,
        path: PathConfig {
            latency: Duration::from_millis(40),
            jitter: Jitter::Uniform {
                max: Duration::from_millis(30),
            },
            loss: Loss::Bernoulli { p: 0.05 },
            reorder: 0.02,
            duplicate: 0.01,
            ..PathConfig::default()
        },
        seed: 5,
        ..Scenario::default()
    };
    let r = run(&sc, &mut ulaw());
    let s = &r.stats;
    let lost = r.path.lost;
    assert!(lost > 250, "{lost} lost");
    assert!(
        s.late * 100 <= r.path.sent,
        "{} late of {}",
        s.late,
        r.path.sent
    );
    let concealed = s.concealed_frames;
    assert!(
        concealed >= lost * 9 / 10 && concealed <= lost * 11 / 10 + s.late,
        "{concealed} concealed frames for {lost} lost and {} late",
        s.late
    );
    assert!(
        r.max_buffered_ms <= 200 + 40,
        "buffered up to {} ms",
        r.max_buffered_ms
    );
    assert_eq!(s.resyncs, 0);
    let f0 = r.first_decoded();
    assert!(r.count(FrameKind::Silence, f0) < 10);
}

#[test]
fn a_delay_spike_grows_the_target_and_the_buffer_follows() {
    // Every packet gets 0-120 ms of extra delay: the 40 ms start cannot hold.
    let sc = Scenario {
        seconds: 60,
        path: PathConfig {
            jitter: Jitter::Normal {
                std_dev: Duration::from_millis(40),
                max: Duration::from_millis(120),
            },
            ..PathConfig::default()
        },
        seed: 8,
        ..Scenario::default()
    };
    let r = run(&sc, &mut ulaw());
    let s = &r.stats;
    assert!(s.target_delay_ms >= 80, "target {} ms", s.target_delay_ms);
    assert!(s.stretched > 0);
    // Growing quickly must not turn into pumping: shrinks are rare and slow.
    assert!(
        s.stretched + s.compressed <= 20,
        "{} + {}",
        s.stretched,
        s.compressed
    );
    // Late packets come early in the call, before the target has grown.
    assert!(
        s.late * 50 <= r.path.sent,
        "{} late of {}",
        s.late,
        r.path.sent
    );
    assert!(r.max_buffered_ms <= 240);
}

/// (name, timestamp shift in units)
const JUMPS: [(&str, i64); 3] = [
    ("forward 10 s", 80_000),
    ("backward 6 s", -48_000),
    ("forward past the u32 wrap", 1 << 31),
];

#[test]
fn a_timestamp_jump_re_anchors_within_a_few_frames() {
    for (name, shift) in JUMPS {
        let sc = Scenario {
            ts_jump: Some((250, shift)),
            ..Scenario::default()
        };
        let r = run(&sc, &mut ulaw());
        assert_eq!(r.stats.resyncs, 1, "{name}");
        let f0 = r.first_decoded();
        let not_decoded = r.kinds[f0..]
            .iter()
            .filter(|&&k| k != FrameKind::Decoded)
            .count();
        assert!(
            not_decoded <= 4,
            "{name}: {not_decoded} frames lost to the jump"
        );
        assert!(r.stats.concealed_frames <= 2, "{name}");
    }
}

#[test]
fn a_marker_after_a_pause_starts_a_new_spurt_without_long_concealment() {
    // (timestamps count the pause, expected resyncs)
    for (ts_advances, resyncs) in [(true, 0), (false, 1)] {
        let sc = Scenario {
            pause: Some(Pause {
                at: 200,
                packets: 25,
                ts_advances,
            }),
            ..Scenario::default()
        };
        let r = run(&sc, &mut ulaw());
        assert_eq!(r.stats.resyncs, resyncs, "ts_advances {ts_advances}");
        // The start of the pause is concealed for at most 60 ms, then silence.
        assert!(
            r.stats.concealed_frames <= 3,
            "{}",
            r.stats.concealed_frames
        );
        // The first packet after the pause plays within the target delay + a tick.
        let arrived = r.arrival_tick[225].expect("packet 225 arrived");
        let resumed = (arrived..r.kinds.len())
            .find(|&f| r.kinds[f] == FrameKind::Decoded)
            .expect("playout resumed");
        assert!(
            resumed - arrived <= 3,
            "resumed {} ticks after arrival",
            resumed - arrived
        );
        let after = &r.kinds[resumed..];
        assert!(
            after.iter().all(|&k| k == FrameKind::Decoded),
            "ts_advances {ts_advances}"
        );
    }
}

#[test]
fn sequence_and_timestamp_wrap_mid_stream_is_seamless() {
    let sc = Scenario {
        seq0: 65_400,
        ts0: u32::MAX - 160 * 150 + 1,
        jitter: floor_start(),
        ..Scenario::default()
    };
    let r = run(&sc, &mut ulaw());
    r.assert_bit_exact(ulaw_roundtrip, 490);
    assert_eq!(
        (r.stats.resyncs, r.stats.late, r.stats.concealed_frames),
        (0, 0, 0)
    );
}

#[test]
fn any_packet_duration_plays_bit_exact() {
    for ptime_ms in [10, 30, 40, 60] {
        let sc = Scenario {
            ptime_ms,
            jitter: floor_start(),
            ..Scenario::default()
        };
        let r = run(&sc, &mut ulaw());
        r.assert_bit_exact(ulaw_roundtrip, 480);
        let s = &r.stats;
        assert_eq!(
            (s.late, s.concealed_frames, s.stretched, s.compressed),
            (0, 0, 0, 0),
            "ptime {ptime_ms}"
        );
    }
}

#[test]
fn a_48_khz_clock_stream_plays_and_uses_the_codec_concealment() {
    let sc = Scenario {
        clock: 48_000,
        wire: Wire::L16,
        skip: vec![100, 250, 251],
        jitter: floor_start(),
        ..Scenario::default()
    };
    let mut dec = FakeOpus { concealed: 0 };
    let r = run(&sc, &mut dec);
    assert_eq!(dec.concealed, 3 * FRAME_SAMPLES);
    assert_eq!(r.stats.concealed_frames, 3);
    let f0 = r.first_decoded();
    for (f, kind) in r.kinds.iter().enumerate().skip(f0).take(490) {
        let got = &r.out[f * FRAME_SAMPLES..(f + 1) * FRAME_SAMPLES];
        let k = f - f0;
        if [100, 250, 251].contains(&k) {
            assert_eq!(*kind, FrameKind::Concealed);
            assert!(got.iter().all(|&x| x == FAKE_PLC));
        } else {
            let want: Vec<i16> = (k * 160..(k + 1) * 160).map(signal).collect();
            assert_eq!(got, &want[..], "frame {k}");
        }
    }
}

#[test]
fn sender_clock_drift_keeps_the_buffer_bounded_with_few_adjustments() {
    // (drift ppm, which adjustment is expected)
    for drift_ppm in [5_000i64, -5_000] {
        let sc = Scenario {
            drift_ppm,
            seconds: 600,
            ..Scenario::default()
        };
        let r = run(&sc, &mut ulaw());
        let s = &r.stats;
        let adjustments = s.stretched + s.compressed;
        // 0.5% of 600 s is 3 s, i.e. 150 steps of 20 ms at the least.
        assert!(
            (140..=200).contains(&adjustments),
            "{drift_ppm} ppm: {adjustments} adjustments"
        );
        // Beyond the convergence from the start delay (at most two skips), only the
        // drift's own direction.
        if drift_ppm > 0 {
            assert_eq!(s.stretched, 0);
        } else {
            assert!(s.compressed <= 2, "{drift_ppm} ppm: {s:?}");
        }
        assert!(
            r.max_buffered_ms <= 120,
            "{drift_ppm} ppm: {} ms",
            r.max_buffered_ms
        );
        assert_eq!(
            (s.late, s.concealed_frames, s.resyncs),
            (0, 0, 0),
            "{drift_ppm} ppm"
        );
    }
}

/// A stream as the node sees it on loopback: the mix ticks a leg's playout from the
/// leg's creation, the first packet comes `start` later at any phase of the tick grid,
/// then one packet every 20 ms with +-0.5 ms of jitter; ticks run 0-2 ms late.
struct NodeLike {
    start: Duration,
    seed: u64,
    seconds: u64,
    /// Packets `at..at + len` are not sent (timestamps count them); the next carries
    /// the marker bit and `lost` sequence numbers more than the pause took.
    pause: Option<(usize, usize, u16)>,
    /// No packet from this one on: the participant hung up, the leg stays.
    stop: Option<usize>,
}

/// mu-law byte of sample `n` of the stream: every byte value, no silence.
fn node_like_byte(n: usize) -> u8 {
    (n % 251) as u8
}

fn node_like_run(sc: &NodeLike) -> (PlayoutStats, Vec<FrameKind>, Vec<i16>) {
    let t0 = crate::testclock::anchor();
    let mut arrival_rng = Rng::new(sc.seed);
    let mut tick_rng = Rng::new(sc.seed ^ 0x5eed);
    let mut dec = ulaw();
    let mut p = Playout::new(&JitterConfig::default(), 8000);
    let ticks = sc.seconds as usize * 50;
    let mut tick_at = |j: usize| {
        t0 + Duration::from_millis(20 * j as u64) + Duration::from_micros(tick_rng.below(2001))
    };
    let mut arrive_at = |k: usize| {
        let nominal = (sc.start + Duration::from_millis(20 * k as u64)).as_micros() as i64;
        let jitter = arrival_rng.below(1001) as i64 - 500;
        t0 + Duration::from_micros((nominal + jitter).max(0) as u64)
    };
    let (mut j, mut k) = (0usize, 0usize);
    let (mut next_tick, mut next_packet) = (tick_at(0), arrive_at(0));
    let mut payload = [0u8; FRAME_SAMPLES];
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut kinds = Vec::with_capacity(ticks);
    let mut out = Vec::with_capacity(ticks * FRAME_SAMPLES);
    while j < ticks {
        if next_packet >= next_tick {
            kinds.push(p.next_frame(next_tick, &mut dec, &mut frame));
            out.extend_from_slice(&frame);
            j += 1;
            next_tick = tick_at(j);
            continue;
        }
        let paused = sc.pause.filter(|&(at, _, _)| k >= at);
        let sent =
            sc.stop.is_none_or(|stop| k < stop) && paused.is_none_or(|(at, len, _)| k >= at + len);
        if sent {
            let skipped = paused.map_or(0, |(_, len, lost)| len as u16 - lost);
            let seq = 4000u16.wrapping_add(k as u16).wrapping_sub(skipped);
            let ts = 90_000u32.wrapping_add((k * FRAME_SAMPLES) as u32);
            let marker = k == 0 || paused.is_some_and(|(at, len, _)| k == at + len);
            for (i, b) in payload.iter_mut().enumerate() {
                *b = node_like_byte(k * FRAME_SAMPLES + i);
            }
            let _ = p.insert(next_packet, seq, ts, marker, &payload, &dec);
        }
        k += 1;
        next_packet = arrive_at(k);
    }
    (p.stats(), kinds, out)
}

/// First packets after the first tick, us: every phase of the 20 ms grid, densely
/// where the first playing tick lands within a tick's lateness of the target delay.
const START_PHASES_US: [u64; 18] = [
    0, 100, 500, 1_000, 1_500, 2_000, 2_500, 3_000, 5_000, 7_000, 9_500, 12_000, 15_000, 17_500,
    18_500, 19_000, 19_500, 19_900,
];

#[test]
fn a_steady_stream_that_starts_after_the_ticks_is_never_concealed() {
    for phase_us in START_PHASES_US {
        for seed in 1..=4 {
            let sc = NodeLike {
                start: Duration::from_millis(400) + Duration::from_micros(phase_us),
                seed,
                seconds: 8,
                pause: None,
                stop: None,
            };
            let (s, kinds, out) = node_like_run(&sc);
            let ctx = format!("start +{phase_us} us, seed {seed}: {s:?}");
            assert_eq!(
                (s.late, s.concealed_frames, s.stretched),
                (0, 0, 0),
                "{ctx}"
            );
            // Converging from the 40 ms start to the tick phase: at most two skips, to
            // at most a frame plus the 4 ms shrink slack above the 5 ms target, plus
            // the ticks' 2 ms lateness and the arrivals' 0.5 ms.
            assert!(s.compressed <= 2, "{ctx}");
            assert!(s.delay_ms <= 5 + 20 + 4 + 2, "{ctx}");
            let f0 = kinds
                .iter()
                .position(|&k| k == FrameKind::Decoded)
                .expect("some frame was decoded");
            assert!(
                kinds[..f0].iter().all(|&k| k == FrameKind::Silence),
                "{ctx}"
            );
            assert!(
                kinds[f0..].iter().all(|&k| k == FrameKind::Decoded),
                "{ctx}"
            );
            // Bit-exact until the first skip can come (50 packets of warm-up, then
            // at least 0.5 s above the target).
            let n = 60 * FRAME_SAMPLES;
            let want = (0..n).map(|n| g711::ulaw_decode(node_like_byte(n)));
            let got = &out[f0 * FRAME_SAMPLES..f0 * FRAME_SAMPLES + n];
            assert!(got.iter().copied().eq(want), "{ctx}");
        }
    }
}

#[test]
fn concealment_counts_only_once_sequence_numbers_show_audio_was_lost() {
    // The end of a stream, or of a talk spurt, is faded out like a loss (the playout
    // cannot tell them apart yet), but it is counted only when a later packet shows a
    // sequence gap. (case, pause, stop, concealed frames counted)
    let cases = [
        ("the sender hangs up", None, Some(100), 0),
        ("the sender pauses", Some((100, 25, 0)), None, 0),
        (
            "two packets lost, then a pause",
            Some((100, 25, 2)),
            None,
            3,
        ),
    ];
    for (name, pause, stop, counted) in cases {
        for phase_us in [0, 9_500, 19_500] {
            let sc = NodeLike {
                start: Duration::from_millis(400) + Duration::from_micros(phase_us),
                seed: 1,
                seconds: 5,
                pause,
                stop,
            };
            let (s, kinds, _) = node_like_run(&sc);
            let ctx = format!("{name}, start +{phase_us} us: {s:?}");
            let faded = kinds.iter().filter(|&&k| k == FrameKind::Concealed).count();
            assert_eq!(faded, 3, "the gap is still faded out; {ctx}");
            assert_eq!(
                (s.late, s.concealed_frames, s.stretched),
                (0, counted, 0),
                "{ctx}"
            );
        }
    }
}
