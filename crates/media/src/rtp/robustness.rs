//! Every parser in this module against random bytes and mutated valid packets:
//! no panics, no unbounded iteration. A seeded PRNG keeps failures reproducible
//! (the failing iteration's input is printed by the panic message).

use super::dtmf::{DtmfReceiver, TelephoneEvent};
use super::rtcp::{parse_compound, ReportBlock, ReportWriter, RtcpPacket, SenderInfo};
use super::{is_rtcp, ComfortNoise, ReceptionStats, RtpHeader, RtpPacket, SeqExtender};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// xorshift64*: small, seeded, good enough to spread bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// Valid packets to mutate: RTP with CSRC/extension/padding, a compound report.
fn seeds() -> Vec<Vec<u8>> {
    let mut rtp = vec![0xb2, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4];
    rtp.extend_from_slice(&[0xaa; 8]);
    rtp.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0x55, 0x00, 0x00]);
    rtp.extend_from_slice(&[0xd5; 160]);
    rtp.extend_from_slice(&[0, 0, 0, 4]);

    let mut plain = [0u8; 172];
    RtpHeader {
        marker: false,
        payload_type: 101,
        sequence: 9,
        timestamp: 8000,
        ssrc: 77,
    }
    .write(&mut plain)
    .expect("172 bytes hold a 12-byte header");
    plain[12..16].copy_from_slice(&[1, 0x8a, 0, 160]);

    let blocks = [ReportBlock::default(); 3];
    let writer = ReportWriter {
        ssrc: 5,
        sender: Some(SenderInfo::default()),
        blocks: &blocks,
        cname: "robust@test",
    };
    let mut rtcp = vec![0u8; writer.encoded_len()];
    writer
        .write(&mut rtcp)
        .expect("buffer sized by encoded_len");
    // Append a BYE with a reason.
    rtcp.extend_from_slice(&[0x81, 203, 0, 2, 0, 0, 0, 5, 2, b'o', b'k', 0]);
    vec![rtp, plain.to_vec(), rtcp]
}

/// How many inputs each parser accepted, to show the mutations reach past the
/// first checks.
#[derive(Default)]
struct Accepted {
    rtp: usize,
    rtcp_packets: usize,
    sdes_chunks: usize,
}

/// Runs every parser over `buf`, walking every iterator to its end.
fn exercise(
    buf: &[u8],
    stats: &mut ReceptionStats,
    dtmf: &mut DtmfReceiver,
    now: Instant,
    accepted: &mut Accepted,
) {
    let _ = is_rtcp(buf);
    if let Ok(p) = RtpPacket::parse(buf) {
        accepted.rtp += 1;
        assert!(p.csrcs().count() <= 15);
        assert!(p.payload.len() <= buf.len());
        let _ = stats.on_packet(now, p.ssrc, p.sequence, p.timestamp);
        if let Ok(ev) = TelephoneEvent::parse(p.payload) {
            let _ = dtmf.on_packet(p.timestamp, &ev);
            let _ = dtmf.poll_end();
        }
    }
    let owned = Bytes::copy_from_slice(buf);
    if let Ok((p, payload)) = RtpPacket::parse_bytes(&owned) {
        assert_eq!(p.payload, &payload[..]);
    }
    let _ = TelephoneEvent::parse(buf);
    let _ = ComfortNoise::parse(buf);

    // Each RTCP step consumes >= 4 bytes, so the walk is bounded by len/4 + 1.
    let mut steps = 0;
    for item in parse_compound(buf) {
        steps += 1;
        assert!(
            steps <= buf.len() / 4 + 1,
            "RTCP iteration did not terminate"
        );
        accepted.rtcp_packets += usize::from(item.is_ok());
        match item {
            Ok(RtcpPacket::SenderReport(sr)) => {
                assert!(sr.blocks.count() <= 31);
            }
            Ok(RtcpPacket::ReceiverReport(rr)) => {
                assert!(rr.blocks.count() <= 31);
            }
            Ok(RtcpPacket::Sdes(sdes)) => {
                let _ = sdes.cname();
                for chunk in sdes.chunks().flatten() {
                    accepted.sdes_chunks += 1;
                    assert!(chunk.items().count() <= buf.len());
                }
            }
            Ok(RtcpPacket::Bye(bye)) => {
                assert!(bye.ssrcs().count() <= 31);
            }
            Ok(RtcpPacket::Other { .. }) | Err(_) => {}
        }
    }
}

#[test]
fn no_parser_panics_or_loops_on_random_or_mutated_input() {
    const ITERATIONS: usize = 100_000;
    let mut rng = Rng(0x5c_0f_1e_ed_u64 | 1);
    let seeds = seeds();
    let mut stats = ReceptionStats::new(8000);
    let mut dtmf = DtmfReceiver::new();
    let mut seq = SeqExtender::new();
    let t0 = crate::testclock::anchor();
    let mut buf = vec![0u8; 1500];
    let mut accepted = Accepted::default();
    for i in 0..ITERATIONS {
        let len = match i % 4 {
            // Half random bytes of any length, mostly short to hit header edges.
            0 => rng.below(1500),
            1 => rng.below(64),
            // Half mutated valid packets.
            _ => {
                let seed = &seeds[rng.below(seeds.len())];
                buf[..seed.len()].copy_from_slice(seed);
                let mut len = seed.len();
                for _ in 0..=rng.below(4) {
                    match rng.below(4) {
                        0 => len = rng.below(len + 1),
                        1 => buf[rng.below(len.max(1))] ^= 1 << rng.below(8),
                        2 => buf[rng.below(len.max(1))] = rng.next() as u8,
                        _ => {
                            // Rewrite one of the first 4 octets: flags, counts, PT.
                            buf[rng.below(4)] = rng.next() as u8;
                        }
                    }
                }
                len
            }
        };
        if i % 4 < 2 {
            rng.fill(&mut buf[..len]);
        }
        let now = t0 + Duration::from_micros(i as u64 * 100);
        exercise(&buf[..len], &mut stats, &mut dtmf, now, &mut accepted);
        let _ = seq.extend(rng.next() as u16);
        if i % 1000 == 0 {
            let _ = stats.report_block(now);
        }
    }
    // The mutated half must get deep enough to be parsed successfully often.
    assert!(accepted.rtp > ITERATIONS / 10, "{}", accepted.rtp);
    assert!(
        accepted.rtcp_packets > ITERATIONS / 20,
        "{}",
        accepted.rtcp_packets
    );
    assert!(
        accepted.sdes_chunks > ITERATIONS / 50,
        "{}",
        accepted.sdes_chunks
    );
}
