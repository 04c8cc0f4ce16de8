//! One mix tick of a room of 10, 100 and 1,000 legs, with and without encode-once.
//!
//! Each iteration is one 20 ms period of a real conference on a virtual clock: every
//! leg's packet arrives (RTP parse, jitter buffer insert), the tick runs (playout,
//! decode, talker detection, mix, encode, RTP build) and the datagrams are drained.
//! Three legs talk (tones), the rest send silence, as in a large meeting. Criterion
//! reports time per iteration; divide by the leg count for ns per participant (the
//! README quotes both).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scnf::codec::{CodecKind, Encoder, FRAME_SAMPLES};
use scnf::engine::{Engine, EngineConfig, LegId, LegSpec, Via};
use scnf::mixer::MixConfig;
use scnf::probe::Tone;
use scnf::rtp::RtpHeader;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Room {
    engine: Engine,
    now: Instant,
    peers: Vec<(SocketAddr, Option<Tone>, u16, u32)>,
    enc: Encoder,
    pkt: Vec<u8>,
}

fn room(legs: usize, encode_once: bool) -> Room {
    let now = Instant::now();
    let mut engine = Engine::new(
        EngineConfig {
            jitter: Default::default(),
            mix: MixConfig::default(),
            rtcp_interval: Duration::from_secs(5),
            media_timeout: None,
            cname: "bench".into(),
            wallclock: (now, Duration::from_secs(1_700_000_000)),
        },
        1,
    );
    engine.open_room(now, 1).unwrap();
    engine.set_encode_once(1, encode_once).unwrap();
    let mut peers = Vec::new();
    for i in 0..legs {
        let addr: SocketAddr = format!("10.{}.{}.1:{}", i / 250, i % 250, 4000 + 2 * (i % 1000))
            .parse()
            .unwrap();
        engine
            .add_leg(now, 1, LegId(i as u64), LegSpec::new(addr, CodecKind::Pcmu))
            .unwrap();
        let tone = (i < 3).then(|| Tone::at_dbfs(440.0 + 200.0 * i as f64, -20.0));
        peers.push((addr, tone, 0u16, 0u32));
    }
    Room {
        engine,
        now,
        peers,
        enc: Encoder::new(CodecKind::Pcmu).unwrap(),
        pkt: vec![0; 12 + FRAME_SAMPLES],
    }
}

/// One 20 ms period: every leg's packet in, one tick, every packet out.
fn period(r: &mut Room) -> usize {
    let mut pcm = [0i16; FRAME_SAMPLES];
    for (addr, tone, seq, ts) in r.peers.iter_mut() {
        match tone {
            Some(t) => t.fill(&mut pcm),
            None => pcm = [0; FRAME_SAMPLES],
        }
        let h = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: *seq,
            timestamp: *ts,
            ssrc: 7,
        }
        .write(&mut r.pkt)
        .unwrap();
        r.enc.encode(&pcm, &mut r.pkt[h..]).unwrap();
        r.engine.handle_datagram(r.now, *addr, Via::Rtp, &r.pkt);
        *seq = seq.wrapping_add(1);
        *ts = ts.wrapping_add(160);
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

criterion_group!(benches, bench_mix);
criterion_main!(benches);
