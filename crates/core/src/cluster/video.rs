//! Video between the nodes of a cluster: which publisher streams must cross to
//! which nodes, and the multicast groups they cross in. Sans-IO, on the scaler.
//!
//! # What it decides
//! A publisher's video layers (its LOW/MEDIUM/HIGH streams) are sent from its node
//! to the other nodes only while at least one viewer there wants them, and once
//! per stream whatever the number of receiving nodes:
//! - **Multicast** ([`VideoTransport::Multicast`]): the first remote viewer of a
//!   stream gives it a group from the pool (the lowest free, so a run is
//!   reproducible) and the publisher's node is told to send to it
//!   ([`VideoOutput::Publish`] with [`Dest::Group`]); every receiving node, on its
//!   first viewer, is told to join the group ([`VideoOutput::Join`]) and, on its
//!   last, to leave it at once ([`VideoOutput::Leave`]: a node that no longer wants
//!   a stream should stop paying for it).
//! - **Unicast** ([`VideoTransport::Unicast`], for networks without multicast):
//!   the publisher's node sends one copy per receiving node ([`Dest::Node`]), and
//!   each receiver is told to expect it ([`VideoOutput::Expect`]) or no longer
//!   ([`VideoOutput::Unexpect`]).
//!
//! Stopping the *sender* waits: the last viewer leaving starts a linger
//! ([`VideoPoolConfig::linger`]), and only when nobody came back within it is the
//! publisher told to stop ([`VideoOutput::Unpublish`]) and the group returned to the
//! pool. Viewers switch layers and pages often (a flapping subscription every
//! 50 ms is normal UI behaviour); without the linger every switch would cost the
//! publisher a stop and a start, and a key frame to whoever joins next. A
//! re-subscription inside the linger cancels it and reuses the same group.
//!
//! A node that is gone, or a stream that ended, takes effect at once: its
//! receivers are told to leave (or unexpect), no message goes toward a node that
//! is gone, and its groups return to the pool at once (nothing is sent to them any
//! more, so there is nothing to linger for).
//!
//! # Run loop
//! After every `subscribe`, `unsubscribe`, `node_gone`, `stream_gone` or
//! `handle_timeout(now)`, drain [`VideoDemand::poll_output`] and call
//! [`VideoDemand::handle_timeout`] at [`VideoDemand::poll_timeout`]. The one timer
//! kind is a linger, one per stream in multicast, one per (stream, receiver) in
//! unicast; they live in one ordered table, so the next deadline costs nothing to
//! find.

use super::planner::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// A publisher stream cluster-wide: its node and the id that node gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub node: NodeId,
    pub stream: u64,
}

/// How streams cross between nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoTransport {
    /// One copy per stream to a group, joined by the receiving nodes.
    Multicast,
    /// One copy per (stream, receiving node), where the network has no multicast.
    Unicast,
}

/// The cluster's video settings: the group pool, its port and the linger.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoPoolConfig {
    /// The pool's lowest group. Default `239.192.0.0` (RFC 2365's
    /// organisation-local scope).
    pub first: Ipv4Addr,
    /// The pool's highest group, included. Default `239.192.255.255`.
    pub last: Ipv4Addr,
    /// The one multicast port of the cluster, every group's. Default 5004.
    pub port: u16,
    /// How long a stream nobody views is still sent before its publisher is told
    /// to stop. Default 300 ms.
    pub linger: Duration,
    /// Default [`VideoTransport::Multicast`].
    pub transport: VideoTransport,
}

impl Default for VideoPoolConfig {
    fn default() -> VideoPoolConfig {
        VideoPoolConfig {
            first: Ipv4Addr::new(239, 192, 0, 0),
            last: Ipv4Addr::new(239, 192, 255, 255),
            port: 5004,
            linger: Duration::from_millis(300),
            transport: VideoTransport::Multicast,
        }
    }
}

impl VideoPoolConfig {
    /// Both ends in `239.0.0.0/8` (administratively scoped: never routed out of
    /// the organisation, whatever a TTL says), `first <= last`, a port other than 0.
    /// Checked even in unicast mode, so switching mode never reveals a bad pool.
    pub fn validate(&self) -> Result<(), PoolError> {
        for group in [self.first, self.last] {
            if group.octets()[0] != 239 {
                return Err(PoolError::OutsideScope(group));
            }
        }
        if self.first > self.last {
            return Err(PoolError::Empty);
        }
        if self.port == 0 {
            return Err(PoolError::PortZero);
        }
        Ok(())
    }
}

/// Why a pool cannot be made or cannot give a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("multicast group {0} is outside 239.0.0.0/8, the administratively scoped range")]
    OutsideScope(Ipv4Addr),
    #[error("the multicast group pool is empty: its first group is above its last")]
    Empty,
    #[error("every multicast group of the pool is in use")]
    Exhausted,
    #[error("the multicast port is 0")]
    PortZero,
}

/// Where a publisher's node sends a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    /// Multicast: the stream's group and the cluster's port.
    Group(SocketAddrV4),
    /// Unicast: that node's media address.
    Node(NodeId),
}

/// What the scaler must tell the nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoOutput {
    /// Tell `key.node` to start sending the stream to `to` (multicast: the group;
    /// unicast: [`Dest::Node`] of the receiver).
    Publish { key: StreamKey, to: Dest },
    /// Tell `key.node` to stop sending the stream to `to`.
    Unpublish { key: StreamKey, to: Dest },
    /// Tell `node` to join `group` and deliver it as stream `key` to its viewers
    /// (multicast only).
    Join {
        node: NodeId,
        key: StreamKey,
        group: SocketAddrV4,
    },
    /// Tell `node` to leave `group` (multicast only).
    Leave {
        node: NodeId,
        key: StreamKey,
        group: SocketAddrV4,
    },
    /// Unicast: tell `node` that `key` will arrive from `key.node`'s media address,
    /// so it can deliver it to its viewers.
    Expect { node: NodeId, key: StreamKey },
    /// Unicast: tell `node` that `key` no longer concerns it.
    Unexpect { node: NodeId, key: StreamKey },
}

/// One stream as [`VideoDemand::streams`] shows it, for Status and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamView {
    pub key: StreamKey,
    /// Multicast: the group it is sent to (lingering included). Unicast: `None`.
    pub group: Option<SocketAddrV4>,
    /// The nodes with viewers, and how many, by node id.
    pub receivers: Vec<(NodeId, u32)>,
    /// Where it is still sent with nobody viewing, and when that stops
    /// (multicast: its group; unicast: each such node), by deadline.
    pub lingering: Vec<(Dest, Instant)>,
}

/// The lowest free group, deterministically: groups below `next` are either in
/// use or in `freed`; `next..=last` were never handed out (or all returned).
#[derive(Debug)]
struct Pool {
    last: u32,
    next: u32,
    freed: BTreeSet<u32>,
}

impl Pool {
    fn new(first: Ipv4Addr, last: Ipv4Addr) -> Pool {
        Pool {
            last: u32::from(last),
            next: u32::from(first),
            freed: BTreeSet::new(),
        }
    }

    fn take(&mut self) -> Option<Ipv4Addr> {
        if let Some(group) = self.freed.pop_first() {
            return Some(group.into());
        }
        // `last` is in 239/8, so `next` never wraps.
        (self.next <= self.last).then(|| {
            self.next += 1;
            Ipv4Addr::from(self.next - 1)
        })
    }

    fn give(&mut self, group: Ipv4Addr) {
        let group = u32::from(group);
        if group + 1 != self.next {
            self.freed.insert(group);
            return;
        }
        // The highest group in use came back: shrink the handed-out range so that
        // `freed` holds only holes below it.
        self.next = group;
        while self.freed.last() == Some(&(self.next - 1)) {
            self.freed.pop_last();
            self.next -= 1;
        }
    }

    /// Groups never handed out, or returned.
    fn free(&self) -> u64 {
        u64::from(self.last) + 1 - u64::from(self.next) + self.freed.len() as u64
    }
}

/// A linger, keyed in the timer table with its deadline and stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Linger {
    /// Multicast: the stream's group, since its last receiver left.
    Group,
    /// Unicast: the copy toward this node, since its last viewer left.
    Node(NodeId),
}

#[derive(Debug, Default)]
struct Receiver {
    /// Viewers on this node; 0 only for a unicast copy in its linger.
    viewers: u32,
    /// Unicast: when the copy toward this node stops.
    unpublish_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Stream {
    /// The group, held from the first Publish to the Unpublish: `Some` exactly in
    /// multicast, which is how the code below tells the two transports apart.
    group: Option<Ipv4Addr>,
    /// Multicast: only nodes with viewers. Unicast: also nodes whose copy lingers
    /// (0 viewers, `unpublish_at` set).
    receivers: BTreeMap<NodeId, Receiver>,
    /// Multicast: when the group is unpublished, since its last receiver left.
    unpublish_at: Option<Instant>,
}

/// The cluster's video demand: who views which publisher stream, and what the
/// nodes must be told for it. See the module doc for the rules and the run loop.
#[derive(Debug)]
pub struct VideoDemand {
    cfg: VideoPoolConfig,
    pool: Pool,
    /// Every stream sent to at least one node (lingering included), by key, so
    /// iteration and thus output order are deterministic.
    streams: BTreeMap<StreamKey, Stream>,
    timers: BTreeSet<(Instant, StreamKey, Linger)>,
    out: VecDeque<VideoOutput>,
}

impl VideoDemand {
    /// Refuses a config [`VideoPoolConfig::validate`] refuses.
    pub fn new(cfg: VideoPoolConfig) -> Result<VideoDemand, PoolError> {
        cfg.validate()?;
        Ok(VideoDemand {
            pool: Pool::new(cfg.first, cfg.last),
            cfg,
            streams: BTreeMap::new(),
            timers: BTreeSet::new(),
            out: VecDeque::new(),
        })
    }

    pub fn config(&self) -> &VideoPoolConfig {
        &self.cfg
    }

    /// Groups the pool can still hand out (lingering streams hold theirs).
    pub fn free_groups(&self) -> u64 {
        self.pool.free()
    }

    /// One more viewer on node `receiver` wants `key` (counted per receiver). A
    /// receiver equal to `key.node` is ignored: the publisher's own node forwards
    /// locally. `Err(Exhausted)` when a new group is needed and the pool has none
    /// free; nothing changed then, and the caller answers the viewer with an error.
    pub fn subscribe(
        &mut self,
        _now: Instant,
        key: StreamKey,
        receiver: NodeId,
    ) -> Result<(), PoolError> {
        if receiver == key.node {
            return Ok(());
        }
        match self.cfg.transport {
            VideoTransport::Multicast => self.subscribe_multicast(key, receiver),
            VideoTransport::Unicast => {
                self.subscribe_unicast(key, receiver);
                Ok(())
            }
        }
    }

    fn subscribe_multicast(&mut self, key: StreamKey, receiver: NodeId) -> Result<(), PoolError> {
        if !self.streams.contains_key(&key) {
            let group = self.pool.take().ok_or(PoolError::Exhausted)?;
            let stream = Stream {
                group: Some(group),
                ..Stream::default()
            };
            self.streams.insert(key, stream);
            let to = Dest::Group(self.addr(group));
            self.out.push_back(VideoOutput::Publish { key, to });
        }
        let port = self.cfg.port;
        let Some(stream) = self.streams.get_mut(&key) else {
            return Ok(()); // inserted above
        };
        if let Some(at) = stream.unpublish_at.take() {
            self.timers.remove(&(at, key, Linger::Group));
        }
        let viewers = &mut stream.receivers.entry(receiver).or_default().viewers;
        *viewers = viewers.saturating_add(1);
        if let (1, Some(group)) = (*viewers, stream.group) {
            let group = SocketAddrV4::new(group, port);
            let node = receiver;
            self.out.push_back(VideoOutput::Join { node, key, group });
        }
        Ok(())
    }

    fn subscribe_unicast(&mut self, key: StreamKey, node: NodeId) {
        let stream = self.streams.entry(key).or_default();
        let r = stream.receivers.entry(node).or_default();
        r.viewers = r.viewers.saturating_add(1);
        if r.viewers > 1 {
            return;
        }
        match r.unpublish_at.take() {
            // Still sent to it: the linger is cancelled, only the receiver is told.
            Some(at) => {
                self.timers.remove(&(at, key, Linger::Node(node)));
            }
            None => {
                let to = Dest::Node(node);
                self.out.push_back(VideoOutput::Publish { key, to });
            }
        }
        self.out.push_back(VideoOutput::Expect { node, key });
    }

    /// One viewer on node `receiver` no longer wants `key`. More unsubscriptions
    /// than subscriptions (or for a stream that ended) are ignored.
    pub fn unsubscribe(&mut self, now: Instant, key: StreamKey, receiver: NodeId) {
        let at = now + self.cfg.linger;
        let port = self.cfg.port;
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        let Some(r) = stream.receivers.get_mut(&receiver) else {
            return;
        };
        if r.viewers == 0 {
            return;
        }
        r.viewers -= 1;
        if r.viewers > 0 {
            return;
        }
        let node = receiver;
        match stream.group {
            Some(group) => {
                stream.receivers.remove(&node);
                let group = SocketAddrV4::new(group, port);
                self.out.push_back(VideoOutput::Leave { node, key, group });
                if stream.receivers.is_empty() {
                    stream.unpublish_at = Some(at);
                    self.timers.insert((at, key, Linger::Group));
                }
            }
            None => {
                r.unpublish_at = Some(at);
                self.timers.insert((at, key, Linger::Node(node)));
                self.out.push_back(VideoOutput::Unexpect { node, key });
            }
        }
    }

    /// A node is gone: its streams stop (their receivers leave or unexpect, their
    /// groups return to the pool at once) and its subscriptions end. Nothing is
    /// said to the gone node; a stream it was the last receiver of is unpublished
    /// at once (multicast: group freed), and in unicast the copy toward it stops at
    /// once, linger or not.
    pub fn node_gone(&mut self, now: Instant, node: NodeId) {
        let own: Vec<StreamKey> = self
            .streams
            .range(
                StreamKey { node, stream: 0 }..=StreamKey {
                    node,
                    stream: u64::MAX,
                },
            )
            .map(|(key, _)| *key)
            .collect();
        for key in own {
            self.stream_gone(now, key);
        }
        let viewed: Vec<StreamKey> = self
            .streams
            .iter()
            .filter(|(_, s)| s.receivers.contains_key(&node))
            .map(|(key, _)| *key)
            .collect();
        for key in viewed {
            self.receiver_gone(key, node);
        }
    }

    fn receiver_gone(&mut self, key: StreamKey, node: NodeId) {
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        let Some(r) = stream.receivers.remove(&node) else {
            return;
        };
        if let Some(at) = r.unpublish_at {
            self.timers.remove(&(at, key, Linger::Node(node)));
        }
        let last = stream.receivers.is_empty();
        match stream.group {
            Some(group) if last => {
                let to = Dest::Group(SocketAddrV4::new(group, self.cfg.port));
                self.out.push_back(VideoOutput::Unpublish { key, to });
                self.pool.give(group);
                self.streams.remove(&key);
            }
            Some(_) => {}
            None => {
                let to = Dest::Node(node);
                self.out.push_back(VideoOutput::Unpublish { key, to });
                if last {
                    self.streams.remove(&key);
                }
            }
        }
    }

    /// A publisher stream ended (its publisher stopped or left): its receivers
    /// leave (multicast) or unexpect (unicast) at once, its group returns to the
    /// pool. No Unpublish: the stream ended at its publisher's node, which has
    /// nothing left to stop.
    pub fn stream_gone(&mut self, _now: Instant, key: StreamKey) {
        let Some(stream) = self.streams.remove(&key) else {
            return;
        };
        if let Some(at) = stream.unpublish_at {
            self.timers.remove(&(at, key, Linger::Group));
        }
        for (node, r) in stream.receivers {
            if let Some(at) = r.unpublish_at {
                self.timers.remove(&(at, key, Linger::Node(node)));
            }
            match stream.group {
                Some(group) => {
                    let group = self.addr(group);
                    self.out.push_back(VideoOutput::Leave { node, key, group });
                }
                None if r.viewers > 0 => {
                    self.out.push_back(VideoOutput::Unexpect { node, key });
                }
                None => {} // lingering: told to unexpect already
            }
        }
        if let Some(group) = stream.group {
            self.pool.give(group);
        }
    }

    /// Ends every linger due at `now`: Unpublish, and in multicast the group back
    /// to the pool.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, key, linger)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(stream) = self.streams.get_mut(&key) else {
                continue; // the table only holds live lingers; nothing to end
            };
            match linger {
                Linger::Group => {
                    if let Some(group) = stream.group {
                        let to = Dest::Group(SocketAddrV4::new(group, self.cfg.port));
                        self.out.push_back(VideoOutput::Unpublish { key, to });
                        self.pool.give(group);
                    }
                    self.streams.remove(&key);
                }
                Linger::Node(node) => {
                    stream.receivers.remove(&node);
                    let to = Dest::Node(node);
                    self.out.push_back(VideoOutput::Unpublish { key, to });
                    if stream.receivers.is_empty() {
                        self.streams.remove(&key);
                    }
                }
            }
        }
    }

    /// When [`VideoDemand::handle_timeout`] must be called next: the earliest
    /// linger's end.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    /// The next thing to tell a node, in the order decided.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<VideoOutput> {
        self.out.pop_front()
    }

    /// Every stream sent to at least one node (lingering ones included), by key.
    /// Each view is built on the way (a Vec per stream): for Status and tests, not
    /// for a hot path.
    pub fn streams(&self) -> impl Iterator<Item = StreamView> + '_ {
        self.streams.iter().map(move |(key, s)| {
            let group = s.group.map(|g| self.addr(g));
            let receivers = s
                .receivers
                .iter()
                .filter(|(_, r)| r.viewers > 0)
                .map(|(node, r)| (*node, r.viewers))
                .collect();
            let mut lingering: Vec<(Dest, Instant)> = match (group, s.unpublish_at) {
                (Some(g), Some(at)) => vec![(Dest::Group(g), at)],
                _ => Vec::new(),
            };
            lingering.extend(
                s.receivers
                    .iter()
                    .filter_map(|(node, r)| r.unpublish_at.map(|at| (Dest::Node(*node), at))),
            );
            lingering.sort_by_key(|(_, at)| *at);
            StreamView {
                key: *key,
                group,
                receivers,
                lingering,
            }
        })
    }

    /// Multicast: the group `key` is sent to, while it is published (lingering
    /// included).
    pub fn group_of(&self, key: StreamKey) -> Option<SocketAddrV4> {
        self.streams.get(&key)?.group.map(|g| self.addr(g))
    }

    fn addr(&self, group: Ipv4Addr) -> SocketAddrV4 {
        SocketAddrV4::new(group, self.cfg.port)
    }
}
