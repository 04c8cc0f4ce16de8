//! Adaptation scenarios: what the delay converges to on jittery and bursty paths,
//! and that what it throws away is counted.

use super::*;

#[test]
fn a_path_with_30_ms_of_jitter_plays_without_late_packets_once_converged() {
    // (name, jitter, seed)
    let cases = [
        (
            "uniform 0-30 ms",
            Jitter::Uniform {
                max: Duration::from_millis(30),
            },
            21,
        ),
        (
            "half-normal 12 ms capped at 30 ms",
            Jitter::Normal {
                std_dev: Duration::from_millis(12),
                max: Duration::from_millis(30),
            },
            22,
        ),
    ];
    for (name, jitter, seed) in cases {
        let sc = Scenario {
            seconds: 120,
            path: PathConfig {
                latency: Duration::from_millis(30),
                jitter,
                ..PathConfig::default()
            },
            seed,
            ..Scenario::default()
        };
        let r = run(&sc, &mut ulaw());
        let s = &r.stats;
        // Converged within 20 s: from then on nothing is late, nothing is
        // concealed (no loss on this path), and the delay stays within the jitter
        // plus a tick.
        let settled = 20 * 50;
        assert_eq!(s.late, r.by_tick[settled].late, "{name}: {s:?}");
        assert_eq!(s.concealed_frames, s.late, "{name}: {s:?}");
        let worst = r.by_tick[settled..]
            .iter()
            .map(|t| t.delay_ms)
            .max()
            .unwrap_or(0);
        assert!(
            (30..=30 + 3 + 20 + 4 + 1).contains(&worst),
            "{name}: delay up to {worst} ms"
        );
    }
}

/// A sender that writes 256 ms at once (`ffmpeg -re`), each packet stamped for its
/// own 20 ms: the first packet of a burst is 240 ms "later" than the last.
fn bursty(max_delay_ms: u64, seconds: u64) -> Scenario {
    Scenario {
        seconds,
        burst_ms: Some(256),
        jitter: JitterConfig {
            max_delay: Duration::from_millis(max_delay_ms),
            ..JitterConfig::default()
        },
        ..Scenario::default()
    }
}

#[test]
fn a_bursty_sender_loses_no_frames_once_adapted() {
    let r = run(
        &bursty(JitterConfig::default().max_delay.as_millis() as u64, 60),
        &mut ulaw(),
    );
    let s = &r.stats;
    // The first bursts come before the delay has grown to them.
    let settled = 10 * 50;
    assert_eq!(s.late, r.by_tick[settled].late, "{s:?}");
    assert!(s.target_delay_ms >= 240, "{s:?}");
    // The first burst finds the first packet's playout faded out and re-anchors;
    // nothing later does, and the delay never shrinks below the burst again.
    assert_eq!(r.by_tick[settled].resyncs, s.resyncs, "{s:?}");
    assert!(s.resyncs <= 1, "{s:?}");
    assert!(
        r.by_tick[settled..].iter().all(|t| t.delay_ms >= 240),
        "{s:?}"
    );
    // Every packet sent that was not played is counted late.
    assert_eq!(r.path.sent - s.played - r.queued as u64, s.late, "{s:?}");
}

#[test]
fn frames_thrown_away_as_late_are_counted_exactly() {
    // Capped at 200 ms (the old default), a 256 ms-burst sender loses the start of
    // every burst: each such packet is counted late, and its frame concealed.
    let r = run(&bursty(200, 30), &mut ulaw());
    let s = &r.stats;
    let thrown_away = r.path.sent - s.played - r.queued as u64;
    assert!(thrown_away >= 100, "{s:?}");
    assert_eq!(r.path.lost + r.path.duplicated, 0);
    assert_eq!(s.late, thrown_away, "{s:?}");
    assert_eq!((s.flushed, s.overflow), (0, 0), "{s:?}");
    // Once playing steadily (the first bursts come while the 40 ms start delay has
    // faded to silence), each thrown-away packet leaves one concealed frame.
    let from = &r.by_tick[2 * 50];
    assert!(s.late - from.late >= 100, "{s:?}");
    assert_eq!(
        s.concealed_frames - from.concealed_frames,
        s.late - from.late,
        "{s:?}"
    );
}

#[test]
fn a_higher_delay_cap_leaves_well_behaved_legs_alone() {
    // (name, path jitter)
    let paths = [
        ("clean", Jitter::None),
        (
            "4 ms jitter",
            Jitter::Uniform {
                max: Duration::from_millis(4),
            },
        ),
    ];
    for (name, jitter) in paths {
        let at = |max_ms: u64| {
            let sc = Scenario {
                path: PathConfig {
                    latency: Duration::from_millis(30),
                    jitter,
                    ..PathConfig::default()
                },
                jitter: JitterConfig {
                    max_delay: Duration::from_millis(max_ms),
                    ..JitterConfig::default()
                },
                ..Scenario::default()
            };
            run(&sc, &mut ulaw())
        };
        let (low, high) = (at(200), at(1000));
        assert_eq!(low.out, high.out, "{name}");
        assert!(low.by_tick == high.by_tick, "{name}");
    }
}
