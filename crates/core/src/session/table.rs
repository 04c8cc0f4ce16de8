//! The node's one room table: which conference room is which mix on which worker,
//! which call owns which leg, and how many legs each worker carries.
//!
//! The conference core ([`crate::conf`]) keeps room *semantics* (ids, members, flags,
//! channels); the engines keep *media* (mix rooms and legs). This table is the only
//! map between them, so a report or a re-synchronisation reads one place. The two id
//! spaces have distinct types: [`RoomId`] is what callers dial, [`MixId`] what a worker
//! mixes; [`LegId`] names a leg on its worker.

use crate::conf::CallRef;
use crate::engine::{LegId, MixId};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A conference room id: the dialled digits (for example `"7626"`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub String);

impl std::fmt::Display for RoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where one media worker receives: the addresses a leg on it advertises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerAddrs {
    /// RTP (the worker's one RTP socket, as peers should reach it).
    pub rtp: SocketAddr,
    /// RTCP (the next port), for legs that do not multiplex RTCP.
    pub rtcp: SocketAddr,
}

/// A conference room's media: its mix and the worker that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixPlace {
    pub mix: MixId,
    pub worker: usize,
}

/// A call's leg: its id, its room's mix and worker, and where its peer sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegPlace {
    pub id: LegId,
    pub mix: MixId,
    pub worker: usize,
    pub local: SocketAddr,
    pub local_rtcp: SocketAddr,
}

impl LegPlace {
    /// Leg `id` of mix `mix` on worker `worker`, which receives at `addrs`: the peer
    /// sends RTP to the worker's socket, and RTCP to the next port unless it
    /// multiplexes RTCP (RFC 5761).
    pub fn new(id: LegId, mix: MixId, worker: usize, addrs: WorkerAddrs, rtcp_mux: bool) -> Self {
        LegPlace {
            id,
            mix,
            worker,
            local: addrs.rtp,
            local_rtcp: if rtcp_mux { addrs.rtp } else { addrs.rtcp },
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct RoomTable {
    workers: Vec<WorkerAddrs>,
    worker_legs: Vec<usize>,
    rooms: HashMap<RoomId, MixPlace>,
    by_mix: HashMap<MixId, RoomId>,
    legs: HashMap<LegId, CallRef>,
    next_mix: u64,
    next_leg: u64,
}

impl RoomTable {
    /// A table for a node with these workers (at least one).
    pub fn new(workers: Vec<WorkerAddrs>) -> RoomTable {
        assert!(!workers.is_empty(), "a node has at least one media worker");
        RoomTable {
            worker_legs: vec![0; workers.len()],
            workers,
            rooms: HashMap::new(),
            by_mix: HashMap::new(),
            legs: HashMap::new(),
            next_mix: 1,
            next_leg: 1,
        }
    }

    pub fn workers(&self) -> &[WorkerAddrs] {
        &self.workers
    }

    /// Places a new room on the worker with the fewest legs (ties: the lowest index)
    /// and gives it a fresh mix id. Every leg of the room will live on that worker, so
    /// mixing never crosses threads.
    pub fn open(&mut self, room: RoomId) -> MixPlace {
        let worker = (0..self.workers.len())
            .min_by_key(|&i| self.worker_legs[i])
            .expect("a node has at least one worker");
        let place = MixPlace {
            mix: MixId(self.next_mix),
            worker,
        };
        self.next_mix += 1;
        self.by_mix.insert(place.mix, room.clone());
        self.rooms.insert(room, place);
        place
    }

    /// Forgets a room; its mix place, if it had one.
    pub fn close(&mut self, room: &RoomId) -> Option<MixPlace> {
        let place = self.rooms.remove(room)?;
        self.by_mix.remove(&place.mix);
        Some(place)
    }

    /// The room whose mix is `mix`.
    pub fn room_of_mix(&self, mix: MixId) -> Option<&RoomId> {
        self.by_mix.get(&mix)
    }

    /// New mix and leg ids start at `base` or later (a scaler's ids must not meet
    /// those of its last life, which it may take over).
    pub fn start_ids_at(&mut self, base: u64) {
        self.next_mix = self.next_mix.max(base);
        self.next_leg = self.next_leg.max(base);
    }

    /// Takes back a room of another life with its own mix id, on worker 0 (a
    /// scaler's one virtual worker); `None` if the room or the mix is taken.
    pub fn adopt_room(&mut self, room: RoomId, mix: MixId) -> Option<MixPlace> {
        if self.rooms.contains_key(&room) || self.by_mix.contains_key(&mix) {
            return None;
        }
        let place = MixPlace { mix, worker: 0 };
        self.next_mix = self.next_mix.max(mix.0 + 1);
        self.by_mix.insert(mix, room.clone());
        self.rooms.insert(room, place);
        Some(place)
    }

    /// Takes back a leg of another life with its own id; `None` if the id is taken.
    pub fn adopt_leg(
        &mut self,
        call: CallRef,
        id: LegId,
        place: MixPlace,
        addrs: WorkerAddrs,
        rtcp_mux: bool,
    ) -> Option<LegPlace> {
        if self.legs.contains_key(&id) {
            return None;
        }
        self.next_leg = self.next_leg.max(id.0 + 1);
        self.legs.insert(id, call);
        self.worker_legs[place.worker] += 1;
        Some(LegPlace::new(id, place.mix, place.worker, addrs, rtcp_mux))
    }

    pub fn room(&self, room: &RoomId) -> Option<MixPlace> {
        self.rooms.get(room).copied()
    }

    /// Allocates a leg for `call` in `place`'s mix.
    pub fn add_leg(&mut self, call: CallRef, place: MixPlace, rtcp_mux: bool) -> LegPlace {
        let id = LegId(self.next_leg);
        self.next_leg += 1;
        self.legs.insert(id, call);
        self.worker_legs[place.worker] += 1;
        let addrs = self.workers[place.worker];
        LegPlace::new(id, place.mix, place.worker, addrs, rtcp_mux)
    }

    /// Forgets a leg (removed, refused, or its room closed).
    pub fn remove_leg(&mut self, leg: &LegPlace) {
        if self.legs.remove(&leg.id).is_some() {
            self.worker_legs[leg.worker] -= 1;
        }
    }

    /// The call that owns a leg.
    pub fn call_of(&self, leg: LegId) -> Option<CallRef> {
        self.legs.get(&leg).copied()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }

    /// Legs per worker, as placement sees them.
    pub fn worker_legs(&self) -> &[usize] {
        &self.worker_legs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<WorkerAddrs> {
        (0..n)
            .map(|i| WorkerAddrs {
                rtp: SocketAddr::from(([127, 0, 0, 1], 20_000 + 2 * i)),
                rtcp: SocketAddr::from(([127, 0, 0, 1], 20_001 + 2 * i)),
            })
            .collect()
    }

    #[test]
    fn rooms_go_to_the_worker_with_the_fewest_legs() {
        let mut t = RoomTable::new(addrs(2));
        let a = t.open(RoomId("10".into()));
        assert_eq!(a.worker, 0);
        t.add_leg(CallRef(1), a, false);
        let b = t.open(RoomId("20".into()));
        assert_eq!(b.worker, 1, "worker 0 carries a leg, worker 1 none");
        assert_ne!(a.mix, b.mix);
    }

    #[test]
    fn a_leg_advertises_its_workers_addresses_and_rtcp_mux_uses_the_rtp_port() {
        let mut t = RoomTable::new(addrs(2));
        let first = t.open(RoomId("1".into()));
        t.add_leg(CallRef(9), first, false);
        let place = t.open(RoomId("2".into()));
        let plain = t.add_leg(CallRef(1), place, false);
        let muxed = t.add_leg(CallRef(2), place, true);
        assert_eq!(plain.local.port(), 20_002);
        assert_eq!(plain.local_rtcp.port(), 20_003);
        assert_eq!(muxed.local_rtcp, muxed.local);
        assert_ne!(plain.id, muxed.id);
        assert_eq!(t.call_of(muxed.id), Some(CallRef(2)));
    }

    #[test]
    fn removing_a_leg_twice_counts_it_once() {
        let mut t = RoomTable::new(addrs(1));
        let place = t.open(RoomId("1".into()));
        let leg = t.add_leg(CallRef(1), place, false);
        t.remove_leg(&leg);
        t.remove_leg(&leg);
        assert_eq!(t.worker_legs(), [0]);
        assert_eq!(t.leg_count(), 0);
        assert_eq!(t.call_of(leg.id), None);
    }
}
