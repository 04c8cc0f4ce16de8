//! Part 1: call setup through the scaler against straight to a node.
//!
//! A controller places `calls` calls into rooms of 10 (`*3<room>#`, sending
//! complete), each waiting for its Connect before the next (the round trip a PBX
//! sees, not a pipelined maximum), then releases them all. The concurrent variant
//! spreads the same calls over `sessions` controller sessions at once (each its own
//! rooms). Through the scaler a call is placed by the planner and its media set up
//! on a node over the node's link; the second and third callers of a room also wire
//! its cascade legs. Each call names a media address where nothing listens (the
//! node's RTP to it is dropped by the kernel), so only signalling is measured.
//!
//! The node and the cluster are up at the same time and measured alternately in
//! rounds (node, scaler, node, scaler, ...; medians of the rounds), so both see the
//! same machine. A round is a few hundred calls: each call's media goes out 50
//! times a second to its dead address, and thousands of them at once (with the
//! cascade legs, on 3 media threads and the 2 cores of the development machine)
//! load the machine until the control tasks starve and the first calls reach
//! their 30 s media timeout (seen with 2,000 calls in one round).

use crate::Error;
use hdrhistogram::Histogram;
use scnf::config::Config;
use scnf::NodeHandle;
use scnf_core::control::msg::{CodecDesc, Direction, MediaOffer};
use scnf_testkit::client::{CallAnswer, Client};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What one batch of setups gave.
struct Figures {
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
    releases_per_s: f64,
}

/// Where a controller logs in.
#[derive(Clone)]
struct Face {
    addr: SocketAddr,
    secret: Vec<u8>,
}

pub async fn run(quick: bool, calls: Option<usize>, base_port: u16) -> Result<(), Error> {
    let calls = calls
        .unwrap_or(if quick { 100 } else { 400 })
        .clamp(8, 5_000);
    let rounds = if quick { 3 } else { 9 };
    let sessions = 8;
    let mut cfg = Config::default();
    cfg.rtp.workers = 1;
    cfg.rtp.port_min = base_port;
    cfg.rtp.port_max = base_port + 99;
    cfg.control.listen = "127.0.0.1:0".parse()?;
    cfg.control.channels = 10_000;
    cfg.control.request_rate = 0;
    let node = NodeHandle::start(&cfg)?;
    let control = scnf::control::start(node.clone(), &cfg).await?;
    let cl = crate::cluster(base_port + 100, 8).await?;
    let node_face = Face {
        addr: control.local,
        secret: Vec::new(),
    };
    let scaler_face = Face {
        addr: cl.control(),
        secret: cl.secret.as_bytes().to_vec(),
    };
    println!();
    println!(
        "1. call setup: {rounds} rounds of {calls} calls into rooms of 10 (Setup -> Connect each, then all released), node and scaler alternating; medians of the rounds"
    );
    println!(
        "   {:<22} {:>9} {:>10} {:>10} {:>11}",
        "target, sessions", "setups/s", "p50 us", "p99 us", "releases/s"
    );
    let mut room = 100_000;
    for s in [1, sessions] {
        let (mut n, mut c) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            n.push(place(&node_face, calls, s, &mut room).await?);
            c.push(place(&scaler_face, calls, s, &mut room).await?);
        }
        let (n, c) = (Figures::median(&n), Figures::median(&c));
        print_row(&format!("node, {s}"), &n);
        print_row(&format!("scaler, {s}"), &c);
        println!(
            "   {:<22} {:>8.0}% {:>9.2}x {:>9.2}x {:>10.0}%   (requirement: rate >= 50 %)",
            "scaler / node",
            100.0 * c.per_s / n.per_s,
            c.p50_us / n.p50_us.max(1.0),
            c.p99_us / n.p99_us.max(1.0),
            100.0 * c.releases_per_s / n.releases_per_s,
        );
    }
    cl.stop().await;
    control.stop();
    node.shutdown();
    Ok(())
}

impl Figures {
    /// The median of each figure over `rounds` (each on its own).
    fn median(rounds: &[Figures]) -> Figures {
        let med = |f: fn(&Figures) -> f64| {
            let mut v: Vec<f64> = rounds.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        Figures {
            per_s: med(|f| f.per_s),
            p50_us: med(|f| f.p50_us),
            p99_us: med(|f| f.p99_us),
            releases_per_s: med(|f| f.releases_per_s),
        }
    }
}

fn print_row(what: &str, f: &Figures) {
    println!(
        "   {:<22} {:>9.0} {:>10.0} {:>10.0} {:>11.0}",
        what, f.per_s, f.p50_us, f.p99_us, f.releases_per_s
    );
}

/// Places `calls` calls over `sessions` sessions at once (rooms from `*room` on,
/// advanced past the ones used), then releases them; all timed.
async fn place(
    face: &Face,
    calls: usize,
    sessions: usize,
    room: &mut u64,
) -> Result<Figures, Error> {
    let per = calls / sessions;
    let mut clients = Vec::with_capacity(sessions);
    for s in 0..sessions {
        let mut c = Client::connect(face.addr).await?;
        c.set_timeout(Duration::from_secs(10));
        c.login_optional(&format!("bench-{s}"), &face.secret)
            .await?;
        clients.push(c);
    }
    let first_room = *room;
    *room += (calls as u64).div_ceil(10) + sessions as u64;
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(s, mut c)| {
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).expect("3 significant digits are valid");
                for i in 0..per {
                    let call = format!("s{s}c{i}");
                    let global = s * per + i;
                    let called = format!("*3{}#", first_room + (global / 10) as u64);
                    let offer = offer(global);
                    let t = Instant::now();
                    match c.setup(&call, &called, true, &offer).await? {
                        CallAnswer::Connect { .. } => {}
                        other => return Err(format!("{call}: {other:?}").into()),
                    }
                    h.record(t.elapsed().as_micros() as u64)?;
                }
                Ok::<_, Error>((c, h))
            })
        })
        .collect();
    let mut setup = Histogram::<u64>::new(3)?;
    let mut clients = Vec::with_capacity(sessions);
    for t in tasks {
        let (c, h) = t.await??;
        setup.add(&h)?;
        clients.push(c);
    }
    let setup_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(s, mut c)| {
            tokio::spawn(async move {
                for i in 0..per {
                    c.release(&format!("s{s}c{i}"), None).await?;
                }
                Ok::<_, Error>(c)
            })
        })
        .collect();
    for t in tasks {
        drop(t.await??);
    }
    let release_s = start.elapsed().as_secs_f64();
    let placed = per * sessions;
    Ok(Figures {
        per_s: placed as f64 / setup_s,
        p50_us: setup.value_at_quantile(0.5) as f64,
        p99_us: setup.value_at_quantile(0.99) as f64,
        releases_per_s: placed as f64 / release_s,
    })
}

/// A PCMU offer to an address nothing listens on: port 53000 (this bench's own
/// range, where it binds nothing) on a loopback address of its own per call (a
/// worker tells its legs apart by remote address, so no two calls may share one).
fn offer(i: usize) -> MediaOffer {
    MediaOffer {
        address: [127, 1, (i / 250 % 250) as u8, (i % 250) as u8 + 1].into(),
        port: 53_000,
        codecs: vec![CodecDesc {
            name: "PCMU".into(),
            pt: 0,
            rate: 8000,
        }],
        ptime: 20,
        telephone_event: None,
        direction: Direction::Sendrecv,
        rtcp_mux: false,
        latching: false,
    }
}
