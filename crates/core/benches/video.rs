//! Video forwarding of one worker's engine, no sockets: what a forwarded packet costs.
//!
//! Each iteration is one second of video on a virtual clock: every source sends 15
//! frames (a key frame, then 14 delta frames, as the shipped clips do at 15 fps with
//! a key frame every second), packetized at most 1,100 bytes of payload, through
//! `handle_datagram`; the clock advances frame by frame with `handle_timeout`
//! (keyframe throttles, reports) and every datagram is drained with
//! `poll_transmit`. Frame sizes are the shipped clips' means
//! (`vectors/video/README.md`), so bytes and the key-frame share of packets are
//! realistic, and each VP8 payload carries a real descriptor (S bit, key-frame
//! header), so the engine's inspection takes the path it takes on the wire.
//!
//! Criterion's throughput is forwarded packets (the sinks' RTP, RTCP excluded):
//! "elements per second" is forwarded packets per CPU-second of this
//! single-threaded bench. Time per iteration is also the share of one core that one
//! second of that load takes; the setup line printed for each case gives the
//! forwarded bytes per iteration, so Mbit/s per CPU-second and the vendor's
//! "Mbit/s per CPU percent" follow (see `bench/video/README.md`).
//!
//! - `fanout_1x200`: one publisher's high layer, 200 viewers.
//! - `rooms_50x3x5`: 50 publishers × 3 layers, each layer viewed by 5 (750 sinks).
//! - `relay_out_50x3`: the multicast path on the publishing node: the 150 sources
//!   of the case above, each with one relay sink toward a 239.192/16 group.
//! - `relay_in_50x3x5`: the receiving node: 150 tagged sources (a relayed stream
//!   from one node address, told apart by SSRC), each viewed by 5.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scnf_core::engine::{
    Engine, EngineConfig, MixId, Via, VideoId, VideoSinkSpec, VideoSourceSpec,
};
use scnf_media::rtp::RtpHeader;
use scnf_media::video::VideoCodec;
use std::hint::black_box;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

const ROOM: MixId = MixId(1);
const FPS: u32 = 15;
const MAX_PAYLOAD: usize = 1100;
const PT: u8 = 96;

/// A layer's mean key-frame and delta-frame sizes, bytes (the shipped clips).
#[derive(Clone, Copy)]
struct LayerModel {
    key: usize,
    delta: usize,
}

const HIGH: LayerModel = LayerModel {
    key: 19_220,
    delta: 6_692,
};
const MEDIUM: LayerModel = LayerModel {
    key: 6_403,
    delta: 1_601,
};
const LOW: LayerModel = LayerModel {
    key: 3_429,
    delta: 446,
};

/// One second of one layer as RTP payloads, frame by frame: VP8 descriptor (S bit
/// on a frame's first packet) and, on a first packet, the VP8 payload header whose
/// P bit says key or delta (with the key frame's start code).
type Second = Vec<Vec<Vec<u8>>>;

fn second_of(layer: LayerModel) -> Second {
    (0..FPS)
        .map(|f| {
            let key = f == 0;
            let size = if key { layer.key } else { layer.delta };
            let packets = size.div_ceil(MAX_PAYLOAD - 1);
            (0..packets)
                .map(|i| {
                    let len = if i + 1 == packets {
                        size - i * (MAX_PAYLOAD - 1) + 1
                    } else {
                        MAX_PAYLOAD
                    };
                    let mut p = vec![0x5a; len];
                    p[0] = if i == 0 { 0x10 } else { 0x00 };
                    if i == 0 {
                        p[1..4].copy_from_slice(&[if key { 0x10 } else { 0x11 }, 0x02, 0x00]);
                        if key {
                            p[4..11].copy_from_slice(&[0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
                        }
                    }
                    p
                })
                .collect()
        })
        .collect()
}

/// A publisher stream: where it comes from, its SSRC, its second of payloads
/// (shared by the streams of one layer: a packet the node reads has just been
/// copied in by `recvmmsg` and is in cache, so the bench's own copy into the
/// datagram buffer must not be a cold read of megabytes of distinct payloads).
struct Stream {
    from: SocketAddr,
    ssrc: u32,
    second: Rc<Second>,
    seq: u16,
    ts: u32,
}

struct Case {
    engine: Engine,
    now: Instant,
    streams: Vec<Stream>,
    pkt: Vec<u8>,
}

fn engine(now: Instant) -> Engine {
    let mut e = Engine::new(
        EngineConfig {
            media_timeout: None,
            ..EngineConfig::new("bench", (now, Duration::from_secs(1_700_000_000)))
        },
        1,
    );
    e.open_room(now, ROOM).unwrap();
    e
}

fn addr(a: u8, b: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, a, b, 1], port))
}

fn source(remote: SocketAddr, peer_ssrc: Option<u32>) -> VideoSourceSpec {
    VideoSourceSpec {
        remote,
        rtcp_mux: true,
        codec: VideoCodec::Vp8,
        payload_type: PT,
        fir: false,
        peer_ssrc,
    }
}

fn viewer(remote: SocketAddr) -> VideoSinkSpec {
    VideoSinkSpec {
        remote,
        rtcp_mux: true,
        payload_type: PT,
        ssrc: None,
        relay: false,
    }
}

fn relay(group: SocketAddr, ssrc: u32) -> VideoSinkSpec {
    VideoSinkSpec {
        remote: group,
        rtcp_mux: true,
        payload_type: PT,
        ssrc: Some(ssrc),
        relay: true,
    }
}

/// The 150 layer streams of 50 publishers (publisher `p`, layer `l`), each sent
/// from its own address, or from one node address when relayed.
fn layer_streams(relayed_from: Option<SocketAddr>) -> Vec<Stream> {
    let mut out = Vec::new();
    let seconds = [LOW, MEDIUM, HIGH].map(|m| Rc::new(second_of(m)));
    for p in 0..50u8 {
        for (l, second) in seconds.iter().enumerate() {
            let ssrc = 0x1000_0000 + u32::from(p) * 4 + l as u32;
            out.push(Stream {
                from: relayed_from.unwrap_or(addr(1, p, 5000 + 2 * l as u16)),
                ssrc,
                second: second.clone(),
                seq: 0,
                ts: 0,
            });
        }
    }
    out
}

fn fanout(viewers: u16) -> Case {
    let now = scnf_media::testclock::anchor();
    let mut engine = engine(now);
    let from = addr(1, 0, 5000);
    engine
        .add_video_source(now, ROOM, VideoId(1), source(from, None))
        .unwrap();
    for v in 0..viewers {
        engine
            .add_video_sink(
                now,
                ROOM,
                VideoId(1000 + u64::from(v)),
                viewer(addr(2, (v / 250) as u8, 6000 + 2 * (v % 250))),
                Some(VideoId(1)),
            )
            .unwrap();
    }
    let streams = vec![Stream {
        from,
        ssrc: 0x1234,
        second: Rc::new(second_of(HIGH)),
        seq: 0,
        ts: 0,
    }];
    Case::new(engine, now, streams)
}

/// Every stream of [`layer_streams`] as a source, each viewed by `per` sinks; or
/// with one relay sink each (`per == 0`).
fn rooms(relayed_from: Option<SocketAddr>, per: u64) -> Case {
    let now = scnf_media::testclock::anchor();
    let mut engine = engine(now);
    let streams = layer_streams(relayed_from);
    for (i, s) in streams.iter().enumerate() {
        let id = VideoId(i as u64 + 1);
        let tag = relayed_from.map(|_| s.ssrc);
        engine
            .add_video_source(now, ROOM, id, source(s.from, tag))
            .unwrap();
        if per == 0 {
            let group = SocketAddr::from(([239, 192, 0, i as u8], 5004));
            engine
                .add_video_sink(
                    now,
                    ROOM,
                    VideoId(10_000 + i as u64),
                    relay(group, 0x7000_0000 + i as u32),
                    Some(id),
                )
                .unwrap();
        }
        for v in 0..per {
            let n = i as u64 * per + v;
            engine
                .add_video_sink(
                    now,
                    ROOM,
                    VideoId(10_000 + n),
                    viewer(addr(3, (n / 250) as u8, 6000 + 2 * (n % 250) as u16)),
                    Some(id),
                )
                .unwrap();
        }
    }
    Case::new(engine, now, streams)
}

impl Case {
    fn new(engine: Engine, now: Instant, streams: Vec<Stream>) -> Case {
        Case {
            engine,
            now,
            streams,
            pkt: vec![0; 12 + MAX_PAYLOAD],
        }
    }

    /// One second of video: every stream's 15 frames, the clock advancing frame
    /// by frame. Returns forwarded RTP packets and their bytes.
    fn second(&mut self) -> (u64, u64) {
        let (mut packets, mut bytes) = (0, 0);
        let frame_time = Duration::from_secs(1) / FPS;
        for f in 0..FPS as usize {
            for s in self.streams.iter_mut() {
                let frame = &s.second[f];
                for (i, payload) in frame.iter().enumerate() {
                    let h = RtpHeader {
                        marker: i + 1 == frame.len(),
                        payload_type: PT,
                        sequence: s.seq,
                        timestamp: s.ts,
                        ssrc: s.ssrc,
                    }
                    .write(&mut self.pkt)
                    .unwrap();
                    let len = h + payload.len();
                    self.pkt[h..len].copy_from_slice(payload);
                    self.engine
                        .handle_datagram(self.now, s.from, Via::Rtp, &self.pkt[..len]);
                    s.seq = s.seq.wrapping_add(1);
                }
                s.ts = s.ts.wrapping_add(90_000 / FPS);
            }
            self.now += frame_time;
            self.engine.handle_timeout(self.now);
            while let Some(t) = self.engine.poll_transmit() {
                // Forwarded RTP: version 2, payload type below the RTCP range.
                if t.data.len() > 12 && t.data[1] & 0x7f == PT {
                    packets += 1;
                    bytes += t.data.len() as u64;
                }
                black_box(t.data);
            }
            while self.engine.poll_event().is_some() {}
        }
        (packets, bytes)
    }
}

fn bench_video(c: &mut Criterion) {
    let mut g = c.benchmark_group("video_forward");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    type Make = fn() -> Case;
    let cases: [(&str, Make, u64); 4] = [
        ("fanout_1x200", || fanout(200), 200),
        ("rooms_50x3x5", || rooms(None, 5), 5),
        ("relay_out_50x3", || rooms(None, 0), 1),
        (
            "relay_in_50x3x5",
            || rooms(Some(SocketAddr::from(([10, 9, 9, 9], 20_000))), 5),
            5,
        ),
    ];
    for (name, make, per_source) in cases {
        let mut case = make();
        // The first second subscribes every sink at its first key frame; from the
        // second on, every packet in goes to every sink of its source.
        case.second();
        let incoming: u64 = case
            .streams
            .iter()
            .map(|s| s.second.iter().map(|f| f.len() as u64).sum::<u64>())
            .sum();
        let (packets, bytes) = case.second();
        assert_eq!(packets, incoming * per_source, "{name}: not all forwarded");
        eprintln!(
            "{name}: per iteration (1 s of video) {incoming} packets in, {packets} forwarded, \
             {bytes} bytes forwarded ({:.1} Mbit/s, RTP header included)",
            bytes as f64 * 8.0 / 1e6
        );
        g.throughput(Throughput::Elements(packets));
        g.bench_function(name, |b| b.iter(|| black_box(case.second())));
    }
    g.finish();
}

criterion_group!(benches, bench_video);
criterion_main!(benches);
