//! The outgoing datagram queue of one engine: one contiguous byte arena plus an index,
//! both reused tick after tick, so queuing a packet never allocates once the queue has
//! grown to the worker's steady-state size.

use std::net::SocketAddr;

/// Which of the worker's two local sockets a datagram leaves from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The RTP socket (also RTCP for rtcp-mux legs).
    Rtp,
    /// The RTCP socket (RTP port + 1).
    Rtcp,
}

/// A datagram to send, borrowed from the queue until the next `poll_transmit`.
#[derive(Debug, PartialEq, Eq)]
pub struct Transmit<'a> {
    pub dst: SocketAddr,
    pub via: Via,
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
struct Item {
    dst: SocketAddr,
    via: Via,
    start: usize,
    len: usize,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct TxQueue {
    arena: Vec<u8>,
    items: Vec<Item>,
    read: usize,
}

impl TxQueue {
    /// Queues a datagram assembled by `write`, which gets a zeroed scratch region of
    /// `max_len` bytes and returns how many it used (or `None` to queue nothing).
    pub fn push_with(
        &mut self,
        dst: SocketAddr,
        via: Via,
        max_len: usize,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) {
        let start = self.arena.len();
        self.arena.resize(start + max_len, 0);
        match write(&mut self.arena[start..]) {
            Some(len) if len <= max_len => {
                self.arena.truncate(start + len);
                self.items.push(Item {
                    dst,
                    via,
                    start,
                    len,
                });
            }
            _ => self.arena.truncate(start),
        }
    }

    /// The next queued datagram, or `None` when drained (the queue then resets).
    pub fn pop(&mut self) -> Option<Transmit<'_>> {
        if self.read == self.items.len() {
            self.items.clear();
            self.arena.clear();
            self.read = 0;
            return None;
        }
        let it = self.items[self.read];
        self.read += 1;
        Some(Transmit {
            dst: it.dst,
            via: it.via,
            data: &self.arena[it.start..it.start + it.len],
        })
    }

    /// Datagrams queued and not yet popped.
    pub fn len(&self) -> usize {
        self.items.len() - self.read
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_come_out_in_order_and_the_queue_resets_when_drained() {
        let mut q = TxQueue::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1002".parse().unwrap();
        q.push_with(a, Via::Rtp, 16, |buf| {
            buf[..3].copy_from_slice(b"one");
            Some(3)
        });
        q.push_with(b, Via::Rtcp, 16, |_| None);
        q.push_with(b, Via::Rtcp, 16, |buf| {
            buf[..2].copy_from_slice(b"hi");
            Some(2)
        });
        assert_eq!(q.len(), 2);
        assert_eq!(
            q.pop(),
            Some(Transmit {
                dst: a,
                via: Via::Rtp,
                data: b"one"
            })
        );
        assert_eq!(q.pop().unwrap().data, b"hi");
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
        let cap = q.arena.capacity();
        q.push_with(a, Via::Rtp, 16, |_| Some(16));
        assert_eq!(q.arena.capacity(), cap, "reuses its arena");
    }
}
