//! The scaler dies and starts again: its nodes keep the media and what it decided,
//! and the new scaler takes every room back from them as it was.

use super::*;

/// The second life's ids start here (far above the first's).
const SECOND_LIFE: u64 = 1 << 40;

impl Cluster {
    /// The controller logs in (no secret: any proof does) and gets its resume token.
    fn controller_logs_in(&mut self, resume: Option<&str>) -> (String, bool) {
        let before = self.sent.len();
        let mut login = json!({"mt": "AppLogin", "name": "pbx", "cnonce": "c", "digest": ""});
        if let Some(t) = resume {
            login["resume"] = json!(t);
        }
        self.text(login);
        self.login_answer(before).expect("the login is answered")
    }

    /// The token and `resumed` of the first login answer sent since `before`.
    fn login_answer(&self, before: usize) -> Option<(String, bool)> {
        self.sent[before..].iter().find_map(|(_, m)| match m {
            ServerMsg::AppLoginResult { token, resumed, .. } => {
                Some((token.clone().expect("a token"), *resumed))
            }
            _ => None,
        })
    }

    /// SIGKILL and start again: a new root and planner (another life, with a resume
    /// grace of `grace`), the nodes' media untouched. The controller's connection
    /// went with the old scaler; it connects again as `ConnId(2)`.
    fn restart_scaler(&mut self, grace: Duration) {
        let mut session = Session::new(session_config_with(grace), [10; 32]);
        session.keep_on_nodes(self.now, SECOND_LIFE);
        self.session = session;
        self.planner = Planner::new(PlannerConfig::new(Some(SECRET.to_vec()), [11; 32]));
        self.sent.clear();
        self.ctl = ConnId(2);
        let peer = "127.0.0.1:40001".parse().unwrap();
        self.session.handle_open(self.now, self.ctl, peer);
        self.pump();
    }

    fn nodes_come_back(&mut self) {
        for i in 0..self.nodes.len() {
            self.come_back(i);
        }
    }

    /// Room ids and, per room, its members' call ids (sorted), from `Status`.
    fn directory(&mut self) -> Vec<RoomInfo> {
        let (mut rooms, _) = self.status();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        for r in &mut rooms {
            r.members.sort_by(|a, b| a.call.cmp(&b.call));
        }
        rooms
    }
}

/// Room 5: nine callers over three nodes, c0 its creator with `*81` (its leaving
/// ends the room) and a reserve of 12; c4 listens exclusively, c7 is on hold. Room
/// 6: two callers. The controller logged in, so it can resume.
fn cluster_in_use() -> (Cluster, String) {
    let mut c = Cluster::new(3, 100);
    let (token, _) = c.controller_logs_in(None);
    let mut answers = vec![c.setup("c0", "*25*81*212", 30_000)];
    for k in 1..9u16 {
        answers.push(c.setup(&format!("c{k}"), "5", 30_000 + 2 * k));
    }
    answers.push(c.setup("d0", "6", 31_000));
    answers.push(c.setup("d1", "6", 31_002));
    assert!(answers.iter().all(connected), "{answers:?}");
    c.text(json!({"mt": "RemoteControl", "call": "c4", "code": 26}));
    c.text(json!({"mt": "Hold", "call": "c7"}));
    (c, token)
}

#[test]
fn a_restarted_scaler_takes_every_room_back_from_its_nodes_as_it_was() {
    let (mut c, token) = cluster_in_use();
    let before = c.directory();
    let c4 = before[0].members.iter().find(|m| m.call == "c4").unwrap();
    assert_eq!(
        before[0].exclusive,
        Some(c4.participant),
        "c4 listens exclusively"
    );
    let legs = c.legs();
    let first_epochs: std::collections::BTreeSet<u64> = c
        .nodes
        .iter()
        .flat_map(|n| n.room_keeps.values().map(|k| k.epoch))
        .collect();
    assert_eq!(first_epochs.len(), 1, "every room is kept on its nodes");
    let kept: usize = c.nodes.iter().map(|n| n.leg_keeps.len()).sum();
    assert_eq!(kept, 11, "every caller is kept on its node");
    c.restart_scaler(Duration::from_secs(60));
    assert!(
        c.directory().is_empty(),
        "a new scaler knows nothing by itself"
    );
    c.nodes_come_back();
    assert_eq!(c.directory(), before, "the directory is rebuilt whole");
    assert_eq!(c.legs(), legs, "no leg was added or removed on any node");
    assert_eq!(c.refusals(), 0);
    let stats = c.planner.stats();
    assert_eq!((stats.rooms_adopted, stats.members_adopted), (2, 11));
    assert_eq!((stats.torn_down, stats.missing), (0, 0));
    // Every node's keeps are this life's now: what this life lets go stays gone.
    let epochs = |c: &Cluster| -> std::collections::BTreeSet<u64> {
        c.nodes
            .iter()
            .flat_map(|n| n.room_keeps.values().map(|k| k.epoch))
            .collect()
    };
    assert_eq!(epochs(&c).len(), 1);
    assert_ne!(epochs(&c), first_epochs);
    // The controller gets its calls back, and controls them as before.
    let (_, resumed) = c.controller_logs_in(Some(&token));
    assert!(resumed, "the kept controller resumes with its old token");
    c.text(json!({"mt": "Retrieve", "call": "c7"}));
    let c7 = c.directory()[0]
        .members
        .iter()
        .find(|m| m.call == "c7")
        .cloned();
    assert_eq!(c7.map(|m| m.held), Some(false));
}

#[test]
fn after_the_rebuild_new_callers_join_and_the_creator_still_ends_its_room() {
    let (mut c, token) = cluster_in_use();
    c.restart_scaler(Duration::from_secs(60));
    c.nodes_come_back();
    c.controller_logs_in(Some(&token));
    let joined = c.setup("new", "5", 32_000);
    assert!(connected(&joined), "a new caller joins the room taken back");
    let (rooms, _) = c.status();
    let room = rooms.iter().find(|r| r.room == "5").unwrap();
    assert_eq!(room.members.len(), 10);
    // The exclusive member taken back still decides who is heard: the newcomer is
    // not.
    let new = room.members.iter().find(|m| m.call == "new").unwrap();
    assert!(!new.heard);
    // *81: the creator leaves, everyone in its room is released.
    let before = c.sent.len();
    c.release("c0");
    let released: Vec<&str> = c.sent[before..]
        .iter()
        .filter_map(|(_, m)| match m {
            ServerMsg::Release { call, .. } => Some(call.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(released.len(), 9, "{released:?}");
    assert!(c.directory().iter().all(|r| r.room != "5"));
    c.pump();
    assert_eq!(
        c.legs().iter().sum::<usize>(),
        4,
        "only room 6 remains: its two callers and their link"
    );
    assert_eq!(c.refusals(), 0);
}

#[test]
fn a_controller_that_logs_in_before_the_nodes_are_back_waits_for_its_calls() {
    let (mut c, token) = cluster_in_use();
    c.restart_scaler(Duration::from_secs(60));
    let before = c.sent.len();
    let mut login = json!({"mt": "AppLogin", "name": "pbx", "cnonce": "c", "digest": ""});
    login["resume"] = json!(token);
    c.text(login);
    assert_eq!(
        c.login_answer(before),
        None,
        "no answer while the token may come back"
    );
    c.advance(Duration::from_secs(2));
    c.nodes_come_back();
    assert_eq!(
        c.login_answer(before),
        Some((token.clone(), true)),
        "resumed as soon as the nodes brought its calls back"
    );
}

#[test]
fn a_resume_nobody_brings_back_is_answered_at_the_end_of_the_rebuild_window() {
    let (mut c, _) = cluster_in_use();
    c.restart_scaler(Duration::from_secs(60));
    let before = c.sent.len();
    let unknown = "00112233445566778899aabbccddeeff";
    c.text(
        json!({"mt": "AppLogin", "name": "pbx", "cnonce": "c", "digest": "", "resume": unknown}),
    );
    c.advance(crate::session::REBUILD_WINDOW - Duration::from_millis(1));
    assert_eq!(c.login_answer(before), None);
    c.advance(Duration::from_millis(1));
    let (_, resumed) = c
        .login_answer(before)
        .expect("answered when the window closes");
    assert!(!resumed);
    let err = c.sent[before..].iter().find_map(|(_, m)| match m {
        ServerMsg::AppLoginResult { resume_error, .. } => resume_error.clone(),
        _ => None,
    });
    assert_eq!(err.as_deref(), Some("unknown-token"));
}

#[test]
fn kept_calls_whose_controller_does_not_come_back_are_released_at_the_grace() {
    let (mut c, _) = cluster_in_use();
    c.restart_scaler(Duration::from_secs(30));
    c.nodes_come_back();
    c.live_for(Duration::from_secs(29));
    assert_eq!(
        c.legs().iter().sum::<usize>(),
        11 + 4 + 2,
        "the calls and their links wait for their controller"
    );
    c.live_for(Duration::from_secs(2));
    assert_eq!(
        c.legs(),
        [0, 0, 0],
        "released with their rooms, legs and links"
    );
    let health = c.session.conference().room_count();
    assert_eq!(health, 0);
}

#[test]
fn a_node_that_held_a_room_the_scaler_of_this_life_let_go_is_still_torn_down() {
    let (mut c, token) = cluster_in_use();
    c.restart_scaler(Duration::from_secs(60));
    c.nodes_come_back();
    c.controller_logs_in(Some(&token));
    // The node of d0's leg loses its connection; while it is away, room 6 ends.
    let rooms = c.directory();
    let d0 = rooms[1].members.iter().find(|m| m.call == "d0").unwrap();
    let name = d0.node.clone().expect("a scaler names the node");
    let away = c.nodes.iter().position(|n| n.name == name).unwrap();
    c.drop_connection(away);
    c.release("d0");
    c.release("d1");
    c.come_back(away);
    let stats = c.planner.stats();
    assert_eq!(stats.rooms_adopted, 2, "nothing of this life is taken over");
    assert_eq!(
        stats.torn_down, 3,
        "room 6's share there, d0's leg and its link"
    );
    assert_eq!(c.directory().len(), 1);
    assert_eq!(c.refusals(), 0);
}

#[test]
fn a_change_made_while_a_node_was_away_reaches_its_media_and_keep_once_it_is_back() {
    let (mut c, token) = cluster_in_use();
    let rooms = c.directory();
    let d1 = rooms[1].members.iter().find(|m| m.call == "d1").unwrap();
    let name = d1.node.clone().unwrap();
    let away = c.nodes.iter().position(|n| n.name == name).unwrap();
    let muted = c.nodes[away].muted.len();
    c.drop_connection(away);
    c.text(json!({"mt": "Hold", "call": "d1"}));
    assert_eq!(
        c.nodes[away].muted.len(),
        muted,
        "its node cannot be told yet"
    );
    c.come_back(away);
    assert_eq!(
        c.nodes[away].muted.len(),
        muted + 1,
        "its node is told once back"
    );
    c.restart_scaler(Duration::from_secs(60));
    c.nodes_come_back();
    c.controller_logs_in(Some(&token));
    let rooms = c.directory();
    let d1 = rooms[1].members.iter().find(|m| m.call == "d1").unwrap();
    assert!(
        d1.held,
        "the hold made while its node was away survived the restart"
    );
}

#[test]
fn a_controller_that_logged_in_again_resumes_with_its_newest_token() {
    let (mut c, first) = cluster_in_use();
    let (newest, resumed) = c.controller_logs_in(None);
    assert!(!resumed);
    assert_ne!(newest, first, "a new login issues a new token");
    c.restart_scaler(Duration::from_secs(60));
    c.nodes_come_back();
    let (_, resumed) = c.controller_logs_in(Some(&newest));
    assert!(resumed, "the kept calls carry the newest token's digest");
}
