//! A deterministic multi-node harness: session roots, their engines, phones and
//! controllers, stepped on one virtual clock over seeded network paths.
//!
//! Each [`SimNode`] is a node's whole sans-IO core: a [`Session`] (call control) and
//! one [`Engine`] per media worker, joined exactly as the node's shell joins them
//! (media operations applied with [`Engine::apply`], results and engine events fed
//! back). Phones ([`SimPhone`]) send and receive RTP through [`Path`](scnf_media::netsim::Path)s (latency,
//! jitter, loss, all seeded), and controllers ([`SimController`]) speak the JSON
//! protocol to a node's root. Nothing reads the clock or touches a socket:
//! [`Harness::run_for`] jumps from one wake-up to the next (a phone's frame, a packet's
//! arrival, a mix tick, a session timer), so "after 30 s" costs what its events cost,
//! and the same seed gives the same timeline on every machine.
//!
//! Addresses are made up: node `n`'s worker `w` is `10.0.n.1:20000+2w`, phones are
//! `10.1.x.y:4000`. A later fake scaler joins the same way, as another root.

mod controller;
mod phone;

pub use controller::SimController;
pub use phone::SimPhone;

use scnf_core::conf::ConfConfig;
use scnf_core::control::auth::LoginConfig;
use scnf_core::control::msg::ServerMsg;
use scnf_core::engine::{Engine, EngineConfig, Via};
use scnf_core::session::{ConnId, Output, Session, SessionConfig, WorkerAddrs};
use scnf_media::netsim::PathConfig;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// How one simulated node is set up.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub workers: usize,
    pub channels: u32,
    pub secret: Option<Vec<u8>>,
    pub login_timeout: Duration,
}

impl Default for NodeSpec {
    fn default() -> NodeSpec {
        NodeSpec {
            workers: 1,
            channels: 100,
            secret: None,
            login_timeout: Duration::from_secs(30),
        }
    }
}

/// A node's core: its session root and its workers' engines.
pub struct SimNode {
    pub session: Session,
    pub engines: Vec<Engine>,
    pub addrs: Vec<WorkerAddrs>,
}

/// See the module docs.
pub struct Harness {
    /// The virtual clock.
    pub now: Instant,
    start: Instant,
    pub nodes: Vec<SimNode>,
    pub phones: Vec<SimPhone>,
    pub controllers: Vec<SimController>,
    /// Who receives at an address: a phone, or a node's worker. Datagrams are routed
    /// by these, once per datagram.
    phone_at: HashMap<SocketAddr, usize>,
    worker_at: HashMap<SocketAddr, (usize, usize)>,
    next_conn: u64,
    /// Connections closed by a node: (node, conn, reason).
    pub closed: Vec<(usize, ConnId, String)>,
}

impl Harness {
    /// An empty harness whose clock starts at `start` (any instant: nothing compares
    /// it with the real clock).
    pub fn new(start: Instant) -> Harness {
        Harness {
            now: start,
            start,
            nodes: Vec::new(),
            phones: Vec::new(),
            controllers: Vec::new(),
            phone_at: HashMap::new(),
            worker_at: HashMap::new(),
            next_conn: 1,
            closed: Vec::new(),
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Adds a node; returns its index.
    pub fn add_node(&mut self, spec: NodeSpec) -> usize {
        let n = self.nodes.len();
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, n as u8, 1));
        let addrs: Vec<WorkerAddrs> = (0..spec.workers as u16)
            .map(|w| WorkerAddrs {
                rtp: SocketAddr::new(ip, 20_000 + 2 * w),
                rtcp: SocketAddr::new(ip, 20_001 + 2 * w),
            })
            .collect();
        let engines = (0..spec.workers)
            .map(|w| {
                let cfg = EngineConfig::new(format!("sim-{n}-{w}"), (self.start, Duration::ZERO));
                Engine::new(cfg, (n * 16 + w) as u64)
            })
            .collect();
        let cfg = SessionConfig {
            secret: spec.secret,
            login: LoginConfig::default(),
            conf: ConfConfig::new(spec.channels),
            login_timeout: spec.login_timeout,
            workers: addrs.clone(),
            own_media: Default::default(),
            budgets: Default::default(),
            resume_grace: std::time::Duration::ZERO,
        };
        let mut seed = [0u8; 32];
        seed[0] = n as u8;
        for (w, a) in addrs.iter().enumerate() {
            self.worker_at.insert(a.rtp, (n, w));
        }
        self.nodes.push(SimNode {
            session: Session::new(cfg, seed),
            engines,
            addrs,
        });
        n
    }

    /// Adds a phone playing `tone` (None: silence) over `path` both ways.
    pub fn add_phone(&mut self, tone: Option<f64>, path: PathConfig) -> usize {
        let i = self.phones.len();
        let ip = Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8 + 1);
        let addr = SocketAddr::new(IpAddr::V4(ip), 4000);
        let phone = SimPhone::new(addr, tone, path, 1000 + i as u64, self.now);
        self.phone_at.insert(addr, i);
        self.phones.push(phone);
        i
    }

    /// Connects a controller to `node`; returns its index.
    pub fn connect(&mut self, node: usize) -> usize {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000 + conn.0 as u16));
        self.nodes[node].session.handle_open(self.now, conn, peer);
        self.controllers.push(SimController::new(node, conn));
        self.pump();
        self.controllers.len() - 1
    }

    /// Sends a request from controller `c` and lets the node react (no time passes).
    pub fn send(&mut self, c: usize, msg: serde_json::Value) {
        let ctl = &self.controllers[c];
        let (node, conn) = (ctl.node, ctl.conn);
        self.nodes[node]
            .session
            .handle_text(self.now, conn, &msg.to_string());
        self.pump();
    }

    /// Closes controller `c`'s connection.
    pub fn disconnect(&mut self, c: usize) {
        let ctl = &self.controllers[c];
        let (node, conn) = (ctl.node, ctl.conn);
        self.nodes[node].session.handle_close(self.now, conn);
        self.pump();
    }

    /// Places a call for `phone` from controller `c` and, when the node answers with
    /// media, points the phone at it. Returns the answer (Connect, Alerting, Release
    /// or Error).
    pub fn dial(&mut self, c: usize, call: &str, called: &str, phone: usize) -> ServerMsg {
        let offer = serde_json::to_value(self.phones[phone].offer()).expect("an offer is JSON");
        let src = self.controllers[c].next_src();
        let msg = serde_json::json!({"mt": "Setup", "src": src, "call": call, "called": called,
            "complete": true, "media": offer});
        self.send(c, msg);
        let answer = self.controllers[c]
            .take_answer(&src)
            .unwrap_or_else(|| panic!("no answer to the setup of {call}"));
        if let ServerMsg::Connect { answer: a, .. } | ServerMsg::Alerting { answer: a, .. } =
            &answer
        {
            self.phones[phone].remote = Some(SocketAddr::new(a.address, a.port));
        }
        answer
    }

    /// Sends a request and returns its answer (matched by `src`).
    pub fn request(&mut self, c: usize, mut msg: serde_json::Value) -> ServerMsg {
        let src = self.controllers[c].next_src();
        msg["src"] = src.clone().into();
        self.send(c, msg);
        self.controllers[c]
            .take_answer(&src)
            .unwrap_or_else(|| panic!("no answer to {src}"))
    }

    /// Runs the virtual clock for `d`, event by event.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self.next_wakeup().filter(|&t| t <= end);
            let Some(at) = next else {
                self.now = end;
                self.step();
                return;
            };
            self.now = at.max(self.now);
            self.step();
        }
    }

    /// Runs until `cond` holds, checking after every event, for at most `limit` of
    /// virtual time. Returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Harness) -> bool) -> bool {
        let end = self.now + limit;
        while !cond(self) {
            let Some(at) = self.next_wakeup().filter(|&t| t <= end) else {
                self.now = end;
                self.step();
                return cond(self);
            };
            self.now = at.max(self.now);
            self.step();
        }
        true
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let nodes = self.nodes.iter().flat_map(|n| {
            n.engines
                .iter()
                .filter_map(Engine::poll_timeout)
                .chain(n.session.poll_timeout())
        });
        let phones = self.phones.iter().flat_map(|p| {
            [p.next_send(), p.up.next_arrival(), p.down.next_arrival()]
                .into_iter()
                .flatten()
        });
        nodes.chain(phones).min()
    }

    /// Everything that is due at `now`, then whatever it causes.
    fn step(&mut self) {
        let now = self.now;
        for phone in &mut self.phones {
            phone.send_due(now);
            let (src, dst) = (phone.addr, phone.remote);
            let worker = dst.and_then(|d| self.worker_at.get(&d));
            while let Some((_, data)) = phone.up.poll(now) {
                if let Some(&(n, w)) = worker {
                    self.nodes[n].engines[w].handle_datagram(now, src, Via::Rtp, data);
                }
            }
            phone.receive_due(now);
        }
        for node in &mut self.nodes {
            for e in &mut node.engines {
                if e.poll_timeout().is_some_and(|t| t <= now) {
                    e.handle_timeout(now);
                }
            }
            if node.session.poll_timeout().is_some_and(|t| t <= now) {
                node.session.handle_timeout(now);
            }
        }
        self.pump();
    }

    /// Moves every output until nothing is left: engine transmits into the phones'
    /// downlinks, engine events and media results into the roots, the roots' frames
    /// to the controllers.
    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            for n in 0..self.nodes.len() {
                for w in 0..self.nodes[n].engines.len() {
                    while let Some(t) = self.nodes[n].engines[w].poll_transmit() {
                        if t.via != Via::Rtp {
                            continue;
                        }
                        if let Some(&p) = self.phone_at.get(&t.dst) {
                            self.phones[p].down.send(now, t.data);
                        }
                    }
                    while let Some(event) = self.nodes[n].engines[w].poll_event() {
                        self.nodes[n].session.handle_engine_event(now, event);
                        moved = true;
                    }
                }
                while let Some(out) = self.nodes[n].session.poll_output() {
                    moved = true;
                    match out {
                        Output::Send { conn, text } => {
                            if let Some(c) = self
                                .controllers
                                .iter_mut()
                                .find(|c| c.node == n && c.conn == conn)
                            {
                                c.receive(&text);
                            }
                        }
                        // The harness has no connection budgets to keep.
                        Output::Login { .. } => {}
                        Output::Close { conn, reason } => {
                            self.closed.push((n, conn, reason));
                            self.nodes[n].session.handle_close(self.now, conn);
                        }
                        Output::Media { req, worker, op } => {
                            let node = &mut self.nodes[n];
                            let result = node.engines[worker].apply(now, worker, op);
                            node.session.handle_media_result(now, req, result);
                        }
                        // A node's own root keeps nothing (a scaler's does).
                        Output::Keep { .. } => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
}
