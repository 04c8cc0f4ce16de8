//! rtpgen's VP8 as an independent decoder sees it: a [`ClipPublisher`] sends the
//! shipped clip over real UDP to ffmpeg, which must decode every frame without a
//! complaint, across the loop's wrap and across the jump a PLI makes.
//!
//! Skipped, with a printed reason, only when ffmpeg is not on PATH.

use rtpgen::video::{Clip, ClipPublisher, Layer};
use scnf_testkit::ffmpeg::{ffmpeg_available, FfmpegDecoder, VideoCodec};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A loopback address whose port and the port after it (RTCP) are free.
fn free_rtp_addr() -> SocketAddr {
    for _ in 0..100 {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rtp.local_addr().unwrap().port();
        if port % 2 == 0 && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return SocketAddr::from(([127, 0, 0, 1], port));
        }
    }
    panic!("no free even/odd UDP port pair on loopback");
}

#[test]
fn a_looped_clip_with_a_pli_jump_decodes_in_ffmpeg_without_errors() {
    if !ffmpeg_available() {
        eprintln!("skipped: ffmpeg is not on PATH");
        return;
    }
    let listen = free_rtp_addr();
    let dec = FfmpegDecoder::spawn(VideoCodec::Vp8, 96, listen).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let clip = Arc::new(Clip::shipped(Layer::Medium));
    let mut publisher = ClipPublisher::new(clip, 0x7157_0001, 96, 11);

    // 5 s, with a PLI at 2.3 s: the next frame (35) jumps back to the key frame
    // at 30, and the loop wraps 4 s of frames later.
    let start = Instant::now();
    let mut pli_sent = false;
    loop {
        let now = Instant::now();
        if now - start >= Duration::from_secs(5) {
            break;
        }
        if !pli_sent && now - start >= Duration::from_millis(2300) {
            publisher.on_pli(now);
            pli_sent = true;
        }
        publisher.poll(now, &mut |pkt| {
            sock.send_to(pkt, listen).unwrap();
        });
        let next = publisher.next_deadline().unwrap();
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let sent = publisher.stats();
    // The decoder lags the sender by its probing: wait for all but the last
    // frames (which a depacketizer may hold until the stream ends), then stop it.
    let most = dec.wait_frames(sent.frames - 2, Duration::from_secs(10));
    let r = dec.finish();
    assert!(
        most,
        "{} of {} frames decoded: {r:#?}",
        r.frames, sent.frames
    );
    assert_eq!(r.frames, sent.frames, "{r:#?}");
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    assert_eq!(r.first_frame_key, Some(true));
    assert_eq!(r.size, Some((640, 360)));
    assert_eq!(sent.plis, 1);
    // Key frames at 0, 1 and 2 s, the PLI's at 2.33 s, 3.33 s, 4.33 s (the wrap).
    assert_eq!(sent.keyframes, 6, "{sent:?}");
    assert_eq!(r.keyframes, sent.keyframes);
}
