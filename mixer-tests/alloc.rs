//! Proof that the steady-state media path does not allocate.
//!
//! A counting global allocator (counts only on threads that opt in) wraps the
//! system one. An engine with rooms in every codec runs on a virtual clock until
//! buffers have grown to size, then a further stretch of packets-in / tick /
//! packets-out is counted: it must make zero allocations.

use scnf_core::engine::{Engine, EngineConfig, LegId, LegSpec, MixId, Via};
use scnf_media::codec::{CodecKind, Encoder, FRAME_SAMPLES, MAX_FRAME_PAYLOAD};
use scnf_media::probe::Tone;
use scnf_media::rtp::RtpHeader;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; the bookkeeping touches only const-
// initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Peer {
    addr: SocketAddr,
    codec: CodecKind,
    tone: Option<Tone>,
    enc: Encoder,
    seq: u16,
    ts: u32,
}

#[test]
fn the_steady_state_media_path_makes_no_allocation() {
    let _machine = crate::support::exclusive_blocking();
    let t0 = Instant::now();
    let mut engine = Engine::new(
        EngineConfig {
            rtcp_interval: Duration::from_secs(1),
            ..EngineConfig::new("alloc-test", (t0, Duration::from_secs(1_700_000_000)))
        },
        3,
    );
    let codecs = [
        CodecKind::Pcmu,
        CodecKind::Pcma,
        CodecKind::G722,
        CodecKind::L16,
        CodecKind::Opus,
    ];
    let mut peers = Vec::new();
    for room in 0..4u64 {
        engine.open_room(t0, MixId(room)).unwrap();
        for k in 0..10usize {
            let i = peers.len();
            let addr: SocketAddr = format!("10.0.{room}.{}:{}", k + 1, 6000 + 2 * i)
                .parse()
                .unwrap();
            let codec = codecs[i % codecs.len()];
            let mut spec = LegSpec::new(addr, codec);
            spec.telephone_event_pt = Some(101);
            engine
                .add_leg(t0, MixId(room), LegId(i as u64), spec)
                .unwrap();
            // Three talkers per room, and talk changes hands mid-run (below).
            let tone = (k < 3).then(|| Tone::at_dbfs(300.0 + 97.0 * i as f64, -20.0));
            peers.push(Peer {
                addr,
                codec,
                tone,
                enc: Encoder::new(codec).unwrap(),
                seq: 0,
                ts: 0,
            });
        }
    }
    let mut now = t0;
    let mut pkt = [0u8; 12 + MAX_FRAME_PAYLOAD];
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut period = |engine: &mut Engine, now: &mut Instant, peers: &mut Vec<Peer>, n: u32| {
        for p in peers.iter_mut() {
            match &mut p.tone {
                Some(t) => t.fill(&mut pcm),
                None => pcm = [0; FRAME_SAMPLES],
            }
            let h = RtpHeader {
                marker: false,
                payload_type: p.codec.static_payload_type().unwrap_or(96),
                sequence: p.seq,
                timestamp: p.ts,
                ssrc: 42,
            }
            .write(&mut pkt)
            .unwrap();
            let len = p.enc.encode(&pcm, &mut pkt[h..]).unwrap();
            // Every 7th period one packet is lost, every 11th arrives twice.
            if n % 7 != 3 {
                engine.handle_datagram(*now, p.addr, Via::Rtp, &pkt[..h + len]);
            }
            if n % 11 == 5 {
                engine.handle_datagram(*now, p.addr, Via::Rtp, &pkt[..h + len]);
            }
            p.seq = p.seq.wrapping_add(1);
            p.ts = p.ts.wrapping_add(p.codec.frame_ts());
        }
        // Garbage and a stranger, too.
        engine.handle_datagram(*now, "192.0.2.1:9".parse().unwrap(), Via::Rtp, &pkt[..40]);
        engine.handle_datagram(*now, peers[0].addr, Via::Rtp, &[0x80, 0]);
        *now += Duration::from_millis(20);
        engine.handle_timeout(*now);
        while engine.poll_transmit().is_some() {}
        while engine.poll_event().is_some() {}
    };
    // Warm up: 10 s of virtual time, with a change of talkers halfway.
    for n in 0..500 {
        if n == 250 {
            peers
                .iter_mut()
                .for_each(|p| p.tone = p.tone.take().or(Some(Tone::at_dbfs(700.0, -20.0))));
        }
        period(&mut engine, &mut now, &mut peers, n);
    }
    COUNTING.with(|c| c.set(true));
    for n in 500..1000 {
        if n == 750 {
            // Everybody talks now: the talker cap and own-mix encoders kick in.
            peers.iter_mut().for_each(|p| {
                p.tone.get_or_insert(Tone::at_dbfs(900.0, -25.0));
            });
        }
        period(&mut engine, &mut now, &mut peers, n);
    }
    COUNTING.with(|c| c.set(false));
    let allocs = ALLOCS.with(|a| a.get());
    assert!(engine.stats().ticks >= 1000);
    assert_eq!(allocs, 0, "allocations in 10 s of steady-state media");
}
