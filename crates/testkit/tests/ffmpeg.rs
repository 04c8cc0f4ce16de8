//! The ffmpeg helpers against each other on loopback, no node in between: what
//! the source sends, the decoder decodes without an error. This is the baseline
//! the node's video tests compare with (same helpers, the node in the middle).
//!
//! Skipped, with a printed reason, only when ffmpeg is not on PATH.

use scnf_testkit::ffmpeg::{
    ffmpeg_available, has_encoder, FfmpegDecoder, FfmpegSource, VideoCodec,
};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Frames to wait for: two seconds at 15 fps, so at least one key frame after
/// the first.
const FRAMES: u64 = 30;
/// Bound on the wait (ffmpeg probes the stream before it decodes).
const WAIT: Duration = Duration::from_secs(20);

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

fn source_to_decoder(codec: VideoCodec, pt: u8) {
    let listen = free_rtp_addr();
    let dec = FfmpegDecoder::spawn(codec, pt, listen).unwrap();
    let mut src = FfmpegSource::spawn(codec, 250, (640, 360), 15, listen, 0x5c0f_0001, pt).unwrap();
    let got = dec.wait_frames(FRAMES, WAIT);
    let running = src.is_running();
    let src_log = src.log();
    let clean = src.stop();
    let r = dec.finish();
    assert!(running, "{codec:?} source stopped: {src_log:#?}");
    assert!(clean, "{codec:?} source did not stop on SIGINT");
    assert!(
        got,
        "{codec:?}: {} frames within {WAIT:?}: {r:#?}",
        r.frames
    );
    assert!(r.frames >= FRAMES);
    assert!(r.errors.is_empty(), "{codec:?}: {:#?}", r.errors);
    assert_eq!(r.first_frame_key, Some(true), "{codec:?}");
    assert!(
        r.keyframes >= 2,
        "{codec:?}: a key frame every second: {r:#?}"
    );
    assert_eq!(r.size, Some((640, 360)), "{codec:?}");
}

#[test]
fn vp8_from_ffmpeg_decodes_on_loopback_without_errors() {
    if !ffmpeg_available() {
        eprintln!("skipped: ffmpeg is not on PATH");
        return;
    }
    source_to_decoder(VideoCodec::Vp8, 96);
}

#[test]
fn h264_from_ffmpeg_decodes_on_loopback_without_errors() {
    if !ffmpeg_available() {
        eprintln!("skipped: ffmpeg is not on PATH");
        return;
    }
    if !has_encoder("libx264") {
        eprintln!("skipped: this ffmpeg has no libx264");
        return;
    }
    source_to_decoder(VideoCodec::H264, 97);
}
