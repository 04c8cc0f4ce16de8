//! A sans-IO phone for the harness: it sends a 20 ms PCMU frame of its tone (or
//! silence) on a fixed schedule and keeps what it hears, so a test can ask "do I hear
//! this tone now?". Time is the harness's virtual clock.

use scnf_core::control::msg::{CodecDesc, Direction, MediaOffer};
use scnf_media::codec::{g711, FRAME_SAMPLES};
use scnf_media::netsim::{Path, PathConfig};
use scnf_media::probe::{level_dbfs, Tone};
use scnf_media::rtp::{RtpHeader, RtpPacket};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The frame interval.
pub const PTIME: Duration = Duration::from_millis(20);
/// Most decoded samples kept (10 s): a phone's memory is bounded however long a run.
const KEEP: usize = 80_000;

/// See the module docs.
pub struct SimPhone {
    /// The phone's own media address (what it offers).
    pub addr: SocketAddr,
    /// Where it sends: the node's answer, once known.
    pub remote: Option<SocketAddr>,
    tone: Option<Tone>,
    ssrc: u32,
    seq: u16,
    ts: u32,
    next_send: Instant,
    /// Phone → node.
    pub(super) up: Path,
    /// Node → phone.
    pub(super) down: Path,
    heard: Vec<i16>,
    /// RTP packets received.
    pub received: u64,
    /// RTP packets sent.
    pub sent: u64,
    /// Whether it sends at all (false: a phone whose media never arrives).
    pub sends: bool,
}

impl SimPhone {
    pub(super) fn new(
        addr: SocketAddr,
        tone: Option<f64>,
        path: PathConfig,
        seed: u64,
        now: Instant,
    ) -> SimPhone {
        SimPhone {
            addr,
            remote: None,
            tone: tone.map(|f| Tone::at_dbfs(f, scnf_media::probe::TONE_DBFS)),
            ssrc: 0x5eed_0000 ^ seed as u32,
            seq: seed as u16,
            ts: (seed as u32).wrapping_mul(160),
            next_send: now,
            up: Path::new(path.clone(), seed),
            down: Path::new(path, seed ^ 0xd0d0),
            heard: Vec::new(),
            received: 0,
            sent: 0,
            sends: true,
        }
    }

    /// The phone's media offer (PCMU, RFC 4733 events on 101).
    pub fn offer(&self) -> MediaOffer {
        MediaOffer {
            address: self.addr.ip(),
            port: self.addr.port(),
            codecs: vec![CodecDesc {
                name: "PCMU".into(),
                pt: 0,
                rate: 8000,
            }],
            ptime: 20,
            telephone_event: Some(101),
            direction: Direction::Sendrecv,
            latching: false,
            rtcp_mux: false,
        }
    }

    /// Level of a tone in the last `window` of what the phone heard, dBFS.
    pub fn level(&self, freq: f64, window: Duration) -> f64 {
        let n = (window.as_millis() as usize * 8).min(self.heard.len());
        level_dbfs(&self.heard[self.heard.len() - n..], freq)
    }

    pub(super) fn next_send(&self) -> Option<Instant> {
        self.remote.filter(|_| self.sends).map(|_| self.next_send)
    }

    /// Sends the frames that are due (into its uplink path).
    pub(super) fn send_due(&mut self, now: Instant) {
        if self.remote.is_none() || !self.sends {
            return;
        }
        while self.next_send <= now {
            let mut pcm = [0i16; FRAME_SAMPLES];
            if let Some(t) = &mut self.tone {
                t.fill(&mut pcm);
            }
            let mut pkt = [0u8; 12 + FRAME_SAMPLES];
            for (o, &s) in pkt[12..].iter_mut().zip(pcm.iter()) {
                *o = g711::ulaw_encode(s);
            }
            RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: self.seq,
                timestamp: self.ts,
                ssrc: self.ssrc,
            }
            .write(&mut pkt)
            .expect("a valid header");
            self.up.send(self.next_send, &pkt);
            self.sent += 1;
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(FRAME_SAMPLES as u32);
            self.next_send += PTIME;
        }
    }

    /// Takes the node's datagrams that have arrived by `now`.
    pub(super) fn receive_due(&mut self, now: Instant) {
        while let Some((_, data)) = self.down.poll(now) {
            let Ok(p) = RtpPacket::parse(data) else {
                continue;
            };
            if p.payload_type != 0 {
                continue;
            }
            self.received += 1;
            self.heard
                .extend(p.payload.iter().map(|&b| g711::ulaw_decode(b)));
        }
        if self.heard.len() > KEEP {
            self.heard.drain(..self.heard.len() - KEEP / 2);
        }
    }
}
