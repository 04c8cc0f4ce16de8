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
use scnf_core::cluster::link::Held;
use scnf_core::engine::{LegId, MediaOp, MixId};
use std::collections::HashMap;
use std::time::Duration;

/// How long the scaler's rooms run on without a registered link before the node
/// closes them (their controllers can no longer reach them).
pub(super) const ORPHANED_AFTER: Duration = Duration::from_secs(300);

/// The scaler's rooms on this node: worker and legs per room, and each leg's room.
#[derive(Debug, Default)]
pub(super) struct Placed {
    rooms: HashMap<MixId, (usize, Vec<LegId>)>,
    legs: HashMap<LegId, MixId>,
}

impl Placed {
    /// Follows an operation the scaler sent to `worker` (applied, or about to be).
    pub(super) fn note(&mut self, worker: usize, op: &MediaOp) {
        match op {
            MediaOp::OpenRoom { mix } => {
                self.rooms.entry(*mix).or_insert((worker, Vec::new()));
            }
            MediaOp::CloseRoom { mix } => {
                if let Some((_, legs)) = self.rooms.remove(mix) {
                    for leg in legs {
                        self.legs.remove(&leg);
                    }
                }
            }
            MediaOp::AddLeg { mix, leg, .. } => {
                if let Some((_, legs)) = self.rooms.get_mut(mix) {
                    legs.push(*leg);
                    self.legs.insert(*leg, *mix);
                }
            }
            MediaOp::RemoveLeg { leg } => {
                if let Some(mix) = self.legs.remove(leg) {
                    if let Some((_, legs)) = self.rooms.get_mut(&mix) {
                        legs.retain(|l| l != leg);
                    }
                }
            }
            _ => {}
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
            .map(|(mix, (worker, legs))| Held {
                worker: *worker,
                mix: *mix,
                legs: legs.clone(),
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
        for (mix, (worker, _)) in self.rooms.drain() {
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
            }]
        );
        assert_eq!(p.len(), 1);
    }
}
