//! The rewriter's rules as timelines: each row is one packet arriving and what it
//! is sent as (or that it is dropped).

use std::time::{Duration, Instant};

use super::rewrite::{RewriteStats, Rewriter};
use super::FrameInfo;
use crate::testclock::anchor;

/// Keyframe start, frame start, neither.
const K: FrameInfo = FrameInfo {
    frame_start: true,
    keyframe: true,
};
const S: FrameInfo = FrameInfo {
    frame_start: true,
    keyframe: false,
};
const N: FrameInfo = FrameInfo {
    frame_start: false,
    keyframe: false,
};

/// Sources: two layers of publisher 1, one layer of publisher 2.
const P1_LOW: u32 = 10;
const P1_HIGH: u32 = 12;
const P2_LOW: u32 = 20;

/// (ms since start, source, seq, ts, payload info, what it is sent as).
type Row = (u64, u32, u16, u32, FrameInfo, Option<(u16, u32)>);

fn at(ms: u64) -> Instant {
    anchor() + Duration::from_millis(ms)
}

/// Feeds `rows` in order and checks each answer.
fn run(rw: &mut Rewriter, name: &str, rows: &[Row]) {
    for (i, &(ms, src, seq, ts, info, want)) in rows.iter().enumerate() {
        let got = rw.on_packet(at(ms), src, seq, ts, info);
        assert_eq!(
            got, want,
            "{name}: row {i} (src {src} seq {seq} at {ms} ms)"
        );
    }
}

fn subscribed(src: u32) -> Rewriter {
    let mut rw = Rewriter::new(0xfeed, 1000, 50_000);
    rw.switch_to(src);
    rw
}

#[test]
fn the_first_subscribe_drops_until_a_keyframe_then_starts_at_the_given_origin() {
    let mut rw = subscribed(P1_LOW);
    assert!(rw.wants_keyframe());
    assert_eq!((rw.current(), rw.pending()), (None, Some(P1_LOW)));
    run(
        &mut rw,
        "first subscribe",
        &[
            (0, P1_LOW, 7, 900, S, None),
            (10, P1_LOW, 8, 900, N, None),
            (20, P2_LOW, 3, 5, K, None),
            (40, P1_LOW, 9, 4500, K, Some((1000, 50_000))),
            (40, P1_LOW, 10, 4500, N, Some((1001, 50_000))),
            (100, P1_LOW, 11, 9000, S, Some((1002, 54_500))),
        ],
    );
    assert!(!rw.wants_keyframe());
    assert_eq!((rw.current(), rw.pending()), (Some(P1_LOW), None));
    assert_eq!(rw.ssrc(), 0xfeed);
    assert_eq!(
        rw.stats(),
        RewriteStats {
            forwarded: 3,
            dropped_waiting: 2,
            dropped_late: 0,
            switches: 1,
        }
    );
}

#[test]
fn a_layer_switch_keeps_the_old_layer_until_the_new_keyframe_and_continues_seq_and_ts() {
    let mut rw = subscribed(P1_LOW);
    run(
        &mut rw,
        "low",
        &[
            (0, P1_LOW, 100, 3000, K, Some((1000, 50_000))),
            (66, P1_LOW, 101, 9000, S, Some((1001, 56_000))),
        ],
    );
    rw.switch_to(P1_HIGH);
    assert!(rw.wants_keyframe());
    // The high layer numbers its packets on its own; only the arrival clock links
    // the two: 34 ms after the last low packet is 3060 ticks.
    run(
        &mut rw,
        "to high",
        &[
            (80, P1_HIGH, 40_000, 777, S, None),
            (90, P1_LOW, 102, 11_000, N, Some((1002, 58_000))),
            (100, P1_HIGH, 40_001, 2577, N, None),
            (124, P1_HIGH, 40_002, 4377, K, Some((1003, 58_000 + 3060))),
            (125, P1_HIGH, 40_003, 4377, N, Some((1004, 61_060))),
            (126, P1_LOW, 103, 12_000, S, None),
            (190, P1_HIGH, 40_004, 10_377, S, Some((1005, 67_060))),
        ],
    );
    assert_eq!(rw.current(), Some(P1_HIGH));
    assert_eq!(rw.stats().switches, 2);
    assert_eq!(rw.stats().dropped_waiting, 2);
}

#[test]
fn a_publisher_switch_follows_the_same_rules_across_unrelated_bases() {
    let mut rw = subscribed(P1_HIGH);
    run(
        &mut rw,
        "publisher 1",
        &[
            (0, P1_HIGH, 65_000, 4_000_000_000, K, Some((1000, 50_000))),
            (33, P1_HIGH, 65_001, 4_000_003_000, S, Some((1001, 53_000))),
        ],
    );
    rw.switch_to(P2_LOW);
    run(
        &mut rw,
        "publisher 2",
        &[
            (50, P2_LOW, 1, 10, N, None),
            // 1 s after the last packet of publisher 1: 90_000 ticks.
            (1033, P2_LOW, 2, 10, K, Some((1002, 53_000 + 90_000))),
            (1066, P2_LOW, 3, 3010, S, Some((1003, 146_000))),
        ],
    );
    // And back: publisher 1's offsets are fixed anew at its next keyframe.
    rw.switch_to(P1_HIGH);
    run(
        &mut rw,
        "back to publisher 1",
        &[
            (1070, P1_HIGH, 65_100, 4_000_300_000, S, None),
            (
                1100,
                P1_HIGH,
                65_101,
                4_000_303_000,
                K,
                Some((1004, 146_000 + 3060)),
            ),
        ],
    );
}

#[test]
fn sequence_numbers_and_timestamps_wrap_on_both_sides() {
    // The output starts just before both wraps; the input wraps too.
    let mut rw = Rewriter::new(1, 65_534, u32::MAX - 2999);
    rw.switch_to(P1_LOW);
    run(
        &mut rw,
        "wraps",
        &[
            (
                0,
                P1_LOW,
                65_535,
                u32::MAX - 100,
                K,
                Some((65_534, u32::MAX - 2999)),
            ),
            (33, P1_LOW, 0, 2899, S, Some((65_535, 0))),
            (66, P1_LOW, 1, 5899, S, Some((0, 3000))),
        ],
    );
    rw.switch_to(P2_LOW);
    run(
        &mut rw,
        "switch after the wrap",
        &[(100, P2_LOW, 65_535, 7, K, Some((1, 3000 + 3060)))],
    );
}

#[test]
fn a_switch_continues_from_the_highest_packet_sent_not_the_last() {
    let mut rw = subscribed(P1_LOW);
    run(
        &mut rw,
        "reordered",
        &[
            (0, P1_LOW, 10, 0, K, Some((1000, 50_000))),
            (10, P1_LOW, 12, 3000, S, Some((1002, 53_000))),
            // Late: its seq and ts show the reordering unchanged.
            (20, P1_LOW, 11, 0, N, Some((1001, 50_000))),
        ],
    );
    rw.switch_to(P2_LOW);
    run(
        &mut rw,
        "switch",
        // 10 ms since the last packet, but the old source's frames are 3000
        // ticks apart: the new one's first frame comes one frame later.
        &[(30, P2_LOW, 500, 0, K, Some((1003, 53_000 + 3000)))],
    );
}

#[test]
fn a_keyframe_arriving_just_after_the_old_layers_frame_still_comes_one_frame_later() {
    let mut rw = subscribed(P1_LOW);
    run(
        &mut rw,
        "30 fps",
        &[
            (0, P1_LOW, 10, 0, K, Some((1000, 50_000))),
            (33, P1_LOW, 11, 3000, S, Some((1001, 53_000))),
        ],
    );
    rw.switch_to(P1_HIGH);
    // One millisecond later: a frame interval later on the viewer's timeline.
    run(
        &mut rw,
        "switch",
        &[(34, P1_HIGH, 700, 77, K, Some((1002, 56_000)))],
    );
}

#[test]
fn the_sources_own_gaps_stay_visible() {
    let mut rw = subscribed(P1_LOW);
    run(
        &mut rw,
        "gaps",
        &[
            (0, P1_LOW, 10, 0, K, Some((1000, 50_000))),
            (10, P1_LOW, 13, 6000, S, Some((1003, 56_000))),
            (20, P1_LOW, 20, 12_000, S, Some((1010, 62_000))),
        ],
    );
}

#[test]
fn packets_of_the_new_source_from_before_its_switch_packet_are_dropped() {
    let mut rw = subscribed(P1_LOW);
    run(
        &mut rw,
        "old",
        &[(0, P1_LOW, 500, 0, K, Some((1000, 50_000)))],
    );
    rw.switch_to(P2_LOW);
    run(
        &mut rw,
        "reordering around the switch",
        &[
            (10, P2_LOW, 99, 1000, N, None),
            (20, P2_LOW, 101, 4000, K, Some((1001, 50_000 + 1800))),
            // 100 and 98 were sent before the keyframe: they would reuse 1000, 998.
            (21, P2_LOW, 100, 1000, N, None),
            (22, P2_LOW, 103, 4000, N, Some((1003, 51_800))),
            (23, P2_LOW, 98, 1000, S, None),
            (24, P2_LOW, 102, 4000, N, Some((1002, 51_800))),
            // The old source's stragglers are not ours any more.
            (25, P1_LOW, 501, 0, N, None),
        ],
    );
    assert_eq!(rw.stats().dropped_late, 2);
    assert_eq!(rw.stats().dropped_waiting, 1);
}

#[test]
fn a_long_run_after_a_switch_loses_nothing_when_its_numbers_wrap() {
    let mut rw = subscribed(P1_LOW);
    let mut seq = 100u16;
    let mut ts = 0u32;
    let first = rw.on_packet(at(0), P1_LOW, seq, ts, K);
    assert_eq!(first, Some((1000, 50_000)));
    // 200_000 packets: seq wraps three times past the switch packet's number.
    for i in 1..200_000u32 {
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(30);
        let got = rw.on_packet(at(u64::from(i / 3)), P1_LOW, seq, ts, N);
        let want = (
            1000u16.wrapping_add(i as u16),
            50_000u32.wrapping_add(30 * i),
        );
        assert_eq!(got, Some(want), "packet {i}");
    }
    assert_eq!(rw.stats().dropped_late, 0);
}

#[test]
fn a_source_that_jumps_its_sequence_numbers_keeps_flowing() {
    for jump in [2000u16, 20_000, 40_000, 60_000] {
        let mut rw = subscribed(P1_LOW);
        assert!(rw.on_packet(at(0), P1_LOW, 100, 0, K).is_some());
        let jumped = 100u16.wrapping_add(jump);
        for k in 0..3000u16 {
            let got = rw.on_packet(at(1), P1_LOW, jumped.wrapping_add(k), 0, N);
            let want = 1000u16.wrapping_add(jump).wrapping_add(k);
            assert_eq!(got, Some((want, 50_000)), "jump {jump}, packet {k}");
        }
        // The next source continues after the jumped numbering the viewer saw.
        rw.switch_to(P2_LOW);
        let got = rw.on_packet(at(2), P2_LOW, 7, 0, K).map(|o| o.0);
        assert_eq!(
            got,
            Some(1000u16.wrapping_add(jump).wrapping_add(3000)),
            "jump {jump}"
        );
    }
}

#[test]
fn stop_drops_everything_and_a_resume_waits_for_a_keyframe_and_continues() {
    let mut rw = subscribed(P1_LOW);
    run(
        &mut rw,
        "before",
        &[(0, P1_LOW, 1, 0, K, Some((1000, 50_000)))],
    );
    rw.stop();
    assert_eq!(
        (rw.current(), rw.pending(), rw.wants_keyframe()),
        (None, None, false)
    );
    run(
        &mut rw,
        "stopped",
        &[
            (10, P1_LOW, 2, 900, K, None),
            (20, P1_LOW, 3, 1800, S, None),
        ],
    );
    rw.switch_to(P1_LOW);
    assert!(rw.wants_keyframe());
    run(
        &mut rw,
        "resumed",
        &[
            (30, P1_LOW, 4, 2700, S, None),
            // 10 s paused: 900_000 ticks later.
            (10_000, P1_LOW, 5, 3600, K, Some((1001, 950_000))),
            (10_033, P1_LOW, 6, 6600, S, Some((1002, 953_000))),
        ],
    );
    // Only waiting packets count as dropped-waiting, not those while stopped.
    assert_eq!(rw.stats().dropped_waiting, 1);
}

#[test]
fn switching_to_the_current_source_cancels_a_pending_switch() {
    let mut rw = subscribed(P1_LOW);
    assert!(rw.on_packet(at(0), P1_LOW, 1, 0, K).is_some());
    rw.switch_to(P1_HIGH);
    rw.switch_to(P2_LOW);
    assert_eq!(rw.pending(), Some(P2_LOW), "the latest request wins");
    rw.switch_to(P1_LOW);
    assert_eq!((rw.current(), rw.pending()), (Some(P1_LOW), None));
    assert!(!rw.wants_keyframe());
    assert_eq!(rw.on_packet(at(10), P2_LOW, 1, 0, K), None);
    assert_eq!(rw.on_packet(at(10), P1_LOW, 2, 0, N), Some((1001, 50_000)));
    assert_eq!(rw.stats().switches, 1);
}

#[test]
fn a_switch_in_the_same_instant_still_advances_the_timestamp() {
    let mut rw = subscribed(P1_LOW);
    assert!(rw.on_packet(at(0), P1_LOW, 1, 0, K).is_some());
    rw.switch_to(P2_LOW);
    assert_eq!(rw.on_packet(at(0), P2_LOW, 1, 0, K), Some((1001, 50_001)));
}

#[test]
fn a_keyframe_of_the_current_source_changes_nothing() {
    let mut rw = subscribed(P1_LOW);
    run(
        &mut rw,
        "keys",
        &[
            (0, P1_LOW, 1, 0, K, Some((1000, 50_000))),
            (500, P1_LOW, 2, 300, K, Some((1001, 50_300))),
        ],
    );
    assert_eq!(rw.stats().switches, 1);
}
