//! The `scnf` binary stopped by SIGTERM ends its calls cleanly: the controller gets a
//! `Release` with cause 41 and its session closed, the participant an RTCP BYE, and
//! the process exits 0 within a bound. Every wait is for an event, with a deadline.

mod common;

use common::{plain, Process};
use scnf_core::control::msg::{CodecDesc, MediaOffer, ServerMsg};
use scnf_media::rtp::{self, parse_compound, RtcpPacket};
use scnf_testkit::client::{CallAnswer, Client};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Starts `scnf node` on loopback with an OS-chosen control port; returns it and
/// that port, read from its log.
fn start() -> (Process, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scnf"))
        .args([
            "node",
            "--bind",
            "127.0.0.1",
            "--control-listen",
            "127.0.0.1:0",
            "--rtp-ports",
            "39300-39399",
            "--workers",
            "1",
        ])
        .env("SCNF_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the scnf binary starts");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(plain(&line));
        }
    });
    let node = Process(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the node logs its control address");
        if !line.contains("call control listening") {
            continue;
        }
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("local="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("an address in {line:?}"));
        return (node, addr);
    }
}

/// The SSRC an RTCP compound says BYE for, if it does.
fn bye_of(data: &[u8]) -> Option<u32> {
    if !rtp::is_rtcp(data) {
        return None;
    }
    parse_compound(data).find_map(|p| match p {
        Ok(RtcpPacket::Bye(b)) => b.ssrcs().next(),
        _ => None,
    })
}

#[tokio::test]
async fn sigterm_releases_calls_with_cause_41_says_bye_and_exits_0() {
    let (mut node, control) = start();
    let mut c = Client::connect(control).await.expect("connects");
    let phone = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let local = phone.local_addr().unwrap();
    let offer = MediaOffer {
        // RTCP on the RTP socket: the BYE arrives where the mix does.
        rtcp_mux: true,
        ..MediaOffer::plain(local, CodecDesc::pcmu())
    };
    let answer = c
        .setup("call-1", "*210#", true, &offer)
        .await
        .expect("answered");
    assert!(matches!(answer, CallAnswer::Connect { .. }), "{answer:?}");
    // The node sends the mix: its SSRC is the one the BYE must name.
    let mut buf = [0u8; 1500];
    let ssrc = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (n, _) = phone.recv_from(&mut buf).await.expect("receives");
            if let Ok(p) = rtp::RtpPacket::parse(&buf[..n]) {
                return p.ssrc;
            }
        }
    })
    .await
    .expect("the mix arrives");

    let pid = node.0.id().to_string();
    let sent_at = Instant::now();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("kill runs").success());

    let release = c
        .wait_for("Release", |m| matches!(m, ServerMsg::Release { .. }))
        .await
        .expect("the controller is told");
    let ServerMsg::Release { call, cause, .. } = release else {
        unreachable!()
    };
    assert_eq!((call.as_str(), cause), ("call-1", 41));
    let bye = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let (n, _) = phone.recv_from(&mut buf).await.expect("receives");
            if let Some(s) = bye_of(&buf[..n]) {
                return s;
            }
        }
    })
    .await
    .expect("an RTCP BYE arrives");
    assert_eq!(bye, ssrc);
    assert!(
        c.closed_within(Duration::from_secs(3)).await,
        "session closed"
    );
    let status = loop {
        if let Some(status) = node.0.try_wait().expect("waits") {
            break status;
        }
        assert!(
            sent_at.elapsed() < Duration::from_secs(4),
            "the node exits within 4 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}
