//! A synthetic conference participant over real UDP: one socket and one media task
//! that send 20 ms frames of a known source in the participant's codec, paced on a
//! deadline schedule, and keep what comes back.
//!
//! It is the one real-UDP participant of the test kit, for two ways of listening:
//! - a measured call, [`Participant::run`]: send for a fixed time from a common
//!   start, then hand back everything heard and sent ([`Heard`]). `scnf demo` and the
//!   system tests judge mixing, loss concealment and delay from it. What it hears is
//!   placed on a timeline by RTP timestamp, so a lost packet leaves a gap of zeros
//!   instead of shifting everything after it.
//! - a live phone, [`Participant::connect`]: stream until dropped while the test
//!   changes what is played ([`Participant::play`]: tones, silence, in-band DTMF,
//!   speech-like sound), sends RFC 4733 digits ([`Participant::send_rfc4733`]) and
//!   asks "do I hear this tone now?" ([`Participant::level`], over the last
//!   [`RECENT`] samples). The call-control tests use it.
//!
//! One type for both, so that every real-socket test and the demo send with the same
//! pacing and listen with the same ears. Only packets from the remote in the
//! participant's payload type are heard; anything else is counted as ignored while
//! a run records. (The load swarm, [`crate::swarm`], and the harness's sans-IO phone
//! are other kinds: thousands on one socket, and no socket at all.)

use scnf_core::control::msg::{CodecDesc, Direction, MediaOffer};
use scnf_media::codec::{CodecKind, Decoder, Encoder, FRAME_SAMPLES, MAX_FRAME_PAYLOAD};
use scnf_media::probe::{level_dbfs, Tone, TONE_DBFS};
use scnf_media::rtp::{RtpHeader, RtpPacket, TelephoneEvent};
use scnf_media::util::Rng;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// The frame interval.
const PTIME_MS: u64 = 20;
/// Payload type of RFC 4733 telephone-events in [`Participant::offer`].
pub const TELEPHONE_EVENT_PT: u8 = 101;
/// Decoded samples kept for [`Participant::level`] (2 s at 8 kHz).
pub const RECENT: usize = 8000 * 2;
/// Largest decoded frame (120 ms at 48 kHz).
const MAX_DECODED: usize = 5760;

/// What a participant sends.
#[derive(Clone, Debug)]
pub enum Source {
    Tone(Tone),
    /// Uniform noise of the given peak amplitude from a seeded generator: every frame
    /// differs, which makes bit-exact comparisons unambiguous.
    Noise {
        amplitude: i16,
        seed: u64,
    },
    Silence,
    /// These samples once (in-band DTMF, speech), then silence.
    Samples(Arc<Vec<i16>>),
}

impl Source {
    /// A tone of `freq` at the probes' level ([`TONE_DBFS`]).
    pub fn tone(freq: f64) -> Source {
        Source::Tone(Tone::at_dbfs(freq, TONE_DBFS))
    }
}

/// Everything a participant heard (and sent) during a [`Participant::run`].
#[derive(Clone, Debug, Default)]
pub struct Heard {
    /// Decoded audio at 8 kHz, placed by RTP timestamp from the first packet.
    pub pcm: Vec<i16>,
    /// Received payloads in arrival order, with sequence numbers.
    pub payloads: Vec<(u16, Vec<u8>)>,
    /// When each of `payloads` arrived.
    pub arrivals: Vec<Instant>,
    /// Audio payloads sent, in order (telephone-events are not kept).
    pub sent: Vec<Vec<u8>>,
    /// When each of `sent` left.
    pub sent_at: Vec<Instant>,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Datagrams that were not RTP or not from the node.
    pub ignored: u64,
}

/// A participant with its own socket; its media task ends when it is dropped.
pub struct Participant {
    codec: CodecKind,
    payload_type: u8,
    local: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    /// Tells the media task that the schedule or the remote changed.
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Participant {
    /// Binds an ephemeral port on `ip` and starts the media task, silent until
    /// [`Participant::connect`] or [`Participant::run`] names the remote.
    pub async fn bind(
        ip: IpAddr,
        codec: CodecKind,
        source: Source,
    ) -> std::io::Result<Participant> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let bad = |e: scnf_media::codec::CodecError| std::io::Error::other(e.to_string());
        let payload_type = codec.static_payload_type().unwrap_or(96);
        let media = Media {
            socket,
            codec,
            payload_type,
            encoder: Encoder::new(codec).map_err(bad)?,
            decoder: Decoder::new(codec).map_err(bad)?,
            ssrc: Rng::new(local.port() as u64).next_u32(),
            seq: 1000,
            ts: 0,
            digit: None,
            gap: 0,
            out: [0; 12 + MAX_FRAME_PAYLOAD],
            audio: 0..0,
        };
        let shared = Arc::new(Mutex::new(Shared {
            source,
            pos: 0,
            remote: None,
            sending: None,
            digits: VecDeque::new(),
            recent: VecDeque::with_capacity(RECENT),
            recording: None,
        }));
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(media.run(shared.clone(), wake.clone()));
        Ok(Participant {
            codec,
            payload_type,
            local,
            shared,
            wake,
            task,
        })
    }

    pub fn codec(&self) -> CodecKind {
        self.codec
    }

    /// The payload type it sends and hears (the codec's static one, else 96).
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The media offer for a setup: this participant's address and codec, and
    /// telephone-events on [`TELEPHONE_EVENT_PT`] when `rfc4733`.
    pub fn offer(&self, rfc4733: bool) -> MediaOffer {
        MediaOffer {
            address: self.local.ip(),
            port: self.local.port(),
            codecs: vec![CodecDesc {
                name: self.codec.name().into(),
                pt: self.payload_type,
                rate: self.codec.rtp_clock_rate(),
            }],
            ptime: PTIME_MS as u32,
            telephone_event: rfc4733.then_some(TELEPHONE_EVENT_PT),
            direction: Direction::Sendrecv,
            rtcp_mux: false,
            latching: false,
        }
    }

    /// Streams to `remote` from now on, until dropped (or until a run replaces the
    /// schedule).
    pub fn connect(&self, remote: SocketAddr) {
        let mut s = self.lock();
        s.remote = Some(remote);
        s.sending = Some(Schedule {
            origin: Instant::now(),
            sent: 0,
            frames: None,
        });
        drop(s);
        self.wake.notify_one();
    }

    /// Plays `source` from the next frame on (samples from their start).
    pub fn play(&self, source: Source) {
        let mut s = self.lock();
        s.source = source;
        s.pos = 0;
    }

    /// Sends digits as RFC 4733 telephone-events (for 8 kHz RTP clocks): each 100 ms
    /// long, in 7 packets (the last 3 ending it), 60 ms of audio between digits.
    ///
    /// # Panics
    /// On a character that is not a DTMF key.
    pub fn send_rfc4733(&self, digits: &str) {
        for d in digits.chars() {
            assert!(TelephoneEvent::code_of(d).is_some(), "{d:?} is no DTMF key");
        }
        self.lock().digits.extend(digits.chars());
    }

    /// Level of `freq` in the last `window` of heard audio, dBFS (very low when
    /// absent, and when less than 100 ms was heard).
    pub fn level(&self, freq: f64, window: Duration) -> f64 {
        let s = self.lock();
        let n = (window.as_millis() as usize * 8).min(s.recent.len());
        if n < 800 {
            return -200.0;
        }
        let tail: Vec<i16> = s.recent.iter().skip(s.recent.len() - n).copied().collect();
        level_dbfs(&tail, freq)
    }

    /// Whether the samples of a [`Source::Samples`] have all been sent.
    pub fn done_playing(&self) -> bool {
        let s = self.lock();
        match &s.source {
            Source::Samples(v) => s.pos >= v.len(),
            _ => true,
        }
    }

    /// A measured call: sends to `remote` for `duration` (frames due at `start` +
    /// 20 ms × k) while recording what arrives, then keeps listening for `tail` more.
    /// Every frame is sent, however late, before the recording ends.
    pub async fn run(
        &mut self,
        remote: SocketAddr,
        start: Instant,
        duration: Duration,
        tail: Duration,
    ) -> std::io::Result<Heard> {
        let (done, heard) = oneshot::channel();
        let frames = duration.as_millis() as u64 / PTIME_MS;
        let samples = ((duration + tail).as_millis() as usize / 20 + 50) * FRAME_SAMPLES;
        {
            let mut s = self.lock();
            s.remote = Some(remote);
            s.sending = Some(Schedule {
                origin: start,
                sent: 0,
                frames: Some(frames),
            });
            s.recording = Some(Recording {
                heard: Heard {
                    pcm: vec![0; samples],
                    ..Heard::default()
                },
                first_ts: None,
                end: start + duration + tail,
                done,
            });
        }
        self.wake.notify_one();
        heard
            .await
            .map_err(|_| std::io::Error::other("the participant's media task ended"))?
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the participant's handle and its media task share.
struct Shared {
    source: Source,
    /// Position in `Source::Samples`.
    pos: usize,
    /// Where frames go, and the only sender heard.
    remote: Option<SocketAddr>,
    sending: Option<Schedule>,
    /// RFC 4733 digits waiting to be sent.
    digits: VecDeque<char>,
    /// The last [`RECENT`] decoded samples heard, in arrival order.
    recent: VecDeque<i16>,
    recording: Option<Recording>,
}

/// Frames due at `origin + 20 ms × k`, for `frames` frames (or until replaced).
struct Schedule {
    origin: Instant,
    sent: u64,
    frames: Option<u64>,
}

impl Schedule {
    /// When the next frame is due, if one is still to be sent.
    fn next(&self) -> Option<Instant> {
        let more = match self.frames {
            Some(n) => self.sent < n,
            None => true,
        };
        more.then(|| self.origin + Duration::from_millis(PTIME_MS * self.sent))
    }
}

/// A run in progress.
struct Recording {
    heard: Heard,
    /// RTP timestamp of the first packet heard: sample 0 of `heard.pcm`.
    first_ts: Option<u32>,
    end: Instant,
    done: oneshot::Sender<std::io::Result<Heard>>,
}

impl Shared {
    /// When the media task must act next: a due frame first, else a run's end.
    fn next_wake(&self) -> Option<Instant> {
        let frame = self.sending.as_ref().and_then(Schedule::next);
        frame.or(self.recording.as_ref().map(|r| r.end))
    }

    fn fill(&mut self, pcm: &mut [i16; FRAME_SAMPLES]) {
        match &mut self.source {
            Source::Tone(t) => t.fill(pcm),
            Source::Noise { amplitude, seed } => {
                let mut rng = Rng::new(*seed);
                let span = 2 * *amplitude as u64 + 1;
                for s in pcm.iter_mut() {
                    *s = (rng.below(span) as i64 - *amplitude as i64) as i16;
                }
                *seed = rng.next_u64();
            }
            Source::Silence => *pcm = [0; FRAME_SAMPLES],
            Source::Samples(v) => {
                for x in pcm.iter_mut() {
                    *x = v.get(self.pos).copied().unwrap_or(0);
                    self.pos += 1;
                }
            }
        }
    }

    /// Keeps a packet from the remote (and its decoded audio, when it decoded).
    fn hear(&mut self, p: &RtpPacket<'_>, pcm: &[i16], at: Instant, ts_per_sample: u32) {
        if let Some(r) = &mut self.recording {
            let h = &mut r.heard;
            h.packets_received += 1;
            h.payloads.push((p.sequence, p.payload.to_vec()));
            h.arrivals.push(at);
            let t0 = *r.first_ts.get_or_insert(p.timestamp);
            let offset = (p.timestamp.wrapping_sub(t0) / ts_per_sample) as usize;
            if let Some(slot) = h.pcm.get_mut(offset..offset + pcm.len()) {
                slot.copy_from_slice(pcm);
            }
        }
        for &x in pcm {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(x);
        }
    }

    fn ignored(&mut self) {
        if let Some(r) = &mut self.recording {
            r.heard.ignored += 1;
        }
    }

    /// An error of the socket or the codec: it ends a run (with the error), and is
    /// only logged while streaming live.
    fn fail(&mut self, e: std::io::Error) {
        match self.recording.take() {
            Some(r) => {
                self.sending = None;
                let _ = r.done.send(Err(e));
            }
            None => tracing::debug!(%e, "participant media error ignored"),
        }
    }

    fn finish(&mut self) {
        if let Some(r) = self.recording.take() {
            let _ = r.done.send(Ok(r.heard));
        }
    }
}

/// A digit being sent as telephone-events.
struct Digit {
    code: u8,
    /// Packets sent so far.
    sent: u32,
    /// The event's RTP timestamp (its start).
    ts: u32,
}

/// The media task's own state.
struct Media {
    socket: UdpSocket,
    codec: CodecKind,
    payload_type: u8,
    encoder: Encoder,
    decoder: Decoder,
    ssrc: u32,
    seq: u16,
    ts: u32,
    digit: Option<Digit>,
    /// Audio frames still to send before the next digit may start.
    gap: u32,
    /// The packet being sent.
    out: [u8; 12 + MAX_FRAME_PAYLOAD],
    /// Where its audio payload is in `out` (empty for a telephone-event).
    audio: std::ops::Range<usize>,
}

impl Media {
    async fn run(mut self, shared: Arc<Mutex<Shared>>, wake: Arc<Notify>) {
        let lock = || shared.lock().unwrap_or_else(PoisonError::into_inner);
        let ts_per_sample = self.codec.rtp_clock_rate() / 8000;
        let mut buf = [0u8; 2048];
        let mut decoded = vec![0i16; MAX_DECODED];
        loop {
            let due = lock().next_wake();
            let timer = async {
                match due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = timer => {
                    let now = Instant::now();
                    let packet = {
                        let mut s = lock();
                        let frame = s.sending.as_ref().and_then(Schedule::next);
                        if frame.is_some_and(|t| t <= now) {
                            self.next_packet(&mut s).map(|len| (len, s.remote))
                        } else {
                            if s.recording.as_ref().is_some_and(|r| r.end <= now) {
                                s.finish();
                            }
                            continue;
                        }
                    };
                    let sent = match packet {
                        Ok((len, Some(remote))) => {
                            self.socket.send_to(&self.out[..len], remote).await
                        }
                        Ok((_, None)) => continue,
                        Err(e) => Err(e),
                    };
                    let at = Instant::now();
                    let mut s = lock();
                    match sent {
                        Ok(_) => {
                            if let Some(r) = &mut s.recording {
                                r.heard.packets_sent += 1;
                                if !self.audio.is_empty() {
                                    r.heard.sent.push(self.out[self.audio.clone()].to_vec());
                                    r.heard.sent_at.push(at);
                                }
                            }
                        }
                        Err(e) => s.fail(e),
                    }
                }
                _ = wake.notified() => {}
                r = self.socket.recv_from(&mut buf) => {
                    let at = Instant::now();
                    let mut s = lock();
                    let (len, from) = match r {
                        Ok(got) => got,
                        Err(e) => {
                            s.fail(e);
                            continue;
                        }
                    };
                    let Ok(p) = RtpPacket::parse(&buf[..len]) else {
                        s.ignored();
                        continue;
                    };
                    if Some(from) != s.remote || p.payload_type != self.payload_type {
                        s.ignored();
                        continue;
                    }
                    let n = self.decoder.decode(p.payload, &mut decoded).unwrap_or(0);
                    s.hear(&p, &decoded[..n], at, ts_per_sample);
                }
            }
        }
    }

    /// Builds the next due packet into `out` (a telephone-event while a digit is
    /// being sent, else an audio frame of the source) and returns its length.
    fn next_packet(&mut self, s: &mut Shared) -> std::io::Result<usize> {
        let schedule = s.sending.as_mut().expect("a frame is due");
        let first = schedule.sent == 0;
        schedule.sent += 1;
        // The source plays on under a digit, as a phone's microphone would.
        let mut pcm = [0i16; FRAME_SAMPLES];
        s.fill(&mut pcm);
        if self.digit.is_none() && self.gap == 0 {
            if let Some(d) = s.digits.pop_front() {
                let code = TelephoneEvent::code_of(d).expect("checked when queued");
                self.digit = Some(Digit {
                    code,
                    sent: 0,
                    ts: self.ts,
                });
            }
        }
        let len = match &mut self.digit {
            Some(d) => {
                d.sent += 1;
                let te = TelephoneEvent {
                    event: d.code,
                    end: d.sent >= 5,
                    volume: 10,
                    duration: (d.sent * 160).min(800) as u16,
                };
                let h = RtpHeader {
                    marker: d.sent == 1,
                    payload_type: TELEPHONE_EVENT_PT,
                    sequence: self.seq,
                    timestamp: d.ts,
                    ssrc: self.ssrc,
                }
                .write(&mut self.out)
                .map_err(rtp_error)?;
                self.out[h..h + 4].copy_from_slice(&te.write());
                if d.sent >= 7 {
                    self.digit = None;
                    self.gap = 3;
                }
                self.audio = 0..0;
                h + 4
            }
            None => {
                self.gap = self.gap.saturating_sub(1);
                let h = RtpHeader {
                    marker: first,
                    payload_type: self.payload_type,
                    sequence: self.seq,
                    timestamp: self.ts,
                    ssrc: self.ssrc,
                }
                .write(&mut self.out)
                .map_err(rtp_error)?;
                let n = self
                    .encoder
                    .encode(&pcm, &mut self.out[h..])
                    .map_err(std::io::Error::other)?;
                self.audio = h..h + n;
                h + n
            }
        };
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.codec.frame_ts());
        Ok(len)
    }
}

fn rtp_error(e: scnf_media::rtp::RtpError) -> std::io::Error {
    std::io::Error::other(format!("{e:?}"))
}

/// Dual-tone samples for `digits`: `on` ms of tone and `off` ms of silence each, at
/// -10 dBFS per tone.
pub fn dtmf_samples(digits: &str, on_ms: usize, off_ms: usize) -> Vec<i16> {
    let mut out = Vec::new();
    for d in digits.chars() {
        let (row, col) = scnf_media::dsp::dtmf_frequencies(d).expect("a DTMF key");
        let amp = 32767.0 * 10f64.powf(-10.0 / 20.0);
        for i in 0..on_ms * 8 {
            let t = i as f64 / 8000.0;
            let v = amp
                * ((2.0 * std::f64::consts::PI * row * t).sin()
                    + (2.0 * std::f64::consts::PI * col * t).sin());
            out.push(v.clamp(-32768.0, 32767.0) as i16);
        }
        out.resize(out.len() + off_ms * 8, 0);
    }
    out
}

/// Speech-like sound for `secs`: a voiced source with gliding pitch through two
/// moving formant resonators, in syllables. Rich in the DTMF band on purpose.
pub fn speechlike(secs: f64, seed: u64) -> Vec<i16> {
    let mut rng = Rng::new(seed);
    let n = (secs * 8000.0) as usize;
    let mut out = Vec::with_capacity(n);
    let (mut phase, mut y1a, mut y2a, mut y1b, mut y2b) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    let mut f0 = 120.0;
    let mut f1 = 700.0;
    let mut f2 = 1300.0;
    for i in 0..n {
        if i % 1600 == 0 {
            f0 = 90.0 + rng.next_f64() * 160.0;
            f1 = 300.0 + rng.next_f64() * 700.0;
            f2 = 900.0 + rng.next_f64() * 1500.0;
        }
        f0 *= 1.0 + (rng.next_f64() - 0.5) * 0.002;
        phase += f0 / 8000.0;
        let pulse = if phase >= 1.0 {
            phase -= 1.0;
            1.0
        } else {
            0.0
        };
        let x = pulse + (rng.next_f64() - 0.5) * 0.05;
        let reson = |f: f64, y1: &mut f64, y2: &mut f64, x: f64| {
            let r: f64 = 0.97;
            let c = 2.0 * r * (2.0 * std::f64::consts::PI * f / 8000.0).cos();
            let y = x + c * *y1 - r * r * *y2;
            *y2 = *y1;
            *y1 = y;
            y
        };
        let a = reson(f1, &mut y1a, &mut y2a, x);
        let b = reson(f2, &mut y1b, &mut y2b, x);
        let syllable = ((i % 2400) as f64 / 2400.0 * std::f64::consts::PI).sin();
        out.push(((a + 0.6 * b) * 1500.0 * syllable).clamp(-32768.0, 32767.0) as i16);
    }
    out
}
