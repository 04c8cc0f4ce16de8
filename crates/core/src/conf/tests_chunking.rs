//! Chunking independence: how a called number is cut into a Setup and Info pieces
//! never changes what the call does. The vendor's overlap dialing sends digits as they
//! come, a SIP front end often sends the whole number at once; both must meet the same
//! room.

use super::*;
use scnf_media::util::Rng;

/// Everything the conference did that a controller can see, in order.
fn visible(conf: &mut Conference) -> Vec<Output> {
    std::iter::from_fn(|| conf.poll_output()).collect()
}

/// A conference with rooms "10" and "4711" already open (so joins, conflicts and
/// directory matches are exercised), and its outputs drained.
fn conference() -> (Conference, Instant) {
    let now = scnf_media::testclock::anchor();
    let mut conf = Conference::new(ConfConfig::new(40), 7);
    for (i, dial) in ["*210#", "*24711*203#"].iter().enumerate() {
        conf.handle_setup(now, CallRef(100 + i as u64), dial, false)
            .expect("a new call");
    }
    visible(&mut conf);
    (conf, now)
}

/// Dials `pieces` (the first as the Setup, the rest as Infos; sending-complete on the
/// last when `complete`) and returns what became visible.
fn dial(pieces: &[&str], complete: bool) -> Vec<Output> {
    let (mut conf, now) = conference();
    let call = CallRef(1);
    let n = pieces.len();
    conf.handle_setup(now, call, pieces[0], complete && n == 1)
        .expect("a new call");
    for (i, p) in pieces.iter().enumerate().skip(1) {
        // An Info after the decision is refused (the call no longer dials); that is
        // an answer to the Info, not part of the call's outcome.
        let _ = conf.handle_info(now, call, p, complete && i + 1 == n);
    }
    let mut out = visible(&mut conf);
    out.extend(conf.rooms().into_iter().map(|r| {
        Output::Event(ConfEvent::RoomCreated {
            room: format!("{}:{}", r.id, r.members.len()),
            reserve: r.reserve,
            disconnect_control: false,
            remote_connect: false,
            multivideo: true,
        })
    }));
    out
}

/// A random, well-formed `*` command or plain number, with every option kind.
fn random_dial(rng: &mut Rng) -> String {
    let mut s = String::new();
    let plain = rng.chance(0.2);
    if plain {
        s.push_str(["10", "4711", "47", "5"][rng.below(4) as usize]);
        if rng.chance(0.5) {
            s.push('#');
        }
        return s;
    }
    s.push('*');
    s.push(['1', '2', '3'][rng.below(3) as usize]);
    s.push_str(&rng.below(1000).to_string());
    let mut reserve_last = false;
    for _ in 0..rng.below(5) {
        match rng.below(8) {
            0 => s.push_str(&format!("*1{}", 1 + rng.below(60))),
            1 => s.push_str(&format!("*3{}", rng.below(100))),
            2 => s.push_str(&format!("*4{}", rng.below(10))),
            3 => s.push_str(&format!("*5{}", 1 + rng.below(12))),
            4 => s.push_str("*81"),
            5 => s.push_str("*82"),
            6 => s.push_str("*83"),
            _ => {
                // One digit (a value) or two (the end of the command).
                if rng.chance(0.5) {
                    s.push_str(&format!("*2{}", rng.below(10)));
                } else {
                    s.push_str(&format!("*2{:02}", rng.below(100)));
                    reserve_last = true;
                    break;
                }
            }
        }
    }
    if !reserve_last || rng.chance(0.5) {
        s.push('#');
    }
    // Digits after the end of a command are not part of it.
    if rng.chance(0.2) {
        s.push_str("*41#");
    }
    s
}

/// Cuts `s` at random places (at least one piece).
fn random_split<'a>(rng: &mut Rng, s: &'a str) -> Vec<&'a str> {
    let mut cuts: Vec<usize> = (1..s.len()).filter(|_| rng.chance(0.3)).collect();
    cuts.push(s.len());
    let mut pieces = Vec::with_capacity(cuts.len());
    let mut from = 0;
    for to in cuts {
        pieces.push(&s[from..to]);
        from = to;
    }
    pieces
}

#[test]
fn star_two_with_two_digits_ends_the_command_in_one_setup_as_digit_by_digit() {
    let whole = dial(&["*263*205*41#"], false);
    let by_digit: Vec<String> = "*263*205*41#".chars().map(String::from).collect();
    let by_digit: Vec<&str> = by_digit.iter().map(String::as_str).collect();
    assert_eq!(whole, dial(&by_digit, false));
    assert!(
        whole.iter().any(|o| matches!(
            o,
            Output::Event(ConfEvent::RoomCreated { room, reserve: 5, .. }) if room == "63"
        )),
        "room 63 is created with 5 reserved channels: {whole:?}"
    );
    assert!(
        !whole
            .iter()
            .any(|o| matches!(o, Output::Released { call, .. } if *call == CallRef(1))),
        "the call is not released: {whole:?}"
    );
}

#[test]
fn any_split_of_a_dial_string_into_setup_and_infos_gives_the_same_outcome() {
    let mut rng = Rng::new(11);
    for case in 0..3000 {
        let s = random_dial(&mut rng);
        let complete = rng.chance(0.3);
        let whole = dial(&[&s], complete);
        for _ in 0..4 {
            let pieces = random_split(&mut rng, &s);
            assert_eq!(
                dial(&pieces, complete),
                whole,
                "case {case}: {s:?} (complete {complete}) cut as {pieces:?}"
            );
        }
    }
}
