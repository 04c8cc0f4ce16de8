//! The control listener under bad input, login and TLS: errors name the problem,
//! nothing panics, and established calls keep their audio.

use crate::support::{control_node, controller, exclusive, new_phone, wait};
use scnf_core::control::msg::ServerMsg;
use scnf_media::codec::CodecKind;
use scnf_media::probe::tone::TONES;
use scnf_testkit::client::{CallAnswer, Client, ClientError};
use scnf_testkit::participant::{Participant, Source};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const SECRET: &[u8] = b"correct horse battery staple";

fn with_password(c: &mut scnf::config::Config) {
    c.control.password = Some(String::from_utf8(SECRET.to_vec()).unwrap());
}

/// A `wss://` controller session trusting `cert`, keeping every message it reads.
async fn controller_tls(addr: SocketAddr, cert: &[u8]) -> Client {
    let config = scnf::tls::client_config_trusting(cert).unwrap();
    let mut c = Client::connect_tls(addr, "localhost", config)
        .await
        .expect("connect to control over TLS");
    c.set_keep_seen(true);
    c
}

/// Two phones talking in room 55 through a logged-in controller.
async fn established(c: &mut Client) -> (Participant, Participant) {
    let a = new_phone(CodecKind::Pcma, Source::tone(TONES[0])).await;
    let b = new_phone(CodecKind::G722, Source::tone(TONES[1])).await;
    for (call, phone) in [("a", &a), ("b", &b)] {
        let out = c
            .setup(call, "*355#", false, &phone.offer(true))
            .await
            .expect("answered");
        assert!(matches!(out, CallAnswer::Connect { .. }), "{out:?}");
        phone.connect(out.media_addr().expect("a connected call has media"));
    }
    (a, b)
}

async fn talking(a: &Participant, b: &Participant) {
    for _ in 0..80 {
        let w = Duration::from_millis(300);
        if a.level(TONES[1], w) > -32.0 && b.level(TONES[0], w) > -32.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the established call lost its audio");
}

async fn expect_error(c: &mut Client, text: &str, needle: &str) {
    c.send_text(text).await.expect("sent");
    let e = wait(c, "Error", |m| matches!(m, ServerMsg::Error { .. })).await;
    let ServerMsg::Error { error, .. } = &e else {
        unreachable!()
    };
    assert!(error.contains(needle), "{text} -> {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_huge_frames_wrong_auth_and_unknown_ids_leave_established_calls_talking() {
    let _machine = exclusive().await;
    let (node, control) = control_node(with_password).await;
    let mut c = controller(control.local).await;
    // Ok only with a proof from the node, and one that verifies.
    c.login("pbx", SECRET).await.expect("logs in");
    let (a, b) = established(&mut c).await;
    talking(&a, &b).await;

    // The logged-in controller sends nonsense: each gets an error naming it.
    let cases = [
        ("{{{", "malformed JSON"),
        ("[]", "JSON object"),
        ("null", "JSON object"),
        (r#"{"call":"a"}"#, "missing mt"),
        (r#"{"mt":"Reboot"}"#, "unknown message type"),
        (r#"{"mt":"Hold","call":"nobody"}"#, "unknown call"),
        (r#"{"mt":"Release","call":"nobody"}"#, "unknown call"),
        (r#"{"mt":"Info","call":"a","digits":"1"}"#, "digits"),
        (r#"{"mt":"Dtmf","call":"a","digit":"xx"}"#, "digit"),
        (
            r#"{"mt":"RemoteControl","call":"a","code":4000000000}"#,
            "remote control",
        ),
        (
            r#"{"mt":"Setup","call":"a","called":"1","media":{}}"#,
            "bad Setup",
        ),
        (
            r#"{"mt":"AppLogin","name":"x","cnonce":"y","digest":"z"}"#,
            "",
        ),
    ];
    for (text, needle) in cases {
        if needle.is_empty() {
            c.send_text(text).await.expect("sent");
            continue;
        }
        expect_error(&mut c, text, needle).await;
    }
    let dup = json!({"mt": "Setup", "call": "a", "called": "55", "complete": true,
                     "media": a.offer(true)});
    expect_error(&mut c, &dup.to_string(), "exists").await;
    c.send_binary(vec![1, 2, 3]).await.unwrap();
    wait(
        &mut c,
        "binary refused",
        |m| matches!(m, ServerMsg::Error { error, .. } if error.contains("binary")),
    )
    .await;

    // A stranger without the secret: refused, rate-limited, never in.
    let mut stranger = controller(control.local).await;
    expect_error(&mut stranger, r#"{"mt":"Status"}"#, "not logged in").await;
    let mut refusals = Vec::new();
    for _ in 0..7 {
        let before = stranger.seen().len();
        let e = stranger.login("pbx", b"wrong").await.unwrap_err();
        assert!(matches!(e, ClientError::LoginFailed { .. }), "{e:?}");
        // The refusal itself, as the node sent it.
        let Some(ServerMsg::AppLoginResult {
            ok, error, proof, ..
        }) = stranger.seen()[before..]
            .iter()
            .find(|m| matches!(m, ServerMsg::AppLoginResult { .. }))
        else {
            unreachable!()
        };
        assert!(!ok && proof.is_none());
        refusals.push(error.clone().unwrap_or_default());
    }
    assert_eq!(refusals[0], "bad-digest", "{refusals:?}");
    assert_eq!(refusals[6], "rate-limited", "{refusals:?}");
    expect_error(
        &mut stranger,
        r#"{"mt":"Hold","call":"a"}"#,
        "not logged in",
    )
    .await;

    // A frame over the limit closes only that connection.
    let mut big = controller(control.local).await;
    let huge = format!(r#"{{"mt":"Status","pad":"{}"}}"#, "x".repeat(200_000));
    let _ = big.send_text(&huge).await;
    assert!(
        !big.arrives(Duration::from_secs(2), |_| true).await,
        "a huge frame was answered"
    );

    // Raw TCP garbage where a WebSocket handshake belongs.
    let mut raw = tokio::net::TcpStream::connect(control.local).await.unwrap();
    raw.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    drop(raw);

    // After all that, the call is intact and the controller still works.
    talking(&a, &b).await;
    let status = c.status().await.expect("status");
    let (rooms, channels) = (status.rooms, status.channels);
    assert_eq!(channels.used, 2);
    assert_eq!(rooms.len(), 1);
    assert!(
        rooms[0].members.iter().all(|m| m.packets_received > 0),
        "{rooms:?}"
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_over_wss_proves_the_node_knows_the_secret() {
    let _machine = exclusive().await;
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("scnf-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let (node, control) = control_node(|c| {
        with_password(c);
        c.control.tls_cert = Some(cert_path.clone());
        c.control.tls_key = Some(key_path.clone());
        // Released when the session closes, not after a resume grace.
        c.control.resume_grace_ms = 0;
    })
    .await;
    assert!(control.tls);
    let mut c = controller_tls(control.local, key.cert.der()).await;
    c.login("pbx", SECRET).await.expect("logs in");
    let (a, b) = established(&mut c).await;
    talking(&a, &b).await;
    // Closing the session releases its calls (no resume grace).
    drop(c);
    let mut watcher = controller_tls(control.local, key.cert.der()).await;
    watcher.login("ops", SECRET).await.expect("logs in");
    let mut freed = false;
    for _ in 0..40 {
        if watcher.status().await.expect("status").channels.used == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "the closed session's calls were not released");
    let _ = std::fs::remove_dir_all(&dir);
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_logs_in_is_closed_after_the_login_timeout() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|c| {
        with_password(c);
        c.control.handshake_timeout_ms = 200;
        c.control.login_timeout_ms = 300;
    })
    .await;
    let mut idle = controller(control.local).await;
    let mut quick = controller(control.local).await;
    quick.login("pbx", SECRET).await.expect("logs in");
    assert!(
        idle.closed_within(Duration::from_secs(3)).await,
        "still open"
    );
    // The logged-in session is still served (the exact deadlines are the harness's
    // `control_paths` tests: this is the real transport's close).
    assert!(quick.status().await.is_ok());
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_naming_the_nodes_own_rtp_socket_is_refused_and_the_room_never_hears_itself() {
    let _machine = exclusive().await;
    let (node, control) = control_node(|_| {}).await;
    let mut c = controller(control.local).await;
    let (a, b) = established(&mut c).await;
    talking(&a, &b).await;
    let own = node.workers()[0].rtp;
    let mut offer = a.offer(true);
    // The node's RTP socket as advertised, and the same port through loopback.
    for (i, ip) in [own.ip(), "127.0.0.1".parse().unwrap()]
        .into_iter()
        .enumerate()
    {
        offer.address = ip;
        offer.port = own.port();
        let out = c
            .setup(&format!("loop{i}"), "*355#", false, &offer)
            .await
            .expect("answered");
        assert!(
            matches!(&out, CallAnswer::Release { cause: 100, reason } if reason.contains("own media")),
            "{ip}: {out:?}"
        );
    }
    // Had the node accepted it, the room's mix would come back in as a member and a
    // talker would hear itself.
    talking(&a, &b).await;
    let w = Duration::from_millis(500);
    assert!(a.level(TONES[0], w) < -45.0, "a hears itself");
    node.shutdown();
}
