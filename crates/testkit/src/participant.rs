//! A synthetic conference participant over real UDP: sends 20 ms frames of a known
//! source in its codec, paced on a deadline schedule, and records what comes back.
//!
//! Used by `scnf demo` and the system tests. What it hears is placed on a timeline by
//! RTP timestamp, so a lost packet leaves a gap of zeros instead of shifting
//! everything after it.

use scnf_media::codec::{CodecKind, Decoder, Encoder, FRAME_SAMPLES, MAX_FRAME_PAYLOAD};
use scnf_media::probe::Tone;
use scnf_media::rtp::{RtpHeader, RtpPacket};
use scnf_media::util::Rng;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

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
}

/// Everything a participant heard (and sent), for analysis.
#[derive(Clone, Debug, Default)]
pub struct Heard {
    /// Decoded audio at 8 kHz, placed by RTP timestamp from the first packet.
    pub pcm: Vec<i16>,
    /// Received payloads in arrival order, with sequence numbers.
    pub payloads: Vec<(u16, Vec<u8>)>,
    /// When each of `payloads` arrived.
    pub arrivals: Vec<Instant>,
    /// Payloads sent, in order.
    pub sent: Vec<Vec<u8>>,
    /// When each of `sent` left.
    pub sent_at: Vec<Instant>,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Datagrams that were not RTP or not from the node.
    pub ignored: u64,
}

/// A participant with its own socket.
pub struct Participant {
    pub codec: CodecKind,
    pub payload_type: u8,
    socket: UdpSocket,
    source: Source,
    encoder: Encoder,
    decoder: Decoder,
    ssrc: u32,
}

impl Participant {
    /// Binds an ephemeral port on `ip`.
    pub async fn bind(
        ip: std::net::IpAddr,
        codec: CodecKind,
        source: Source,
    ) -> std::io::Result<Participant> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let bad = |e: scnf_media::codec::CodecError| std::io::Error::other(e.to_string());
        let seed = socket.local_addr()?.port() as u64;
        Ok(Participant {
            codec,
            payload_type: codec.static_payload_type().unwrap_or(96),
            socket,
            source,
            encoder: Encoder::new(codec).map_err(bad)?,
            decoder: Decoder::new(codec).map_err(bad)?,
            ssrc: Rng::new(seed).next_u32(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("a bound socket has a local address")
    }

    fn next_frame(&mut self, pcm: &mut [i16; FRAME_SAMPLES]) {
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
        }
    }

    /// Sends to `remote` for `duration` (starting at `start`) while recording what
    /// arrives, then keeps listening for `tail` more.
    pub async fn run(
        &mut self,
        remote: SocketAddr,
        start: Instant,
        duration: Duration,
        tail: Duration,
    ) -> std::io::Result<Heard> {
        let frames = (duration.as_millis() / 20) as u64;
        let mut heard = Heard {
            pcm: vec![0; ((duration + tail).as_millis() as usize / 20 + 50) * FRAME_SAMPLES],
            ..Heard::default()
        };
        let ts_per_sample = self.codec.rtp_clock_rate() / 8000;
        let mut first_ts: Option<u32> = None;
        let mut buf = vec![0u8; 2048];
        let mut pcm = [0i16; FRAME_SAMPLES];
        let mut payload = [0u8; MAX_FRAME_PAYLOAD];
        let mut decoded = vec![0i16; 5760];
        let mut seq: u16 = 1000;
        let mut ts: u32 = 0;
        let mut k = 0u64;
        let end = start + duration + tail;
        loop {
            let next_send = start + Duration::from_millis(20 * k);
            let sending = k < frames;
            let wake = if sending { next_send } else { end };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {
                    if !sending {
                        break;
                    }
                    self.next_frame(&mut pcm);
                    let n = self.encoder.encode(&pcm, &mut payload).map_err(std::io::Error::other)?;
                    let mut pkt = [0u8; 12 + MAX_FRAME_PAYLOAD];
                    let h = RtpHeader { marker: k == 0, payload_type: self.payload_type, sequence: seq, timestamp: ts, ssrc: self.ssrc }
                        .write(&mut pkt)
                        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
                    pkt[h..h + n].copy_from_slice(&payload[..n]);
                    self.socket.send_to(&pkt[..h + n], remote).await?;
                    heard.sent.push(payload[..n].to_vec());
                    heard.sent_at.push(Instant::now());
                    heard.packets_sent += 1;
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(self.codec.frame_ts());
                    k += 1;
                }
                r = self.socket.recv_from(&mut buf) => {
                    let (len, from) = r?;
                    let Ok(p) = RtpPacket::parse(&buf[..len]) else {
                        heard.ignored += 1;
                        continue;
                    };
                    if from != remote || p.payload_type != self.payload_type {
                        heard.ignored += 1;
                        continue;
                    }
                    heard.packets_received += 1;
                    heard.payloads.push((p.sequence, p.payload.to_vec()));
                    heard.arrivals.push(Instant::now());
                    let t0 = *first_ts.get_or_insert(p.timestamp);
                    let offset = (p.timestamp.wrapping_sub(t0) / ts_per_sample) as usize;
                    if let Ok(n) = self.decoder.decode(p.payload, &mut decoded) {
                        if offset + n <= heard.pcm.len() {
                            heard.pcm[offset..offset + n].copy_from_slice(&decoded[..n]);
                        }
                    }
                }
            }
        }
        Ok(heard)
    }
}
