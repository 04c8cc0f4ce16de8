//! A sans-IO controller for the harness: it keeps every message its node sent, in
//! order, and hands out answers by `src`.

use scnf_core::control::msg::{self, ServerMsg};
use scnf_core::session::ConnId;
use std::collections::VecDeque;

/// See the module docs.
pub struct SimController {
    /// The node it is connected to.
    pub node: usize,
    pub conn: ConnId,
    /// Everything received, in order.
    pub seen: Vec<ServerMsg>,
    /// Received with a `src` and not yet taken.
    answers: VecDeque<(String, ServerMsg)>,
    next_src: u64,
    /// Frames that did not parse (a defect of the node if ever non-zero).
    pub unparsed: u64,
}

impl SimController {
    pub(super) fn new(node: usize, conn: ConnId) -> SimController {
        SimController {
            node,
            conn,
            seen: Vec::new(),
            answers: VecDeque::new(),
            next_src: 1,
            unparsed: 0,
        }
    }

    pub(super) fn next_src(&mut self) -> String {
        let src = format!("h{}", self.next_src);
        self.next_src += 1;
        src
    }

    pub(super) fn receive(&mut self, text: &str) {
        match msg::parse_server(text) {
            Ok((m, src)) => {
                if let Some(src) = src {
                    self.answers.push_back((src, m.clone()));
                }
                self.seen.push(m);
            }
            Err(_) => self.unparsed += 1,
        }
    }

    /// The first not-yet-taken message sent with `src` (a request's answer).
    pub fn take_answer(&mut self, src: &str) -> Option<ServerMsg> {
        let i = self.answers.iter().position(|(s, _)| s == src)?;
        self.answers.remove(i).map(|(_, m)| m)
    }

    /// Whether any message received so far matches.
    pub fn saw(&self, f: impl Fn(&ServerMsg) -> bool) -> bool {
        self.seen.iter().any(f)
    }
}
