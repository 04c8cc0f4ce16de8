#![no_main]
//! The session root as a controller and its media workers see it: any sequence of
//! connections opening and closing, text frames (arbitrary, or well-formed setups,
//! releases, holds, digits and reports with fuzzed fields), media results that
//! succeed or fail in any order, engine events and timeouts. Invariants: no panic;
//! every output names a connection the root was told about and a worker that
//! exists; once the root is not waiting, the room table never counts more legs than
//! the conference has members.

use libfuzzer_sys::fuzz_target;
use scnf_core::conf::ConfConfig;
use scnf_core::control::auth::LoginConfig;
use scnf_core::engine::{EngineEvent, LegId, MediaResult, MixId};
use scnf_core::session::{ConnId, Output, ReqId, Session, SessionConfig, WorkerAddrs};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WORKERS: usize = 2;

fuzz_target!(|data: &[u8]| {
    let workers: Vec<WorkerAddrs> = (0..WORKERS as u16)
        .map(|w| WorkerAddrs {
            rtp: SocketAddr::from(([127, 0, 0, 1], 20_000 + 2 * w)),
            rtcp: SocketAddr::from(([127, 0, 0, 1], 20_001 + 2 * w)),
        })
        .collect();
    let secret = (data.first().copied().unwrap_or(0) & 1 == 1).then(|| b"s".to_vec());
    let cfg = SessionConfig {
        secret,
        login: LoginConfig::default(),
        conf: ConfConfig::new(1 + u32::from(data.get(1).copied().unwrap_or(0) % 8)),
        login_timeout: Duration::from_secs(30),
        workers,
        own_media: Default::default(),
        budgets: Default::default(),
        resume_grace: Duration::from_millis(50),
    };
    let mut s = Session::new(cfg, [3; 32]);
    let mut now = Instant::now();
    // Connections ever opened (a close may still be deferred while the root waits).
    let mut known: BTreeSet<u64> = BTreeSet::new();
    let mut pending: VecDeque<ReqId> = VecDeque::new();
    const DIAL: &[u8] = b"0123456789*#*12381";
    for rec in data.chunks(8).skip(1) {
        let byte = |i: usize| rec.get(i).copied().unwrap_or(0);
        let conn = ConnId(u64::from(byte(1) % 4));
        let call = format!("c{}", byte(2) % 6);
        let digits: String = rec
            .iter()
            .skip(3)
            .map(|b| DIAL[usize::from(*b) % DIAL.len()] as char)
            .collect();
        let port = 4000 + u16::from(byte(3) % 4);
        match rec[0] % 12 {
            0 => {
                known.insert(conn.0);
                s.handle_open(now, conn, SocketAddr::from(([10, 0, 0, 1], 5000)));
            }
            1 => s.handle_close(now, conn),
            2 => s.handle_text(now, conn, &String::from_utf8_lossy(rec.get(2..).unwrap_or(&[]))),
            3 | 4 => {
                let text = format!(
                    r#"{{"mt":"Setup","call":"{call}","called":"{digits}","complete":{},"media":{{"address":"192.0.2.1","port":{port},"codecs":[{{"name":"PCMA","pt":8,"rate":8000}}]}}}}"#,
                    rec[0] & 0x10 != 0
                );
                s.handle_text(now, conn, &text);
            }
            5 => {
                let mt = ["Release", "Hold", "Retrieve", "Status", "Health"][usize::from(rec[0] >> 4) % 5];
                s.handle_text(now, conn, &format!(r#"{{"mt":"{mt}","call":"{call}"}}"#));
            }
            6 => s.handle_text(
                now,
                conn,
                &format!(r#"{{"mt":"Info","call":"{call}","digits":"{digits}"}}"#),
            ),
            7 | 8 => {
                if let Some(req) = pending.pop_front() {
                    let result = if rec[0] & 0x10 != 0 {
                        MediaResult::Failed("refused".into())
                    } else {
                        MediaResult::Done
                    };
                    s.handle_media_result(now, req, result);
                }
            }
            9 => {
                let event = EngineEvent::Dtmf {
                    room: MixId(1),
                    leg: LegId(u64::from(byte(2) % 8)),
                    digit: digits.chars().next().unwrap_or('#'),
                };
                s.handle_engine_event(now, event);
            }
            10 => s.handle_engine_event(
                now,
                EngineEvent::MediaTimeout {
                    room: MixId(1),
                    leg: LegId(u64::from(byte(2) % 8)),
                },
            ),
            _ => {
                now += Duration::from_millis(u64::from(byte(2)) * 200);
                s.handle_timeout(now);
            }
        }
        while let Some(out) = s.poll_output() {
            match out {
                Output::Send { conn, .. }
                | Output::Close { conn, .. }
                | Output::Login { conn, .. } => {
                    assert!(known.contains(&conn.0), "an output for unknown {conn:?}");
                }
                Output::Media { req, worker, .. } => {
                    assert!(worker < WORKERS);
                    pending.push_back(req);
                }
                Output::Keep { .. } => panic!("a node's root keeps nothing"),
            }
        }
        if !s.is_waiting() {
            let members: usize = s.conference().rooms().iter().map(|r| r.members.len()).sum();
            assert!(s.table().leg_count() <= members, "a leg without a member");
        }
    }
});
