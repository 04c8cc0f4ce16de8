//! The generator's media thread: exact 20 ms pacing for every participant, batched
//! sending and receiving on one [`FleetSocket`], decoding and analysis of what comes
//! back, and a report every second.
//!
//! One thread carries all participants, like one mixer worker carries all its legs.
//! Participants are spread over 20 send groups 1 ms apart (participant `i` in group
//! `i % 20`), so the node sees a steady stream rather than one burst per period, and
//! every participant's frames are due exactly 20 ms apart. The loop sleeps until the
//! next group is due, then sends it and drains what arrived, a batch at a time so
//! that the node's per-tick burst never holds up the next group. When it wakes late
//! the due frames are sent at once and the lateness is recorded: a run whose
//! generator fell behind is flagged in the report rather than silently measuring
//! the generator instead of the node.
//!
//! This is rtpgen's I/O shell: it reads the clock and the socket; what it hears is
//! judged by [`super::analysis`], which takes arrival times as input.
//!
//! Nothing here allocates per packet: source frames are pre-encoded
//! ([`super::source`]), buffers are owned by the socket and the participants.

use super::analysis::{EarCounts, Ears, Expect, Filters, SlotView};
use super::source::{FrameLoop, Pattern, SLOT_TONES};
use hdrhistogram::Histogram;
use scnf_media::codec::{CodecKind, Decoder, FRAME_SAMPLES};
use scnf_media::rtp::stats::ReceptionStats;
use scnf_media::rtp::{RtpHeader, RtpPacket};
use scnf_media::util::Rng;
use scnf_udp::fleet::{participant_index, FleetSocket, NetCounters, Received, BATCH};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Send groups per 20 ms period.
const GROUPS: u64 = 20;
const GROUP_SPACING: Duration = Duration::from_millis(1);
/// Longest latency recorded, µs.
const LATENCY_MAX_US: u64 = 60_000_000;

/// What a participant sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Silence all the time (a listener whose phone still sends).
    Listener,
    /// The tone of talker slot `slot` of its room, in its pattern.
    Tone { slot: usize },
    /// The shared speech sample from `offset` frames in, in its pattern.
    Speech { offset: usize },
}

/// A participant the control side has placed in a call.
#[derive(Clone, Debug)]
pub struct Join {
    pub idx: usize,
    pub room: usize,
    /// Where the node wants this participant's RTP.
    pub node: SocketAddrV4,
    pub payload_type: u8,
    pub codec: CodecKind,
    pub role: Role,
    pub pattern: Pattern,
    /// Shift of the pattern, frames.
    pub offset: u64,
}

/// Orders for the media thread.
#[derive(Debug)]
pub enum Command {
    Join(Join),
    Leave(usize),
    Stop,
}

/// The media thread's settings.
#[derive(Clone, Debug)]
pub struct MediaConfig {
    pub expect: Expect,
    /// How long a talker must have been in one state to be judged (see
    /// [`super::analysis`]).
    pub settle: Duration,
    pub tone_dbfs: f64,
    /// Most hold-back of a sent packet (packets are held back in a small delay queue); zero sends at once.
    pub send_jitter: Duration,
    /// Seeds the hold-back draws.
    pub seed: u64,
    /// Report period.
    pub interval: Duration,
    /// Speech sample, 8 kHz; `None` when no participant speaks.
    pub speech: Option<Arc<Vec<i16>>>,
}

/// One report period, as measured by the media thread.
#[derive(Clone, Debug)]
pub struct Interval {
    /// End of the period since the thread started.
    pub t: Duration,
    pub participants: usize,
    pub sent: u64,
    pub received: u64,
    /// Packets the participants' streams say were sent to them, and of those lost.
    pub expected: u64,
    pub lost: u64,
    /// Latencies found in this period, µs.
    pub latency: Histogram<u64>,
    /// Participants' RFC 3550 interarrival jitter at the end of the period, µs.
    pub jitter: Histogram<u64>,
    /// How late send groups went out, µs.
    pub send_late: Histogram<u64>,
    /// How long received packets waited in the socket before being read, µs.
    pub drain_lag: Histogram<u64>,
    /// Datagrams the kernel dropped on the generator's socket (its buffer full).
    pub overflowed: u64,
}

/// Everything the media thread measured, handed back when it stops.
#[derive(Debug)]
pub struct Outcome {
    pub participants: Vec<ParticipantOutcome>,
    pub net: scnf_udp::fleet::NetCounters,
    /// Datagrams not for a current participant, not RTP, or of another payload type.
    pub foreign: u64,
}

/// One participant's life, in numbers.
#[derive(Debug)]
pub struct ParticipantOutcome {
    pub idx: usize,
    pub room: usize,
    pub codec: CodecKind,
    pub role: Role,
    pub joined: Duration,
    pub left: Option<Duration>,
    pub sent: u64,
    pub received: u64,
    pub expected: u64,
    pub lost: i64,
    pub jitter_ms: f64,
    pub undecodable: u64,
    pub latency: Histogram<u64>,
    pub ears: EarCounts,
}

fn histogram(max: u64, sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max, sigfig).expect("constant histogram bounds are valid")
}

/// A participant while it is in a call.
struct Vp {
    join: Join,
    joined: Duration,
    /// When its frame 0 was due.
    start: Instant,
    /// Next frame to send.
    k: u64,
    seq: u16,
    ts: u32,
    ssrc: u32,
    talk: Option<Arc<FrameLoop>>,
    talk_pos: usize,
    silence: Arc<FrameLoop>,
    stats: ReceptionStats,
    decoder: Decoder,
    ears: Ears,
    latency: Histogram<u64>,
    sent: u64,
    received: u64,
    undecodable: u64,
    /// Expected and lost at the last report.
    last_expected: u64,
    last_lost: i64,
}

impl Vp {
    fn outcome(&self, left: Option<Duration>) -> ParticipantOutcome {
        ParticipantOutcome {
            idx: self.join.idx,
            room: self.join.room,
            codec: self.join.codec,
            role: self.join.role,
            joined: self.joined,
            left,
            sent: self.sent,
            received: self.received,
            expected: self.stats.expected(),
            lost: self.stats.lost(),
            jitter_ms: self.stats.jitter_ms(),
            undecodable: self.undecodable,
            latency: self.latency.clone(),
            ears: self.ears.counts,
        }
    }
}

/// A room's talker slots.
#[derive(Default)]
struct Room {
    slots: [Option<SlotView>; SLOT_TONES.len()],
}

/// Pre-encoded loops, made on first use and shared.
#[derive(Default)]
struct Loops {
    tones: Vec<((CodecKind, usize), Arc<FrameLoop>)>,
    silence: Vec<(CodecKind, Arc<FrameLoop>)>,
    speech: Vec<(CodecKind, Arc<FrameLoop>)>,
}

/// Packets held back to emulate path jitter: a heap of release times over a pool of
/// reused buffers (no allocation per packet once the pool has grown to the packets
/// in flight).
struct Held {
    rng: Rng,
    max_us: u64,
    /// (release time, send order, pool index), earliest first.
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    pool: Vec<(Ipv4Addr, SocketAddrV4, Vec<u8>)>,
    free: Vec<usize>,
    order: u64,
}

impl Held {
    fn new(max: Duration, seed: u64) -> Held {
        Held {
            rng: Rng::new(seed ^ 0x6a17),
            max_us: max.as_micros() as u64,
            queue: BinaryHeap::new(),
            pool: Vec::new(),
            free: Vec::new(),
            order: 0,
        }
    }

    /// Holds a datagram sent at `now` for its random delay.
    fn hold(&mut self, now: Instant, src: Ipv4Addr, dst: SocketAddrV4, bytes: &[u8]) {
        let i = self.free.pop().unwrap_or_else(|| {
            self.pool.push((src, dst, Vec::with_capacity(256)));
            self.pool.len() - 1
        });
        let slot = &mut self.pool[i];
        slot.0 = src;
        slot.1 = dst;
        slot.2.clear();
        slot.2.extend_from_slice(bytes);
        let at = now + Duration::from_micros(self.rng.below(self.max_us + 1));
        self.order += 1;
        self.queue.push(Reverse((at, self.order, i)));
    }

    /// Sends every held datagram due by `now`.
    fn release(&mut self, now: Instant, socket: &mut FleetSocket) {
        while let Some(&Reverse((at, _, i))) = self.queue.peek() {
            if at > now {
                break;
            }
            self.queue.pop();
            let (src, dst, bytes) = &self.pool[i];
            socket.push(*src, *dst, |buf| {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                n
            });
            self.free.push(i);
        }
    }
}

/// The media thread's state. See the module docs.
pub struct Media {
    cfg: MediaConfig,
    socket: FleetSocket,
    epoch: Instant,
    /// Next send tick (1 ms each; group = tick % 20).
    tick: u64,
    groups: Vec<Vec<usize>>,
    parts: Vec<Option<Vp>>,
    rooms: Vec<Room>,
    loops: Loops,
    done: Vec<ParticipantOutcome>,
    foreign: u64,
    pcm: [i16; FRAME_SAMPLES],
    /// The slot tones' filters, shared by every participant's ears.
    filters: Filters,
    current: Interval,
    /// The socket's counters at the last report.
    last_net: NetCounters,
    next_report: Instant,
    /// Path jitter emulation, when `cfg.send_jitter` is not zero.
    held: Option<Held>,
    /// Scratch for one datagram to hold.
    wire: [u8; 1500],
}

impl Media {
    pub fn new(cfg: MediaConfig, socket: FleetSocket) -> Media {
        let epoch = Instant::now();
        let held = (!cfg.send_jitter.is_zero()).then(|| Held::new(cfg.send_jitter, cfg.seed));
        Media {
            held,
            wire: [0; 1500],
            next_report: epoch + cfg.interval,
            current: Media::empty_interval(),
            cfg,
            socket,
            epoch,
            tick: 0,
            groups: vec![Vec::new(); GROUPS as usize],
            parts: Vec::new(),
            rooms: Vec::new(),
            loops: Loops::default(),
            done: Vec::new(),
            foreign: 0,
            pcm: [0; FRAME_SAMPLES],
            filters: Filters::new(&SLOT_TONES),
            last_net: NetCounters::default(),
        }
    }

    fn empty_interval() -> Interval {
        Interval {
            t: Duration::ZERO,
            participants: 0,
            sent: 0,
            received: 0,
            expected: 0,
            lost: 0,
            latency: histogram(LATENCY_MAX_US, 3),
            jitter: histogram(LATENCY_MAX_US, 3),
            send_late: histogram(LATENCY_MAX_US, 3),
            drain_lag: histogram(LATENCY_MAX_US, 3),
            overflowed: 0,
        }
    }

    /// The port every participant sends from and receives on.
    pub fn port(&self) -> u16 {
        self.socket.port()
    }

    /// Runs until [`Command::Stop`] (or the command channel closes), sending each
    /// period's report to `report`.
    pub fn run(mut self, commands: Receiver<Command>, mut report: impl FnMut(Interval)) -> Outcome {
        loop {
            loop {
                match commands.try_recv() {
                    Ok(Command::Join(j)) => self.join(j),
                    Ok(Command::Leave(i)) => self.leave(i),
                    Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return self.finish(),
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            while self.due(self.tick) <= now {
                let due = self.due(self.tick);
                self.send_group(self.tick, due);
                let late = now.saturating_duration_since(due).as_micros() as u64;
                let _ = self.current.send_late.record(late.max(1));
                self.tick += 1;
            }
            if let Some(h) = &mut self.held {
                h.release(Instant::now(), &mut self.socket);
            }
            self.socket.flush();
            self.drain_until(self.due(self.tick));
            if now >= self.next_report {
                report(self.take_interval(now));
                self.next_report += self.cfg.interval;
            }
            // Sleep to the next send group, not to the next arrival: received
            // packets carry kernel stamps, so reading them up to a millisecond later
            // costs no accuracy, and draining ~100 at a time instead of waking for
            // each one halves the generator's cost.
            let next = self.due(self.tick);
            let wait = next.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }

    fn due(&self, tick: u64) -> Instant {
        self.epoch + GROUP_SPACING * tick as u32
    }

    fn join(&mut self, j: Join) {
        let Some(silence) = self.silence_loop(j.codec) else {
            return;
        };
        let talk = match j.role {
            Role::Listener => None,
            Role::Tone { slot } => self.tone_loop(j.codec, slot),
            Role::Speech { .. } => self.speech_loop(j.codec),
        };
        let (Ok(decoder), idx) = (Decoder::new(j.codec), j.idx) else {
            return;
        };
        if self.parts.len() <= idx {
            self.parts.resize_with(idx + 1, || None);
        }
        if self.parts[idx].is_some() {
            self.leave(idx);
        }
        // Frame 0 is due at this participant's group's next tick.
        let group = idx as u64 % GROUPS;
        let first = self.tick + (group + GROUPS - self.tick % GROUPS) % GROUPS;
        let start = self.due(first);
        while self.rooms.len() <= j.room {
            self.rooms.push(Room::default());
        }
        if let Role::Tone { slot } = j.role {
            if let Some(s) = self.rooms[j.room].slots.get_mut(slot) {
                *s = Some(SlotView {
                    participant: idx,
                    start,
                    pattern: j.pattern,
                    offset: j.offset,
                    onsets: [None; 2],
                });
            }
        }
        let talk_pos = match j.role {
            Role::Speech { offset } => offset,
            _ => 0,
        };
        let clock = j.codec.rtp_clock_rate();
        self.groups[group as usize].push(idx);
        self.parts[idx] = Some(Vp {
            ears: Ears::new(
                idx,
                self.cfg.expect,
                self.cfg.settle,
                self.cfg.tone_dbfs as f32,
            ),
            joined: Instant::now().duration_since(self.epoch),
            start,
            k: 0,
            seq: (idx as u16).wrapping_mul(7919),
            ts: (idx as u32).wrapping_mul(104_729),
            ssrc: 0x5247_0000 ^ idx as u32,
            talk,
            talk_pos,
            silence,
            stats: ReceptionStats::new(clock),
            decoder,
            latency: histogram(LATENCY_MAX_US, 2),
            sent: 0,
            received: 0,
            undecodable: 0,
            last_expected: 0,
            last_lost: 0,
            join: j,
        });
    }

    fn leave(&mut self, idx: usize) {
        let Some(vp) = self.parts.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let group = &mut self.groups[idx % GROUPS as usize];
        group.retain(|&i| i != idx);
        if let Role::Tone { slot } = vp.join.role {
            if let Some(s) = self.rooms[vp.join.room].slots.get_mut(slot) {
                if s.is_some_and(|s| s.participant == idx) {
                    *s = None;
                }
            }
        }
        let left = Instant::now().duration_since(self.epoch);
        self.done.push(vp.outcome(Some(left)));
    }

    fn send_group(&mut self, tick: u64, due: Instant) {
        let group = (tick % GROUPS) as usize;
        for gi in 0..self.groups[group].len() {
            let idx = self.groups[group][gi];
            let Some(vp) = self.parts[idx].as_mut() else {
                continue;
            };
            if due < vp.start {
                continue;
            }
            let k = vp.k;
            let on = vp.talk.is_some() && vp.join.pattern.is_on(k, vp.join.offset);
            if on && vp.join.pattern.is_onset(k, vp.join.offset) {
                if let Role::Tone { slot } = vp.join.role {
                    if let Some(Some(s)) = self.rooms[vp.join.room].slots.get_mut(slot) {
                        s.onsets = [Some(Instant::now()), s.onsets[0]];
                    }
                }
            }
            let payload = match (&vp.talk, on) {
                (Some(t), true) => {
                    vp.talk_pos += 1;
                    t.frame(vp.talk_pos - 1)
                }
                _ => vp.silence.frame(k as usize),
            };
            let header = RtpHeader {
                marker: k == 0,
                payload_type: vp.join.payload_type,
                sequence: vp.seq,
                timestamp: vp.ts,
                ssrc: vp.ssrc,
            };
            let fill = |buf: &mut [u8]| match header.write(buf) {
                Ok(h) if h + payload.len() <= buf.len() => {
                    buf[h..h + payload.len()].copy_from_slice(payload);
                    h + payload.len()
                }
                _ => 0,
            };
            let src = scnf_udp::fleet::participant_ip(idx);
            match &mut self.held {
                Some(h) => {
                    let n = fill(&mut self.wire);
                    h.hold(due, src, vp.join.node, &self.wire[..n]);
                }
                None => self.socket.push(src, vp.join.node, fill),
            }
            vp.seq = vp.seq.wrapping_add(1);
            vp.ts = vp.ts.wrapping_add(vp.join.codec.frame_ts());
            vp.k += 1;
            vp.sent += 1;
        }
    }

    /// Drains what arrived, one batch at a time, until the socket is empty or
    /// `deadline` (the next send group) comes. The node sends a whole mix tick's
    /// packets in one burst; decoding and judging thousands of them in one go would
    /// make the next send groups late, i.e. the generator would measure itself.
    /// What is left is read after the send, still timed by its kernel stamp.
    fn drain_until(&mut self, deadline: Instant) {
        while self.receive_batch() == BATCH && Instant::now() < deadline {}
    }

    /// Reads and judges at most one batch; returns how many datagrams it read.
    fn receive_batch(&mut self) -> usize {
        let Media {
            socket,
            parts,
            rooms,
            foreign,
            pcm,
            filters,
            current,
            ..
        } = self;
        socket.recv(1, |r: Received<'_>| {
            let vp = participant_index(r.to)
                .and_then(|i| parts.get_mut(i))
                .and_then(Option::as_mut);
            let Some(vp) = vp else {
                *foreign += 1;
                return;
            };
            if r.from.ip() != vp.join.node.ip() {
                *foreign += 1;
                return;
            }
            let Ok(p) = RtpPacket::parse(r.data) else {
                *foreign += 1;
                return;
            };
            if p.payload_type != vp.join.payload_type {
                *foreign += 1;
                return;
            }
            let read_lag = r.read_at.saturating_duration_since(r.at);
            let _ = current
                .drain_lag
                .record((read_lag.as_micros() as u64).max(1));
            vp.stats.on_packet(r.at, p.ssrc, p.sequence, p.timestamp);
            vp.received += 1;
            match vp.decoder.decode(p.payload, &mut pcm[..]) {
                Ok(n) if n == FRAME_SAMPLES => {}
                _ => {
                    vp.undecodable += 1;
                    return;
                }
            }
            let room = &rooms[vp.join.room];
            let latency = &mut vp.latency;
            let interval = &mut current.latency;
            vp.ears
                .on_frame(pcm, p.sequence, r.at, &room.slots, filters, |l| {
                    let us = (l.as_micros() as u64).max(1);
                    let _ = latency.record(us);
                    let _ = interval.record(us);
                });
        })
    }

    fn take_interval(&mut self, now: Instant) -> Interval {
        let mut iv = std::mem::replace(&mut self.current, Media::empty_interval());
        iv.t = now.duration_since(self.epoch);
        let net = self.socket.counters;
        iv.sent = net.sent - self.last_net.sent;
        iv.received = net.received - self.last_net.received;
        iv.overflowed = net.overflowed - self.last_net.overflowed;
        self.last_net = net;
        for vp in self.parts.iter_mut().flatten() {
            iv.participants += 1;
            let (e, l) = (vp.stats.expected(), vp.stats.lost());
            iv.expected += e.saturating_sub(vp.last_expected);
            iv.lost += (l - vp.last_lost).max(0) as u64;
            vp.last_expected = e;
            vp.last_lost = l;
            if vp.received > 0 {
                let _ = iv
                    .jitter
                    .record(((vp.stats.jitter_ms() * 1000.0) as u64).max(1));
            }
        }
        iv
    }

    fn finish(mut self) -> Outcome {
        for vp in self.parts.iter().flatten() {
            self.done.push(vp.outcome(None));
        }
        self.done.sort_by_key(|p| (p.idx, p.joined));
        Outcome {
            participants: self.done,
            net: self.socket.counters,
            foreign: self.foreign,
        }
    }

    fn silence_loop(&mut self, codec: CodecKind) -> Option<Arc<FrameLoop>> {
        if let Some((_, l)) = self.loops.silence.iter().find(|(c, _)| *c == codec) {
            return Some(l.clone());
        }
        let l = Arc::new(FrameLoop::silence(codec).ok()?);
        self.loops.silence.push((codec, l.clone()));
        Some(l)
    }

    fn tone_loop(&mut self, codec: CodecKind, slot: usize) -> Option<Arc<FrameLoop>> {
        if let Some((_, l)) = self.loops.tones.iter().find(|(k, _)| *k == (codec, slot)) {
            return Some(l.clone());
        }
        let freq = *SLOT_TONES.get(slot)?;
        let l = Arc::new(FrameLoop::tone(codec, freq, self.cfg.tone_dbfs).ok()?);
        self.loops.tones.push(((codec, slot), l.clone()));
        Some(l)
    }

    fn speech_loop(&mut self, codec: CodecKind) -> Option<Arc<FrameLoop>> {
        if let Some((_, l)) = self.loops.speech.iter().find(|(c, _)| *c == codec) {
            return Some(l.clone());
        }
        let mut pcm = self.cfg.speech.as_ref()?.to_vec();
        super::source::notch_slot_tones(&mut pcm);
        let l = Arc::new(FrameLoop::encode(codec, &pcm, 0).ok()?);
        self.loops.speech.push((codec, l.clone()));
        Some(l)
    }
}
