#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use scnf_media::rtp::{is_rtcp, RtpPacket};

fuzz_target!(|data: &[u8]| {
    let _ = is_rtcp(data);
    if let Ok(p) = RtpPacket::parse(data) {
        let range = p.payload_range();
        assert!(range.end <= data.len());
        assert_eq!(&data[range], p.payload);
        assert!(p.csrcs().count() <= 15);
        if let Some(ext) = p.extension {
            assert_eq!(ext.data.len() % 4, 0);
        }
        // Re-writing the fixed header reproduces marker, PT, sequence, timestamp, SSRC.
        let mut out = [0u8; 12];
        p.header()
            .write(&mut out)
            .expect("parsed payload types fit in 7 bits");
        assert_eq!(out[1..12], data[1..12]);
    }
    let owned = Bytes::copy_from_slice(data);
    if let Ok((p, payload)) = RtpPacket::parse_bytes(&owned) {
        assert_eq!(p.payload, &payload[..]);
    }
});
