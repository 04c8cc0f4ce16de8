#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use scnf_media::rtp::rtcp::{parse_feedback, Feedback};
use scnf_media::video::{inspect, FrameInfo, Rewriter, VideoCodec};

fuzz_target!(|data: &[u8]| {
    for codec in VideoCodec::ALL {
        if let Ok(info) = inspect(codec, data) {
            assert!(
                info.frame_start || !info.keyframe,
                "{codec:?}: a keyframe starts a frame"
            );
        }
    }
    if let Some((&sel, body)) = data.split_first() {
        let pt = if sel & 0x80 != 0 { 206 } else { 205 };
        match parse_feedback(pt, sel & 0x1f, body) {
            Some(Feedback::Other { pt: p, fmt }) => assert_eq!((p, fmt), (pt, sel & 0x1f)),
            Some(_) | None => {}
        }
    }
    rewriter(data, true);
    rewriter(data, false);
});

/// The per-flow offsets the harness saw fixed at the last switch.
struct Flow {
    src: u32,
    seq_off: u16,
    ts_off: u32,
}

/// Drives a Rewriter with 8-byte records: op, then the packet's fields. With
/// `orderly`, each of 4 sources numbers its packets forward with reordering of
/// up to 7 behind, so the highest packet sent is unambiguous and every switch can
/// be checked exactly; otherwise seq and ts are raw fuzz bytes.
fn rewriter(data: &[u8], orderly: bool) {
    let t0 = Instant::now();
    let Some((head, records)) = data.split_at_checked(6) else {
        return;
    };
    let first_seq = u16::from_be_bytes([head[0], head[1]]);
    let first_ts = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
    let mut rw = Rewriter::new(7, first_seq, first_ts);
    let mut now_ms = 0u64;
    let mut next_seq = [100u16, 20_000, 40_000, 65_500];
    let mut next_ts = [0u32, 1 << 30, 2 << 30, u32::MAX - 1000];
    let mut flow: Option<Flow> = None;
    // Highest output sent and when the last packet went (the switch rule's inputs).
    let mut highest: Option<(u16, u32)> = None;
    let mut last_sent_ms = 0u64;
    for r in records.chunks_exact(8) {
        let src = u32::from((r[0] >> 3) & 3);
        now_ms += u64::from(r[7] >> 2);
        match r[0] % 8 {
            5 | 6 => {
                rw.switch_to(src);
                assert!(rw.pending().is_none() || rw.pending() == Some(src));
                assert_eq!(rw.pending().is_some(), rw.wants_keyframe());
                continue;
            }
            7 => {
                rw.stop();
                assert_eq!((rw.current(), rw.pending()), (None, None));
                flow = None;
                continue;
            }
            _ => {}
        }
        let s = src as usize;
        let (seq, ts) = if orderly {
            next_seq[s] = next_seq[s].wrapping_add(u16::from(r[2] & 3));
            next_ts[s] = next_ts[s].wrapping_add(u32::from(r[3]) * 100);
            (
                next_seq[s].wrapping_sub(u16::from(r[1] & 7)),
                next_ts[s].wrapping_sub(u32::from(r[4] & 7) * 100),
            )
        } else {
            (
                u16::from_be_bytes([r[1], r[2]]),
                u32::from_be_bytes([r[3], r[4], r[5], r[6]]),
            )
        };
        let info = FrameInfo {
            frame_start: r[7] & 1 != 0,
            keyframe: r[7] & 3 == 3,
        };
        let switches = rw.stats().switches;
        let out = rw.on_packet(t0 + Duration::from_millis(now_ms), src, seq, ts, info);
        let Some((out_seq, out_ts)) = out else {
            continue;
        };
        assert_eq!(
            rw.current(),
            Some(src),
            "only the current source is forwarded"
        );
        if rw.stats().switches != switches {
            assert!(
                info.keyframe && info.frame_start,
                "switches happen at keyframes"
            );
            match highest {
                None => assert_eq!((out_seq, out_ts), (first_seq, first_ts)),
                Some((hs, ht)) if orderly => {
                    assert_eq!(out_seq, hs.wrapping_add(1), "seq continues at a switch");
                    let ticks = ((now_ms - last_sent_ms) * 90).clamp(1, i32::MAX as u64);
                    // The wall time since, or one frame interval of the old source
                    // (at most 200 ms) when that is longer.
                    let advance = u64::from(out_ts.wrapping_sub(ht));
                    assert!(
                        advance >= ticks && advance <= ticks.max(18_000),
                        "ts continues: {advance} after {ticks} ticks"
                    );
                }
                Some(_) => {}
            }
            flow = Some(Flow {
                src,
                seq_off: out_seq.wrapping_sub(seq),
                ts_off: out_ts.wrapping_sub(ts),
            });
        } else {
            let f = flow
                .as_ref()
                .expect("a packet is forwarded only after a switch");
            assert_eq!(f.src, src);
            assert_eq!(
                out_seq,
                seq.wrapping_add(f.seq_off),
                "seq offset is fixed per flow"
            );
            assert_eq!(
                out_ts,
                ts.wrapping_add(f.ts_off),
                "ts offset is fixed per flow"
            );
        }
        highest = Some(match highest {
            None => (out_seq, out_ts),
            Some((hs, ht)) => (
                if (out_seq.wrapping_sub(hs) as i16) > 0 {
                    out_seq
                } else {
                    hs
                },
                if (out_ts.wrapping_sub(ht) as i32) > 0 {
                    out_ts
                } else {
                    ht
                },
            ),
        });
        last_sent_ms = now_ms;
    }
}
