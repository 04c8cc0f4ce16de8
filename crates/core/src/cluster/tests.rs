//! The scaler's decisions, stepped by hand: a session root and a planner as the
//! scaler runs them, and nodes that are real engines (one worker each) answering
//! over the link protocol's JSON, all on one virtual clock. What a node is told is
//! applied by a real engine, so an operation the planner gets wrong (a leg it
//! removes twice, a room it never opened) shows up as a refusal.

use super::link::{NodeMsg, Register, ScalerMsg, LINK_VERSION};
use super::planner::{NodeId, PlanOutput, Planner, PlannerConfig};
use crate::conf::ConfConfig;
use crate::control::auth::LoginConfig;
use crate::control::login::{ClientStep, LoginClient, ServerAuth};
use crate::control::msg::{self, RoomInfo, ServerMsg};
use crate::engine::{Engine, EngineConfig};
use crate::session::budget::Budgets;
use crate::session::{ConnId, Output, Session, SessionConfig, WorkerAddrs};
use serde_json::json;
use std::collections::VecDeque;
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
}

struct Cluster {
    session: Session,
    planner: Planner,
    nodes: Vec<SimNode>,
    now: Instant,
    sent: Vec<(ConnId, ServerMsg)>,
    closed: Vec<(NodeId, String)>,
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
        let cfg = SessionConfig {
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
        };
        let mut c = Cluster {
            session: Session::new(cfg, [9; 32]),
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
            ScalerMsg::Op { req, worker, op } => {
                assert!(super::link::op_allowed(&op), "scaler ids carry the bit");
                assert_eq!(worker, 0, "the nodes have one worker");
                let n = &mut self.nodes[i];
                let result = n.engine.apply(self.now, 0, op);
                if result.is_failed() {
                    n.refused += 1;
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
            .handle_text(self.now, ConnId(1), &setup.to_string());
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
            .handle_text(self.now, ConnId(1), &msg.to_string());
        self.pump();
    }

    fn text(&mut self, v: serde_json::Value) {
        self.session
            .handle_text(self.now, ConnId(1), &v.to_string());
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

#[test]
fn nine_callers_of_one_room_are_placed_three_on_each_of_three_nodes() {
    let mut c = Cluster::new(3, 100);
    let mut per_node = [0usize; 3];
    for k in 0..9 {
        let a = c.setup(&format!("c{k}"), "7001", 30_000 + 2 * k as u16);
        assert!(connected(&a), "{a:?}");
        per_node[c.node_of(&a)] += 1;
        // Round-robin: the local counts differ by at most one at every step.
        let (lo, hi) = (
            per_node.iter().min().unwrap(),
            per_node.iter().max().unwrap(),
        );
        assert!(hi - lo <= 1, "after {} callers: {per_node:?}", k + 1);
    }
    assert_eq!(per_node, [3, 3, 3]);
    // P + 2(N-1) channels: the primary carries 3 + 2 links, the others 3 + 1.
    let mut legs = c.legs();
    legs.sort_unstable();
    assert_eq!(legs, vec![4, 4, 5]);
    assert_eq!(c.refusals(), 0, "every operation the nodes got was valid");
}

#[test]
fn channel_counts_match_the_vendors_two_room_table() {
    // Rooms 1 and 2 of conferences-resources-licenses.md: three callers each on
    // three nodes; room 1's primary is node 1, room 2's node 3. Primaries are drawn
    // at random, so rooms are opened and closed until they fall that way.
    let mut c = Cluster::new(3, 100);
    let mut port = 30_000;
    let mut primary_of = |c: &mut Cluster, room: &str, tag: &str| -> (usize, Vec<String>) {
        let mut calls = Vec::new();
        let mut first = None;
        for k in 0..3 {
            let call = format!("{tag}{k}");
            port += 2;
            let a = c.setup(&call, room, port);
            first.get_or_insert(c.node_of(&a));
            calls.push(call);
        }
        (first.unwrap(), calls)
    };
    for _attempt in 0..200 {
        let (p1, calls1) = primary_of(&mut c, "1", "a");
        let (p2, calls2) = primary_of(&mut c, "2", "b");
        if (p1, p2) == (0, 2) {
            assert_eq!(
                c.legs(),
                vec![5, 4, 5],
                "the vendor's table: 5, 4 and 5 channels"
            );
            let (rooms, nodes) = c.status();
            let channels: Vec<u32> = nodes.iter().map(|n| n.members + n.invisible).collect();
            assert_eq!(channels, vec![5, 4, 5], "Status counts them the same");
            for r in &rooms {
                assert_eq!(r.members.len(), 3, "invisible participants are not callers");
                assert_eq!(
                    r.invisible.len(),
                    4,
                    "2 at the primary, 1 at each other node"
                );
            }
            assert_eq!(
                rooms
                    .iter()
                    .find(|r| r.room == "1")
                    .unwrap()
                    .primary
                    .as_deref(),
                Some("node1")
            );
            assert_eq!(
                rooms
                    .iter()
                    .find(|r| r.room == "2")
                    .unwrap()
                    .primary
                    .as_deref(),
                Some("node3")
            );
            assert_eq!(c.refusals(), 0);
            return;
        }
        for call in calls1.iter().chain(&calls2) {
            c.release(call);
        }
        assert_eq!(
            c.legs(),
            vec![0, 0, 0],
            "an emptied room leaves nothing on the nodes"
        );
    }
    panic!("the primaries never fell as in the table");
}

#[test]
fn over_thirty_rooms_every_node_is_primary_at_least_once() {
    let mut c = Cluster::new(3, 1000);
    let mut primaries = [0; 3];
    for room in 0..30 {
        let a = c.setup(
            &format!("r{room}"),
            &format!("{}", 8000 + room),
            30_000 + 2 * room as u16,
        );
        primaries[c.node_of(&a)] += 1;
    }
    assert!(primaries.iter().all(|&n| n > 0), "{primaries:?}");
}

#[test]
fn a_full_node_is_skipped_and_a_full_cluster_refuses_with_cause_34() {
    // One node offers a single channel, two offer six: one-caller rooms fill them.
    let mut c = Cluster::new(0, 0);
    c.add_node("small", 1);
    c.add_node("big1", 6);
    c.add_node("big2", 6);
    let mut k = 0;
    let refused = loop {
        k += 1;
        let a = c.setup(&format!("c{k}"), &format!("{}", 600 + k), 30_000 + 2 * k);
        if !connected(&a) {
            break a;
        }
        assert!(k <= 13, "13 channels take 13 single callers at most");
    };
    assert_eq!(
        cause(&refused),
        Some(34),
        "a full cluster: no channel, {refused:?}"
    );
    assert_eq!(k, 14, "every channel was used before the refusal");
    assert_eq!(c.legs(), vec![1, 6, 6], "no node went over its channels");
    // A room that would need a link to the full primary cannot grow there, but a
    // freed channel is found again.
    c.release("c3");
    let again = c.setup("late", "9999", 31_000);
    assert!(connected(&again), "{again:?}");
    assert_eq!(c.refusals(), 0);
}

#[test]
fn the_primary_keeps_a_room_of_three_nodes_as_a_hub_and_hands_over_at_two() {
    let mut c = Cluster::new(3, 100);
    let mut at = Vec::new();
    for k in 0..6 {
        let a = c.setup(&format!("c{k}"), "55", 30_000 + 2 * k);
        at.push(c.node_of(&a));
    }
    let primary = at[0];
    // The primary's members leave: it stays the hub of the other two nodes.
    for (k, _) in at.iter().enumerate().filter(|(_, &n)| n == primary) {
        c.release(&format!("c{k}"));
    }
    let legs = c.legs();
    assert_eq!(legs[primary], 2, "the hub keeps its two links: {legs:?}");
    // One of the other nodes empties: a hub of one is pointless, the last node
    // becomes primary and carries no link at all.
    let other = (0..3).find(|&n| n != primary).unwrap();
    for (k, _) in at.iter().enumerate().filter(|(_, &n)| n == other) {
        c.release(&format!("c{k}"));
    }
    let legs = c.legs();
    let last = (0..3).find(|&n| n != primary && n != other).unwrap();
    assert_eq!(legs[primary], 0, "{legs:?}");
    assert_eq!(legs[other], 0, "{legs:?}");
    assert_eq!(legs[last], 2, "two members, no links: {legs:?}");
    let (rooms, _) = c.status();
    assert_eq!(
        rooms[0].primary.as_deref(),
        Some(c.nodes[last].name.as_str())
    );
    assert!(rooms[0].invisible.is_empty());
    assert_eq!(c.refusals(), 0);
}

#[test]
fn a_secondarys_last_member_leaving_unlinks_it() {
    let mut c = Cluster::new(2, 100);
    let a = c.setup("c1", "9", 30_000);
    let b = c.setup("c2", "9", 30_002);
    let (na, nb) = (c.node_of(&a), c.node_of(&b));
    assert_ne!(na, nb, "the second caller goes to the other node");
    assert_eq!(c.legs()[na] + c.legs()[nb], 4, "two members, two link ends");
    c.release("c2");
    assert_eq!(
        c.legs()[nb],
        0,
        "the secondary is unlinked and its room closed"
    );
    assert_eq!(c.legs()[na], 1, "the primary keeps its member only");
    assert_eq!(c.refusals(), 0);
}

#[test]
fn wrong_secret_and_duplicate_names_are_refused_and_others_keep_working() {
    let mut c = Cluster::new(1, 100);
    let a = c.setup("c1", "5", 30_000);
    assert!(connected(&a));
    let i = c.connect("intruder");
    assert!(!c.log_in(i, b"wrong secret"), "a wrong secret is refused");
    assert_eq!(c.planner.stats().logins_refused, 1);
    // Registering without the login gets nowhere.
    c.register(i, 100);
    assert_eq!(c.nodes[i].registered, None);
    let j = c.connect("node1");
    assert!(c.log_in(j, SECRET));
    c.register(j, 100);
    assert_eq!(
        c.nodes[j].registered,
        Some(false),
        "a name a live node holds is refused"
    );
    assert!(c
        .closed
        .iter()
        .any(|(n, why)| *n == c.nodes[j].id && why.contains("already registered")));
    assert_eq!(c.planner.stats().nodes, 1);
    let b = c.setup("c2", "5", 30_002);
    assert!(connected(&b), "the registered node still serves: {b:?}");
}

#[test]
fn a_silent_node_is_dropped_within_three_seconds_and_its_calls_released() {
    let mut c = Cluster::new(2, 100);
    let a = c.setup("c1", "5", 30_000);
    let b = c.setup("c2", "5", 30_002);
    let (na, nb) = (c.node_of(&a), c.node_of(&b));
    // Both nodes report their load every second; then node nb goes quiet.
    for _ in 0..3 {
        c.heartbeats();
        c.advance(Duration::from_secs(1));
    }
    c.nodes[nb].answering = false;
    let quiet = c.now;
    for _ in 0..3 {
        c.nodes[na].answering = true;
        let load = NodeMsg::Load(Default::default()).to_json();
        c.node_says(na, &load);
        c.advance(Duration::from_millis(1000));
    }
    assert!(c
        .closed
        .iter()
        .any(|(n, why)| *n == c.nodes[nb].id && why == "silent"));
    assert!(c.now - quiet <= Duration::from_secs(3));
    let released = c.sent.iter().find_map(|(_, m)| match m {
        ServerMsg::Release { call, cause, .. }
            if call == &format!("c{}", if nb == c.node_of(&a) { 1 } else { 2 }) =>
        {
            Some(*cause)
        }
        _ => None,
    });
    assert_eq!(
        released,
        Some(41),
        "the lost node's caller is released, temporary failure"
    );
    let legs = c.legs();
    assert_eq!(
        legs[na], 1,
        "the survivor keeps its member, its link is gone: {legs:?}"
    );
    let _ = na;
}

#[test]
fn a_node_that_never_answers_an_add_does_not_hold_up_call_control() {
    let mut c = Cluster::new(2, 100);
    let a = c.setup("c1", "5", 30_000);
    let slow = 1 - c.node_of(&a);
    c.nodes[slow].answering = false;
    // c2 goes to the slow node: it is answered at once (where its node receives is
    // known), and so is c3 in another room, without waiting for any node.
    let b = c.setup("c2", "5", 30_002);
    assert_eq!(c.node_of(&b), slow);
    let d = c.setup("c3", "6", 30_004);
    assert!(connected(&d), "{d:?}");
    // The slow node never confirms c2's leg: after 2 s the call is released, the
    // node takes no new callers until it answers again, and the others are fine.
    c.advance(Duration::from_millis(2100));
    let released = c.sent.iter().find_map(|(_, m)| match m {
        ServerMsg::Release { call, cause, .. } if call == "c2" => Some(*cause),
        _ => None,
    });
    assert_eq!(released, Some(41), "the unconfirmed call is released");
    for k in 0..4 {
        let e = c.setup(&format!("late{k}"), &format!("{}", 70 + k), 30_010 + 2 * k);
        assert_ne!(c.node_of(&e), slow, "a stalled node gets no new callers");
    }
    // It answers again (its backlog included): it is back in the rotation.
    c.nodes[slow].answering = true;
    c.pump();
    let placed: Vec<usize> = (0..6)
        .map(|k| {
            let e = c.setup(&format!("back{k}"), &format!("{}", 80 + k), 30_030 + 2 * k);
            c.node_of(&e)
        })
        .collect();
    assert!(placed.contains(&slow), "{placed:?}");
}

#[test]
fn a_node_that_refuses_a_member_releases_that_call_only() {
    let mut c = Cluster::new(2, 100);
    let a = c.setup("c1", "5", 30_000);
    let other = 1 - c.node_of(&a);
    // The other node already has a leg for the address c2 will offer (its own call,
    // say): its engine refuses the add.
    let taken = SocketAddr::from(([192, 0, 2, 50], 30_002));
    c.nodes[other]
        .engine
        .open_room(c.now, crate::engine::MixId(7))
        .unwrap();
    c.nodes[other]
        .engine
        .add_leg(
            c.now,
            crate::engine::MixId(7),
            crate::engine::LegId(7),
            crate::engine::LegSpec::new(taken, scnf_media::codec::CodecKind::Pcmu),
        )
        .unwrap();
    let b = c.setup("c2", "5", 30_002);
    assert_eq!(c.node_of(&b), other, "round-robin: the second caller");
    let released = c.sent.iter().find_map(|(_, m)| match m {
        ServerMsg::Release { call, cause, .. } if call == "c2" => Some(*cause),
        _ => None,
    });
    assert_eq!(released, Some(41), "the refused leg's call is released");
    let (rooms, _) = c.status();
    assert_eq!(rooms[0].members.len(), 1, "c1 stays");
    assert!(
        rooms[0].invisible.is_empty(),
        "the emptied node was unlinked"
    );
}

#[test]
fn status_shows_each_members_node_and_the_cluster_nodes() {
    let mut c = Cluster::new(3, 100);
    for k in 0..3 {
        c.setup(&format!("c{k}"), "77", 30_000 + 2 * k);
    }
    let (rooms, nodes) = c.status();
    assert_eq!(nodes.len(), 3);
    let mut seen: Vec<String> = rooms[0]
        .members
        .iter()
        .filter_map(|m| m.node.clone())
        .collect();
    seen.sort();
    assert_eq!(seen, vec!["node1", "node2", "node3"]);
    let primary = rooms[0].primary.clone().unwrap();
    let at_primary = rooms[0]
        .invisible
        .iter()
        .filter(|i| i.node == primary)
        .count();
    assert_eq!(at_primary, 2, "{:?}", rooms[0].invisible);
    assert!(rooms[0]
        .invisible
        .iter()
        .all(|i| i.node == primary || i.peer == primary));
}

#[test]
fn flags_go_to_the_members_node_and_disconnect_control_spans_the_cluster() {
    // *81: the creator leaving releases every member, wherever it is.
    let mut c = Cluster::new(3, 100);
    let creator = c.setup("boss", "*24444*81#", 30_000);
    assert!(connected(&creator), "{creator:?}");
    for k in 0..4 {
        let a = c.setup(&format!("m{k}"), "4444", 30_010 + 2 * k);
        assert!(connected(&a), "{a:?}");
    }
    assert!(c.legs().iter().all(|&l| l > 0), "the room spans every node");
    c.release("boss");
    let released = c
        .sent
        .iter()
        .filter(|(_, m)| matches!(m, ServerMsg::Release { call, .. } if call.starts_with('m')))
        .count();
    assert_eq!(released, 4, "every member on every node is released");
    assert_eq!(c.legs(), vec![0, 0, 0]);
    assert_eq!(c.refusals(), 0);
}

#[test]
fn hold_mutes_the_leg_on_its_own_node() {
    let mut c = Cluster::new(2, 100);
    let _a = c.setup("c1", "3", 30_000);
    let b = c.setup("c2", "3", 30_002);
    let nb = c.node_of(&b);
    c.text(json!({"mt": "Hold", "call": "c2"}));
    let (rooms, _) = c.status();
    let m = rooms[0].members.iter().find(|m| m.call == "c2").unwrap();
    assert!(m.held && !m.heard);
    assert_eq!(m.node.as_deref(), Some(c.nodes[nb].name.as_str()));
    assert_eq!(c.refusals(), 0);
}

#[test]
fn capacity_is_the_nodes_channels_less_invisible_participants() {
    let mut c = Cluster::new(2, 10);
    let health = |c: &mut Cluster| {
        let before = c.sent.len();
        c.text(json!({"mt": "Health"}));
        c.sent[before..]
            .iter()
            .find_map(|(_, m)| match m {
                ServerMsg::HealthResult {
                    channels, nodes, ..
                } => Some((channels.clone(), nodes.len())),
                _ => None,
            })
            .unwrap()
    };
    let (ch, n) = health(&mut c);
    assert_eq!((ch.capacity, ch.used, n), (20, 0, 2));
    c.setup("c1", "1", 30_000);
    c.setup("c2", "1", 30_002);
    let (ch, _) = health(&mut c);
    assert_eq!(
        (ch.capacity, ch.used),
        (18, 2),
        "the link's two ends take two channels"
    );
}

#[test]
fn a_nodes_own_calls_are_left_out_of_the_clusters_channels() {
    let mut c = Cluster::new(2, 10);
    let load = NodeMsg::Load(super::link::Load {
        local: 4,
        workers: Vec::new(),
    })
    .to_json();
    c.node_says(0, &load);
    c.text(json!({"mt": "Health"}));
    let capacity = c.sent.iter().rev().find_map(|(_, m)| match m {
        ServerMsg::HealthResult {
            channels, nodes, ..
        } => Some((channels.capacity, nodes[0].local, nodes[0].free)),
        _ => None,
    });
    assert_eq!(
        capacity,
        Some((16, 4, 6)),
        "node 1 offers 10, its own controllers use 4"
    );
}

#[test]
fn a_reservation_holds_channels_of_the_whole_cluster() {
    // Two nodes of 10: room 900 reserves 15 of the cluster's 20 channels.
    let mut c = Cluster::new(2, 10);
    let a = c.setup("a1", "*3900*215#", 30_000);
    assert!(connected(&a), "{a:?}");
    let free = |c: &mut Cluster| {
        let before = c.sent.len();
        c.text(json!({"mt": "Health"}));
        c.sent[before..]
            .iter()
            .find_map(|(_, m)| match m {
                ServerMsg::HealthResult { channels, .. } => Some(channels.free),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(free(&mut c), 5, "20 - 1 used - 14 still reserved");
    // Another room gets what is left; once it spans both nodes its link takes two.
    let mut refused = None;
    for k in 0..6 {
        let b = c.setup(&format!("b{k}"), "901", 30_010 + 2 * k);
        if !connected(&b) {
            refused = Some((k, cause(&b)));
            break;
        }
    }
    assert_eq!(
        refused,
        Some((3, Some(34))),
        "three fit: 20 - 2 for the link - 1 - 14"
    );
    // The reserving room's callers still get in, on either node.
    for k in 2..5 {
        let a = c.setup(&format!("a{k}"), "900", 30_100 + 2 * k);
        assert!(connected(&a), "a reserved channel: {a:?}");
    }
    assert_eq!(c.refusals(), 0);
}
