//! Part 2: mouth-to-ear latency per cascade hop.
//!
//! Rooms of 5 PCMU phones on the cluster. Round-robin placement puts callers 1 and
//! 4 on the room's primary and callers 2, 3 and 5 on the two secondaries; in even
//! rooms caller 1 (on the primary) talks, in odd rooms caller 2 (on a secondary),
//! so between them the listeners cover 0 hops (same node), 1 hop (one end on the
//! primary) and 2 hops (two secondaries, through the primary). The hop count of a
//! listener is read from the scaler's `Status` (each member's node, the room's
//! primary), not assumed.
//!
//! How a latency is measured: the talker sends tone bursts (100 ms of 1 kHz at
//! -20 dBFS, starting on a frame boundary, silence between) in one of two patterns,
//! half the rooms each: every 300 ms (the talker never falls silent for longer than
//! the mixer's talker hangover, 400 ms) and every 1 s (each burst a new talkspurt);
//! the
//! listeners send silence. A burst's emission time is the send time of the frame it
//! starts in (`Heard::sent_at`). A listener decodes what it received in arrival
//! order; an onset is the first sample above -30 dBFS after at least 50 ms below
//! it, and its time is the arrival of its packet plus its offset in the frame at
//! 8 kHz. The latency is the onset time minus the emission time of the latest burst
//! sent before it (bursts are 300 ms apart or more, far more than any latency
//! here). Both
//! ends stamp with the same clock and the same rule, so packetisation is counted
//! alike on every path and the differences between hop counts are what the
//! cascade adds: its L16 leg, the next node's jitter buffer and mix tick. The first
//! 2 s are skipped while the jitter buffers converge from their start delay.

use crate::Error;
use hdrhistogram::Histogram;
use scnf_media::codec::g711::ulaw_decode;
use scnf_media::codec::CodecKind;
use scnf_media::probe::Tone;
use scnf_testkit::client::Client;
use scnf_testkit::participant::{Heard, Participant, Source};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const PER_ROOM: usize = 5;
/// Frames from one burst's start to the next (300 ms and 1 s: the two patterns),
/// and of tone (100 ms).
const PERIODS: [usize; 2] = [15, 50];
const BURST_FRAMES: usize = 5;
const FRAME: usize = 160;
/// -30 dBFS peak: well above the codec's silence, well below the -20 dBFS tone.
const THRESHOLD: i16 = 1036;
/// Samples below the threshold before a new onset counts (50 ms).
const QUIET: usize = 400;
const WARMUP: Duration = Duration::from_secs(2);

pub async fn run(quick: bool, base_port: u16) -> Result<(), Error> {
    let (rooms, talk) = if quick {
        (4, Duration::from_secs(7))
    } else {
        (8, Duration::from_secs(30))
    };
    let cl = crate::cluster(base_port, 8).await?;
    let mut c = Client::connect(cl.control()).await?;
    c.login("bench-latency", cl.secret.as_bytes()).await?;
    let bursts = PERIODS.map(|p| Arc::new(bursts(talk, p)));
    // Phones and where they send, per room; the talker's index.
    let mut placed = Vec::new();
    for r in 0..rooms {
        let talker = r % 2;
        let mut phones = Vec::new();
        let mut room_id = String::new();
        for i in 0..PER_ROOM {
            let source = if i == talker {
                Source::Samples(bursts[pattern(r)].clone())
            } else {
                Source::Silence
            };
            let p = Participant::bind([127, 0, 0, 1].into(), CodecKind::Pcmu, source).await?;
            let out = c
                .setup(
                    &call(r, i),
                    &format!("*3{}#", 8100 + r),
                    true,
                    &p.offer(false),
                )
                .await?;
            let remote = out
                .media_addr()
                .ok_or_else(|| format!("{}: {out:?}", call(r, i)))?;
            if let scnf_testkit::client::CallAnswer::Connect { room, .. } = &out {
                room_id = room.clone();
            }
            phones.push((p, remote));
        }
        placed.push((room_id, talker, phones));
    }
    let status = c.status().await?;
    let start = Instant::now() + Duration::from_millis(300);
    let mut runs = Vec::new();
    for (room_id, talker, phones) in placed {
        let info = status
            .rooms
            .iter()
            .find(|ri| ri.room == room_id)
            .ok_or_else(|| format!("room {room_id} not in the scaler's status"))?;
        let primary = info.primary.clone().unwrap_or_default();
        let r = runs.len() / PER_ROOM;
        let node_of = |i: usize| {
            info.members
                .iter()
                .find(|m| m.call == call(r, i))
                .and_then(|m| m.node.clone())
                .unwrap_or_default()
        };
        let talker_node = node_of(talker);
        for (i, (mut p, remote)) in phones.into_iter().enumerate() {
            let node = node_of(i);
            let hops = if i == talker {
                None
            } else if node == talker_node {
                Some(0)
            } else if node == primary || talker_node == primary {
                Some(1)
            } else {
                Some(2)
            };
            let task = tokio::spawn(async move {
                p.run(remote, start, talk, Duration::from_millis(300)).await
            });
            runs.push((r, i == talker, hops, task));
        }
    }
    let mut heard: Vec<(usize, bool, Option<usize>, Heard)> = Vec::new();
    for (r, is_talker, hops, task) in runs {
        heard.push((r, is_talker, hops, task.await??));
    }
    drop(c);
    cl.stop().await;

    // Per pattern, per hop count: listeners and latencies.
    let mut by_hops: Vec<Vec<(usize, Histogram<u64>)>> = (0..PERIODS.len())
        .map(|_| {
            (0..3)
                .map(|_| Ok((0, Histogram::<u64>::new(3)?)))
                .collect::<Result<_, Error>>()
        })
        .collect::<Result<_, Error>>()?;
    for r in 0..rooms {
        let Some((_, _, _, talker)) = heard.iter().find(|h| h.0 == r && h.1) else {
            continue;
        };
        let sent: Vec<Instant> = talker
            .sent_at
            .iter()
            .step_by(PERIODS[pattern(r)])
            .copied()
            .filter(|&t| t >= start + WARMUP)
            .collect();
        for (_, _, hops, h) in heard.iter().filter(|h| h.0 == r && !h.1) {
            let Some(hops) = *hops else { continue };
            let slot = &mut by_hops[pattern(r)][hops];
            slot.0 += 1;
            for lat in latencies(h, &sent, PERIODS[pattern(r)]) {
                slot.1.record(lat.as_micros() as u64)?;
            }
        }
    }
    println!();
    println!(
        "2. mouth-to-ear per cascade hop: {rooms} rooms of {PER_ROOM} PCMU phones, one talker each (tone bursts), {} s",
        talk.as_secs()
    );
    println!(
        "   {:<14} {:>9} {:>7} {:>8} {:>8} {:>8} {:>14} {:>14}",
        "bursts, hops",
        "listeners",
        "onsets",
        "p50 ms",
        "p99 ms",
        "max ms",
        "+p50 per hop",
        "+p99 per hop"
    );
    let ms = |us: u64| us as f64 / 1000.0;
    for (pat, classes) in by_hops.iter().enumerate() {
        let base = &classes[0].1;
        for (hops, (listeners, h)) in classes.iter().enumerate() {
            let what = format!("{} ms, {hops}", PERIODS[pat] * 20);
            if h.is_empty() {
                println!("   {what:<14} {listeners:>9} {:>7}", 0);
                continue;
            }
            let per_hop = |q: f64| {
                if hops == 0 || base.is_empty() {
                    "-".to_string()
                } else {
                    format!(
                        "{:+.1}",
                        (ms(h.value_at_quantile(q)) - ms(base.value_at_quantile(q))) / hops as f64
                    )
                }
            };
            println!(
                "   {:<14} {:>9} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>14} {:>14}",
                what,
                listeners,
                h.len(),
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
                per_hop(0.5),
                per_hop(0.99),
            );
        }
    }
    println!("   (requirement: a hop adds at most 25 ms p99)");
    Ok(())
}

/// Which burst pattern room `r` plays: rooms 0 and 1 (one talker on the primary,
/// one on a secondary) the first, 2 and 3 the second, and so on.
fn pattern(r: usize) -> usize {
    (r / 2) % PERIODS.len()
}

fn call(room: usize, i: usize) -> String {
    format!("lat{room}p{i}")
}

/// The talker's samples: bursts of tone on frame boundaries, silence between.
fn bursts(talk: Duration, period: usize) -> Vec<i16> {
    let frames = talk.as_millis() as usize / 20;
    let mut out = vec![0i16; frames * FRAME];
    let mut tone = Tone::at_dbfs(1000.0, -20.0);
    for start in (0..frames).step_by(period) {
        let end = (start + BURST_FRAMES).min(frames);
        tone.fill(&mut out[start * FRAME..end * FRAME]);
    }
    out
}

/// Each onset this listener heard, minus the latest burst emission before it.
fn latencies(h: &Heard, sent: &[Instant], period: usize) -> Vec<Duration> {
    let period = Duration::from_millis(20 * period as u64);
    let mut out = Vec::new();
    let mut quiet = 0usize;
    for ((_, payload), &arrived) in h.payloads.iter().zip(&h.arrivals) {
        for (o, &code) in payload.iter().enumerate() {
            let x = ulaw_decode(code);
            if x.unsigned_abs() <= THRESHOLD as u16 {
                quiet += 1;
                continue;
            }
            if quiet >= QUIET {
                let onset = arrived + Duration::from_micros(125 * o as u64);
                let before = sent.partition_point(|&t| t <= onset);
                if before > 0 {
                    let lat = onset - sent[before - 1];
                    if lat < period {
                        out.push(lat);
                    }
                }
            }
            quiet = 0;
        }
    }
    out
}
