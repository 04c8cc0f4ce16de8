//! RTCP for one leg: absorbing the peer's reports and writing ours.
//!
//! Each leg is its own RTP session with one source each way, so a report carries at
//! most one block (about the peer's stream) and an SR part when we sent since the
//! last report. SRs from the peer feed LSR/DLSR; blocks about our SSRC give the
//! round-trip time and the loss the peer sees.

use super::leg::Leg;
use super::tx::{TxQueue, Via};
use scnf_media::rtp::rtcp::ntp;
use scnf_media::rtp::rtcp::PT_BYE;
use scnf_media::rtp::{parse_compound, ReportWriter, RtcpPacket};
use std::time::{Duration, Instant};

/// Largest report we write: RR/SR with one block plus SDES CNAME.
const MAX_REPORT: usize = 28 + 24 + 4 + 8 + 260;
/// A BYE for one SSRC, without a reason: header and SSRC.
const BYE_LEN: usize = 8;

/// Folds a received compound RTCP datagram into the leg's state. `Err` when the
/// datagram is not valid RTCP (counted by the caller).
pub fn absorb(leg: &mut Leg, now: Instant, wall: Duration, data: &[u8]) -> Result<(), ()> {
    let now_ntp = ntp::ntp_compact(ntp::ntp_from_unix(wall));
    let mut any = false;
    for pkt in parse_compound(data) {
        let Ok(pkt) = pkt else {
            return if any { Ok(()) } else { Err(()) };
        };
        any = true;
        let blocks = match &pkt {
            RtcpPacket::SenderReport(sr) => {
                if leg.peer_ssrc == Some(sr.ssrc) {
                    leg.reception.on_sender_report(now, &sr.info);
                }
                Some(sr.blocks.clone())
            }
            RtcpPacket::ReceiverReport(rr) => Some(rr.blocks.clone()),
            _ => None,
        };
        for b in blocks.into_iter().flatten() {
            if b.ssrc == leg.ssrc {
                leg.stats.remote_fraction_lost = Some(b.fraction_lost);
                if let Some(rtt) = b.rtt(now_ntp) {
                    leg.stats.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                }
            }
        }
    }
    if any {
        Ok(())
    } else {
        Err(())
    }
}

/// Queues the leg's periodic report.
pub fn send_report(leg: &mut Leg, now: Instant, wall: Duration, cname: &str, tx: &mut TxQueue) {
    queue(leg, now, wall, cname, tx, false);
}

/// Queues the leg's goodbye (RFC 3550 6.6): a compound of its last report, SDES
/// CNAME and a BYE for its SSRC, so the peer ends our stream at once instead of
/// timing it out, and gets our final counts. Sent immediately: each leg is its own
/// two-party session, far below the 50 members where 6.3.7 asks BYEs to back off.
pub fn send_bye(leg: &mut Leg, now: Instant, wall: Duration, cname: &str, tx: &mut TxQueue) {
    queue(leg, now, wall, cname, tx, true);
}

fn queue(leg: &mut Leg, now: Instant, wall: Duration, cname: &str, tx: &mut TxQueue, bye: bool) {
    let ntp_time = ntp::ntp_from_unix(wall);
    // The RTP timestamp the next packet will carry corresponds to "now" closely
    // enough for lip-sync-free audio (within one tick).
    let sender = leg.sender.take_sender_info(ntp_time, leg.ts);
    let block = leg.reception.report_block(now);
    let writer = ReportWriter {
        ssrc: leg.ssrc,
        sender,
        blocks: block.as_slice(),
        cname,
    };
    let via = if leg.spec.rtcp_mux {
        Via::Rtp
    } else {
        Via::Rtcp
    };
    let ssrc = leg.ssrc;
    tx.push_with(leg.rtcp_remote, via, MAX_REPORT + BYE_LEN, |buf| {
        let n = writer.write(buf).ok()?;
        if !bye {
            return Some(n);
        }
        let out = buf.get_mut(n..n + BYE_LEN)?;
        // V=2, no padding, one SSRC; length in 32-bit words minus one.
        out[0] = 0x80 | 1;
        out[1] = PT_BYE;
        out[2..4].copy_from_slice(&1u16.to_be_bytes());
        out[4..8].copy_from_slice(&ssrc.to_be_bytes());
        Some(n + BYE_LEN)
    });
}

#[cfg(test)]
mod tests {
    use crate::engine::{Engine, EngineConfig, LegId, LegSpec, MixId, Via};
    use scnf_media::codec::CodecKind;
    use scnf_media::rtp::{parse_compound, RtcpPacket, RtpPacket};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    /// What one datagram to `dst` says, if it is a compound with a BYE: the types in
    /// order, the SSRC the BYE names and the CNAME.
    fn bye_in(data: &[u8]) -> Option<(Vec<&'static str>, u32, Vec<u8>)> {
        let mut kinds = Vec::new();
        let (mut bye, mut cname) = (None, Vec::new());
        for p in parse_compound(data) {
            match p.ok()? {
                RtcpPacket::SenderReport(_) => kinds.push("SR"),
                RtcpPacket::ReceiverReport(_) => kinds.push("RR"),
                RtcpPacket::Sdes(s) => {
                    kinds.push("SDES");
                    cname = s.cname()?.1.to_vec();
                }
                RtcpPacket::Bye(b) => {
                    kinds.push("BYE");
                    bye = b.ssrcs().next();
                }
                _ => kinds.push("other"),
            }
        }
        Some((kinds, bye?, cname))
    }

    /// Drains the engine's transmits: (destination, via, bytes).
    fn drain(e: &mut Engine) -> Vec<(SocketAddr, Via, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = e.poll_transmit() {
            out.push((t.dst, t.via, t.data.to_vec()));
        }
        out
    }

    fn run(e: &mut Engine, now: &mut Instant, d: Duration) -> Vec<(SocketAddr, Via, Vec<u8>)> {
        let end = *now + d;
        let mut out = Vec::new();
        while let Some(at) = e.poll_timeout().filter(|at| *at <= end) {
            *now = at;
            e.handle_timeout(at);
            out.extend(drain(e));
        }
        out
    }

    #[test]
    fn a_removed_leg_and_a_closed_rooms_legs_say_bye_from_their_ssrc() {
        let mut now = scnf_media::testclock::anchor();
        let cfg = EngineConfig::new("bye-test", (now, Duration::from_secs(1_700_000_000)));
        let mut e = Engine::new(cfg, 3);
        e.open_room(now, MixId(1)).unwrap();
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:4010".parse().unwrap();
        e.add_leg(now, MixId(1), LegId(1), LegSpec::new(a, CodecKind::Pcmu))
            .unwrap();
        let mut mux = LegSpec::new(b, CodecKind::Pcma);
        mux.rtcp_mux = true;
        e.add_leg(now, MixId(1), LegId(2), mux).unwrap();
        let sent = run(&mut e, &mut now, Duration::from_millis(200));
        let ssrc_to = |dst| {
            sent.iter()
                .filter(|(d, v, _)| *d == dst && *v == Via::Rtp)
                .find_map(|(_, _, p)| RtpPacket::parse(p).ok().map(|p| p.ssrc))
                .expect("the leg was sent the mix")
        };
        let (ssrc_a, ssrc_b) = (ssrc_to(a), ssrc_to(b));
        assert!(sent.iter().all(|(_, _, p)| bye_in(p).is_none()));

        e.remove_leg(LegId(1)).unwrap();
        let out = drain(&mut e);
        assert_eq!(out.len(), 1, "one compound datagram");
        let (dst, via, data) = &out[0];
        let rtcp_a: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        assert_eq!((*dst, *via), (rtcp_a, Via::Rtcp));
        let (kinds, ssrc, cname) = bye_in(data).expect("a compound with a BYE");
        assert_eq!(kinds, ["SR", "SDES", "BYE"], "we sent, so a sender report");
        assert_eq!(ssrc, ssrc_a);
        assert_eq!(cname, b"bye-test");

        e.close_room(MixId(1)).unwrap();
        let out = drain(&mut e);
        assert_eq!(out.len(), 1);
        let (dst, via, data) = &out[0];
        assert_eq!((*dst, *via), (b, Via::Rtp), "rtcp-mux: on the RTP port");
        assert_eq!(bye_in(data).expect("a BYE").1, ssrc_b);
        assert!(e.poll_transmit().is_none());
    }
}
