//! The packet store of a playout: a preallocated ring of slots indexed by extended
//! sequence number (extended by [`crate::rtp::seq::nearest_seq`]).
//!
//! Invariants:
//! - the slot of extended sequence `s` is `slots[s mod capacity]`; a slot remembers
//!   its sequence after playout (`Played`) so a duplicate arriving after its original
//!   was played is still recognised;
//! - payload bytes are copied into the slot's own `Vec<u8>`, which grows only the
//!   first time a larger packet lands there and is reused afterwards, so steady state
//!   never allocates; a payload that decodes to one sample value throughout (a
//!   silent G.711 frame) is kept as that value instead, so neither its store nor its
//!   playout touches its bytes;
//! - the caller (the playout) keeps every `Queued` slot within `capacity` sequence
//!   numbers of its head, so two queued packets never share a slot.

use super::Rejected;

/// Smallest payload capacity a slot grows to, bytes.
const MIN_SLOT_BYTES: usize = 64;
/// Payload capacity every slot starts with: a 20 ms G.711 or G.722 payload (160
/// bytes) and a 30 ms G.711 one fit. A silent listener's payloads are never stored
/// (they are uniform, see the module docs), so its slots must already hold a
/// talker's when it starts talking: the media path allocates nothing then either.
const INITIAL_SLOT_BYTES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlotState {
    Empty,
    Queued,
    Played,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub state: SlotState,
    /// Extended sequence number.
    pub seq: i64,
    /// Extended RTP timestamp of the first sample.
    pub ts: i64,
    /// Duration in RTP timestamp units.
    pub len: i64,
    pub marker: bool,
    /// Every sample of the packet is this value; `payload` is then empty.
    pub uniform: Option<i16>,
    pub payload: Vec<u8>,
}

pub(super) struct Ring {
    slots: Vec<Slot>,
    mask: usize,
    queued: usize,
}

impl Ring {
    /// A ring of at least `min_slots` slots (rounded up to a power of two).
    pub fn new(min_slots: usize) -> Self {
        let n = min_slots.max(2).next_power_of_two();
        let slots = (0..n)
            .map(|_| Slot {
                state: SlotState::Empty,
                seq: 0,
                ts: 0,
                len: 0,
                marker: false,
                uniform: None,
                payload: Vec::with_capacity(INITIAL_SLOT_BYTES),
            })
            .collect();
        Ring {
            slots,
            mask: n - 1,
            queued: 0,
        }
    }

    pub fn capacity(&self) -> i64 {
        self.slots.len() as i64
    }

    /// Packets waiting to be played.
    pub fn queued(&self) -> usize {
        self.queued
    }

    fn index(&self, seq: i64) -> usize {
        // Extended sequence numbers are kept positive by the playout; masking the
        // two's complement bits is still a valid index for any value.
        (seq as usize) & self.mask
    }

    pub fn slot(&self, seq: i64) -> &Slot {
        &self.slots[self.index(seq)]
    }

    /// True when `seq` is queued or was played and its slot not reused since.
    /// Starts loading the slot of `seq` (see [`crate::util::prefetch`]).
    pub fn prefetch(&self, seq: i64) {
        crate::util::prefetch(self.slot(seq));
    }

    pub fn holds(&self, seq: i64) -> bool {
        let s = self.slot(seq);
        s.state != SlotState::Empty && s.seq == seq
    }

    /// Stores a packet. The caller has checked duplicates and the head distance.
    pub fn store(
        &mut self,
        seq: i64,
        ts: i64,
        len: i64,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), Rejected> {
        let slot = self.claim(seq, ts, len, marker)?;
        slot.uniform = None;
        slot.payload.clear();
        if slot.payload.capacity() < payload.len() {
            // Grow to the next power of two: variable-size payloads (Opus) then stop
            // reallocating after the first few, keeping the media path free of
            // allocation once warm.
            slot.payload
                .reserve_exact(payload.len().next_power_of_two().max(MIN_SLOT_BYTES));
        }
        slot.payload.extend_from_slice(payload);
        Ok(())
    }

    /// Stores a packet whose every sample is `value` (see the module docs), without
    /// its bytes.
    pub fn store_uniform(
        &mut self,
        seq: i64,
        ts: i64,
        len: i64,
        marker: bool,
        value: i16,
    ) -> Result<(), Rejected> {
        let slot = self.claim(seq, ts, len, marker)?;
        slot.uniform = Some(value);
        slot.payload.clear();
        Ok(())
    }

    /// The slot for a new packet, marked queued with its timing; its contents are
    /// the caller's to set.
    fn claim(&mut self, seq: i64, ts: i64, len: i64, marker: bool) -> Result<&mut Slot, Rejected> {
        let i = self.index(seq);
        let slot = &mut self.slots[i];
        if slot.state == SlotState::Queued {
            // Only reachable if the head-distance invariant was broken; refuse
            // rather than lose the packet already there.
            return Err(if slot.seq == seq {
                Rejected::Duplicate
            } else {
                Rejected::Overflow
            });
        }
        slot.state = SlotState::Queued;
        slot.seq = seq;
        slot.ts = ts;
        slot.len = len;
        slot.marker = marker;
        self.queued += 1;
        Ok(slot)
    }

    /// The lowest queued sequence number in `[from, from + capacity)`.
    pub fn first_queued_from(&self, from: i64) -> Option<i64> {
        if self.queued == 0 {
            return None;
        }
        (from..from + self.capacity()).find(|&s| {
            let slot = self.slot(s);
            slot.state == SlotState::Queued && slot.seq == s
        })
    }

    /// Marks a queued packet as played (kept for duplicate detection).
    pub fn mark_played(&mut self, seq: i64) {
        let i = self.index(seq);
        if self.slots[i].state == SlotState::Queued && self.slots[i].seq == seq {
            self.slots[i].state = SlotState::Played;
            self.queued -= 1;
        }
    }

    /// Drops every packet; returns how many queued ones were thrown away.
    pub fn flush(&mut self) -> usize {
        let dropped = self.queued;
        for s in &mut self.slots {
            s.state = SlotState::Empty;
        }
        self.queued = 0;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_played_packet_is_still_recognised_as_a_duplicate() {
        let mut ring = Ring::new(8);
        ring.store(10, 0, 160, false, &[1, 2]).unwrap();
        assert!(ring.holds(10));
        ring.mark_played(10);
        assert!(ring.holds(10));
        assert_eq!(ring.queued(), 0);
        assert!(!ring.holds(18), "same slot, other sequence");
    }

    #[test]
    fn first_queued_skips_holes_and_played_slots() {
        let mut ring = Ring::new(8);
        for seq in [5, 7, 9] {
            ring.store(seq, seq * 160, 160, false, &[0]).unwrap();
        }
        ring.mark_played(5);
        assert_eq!(ring.first_queued_from(5), Some(7));
        assert_eq!(ring.first_queued_from(8), Some(9));
        assert_eq!(ring.first_queued_from(10), None);
        assert_eq!(ring.flush(), 2);
        assert_eq!(ring.first_queued_from(0), None);
    }

    #[test]
    fn payload_buffers_are_reused_without_shrinking() {
        let mut ring = Ring::new(2);
        ring.store(0, 0, 160, false, &[7; 300]).unwrap();
        ring.mark_played(0);
        let cap = ring.slot(0).payload.capacity();
        ring.store(2, 320, 160, false, &[8; 100]).unwrap();
        assert_eq!(ring.slot(2).payload, vec![8; 100]);
        assert_eq!(ring.slot(2).payload.capacity(), cap);
    }

    #[test]
    fn a_uniform_packet_is_kept_as_its_value_and_reuses_the_slot_buffer() {
        let mut ring = Ring::new(2);
        ring.store(0, 0, 160, false, &[7; 160]).unwrap();
        ring.mark_played(0);
        let cap = ring.slot(0).payload.capacity();
        ring.store_uniform(2, 320, 160, true, -8).unwrap();
        let slot = ring.slot(2);
        assert_eq!((slot.uniform, slot.marker, slot.len), (Some(-8), true, 160));
        assert!(slot.payload.is_empty());
        assert_eq!(
            slot.payload.capacity(),
            cap,
            "nothing freed, nothing allocated"
        );
        assert_eq!(ring.first_queued_from(1), Some(2));
        // A byte payload in the same slot later is bytes again.
        ring.mark_played(2);
        ring.store(4, 640, 160, false, &[9; 10]).unwrap();
        assert_eq!(
            (ring.slot(4).uniform, ring.slot(4).payload.len()),
            (None, 10)
        );
    }

    #[test]
    fn a_queued_slot_is_never_overwritten() {
        let mut ring = Ring::new(2);
        ring.store(0, 0, 160, false, &[1]).unwrap();
        assert_eq!(
            ring.store(2, 320, 160, false, &[2]),
            Err(Rejected::Overflow)
        );
        assert_eq!(ring.store(0, 0, 160, false, &[1]), Err(Rejected::Duplicate));
        assert_eq!(ring.slot(0).payload, vec![1]);
    }
}
