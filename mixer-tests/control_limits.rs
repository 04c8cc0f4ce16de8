//! The control listener's limits on real sockets: nobody without the secret can lock
//! a controller out, a controller that stops answering is noticed and its calls are
//! released, and broken frames close with the code that names the problem.

use crate::support::{control_node, controller, exclusive, new_phone};
use futures_util::{SinkExt, StreamExt};
use scnf_core::control::msg::ServerMsg;
use scnf_media::codec::CodecKind;
use scnf_media::probe::tone::TONES;
use scnf_testkit::client::CallAnswer;
use scnf_testkit::participant::Source;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const SECRET: &[u8] = b"correct horse battery staple";

/// A TCP connection to `to` from the loopback address `src` (any of 127.0.0.0/8).
async fn tcp_from(src: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((src, 0)))?;
    socket.connect(to).await
}

/// A WebSocket session from `src` that will never log in.
async fn ws_from(src: [u8; 4], to: SocketAddr) -> Option<WebSocketStream<TcpStream>> {
    let tcp = tcp_from(src, to).await.ok()?;
    let url = format!("ws://{to}/");
    let handshake = tokio_tungstenite::client_async(url, tcp);
    match tokio::time::timeout(Duration::from_secs(2), handshake).await {
        Ok(Ok((ws, _))) => Some(ws),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_holding_every_slot_cannot_lock_out_a_controller_with_the_secret() {
    let _machine = exclusive().await;
    // The shipped limits: 64 connections, and a password.
    let (node, control) = control_node(|c| {
        c.control.password = Some(String::from_utf8(SECRET.to_vec()).unwrap());
    })
    .await;
    let addr = control.local;
    // Eight source addresses, each with six sessions that never log in and two
    // slowloris connections that never finish the handshake: 64 in all.
    let mut idle = Vec::new();
    let mut slow = Vec::new();
    for host in 2..=9u8 {
        for _ in 0..6 {
            idle.extend(ws_from([127, 0, 0, host], addr).await);
        }
        for _ in 0..2 {
            let mut tcp = tcp_from([127, 0, 0, host], addr).await.expect("connect");
            let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
            slow.push(tcp);
        }
    }
    // And a loop that keeps reconnecting from a ninth address (bounded).
    let stop = Arc::new(AtomicBool::new(false));
    let looping = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut kept = VecDeque::new();
            for _ in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(ws) = ws_from([127, 0, 0, 10], addr).await {
                    kept.push_back(ws);
                    if kept.len() > 8 {
                        kept.pop_front();
                    }
                }
                tokio::task::yield_now().await;
            }
        })
    };
    assert_eq!(idle.len(), 48, "the attacker got its sessions");

    let honest = async {
        let mut c = controller(addr).await;
        c.login("pbx", SECRET).await.expect("logs in");
        let health = c.health().await.expect("health");
        (c, health)
    };
    let (mut c, health) = tokio::time::timeout(Duration::from_secs(2), honest)
        .await
        .expect("the controller with the secret is in and answered within 2 s");
    assert!(!health.workers.is_empty(), "{health:?}");
    // It stays in while the attack goes on.
    assert!(c.health().await.is_ok());
    stop.store(true, Ordering::Relaxed);
    looping.await.unwrap();
    drop((idle, slow));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_stops_answering_is_closed_and_its_call_is_released() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|c| {
        c.control.ping_interval_ms = 200;
        c.control.idle_timeout_ms = 1_000;
    })
    .await;
    let mut watcher = controller(control.local).await;
    let mut frozen = controller(control.local).await;
    let phone = new_phone(CodecKind::Pcma, Source::tone(TONES[0])).await;
    let out = frozen
        .setup("a", "*355#", false, &phone.offer(true))
        .await
        .expect("answered");
    assert!(matches!(out, CallAnswer::Connect { .. }), "{out:?}");
    phone.connect(out.media_addr().expect("a connected call has media"));
    // From here on `frozen` reads nothing: no frame, no pong. The watcher reads (and
    // so answers the node's pings) while it waits for the call to leave.
    let left = watcher
        .arrives(
            Duration::from_secs(5),
            |m| matches!(m, ServerMsg::ParticipantLeft { call, .. } if call == "a"),
        )
        .await;
    assert!(left, "the frozen controller's call is still up");
    assert!(frozen.closed_within(Duration::from_secs(1)).await);
    let status = watcher.status().await.expect("status");
    assert_eq!(status.channels.used, 0);
    // The operator sees why: the node closed one session for not taking part (as
    // silent, or, when a write to it was blocked at that moment, as not reading).
    let health = watcher.health().await.expect("health");
    let closed = &health.control.closed;
    let counted = ["idle timeout", "not reading"]
        .iter()
        .filter_map(|r| closed.get(*r))
        .sum::<u64>();
    assert_eq!(counted, 1, "{:?}", health.control);
    assert_eq!(closed.values().sum::<u64>(), 1, "{:?}", health.control);
    assert_eq!(health.control.sessions, 1);
    node.shutdown();
}

/// Reads (and so answers pings) until the node's close frame; its code and reason.
async fn close_frame(ws: &mut WebSocketStream<TcpStream>) -> Option<(CloseCode, String)> {
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(frame) = msg {
                return frame.map(|f| (f.code, f.reason.to_string()));
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .expect("closed within 3 s")
}

async fn close_code(ws: &mut WebSocketStream<TcpStream>) -> Option<CloseCode> {
    close_frame(ws).await.map(|(code, _)| code)
}

fn text_frame(payload: &[u8], last: bool) -> Message {
    Message::Frame(Frame::message(
        payload.to_vec(),
        OpCode::Data(Data::Text),
        last,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_that_is_not_utf8_closes_with_1007_and_one_too_big_with_1009() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|_| {}).await;
    let addr = control.local;
    let mut ws = ws_from([127, 0, 0, 1], addr).await.expect("a session");
    ws.send(text_frame(&[b'{', 0xc3, 0x28, b'}'], true))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Invalid));
    let mut ws = ws_from([127, 0, 0, 1], addr).await.expect("a session");
    let huge = format!(r#"{{"mt":"Status","pad":"{}"}}"#, "x".repeat(70_000));
    let _ = ws.send(Message::Text(huge.into())).await;
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));
    // The node still serves.
    let mut c = controller(addr).await;
    assert!(c.health().await.is_ok());
    node.shutdown();
}

/// Reads raw bytes (no WebSocket layer, so no pong goes back) until the node closes
/// the TCP connection; what it sent.
async fn raw_until_closed(tcp: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the node closed the connection in time");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_last_fragment_never_comes_does_not_hold_a_slot() {
    let _machine = exclusive().await;
    // Logged in (no password on loopback): the idle timeout ends it.
    let (node, control) = control_node(|c| {
        c.control.ping_interval_ms = 200;
        c.control.idle_timeout_ms = 800;
    })
    .await;
    let mut ws = ws_from([127, 0, 0, 1], control.local)
        .await
        .expect("a session");
    ws.send(text_frame(br#"{"mt":"#, false)).await.unwrap();
    let sent = raw_until_closed(ws.get_mut(), Duration::from_secs(3)).await;
    // A close frame (0x88) with code 1008 and the reason.
    let close = sent
        .windows(4)
        .position(|w| w[0] == 0x88 && w[2..4] == 1008u16.to_be_bytes());
    assert!(close.is_some(), "no policy close in {sent:?}");
    // Silent and unfinished: either deadline may be the one that fires first.
    let text = String::from_utf8_lossy(&sent);
    assert!(
        text.contains("idle timeout") || text.contains("message not finished"),
        "{text}"
    );

    // A peer that answers every ping while its message stays unfinished: the message
    // must be complete within the idle timeout of its first fragment.
    let mut ws = ws_from([127, 0, 0, 1], control.local)
        .await
        .expect("a session");
    ws.send(text_frame(br#"{"mt":"#, false)).await.unwrap();
    let close = close_frame(&mut ws).await;
    assert_eq!(
        close,
        Some((CloseCode::Policy, "message not finished".to_string()))
    );
    node.shutdown();

    // Not logged in: the login deadline ends it.
    let (node, control) = control_node(|c| {
        c.control.password = Some(String::from_utf8(SECRET.to_vec()).unwrap());
        c.control.handshake_timeout_ms = 500;
        c.control.login_timeout_ms = 1_000;
    })
    .await;
    let mut ws = ws_from([127, 0, 0, 1], control.local)
        .await
        .expect("a session");
    ws.send(text_frame(br#"{"mt":"#, false)).await.unwrap();
    let sent = raw_until_closed(ws.get_mut(), Duration::from_secs(3)).await;
    assert!(String::from_utf8_lossy(&sent).contains("login timeout"));
    node.shutdown();
}
