//! The playout's own tests: rejects, the start delay, hostile timelines, and the
//! uniform-payload shortcut.

use super::*;
use crate::codec::{g711, CodecError};

/// mu-law, with a switch to report "no codec concealment".
struct Ulaw;
impl FrameDecoder for Ulaw {
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        Ok(payload.len())
    }
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        for (o, &b) in out.iter_mut().zip(payload) {
            *o = g711::ulaw_decode(b);
        }
        Ok(payload.len().min(out.len()))
    }
    fn conceal(&mut self, _out: &mut [i16]) -> bool {
        false
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn rejects_are_typed_and_counted() {
    let t0 = crate::testclock::anchor();
    let mut p = Playout::new(&JitterConfig::default(), 8000);
    // (payload, want)
    let big = vec![0u8; MAX_PAYLOAD + 1];
    let long = vec![0u8; MAX_PACKET_SAMPLES + 1];
    let cases: [(&[u8], Rejected); 3] = [
        (&big, Rejected::TooLarge),
        (&long, Rejected::TooLarge),
        (&[], Rejected::Undecodable),
    ];
    for (payload, want) in cases {
        assert_eq!(p.insert(t0, 1, 0, false, payload, &Ulaw), Err(want));
    }
    assert_eq!(
        p.insert(t0, 1, 0, false, &[0xff; 160], &Ulaw),
        Ok(Inserted::Started)
    );
    assert_eq!(
        p.insert(t0, 1, 0, false, &[0xff; 160], &Ulaw),
        Err(Rejected::Duplicate)
    );
    let s = p.stats();
    assert_eq!(
        (s.received, s.too_large, s.undecodable, s.duplicate),
        (5, 2, 1, 1)
    );
}

#[test]
fn silence_until_the_start_delay_then_the_packet() {
    let t0 = crate::testclock::anchor();
    let mut p = Playout::new(&JitterConfig::default(), 8000);
    let mut out = [0i16; FRAME_SAMPLES];
    assert_eq!(p.next_frame(t0, &mut Ulaw, &mut out), FrameKind::Silence);
    p.insert(t0 + ms(5), 7, 1234, true, &[0x80; 160], &Ulaw)
        .unwrap();
    assert_eq!(
        p.next_frame(t0 + ms(20), &mut Ulaw, &mut out),
        FrameKind::Silence
    );
    assert_eq!(
        p.next_frame(t0 + ms(40), &mut Ulaw, &mut out),
        FrameKind::Silence
    );
    assert_eq!(
        p.next_frame(t0 + ms(60), &mut Ulaw, &mut out),
        FrameKind::Decoded
    );
    assert!(out.iter().all(|&x| x == g711::ulaw_decode(0x80)));
    assert_eq!(p.stats().played, 1);
}

/// PCMU through the codec's own decoder, with the uniform-payload shortcut
/// switchable off: the playout must give the same frames either way.
struct Pcmu(crate::codec::Decoder, bool);
impl FrameDecoder for Pcmu {
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        self.0.samples_in(payload)
    }
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        self.0.decode(payload, out)
    }
    fn conceal(&mut self, out: &mut [i16]) -> bool {
        self.0.conceal(out)
    }
    fn uniform(&self, payload: &[u8]) -> Option<i16> {
        self.1.then(|| self.0.uniform(payload)).flatten()
    }
}

#[test]
fn a_silent_payload_kept_as_its_value_plays_exactly_what_decoding_it_plays_at_its_energy() {
    let t0 = crate::testclock::anchor();
    let mut rng = crate::netsim::Rng::new(5);
    let mut with = (
        Playout::new(&JitterConfig::default(), 8000),
        Pcmu(crate::codec::Decoder::Pcmu, true),
    );
    let mut without = (
        Playout::new(&JitterConfig::default(), 8000),
        Pcmu(crate::codec::Decoder::Pcmu, false),
    );
    // Talk spurts and silence (0xff, 0x7f: both mu-law zeros, and 0x80), some
    // packets lost, 0-3 ms of jitter, 10 ms and 20 ms packets.
    let (mut seq, mut ts) = (0u16, 0u32);
    let mut tick = t0;
    let mut frames = 0;
    for i in 0..600u32 {
        let n = if (i / 50) % 2 == 0 { 160 } else { 80 };
        let payload: Vec<u8> = match (i / 20) % 4 {
            0 => vec![0xff; n],
            1 => (0..n).map(|k| (k * 37 + i as usize) as u8).collect(),
            2 => vec![0x80; n],
            _ => vec![0x7f; n],
        };
        let at = t0 + Duration::from_micros(u64::from(ts) * 125 + rng.below(3_000));
        while tick <= at {
            let (mut a, mut b) = ([0i16; FRAME_SAMPLES], [0i16; FRAME_SAMPLES]);
            let ka = with.0.next_frame(tick, &mut with.1, &mut a);
            let kb = without.0.next_frame(tick, &mut without.1, &mut b);
            assert_eq!((ka, a), (kb, b), "frame {frames}");
            // The energy the talker detection reads is the frame's, shortcut or not.
            let energy: i64 = a.iter().map(|&x| i64::from(x) * i64::from(x)).sum();
            assert_eq!(with.0.frame_energy(), energy as u64, "frame {frames}");
            assert_eq!(without.0.frame_energy(), energy as u64, "frame {frames}");
            tick += Duration::from_millis(20);
            frames += 1;
        }
        if !rng.chance(0.03) {
            for (p, d) in [&mut with, &mut without] {
                let _ = p.insert(at, seq, ts, false, &payload, d);
            }
        }
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(n as u32);
    }
    assert_eq!(with.0.stats(), without.0.stats());
    let st = with.0.stats();
    assert!(st.played > 500 && st.resyncs == 0, "{st:?}");
}

#[test]
fn next_frame_never_panics_on_hostile_timelines() {
    // Random sequence numbers, timestamps, markers and sizes, ticking as we go.
    let t0 = crate::testclock::anchor();
    let mut rng = crate::netsim::Rng::new(11);
    let mut p = Playout::new(&JitterConfig::default(), 48_000);
    let mut out = [0i16; FRAME_SAMPLES];
    let payload = [0x55u8; 960];
    for i in 0..20_000u32 {
        let now = t0 + Duration::from_micros(u64::from(i) * 2_500);
        let len = rng.below(961) as usize;
        let seq = rng.below(1 << 16) as u16;
        let ts = rng.next_u64() as u32;
        let _ = p.insert(now, seq, ts, rng.chance(0.1), &payload[..len], &Ulaw);
        if i % 8 == 0 {
            p.next_frame(now, &mut Ulaw, &mut out);
        }
    }
    let s = p.stats();
    assert_eq!(s.received, 20_000);
}
