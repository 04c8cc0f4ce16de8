//! The rooms of this node: their ids, their options and the channel accounting.
//!
//! Invariants:
//! - **No overlap**: no room id is a prefix of another (equal ids overlap too). So a
//!   dialed number names at most one room, and "the first room which matches" is the
//!   only one.
//! - **Channels**: every member of a room (alerting included) takes one channel.
//!   `outstanding` = Σ max(0, reserve − members) is what rooms were promised but have
//!   not used yet. `used + outstanding ≤ capacity` always holds, because every
//!   admission checks it against a limit no larger than the capacity and a release
//!   never raises the sum.

use super::listen::{Change, Listen, Member, MemberState};
use super::CallRef;
use scnf_media::util::Rng;
use std::collections::BTreeMap;
use std::ops::Bound;

/// How many random ids `*1` tries before giving up with "no channel".
pub const RANDOM_ID_TRIES: usize = 100;

/// True when one id is a prefix of the other (or they are equal).
pub fn overlaps(a: &str, b: &str) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// One room.
#[derive(Clone, Debug)]
pub struct Room {
    pub id: String,
    pub reserve: u32,
    pub disconnect_control: bool,
    pub remote_connect: bool,
    pub multivideo: bool,
    /// The call that created the room (`*81`, `*82` refer to it).
    pub creator: CallRef,
    pub listen: Listen,
}

impl Room {
    fn members(&self) -> u32 {
        self.listen.members().len() as u32
    }

    /// Reserved channels not yet taken by a member.
    pub fn unused_reserve(&self) -> u32 {
        self.reserve.saturating_sub(self.members())
    }
}

/// All rooms, keyed (and so sorted) by id.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    rooms: BTreeMap<String, Room>,
    /// Σ members and Σ unused reservations, kept as members come and go: a join is
    /// checked in constant time however many rooms there are (a scaler holds the
    /// rooms of a whole cluster).
    used: u32,
    outstanding: u32,
}

impl Directory {
    pub fn get(&self, id: &str) -> Option<&Room> {
        self.rooms.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Room> {
        self.rooms.get_mut(id)
    }

    pub fn rooms(&self) -> impl Iterator<Item = &Room> {
        self.rooms.values()
    }

    /// Adds a room; the caller checked [`Directory::overlaps_any`].
    pub fn insert(&mut self, room: Room) {
        debug_assert!(!self.overlaps_any(&room.id), "room ids never overlap");
        self.used += room.members();
        self.outstanding += room.unused_reserve();
        self.rooms.insert(room.id.clone(), room);
    }

    pub fn remove(&mut self, id: &str) -> Option<Room> {
        let room = self.rooms.remove(id)?;
        self.used -= room.members();
        self.outstanding -= room.unused_reserve();
        Some(room)
    }

    /// Adds a member to room `id`: whether it is heard right away (`None`: no room).
    pub fn add_member(&mut self, id: &str, call: CallRef, state: MemberState) -> Option<bool> {
        let room = self.rooms.get_mut(id)?;
        let before = room.unused_reserve();
        let heard = room.listen.add(call, state);
        self.used += 1;
        self.outstanding = self.outstanding - before + room.unused_reserve();
        Some(heard)
    }

    /// Puts a kept member back into room `id` (see [`Listen::restore`]).
    pub fn restore_member(&mut self, id: &str, m: Member) -> bool {
        let Some(room) = self.rooms.get_mut(id) else {
            return false;
        };
        let before = room.unused_reserve();
        if !room.listen.restore(m) {
            return false;
        }
        self.used += 1;
        self.outstanding = self.outstanding - before + room.unused_reserve();
        true
    }

    /// Removes a member from room `id` (listen changes go to `changes`).
    pub fn remove_member(
        &mut self,
        id: &str,
        call: CallRef,
        changes: &mut Vec<Change>,
    ) -> Option<Member> {
        let room = self.rooms.get_mut(id)?;
        let before = room.unused_reserve();
        let m = room.listen.remove(call, changes)?;
        self.used -= 1;
        self.outstanding = self.outstanding - before + room.unused_reserve();
        Some(m)
    }

    /// Whether `id` overlaps a room: a room id is a prefix of it, or it is a prefix
    /// of a room id (a range lookup in the sorted ids, not a scan).
    pub fn overlaps_any(&self, id: &str) -> bool {
        self.room_for(id).is_some()
            || self
                .rooms
                .range::<str, _>((Bound::Included(id), Bound::Unbounded))
                .next()
                .is_some_and(|(r, _)| r.starts_with(id))
    }

    /// The room a plain dialed number joins: the one whose id is a prefix of `digits`
    /// (at most one: ids never overlap).
    pub fn room_for(&self, digits: &str) -> Option<&str> {
        (1..=digits.len())
            .filter(|&k| digits.is_char_boundary(k))
            .find_map(|k| self.rooms.get_key_value(&digits[..k]))
            .map(|(id, _)| id.as_str())
    }

    /// True when `digits` is a proper head of some room id (more digits could match).
    pub fn is_head_of_any(&self, digits: &str) -> bool {
        self.rooms
            .range::<str, _>((Bound::Excluded(digits), Bound::Unbounded))
            .next()
            .is_some_and(|(id, _)| id.starts_with(digits))
    }

    /// Channels taken by members (alerting included).
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Channels reserved by rooms and not yet taken.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    /// Whether a new room with `reserve` fits under `limit`.
    pub fn can_create(&self, reserve: u32, limit: u32) -> bool {
        let need = u64::from(reserve.max(1));
        u64::from(self.used()) + u64::from(self.outstanding()) + need <= u64::from(limit)
    }

    /// Whether one more member fits in room `id` under `limit`: always when the room
    /// still has unused reservation (the channel was set aside for it).
    pub fn can_join(&self, id: &str, limit: u32) -> bool {
        match self.rooms.get(id) {
            Some(r) if r.unused_reserve() > 0 => true,
            Some(_) => u64::from(self.used()) + u64::from(self.outstanding()) < u64::from(limit),
            None => false,
        }
    }

    /// `prefix` plus `len` random digits, overlapping no room; `None` after
    /// [`RANDOM_ID_TRIES`] failures.
    pub fn random_id(&self, rng: &mut Rng, prefix: &str, len: u8) -> Option<String> {
        for _ in 0..RANDOM_ID_TRIES {
            let mut id = String::with_capacity(prefix.len() + usize::from(len));
            id.push_str(prefix);
            for _ in 0..len {
                // below(10) < 10, so this is always an ASCII digit.
                id.push(char::from(b'0' + rng.below(10) as u8));
            }
            if !self.overlaps_any(&id) {
                return Some(id);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str, members: u64, reserve: u32) -> Room {
        let mut listen = Listen::default();
        for c in 0..members {
            listen.add(CallRef(c), MemberState::Connected);
        }
        Room {
            id: id.into(),
            reserve,
            disconnect_control: false,
            remote_connect: false,
            multivideo: true,
            creator: CallRef(0),
            listen,
        }
    }

    #[test]
    fn ids_overlap_when_one_is_a_prefix_of_the_other() {
        assert!(overlaps("1", "10"));
        assert!(overlaps("10", "1"));
        assert!(overlaps("10", "10"));
        assert!(!overlaps("10", "11"));
        assert!(overlaps("", "1"), "the empty id overlaps everything");
    }

    #[test]
    fn a_plain_number_finds_the_room_whose_id_it_begins_with() {
        let mut d = Directory::default();
        d.insert(room("1", 1, 0));
        d.insert(room("234", 1, 0));
        assert_eq!(d.room_for("10"), Some("1"));
        assert_eq!(d.room_for("23"), None);
        assert!(d.is_head_of_any("23"));
        assert!(!d.is_head_of_any("234"));
    }

    #[test]
    fn reservations_count_until_members_take_them() {
        let mut d = Directory::default();
        d.insert(room("1", 2, 5));
        d.insert(room("2", 3, 1));
        assert_eq!((d.used(), d.outstanding()), (5, 3));
        assert!(d.can_join("1", 8), "a reserved channel is always available");
        assert!(!d.can_join("2", 8));
        assert!(d.can_join("2", 9));
        assert!(d.can_create(1, 9));
        assert!(!d.can_create(2, 9));
    }

    #[test]
    fn random_ids_keep_the_prefix_and_avoid_existing_rooms() {
        let mut d = Directory::default();
        d.insert(room("105", 1, 0));
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            let id = d
                .random_id(&mut rng, "10", 1)
                .expect("nine free ids remain");
            assert!(id.starts_with("10") && id.len() == 3 && id != "105");
        }
        let mut d = Directory::default();
        d.insert(room("1", 1, 0));
        assert_eq!(d.random_id(&mut rng, "10", 3), None);
    }
}
