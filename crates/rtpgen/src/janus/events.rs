//! The per-handle queues of Janus events.
//!
//! One long-poll of the session returns events for every handle; the one a caller
//! waits for is taken out and the rest are kept for their handles. Janus tells every
//! participant of a room about every join, so a room filled one participant at a time
//! produces events quadratic in its size: the queues are bounded
//! ([`EVENT_QUEUE_CAP`] per handle, oldest dropped first) and only attached handles
//! have one. Drops are counted, never silent. The answer being waited for is handed
//! back by [`EventQueues::file`] instead of being queued, so the cap cannot drop it.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use super::reply::{check_janus_error, unexpected};
use super::JanusError;

/// Most events kept per handle; older ones are dropped (and counted) first.
pub const EVENT_QUEUE_CAP: usize = 64;

/// Event queues by handle; a queue exists exactly for each attached handle.
#[derive(Debug, Default)]
pub(super) struct EventQueues {
    by_handle: HashMap<u64, VecDeque<Value>>,
    dropped: u64,
}

impl EventQueues {
    /// Starts keeping events for `handle`.
    pub(super) fn attach(&mut self, handle: u64) {
        self.by_handle.entry(handle).or_default();
    }

    /// Stops keeping events for `handle` and forgets those kept.
    pub(super) fn detach(&mut self, handle: u64) {
        self.by_handle.remove(&handle);
    }

    #[cfg(test)]
    pub(super) fn is_attached(&self, handle: u64) -> bool {
        self.by_handle.contains_key(&handle)
    }

    /// Takes out the event of `handle` answering transaction `tx`, if it came.
    pub(super) fn take_answer(&mut self, handle: u64, tx: &str) -> Option<Value> {
        let q = self.by_handle.get_mut(&handle)?;
        let i = q.iter().position(|e| e["transaction"] == tx)?;
        q.remove(i)
    }

    /// Takes all events kept for `handle`, oldest first.
    pub(super) fn take_all(&mut self, handle: u64) -> Vec<Value> {
        self.by_handle
            .get_mut(&handle)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Events dropped so far: beyond the cap, or for handles not attached.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Files a long-poll answer (an array when `maxev` was given, else one object)
    /// by sender handle, except the event of handle `awaited.0` answering transaction
    /// `awaited.1`, which is returned. Keepalives are skipped; a Janus error fails the
    /// poll.
    pub(super) fn file(
        &mut self,
        what: &'static str,
        r: Value,
        awaited: (u64, &str),
    ) -> Result<Option<Value>, JanusError> {
        let list = match r {
            Value::Array(list) => list,
            obj @ Value::Object(_) => vec![obj],
            other => return Err(unexpected(what, &other)),
        };
        let mut answer = None;
        for ev in list {
            check_janus_error(what, &ev)?;
            if ev["janus"] == "keepalive" {
                continue;
            }
            if answer.is_none() && ev["sender"] == awaited.0 && ev["transaction"] == awaited.1 {
                answer = Some(ev);
                continue;
            }
            let queue = ev["sender"]
                .as_u64()
                .and_then(|h| self.by_handle.get_mut(&h));
            match queue {
                Some(q) => {
                    if q.len() == EVENT_QUEUE_CAP {
                        q.pop_front();
                        self.dropped += 1;
                    }
                    q.push_back(ev);
                }
                None => self.dropped += 1,
            }
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Waiting for nothing that will come.
    const NONE: (u64, &str) = (0, "");

    #[test]
    fn a_handles_queue_keeps_the_newest_events_up_to_the_cap() {
        let mut q = EventQueues::default();
        q.attach(1);
        let evs: Vec<Value> = (0..EVENT_QUEUE_CAP + 3)
            .map(|i| json!({"janus": "event", "sender": 1, "n": i}))
            .collect();
        assert!(q.file("t", Value::Array(evs), NONE).unwrap().is_none());
        let kept = q.take_all(1);
        assert_eq!(kept.len(), EVENT_QUEUE_CAP);
        assert_eq!(kept[0]["n"], 3);
        assert_eq!(q.dropped(), 3);
        assert!(q.take_all(1).is_empty(), "taking empties the queue");
    }

    #[test]
    fn events_for_handles_not_attached_or_without_sender_are_dropped() {
        let mut q = EventQueues::default();
        q.attach(1);
        let r = json!([{"janus": "event", "sender": 2}, {"janus": "event"},
                       {"janus": "keepalive"}, {"janus": "event", "sender": 1}]);
        assert!(q.file("t", r, NONE).unwrap().is_none());
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.take_all(1).len(), 1);
        q.detach(1);
        q.file("t", json!({"janus": "event", "sender": 1}), NONE)
            .unwrap();
        assert_eq!(q.dropped(), 3, "a single object answer is filed too");
    }

    #[test]
    fn the_answer_to_a_transaction_is_taken_and_the_rest_stay() {
        let mut q = EventQueues::default();
        q.attach(1);
        let r = json!([{"sender": 1, "transaction": "a"}, {"sender": 1, "transaction": "b"}]);
        assert!(q.file("t", r, NONE).unwrap().is_none());
        assert_eq!(q.take_answer(1, "b").unwrap()["transaction"], "b");
        assert!(q.take_answer(1, "b").is_none());
        assert!(q.take_answer(2, "a").is_none());
        assert_eq!(
            q.take_all(1),
            vec![json!({"sender": 1, "transaction": "a"})]
        );
    }

    #[test]
    fn the_awaited_answer_is_returned_even_behind_a_full_queue() {
        let mut q = EventQueues::default();
        q.attach(1);
        let mut evs = vec![json!({"sender": 1, "transaction": "mine", "n": -1})];
        evs.extend((0..2 * EVENT_QUEUE_CAP).map(|i| json!({"sender": 1, "n": i})));
        let got = q.file("t", Value::Array(evs), (1, "mine")).unwrap();
        assert_eq!(got.unwrap()["n"], -1);
        assert_eq!(q.dropped(), EVENT_QUEUE_CAP as u64);
    }

    #[test]
    fn a_poll_answer_that_is_an_error_or_not_an_event_list_fails() {
        let mut q = EventQueues::default();
        let err = q.file("t", json!("nonsense"), NONE).unwrap_err();
        assert!(matches!(err, JanusError::Unexpected { .. }));
        let err = q
            .file(
                "t",
                json!([{"janus": "error", "error": {"code": 458, "reason": "x"}}]),
                NONE,
            )
            .unwrap_err();
        assert!(matches!(err, JanusError::Janus { code: 458, .. }));
    }
}
