//! The scaler's control plane at scale, sans-IO (no sockets): a session root and a
//! planner as `scnf scaler` runs them, and 100 simulated nodes that answer every
//! operation at once. It prints:
//! - the time to register the nodes;
//! - placement: the time of one `Setup` through the root and the planner until its
//!   `Connect` (median, p99), while 10,000 rooms of 5 callers fill the cluster (every
//!   room spans 5 nodes: 4 links each);
//! - the memory the root and the planner hold for that directory (a counting
//!   allocator: live bytes after, less before);
//! - the state the scaler keeps on the nodes for that (bytes of `Keep` messages);
//! - the time for a restarted scaler to take the whole directory back from the 100
//!   nodes' registrations (every room, caller and controller), until `Status` would
//!   show it all again;
//! - the time to lose one node of 100 (its connection closes; its rooms wait for it).
//!
//! Run: `cargo bench -p scnf-core --bench cluster_scale` (`-- --quick` for 1,000 rooms).
//! What the simulated nodes do costs almost nothing (they answer from the frame's
//! request number), so the figures are the scaler's.

use scnf_core::cluster::link::{Held, Keep, ScalerMsg};
use scnf_core::cluster::planner::{NodeId, PlanOutput, Planner, PlannerConfig};
use scnf_core::conf::ConfConfig;
use scnf_core::control::auth::LoginConfig;
use scnf_core::engine::MediaOp;
use scnf_core::session::budget::{Budgets, Rate};
use scnf_core::session::{ConnId, Output, Session, SessionConfig, WorkerAddrs};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const NODES: usize = 100;
const WORKERS: usize = 4;
const PER_ROOM: usize = 5;

struct Scaler {
    session: Session,
    planner: Planner,
    now: Instant,
    connects: usize,
    releases: usize,
    /// What each simulated node was sent besides heartbeats (ops and keeps), as
    /// text: what it holds, worked out only when it registers again.
    logs: Vec<Vec<String>>,
    keep_bytes: usize,
}

impl Scaler {
    fn new(now: Instant, life: u64) -> Scaler {
        let unlimited = Rate {
            per_second: 0,
            burst: 1,
        };
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
            budgets: Budgets {
                requests: unlimited,
                reports: unlimited,
            },
            resume_grace: Duration::from_secs(60),
        };
        let mut session = Session::new(cfg, [life as u8; 32]);
        session.keep_on_nodes(now, life << 30);
        let mut s = Scaler {
            session,
            planner: Planner::new(PlannerConfig::new(None, [life as u8 + 100; 32])),
            now,
            connects: 0,
            releases: 0,
            logs: vec![Vec::new(); NODES],
            keep_bytes: 0,
        };
        s.session
            .handle_open(now, ConnId(1), "127.0.0.1:1".parse().unwrap());
        s.pump();
        s
    }

    /// The controller logs in (no secret: any proof), resuming `token`'s calls;
    /// its token.
    fn log_in(&mut self, resume: Option<&str>) -> String {
        let resume = resume.map_or(String::new(), |t| format!(",\"resume\":\"{t}\""));
        let login = format!(
            "{{\"mt\":\"AppLogin\",\"name\":\"pbx\",\"cnonce\":\"c\",\"digest\":\"\"{resume}}}"
        );
        self.session.handle_text(self.now, ConnId(1), &login);
        let mut token = String::new();
        while let Some(out) = self.session.poll_output() {
            if let Output::Send { text, .. } = out {
                if let Some(rest) = text.split("\"token\":\"").nth(1) {
                    token = rest.chars().take(32).collect();
                }
            }
        }
        token
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(out) = self.session.poll_output() {
                moved = true;
                match out {
                    Output::Media { req, op, .. } => self.planner.handle_op(self.now, req, op),
                    Output::Keep { what, state } => self.planner.handle_keep(what, state),
                    Output::Send { text, .. } => {
                        if text.contains("\"mt\":\"Connect\"") {
                            self.connects += 1;
                        } else if text.contains("\"mt\":\"Release\"") {
                            self.releases += 1;
                        }
                    }
                    _ => {}
                }
            }
            while let Some(out) = self.planner.poll_output() {
                moved = true;
                match out {
                    PlanOutput::ToNode { node, text } => self.node_answers(node, &text),
                    PlanOutput::Result { req, result } => {
                        self.session.handle_media_result(self.now, req, result)
                    }
                    PlanOutput::Event(e) => self.session.handle_engine_event(self.now, e),
                    PlanOutput::Capacity(n) => self.session.set_channels(n),
                    PlanOutput::Adopt(a) => self.session.handle_adopt(self.now, a),
                    PlanOutput::CloseNode { .. } | PlanOutput::Login { .. } => {}
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// A simulated node: every op is done (read the request number only), and
    /// what it is sent is logged.
    fn node_answers(&mut self, node: NodeId, text: &str) {
        if text.starts_with("{\"mt\":\"Keep\"") {
            self.keep_bytes += text.len();
            self.logs[node.0 as usize].push(text.to_string());
            return;
        }
        let Some(rest) = text.strip_prefix("{\"mt\":\"Op\",\"req\":") else {
            return;
        };
        self.logs[node.0 as usize].push(text.to_string());
        let req: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let reply = format!("{{\"mt\":\"Result\",\"req\":{req},\"result\":\"done\"}}");
        self.planner.handle_node_text(self.now, node, &reply);
    }

    fn register(&mut self, i: usize, holds: &[Held]) {
        let node = NodeId(i as u64);
        let peer = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 9000));
        self.planner.handle_node_open(self.now, node, peer);
        let workers: Vec<String> = (0..WORKERS)
            .map(|w| {
                format!(
                    "{{\"rtp\":\"10.1.{}.{}:{}\",\"rtcp\":\"10.1.{}.{}:{}\"}}",
                    i / 250,
                    i % 250 + 1,
                    20_000 + 2 * w,
                    i / 250,
                    i % 250 + 1,
                    20_001 + 2 * w
                )
            })
            .collect();
        let holds = serde_json::to_string(holds).expect("holds serialise");
        let reg = format!(
            "{{\"mt\":\"Register\",\"name\":\"node{i}\",\"version\":\"bench\",\"link_version\":1,\
             \"workers\":[{}],\"channels\":50000,\"local\":0,\"holds\":{holds}}}",
            workers.join(",")
        );
        self.planner.handle_node_text(self.now, node, &reg);
        self.pump();
    }

    fn setup(&mut self, call: usize, room: usize) {
        let text = format!(
            "{{\"mt\":\"Setup\",\"call\":\"c{call}\",\"called\":\"*3{}#\",\"complete\":true,\
             \"media\":{{\"address\":\"192.0.2.{}\",\"port\":{},\
             \"codecs\":[{{\"name\":\"PCMU\",\"pt\":0,\"rate\":8000}}]}}}}",
            100_000 + room,
            call % 250 + 1,
            1024 + 2 * (call / 250)
        );
        self.session.handle_text(self.now, ConnId(1), &text);
        self.pump();
    }
}

/// The bench's stopwatch: the one real clock here, measuring the sans-IO code from
/// outside (the scaler itself runs on the virtual clock `Scaler::now`).
#[allow(clippy::disallowed_methods)]
fn stopwatch() -> Instant {
    Instant::now()
}

/// What a node holds after the messages it was sent, as it reports it.
fn holds(log: &[String]) -> Vec<Held> {
    let mut rooms: BTreeMap<u64, Held> = BTreeMap::new();
    let mut leg_room: BTreeMap<u64, u64> = BTreeMap::new();
    for text in log {
        match serde_json::from_str::<ScalerMsg>(text).expect("the scaler's messages parse") {
            ScalerMsg::Op { worker, op, .. } => match op {
                MediaOp::OpenRoom { mix } => {
                    let held = Held {
                        worker,
                        mix,
                        legs: vec![],
                        room: None,
                        kept: vec![],
                    };
                    rooms.insert(mix.0, held);
                }
                MediaOp::CloseRoom { mix } => {
                    rooms.remove(&mix.0);
                }
                MediaOp::AddLeg { mix, leg, .. } => {
                    if let Some(h) = rooms.get_mut(&mix.0) {
                        h.legs.push(leg);
                        leg_room.insert(leg.0, mix.0);
                    }
                }
                MediaOp::RemoveLeg { leg } => {
                    if let Some(h) = leg_room.remove(&leg.0).and_then(|m| rooms.get_mut(&m)) {
                        h.legs.retain(|l| *l != leg);
                        h.kept.retain(|k| k.leg != leg);
                    }
                }
                _ => {}
            },
            ScalerMsg::Keep(Keep::Room { mix, state }) => {
                if let Some(h) = rooms.get_mut(&mix.0) {
                    h.room = Some(state);
                }
            }
            ScalerMsg::Keep(Keep::Leg { state }) => {
                if let Some(h) = leg_room.get(&state.leg.0).and_then(|m| rooms.get_mut(m)) {
                    h.kept.retain(|k| k.leg != state.leg);
                    h.kept.push(state);
                }
            }
            _ => {}
        }
    }
    rooms.into_values().collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rooms = if quick { 1_000 } else { 10_000 };
    let before = LIVE.load(Ordering::Relaxed);
    let anchor = scnf_media::testclock::anchor();
    let mut s = Scaler::new(anchor, 1);
    let token = s.log_in(None);
    let t = stopwatch();
    for i in 0..NODES {
        s.register(i, &[]);
    }
    let register = t.elapsed();
    let mut times = Vec::with_capacity(rooms * PER_ROOM);
    let mut call = 0;
    for k in 0..PER_ROOM {
        for room in 0..rooms {
            let _ = k;
            let t = stopwatch();
            s.setup(call, room);
            times.push(t.elapsed());
            call += 1;
        }
    }
    assert_eq!(s.connects, rooms * PER_ROOM, "every caller connected");
    // The simulated nodes' logs are not the scaler's.
    let logs: usize = s
        .logs
        .iter()
        .map(|l| l.capacity() * size_of::<String>() + l.iter().map(String::capacity).sum::<usize>())
        .sum();
    let held = LIVE.load(Ordering::Relaxed) - before - logs as isize;
    times.sort_unstable();
    let stats = s.planner.stats();
    println!(
        "cluster_scale: {NODES} nodes x {WORKERS} workers, {rooms} rooms x {PER_ROOM} callers"
    );
    println!(
        "  register {NODES} nodes: {:.2} ms",
        register.as_secs_f64() * 1e3
    );
    println!(
        "  placement (Setup to Connect): median {:.1} us, p99 {:.1} us, total {:.2} s",
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        times.iter().sum::<Duration>().as_secs_f64()
    );
    println!(
        "  directory: {} members, {} links, {:.1} MiB held ({:.0} bytes per caller)",
        stats.members,
        stats.links,
        held as f64 / (1 << 20) as f64,
        held as f64 / stats.members as f64
    );
    println!(
        "  kept on the nodes: {:.1} MiB of Keep messages ({:.0} bytes per caller)",
        s.keep_bytes as f64 / (1 << 20) as f64,
        s.keep_bytes as f64 / stats.members as f64
    );
    // The scaler is killed; a new one (another life) takes it all back.
    let held: Vec<Vec<Held>> = s.logs.iter().map(|l| holds(l)).collect();
    let rooms_before = s.session.conference().room_count();
    let mut s = Scaler::new(anchor + Duration::from_secs(1), 2);
    let t = stopwatch();
    for (i, h) in held.iter().enumerate() {
        s.register(i, h);
    }
    let resumed = s.log_in(Some(&token));
    let rebuild = t.elapsed();
    let stats = s.planner.stats();
    assert_eq!(resumed, token, "the controller resumed its calls");
    assert_eq!(s.session.conference().room_count(), rooms_before);
    assert_eq!(stats.members_adopted as usize, rooms * PER_ROOM);
    assert_eq!((stats.torn_down, stats.missing), (0, 0));
    println!(
        "  rebuild after a scaler restart: {:.0} ms for {} rooms, {} callers from {NODES} registrations",
        rebuild.as_secs_f64() * 1e3,
        stats.rooms_adopted,
        stats.members_adopted
    );
    let t = stopwatch();
    s.planner.handle_node_closed(s.now, NodeId(0));
    s.pump();
    println!(
        "  lose 1 node's connection of {NODES}: {:.1} ms (its rooms wait for it)",
        t.elapsed().as_secs_f64() * 1e3,
    );
    assert_eq!(s.planner.stats().node_refusals, 0);
}
