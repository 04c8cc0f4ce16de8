//! The order of a node's answers to its scaler: per worker, the order of the ops.
//!
//! The protocol promises one `Result` per `Op`, in order per worker. Submitted ops
//! are answered by their worker in submission order already; an op the link refuses
//! itself (an id without the cluster bit) never reaches a worker, so its answer is
//! held until every earlier op of that worker has been answered. An op for a worker
//! the node does not have is answered at once (there is no order to keep there).
//!
//! Ops are tagged with the link's own ids towards the workers, so a scaler that
//! reuses a `req` cannot confuse two answers.

use scnf_core::engine::MediaResult;
use scnf_core::session::ReqId;
use std::collections::{HashMap, VecDeque};

/// One op awaiting its answer, or answered and waiting for earlier ones.
struct Entry {
    id: u64,
    req: u64,
    result: Option<MediaResult>,
}

/// The answers owed to one scaler connection.
pub struct Answers {
    queues: Vec<VecDeque<Entry>>,
    /// Link id -> worker, for the ops a worker still has to answer.
    at: HashMap<u64, usize>,
    next_id: u64,
}

impl Answers {
    pub fn new(workers: usize) -> Answers {
        Answers {
            queues: (0..workers).map(|_| VecDeque::new()).collect(),
            at: HashMap::new(),
            next_id: 0,
        }
    }

    /// Records that the scaler's `req` goes to `worker` (which must exist); returns
    /// the id to submit it with.
    pub fn submitted(&mut self, worker: usize, req: u64) -> ReqId {
        let id = self.fresh();
        self.queues[worker].push_back(Entry {
            id,
            req,
            result: None,
        });
        self.at.insert(id, worker);
        ReqId(id)
    }

    /// The link answered `req` itself (a refusal); what may be sent now goes to
    /// `out`, in order.
    pub fn answered_here(
        &mut self,
        worker: usize,
        req: u64,
        result: MediaResult,
        out: &mut Vec<(u64, MediaResult)>,
    ) {
        match self.queues.get_mut(worker) {
            Some(q) if !q.is_empty() => {
                let id = self.next_id;
                self.next_id += 1;
                q.push_back(Entry {
                    id,
                    req,
                    result: Some(result),
                });
            }
            // Nothing earlier is owed on that worker (or it does not exist).
            _ => out.push((req, result)),
        }
    }

    /// A worker answered the op submitted as `id`; what may be sent now goes to
    /// `out`, in order. An unknown id (an op of an earlier connection) is dropped.
    pub fn completed(&mut self, id: ReqId, result: MediaResult, out: &mut Vec<(u64, MediaResult)>) {
        let Some(worker) = self.at.remove(&id.0) else {
            return;
        };
        let q = &mut self.queues[worker];
        if let Some(e) = q.iter_mut().find(|e| e.id == id.0) {
            e.result = Some(result);
        }
        while q.front().is_some_and(|e| e.result.is_some()) {
            let e = q.pop_front().expect("front checked just above");
            out.push((e.req, e.result.expect("front checked just above")));
        }
    }

    /// Ops a worker has not answered yet.
    pub fn pending(&self) -> usize {
        self.at.len()
    }

    fn fresh(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(s: &str) -> MediaResult {
        MediaResult::Failed(s.into())
    }

    #[test]
    fn worker_answers_go_out_as_they_come() {
        let mut a = Answers::new(2);
        let mut out = Vec::new();
        let r1 = a.submitted(0, 1);
        let r2 = a.submitted(1, 2);
        a.completed(r2, MediaResult::Done, &mut out);
        a.completed(r1, MediaResult::Done, &mut out);
        assert_eq!(out, vec![(2, MediaResult::Done), (1, MediaResult::Done)]);
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn a_refusal_waits_for_the_earlier_ops_of_its_worker() {
        let mut a = Answers::new(1);
        let mut out = Vec::new();
        let r1 = a.submitted(0, 10);
        a.answered_here(0, 11, failed("not a cluster id"), &mut out);
        let r3 = a.submitted(0, 12);
        assert!(out.is_empty(), "11 waits for 10");
        a.completed(r1, MediaResult::Done, &mut out);
        assert_eq!(
            out,
            vec![(10, MediaResult::Done), (11, failed("not a cluster id"))]
        );
        out.clear();
        a.completed(r3, MediaResult::Done, &mut out);
        assert_eq!(out, vec![(12, MediaResult::Done)]);
    }

    #[test]
    fn a_refusal_on_an_idle_or_unknown_worker_goes_out_at_once() {
        let mut a = Answers::new(1);
        let mut out = Vec::new();
        a.answered_here(0, 1, failed("x"), &mut out);
        a.answered_here(7, 2, failed("no worker 7"), &mut out);
        assert_eq!(out, vec![(1, failed("x")), (2, failed("no worker 7"))]);
    }

    #[test]
    fn a_reused_req_or_a_stale_answer_confuses_nothing() {
        let mut a = Answers::new(1);
        let mut out = Vec::new();
        let first = a.submitted(0, 5);
        let second = a.submitted(0, 5);
        a.completed(ReqId(999), MediaResult::Done, &mut out);
        assert!(
            out.is_empty(),
            "an id this connection never gave is dropped"
        );
        a.completed(first, failed("a"), &mut out);
        a.completed(second, failed("b"), &mut out);
        assert_eq!(out, vec![(5, failed("a")), (5, failed("b"))]);
    }
}
