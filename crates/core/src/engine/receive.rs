//! The receive path: every datagram from the worker's sockets, from the lookup of
//! its leg (or video stream) to the jitter buffer, RTCP and telephone events.

use super::leg;
use super::{rtcp_io, Engine, EngineEvent, Via, LATCH_QUIET, LOG_EVERY};
use scnf_media::jitter::Rejected;
use scnf_media::rtp::{self, RtpPacket, TelephoneEvent};
use std::net::SocketAddr;
use std::time::Instant;

impl Engine {
    /// A hint before a batch is handled: starts loading the state of the leg that
    /// a datagram from `from` on the RTP socket belongs to, so that the cache
    /// misses of a whole batch's legs overlap instead of following one another
    /// (a node's legs are far more than its caches hold). Changes nothing;
    /// [`Engine::handle_datagram`] does the same whether or not it was called.
    pub fn prefetch(&self, from: SocketAddr) {
        if let Some(leg) = self
            .addresses
            .rtp
            .get(&from)
            .and_then(|&i| self.legs.get(i))
        {
            leg.prefetch();
        }
    }

    /// A datagram arrived on the worker's RTP (`via = Rtp`) or RTCP socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, via: Via, data: &[u8]) {
        self.stats.datagrams += 1;
        self.clock = self.clock.max(now);
        let is_rtcp = via == Via::Rtcp || rtp::is_rtcp(data);
        let known = if via == Via::Rtcp {
            self.addresses
                .rtcp
                .get(&from)
                .or_else(|| self.addresses.rtp.get(&from))
        } else {
            self.addresses.rtp.get(&from)
        }
        .copied()
        .or_else(|| self.addresses.link(from, data, is_rtcp));
        if let Some(idx) = known {
            // Spend the budget before any parsing: a flood costs a lookup per datagram.
            if !self.spend(now, idx) {
                return;
            }
        } else if !self.video.is_empty()
            && self
                .video
                .handle_datagram(now, from, data, is_rtcp, &mut self.tx)
        {
            return;
        }
        if is_rtcp {
            match known {
                Some(idx) => self.handle_rtcp(now, idx, data),
                None => self.stats.foreign += 1,
            }
            return;
        }
        if known.is_none() && !self.may_latch(from) {
            self.stats.foreign += 1;
            return;
        }
        let pkt = match RtpPacket::parse(data) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let idx = match known {
            Some(idx) => idx,
            None => match self.latch(now, from, pkt.ssrc) {
                Some(idx) if self.spend(now, idx) => idx,
                Some(_) => return,
                None => {
                    self.stats.foreign += 1;
                    return;
                }
            },
        };
        let events = &mut self.events;
        let leg = self
            .legs
            .get_mut(idx)
            .expect("address maps point at live legs");
        if pkt.payload_type == leg.spec.payload_type {
            if leg.check_ssrc(now, pkt.ssrc) == leg::SsrcCheck::Refused {
                return;
            }
            leg.latched = true;
            leg.timeout_reported = false;
            leg.stats.packets_received += 1;
            leg.reception
                .on_packet(now, pkt.ssrc, pkt.sequence, pkt.timestamp);
            if let Err(Rejected::Undecodable) = leg.playout.insert(
                now,
                pkt.sequence,
                pkt.timestamp,
                pkt.marker,
                pkt.payload,
                &leg.decoder,
            ) {
                leg.stats.decode_errors += 1;
            }
            return;
        }
        if leg.peer_ssrc.is_some_and(|s| s != pkt.ssrc) {
            // Events and comfort noise belong to the audio stream: another SSRC's are
            // not the peer's (it must not key digits in the peer's name).
            leg.stats.ssrc_refused += 1;
            return;
        }
        leg.latched = true;
        leg.timeout_reported = false;
        if Some(pkt.payload_type) == leg.spec.telephone_event_pt {
            if let Ok(ev) = TelephoneEvent::parse(pkt.payload) {
                if let Some(d) = leg.dtmf.on_packet(pkt.timestamp, &ev) {
                    leg.stats.dtmf_digits += 1;
                    if leg.dtmf_budget.take(now) {
                        events.push_back(EngineEvent::Dtmf {
                            room: leg.room,
                            leg: leg.id,
                            digit: d.digit,
                        });
                    } else {
                        leg.stats.dtmf_dropped += 1;
                    }
                }
            } else {
                leg.stats.decode_errors += 1;
            }
        } else if pkt.payload_type == rtp::PT_CN {
            leg.stats.comfort_noise += 1;
        } else {
            leg.stats.unknown_payload_type += 1;
        }
    }

    /// A datagram from one of leg `idx`'s addresses: notes that its source is alive
    /// and spends its receive budget. `false`: dropped and counted, do not parse.
    fn spend(&mut self, now: Instant, idx: usize) -> bool {
        let leg = self
            .legs
            .get_mut(idx)
            .expect("address maps point at live legs");
        leg.last_rx = now;
        if leg.budget.take(now) {
            return true;
        }
        leg.stats.flood_dropped += 1;
        self.stats.flood_dropped += 1;
        false
    }

    /// Whether some latching leg could claim a datagram from `from` (its IP is a
    /// latching leg's): anything else is foreign without being parsed.
    fn may_latch(&self, from: SocketAddr) -> bool {
        self.latching_ips.contains_key(&from.ip())
    }

    /// Finds the latching leg that may claim a datagram from `from` (see module docs)
    /// and moves it there. A claim refused because the leg's current source is still
    /// sending is counted on that leg.
    fn latch(&mut self, now: Instant, from: SocketAddr, ssrc: u32) -> Option<usize> {
        let legs = &self.legs;
        let by_ssrc = self.latching.iter().copied().find(|&i| {
            legs.get(i).is_some_and(|l| {
                l.latched && l.peer_ssrc == Some(ssrc) && l.remote.ip() == from.ip()
            })
        });
        let idx = match by_ssrc {
            Some(idx) => {
                let leg = self
                    .legs
                    .get_mut(idx)
                    .expect("latching list holds live legs");
                if now.saturating_duration_since(leg.last_rx) < LATCH_QUIET {
                    leg.stats.latch_refused += 1;
                    self.stats.latch_refused += 1;
                    let log_due = leg
                        .latch_logged
                        .map_or(true, |t| now.saturating_duration_since(t) >= LOG_EVERY);
                    if log_due {
                        leg.latch_logged = Some(now);
                        tracing::warn!(
                            leg = leg.id.0,
                            from = %from,
                            current = %leg.remote,
                            refused = leg.stats.latch_refused,
                            "latching refused: the leg's current source is still sending"
                        );
                    }
                    return None;
                }
                idx
            }
            None => {
                let mut fresh = self.latching.iter().copied().filter(|&i| {
                    legs.get(i)
                        .is_some_and(|l| !l.latched && l.spec.remote.ip() == from.ip())
                });
                let first = fresh.next()?;
                fresh.next().is_none().then_some(first)?
            }
        };
        let leg = self
            .legs
            .get_mut(idx)
            .expect("latching list holds live legs");
        self.addresses.unmap(idx, leg.remote, leg.rtcp_remote);
        tracing::info!(leg = leg.id.0, from = %leg.remote, to = %from, "latching leg moved");
        // Both claims need the leg's own IP: `latching_ips` stays right.
        debug_assert_eq!(leg.remote.ip(), from.ip());
        leg.remote = from;
        leg.rtcp_remote = leg::rtcp_address(from, leg.spec.rtcp_mux);
        leg.stats.latch_moves += 1;
        self.stats.latch_moves += 1;
        self.addresses.map(idx, leg.remote, leg.rtcp_remote);
        self.events.push_back(EngineEvent::Latched {
            room: leg.room,
            leg: leg.id,
            remote: from,
        });
        Some(idx)
    }

    fn handle_rtcp(&mut self, now: Instant, idx: usize, data: &[u8]) {
        let ntp = self.ntp(now);
        let leg = self
            .legs
            .get_mut(idx)
            .expect("address maps point at live legs");
        leg.last_rx = now;
        match rtcp_io::absorb(leg, now, ntp, data) {
            Ok(()) => leg.stats.rtcp_received += 1,
            Err(()) => self.stats.malformed += 1,
        }
    }
}
