//! One media worker's sans-IO state machine: the rooms and legs it owns.
//!
//! The engine never reads the clock or touches a socket. Its shell (the media worker
//! of the `scnf` crate, or a test harness) feeds it:
//! - [`Engine::handle_datagram`] for every datagram received on the worker's RTP or
//!   RTCP socket,
//! - [`Engine::handle_timeout`] when [`Engine::poll_timeout`] says so (the 20 ms mix
//!   tick — the worker's one timer; RTCP reports and media timeouts ride on it),
//! - the control calls ([`Engine::open_room`], [`Engine::add_leg`], ...), or the same
//!   as values: [`MediaOp`]s applied by [`Engine::apply`],
//!
//! and drains [`Engine::poll_transmit`] and [`Engine::poll_event`] after each call.
//!
//! Legs share the worker's sockets and are told apart by their remote address.
//! Every datagram from a leg's addresses first spends the leg's receive budget
//! ([`budget`]): a leg's excess is dropped unparsed and counted (`flood_dropped`), so
//! a flood from one address cannot take the worker's time from the other rooms.
//!
//! **Latching rule**: a datagram from an address no leg owns is dropped and counted
//! as foreign, unless a leg with `latching` on claims it:
//! - the only latching leg that has not received anything yet and whose configured
//!   remote IP equals the source IP takes it (a NAT changed the port before the first
//!   packet);
//! - else a latching leg whose current remote IP and peer SSRC equal the packet's
//!   moves to the new port only if nothing came from its current address for
//!   [`LATCH_QUIET`] (a NAT rebinding leaves the old port silent). While the current
//!   source still sends, the claim is refused and counted (`latch_refused`, logged
//!   once a second): a sender on the same IP that learnt the SSRC cannot take a live
//!   call over, nor send audio or DTMF in its name.
//!
//! Each move is reported ([`EngineEvent::Latched`]) and logged. A different IP never
//! takes a leg over, whatever SSRC it claims; ambiguous cases are dropped, never
//! guessed; a refused datagram is dropped whole (no audio, no telephone-event).

mod addresses;
pub mod budget;
mod config;
pub mod leg;
pub mod ops;
mod receive;
pub mod room;
pub mod slab;
pub mod tx;
pub mod video;

pub use config::{EngineConfig, LINK_TIMEOUT};
pub use leg::{LegId, LegSpec, LegStats, LinkTags, MixId};
pub use ops::{Drops, FloodWatch, MediaOp, MediaResult, WorkerSnapshot, WorkerStats};
pub use tx::{Transmit, Via};
pub use video::{VideoId, VideoSinkSpec, VideoSourceSpec, VideoStats};

use addresses::Addresses;
use hdrhistogram::Histogram;
use leg::Leg;
use room::Room;
use scnf_media::codec::CodecError;
use scnf_media::util::Rng;
use serde::{Deserialize, Serialize};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tx::TxQueue;

/// The mix period.
pub const TICK: Duration = Duration::from_millis(20);
/// A tick that runs later than this after its deadline counts as late.
pub const LATE_TICK: Duration = Duration::from_millis(10);
/// Beyond this much lateness the engine stops catching up tick by tick and
/// re-anchors its schedule (counted as skipped ticks).
const MAX_CATCH_UP: Duration = Duration::from_millis(100);
/// How long a latching leg's current address must have been silent before a claim
/// from a new port moves it. A live stream sends every 20 ms and even a bad jitter
/// spike rarely leaves a gap over 150 ms, so a sender that is still talking is never
/// displaced; a NAT rebinding costs a quarter of a second of audio (the refused
/// packets of the new port), which concealment covers. (A peer in silence
/// suppression sends nothing: a same-IP sender with its SSRC could then move it; the
/// move is reported to the controller.)
pub const LATCH_QUIET: Duration = Duration::from_millis(250);
/// Refused latching claims are logged at most this often per leg (a flood of them
/// must not flood the log; the counter has every one).
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Why a control call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("room {0} does not exist")]
    NoSuchRoom(MixId),
    #[error("room {0} already exists")]
    RoomExists(MixId),
    #[error("leg {0:?} does not exist")]
    NoSuchLeg(LegId),
    #[error("leg {0:?} already exists")]
    LegExists(LegId),
    #[error("remote address {0} is already used by another leg on this worker")]
    RemoteInUse(SocketAddr),
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    #[error("video stream {0:?} does not exist")]
    NoSuchVideo(VideoId),
    #[error("video stream {0:?} already exists")]
    VideoExists(VideoId),
}

/// Something the control side wants to know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum EngineEvent {
    /// A DTMF digit arrived as an RFC 4733 telephone-event, or (on a leg that did
    /// not negotiate telephone-events) was detected as tones in its decoded audio.
    Dtmf {
        room: MixId,
        leg: LegId,
        digit: char,
    },
    /// A leg started or stopped talking.
    Talking {
        room: MixId,
        leg: LegId,
        talking: bool,
    },
    /// A leg received nothing for the media timeout.
    MediaTimeout { room: MixId, leg: LegId },
    /// A latching leg now sends to a new address.
    Latched {
        room: MixId,
        leg: LegId,
        remote: SocketAddr,
    },
    /// The leg's media is gone with the executor that carried it (a scaler lost
    /// the cluster node it was on); never raised by an engine.
    Lost { room: MixId, leg: LegId },
}

/// Worker-wide counters.
#[derive(Clone)]
pub struct EngineStats {
    pub datagrams: u64,
    /// From an address no leg owns (and no latching leg claimed).
    pub foreign: u64,
    /// Not parseable as RTP/RTCP.
    pub malformed: u64,
    pub ticks: u64,
    /// Ticks run more than [`LATE_TICK`] after their deadline.
    pub late_ticks: u64,
    /// Ticks given up after falling more than 100 ms behind.
    pub skipped_ticks: u64,
    /// Encoder invocations (encode-once makes this far smaller than packets sent).
    pub encodes: u64,
    /// Of `encodes`, those that failed: a leg's own frame is then not sent, a shared
    /// frame goes out with an empty payload.
    pub encode_failures: u64,
    /// Packets that carried a room's shared payload.
    pub shared_sends: u64,
    /// Tick lateness, microseconds.
    pub lateness_us: Histogram<u64>,
    /// Datagrams dropped unparsed: their leg was over its receive budget.
    pub flood_dropped: u64,
    /// Latching claims refused (the leg's current source was still sending).
    pub latch_refused: u64,
    /// Latching moves made (each one reported as [`EngineEvent::Latched`]).
    pub latch_moves: u64,
}

impl std::fmt::Debug for EngineStats {
    // The histogram's own Debug prints every bucket; show its summary instead.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineStats")
            .field("datagrams", &self.datagrams)
            .field("foreign", &self.foreign)
            .field("malformed", &self.malformed)
            .field("ticks", &self.ticks)
            .field("late_ticks", &self.late_ticks)
            .field("skipped_ticks", &self.skipped_ticks)
            .field("encodes", &self.encodes)
            .field("encode_failures", &self.encode_failures)
            .field("shared_sends", &self.shared_sends)
            .field("lateness_p99_us", &self.lateness_us.value_at_quantile(0.99))
            .field("flood_dropped", &self.flood_dropped)
            .field("latch_refused", &self.latch_refused)
            .field("latch_moves", &self.latch_moves)
            .finish()
    }
}

impl Default for EngineStats {
    fn default() -> Self {
        EngineStats {
            datagrams: 0,
            foreign: 0,
            malformed: 0,
            ticks: 0,
            late_ticks: 0,
            skipped_ticks: 0,
            encodes: 0,
            encode_failures: 0,
            shared_sends: 0,
            lateness_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("static histogram bounds are valid"),
            flood_dropped: 0,
            latch_refused: 0,
            latch_moves: 0,
        }
    }
}

/// See the module docs.
pub struct Engine {
    cfg: EngineConfig,
    rng: Rng,
    rooms: HashMap<MixId, Room>,
    legs: Slab<Leg>,
    leg_index: HashMap<LegId, usize>,
    addresses: Addresses,
    /// Slab indices of legs with latching on.
    latching: Vec<usize>,
    /// How many latching legs each IP has (a latching leg never leaves its IP), so a
    /// datagram from anywhere else is foreign after one lookup, not a scan.
    latching_ips: HashMap<std::net::IpAddr, usize>,
    next_tick: Option<Instant>,
    tick_no: u64,
    tx: TxQueue,
    events: VecDeque<EngineEvent>,
    stats: EngineStats,
    /// The input counters of legs that have gone (see [`WorkerStats`]).
    retired: ops::LegTotals,
    /// The latest time any input carried (for what control calls without one do).
    clock: Instant,
    /// Video sources and sinks (see [`video`]).
    video: video::Video,
}

impl Engine {
    pub fn new(cfg: EngineConfig, seed: u64) -> Engine {
        Engine {
            rng: Rng::new(seed),
            rooms: HashMap::new(),
            legs: Slab::default(),
            leg_index: HashMap::new(),
            // Another stream than `rng`'s: what the rng makes is seen on the wire (SSRCs).
            addresses: Addresses::new(seed ^ 0x6a09_e667_f3bc_c908),
            latching: Vec::new(),
            latching_ips: HashMap::new(),
            next_tick: None,
            tick_no: 0,
            tx: TxQueue::default(),
            events: VecDeque::new(),
            stats: EngineStats::default(),
            retired: ops::LegTotals::default(),
            clock: cfg.wallclock.0,
            video: video::Video::default(),
            cfg,
        }
    }

    // ---- control -------------------------------------------------------------

    /// Opens an empty room. The mix tick starts with the first room.
    pub fn open_room(&mut self, now: Instant, id: MixId) -> Result<(), EngineError> {
        self.clock = self.clock.max(now);
        if self.rooms.contains_key(&id) {
            return Err(EngineError::RoomExists(id));
        }
        self.rooms.insert(id, Room::new(id, &self.cfg.mix));
        self.next_tick.get_or_insert(now + TICK);
        Ok(())
    }

    /// Closes a room and drops its legs.
    pub fn close_room(&mut self, id: MixId) -> Result<Vec<(LegId, LegStats)>, EngineError> {
        let room = self.rooms.get(&id).ok_or(EngineError::NoSuchRoom(id))?;
        let ids: Vec<LegId> = room
            .legs
            .iter()
            .filter_map(|&i| self.legs.get(i).map(|l| l.id))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for leg in ids {
            out.push((leg, self.remove_leg(leg)?));
        }
        let (now, wall) = (self.clock, self.ntp(self.clock));
        self.video
            .close_room(now, wall, &self.cfg.cname, id, &mut self.tx);
        self.rooms.remove(&id);
        if self.rooms.is_empty() {
            self.next_tick = None;
        }
        Ok(out)
    }

    /// Adds a leg to a room. The leg starts sending the room's mix at the next tick.
    pub fn add_leg(
        &mut self,
        now: Instant,
        room: MixId,
        id: LegId,
        spec: LegSpec,
    ) -> Result<(), EngineError> {
        self.clock = self.clock.max(now);
        if !self.rooms.contains_key(&room) {
            return Err(EngineError::NoSuchRoom(room));
        }
        if self.leg_index.contains_key(&id) {
            return Err(EngineError::LegExists(id));
        }
        let in_use = match spec.link {
            Some(t) => self
                .addresses
                .links
                .contains_key(&(spec.remote, t.peer_ssrc)),
            None => self.addresses.rtp.contains_key(&spec.remote) || self.video.owns(spec.remote),
        };
        if in_use {
            return Err(EngineError::RemoteInUse(spec.remote));
        }
        // RFC 3550 6.2: the first report after a random fraction of the interval.
        let first_rtcp = now
            + self
                .cfg
                .rtcp_interval
                .mul_f64(0.5 + 0.5 * self.rng.next_f64());
        let leg = Leg::new(
            now,
            id,
            room,
            spec,
            &self.cfg.jitter,
            &self.cfg.mix.talker,
            self.rng.next_u32(),
            self.rng.next_u32() as u16,
            self.rng.next_u32(),
            first_rtcp,
        )?;
        let (remote, rtcp_remote) = (leg.remote, leg.rtcp_remote);
        let latching = leg.spec.latching;
        let link = leg.spec.link;
        let idx = self.legs.insert(leg);
        self.leg_index.insert(id, idx);
        match link {
            Some(t) => {
                self.addresses.links.insert((remote, t.peer_ssrc), idx);
            }
            None => self.addresses.map(idx, remote, rtcp_remote),
        }
        if latching {
            self.latching.push(idx);
            *self.latching_ips.entry(remote.ip()).or_insert(0) += 1;
        }
        self.rooms
            .get_mut(&room)
            .expect("room checked above")
            .legs
            .push(idx);
        Ok(())
    }

    /// Removes a leg and returns its final statistics. The leg's RTCP BYE (with its
    /// last report) is queued: the peer learns at once that our stream ended.
    pub fn remove_leg(&mut self, id: LegId) -> Result<LegStats, EngineError> {
        let idx = self
            .leg_index
            .remove(&id)
            .ok_or(EngineError::NoSuchLeg(id))?;
        let mut leg = self
            .legs
            .remove(idx)
            .expect("leg_index points at live legs");
        // Control calls carry no time: the latest the engine was told will do for
        // the report's delay since the peer's last SR (within one tick).
        let (now, wall) = (self.clock, self.ntp(self.clock));
        rtcp_io::send_bye(&mut leg, now, wall, &self.cfg.cname, &mut self.tx);
        match leg.spec.link {
            Some(t) => {
                self.addresses.links.remove(&(leg.remote, t.peer_ssrc));
            }
            None => self.addresses.unmap(idx, leg.remote, leg.rtcp_remote),
        }
        if leg.spec.latching {
            self.latching.retain(|&i| i != idx);
            if let Some(n) = self.latching_ips.get_mut(&leg.remote.ip()) {
                *n -= 1;
                if *n == 0 {
                    self.latching_ips.remove(&leg.remote.ip());
                }
            }
        }
        if let Some(room) = self.rooms.get_mut(&leg.room) {
            room.legs.retain(|&i| i != idx);
        }
        let stats = leg.snapshot();
        self.retired.add(&stats);
        Ok(stats)
    }

    /// Mutes or unmutes a leg's contribution to the mix (hold, remote control).
    pub fn set_muted(&mut self, id: LegId, muted: bool) -> Result<(), EngineError> {
        let leg = self.leg_mut(id)?;
        leg.muted = muted;
        if muted {
            leg.talker.reset();
        }
        Ok(())
    }

    /// Turns sending the mix to a leg on or off.
    pub fn set_receives(&mut self, id: LegId, receives: bool) -> Result<(), EngineError> {
        self.leg_mut(id)?.receives = receives;
        Ok(())
    }

    /// Turns encode-once off or on for a room (benchmarks measure its worth).
    pub fn set_encode_once(&mut self, room: MixId, on: bool) -> Result<(), EngineError> {
        self.rooms
            .get_mut(&room)
            .ok_or(EngineError::NoSuchRoom(room))?
            .encode_once = on;
        Ok(())
    }

    /// Adds an incoming video stream to a room.
    pub fn add_video_source(
        &mut self,
        now: Instant,
        room: MixId,
        id: VideoId,
        spec: VideoSourceSpec,
    ) -> Result<(), EngineError> {
        self.clock = self.clock.max(now);
        if !self.rooms.contains_key(&room) {
            return Err(EngineError::NoSuchRoom(room));
        }
        if spec.peer_ssrc.is_none() && self.addresses.rtp.contains_key(&spec.remote) {
            return Err(EngineError::RemoteInUse(spec.remote));
        }
        let interval = self.cfg.rtcp_interval;
        self.video
            .add_source(now, &mut self.rng, interval, room, id, spec)
    }

    /// Adds an outgoing video stream (a view slot or a relay) forwarding `source`
    /// from its next keyframe; returns the stream's SSRC.
    pub fn add_video_sink(
        &mut self,
        now: Instant,
        room: MixId,
        id: VideoId,
        spec: VideoSinkSpec,
        source: Option<VideoId>,
    ) -> Result<u32, EngineError> {
        self.clock = self.clock.max(now);
        if !self.rooms.contains_key(&room) {
            return Err(EngineError::NoSuchRoom(room));
        }
        if !spec.relay && self.addresses.rtp.contains_key(&spec.remote) {
            return Err(EngineError::RemoteInUse(spec.remote));
        }
        let interval = self.cfg.rtcp_interval;
        self.video.add_sink(
            now,
            &mut self.rng,
            interval,
            room,
            id,
            spec,
            source,
            &mut self.tx,
        )
    }

    /// Points a video sink at another source (`None`: pause it).
    pub fn switch_video_sink(
        &mut self,
        now: Instant,
        id: VideoId,
        source: Option<VideoId>,
    ) -> Result<(), EngineError> {
        self.clock = self.clock.max(now);
        self.video.switch_sink(now, id, source, &mut self.tx)
    }

    /// Removes a video source or sink and returns its figures.
    pub fn remove_video(&mut self, id: VideoId) -> Result<VideoStats, EngineError> {
        let (now, wall) = (self.clock, self.ntp(self.clock));
        self.video
            .remove(now, wall, &self.cfg.cname, id, &mut self.tx)
    }

    /// Every video source's and sink's figures, by id.
    pub fn video_stats(&self) -> Vec<(VideoId, VideoStats)> {
        self.video.snapshot()
    }

    fn leg_mut(&mut self, id: LegId) -> Result<&mut Leg, EngineError> {
        let idx = *self.leg_index.get(&id).ok_or(EngineError::NoSuchLeg(id))?;
        Ok(self
            .legs
            .get_mut(idx)
            .expect("leg_index points at live legs"))
    }

    /// A leg's statistics.
    pub fn leg_stats(&self, id: LegId) -> Option<LegStats> {
        let idx = *self.leg_index.get(&id)?;
        self.legs.get(idx).map(Leg::snapshot)
    }

    /// Legs of a room, in join order.
    pub fn room_legs(&self, room: MixId) -> Option<Vec<LegId>> {
        let r = self.rooms.get(&room)?;
        Some(
            r.legs
                .iter()
                .filter_map(|&i| self.legs.get(i))
                .map(|l| l.id)
                .collect(),
        )
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Runs due mix ticks, RTCP reports and media-timeout checks.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        let Some(mut due) = self.next_tick else {
            return;
        };
        while due <= now {
            let late = now - due;
            self.stats
                .lateness_us
                .saturating_record(late.as_micros() as u64);
            if late > LATE_TICK {
                self.stats.late_ticks += 1;
            }
            if late > MAX_CATCH_UP {
                // Too far behind to catch up frame by frame: play one tick now and
                // re-anchor; the jitter buffers absorb the gap.
                let missed = (late.as_micros() / TICK.as_micros()) as u64;
                self.stats.skipped_ticks += missed;
                due = now;
            }
            self.run_tick(now);
            due += TICK;
        }
        self.next_tick = Some(due);
        self.housekeeping(now);
    }

    fn run_tick(&mut self, now: Instant) {
        self.tick_no += 1;
        self.stats.ticks += 1;
        for room in self.rooms.values_mut() {
            let work = room.tick(
                now,
                self.tick_no,
                &mut self.legs,
                &mut self.tx,
                &mut self.events,
            );
            self.stats.encodes += work.encodes;
            self.stats.encode_failures += work.encode_failures;
            self.stats.shared_sends += work.shared_sends;
        }
    }

    /// RTCP reports and media timeouts (once per tick, over all legs), and the
    /// video streams' timers.
    fn housekeeping(&mut self, now: Instant) {
        let ntp = self.ntp(now);
        if !self.video.is_empty() {
            let interval = self.cfg.rtcp_interval;
            let (cname, rng, tx) = (&self.cfg.cname, &mut self.rng, &mut self.tx);
            self.video.housekeeping(now, ntp, interval, cname, rng, tx);
        }
        let interval = self.cfg.rtcp_interval;
        let (timeout, link_timeout) = (self.cfg.media_timeout, self.cfg.link_timeout);
        for (_, leg) in self.legs.iter_mut() {
            if leg.next_rtcp <= now {
                rtcp_io::send_report(leg, now, ntp, &self.cfg.cname, &mut self.tx);
                leg.next_rtcp = now + interval.mul_f64(0.5 + self.rng.next_f64());
            }
            let timeout = match leg.spec.link {
                Some(_) => Some(link_timeout),
                None => timeout,
            };
            if let Some(t) = timeout {
                if !leg.timeout_reported && now.saturating_duration_since(leg.last_rx) >= t {
                    leg.timeout_reported = true;
                    self.events.push_back(EngineEvent::MediaTimeout {
                        room: leg.room,
                        leg: leg.id,
                    });
                }
            }
        }
    }

    /// Wall-clock time at `now`, since the Unix epoch.
    fn ntp(&self, now: Instant) -> Duration {
        let (at, unix) = self.cfg.wallclock;
        unix + now.saturating_duration_since(at)
    }

    // ---- output --------------------------------------------------------------

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.tx.pop()
    }

    /// The next event for the control side.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] wants to run next (`None`: no rooms, idle).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }
}

mod rtcp_io;

#[cfg(test)]
mod guard_tests;
#[cfg(test)]
mod link_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod video_tests;
