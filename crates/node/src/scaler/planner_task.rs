//! The planner task: the one owner of the scaler's [`Planner`], on tokio.
//!
//! Like the session driver it only moves values. In: the session driver's media
//! operations (through [`PlannerFront`], the driver's [`Media`] executor on a
//! scaler), the node face's connections and frames (the same listener as the
//! controllers': [`crate::control::server::serve`], so node connections get the
//! same admission gate, deadlines, pings and frame limits), and the planner's timer.
//! Out: every [`PlanOutput`], routed to a node connection, to the driver (results,
//! channels) or to the driver's event subscription.
//!
//! It never waits for one node: each node connection has a bounded queue
//! ([`crate::control::server::OUTBOUND_QUEUE`] frames); a node whose queue is full
//! does not read, and its connection is killed (the planner then hears it closed).
//! Nodes' frames are taken one per ready node in turn (the driver's fairness), so a
//! chatty node delays only itself. Nothing it sends towards the driver can block
//! either: results go on the driver's unbounded result channel, events on a
//! broadcast (a slow driver loses the oldest, and is told), and a capacity change
//! waits for room in the driver's inbound queue without holding anything else up.

use crate::control::driver::{poll_queues, Inbound, Media, Outbound, Queue};
use scnf_core::cluster::planner::{NodeId, PlanOutput, Planner, PlannerStats};
use scnf_core::engine::{EngineEvent, MediaOp, MediaResult};
use scnf_core::session::{ConnId, Kept, ReqId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Media events queued for the driver before the oldest are lost (as a node's).
const EVENTS: usize = 4096;

/// What the front and the scaler's handle ask of the planner task.
pub(crate) enum Command {
    /// A media operation of the session root.
    Op {
        req: ReqId,
        op: MediaOp,
        results: mpsc::UnboundedSender<(ReqId, MediaResult)>,
    },
    /// State the root keeps on the nodes.
    Keep {
        what: Kept,
        state: serde_json::Value,
    },
    /// The planner's counters.
    Stats(oneshot::Sender<PlannerStats>),
}

/// Why the front could not queue an operation (the driver then answers it
/// `Failed` itself).
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("the scaler has one virtual worker (0), not {0}")]
    NoSuchWorker(usize),
    #[error("the scaler's planner is not running")]
    PlannerGone,
}

/// The session driver's media executor on a scaler: hands each operation of the one
/// virtual worker to the planner task, which answers it with the planner's result.
#[derive(Clone)]
pub struct PlannerFront {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<EngineEvent>,
}

impl Media for PlannerFront {
    type Error = FrontError;

    fn submit(
        &self,
        worker: usize,
        req: ReqId,
        op: MediaOp,
        results: &mpsc::UnboundedSender<(ReqId, MediaResult)>,
    ) -> Result<(), FrontError> {
        if worker != 0 {
            return Err(FrontError::NoSuchWorker(worker));
        }
        let results = results.clone();
        self.commands
            .send(Command::Op { req, op, results })
            .map_err(|_| FrontError::PlannerGone)
    }

    fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    fn keep(&self, what: Kept, state: serde_json::Value) {
        // Same queue as the operations: the state follows what it describes. No
        // planner: nothing to keep it for.
        let _ = self.commands.send(Command::Keep { what, state });
    }
}

/// One node connection, as the shell sees it. Who the node is (its name, whether it
/// registered) is the planner's business, and so are the log lines of a node
/// registering, refused or gone.
struct NodeConn {
    peer: SocketAddr,
    tx: mpsc::Sender<Outbound>,
    /// Taken when used: a connection is killed once. Dropping it kills the
    /// connection too (what was queued and not written yet is lost).
    kill: Option<oneshot::Sender<String>>,
}

impl NodeConn {
    /// Queues `out`; a node that does not read is cut, once.
    fn send(&mut self, node: NodeId, out: Outbound) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(out) {
            self.cut(node, "not reading");
        }
    }

    fn cut(&mut self, node: NodeId, reason: &str) {
        if let Some(kill) = self.kill.take() {
            tracing::warn!(peer = %self.peer, ?node, reason, "closing a node's connection");
            let _ = kill.send(reason.into());
        }
    }
}

/// The planner task's ends, made by [`channels`].
pub(crate) struct Task {
    pub planner: Planner,
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// The node face's listener: `Opened` here, each node's frames on its own queue.
    pub nodes: mpsc::Receiver<Inbound>,
    /// The session driver's inbound, for [`Inbound::Channels`] (weak: the driver
    /// ends when its listener does, whatever the planner does).
    pub driver: mpsc::WeakSender<Inbound>,
    pub events: broadcast::Sender<EngineEvent>,
    /// Fires (or is dropped) when the scaler stops.
    pub stop: oneshot::Receiver<()>,
}

/// The front for the driver, a command sender for the scaler's handle, and the
/// task's command and event ends.
pub(crate) fn channels() -> (
    PlannerFront,
    mpsc::UnboundedSender<Command>,
    mpsc::UnboundedReceiver<Command>,
    broadcast::Sender<EngineEvent>,
) {
    let (commands, rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(EVENTS);
    let front = PlannerFront {
        commands: commands.clone(),
        events: events.clone(),
    };
    (front, commands, rx, events)
}

/// The task's state beyond its inputs.
struct State {
    planner: Planner,
    conns: HashMap<NodeId, NodeConn>,
    /// Operations handed to the planner and not answered yet: where each answer goes.
    pending: HashMap<ReqId, mpsc::UnboundedSender<(ReqId, MediaResult)>>,
    events: broadcast::Sender<EngineEvent>,
    /// Capacities and adoptions the driver has not been given yet (its inbound
    /// was full), in the planner's order: an adopted member's channel must be
    /// there before it is.
    to_driver: std::collections::VecDeque<Inbound>,
}

/// Runs the planner until the scaler stops; then closes every node connection and
/// fails every operation still open.
pub(crate) async fn run(task: Task) {
    let Task {
        planner,
        mut commands,
        mut nodes,
        driver,
        events,
        mut stop,
    } = task;
    let mut s = State {
        planner,
        conns: HashMap::new(),
        pending: HashMap::new(),
        events,
        to_driver: Default::default(),
    };
    let mut queues: Vec<Queue> = Vec::new();
    let mut next = 0usize;
    let mut listening = true;
    loop {
        s.route();
        // The capacity and the adoptions go to the driver as soon as its inbound
        // has room.
        let owed = !s.to_driver.is_empty();
        let strong = owed.then(|| driver.upgrade()).flatten();
        if owed && strong.is_none() {
            s.to_driver.clear(); // no driver any more
        }
        let room = async {
            match &strong {
                Some(tx) => tx.reserve().await.ok(),
                None => std::future::pending().await,
            }
        };
        let deadline = s.planner.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let frame = std::future::poll_fn(|cx| poll_queues(&mut queues, &mut next, cx));
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Op { req, op, results }) => {
                    s.pending.insert(req, results);
                    s.planner.handle_op(Instant::now(), req, op);
                }
                Some(Command::Keep { what, state }) => s.planner.handle_keep(what, state),
                Some(Command::Stats(tx)) => {
                    let _ = tx.send(s.planner.stats());
                }
                None => break, // the driver and the handle are gone
            },
            item = nodes.recv(), if listening => match item {
                Some(Inbound::Opened { conn, peer, tx, kill, frames }) => {
                    let node = NodeId(conn.0);
                    s.conns.insert(node, NodeConn { peer, tx, kill: Some(kill) });
                    queues.push(Queue { conn, frames });
                    tracing::debug!(%peer, ?node, "node connection opened");
                    s.planner.handle_node_open(Instant::now(), node, peer);
                }
                Some(other) => tracing::warn!(?other, "a node frame on the node face's channel"),
                None => listening = false,
            },
            (conn, item) = frame => s.node_item(conn, item, &mut queues),
            permit = room => {
                if let (Some(permit), Some(item)) = (permit, s.to_driver.pop_front()) {
                    permit.send(item);
                }
            }
            _ = sleep => s.planner.handle_timeout(Instant::now()),
            _ = &mut stop => break,
        }
    }
    s.route();
    for (node, c) in s.conns.iter_mut() {
        c.send(*node, Outbound::Close("scaler stopping".into()));
    }
    for (req, results) in s.pending.drain() {
        let _ = results.send((req, MediaResult::Failed("scaler stopping".into())));
    }
    // A connection reports `Closed` once it has written everything queued before
    // the close, and the close itself: the task ends when every node has had its
    // last frames (or its connection is gone), so whoever stops the node listener
    // after it cuts nothing short. Each `NodeConn` is kept until then, because
    // dropping one kills its connection at once, queued frames and all. A node
    // that never reads is cut by `send` above; the caller bounds the wait.
    while !queues.is_empty() {
        let (conn, item) = std::future::poll_fn(|cx| poll_queues(&mut queues, &mut next, cx)).await;
        if matches!(item, Some(Inbound::Closed { .. }) | None) {
            queues.retain(|q| q.conn != conn);
            s.conns.remove(&NodeId(conn.0));
        }
    }
}

impl State {
    /// One item of a node's queue.
    fn node_item(&mut self, conn: ConnId, item: Option<Inbound>, queues: &mut Vec<Queue>) {
        let node = NodeId(conn.0);
        match item {
            Some(Inbound::Text { text, .. }) => {
                self.planner.handle_node_text(Instant::now(), node, &text)
            }
            Some(Inbound::Bad { problem, .. }) => {
                // The link is JSON text frames: a node sending anything else is broken.
                if let Some(c) = self.conns.get_mut(&node) {
                    tracing::warn!(peer = %c.peer, ?node, problem, "bad frame from a node");
                    c.send(node, Outbound::Close(problem));
                }
            }
            Some(Inbound::Closed { .. }) | None => {
                queues.retain(|q| q.conn != conn);
                if let Some(c) = self.conns.remove(&node) {
                    tracing::debug!(peer = %c.peer, ?node, "node connection closed");
                }
                self.planner.handle_node_closed(Instant::now(), node);
            }
            Some(other) => tracing::warn!(?other, "a node-face item on a node's queue"),
        }
    }

    /// Executes the planner's outputs.
    fn route(&mut self) {
        while let Some(out) = self.planner.poll_output() {
            match out {
                PlanOutput::ToNode { node, text } => {
                    if let Some(c) = self.conns.get_mut(&node) {
                        c.send(node, Outbound::Text(text));
                    }
                }
                PlanOutput::CloseNode { node, reason } => {
                    if let Some(c) = self.conns.get_mut(&node) {
                        // Behind a full queue the close would never be seen.
                        if let Err(mpsc::error::TrySendError::Full(_)) =
                            c.tx.try_send(Outbound::Close(reason.clone()))
                        {
                            c.cut(node, &reason);
                        }
                    }
                }
                PlanOutput::Login { node, step } => {
                    if let Some(c) = self.conns.get_mut(&node) {
                        c.send(node, Outbound::Login(step));
                    }
                }
                PlanOutput::Result { req, result } => match self.pending.remove(&req) {
                    Some(results) => {
                        let _ = results.send((req, result));
                    }
                    None => tracing::warn!(
                        ?req,
                        "the planner answered an operation twice or one never asked"
                    ),
                },
                PlanOutput::Event(event) => {
                    // No subscriber: no driver, nobody to tell.
                    let _ = self.events.send(event);
                }
                PlanOutput::Capacity(n) => {
                    // Only the latest capacity matters, unless an adoption sits
                    // between them.
                    if let Some(Inbound::Channels(last)) = self.to_driver.back_mut() {
                        *last = n;
                    } else {
                        self.to_driver.push_back(Inbound::Channels(n));
                    }
                }
                PlanOutput::Adopt(a) => self.to_driver.push_back(Inbound::Adopt(a)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scnf_core::cluster::link::{self, NodeMsg, Register, ScalerMsg};
    use scnf_core::cluster::planner::PlannerConfig;
    use scnf_core::control::login::{ClientStep, LoginClient};
    use scnf_core::control::msg::{self, ClientMsg};
    use scnf_core::session::{LoginStep, WorkerAddrs};
    use std::time::Duration;

    const SECRET: &[u8] = b"cluster";
    const WAIT: Duration = Duration::from_secs(5);

    /// The transport's ends of one node connection.
    struct Peer {
        conn: ConnId,
        frames: mpsc::Sender<Inbound>,
        out: mpsc::Receiver<Outbound>,
        killed: oneshot::Receiver<String>,
    }

    impl Peer {
        async fn open(nodes: &mpsc::Sender<Inbound>, conn: u64, queue: usize) -> Peer {
            let (tx, out) = mpsc::channel(queue);
            let (kill, killed) = oneshot::channel();
            let (frames, rx) = mpsc::channel(16);
            let conn = ConnId(conn);
            let peer = SocketAddr::from(([127, 0, 0, 1], 40_000 + conn.0 as u16));
            let opened = Inbound::Opened {
                conn,
                peer,
                tx,
                kill,
                frames: rx,
            };
            nodes.send(opened).await.unwrap();
            Peer {
                conn,
                frames,
                out,
                killed,
            }
        }

        async fn send(&self, text: String) {
            let conn = self.conn;
            self.frames
                .send(Inbound::Text { conn, text })
                .await
                .unwrap();
        }

        /// The next text frame (login steps for the gate skipped).
        async fn text(&mut self) -> String {
            loop {
                match tokio::time::timeout(WAIT, self.out.recv()).await {
                    Ok(Some(Outbound::Text(t))) => return t,
                    Ok(Some(Outbound::Login(_))) => continue,
                    other => panic!("a text frame, not {other:?}"),
                }
            }
        }

        /// Plays the transport at the scaler's stop: everything queued up to the
        /// close is written, then the connection reports `Closed`. Returns the texts
        /// written before the close.
        async fn closes(mut self) -> Vec<String> {
            let mut texts = Vec::new();
            loop {
                match tokio::time::timeout(WAIT, self.out.recv()).await {
                    Ok(Some(Outbound::Text(t))) => texts.push(t),
                    Ok(Some(Outbound::Login(_))) => continue,
                    Ok(Some(Outbound::Close(_))) => break,
                    other => panic!("a close, not {other:?}"),
                }
            }
            let conn = self.conn;
            let closed = Inbound::Closed { conn, reason: None };
            self.frames.send(closed).await.unwrap();
            texts
        }

        /// Logs in and registers `channels`.
        async fn join(&mut self, name: &str, channels: u32) {
            let mut login = LoginClient::new(name, SECRET, "test");
            let mut request = login.start();
            loop {
                self.send(serde_json::to_string(&request).unwrap()).await;
                let (answer, _) = msg::parse_server(&self.text().await).unwrap();
                match login.handle(&answer, "0123456789abcdef0123456789abcdef") {
                    ClientStep::Send(next) => request = next,
                    ClientStep::Done(verdict) => {
                        verdict.expect("logged in");
                        break;
                    }
                };
            }
            let reg = NodeMsg::Register(Register {
                name: name.into(),
                version: "test".into(),
                link_version: link::LINK_VERSION,
                workers: vec![WorkerAddrs {
                    rtp: "127.0.0.1:31000".parse().unwrap(),
                    rtcp: "127.0.0.1:31001".parse().unwrap(),
                }],
                channels,
                local: 0,
                holds: Vec::new(),
            });
            self.send(reg.to_json()).await;
            loop {
                if let Ok(ScalerMsg::Registered { ok, error }) =
                    serde_json::from_str(&self.text().await)
                {
                    assert!(ok, "{error:?}");
                    return;
                }
            }
        }
    }

    /// A running planner task and the ends the test plays.
    struct Harness {
        /// The node face's listener.
        nodes: mpsc::Sender<Inbound>,
        /// The driver's inbound: the test holds the sender the weak one upgrades to.
        driver: mpsc::Sender<Inbound>,
        driver_rx: mpsc::Receiver<Inbound>,
        stop: oneshot::Sender<()>,
        run: tokio::task::JoinHandle<()>,
    }

    /// A planner task whose driver inbound holds `driver_queue` items.
    fn task(driver_queue: usize) -> Harness {
        let (front, commands, commands_rx, events) = channels();
        let (nodes, nodes_rx) = mpsc::channel(16);
        let (driver, driver_rx) = mpsc::channel(driver_queue);
        let (stop, stopped) = oneshot::channel();
        let t = Task {
            planner: Planner::new(PlannerConfig::new(Some(SECRET.to_vec()), [7; 32])),
            commands: commands_rx,
            nodes: nodes_rx,
            driver: driver.downgrade(),
            events,
            stop: stopped,
        };
        // The task ends when every command sender is gone: this future holds them.
        let run = tokio::spawn(async move {
            let _senders = (front, commands);
            run(t).await
        });
        Harness {
            nodes,
            driver,
            driver_rx,
            stop,
            run,
        }
    }

    #[tokio::test]
    async fn a_node_that_does_not_read_is_cut_and_the_others_are_served() {
        let Harness {
            nodes, stop, run, ..
        } = task(16);
        // Room for one item, never read: the gate's login step fills it.
        let mut stuck = Peer::open(&nodes, 1, 1).await;
        let challenge = ClientMsg::AppChallenge { version: None };
        stuck.send(serde_json::to_string(&challenge).unwrap()).await;
        let reason = tokio::time::timeout(WAIT, &mut stuck.killed)
            .await
            .expect("cut within the bound")
            .expect("with a reason");
        assert_eq!(reason, "not reading");
        assert!(matches!(
            stuck.out.try_recv(),
            Ok(Outbound::Login(LoginStep::Challenged))
        ));
        let mut other = Peer::open(&nodes, 2, 16).await;
        other.join("scnf-a", 10).await;
        stop.send(()).unwrap();
        // The cut one's transport ends without a word.
        drop(stuck);
        other.closes().await;
        run.await.unwrap();
    }

    #[tokio::test]
    async fn a_capacity_waits_for_room_at_the_driver_without_holding_up_the_nodes() {
        let Harness {
            nodes,
            driver,
            mut driver_rx,
            stop,
            run,
        } = task(1);
        driver.send(Inbound::Channels(0)).await.unwrap(); // the driver's queue is full
        let mut a = Peer::open(&nodes, 1, 16).await;
        a.join("scnf-a", 10).await;
        // The capacity is pending; another node is still served.
        let mut b = Peer::open(&nodes, 2, 16).await;
        b.join("scnf-b", 5).await;
        // Once the driver reads, the latest capacity arrives (not every step).
        assert!(matches!(driver_rx.recv().await, Some(Inbound::Channels(0))));
        let got = tokio::time::timeout(WAIT, driver_rx.recv()).await.unwrap();
        assert!(matches!(got, Some(Inbound::Channels(15))), "{got:?}");
        stop.send(()).unwrap();
        a.closes().await;
        b.closes().await;
        run.await.unwrap();
    }

    #[tokio::test]
    async fn stopping_ends_only_once_every_node_connection_has_written_its_close() {
        let Harness {
            nodes, stop, run, ..
        } = task(16);
        let mut a = Peer::open(&nodes, 1, 16).await;
        a.join("scnf-a", 10).await;
        let mut b = Peer::open(&nodes, 2, 16).await;
        b.join("scnf-b", 10).await;
        stop.send(()).unwrap();
        a.closes().await;
        // One connection is still writing: the task waits for it.
        let mut run = run;
        let early = tokio::time::timeout(Duration::from_millis(50), &mut run).await;
        assert!(early.is_err(), "the task ended with a connection open");
        b.closes().await;
        tokio::time::timeout(WAIT, run)
            .await
            .expect("ends once the last close is written")
            .unwrap();
    }
}
