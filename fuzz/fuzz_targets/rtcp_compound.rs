#![no_main]

use libfuzzer_sys::fuzz_target;
use scnf_media::rtp::rtcp::{parse_compound, RtcpPacket};

fuzz_target!(|data: &[u8]| {
    let mut steps = 0usize;
    for item in parse_compound(data) {
        steps += 1;
        // Each packet consumes at least its 4-byte header.
        assert!(steps <= data.len() / 4 + 1);
        match item {
            Ok(RtcpPacket::SenderReport(sr)) => {
                assert!(sr.blocks.count() <= 31);
            }
            Ok(RtcpPacket::ReceiverReport(rr)) => {
                assert!(rr.blocks.count() <= 31);
            }
            Ok(RtcpPacket::Sdes(sdes)) => {
                let _ = sdes.cname();
                assert!(sdes.chunks().count() <= 31);
                for chunk in sdes.chunks().flatten() {
                    for item in chunk.items() {
                        assert!(item.value.len() <= 255);
                    }
                }
            }
            Ok(RtcpPacket::Bye(bye)) => {
                assert!(bye.ssrcs().count() <= 31);
                if let Some(reason) = bye.reason {
                    assert!(reason.len() <= 255);
                }
            }
            Ok(RtcpPacket::Other { body, .. }) => assert!(body.len() <= data.len()),
            Err(_) => {}
        }
    }
});
