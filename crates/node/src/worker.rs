//! A media worker: one OS thread, one current-thread tokio runtime, one [`Engine`],
//! two sockets (RTP and RTCP) and one timer — however many rooms and legs it owns.
//!
//! The loop is the run-loop vocabulary of the crate docs: wait for the tick deadline,
//! a control command or a readable socket; feed the engine; drain its transmits into
//! sendmmsg batches and its events into the node's event channel; repeat.

use scnf_core::engine::{Engine, EngineEvent, FloodWatch, MediaOp, MediaResult, Via};
use scnf_core::session::ReqId;
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
/// At most one flood summary line per worker this often (see [`FloodWatch`]).
const FLOOD_SUMMARY: Duration = Duration::from_secs(10);

/// Where a media operation's result goes.
pub enum Reply {
    /// To the session driver, tagged with the root's request id.
    Session {
        req: ReqId,
        to: mpsc::UnboundedSender<(ReqId, MediaResult)>,
    },
    /// To one waiting caller.
    Once(oneshot::Sender<MediaResult>),
}

impl Reply {
    /// Delivers the result. A requester that gave up is not an error here.
    pub fn send(self, result: MediaResult) {
        match self {
            Reply::Session { req, to } => {
                let _ = to.send((req, result));
            }
            Reply::Once(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// A request for one worker.
pub enum Command {
    Op { op: MediaOp, reply: Reply },
    Shutdown,
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
    let mut flood = FloodWatch::new(Instant::now(), FLOOD_SUMMARY);
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
                Some(Command::Op { op, reply }) => apply(index, &mut engine, &counters, op, reply),
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
        flood_summary(index, &engine, &counters, &mut flood);
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

/// Logs what the worker dropped in the last period, at most once per
/// [`FLOOD_SUMMARY`] and only when a drop counter moved.
fn flood_summary(index: usize, engine: &Engine, counters: &Counters, flood: &mut FloodWatch) {
    let now = Instant::now();
    if !flood.due(now) {
        return;
    }
    let mut s = engine.snapshot(index, false).stats;
    s.truncated = counters.truncated;
    if let Some(drops) = flood.observe(now, &s) {
        tracing::warn!(
            worker = index,
            period_s = FLOOD_SUMMARY.as_secs(),
            %drops,
            "media input dropped or damaged"
        );
    }
}

fn apply(index: usize, engine: &mut Engine, counters: &Counters, op: MediaOp, reply: Reply) {
    let mut result = engine.apply(Instant::now(), index, op);
    if let MediaResult::Snapshot(s) = &mut result {
        s.stats.truncated = counters.truncated;
        s.stats.send_errors = counters.send_errors;
    }
    reply.send(result);
}
