//! The real ffmpeg as a video peer: a live encoder sending RTP ([`FfmpegSource`])
//! and a decoder receiving it ([`FfmpegDecoder`]).
//!
//! The node forwards video it never decodes, so its own tests cannot tell whether
//! what it forwards still decodes. These helpers let a test ask an independent
//! implementation: ffmpeg encodes VP8 (libvpx) or H.264 (libx264) in real time and
//! sends it over RTP, and another ffmpeg receives a stream by an SDP file, decodes
//! every frame and reports how many it got and what it complained about.
//!
//! - A test that needs ffmpeg calls [`ffmpeg_available`] and skips, printing why,
//!   only when it is not on `PATH` (CI installs it); [`has_encoder`] tells whether
//!   this build has libx264.
//! - The source is killed when dropped. It ignores RTCP (the node's PLIs too): it
//!   sends a key frame every second by itself (`-g` = frame rate), which is what
//!   lets a viewer start or switch without one.
//! - The decoder listens on the RTP port of the address given and on the port
//!   after it (RTCP). [`FfmpegDecoder::spawn`] returns once ffmpeg has bound the
//!   port (seen in `/proc/net/udp`, so no probe socket races ffmpeg for it), so
//!   a sender started afterwards loses nothing. [`FfmpegDecoder::finish`] stops it
//!   with SIGINT (twice, see there; ffmpeg then flushes and exits) and waits a
//!   bounded time.
//! - H.264 goes over RTP in packetization mode 1 (RFC 6184 §6.3: single NAL units,
//!   STAP-A and FU-A), ffmpeg's default; SPS and PPS travel in band before every
//!   IDR, so the SDP needs no `sprop-parameter-sets`.
//!
//! What counts as a decode error: every line ffmpeg logs at level error or worse,
//! and warnings from the input side (the SDP/RTP demuxer, the decoder), such as
//! "Keyframe missing" or "RTP: missed 3 packets". Warnings about the (null)
//! output are not errors.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`FfmpegDecoder::spawn`] waits for ffmpeg to bind its port.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`FfmpegDecoder::finish`] waits for ffmpeg to exit after SIGINT.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Between the two SIGINTs of [`FfmpegDecoder::finish`].
const SIGINT_GAP: Duration = Duration::from_millis(200);
/// Lines ffmpeg logs because it was told to stop: not decode errors.
const STOP_LINES: [&str; 2] = [
    "Immediate exit requested",
    "Exiting normally, received signal",
];
/// Lines of ffmpeg's log kept for a report.
const LOG_LINES: usize = 400;

/// A video codec ffmpeg can send and receive over RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (RFC 7741), encoded by libvpx.
    Vp8,
    /// H.264 constrained baseline (RFC 6184, packetization mode 1), by libx264.
    H264,
}

impl VideoCodec {
    /// `"vp8"` or `"h264"` (any case).
    pub fn parse(name: &str) -> Option<VideoCodec> {
        match name.to_ascii_lowercase().as_str() {
            "vp8" => Some(VideoCodec::Vp8),
            "h264" => Some(VideoCodec::H264),
            _ => None,
        }
    }

    /// The encoder this codec needs in ffmpeg.
    pub fn encoder(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "libvpx",
            VideoCodec::H264 => "libx264",
        }
    }

    /// The SDP encoding name (`a=rtpmap`).
    pub fn sdp_name(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "VP8",
            VideoCodec::H264 => "H264",
        }
    }

    /// The encoder options after `-c:v`: real time, no B-frames or look-ahead (a
    /// conferencing encoder), a key frame every `fps` frames.
    fn encoder_args(self, kbps: u32, fps: u32) -> Vec<String> {
        let rate = format!("{kbps}k");
        let gop = fps.max(1).to_string();
        let mut a: Vec<String> = match self {
            VideoCodec::Vp8 => [
                "libvpx",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-lag-in-frames",
                "0",
                "-auto-alt-ref",
                "0",
                "-error-resilient",
                "1",
            ]
            .map(String::from)
            .to_vec(),
            VideoCodec::H264 => vec![
                "libx264".into(),
                "-tune".into(),
                "zerolatency".into(),
                "-profile:v".into(),
                "baseline".into(),
                "-x264-params".into(),
                format!("keyint={gop}:min-keyint={gop}:scenecut=0"),
            ],
        };
        a.extend(
            ["-b:v", &rate, "-maxrate", &rate, "-bufsize", &rate]
                .into_iter()
                .map(String::from),
        );
        a.extend(["-g".to_string(), gop.clone(), "-keyint_min".into(), gop]);
        a.extend(["-pix_fmt", "yuv420p"].map(String::from));
        a
    }
}

/// Whether `ffmpeg` runs from `PATH`.
pub fn ffmpeg_available() -> bool {
    Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this ffmpeg has the encoder `name` (e.g. `"libx264"`).
pub fn has_encoder(name: &str) -> bool {
    let Ok(out) = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(name))
}

/// Hands each line of a child's stderr to `on_line`, on a thread of its own (an
/// unread pipe would stall ffmpeg once full).
fn follow_stderr(
    child: &mut Child,
    mut on_line: impl FnMut(String) + Send + 'static,
) -> Option<JoinHandle<()>> {
    let err = child.stderr.take()?;
    Some(std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            on_line(line);
        }
    }))
}

/// Appends `line` to `log`, keeping the last [`LOG_LINES`].
fn keep_tail(log: &mut Vec<String>, line: String) {
    if log.len() == LOG_LINES {
        log.remove(0);
    }
    log.push(line);
}

/// Stops `child` with up to `signals` SIGINTs, [`SIGINT_GAP`] apart, and waits
/// for it to exit; after [`EXIT_TIMEOUT`] kills it and returns true.
fn interrupt(child: &mut Child, signals: u32) -> bool {
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let mut sent = 0u32;
    while matches!(child.try_wait(), Ok(None)) {
        let since = start.elapsed();
        if since > EXIT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return true;
        }
        if sent < signals && since >= SIGINT_GAP * sent {
            // SAFETY: kill(2) on the pid of a child the caller owns and has not
            // reaped yet (try_wait just said it runs), so the pid cannot have
            // been reused.
            unsafe { libc::kill(pid, libc::SIGINT) };
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A value shared with a stderr thread; a poisoned lock still holds good data
/// (the thread only appends).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A live ffmpeg encoder sending a test picture as RTP; killed when dropped
/// ([`FfmpegSource::stop`] stops it cleanly).
#[derive(Debug)]
pub struct FfmpegSource {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl FfmpegSource {
    /// Starts ffmpeg encoding `testsrc2` at `size` and `fps` in real time, at
    /// `kbps`, with a key frame every second, and sending it as RTP (SSRC `ssrc`,
    /// payload type `pt`, packets of at most 1200 bytes) to `dst`. Its RTCP
    /// sender reports go to the same port (RFC 5761 multiplexing, as the node
    /// receives a leg), not to the port after, which may be another leg's.
    /// Returns once the process runs; the first packet follows within about a
    /// frame interval.
    pub fn spawn(
        codec: VideoCodec,
        kbps: u32,
        size: (u32, u32),
        fps: u32,
        dst: SocketAddr,
        ssrc: u32,
        pt: u8,
    ) -> io::Result<FfmpegSource> {
        Self::spawn_from(None, codec, kbps, size, fps, dst, ssrc, pt)
    }

    /// [`FfmpegSource::spawn`], sending from local UDP port `local` (RTCP from the
    /// next one): a node knows a member's video stream by the address it comes
    /// from, which the member's offer names.
    #[allow(clippy::too_many_arguments)] // ffmpeg's own options, one to one
    pub fn spawn_from(
        local: Option<u16>,
        codec: VideoCodec,
        kbps: u32,
        size: (u32, u32),
        fps: u32,
        dst: SocketAddr,
        ssrc: u32,
        pt: u8,
    ) -> io::Result<FfmpegSource> {
        let (w, h) = size;
        let local = local.map_or(String::new(), |p| format!("&localrtpport={p}"));
        let mut cmd = Command::new("ffmpeg");
        cmd.args([
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-loglevel",
            "level+warning",
        ])
        .args(["-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={w}x{h}:rate={fps}"))
        .arg("-c:v")
        .args(codec.encoder_args(kbps, fps))
        .args(["-f", "rtp", "-ssrc"])
        .arg(ssrc.to_string())
        .arg("-payload_type")
        .arg(pt.to_string())
        .arg(format!(
            "rtp://{dst}?pkt_size=1200&rtcpport={}{local}",
            dst.port()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let tail = Arc::clone(&log);
        follow_stderr(&mut child, move |line| keep_tail(&mut lock(&tail), line));
        Ok(FfmpegSource { child, log })
    }

    /// The process id, e.g. for CPU figures.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether ffmpeg is still running (it stops on a bad option or codec).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What ffmpeg logged so far (warnings and errors).
    pub fn log(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    /// Stops ffmpeg between two frames: on SIGINT it finishes the frame it is
    /// sending and exits, where a kill (what dropping does) can cut a frame's
    /// packets short and leave the receiver a truncated picture to decode.
    /// Returns false if it had to be killed after [`EXIT_TIMEOUT`].
    pub fn stop(mut self) -> bool {
        !interrupt(&mut self.child, 1)
    }
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an [`FfmpegDecoder`] decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeReport {
    /// Frames decoded.
    pub frames: u64,
    /// Of which key frames.
    pub keyframes: u64,
    /// Whether the first frame decoded was a key frame (`None`: no frames).
    pub first_frame_key: Option<bool>,
    /// Picture size of the last frame decoded.
    pub size: Option<(u32, u32)>,
    /// Decode errors, one log line each (see the module doc), the first 400.
    pub errors: Vec<String>,
    /// ffmpeg's log apart from the per-frame lines (the last 400 lines).
    pub log: Vec<String>,
}

/// A receiving ffmpeg that decodes one RTP video stream and counts its frames.
#[derive(Debug)]
pub struct FfmpegDecoder {
    child: Child,
    /// Built line by line by the stderr thread.
    report: Arc<Mutex<DecodeReport>>,
    reader: Option<JoinHandle<()>>,
    sdp: PathBuf,
}

impl FfmpegDecoder {
    /// Writes an SDP file for `codec` with payload type `pt` at `listen` (the RTP
    /// port; RTCP on the next) and starts ffmpeg decoding what arrives there.
    /// Returns once ffmpeg listens, or an error if it does not within
    /// [`BIND_TIMEOUT`] (its log in the message).
    pub fn spawn(codec: VideoCodec, pt: u8, listen: SocketAddr) -> io::Result<FfmpegDecoder> {
        static SDP_SERIAL: AtomicU32 = AtomicU32::new(0);
        let sdp = std::env::temp_dir().join(format!(
            "scnf-ffmpeg-{}-{}-{}.sdp",
            std::process::id(),
            listen.port(),
            SDP_SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&sdp, sdp_text(codec, pt, listen))?;
        let mut child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-nostats",
                "-loglevel",
                "level+info",
            ])
            // One decoding thread: frame threads hold frames back until the
            // stream ends, and `frames()` should count what has arrived.
            .args(["-threads", "1"])
            .args(["-protocol_whitelist", "file,udp,rtp", "-i"])
            .arg(&sdp)
            .args(["-vf", "showinfo", "-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let report = Arc::new(Mutex::new(DecodeReport::default()));
        let shared = Arc::clone(&report);
        let reader = follow_stderr(&mut child, move |line| lock(&shared).add_line(line));
        let mut dec = FfmpegDecoder {
            child,
            report,
            reader,
            sdp,
        };
        let deadline = Instant::now() + BIND_TIMEOUT;
        loop {
            if udp_port_bound(listen.port()) {
                return Ok(dec);
            }
            let exited = !matches!(dec.child.try_wait(), Ok(None));
            if exited || Instant::now() > deadline {
                let why = if exited { "exited" } else { "did not bind" };
                let log = lock(&dec.report).log.join("\n");
                return Err(io::Error::other(format!(
                    "ffmpeg decoder {why} on UDP port {}:\n{log}",
                    listen.port()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> u64 {
        lock(&self.report).frames
    }

    /// Waits until at least `n` frames are decoded, at most `timeout`; returns
    /// whether they were.
    pub fn wait_frames(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.frames() < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Stops ffmpeg and reports what it decoded. Call it once the sender has
    /// stopped and the last packets had time to arrive.
    ///
    /// ffmpeg takes a first SIGINT as "stop after this packet", which never comes
    /// while it waits on a silent socket; a second one interrupts the wait, and
    /// ffmpeg still flushes and exits normally. After [`EXIT_TIMEOUT`] it is
    /// killed (and that is reported as an error).
    pub fn finish(mut self) -> DecodeReport {
        let timed_out = interrupt(&mut self.child, 2);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let mut report = lock(&self.report).clone();
        if timed_out {
            report.errors.push(format!(
                "ffmpeg did not exit within {EXIT_TIMEOUT:?} of SIGINT (killed)"
            ));
        }
        report
    }
}

impl Drop for FfmpegDecoder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.sdp);
    }
}

/// The SDP a decoder reads: one video stream at `listen`.
fn sdp_text(codec: VideoCodec, pt: u8, listen: SocketAddr) -> String {
    let (family, ip) = match listen {
        SocketAddr::V4(a) => ("IP4", a.ip().to_string()),
        SocketAddr::V6(a) => ("IP6", a.ip().to_string()),
    };
    let mut s = format!(
        "v=0\r\no=- 0 0 IN {family} {ip}\r\ns=scnf\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=video {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/90000\r\n",
        port = listen.port(),
        name = codec.sdp_name(),
    );
    if codec == VideoCodec::H264 {
        s.push_str(&format!("a=fmtp:{pt} packetization-mode=1\r\n"));
    }
    s
}

/// Whether some socket is bound to UDP port `port` (`/proc/net/udp`, `udp6`).
fn udp_port_bound(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            // Column 2 is local_address ("0100007F:9C40").
            t.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(1))
                .any(|local| format!("{local} ").ends_with(&needle))
        })
    })
}

impl DecodeReport {
    /// Takes in one line of the decoder's log (`level+info` prefixes): a
    /// `showinfo` frame line, an error, or other log.
    fn add_line(&mut self, line: String) {
        if line.contains("Parsed_showinfo") {
            if let Some(key) = field(&line, "iskey:") {
                let key = key == "1";
                self.frames += 1;
                self.keyframes += u64::from(key);
                self.first_frame_key.get_or_insert(key);
                self.size = field(&line, " s:").and_then(|s| {
                    let (w, h) = s.split_once('x')?;
                    Some((w.parse().ok()?, h.parse().ok()?))
                });
            }
            return;
        }
        let severe = ["[error]", "[fatal]", "[panic]"]
            .iter()
            .any(|l| line.contains(l));
        // "[rtp @ 0x5...] [warning] ...": a warning with a context is the input
        // side's (demuxer, depacketizer, decoder); bare ones are about the output.
        let input_warning =
            line.contains("[warning]") && line.starts_with('[') && line.contains(" @ 0x");
        let stopping = STOP_LINES.iter().any(|l| line.contains(l));
        if (severe || input_warning) && !stopping && self.errors.len() < LOG_LINES {
            self.errors.push(line.clone());
        }
        keep_tail(&mut self.log, line);
    }
}

/// The value after `key` in a showinfo line, up to the next space.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    line[at..].split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoder_log_gives_frames_key_frames_size_and_errors() {
        let log: Vec<String> = [
            "[info] Input #0, sdp, from 'x.sdp':",
            "[Parsed_showinfo_0 @ 0x55d8] [info] n:   0 pts:      0 pts_time:0 pos: -1 fmt:yuv420p sar:1/1 s:640x360 i:P iskey:1 type:I checksum:E11AE298",
            "[Parsed_showinfo_0 @ 0x55d8] [info] n:   1 pts:   6000 pts_time:0.06 pos: -1 fmt:yuv420p sar:1/1 s:640x360 i:P iskey:0 type:P checksum:22686DB9",
            "[Parsed_showinfo_0 @ 0x55d8] [info] config in time_base: 1/90000, frame_rate: 15/1",
            "[h264 @ 0x55f4ccab3000] [error] non-existing PPS 0 referenced",
            "[sdp @ 0x559ef94d0980] [warning] Keyframe missing",
            "[warning] Output file is empty, nothing was encoded",
            "[error] x.sdp: Immediate exit requested",
            "[info] Exiting normally, received signal 2.",
        ]
        .map(String::from)
        .to_vec();
        let mut r = DecodeReport::default();
        for line in &log {
            r.add_line(line.clone());
        }
        assert_eq!((r.frames, r.keyframes), (2, 1));
        assert_eq!(r.first_frame_key, Some(true));
        assert_eq!(r.size, Some((640, 360)));
        assert_eq!(r.errors, [log[4].clone(), log[5].clone()]);
        assert_eq!(r.log.len(), 6);
    }

    #[test]
    fn the_sdp_names_the_port_payload_type_and_codec() {
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let vp8 = sdp_text(VideoCodec::Vp8, 96, addr);
        assert!(vp8.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(vp8.contains("m=video 40000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"));
        assert!(!vp8.contains("fmtp"));
        let h264 = sdp_text(VideoCodec::H264, 97, addr);
        assert!(h264.contains("a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1\r\n"));
    }

    #[test]
    fn a_bound_udp_port_shows_in_proc() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        assert!(udp_port_bound(port));
    }

    #[test]
    fn codec_names_parse_in_any_case() {
        assert_eq!(VideoCodec::parse("VP8"), Some(VideoCodec::Vp8));
        assert_eq!(VideoCodec::parse("h264"), Some(VideoCodec::H264));
        assert_eq!(VideoCodec::parse("av1"), None);
    }
}
