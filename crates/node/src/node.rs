//! The node: its media workers, and [`NodeHandle`], a stateless router of media
//! operations to them.
//!
//! Which room lives on which worker, and which leg is whose, is decided and kept by
//! the session root's room table (`scnf_core::session::RoomTable`): a room is placed
//! on one worker and all its legs live there, so mixing never crosses threads. The
//! handle only knows the workers' command queues and addresses. A leg's local address
//! is its worker's RTP socket (RTCP on the next port).

use crate::config::Config;
use crate::worker::{self, Command, NodeEvent, Reply, WorkerIo};
use scnf_core::engine::{
    Engine, EngineConfig, LegId, LegSpec, LegStats, MediaOp, MediaResult, MixId, WorkerStats,
};
use scnf_core::session::media_addr::OwnMedia;
use scnf_core::session::{LegPlace, ReqId, WorkerAddrs};
use scnf_udp as udp;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Why a node call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{op}: {reason}")]
    Refused { op: &'static str, reason: String },
    #[error("no worker {0}")]
    NoSuchWorker(usize),
    #[error("worker {0} is not running")]
    WorkerGone(usize),
    #[error("no RTP/RTCP port pair in {min}-{max} for worker {worker}: {source}")]
    NoPorts {
        min: u16,
        max: u16,
        worker: usize,
        source: std::io::Error,
    },
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
}

struct WorkerLink {
    commands: mpsc::UnboundedSender<Command>,
    addrs: WorkerAddrs,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Inner {
    workers: Vec<WorkerLink>,
    events: broadcast::Sender<NodeEvent>,
    own_media: OwnMedia,
    /// Channels the node's own controllers use (its session root publishes them; a
    /// scaler link reports them, so the scaler leaves them alone).
    local_channels: watch::Sender<u32>,
}

/// A running node (cheap to clone: all clones drive the same workers). Dropping it
/// does not stop the workers; call [`NodeHandle::shutdown`].
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
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
        // RTCP carries a report per leg every few seconds: an eighth of the buffers.
        let rtp_opts = udp::UdpOptions {
            recv_buf: cfg.rtp.recv_buffer,
            send_buf: cfg.rtp.send_buffer,
            reuse_addr: false,
            dont_fragment: cfg.rtp.dont_fragment,
        };
        let rtcp_opts = udp::UdpOptions {
            recv_buf: cfg.rtp.recv_buffer / 8,
            send_buf: cfg.rtp.send_buffer / 8,
            reuse_addr: false,
            dont_fragment: cfg.rtp.dont_fragment,
        };
        for index in 0..n {
            let ports = cfg.rtp.port_min..=cfg.rtp.port_max;
            // Kernel receive stamps: a datagram's arrival time does not depend on
            // when the worker gets to read it (see `worker::arrival`).
            let meta = udp::RecvMeta {
                stamp: true,
                ..udp::RecvMeta::NONE
            };
            let (rtp, rtcp) =
                udp::bind_rtp_pair_with_meta(cfg.rtp.bind, ports, &rtp_opts, &rtcp_opts, meta)
                    .map_err(|source| NodeError::NoPorts {
                        min: cfg.rtp.port_min,
                        max: cfg.rtp.port_max,
                        worker: index,
                        source,
                    })?;
            let port = rtp.local_addr()?.port();
            let multicast = multicast_for(cfg, advertise, &rtp);
            let engine = Engine::new(
                EngineConfig {
                    jitter: cfg.jitter_config(),
                    mix: cfg.mix_config(),
                    rtcp_interval: std::time::Duration::from_millis(cfg.rtp.rtcp_interval_ms),
                    media_timeout: (cfg.rtp.media_timeout_ms > 0)
                        .then(|| std::time::Duration::from_millis(cfg.rtp.media_timeout_ms)),
                    link_timeout: scnf_core::engine::LINK_TIMEOUT,
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
                rx_coalesce: std::time::Duration::from_micros(cfg.rtp.rx_coalesce_us),
                multicast,
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
                addrs: WorkerAddrs {
                    rtp: SocketAddr::new(advertise, port),
                    rtcp: SocketAddr::new(advertise, port + 1),
                },
                thread: Mutex::new(Some(thread)),
            });
        }
        tracing::info!(workers = n, first = %workers[0].addrs.rtp, "media workers running");
        let own_media = own_media(cfg.rtp.bind, advertise);
        Ok(NodeHandle {
            inner: Arc::new(Inner {
                workers,
                events,
                own_media,
                local_channels: watch::channel(0).0,
            }),
        })
    }

    /// The channels the node's own controllers use, as its session root last said.
    pub fn local_channels(&self) -> watch::Receiver<u32> {
        self.inner.local_channels.subscribe()
    }

    /// The session root's count of channels in use (see [`Self::local_channels`]).
    pub(crate) fn note_local_channels(&self, used: u32) {
        self.inner.local_channels.send_if_modified(|v| {
            let changed = *v != used;
            *v = used;
            changed
        });
    }

    /// Subscribes to node events (DTMF, talking, media timeouts, latching). A slow
    /// subscriber loses the oldest events, it never slows the media path.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Where each worker receives, in index order (what the session root places legs
    /// with).
    pub fn workers(&self) -> Vec<WorkerAddrs> {
        self.inner.workers.iter().map(|w| w.addrs).collect()
    }

    /// The IPs the node's media sockets answer on (what a Setup may not name).
    pub fn own_media(&self) -> OwnMedia {
        self.inner.own_media.clone()
    }

    /// The local RTP addresses of the workers.
    pub fn worker_addresses(&self) -> Vec<SocketAddr> {
        self.inner.workers.iter().map(|w| w.addrs.rtp).collect()
    }

    /// Queues `op` on `worker`; its result goes to `to`, tagged `req`. Operations on
    /// one worker are applied in the order they were submitted.
    pub fn submit(
        &self,
        worker: usize,
        req: ReqId,
        op: MediaOp,
        to: &mpsc::UnboundedSender<(ReqId, MediaResult)>,
    ) -> Result<(), NodeError> {
        let reply = Reply::Session {
            req,
            to: to.clone(),
        };
        self.command(worker, op, reply)
    }

    fn command(&self, worker: usize, op: MediaOp, reply: Reply) -> Result<(), NodeError> {
        let link = self
            .inner
            .workers
            .get(worker)
            .ok_or(NodeError::NoSuchWorker(worker))?;
        link.commands
            .send(Command::Op { op, reply })
            .map_err(|_| NodeError::WorkerGone(worker))
    }

    /// Applies `op` on `worker` and waits for the result (a refusal is an error).
    pub async fn request(&self, worker: usize, op: MediaOp) -> Result<MediaResult, NodeError> {
        let name = op.name();
        let (tx, rx) = oneshot::channel();
        self.command(worker, op, Reply::Once(tx))?;
        match rx.await.map_err(|_| NodeError::WorkerGone(worker))? {
            MediaResult::Failed(reason) => Err(NodeError::Refused { op: name, reason }),
            ok => Ok(ok),
        }
    }

    // Direct media control, for tools and tests that drive a node without the session
    // root: the caller names the worker and picks the ids.

    /// Opens a mix room on `worker`.
    pub async fn open_room(&self, worker: usize, mix: MixId) -> Result<(), NodeError> {
        self.request(worker, MediaOp::OpenRoom { mix })
            .await
            .map(drop)
    }

    /// Closes a mix room, dropping its legs; returns their final statistics.
    pub async fn close_room(
        &self,
        worker: usize,
        mix: MixId,
    ) -> Result<Vec<(LegId, LegStats)>, NodeError> {
        Ok(legs_of(
            self.request(worker, MediaOp::CloseRoom { mix }).await?,
        ))
    }

    /// Adds a leg to a room on `worker`; the answer says where the peer should send.
    pub async fn add_leg(
        &self,
        worker: usize,
        mix: MixId,
        leg: LegId,
        spec: LegSpec,
    ) -> Result<LegPlace, NodeError> {
        let rtcp_mux = spec.rtcp_mux;
        let addrs = self
            .inner
            .workers
            .get(worker)
            .ok_or(NodeError::NoSuchWorker(worker))?
            .addrs;
        self.request(worker, MediaOp::AddLeg { mix, leg, spec })
            .await?;
        Ok(LegPlace::new(leg, mix, worker, addrs, rtcp_mux))
    }

    /// A leg's current statistics.
    pub async fn leg_stats(&self, worker: usize, leg: LegId) -> Result<LegStats, NodeError> {
        let legs = legs_of(self.request(worker, MediaOp::LegStats { leg }).await?);
        legs.into_iter()
            .next()
            .map(|(_, s)| s)
            .ok_or(NodeError::Refused {
                op: "leg statistics",
                reason: format!("no statistics for {leg:?}"),
            })
    }

    /// Every worker's counters (one round trip per worker).
    pub async fn stats(&self) -> Result<Vec<WorkerStats>, NodeError> {
        let mut out = Vec::with_capacity(self.inner.workers.len());
        for i in 0..self.inner.workers.len() {
            match self.request(i, MediaOp::Snapshot { legs: false }).await? {
                MediaResult::Snapshot(s) => out.push(s.stats),
                other => {
                    return Err(NodeError::Refused {
                        op: "snapshot",
                        reason: format!("unexpected answer {other:?}"),
                    })
                }
            }
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

fn legs_of(result: MediaResult) -> Vec<(LegId, LegStats)> {
    match result {
        MediaResult::Legs(legs) => legs,
        _ => Vec::new(),
    }
}

/// Locks a mutex, recovering from poisoning (the only one guards a thread handle).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets up a worker's RTP socket to send multicast by the node's media interface,
/// and says how it receives groups; `None` (logged) where the media is not IPv4 or
/// the socket refuses: video then stays on this node, which is no reason not to run.
fn multicast_for(
    cfg: &Config,
    advertise: IpAddr,
    rtp: &std::net::UdpSocket,
) -> Option<worker::Multicast> {
    let interface = match (cfg.video.multicast_interface, advertise) {
        (Some(ip), _) => ip,
        (None, IpAddr::V4(ip)) => ip,
        (None, IpAddr::V6(_)) => return None,
    };
    let opts = udp::multicast::SenderOptions {
        interface,
        ttl: cfg.video.multicast_ttl,
        loopback: cfg.video.multicast_loop,
    };
    if let Err(e) = udp::multicast::configure_sender(rtp, &opts) {
        tracing::warn!(error = %e, %interface, "media socket cannot send multicast: video stays local");
        return None;
    }
    Some(worker::Multicast {
        interface,
        recv_buffer: cfg.rtp.recv_buffer,
    })
}

/// The IPs that reach sockets bound to `bind`: that address and the advertised one, or
/// with a wildcard bind every interface address of the host (when the host cannot
/// list them, loopback and the advertised address still count).
fn own_media(bind: IpAddr, advertise: IpAddr) -> OwnMedia {
    let mut ips = if bind.is_unspecified() {
        udp::local_ips().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list the host's addresses");
            Vec::new()
        })
    } else {
        vec![bind]
    };
    ips.push(advertise);
    ips.sort_unstable();
    ips.dedup();
    OwnMedia { ips }
}
