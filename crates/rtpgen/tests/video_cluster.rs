//! rtpgen's video run through a scaler: a scaler and two nodes on loopback in this
//! process (as `scnf demo --cluster` starts them, but with video crossing nodes by
//! unicast: loopback has no multicast), the publishers' calls on one node and the
//! viewers' on the other, so every view is relayed between the nodes.

use rtpgen::video::{Layer, VideoScenario, VideoTarget};
use scnf::config::Config;
use scnf::scaler::config::ScalerConfig;
use scnf::scaler_link::{self, LinkConfig, LinkState};
use scnf::NodeHandle;
use scnf_core::cluster::video::VideoTransport;
use std::net::SocketAddr;
use std::time::Duration;

const SECRET: &str = "video-cluster-test-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_on_another_node_than_the_publishers_get_clean_relayed_streams() {
    let secret_file = std::env::temp_dir().join(format!(
        "rtpgen-video-cluster-{}.secret",
        std::process::id()
    ));
    std::fs::write(&secret_file, SECRET).expect("write the cluster secret");
    let mut scfg = ScalerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        nodes_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        password_file: Some(secret_file.clone()),
        ..ScalerConfig::default()
    };
    scfg.control.request_rate = 0;
    scfg.video.transport = VideoTransport::Unicast;
    let scaler = scnf::scaler::start(&scfg).await.expect("the scaler starts");
    let mut nodes = Vec::new();
    for i in 0..2u16 {
        let mut cfg = Config::default();
        cfg.rtp.workers = 1;
        cfg.rtp.port_min = 33_200 + 100 * i;
        cfg.rtp.port_max = 33_299 + 100 * i;
        cfg.scaler.url = Some(format!("ws://{}", scaler.nodes));
        cfg.scaler.password = Some(SECRET.into());
        cfg.scaler.name = Some(format!("video-node-{}", i + 1));
        let node = NodeHandle::start(&cfg).expect("a node starts");
        let link_cfg = LinkConfig::from_config(&cfg, &node)
            .expect("a link config")
            .expect("a cluster node has a scaler URL");
        let link = scaler_link::spawn(node.clone(), link_cfg);
        let mut state = link.registered();
        tokio::time::timeout(
            Duration::from_secs(10),
            state.wait_for(|s| matches!(s, LinkState::Registered { .. })),
        )
        .await
        .expect("the node registers in time")
        .expect("the link runs");
        nodes.push((node, link));
    }
    let sc = VideoScenario {
        publishers: 2,
        layers: Layer::ALL.to_vec(),
        viewers_per_publisher: 3,
        switch_every: Duration::from_millis(1500),
        duration: Duration::from_secs(6),
        seed: 12,
        viewers_apart: true,
    };
    let target = VideoTarget::new(scaler.control, Some(SECRET.into()));
    let run = tokio::time::timeout(
        Duration::from_secs(40),
        rtpgen::video::scenario::run(&sc, &target),
    )
    .await
    .expect("the run ends in bounded time");
    for (node, link) in nodes {
        link.close(Duration::from_millis(500)).await;
        node.shutdown();
    }
    let _ = scaler.shutdown(Duration::from_secs(2)).await;
    let _ = std::fs::remove_file(&secret_file);
    let report = run.expect("the run is set up");
    println!("{}{}", report.summary(), report.status_lines());
    assert!(report.faults().is_empty(), "{:#?}", report.faults());
    assert_eq!(report.layers.len(), 3, "every layer was viewed");
    let problems = report.check(0.35, Duration::from_millis(1500));
    assert!(problems.is_empty(), "{problems:#?}");
    // Against the clip itself the received rate runs high: every switch starts at
    // a key frame, and the node's PLIs add key frames the clip does not have (low,
    // whose key frames weigh most, measured up to +34 %). So the clip bounds are
    // wider above than below.
    for l in &report.layers {
        let rel = l.bitrate_bps() / l.clip_bps - 1.0;
        assert!(
            (-0.35..0.5).contains(&rel),
            "{:?}: {rel:+.2} against the clip",
            l.layer
        );
    }
    for v in &report.viewers {
        assert_eq!(v.report.unrequested, 0, "{}", v.call);
    }
    let on_nodes: Vec<_> = report.status_video.iter().map(|c| c.node.clone()).collect();
    assert!(
        on_nodes.iter().all(|n| n == &on_nodes[0]),
        "every publisher stream on one node: {on_nodes:?}"
    );
}
