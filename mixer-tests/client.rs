//! Tests of the control client against a real node on loopback and a fake one.

use futures_util::{SinkExt, StreamExt};
use scnf::config::Config;
use scnf::control::ControlHandle;
use scnf::NodeHandle;
use scnf_core::control::msg::CodecDesc;
use scnf_core::control::msg::MediaOffer;
use scnf_core::control::msg::ServerMsg;
use scnf_testkit::client::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "client-test-secret";

/// Each test node gets its own slice of 36000-36199.
static NEXT_PORT: AtomicU16 = AtomicU16::new(36_000);

struct TestNode {
    node: NodeHandle,
    control: ControlHandle,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.control.stop();
        self.node.shutdown();
    }
}

async fn node(password: Option<&str>) -> TestNode {
    let base = NEXT_PORT.fetch_add(10, Ordering::Relaxed);
    let mut cfg = Config::default();
    cfg.rtp.workers = 1;
    cfg.rtp.port_min = base;
    cfg.rtp.port_max = base + 9;
    cfg.control.listen = "127.0.0.1:0".parse().expect("a socket address");
    cfg.control.password = password.map(String::from);
    let node = NodeHandle::start(&cfg).expect("the test node starts");
    let control = scnf::control::start(node.clone(), &cfg)
        .await
        .expect("the control listener starts");
    TestNode { node, control }
}

async fn logged_in(n: &TestNode) -> Client {
    let mut c = Client::connect(n.control.local).await.expect("connects");
    c.login("test", SECRET.as_bytes()).await.expect("logs in");
    c
}

/// A PCMU offer towards a socket the test keeps open.
async fn offer() -> (UdpSocket, MediaOffer) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let local = sock.local_addr().expect("bound");
    (sock, MediaOffer::plain(local, CodecDesc::pcmu()))
}

#[tokio::test]
async fn login_with_the_right_secret_succeeds_and_the_node_proves_it_knows_it() {
    let n = node(Some(SECRET)).await;
    let mut c = Client::connect(n.control.local).await.expect("connects");
    let auth = c.login_optional("test", SECRET.as_bytes()).await;
    assert_eq!(auth.expect("logs in"), NodeAuth::Proven);
    // Logged in: requests are served.
    assert_eq!(c.status().await.expect("status").rooms.len(), 0);
}

#[tokio::test]
async fn login_with_a_wrong_secret_fails_and_requests_stay_refused() {
    let n = node(Some(SECRET)).await;
    let mut c = Client::connect(n.control.local).await.expect("connects");
    let err = c.login("test", b"not-the-secret").await.unwrap_err();
    assert!(matches!(err, ClientError::LoginFailed { .. }), "{err:?}");
    let err = c.status().await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { .. }), "{err:?}");
}

#[tokio::test]
async fn a_node_without_password_is_accepted_only_when_the_caller_allows_it() {
    let n = node(None).await;
    let mut c = Client::connect(n.control.local).await.expect("connects");
    let err = c.login("test", b"any").await.unwrap_err();
    assert!(matches!(err, ClientError::NoProof), "{err:?}");
    let mut c = Client::connect(n.control.local).await.expect("connects");
    let auth = c.login_optional("test", b"any").await.expect("logs in");
    assert_eq!(auth, NodeAuth::Open);
}

#[tokio::test]
async fn a_setup_that_creates_a_room_connects_with_the_nodes_media_address() {
    let n = node(Some(SECRET)).await;
    let mut c = logged_in(&n).await;
    let (_sock, offer) = offer().await;
    let answer = c
        .setup("c1", "*210#", false, &offer)
        .await
        .expect("answered");
    let CallAnswer::Connect { room, answer, .. } = &answer else {
        panic!("not connected: {answer:?}");
    };
    assert_eq!(room, "10");
    assert_eq!(answer.codec.name, "PCMU");
    assert_eq!(answer.address, offer.address);
    let status = c.status().await.expect("status");
    assert_eq!(status.rooms.len(), 1);
    assert_eq!(status.rooms[0].members[0].call, "c1");
    c.release("c1", None).await.expect("released");
}

#[tokio::test]
async fn a_setup_refused_with_cause_34_is_a_release_value_not_an_error() {
    let n = node(Some(SECRET)).await;
    let mut c = logged_in(&n).await;
    let (_sock, offer) = offer().await;
    let answer = c
        .setup("c1", "4711#", false, &offer)
        .await
        .expect("answered");
    assert!(
        matches!(answer, CallAnswer::Release { cause: 34, .. }),
        "{answer:?}"
    );
    assert_eq!(answer.media_addr(), None);
}

#[tokio::test]
async fn holding_an_unknown_call_is_refused() {
    let n = node(Some(SECRET)).await;
    let mut c = logged_in(&n).await;
    match c.hold("nope").await.unwrap_err() {
        ClientError::Refused { error, of } => {
            assert!(error.contains("unknown call"), "{error}");
            assert_eq!(of.as_deref(), Some("Hold"));
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn events_that_arrive_while_waiting_are_queued_in_order() {
    let n = node(Some(SECRET)).await;
    let mut c = logged_in(&n).await;
    let (_sock, offer) = offer().await;
    let answer = c
        .setup("c1", "*210#", false, &offer)
        .await
        .expect("answered");
    let CallAnswer::Connect { participant, .. } = answer else {
        panic!("not connected: {answer:?}");
    };
    c.release("c1", None).await.expect("released");
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(c.next_event().await.expect("an event"));
    }
    assert!(matches!(&seen[0], Event::Room(ServerMsg::RoomCreated { room, .. }) if room == "10"));
    let joined = Event::Room(ServerMsg::ParticipantJoined {
        room: "10".into(),
        participant,
        call: "c1".into(),
        node: None,
    });
    assert_eq!(seen[1], joined);
    assert!(
        matches!(&seen[2], Event::Room(ServerMsg::ParticipantLeft { call, .. }) if call == "c1")
    );
    assert_eq!(
        seen[3],
        Event::Room(ServerMsg::RoomClosed { room: "10".into() })
    );
    c.set_timeout(Duration::from_millis(100));
    let err = c.next_event().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn an_incomplete_number_awaits_digits_and_info_completes_it() {
    let n = node(Some(SECRET)).await;
    let mut c = logged_in(&n).await;
    let (_a, first) = offer().await;
    let (_b, second) = offer().await;
    let created = c
        .setup("c1", "*210#", false, &first)
        .await
        .expect("answered");
    assert!(matches!(created, CallAnswer::Connect { .. }), "{created:?}");
    // "1" is the head of room 10: the node waits silently for more digits.
    let waiting = c.setup("c2", "1", false, &second).await.expect("answered");
    assert_eq!(waiting, CallAnswer::AwaitingDigits);
    let joined = c.info("c2", "0", true).await.expect("answered");
    assert!(
        matches!(&joined, CallAnswer::Connect { room, .. } if room == "10"),
        "{joined:?}"
    );
}

/// Calls `c1` into a new room 10; returns its media socket (keep it open).
async fn connect_c1_in_a_new_room(c: &mut Client) -> UdpSocket {
    let (sock, offer) = offer().await;
    let answer = c.setup("c1", "*210#", false, &offer).await;
    assert!(
        matches!(answer, Ok(CallAnswer::Connect { .. })),
        "{answer:?}"
    );
    sock
}

#[tokio::test]
async fn raw_frames_are_answered_as_unasked_messages_shared_with_the_event_queue() {
    let n = node(Some(SECRET)).await;
    let mut c = logged_in(&n).await;
    c.set_keep_seen(true);
    c.send_json(&serde_json::json!({"mt": "Status"}))
        .await
        .expect("sent");
    let status = c
        .wait_for("StatusResult", |m| {
            matches!(m, ServerMsg::StatusResult { .. })
        })
        .await
        .expect("answered");
    assert!(matches!(status, ServerMsg::StatusResult { rooms, .. } if rooms.is_empty()));
    c.send_text("{{{").await.expect("sent");
    let error = c
        .wait_for("Error", |m| matches!(m, ServerMsg::Error { .. }))
        .await
        .expect("answered");
    assert!(
        matches!(&error, ServerMsg::Error { error, .. } if error.contains("malformed JSON")),
        "{error:?}"
    );
    let _sock = connect_c1_in_a_new_room(&mut c).await;
    // Taken by the raw wait, so the event queue goes on with the next event.
    let created = c
        .wait_for("RoomCreated", |m| {
            matches!(m, ServerMsg::RoomCreated { .. })
        })
        .await
        .expect("the room's creation");
    assert!(
        c.arrives(Duration::from_secs(2), |m| matches!(
            m,
            ServerMsg::ParticipantJoined { .. }
        ))
        .await
    );
    let next = c.next_event().await.expect("an event");
    assert!(
        matches!(&next, Event::Room(ServerMsg::ParticipantJoined { call, .. }) if call == "c1"),
        "{next:?}"
    );
    assert!(
        !c.arrives(Duration::from_millis(200), |m| m.is_event())
            .await
    );
    assert!(!c.closed_within(Duration::from_millis(100)).await);
    // Everything read since keeping began, answers to typed requests included, in
    // arrival order (the call's answer and its room's events in the node's order).
    let kinds: Vec<&str> = c
        .seen()
        .iter()
        .map(|m| match m {
            ServerMsg::StatusResult { .. } => "StatusResult",
            ServerMsg::Error { .. } => "Error",
            ServerMsg::Connect { .. } => "Connect",
            ServerMsg::RoomCreated { .. } => "RoomCreated",
            ServerMsg::ParticipantJoined { .. } => "ParticipantJoined",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds[..2], ["StatusResult", "Error"], "{kinds:?}");
    let mut call = kinds[2..].to_vec();
    call.sort_unstable();
    assert_eq!(
        call,
        ["Connect", "ParticipantJoined", "RoomCreated"],
        "{kinds:?}"
    );
    assert!(c.seen().contains(&created));
}

/// A fake node on loopback: answers the login with `proof` after a frame that is
/// not a protocol message.
async fn fake_node(proof: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let mut answers = [
            r#"{"mt":"AppChallengeResult","challenge":"00","version":1,"src":"1"}"#.to_string(),
            format!(
                r#"{{"mt":"AppLoginResult","ok":true,"proof":"{proof}","version":1,"src":"2"}}"#
            ),
        ]
        .into_iter();
        while let Some(Ok(_)) = ws.next().await {
            let _ = ws.send(Message::Text("{\"mt\":\"Bogus\"".into())).await;
            let _ = ws.send(Message::Binary(vec![1, 2, 3].into())).await;
            let Some(a) = answers.next() else { return };
            let _ = ws.send(Message::Text(a.into())).await;
        }
    });
    addr
}

#[tokio::test]
async fn a_proof_that_does_not_verify_is_refused_and_garbage_is_only_counted() {
    let addr = fake_node("00ff").await;
    let mut c = Client::connect(addr).await.expect("connects");
    let err = c
        .login_optional("test", SECRET.as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::BadProof), "{err:?}");
    assert_eq!(c.ignored(), 4);
    assert_eq!(c.poll_event(), None);
}

#[tokio::test]
async fn a_node_that_goes_away_ends_the_wait_with_closed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                let _ = ws.next().await;
                let _ = ws.close(None).await;
            }
        }
    });
    let mut c = Client::connect(addr).await.expect("connects");
    let err = c.status().await.unwrap_err();
    assert!(matches!(err, ClientError::Closed), "{err:?}");
}
