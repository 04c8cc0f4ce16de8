//! Scenario tests of the conference core: the conformance table row by row, then the
//! behaviour the table cannot express (timers, listen modes, remote controls, `*81`).

use super::table::{self, Present};
use super::*;
use scnf_media::testvectors::read_vector;
use std::time::{Duration, Instant};

const A: CallRef = CallRef(1);
const B: CallRef = CallRef(2);
const C: CallRef = CallRef(3);

struct Harness {
    conf: Conference,
    now: Instant,
}

impl Harness {
    fn new(channels: u32) -> Harness {
        Harness {
            conf: Conference::new(ConfConfig::new(channels), 42),
            now: scnf_media::testclock::anchor(),
        }
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.conf.poll_output()).collect()
    }

    fn setup(&mut self, call: CallRef, called: &str, complete: bool) -> Vec<Output> {
        self.conf
            .handle_setup(self.now, call, called, complete)
            .expect("a new call");
        self.drain()
    }

    /// Sets up `call` with `called`, which must connect it; returns the room id.
    fn connect(&mut self, call: CallRef, called: &str) -> String {
        let out = self.setup(call, called, true);
        match table::outcome(call, &out) {
            table::Outcome::Joined(r) | table::Outcome::Created { room: r, .. } => r,
            other => panic!("{called}: {other:?}"),
        }
    }

    fn present(&mut self, rooms: &[Present], next: &mut u64) {
        for p in rooms {
            for i in 0..p.members {
                let dial = if i == 0 {
                    p.create_dial()
                } else {
                    p.join_dial()
                };
                *next += 1;
                let out = self.setup(CallRef(*next), &dial, false);
                assert!(
                    matches!(table::outcome(CallRef(*next), &out), table::Outcome::Joined(ref r) | table::Outcome::Created { room: ref r, .. } if *r == p.id),
                    "present room {p:?} could not be set up with {dial}"
                );
            }
        }
    }

    fn rc(&mut self, call: CallRef, code: u32) -> Vec<Output> {
        self.conf
            .handle_remote_control(call, code)
            .expect("a valid remote control");
        self.drain()
    }

    fn heard(&self, call: CallRef) -> bool {
        self.conf
            .rooms()
            .iter()
            .flat_map(|r| r.members.iter())
            .find(|m| m.call == call)
            .expect("a member")
            .heard
    }
}

#[test]
fn every_row_of_the_conformance_table_holds() {
    let text = String::from_utf8(read_vector("conf-commands.tsv")).expect("UTF-8 table");
    let rows = table::parse(&text).expect("a well-formed table");
    assert!(rows.len() >= 60, "the table lost rows: {}", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let mut h = Harness::new(row.capacity);
        let mut next = 1000;
        h.present(&row.present, &mut next);
        let call = CallRef(1);
        let mut out = h.setup(call, &row.dial, row.complete);
        for info in &row.info {
            // A call already decided rejects further info: that is part of the outcome.
            if h.conf.handle_info(h.now, call, info, false).is_ok() {
                out.extend(h.drain());
            }
        }
        if let Err(e) = row.check(&table::outcome(call, &out)) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_created_room_is_opened_before_its_first_member_and_reported() {
    let mut h = Harness::new(10);
    let out = h.setup(A, "*210*203", false);
    assert_eq!(
        out,
        vec![
            Output::OpenRoom { room: "10".into() },
            Output::Event(ConfEvent::RoomCreated {
                room: "10".into(),
                reserve: 3,
                disconnect_control: false,
                remote_connect: false,
                multivideo: true,
            }),
            Output::AddMember {
                call: A,
                room: "10".into(),
                heard: true,
                receives: true
            },
            Output::Connected {
                call: A,
                room: "10".into(),
                multivideo: true
            },
            Output::Event(ConfEvent::Joined {
                room: "10".into(),
                call: A
            }),
        ]
    );
    assert_eq!(h.conf.call_room(A), Some("10"));
    assert_eq!((h.conf.channels_used(), h.conf.channels_free()), (1, 7));
}

#[test]
fn the_same_seed_gives_the_same_random_room_ids() {
    let ids = |seed| {
        let mut h = Harness {
            conf: Conference::new(ConfConfig::new(10), seed),
            now: scnf_media::testclock::anchor(),
        };
        [A, B, C].map(|c| h.connect(c, "*17*54#"))
    };
    assert_eq!(ids(5), ids(5));
    assert_ne!(ids(5), ids(6));
}

#[test]
fn a_waiting_call_is_released_with_cause_28_after_the_overlap_timeout_from_its_last_digit() {
    let mut h = Harness::new(10);
    h.connect(A, "*2100#");
    assert!(h.setup(B, "1", false).is_empty());
    assert_eq!(h.conf.poll_timeout(), Some(h.now + Duration::from_secs(10)));
    h.now += Duration::from_secs(6);
    h.conf
        .handle_info(h.now, B, "0", false)
        .expect("still dialing");
    assert!(h.drain().is_empty());
    assert_eq!(h.conf.poll_timeout(), Some(h.now + Duration::from_secs(10)));
    h.conf.handle_timeout(h.now + Duration::from_secs(9));
    assert!(h.drain().is_empty(), "not yet due");
    h.conf.handle_timeout(h.now + Duration::from_secs(10));
    assert_eq!(
        h.drain(),
        vec![Output::Released {
            call: B,
            cause: Cause::INVALID_NUMBER
        }]
    );
    assert_eq!(h.conf.poll_timeout(), None);
    assert_eq!(
        h.conf.handle_info(h.now, B, "0", false),
        Err(ConfError::NoSuchCall(B))
    );
}

#[test]
fn a_dialing_call_takes_no_channel_and_a_pbx_release_just_forgets_it() {
    let mut h = Harness::new(1);
    assert!(h.setup(A, "*1", false).is_empty());
    assert_eq!(h.conf.channels_used(), 0);
    h.conf.handle_release(A).expect("known call");
    assert!(
        h.drain().is_empty(),
        "no Released for a release from the PBX"
    );
    assert_eq!(h.conf.poll_timeout(), None);
}

#[test]
fn reserved_channels_are_kept_for_their_room_and_freed_when_it_closes() {
    let mut h = Harness::new(6);
    let room = h.connect(A, "*1*204");
    assert_eq!((h.conf.channels_used(), h.conf.channels_free()), (1, 2));
    h.connect(B, "*2500#");
    h.connect(C, "*2600#");
    let out = h.setup(CallRef(4), "*2700#", false);
    assert_eq!(
        out,
        vec![Output::Released {
            call: CallRef(4),
            cause: Cause::NO_CHANNEL
        }]
    );
    for i in 0..3 {
        assert_eq!(
            h.connect(CallRef(10 + i), &format!("{room}#")),
            room,
            "reserved seat {i}"
        );
    }
    assert_eq!(h.conf.channels_free(), 0);
    h.conf.handle_release(A).expect("member");
    h.drain();
    assert_eq!(
        h.conf.channels_free(),
        0,
        "the seat goes back to the room's reserve"
    );
    assert_eq!(h.conf.channels_reserved(), 1);
    for i in 0..3 {
        h.conf.handle_release(CallRef(10 + i)).expect("member");
    }
    let out = h.drain();
    assert!(out.contains(&Output::CloseRoom { room: room.clone() }));
    assert_eq!(h.conf.channels_free(), 4);
}

#[test]
fn the_last_member_leaving_closes_the_room_after_removing_it() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.conf.handle_release(A).expect("member");
    assert_eq!(
        h.drain(),
        vec![
            Output::RemoveMember { call: A },
            Output::Event(ConfEvent::Left {
                room: "10".into(),
                call: A,
                cause: Cause::NORMAL
            }),
            Output::CloseRoom { room: "10".into() },
            Output::Event(ConfEvent::RoomClosed { room: "10".into() }),
        ]
    );
    assert!(h.conf.rooms().is_empty());
    h.connect(B, "*210#");
}

#[test]
fn disconnect_control_releases_everyone_when_the_creator_leaves() {
    let mut h = Harness::new(4);
    h.connect(A, "*210*81#");
    h.connect(B, "10#");
    h.connect(C, "10#");
    h.conf.handle_release(B).expect("member");
    assert!(!h.drain().contains(&Output::Released {
        call: C,
        cause: Cause::NORMAL
    }));
    h.conf.handle_release(A).expect("member");
    let out = h.drain();
    assert_eq!(out[0], Output::RemoveMember { call: A });
    assert!(!out.contains(&Output::Released {
        call: A,
        cause: Cause::NORMAL
    }));
    assert!(out.contains(&Output::Released {
        call: C,
        cause: Cause::NORMAL
    }));
    assert_eq!(out[out.len() - 2], Output::CloseRoom { room: "10".into() });
    assert_eq!(h.conf.channels_used(), 0);
    assert_eq!(h.conf.handle_release(C), Err(ConfError::NoSuchCall(C)));
}

#[test]
fn without_disconnect_control_the_creator_leaving_keeps_the_room() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.connect(B, "10#");
    h.conf.handle_release(A).expect("member");
    assert!(!h
        .drain()
        .iter()
        .any(|o| matches!(o, Output::Released { .. })));
    assert_eq!(h.conf.call_room(B), Some("10"));
}

#[test]
fn remote_connect_rooms_alert_joiners_until_remote_control_0() {
    let mut h = Harness::new(4);
    h.connect(A, "*210*82#");
    let out = h.setup(B, "10#", false);
    assert_eq!(
        out[..2],
        [
            Output::AddMember {
                call: B,
                room: "10".into(),
                heard: false,
                receives: false
            },
            Output::Alerting {
                call: B,
                room: "10".into()
            },
        ]
    );
    assert_eq!(
        h.conf.channels_used(),
        2,
        "an alerting call takes its channel"
    );
    assert_eq!(
        h.conf.handle_remote_control(A, 0),
        Err(ConfError::NotAlerting(A))
    );
    h.conf.handle_dtmf(h.now, B, '*').expect("member");
    assert!(
        h.drain().is_empty(),
        "digits from alerting calls are ignored"
    );
    assert_eq!(
        h.rc(B, 0),
        vec![
            Output::SetReceives {
                call: B,
                receives: true
            },
            Output::SetHeard {
                call: B,
                heard: true
            },
            Output::Event(ConfEvent::Muted {
                room: "10".into(),
                call: B,
                muted: false
            }),
            Output::Connected {
                call: B,
                room: "10".into(),
                multivideo: true
            },
        ]
    );
    assert_eq!(
        h.conf.handle_remote_control(B, 0),
        Err(ConfError::NotAlerting(B))
    );
}

#[test]
fn multi_video_off_is_reported_in_connected_and_status() {
    let mut h = Harness::new(4);
    h.connect(A, "*210*83#");
    let out = h.setup(B, "10#", false);
    assert!(out.contains(&Output::Connected {
        call: B,
        room: "10".into(),
        multivideo: false
    }));
    assert!(!h.conf.rooms()[0].multivideo);
}

#[test]
fn receive_off_and_on_mute_and_unmute_a_member_for_everyone() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.connect(B, "10#");
    assert_eq!(
        h.rc(B, 25),
        vec![
            Output::SetHeard {
                call: B,
                heard: false
            },
            Output::Event(ConfEvent::Muted {
                room: "10".into(),
                call: B,
                muted: true
            }),
        ]
    );
    assert!(h.rc(B, 25).is_empty(), "no flip, no output");
    assert_eq!(h.rc(B, 24).len(), 2);
    assert!(h.heard(B));
}

#[test]
fn exclusive_listen_mutes_the_others_until_normal_listen() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.connect(B, "10#");
    h.connect(C, "10#");
    let out = h.rc(B, 26);
    assert_eq!(
        out[0],
        Output::Event(ConfEvent::ListenMode {
            room: "10".into(),
            exclusive: Some(B)
        })
    );
    assert!(out.contains(&Output::SetHeard {
        call: A,
        heard: false
    }));
    assert!(out.contains(&Output::SetHeard {
        call: C,
        heard: false
    }));
    assert_eq!(h.conf.rooms()[0].exclusive, Some(B));
    let out = h.rc(A, 27);
    assert_eq!(
        out[0],
        Output::Event(ConfEvent::ListenMode {
            room: "10".into(),
            exclusive: None
        })
    );
    assert!(h.heard(A) && h.heard(B) && h.heard(C));
}

#[test]
fn receive_on_overrides_an_earlier_exclusive_and_a_later_exclusive_overrides_receive_on() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.connect(B, "10#");
    h.connect(C, "10#");
    h.rc(A, 26);
    h.rc(C, 24);
    assert!(h.heard(A) && !h.heard(B) && h.heard(C));
    h.rc(B, 26);
    assert!(!h.heard(A) && h.heard(B) && !h.heard(C));
}

#[test]
fn normal_listen_overrides_an_earlier_receive_off_of_other_members() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.connect(B, "10#");
    h.rc(B, 25);
    h.rc(A, 27);
    assert!(h.heard(B));
}

#[test]
fn in_call_dtmf_star_21_hash_and_star_6_hash_switch_the_listen_mode() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.connect(B, "10#");
    for d in "5*2*21#".chars() {
        h.conf.handle_dtmf(h.now, A, d).expect("member");
    }
    assert!(h.heard(A) && !h.heard(B));
    for d in "*61#*#6#".chars() {
        h.conf.handle_dtmf(h.now, B, d).expect("member");
    }
    assert!(!h.heard(B), "only *6# acts, not *61#, *# or 6#");
    for d in "*6#".chars() {
        h.conf.handle_dtmf(h.now, B, d).expect("member");
    }
    assert!(h.heard(A) && h.heard(B));
    assert_eq!(
        h.conf.handle_dtmf(h.now, B, 'x'),
        Err(ConfError::BadDigit('x'))
    );
}

#[test]
fn hold_mutes_the_member_and_retrieve_restores_the_listen_state() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.connect(B, "10#");
    h.rc(B, 25);
    h.conf.handle_hold(A, true).expect("member");
    assert_eq!(
        h.drain()[0],
        Output::SetHeard {
            call: A,
            heard: false
        }
    );
    h.conf.handle_hold(B, true).expect("member");
    assert!(h.drain().is_empty(), "B was already muted");
    h.conf.handle_hold(B, false).expect("member");
    assert!(
        h.drain().is_empty() && !h.heard(B),
        "retrieve keeps receive off"
    );
    h.conf.handle_hold(A, false).expect("member");
    assert!(h.heard(A));
}

#[test]
fn the_exclusive_member_leaving_returns_the_room_to_normal_listen() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.connect(B, "10#");
    h.rc(A, 26);
    h.conf.handle_release(A).expect("member");
    let out = h.drain();
    assert!(out.contains(&Output::Event(ConfEvent::ListenMode {
        room: "10".into(),
        exclusive: None
    })));
    assert!(out.contains(&Output::SetHeard {
        call: B,
        heard: true
    }));
}

#[test]
fn media_failure_releases_the_call_with_the_given_cause() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.conf
        .handle_media_failed(A, Cause::RESOURCE_UNAVAILABLE)
        .expect("member");
    let out = h.drain();
    assert_eq!(
        out[1],
        Output::Released {
            call: A,
            cause: Cause::RESOURCE_UNAVAILABLE
        }
    );
    assert_eq!(h.conf.channels_used(), 0);
}

#[test]
fn errors_never_change_state() {
    let mut h = Harness::new(4);
    h.connect(A, "*210#");
    h.setup(B, "1", false);
    let before = (
        h.conf.rooms(),
        h.conf.poll_timeout(),
        h.conf.channels_free(),
    );
    let now = h.now;
    let errors = [
        (
            h.conf.handle_setup(now, A, "10#", true),
            ConfError::CallExists(A),
        ),
        (
            h.conf.handle_info(now, C, "1", true),
            ConfError::NoSuchCall(C),
        ),
        (
            h.conf.handle_info(now, A, "1", true),
            ConfError::NotDialing(A),
        ),
        (
            h.conf.handle_remote_control(A, 99),
            ConfError::UnknownRemoteControl(99),
        ),
        (
            h.conf.handle_remote_control(A, 0),
            ConfError::NotAlerting(A),
        ),
        (h.conf.handle_remote_control(B, 26), ConfError::NotInRoom(B)),
        (h.conf.handle_hold(B, true), ConfError::NotInRoom(B)),
        (h.conf.handle_dtmf(now, B, '1'), ConfError::NotInRoom(B)),
        (h.conf.handle_dtmf(now, A, 'z'), ConfError::BadDigit('z')),
        (h.conf.handle_release(C), ConfError::NoSuchCall(C)),
        (
            h.conf.handle_media_failed(C, Cause::NORMAL),
            ConfError::NoSuchCall(C),
        ),
    ];
    for (got, want) in errors {
        assert_eq!(got, Err(want));
    }
    assert!(h.drain().is_empty());
    assert_eq!(
        before,
        (
            h.conf.rooms(),
            h.conf.poll_timeout(),
            h.conf.channels_free()
        )
    );
}

#[test]
fn random_setups_and_releases_never_overbook_and_never_overlap_ids() {
    let mut rng = scnf_media::util::Rng::new(2024);
    for seed in 0..20 {
        let mut h = Harness {
            conf: Conference::new(ConfConfig::new(12), seed),
            now: scnf_media::testclock::anchor(),
        };
        let mut live: Vec<CallRef> = Vec::new();
        for step in 0..400u64 {
            let call = CallRef(seed * 10_000 + step);
            if !live.is_empty() && rng.chance(0.4) {
                let i = rng.below(live.len() as u64) as usize;
                let c = live.swap_remove(i);
                let _ = h.conf.handle_release(c);
            } else {
                let dial = match rng.below(5) {
                    0 => format!(
                        "*1{}*5{}*2{:02}",
                        rng.below(3),
                        1 + rng.below(2),
                        rng.below(5)
                    ),
                    1 => format!("*2{}*2{:02}", rng.below(300), rng.below(4)),
                    2 => format!("*3{}#", rng.below(30)),
                    3 => format!("*1*81*1{}#", 3 + rng.below(10)),
                    _ => format!("{}#", rng.below(300)),
                };
                h.setup(call, &dial, true);
                if h.conf.call_room(call).is_some() {
                    live.push(call);
                }
            }
            h.drain();
            live.retain(|c| h.conf.call_room(*c).is_some());
            let rooms = h.conf.rooms();
            let outstanding: u32 = rooms
                .iter()
                .map(|r| r.reserve.saturating_sub(r.members.len() as u32))
                .sum();
            assert!(
                h.conf.channels_used() + outstanding <= 12,
                "seed {seed} step {step}"
            );
            assert_eq!(h.conf.channels_reserved(), outstanding);
            for (i, a) in rooms.iter().enumerate() {
                for b in &rooms[i + 1..] {
                    assert!(!directory::overlaps(&a.id, &b.id), "{} and {}", a.id, b.id);
                }
            }
        }
    }
}
