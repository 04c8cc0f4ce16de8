//! Video RTCP: reports about each source to its publisher and for each sink to its
//! viewer, the feedback that comes back (terminated here, never passed on), and the
//! keyframe requests that go through each source's throttle.

use super::*;

impl Video {
    pub(super) fn source_rtcp(&mut self, now: Instant, idx: usize, data: &[u8]) {
        let s = self.sources.get_mut(idx).expect("caller checked");
        for pkt in parse_compound(data) {
            match pkt {
                Ok(RtcpPacket::SenderReport(sr)) if Some(sr.ssrc) == s.publisher_ssrc => {
                    s.reception.on_sender_report(now, &sr.info);
                }
                Ok(_) => {}
                Err(_) => {
                    s.stats.malformed += 1;
                    return;
                }
            }
        }
    }

    /// RTCP from a viewer: keyframe requests go (throttled) to what it watches; the
    /// rest is absorbed. Nothing is passed on to the publisher as it came.
    pub(super) fn sink_rtcp(&mut self, now: Instant, idx: usize, data: &[u8], tx: &mut TxQueue) {
        let mut wants = false;
        for pkt in parse_compound(data) {
            match pkt {
                Ok(RtcpPacket::Other { pt, count, body }) => {
                    if let Some(Feedback::Pli { .. } | Feedback::Fir { .. }) =
                        feedback::parse_feedback(pt, count, body)
                    {
                        wants = true;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if wants {
            self.sink_wants_keyframe(now, idx, tx);
        }
    }

    /// RTCP from another node naming one of our relays by SSRC (PLI/FIR's media
    /// source): its viewers need a keyframe.
    pub(super) fn relay_feedback(&mut self, now: Instant, data: &[u8], tx: &mut TxQueue) -> bool {
        let mut hit = None;
        let mut reports = false;
        for pkt in parse_compound(data) {
            let (pt, count, body) = match pkt {
                Ok(RtcpPacket::Other { pt, count, body }) => (pt, count, body),
                Ok(RtcpPacket::ReceiverReport(rr)) => {
                    reports |= rr.blocks.clone().any(|b| self.relays.contains_key(&b.ssrc));
                    continue;
                }
                _ => continue,
            };
            let media = match feedback::parse_feedback(pt, count, body) {
                Some(Feedback::Pli { media, .. } | Feedback::Fir { media, .. }) => media,
                _ => continue,
            };
            if let Some(&k) = self.relays.get(&media) {
                hit = Some(k);
            }
        }
        let Some(k) = hit else {
            // A receiving node's report about our relay: absorbed.
            return reports;
        };
        let s = self.sinks.get_mut(k).expect("relays point at live sinks");
        if s.budget.take(now) {
            self.sink_wants_keyframe(now, k, tx);
        } else {
            s.stats.flood_dropped += 1;
        }
        true
    }

    pub(super) fn sink_wants_keyframe(&mut self, now: Instant, idx: usize, tx: &mut TxQueue) {
        let s = self.sinks.get_mut(idx).expect("caller checked");
        s.stats.feedback_keyframe += 1;
        let target = s
            .rewriter
            .pending()
            .or(s.rewriter.current())
            .map(|i| i as usize);
        if let Some(i) = target {
            self.request_keyframe(now, i, tx);
        }
    }

    /// Asks a source's publisher for a keyframe, through its throttle.
    pub(super) fn request_keyframe(&mut self, now: Instant, idx: usize, tx: &mut TxQueue) {
        let Some(s) = self.sources.get_mut(idx) else {
            return;
        };
        if s.publisher_ssrc.is_none() {
            s.keyframe_owed = true;
        } else if s.throttle.request(now) {
            send_keyframe_request(s, tx);
        }
    }

    // ---- timers ----------------------------------------------------------------

    /// Deferred keyframe requests, retries of switches still waiting, the bitrate
    /// windows and RTCP reports (once per tick).
    pub fn housekeeping(
        &mut self,
        now: Instant,
        wall: Duration,
        interval: Duration,
        cname: &str,
        rng: &mut Rng,
        tx: &mut TxQueue,
    ) {
        let mut retry: Option<usize> = None;
        for (_, sink) in self.sinks.iter_mut() {
            if let (Some(at), Some(w)) = (sink.asked, sink.wanted) {
                if sink.rewriter.wants_keyframe()
                    && now.saturating_duration_since(at) >= KEYFRAME_RETRY
                {
                    sink.asked = Some(now);
                    retry = Some(w);
                    // One per tick is plenty: the throttle merges the rest.
                    break;
                }
            }
        }
        if let Some(w) = retry {
            self.request_keyframe(now, w, tx);
        }
        for (_, s) in self.sources.iter_mut() {
            if s.throttle.poll(now) {
                send_keyframe_request(s, tx);
            }
            let age = now.saturating_duration_since(s.window.0);
            if age >= Duration::from_secs(1) {
                let kbps = s.window.1 as f64 * 8.0 / age.as_secs_f64() / 1000.0;
                s.stats.bitrate_kbps = kbps.round() as u32;
                s.window = (now, 0);
            }
            if s.next_rtcp <= now {
                send_source_report(s, now, wall, cname, tx);
                s.next_rtcp = now + interval.mul_f64(0.5 + rng.next_f64());
            }
        }
        for (_, s) in self.sinks.iter_mut() {
            if s.next_rtcp <= now {
                send_sink_report(s, now, wall, cname, tx, false);
                s.next_rtcp = now + interval.mul_f64(0.5 + rng.next_f64());
            }
        }
    }
}

pub(super) fn send_keyframe_request(s: &mut Source, tx: &mut TxQueue) {
    let Some(media) = s.publisher_ssrc else {
        // Nothing received yet: its first packets are a keyframe anyway.
        return;
    };
    let via = rtcp_via(s.spec.rtcp_mux || s.spec.peer_ssrc.is_some());
    let (sender, fir, seq) = (s.ssrc, s.spec.fir, s.fir_seq);
    if fir {
        s.fir_seq = s.fir_seq.wrapping_add(1);
    }
    tx.push_with(s.rtcp_remote, via, 20, |buf| {
        if fir {
            feedback::write_fir(buf, sender, media, seq).ok()
        } else {
            feedback::write_pli(buf, sender, media).ok()
        }
    });
}

/// A receiver report about the publisher's stream.
pub(super) fn send_source_report(
    s: &mut Source,
    now: Instant,
    wall: Duration,
    cname: &str,
    tx: &mut TxQueue,
) {
    let block = s.reception.report_block(now);
    let writer = ReportWriter {
        ssrc: s.ssrc,
        sender: None,
        blocks: block.as_slice(),
        cname,
    };
    let _ = wall; // receiver reports carry no wall-clock time
    let via = rtcp_via(s.spec.rtcp_mux || s.spec.peer_ssrc.is_some());
    tx.push_with(s.rtcp_remote, via, MAX_REPORT, |buf| writer.write(buf).ok());
}

/// A sender report for a sink's stream (with a BYE when it ends).
pub(super) fn send_sink_report(
    s: &mut Sink,
    now: Instant,
    wall: Duration,
    cname: &str,
    tx: &mut TxQueue,
    bye: bool,
) {
    let ntp_time = ntp::ntp_from_unix(wall);
    let rtp_time = s.last_sent.map_or(0, |(at, ts)| {
        let ticks = now.saturating_duration_since(at).as_micros() as u64 * 9 / 100;
        ts.wrapping_add(ticks as u32)
    });
    let sender = s.sender.take_sender_info(ntp_time, rtp_time);
    let writer = ReportWriter {
        ssrc: s.stats.ssrc,
        sender,
        blocks: &[],
        cname,
    };
    let ssrc = s.stats.ssrc;
    let via = rtcp_via(s.spec.rtcp_mux || s.spec.relay);
    tx.push_with(s.rtcp_remote, via, MAX_REPORT + 8, |buf| {
        let n = writer.write(buf).ok()?;
        if !bye {
            return Some(n);
        }
        let out = buf.get_mut(n..n + 8)?;
        out[0] = 0x80 | 1;
        out[1] = scnf_media::rtp::rtcp::PT_BYE;
        out[2..4].copy_from_slice(&1u16.to_be_bytes());
        out[4..8].copy_from_slice(&ssrc.to_be_bytes());
        Some(n + 8)
    });
}
