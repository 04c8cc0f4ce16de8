//! rtpgen, unchanged, through a cluster whose scaler is SIGKILLed and started again
//! in the middle of its run: it judges what every participant heard over the whole
//! run, the outage included, and redials and resumes its controller session as a
//! PBX would.

use super::cluster::{Cluster, Layout};
use super::exclusive;
use rtpgen::scenario::{run, Probes, Scenario};
use rtpgen::target::{Scnf, Target};
use scnf_media::codec::CodecKind;
use std::time::Duration;

/// Rooms of 6 over the three nodes, PCMU and G.722, 2 talkers each, no churn: every
/// place has its caller for the whole run.
fn scenario() -> Scenario {
    Scenario {
        codecs: vec![CodecKind::Pcmu, CodecKind::G722],
        duration: Duration::from_secs(7),
        seed: 13,
        ..Scenario::judged(3, 6)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtpgen_through_a_scaler_killed_and_started_again_loses_no_packet() {
    let _machine = exclusive().await;
    let mut cl = Cluster::start(Layout::loopback(11, 3)).await;
    let client = cl.controller(Duration::from_secs(5)).await;
    let target = Scnf::new(client).redial(cl.control(), "survival", cl.secret.as_bytes());
    let probes = Probes {
        target: scnf_testkit::cpu::CpuProbe::None,
        generator: scnf_testkit::cpu::CpuProbe::None,
    };
    let load = tokio::spawn(run(
        scenario(),
        Target::Scnf(Box::new(target)),
        None,
        probes,
    ));
    // The calls are placed within the warm-up; the scaler dies 3 s into the run
    // and is away for 1.5 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cl.kill_scaler();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cl.start_scaler();
    let r = load
        .await
        .expect("the run does not panic")
        .expect("the run completes");
    print!("{}", r.summary());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.joins_failed, 0);
    assert_eq!(r.correctness.failed, 0, "{:?}", r.correctness);
    assert_eq!(r.correctness.ok, 18, "every participant judged right");
    assert!(r.packets.received >= 18 * 50 * 6, "{:?}", r.packets);
    assert_eq!(
        r.packets.lost, 0,
        "nothing lost across the outage: {:?}",
        r.packets
    );
    // The new scaler knows every call: rtpgen released them all through it.
    let mut c = cl.controller(Duration::from_secs(5)).await;
    let status = c.status().await.expect("status");
    assert!(status.rooms.is_empty(), "{:?}", status.rooms);
    let control = c.health().await.expect("health").control;
    assert_eq!(
        control.resumes, 1,
        "rtpgen resumed its session once: {control:?}"
    );
    assert_eq!(control.adopted, 18, "the new scaler took back all 18 calls");
}
