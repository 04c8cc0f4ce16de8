//! The node face: logins, registrations, silence, slow and refusing nodes.

use super::*;

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
fn a_silent_node_is_cut_off_within_three_seconds_and_its_calls_wait_for_it() {
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
        let load = NodeMsg::Load(Default::default()).to_json();
        c.node_says(na, &load);
        c.advance(Duration::from_millis(1000));
    }
    assert!(c
        .closed
        .iter()
        .any(|(n, why)| *n == c.nodes[nb].id && why == "silent"));
    assert!(c.now - quiet <= Duration::from_secs(3));
    assert_eq!(c.planner.stats().silent_nodes, 1);
    // A silent connection is not a dead node: the call there waits (see
    // `survival` for the grace, the media's verdict and the node's return).
    let call_b = "c2"; // b's call, on nb by definition
    assert!(
        !c.sent
            .iter()
            .any(|(_, m)| matches!(m, ServerMsg::Release { call, .. } if call == call_b)),
        "released too soon"
    );
    assert_eq!(c.planner.stats().detached, 1);
    assert_eq!(
        c.legs()[na],
        2,
        "the survivor keeps its member and its link"
    );
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
