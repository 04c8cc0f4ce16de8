//! The scaler's decisions, stepped by hand: a session root and a planner as the
//! scaler runs them, and nodes that are real engines (one worker each) answering
//! over the link protocol's JSON, all on one virtual clock. What a node is told is
//! applied by a real engine, so an operation the planner gets wrong (a leg it
//! removes twice, a room it never opened) shows up as a refusal.

use super::link::{Held, Keep, LegKeep, NodeMsg, Register, RoomKeep, ScalerMsg, LINK_VERSION};
use super::planner::{NodeId, PlanOutput, Planner, PlannerConfig};
use crate::conf::ConfConfig;
use crate::control::auth::LoginConfig;
use crate::control::login::{ClientStep, LoginClient, ServerAuth};
use crate::control::msg::{self, RoomInfo, ServerMsg};
use crate::engine::{Engine, EngineConfig, EngineEvent, LegId, MediaOp, MixId};
use crate::session::budget::Budgets;
use crate::session::{ConnId, Output, Session, SessionConfig, WorkerAddrs};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"cluster-test-secret";

/// One simulated node: a real engine behind the link protocol.
struct SimNode {
    id: NodeId,
    name: String,
    engine: Engine,
    addrs: WorkerAddrs,
    /// Frames the scaler sent, not processed yet.
    inbox: VecDeque<String>,
    /// A slow node holds its inbox.
    answering: bool,
    up: bool,
    refused: u64,
    /// The scaler's answer to its registration.
    registered: Option<bool>,
    /// Frames that are not link messages (the login's answers).
    replies: VecDeque<String>,
    /// What the scaler placed and the engine applied, as a node reports it when it
    /// registers again.
    held: BTreeMap<MixId, Vec<LegId>>,
    /// Its link legs: room and the far node's address.
    links: BTreeMap<LegId, (MixId, SocketAddr)>,
    /// What the scaler asked it to keep, per room and per member leg.
    room_keeps: BTreeMap<MixId, RoomKeep>,
    leg_keeps: BTreeMap<LegId, LegKeep>,
    /// Its legs muted now (what its engine was told).
    muted: std::collections::BTreeSet<LegId>,
}

impl SimNode {
    fn hold(&mut self, op: &MediaOp) {
        match op {
            MediaOp::OpenRoom { mix } => {
                self.held.insert(*mix, Vec::new());
            }
            MediaOp::CloseRoom { mix } => {
                if let Some(legs) = self.held.remove(mix) {
                    for leg in legs {
                        self.leg_keeps.remove(&leg);
                    }
                }
                self.room_keeps.remove(mix);
                self.links.retain(|_, (m, _)| m != mix);
            }
            MediaOp::AddLeg { mix, leg, spec } => {
                if let Some(legs) = self.held.get_mut(mix) {
                    legs.push(*leg);
                }
                if spec.link.is_some() {
                    self.links.insert(*leg, (*mix, spec.remote));
                }
            }
            MediaOp::RemoveLeg { leg } => {
                for legs in self.held.values_mut() {
                    legs.retain(|l| l != leg);
                }
                self.links.remove(leg);
                self.leg_keeps.remove(leg);
                self.muted.remove(leg);
            }
            MediaOp::SetMuted { leg, muted } => {
                match muted {
                    true => self.muted.insert(*leg),
                    false => self.muted.remove(leg),
                };
            }
            _ => {}
        }
    }

    fn holds(&self) -> Vec<Held> {
        self.held
            .iter()
            .map(|(mix, legs)| Held {
                worker: 0,
                mix: *mix,
                legs: legs.clone(),
                room: self.room_keeps.get(mix).cloned(),
                kept: legs
                    .iter()
                    .filter_map(|l| self.leg_keeps.get(l).cloned())
                    .collect(),
            })
            .collect()
    }

    /// Keeps what the scaler asked it to, for what it holds (as the node does).
    fn keep(&mut self, keep: Keep) {
        match keep {
            Keep::Room { mix, state } => {
                assert!(
                    self.held.contains_key(&mix),
                    "a keep follows its room's open"
                );
                self.room_keeps.insert(mix, state);
            }
            Keep::Leg { state } => {
                let held = self.held.values().any(|legs| legs.contains(&state.leg));
                assert!(held, "a keep follows its leg's add");
                self.leg_keeps.insert(state.leg, state);
            }
        }
    }
}

struct Cluster {
    session: Session,
    planner: Planner,
    /// The controller's connection to the scaler's root.
    ctl: ConnId,
    nodes: Vec<SimNode>,
    now: Instant,
    sent: Vec<(ConnId, ServerMsg)>,
    closed: Vec<(NodeId, String)>,
}

/// Where the scaler's first life starts its ids (a restarted one starts above).
const FIRST_LIFE: u64 = 1 << 20;

/// The scaler's root, as `scnf scaler` sets it up (one virtual worker).
fn session_config() -> SessionConfig {
    session_config_with(Duration::ZERO)
}

fn session_config_with(resume_grace: Duration) -> SessionConfig {
    SessionConfig {
        secret: None,
        login: LoginConfig::default(),
        conf: ConfConfig::new(0),
        login_timeout: Duration::from_secs(30),
        workers: vec![WorkerAddrs {
            rtp: SocketAddr::from(([0, 0, 0, 0], 0)),
            rtcp: SocketAddr::from(([0, 0, 0, 0], 0)),
        }],
        own_media: Default::default(),
        budgets: Budgets::default(),
        resume_grace,
    }
}

fn sim_addrs(i: usize) -> WorkerAddrs {
    WorkerAddrs {
        rtp: SocketAddr::from(([198, 51, 100, 1 + i as u8], 20_000)),
        rtcp: SocketAddr::from(([198, 51, 100, 1 + i as u8], 20_001)),
    }
}

impl Cluster {
    /// A scaler and `n` nodes of `channels` each, registered.
    fn new(n: usize, channels: u32) -> Cluster {
        Cluster::with_seed(n, channels, [3; 32])
    }

    fn with_seed(n: usize, channels: u32, seed: [u8; 32]) -> Cluster {
        let now = scnf_media::testclock::anchor();
        let mut session = Session::new(session_config(), [9; 32]);
        session.keep_on_nodes(now, FIRST_LIFE);
        let mut c = Cluster {
            session,
            ctl: ConnId(1),
            planner: Planner::new(PlannerConfig::new(Some(SECRET.to_vec()), seed)),
            nodes: Vec::new(),
            now,
            sent: Vec::new(),
            closed: Vec::new(),
        };
        c.session
            .handle_open(now, ConnId(1), "127.0.0.1:40000".parse().unwrap());
        for i in 0..n {
            c.add_node(&format!("node{}", i + 1), channels);
        }
        c
    }

    /// A node connects, logs in with the cluster secret and registers.
    fn add_node(&mut self, name: &str, channels: u32) -> usize {
        let i = self.connect(name);
        assert!(self.log_in(i, SECRET), "the right secret logs a node in");
        self.register(i, channels);
        assert_eq!(self.nodes[i].registered, Some(true), "{name} registered");
        i
    }

    fn connect(&mut self, name: &str) -> usize {
        let i = self.nodes.len();
        let id = NodeId(100 + i as u64);
        let engine = Engine::new(
            EngineConfig::new(name, (self.now, Duration::ZERO)),
            i as u64,
        );
        self.nodes.push(SimNode {
            id,
            name: name.into(),
            engine,
            addrs: sim_addrs(i),
            inbox: VecDeque::new(),
            answering: true,
            up: true,
            refused: 0,
            registered: None,
            replies: VecDeque::new(),
            held: BTreeMap::new(),
            links: BTreeMap::new(),
            room_keeps: BTreeMap::new(),
            leg_keeps: BTreeMap::new(),
            muted: Default::default(),
        });
        let peer = SocketAddr::from(([10, 0, 0, 1 + i as u8], 41_000));
        self.planner.handle_node_open(self.now, id, peer);
        self.pump();
        i
    }

    /// Runs the login of node `i` with `secret`; whether it logged in.
    fn log_in(&mut self, i: usize, secret: &[u8]) -> bool {
        let mut client = LoginClient::new("node", secret, "");
        let mut msg = client.start();
        loop {
            let text = serde_json::to_string(&msg).unwrap();
            self.node_says(i, &text);
            let reply = self.nodes[i]
                .replies
                .pop_front()
                .expect("the scaler answers each login step");
            let (reply, _) = msg::parse_server(&reply).expect("a login answer");
            match client.handle(&reply, "cnonce-1") {
                ClientStep::Send(next) => msg = next,
                ClientStep::Done(r) => return r == Ok(ServerAuth::Proven),
            }
        }
    }

    fn register(&mut self, i: usize, channels: u32) {
        let reg = Register {
            name: self.nodes[i].name.clone(),
            version: "test".into(),
            link_version: LINK_VERSION,
            workers: vec![self.nodes[i].addrs],
            channels,
            local: 0,
            holds: self.nodes[i].holds(),
        };
        self.node_says(i, &NodeMsg::Register(reg).to_json());
    }

    fn node_says(&mut self, i: usize, text: &str) {
        let id = self.nodes[i].id;
        self.planner.handle_node_text(self.now, id, text);
        self.pump();
    }

    /// Moves every output until nothing moves.
    fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some(out) = self.session.poll_output() {
                moved = true;
                match out {
                    Output::Send { conn, text } => {
                        let (m, _) = msg::parse_server(&text).unwrap();
                        self.sent.push((conn, m));
                    }
                    Output::Media { req, op, .. } => self.planner.handle_op(self.now, req, op),
                    Output::Keep { what, state } => self.planner.handle_keep(what, state),
                    Output::Close { .. } | Output::Login { .. } => {}
                }
            }
            while let Some(out) = self.planner.poll_output() {
                moved = true;
                match out {
                    PlanOutput::ToNode { node, text } => {
                        if let Some(n) = self.nodes.iter_mut().find(|n| n.id == node && n.up) {
                            n.inbox.push_back(text);
                        }
                    }
                    PlanOutput::CloseNode { node, reason } => {
                        self.closed.push((node, reason));
                        if let Some(i) = self.nodes.iter().position(|n| n.id == node) {
                            // What was sent before the close still arrives.
                            while let Some(text) = self.nodes[i].inbox.pop_front() {
                                if let Ok(ScalerMsg::Registered { ok, .. }) =
                                    serde_json::from_str(&text)
                                {
                                    self.nodes[i].registered = Some(ok);
                                }
                            }
                            self.nodes[i].up = false;
                        }
                        self.planner.handle_node_closed(self.now, node);
                    }
                    PlanOutput::Login { .. } => {}
                    PlanOutput::Result { req, result } => {
                        self.session.handle_media_result(self.now, req, result)
                    }
                    PlanOutput::Event(e) => self.session.handle_engine_event(self.now, e),
                    PlanOutput::Capacity(n) => self.session.set_channels(n),
                    PlanOutput::Adopt(a) => self.session.handle_adopt(self.now, a),
                }
            }
            for i in 0..self.nodes.len() {
                if !self.nodes[i].answering || !self.nodes[i].up {
                    continue;
                }
                while let Some(text) = self.nodes[i].inbox.pop_front() {
                    moved = true;
                    self.node_handles(i, &text);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the cluster never settles");
    }

    /// Node `i` applies one frame from the scaler.
    fn node_handles(&mut self, i: usize, text: &str) {
        let Ok(msg) = serde_json::from_str::<ScalerMsg>(text) else {
            return self.nodes[i].replies.push_back(text.to_string());
        };
        match msg {
            ScalerMsg::Registered { ok, .. } => self.nodes[i].registered = Some(ok),
            ScalerMsg::Heartbeat => {}
            ScalerMsg::Keep(keep) => self.nodes[i].keep(keep),
            ScalerMsg::Op { req, worker, op } => {
                assert_eq!(
                    self.nodes[i].registered,
                    Some(true),
                    "a node takes no operation before its registration is answered"
                );
                assert!(super::link::op_allowed(&op), "scaler ids carry the bit");
                assert_eq!(worker, 0, "the nodes have one worker");
                let n = &mut self.nodes[i];
                let applied = op.clone();
                let result = n.engine.apply(self.now, 0, op);
                if result.is_failed() {
                    n.refused += 1;
                } else {
                    n.hold(&applied);
                }
                let reply = NodeMsg::Result { req, result }.to_json();
                let id = n.id;
                self.planner.handle_node_text(self.now, id, &reply);
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.planner.poll_timeout(), self.session.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            self.planner.handle_timeout(self.now);
            self.session.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
    }

    /// Every node sends its load report (its heartbeat).
    fn heartbeats(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].up && self.nodes[i].answering {
                let load = NodeMsg::Load(Default::default()).to_json();
                self.node_says(i, &load);
            }
        }
    }

    /// A call into the conference interface: its answer. A bare room number is
    /// dialled as `*3<room>#` (join, or create).
    fn setup(&mut self, call: &str, called: &str, port: u16) -> ServerMsg {
        let before = self.sent.len();
        let called = match called.starts_with('*') {
            true => called.to_string(),
            false => format!("*3{called}#"),
        };
        let setup = json!({
            "mt": "Setup", "call": call, "called": called, "complete": true,
            "media": {"address": "192.0.2.50", "port": port,
                      "codecs": [{"name": "PCMU", "pt": 0, "rate": 8000}]}
        });
        self.session
            .handle_text(self.now, self.ctl, &setup.to_string());
        self.pump();
        self.sent[before..]
            .iter()
            .map(|(_, m)| m.clone())
            .find(|m| {
                matches!(m, ServerMsg::Connect { call: c, .. } | ServerMsg::Release { call: c, .. }
                    | ServerMsg::Alerting { call: c, .. } if c == call)
            })
            .unwrap_or_else(|| panic!("no answer to {call}: {:?}", &self.sent[before..]))
    }

    fn release(&mut self, call: &str) {
        let msg = json!({"mt": "Release", "call": call});
        self.session
            .handle_text(self.now, self.ctl, &msg.to_string());
        self.pump();
    }

    fn text(&mut self, v: serde_json::Value) {
        self.session.handle_text(self.now, self.ctl, &v.to_string());
        self.pump();
    }

    /// Legs on each node's engine (members and invisible participants).
    fn legs(&self) -> Vec<usize> {
        self.nodes.iter().map(|n| n.engine.leg_count()).collect()
    }

    fn status(&mut self) -> (Vec<RoomInfo>, Vec<crate::control::msg::NodeInfo>) {
        let before = self.sent.len();
        self.text(json!({"mt": "Status"}));
        for (_, m) in &self.sent[before..] {
            if let ServerMsg::StatusResult { rooms, nodes, .. } = m {
                return (rooms.clone(), nodes.clone());
            }
        }
        panic!("no StatusResult");
    }

    fn refusals(&self) -> u64 {
        self.nodes.iter().map(|n| n.refused).sum()
    }

    /// The node a connected call's media went to (by the answer's address).
    fn node_of(&self, answer: &ServerMsg) -> usize {
        let ServerMsg::Connect { answer, .. } = answer else {
            panic!("not connected: {answer:?}");
        };
        self.nodes
            .iter()
            .position(|n| n.addrs.rtp.ip() == answer.address && n.addrs.rtp.port() == answer.port)
            .expect("the answer names a node's worker")
    }
}

fn connected(m: &ServerMsg) -> bool {
    matches!(m, ServerMsg::Connect { .. })
}

fn cause(m: &ServerMsg) -> Option<u8> {
    match m {
        ServerMsg::Release { cause, .. } => Some(*cause),
        _ => None,
    }
}

mod nodes;
mod placement;
mod rebuild;
mod relay;
mod survival;
mod video;
