//! A media worker: one OS thread, one current-thread tokio runtime, one [`Engine`],
//! two sockets (RTP and RTCP) and one timer — however many rooms and legs it owns.
//!
//! The loop is the run-loop vocabulary of the crate docs: wait for the tick deadline,
//! a control command or a readable socket; feed the engine; drain its transmits into
//! sendmmsg batches and its events into the node's event channel; repeat.

use scnf_core::engine::{Engine, EngineError, EngineEvent, LegId, LegSpec, LegStats, MixId, Via};
use scnf_udp::{RecvBatch, SendBatch};
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Datagram batches handled per socket wake-up before the loop looks at the timer
/// again, so a flood cannot delay the mix tick.
const MAX_BATCHES_PER_WAKE: usize = 8;
/// Largest datagram handled: bigger ones are truncated and dropped (counted). Audio
/// RTP is far smaller; 1500 bytes is the Ethernet MTU.
const SLOT_BYTES: usize = 1500;

/// A control request for one worker.
pub enum Command {
    OpenRoom {
        room: u64,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    CloseRoom {
        room: u64,
        reply: oneshot::Sender<Result<Vec<(LegId, LegStats)>, EngineError>>,
    },
    AddLeg {
        room: u64,
        leg: LegId,
        spec: LegSpec,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    RemoveLeg {
        leg: LegId,
        reply: oneshot::Sender<Result<LegStats, EngineError>>,
    },
    SetMuted {
        leg: LegId,
        muted: bool,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    SetReceives {
        leg: LegId,
        receives: bool,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    SetEncodeOnce {
        room: u64,
        on: bool,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    LegStats {
        leg: LegId,
        reply: oneshot::Sender<Option<LegStats>>,
    },
    Stats {
        reply: oneshot::Sender<WorkerStats>,
    },
    Shutdown,
}

/// A worker's counters, as reported by [`crate::NodeHandle::stats`].
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WorkerStats {
    pub index: usize,
    pub rooms: usize,
    pub legs: usize,
    pub datagrams: u64,
    pub foreign: u64,
    pub malformed: u64,
    pub truncated: u64,
    pub send_errors: u64,
    pub ticks: u64,
    pub late_ticks: u64,
    pub skipped_ticks: u64,
    pub encodes: u64,
    pub shared_sends: u64,
    pub lateness_p50_us: u64,
    pub lateness_p99_us: u64,
    pub lateness_max_us: u64,
}

/// An event tagged with nothing more: engine events already name room and leg.
pub type NodeEvent = EngineEvent;

pub struct WorkerIo {
    pub index: usize,
    pub engine: Engine,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub events: broadcast::Sender<NodeEvent>,
    pub batch: usize,
}

struct Counters {
    truncated: u64,
    send_errors: u64,
}

/// Runs the worker until a `Shutdown` command or the command channel closes.
pub fn run(w: WorkerIo) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()?;
    rt.block_on(run_loop(w))
}

async fn run_loop(w: WorkerIo) -> std::io::Result<()> {
    let WorkerIo {
        index,
        mut engine,
        rtp,
        rtcp,
        mut commands,
        events,
        batch,
    } = w;
    let rtp = tokio::net::UdpSocket::from_std(rtp)?;
    let rtcp = tokio::net::UdpSocket::from_std(rtcp)?;
    let mut recv = RecvBatch::new(batch, SLOT_BYTES);
    let mut send_rtp = SendBatch::new(batch, SLOT_BYTES);
    let mut send_rtcp = SendBatch::new(batch, SLOT_BYTES);
    let mut counters = Counters {
        truncated: 0,
        send_errors: 0,
    };
    // Far enough to never fire; used while the engine has no rooms.
    let idle = Duration::from_secs(3600);
    // The worker's one timer, re-armed to the engine's next deadline each turn.
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    loop {
        let deadline = engine
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + idle);
        if timer.deadline() != deadline.into() {
            timer.as_mut().reset(deadline.into());
        }
        tokio::select! {
            biased;
            _ = &mut timer => {
                engine.handle_timeout(Instant::now());
            }
            cmd = commands.recv() => match cmd {
                None | Some(Command::Shutdown) => break,
                Some(cmd) => apply(index, &mut engine, &counters, cmd),
            },
            r = rtp.readable() => {
                r?;
                drain(&rtp, &mut recv, &mut engine, Via::Rtp, &mut counters);
            }
            r = rtcp.readable() => {
                r?;
                drain(&rtcp, &mut recv, &mut engine, Via::Rtcp, &mut counters);
            }
        }
        while let Some(t) = engine.poll_transmit() {
            let (batch, sock) = match t.via {
                Via::Rtp => (&mut send_rtp, &rtp),
                Via::Rtcp => (&mut send_rtcp, &rtcp),
            };
            if batch.is_full() {
                flush(batch, sock, &mut counters);
                if batch.is_full() {
                    // The socket buffer is full and nothing drained: drop the oldest
                    // batch rather than block the media loop (counted).
                    counters.send_errors += batch.len() as u64;
                    batch.clear();
                }
            }
            if batch.push(t.dst, t.data).is_err() {
                counters.send_errors += 1;
            }
        }
        flush(&mut send_rtp, &rtp, &mut counters);
        flush(&mut send_rtcp, &rtcp, &mut counters);
        while let Some(e) = engine.poll_event() {
            // No subscriber is fine: events are advisory.
            let _ = events.send(e);
        }
    }
    tracing::debug!(worker = index, "worker stopped");
    Ok(())
}

fn drain(
    sock: &tokio::net::UdpSocket,
    recv: &mut RecvBatch,
    engine: &mut Engine,
    via: Via,
    counters: &mut Counters,
) {
    for _ in 0..MAX_BATCHES_PER_WAKE {
        // `try_io` clears the readiness flag when the closure reports WouldBlock, so
        // the next `readable()` waits for new datagrams.
        let got = sock.try_io(Interest::READABLE, || match recv.recv(sock)? {
            0 => Err(std::io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        });
        match got {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::warn!(error = %e, "recvmmsg failed");
                return;
            }
        }
        let now = Instant::now();
        for d in recv.iter() {
            if d.truncated {
                counters.truncated += 1;
                continue;
            }
            engine.handle_datagram(now, d.src, via, d.data);
        }
    }
    // More may be waiting: readiness stays set, the loop comes back after the timer.
}

fn flush(batch: &mut SendBatch, sock: &tokio::net::UdpSocket, counters: &mut Counters) {
    if batch.is_empty() {
        return;
    }
    match batch.flush(sock) {
        // Datagrams left pending (socket buffer full) go out with the next flush.
        Ok(s) => counters.send_errors += s.failed as u64,
        Err(e) => {
            counters.send_errors += batch.len() as u64;
            batch.clear();
            tracing::warn!(error = %e, "sendmmsg failed");
        }
    }
}

fn apply(index: usize, engine: &mut Engine, counters: &Counters, cmd: Command) {
    let now = Instant::now();
    // A requester that gave up (dropped its receiver) is not an error here.
    match cmd {
        Command::OpenRoom { room, reply } => {
            let _ = reply.send(engine.open_room(now, MixId(room)));
        }
        Command::CloseRoom { room, reply } => {
            let _ = reply.send(engine.close_room(MixId(room)));
        }
        Command::AddLeg {
            room,
            leg,
            spec,
            reply,
        } => {
            let _ = reply.send(engine.add_leg(now, MixId(room), leg, spec));
        }
        Command::RemoveLeg { leg, reply } => {
            let _ = reply.send(engine.remove_leg(leg));
        }
        Command::SetMuted { leg, muted, reply } => {
            let _ = reply.send(engine.set_muted(leg, muted));
        }
        Command::SetReceives {
            leg,
            receives,
            reply,
        } => {
            let _ = reply.send(engine.set_receives(leg, receives));
        }
        Command::SetEncodeOnce { room, on, reply } => {
            let _ = reply.send(engine.set_encode_once(MixId(room), on));
        }
        Command::LegStats { leg, reply } => {
            let _ = reply.send(engine.leg_stats(leg));
        }
        Command::Stats { reply } => {
            let s = engine.stats();
            let h = &s.lateness_us;
            let _ = reply.send(WorkerStats {
                index,
                rooms: engine.room_count(),
                legs: engine.leg_count(),
                datagrams: s.datagrams,
                foreign: s.foreign,
                malformed: s.malformed,
                truncated: counters.truncated,
                send_errors: counters.send_errors,
                ticks: s.ticks,
                late_ticks: s.late_ticks,
                skipped_ticks: s.skipped_ticks,
                encodes: s.encodes,
                shared_sends: s.shared_sends,
                lateness_p50_us: h.value_at_quantile(0.5),
                lateness_p99_us: h.value_at_quantile(0.99),
                lateness_max_us: h.max(),
            });
        }
        Command::Shutdown => {}
    }
}
