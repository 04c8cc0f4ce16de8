//! Video through one node with sources nobody here wrote: ffmpeg encodes VP8
//! (libvpx) or H.264 (libx264) at two layers and sends RTP from the port the
//! member's offer names; another ffmpeg decodes the viewer's one stream while the
//! viewer switches between the layers, and must see no decode error, a keyframe
//! first and frames of both sizes.

use crate::support::{control_node, controller, exclusive, new_phone};
use scnf_core::control::msg::{CodecDesc, VideoLayer, VideoOffer};
use scnf_media::codec::CodecKind;
use scnf_testkit::client::{CallAnswer, Client};
use scnf_testkit::ffmpeg::{self, FfmpegDecoder, FfmpegSource, VideoCodec};
use scnf_testkit::participant::Source;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// A free loopback port for a process we start (bound and let go: the kernel does
/// not hand it out again at once).
fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().unwrap().port()
}

fn offer(port: u16, codec: &CodecDesc) -> VideoOffer {
    VideoOffer::plain(SocketAddr::from(([127, 0, 0, 1], port)), codec.clone())
}

/// A caller in room 77; its participant number.
async fn join(c: &mut Client, call: &str) -> (u64, scnf_testkit::participant::Participant) {
    let phone = new_phone(CodecKind::Pcmu, Source::Silence).await;
    let out = c
        .setup(call, "*377#", false, &phone.offer(true))
        .await
        .expect("answered");
    let CallAnswer::Connect { participant, .. } = out else {
        panic!("{call}: {out:?}");
    };
    phone.connect(out.media_addr().expect("media"));
    (participant, phone)
}

async fn layers_switch_cleanly(codec: VideoCodec, desc: CodecDesc) {
    let _machine = exclusive().await;
    let (_node, control) = control_node(|_| {}).await;
    let mut c = controller(control.local).await;
    let (p1, _pub_phone) = join(&mut c, "pub").await;
    let (_, _view_phone) = join(&mut c, "viewer").await;
    // The publisher's two layers, each from its own port.
    let mut sources = Vec::new();
    for (layer, kbps, size, ssrc) in [
        (VideoLayer::Low, 90, (320, 180), 0x10),
        (VideoLayer::High, 900, (640, 360), 0x20),
    ] {
        let port = free_port();
        let answer = c
            .video_send("pub", layer, &offer(port, &desc))
            .await
            .expect("VideoSend");
        let to = SocketAddr::new(answer.address, answer.port);
        let src = FfmpegSource::spawn_from(Some(port), codec, kbps, size, 15, to, ssrc, desc.pt)
            .expect("ffmpeg sends");
        sources.push(src);
    }
    let view_port = free_port();
    let listen = SocketAddr::from(([127, 0, 0, 1], view_port));
    let decoder = FfmpegDecoder::spawn(codec, desc.pt, listen).expect("ffmpeg decodes");
    let view = offer(view_port, &desc);
    let first = c
        .video_view("viewer", 1, p1, VideoLayer::Low, &view)
        .await
        .expect("VideoView");
    assert!(
        decoder.wait_frames(15, Duration::from_secs(10)),
        "LOW decodes: {} frames",
        decoder.frames()
    );
    // Switch up, then down again: one stream, its SSRC unchanged.
    for (layer, at_least) in [(VideoLayer::High, 45), (VideoLayer::Low, 75)] {
        let again = c
            .video_view("viewer", 1, p1, layer, &view)
            .await
            .expect("switch");
        assert_eq!(again.ssrc, first.ssrc, "a view keeps its SSRC");
        assert!(
            decoder.wait_frames(at_least, Duration::from_secs(10)),
            "{layer} decodes: {} frames",
            decoder.frames()
        );
    }
    let status = c.status().await.expect("Status");
    let room = &status.rooms[0];
    let views = &room.views;
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].switches, 2, "two switches: {views:?}");
    let low = room
        .video
        .iter()
        .find(|v| v.layer == Some(VideoLayer::Low))
        .expect("the LOW channel");
    assert!(low.packets > 0 && low.keyframe_requests >= 1, "{low:?}");
    assert_eq!(low.malformed, 0);
    c.video_view_stop("viewer", 1).await.expect("stop");
    drop(sources);
    let report = decoder.finish();
    assert!(
        report.errors.is_empty(),
        "decode errors: {:#?}",
        report.errors
    );
    assert_eq!(report.first_frame_key, Some(true), "{report:?}");
    assert!(report.frames >= 75, "{report:?}");
    assert_eq!(report.size, Some((320, 180)), "the last frames are LOW's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_from_ffmpeg_is_forwarded_and_decodes_cleanly_across_layer_switches() {
    if !ffmpeg::ffmpeg_available() {
        panic!("ffmpeg is needed (Debian: apt-get install ffmpeg; .ci/run installs it)");
    }
    layers_switch_cleanly(VideoCodec::Vp8, CodecDesc::vp8(96)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_from_ffmpeg_is_forwarded_and_decodes_cleanly_across_layer_switches() {
    if !ffmpeg::has_encoder("libx264") {
        panic!("ffmpeg with libx264 is needed (Debian's ffmpeg has it)");
    }
    layers_switch_cleanly(VideoCodec::H264, CodecDesc::h264(102)).await;
}
