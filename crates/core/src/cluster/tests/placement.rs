//! Where members go, how rooms are linked and unlinked, and what reports say.

use super::*;

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
    // The join events name each member's node too.
    let mut joined: Vec<String> = c
        .sent
        .iter()
        .filter_map(|(_, m)| match m {
            ServerMsg::ParticipantJoined { node, .. } => node.clone(),
            _ => None,
        })
        .collect();
    joined.sort();
    assert_eq!(joined, vec!["node1", "node2", "node3"]);
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
    let load = NodeMsg::Load(crate::cluster::link::Load {
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
