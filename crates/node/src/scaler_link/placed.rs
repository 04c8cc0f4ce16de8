//! What the scaler placed on this node, kept across link attempts.
//!
//! Media never depends on the scaler: when the link is lost, the rooms and legs it
//! placed run on. On the next registration the node reports them
//! ([`Register::holds`](scnf_core::cluster::link::Register)) and the scaler
//! reconciles: it keeps what it still knows (a link that broke costs no call) and
//! tears down the rest with ordinary operations. A scaler that never comes back
//! would leave them running for nobody, so after [`ORPHANED_AFTER`] without a
//! registration the node closes them itself.

use crate::node::NodeHandle;
use scnf_core::cluster::link::{Held, Keep, LegKeep, RoomKeep};
use scnf_core::engine::{LegId, MediaOp, MixId};
use std::collections::HashMap;
use std::time::Duration;

/// How long the scaler's rooms run on without a registered link before the node
/// closes them (their controllers can no longer reach them).
pub(super) const ORPHANED_AFTER: Duration = Duration::from_secs(300);

/// The scaler's rooms on this node: worker, legs and kept state per room, and each
/// leg's room.
#[derive(Debug, Default)]
pub(super) struct Placed {
    rooms: HashMap<MixId, Room>,
    legs: HashMap<LegId, MixId>,
    kept: HashMap<LegId, LegKeep>,
}

#[derive(Debug)]
struct Room {
    worker: usize,
    legs: Vec<LegId>,
    keep: Option<RoomKeep>,
}

impl Placed {
    /// Follows an operation the scaler sent to `worker` (applied, or about to be).
    pub(super) fn note(&mut self, worker: usize, op: &MediaOp) {
        match op {
            MediaOp::OpenRoom { mix } => {
                self.rooms.entry(*mix).or_insert(Room {
                    worker,
                    legs: Vec::new(),
                    keep: None,
                });
            }
            MediaOp::CloseRoom { mix } => {
                if let Some(room) = self.rooms.remove(mix) {
                    for leg in room.legs {
                        self.legs.remove(&leg);
                        self.kept.remove(&leg);
                    }
                }
            }
            MediaOp::AddLeg { mix, leg, .. } => {
                if let Some(room) = self.rooms.get_mut(mix) {
                    room.legs.push(*leg);
                    self.legs.insert(*leg, *mix);
                }
            }
            MediaOp::RemoveLeg { leg } => {
                self.kept.remove(leg);
                if let Some(mix) = self.legs.remove(leg) {
                    if let Some(room) = self.rooms.get_mut(&mix) {
                        room.legs.retain(|l| l != leg);
                    }
                }
            }
            _ => {}
        }
    }

    /// Keeps the scaler's state for a room or leg it holds; whether it does (state
    /// for something it does not hold is dropped: its close came first).
    pub(super) fn keep(&mut self, keep: Keep) -> bool {
        match keep {
            Keep::Room { mix, state } => match self.rooms.get_mut(&mix) {
                Some(room) => {
                    room.keep = Some(state);
                    true
                }
                None => false,
            },
            Keep::Leg { state } => match self.legs.contains_key(&state.leg) {
                true => {
                    self.kept.insert(state.leg, state);
                    true
                }
                false => false,
            },
        }
    }

    /// Rooms held now.
    pub(super) fn len(&self) -> usize {
        self.rooms.len()
    }

    /// What the registration reports, in a stable order.
    pub(super) fn holds(&self) -> Vec<Held> {
        let mut holds: Vec<Held> = self
            .rooms
            .iter()
            .map(|(mix, room)| {
                let mut kept: Vec<LegKeep> = room
                    .legs
                    .iter()
                    .filter_map(|l| self.kept.get(l).cloned())
                    .collect();
                kept.sort_unstable_by_key(|k| k.leg);
                Held {
                    worker: room.worker,
                    mix: *mix,
                    legs: room.legs.clone(),
                    room: room.keep.clone(),
                    kept,
                }
            })
            .collect();
        holds.sort_unstable_by_key(|h| h.mix);
        holds
    }

    /// Closes every room the scaler placed (nobody controls them any more).
    pub(super) async fn close_all(&mut self, node: &NodeHandle) {
        if self.rooms.is_empty() {
            return;
        }
        let n = self.rooms.len();
        self.legs.clear();
        self.kept.clear();
        for (mix, room) in self.rooms.drain() {
            let worker = room.worker;
            let _ = node.request(worker, MediaOp::CloseRoom { mix }).await;
        }
        tracing::warn!(
            rooms = n,
            after_s = ORPHANED_AFTER.as_secs(),
            "closed the rooms the scaler had placed: no scaler took them back in time"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scnf_core::engine::LegSpec;
    use scnf_media::codec::CodecKind;

    fn add(mix: u64, leg: u64) -> MediaOp {
        MediaOp::AddLeg {
            mix: MixId(mix),
            leg: LegId(leg),
            spec: LegSpec::new("192.0.2.1:4000".parse().unwrap(), CodecKind::Pcmu),
        }
    }

    #[test]
    fn what_is_held_follows_the_scalers_operations() {
        let mut p = Placed::default();
        p.note(0, &MediaOp::OpenRoom { mix: MixId(1) });
        p.note(1, &MediaOp::OpenRoom { mix: MixId(2) });
        p.note(0, &add(1, 10));
        p.note(0, &add(1, 11));
        p.note(1, &add(2, 20));
        p.note(0, &MediaOp::RemoveLeg { leg: LegId(10) });
        p.note(1, &MediaOp::CloseRoom { mix: MixId(2) });
        // A leg for a room it never opened is not held.
        p.note(0, &add(3, 30));
        assert_eq!(
            p.holds(),
            vec![Held {
                worker: 0,
                mix: MixId(1),
                legs: vec![LegId(11)],
                room: None,
                kept: vec![],
            }]
        );
        assert_eq!(p.len(), 1);
    }

    fn room_keep(epoch: u64) -> RoomKeep {
        RoomKeep {
            epoch,
            vmix: MixId(7),
            primary: "a".into(),
            parts: vec![],
            session: serde_json::json!({"id": "4711"}),
        }
    }

    fn leg_keep(leg: u64) -> LegKeep {
        LegKeep {
            leg: LegId(leg),
            vleg: LegId(leg + 100),
            session: serde_json::json!({"call": format!("c{leg}")}),
        }
    }

    #[test]
    fn kept_state_is_reported_with_its_room_and_goes_with_its_leg_or_room() {
        let mut p = Placed::default();
        p.note(0, &MediaOp::OpenRoom { mix: MixId(1) });
        p.note(0, &add(1, 10));
        p.note(0, &add(1, 11));
        let mix = MixId(1);
        assert!(p.keep(Keep::Room {
            mix,
            state: room_keep(1)
        }));
        // A later keep replaces the earlier one.
        assert!(p.keep(Keep::Room {
            mix,
            state: room_keep(2)
        }));
        assert!(p.keep(Keep::Leg {
            state: leg_keep(10)
        }));
        assert!(p.keep(Keep::Leg {
            state: leg_keep(11)
        }));
        // State for what the node does not hold is not kept.
        assert!(!p.keep(Keep::Leg {
            state: leg_keep(12)
        }));
        let unknown = MixId(9);
        assert!(!p.keep(Keep::Room {
            mix: unknown,
            state: room_keep(1)
        }));
        p.note(0, &MediaOp::RemoveLeg { leg: LegId(10) });
        let held = p.holds();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].room, Some(room_keep(2)));
        assert_eq!(held[0].kept, vec![leg_keep(11)]);
        p.note(0, &MediaOp::CloseRoom { mix });
        assert!(p.holds().is_empty());
        assert!(
            p.kept.is_empty(),
            "a closed room's member states go with it"
        );
    }
}
