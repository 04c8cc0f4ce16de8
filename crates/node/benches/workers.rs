//! Do media workers scale with cores? K engines on K threads, each with its own
//! rooms, driven as `mix` drives one (every leg's packet in, one tick, every packet
//! out), all at once; the time per 20 ms period of each thread with K = 1, 2, ...
//! up to the machine's cores. An engine shares nothing with another (no lock, no
//! atomic, no allocation on the media path), so a period should take as long with
//! K threads as with one, until the cores or the memory bandwidth run out; the ratio
//! printed says how close that is. The sockets are not in it: each worker has its
//! own, and the kernel's per-socket work scales the same way (measured separately,
//! `bench/fixed`).
//!
//! Usage: `cargo bench -p scnf --bench workers [-- LEGS_PER_WORKER [PERIODS]]`
//! (default 2,000 legs, rooms of 10, 2 tone talkers per room, PCMU; 500 periods).

use scnf_core::engine::{Engine, EngineConfig, LegId, LegSpec, MixId, Via};
use scnf_media::codec::{CodecKind, Encoder, FRAME_SAMPLES};
use scnf_media::probe::Tone;
use scnf_media::rtp::RtpHeader;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const PER_ROOM: usize = 10;
const TALKERS: usize = 2;

struct Peer {
    addr: SocketAddr,
    frames: Frames,
    seq: u16,
    ts: u32,
}

struct Worker {
    engine: Engine,
    now: Instant,
    peers: Vec<Peer>,
    pkt: Vec<u8>,
}

/// Frames a peer sends in turn, shared by the peers that send the same.
type Frames = Arc<Vec<Vec<u8>>>;

/// Pre-encoded PCMU: a second of a tone per talker, one frame of silence.
fn frames() -> (Vec<Frames>, Frames) {
    let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
    let mut encode = |pcm: &[i16; FRAME_SAMPLES]| {
        let mut payload = vec![0u8; FRAME_SAMPLES];
        enc.encode(pcm, &mut payload).unwrap();
        payload
    };
    let tones = (0..TALKERS)
        .map(|t| {
            let mut tone = Tone::at_dbfs(440.0 + 200.0 * t as f64, -20.0);
            let v = (0..50)
                .map(|_| {
                    let mut pcm = [0i16; FRAME_SAMPLES];
                    tone.fill(&mut pcm);
                    encode(&pcm)
                })
                .collect();
            Arc::new(v)
        })
        .collect();
    let silence = Arc::new(vec![encode(&[0; FRAME_SAMPLES])]);
    (tones, silence)
}

fn worker(legs: usize) -> Worker {
    let now = Instant::now();
    let mut engine = Engine::new(
        EngineConfig {
            media_timeout: None,
            ..EngineConfig::new("bench", (now, Duration::from_secs(1_700_000_000)))
        },
        1,
    );
    let (tones, silence) = frames();
    let mut peers = Vec::with_capacity(legs);
    for i in 0..legs {
        let room = MixId((i / PER_ROOM) as u64);
        if i % PER_ROOM == 0 {
            engine.open_room(now, room).unwrap();
        }
        let addr: SocketAddr = format!("10.{}.{}.1:{}", i / 250, i % 250, 4000 + 2 * (i % 1000))
            .parse()
            .unwrap();
        engine
            .add_leg(
                now,
                room,
                LegId(i as u64),
                LegSpec::new(addr, CodecKind::Pcmu),
            )
            .unwrap();
        let frames = match i % PER_ROOM {
            t if t < TALKERS => tones[t].clone(),
            _ => silence.clone(),
        };
        peers.push(Peer {
            addr,
            frames,
            seq: 0,
            ts: 0,
        });
    }
    Worker {
        engine,
        now,
        peers,
        pkt: vec![0; 12 + FRAME_SAMPLES],
    }
}

fn period(w: &mut Worker) -> usize {
    for p in w.peers.iter_mut() {
        let h = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: p.seq,
            timestamp: p.ts,
            ssrc: 7,
        }
        .write(&mut w.pkt)
        .unwrap();
        let frame = &p.frames[p.seq as usize % p.frames.len()];
        w.pkt[h..].copy_from_slice(frame);
        w.engine.handle_datagram(w.now, p.addr, Via::Rtp, &w.pkt);
        p.seq = p.seq.wrapping_add(1);
        p.ts = p.ts.wrapping_add(160);
    }
    w.now += Duration::from_millis(20);
    w.engine.handle_timeout(w.now);
    let mut sent = 0;
    while let Some(t) = w.engine.poll_transmit() {
        black_box(t.data);
        sent += 1;
    }
    while w.engine.poll_event().is_some() {}
    sent
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// K threads at once; each thread's median period.
fn run(k: usize, legs: usize, periods: usize) -> Vec<Duration> {
    let start = Arc::new(Barrier::new(k));
    let threads: Vec<_> = (0..k)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                let mut w = worker(legs);
                // Past the jitter buffers' start delay and the first allocations.
                for _ in 0..50 {
                    period(&mut w);
                }
                start.wait();
                let mut times = Vec::with_capacity(periods);
                for _ in 0..periods {
                    let t0 = Instant::now();
                    let sent = period(&mut w);
                    times.push(t0.elapsed());
                    // RTCP reports come on top, a few per period.
                    assert!(sent >= legs, "every leg gets its packet");
                }
                median(&mut times)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let nums: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let legs = nums.first().copied().unwrap_or(2000);
    let periods = nums.get(1).copied().unwrap_or(500);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "workers: {legs} legs per worker (rooms of {PER_ROOM}, {TALKERS} talkers, PCMU), \
         {periods} periods; median period per thread"
    );
    let mut one = None;
    for k in 1..=cores {
        let t = run(k, legs, periods);
        let worst = *t.iter().max().unwrap();
        let base = *one.get_or_insert(worst);
        let us: Vec<String> = t
            .iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e6))
            .collect();
        println!(
            "  {k} worker(s): {} µs per period ({:.0} ns per leg); slowest / one worker alone: {:.2}",
            us.join(" / "),
            worst.as_secs_f64() * 1e9 / legs as f64,
            worst.as_secs_f64() / base.as_secs_f64()
        );
    }
}
