//! The node: its workers and the control API the call-control layer builds on.
//!
//! Rooms are placed on the worker with the fewest legs when they open and stay there;
//! every leg of a room lives on the room's worker, so mixing never crosses threads.
//! A leg's local address is its worker's RTP socket (RTCP on the next port).

use crate::config::Config;
use crate::worker::{self, Command, NodeEvent, WorkerIo, WorkerStats};
use scnf_core::engine::{Engine, EngineConfig, EngineError, LegId, LegSpec, LegStats};
use scnf_udp as udp;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Why a node call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("room {0} does not exist")]
    NoSuchRoom(u64),
    #[error("leg {0:?} does not exist")]
    NoSuchLeg(LegId),
    #[error("worker {0} is not running")]
    WorkerGone(usize),
    #[error("no free RTP/RTCP port pair in {min}-{max} for worker {worker}")]
    NoPorts { min: u16, max: u16, worker: usize },
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Where a new leg's peer should send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LegInfo {
    pub id: LegId,
    pub room: u64,
    /// Local RTP address (advertised IP, worker port).
    pub local: SocketAddr,
    /// Local RTCP address (port + 1), unless the leg multiplexes RTCP.
    pub local_rtcp: SocketAddr,
}

struct WorkerLink {
    commands: mpsc::UnboundedSender<Command>,
    local: SocketAddr,
    local_rtcp: SocketAddr,
    legs: AtomicUsize,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Inner {
    workers: Vec<WorkerLink>,
    rooms: Mutex<HashMap<u64, usize>>,
    legs: Mutex<HashMap<LegId, (u64, usize)>>,
    next_room: AtomicU64,
    next_leg: AtomicU64,
    events: broadcast::Sender<NodeEvent>,
}

/// A running node (cheap to clone: all clones drive the same workers). Dropping it
/// does not stop the workers; call [`NodeHandle::shutdown`].
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

/// Binds an RTP socket on an even port and RTCP on the next one, from `range`.
fn bind_pair(
    ip: IpAddr,
    min: u16,
    max: u16,
    skip: &mut u16,
    cfg: &Config,
) -> Option<(UdpSocket, UdpSocket)> {
    let mut port = (min + 1) & !1;
    port = port.max(*skip);
    while port < max {
        let rtp = udp::bind_udp(
            SocketAddr::new(ip, port),
            cfg.rtp.recv_buffer,
            cfg.rtp.send_buffer,
        );
        if let Ok(rtp) = rtp {
            let rtcp = udp::bind_udp(
                SocketAddr::new(ip, port + 1),
                cfg.rtp.recv_buffer / 8,
                cfg.rtp.send_buffer / 8,
            );
            if let Ok(rtcp) = rtcp {
                *skip = port + 2;
                return Some((rtp, rtcp));
            }
        }
        port += 2;
    }
    None
}

impl NodeHandle {
    /// Starts the node's workers. Must be called inside a tokio runtime only for the
    /// returned handle's async methods; the workers run on their own threads.
    pub fn start(cfg: &Config) -> Result<NodeHandle, NodeError> {
        cfg.validate()?;
        let n = cfg.worker_count();
        let advertise = cfg
            .rtp
            .advertise
            .unwrap_or(if cfg.rtp.bind.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                cfg.rtp.bind
            });
        let (events, _) = broadcast::channel(4096);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let anchor = Instant::now();
        let mut workers = Vec::with_capacity(n);
        let mut skip = 0;
        for index in 0..n {
            let (rtp, rtcp) = bind_pair(
                cfg.rtp.bind,
                cfg.rtp.port_min,
                cfg.rtp.port_max,
                &mut skip,
                cfg,
            )
            .ok_or(NodeError::NoPorts {
                min: cfg.rtp.port_min,
                max: cfg.rtp.port_max,
                worker: index,
            })?;
            let port = rtp.local_addr()?.port();
            let engine = Engine::new(
                EngineConfig {
                    jitter: cfg.jitter_config(),
                    mix: cfg.mix_config(),
                    rtcp_interval: std::time::Duration::from_millis(cfg.rtp.rtcp_interval_ms),
                    media_timeout: (cfg.rtp.media_timeout_ms > 0)
                        .then(|| std::time::Duration::from_millis(cfg.rtp.media_timeout_ms)),
                    cname: format!("scnf-{port}@{advertise}"),
                    wallclock: (anchor, wall),
                },
                wall.as_nanos() as u64 ^ ((index as u64) << 56),
            );
            let (tx, rx) = mpsc::unbounded_channel();
            let io = WorkerIo {
                index,
                engine,
                rtp,
                rtcp,
                commands: rx,
                events: events.clone(),
                batch: cfg.rtp.batch,
            };
            let thread = std::thread::Builder::new()
                .name(format!("scnf-media-{index}"))
                .spawn(move || {
                    if let Err(e) = worker::run(io) {
                        tracing::error!(worker = index, error = %e, "media worker failed");
                    }
                })?;
            workers.push(WorkerLink {
                commands: tx,
                local: SocketAddr::new(advertise, port),
                local_rtcp: SocketAddr::new(advertise, port + 1),
                legs: AtomicUsize::new(0),
                thread: Mutex::new(Some(thread)),
            });
        }
        tracing::info!(workers = n, first = %workers[0].local, "media workers running");
        Ok(NodeHandle {
            inner: Arc::new(Inner {
                workers,
                rooms: Mutex::new(HashMap::new()),
                legs: Mutex::new(HashMap::new()),
                next_room: AtomicU64::new(1),
                next_leg: AtomicU64::new(1),
                events,
            }),
        })
    }

    /// Subscribes to node events (DTMF, talking, media timeouts, latching). A slow
    /// subscriber loses the oldest events, it never slows the media path.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// The local RTP addresses of the workers.
    pub fn worker_addresses(&self) -> Vec<SocketAddr> {
        self.inner.workers.iter().map(|w| w.local).collect()
    }

    async fn ask<T>(
        &self,
        worker: usize,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.inner.workers[worker]
            .commands
            .send(make(tx))
            .map_err(|_| NodeError::WorkerGone(worker))?;
        rx.await.map_err(|_| NodeError::WorkerGone(worker))
    }

    fn room_worker(&self, room: u64) -> Result<usize, NodeError> {
        lock(&self.inner.rooms)
            .get(&room)
            .copied()
            .ok_or(NodeError::NoSuchRoom(room))
    }

    fn leg_worker(&self, leg: LegId) -> Result<usize, NodeError> {
        lock(&self.inner.legs)
            .get(&leg)
            .map(|&(_, w)| w)
            .ok_or(NodeError::NoSuchLeg(leg))
    }

    /// Opens a room on the least-loaded worker and returns its id.
    pub async fn open_room(&self) -> Result<u64, NodeError> {
        let worker = (0..self.inner.workers.len())
            .min_by_key(|&i| self.inner.workers[i].legs.load(Ordering::Relaxed))
            .expect("a node has at least one worker");
        let room = self.inner.next_room.fetch_add(1, Ordering::Relaxed);
        self.ask(worker, |reply| Command::OpenRoom { room, reply })
            .await??;
        lock(&self.inner.rooms).insert(room, worker);
        Ok(room)
    }

    /// Closes a room, dropping its legs; returns their final statistics.
    pub async fn close_room(&self, room: u64) -> Result<Vec<(LegId, LegStats)>, NodeError> {
        let worker = self.room_worker(room)?;
        let legs = self
            .ask(worker, |reply| Command::CloseRoom { room, reply })
            .await??;
        lock(&self.inner.rooms).remove(&room);
        let mut map = lock(&self.inner.legs);
        for (id, _) in &legs {
            map.remove(id);
        }
        self.inner.workers[worker]
            .legs
            .fetch_sub(legs.len(), Ordering::Relaxed);
        Ok(legs)
    }

    /// Adds a leg to a room; the answer says where the peer should send.
    pub async fn add_leg(&self, room: u64, spec: LegSpec) -> Result<LegInfo, NodeError> {
        let worker = self.room_worker(room)?;
        let id = LegId(self.inner.next_leg.fetch_add(1, Ordering::Relaxed));
        let rtcp_mux = spec.rtcp_mux;
        self.ask(worker, |reply| Command::AddLeg {
            room,
            leg: id,
            spec,
            reply,
        })
        .await??;
        lock(&self.inner.legs).insert(id, (room, worker));
        let w = &self.inner.workers[worker];
        w.legs.fetch_add(1, Ordering::Relaxed);
        Ok(LegInfo {
            id,
            room,
            local: w.local,
            local_rtcp: if rtcp_mux { w.local } else { w.local_rtcp },
        })
    }

    /// Removes a leg; returns its final statistics.
    pub async fn remove_leg(&self, leg: LegId) -> Result<LegStats, NodeError> {
        let worker = self.leg_worker(leg)?;
        let stats = self
            .ask(worker, |reply| Command::RemoveLeg { leg, reply })
            .await??;
        lock(&self.inner.legs).remove(&leg);
        self.inner.workers[worker]
            .legs
            .fetch_sub(1, Ordering::Relaxed);
        Ok(stats)
    }

    /// Mutes (hold) or unmutes a leg's contribution.
    pub async fn set_muted(&self, leg: LegId, muted: bool) -> Result<(), NodeError> {
        let worker = self.leg_worker(leg)?;
        Ok(self
            .ask(worker, |reply| Command::SetMuted { leg, muted, reply })
            .await??)
    }

    /// Turns sending the mix to a leg on or off.
    pub async fn set_receives(&self, leg: LegId, receives: bool) -> Result<(), NodeError> {
        let worker = self.leg_worker(leg)?;
        Ok(self
            .ask(worker, |reply| Command::SetReceives {
                leg,
                receives,
                reply,
            })
            .await??)
    }

    /// Turns encode-once off or on for a room.
    pub async fn set_encode_once(&self, room: u64, on: bool) -> Result<(), NodeError> {
        let worker = self.room_worker(room)?;
        Ok(self
            .ask(worker, |reply| Command::SetEncodeOnce { room, on, reply })
            .await??)
    }

    /// A leg's current statistics.
    pub async fn leg_stats(&self, leg: LegId) -> Result<LegStats, NodeError> {
        let worker = self.leg_worker(leg)?;
        self.ask(worker, |reply| Command::LegStats { leg, reply })
            .await?
            .ok_or(NodeError::NoSuchLeg(leg))
    }

    /// Every worker's counters.
    pub async fn stats(&self) -> Result<Vec<WorkerStats>, NodeError> {
        let mut out = Vec::with_capacity(self.inner.workers.len());
        for i in 0..self.inner.workers.len() {
            out.push(self.ask(i, |reply| Command::Stats { reply }).await?);
        }
        Ok(out)
    }

    /// Stops every worker and waits for their threads. Idempotent.
    pub fn shutdown(&self) {
        for w in &self.inner.workers {
            let _ = w.commands.send(Command::Shutdown);
        }
        for w in &self.inner.workers {
            if let Some(t) = lock(&w.thread).take() {
                let _ = t.join();
            }
        }
    }
}

/// Locks a mutex, recovering from poisoning (the maps stay consistent: every
/// critical section is a single insert or remove).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
