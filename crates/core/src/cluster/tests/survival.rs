//! Nodes that go away: a lost connection waits for the node to register again, the
//! media tells a dead node from a broken connection, and a node that comes back is
//! reconciled with what the cluster knows.

use super::*;

impl Cluster {
    /// Node `i`'s connection to the scaler is gone (its media runs on).
    pub(super) fn drop_connection(&mut self, i: usize) {
        self.nodes[i].up = false;
        let id = self.nodes[i].id;
        self.planner.handle_node_closed(self.now, id);
        self.pump();
    }

    /// Node `i` connects again (a new connection), logs in and registers under its
    /// name with what it still holds.
    pub(super) fn come_back(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.id = NodeId(n.id.0 + 1000);
        n.up = true;
        n.registered = None;
        n.inbox.clear();
        n.replies.clear();
        let (id, peer) = (n.id, SocketAddr::from(([10, 0, 0, 1 + i as u8], 42_000)));
        self.planner.handle_node_open(self.now, id, peer);
        self.pump();
        assert!(self.log_in(i, SECRET));
        self.register(i, 100);
    }

    /// Every link towards node `i` goes silent at the other end (its media died):
    /// the nodes there say so.
    fn links_fall_silent_towards(&mut self, i: usize) {
        let dead = self.nodes[i].addrs.rtp;
        for j in 0..self.nodes.len() {
            if j == i || !self.nodes[j].up {
                continue;
            }
            let silent: Vec<(LegId, MixId)> = self.nodes[j]
                .links
                .iter()
                .filter(|(_, (_, to))| *to == dead)
                .map(|(leg, (mix, _))| (*leg, *mix))
                .collect();
            for (leg, room) in silent {
                let event = EngineEvent::MediaTimeout { room, leg };
                self.node_says(j, &NodeMsg::Event { event }.to_json());
            }
        }
    }

    /// Lets `d` pass with every node that is up sending its load each half second.
    pub(super) fn live_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.heartbeats();
            let step = Duration::from_millis(500).min(end - self.now);
            self.advance(step);
        }
    }

    /// The nodes `n` new callers are placed on, call ids `<prefix><k>`, each in
    /// room `room(k)`, from media port `port` on.
    fn place_new(
        &mut self,
        prefix: &str,
        n: u16,
        room: impl Fn(u16) -> String,
        port: u16,
    ) -> Vec<usize> {
        (0..n)
            .map(|k| {
                let a = self.setup(&format!("{prefix}{k}"), &room(k), port + 2 * k);
                self.node_of(&a)
            })
            .collect()
    }

    fn released(&self, call: &str) -> Option<u8> {
        self.sent.iter().find_map(|(_, m)| match m {
            ServerMsg::Release { call: c, cause, .. } if c == call => Some(*cause),
            _ => None,
        })
    }

    /// Nine callers of room 5, three on each of three nodes; the answers.
    pub(super) fn room_of_nine() -> (Cluster, Vec<ServerMsg>) {
        let mut c = Cluster::new(3, 100);
        let answers: Vec<ServerMsg> = (0..9)
            .map(|k| c.setup(&format!("c{k}"), "5", 30_000 + 2 * k as u16))
            .collect();
        assert!(answers.iter().all(connected));
        (c, answers)
    }

    /// The node index of the room's primary (its first caller's node).
    pub(super) fn primary_of(&mut self) -> usize {
        let (rooms, _) = self.status();
        let name = rooms[0].primary.clone().expect("a primary");
        self.nodes.iter().position(|n| n.name == name).unwrap()
    }
}

/// The callers whose media is on node `i`.
fn calls_on(c: &Cluster, answers: &[ServerMsg], i: usize) -> Vec<String> {
    answers
        .iter()
        .filter(|a| c.node_of(a) == i)
        .map(|a| match a {
            ServerMsg::Connect { call, .. } => call.clone(),
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn a_node_whose_connection_drops_and_registers_again_within_the_grace_keeps_every_call() {
    let (mut c, _) = Cluster::room_of_nine();
    let primary = c.primary_of();
    let away = (primary + 1) % 3;
    let legs_before = c.legs();
    c.drop_connection(away);
    c.live_for(Duration::from_secs(5));
    assert!(
        c.sent
            .iter()
            .all(|(_, m)| !matches!(m, ServerMsg::Release { .. })),
        "no call is released while the node may still come back"
    );
    assert_eq!(c.planner.stats().detached, 1);
    // While it is away it takes no new caller (it cannot be told to add one).
    for k in 0..3 {
        let a = c.setup(&format!("new{k}"), "5", 31_000 + 2 * k);
        assert_ne!(c.node_of(&a), away, "a node that is away gets no callers");
    }
    c.come_back(away);
    assert_eq!(c.nodes[away].registered, Some(true));
    let stats = c.planner.stats();
    assert_eq!((stats.detached, stats.reattached), (0, 1));
    assert_eq!((stats.torn_down, stats.missing), (0, 0));
    assert_eq!(
        c.legs()[away],
        legs_before[away],
        "what it held is what the cluster knows: nothing was torn down"
    );
    assert_eq!(c.refusals(), 0);
    let (rooms, _) = c.status();
    assert_eq!(
        rooms[0].members.len(),
        12,
        "every call is still in the room"
    );
    // It is back in the rotation.
    let placed = c.place_new("back", 3, |_| "5".into(), 32_000);
    assert!(placed.contains(&away), "{placed:?}");
}

#[test]
fn a_call_released_while_its_node_is_away_is_torn_down_there_when_it_returns() {
    let (mut c, answers) = Cluster::room_of_nine();
    let away = (c.primary_of() + 1) % 3;
    let victim = calls_on(&c, &answers, away)[0].clone();
    let legs_before = c.legs()[away];
    c.drop_connection(away);
    c.release(&victim);
    assert!(c
        .sent
        .iter()
        .any(|(_, m)| matches!(m, ServerMsg::ReleaseResult { call } if *call == victim)));
    assert_eq!(c.legs()[away], legs_before, "the node has not heard yet");
    c.come_back(away);
    assert_eq!(c.legs()[away], legs_before - 1, "the released leg is gone");
    assert_eq!(c.planner.stats().torn_down, 1);
    assert_eq!(c.refusals(), 0);
    let (rooms, _) = c.status();
    assert_eq!(rooms[0].members.len(), 8);
}

#[test]
fn a_primary_whose_connection_is_lost_and_whose_links_fall_silent_is_replaced_at_once() {
    let (mut c, answers) = Cluster::room_of_nine();
    let dead = c.primary_of();
    let on_dead = calls_on(&c, &answers, dead);
    c.drop_connection(dead);
    assert_eq!(
        c.released(&on_dead[0]),
        None,
        "the connection alone is not enough"
    );
    let t0 = c.now;
    c.links_fall_silent_towards(dead);
    assert_eq!(c.now, t0, "no waiting for the grace");
    for call in &on_dead {
        assert_eq!(c.released(call), Some(41), "{call} on the dead node");
    }
    let stats = c.planner.stats();
    assert_eq!((stats.detached, stats.nodes_lost), (0, 1));
    // The survivors: a new primary, the other node linked to it, six callers.
    let (rooms, nodes) = c.status();
    assert_eq!(rooms[0].members.len(), 6);
    let primary = rooms[0].primary.clone().unwrap();
    assert_ne!(primary, c.nodes[dead].name);
    assert_eq!(nodes.len(), 2);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != dead).collect();
    let new_primary = c.nodes.iter().position(|n| n.name == primary).unwrap();
    let other = survivors.into_iter().find(|&i| i != new_primary).unwrap();
    let to = c.nodes[new_primary].addrs.rtp;
    assert!(
        c.nodes[other].links.values().any(|(_, r)| *r == to),
        "the secondary is linked to the new primary"
    );
    assert!(
        c.nodes[other]
            .links
            .values()
            .all(|(_, r)| *r != c.nodes[dead].addrs.rtp),
        "and no longer to the dead one"
    );
    assert_eq!(c.legs()[new_primary], 3 + 1, "three callers and one link");
    assert_eq!(c.legs()[other], 3 + 1);
    assert_eq!(c.refusals(), 0);
}

#[test]
fn a_silent_node_with_silent_links_is_dead_within_a_heartbeat_and_a_half() {
    let (mut c, answers) = Cluster::room_of_nine();
    let dead = (c.primary_of() + 1) % 3;
    let on_dead = calls_on(&c, &answers, dead);
    c.heartbeats();
    let quiet = c.now;
    // A network cut: the node says nothing; its peers' links hear nothing.
    c.nodes[dead].answering = false;
    c.advance(Duration::from_millis(500));
    c.links_fall_silent_towards(dead);
    assert_eq!(
        c.released(&on_dead[0]),
        None,
        "heard from 0.5 s ago: not yet"
    );
    for _ in 0..20 {
        for i in (0..3).filter(|&i| i != dead) {
            c.node_says(i, &NodeMsg::Load(Default::default()).to_json());
        }
        c.advance(Duration::from_millis(100));
        if c.released(&on_dead[0]).is_some() {
            break;
        }
    }
    assert_eq!(c.released(&on_dead[0]), Some(41));
    assert!(
        c.now - quiet <= Duration::from_millis(1600),
        "declared dead after {:?}",
        c.now - quiet
    );
    let (rooms, _) = c.status();
    assert_eq!(rooms[0].members.len(), 6);
}

#[test]
fn a_node_that_does_not_come_back_within_the_grace_is_dead_and_what_it_still_holds_goes() {
    let (mut c, answers) = Cluster::room_of_nine();
    let away = (c.primary_of() + 2) % 3;
    let on_away = calls_on(&c, &answers, away);
    c.drop_connection(away);
    c.live_for(Duration::from_millis(9_900));
    assert_eq!(c.released(&on_away[0]), None, "within the grace");
    c.live_for(Duration::from_millis(200));
    for call in &on_away {
        assert_eq!(c.released(call), Some(41), "{call}");
    }
    let (rooms, _) = c.status();
    assert_eq!(rooms[0].members.len(), 6);
    // Long after, it registers again, still holding its share of the room: the
    // cluster let it go, so it goes there.
    assert!(c.legs()[away] > 0);
    c.come_back(away);
    assert_eq!(c.nodes[away].registered, Some(true));
    assert_eq!(c.legs()[away], 0, "torn down on the node");
    assert_eq!(
        c.planner.stats().torn_down,
        1 + 3 + 1,
        "a room of 3 callers and a link"
    );
    // And it takes callers again.
    let placed = c.place_new("n", 6, |k| format!("{}", 60 + k), 33_000);
    assert!(placed.contains(&away), "{placed:?}");
}

#[test]
fn a_node_that_restarted_within_the_grace_loses_its_calls_and_the_room_is_repaired() {
    let (mut c, answers) = Cluster::room_of_nine();
    let dead = c.primary_of();
    let on_dead = calls_on(&c, &answers, dead);
    c.drop_connection(dead);
    // It restarts: a fresh engine that holds nothing.
    let name = c.nodes[dead].name.clone();
    c.nodes[dead].engine = Engine::new(EngineConfig::new(&name, (c.now, Duration::ZERO)), 99);
    c.nodes[dead].held.clear();
    c.nodes[dead].links.clear();
    c.come_back(dead);
    for call in &on_dead {
        assert_eq!(c.released(call), Some(41), "{call}");
    }
    assert!(c.planner.stats().missing >= 1);
    let (rooms, _) = c.status();
    assert_eq!(rooms[0].members.len(), 6);
    let primary = rooms[0].primary.clone().unwrap();
    assert_ne!(primary, name, "a survivor is the primary now");
    assert_eq!(c.refusals(), 0, "nothing asked of what is not there");
    // A redial lands in the same room, on a live node.
    let again = c.setup("redial", "5", 34_000);
    assert!(connected(&again), "{again:?}");
    let (rooms, _) = c.status();
    assert_eq!(rooms[0].members.len(), 7);
}
