//! A test participant: one UDP socket that sends its tone as 20 ms RTP frames in a
//! given codec and records what comes back.
//!
//! - Sending is paced by a deadline schedule: frame k leaves at `t0 + k * 20 ms`,
//!   so scheduling hiccups do not accumulate into drift (a late frame is sent at
//!   once, then the schedule resumes).
//! - What comes back is decoded and *placed by RTP timestamp* relative to the first
//!   packet received, so a packet lost on the way back leaves 20 ms of zeros where
//!   it belonged instead of shifting everything after it.
//! - One thread, one socket: receive with a timeout that ends at the next send
//!   deadline. [`Participant::run_for`] blocks; from async tests call it through
//!   `tokio::task::spawn_blocking`, or run several with [`run_concurrently`].
//!
//! Everything is deterministic except wall-clock timing: SSRC, first sequence
//! number and first timestamp come from the seed.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scnf::codec::{CodecKind, Decoder, Encoder, FRAME_SAMPLES, MAX_FRAME_PAYLOAD, MIX_RATE};

use super::rng::Rng;
use super::rtp;
use super::tones::Tone;

/// Packet interval.
pub const PTIME: Duration = Duration::from_millis(20);

/// What came back during one [`Participant::run_for`]. Its `Debug` shows the
/// length of `pcm`, not the samples.
#[derive(Clone, Default)]
pub struct Received {
    /// Decoded 8 kHz audio; sample 0 is the first received packet's timestamp.
    /// Frames that never arrived are zeros.
    pub pcm: Vec<i16>,
    /// RTP packets decoded and placed.
    pub packets: u64,
    /// Packets this participant sent.
    pub sent: u64,
    /// Same timestamp received again.
    pub duplicates: u64,
    /// Not RTP, or a payload type other than ours.
    pub malformed: u64,
    /// Payloads the decoder refused.
    pub decode_errors: u64,
    /// Timestamps before the first packet's, or beyond the buffer.
    pub out_of_range: u64,
    /// Packets from an SSRC other than the first one seen.
    pub foreign_ssrc: u64,
    /// Datagrams from an address other than the remote.
    pub foreign_source: u64,
    /// The SSRC we placed audio from, and its first timestamp.
    pub ssrc: Option<u32>,
    pub first_ts: Option<u32>,
    /// Time from the start of the run to the first packet placed.
    pub first_arrival: Option<Duration>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("pcm_samples", &self.pcm.len())
            .field("packets", &self.packets)
            .field("sent", &self.sent)
            .field("duplicates", &self.duplicates)
            .field("malformed", &self.malformed)
            .field("decode_errors", &self.decode_errors)
            .field("out_of_range", &self.out_of_range)
            .field("foreign_ssrc", &self.foreign_ssrc)
            .field("foreign_source", &self.foreign_source)
            .field("ssrc", &self.ssrc)
            .field("first_ts", &self.first_ts)
            .field("first_arrival", &self.first_arrival)
            .finish()
    }
}

impl Received {
    /// `len` of audio starting `from` after the first received packet, clipped to
    /// what was received.
    pub fn window(&self, from: Duration, len: Duration) -> &[i16] {
        let start = samples_in(from).min(self.pcm.len());
        let end = (start + samples_in(len)).min(self.pcm.len());
        &self.pcm[start..end]
    }

    /// Fraction of the frames between the first and the last placed packet that
    /// were received (1.0 when nothing was lost).
    pub fn frame_coverage(&self) -> f64 {
        let frames = self.pcm.len().div_ceil(FRAME_SAMPLES);
        if frames == 0 {
            0.0
        } else {
            (self.packets as f64 / frames as f64).min(1.0)
        }
    }
}

fn samples_in(d: Duration) -> usize {
    (d.as_secs_f64() * MIX_RATE as f64).round() as usize
}

static NEXT_SEED: AtomicU64 = AtomicU64::new(1);

/// An RTP endpoint sending a tone and recording the audio it gets back.
pub struct Participant {
    sock: UdpSocket,
    remote: Option<SocketAddr>,
    codec: CodecKind,
    pt: u8,
    tone: Tone,
    encoder: Encoder,
    decoder: Decoder,
    ssrc: u32,
    seq: u16,
    ts: u32,
    sent_any: bool,
    /// When the last frame was due, to advance the timestamp over idle gaps
    /// between runs as a real endpoint's clock would.
    last_due: Option<Instant>,
}

impl Participant {
    /// A participant on a fresh 127.0.0.1 port; returns it with that address.
    /// Seeds are handed out in creation order, so a test is reproducible.
    pub fn new(codec: CodecKind, pt: u8, tone: Tone) -> io::Result<(Participant, SocketAddr)> {
        Self::with_seed(codec, pt, tone, NEXT_SEED.fetch_add(1, Ordering::Relaxed))
    }

    /// As [`new`](Self::new) with an explicit seed for SSRC, sequence and timestamp.
    pub fn with_seed(
        codec: CodecKind,
        pt: u8,
        tone: Tone,
        seed: u64,
    ) -> io::Result<(Participant, SocketAddr)> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let local = sock.local_addr()?;
        let codec_err = |e| io::Error::new(io::ErrorKind::Unsupported, format!("{codec:?}: {e}"));
        let mut rng = Rng::new(seed);
        let p = Participant {
            sock,
            remote: None,
            codec,
            pt,
            tone,
            encoder: Encoder::new(codec).map_err(codec_err)?,
            decoder: Decoder::new(codec).map_err(codec_err)?,
            ssrc: rng.next_u32(),
            seq: rng.next_u32() as u16,
            ts: rng.next_u32(),
            sent_any: false,
            last_due: None,
        };
        Ok((p, local))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock
            .local_addr()
            .expect("a bound UDP socket has a local address")
    }

    /// Where to send (the node's port, or a relay's). Without a remote the
    /// participant only listens and accepts packets from anyone.
    pub fn set_remote(&mut self, addr: SocketAddr) {
        self.remote = Some(addr);
    }

    /// Replaces the tone (e.g. with [`Tone::silence`] to stop talking); keeps the
    /// stream going.
    pub fn set_tone(&mut self, tone: Tone) {
        self.tone = tone;
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sends (if a remote is set) and receives for `duration`, then returns what
    /// was received. May be called again; the RTP stream continues.
    pub fn run_for(&mut self, duration: Duration) -> io::Result<Received> {
        let t0 = Instant::now();
        let end = t0 + duration;
        if let Some(last) = self.last_due {
            // Frames that "would have been" sent while idle advance the clock.
            let idle = t0.saturating_duration_since(last).as_nanos() / PTIME.as_nanos();
            let frames = u32::try_from(idle.saturating_sub(1)).unwrap_or(u32::MAX);
            self.ts = self
                .ts
                .wrapping_add(frames.wrapping_mul(self.codec.frame_ts()));
        }
        let mut rx = Receiver::new(self.codec, duration);
        let mut buf = [0u8; 2048];
        let mut k: u32 = 0;
        let mut next_due = t0;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if let Some(remote) = self.remote {
                while next_due <= now {
                    self.send_frame(remote)?;
                    rx.stats.sent += 1;
                    self.last_due = Some(next_due);
                    k += 1;
                    next_due = t0 + PTIME * k;
                }
            }
            let wake = if self.remote.is_some() {
                next_due.min(end)
            } else {
                end
            };
            let timeout = wake
                .saturating_duration_since(now)
                .max(Duration::from_micros(200));
            self.sock.set_read_timeout(Some(timeout))?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, src)) => {
                    if self.remote.is_some_and(|r| r != src) {
                        rx.stats.foreign_source += 1;
                    } else {
                        rx.handle(&mut self.decoder, self.pt, &buf[..n], t0.elapsed());
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // An ICMP error for something we sent: the node is not there (yet).
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
        Ok(rx.finish())
    }

    fn send_frame(&mut self, remote: SocketAddr) -> io::Result<()> {
        let pcm = self.tone.frame();
        let mut pkt = [0u8; rtp::HEADER_LEN + MAX_FRAME_PAYLOAD];
        let h = rtp::write_header(
            &mut pkt,
            !self.sent_any,
            self.pt,
            self.seq,
            self.ts,
            self.ssrc,
        );
        let n = self
            .encoder
            .encode(&pcm, &mut pkt[h..])
            .map_err(|e| io::Error::other(format!("encode: {e}")))?;
        match self.sock.send_to(&pkt[..h + n], remote) {
            Ok(_) => {}
            // A refused earlier datagram is reported here; the stream goes on.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
        self.sent_any = true;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.codec.frame_ts());
        Ok(())
    }
}

/// Places decoded frames by timestamp into a preallocated buffer.
struct Receiver {
    clock: u32,
    /// Samples the run can hold; later timestamps are out of range.
    cap: usize,
    stats: Received,
    /// One flag per 20 ms frame slot, to count duplicates.
    seen: Vec<bool>,
    scratch: Vec<i16>,
}

impl Receiver {
    fn new(codec: CodecKind, duration: Duration) -> Self {
        // Room for the run plus a second of early/late slack.
        let cap = samples_in(duration + Duration::from_secs(1));
        let mut stats = Received::default();
        stats.pcm.reserve(cap);
        Receiver {
            clock: codec.rtp_clock_rate(),
            cap,
            stats,
            seen: vec![false; cap.div_ceil(FRAME_SAMPLES)],
            // 120 ms at 8 kHz is the longest frame any of our codecs produces.
            scratch: vec![0; 960],
        }
    }

    fn handle(&mut self, dec: &mut Decoder, pt: u8, pkt: &[u8], since_start: Duration) {
        let s = &mut self.stats;
        let Ok(p) = rtp::parse(pkt) else {
            s.malformed += 1;
            return;
        };
        if p.pt != pt {
            s.malformed += 1;
            return;
        }
        let first_ts = *s.first_ts.get_or_insert(p.ts);
        if *s.ssrc.get_or_insert(p.ssrc) != p.ssrc {
            s.foreign_ssrc += 1;
            return;
        }
        let delta = p.ts.wrapping_sub(first_ts) as i32;
        let start = delta as i64 * MIX_RATE as i64 / self.clock as i64;
        let Ok(start) = usize::try_from(start) else {
            s.out_of_range += 1;
            return;
        };
        let slot = start / FRAME_SAMPLES;
        if slot >= self.seen.len() {
            s.out_of_range += 1;
            return;
        }
        if self.seen[slot] {
            s.duplicates += 1;
            return;
        }
        let n = match dec.decode(p.payload, &mut self.scratch) {
            Ok(n) => n,
            Err(_) => {
                s.decode_errors += 1;
                return;
            }
        };
        let end = (start + n).min(self.cap);
        if s.pcm.len() < end {
            s.pcm.resize(end, 0);
        }
        s.pcm[start..end].copy_from_slice(&self.scratch[..end - start]);
        self.seen[slot] = true;
        s.packets += 1;
        s.first_arrival.get_or_insert(since_start);
    }

    fn finish(self) -> Received {
        self.stats
    }
}

/// Runs every participant for `duration` at once, each on its own thread.
pub fn run_concurrently(
    parts: &mut [Participant],
    duration: Duration,
) -> io::Result<Vec<Received>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter_mut()
            .map(|p| s.spawn(move || p.run_for(duration)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| io::Error::other("participant thread panicked"))?
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::tones::{level_db, TEST_TONES_HZ};

    /// A plain blocking loopback: echoes every datagram to its sender, for `d`.
    fn echo_for(d: Duration) -> (SocketAddr, std::thread::JoinHandle<u64>) {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let h = std::thread::spawn(move || {
            let end = Instant::now() + d;
            let mut buf = [0u8; 2048];
            let mut n_echoed = 0;
            while Instant::now() < end {
                if let Ok((n, src)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], src);
                    n_echoed += 1;
                }
            }
            n_echoed
        });
        (addr, h)
    }

    #[test]
    fn a_participant_hears_its_own_tone_back_from_an_echo_in_both_g711_laws() {
        for (codec, pt) in [(CodecKind::Pcmu, 0), (CodecKind::Pcma, 8)] {
            let (echo, h) = echo_for(Duration::from_millis(1500));
            let (mut p, _) =
                Participant::new(codec, pt, Tone::new(TEST_TONES_HZ[1], -20.0)).unwrap();
            p.set_remote(echo);
            let got = p.run_for(Duration::from_millis(1200)).unwrap();
            h.join().unwrap();
            assert!((59..=61).contains(&got.sent), "{codec:?} sent {}", got.sent);
            assert!(got.packets >= got.sent - 2, "{codec:?}: {got:?}");
            assert_eq!(got.duplicates + got.malformed + got.decode_errors, 0);
            let w = got.window(Duration::from_millis(100), Duration::from_secs(1));
            assert_eq!(w.len(), 8000);
            let own = level_db(w, TEST_TONES_HZ[1]);
            assert!((own + 20.0).abs() < 0.5, "{codec:?}: {own}");
            for &f in TEST_TONES_HZ.iter().filter(|&&f| f != TEST_TONES_HZ[1]) {
                let other = level_db(w, f);
                assert!(
                    other - own < -60.0,
                    "{codec:?} at {f}: {other:.1} dB, {got:?}"
                );
            }
        }
    }

    #[test]
    fn returned_audio_is_placed_by_timestamp_so_gaps_stay_gaps() {
        let mut rx = Receiver::new(CodecKind::Pcmu, Duration::from_secs(1));
        let mut dec = Decoder::new(CodecKind::Pcmu).unwrap();
        let mut pkt = [0u8; 12 + 160];
        // Frames 0, 2, 1 (reordered), 2 again (duplicate), 4; frame 3 is lost; a
        // timestamp before the first; another payload type; garbage.
        for frame in [0u32, 2, 1, 2, 4] {
            rtp::write_header(&mut pkt, false, 0, frame as u16, 1000 + 160 * frame, 5);
            pkt[12..].fill(0x80); // mu-law 0x80 decodes to a loud nonzero sample
            rx.handle(&mut dec, 0, &pkt, Duration::ZERO);
        }
        rtp::write_header(&mut pkt, false, 0, 9, 1000 - 160, 5);
        rx.handle(&mut dec, 0, &pkt, Duration::ZERO);
        rtp::write_header(&mut pkt, false, 8, 9, 1000, 5);
        rx.handle(&mut dec, 0, &pkt, Duration::ZERO);
        rx.handle(&mut dec, 0, &[1, 2, 3], Duration::ZERO);
        rtp::write_header(&mut pkt, false, 0, 9, 1000, 6);
        rx.handle(&mut dec, 0, &pkt, Duration::ZERO);
        let got = rx.finish();
        assert_eq!(got.packets, 4);
        assert_eq!(got.duplicates, 1);
        assert_eq!(got.out_of_range, 1);
        assert_eq!(got.malformed, 2);
        assert_eq!(got.foreign_ssrc, 1);
        assert_eq!(got.pcm.len(), 5 * 160);
        let frame_has_audio: Vec<bool> = got
            .pcm
            .chunks(160)
            .map(|f| f.iter().all(|&x| x != 0))
            .collect();
        assert_eq!(frame_has_audio, vec![true, true, true, false, true]);
    }

    #[test]
    fn sending_follows_the_deadline_schedule_without_drift() {
        let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let (mut p, _) =
            Participant::with_seed(CodecKind::Pcma, 8, Tone::new(440.0, -10.0), 99).unwrap();
        p.set_remote(rx.local_addr().unwrap());
        let got = p.run_for(Duration::from_millis(1000)).unwrap();
        assert_eq!(got.sent, 50);
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut prev: Option<(u16, u32)> = None;
        for i in 0..50 {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            let pkt = rtp::parse(&buf[..n]).unwrap();
            assert_eq!(
                (pkt.pt, pkt.ssrc, pkt.marker, pkt.payload.len()),
                (8, p.ssrc(), i == 0, 160)
            );
            if let Some((seq, ts)) = prev {
                assert_eq!(pkt.seq, seq.wrapping_add(1));
                assert_eq!(pkt.ts, ts.wrapping_add(160));
            }
            prev = Some((pkt.seq, pkt.ts));
        }
    }
}
