//! RFC 4733 telephone events (DTMF over RTP) and a receiver that turns the packet
//! stream into digits exactly once per key press.
//!
//! An event is sent as a run of packets sharing one RTP timestamp (the event's
//! start): updates with a growing duration, then the final packet with the E bit,
//! typically sent three times. Any of them may be lost or reordered, so
//! [`DtmfReceiver`] keys events by timestamp: the first packet seen of a new
//! timestamp emits the digit (start packet or not), every later packet of that
//! timestamp is absorbed, and a new press of the same key (new timestamp) emits
//! again. Timestamps of the last few events are remembered so a straggler from an
//! earlier event arriving after a newer one does not re-emit.
//!
//! Long events (RFC 4733 §2.5.1.3): when the duration would overflow 16 bits the
//! sender starts a new segment whose timestamp is the previous segment's plus
//! 0xFFFF, without an E bit in between. A new timestamp exactly 0xFFFF after an
//! un-ended event with the same code is taken as such a continuation, not a new
//! press.

/// Why a telephone-event payload was rejected.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum DtmfError {
    #[error("telephone-event payload of {len} bytes is shorter than 4")]
    TooShort { len: usize },
}

/// One telephone event (the first 4 bytes of the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9, 10 `*`, 11 `#`, 12-15 A-D, 16 flash, others per RFC 4734.
    pub event: u8,
    /// E bit: this is (a repetition of) the event's final packet.
    pub end: bool,
    /// Power level, 0..=63, in -dBm0 (0 is loudest).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event of a payload; further events (RFC 4733 §2.5.1.5
    /// redundancy) are ignored.
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        let Some(&[event, flags, d0, d1]) = payload.first_chunk::<4>() else {
            return Err(DtmfError::TooShort { len: payload.len() });
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            // 0x40 is reserved: ignored on receipt.
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// Writes the event as a 4-byte payload.
    pub fn write(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }

    /// The DTMF key for events 0-15.
    pub fn digit(&self) -> Option<char> {
        digit_of(self.event)
    }

    /// The event code of a DTMF key (`0-9`, `*`, `#`, `A-D`): the inverse of
    /// [`TelephoneEvent::digit`], for senders.
    pub fn code_of(key: char) -> Option<u8> {
        KEYS.iter()
            .position(|&k| char::from(k) == key)
            .map(|i| i as u8)
    }
}

/// RFC 4733 event codes 0-15, in order.
const KEYS: &[u8; 16] = b"0123456789*#ABCD";

fn digit_of(event: u8) -> Option<char> {
    KEYS.get(usize::from(event)).map(|&k| char::from(k))
}

/// A key press, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    pub digit: char,
    /// The event's RTP timestamp (its start).
    pub rtp_ts: u32,
}

/// The end of a key press, reported once, when its first E-bit packet arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEnd {
    pub digit: char,
    /// The event's RTP timestamp (of its first segment).
    pub rtp_ts: u32,
    /// Total duration in RTP timestamp units (across long-event segments).
    pub duration: u32,
}

/// Timestamps of this many recent events are remembered against stragglers.
const RECENT: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Current {
    /// Timestamp of the first segment (the one reported).
    first_ts: u32,
    /// Timestamp of the segment being received.
    segment_ts: u32,
    event: u8,
    ended: bool,
}

/// Turns telephone-event packets into digits; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    current: Option<Current>,
    recent: [Option<u32>; RECENT],
    next_slot: usize,
    pending_end: Option<DtmfEnd>,
}

impl DtmfReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all events (e.g. on an SSRC change).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Feeds one telephone-event packet. Returns the digit when this packet is the
    /// first seen of a new DTMF event (events 16+ are tracked but never returned).
    pub fn on_packet(&mut self, rtp_ts: u32, ev: &TelephoneEvent) -> Option<DtmfDigit> {
        if let Some(cur) = self.current.as_mut() {
            if cur.segment_ts == rtp_ts {
                Self::note_end(&mut self.pending_end, cur, ev);
                return None;
            }
            let continues = !cur.ended
                && cur.event == ev.event
                && rtp_ts.wrapping_sub(cur.segment_ts) == u32::from(u16::MAX);
            if continues {
                cur.segment_ts = rtp_ts;
                Self::note_end(&mut self.pending_end, cur, ev);
                self.remember(rtp_ts);
                return None;
            }
        }
        if self.recent.contains(&Some(rtp_ts)) {
            return None; // a straggler from an earlier event
        }
        self.remember(rtp_ts);
        let cur = self.current.insert(Current {
            first_ts: rtp_ts,
            segment_ts: rtp_ts,
            event: ev.event,
            ended: false,
        });
        Self::note_end(&mut self.pending_end, cur, ev);
        ev.digit().map(|digit| DtmfDigit { digit, rtp_ts })
    }

    /// The end of the latest event, once, after its first E-bit packet.
    pub fn poll_end(&mut self) -> Option<DtmfEnd> {
        self.pending_end.take()
    }

    fn note_end(pending: &mut Option<DtmfEnd>, cur: &mut Current, ev: &TelephoneEvent) {
        if !ev.end || cur.ended {
            return;
        }
        cur.ended = true;
        if let Some(digit) = digit_of(cur.event) {
            *pending = Some(DtmfEnd {
                digit,
                rtp_ts: cur.first_ts,
                duration: cur.segment_ts.wrapping_sub(cur.first_ts) + u32::from(ev.duration),
            });
        }
    }

    fn remember(&mut self, rtp_ts: u32) {
        self.recent[self.next_slot] = Some(rtp_ts);
        self.next_slot = (self.next_slot + 1) % RECENT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_by_table() {
        type Row = (&'static [u8], Result<(u8, bool, u8, u16), DtmfError>);
        let table: &[Row] = &[
            (&[], Err(DtmfError::TooShort { len: 0 })),
            (&[1, 0x80, 0], Err(DtmfError::TooShort { len: 3 })),
            (&[5, 0x0a, 0x01, 0x40], Ok((5, false, 10, 320))),
            (&[11, 0x8a, 0x03, 0x20], Ok((11, true, 10, 800))),
            (&[0, 0x7f, 0, 0], Ok((0, false, 63, 0))),
            // Redundant second event ignored.
            (&[9, 0x80, 0, 160, 3, 0x80, 0, 160], Ok((9, true, 0, 160))),
        ];
        for (payload, want) in table {
            let got =
                TelephoneEvent::parse(payload).map(|e| (e.event, e.end, e.volume, e.duration));
            assert_eq!(&got, want, "{payload:?}");
        }
    }

    #[test]
    fn events_0_to_15_are_keys_and_the_rest_are_not() {
        let keys: String = (0..16).filter_map(digit_of).collect();
        assert_eq!(keys, "0123456789*#ABCD");
        for (code, key) in keys.chars().enumerate() {
            assert_eq!(TelephoneEvent::code_of(key), Some(code as u8));
        }
        assert_eq!(TelephoneEvent::code_of('x'), None);
        assert_eq!(digit_of(16), None);
        assert_eq!(digit_of(255), None);
    }

    #[test]
    fn an_event_round_trips_through_write() {
        let ev = TelephoneEvent {
            event: 12,
            end: true,
            volume: 7,
            duration: 1234,
        };
        assert_eq!(TelephoneEvent::parse(&ev.write()), Ok(ev));
    }

    fn ev(event: u8, end: bool, duration: u16) -> TelephoneEvent {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
    }

    /// (timestamp, event, end, duration) per packet -> digits emitted.
    fn run(packets: &[(u32, u8, bool, u16)]) -> (String, Vec<DtmfEnd>) {
        let mut rx = DtmfReceiver::new();
        let mut digits = String::new();
        let mut ends = Vec::new();
        for &(ts, e, end, d) in packets {
            if let Some(dd) = rx.on_packet(ts, &ev(e, end, d)) {
                assert_eq!(dd.rtp_ts, ts);
                digits.push(dd.digit);
            }
            ends.extend(rx.poll_end());
        }
        (digits, ends)
    }

    #[test]
    fn each_key_press_emits_exactly_once() {
        type Row = (
            &'static str,
            &'static [(u32, u8, bool, u16)],
            &'static str,
            usize,
        );
        let table: &[Row] = &[
            (
                "start, updates, triple end",
                &[
                    (1000, 1, false, 160),
                    (1000, 1, false, 320),
                    (1000, 1, true, 480),
                    (1000, 1, true, 480),
                    (1000, 1, true, 480),
                ],
                "1",
                1,
            ),
            (
                "start packet lost",
                &[(1000, 5, false, 320), (1000, 5, true, 480)],
                "5",
                1,
            ),
            ("only an end packet", &[(1000, 11, true, 480)], "#", 1),
            (
                "same digit twice",
                &[
                    (1000, 7, false, 160),
                    (1000, 7, true, 480),
                    (3000, 7, false, 160),
                    (3000, 7, true, 480),
                ],
                "77",
                2,
            ),
            (
                "late end packet of the previous event",
                &[
                    (1000, 2, true, 480),
                    (3000, 3, false, 160),
                    (1000, 2, true, 480),
                    (3000, 3, true, 480),
                ],
                "23",
                2,
            ),
            (
                "new event without the previous end",
                &[(1000, 4, false, 160), (3000, 4, false, 160)],
                "44",
                0,
            ),
            (
                "flash is not a digit",
                &[(1000, 16, false, 160), (1000, 16, true, 800)],
                "",
                0,
            ),
            (
                "long event continues across a 0xFFFF segment",
                &[
                    (1000, 0, false, 0xffff),
                    (1000 + 0xffff, 0, false, 160),
                    (1000 + 0xffff, 0, true, 800),
                ],
                "0",
                1,
            ),
        ];
        for (name, packets, digits, ends) in table {
            let (got, got_ends) = run(packets);
            assert_eq!(&got, digits, "{name}");
            assert_eq!(got_ends.len(), *ends, "{name}");
        }
    }

    #[test]
    fn the_end_notification_carries_the_total_duration() {
        let (_, ends) = run(&[
            (500, 9, false, 0xffff),
            (500 + 0xffff, 9, true, 800),
            (500 + 0xffff, 9, true, 800),
        ]);
        assert_eq!(
            ends,
            vec![DtmfEnd {
                digit: '9',
                rtp_ts: 500,
                duration: 0xffff + 800
            }]
        );
    }

    #[test]
    fn timestamps_wrapping_around_zero_are_handled() {
        let (digits, _) = run(&[
            (u32::MAX - 100, 1, true, 480),
            (200, 2, false, 160),
            (200, 2, true, 480),
        ]);
        assert_eq!(digits, "12");
    }
}
