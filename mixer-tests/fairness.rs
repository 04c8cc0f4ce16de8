//! One controller flooding the node cannot starve another (issue 11, item 3).

use crate::support::{control_node, controller, exclusive};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const FLOOD: usize = 10_000;

/// One session pipelines 10,000 `Status` (no rate budget: each is executed, or refused
/// while 256 of its reports wait) and reads its answers; meanwhile another session's `Health` round trips stay short.
/// Before the sessions had their own queues and `Status` rounds were shared, each
/// Health queued behind the flood's frames and its 10,000 snapshot rounds (~750 ms in
/// the field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sessions_health_stays_fast_while_one_session_floods_status() {
    // A flood is load: it must not disturb the real-time tests, nor they it.
    let _serial = exclusive().await;
    let (node, control) = control_node(|c| {
        c.control.request_rate = 0;
        c.control.report_rate = 0;
    })
    .await;
    let url = format!("ws://{}/", control.local);
    let tcp = tokio::net::TcpStream::connect(control.local)
        .await
        .expect("the flooder connects");
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .expect("the flooder's handshake");
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        for i in 0..FLOOD {
            let text = format!(r#"{{"mt":"Status","src":"f{i}"}}"#);
            sink.send(Message::Text(text.into())).await.expect("sent");
        }
        sink
    });
    // The flooder reads everything (a session that does not read is closed instead).
    let reader = tokio::spawn(async move {
        let (mut answers, mut statuses) = (0, 0);
        while answers < FLOOD {
            match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    answers += 1;
                    if t.contains("StatusResult") {
                        statuses += 1;
                    } else {
                        assert!(t.contains("rate-limited"), "{t}");
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("the flood's answers stopped after {answers}: {other:?}"),
            }
        }
        (answers, statuses)
    });
    let mut probe = controller(control.local).await;
    let mut rtts = Vec::new();
    // Bounded: at most 2,000 probes, and only while the flood is being answered.
    while !reader.is_finished() && rtts.len() < 2_000 {
        let t0 = Instant::now();
        probe.health().await.expect("Health is answered");
        rtts.push(t0.elapsed());
    }
    let (answers, statuses) = reader.await.expect("the flood's reader");
    let _sink = writer.await.expect("the flood's writer");
    assert_eq!(answers, FLOOD, "every Status is answered");
    assert!(
        statuses > 0,
        "the flood's reports are executed, not all refused"
    );
    assert!(!rtts.is_empty(), "a probe ran during the flood");
    rtts.sort_unstable();
    let median = rtts[rtts.len() / 2];
    eprintln!(
        "Health round trip during a {FLOOD}-Status flood ({statuses} executed): median {:.2} ms, max {:.2} ms over {} probes",
        median.as_secs_f64() * 1e3,
        rtts[rtts.len() - 1].as_secs_f64() * 1e3,
        rtts.len()
    );
    assert!(
        median < Duration::from_millis(50),
        "median Health round trip {median:?} while another session floods"
    );
    node.shutdown();
}
