//! Interop tests against a real Janus (all `#[ignore]`).
//!
//! Start Janus first, then name its HTTP API:
//! ```text
//! bench/janus/start            # prints Janus's PID
//! SCNF_JANUS=127.0.0.1:8088 cargo test --lib rtpgen::janus -- --ignored --nocapture
//! ```
//! Without `SCNF_JANUS` each test prints why it skipped and passes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::{Janus, JanusCodec};
use scnf_media::codec::g711::{ulaw_decode, ulaw_encode};
use scnf_media::codec::FRAME_SAMPLES;
use scnf_media::probe::tone::{level_dbfs_blocked, Tone, TONES, TONE_DBFS};
use scnf_media::rtp::{RtpHeader, RtpPacket, RTP_HEADER_LEN};

fn janus_addr() -> Option<SocketAddr> {
    match std::env::var("SCNF_JANUS") {
        Ok(v) => Some(
            v.parse()
                .expect("SCNF_JANUS must be ip:port, e.g. 127.0.0.1:8088"),
        ),
        Err(_) => {
            eprintln!("skipped: run bench/janus/start and set SCNF_JANUS=127.0.0.1:8088");
            None
        }
    }
}

/// A room number unlikely to collide with another run on the same Janus.
fn room() -> u64 {
    4_000_000 + u64::from(std::process::id())
}

/// Sends `frames` 20 ms PCMU frames of `freq` from `sock` to `to`, receiving at the
/// same time, and keeps listening 300 ms after the last frame. Returns what was
/// heard, decoded, in arrival order.
async fn talk(sock: UdpSocket, to: SocketAddr, freq: f64, frames: u32) -> Vec<i16> {
    let mut tone = Tone::at_dbfs(freq, TONE_DBFS);
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut out = [0u8; RTP_HEADER_LEN + FRAME_SAMPLES];
    let mut rx = [0u8; 2048];
    let mut heard = Vec::new();
    let mut header = RtpHeader {
        payload_type: 0,
        ssrc: 0x5ca1_0000 ^ freq as u32,
        ..RtpHeader::default()
    };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut sent = 0;
    let end = tokio::time::sleep(Duration::from_millis(20 * u64::from(frames) + 300));
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = tick.tick(), if sent < frames => {
                tone.fill(&mut pcm);
                header.write(&mut out).expect("buffer holds a header");
                for (o, &s) in out[RTP_HEADER_LEN..].iter_mut().zip(&pcm) {
                    *o = ulaw_encode(s);
                }
                sock.send_to(&out, to).await.expect("send to Janus");
                header.sequence = header.sequence.wrapping_add(1);
                header.timestamp = header.timestamp.wrapping_add(FRAME_SAMPLES as u32);
                sent += 1;
            }
            r = sock.recv_from(&mut rx) => {
                let (n, _) = r.expect("receive");
                let p = RtpPacket::parse(&rx[..n]).expect("Janus sends valid RTP");
                assert_eq!(p.payload_type, 0, "Janus sends PCMU to a PCMU participant");
                heard.extend(p.payload.iter().map(|&c| ulaw_decode(c)));
            }
            _ = &mut end => return heard,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running Janus: bench/janus/start, SCNF_JANUS=127.0.0.1:8088"]
async fn two_plain_rtp_participants_hear_each_other_and_not_themselves() {
    let Some(addr) = janus_addr() else { return };
    let mut j = Janus::connect(addr).await.expect("session");
    let room = room();
    j.create_room(room).await.expect("room");
    let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind a");
    let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind b");
    let ca = a.local_addr().expect("bound");
    let cb = b.local_addr().expect("bound");
    let la = j.join(room, JanusCodec::Pcmu, ca).await.expect("join a");
    let lb = j.join(room, JanusCodec::Pcmu, cb).await.expect("join b");
    assert_eq!((la.payload_type, lb.payload_type), (0, 0));
    assert_ne!(
        la.media, lb.media,
        "Janus gives each participant its own port"
    );

    let (fa, fb) = (TONES[0], TONES[1]);
    let (heard_a, heard_b) = tokio::join!(talk(a, la.media, fa, 100), talk(b, lb.media, fb, 100));
    // Skip the first 0.5 s: Janus's jitter buffer fills and the mix starts.
    let settle = 4000;
    for (who, heard, other, own) in [("A", &heard_a, fb, fa), ("B", &heard_b, fa, fb)] {
        assert!(
            heard.len() > settle + 8000,
            "{who} heard only {} samples",
            heard.len()
        );
        let tail = &heard[settle..];
        let other_db = level_dbfs_blocked(tail, other, 1600);
        let own_db = level_dbfs_blocked(tail, own, 1600);
        eprintln!(
            "{who}: {} samples; other's tone {other_db:.1} dBFS, own {own_db:.1} dBFS",
            heard.len()
        );
        assert!(
            (other_db - TONE_DBFS).abs() < 3.0,
            "{who} hears the other at {other_db:.1} dBFS, sent at {TONE_DBFS}"
        );
        assert!(
            own_db < other_db - 40.0,
            "{who} hears itself at {own_db:.1} dBFS"
        );
    }
    j.leave(&la).await.expect("leave a");
    j.leave(&lb).await.expect("leave b");
    j.destroy_room(room).await.expect("destroy");
    j.close().await.expect("close");
}

/// Joins participants one after another (addresses only; Janus needs no socket on
/// our side to accept a join) and prints the rate, then leaves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running Janus: bench/janus/start, SCNF_JANUS=127.0.0.1:8088"]
async fn hundreds_of_participants_join_one_after_another() {
    let Some(addr) = janus_addr() else { return };
    const N: u32 = 300;
    let mut j = Janus::connect(addr).await.expect("session");
    let room = room() + 1;
    j.create_room(room).await.expect("room");
    let start = std::time::Instant::now();
    let mut legs = Vec::new();
    let mut first_100 = Duration::ZERO;
    for i in 0..N {
        if i == 100 {
            first_100 = start.elapsed();
        }
        let ip = std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
        let leg = j
            .join(room, JanusCodec::Pcmu, SocketAddr::new(ip.into(), 5004))
            .await
            .unwrap_or_else(|e| panic!("join {i}: {e}"));
        legs.push(leg);
    }
    let joined = start.elapsed();
    eprintln!("first 100 joins {first_100:.2?}, all {N} {joined:.2?}");
    let start = std::time::Instant::now();
    for leg in &legs {
        j.leave(leg).await.expect("leave");
    }
    let left = start.elapsed();
    eprintln!(
        "{N} joins in {joined:.2?} ({:.0}/s), {N} leaves in {left:.2?} ({:.0}/s), {} events dropped",
        f64::from(N) / joined.as_secs_f64(),
        f64::from(N) / left.as_secs_f64(),
        j.dropped_events()
    );
    let mut media: Vec<SocketAddr> = legs.iter().map(|l| l.media).collect();
    media.sort();
    media.dedup();
    assert_eq!(media.len(), legs.len(), "one Janus port per participant");
    j.destroy_room(room).await.expect("destroy");
    j.close().await.expect("close");
}
