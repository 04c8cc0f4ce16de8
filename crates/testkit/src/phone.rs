//! A test phone: one UDP socket that streams 20 ms frames of whatever it is told to
//! play (a tone, silence, in-band DTMF, speech-like sound) to the node, can send RFC
//! 4733 digits, and keeps what it hears so a test can ask "do I hear this tone now?".

use scnf_core::control::msg::{CodecDesc, Direction, MediaOffer};
use scnf_media::codec::{CodecKind, Decoder, Encoder, FRAME_SAMPLES, MAX_FRAME_PAYLOAD};
use scnf_media::probe::tone::{level_dbfs, Tone};
use scnf_media::rtp::{RtpHeader, RtpPacket, TelephoneEvent};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

/// What the phone plays.
#[derive(Clone, Debug)]
pub enum Play {
    Silence,
    Tone(f64),
    /// Queued samples (in-band DTMF, speech), then silence.
    Samples(Arc<Vec<i16>>),
}

struct Shared {
    play: Play,
    /// Position in `Play::Samples`.
    pos: usize,
    remote: Option<SocketAddr>,
    /// Last ~2 s of decoded audio heard.
    heard: VecDeque<i16>,
    received: u64,
    /// RFC 4733 digits waiting to be sent.
    digits: VecDeque<char>,
}

/// A phone streaming to the node until dropped.
pub struct Phone {
    pub codec: CodecKind,
    pub local: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

const KEEP: usize = 8000 * 2;
const TE_PT: u8 = 101;

impl Phone {
    /// Binds 127.0.0.1:0 and starts streaming once [`Phone::connect`] names the node.
    pub async fn new(codec: CodecKind, play: Play) -> Phone {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind phone");
        let local = socket.local_addr().expect("bound");
        let shared = Arc::new(Mutex::new(Shared {
            play,
            pos: 0,
            remote: None,
            heard: VecDeque::with_capacity(KEEP),
            received: 0,
            digits: VecDeque::new(),
        }));
        let task = tokio::spawn(stream(socket, codec, shared.clone()));
        Phone {
            codec,
            local,
            shared,
            task,
        }
    }

    /// The media offer for a setup: this phone's address, its codec, telephone-events
    /// when `rfc4733`.
    pub fn offer(&self, rfc4733: bool) -> MediaOffer {
        MediaOffer {
            address: self.local.ip(),
            port: self.local.port(),
            codecs: vec![CodecDesc {
                name: self.codec.name().into(),
                pt: self.codec.static_payload_type().unwrap_or(96),
                rate: self.codec.rtp_clock_rate(),
            }],
            ptime: 20,
            telephone_event: rfc4733.then_some(TE_PT),
            direction: Direction::Sendrecv,
            rtcp_mux: false,
            latching: false,
        }
    }

    pub fn connect(&self, remote: SocketAddr) {
        self.shared.lock().unwrap().remote = Some(remote);
    }

    pub fn play(&self, play: Play) {
        let mut s = self.shared.lock().unwrap();
        s.play = play;
        s.pos = 0;
    }

    /// Sends digits as RFC 4733 telephone-events (100 ms each, 60 ms apart).
    pub fn send_rfc4733(&self, digits: &str) {
        self.shared.lock().unwrap().digits.extend(digits.chars());
    }

    /// Level of `freq` in the last `window` of heard audio, dBFS (very low when
    /// absent).
    pub fn level(&self, freq: f64, window: Duration) -> f64 {
        let s = self.shared.lock().unwrap();
        let n = (window.as_millis() as usize * 8).min(s.heard.len());
        if n < 800 {
            return -200.0;
        }
        let tail: Vec<i16> = s.heard.iter().skip(s.heard.len() - n).copied().collect();
        level_dbfs(&tail, freq)
    }

    /// Whether the in-band samples queued with `Play::Samples` have all been sent.
    pub fn done_playing(&self) -> bool {
        let s = self.shared.lock().unwrap();
        match &s.play {
            Play::Samples(v) => s.pos >= v.len(),
            _ => true,
        }
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fill(s: &mut Shared, tone: &mut Option<(f64, Tone)>, pcm: &mut [i16; FRAME_SAMPLES]) {
    match &s.play {
        Play::Silence => *pcm = [0; FRAME_SAMPLES],
        Play::Tone(f) => {
            if tone.as_ref().map_or(true, |(g, _)| g != f) {
                *tone = Some((*f, Tone::at_dbfs(*f, scnf_media::probe::tone::TONE_DBFS)));
            }
            tone.as_mut().expect("set above").1.fill(pcm);
        }
        Play::Samples(v) => {
            for x in pcm.iter_mut() {
                *x = v.get(s.pos).copied().unwrap_or(0);
                s.pos += 1;
            }
        }
    }
}

async fn stream(socket: UdpSocket, codec: CodecKind, shared: Arc<Mutex<Shared>>) {
    let mut encoder = Encoder::new(codec).expect("codec");
    let mut decoder = Decoder::new(codec).expect("codec");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut seq, mut ts, ssrc) = (
        1u16,
        0u32,
        0x5eed_0000 ^ socket.local_addr().unwrap().port() as u32,
    );
    let mut tone = None;
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut payload = [0u8; MAX_FRAME_PAYLOAD];
    let mut buf = [0u8; 2048];
    let mut decoded = vec![0i16; 5760];
    // RFC 4733 sending state: (event code, packets sent so far, event timestamp).
    let mut event: Option<(u8, u32, u32)> = None;
    let mut gap = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut out = [0u8; 12 + MAX_FRAME_PAYLOAD];
                let (remote, len) = {
                    let mut s = shared.lock().unwrap();
                    let Some(remote) = s.remote else { continue };
                    fill(&mut s, &mut tone, &mut pcm);
                    if event.is_none() && gap == 0 {
                        if let Some(d) = s.digits.pop_front() {
                            let code = TelephoneEvent::code_of(d).expect("a DTMF key");
                            event = Some((code, 0, ts));
                        }
                    }
                    let len = match &mut event {
                        Some((code, sent, ets)) => {
                            *sent += 1;
                            let end = *sent >= 5;
                            let te = TelephoneEvent { event: *code, end, volume: 10, duration: (*sent * 160).min(800) as u16 };
                            let h = RtpHeader { marker: *sent == 1, payload_type: TE_PT, sequence: seq, timestamp: *ets, ssrc }
                                .write(&mut out).unwrap();
                            out[h..h + 4].copy_from_slice(&te.write());
                            if *sent >= 7 { event = None; gap = 3; }
                            h + 4
                        }
                        None => {
                            gap = gap.saturating_sub(1);
                            let n = encoder.encode(&pcm, &mut payload).expect("encode");
                            let h = RtpHeader { marker: false, payload_type: codec.static_payload_type().unwrap_or(96), sequence: seq, timestamp: ts, ssrc }
                                .write(&mut out).unwrap();
                            out[h..h + n].copy_from_slice(&payload[..n]);
                            h + n
                        }
                    };
                    (remote, len)
                };
                let _ = socket.send_to(&out[..len], remote).await;
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(codec.frame_ts());
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((len, _)) = r else { continue };
                let Ok(p) = RtpPacket::parse(&buf[..len]) else { continue };
                if let Ok(n) = decoder.decode(p.payload, &mut decoded) {
                    let mut s = shared.lock().unwrap();
                    s.received += 1;
                    for &x in &decoded[..n] {
                        if s.heard.len() == KEEP {
                            s.heard.pop_front();
                        }
                        s.heard.push_back(x);
                    }
                }
            }
        }
    }
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
    let mut rng = scnf_media::util::Rng::new(seed);
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
