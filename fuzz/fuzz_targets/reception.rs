#![no_main]

use libfuzzer_sys::fuzz_target;
use scnf_media::rtp::{ReceptionStats, SeqExtender, TsExtender};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    // Records of (arrival delta ms: u8, ssrc selector: u8, seq: u16, ts: u32).
    let t0 = Instant::now();
    let mut now = t0;
    let mut stats = ReceptionStats::new(8000);
    let mut seq_x = SeqExtender::new();
    let mut ts_x = TsExtender::new();
    let mut prev_high = 0;
    for rec in data.chunks_exact(8) {
        now += Duration::from_millis(u64::from(rec[0]));
        let ssrc = u32::from(rec[1] & 1);
        let seq = u16::from_be_bytes([rec[2], rec[3]]);
        let ts = u32::from_be_bytes([rec[4], rec[5], rec[6], rec[7]]);
        let _ = stats.on_packet(now, ssrc, seq, ts);
        let _ = seq_x.extend(seq);
        let _ = ts_x.extend(ts);
        let high = seq_x.highest().expect("set by extend");
        assert!(high >= prev_high, "extended sequence went backwards");
        prev_high = high;
        if rec[0] == 0xff {
            if let Some(b) = stats.report_block(now) {
                assert!((-0x80_0000..=0x7f_ffff).contains(&b.cumulative_lost));
            }
        }
    }
});
