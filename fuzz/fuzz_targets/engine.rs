#![no_main]
//! The whole receive path of a media worker: arbitrary datagrams from three member
//! addresses (one of them latching) and a stranger, on both sockets, interleaved with
//! mix ticks. The engine must never panic and must keep answering.

use libfuzzer_sys::fuzz_target;
use scnf_media::codec::CodecKind;
use scnf_core::engine::{Engine, EngineConfig, LegId, LegSpec, MixId, Via};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut engine = Engine::new(
        EngineConfig {
            rtcp_interval: Duration::from_secs(1),
            media_timeout: Some(Duration::from_secs(1)),
            ..EngineConfig::new("fuzz", (t0, Duration::from_secs(1_700_000_000)))
        },
        1,
    );
    engine.open_room(t0, MixId(1)).unwrap();
    let addrs: [SocketAddr; 4] = [
        "10.0.0.1:4000".parse().unwrap(),
        "10.0.0.2:4000".parse().unwrap(),
        "10.0.0.3:4000".parse().unwrap(),
        "10.0.0.3:5555".parse().unwrap(),
    ];
    for (i, codec) in [CodecKind::Pcmu, CodecKind::G722, CodecKind::Opus]
        .into_iter()
        .enumerate()
    {
        let mut spec = LegSpec::new(addrs[i], codec);
        spec.telephone_event_pt = Some(101);
        spec.latching = i == 2;
        engine.add_leg(t0, MixId(1), LegId(i as u64), spec).unwrap();
    }
    // Input: records of [control byte][len byte][len bytes of datagram].
    let mut now = t0;
    let mut rest = data;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], rest[1] as usize);
        let body = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        let from = addrs[(ctl & 3) as usize];
        let via = if ctl & 4 == 0 { Via::Rtp } else { Via::Rtcp };
        engine.handle_datagram(now, from, via, body);
        if ctl & 8 != 0 {
            now += Duration::from_millis(20 * (1 + (ctl >> 4) as u64));
            engine.handle_timeout(now);
        }
        while engine.poll_transmit().is_some() {}
        while engine.poll_event().is_some() {}
    }
    assert!(engine.leg_stats(LegId(0)).is_some());
});
