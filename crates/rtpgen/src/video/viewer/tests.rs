use super::*;
use scnf_media::rtp::RtpHeader;
use scnf_media::testclock::anchor;

const SSRC: u32 = 0x5157_0001;

fn at(ms: u64) -> Instant {
    anchor() + Duration::from_millis(ms)
}

/// An RTP packet with a VP8 descriptor (15-bit PictureID) starting (`start`) a key
/// frame (`key`) or an inter frame, and 100 bytes of frame data.
fn vp8(seq: u16, ts: u32, ssrc: u32, start: bool, key: bool) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    RtpHeader {
        marker: true,
        payload_type: 96,
        sequence: seq,
        timestamp: ts,
        ssrc,
    }
    .write(&mut p)
    .unwrap();
    p.extend_from_slice(&[0x80 | if start { 0x10 } else { 0 }, 0x80, 0x80, 0x01]);
    p.push(if key { 0x50 } else { 0x51 });
    p.extend_from_slice(&[0xaa; 99]);
    p
}

/// A key frame (one packet) then inter frames, one packet each, 15 fps, from
/// `seq`/`ts` on, one every 66 ms from `from_ms`.
fn stream(judge: &mut ViewerJudge, from_ms: u64, frames: u16, seq: u16, ts: u32) {
    for k in 0..frames {
        let ts = ts.wrapping_add(6000 * u32::from(k));
        let p = vp8(seq.wrapping_add(k), ts, SSRC, true, k == 0);
        judge.on_packet(at(from_ms + 66 * u64::from(k)), &p);
    }
}

#[test]
fn descriptors_parse_in_every_rfc_7741_shape() {
    // (bytes, start, partition, non_reference, picture id, data offset)
    type Row = (&'static [u8], bool, u8, bool, Option<u16>, usize);
    let table: &[Row] = &[
        (&[0x10, 0x50], true, 0, false, None, 1),
        (&[0x03, 0x51], false, 3, false, None, 1),
        (&[0x90, 0x00, 0x50], true, 0, false, None, 2),
        (&[0xb0, 0x80, 0x05, 0x50], true, 0, true, Some(5), 3),
        (
            &[0x90, 0x80, 0x81, 0x02, 0x50],
            true,
            0,
            false,
            Some(0x102),
            4,
        ),
        (&[0x90, 0xc0, 0x05, 0x07, 0x50], true, 0, false, Some(5), 4),
        (
            &[0x90, 0xf0, 0x80, 0x01, 0x07, 0x20, 0x50],
            true,
            0,
            false,
            Some(1),
            6,
        ),
        (&[0x90, 0x20, 0x20, 0x50], true, 0, false, None, 3),
    ];
    for &(bytes, start, partition, nonref, pid, offset) in table {
        let (d, data) = Vp8Descriptor::parse(bytes).unwrap();
        assert_eq!(
            (d.start, d.partition, d.non_reference, d.picture_id),
            (start, partition, nonref, pid),
            "{bytes:02x?}"
        );
        assert_eq!(data, &bytes[offset..], "{bytes:02x?}");
    }
}

#[test]
fn every_cut_descriptor_is_an_error_not_a_panic() {
    let full = [0x90, 0xf0, 0x80, 0x01, 0x07, 0x20, 0x50];
    for cut in 0..full.len() {
        assert!(Vp8Descriptor::parse(&full[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn only_the_start_of_partition_0_with_the_key_bit_clear_starts_a_key_frame() {
    let table: &[(&[u8], bool)] = &[
        (&[0x10, 0x50], true),
        (&[0x10, 0x51], false),
        (&[0x00, 0x50], false),
        (&[0x11, 0x50], false),
    ];
    for &(bytes, want) in table {
        let (d, data) = Vp8Descriptor::parse(bytes).unwrap();
        assert_eq!(d.starts_keyframe(data), want, "{bytes:02x?}");
    }
}

#[test]
fn a_clean_subscription_has_no_faults_and_measures_delay_and_bitrate() {
    let mut j = ViewerJudge::new();
    j.on_request(at(0), "low");
    stream(&mut j, 40, 31, 1000, 90_000);
    let r = j.report(at(40 + 66 * 31));
    assert!(r.faults().is_empty(), "{:?}", r.faults());
    let low = r.label("low").unwrap();
    assert_eq!(low.key_delays, [Duration::from_millis(40)]);
    assert_eq!(low.packets, 31);
    assert_eq!(low.bytes, 31 * 116);
    assert_eq!(low.current_for, Duration::from_millis(66 * 31));
    let want = 31.0 * 116.0 * 8.0 / (0.066 * 31.0);
    assert!(
        (low.bitrate_bps() - want).abs() < 1.0,
        "{}",
        low.bitrate_bps()
    );
}

#[test]
fn a_sequence_jump_is_a_discontinuity_and_a_small_gap_is_loss() {
    let mut j = ViewerJudge::new();
    j.on_request(at(0), "low");
    let ssrc = SSRC;
    // (seq, ts): 10, 11, [12 13 lost], 14, back to 3, up by 1000.
    for (k, seq) in [10u16, 11, 14, 3, 1003].into_iter().enumerate() {
        let k = k as u32;
        j.on_packet(
            at(u64::from(k) * 66),
            &vp8(seq, 6000 * k, ssrc, true, k == 0),
        );
    }
    let r = j.report(at(400));
    let low = r.label("low").unwrap();
    assert_eq!(low.lost, 2);
    assert_eq!(low.seq_discontinuities, 2);
    assert_eq!(r.faults(), ["2 low: sequence discontinuities"]);
}

#[test]
fn sequence_numbers_wrap_without_a_discontinuity() {
    let mut j = ViewerJudge::new();
    j.on_request(at(0), "low");
    stream(&mut j, 0, 4, 65534, u32::MAX - 6000);
    let r = j.report(at(300));
    assert!(r.faults().is_empty(), "{:?}", r.faults());
}

#[test]
fn a_timestamp_going_back_is_counted() {
    let mut j = ViewerJudge::new();
    j.on_request(at(0), "low");
    j.on_packet(at(0), &vp8(1, 12_000, SSRC, true, true));
    j.on_packet(at(66), &vp8(2, 12_000, SSRC, false, false));
    j.on_packet(at(132), &vp8(3, 6_000, SSRC, true, false));
    let r = j.report(at(200));
    assert_eq!(r.label("low").unwrap().ts_backwards, 1);
    assert_eq!(r.faults(), ["1 low: timestamps going back"]);
}

#[test]
fn an_ssrc_change_is_counted() {
    let mut j = ViewerJudge::new();
    j.on_request(at(0), "low");
    j.on_packet(at(0), &vp8(1, 0, SSRC, true, true));
    j.on_packet(at(66), &vp8(2, 6000, SSRC + 1, true, false));
    let r = j.report(at(100));
    assert_eq!(r.label("low").unwrap().ssrc_changes, 1);
    assert_eq!(r.faults(), ["1 low: SSRC changes"]);
}

#[test]
fn packets_while_nothing_is_requested_are_counted_past_the_stop_grace() {
    let mut j = ViewerJudge::new();
    j.on_packet(at(0), &vp8(1, 0, SSRC, true, true));
    j.on_request(at(10), "low");
    stream(&mut j, 20, 3, 2, 6000);
    j.on_stop(at(300));
    j.on_packet(at(350), &vp8(5, 24_000, SSRC, true, false));
    j.on_packet(at(600), &vp8(6, 30_000, SSRC, true, false));
    let r = j.report(at(700));
    assert_eq!((r.unrequested, r.after_stop), (2, 1));
    assert_eq!(
        r.label("low").unwrap().current_for,
        Duration::from_millis(280)
    );
    assert_eq!(r.faults(), ["2 packets while nothing was requested"]);
}

#[test]
fn packets_before_the_first_key_frame_are_counted() {
    let mut j = ViewerJudge::new();
    j.on_request(at(0), "medium");
    j.on_packet(at(10), &vp8(1, 0, SSRC, true, false));
    stream(&mut j, 76, 2, 2, 6000);
    let r = j.report(at(300));
    assert_eq!(r.before_first_key, 1);
    assert_eq!(r.label("medium").unwrap().packets, 2);
    assert_eq!(
        r.label("medium").unwrap().key_delays,
        [Duration::from_millis(76)]
    );
}

#[test]
fn a_switch_takes_effect_at_the_next_key_frame_and_keeps_counting_the_old_layer_until_then() {
    let mut j = ViewerJudge::new();
    j.on_request(at(0), "low");
    stream(&mut j, 0, 5, 1, 0); // 0..264 ms, key at 0
    j.on_request(at(300), "high");
    // Inter frames of the old layer, then a key frame of the new one.
    j.on_packet(at(330), &vp8(6, 30_000, SSRC, true, false));
    j.on_packet(at(396), &vp8(7, 36_000, SSRC, true, false));
    j.on_packet(at(462), &vp8(8, 42_000, SSRC, true, true));
    j.on_packet(at(528), &vp8(9, 48_000, SSRC, true, false));
    let r = j.report(at(600));
    assert!(r.faults().is_empty(), "{:?}", r.faults());
    let (low, high) = (r.label("low").unwrap(), r.label("high").unwrap());
    assert_eq!((low.packets, high.packets), (7, 2));
    assert_eq!(high.key_delays, [Duration::from_millis(162)]);
    assert_eq!(low.current_for, Duration::from_millis(462));
    assert_eq!(high.current_for, Duration::from_millis(138));
}

#[test]
fn a_request_without_a_key_frame_is_unanswered() {
    let mut j = ViewerJudge::new();
    j.on_request(at(0), "low");
    stream(&mut j, 0, 3, 1, 0);
    j.on_request(at(200), "high");
    j.on_packet(at(210), &vp8(4, 18_000, SSRC, true, false));
    let r = j.report(at(1000));
    assert_eq!(r.label("high").unwrap().unanswered, 1);
    assert_eq!(r.faults(), ["1 high: requests without a key frame"]);
    // A request replaced before its key frame came is unanswered as well.
    j.on_request(at(1000), "medium");
    j.on_packet(at(1010), &vp8(5, 24_000, SSRC, true, true));
    let r = j.report(at(1100));
    assert_eq!(r.label("high").unwrap().unanswered, 1);
    assert_eq!(r.label("medium").unwrap().unanswered, 0);
}

#[test]
fn malformed_packets_are_counted_not_fatal() {
    let mut j = ViewerJudge::new();
    j.on_request(at(0), "low");
    let table: &[&[u8]] = &[
        &[],
        &[0x80; 11],
        &[0x40; 20],
        &vp8(1, 0, SSRC, true, true)[..12],
    ];
    for p in table {
        j.on_packet(at(1), p);
    }
    assert_eq!(j.report(at(2)).malformed, table.len() as u64);
}

#[test]
fn random_datagrams_never_panic_the_judge() {
    let mut rng = scnf_media::util::Rng::new(9);
    let mut j = ViewerJudge::new();
    j.on_request(at(0), "low");
    let mut buf = [0u8; 48];
    for i in 0..20_000 {
        let len = rng.below(buf.len() as u64) as usize;
        for b in &mut buf[..len] {
            *b = rng.next_u32() as u8;
        }
        // Mostly RTP version 2 without padding, so the descriptor parser is reached.
        if len > 0 && rng.chance(0.9) {
            buf[0] = 0x80 | (buf[0] & 0x1f);
        }
        let _ = Vp8Descriptor::parse(&buf[..len]);
        j.on_packet(at(i), &buf[..len]);
    }
    let r = j.report(at(20_000));
    let low = r.label("low").unwrap();
    assert!(r.malformed > 1000, "{r:?}");
    assert!(low.packets + r.before_first_key > 1000, "{r:?}");
}
