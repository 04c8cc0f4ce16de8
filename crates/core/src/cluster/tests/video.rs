//! The video demand as timelines: a script of subscriptions, unsubscriptions and
//! departures at given milliseconds on a virtual clock, and what the nodes are told,
//! at which millisecond. Lingers end when the clock passes them, between steps,
//! exactly as a shell calling `handle_timeout` at `poll_timeout` would see.

use crate::cluster::planner::NodeId;
use crate::cluster::video::{
    Dest, PoolError, StreamKey, StreamView, VideoDemand, VideoOutput, VideoPoolConfig,
    VideoTransport,
};
use scnf_media::testclock::anchor;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use VideoOutput::{Expect, Join, Leave, Publish, Unexpect, Unpublish};

const PUB: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);
const N4: NodeId = NodeId(4);
const K1: StreamKey = StreamKey {
    node: PUB,
    stream: 10,
};
const K2: StreamKey = StreamKey {
    node: PUB,
    stream: 11,
};
/// Published by N2.
const K3: StreamKey = StreamKey {
    node: N2,
    stream: 10,
};

fn at(ms: u64) -> Instant {
    anchor() + Duration::from_millis(ms)
}

/// Group `i` of the default pool, on the default port.
fn g(i: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(239, 192, 0, i), 5004)
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Sub(StreamKey, NodeId),
    Unsub(StreamKey, NodeId),
    NodeGone(NodeId),
    StreamGone(StreamKey),
    /// Only lets the clock reach this time.
    Tick,
}
use Step::{NodeGone, StreamGone, Sub, Tick, Unsub};

/// Steps a demand along a virtual clock and records what it says, when.
struct Run {
    demand: VideoDemand,
    now: Instant,
    told: Vec<(u64, VideoOutput)>,
}

impl Run {
    fn new(cfg: VideoPoolConfig) -> Run {
        Run {
            demand: VideoDemand::new(cfg).expect("a valid config"),
            now: anchor(),
            told: Vec::new(),
        }
    }

    fn multicast() -> Run {
        Run::new(VideoPoolConfig::default())
    }

    fn unicast() -> Run {
        Run::new(VideoPoolConfig {
            transport: VideoTransport::Unicast,
            ..VideoPoolConfig::default()
        })
    }

    fn ms(&self) -> u64 {
        (self.now - anchor()).as_millis() as u64
    }

    fn drain(&mut self) {
        let ms = self.ms();
        while let Some(out) = self.demand.poll_output() {
            self.told.push((ms, out));
        }
    }

    /// Lets every linger due by `ms` end, at its own deadline.
    fn advance(&mut self, ms: u64) {
        let to = at(ms);
        assert!(to >= self.now, "the script goes back in time at {ms} ms");
        while let Some(due) = self.demand.poll_timeout().filter(|t| *t <= to) {
            assert!(due >= self.now, "a deadline in the past: {due:?}");
            self.now = due;
            self.demand.handle_timeout(due);
            self.drain();
        }
        self.now = to;
    }

    /// Runs `step` at `ms`; a subscription's error is returned.
    fn step(&mut self, ms: u64, step: Step) -> Result<(), PoolError> {
        self.advance(ms);
        let now = self.now;
        let d = &mut self.demand;
        let mut res = Ok(());
        match step {
            Sub(key, node) => res = d.subscribe(now, key, node),
            Unsub(key, node) => d.unsubscribe(now, key, node),
            NodeGone(node) => d.node_gone(now, node),
            StreamGone(key) => d.stream_gone(now, key),
            Tick => {}
        }
        self.drain();
        res
    }

    /// Runs a script whose steps must all succeed; returns the timeline.
    fn script(&mut self, steps: &[(u64, Step)]) -> Vec<(u64, VideoOutput)> {
        for &(ms, step) in steps {
            self.step(ms, step)
                .unwrap_or_else(|e| panic!("{step:?} at {ms} ms: {e}"));
        }
        std::mem::take(&mut self.told)
    }

    fn streams(&self) -> Vec<StreamView> {
        self.demand.streams().collect()
    }
}

fn publish(key: StreamKey, group: SocketAddrV4) -> VideoOutput {
    Publish {
        key,
        to: Dest::Group(group),
    }
}

fn unpublish(key: StreamKey, group: SocketAddrV4) -> VideoOutput {
    Unpublish {
        key,
        to: Dest::Group(group),
    }
}

fn join(node: NodeId, key: StreamKey, group: SocketAddrV4) -> VideoOutput {
    Join { node, key, group }
}

fn leave(node: NodeId, key: StreamKey, group: SocketAddrV4) -> VideoOutput {
    Leave { node, key, group }
}

fn publish_to(key: StreamKey, node: NodeId) -> VideoOutput {
    Publish {
        key,
        to: Dest::Node(node),
    }
}

fn unpublish_to(key: StreamKey, node: NodeId) -> VideoOutput {
    Unpublish {
        key,
        to: Dest::Node(node),
    }
}

#[test]
fn multicast_publishes_once_joins_per_node_and_unpublishes_after_the_linger() {
    let mut run = Run::multicast();
    let told = run.script(&[
        (0, Sub(K1, N2)),
        (10, Sub(K1, N2)), // a second viewer on N2: nothing new
        (20, Sub(K1, N3)),
        (30, Unsub(K1, N2)), // N2 still has one viewer
        (40, Unsub(K1, N2)),
        (50, Unsub(K1, N3)),
        (1000, Tick),
    ]);
    assert_eq!(
        told,
        vec![
            (0, publish(K1, g(0))),
            (0, join(N2, K1, g(0))),
            (20, join(N3, K1, g(0))),
            (40, leave(N2, K1, g(0))),
            (50, leave(N3, K1, g(0))),
            (350, unpublish(K1, g(0))),
        ]
    );
    assert_eq!(run.streams(), vec![]);
    assert_eq!(run.demand.poll_timeout(), None);
}

#[test]
fn the_publishers_own_node_is_not_a_receiver() {
    let mut run = Run::multicast();
    let told = run.script(&[(0, Sub(K1, PUB)), (10, Unsub(K1, PUB)), (1000, Tick)]);
    assert_eq!(told, vec![]);
    assert_eq!(run.streams(), vec![]);
    assert_eq!(run.demand.group_of(K1), None);
}

#[test]
fn a_resubscription_inside_the_linger_keeps_the_group_with_a_join_only() {
    let mut run = Run::multicast();
    let told = run.script(&[
        (0, Sub(K1, N2)),
        (100, Unsub(K1, N2)),
        (399, Sub(K1, N3)), // 1 ms before the linger ends
        (1000, Tick),
    ]);
    assert_eq!(
        told,
        vec![
            (0, publish(K1, g(0))),
            (0, join(N2, K1, g(0))),
            (100, leave(N2, K1, g(0))),
            (399, join(N3, K1, g(0))),
        ]
    );
    assert_eq!(run.demand.group_of(K1), Some(g(0)));
    assert_eq!(run.demand.poll_timeout(), None, "the linger is cancelled");
}

#[test]
fn a_subscription_flapping_every_50_ms_publishes_once_and_unpublishes_a_linger_after_it_stops() {
    let mut run = Run::multicast();
    let mut steps = Vec::new();
    for i in 0..20 {
        steps.push((i * 100, Sub(K1, N2)));
        steps.push((i * 100 + 50, Unsub(K1, N2)));
    }
    steps.push((5000, Tick));
    let told = run.script(&steps);

    let publishes: Vec<_> = told
        .iter()
        .filter(|(_, o)| matches!(o, Publish { .. }))
        .collect();
    let unpublishes: Vec<_> = told
        .iter()
        .filter(|(_, o)| matches!(o, Unpublish { .. }))
        .collect();
    assert_eq!(publishes, vec![&(0, publish(K1, g(0)))]);
    // Last unsubscription at 1950 ms.
    assert_eq!(unpublishes, vec![&(2250, unpublish(K1, g(0)))]);
    // The receiver itself joins and leaves with its viewer, every time.
    let joins = told
        .iter()
        .filter(|(_, o)| matches!(o, Join { .. }))
        .count();
    let leaves = told
        .iter()
        .filter(|(_, o)| matches!(o, Leave { .. }))
        .count();
    assert_eq!((joins, leaves), (20, 20));
}

#[test]
fn groups_are_the_lowest_free_and_return_to_the_pool_after_unpublish() {
    let mut run = Run::multicast();
    let told = run.script(&[
        (0, Sub(K1, N2)),
        (0, Sub(K2, N2)),
        (0, Sub(K3, N3)),
        (10, Unsub(K1, N2)),
        (200, Sub(K1, N4)), // inside K1's linger: its group again
        (210, Unsub(K1, N4)),
        (600, Sub(K1, N2)), // after it: a group again, the lowest free
    ]);
    assert_eq!(
        told,
        vec![
            (0, publish(K1, g(0))),
            (0, join(N2, K1, g(0))),
            (0, publish(K2, g(1))),
            (0, join(N2, K2, g(1))),
            (0, publish(K3, g(2))),
            (0, join(N3, K3, g(2))),
            (10, leave(N2, K1, g(0))),
            (200, join(N4, K1, g(0))),
            (210, leave(N4, K1, g(0))),
            (510, unpublish(K1, g(0))),
            (600, publish(K1, g(0))),
            (600, join(N2, K1, g(0))),
        ]
    );
}

#[test]
fn an_exhausted_pool_refuses_new_streams_only_until_a_group_comes_back() {
    let mut run = Run::new(VideoPoolConfig {
        first: Ipv4Addr::new(239, 1, 2, 3),
        last: Ipv4Addr::new(239, 1, 2, 4),
        ..VideoPoolConfig::default()
    });
    let a = SocketAddrV4::new(Ipv4Addr::new(239, 1, 2, 3), 5004);
    let b = SocketAddrV4::new(Ipv4Addr::new(239, 1, 2, 4), 5004);
    run.script(&[(0, Sub(K1, N2)), (0, Sub(K2, N2))]);
    assert_eq!(run.demand.free_groups(), 0);

    assert_eq!(run.step(10, Sub(K3, N3)), Err(PoolError::Exhausted));
    assert_eq!(run.demand.group_of(K3), None);
    // A stream that has its group takes more receivers.
    run.step(10, Sub(K1, N3)).unwrap();
    // A lingering stream still holds its group.
    run.step(20, Unsub(K2, N2)).unwrap();
    assert_eq!(run.step(30, Sub(K3, N3)), Err(PoolError::Exhausted));
    assert_eq!(
        run.script(&[]),
        vec![(10, join(N3, K1, a)), (20, leave(N2, K2, b))]
    );

    // K2's linger ends at 320 ms; its group is K3's now.
    let told = run.script(&[(320, Sub(K3, N3))]);
    assert_eq!(
        told,
        vec![
            (320, unpublish(K2, b)),
            (320, publish(K3, b)),
            (320, join(N3, K3, b)),
        ]
    );
    assert_eq!(run.demand.free_groups(), 0);
}

#[test]
fn a_thousand_receiving_nodes_share_one_group() {
    let mut run = Run::multicast();
    let nodes: Vec<NodeId> = (100..1100).map(NodeId).collect();
    let subs: Vec<(u64, Step)> = nodes.iter().map(|n| (0, Sub(K1, *n))).collect();
    let told = run.script(&subs);
    assert_eq!(told.len(), 1001);
    assert_eq!(told[0], (0, publish(K1, g(0))));
    let joined: Vec<NodeId> = told[1..]
        .iter()
        .map(|(_, o)| match o {
            Join { node, key, group } if *key == K1 && *group == g(0) => *node,
            other => panic!("not a join of K1's group: {other:?}"),
        })
        .collect();
    assert_eq!(joined, nodes);
    let view = run.streams();
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].receivers.len(), 1000);
    assert_eq!(run.demand.free_groups(), 65535);

    let unsubs: Vec<(u64, Step)> = nodes.iter().map(|n| (100, Unsub(K1, *n))).collect();
    let told = run.script(&unsubs);
    assert_eq!(told.len(), 1000);
    assert!(told.iter().all(|(_, o)| matches!(o, Leave { .. })));
    assert_eq!(
        run.script(&[(1000, Tick)]),
        vec![(400, unpublish(K1, g(0)))]
    );
    assert_eq!(run.demand.free_groups(), 65536);
}

#[test]
fn unicast_sends_one_copy_per_receiving_node_and_stops_each_after_its_linger() {
    let mut run = Run::unicast();
    let told = run.script(&[
        (0, Sub(K1, N2)),
        (5, Sub(K1, N2)),
        (10, Sub(K1, N3)),
        (20, Unsub(K1, N2)),
        (30, Unsub(K1, N2)),
        (200, Sub(K1, N2)), // inside N2's linger: the copy never stopped
        (300, Unsub(K1, N3)),
        (1000, Tick),
    ]);
    assert_eq!(
        told,
        vec![
            (0, publish_to(K1, N2)),
            (0, Expect { node: N2, key: K1 }),
            (10, publish_to(K1, N3)),
            (10, Expect { node: N3, key: K1 }),
            (30, Unexpect { node: N2, key: K1 }),
            (200, Expect { node: N2, key: K1 }),
            (300, Unexpect { node: N3, key: K1 }),
            (600, unpublish_to(K1, N3)),
        ]
    );
    assert_eq!(run.demand.group_of(K1), None, "no group in unicast");
    let view = run.streams();
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].receivers, vec![(N2, 1)]);
    assert_eq!(view[0].group, None);
}

#[test]
fn unicast_lingering_copies_are_listed_with_their_end() {
    let mut run = Run::unicast();
    run.script(&[(0, Sub(K1, N2)), (0, Sub(K1, N3)), (100, Unsub(K1, N3))]);
    let view = run.streams();
    assert_eq!(view[0].receivers, vec![(N2, 1)]);
    assert_eq!(view[0].lingering, vec![(Dest::Node(N3), at(400))]);
    assert_eq!(run.demand.poll_timeout(), Some(at(400)));
}

#[test]
fn a_gone_publisher_node_makes_its_receivers_leave_and_frees_its_groups_at_once() {
    let mut run = Run::multicast();
    run.script(&[
        (0, Sub(K1, N2)),
        (0, Sub(K1, N3)),
        (0, Sub(K2, N2)),
        (0, Sub(K3, N3)),    // N2's own stream: lives on
        (10, Unsub(K2, N2)), // K2 lingers
    ]);
    let told = run.script(&[
        (20, NodeGone(PUB)),
        (
            20,
            Sub(
                StreamKey {
                    node: N4,
                    stream: 1,
                },
                N2,
            ),
        ),
    ]);
    let k4 = StreamKey {
        node: N4,
        stream: 1,
    };
    assert_eq!(
        told,
        vec![
            (20, leave(N2, K1, g(0))),
            (20, leave(N3, K1, g(0))),
            (20, publish(k4, g(0))),
            (20, join(N2, k4, g(0))),
        ],
        "no Unpublish toward the gone node; K1's and K2's groups free at once"
    );
    assert_eq!(run.demand.free_groups(), 65536 - 2);
    assert_eq!(
        run.script(&[(1000, Tick)]),
        vec![],
        "K2's linger went with it"
    );
    assert_eq!(run.demand.group_of(K3), Some(g(2)));
}

#[test]
fn a_gone_receiving_node_ends_its_subscriptions_without_a_word_to_it() {
    let mut run = Run::multicast();
    run.script(&[(0, Sub(K1, N2)), (0, Sub(K1, N3)), (0, Sub(K2, N3))]);
    let told = run.script(&[(50, NodeGone(N3)), (60, Unsub(K1, N3)), (1000, Tick)]);
    // K1 keeps N2; K2's last receiver is gone: unpublished at once. N3's late
    // unsubscription changes nothing.
    assert_eq!(told, vec![(50, unpublish(K2, g(1)))]);
    let view = run.streams();
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].receivers, vec![(N2, 1)]);
}

#[test]
fn unicast_stops_the_copy_toward_a_gone_node_at_once() {
    let mut run = Run::unicast();
    run.script(&[
        (0, Sub(K1, N2)),
        (0, Sub(K1, N3)),
        (0, Sub(K3, N3)),
        (0, Sub(K2, N4)),
        (10, Unsub(K2, N4)), // the copy toward N4 lingers
    ]);
    let told = run.script(&[(20, NodeGone(N4)), (30, NodeGone(N2)), (1000, Tick)]);
    assert_eq!(
        told,
        vec![
            (20, unpublish_to(K2, N4)),
            // N2 publishes K3: N3 unexpects it; N2 also received K1.
            (30, Unexpect { node: N3, key: K3 }),
            (30, unpublish_to(K1, N2)),
        ]
    );
    assert_eq!(run.demand.poll_timeout(), None);
}

#[test]
fn an_ended_stream_makes_its_receivers_leave_and_frees_its_group() {
    let mut run = Run::multicast();
    run.script(&[(0, Sub(K1, N2)), (0, Sub(K1, N3)), (0, Sub(K2, N2))]);
    let told = run.script(&[
        (10, StreamGone(K1)),
        (10, StreamGone(K1)),
        (20, Sub(K3, N3)),
    ]);
    assert_eq!(
        told,
        vec![
            (10, leave(N2, K1, g(0))),
            (10, leave(N3, K1, g(0))),
            (20, publish(K3, g(0))),
            (20, join(N3, K3, g(0))),
        ]
    );
    // The same stream id published again starts from scratch.
    let told = run.script(&[(30, Sub(K1, N2))]);
    assert_eq!(
        told,
        vec![(30, publish(K1, g(2))), (30, join(N2, K1, g(2)))]
    );
}

#[test]
fn unicast_an_ended_stream_unexpects_only_the_receivers_still_viewing() {
    let mut run = Run::unicast();
    run.script(&[(0, Sub(K1, N2)), (0, Sub(K1, N3)), (10, Unsub(K1, N3))]);
    let told = run.script(&[(20, StreamGone(K1)), (1000, Tick)]);
    assert_eq!(told, vec![(20, Unexpect { node: N2, key: K1 })]);
    assert_eq!(run.streams(), vec![]);
}

#[test]
fn extra_unsubscriptions_are_ignored() {
    let mut run = Run::multicast();
    let told = run.script(&[
        (0, Unsub(K1, N2)),
        (10, Sub(K1, N2)),
        (20, Unsub(K1, N3)),
        (30, Unsub(K1, N2)),
        (40, Unsub(K1, N2)),
        (1000, Tick),
    ]);
    assert_eq!(
        told,
        vec![
            (10, publish(K1, g(0))),
            (10, join(N2, K1, g(0))),
            (30, leave(N2, K1, g(0))),
            (330, unpublish(K1, g(0))),
        ]
    );
}

#[test]
fn the_next_timeout_is_the_earliest_linger() {
    let mut run = Run::multicast();
    run.script(&[
        (0, Sub(K1, N2)),
        (0, Sub(K2, N2)),
        (100, Unsub(K2, N2)),
        (150, Unsub(K1, N2)),
    ]);
    assert_eq!(run.demand.poll_timeout(), Some(at(400)));
    let view = run.streams();
    assert_eq!(view[0].lingering, vec![(Dest::Group(g(0)), at(450))]);
    assert_eq!(view[1].lingering, vec![(Dest::Group(g(1)), at(400))]);
    run.step(400, Tick).unwrap();
    assert_eq!(run.demand.poll_timeout(), Some(at(450)));
}

#[test]
fn the_default_config_is_the_organisation_local_scope_on_port_5004() {
    let cfg = VideoPoolConfig::default();
    assert_eq!(cfg.first, Ipv4Addr::new(239, 192, 0, 0));
    assert_eq!(cfg.last, Ipv4Addr::new(239, 192, 255, 255));
    assert_eq!(cfg.port, 5004);
    assert_eq!(cfg.linger, Duration::from_millis(300));
    assert_eq!(cfg.transport, VideoTransport::Multicast);
    assert_eq!(cfg.validate(), Ok(()));
    assert_eq!(VideoDemand::new(cfg).unwrap().free_groups(), 65536);
}

#[test]
fn configs_outside_the_admin_scope_empty_or_on_port_0_are_refused() {
    let ip = Ipv4Addr::new;
    let table = [
        (ip(239, 0, 0, 0), ip(239, 255, 255, 255), 5004, Ok(())),
        (ip(239, 1, 1, 1), ip(239, 1, 1, 1), 1, Ok(())),
        (
            ip(224, 0, 1, 1),
            ip(239, 1, 1, 1),
            5004,
            Err(PoolError::OutsideScope(ip(224, 0, 1, 1))),
        ),
        (
            ip(239, 1, 1, 1),
            ip(240, 0, 0, 0),
            5004,
            Err(PoolError::OutsideScope(ip(240, 0, 0, 0))),
        ),
        (
            ip(10, 0, 0, 1),
            ip(10, 0, 0, 9),
            5004,
            Err(PoolError::OutsideScope(ip(10, 0, 0, 1))),
        ),
        (
            ip(239, 1, 1, 2),
            ip(239, 1, 1, 1),
            5004,
            Err(PoolError::Empty),
        ),
        (
            ip(239, 1, 1, 1),
            ip(239, 1, 1, 2),
            0,
            Err(PoolError::PortZero),
        ),
    ];
    for (first, last, port, want) in table {
        let cfg = VideoPoolConfig {
            first,
            last,
            port,
            ..VideoPoolConfig::default()
        };
        assert_eq!(cfg.validate(), want, "{first}..={last} port {port}");
        assert_eq!(VideoDemand::new(cfg).err(), want.err());
    }
    assert_eq!(
        PoolError::OutsideScope(ip(224, 0, 1, 1)).to_string(),
        "multicast group 224.0.1.1 is outside 239.0.0.0/8, the administratively scoped range"
    );
}

#[test]
fn the_transport_is_written_in_lowercase() {
    let text =
        serde_json::to_string(&[VideoTransport::Multicast, VideoTransport::Unicast]).unwrap();
    assert_eq!(text, r#"["multicast","unicast"]"#);
    let back: VideoTransport = serde_json::from_str(r#""unicast""#).unwrap();
    assert_eq!(back, VideoTransport::Unicast);
}

#[test]
fn groups_given_back_in_any_order_are_handed_out_lowest_first() {
    let mut run = Run::multicast();
    let key = |stream| StreamKey { node: PUB, stream };
    let subs: Vec<(u64, Step)> = (0..5).map(|s| (0, Sub(key(s), N2))).collect();
    run.script(&subs);
    run.script(&[
        (10, StreamGone(key(1))),
        (10, StreamGone(key(4))),
        (10, StreamGone(key(3))),
    ]);
    assert_eq!(run.demand.free_groups(), 65536 - 2);
    let subs: Vec<(u64, Step)> = (10..14).map(|s| (20, Sub(key(s), N2))).collect();
    run.script(&subs);
    let groups: Vec<_> = (10..14).map(|s| run.demand.group_of(key(s))).collect();
    assert_eq!(groups, [1, 3, 4, 5].map(|i| Some(g(i))));
}
