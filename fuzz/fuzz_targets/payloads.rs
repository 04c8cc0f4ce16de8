#![no_main]

use libfuzzer_sys::fuzz_target;
use scnf_media::rtp::{ComfortNoise, DtmfReceiver, TelephoneEvent};

fuzz_target!(|data: &[u8]| {
    if let Ok(cn) = ComfortNoise::parse(data) {
        assert!(cn.level_neg_dbov <= 127);
        let _ = cn.amplitude();
    }
    // Treat the input as a run of (timestamp, event) records.
    let mut rx = DtmfReceiver::new();
    for rec in data.chunks_exact(8) {
        let ts = u32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]);
        if let Ok(ev) = TelephoneEvent::parse(&rec[4..]) {
            let _ = rx.on_packet(ts, &ev);
            let _ = rx.poll_end();
        }
    }
});
