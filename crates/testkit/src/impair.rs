//! An impaired UDP relay to put between a participant and the node.
//!
//! One socket on 127.0.0.1 stands in for the participant: the participant sends
//! to [`Relay::addr`] and the node is told that same address as the leg's remote,
//! so the node sees one stable remote address and talks to the relay's port only;
//! the relay talks to the participant. Datagrams from the participant's address go
//! to the node, datagrams from the node's address go to the participant; the node's
//! address is given up front, set later with [`Relay::set_node`] (it is often only
//! known once the call is set up), or latched from the first datagram that comes
//! from anywhere else.
//!
//! Each direction has its own [`Impairment`] and its own PRNG seeded from
//! [`RelayConfig::seed`], and every datagram draws the same number of random
//! values whatever happens to it, so "the k-th datagram towards the node is lost"
//! depends only on the seed and k. Reordering comes from the jitter (a datagram
//! delayed by more than the packet interval overtakes the next one) and from an
//! explicit reorder probability.
//!
//! The relay runs on a background thread that stops on [`Relay::stop`], on drop,
//! or when [`RelayConfig::lifetime`] runs out, whichever comes first.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use scnf_media::util::Rng;

/// What happens to datagrams in one direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// Probability that a datagram is dropped. Default 0.
    pub loss: f64,
    /// Delay every datagram gets. Default 0.
    pub base_delay: Duration,
    /// Extra delay drawn uniformly from 0..=jitter per datagram. Default 0.
    pub jitter: Duration,
    /// Probability that a datagram is held back an extra `reorder_delay`. Default 0.
    pub reorder: f64,
    /// Extra hold for reordered datagrams. Default 50 ms.
    pub reorder_delay: Duration,
    /// Probability that a datagram is delivered twice. Default 0.
    pub duplicate: f64,
}

impl Impairment {
    /// A perfect path.
    pub const NONE: Impairment = Impairment {
        loss: 0.0,
        base_delay: Duration::ZERO,
        jitter: Duration::ZERO,
        reorder: 0.0,
        reorder_delay: Duration::from_millis(50),
        duplicate: 0.0,
    };

    /// A bad but usable path: 5% loss, 0-30 ms jitter, 2% reordered by 50 ms.
    pub const TYPICAL: Impairment = Impairment {
        loss: 0.05,
        base_delay: Duration::ZERO,
        jitter: Duration::from_millis(30),
        reorder: 0.02,
        reorder_delay: Duration::from_millis(50),
        duplicate: 0.0,
    };

    /// Only random loss.
    pub fn lossy(loss: f64) -> Self {
        Impairment { loss, ..Self::NONE }
    }
}

impl Default for Impairment {
    fn default() -> Self {
        Self::NONE
    }
}

/// Both directions and the relay's bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelayConfig {
    /// Participant -> node.
    pub to_node: Impairment,
    /// Node -> participant.
    pub to_participant: Impairment,
    pub seed: u64,
    /// The relay thread ends by itself after this long. Default 60 s.
    pub lifetime: Duration,
}

impl RelayConfig {
    /// The same impairment both ways.
    pub fn symmetric(imp: Impairment, seed: u64) -> Self {
        RelayConfig {
            to_node: imp,
            to_participant: imp,
            seed,
            lifetime: Duration::from_secs(60),
        }
    }
}

/// Counters for one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicated: u64,
    /// Datagrams handed to the kernel (duplicates counted twice).
    pub forwarded: u64,
    pub send_errors: u64,
}

/// What the relay did, returned by [`Relay::stop`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub to_node: DirectionStats,
    pub to_participant: DirectionStats,
    /// Datagrams towards the node while its address was unknown (dropped).
    pub no_node_yet: u64,
    /// Datagrams queued but not yet due when the relay stopped.
    pub undelivered: u64,
}

/// A running relay; see the module docs.
pub struct Relay {
    addr: SocketAddr,
    node: Arc<Mutex<Option<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<RelayStats>>,
}

impl Relay {
    /// Binds a relay port on 127.0.0.1 and starts forwarding.
    pub fn start(
        participant: SocketAddr,
        node: Option<SocketAddr>,
        cfg: RelayConfig,
    ) -> io::Result<Relay> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = sock.local_addr()?;
        let node = Arc::new(Mutex::new(node));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            sock,
            participant,
            node: Arc::clone(&node),
            stop: Arc::clone(&stop),
            cfg,
            rng_to_node: Rng::new(cfg.seed),
            rng_to_participant: Rng::new(cfg.seed ^ 0xA5A5_5A5A_F00D_CAFE),
            queue: BinaryHeap::new(),
            free: Vec::new(),
            order: 0,
            stats: RelayStats::default(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("relay-{}", addr.port()))
            .spawn(move || worker.run())?;
        Ok(Relay {
            addr,
            node,
            stop,
            thread: Some(thread),
        })
    }

    /// The address both sides talk to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets (or changes) the node's address.
    pub fn set_node(&self, addr: SocketAddr) {
        *self.node.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
    }

    /// Stops the thread and returns its counters.
    pub fn stop(mut self) -> RelayStats {
        self.halt()
    }

    fn halt(&mut self) -> RelayStats {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(stats)) => stats,
            _ => RelayStats::default(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.halt();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    ToNode,
    ToParticipant,
}

/// A datagram waiting for its delivery time; ordered by (due, arrival order).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    due: Instant,
    order: u64,
    dir: Dir,
    data: Vec<u8>,
}

struct Worker {
    sock: UdpSocket,
    participant: SocketAddr,
    node: Arc<Mutex<Option<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    cfg: RelayConfig,
    rng_to_node: Rng,
    rng_to_participant: Rng,
    queue: BinaryHeap<Reverse<Pending>>,
    /// Recycled datagram buffers.
    free: Vec<Vec<u8>>,
    order: u64,
    stats: RelayStats,
}

/// Longest the loop sleeps, so `stop` is noticed quickly.
const POLL: Duration = Duration::from_millis(5);

impl Worker {
    fn run(mut self) -> RelayStats {
        let end = Instant::now() + self.cfg.lifetime;
        let mut buf = [0u8; 65536];
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            self.deliver_due(now);
            let next = self.queue.peek().map_or(now + POLL, |Reverse(p)| p.due);
            let timeout = next
                .saturating_duration_since(now)
                .clamp(Duration::from_micros(100), POLL);
            if self.sock.set_read_timeout(Some(timeout)).is_err() {
                break;
            }
            match self.sock.recv_from(&mut buf) {
                Ok((n, src)) => self.accept(&buf[..n], src, Instant::now()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // ICMP errors for forwarded datagrams; a side is not there (yet).
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(_) => break,
            }
        }
        self.stats.undelivered = self.queue.len() as u64;
        self.stats
    }

    fn node(&self) -> Option<SocketAddr> {
        *self.node.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn accept(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        let dir = if src == self.participant {
            Dir::ToNode
        } else {
            match self.node() {
                Some(node) if node == src => Dir::ToParticipant,
                Some(_) => return, // a stranger: ignore
                None => {
                    *self.node.lock().unwrap_or_else(|e| e.into_inner()) = Some(src);
                    Dir::ToParticipant
                }
            }
        };
        let (imp, rng, stats) = match dir {
            Dir::ToNode => (
                &self.cfg.to_node,
                &mut self.rng_to_node,
                &mut self.stats.to_node,
            ),
            Dir::ToParticipant => (
                &self.cfg.to_participant,
                &mut self.rng_to_participant,
                &mut self.stats.to_participant,
            ),
        };
        stats.received += 1;
        // Always draw all four, so decisions depend only on the seed and the index.
        let lost = rng.chance(imp.loss);
        let jitter = imp.jitter.mul_f64(rng.next_f64());
        let reorder = rng.chance(imp.reorder);
        let dup = rng.chance(imp.duplicate);
        if lost {
            stats.lost += 1;
            return;
        }
        let mut delay = imp.base_delay + jitter;
        if reorder {
            stats.reordered += 1;
            delay += imp.reorder_delay;
        }
        let copies = if dup {
            stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut v = self.free.pop().unwrap_or_default();
            v.clear();
            v.extend_from_slice(data);
            self.order += 1;
            self.queue.push(Reverse(Pending {
                due: now + delay,
                order: self.order,
                dir,
                data: v,
            }));
        }
    }

    fn deliver_due(&mut self, now: Instant) {
        while self.queue.peek().is_some_and(|Reverse(p)| p.due <= now) {
            let Some(Reverse(p)) = self.queue.pop() else {
                break;
            };
            let (dst, stats) = match p.dir {
                Dir::ToNode => (self.node(), &mut self.stats.to_node),
                Dir::ToParticipant => (Some(self.participant), &mut self.stats.to_participant),
            };
            match dst {
                None => self.stats.no_node_yet += 1,
                Some(dst) => match self.sock.send_to(&p.data, dst) {
                    Ok(_) => stats.forwarded += 1,
                    Err(_) => stats.send_errors += 1,
                },
            }
            self.free.push(p.data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> UdpSocket {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s
    }

    /// Sends `n` numbered datagrams from `from` to `to`, 2 ms apart, and returns
    /// the numbers `at` received, in arrival order.
    fn numbered(from: &UdpSocket, to: SocketAddr, at: &UdpSocket, n: u32) -> Vec<u32> {
        for i in 0..n {
            from.send_to(&i.to_be_bytes(), to).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok((len, _)) = at.recv_from(&mut buf) {
            if len == 4 {
                got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
        }
        got
    }

    /// The relay tests time real datagrams: they run one at a time.
    fn exclusive() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn a_clean_relay_forwards_both_ways_and_the_node_sees_only_the_relay() {
        let _machine = exclusive();
        let (part, node) = (socket(), socket());
        let relay = Relay::start(
            part.local_addr().unwrap(),
            None,
            RelayConfig::symmetric(Impairment::NONE, 1),
        )
        .unwrap();
        // Node speaks first: its address is latched.
        node.send_to(b"hello", relay.addr()).unwrap();
        let mut buf = [0u8; 16];
        let (n, src) = part.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], src), (&b"hello"[..], relay.addr()));
        part.send_to(b"back", relay.addr()).unwrap();
        let (n, src) = node.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], src), (&b"back"[..], relay.addr()));
        let stats = relay.stop();
        assert_eq!(
            (stats.to_node.forwarded, stats.to_participant.forwarded),
            (1, 1)
        );
    }

    #[test]
    fn loss_follows_the_seed_and_its_rate() {
        let _machine = exclusive();
        let run = |seed| {
            let (part, node) = (socket(), socket());
            let relay = Relay::start(
                part.local_addr().unwrap(),
                Some(node.local_addr().unwrap()),
                RelayConfig::symmetric(Impairment::lossy(0.2), seed),
            )
            .unwrap();
            let got = numbered(&part, relay.addr(), &node, 200);
            (got, relay.stop())
        };
        let (a, stats) = run(7);
        let (b, _) = run(7);
        let (c, _) = run(8);
        assert_eq!(a, b, "same seed, same losses");
        assert_ne!(a, c);
        assert!((140..=180).contains(&a.len()), "{} of 200", a.len());
        assert_eq!(stats.to_node.lost, 200 - a.len() as u64);
        assert!(
            a.windows(2).all(|w| w[0] < w[1]),
            "no jitter, no reordering"
        );
    }

    #[test]
    fn jitter_and_reorder_delay_and_reorder_but_lose_nothing() {
        let _machine = exclusive();
        let (part, node) = (socket(), socket());
        let imp = Impairment {
            jitter: Duration::from_millis(30),
            reorder: 0.1,
            duplicate: 0.05,
            ..Impairment::NONE
        };
        let relay = Relay::start(
            part.local_addr().unwrap(),
            Some(node.local_addr().unwrap()),
            RelayConfig::symmetric(imp, 3),
        )
        .unwrap();
        let t0 = Instant::now();
        let mut got = numbered(&part, relay.addr(), &node, 100);
        let stats = relay.stop();
        assert!(t0.elapsed() >= Duration::from_millis(200));
        assert!(
            got.windows(2).any(|w| w[0] > w[1]),
            "something overtook something"
        );
        assert_eq!(got.len() as u64, 100 + stats.to_node.duplicated);
        got.sort_unstable();
        got.dedup();
        assert_eq!(got, (0..100).collect::<Vec<u32>>());
        assert!(stats.to_node.reordered > 0 && stats.to_node.duplicated > 0);
    }

    #[test]
    fn the_relay_ends_by_itself_after_its_lifetime() {
        let _machine = exclusive();
        let part = socket();
        let cfg = RelayConfig {
            lifetime: Duration::from_millis(50),
            ..RelayConfig::symmetric(Impairment::NONE, 0)
        };
        let relay = Relay::start(part.local_addr().unwrap(), None, cfg).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        drop(relay);
        assert!(t0.elapsed() < Duration::from_millis(50), "already finished");
    }
}
