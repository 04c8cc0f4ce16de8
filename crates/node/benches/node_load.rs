//! Whole node on loopback: how many G.711 participants one media worker carries.
//!
//! One node with ONE worker; a swarm of participants (rooms of 10, one talker per
//! room, 20 ms PCMU both ways) driven from one socket (see `scnf_testkit::swarm`).
//! The load rises in steps; at each step, after a warm-up, it measures over a
//! window: the worker thread's CPU time (from /proc), late mix ticks, packets the
//! swarm got back versus what the node should have sent, and resident memory. It
//! stops at the first step with late ticks, more than 0.5 % missing packets, or the
//! worker above 90 % of a core.
//!
//! `cargo bench --bench node_load [-- --max 4000 --step 500 --seconds 5]`

use scnf::config::Config;
use scnf::NodeHandle;
use scnf_core::engine::{LegId, LegSpec, MixId};
use scnf_media::codec::CodecKind;
use scnf_testkit::cpu::CpuProbe;
use scnf_testkit::swarm::Swarm;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod common;
use common::arg;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Drives the swarm at exact 20 ms pacing for `d`; returns the driver's worst lateness.
fn drive(swarm: &mut Swarm, d: Duration) -> Duration {
    let start = Instant::now();
    let mut k = 0u32;
    let mut worst = Duration::ZERO;
    while start.elapsed() < d {
        let due = start + Duration::from_millis(20) * k;
        let now = Instant::now();
        if now < due {
            // Drain while waiting, in short naps.
            swarm.drain();
            std::thread::sleep((due - now).min(Duration::from_millis(2)));
            continue;
        }
        worst = worst.max(now - due);
        swarm.send_period();
        swarm.drain();
        k += 1;
    }
    worst
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let max = arg("--max", 4000) as usize;
    let step = arg("--step", 500) as usize;
    let secs = arg("--seconds", 5);
    let mut cfg = Config::default();
    cfg.rtp.workers = 1;
    cfg.rtp.port_min = 22_000;
    cfg.rtp.port_max = 22_099;
    cfg.rtp.recv_buffer = 16 << 20;
    cfg.rtp.send_buffer = 16 << 20;
    let node = NodeHandle::start(&cfg).expect("node starts");
    let mut swarm = Swarm::bind(0).expect("swarm binds");
    let rss0 = rss_kib();
    println!("scnf node_load: one worker, PCMU 20 ms, rooms of 10 with one talker each");
    println!(
        "{:>6} {:>9} {:>12} {:>10} {:>9} {:>11} {:>10} {:>10}",
        "legs", "cpu %", "legs/core", "late", "missing %", "p99 late us", "KiB/leg", "drv late"
    );
    let mut room = MixId(0);
    let mut best = None;
    let mut n = 0;
    while n < max {
        let target = (n + step).min(max);
        while swarm.len() < target {
            if swarm.len() % 10 == 0 {
                room = MixId(room.0 + 1);
                node.open_room(0, room).await.expect("room opens");
            }
            let talks = swarm.len() % 10 == 0;
            // Learn the leg's local address first: the swarm sends there.
            let worker = node.worker_addresses()[0];
            let SocketAddr::V4(local) = worker else {
                unreachable!("the bench binds IPv4")
            };
            let addr = swarm.add(local, talks);
            let leg = LegId(swarm.len() as u64);
            node.add_leg(0, room, leg, LegSpec::new(addr, CodecKind::Pcmu))
                .await
                .expect("leg added");
        }
        n = target;
        // Warm-up (jitter buffers fill, join burst passes).
        drive(&mut swarm, Duration::from_secs(2));
        let s0 = node.stats().await.unwrap()[0].clone();
        let worker = CpuProbe::Threads("scnf-media-0".into());
        let cpu0 = worker.seconds().unwrap_or(0.0);
        let (sent0, recv0) = (swarm.sent, swarm.received);
        let t0 = Instant::now();
        let drv_late = drive(&mut swarm, Duration::from_secs(secs));
        let wall = t0.elapsed().as_secs_f64();
        let cpu = worker.seconds().unwrap_or(0.0) - cpu0;
        let s1 = node.stats().await.unwrap()[0].clone();
        let late = s1.late_ticks - s0.late_ticks;
        let expected = (s1.ticks - s0.ticks) as f64 * n as f64;
        let got = (swarm.received - recv0) as f64;
        let missing = (1.0 - got / expected).max(0.0) * 100.0;
        let frac = cpu / wall;
        let per_core = n as f64 / frac.max(1e-9);
        let kib = (rss_kib().saturating_sub(rss0)) as f64 / n as f64;
        let _ = sent0;
        println!(
            "{:>6} {:>9.1} {:>12.0} {:>10} {:>9.2} {:>11} {:>10.1} {:>8.1}ms",
            n,
            frac * 100.0,
            per_core,
            late,
            missing,
            s1.lateness_p99_us,
            kib,
            drv_late.as_secs_f64() * 1000.0
        );
        if late > 0 || missing > 0.5 || frac > 0.9 {
            println!("stopping: the worker is saturated at {n} legs");
            break;
        }
        best = Some((n, per_core, kib));
    }
    if let Some((n, per_core, kib)) = best {
        println!(
            "\nlargest clean step: {n} legs on one worker; CPU-extrapolated capacity {per_core:.0} legs per core; {kib:.1} KiB resident per leg"
        );
    }
    node.shutdown();
}
