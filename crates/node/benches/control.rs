//! Call-control throughput: how fast one controller connection sets up and releases
//! calls through the WebSocket listener, session root, conference core and media
//! workers of a loopback node.
//!
//! Calls are placed one at a time (Setup, wait for Connect), so the figure is the
//! round trip a PBX sees, not a pipelined maximum. Rooms of 10 are joined with
//! `*3<room>#`; each call names its own media address (nothing listens there: the
//! node's RTP to it is dropped by the kernel, as for a phone that went away).
//!
//! `cargo bench --bench control [-- --calls 2000]`

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use scnf::config::Config;
use scnf::NodeHandle;
use scnf_core::control::msg::{self, ServerMsg};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::arg;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Sends `req` and waits for the message `done` accepts (events in between skipped).
async fn round_trip(ws: &mut Ws, req: serde_json::Value, done: impl Fn(&ServerMsg) -> bool) {
    ws.send(Message::Text(req.to_string().into()))
        .await
        .expect("send");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the node answers within 5 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let (m, _) = msg::parse_server(&text).expect("valid message");
            if let ServerMsg::Error { error, .. } | ServerMsg::Release { reason: error, .. } = &m {
                panic!("refused: {error}");
            }
            if done(&m) {
                return;
            }
        }
    }
}

fn report(what: &str, h: &Histogram<u64>, elapsed: Duration) {
    println!(
        "{what:<8} {:>6} calls  {:>7.0}/s  latency p50 {:>6} us  p99 {:>6} us  max {:>6} us",
        h.len(),
        h.len() as f64 / elapsed.as_secs_f64(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
}

fn main() {
    let calls = arg("--calls", 2000).min(12_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut cfg = Config::default();
        cfg.rtp.workers = 1;
        cfg.rtp.port_min = 33000;
        cfg.rtp.port_max = 33099;
        cfg.control.listen = "127.0.0.1:0".parse().unwrap();
        cfg.control.channels = calls as u32;
        let node = NodeHandle::start(&cfg).expect("node");
        let control = scnf::control::start(node.clone(), &cfg)
            .await
            .expect("control");
        let tcp = tokio::net::TcpStream::connect(control.local)
            .await
            .expect("connect");
        let (mut ws, _) = tokio_tungstenite::client_async("ws://localhost/", tcp)
            .await
            .expect("handshake");
        println!("scnf control bench: {calls} calls, rooms of 10, one controller, one worker");
        let mut setup = Histogram::<u64>::new(3).expect("histogram");
        let start = Instant::now();
        for i in 0..calls {
            let call = format!("c{i}");
            let media = json!({"address": "127.0.0.1", "port": 40000 + 2 * (i % 12000),
                "codecs": [{"name": "PCMU", "pt": 0, "rate": 8000}]});
            let req = json!({"mt": "Setup", "call": call, "called": format!("*3{}#", 100 + i / 10),
                "complete": true, "media": media});
            let t = Instant::now();
            round_trip(
                &mut ws,
                req,
                |m| matches!(m, ServerMsg::Connect { call: c, .. } if *c == call),
            )
            .await;
            setup
                .record(t.elapsed().as_micros() as u64)
                .expect("in range");
        }
        report("setup", &setup, start.elapsed());
        let mut release = Histogram::<u64>::new(3).expect("histogram");
        let start = Instant::now();
        for i in 0..calls {
            let call = format!("c{i}");
            let t = Instant::now();
            round_trip(
                &mut ws,
                json!({"mt": "Release", "call": call}),
                |m| matches!(m, ServerMsg::ReleaseResult { call: c } if *c == call),
            )
            .await;
            release
                .record(t.elapsed().as_micros() as u64)
                .expect("in range");
        }
        report("release", &release, start.elapsed());
        control.stop();
        node.shutdown();
    });
}
