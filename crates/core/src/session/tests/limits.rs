//! The session root under load and at its limits: input counters in the reports,
//! shutdown, per-session budgets, digit budgets, lost events.

use super::*;

/// An RTP packet with payload type `pt` (G.711 sized).
fn rtp(pt: u8, seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

/// Sends a `Status` or `Health` request and returns the one answer, after the workers answered.
fn report(n: &mut Node, conn: ConnId, mt: &str) -> ServerMsg {
    n.sent.clear();
    n.text(conn, json!({ "mt": mt }));
    assert_eq!(n.sent.len(), 1, "{:?}", n.sent);
    n.sent.pop().unwrap().1
}

#[test]
fn foreign_malformed_and_unknown_payload_input_is_counted_in_status_and_health() {
    let mut n = Node::new(None);
    let c = n.open(1);
    n.setup(c, "c1", "*210#", 4000);
    n.run_media();
    let member: SocketAddr = "198.51.100.1:4000".parse().unwrap();
    let stranger: SocketAddr = "203.0.113.9:4000".parse().unwrap();
    let w = n.engines.iter().position(|e| e.leg_count() == 1).unwrap();
    let e = &mut n.engines[w];
    e.handle_datagram(n.now, stranger, Via::Rtp, &rtp(0, 1, 7));
    e.handle_datagram(n.now, member, Via::Rtp, &[0x80, 0x00, 0x01]);
    e.handle_datagram(n.now, member, Via::Rtp, &rtp(99, 2, 7));
    e.handle_datagram(n.now, member, Via::Rtp, &rtp(99, 3, 7));
    let ServerMsg::StatusResult { rooms, workers, .. } = report(&mut n, c, "Status") else {
        panic!("a StatusResult");
    };
    assert_eq!(workers.len(), 2);
    assert_eq!(
        (workers[w].foreign, workers[w].malformed),
        (1, 1),
        "{workers:?}"
    );
    let sum = |f: fn(&WorkerInfo) -> u64| workers.iter().map(f).sum::<u64>();
    assert_eq!(sum(|w| w.foreign), 1);
    assert_eq!(sum(|w| w.malformed), 1);
    assert_eq!(sum(|w| w.unknown_payload_type), 2);
    let m = &rooms[0].members[0];
    assert_eq!(m.counters.unknown_payload_type, 2);
    assert_eq!(m.counters.packets_received, 0, "no audio was accepted");
    let ServerMsg::HealthResult { workers, .. } = report(&mut n, c, "Health") else {
        panic!("a HealthResult");
    };
    assert_eq!(workers.iter().map(|w| w.foreign).sum::<u64>(), 1);
    assert_eq!(workers.iter().map(|w| w.malformed).sum::<u64>(), 1);
    assert_eq!(
        workers.iter().map(|w| w.unknown_payload_type).sum::<u64>(),
        2
    );
    // The worker's counters outlive the leg: they only ever grow.
    n.text(c, json!({"mt": "Release", "call": "c1"}));
    let ServerMsg::HealthResult { workers, legs, .. } = report(&mut n, c, "Health") else {
        panic!("a HealthResult");
    };
    assert_eq!(legs, 0);
    assert_eq!(
        workers.iter().map(|w| w.unknown_payload_type).sum::<u64>(),
        2
    );
}

#[test]
fn a_shutdown_releases_every_call_with_its_cause_says_bye_and_closes_the_sessions() {
    let mut n = Node::new(None);
    let (c1, c2) = (n.open(1), n.open(2));
    n.setup(c1, "a", "*210*81#", 4000);
    n.run_media();
    n.setup(c1, "b", "10#", 4002);
    n.run_media();
    n.setup(c2, "c", "*220#", 4004);
    n.run_media();
    n.setup(c2, "d", "*2", 4006);
    n.run_media();
    n.sent.clear();
    n.session.handle_shutdown(SHUTDOWN_CAUSE);
    n.run_media();
    let mut released: Vec<(ConnId, String, u8)> = n
        .sent
        .iter()
        .filter_map(|(conn, m, _)| match m {
            ServerMsg::Release { call, cause, .. } => Some((*conn, call.clone(), *cause)),
            _ => None,
        })
        .collect();
    released.sort();
    let expected = [(c1, "a", 41), (c1, "b", 41), (c2, "c", 41), (c2, "d", 41)];
    let expected: Vec<(ConnId, String, u8)> = expected
        .iter()
        .map(|(c, id, cause)| (*c, id.to_string(), *cause))
        .collect();
    assert_eq!(
        released, expected,
        "the *81 creator's member too: {:?}",
        n.sent
    );
    assert_eq!(
        n.closed,
        [
            (c1, SHUTDOWN_REASON.to_string()),
            (c2, SHUTDOWN_REASON.to_string())
        ]
    );
    let removed = n
        .applied
        .iter()
        .filter(|op| matches!(op, MediaOp::RemoveLeg { .. }))
        .count();
    assert_eq!(removed, 3, "every leg removed");
    let mut byes = 0;
    for e in &mut n.engines {
        assert_eq!((e.leg_count(), e.room_count()), (0, 0));
        while let Some(t) = e.poll_transmit() {
            let bye = scnf_media::rtp::parse_compound(t.data)
                .any(|p| matches!(p, Ok(scnf_media::rtp::RtcpPacket::Bye(_))));
            byes += usize::from(bye);
        }
    }
    assert_eq!(byes, 3, "one BYE per leg");
    assert_eq!(n.session.conference().channels_used(), 0);
    // Whatever still arrives is turned away.
    n.sent.clear();
    n.setup(c1, "late", "10#", 4008);
    n.run_media();
    assert!(
        matches!(&n.sent[..], [(_, ServerMsg::Release { cause: 41, .. }, _)]),
        "{:?}",
        n.sent
    );
    let c3 = n.open(3);
    n.collect();
    assert_eq!(n.closed.last(), Some(&(c3, SHUTDOWN_REASON.to_string())));
    assert!(n.held.is_empty());
}

#[test]
fn a_shutdown_while_a_leg_is_being_added_waits_for_it_then_releases_the_call() {
    let mut n = Node::new(None);
    let c = n.open(1);
    n.setup(c, "a", "*210#", 4000);
    assert!(n.session.is_waiting());
    n.session.handle_shutdown(SHUTDOWN_CAUSE);
    n.collect();
    assert!(n.closed.is_empty(), "deferred behind the outstanding add");
    n.run_media();
    let kinds: Vec<(String, u8)> = n
        .take_sent()
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::Release { call, cause, .. } => Some((call, cause)),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [("a".to_string(), 41)]);
    assert_eq!(n.closed, [(c, SHUTDOWN_REASON.to_string())]);
    assert_eq!(n.engines.iter().map(Engine::leg_count).sum::<usize>(), 0);
}

/// A session's budgets with no limits at all (what the fairness tests isolate).
const UNLIMITED: Budgets = Budgets {
    requests: Rate::UNLIMITED,
    reports: Rate::UNLIMITED,
};

#[test]
fn ten_thousand_status_cost_two_snapshot_rounds_and_another_health_waits_for_no_more() {
    let mut n = Node::with_budgets(None, UNLIMITED);
    let flood = n.open(1);
    let other = n.open(2);
    for i in 0..10_000 {
        let v = json!({"mt": "Status", "src": format!("s{i}")});
        n.session.handle_text(n.now, flood, &v.to_string());
    }
    let v = json!({"mt": "Health", "src": "h"});
    n.session.handle_text(n.now, other, &v.to_string());
    n.run_media();
    // Before coalescing: one round per request, 10,001 rounds of two workers each,
    // with the Health behind all of them.
    let snapshots = n
        .applied
        .iter()
        .filter(|op| matches!(op, MediaOp::Snapshot { .. }))
        .count();
    assert_eq!(snapshots, 4, "two rounds of one snapshot per worker");
    assert_eq!(n.sent.len(), 10_001, "every request is answered");
    let mut flood_answers = Vec::new();
    for (conn, m, src) in &n.sent {
        let src = src.clone().unwrap_or_default();
        if *conn == other {
            assert!(matches!(m, ServerMsg::HealthResult { .. }), "{m:?}");
            assert_eq!(src, "h");
            continue;
        }
        let kind = match m {
            ServerMsg::StatusResult { .. } => "status",
            // A round's answers must fit the session's outbound queue: at most
            // MAX_PENDING_REPORTS wait at once, the rest are refused at once.
            ServerMsg::Error { error, .. } if error == RATE_LIMITED => "limited",
            other => panic!("{other:?}"),
        };
        flood_answers.push((src, kind));
    }
    let statuses: Vec<&str> = flood_answers
        .iter()
        .filter(|(_, k)| *k == "status")
        .map(|(s, _)| s.as_str())
        .collect();
    let want: Vec<String> = (0..MAX_PENDING_REPORTS).map(|i| format!("s{i}")).collect();
    assert_eq!(
        statuses, want,
        "one session's answers keep its requests' order"
    );
    assert_eq!(flood_answers.len(), 10_000);
}

#[test]
fn a_session_over_its_budget_is_refused_with_rate_limited_and_the_others_are_not() {
    let budgets = Budgets {
        requests: Rate {
            per_second: 10,
            burst: 5,
        },
        reports: Rate {
            per_second: 2,
            burst: 2,
        },
    };
    let mut n = Node::with_budgets(None, budgets);
    let greedy = n.open(1);
    let other = n.open(2);
    for i in 0..20 {
        let v = json!({"mt": "Hold", "call": "nope", "src": format!("q{i}")});
        n.text(greedy, v);
    }
    let refused: Vec<(ServerMsg, Option<String>)> = n
        .sent
        .drain(..)
        .map(|(conn, m, src)| {
            assert_eq!(conn, greedy);
            (m, src)
        })
        .collect();
    assert_eq!(refused.len(), 20, "every request is answered: {refused:?}");
    for (i, (m, src)) in refused.iter().enumerate() {
        let ServerMsg::Error { error, of, call } = m else {
            panic!("an error: {m:?}");
        };
        let want = if i < 5 {
            "unknown call \"nope\""
        } else {
            RATE_LIMITED
        };
        assert_eq!(error, want, "request {i}");
        assert_eq!(
            (of.as_deref(), call.as_deref()),
            (Some("Hold"), Some("nope"))
        );
        assert_eq!(src.as_deref(), Some(format!("q{i}").as_str()));
    }
    // Another session has its own budget, and sees the refusals counted.
    n.text(other, json!({"mt": "Health", "src": "h"}));
    let (conn, m, _) = n.sent.pop().expect("an answer");
    assert_eq!(conn, other);
    let ServerMsg::HealthResult { control, .. } = m else {
        panic!("a HealthResult: {m:?}");
    };
    assert_eq!((control.rate_limited, control.sessions), (15, 2));
    // Half a second refills five requests; reports have their own, tighter budget.
    n.now += Duration::from_millis(500);
    n.sent.clear();
    for _ in 0..4 {
        n.text(greedy, json!({"mt": "Status"}));
    }
    let kinds: Vec<&str> = n
        .sent
        .iter()
        .map(|(_, m, _)| match m {
            ServerMsg::StatusResult { .. } => "status",
            ServerMsg::Error { error, .. } if error == RATE_LIMITED => "limited",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["status", "status", "limited", "limited"]);
}

/// One RFC 4733 packet that starts and ends `key` (a new event per timestamp).
fn telephone_event(seq: u16, ts: u32, key: u8) -> [u8; 16] {
    let mut pkt = [0u8; 16];
    scnf_media::rtp::RtpHeader {
        marker: true,
        payload_type: 101,
        sequence: seq,
        timestamp: ts,
        ssrc: 0x5eed,
    }
    .write(&mut pkt)
    .expect("room for the header");
    pkt[12] = key;
    pkt[13] = 0x80 | 10;
    pkt[14..16].copy_from_slice(&160u16.to_be_bytes());
    pkt
}

#[test]
fn a_phone_toggling_listen_modes_as_fast_as_it_can_yields_its_digit_budget_and_is_counted() {
    let mut n = Node::new(None);
    let c = n.open(1);
    // The phone at 198.51.100.1:4000 (telephone-events) and a second member, both on
    // worker 0.
    let v = json!({"mt": "Setup", "call": "c1", "called": "*210#",
        "media": {"address": "198.51.100.1", "port": 4000, "telephone_event": 101,
                  "codecs": [{"name": "PCMU", "pt": 0, "rate": 8000}]}});
    n.text(c, v);
    n.setup(c, "c2", "10#", 4002);
    n.run_media();
    n.sent.clear();
    let leg = n.session.calls[&CallRef(1)].leg.expect("a leg").id;
    let phone: SocketAddr = "198.51.100.1:4000".parse().unwrap();
    // `*21#*6#` over and over, one digit every 5 ms for 10 s: 2,000 digits, 250
    // toggles each way.
    let keys: Vec<u8> = "*21#*6#"
        .bytes()
        .map(|k| match k {
            b'*' => 10,
            b'#' => 11,
            d => d - b'0',
        })
        .collect();
    let start = n.now;
    let digits = 2_000u32;
    for i in 0..digits {
        n.now = start + Duration::from_millis(5 * u64::from(i));
        let key = keys[i as usize % keys.len()];
        let pkt = telephone_event(i as u16, 160 * i, key);
        n.engines[0].handle_datagram(n.now, phone, crate::engine::Via::Rtp, &pkt);
        while let Some(event) = n.engines[0].poll_event() {
            n.session.handle_engine_event(n.now, event);
            n.run_media();
        }
    }
    let events = n.sent.iter().filter(|(_, m, _)| m.is_event()).count();
    let stats = n.engines[0].leg_stats(leg).expect("the leg");
    assert_eq!(stats.dtmf_digits, u64::from(digits), "every digit is seen");
    // 32 at once, then 16 a second for the 10 s: at most 192 digits get through.
    let passed = stats.dtmf_digits - stats.dtmf_dropped;
    assert!(passed <= 32 + 16 * 10, "{passed} digits passed");
    assert!(
        passed >= 32 + 16 * 9,
        "the budget passes its rate: {passed}"
    );
    // Each `*21#` or `*6#` (4 or 3 digits) yields a listen-mode event and the other
    // member's mute change: at most 2 events per 3 digits that got through.
    assert!(events > 0, "the toggles that got through are heard");
    // The drops are counted, and a controller sees them in Status.
    n.sent.clear();
    n.text(c, json!({"mt": "Status"}));
    let Some((_, ServerMsg::StatusResult { rooms, .. }, _)) = n.sent.pop() else {
        panic!("a StatusResult: {:?}", n.sent);
    };
    let phone_member = rooms[0]
        .members
        .iter()
        .find(|m| m.call == "c1")
        .expect("the phone is a member");
    assert_eq!(phone_member.counters.dtmf_dropped, stats.dtmf_dropped);
    assert!(stats.dtmf_dropped >= u64::from(digits) - 192);
    assert!(
        events as u64 <= 2 * passed.div_ceil(3),
        "{events} events for {passed} digits"
    );
}

#[test]
fn lost_node_events_are_told_to_every_logged_in_session_in_order() {
    let mut n = Node::new(Some(SECRET));
    let a = n.open(1);
    let b = n.open(2);
    let stranger = n.open(3);
    n.login(a);
    n.login(b);
    n.sent.clear();
    // Told after whatever the root was doing when they were lost.
    n.setup(a, "c1", "*210#", 4000);
    n.session.handle_events_lost(17);
    n.run_media();
    let told: Vec<ConnId> = n
        .sent
        .iter()
        .filter(|(_, m, _)| matches!(m, ServerMsg::EventsLost { lost: 17 }))
        .map(|(c, _, _)| *c)
        .collect();
    assert_eq!(told, [a, b], "not {stranger:?}, who has not logged in");
    let connect = n
        .sent
        .iter()
        .position(|(_, m, _)| matches!(m, ServerMsg::Connect { .. }))
        .expect("the setup connects");
    let lost = n
        .sent
        .iter()
        .position(|(_, m, _)| matches!(m, ServerMsg::EventsLost { .. }))
        .expect("told");
    assert!(
        connect < lost,
        "deferred while the leg was added: {:?}",
        n.sent
    );
}

#[test]
fn sessions_the_node_closed_are_counted_by_reason_in_status_and_health() {
    let mut n = Node::new(None);
    let c = n.open(1);
    for reason in ["idle timeout", "not reading", "idle timeout"] {
        n.session.note_closed(reason);
    }
    // A transport sending ever new texts cannot grow the table without bound.
    for i in 0..100 {
        n.session.note_closed(&format!("reason {i}"));
    }
    let ServerMsg::HealthResult { control, .. } = report(&mut n, c, "Health") else {
        panic!("a HealthResult");
    };
    assert_eq!(control.closed.get("idle timeout"), Some(&2));
    assert_eq!(control.closed.get("not reading"), Some(&1));
    assert_eq!(
        control.closed.len(),
        17,
        "16 reasons and other: {control:?}"
    );
    assert_eq!(control.closed.values().sum::<u64>(), 103);
    let ServerMsg::StatusResult { control: same, .. } = report(&mut n, c, "Status") else {
        panic!("a StatusResult");
    };
    assert_eq!(same, control);
}
