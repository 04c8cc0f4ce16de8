//! rtpgen's video run against one node started in this process: two publishers
//! sending all three layers, three viewers each that open, switch and stop, judged
//! on what they receive.

use rtpgen::video::{Layer, VideoScenario, VideoTarget};
use scnf::config::Config;
use scnf::NodeHandle;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_switching_layers_on_one_node_get_clean_streams_at_the_clips_bitrates() {
    let mut cfg = Config::default();
    cfg.rtp.workers = 1;
    cfg.rtp.port_min = 33_000;
    cfg.rtp.port_max = 33_099;
    cfg.control.listen = "127.0.0.1:0".parse().unwrap();
    cfg.control.password = Some("video-node-test".into());
    let node = NodeHandle::start(&cfg).expect("the test node starts");
    let control = scnf::control::start(node.clone(), &cfg)
        .await
        .expect("the control listener starts");
    let sc = VideoScenario {
        publishers: 2,
        layers: Layer::ALL.to_vec(),
        viewers_per_publisher: 3,
        switch_every: Duration::from_millis(1500),
        duration: Duration::from_secs(6),
        seed: 11,
        viewers_apart: false,
    };
    let target = VideoTarget::new(control.local, Some("video-node-test".into()));
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        rtpgen::video::scenario::run(&sc, &target),
    )
    .await
    .expect("the run ends in bounded time")
    .expect("the run is set up");
    control.stop();
    node.shutdown();
    println!("{}{}", report.summary(), report.status_lines());
    assert!(report.faults().is_empty(), "{:#?}", report.faults());
    assert_eq!(report.fillers, 0);
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
    for l in &report.layers {
        let median = l.median_key_delay().expect("key frames came");
        assert!(
            median < Duration::from_millis(700),
            "{:?}: median {median:?}",
            l.layer
        );
    }
    for s in &report.sent {
        assert!(
            s.keyframe_requests > 0,
            "{:?}: the node asked for key frames",
            s.layer
        );
    }
    for v in &report.viewers {
        assert_eq!(v.report.unrequested, 0, "{}", v.call);
    }
}
