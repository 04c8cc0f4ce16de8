//! rtpgen: the bundled RTP load generator. See `rtpgen --help` and the README's
//! "Load testing" section.

use clap::{Args, Parser, Subcommand};
use rtpgen::janus::Janus;
use rtpgen::reflector;
use rtpgen::report::Report;
use rtpgen::scenario::{self, Probes, Ramp, Scenario};
use rtpgen::target::{Scnf, Target};
use rtpgen::videobench;
use scnf::config::Config;
use scnf::control::ControlHandle;
use scnf::NodeHandle;
use scnf_media::codec::CodecKind;
use scnf_testkit::client::Client;
use scnf_testkit::cpu::CpuProbe;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod video_cmd;

/// The speech sample shipped in `vectors/speech` (see its README).
const SPEECH: &[u8] = include_bytes!("../../../vectors/speech/speech-8k.wav");

#[derive(Parser)]
#[command(
    name = "rtpgen",
    version,
    about = "RTP load generator for conference mixers: many virtual participants, what they hear, how the node copes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Drive participants against a target (the default).
    Load(Box<LoadArgs>),
    /// Run the bare batched UDP reflector (the benchmark baseline).
    Reflect(ReflectArgs),
    /// Video forwarding cost of an embedded node, then of the reflector at the
    /// same packet rate (see bench/video/README.md).
    Videobench(VideobenchArgs),
    /// Video publishers and switching viewers against a node or a scaler, judged.
    Video(Box<video_cmd::VideoArgs>),
}

#[derive(Args)]
struct VideobenchArgs {
    /// `fanout` (1 publisher's high layer, --viewers views) or `rooms`
    /// (--publishers x 3 layers, each viewed by --per-layer).
    #[arg(long, default_value = "fanout")]
    shape: String,
    #[arg(long, default_value_t = 200)]
    viewers: usize,
    #[arg(long, default_value_t = 50)]
    publishers: usize,
    #[arg(long, default_value_t = 5)]
    per_layer: usize,
    /// Seconds with the calls up and no video (the room's idle cost).
    #[arg(long, default_value_t = 3)]
    idle: u64,
    /// Seconds of video before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds measured, for the node and again for the reflector.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// `embedded` (a node in this process, one media worker), `scnf:HOST:PORT`
    /// (a node's call-control listener), `reflector:HOST:PORT`, `janus:HOST:PORT`
    /// (Janus HTTP API). Loopback only.
    #[arg(long, default_value = "embedded")]
    target: String,
    /// Call-control password for `scnf:` targets.
    #[arg(long, env = "SCNF_CONTROL_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    #[arg(long, default_value_t = 10)]
    per_room: usize,
    /// Tone talkers per room (N-1 judged, latency timed).
    #[arg(long, default_value_t = 2)]
    talkers: usize,
    /// Speech talkers per room (from the speech sample).
    #[arg(long, default_value_t = 0)]
    speakers: usize,
    /// Speech sample (WAV); default: the one shipped in vectors/speech.
    #[arg(long)]
    speech: Option<PathBuf>,
    /// Codecs, given to participants in turn: PCMU, PCMA, G722, opus.
    #[arg(long, value_delimiter = ',', default_value = "PCMU")]
    codecs: Vec<String>,
    #[arg(long, default_value_t = 2000)]
    talk_ms: u32,
    #[arg(long, default_value_t = 1000)]
    silence_ms: u32,
    /// Seconds before measuring (jitter buffers fill, join bursts pass).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Listeners replaced per second (leave + join).
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Raise the load room by room until the target degrades.
    #[arg(long)]
    ramp: bool,
    #[arg(long, default_value_t = 10)]
    step_rooms: usize,
    #[arg(long, default_value_t = 5)]
    step_seconds: u64,
    #[arg(long, default_value_t = 400)]
    max_rooms: usize,
    /// Most loss in a clean run or step, percent.
    #[arg(long, default_value_t = 0.5)]
    loss_max: f64,
    /// Ramp: most rise of latency p99 over the first step, ms.
    #[arg(long, default_value_t = 50.0)]
    latency_rise_ms: f64,
    /// Tone and speech level, dBFS.
    #[arg(long, default_value_t = -20.0)]
    level: f64,
    /// Judge a talker once it kept its state this long (ms): above the target's delay.
    #[arg(long, default_value_t = 600)]
    settle_ms: u64,
    /// Path jitter towards the target: each packet sent is held 0..=this many ms
    /// (uniform, seeded), so packets also reorder. Latency then includes it.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Measure this process's CPU time as the target's.
    #[arg(long)]
    target_pid: Option<u32>,
    /// Media workers of the embedded node.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Write the JSON report here, and the plot next to it (same name, .svg).
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ReflectArgs {
    #[arg(long, default_value = "127.0.0.1:40000")]
    listen: SocketAddr,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Send with the don't-fragment bit, as scnf's media sockets do by default
    /// (the kernel then spends no IP identifier per datagram).
    #[arg(long)]
    dont_fragment: bool,
    /// Rest this many microseconds after every read that found datagrams, as
    /// scnf does with `rtp.rx_coalesce_us` (0: wait for each arrival).
    #[arg(long, default_value_t = 0)]
    rest_us: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Reflect(a)) => reflect(a),
        Some(Cmd::Load(a)) => load(*a),
        Some(Cmd::Videobench(a)) => videobench(a),
        Some(Cmd::Video(a)) => video_cmd::video(*a),
        None => load(cli.load),
    }
}

fn reflect(a: ReflectArgs) -> ExitCode {
    let run = || -> Result<(), String> {
        let socket = scnf_udp::bind_udp_with(
            a.listen,
            &scnf_udp::UdpOptions {
                recv_buf: 16 << 20,
                send_buf: 16 << 20,
                reuse_addr: false,
                dont_fragment: a.dont_fragment,
            },
        )
        .map_err(|e| format!("{}: {e}", a.listen))?
        .0;
        println!(
            "rtpgen reflect: echoing on {} for at most {} s",
            a.listen, a.seconds
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // SIGINT/SIGTERM end the run cleanly with its counters.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            rt.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("a SIGTERM handler can be installed");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
            flag.store(true, Ordering::Relaxed);
        });
        let deadline = Instant::now() + Duration::from_secs(a.seconds);
        let rest = Duration::from_micros(a.rest_us);
        let s = reflector::run_resting(&socket, &stop, Some(deadline), rest)
            .map_err(|e| e.to_string())?;
        println!(
            "rtpgen reflect: received {}, reflected {}, dropped {}, {} batches",
            s.received, s.reflected, s.dropped, s.batches
        );
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtpgen reflect: {e}");
            ExitCode::from(2)
        }
    }
}

fn videobench(a: VideobenchArgs) -> ExitCode {
    let shape = match a.shape.as_str() {
        "fanout" => videobench::Shape::Fanout { viewers: a.viewers },
        "rooms" => videobench::Shape::Rooms {
            publishers: a.publishers,
            per_layer: a.per_layer,
        },
        other => {
            eprintln!("rtpgen videobench: unknown shape {other:?} (fanout, rooms)");
            return ExitCode::from(2);
        }
    };
    let cfg = videobench::BenchConfig {
        shape,
        idle: Duration::from_secs(a.idle),
        warmup: Duration::from_secs(a.warmup),
        seconds: Duration::from_secs(a.seconds.max(1)),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtpgen videobench: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(videobench::run(&cfg)) {
        Ok(report) => {
            print!("{}", report.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rtpgen videobench: {e}");
            ExitCode::from(2)
        }
    }
}

fn loopback(addr: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not HOST:PORT"))?;
    if !a.ip().is_loopback() {
        return Err(format!("{a}: rtpgen only targets loopback"));
    }
    Ok(a)
}

fn load(a: LoadArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtpgen: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(load_async(a)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rtpgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn scenario_of(a: &LoadArgs) -> Result<Scenario, String> {
    let codecs = a
        .codecs
        .iter()
        .map(|c| CodecKind::from_name(c).ok_or_else(|| format!("unknown codec {c:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Scenario {
        rooms: a.rooms,
        per_room: a.per_room,
        talkers: a.talkers,
        speakers: a.speakers,
        codecs,
        talk_ms: a.talk_ms,
        silence_ms: a.silence_ms,
        warmup: Duration::from_secs(a.warmup),
        duration: Duration::from_secs(a.seconds),
        churn_per_s: a.churn,
        ramp: a.ramp.then_some(Ramp {
            step_rooms: a.step_rooms,
            step_time: Duration::from_secs(a.step_seconds),
            max_rooms: a.max_rooms,
        }),
        settle: Duration::from_millis(a.settle_ms),
        tone_dbfs: a.level,
        send_jitter: Duration::from_millis(a.jitter_ms),
        loss_max_pct: a.loss_max,
        latency_rise_ms: a.latency_rise_ms,
        seed: a.seed,
        progress: !a.quiet,
    })
}

fn speech_of(a: &LoadArgs) -> Result<Option<Vec<i16>>, String> {
    if a.speakers == 0 {
        return Ok(None);
    }
    let (bytes, name) = match &a.speech {
        Some(path) => (
            std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => (SPEECH.to_vec(), "the shipped speech sample".into()),
    };
    let path = name;
    let wav = rtpgen::wav::read_wav(&bytes).map_err(|e| format!("{path}: {e}"))?;
    wav.mono_8k().map(Some).map_err(|e| format!("{path}: {e}"))
}

async fn load_async(a: LoadArgs) -> Result<bool, String> {
    let sc = scenario_of(&a)?;
    sc.validate()?;
    let speech = speech_of(&a)?;
    let mut probes = Probes {
        target: a.target_pid.map_or(CpuProbe::None, CpuProbe::Process),
        generator: CpuProbe::Threads("rtpgen-media".into()),
    };
    let mut embedded = None;
    let target = match a.target.split_once(':') {
        None if a.target == "embedded" => {
            let (node, control, password) = start_embedded(a.workers).await?;
            probes.target = CpuProbe::Threads("scnf-media".into());
            let mut client = Client::connect(control.local)
                .await
                .map_err(|e| e.to_string())?;
            client
                .login("rtpgen", password.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            embedded = Some((node, control));
            Target::scnf(client)
        }
        Some(("scnf", addr)) => {
            let addr = loopback(addr)?;
            let secret = a.password.as_deref().unwrap_or("").as_bytes();
            let mut client = Client::connect(addr).await.map_err(|e| e.to_string())?;
            client
                .login_optional("rtpgen", secret)
                .await
                .map_err(|e| e.to_string())?;
            // A lost connection (a scaler restarted) is redialled and resumed.
            let scnf = Scnf::new(client).redial(addr, "rtpgen", secret);
            Target::Scnf(Box::new(scnf))
        }
        Some(("reflector", addr)) => {
            let SocketAddr::V4(v4) = loopback(addr)? else {
                return Err("the reflector must be IPv4".into());
            };
            Target::Reflector(SocketAddrV4::new(*v4.ip(), v4.port()))
        }
        Some(("janus", addr)) => Target::Janus(Box::new(
            Janus::connect(loopback(addr)?)
                .await
                .map_err(|e| e.to_string())?,
        )),
        _ => return Err(format!("unknown target {:?}", a.target)),
    };
    let report = scenario::run(sc, target, speech, probes).await;
    if let Some((node, control)) = embedded {
        control.stop();
        node.shutdown();
    }
    let report = report?;
    print!("{}", report.summary());
    if let Some(path) = &a.report {
        write_report(&report, path)?;
        println!("  report     {} (+ .svg)", path.display());
    }
    Ok(report.problems.is_empty())
}

async fn start_embedded(workers: usize) -> Result<(NodeHandle, ControlHandle, String), String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    let password = scnf_core::control::hex::encode(&bytes);
    let mut cfg = Config::default();
    cfg.rtp.workers = workers;
    cfg.rtp.recv_buffer = 16 << 20;
    cfg.rtp.send_buffer = 16 << 20;
    cfg.control.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.control.password = Some(password.clone());
    cfg.control.max_connections = 4;
    // The load decides how many calls there are, not the default channel budget.
    cfg.control.channels = scenario::MAX_PARTICIPANTS as u32;
    let node = NodeHandle::start(&cfg).map_err(|e| e.to_string())?;
    match scnf::control::start(node.clone(), &cfg).await {
        Ok(c) => Ok((node, c, password)),
        Err(e) => {
            node.shutdown();
            Err(e.to_string())
        }
    }
}

fn write_report(r: &Report, path: &std::path::Path) -> Result<(), String> {
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
    std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    let svg = path.with_extension("svg");
    std::fs::write(&svg, r.svg()).map_err(|e| format!("{}: {e}", svg.display()))?;
    Ok(())
}
