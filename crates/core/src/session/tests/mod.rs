//! The session root, stepped by hand: a test plays the transport and the media
//! workers (real engines, applied through [`Engine::apply`]) on a virtual clock.

use super::budget::Rate;
use super::*;
use crate::control::auth::client_digest;
use crate::control::msg::WorkerInfo;
use crate::control::msg::{Direction, ServerMsg};
use crate::engine::{Engine, EngineConfig, Via};
use serde_json::json;

mod limits;
mod resume;
mod video;

const SECRET: &[u8] = b"session-test-secret";

/// The tests' resume grace (the node's default).
const GRACE: Duration = Duration::from_secs(60);

fn peer() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

/// A root with two workers whose media operations are held until [`Node::run_media`]
/// applies them, so a test can look at the root while it waits.
struct Node {
    session: Session,
    engines: Vec<Engine>,
    now: Instant,
    sent: Vec<(ConnId, ServerMsg, Option<String>)>,
    closed: Vec<(ConnId, String)>,
    /// The login steps the transport was told of.
    steps: Vec<(ConnId, LoginStep)>,
    held: VecDeque<(ReqId, usize, MediaOp)>,
    /// Every media operation applied, in order.
    applied: Vec<MediaOp>,
}

fn workers() -> Vec<WorkerAddrs> {
    (0..2)
        .map(|i| WorkerAddrs {
            rtp: SocketAddr::from(([192, 0, 2, 10], 20_000 + 2 * i)),
            rtcp: SocketAddr::from(([192, 0, 2, 10], 20_001 + 2 * i)),
        })
        .collect()
}

impl Node {
    fn new(secret: Option<&[u8]>) -> Node {
        Node::with_budgets(secret, Budgets::default())
    }

    fn with_budgets(secret: Option<&[u8]>, budgets: Budgets) -> Node {
        Node::with(secret, budgets, GRACE)
    }

    fn with(secret: Option<&[u8]>, budgets: Budgets, resume_grace: Duration) -> Node {
        let now = scnf_media::testclock::anchor();
        let cfg = SessionConfig {
            secret: secret.map(<[u8]>::to_vec),
            login: LoginConfig::default(),
            conf: ConfConfig::new(100),
            login_timeout: Duration::from_secs(30),
            workers: workers(),
            own_media: Default::default(),
            budgets,
            resume_grace,
        };
        let engines = (0..2)
            .map(|i| Engine::new(EngineConfig::new("t", (now, Duration::ZERO)), i))
            .collect();
        Node {
            session: Session::new(cfg, [7; 32]),
            engines,
            now,
            sent: Vec::new(),
            closed: Vec::new(),
            steps: Vec::new(),
            held: VecDeque::new(),
            applied: Vec::new(),
        }
    }

    /// Takes the root's outputs; media operations are held.
    fn collect(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Send { conn, text } => {
                    let (msg, src) = msg::parse_server(&text).expect("the root sends valid JSON");
                    self.sent.push((conn, msg, src));
                }
                Output::Close { conn, reason } => self.closed.push((conn, reason)),
                Output::Login { conn, step } => self.steps.push((conn, step)),
                Output::Media { req, worker, op } => self.held.push_back((req, worker, op)),
                Output::Keep { .. } => panic!("a node's root keeps nothing"),
            }
        }
    }

    /// Applies every held media operation (and whatever their results lead to).
    fn run_media(&mut self) {
        self.collect();
        while let Some((req, worker, op)) = self.held.pop_front() {
            self.applied.push(op.clone());
            let result = self.engines[worker].apply(self.now, worker, op);
            self.session.handle_media_result(self.now, req, result);
            self.collect();
        }
    }

    fn text(&mut self, conn: ConnId, v: serde_json::Value) {
        self.session.handle_text(self.now, conn, &v.to_string());
        self.run_media();
    }

    fn open(&mut self, conn: u64) -> ConnId {
        let conn = ConnId(conn);
        self.session.handle_open(self.now, conn, peer());
        conn
    }

    fn login(&mut self, conn: ConnId) {
        self.text(conn, json!({"mt": "AppChallenge"}));
        let Some((_, ServerMsg::AppChallengeResult { challenge, .. }, _)) = self.sent.pop() else {
            panic!("a challenge answers AppChallenge: {:?}", self.sent);
        };
        let digest = client_digest(SECRET, "pbx", &challenge, "n1", "");
        let login = json!({"mt": "AppLogin", "name": "pbx", "cnonce": "n1", "digest": digest});
        self.text(conn, login);
        let Some((_, ServerMsg::AppLoginResult { ok: true, .. }, _)) = self.sent.pop() else {
            panic!("the login succeeds: {:?}", self.sent);
        };
    }

    fn setup(&mut self, conn: ConnId, call: &str, called: &str, port: u16) {
        let v = json!({"mt": "Setup", "src": format!("s-{call}"), "call": call, "called": called,
            "media": {"address": "198.51.100.1", "port": port,
                      "codecs": [{"name": "PCMU", "pt": 0, "rate": 8000}]}});
        self.session.handle_text(self.now, conn, &v.to_string());
        self.collect();
    }

    fn take_sent(&mut self) -> Vec<ServerMsg> {
        self.sent.drain(..).map(|(_, m, _)| m).collect()
    }
}

#[test]
fn the_transport_is_told_when_a_connection_asks_for_a_challenge_and_logs_in() {
    let mut n = Node::new(Some(SECRET));
    let (a, b) = (n.open(1), n.open(2));
    n.collect();
    assert!(n.steps.is_empty(), "opening is not logging in");
    n.login(a);
    n.text(b, json!({"mt": "AppChallenge"}));
    let wrong = json!({"mt": "AppLogin", "name": "x", "cnonce": "n", "digest": "00".repeat(32)});
    n.text(b, wrong);
    let expected = vec![
        (a, LoginStep::Challenged),
        (a, LoginStep::LoggedIn),
        (b, LoginStep::Challenged),
    ];
    assert_eq!(n.steps, expected);
    // Without a password every connection is logged in from the start.
    let mut open = Node::new(None);
    let c = open.open(1);
    open.collect();
    assert_eq!(open.steps, vec![(c, LoginStep::LoggedIn)]);
}

#[test]
fn nothing_but_the_login_is_allowed_before_it() {
    let mut n = Node::new(Some(SECRET));
    let c = n.open(1);
    n.text(c, json!({"mt": "Status", "src": "q"}));
    let (_, msg, src) = n.sent.pop().expect("an answer");
    assert!(
        matches!(&msg, ServerMsg::Error { error, .. } if error.contains("not logged in")),
        "{msg:?}"
    );
    assert_eq!(src.as_deref(), Some("q"));
    assert!(n.held.is_empty(), "no media work for a stranger");
}

#[test]
fn a_setup_connects_only_once_its_leg_exists_on_the_rooms_worker() {
    let mut n = Node::new(None);
    let c = n.open(1);
    n.setup(c, "c1", "*210#", 4000);
    assert!(n.session.is_waiting(), "the root waits for the leg");
    assert!(
        !n.sent
            .iter()
            .any(|(_, m, _)| matches!(m, ServerMsg::Connect { .. })),
        "no Connect before the leg exists"
    );
    let ops: Vec<&'static str> = n.held.iter().map(|(_, _, op)| op.name()).collect();
    assert_eq!(ops, ["open room", "add leg"]);
    n.run_media();
    assert!(!n.session.is_waiting());
    let (_, connect, src) = n
        .sent
        .iter()
        .find(|(_, m, _)| matches!(m, ServerMsg::Connect { .. }))
        .expect("a Connect once the leg exists");
    let ServerMsg::Connect { room, answer, .. } = connect else {
        unreachable!("matched above");
    };
    assert_eq!(room, "10");
    assert_eq!(
        src.as_deref(),
        Some("s-c1"),
        "the answer carries the setup's src"
    );
    assert_eq!(
        (answer.address.to_string(), answer.port),
        ("192.0.2.10".into(), 20_000)
    );
    assert_eq!(answer.rtcp_port, 20_001);
    assert_eq!(n.engines[0].leg_count(), 1);
}

#[test]
fn a_leg_the_worker_refuses_releases_the_call_with_cause_47() {
    let mut n = Node::new(None);
    let c = n.open(1);
    n.setup(c, "c1", "*210#", 4000);
    n.run_media();
    // The same remote address again: the worker refuses a second leg for it.
    n.setup(c, "c2", "10#", 4000);
    n.run_media();
    let msgs = n.take_sent();
    let release = msgs
        .iter()
        .find_map(|m| match m {
            ServerMsg::Release { call, cause, .. } if call == "c2" => Some(*cause),
            _ => None,
        })
        .expect("c2 is released");
    assert_eq!(release, Cause::RESOURCE_UNAVAILABLE.0);
    assert!(!msgs
        .iter()
        .any(|m| matches!(m, ServerMsg::Connect { call, .. } if call == "c2")));
    assert_eq!(
        n.session.table().leg_count(),
        1,
        "the refused leg is not counted"
    );
    assert_eq!(n.engines[0].leg_count(), 1);
}

#[test]
fn requests_that_arrive_while_a_leg_is_added_run_after_it_in_order() {
    let mut n = Node::new(None);
    let a = n.open(1);
    let b = n.open(2);
    n.setup(a, "c1", "*210#", 4000);
    assert!(n.session.is_waiting());
    n.session
        .handle_text(n.now, b, &json!({"mt": "Setup", "src": "x", "call": "", "called": "10#",
            "media": {"address": "198.51.100.1", "port": 4002, "codecs": [{"name": "PCMU", "pt": 0, "rate": 8000}]}}).to_string());
    n.session.handle_text(n.now, b, "not json");
    n.session.handle_text(
        n.now,
        a,
        &json!({"mt": "Hold", "src": "h", "call": "c1"}).to_string(),
    );
    n.collect();
    assert!(
        !n.sent
            .iter()
            .any(|(_, m, _)| matches!(m, ServerMsg::Error { .. } | ServerMsg::HoldResult { .. })),
        "nothing runs while the leg is outstanding: {:?}",
        n.sent
    );
    n.run_media();
    let order: Vec<&str> = n
        .sent
        .iter()
        .filter_map(|(_, m, _)| match m {
            ServerMsg::Connect { .. } => Some("connect"),
            ServerMsg::Error { .. } => Some("error"),
            ServerMsg::HoldResult { .. } => Some("hold"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["connect", "error", "error", "hold"], "{:?}", n.sent);
}

#[test]
fn a_session_that_does_not_log_in_is_closed_at_the_deadline_and_not_before() {
    let mut n = Node::new(Some(SECRET));
    let idle = n.open(1);
    let honest = n.open(2);
    n.login(honest);
    assert_eq!(
        n.session.poll_timeout(),
        Some(n.now + Duration::from_secs(30))
    );
    n.session
        .handle_timeout(n.now + Duration::from_millis(29_999));
    n.collect();
    assert!(n.closed.is_empty());
    n.session.handle_timeout(n.now + Duration::from_secs(30));
    n.collect();
    assert_eq!(n.closed, [(idle, "login timeout".to_string())]);
    assert_eq!(
        n.session.poll_timeout(),
        None,
        "the honest session has no deadline"
    );
}

#[test]
fn status_costs_one_snapshot_per_worker_and_reports_every_leg() {
    let mut n = Node::new(None);
    let c = n.open(1);
    n.setup(c, "c1", "*210#", 4000);
    n.run_media();
    n.setup(c, "c2", "*220#", 4002);
    n.run_media();
    n.setup(c, "c3", "20#", 4004);
    n.run_media();
    n.sent.clear();
    n.session
        .handle_text(n.now, c, &json!({"mt": "Status", "src": "st"}).to_string());
    n.collect();
    let snapshots = n
        .held
        .iter()
        .filter(|(_, _, op)| matches!(op, MediaOp::Snapshot { legs: true }))
        .count();
    assert_eq!(
        (n.held.len(), snapshots),
        (2, 2),
        "one round trip per worker"
    );
    n.run_media();
    let (
        _,
        ServerMsg::StatusResult {
            rooms,
            channels,
            workers,
            ..
        },
        src,
    ) = &n.sent[0]
    else {
        panic!("a StatusResult: {:?}", n.sent);
    };
    assert_eq!(src.as_deref(), Some("st"));
    assert_eq!(channels.used, 3);
    assert_eq!(workers.iter().map(|w| w.legs).sum::<usize>(), 3);
    assert_eq!(workers[1].legs, 2, "room 20 went to the emptier worker");
    let members: usize = rooms.iter().map(|r| r.members.len()).sum();
    assert_eq!(members, 3);
    assert!(rooms
        .iter()
        .flat_map(|r| &r.members)
        .all(|m| m.codec == "PCMU"));
}

#[test]
fn closing_a_connection_releases_its_calls_and_frees_the_media() {
    let mut n = Node::new(None);
    let owner = n.open(1);
    let watcher = n.open(2);
    n.setup(owner, "c1", "*210#", 4000);
    n.run_media();
    n.setup(owner, "c2", "10#", 4002);
    n.run_media();
    n.sent.clear();
    n.session.handle_close(n.now, owner);
    n.run_media();
    assert_eq!(n.engines[0].leg_count(), 0);
    assert_eq!(n.engines[0].room_count(), 0);
    assert_eq!(n.session.table().room_count(), 0);
    let to_watcher: Vec<&ServerMsg> = n
        .sent
        .iter()
        .filter(|(c, _, _)| *c == watcher)
        .map(|(_, m, _)| m)
        .collect();
    assert!(to_watcher
        .iter()
        .any(|m| matches!(m, ServerMsg::RoomClosed { room } if room == "10")));
    assert!(
        n.sent.iter().all(|(c, _, _)| *c != owner),
        "nothing to a closed session"
    );
}

#[test]
fn a_call_offered_on_hold_joins_muted() {
    let mut n = Node::new(None);
    let c = n.open(1);
    let v = json!({"mt": "Setup", "call": "c1", "called": "*210#",
        "media": {"address": "198.51.100.1", "port": 4000, "direction": Direction::Inactive,
                  "codecs": [{"name": "PCMU", "pt": 0, "rate": 8000}]}});
    n.session.handle_text(n.now, c, &v.to_string());
    n.run_media();
    let ops: Vec<&'static str> = n.applied.iter().map(MediaOp::name).collect();
    assert_eq!(
        ops,
        ["open room", "add leg", "mute"],
        "muted after it is added"
    );
    assert!(matches!(
        n.applied[2],
        MediaOp::SetMuted { muted: true, .. }
    ));
    let status = n.session.conference().member(CallRef(1)).expect("a member");
    assert!(status.held);
}

#[test]
fn a_dtmf_event_from_a_worker_reaches_the_conference_core() {
    let mut n = Node::new(None);
    let c = n.open(1);
    n.setup(c, "c1", "*210#", 4000);
    n.run_media();
    n.sent.clear();
    let leg = n.session.calls[&CallRef(1)].leg.expect("a leg").id;
    for digit in ['*', '2', '1', '#'] {
        let event = EngineEvent::Dtmf {
            room: crate::engine::MixId(1),
            leg,
            digit,
        };
        n.session.handle_engine_event(n.now, event);
        n.run_media();
    }
    assert!(
        n.sent.iter().any(|(_, m, _)| matches!(
            m,
            ServerMsg::ListenMode {
                exclusive: Some(1),
                ..
            }
        )),
        "*21# turns exclusive listen on: {:?}",
        n.sent
    );
}

#[test]
fn a_latching_move_is_reported_to_every_controller_as_media_moved() {
    let mut n = Node::new(None);
    let c = n.open(1);
    n.setup(c, "c1", "*210#", 4000);
    n.run_media();
    n.sent.clear();
    let leg = n.session.calls[&CallRef(1)].leg.expect("a leg").id;
    let remote: SocketAddr = "203.0.113.5:40002".parse().unwrap();
    let event = EngineEvent::Latched {
        room: crate::engine::MixId(1),
        leg,
        remote,
    };
    n.session.handle_engine_event(n.now, event);
    n.run_media();
    let moved: Vec<&ServerMsg> = n
        .sent
        .iter()
        .map(|(_, m, _)| m)
        .filter(|m| matches!(m, ServerMsg::MediaMoved { .. }))
        .collect();
    assert_eq!(
        moved,
        [&ServerMsg::MediaMoved {
            room: "10".into(),
            participant: 1,
            call: "c1".into(),
            address: remote.ip(),
            port: 40002,
        }]
    );
}

#[test]
fn the_configs_debug_never_shows_the_secret() {
    let cfg = SessionConfig {
        secret: Some(b"hunter2-very-secret".to_vec()),
        login: LoginConfig::default(),
        conf: ConfConfig::new(1),
        login_timeout: Duration::from_secs(1),
        workers: workers(),
        own_media: Default::default(),
        budgets: Default::default(),
        resume_grace: GRACE,
    };
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("104, 117"),
        "{shown}"
    );
    assert!(shown.contains("<set>"));
}

#[test]
fn a_setup_naming_the_nodes_own_media_socket_or_an_impossible_address_is_refused() {
    let mut n = Node::new(None);
    let c = n.open(1);
    // Worker 1's RTP socket, as advertised; then its RTCP port through loopback (the
    // node's RTCP for a non-muxed leg at port - 1 would land on it too); then
    // addresses that are nobody's phone.
    let cases = [
        ("192.0.2.10", 20_002, false),
        ("127.0.0.1", 20_000, false),
        ("192.0.2.10", 20_000, true),
        ("0.0.0.0", 4000, false),
        ("239.1.1.1", 4000, false),
        ("198.51.100.1", 0, false),
    ];
    for (i, (address, port, mux)) in cases.into_iter().enumerate() {
        let call = format!("c{i}");
        let v = json!({"mt": "Setup", "call": call, "called": "*210#",
            "media": {"address": address, "port": port, "rtcp_mux": mux,
                      "codecs": [{"name": "PCMU", "pt": 0, "rate": 8000}]}});
        n.text(c, v);
        let sent = n.take_sent();
        assert!(
            matches!(&sent[..], [ServerMsg::Release { call: id, cause: 100, reason }]
                if *id == call && reason.contains(address)),
            "{address}:{port}: {sent:?}"
        );
    }
    assert!(n.applied.is_empty(), "nothing was set up: {:?}", n.applied);
    // A phone elsewhere on the same port numbers is fine.
    n.setup(c, "ok", "*210#", 20_000);
    n.run_media();
    assert_eq!(n.engines[0].leg_count(), 1);
}

#[test]
fn errors_name_the_controllers_call_id_never_an_internal_reference() {
    let mut n = Node::new(None);
    let c = n.open(1);
    n.setup(c, "pbx-call-7", "*210#", 4000);
    n.run_media();
    n.take_sent();
    // Info on a connected call, accept of a call that is not alerting.
    n.text(
        c,
        json!({"mt": "Info", "call": "pbx-call-7", "digits": "1", "src": "i"}),
    );
    n.text(
        c,
        json!({"mt": "RemoteControl", "call": "pbx-call-7", "code": 99}),
    );
    let sent = n.take_sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for m in sent {
        let ServerMsg::Error { error, call, .. } = m else {
            panic!("an error: {m:?}");
        };
        assert_eq!(call.as_deref(), Some("pbx-call-7"));
        assert!(error.contains("\"pbx-call-7\""), "{error}");
        assert!(!error.contains("CallRef"), "{error}");
    }
}
