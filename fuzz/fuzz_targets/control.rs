#![no_main]
//! The call-control input surface: any text frame through the message parser, and
//! any sequence of controller requests through the conference core. Invariants: no
//! panic, channels never over capacity, room ids never overlap.

use libfuzzer_sys::fuzz_target;
use scnf_core::conf::{CallRef, ConfConfig, Conference};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let _ = scnf_core::control::msg::parse_client(&String::from_utf8_lossy(data));

    let capacity = 1 + u32::from(data.first().copied().unwrap_or(0) % 16);
    let mut conf = Conference::new(ConfConfig::new(capacity), 7);
    let t0 = Instant::now();
    let mut now = t0;
    // Records: op, call (0-7), then up to 6 bytes of dial text from a small alphabet.
    const ALPHABET: &[u8] = b"0123456789*#*12381";
    for rec in data.chunks(8).skip(1) {
        let call = CallRef(u64::from(rec.get(1).copied().unwrap_or(0) % 8));
        let text: String = rec
            .iter()
            .skip(2)
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect();
        let _ = match rec[0] % 9 {
            0 | 1 => conf.handle_setup(now, call, &text, rec[0] & 0x10 != 0),
            2 => conf.handle_info(now, call, &text, rec[0] & 0x10 != 0),
            3 => conf.handle_dtmf(now, call, text.chars().next().unwrap_or('#')),
            4 => conf.handle_remote_control(call, u32::from(rec[0] >> 3)),
            5 => conf.handle_hold(call, rec[0] & 0x10 != 0),
            6 => conf.handle_release(call),
            7 => {
                now += Duration::from_millis(u64::from(rec[0]) * 100);
                conf.handle_timeout(now);
                Ok(())
            }
            _ => conf.handle_media_failed(call, scnf_core::conf::Cause::RESOURCE_UNAVAILABLE),
        };
        while conf.poll_output().is_some() {}
        assert!(conf.channels_used() + conf.channels_reserved() <= capacity);
        let rooms = conf.rooms();
        for a in &rooms {
            for b in &rooms {
                if a.id != b.id {
                    assert!(!b.id.starts_with(a.id.as_str()), "{} / {}", a.id, b.id);
                }
            }
        }
    }
});
