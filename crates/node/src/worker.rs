//! A media worker: one OS thread, one current-thread tokio runtime, one [`Engine`],
//! two sockets (RTP and RTCP) and one timer — however many rooms and legs it owns.
//!
//! The loop is the run-loop vocabulary of the crate docs: wait for the tick deadline,
//! a control command or a readable socket; feed the engine; drain its transmits into
//! sendmmsg batches and its events into the node's event channel; repeat.
//!
//! **The mix tick runs on time whatever arrives.** The timer alone cannot promise it:
//! tokio fires a timer entry only when its driver turns, and a socket that never runs
//! dry keeps the loop busy without it (a flood left 147 of 500 ticks in 10 s). So
//! every turn compares the engine's deadline with the clock itself ([`run_due`]) —
//! at the top of the turn and before every receive batch ([`receive`]) — and a turn
//! handles at most [`MAX_BATCHES_PER_TURN`] batches per socket, so a tick is late by
//! at most one batch's work. The timer only wakes an idle worker. A leg's excess
//! datagrams are cheap: the engine drops them unparsed against the leg's receive
//! budget (`scnf_core::engine::budget`).
//!
//! **A datagram's time is when it arrived, not when it was read.** The media sockets
//! carry the kernel's receive stamps ([`arrival`]), so a worker busy with a tick or a
//! batch does not make the jitter buffers see network jitter that is its own; and
//! when a tick is due, what waits on the sockets is read before it runs
//! ([`read_waiting`]), so a datagram that arrived in time is played in time.
//!
//! **A loaded worker reads on its own schedule.** Once a read finds datagrams the
//! worker rests ([`rest_turn`]): it sleeps up to `rtp.rx_coalesce_us` and then
//! reads whole batches, rather than being woken by every arrival. The stamps
//! above make this invisible to the audio.
//!
//! The turn logic is generic over the datagram source and the clock ([`Datagrams`],
//! [`Clock`]), so a test drives it with a source that never runs dry on a virtual
//! clock.

use scnf_core::engine::{Engine, EngineEvent, FloodWatch, MediaOp, MediaResult, Via};
use scnf_core::session::ReqId;
use scnf_udp::{Datagram, RecvBatch, SendBatch};
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Datagram batches handled per socket and turn; the deadline is checked before each.
/// Bounds how long a command or the other socket waits behind a flood.
pub const MAX_BATCHES_PER_TURN: usize = 8;
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
    /// Receive coalescing (see [`rest_turn`]); zero reads on every arrival.
    pub rx_coalesce: Duration,
    /// Multicast reception (video relayed from other nodes); `None`: refused.
    pub multicast: Option<Multicast>,
}

/// How a worker receives the multicast groups a scaler tells it to join.
#[derive(Clone, Copy, Debug)]
pub struct Multicast {
    /// The interface groups are joined on (the node's media interface).
    pub interface: std::net::Ipv4Addr,
    pub recv_buffer: usize,
}

/// The worker's multicast receive socket, bound on the cluster's port at the first
/// join, and its groups (joined once however many streams use them).
struct Groups {
    sock: tokio::net::UdpSocket,
    port: u16,
    joined: std::collections::HashMap<std::net::Ipv4Addr, usize>,
}

/// Joins or leaves a group for a scaler's `JoinGroup` / `LeaveGroup`.
fn group_op(groups: &mut Option<Groups>, cfg: Option<&Multicast>, op: &MediaOp) -> MediaResult {
    let Some(cfg) = cfg else {
        return MediaResult::Failed("this node does not receive multicast".into());
    };
    let result = match op {
        MediaOp::JoinGroup { group } => join_group(groups, cfg, *group),
        MediaOp::LeaveGroup { group } => leave_group(groups, cfg, *group),
        _ => return MediaResult::Failed("not a group operation".into()),
    };
    match result {
        Ok(()) => MediaResult::Done,
        Err(e) => {
            tracing::warn!(error = %e, ?op, "multicast group operation failed");
            MediaResult::Failed(e.to_string())
        }
    }
}

fn join_group(
    groups: &mut Option<Groups>,
    cfg: &Multicast,
    group: std::net::SocketAddrV4,
) -> std::io::Result<()> {
    if !scnf_udp::multicast::is_admin_scoped(*group.ip()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("group {group} is outside 239.0.0.0/8"),
        ));
    }
    if groups.is_none() {
        let opts = scnf_udp::UdpOptions {
            recv_buf: cfg.recv_buffer,
            send_buf: 0,
            reuse_addr: true,
            dont_fragment: false,
        };
        let sock = scnf_udp::multicast::bind_receiver(group.port(), &opts)?;
        *groups = Some(Groups {
            sock: tokio::net::UdpSocket::from_std(sock)?,
            port: group.port(),
            joined: Default::default(),
        });
    }
    let g = groups.as_mut().expect("bound above");
    if g.port != group.port() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "group {group}: this worker receives multicast on port {}",
                g.port
            ),
        ));
    }
    let n = g.joined.entry(*group.ip()).or_insert(0);
    if *n == 0 {
        scnf_udp::multicast::join(&g.sock, *group.ip(), cfg.interface)?;
    }
    *n += 1;
    Ok(())
}

fn leave_group(
    groups: &mut Option<Groups>,
    cfg: &Multicast,
    group: std::net::SocketAddrV4,
) -> std::io::Result<()> {
    let Some(g) = groups.as_mut() else {
        return Ok(());
    };
    let Some(n) = g.joined.get_mut(group.ip()) else {
        return Ok(());
    };
    *n -= 1;
    if *n == 0 {
        g.joined.remove(group.ip());
        scnf_udp::multicast::leave(&g.sock, *group.ip(), cfg.interface)?;
    }
    Ok(())
}

/// Readable when the multicast socket is; never when there is none.
async fn groups_readable(groups: &Option<Groups>) -> std::io::Result<()> {
    match groups {
        Some(g) => g.sock.readable().await,
        None => std::future::pending().await,
    }
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
        rx_coalesce,
        multicast,
    } = w;
    let mut groups: Option<Groups> = None;
    let rtp = tokio::net::UdpSocket::from_std(rtp)?;
    let rtcp = tokio::net::UdpSocket::from_std(rtcp)?;
    let mut recv = RecvBatch::new(batch, SLOT_BYTES);
    let mut out = Outbox {
        rtp: SendBatch::new(batch, SLOT_BYTES),
        rtcp: SendBatch::new(batch, SLOT_BYTES),
        events,
        send_errors: 0,
    };
    let mut truncated = 0u64;
    let clock = SystemClock;
    // Far enough to never fire; used while the engine has no rooms.
    let idle = Duration::from_secs(3600);
    // The worker's one timer, re-armed to the engine's next deadline each turn. It
    // only wakes an idle loop: a busy one checks the deadline itself.
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let mut flood = FloodWatch::new(Instant::now(), FLOOD_SUMMARY);
    // Whether the worker rests on the thread instead of waiting for readiness
    // (see `rest_turn`).
    let mut resting = Resting::default();
    loop {
        if engine.poll_timeout().is_some_and(|due| due <= clock.now()) {
            // What arrived before the tick is read before it runs (a busy worker
            // may not have looked since).
            let socks = media_sockets(&rtp, &rtcp, &groups);
            read_sockets(&mut engine, &mut recv, socks, &clock, &mut truncated);
        }
        run_due(&mut engine, clock.now(), &mut |e| out.drain(e, &rtp, &rtcp));
        if resting.on {
            // The commands that came during the rest, then the read.
            let stop = loop {
                match commands.try_recv() {
                    Ok(Command::Op { op, reply }) => {
                        let shell = (truncated, out.send_errors);
                        let mc = multicast.as_ref();
                        command(index, &mut engine, &mut groups, mc, shell, op, reply);
                    }
                    Ok(Command::Shutdown) | Err(mpsc::error::TryRecvError::Disconnected) => {
                        break true
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break false,
                }
            };
            if stop {
                break;
            }
            let socks = media_sockets(&rtp, &rtcp, &groups);
            rest_turn(&mut engine, &clock, rx_coalesce, &mut resting, &mut |e| {
                read_sockets(e, &mut recv, socks, &clock, &mut truncated)
            });
            out.drain(&mut engine, &rtp, &rtcp);
            flood_summary(index, &engine, truncated, &mut flood);
            continue;
        }
        let deadline = engine.poll_timeout().unwrap_or_else(|| clock.now() + idle);
        if timer.deadline() != deadline.into() {
            timer.as_mut().reset(deadline.into());
        }
        tokio::select! {
            biased;
            // One command per turn, before the timer: a worker whose ticks take a
            // whole period (overloaded) would otherwise find the timer due on
            // every turn and never take a command, not even the releases that
            // would relieve it. The tick itself runs at the top of every turn.
            cmd = commands.recv() => match cmd {
                None | Some(Command::Shutdown) => break,
                Some(Command::Op { op, reply }) => {
                    let shell = (truncated, out.send_errors);
                    command(index, &mut engine, &mut groups, multicast.as_ref(), shell, op, reply);
                }
            },
            _ = &mut timer => {}
            r = groups_readable(&groups) => {
                r?;
                if let Some(g) = groups.as_ref() {
                    let mut src = Socket { sock: &g.sock, batch: &mut recv, got: 0 };
                    let mut after = |e: &mut Engine| out.drain(e, &rtp, &rtcp);
                    receive_logged(&mut engine, &mut src, Via::Rtp, &clock, &mut truncated, &mut after);
                }
            }
            r = rtp.readable() => {
                r?;
                let mut src = Socket { sock: &rtp, batch: &mut recv, got: 0 };
                let mut after = |e: &mut Engine| out.drain(e, &rtp, &rtcp);
                let drained = receive_logged(&mut engine, &mut src, Via::Rtp, &clock, &mut truncated, &mut after);
                resting = Resting {
                    on: !rx_coalesce.is_zero() && src.got > 0,
                    backlog: drained == Drained::Bounded,
                };
            }
            r = rtcp.readable() => {
                r?;
                let mut src = Socket { sock: &rtcp, batch: &mut recv, got: 0 };
                let mut after = |e: &mut Engine| out.drain(e, &rtp, &rtcp);
                receive_logged(&mut engine, &mut src, Via::Rtcp, &clock, &mut truncated, &mut after);
            }
        }
        out.drain(&mut engine, &rtp, &rtcp);
        flood_summary(index, &engine, truncated, &mut flood);
    }
    tracing::debug!(worker = index, "worker stopped");
    Ok(())
}

/// [`receive`], with a failed `recvmmsg` logged (the loop goes on: the next readiness
/// tries again).
fn receive_logged(
    engine: &mut Engine,
    src: &mut dyn Datagrams,
    via: Via,
    clock: &dyn Clock,
    truncated: &mut u64,
    after_tick: &mut dyn FnMut(&mut Engine),
) -> Drained {
    receive(engine, src, via, clock, truncated, after_tick).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "recvmmsg failed");
        Drained::Dry
    })
}

/// The worker's receiving sockets and what arrives on each: RTP, RTCP and,
/// once it has joined a group, multicast (RTP).
type MediaSockets<'a> = [(Option<&'a tokio::net::UdpSocket>, Via); 3];

fn media_sockets<'a>(
    rtp: &'a tokio::net::UdpSocket,
    rtcp: &'a tokio::net::UdpSocket,
    groups: &'a Option<Groups>,
) -> MediaSockets<'a> {
    let multicast = groups.as_ref().map(|g| &g.sock);
    [
        (Some(rtp), Via::Rtp),
        (Some(rtcp), Via::Rtcp),
        (multicast, Via::Rtp),
    ]
}

/// [`read_waiting`] on each of `socks`, read directly ([`Unpolled`]).
fn read_sockets(
    engine: &mut Engine,
    batch: &mut RecvBatch,
    socks: MediaSockets<'_>,
    clock: &dyn Clock,
    truncated: &mut u64,
) -> Read {
    let mut read = Read::default();
    for (sock, via) in socks {
        let Some(sock) = sock else { continue };
        let mut src = Unpolled::new(sock, batch);
        read += read_waiting(engine, &mut src, via, clock, truncated);
    }
    read
}

/// What a read of the sockets found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Read {
    /// Datagrams read.
    pub datagrams: usize,
    /// A socket still had datagrams after [`MAX_BATCHES_PER_TURN`] batches.
    pub bounded: bool,
}

impl std::ops::AddAssign for Read {
    fn add_assign(&mut self, other: Read) {
        self.datagrams += other.datagrams;
        self.bounded |= other.bounded;
    }
}

/// Reads what waits on `src` (at most [`MAX_BATCHES_PER_TURN`] batches) without
/// running the tick in between. Called when the tick is due, so that everything
/// that arrived before it is in the jitter buffers when it runs, and by a
/// resting worker ([`rest_turn`]).
pub fn read_waiting(
    engine: &mut Engine,
    src: &mut dyn Datagrams,
    via: Via,
    clock: &dyn Clock,
    truncated: &mut u64,
) -> Read {
    let mut read = Read::default();
    for _ in 0..MAX_BATCHES_PER_TURN {
        match read_batch(engine, src, via, clock, truncated) {
            Ok(0) => return read,
            Ok(n) => read.datagrams += n,
            Err(e) => {
                tracing::warn!(error = %e, "recvmmsg failed");
                return read;
            }
        }
    }
    read.bounded = true;
    read
}

/// One turn of a resting worker: it sleeps until the tick or `coalesce` from
/// now, whichever is first, then reads what arrived meanwhile on each socket
/// ([`read_waiting`]). The worker rests while reads find datagrams and waits for
/// readiness again once one finds none. After a read that left datagrams behind
/// (a flood, or a burst larger than a turn's bound) the next turn is given no
/// rest: a flood is read and dropped as fast as before, rather than left to fill
/// the socket's buffer, where the kernel would drop other legs' datagrams with
/// it.
///
/// **Why rest.** A worker that waits for readiness under load wakes for nearly
/// every datagram: each arrival on a socket wakes the thread blocked in
/// `epoll_wait` (readiness is edge-triggered, and every new datagram is an
/// edge), so a loaded worker reads ~6 datagrams per `recvmmsg` and pays a wake-up,
/// an `epoll_wait` and an empty read for each handful. Resting, it wakes once per
/// `coalesce` and reads whole batches. The rest is a sleep of the thread, not a
/// tokio timer: the runtime would park in `epoll_wait` and be woken by the very
/// arrivals the rest is meant to batch.
///
/// **What it costs.** Nothing for audio: datagrams keep their kernel arrival
/// stamps and the sockets are read just before every tick, so the jitter buffers
/// see the same arrivals and the mix is the same (the tests show it). Video and
/// RTCP are handled up to `coalesce` later, and commands wait up to that long.
pub fn rest_turn(
    engine: &mut Engine,
    clock: &dyn Clock,
    coalesce: Duration,
    state: &mut Resting,
    read: &mut dyn FnMut(&mut Engine) -> Read,
) {
    if !state.backlog {
        let wake = clock.now() + coalesce;
        clock.sleep_until(engine.poll_timeout().map_or(wake, |due| due.min(wake)));
    }
    let r = read(engine);
    state.on = r.datagrams > 0;
    state.backlog = r.bounded;
}

/// A worker's resting state between turns (see [`rest_turn`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resting {
    /// The last read found datagrams: the next turn is a [`rest_turn`].
    pub on: bool,
    /// It also left datagrams behind: the next turn reads without a rest.
    pub backlog: bool,
}

/// One batch from `src` into the engine, each datagram at its arrival time: the
/// kernel's receive stamp where the socket has them (so the time a datagram waited
/// to be read is not taken for network delay), else the clock's now.
fn read_batch(
    engine: &mut Engine,
    src: &mut dyn Datagrams,
    via: Via,
    clock: &dyn Clock,
    truncated: &mut u64,
) -> std::io::Result<usize> {
    let now = clock.now();
    let mut wall = None;
    src.recv_batch(&mut |pass, d| {
        if pass == Pass::Look {
            if via == Via::Rtp && !d.truncated {
                engine.prefetch(d.src);
            }
            return;
        }
        if d.truncated {
            *truncated += 1;
            return;
        }
        let at = match d.stamp {
            Some(stamp) => {
                let wall = *wall.get_or_insert_with(|| clock.wall());
                arrival(now, wall, stamp)
            }
            None => now,
        };
        engine.handle_datagram(at, d.src, via, d.data);
    })
}

/// The instant of a kernel stamp `stamp` (realtime clock), given the clocks' `now`
/// and `wall` read together. Never later than `now` and never more than
/// [`MAX_STAMP_AGE`] before it, so a step of the realtime clock cannot move
/// arrivals into the future or far into the past.
pub fn arrival(now: Instant, wall: std::time::SystemTime, stamp: std::time::SystemTime) -> Instant {
    let age = wall.duration_since(stamp).unwrap_or_default();
    now.checked_sub(age.min(MAX_STAMP_AGE)).unwrap_or(now)
}

/// The oldest arrival a kernel stamp may give (see [`arrival`]): longer than any
/// datagram waits in a socket buffer that is read at least every tick.
pub const MAX_STAMP_AGE: Duration = Duration::from_millis(200);

/// The worker's clock: the real one in the node, a virtual one in tests.
pub trait Clock {
    fn now(&self) -> Instant;
    /// The realtime clock, read only to place kernel receive stamps (see
    /// [`arrival`]).
    fn wall(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
    /// Blocks the worker's thread until `at` (see [`rest_turn`]).
    fn sleep_until(&self, at: Instant);
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep_until(&self, at: Instant) {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
    }
}

/// Where received datagrams come from: the worker's sockets, or a test's flood.
pub trait Datagrams {
    /// Receives one batch and hands each datagram to `f`, in a [`Pass::Look`]
    /// over the whole batch and then a [`Pass::Handle`] over it. A source may
    /// skip the look (it is a hint).
    /// `Ok(0)`: nothing is waiting (the source ran dry).
    fn recv_batch(&mut self, f: &mut dyn FnMut(Pass, &Datagram<'_>)) -> std::io::Result<usize>;
}

/// Which pass over a received batch a datagram is shown in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Before any is handled: the engine starts loading the state of each one's
    /// leg ([`Engine::prefetch`]), so the cache misses of a batch overlap.
    Look,
    /// Handled, in order.
    Handle,
}

/// Shows every datagram of `batch` to `f`, a [`Pass::Look`] and then a
/// [`Pass::Handle`].
fn deliver(batch: &RecvBatch, f: &mut dyn FnMut(Pass, &Datagram<'_>)) {
    for pass in [Pass::Look, Pass::Handle] {
        for d in batch.iter() {
            f(pass, &d);
        }
    }
}

/// A tokio socket read in `recvmmsg` batches.
struct Socket<'a> {
    sock: &'a tokio::net::UdpSocket,
    batch: &'a mut RecvBatch,
    /// Datagrams read so far.
    got: usize,
}

impl Datagrams for Socket<'_> {
    fn recv_batch(&mut self, f: &mut dyn FnMut(Pass, &Datagram<'_>)) -> std::io::Result<usize> {
        let (sock, batch) = (self.sock, &mut *self.batch);
        // `try_io` clears the readiness flag when the closure reports WouldBlock, so
        // the next `readable()` waits for new datagrams.
        let got = sock.try_io(Interest::READABLE, || match batch.recv(sock)? {
            0 => Err(std::io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        });
        match got {
            Ok(n) => {
                deliver(batch, f);
                self.got += n;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// A tokio socket read directly, whatever tokio's readiness says: before a tick,
/// datagrams that arrived since the reactor last looked must be read too, and a
/// resting worker does not ask the reactor at all. A readiness left set by it
/// costs one empty read later.
///
/// A batch that came back short means the socket was empty: the next call
/// reports it dry without another `recvmmsg` (what arrives later is read on the
/// next turn).
struct Unpolled<'a> {
    sock: &'a tokio::net::UdpSocket,
    batch: &'a mut RecvBatch,
    dry: bool,
}

impl<'a> Unpolled<'a> {
    fn new(sock: &'a tokio::net::UdpSocket, batch: &'a mut RecvBatch) -> Self {
        Unpolled {
            sock,
            batch,
            dry: false,
        }
    }
}

impl Datagrams for Unpolled<'_> {
    fn recv_batch(&mut self, f: &mut dyn FnMut(Pass, &Datagram<'_>)) -> std::io::Result<usize> {
        if self.dry {
            return Ok(0);
        }
        let n = self.batch.recv(self.sock)?;
        self.dry = self.batch.emptied();
        deliver(self.batch, f);
        Ok(n)
    }
}

/// Runs the engine's timeout (mix tick, RTCP, media timeouts) if it is due at `now`,
/// then `after` (which sends what the tick produced). Returns whether it ran.
pub fn run_due(engine: &mut Engine, now: Instant, after: &mut dyn FnMut(&mut Engine)) -> bool {
    if !engine.poll_timeout().is_some_and(|due| due <= now) {
        return false;
    }
    engine.handle_timeout(now);
    after(engine);
    true
}

/// How a [`receive`] turn ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// The source ran dry.
    Dry,
    /// [`MAX_BATCHES_PER_TURN`] batches were handled and more may wait: the loop
    /// comes back after its other work (readiness stays set).
    Bounded,
}

/// Feeds at most [`MAX_BATCHES_PER_TURN`] batches from `src` to the engine, running
/// the mix tick (through [`run_due`]) before each batch if it is due, and once more
/// at the end. `truncated` counts datagrams too large for a slot (dropped).
pub fn receive(
    engine: &mut Engine,
    src: &mut dyn Datagrams,
    via: Via,
    clock: &dyn Clock,
    truncated: &mut u64,
    after_tick: &mut dyn FnMut(&mut Engine),
) -> std::io::Result<Drained> {
    for _ in 0..MAX_BATCHES_PER_TURN {
        run_due(engine, clock.now(), after_tick);
        let n = read_batch(engine, src, via, clock, truncated)?;
        if n == 0 {
            return Ok(Drained::Dry);
        }
    }
    run_due(engine, clock.now(), after_tick);
    Ok(Drained::Bounded)
}

/// The worker's send side: its sendmmsg batches and the node's event channel.
struct Outbox {
    rtp: SendBatch,
    rtcp: SendBatch,
    events: broadcast::Sender<NodeEvent>,
    /// Datagrams that could not be sent (the shell's counter, reported in snapshots).
    send_errors: u64,
}

impl Outbox {
    /// Sends what the engine has to send and passes its events on.
    fn drain(
        &mut self,
        engine: &mut Engine,
        rtp: &tokio::net::UdpSocket,
        rtcp: &tokio::net::UdpSocket,
    ) {
        let send_errors = &mut self.send_errors;
        while let Some(t) = engine.poll_transmit() {
            let (batch, sock) = match t.via {
                Via::Rtp => (&mut self.rtp, rtp),
                Via::Rtcp => (&mut self.rtcp, rtcp),
            };
            if batch.is_full() {
                flush(batch, sock, send_errors);
                if batch.is_full() {
                    // The socket buffer is full and nothing drained: drop the oldest
                    // batch rather than block the media loop (counted).
                    *send_errors += batch.len() as u64;
                    batch.clear();
                }
            }
            if batch.push(t.dst, t.data).is_err() {
                *send_errors += 1;
            }
        }
        flush(&mut self.rtp, rtp, send_errors);
        flush(&mut self.rtcp, rtcp, send_errors);
        while let Some(e) = engine.poll_event() {
            // No subscriber is fine: events are advisory.
            let _ = self.events.send(e);
        }
    }
}

fn flush(batch: &mut SendBatch, sock: &tokio::net::UdpSocket, send_errors: &mut u64) {
    if batch.is_empty() {
        return;
    }
    match batch.flush(sock) {
        // Datagrams left pending (socket buffer full) go out with the next flush.
        Ok(s) => *send_errors += s.failed as u64,
        Err(e) => {
            *send_errors += batch.len() as u64;
            batch.clear();
            tracing::warn!(error = %e, "sendmmsg failed");
        }
    }
}

/// Logs what the worker dropped in the last period, at most once per
/// [`FLOOD_SUMMARY`] and only when a drop counter moved.
fn flood_summary(index: usize, engine: &Engine, truncated: u64, flood: &mut FloodWatch) {
    let now = Instant::now();
    if !flood.due(now) {
        return;
    }
    let mut s = engine.snapshot(index, false).stats;
    s.truncated = truncated;
    if let Some(drops) = flood.observe(now, &s) {
        tracing::warn!(
            worker = index,
            period_s = FLOOD_SUMMARY.as_secs(),
            %drops,
            "media input dropped or damaged"
        );
    }
}

/// Applies one operation; a snapshot gets the shell's counters (truncated datagrams,
/// send errors).
/// One command: a group join or leave for the worker's multicast socket, any
/// other operation for the engine.
fn command(
    index: usize,
    engine: &mut Engine,
    groups: &mut Option<Groups>,
    multicast: Option<&Multicast>,
    shell: (u64, u64),
    op: MediaOp,
    reply: Reply,
) {
    if matches!(op, MediaOp::JoinGroup { .. } | MediaOp::LeaveGroup { .. }) {
        reply.send(group_op(groups, multicast, &op));
    } else {
        apply(index, engine, shell, op, reply);
    }
}

fn apply(index: usize, engine: &mut Engine, shell: (u64, u64), op: MediaOp, reply: Reply) {
    let mut result = engine.apply(Instant::now(), index, op);
    if let MediaResult::Snapshot(s) = &mut result {
        (s.stats.truncated, s.stats.send_errors) = shell;
    }
    reply.send(result);
}

#[cfg(test)]
mod tests;
