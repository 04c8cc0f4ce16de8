//! The media side of a video run ([`super::scenario`]): every socket, publisher
//! and judge of the run on one task, one loop.
//!
//! The loop wakes at the earliest publisher or audio deadline, at most
//! [`TICK`] apart, and each time: applies the control side's commands
//! ([`Cmd`]: a view asked for, switched, stopped; its SSRC known), drains every
//! socket without blocking, then sends whatever is due. Commands come first, so a
//! packet that arrived after a request is judged knowing of it: the control side
//! sends the command *before* the request, and the judge only moves to a new layer
//! at a key frame, so being early costs nothing.
//!
//! One task rather than one per participant: a load generator that needs a
//! thread or a task per stream measures its own scheduler. Receive times are those
//! of the wake-up (within [`TICK`] of the kernel's), fine against key-frame delays
//! of hundreds of milliseconds. Buffers are allocated once: one receive buffer, one
//! audio frame per leg; the publishers own their packet buffers.

use super::publisher::ClipPublisher;
use super::viewer::ViewerJudge;
use super::Layer;
use scnf_media::rtp::rtcp::{parse_compound, parse_feedback, Feedback, RtcpPacket};
use scnf_media::rtp::{is_rtcp, RtpHeader, RtpPacket, RTP_HEADER_LEN};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::UnboundedReceiver;

/// Longest sleep of the loop: how late a received packet may be stamped.
pub const TICK: Duration = Duration::from_millis(2);
/// Datagrams read from one socket per wake-up, so one flooded socket cannot
/// starve the others (the rest waits in the kernel for the next wake-up).
const MAX_READS: usize = 256;
/// A call's audio: one silent PCMU frame (20 ms) each interval, so the node's
/// media timeout never releases it.
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
const PCMU_FRAME: usize = 160;
/// PCMU silence (mu-law of 0).
const PCMU_SILENCE: u8 = 0xff;

/// What the control side tells the media side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Viewer `viewer` asked at `at` for `layer` (open or switch).
    Request {
        viewer: usize,
        layer: Layer,
        at: Instant,
    },
    /// Viewer `viewer` asked at `at` to see nothing any more.
    Stop { viewer: usize, at: Instant },
    /// The node answered viewer `viewer`'s view with this SSRC.
    Ssrc { viewer: usize, ssrc: u32 },
}

/// One layer of one publisher: its socket, where the node wants it, the clip.
#[derive(Debug)]
pub struct PublisherLeg {
    pub publisher: usize,
    pub layer: Layer,
    pub socket: UdpSocket,
    pub dest: SocketAddr,
    pub clip: ClipPublisher,
    /// RTCP datagrams received (receiver reports, feedback).
    pub rtcp: u64,
    /// PLIs and FIRs naming this stream's SSRC, handed to the clip.
    pub keyframe_requests: u64,
    /// Datagrams the kernel would not take.
    pub send_errors: u64,
}

/// One viewer's view slot: its socket and its judge.
#[derive(Debug)]
pub struct ViewerLeg {
    pub socket: UdpSocket,
    pub judge: ViewerJudge,
    /// The SSRC the node answered (known once the first answer is in).
    pub ssrc: Option<u32>,
    /// RTP packets whose SSRC is not the answered one.
    pub foreign_ssrc: u64,
    /// RTCP datagrams received (the node's sender reports).
    pub rtcp: u64,
}

/// A call's audio leg: silent PCMU, and whatever the node sends back is dropped.
#[derive(Debug)]
pub struct AudioLeg {
    pub socket: UdpSocket,
    pub dest: SocketAddr,
    frame: [u8; RTP_HEADER_LEN + PCMU_FRAME],
    header: RtpHeader,
    next: Option<Instant>,
    pub received: u64,
}

impl AudioLeg {
    pub fn new(socket: UdpSocket, dest: SocketAddr, ssrc: u32, seed: u32) -> AudioLeg {
        AudioLeg {
            socket,
            dest,
            frame: [PCMU_SILENCE; RTP_HEADER_LEN + PCMU_FRAME],
            header: RtpHeader {
                marker: true,
                payload_type: 0,
                sequence: seed as u16,
                timestamp: seed,
                ssrc,
            },
            next: None,
            received: 0,
        }
    }

    fn poll(&mut self, now: Instant) {
        let next = *self.next.get_or_insert(now);
        if next > now {
            return;
        }
        self.header
            .write(&mut self.frame[..RTP_HEADER_LEN])
            .expect("a 12-byte header buffer and payload type 0");
        let _ = self.socket.send_to(&self.frame, self.dest);
        self.header.marker = false;
        self.header.sequence = self.header.sequence.wrapping_add(1);
        self.header.timestamp = self.header.timestamp.wrapping_add(PCMU_FRAME as u32);
        // A stalled loop sends one frame, not its backlog.
        let due = next + AUDIO_INTERVAL;
        self.next = Some(if due < now { now + AUDIO_INTERVAL } else { due });
    }
}

/// Everything the media task owns; handed back when the run ends.
#[derive(Debug)]
pub struct Media {
    pub publishers: Vec<PublisherLeg>,
    pub viewers: Vec<ViewerLeg>,
    pub audio: Vec<AudioLeg>,
    /// When the loop ended (the end of every judge's report).
    pub ended: Option<Instant>,
    buf: Vec<u8>,
}

impl Media {
    pub fn new(
        publishers: Vec<PublisherLeg>,
        viewers: Vec<ViewerLeg>,
        audio: Vec<AudioLeg>,
    ) -> Media {
        Media {
            publishers,
            viewers,
            audio,
            ended: None,
            buf: vec![0; 65_536],
        }
    }

    /// Runs until the command channel closes (the control side is done), then
    /// hands everything back.
    pub async fn run(mut self, mut cmds: UnboundedReceiver<Cmd>) -> Media {
        loop {
            let now = Instant::now();
            loop {
                match cmds.try_recv() {
                    Ok(cmd) => self.apply(cmd),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.receive(now);
                        self.ended = Some(now);
                        return self;
                    }
                }
            }
            self.receive(now);
            self.send(now);
            let next = self.next_deadline(now);
            tokio::select! {
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {}
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.apply(cmd),
                    None => {
                        let now = Instant::now();
                        self.receive(now);
                        self.ended = Some(now);
                        return self;
                    }
                },
            }
        }
    }

    fn apply(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Request { viewer, layer, at } => {
                if let Some(v) = self.viewers.get_mut(viewer) {
                    v.judge.on_request(at, layer.label());
                }
            }
            Cmd::Stop { viewer, at } => {
                if let Some(v) = self.viewers.get_mut(viewer) {
                    v.judge.on_stop(at);
                }
            }
            Cmd::Ssrc { viewer, ssrc } => {
                if let Some(v) = self.viewers.get_mut(viewer) {
                    v.ssrc = Some(ssrc);
                }
            }
        }
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let cap = now + TICK;
        let pubs = self
            .publishers
            .iter()
            .filter_map(|p| p.clip.next_deadline());
        let audio = self.audio.iter().filter_map(|a| a.next);
        pubs.chain(audio).fold(cap, Instant::min).max(now)
    }

    fn send(&mut self, now: Instant) {
        for p in &mut self.publishers {
            let PublisherLeg {
                socket,
                dest,
                clip,
                send_errors,
                ..
            } = p;
            clip.poll(now, &mut |pkt| {
                if socket.send_to(pkt, *dest).is_err() {
                    *send_errors += 1;
                }
            });
        }
        for a in &mut self.audio {
            a.poll(now);
        }
    }

    fn receive(&mut self, now: Instant) {
        let buf = &mut self.buf;
        for p in &mut self.publishers {
            for_each_datagram(&p.socket, buf, |d| {
                if !is_rtcp(d) {
                    return;
                }
                p.rtcp += 1;
                if asks_for_keyframe(d, p.clip.ssrc()) {
                    p.keyframe_requests += 1;
                    p.clip.on_pli(now);
                }
            });
        }
        for v in &mut self.viewers {
            for_each_datagram(&v.socket, buf, |d| {
                if is_rtcp(d) {
                    v.rtcp += 1;
                    return;
                }
                if let (Some(want), Ok(rtp)) = (v.ssrc, RtpPacket::parse(d)) {
                    if rtp.ssrc != want {
                        v.foreign_ssrc += 1;
                    }
                }
                v.judge.on_packet(now, d);
            });
        }
        for a in &mut self.audio {
            let mut n = 0;
            for_each_datagram(&a.socket, buf, |_| n += 1);
            a.received += n;
        }
    }
}

/// Hands every datagram waiting on `socket` (at most [`MAX_READS`]) to `f`.
fn for_each_datagram(socket: &UdpSocket, buf: &mut [u8], mut f: impl FnMut(&[u8])) {
    for _ in 0..MAX_READS {
        match socket.recv_from(buf) {
            Ok((n, _)) => f(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            // An ICMP error reported on the socket, or the like: try the next one.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
            Err(_) => return,
        }
    }
}

/// Whether a compound RTCP datagram holds a PLI or a FIR for `ssrc` (the node
/// names the publisher's SSRC as the media source).
pub fn asks_for_keyframe(datagram: &[u8], ssrc: u32) -> bool {
    parse_compound(datagram).any(|p| match p {
        Ok(RtcpPacket::Other { pt, count, body }) => matches!(
            parse_feedback(pt, count, body),
            Some(Feedback::Pli { media, .. } | Feedback::Fir { media, .. }) if media == ssrc
        ),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scnf_media::rtp::rtcp::feedback::{write_fir, write_pli};

    #[test]
    fn a_pli_or_fir_for_the_stream_asks_for_a_key_frame_and_nothing_else_does() {
        let mut buf = [0u8; 64];
        let n = write_pli(&mut buf, 1, 0xabc).unwrap();
        assert!(asks_for_keyframe(&buf[..n], 0xabc));
        assert!(!asks_for_keyframe(&buf[..n], 0xabd), "another stream's PLI");
        let n = write_fir(&mut buf, 1, 0xabc, 3).unwrap();
        assert!(asks_for_keyframe(&buf[..n], 0xabc));
        // A receiver report (RR with no blocks) is no request.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(!asks_for_keyframe(&rr, 0xabc));
        // Garbage is no request, and no panic.
        for cut in 0..n {
            assert!(!asks_for_keyframe(&buf[..cut], 0xdead));
        }
    }

    #[test]
    fn a_silent_audio_leg_sends_one_frame_each_interval_and_no_backlog() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut leg = AudioLeg::new(tx, rx.local_addr().unwrap(), 7, 1000);
        let t0 = scnf_media::testclock::anchor();
        leg.poll(t0);
        leg.poll(t0 + Duration::from_millis(5));
        leg.poll(t0 + Duration::from_millis(20));
        // Stalled for a second: one frame, then the schedule starts from there.
        leg.poll(t0 + Duration::from_millis(1020));
        assert_eq!(leg.next, Some(t0 + Duration::from_millis(1040)));
        let mut buf = [0u8; 400];
        let mut got = Vec::new();
        // The datagrams went over loopback; wait for them with a bound.
        let until = Instant::now() + Duration::from_secs(2);
        while got.len() < 3 && Instant::now() < until {
            match rx.recv_from(&mut buf) {
                Ok((n, _)) => got.push(buf[..n].to_vec()),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(got.len(), 3);
        for (k, d) in got.iter().enumerate() {
            let rtp = RtpPacket::parse(d).unwrap();
            assert_eq!(rtp.payload_type, 0);
            assert_eq!(rtp.sequence, 1000u16.wrapping_add(k as u16));
            assert_eq!(rtp.timestamp, 1000 + 160 * k as u32);
            assert_eq!(rtp.payload, &[PCMU_SILENCE; PCMU_FRAME][..]);
        }
    }
}
