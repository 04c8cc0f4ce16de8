//! What a run found: the JSON report, the human summary and the progress line.

use super::analysis::{EarCounts, Expect};
use super::media::{Interval, ParticipantOutcome, Role};
use super::plot::TimePoint;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;

/// Percentiles of a distribution, milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Pcts {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Pcts {
    /// From a histogram in µs; `None` when it is empty.
    pub fn of_us(h: &Histogram<u64>) -> Option<Pcts> {
        if h.is_empty() {
            return None;
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Some(Pcts {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        })
    }
}

/// Packet totals over the measurement window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Packets {
    pub sent: u64,
    pub received: u64,
    /// What the participants' incoming streams say was sent to them, and of that
    /// what never arrived.
    pub expected: u64,
    pub lost: u64,
    pub loss_pct: f64,
    /// What the participants should have received (one packet per 20 ms each), and
    /// how much less came, percent. A target that falls behind sends fewer packets
    /// without gaps in their numbers: that is a shortfall, not loss.
    pub due: u64,
    pub shortfall_pct: f64,
}

impl Packets {
    pub fn add(&mut self, iv: &Interval, period_s: f64) {
        self.sent += iv.sent;
        self.received += iv.received;
        self.expected += iv.expected;
        self.lost += iv.lost;
        self.loss_pct = pct(self.lost, self.expected);
        self.due += (iv.participants as f64 * period_s * 50.0).round() as u64;
        self.shortfall_pct = pct(self.due.saturating_sub(self.received), self.due);
    }
}

pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// One point of the timeline (one report period): what the plot draws, and the
/// generator's and the streams' health.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TimelinePoint {
    #[serde(flatten)]
    pub plot: TimePoint,
    pub jitter_p99_ms: Option<f64>,
    pub send_late_p99_ms: Option<f64>,
}

impl TimelinePoint {
    pub fn of(iv: &Interval, period_s: f64) -> TimelinePoint {
        let lat = Pcts::of_us(&iv.latency);
        TimelinePoint {
            plot: TimePoint {
                t_s: iv.t.as_secs_f64(),
                participants: iv.participants as u32,
                tx_pps: iv.sent as f64 / period_s,
                rx_pps: iv.received as f64 / period_s,
                loss_pct: pct(iv.lost, iv.expected),
                latency_p50_ms: lat.map(|p| p.p50),
                latency_p99_ms: lat.map(|p| p.p99),
            },
            jitter_p99_ms: Pcts::of_us(&iv.jitter).map(|p| p.p99),
            send_late_p99_ms: Pcts::of_us(&iv.send_late).map(|p| p.p99),
        }
    }

    /// The live progress line.
    pub fn progress(&self, wanted: usize) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        format!(
            "[{:>6.1}s] up {:>5}/{:<5} tx {:>7.0}/s rx {:>7.0}/s loss {:>5.2}%  latency p50 {:>5} p99 {:>5} ms  jitter p99 {:>4} ms  gen late p99 {:>4} ms",
            self.plot.t_s,
            self.plot.participants,
            wanted,
            self.plot.tx_pps,
            self.plot.rx_pps,
            self.plot.loss_pct,
            ms(self.plot.latency_p50_ms),
            ms(self.plot.latency_p99_ms),
            ms(self.jitter_p99_ms),
            ms(self.send_late_p99_ms),
        )
    }
}

/// The N-1 (or echo) judgement over all participants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Correctness {
    /// What participants should hear: "n-1" or "echo".
    pub expect: &'static str,
    pub judged: usize,
    pub ok: usize,
    pub failed: usize,
    /// Participants with nothing to judge: too short in the call, or (echo) a
    /// listener without a tone of its own.
    pub unjudged: usize,
    pub counts: EarCounts,
}

impl Correctness {
    pub fn of(parts: &[ParticipantOutcome], expect: Expect) -> Correctness {
        let mut c = Correctness {
            expect: match expect {
                Expect::NMinusOne => "n-1",
                Expect::Echo => "echo",
            },
            ..Default::default()
        };
        for p in parts {
            c.counts.add(&p.ears);
            match p.ears.verdict(expect) {
                Some(true) => c.ok += 1,
                Some(false) => c.failed += 1,
                None => c.unjudged += 1,
            }
        }
        c.judged = c.ok + c.failed;
        c
    }
}

/// One participant in the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct ParticipantReport {
    pub idx: usize,
    pub room: usize,
    pub codec: &'static str,
    pub role: String,
    pub joined_s: f64,
    pub left_s: Option<f64>,
    pub sent: u64,
    pub received: u64,
    pub expected: u64,
    pub lost: i64,
    pub jitter_ms: f64,
    pub undecodable: u64,
    pub latency_ms: Option<Pcts>,
    pub ears: EarCounts,
    pub verdict: Option<bool>,
}

impl ParticipantReport {
    pub fn of(p: &ParticipantOutcome, expect: Expect) -> ParticipantReport {
        ParticipantReport {
            idx: p.idx,
            room: p.room,
            codec: p.codec.name(),
            role: match p.role {
                Role::Listener => "listener".into(),
                Role::Tone { slot } => format!("tone {}", slot),
                Role::Speech { .. } => "speech".into(),
            },
            joined_s: p.joined.as_secs_f64(),
            left_s: p.left.map(|d| d.as_secs_f64()),
            sent: p.sent,
            received: p.received,
            expected: p.expected,
            lost: p.lost,
            jitter_ms: p.jitter_ms,
            undecodable: p.undecodable,
            latency_ms: Pcts::of_us(&p.latency),
            ears: p.ears,
            verdict: p.ears.verdict(expect),
        }
    }
}

/// The generator's own health: a run where it fell behind measures the generator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct GeneratorHealth {
    pub send_late_ms: Option<Pcts>,
    pub drain_lag_ms: Option<Pcts>,
    /// Datagrams the kernel dropped because the generator's receive buffer was full.
    pub overflowed: u64,
    /// CPU seconds of the generator's media thread in the window.
    pub cpu_s: Option<f64>,
    /// True when the generator fell behind: the figures would measure the generator,
    /// not the target. See [`GeneratorHealth::of`].
    pub behind: bool,
}

/// Send lateness p99 above which the generator's pacing no longer is the 20 ms the
/// target should see, ms.
const SEND_LATE_MAX_MS: f64 = 5.0;
/// Receive backlog p99 above which bursts pile up from one mix period into the
/// next, ms: one period.
const DRAIN_LAG_MAX_MS: f64 = 20.0;

impl GeneratorHealth {
    /// The generator fell behind when it sent late, when its socket overflowed (the
    /// target would be blamed for the loss), or when what the target sends in one
    /// period was not read before the next period's came. A shorter backlog costs
    /// nothing: latency is timed by kernel receive stamps, not by when it was read.
    pub fn of(
        send_late: &Histogram<u64>,
        drain_lag: &Histogram<u64>,
        overflowed: u64,
        cpu_s: Option<f64>,
    ) -> Self {
        let send = Pcts::of_us(send_late);
        let drain = Pcts::of_us(drain_lag);
        GeneratorHealth {
            send_late_ms: send,
            drain_lag_ms: drain,
            overflowed,
            cpu_s,
            behind: send.is_some_and(|p| p.p99 > SEND_LATE_MAX_MS)
                || drain.is_some_and(|p| p.p99 > DRAIN_LAG_MAX_MS)
                || overflowed > 0,
        }
    }
}

/// The target's health where it can be observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TargetHealth {
    /// CPU seconds the target used in the window (with `--target-pid` or an
    /// embedded node).
    pub cpu_s: Option<f64>,
    /// CPU seconds per participant-minute.
    pub cpu_s_per_participant_minute: Option<f64>,
    /// Mix ticks and late mix ticks in the window (scnf only).
    pub ticks: Option<u64>,
    pub late_ticks: Option<u64>,
}

/// One step of a ramp.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Step {
    pub participants: usize,
    pub seconds: f64,
    pub packets: Packets,
    pub latency_ms: Option<Pcts>,
    pub jitter_ms: Option<Pcts>,
    pub generator: GeneratorHealth,
    pub target: TargetHealth,
    /// Why the step is not clean (empty when it is).
    pub problems: Vec<String>,
}

/// The whole report (`--report FILE`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub target: String,
    pub scenario: serde_json::Value,
    /// Length of the measurement window (after the warm-up), seconds.
    pub measured_s: f64,
    pub participants: usize,
    pub packets: Packets,
    pub latency_ms: Option<Pcts>,
    pub jitter_ms: Option<Pcts>,
    pub correctness: Correctness,
    pub generator: GeneratorHealth,
    pub target_health: TargetHealth,
    pub steps: Vec<Step>,
    /// Ramp only: the largest clean step.
    pub capacity: Option<usize>,
    pub joins_failed: u64,
    pub foreign_datagrams: u64,
    pub timeline: Vec<TimelinePoint>,
    /// Latency distribution: (bucket upper bound ms, count).
    pub latency_buckets: Vec<(f64, u64)>,
    pub per_participant: Vec<ParticipantReport>,
    /// Why the run is not a pass (empty when it is).
    pub problems: Vec<String>,
}

/// Buckets of a µs histogram for plotting: about 40 linear buckets from 0 to p99.9.
pub fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let top = h.value_at_quantile(0.999).max(1);
    let step = (top / 40).max(1);
    h.iter_linear(step)
        .take_while(|v| v.value_iterated_to() <= top + step)
        .map(|v| {
            (
                v.value_iterated_to() as f64 / 1000.0,
                v.count_since_last_iteration(),
            )
        })
        .collect()
}

impl Report {
    /// The plot: latency distribution and throughput over time (SVG).
    pub fn svg(&self) -> String {
        let timeline: Vec<TimePoint> = self.timeline.iter().map(|p| p.plot).collect();
        let title = format!(
            "rtpgen → {}: {} participants, {:.0} s measured",
            self.target, self.participants, self.measured_s
        );
        super::plot::svg(&super::plot::PlotInput {
            title: &title,
            latency_buckets: &self.latency_buckets,
            latency_p50_ms: self.latency_ms.map(|p| p.p50),
            latency_p99_ms: self.latency_ms.map(|p| p.p99),
            timeline: &timeline,
        })
    }

    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let ms = |p: &Option<Pcts>| {
            p.map_or("none".to_string(), |p| {
                format!(
                    "p50 {:.2} / p90 {:.2} / p99 {:.2} / max {:.2} ms ({} samples)",
                    p.p50, p.p90, p.p99, p.max, p.count
                )
            })
        };
        let _ = writeln!(
            s,
            "\nrtpgen against {}: {} participants, {:.0} s measured",
            self.target, self.participants, self.measured_s
        );
        let p = &self.packets;
        let _ = writeln!(
            s,
            "  packets    sent {}  received {} of {} due (shortfall {:.3} %)  lost {} of {} ({:.3} %)",
            p.sent, p.received, p.due, p.shortfall_pct, p.lost, p.expected, p.loss_pct
        );
        let _ = writeln!(s, "  latency    {}", ms(&self.latency_ms));
        let _ = writeln!(s, "  jitter     {}", ms(&self.jitter_ms));
        let c = &self.correctness;
        let _ = writeln!(
            s,
            "  {:<10} {} of {} judged participants right, {} wrong, {} not judged (nothing to judge: too short in the call, or an echo listener) (heard {} of {} expected talker-frames; own voice {} times; ghosts {})",
            c.expect, c.ok, c.judged, c.failed, c.unjudged, c.counts.heard, c.counts.expected, c.counts.own_heard, c.counts.ghosts
        );
        let g = &self.generator;
        let _ = writeln!(
            s,
            "  generator  send lateness {}; receive backlog {}; dropped in its own socket {}; cpu {}{}",
            ms(&g.send_late_ms),
            ms(&g.drain_lag_ms),
            g.overflowed,
            g.cpu_s.map_or("-".into(), |c| format!("{c:.2} s")),
            if g.behind {
                "  — FELL BEHIND, figures rejected"
            } else {
                ""
            }
        );
        let t = &self.target_health;
        if t.cpu_s.is_some() || t.ticks.is_some() {
            let _ = writeln!(
                s,
                "  target     cpu {}  ({} CPU-s per participant-minute); mix ticks {} late {}",
                t.cpu_s.map_or("-".into(), |c| format!("{c:.2} s")),
                t.cpu_s_per_participant_minute
                    .map_or("-".into(), |c| format!("{c:.5}")),
                t.ticks.map_or("-".into(), |c| c.to_string()),
                t.late_ticks.map_or("-".into(), |c| c.to_string()),
            );
        }
        if !self.steps.is_empty() {
            let _ = writeln!(s, "  ramp:");
            for st in &self.steps {
                let _ = writeln!(
                    s,
                    "    {:>6} participants  loss {:>6.3} %  latency p99 {:>7}  cpu/pm {:>9}  {}",
                    st.participants,
                    st.packets.loss_pct,
                    st.latency_ms
                        .map_or("-".into(), |p| format!("{:.1} ms", p.p99)),
                    st.target
                        .cpu_s_per_participant_minute
                        .map_or("-".into(), |c| format!("{c:.5}")),
                    if st.problems.is_empty() {
                        "clean".to_string()
                    } else {
                        st.problems.join("; ")
                    }
                );
            }
            let _ = writeln!(
                s,
                "  capacity   {}",
                self.capacity
                    .map_or("no clean step".to_string(), |c| format!("{c} participants"))
            );
        }
        if self.problems.is_empty() {
            let _ = writeln!(s, "  verdict    PASS");
        } else {
            let _ = writeln!(s, "  verdict    FAIL: {}", self.problems.join("; "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(ms: f64) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        h.record_n((ms * 1000.0) as u64, 100).unwrap();
        h
    }

    #[test]
    fn the_generator_is_behind_when_it_sends_late_piles_up_bursts_or_overflows() {
        let behind = |send, drain, overflowed| {
            GeneratorHealth::of(&hist(send), &hist(drain), overflowed, None).behind
        };
        assert!(
            !behind(0.3, 15.0, 0),
            "a backlog within one period is harmless"
        );
        assert!(behind(6.0, 1.0, 0));
        assert!(behind(0.3, 25.0, 0));
        assert!(behind(0.3, 1.0, 1));
    }
}
