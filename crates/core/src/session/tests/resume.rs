//! Controllers that lose their connection and come back: resume within the grace,
//! replay or resync, expiry with cause 102, wrong tokens, takeovers.

use super::*;
use crate::session::controllers::{resume_digest, MAX_REPLAY_FRAMES, UNKNOWN_TOKEN};

/// The answer to one `AppLogin` (with `resume` if given) and what came after it.
struct LoginAnswer {
    token: String,
    resumed: bool,
    resume_error: Option<String>,
    after: Vec<ServerMsg>,
}

impl Node {
    fn login_with(&mut self, conn: ConnId, resume: Option<&str>) -> LoginAnswer {
        self.text(conn, json!({"mt": "AppChallenge"}));
        let Some((_, ServerMsg::AppChallengeResult { challenge, .. }, _)) = self.sent.pop() else {
            panic!("a challenge answers AppChallenge: {:?}", self.sent);
        };
        let digest = client_digest(SECRET, "pbx", &challenge, "n1", "");
        let mut login = json!({"mt": "AppLogin", "name": "pbx", "cnonce": "n1", "digest": digest});
        if let Some(token) = resume {
            login["resume"] = json!(token);
        }
        self.sent.clear();
        self.text(conn, login);
        let mut sent = self.sent.drain(..).filter(|(c, _, _)| *c == conn);
        let Some((
            _,
            ServerMsg::AppLoginResult {
                ok: true,
                token: Some(token),
                resumed,
                resume_error,
                ..
            },
            _,
        )) = sent.next()
        else {
            panic!("the login succeeds with a token");
        };
        let after = sent.map(|(_, m, _)| m).collect();
        LoginAnswer {
            token,
            resumed,
            resume_error,
            after,
        }
    }

    /// What `conn` was sent since the last look.
    fn sent_to(&mut self, conn: ConnId) -> Vec<ServerMsg> {
        let (to, rest): (Vec<_>, Vec<_>) = self.sent.drain(..).partition(|(c, _, _)| *c == conn);
        self.sent = rest;
        to.into_iter().map(|(_, m, _)| m).collect()
    }

    fn close(&mut self, conn: ConnId) {
        self.session.handle_close(self.now, conn);
        self.run_media();
    }

    fn leg_of(&self, call: u64) -> crate::engine::LegId {
        self.session.calls[&CallRef(call)].leg.expect("a leg").id
    }

    fn control(&mut self, conn: ConnId) -> crate::control::msg::ControlInfo {
        self.sent.clear();
        self.text(conn, json!({"mt": "Health"}));
        match self.sent_to(conn).pop() {
            Some(ServerMsg::HealthResult { control, .. }) => control,
            other => panic!("a HealthResult: {other:?}"),
        }
    }
}

/// A logged-in controller on connection 1 with calls `a` (creating room 10) and `b`.
fn two_calls(n: &mut Node) -> (ConnId, String) {
    let pbx = n.open(1);
    let token = n.login_with(pbx, None).token;
    n.setup(pbx, "a", "*210#", 4000);
    n.run_media();
    n.setup(pbx, "b", "10#", 4002);
    n.run_media();
    n.sent.clear();
    (pbx, token)
}

fn mts(msgs: &[ServerMsg]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            let v = serde_json::to_value(m).unwrap();
            let mt = v["mt"].as_str().unwrap().to_string();
            match v.get("call").and_then(|c| c.as_str()) {
                Some(call) => format!("{mt} {call}"),
                None => mt,
            }
        })
        .collect()
}

#[test]
fn a_controller_that_logs_in_again_within_the_grace_keeps_its_calls_and_gets_what_it_missed_in_order(
) {
    let mut n = Node::new(Some(SECRET));
    let (pbx, token) = two_calls(&mut n);
    let other = n.open(2);
    n.login_with(other, None);
    n.close(pbx);
    assert_eq!(n.engines[0].leg_count(), 2, "the media stays");
    // Meanwhile: another controller's call joins, and `b`'s phone goes silent.
    n.setup(other, "x", "10#", 4004);
    n.run_media();
    let b = n.leg_of(2);
    n.session.handle_engine_event(
        n.now,
        EngineEvent::MediaTimeout {
            room: crate::engine::MixId(1),
            leg: b,
        },
    );
    n.run_media();
    let seen_by_other: Vec<String> = mts(&n.sent_to(other))
        .into_iter()
        .filter(|m| !m.starts_with("Connect"))
        .collect();
    n.now += GRACE - Duration::from_millis(1);
    n.session.handle_timeout(n.now);
    n.run_media();
    let back = n.open(3);
    let answer = n.login_with(back, Some(&token));
    assert!(answer.resumed);
    assert_eq!(answer.resume_error, None);
    assert_eq!(answer.token, token, "the token stays the same");
    // What the other controller saw of those events, plus `b`'s release, in order.
    let replayed = mts(&answer.after);
    let mut expected = seen_by_other.clone();
    let left = expected
        .iter()
        .position(|m| m.starts_with("ParticipantLeft"))
        .expect("b left");
    expected.insert(left, "Release b".into());
    assert_eq!(replayed, expected, "seen by the other: {seen_by_other:?}");
    assert!(
        matches!(
            answer
                .after
                .iter()
                .find(|m| matches!(m, ServerMsg::Release { .. })),
            Some(ServerMsg::Release { cause: 102, .. })
        ),
        "{:?}",
        answer.after
    );
    let control = n.control(back);
    assert_eq!(
        (control.resumes, control.detached, control.detached_calls),
        (1, 0, 0)
    );
    // Nothing is pending any more: `a` lives on past the grace.
    n.now += Duration::from_secs(10);
    n.session.handle_timeout(n.now);
    n.run_media();
    assert!(n.session.conference().member(CallRef(1)).is_some());
}

#[test]
fn a_resumed_controller_can_hold_and_release_its_calls_as_before() {
    let mut n = Node::new(Some(SECRET));
    let (pbx, token) = two_calls(&mut n);
    n.close(pbx);
    let back = n.open(2);
    assert!(n.login_with(back, Some(&token)).resumed);
    n.text(back, json!({"mt": "Hold", "call": "b"}));
    n.text(back, json!({"mt": "Release", "call": "a"}));
    n.text(back, json!({"mt": "Release", "call": "b"}));
    let answers: Vec<String> = mts(&n.sent_to(back))
        .into_iter()
        .filter(|m| m.ends_with("Result a") || m.ends_with("Result b"))
        .collect();
    assert_eq!(
        answers,
        ["HoldResult b", "ReleaseResult a", "ReleaseResult b"]
    );
    assert_eq!(
        (n.engines[0].leg_count(), n.engines[0].room_count()),
        (0, 0)
    );
    assert_eq!(n.session.poll_timeout(), None, "no grace left running");
}

#[test]
fn calls_whose_controller_does_not_come_back_are_released_with_cause_102_at_exactly_the_grace() {
    let mut n = Node::new(Some(SECRET));
    let (pbx, token) = two_calls(&mut n);
    let watcher = n.open(2);
    n.login_with(watcher, None);
    let closed_at = n.now;
    n.close(pbx);
    assert_eq!(n.session.poll_timeout(), Some(closed_at + GRACE));
    let control = n.control(watcher);
    assert_eq!((control.detached, control.detached_calls), (1, 2));
    n.session
        .handle_timeout(closed_at + GRACE - Duration::from_millis(1));
    n.run_media();
    assert!(
        n.sent_to(watcher).is_empty(),
        "nothing before the grace ends"
    );
    n.now = closed_at + GRACE;
    n.session.handle_timeout(n.now);
    n.run_media();
    let left: Vec<(String, u8)> = n
        .sent_to(watcher)
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::ParticipantLeft { call, cause, .. } => Some((call, cause)),
            _ => None,
        })
        .collect();
    assert_eq!(left, [("b".to_string(), 102), ("a".to_string(), 102)]);
    assert_eq!(
        (n.engines[0].leg_count(), n.engines[0].room_count()),
        (0, 0)
    );
    assert_eq!(n.session.table().room_count(), 0);
    let control = n.control(watcher);
    assert_eq!(
        (control.detached, control.expired, control.expired_calls),
        (0, 1, 2)
    );
    let late = n.open(3);
    let answer = n.login_with(late, Some(&token));
    assert!(!answer.resumed);
    assert_eq!(answer.resume_error.as_deref(), Some(UNKNOWN_TOKEN));
}

#[test]
fn a_wrong_token_logs_in_as_a_new_controller_with_a_resume_error_and_the_old_calls_still_expire() {
    let mut n = Node::new(Some(SECRET));
    let (pbx, token) = two_calls(&mut n);
    let closed_at = n.now;
    n.close(pbx);
    let stranger = n.open(2);
    let wrong = n.login_with(stranger, Some(&"00".repeat(16)));
    assert!(!wrong.resumed);
    assert_eq!(wrong.resume_error.as_deref(), Some("unknown-token"));
    assert_ne!(wrong.token, token);
    assert!(wrong.after.is_empty(), "{:?}", wrong.after);
    let garbled = n.open(3);
    let answer = n.login_with(garbled, Some("not-a-token"));
    assert_eq!(answer.resume_error.as_deref(), Some("malformed-token"));
    n.text(stranger, json!({"mt": "Release", "call": "a"}));
    assert!(
        matches!(&n.sent_to(stranger)[..], [ServerMsg::Error { error, .. }] if error.contains("unknown call")),
        "another controller's call is not there"
    );
    n.session.handle_timeout(closed_at + GRACE);
    n.run_media();
    assert_eq!(n.engines[0].leg_count(), 0, "the old calls expired");
    // The real token is gone with them.
    let late = n.open(4);
    assert_eq!(
        n.login_with(late, Some(&token)).resume_error.as_deref(),
        Some(UNKNOWN_TOKEN)
    );
}

#[test]
fn a_controller_that_missed_more_than_the_replay_buffer_holds_gets_a_resync_instead() {
    let mut n = Node::new(Some(SECRET));
    let (pbx, token) = two_calls(&mut n);
    n.text(pbx, json!({"mt": "Hold", "call": "b"}));
    n.close(pbx);
    let a = n.leg_of(1);
    for i in 0..=MAX_REPLAY_FRAMES {
        let event = EngineEvent::Talking {
            room: crate::engine::MixId(1),
            leg: a,
            talking: i % 2 == 0,
        };
        n.session.handle_engine_event(n.now, event);
    }
    n.run_media();
    let back = n.open(2);
    let answer = n.login_with(back, Some(&token));
    assert!(answer.resumed);
    let call = |id: &str, participant: u64, held: bool| crate::control::msg::ResyncCall {
        call: id.into(),
        participant,
        room: Some("10".into()),
        state: "connected".into(),
        held,
        receive_off: false,
        heard: !held,
    };
    assert_eq!(
        answer.after,
        [ServerMsg::Resync {
            calls: vec![call("a", 1, false), call("b", 2, true)]
        }]
    );
    assert_eq!(n.control(back).resyncs, 1);
}

#[test]
fn with_no_grace_a_closed_connection_releases_its_calls_at_once() {
    let mut n = Node::with(Some(SECRET), Budgets::default(), Duration::ZERO);
    let (pbx, token) = two_calls(&mut n);
    n.close(pbx);
    assert_eq!(
        (n.engines[0].leg_count(), n.engines[0].room_count()),
        (0, 0)
    );
    assert_eq!(n.session.poll_timeout(), None);
    let back = n.open(2);
    assert_eq!(
        n.login_with(back, Some(&token)).resume_error.as_deref(),
        Some(UNKNOWN_TOKEN)
    );
}

#[test]
fn a_resume_takes_the_controller_over_from_a_connection_still_attached_which_is_closed() {
    let mut n = Node::new(Some(SECRET));
    let (old, token) = two_calls(&mut n);
    let new = n.open(2);
    let answer = n.login_with(new, Some(&token));
    assert!(answer.resumed);
    assert!(answer.after.is_empty(), "nothing was missed");
    assert_eq!(n.closed, [(old, "resumed elsewhere".to_string())]);
    // The old connection speaks for nobody now, and its close releases nothing.
    n.text(old, json!({"mt": "Hold", "call": "a"}));
    assert!(matches!(
        &n.sent_to(old)[..],
        [ServerMsg::Error { error, .. }] if error.contains("not logged in")
    ));
    n.close(old);
    assert_eq!(n.engines[0].leg_count(), 2);
    n.text(new, json!({"mt": "Hold", "call": "a"}));
    assert_eq!(mts(&n.sent_to(new)), ["HoldResult a", "Muted a"]);
    assert_eq!(n.session.poll_timeout(), None, "the controller is attached");
}

#[test]
fn two_controllers_do_not_see_each_others_calls_even_with_the_same_call_ids() {
    let mut n = Node::new(Some(SECRET));
    let (one, two) = (n.open(1), n.open(2));
    let t1 = n.login_with(one, None).token;
    let t2 = n.login_with(two, None).token;
    assert_ne!(t1, t2);
    n.setup(one, "c1", "*210#", 4000);
    n.run_media();
    n.setup(two, "c1", "10#", 4002);
    n.run_media();
    n.sent.clear();
    n.text(one, json!({"mt": "Release", "call": "c1"}));
    assert_eq!(n.session.conference().member(CallRef(1)), None);
    assert!(n.session.conference().member(CallRef(2)).is_some());
    let ids = |n: &Node, c: u64| n.session.call_controller(CallRef(c)).map(|r| r.id);
    assert_eq!(ids(&n, 1), None, "forgotten");
    assert!(ids(&n, 2).is_some());
    n.close(two);
    // Controller one's token resumes controller one: call two's is not among them.
    let back = n.open(3);
    assert!(n.login_with(back, Some(&t1)).resumed);
    n.text(back, json!({"mt": "Hold", "call": "c1"}));
    assert!(matches!(
        &n.sent_to(back)[..],
        [ServerMsg::Error { error, .. }] if error.contains("unknown call")
    ));
}

#[test]
fn a_controller_record_from_elsewhere_is_resumed_with_its_token_and_its_digest_is_readable() {
    let mut n = Node::new(Some(SECRET));
    let (_, token) = two_calls(&mut n);
    let record = n
        .session
        .call_controller(CallRef(1))
        .expect("a's controller");
    let bytes: [u8; 16] = crate::control::hex::decode_array(&token).unwrap();
    assert_eq!(record.digest, Some(resume_digest(&bytes)));
    assert_eq!(record.deadline, None);
    let id = ControllerId(42);
    let secret = [9u8; 16];
    let deadline = n.now + Duration::from_secs(5);
    n.session
        .insert_detached(id, resume_digest(&secret), deadline)
        .expect("a new id");
    assert!(n.session.insert_detached(id, [0; 32], deadline).is_err());
    assert_eq!(n.session.poll_timeout(), Some(deadline));
    let conn = n.open(2);
    let answer = n.login_with(conn, Some(&crate::control::hex::encode(&secret)));
    assert!(answer.resumed);
    let now = n.session.controllers();
    assert!(
        now.iter().any(|r| r.id == id && r.deadline.is_none()),
        "{now:?}"
    );
}

#[test]
fn a_login_free_session_resumes_only_once_it_has_logged_in_for_a_token() {
    let mut n = Node::new(None);
    let silent = n.open(1);
    n.setup(silent, "a", "*210#", 4000);
    n.run_media();
    n.close(silent);
    assert_eq!(n.engines[0].leg_count(), 0, "no token: released at once");
    let pbx = n.open(2);
    let token = n.login_with(pbx, None).token;
    n.setup(pbx, "b", "*220#", 4002);
    n.run_media();
    n.close(pbx);
    assert_eq!(
        n.session.table().leg_count(),
        1,
        "b waits for its controller"
    );
    let back = n.open(3);
    assert!(n.login_with(back, Some(&token)).resumed);
    n.text(back, json!({"mt": "Release", "call": "b"}));
    assert_eq!(n.session.table().leg_count(), 0);
}
