//! `rtpgen videobench`: what forwarding video costs a node on real sockets, and
//! what the bare reflector does with the same packets on the same machine.
//!
//! One run has two phases, back to back, so both see the same machine load:
//!
//! 1. **The node**: a node in this process (one media worker, loopback) and its
//!    call-control listener. Publishers place audio calls in one room and open
//!    their send streams ([`ClipPublisher`]s looping the shipped clips at real time,
//!    each layer from its own loopback address of one fleet socket, the address
//!    the `VideoSend` offer names). Viewers are calls whose view slots
//!    (`VideoView`) each name their own address on a second fleet socket, which
//!    counts what arrives. The node's media worker threads' CPU time is read from
//!    `/proc` ([`CpuProbe`]) first while the calls are up and no video flows (the
//!    idle cost of the room and its audio legs), then over the measured window, as
//!    are the worker's `video_forwarded` counters (`Health`) and what the viewers
//!    received: the two must agree within loss.
//! 2. **The reflector** ([`crate::reflector`]) on its own thread, fed the packet
//!    rate and mean size the node forwarded in phase 1; its CPU per reflected packet
//!    is the ceiling of the socket path (one receive and one send per packet; the
//!    node receives one packet for each of its fan-outs).
//!
//! Everything is bounded: calls are placed within the client's timeout, each
//! phase lasts the seconds asked for, and the generator stops with its phase.
//!
//! This is an I/O shell (sockets, threads, the clock); the figures it prints are
//! quoted in `bench/video/README.md`.

use crate::reflector;
use crate::video::{Clip, ClipPublisher, Layer};
use scnf::config::Config;
use scnf::control::ControlHandle;
use scnf::NodeHandle;
use scnf_core::control::msg::{CodecDesc, Direction, MediaOffer, VideoLayer, VideoOffer};
use scnf_media::rtp::rtcp::feedback::{self, Feedback};
use scnf_media::rtp::{parse_compound, RtcpPacket};
use scnf_testkit::client::{CallAnswer, Client};
use scnf_testkit::cpu::CpuProbe;
use scnf_udp::fleet::{participant_index, FleetSocket};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The payload type every offer names for VP8.
const VP8_PT: u8 = 96;
/// Fleet participants from this index on are the calls' audio addresses (apart
/// from the video ones, which the node keys streams by).
const AUDIO_BASE: usize = 20_000;
/// The generator's longest sleep: the viewers' socket is drained at least this
/// often (at 50,000 packets/s that is 100 KB, well inside its buffer).
const SLICE: Duration = Duration::from_millis(2);
const FLEET_BUFFER: usize = 32 << 20;

/// Who publishes and who views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One publisher's high layer, seen by `viewers` view slots (of one call).
    Fanout { viewers: usize },
    /// `publishers` publishers, each sending three layers; every layer is seen by
    /// `per_layer` view slots, one in each of `per_layer` viewer calls.
    Rooms { publishers: usize, per_layer: usize },
}

impl Shape {
    pub fn label(&self) -> String {
        match *self {
            Shape::Fanout { viewers } => format!("1 publisher (high layer) -> {viewers} viewers"),
            Shape::Rooms {
                publishers,
                per_layer,
            } => format!("{publishers} publishers x 3 layers, each layer viewed by {per_layer}"),
        }
    }
}

/// One run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub shape: Shape,
    /// With the calls up and no video: the room's idle cost.
    pub idle: Duration,
    /// Video flowing before measuring (every view at its first key frame).
    pub warmup: Duration,
    /// The measured window of each phase.
    pub seconds: Duration,
}

/// CPU and traffic over one measured window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    pub wall_s: f64,
    /// CPU seconds of the measured threads (the node's media worker, or the
    /// reflector's thread).
    pub cpu_s: f64,
    /// CPU seconds of the generator thread (publishers and viewers, or the
    /// reflector's feeder).
    pub generator_cpu_s: f64,
    /// Packets and bytes (RTP header included, no UDP/IP) the measured side sent:
    /// the worker's `video_forwarded` counters, or the reflector's echoes.
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    /// Packets and bytes that arrived at the receiving sockets.
    pub received: u64,
    pub received_bytes: u64,
    /// Packets and bytes fed in (the publishers' streams, or the feeder's).
    pub sent: u64,
    pub sent_bytes: u64,
}

impl Window {
    /// Forwarded packets per CPU-second.
    pub fn packets_per_cpu_s(&self) -> f64 {
        self.forwarded as f64 / self.cpu_s
    }

    /// Forwarded Mbit/s (RTP header included).
    pub fn mbit_s(&self) -> f64 {
        self.forwarded_bytes as f64 * 8.0 / 1e6 / self.wall_s
    }

    /// Share of one core used, percent.
    pub fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu_s / self.wall_s
    }
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub shape: Shape,
    /// Node worker CPU, percent of a core, with the calls up and no video.
    pub idle_cpu_pct: f64,
    pub node: Window,
    /// Key-frame requests the publishers got during the window.
    pub plis: u64,
    /// Datagrams the viewers' socket buffer dropped (the generator's loss, not the
    /// node's).
    pub viewer_overflow: u64,
    pub reflector: Window,
}

impl BenchReport {
    /// Node forwarded packets per CPU-second over the reflector's.
    pub fn ratio(&self) -> f64 {
        self.node.packets_per_cpu_s() / self.reflector.packets_per_cpu_s()
    }

    /// Node CPU less the idle cost of its room, percent of a core.
    pub fn video_cpu_pct(&self) -> f64 {
        (self.node.cpu_pct() - self.idle_cpu_pct).max(f64::MIN_POSITIVE)
    }

    pub fn summary(&self) -> String {
        let n = &self.node;
        let r = &self.reflector;
        let mut s = format!("rtpgen videobench: {}\n", self.shape.label());
        s += &format!(
            "  node       {:.1} s: published {} packets ({:.1} Mbit/s), forwarded {} packets \
             ({:.1} Mbit/s), viewers received {} ({:.2}% short), {} PLIs, {} dropped by the viewers' socket\n",
            n.wall_s,
            n.sent,
            n.sent_bytes as f64 * 8.0 / 1e6 / n.wall_s,
            n.forwarded,
            n.mbit_s(),
            n.received,
            100.0 * (n.forwarded as f64 - n.received as f64) / (n.forwarded.max(1) as f64),
            self.plis,
            self.viewer_overflow,
        );
        s += &format!(
            "  node cpu   worker {:.3} CPU-s = {:.1}% of a core (idle room {:.2}%); generator {:.1}%\n",
            n.cpu_s,
            n.cpu_pct(),
            self.idle_cpu_pct,
            100.0 * n.generator_cpu_s / n.wall_s,
        );
        s += &format!(
            "  node       {:.0} packets/CPU-s, {:.1} Mbit/s per CPU-s; {:.2} Mbit/s per CPU percent \
             ({:.2} less the idle room)\n",
            n.packets_per_cpu_s(),
            n.mbit_s() * n.wall_s / n.cpu_s,
            n.mbit_s() / n.cpu_pct(),
            n.mbit_s() / self.video_cpu_pct(),
        );
        s += &format!(
            "  reflector  {:.1} s: fed {} packets ({:.1} Mbit/s), reflected {}, received back {}; \
             {:.3} CPU-s = {:.1}%; generator {:.1}%\n",
            r.wall_s,
            r.sent,
            r.sent_bytes as f64 * 8.0 / 1e6 / r.wall_s,
            r.forwarded,
            r.received,
            r.cpu_s,
            r.cpu_pct(),
            100.0 * r.generator_cpu_s / r.wall_s,
        );
        s += &format!(
            "  reflector  {:.0} packets/CPU-s, {:.1} Mbit/s per CPU-s; {:.2} Mbit/s per CPU percent\n",
            r.packets_per_cpu_s(),
            r.mbit_s() * r.wall_s / r.cpu_s,
            r.mbit_s() / r.cpu_pct(),
        );
        s += &format!(
            "  ratio      node / reflector packets per CPU-s = {:.2}\n",
            self.ratio()
        );
        s
    }
}

/// Counters the generator thread shares with the run.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
    plis: AtomicU64,
    overflow: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// One layer stream being published.
struct Stream {
    publisher: ClipPublisher,
    /// Its loopback address on the publishers' fleet (the offer's address).
    from: Ipv4Addr,
    /// The node's answer: where to send it.
    to: SocketAddrV4,
}

/// Runs both phases (see the module docs).
pub async fn run(cfg: &BenchConfig) -> Result<BenchReport, String> {
    let (node, control, password) = start_node().await?;
    let outcome = node_phase(cfg, control.local, &password).await;
    control.stop();
    node.shutdown();
    let (node_window, idle_cpu_pct, plis, viewer_overflow) = outcome?;
    let reflector = reflector_phase(cfg, &node_window)?;
    Ok(BenchReport {
        shape: cfg.shape,
        idle_cpu_pct,
        node: node_window,
        plis,
        viewer_overflow,
        reflector,
    })
}

async fn start_node() -> Result<(NodeHandle, ControlHandle, String), String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    let password = scnf_core::control::hex::encode(&bytes);
    let mut cfg = Config::default();
    cfg.rtp.workers = 1;
    cfg.rtp.recv_buffer = 16 << 20;
    cfg.rtp.send_buffer = 16 << 20;
    // The calls' audio is silent on purpose: only video is measured.
    cfg.rtp.media_timeout_ms = 0;
    cfg.control.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.control.password = Some(password.clone());
    cfg.control.max_connections = 2;
    cfg.control.channels = 10_000;
    let node = NodeHandle::start(&cfg).map_err(|e| e.to_string())?;
    match scnf::control::start(node.clone(), &cfg).await {
        Ok(c) => Ok((node, c, password)),
        Err(e) => {
            node.shutdown();
            Err(e.to_string())
        }
    }
}

fn vp8() -> CodecDesc {
    CodecDesc {
        name: "VP8".into(),
        pt: VP8_PT,
        rate: 90_000,
    }
}

fn video_offer(at: SocketAddrV4) -> VideoOffer {
    VideoOffer {
        address: IpAddr::V4(*at.ip()),
        port: at.port(),
        codecs: vec![vp8()],
        rtcp_mux: true,
        feedback: vec!["pli".into()],
    }
}

fn audio_offer(at: SocketAddrV4) -> MediaOffer {
    MediaOffer {
        address: IpAddr::V4(*at.ip()),
        port: at.port(),
        codecs: vec![CodecDesc {
            name: "PCMU".into(),
            pt: 0,
            rate: 8000,
        }],
        ptime: 20,
        telephone_event: None,
        direction: Direction::default(),
        rtcp_mux: false,
        latching: false,
    }
}

/// Places call `call` in the benchmark's room; returns its participant number.
async fn join(client: &mut Client, call: &str, at: SocketAddrV4) -> Result<u64, String> {
    match client
        .setup(call, "*3990#", true, &audio_offer(at))
        .await
        .map_err(|e| format!("{call}: {e}"))?
    {
        CallAnswer::Connect { participant, .. } => Ok(participant),
        other => Err(format!("{call}: {other:?}")),
    }
}

fn layer_of(l: Layer) -> VideoLayer {
    match l {
        Layer::Low => VideoLayer::Low,
        Layer::Medium => VideoLayer::Medium,
        Layer::High => VideoLayer::High,
    }
}

fn v4(a: SocketAddr) -> Result<SocketAddrV4, String> {
    match a {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => Err(format!("{a}: the benchmark runs on IPv4 loopback")),
    }
}

/// Phase 1: the calls, the idle window, the video window.
async fn node_phase(
    cfg: &BenchConfig,
    control: SocketAddr,
    password: &str,
) -> Result<(Window, f64, u64, u64), String> {
    let mut client = Client::connect(control).await.map_err(|e| e.to_string())?;
    client
        .login("videobench", password.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let publishers_fleet = FleetSocket::bind(0, FLEET_BUFFER).map_err(|e| e.to_string())?;
    let viewers_fleet = FleetSocket::bind(0, FLEET_BUFFER).map_err(|e| e.to_string())?;
    let (publishers, layers, views_per_layer, viewer_calls): (usize, &[Layer], usize, usize) =
        match cfg.shape {
            Shape::Fanout { viewers } => (1, &[Layer::High], viewers, 1),
            Shape::Rooms {
                publishers,
                per_layer,
            } => (publishers, &Layer::ALL, per_layer, per_layer),
        };
    let clips: Vec<Arc<Clip>> = layers.iter().map(|&l| Arc::new(Clip::shipped(l))).collect();
    let mut streams = Vec::new();
    let mut participants = Vec::new();
    for p in 0..publishers {
        let call = format!("p{p}");
        let audio = publishers_fleet.participant_addr(AUDIO_BASE + p);
        participants.push(join(&mut client, &call, audio).await?);
        for (l, &layer) in layers.iter().enumerate() {
            let at = publishers_fleet.participant_addr(p * layers.len() + l);
            let answer = client
                .video_send(&call, layer_of(layer), &video_offer(at))
                .await
                .map_err(|e| format!("{call} {}: {e}", layer.label()))?;
            let to = v4(SocketAddr::new(answer.address, answer.port))?;
            let ssrc = 0x5000_0000 + (p * 4 + l) as u32;
            let publisher =
                ClipPublisher::new(clips[l].clone(), ssrc, VP8_PT, (p * 4 + l) as u64 + 1);
            streams.push(Stream {
                publisher,
                from: *at.ip(),
                to,
            });
        }
    }
    // View slot `s` of viewer call `v` shows stream `s` (publisher s / layers, layer
    // s % layers) from the viewers' fleet address v * streams + s.
    let mut view = 0;
    for v in 0..viewer_calls {
        let call = format!("v{v}");
        let audio = viewers_fleet.participant_addr(AUDIO_BASE + v);
        join(&mut client, &call, audio).await?;
        let slots = if viewer_calls == 1 {
            views_per_layer * streams.len()
        } else {
            streams.len()
        };
        for s in 0..slots {
            let stream = s % streams.len();
            let (p, l) = (stream / layers.len(), stream % layers.len());
            let at = viewers_fleet.participant_addr(view);
            client
                .video_view(
                    &call,
                    s as u32,
                    participants[p],
                    layer_of(layers[l]),
                    &video_offer(at),
                )
                .await
                .map_err(|e| format!("{call} view {s}: {e}"))?;
            view += 1;
        }
    }
    let counters = Arc::new(Counters::default());
    let sending = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let (counters, sending, stop) = (counters.clone(), sending.clone(), stop.clone());
        std::thread::Builder::new()
            .name("rtpgen-video".into())
            .spawn(move || {
                drive(
                    streams,
                    publishers_fleet,
                    viewers_fleet,
                    &sending,
                    &stop,
                    &counters,
                )
            })
            .map_err(|e| e.to_string())?
    };
    let worker = CpuProbe::Threads("scnf-media".into());
    let gen = CpuProbe::Threads("rtpgen-video".into());
    let cpu = |p: &CpuProbe| p.seconds().unwrap_or(f64::NAN);
    // The idle window: calls up, nothing sent.
    let (t0, c0) = (Instant::now(), cpu(&worker));
    tokio::time::sleep(cfg.idle).await;
    let idle_cpu_pct = 100.0 * (cpu(&worker) - c0) / t0.elapsed().as_secs_f64();
    sending.store(true, Ordering::Relaxed);
    tokio::time::sleep(cfg.warmup).await;
    let snapshot = |h: &scnf_testkit::client::NodeHealth| {
        h.workers.iter().fold((0u64, 0u64), |(p, b), w| {
            (p + w.video_forwarded, b + w.video_forwarded_bytes)
        })
    };
    let h0 = snapshot(&client.health().await.map_err(|e| e.to_string())?);
    let (t0, c0, g0) = (Instant::now(), cpu(&worker), cpu(&gen));
    let k0 = [
        &counters.sent,
        &counters.sent_bytes,
        &counters.received,
        &counters.received_bytes,
        &counters.plis,
    ]
    .map(Counters::get);
    tokio::time::sleep(cfg.seconds).await;
    let (wall, c1, g1) = (t0.elapsed().as_secs_f64(), cpu(&worker), cpu(&gen));
    let k1 = [
        &counters.sent,
        &counters.sent_bytes,
        &counters.received,
        &counters.received_bytes,
        &counters.plis,
    ]
    .map(Counters::get);
    let h1 = snapshot(&client.health().await.map_err(|e| e.to_string())?);
    stop.store(true, Ordering::Relaxed);
    generator
        .join()
        .map_err(|_| "the generator thread panicked".to_string())?;
    let window = Window {
        wall_s: wall,
        cpu_s: c1 - c0,
        generator_cpu_s: g1 - g0,
        forwarded: h1.0 - h0.0,
        forwarded_bytes: h1.1 - h0.1,
        received: k1[2] - k0[2],
        received_bytes: k1[3] - k0[3],
        sent: k1[0] - k0[0],
        sent_bytes: k1[1] - k0[1],
    };
    let _ = client.close().await;
    Ok((
        window,
        idle_cpu_pct,
        k1[4] - k0[4],
        Counters::get(&counters.overflow),
    ))
}

/// The generator thread of phase 1: publishes every stream at real time while
/// `sending`, answers PLIs, counts what the viewers receive, until `stop`.
fn drive(
    mut streams: Vec<Stream>,
    mut publishers: FleetSocket,
    mut viewers: FleetSocket,
    sending: &AtomicBool,
    stop: &AtomicBool,
    counters: &Counters,
) {
    // A PLI's destination is the stream's publisher-fleet participant index:
    // streams are numbered so.
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut next = now + SLICE;
        if sending.load(Ordering::Relaxed) {
            let (mut n, mut bytes) = (0, 0);
            for s in streams.iter_mut() {
                if s.publisher.next_deadline().map_or(true, |d| d <= now) {
                    let (from, to) = (s.from, s.to);
                    s.publisher.poll(now, &mut |pkt| {
                        n += 1;
                        bytes += pkt.len() as u64;
                        publishers.push(from, to, |buf| {
                            buf[..pkt.len()].copy_from_slice(pkt);
                            pkt.len()
                        });
                    });
                }
                if let Some(d) = s.publisher.next_deadline() {
                    next = next.min(d);
                }
            }
            publishers.flush();
            Counters::add(&counters.sent, n);
            Counters::add(&counters.sent_bytes, bytes);
        }
        let mut plis = 0;
        publishers.recv(16, |d| {
            if !is_pli(d.data) {
                return;
            }
            let Some(i) = participant_index(d.to) else {
                return;
            };
            if let Some(s) = streams.get_mut(i) {
                s.publisher.on_pli(now);
                plis += 1;
            }
        });
        Counters::add(&counters.plis, plis);
        let (mut n, mut bytes) = (0, 0);
        viewers.recv(64, |d| {
            // Forwarded RTP only (the slots' sender reports are RTCP).
            if d.data.len() > 12 && d.data[1] & 0x7f == VP8_PT {
                n += 1;
                bytes += d.data.len() as u64;
            }
        });
        Counters::add(&counters.received, n);
        Counters::add(&counters.received_bytes, bytes);
        counters
            .overflow
            .store(viewers.counters.overflowed, Ordering::Relaxed);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.min(SLICE));
        }
    }
}

fn is_pli(data: &[u8]) -> bool {
    scnf_media::rtp::is_rtcp(data)
        && parse_compound(data).flatten().any(|p| match p {
            RtcpPacket::Other { pt, count, body } => matches!(
                feedback::parse_feedback(pt, count, body),
                Some(Feedback::Pli { .. } | Feedback::Fir { .. })
            ),
            _ => false,
        })
}

/// Phase 2: the reflector fed at the node's forwarded rate and mean packet size.
fn reflector_phase(cfg: &BenchConfig, node: &Window) -> Result<Window, String> {
    let rate = node.forwarded as f64 / node.wall_s;
    let size = (node.forwarded_bytes / node.forwarded.max(1)).clamp(12, 1400) as usize;
    let socket = scnf_udp::bind_udp_with(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &scnf_udp::UdpOptions {
            recv_buf: 16 << 20,
            send_buf: 16 << 20,
            reuse_addr: false,
            // As the node's media sockets.
            dont_fragment: true,
        },
    )
    .map_err(|e| e.to_string())?
    .0;
    let at = v4(socket.local_addr().map_err(|e| e.to_string())?)?;
    let stop = Arc::new(AtomicBool::new(false));
    let total = cfg.warmup + cfg.seconds + Duration::from_secs(2);
    let reflect = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("rtpgen-reflect".into())
            .spawn(move || reflector::run(&socket, &stop, Some(Instant::now() + total)))
            .map_err(|e| e.to_string())?
    };
    let mut fleet = FleetSocket::bind(0, FLEET_BUFFER).map_err(|e| e.to_string())?;
    let counters = Counters::default();
    let feeder = CpuProbe::Threads("rtpgen-video".into());
    let reflector_cpu = CpuProbe::Threads("rtpgen-reflect".into());
    // This thread feeds and counts; named like phase 1's generator for its probe.
    let result = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("rtpgen-video".into())
            .spawn_scoped(scope, || {
                let start = Instant::now();
                let measure_from = start + cfg.warmup;
                let end = measure_from + cfg.seconds;
                let mut fed = 0u64;
                let mut marks = None;
                let cpu = |p: &CpuProbe| p.seconds().unwrap_or(f64::NAN);
                let snapshot = |c: &Counters| {
                    [&c.sent, &c.sent_bytes, &c.received, &c.received_bytes].map(Counters::get)
                };
                loop {
                    let now = Instant::now();
                    if marks.is_none() && now >= measure_from {
                        marks = Some((now, cpu(&reflector_cpu), cpu(&feeder), snapshot(&counters)));
                    }
                    if now >= end {
                        break;
                    }
                    let due = (now.duration_since(start).as_secs_f64() * rate) as u64;
                    let (mut n, mut bytes) = (0, 0);
                    while fed < due {
                        let from = Ipv4Addr::new(127, 2, 0, 1 + (fed % 200) as u8);
                        fleet.push(from, at, |buf| {
                            buf[..size].fill(0x5a);
                            buf[0] = 0x80;
                            buf[1] = VP8_PT;
                            size
                        });
                        fed += 1;
                        n += 1;
                        bytes += size as u64;
                    }
                    fleet.flush();
                    Counters::add(&counters.sent, n);
                    Counters::add(&counters.sent_bytes, bytes);
                    let (mut n, mut bytes) = (0, 0);
                    fleet.recv(64, |d| {
                        n += 1;
                        bytes += d.data.len() as u64;
                    });
                    Counters::add(&counters.received, n);
                    Counters::add(&counters.received_bytes, bytes);
                    std::thread::sleep(Duration::from_millis(1));
                }
                let (t0, r0, g0, k0) = marks.expect("the window started before it ended");
                let k1 = snapshot(&counters);
                let wall = t0.elapsed().as_secs_f64();
                (wall, cpu(&reflector_cpu) - r0, cpu(&feeder) - g0, k0, k1)
            })
            .map(|h| h.join())
    });
    stop.store(true, Ordering::Relaxed);
    let stats = reflect
        .join()
        .map_err(|_| "the reflector thread panicked".to_string())?
        .map_err(|e| e.to_string())?;
    let (wall, cpu_s, generator_cpu_s, k0, k1) = result
        .map_err(|e| e.to_string())?
        .map_err(|_| "the feeder thread panicked".to_string())?;
    // The reflector's echoes in the window are what came back (loopback loses
    // nothing but buffer overflows, which `received` then shows).
    let _ = stats;
    Ok(Window {
        wall_s: wall,
        cpu_s,
        generator_cpu_s,
        forwarded: k1[2] - k0[2],
        forwarded_bytes: k1[3] - k0[3],
        received: k1[2] - k0[2],
        received_bytes: k1[3] - k0[3],
        sent: k1[0] - k0[0],
        sent_bytes: k1[1] - k0[1],
    })
}
