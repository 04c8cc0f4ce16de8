//! One mix tick of a room of 10, 100 and 1,000 legs, with and without encode-once.
//!
//! Each iteration is one 20 ms period of a real conference on a virtual clock: every
//! leg's packet arrives (RTP parse, jitter buffer insert), the tick runs (playout,
//! decode, talker detection, mix, encode, RTP build) and the datagrams are drained.
//! Three legs talk (tones), the rest send silence, as in a large meeting. The peers'
//! packets are encoded once before measuring (a second of frames per talker), so the
//! figure is the node's work alone. Criterion reports time per iteration; divide by
//! the leg count for ns per participant (the README quotes both).
//!
//! `worker_snapshot` is what a `Health` (no legs) or `Status` (every leg) costs one
//! worker holding that room: the leg counters are summed at each snapshot, so
//! `Health` visits every leg too, and this says what that costs.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scnf_core::engine::{Engine, EngineConfig, LegId, LegSpec, MixId, Via};
use scnf_media::codec::{CodecKind, Encoder, FRAME_SAMPLES};
use scnf_media::probe::Tone;
use scnf_media::rtp::RtpHeader;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A peer: its address, its pre-encoded payloads (cycled), sequence and timestamp.
struct Peer {
    addr: SocketAddr,
    frames: Vec<Vec<u8>>,
    seq: u16,
    ts: u32,
}

struct Room {
    engine: Engine,
    now: Instant,
    peers: Vec<Peer>,
    pkt: Vec<u8>,
}

fn room(legs: usize, encode_once: bool) -> Room {
    let now = scnf_media::testclock::anchor();
    let mut engine = Engine::new(
        EngineConfig {
            media_timeout: None,
            ..EngineConfig::new("bench", (now, Duration::from_secs(1_700_000_000)))
        },
        1,
    );
    engine.open_room(now, MixId(1)).unwrap();
    engine.set_encode_once(MixId(1), encode_once).unwrap();
    let mut peers = Vec::new();
    for i in 0..legs {
        let addr: SocketAddr = format!("10.{}.{}.1:{}", i / 250, i % 250, 4000 + 2 * (i % 1000))
            .parse()
            .unwrap();
        engine
            .add_leg(
                now,
                MixId(1),
                LegId(i as u64),
                LegSpec::new(addr, CodecKind::Pcmu),
            )
            .unwrap();
        let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
        let mut tone = (i < 3).then(|| Tone::at_dbfs(440.0 + 200.0 * i as f64, -20.0));
        let frames = (0..if tone.is_some() { 50 } else { 1 })
            .map(|_| {
                let mut pcm = [0i16; FRAME_SAMPLES];
                if let Some(t) = &mut tone {
                    t.fill(&mut pcm);
                }
                let mut payload = vec![0u8; FRAME_SAMPLES];
                enc.encode(&pcm, &mut payload).unwrap();
                payload
            })
            .collect();
        peers.push(Peer {
            addr,
            frames,
            seq: 0,
            ts: 0,
        });
    }
    Room {
        engine,
        now,
        peers,
        pkt: vec![0; 12 + FRAME_SAMPLES],
    }
}

/// One 20 ms period: every leg's packet in, one tick, every packet out.
fn period(r: &mut Room) -> usize {
    for p in r.peers.iter_mut() {
        let h = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: p.seq,
            timestamp: p.ts,
            ssrc: 7,
        }
        .write(&mut r.pkt)
        .unwrap();
        let frame = &p.frames[p.seq as usize % p.frames.len()];
        r.pkt[h..].copy_from_slice(frame);
        r.engine.handle_datagram(r.now, p.addr, Via::Rtp, &r.pkt);
        p.seq = p.seq.wrapping_add(1);
        p.ts = p.ts.wrapping_add(160);
    }
    r.now += Duration::from_millis(20);
    r.engine.handle_timeout(r.now);
    let mut sent = 0;
    while let Some(t) = r.engine.poll_transmit() {
        black_box(t.data);
        sent += 1;
    }
    while r.engine.poll_event().is_some() {}
    sent
}

fn bench_mix(c: &mut Criterion) {
    let mut g = c.benchmark_group("mix_period");
    g.sample_size(20);
    for &legs in &[10usize, 100, 1000] {
        for &once in &[true, false] {
            let mut r = room(legs, once);
            // Warm up past the jitter buffer's start delay.
            for _ in 0..20 {
                period(&mut r);
            }
            g.throughput(Throughput::Elements(legs as u64));
            let name = if once { "encode_once" } else { "encode_each" };
            g.bench_function(BenchmarkId::new(name, legs), |b| {
                b.iter(|| period(&mut r));
            });
        }
    }
    g.finish();
}

fn bench_snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker_snapshot");
    g.sample_size(20);
    for &legs in &[100usize, 1000] {
        let mut r = room(legs, true);
        for _ in 0..20 {
            period(&mut r);
        }
        g.throughput(Throughput::Elements(legs as u64));
        for (name, with_legs) in [("health", false), ("status", true)] {
            g.bench_function(BenchmarkId::new(name, legs), |b| {
                b.iter(|| black_box(r.engine.snapshot(0, with_legs)));
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_mix, bench_snapshot);
criterion_main!(benches);
