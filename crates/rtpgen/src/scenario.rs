//! A run: places the calls, drives the media thread, churns, ramps, and reports.
//!
//! The control side is async (calls are placed over the target's signalling while
//! media flows); the media side is one thread ([`super::media`]). They talk over
//! channels: joins and leaves go down, one [`Interval`] per second comes up.
//!
//! - **Steady** (default): `rooms × per_room` participants join, a warm-up passes,
//!   then everything is measured for `duration`.
//! - **Churn**: during the steady run, `churn_per_s` times a second a listener
//!   leaves and a new participant takes its place in the same room.
//! - **Ramp**: rooms are added `step_rooms` at a time; each step is warmed up and
//!   measured; the ramp stops at the first step that is not clean (loss above the
//!   bound, a late mix tick on the target, the generator behind, a failed join) and
//!   the capacity is the largest clean step.

use super::analysis::Expect;
use super::media::{Command, Interval, Join, Media, MediaConfig, Role};
use super::report::{
    buckets, Correctness, GeneratorHealth, Packets, ParticipantReport, Pcts, Report, Step,
    TargetHealth, TimelinePoint,
};
use super::source::Pattern;
use super::target::{Joined, Target};
use hdrhistogram::Histogram;
use scnf_media::codec::CodecKind;
use scnf_media::util::Rng;
use scnf_testkit::cpu::CpuProbe;
use scnf_udp::fleet::FleetSocket;
use serde::Serialize;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Longest run accepted, so every run is bounded.
pub const MAX_RUN: Duration = Duration::from_secs(3600);
/// Most participants accepted.
pub const MAX_PARTICIPANTS: usize = 50_000;
const REPORT_PERIOD: Duration = Duration::from_secs(1);

/// What to run. See the module docs.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub rooms: usize,
    pub per_room: usize,
    /// Tone talkers per room (at most 8), judged for N-1 and timed for latency.
    pub talkers: usize,
    /// Speech talkers per room (from the speech sample).
    pub speakers: usize,
    /// Codecs, given to participants in turn.
    #[serde(serialize_with = "codec_names")]
    pub codecs: Vec<CodecKind>,
    pub talk_ms: u32,
    pub silence_ms: u32,
    pub warmup: Duration,
    pub duration: Duration,
    pub churn_per_s: f64,
    pub ramp: Option<Ramp>,
    pub settle: Duration,
    pub tone_dbfs: f64,
    /// Each packet the participants send is held back by a delay drawn uniformly from
    /// `0..=send_jitter` (seeded), as a jittery path would: reordering included.
    pub send_jitter: Duration,
    /// A step (or run) with more loss, or a larger shortfall of packets, than this
    /// is not clean, percent.
    pub loss_max_pct: f64,
    /// Ramp: a step whose latency p99 is more than this above the first step's is
    /// not clean (a mixer that falls behind delays its audio before it drops any),
    /// ms.
    pub latency_rise_ms: f64,
    pub seed: u64,
    /// Print the progress line every second.
    #[serde(skip)]
    pub progress: bool,
}

fn codec_names<S: serde::Serializer>(c: &[CodecKind], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(c.iter().map(|c| c.name()))
}

/// Ramp settings: `step_rooms` rooms more per step, each step measured for
/// `step_time` after the scenario's warm-up, up to `max_rooms`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Ramp {
    pub step_rooms: usize,
    pub step_time: Duration,
    pub max_rooms: usize,
}

impl Scenario {
    /// `rooms` of `per_room` tone participants as the tests and benches run them: 2
    /// talkers per room (1.5 s talk, 0.9 s silence, -20 dBFS), the four codecs in
    /// turn, 1 s warm-up, 4 s measured, no churn, 0.5 % loss allowed, seed 3.
    pub fn judged(rooms: usize, per_room: usize) -> Scenario {
        Scenario {
            rooms,
            per_room,
            talkers: 2,
            speakers: 0,
            codecs: vec![
                CodecKind::Pcmu,
                CodecKind::G722,
                CodecKind::Opus,
                CodecKind::Pcma,
            ],
            talk_ms: 1500,
            silence_ms: 900,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(4),
            churn_per_s: 0.0,
            ramp: None,
            settle: Duration::from_millis(600),
            tone_dbfs: -20.0,
            send_jitter: Duration::ZERO,
            loss_max_pct: 0.5,
            latency_rise_ms: 50.0,
            seed: 3,
            progress: false,
        }
    }

    /// Checks the bounds; the error says which value is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let rooms = self.ramp.map_or(self.rooms, |r| r.max_rooms);
        if self.per_room == 0 || rooms == 0 {
            return Err("at least one room of at least one participant".into());
        }
        if rooms.saturating_mul(self.per_room) > MAX_PARTICIPANTS {
            return Err(format!("at most {MAX_PARTICIPANTS} participants"));
        }
        if self.talkers > super::source::SLOT_TONES.len() {
            return Err(format!(
                "at most {} tone talkers per room",
                super::source::SLOT_TONES.len()
            ));
        }
        if self.talkers + self.speakers > self.per_room {
            return Err("more talkers than participants in a room".into());
        }
        if self.codecs.is_empty() {
            return Err("no codec".into());
        }
        let total = match self.ramp {
            Some(r) => {
                if r.step_rooms == 0 || r.step_time.is_zero() {
                    return Err("a ramp step adds at least one room and lasts".into());
                }
                (self.warmup + r.step_time) * r.max_rooms.div_ceil(r.step_rooms) as u32
            }
            None => self.warmup + self.duration,
        };
        if total > MAX_RUN {
            return Err(format!("the run would last {total:?}, over {MAX_RUN:?}"));
        }
        if !(0.0..=1000.0).contains(&self.churn_per_s) {
            return Err("churn must be 0..=1000 per second".into());
        }
        if !(-60.0..=-3.0).contains(&self.tone_dbfs) {
            return Err("tone level must be -60..=-3 dBFS".into());
        }
        Ok(())
    }

    fn pattern(&self) -> Pattern {
        Pattern {
            talk_ms: self.talk_ms,
            silence_ms: self.silence_ms,
        }
    }
}

/// Where CPU time is read.
#[derive(Clone, Debug)]
pub struct Probes {
    pub target: CpuProbe,
    pub generator: CpuProbe,
}

/// A participant's call.
struct Call {
    idx: usize,
    room: usize,
    role: Role,
    joined: Joined,
}

/// Measurements over a window of intervals.
struct Window {
    packets: Packets,
    latency: Histogram<u64>,
    jitter: Histogram<u64>,
    send_late: Histogram<u64>,
    drain_lag: Histogram<u64>,
    overflowed: u64,
    seconds: f64,
    participants: usize,
}

impl Window {
    fn new() -> Window {
        let h = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        Window {
            packets: Packets::default(),
            latency: h(),
            jitter: h(),
            send_late: h(),
            drain_lag: h(),
            overflowed: 0,
            seconds: 0.0,
            participants: 0,
        }
    }

    fn add(&mut self, iv: &Interval) {
        self.packets.add(iv, REPORT_PERIOD.as_secs_f64());
        let _ = self.latency.add(&iv.latency);
        let _ = self.jitter.add(&iv.jitter);
        let _ = self.send_late.add(&iv.send_late);
        let _ = self.drain_lag.add(&iv.drain_lag);
        self.overflowed += iv.overflowed;
        self.seconds += REPORT_PERIOD.as_secs_f64();
        self.participants = self.participants.max(iv.participants);
    }
}

/// Readings of the probes at one moment.
struct Reading {
    target_cpu: Option<f64>,
    gen_cpu: Option<f64>,
    ticks: Option<(u64, u64)>,
}

/// The run itself.
struct Run {
    sc: Scenario,
    target: Target,
    probes: Probes,
    commands: mpsc::Sender<Command>,
    intervals: UnboundedReceiver<Interval>,
    port: u16,
    calls: Vec<Call>,
    next_idx: usize,
    joins_failed: u64,
    timeline: Vec<TimelinePoint>,
    wanted: usize,
    rng: Rng,
}

/// Runs `sc` against `target`. `speech` is the 8 kHz speech sample (needed when
/// `sc.speakers > 0`).
pub async fn run(
    sc: Scenario,
    target: Target,
    speech: Option<Vec<i16>>,
    probes: Probes,
) -> Result<Report, String> {
    sc.validate()?;
    if sc.speakers > 0 && speech.is_none() {
        return Err("speech talkers need a speech sample".into());
    }
    let expect = match target {
        Target::Reflector(_) => Expect::Echo,
        _ => Expect::NMinusOne,
    };
    let socket = FleetSocket::bind(0, 16 << 20).map_err(|e| format!("generator socket: {e}"))?;
    let media = Media::new(
        MediaConfig {
            expect,
            settle: sc.settle,
            tone_dbfs: sc.tone_dbfs,
            send_jitter: sc.send_jitter,
            seed: sc.seed,
            interval: REPORT_PERIOD,
            speech: speech.map(Arc::new),
        },
        socket,
    );
    let port = media.port();
    let (commands, rx) = mpsc::channel();
    let (tx, intervals) = unbounded_channel();
    let thread = std::thread::Builder::new()
        .name("rtpgen-media".into())
        .spawn(move || {
            media.run(rx, |iv| {
                let _ = tx.send(iv);
            })
        })
        .map_err(|e| format!("media thread: {e}"))?;
    let mut run = Run {
        rng: Rng::new(sc.seed),
        sc,
        target,
        probes,
        commands,
        intervals,
        port,
        calls: Vec::new(),
        next_idx: 0,
        joins_failed: 0,
        timeline: Vec::new(),
        wanted: 0,
    };
    let result = run.drive().await;
    let _ = run.commands.send(Command::Stop);
    let outcome = thread
        .join()
        .map_err(|_| "the media thread panicked".to_string())?;
    // Calls end after the media stops, so no participant's end is measured as loss.
    for c in std::mem::take(&mut run.calls) {
        let _ = run.target.leave(&c.joined).await;
    }
    let (steps, window, target_health, gen) = result?;
    let correctness = Correctness::of(&outcome.participants, expect);
    let latency_ms = Pcts::of_us(&window.latency);
    let mut problems = Vec::new();
    if correctness.failed > 0 {
        problems.push(format!(
            "{} participant(s) heard wrong ({})",
            correctness.failed, correctness.expect
        ));
    }
    if correctness.judged == 0 && run.sc.talkers > 0 {
        problems.push("nobody could be judged (run too short?)".into());
    }
    if window.packets.loss_pct > run.sc.loss_max_pct {
        problems.push(format!("loss {:.3} %", window.packets.loss_pct));
    }
    if window.packets.shortfall_pct > run.sc.loss_max_pct && run.sc.churn_per_s == 0.0 {
        problems.push(format!(
            "{:.2} % fewer packets than due",
            window.packets.shortfall_pct
        ));
    }
    if run.joins_failed > 0 {
        problems.push(format!("{} join(s) failed", run.joins_failed));
    }
    if gen.behind {
        problems.push("the generator fell behind".into());
    }
    if target_health.late_ticks.is_some_and(|l| l > 0) {
        problems.push("late mix ticks on the target".into());
    }
    if run.sc.ramp.is_none() && window.packets.received == 0 {
        problems.push("nothing received".into());
    }
    let capacity = steps
        .iter()
        .take_while(|s| s.problems.is_empty())
        .last()
        .map(|s| s.participants);
    Ok(Report {
        tool: "rtpgen",
        target: run.target.kind().into(),
        scenario: serde_json::to_value(&run.sc).unwrap_or_default(),
        measured_s: window.seconds,
        participants: window.participants,
        packets: window.packets,
        latency_ms,
        jitter_ms: Pcts::of_us(&window.jitter),
        correctness,
        generator: gen,
        target_health,
        capacity: if run.sc.ramp.is_some() {
            capacity
        } else {
            None
        },
        steps,
        joins_failed: run.joins_failed,
        foreign_datagrams: outcome.foreign,
        timeline: run.timeline,
        latency_buckets: buckets(&window.latency),
        per_participant: outcome
            .participants
            .iter()
            .map(|p| ParticipantReport::of(p, expect))
            .collect(),
        problems,
    })
}

type Driven = (Vec<Step>, Window, TargetHealth, GeneratorHealth);

impl Run {
    async fn drive(&mut self) -> Result<Driven, String> {
        match self.sc.ramp {
            None => {
                for r in 0..self.sc.rooms {
                    self.join_room(r).await;
                }
                self.wait(self.sc.warmup, None).await?;
                let before = self.read().await;
                let mut w = Window::new();
                self.wait(self.sc.duration, Some(&mut w)).await?;
                let after = self.read().await;
                let (t, g) = self.health(&before, &after, &w);
                Ok((Vec::new(), w, t, g))
            }
            Some(ramp) => {
                let mut steps = Vec::new();
                let mut last = None;
                let mut first_p99: Option<f64> = None;
                let mut rooms = 0;
                while rooms < ramp.max_rooms {
                    let failed_before = self.joins_failed;
                    let add = ramp.step_rooms.min(ramp.max_rooms - rooms);
                    for r in rooms..rooms + add {
                        self.join_room(r).await;
                    }
                    rooms += add;
                    self.wait(self.sc.warmup, None).await?;
                    let before = self.read().await;
                    let mut w = Window::new();
                    self.wait(ramp.step_time, Some(&mut w)).await?;
                    let after = self.read().await;
                    let (t, g) = self.health(&before, &after, &w);
                    let mut problems = Vec::new();
                    if w.packets.loss_pct > self.sc.loss_max_pct {
                        problems.push(format!("loss {:.3} %", w.packets.loss_pct));
                    }
                    if w.packets.shortfall_pct > self.sc.loss_max_pct {
                        problems.push(format!(
                            "{:.2} % fewer packets than due",
                            w.packets.shortfall_pct
                        ));
                    }
                    if t.late_ticks.is_some_and(|l| l > 0) {
                        problems.push(format!("{} late mix ticks", t.late_ticks.unwrap_or(0)));
                    }
                    if g.behind {
                        problems.push("generator behind".into());
                    }
                    if self.joins_failed > failed_before {
                        problems.push(format!(
                            "{} joins failed",
                            self.joins_failed - failed_before
                        ));
                    }
                    if w.packets.received == 0 {
                        problems.push("nothing received".into());
                    }
                    let p99 = Pcts::of_us(&w.latency).map(|p| p.p99);
                    match (first_p99, p99) {
                        (Some(base), Some(now)) if now > base + self.sc.latency_rise_ms => {
                            problems.push(format!(
                                "latency p99 {now:.0} ms, {:.0} ms over the first step",
                                now - base
                            ));
                        }
                        (None, Some(now)) => first_p99 = Some(now),
                        _ => {}
                    }
                    let clean = problems.is_empty();
                    steps.push(Step {
                        participants: self.calls.len(),
                        seconds: w.seconds,
                        packets: w.packets,
                        latency_ms: Pcts::of_us(&w.latency),
                        jitter_ms: Pcts::of_us(&w.jitter),
                        generator: g,
                        target: t,
                        problems,
                    });
                    if self.sc.progress {
                        eprintln!(
                            "step {} participants: {}",
                            self.calls.len(),
                            if clean { "clean" } else { "degraded, stopping" }
                        );
                    }
                    last = Some((w, t, g));
                    if !clean {
                        break;
                    }
                }
                let (w, t, g) = last.unwrap_or_else(|| {
                    (
                        Window::new(),
                        TargetHealth::default(),
                        GeneratorHealth::default(),
                    )
                });
                Ok((steps, w, t, g))
            }
        }
    }

    /// Places every participant of room `room`.
    async fn join_room(&mut self, room: usize) {
        let per_room = self.sc.per_room;
        self.wanted += per_room;
        let talkers = self.sc.talkers;
        let speakers = self.sc.speakers;
        let cycle = (self.sc.talk_ms + self.sc.silence_ms).div_ceil(20) as u64;
        for i in 0..per_room {
            let role = if i < talkers {
                Role::Tone { slot: i }
            } else if i < talkers + speakers {
                Role::Speech {
                    offset: self.rng.below(1 << 16) as usize,
                }
            } else {
                Role::Listener
            };
            // Talkers take turns: their cycles are spread over the period.
            let offset = cycle.max(1) * i as u64 / (talkers + speakers).max(1) as u64;
            self.join_one(room, role, offset).await;
            self.pump();
        }
    }

    async fn join_one(&mut self, room: usize, role: Role, offset: u64) {
        let idx = self.next_idx;
        self.next_idx += 1;
        let codec = self.sc.codecs[idx % self.sc.codecs.len()];
        let me = std::net::SocketAddrV4::new(scnf_udp::fleet::participant_ip(idx), self.port);
        match self.target.join(room, idx, me, codec).await {
            Ok(joined) => {
                let _ = self.commands.send(Command::Join(Join {
                    idx,
                    room,
                    node: joined.media,
                    payload_type: joined.payload_type,
                    codec,
                    role,
                    pattern: if role == Role::Listener {
                        Pattern {
                            talk_ms: 0,
                            silence_ms: 1000,
                        }
                    } else {
                        self.sc.pattern()
                    },
                    offset,
                }));
                self.calls.push(Call {
                    idx,
                    room,
                    role,
                    joined,
                });
            }
            Err(e) => {
                self.joins_failed += 1;
                if self.joins_failed <= 5 {
                    eprintln!("rtpgen: participant {idx} could not join room {room}: {e}");
                }
            }
        }
    }

    /// One churn event: a random listener leaves and a new one joins its room.
    async fn churn_one(&mut self) {
        let listeners: Vec<usize> = (0..self.calls.len())
            .filter(|&k| self.calls[k].role == Role::Listener)
            .collect();
        if listeners.is_empty() {
            return;
        }
        let k = listeners[self.rng.below(listeners.len() as u64) as usize];
        let call = self.calls.swap_remove(k);
        let _ = self.commands.send(Command::Leave(call.idx));
        let _ = self.target.leave(&call.joined).await;
        self.join_one(call.room, Role::Listener, 0).await;
    }

    /// Handles intervals that arrived while calls were being placed.
    fn pump(&mut self) {
        while let Ok(iv) = self.intervals.try_recv() {
            self.record(&iv, None);
        }
    }

    fn record(&mut self, iv: &Interval, window: Option<&mut Window>) {
        let point = TimelinePoint::of(iv, REPORT_PERIOD.as_secs_f64());
        if self.sc.progress {
            eprintln!("{}", point.progress(self.wanted));
        }
        self.timeline.push(point);
        if let Some(w) = window {
            w.add(iv);
        }
    }

    /// Takes intervals for `d` (counted in report periods), churning meanwhile.
    async fn wait(&mut self, d: Duration, mut window: Option<&mut Window>) -> Result<(), String> {
        let periods = d.as_millis().div_ceil(REPORT_PERIOD.as_millis()) as usize;
        let churn_every =
            (self.sc.churn_per_s > 0.0).then(|| Duration::from_secs_f64(1.0 / self.sc.churn_per_s));
        let mut churn =
            churn_every.map(|p| tokio::time::interval_at(tokio::time::Instant::now() + p, p));
        let mut got = 0;
        while got < periods {
            tokio::select! {
                iv = self.intervals.recv() => {
                    let iv = iv.ok_or("the media thread stopped")?;
                    self.record(&iv, window.as_deref_mut());
                    got += 1;
                }
                _ = async { churn.as_mut().expect("guarded").tick().await }, if churn.is_some() => {
                    self.churn_one().await;
                }
            }
        }
        Ok(())
    }

    async fn read(&mut self) -> Reading {
        let ticks = self.target.workers().await.map(|ws| {
            ws.iter()
                .fold((0, 0), |(t, l), w| (t + w.ticks, l + w.late_ticks))
        });
        Reading {
            target_cpu: self.probes.target.seconds(),
            gen_cpu: self.probes.generator.seconds(),
            ticks,
        }
    }

    fn health(&self, a: &Reading, b: &Reading, w: &Window) -> (TargetHealth, GeneratorHealth) {
        let cpu = a.target_cpu.zip(b.target_cpu).map(|(a, b)| b - a);
        let pm = w.participants as f64 * w.seconds / 60.0;
        let target = TargetHealth {
            cpu_s: cpu,
            cpu_s_per_participant_minute: cpu.filter(|_| pm > 0.0).map(|c| c / pm),
            ticks: a.ticks.zip(b.ticks).map(|(a, b)| b.0 - a.0),
            late_ticks: a.ticks.zip(b.ticks).map(|(a, b)| b.1 - a.1),
        };
        let gen_cpu = a.gen_cpu.zip(b.gen_cpu).map(|(a, b)| b - a);
        (
            target,
            GeneratorHealth::of(&w.send_late, &w.drain_lag, w.overflowed, gen_cpu),
        )
    }
}
