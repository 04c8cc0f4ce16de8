//! RTCP for one leg: absorbing the peer's reports and writing ours.
//!
//! Each leg is its own RTP session with one source each way, so a report carries at
//! most one block (about the peer's stream) and an SR part when we sent since the
//! last report. SRs from the peer feed LSR/DLSR; blocks about our SSRC give the
//! round-trip time and the loss the peer sees.

use super::leg::Leg;
use super::tx::{TxQueue, Via};
use scnf_media::rtp::rtcp::ntp;
use scnf_media::rtp::{parse_compound, ReportWriter, RtcpPacket};
use std::time::{Duration, Instant};

/// Largest report we write: RR/SR with one block plus SDES CNAME.
const MAX_REPORT: usize = 28 + 24 + 4 + 8 + 260;

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
    tx.push_with(leg.rtcp_remote, via, MAX_REPORT, |buf| {
        writer.write(buf).ok()
    });
}
