//! rtpgen against the cluster: the unchanged load generator places its calls through
//! the scaler (which places them round-robin on three nodes, rooms of 6 spread
//! 2/2/2 and joined by cascade legs) while callers leave and new ones join, and
//! judges what every participant heard. The figures (latency per hop, CPU) are
//! `cluster-bench`'s; this is the smoke test that the cluster mixes N-1 right.

use crate::loadgen::{probes, scenario, valid_run};
use crate::support::exclusive;
use rtpgen::scenario::run;
use rtpgen::target::Target;
use scnf::demo::cluster::{ClusterOptions, LocalCluster};
use scnf_testkit::client::Client;
use std::time::Duration;

/// This file's media ports: 3 nodes x 100 from here.
const BASE_PORT: u16 = 54_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtpgen_through_the_scaler_with_churn_hears_n_minus_one_everywhere_with_no_loss() {
    let _serial = exclusive().await;
    let cl = LocalCluster::start(&ClusterOptions::new(3, BASE_PORT), Duration::from_secs(10))
        .await
        .expect("the scaler starts and every node registers");
    let mut sc = scenario(3, 6);
    sc.churn_per_s = 2.0;
    let r = valid_run(|| async {
        let mut client = Client::connect(cl.control())
            .await
            .expect("scaler connects");
        client
            .login("rtpgen-test", cl.secret.as_bytes())
            .await
            .expect("log in to the scaler");
        run(sc.clone(), Target::scnf(client), None, probes())
            .await
            .unwrap()
    })
    .await;
    cl.stop().await;
    print!("{}", r.summary());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    // Every listener that stayed long enough was judged, and all heard right: the
    // others of its room, wherever they were placed, and never itself.
    assert_eq!(r.correctness.failed, 0, "{:?}", r.correctness);
    assert!(r.correctness.ok >= 14, "{:?}", r.correctness);
    assert_eq!(r.correctness.counts.own_heard, 0);
    assert_eq!(r.joins_failed, 0);
    // 3 rooms x 6 places got packets every 20 ms, none lost.
    assert!(r.packets.received >= 18 * 50 * 3, "{:?}", r.packets);
    assert_eq!(r.packets.lost, 0, "{:?}", r.packets);
    // Latencies were found, below the settle time.
    let lat = r.latency_ms.expect("latencies measured");
    assert!(
        lat.count >= 6 && lat.p50 > 10.0 && lat.max < 600.0,
        "{lat:?}"
    );
    // Churn happened: more participants over the run than places.
    assert!(r.per_participant.len() > 18);
}
