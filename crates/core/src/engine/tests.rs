//! Deterministic scenario tests: the engine, fake peers and a seeded network on a
//! virtual clock. Nothing sleeps; every run is the same run.

use super::*;
use scnf_media::codec::{CodecKind, Decoder, Encoder, FRAME_SAMPLES, MAX_FRAME_PAYLOAD};
use scnf_media::netsim::{Jitter, Loss, Path, PathConfig};
use scnf_media::probe::{level_dbfs, Tone};
use scnf_media::rtp::{self, RtpHeader, RtpPacket};

use scnf_media::probe::TONES;

mod encode_once;

enum Src {
    Tone(Tone),
    /// Plays these samples once, then silence.
    Samples(Vec<i16>, usize),
    Noise(Rng),
    Silent,
}

struct Peer {
    addr: SocketAddr,
    codec: CodecKind,
    leg: LegId,
    src: Src,
    enc: Encoder,
    dec: Decoder,
    seq: u16,
    ts: u32,
    up: Path,
    down: Path,
    sent: Vec<Vec<u8>>,
    heard: Vec<i16>,
    heard_payloads: Vec<Vec<u8>>,
    first_ts: Option<u32>,
}

struct Harness {
    engine: Engine,
    now: Instant,
    next_send: Instant,
    peers: Vec<Peer>,
    /// When set, each mix tick runs up to this late (drawn per tick), as a busy
    /// machine's timer would.
    tick_lateness: Option<(Duration, Rng, Duration)>,
}

fn config(now: Instant) -> EngineConfig {
    EngineConfig {
        media_timeout: Some(Duration::from_secs(2)),
        ..EngineConfig::new("test", (now, Duration::from_secs(1_700_000_000)))
    }
}

impl Harness {
    fn new() -> Harness {
        let now = scnf_media::testclock::anchor();
        let mut engine = Engine::new(config(now), 7);
        engine.open_room(now, MixId(1)).unwrap();
        Harness {
            engine,
            now,
            next_send: now,
            peers: Vec::new(),
            tick_lateness: None,
        }
    }

    fn join(&mut self, codec: CodecKind, src: Src, path: PathConfig) -> usize {
        self.join_with(codec, src, path, None)
    }

    /// Joins a peer whose leg negotiated telephone-events on `telephone_event_pt`.
    fn join_with(
        &mut self,
        codec: CodecKind,
        src: Src,
        path: PathConfig,
        telephone_event_pt: Option<u8>,
    ) -> usize {
        let i = self.peers.len();
        let addr: SocketAddr = format!("192.0.2.{}:{}", i + 1, 5000 + 2 * i)
            .parse()
            .unwrap();
        let leg = LegId(100 + i as u64);
        let spec = LegSpec {
            telephone_event_pt,
            ..LegSpec::new(addr, codec)
        };
        self.engine.add_leg(self.now, MixId(1), leg, spec).unwrap();
        self.peers.push(Peer {
            addr,
            codec,
            leg,
            src,
            enc: Encoder::new(codec).unwrap(),
            dec: Decoder::new(codec).unwrap(),
            seq: 65_000, // wraps during the test
            ts: u32::MAX - 10_000,
            // Impairments apply on the way into the node, the direction it must cope
            // with; the way back is clean so the peer records exactly what was sent.
            up: Path::new(path, 11 + i as u64),
            down: Path::new(PathConfig::default(), 101 + i as u64),
            sent: Vec::new(),
            heard: vec![0; 8000 * 30],
            heard_payloads: Vec::new(),
            first_ts: None,
        });
        i
    }

    /// Runs the virtual world for `d`.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            // Next thing to happen.
            let mut t = self.next_send;
            let late = self.tick_lateness.as_ref().map_or(Duration::ZERO, |l| l.2);
            if let Some(e) = self.engine.poll_timeout() {
                t = t.min(e + late);
            }
            for p in &self.peers {
                for a in [p.up.next_arrival(), p.down.next_arrival()]
                    .into_iter()
                    .flatten()
                {
                    t = t.min(a);
                }
            }
            self.now = t.max(self.now);
            if self.now >= self.next_send {
                for p in &mut self.peers {
                    p.send(self.now);
                }
                self.next_send += TICK;
            }
            for p in &mut self.peers {
                while let Some((_, data)) = p.up.poll(self.now) {
                    self.engine
                        .handle_datagram(self.now, p.addr, Via::Rtp, data);
                }
            }
            if self
                .engine
                .poll_timeout()
                .is_some_and(|e| e + late <= self.now)
            {
                self.engine.handle_timeout(self.now);
                if let Some((max, rng, next)) = &mut self.tick_lateness {
                    *next = max.mul_f64(rng.next_f64());
                }
            }
            while let Some(t) = self.engine.poll_transmit() {
                if t.via != Via::Rtp {
                    continue;
                }
                if let Some(p) = self.peers.iter_mut().find(|p| p.addr == t.dst) {
                    p.down.send(self.now, t.data);
                }
            }
            for p in &mut self.peers {
                while let Some((_, data)) = p.down.poll(self.now) {
                    let data = data.to_vec();
                    p.receive(&data);
                }
            }
        }
    }

    /// Level of every peer's tone in what peer `i` heard, over [from, to) seconds of
    /// its received timeline.
    fn levels(&self, i: usize, from: usize, to: usize) -> Vec<f64> {
        let w = &self.peers[i].heard[from * 8000..to * 8000];
        TONES[..self.peers.len().min(TONES.len())]
            .iter()
            .map(|&f| level_dbfs(w, f))
            .collect()
    }
}

impl Peer {
    fn send(&mut self, now: Instant) {
        let mut pcm = [0i16; FRAME_SAMPLES];
        match &mut self.src {
            Src::Tone(t) => t.fill(&mut pcm),
            Src::Noise(rng) => {
                for s in pcm.iter_mut() {
                    *s = (rng.below(6001) as i32 - 3000) as i16;
                }
            }
            Src::Samples(x, pos) => {
                let n = FRAME_SAMPLES.min(x.len().saturating_sub(*pos));
                pcm[..n].copy_from_slice(&x[*pos..*pos + n]);
                *pos += n;
            }
            Src::Silent => {}
        }
        let mut pkt = [0u8; 12 + MAX_FRAME_PAYLOAD];
        let n = self.enc.encode(&pcm, &mut pkt[12..]).unwrap();
        RtpHeader {
            marker: false,
            payload_type: self.codec.static_payload_type().unwrap_or(96),
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: 0xabc0 + self.addr.port() as u32,
        }
        .write(&mut pkt)
        .unwrap();
        self.sent.push(pkt[12..12 + n].to_vec());
        self.up.send(now, &pkt[..12 + n]);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.codec.frame_ts());
    }

    fn receive(&mut self, data: &[u8]) {
        let p = RtpPacket::parse(data).expect("the engine sends valid RTP");
        self.heard_payloads.push(p.payload.to_vec());
        let t0 = *self.first_ts.get_or_insert(p.timestamp);
        let at =
            p.timestamp.wrapping_sub(t0) as usize / (self.codec.rtp_clock_rate() / 8000) as usize;
        let mut pcm = [0i16; 960];
        if let Ok(n) = self.dec.decode(p.payload, &mut pcm) {
            if at + n <= self.heard.len() {
                self.heard[at..at + n].copy_from_slice(&pcm[..n]);
            }
        }
    }
}

/// Judges seconds 6-9 of the call (runs must last 9 s): by then every playout has
/// converged from its start delay, whose one or two 20 ms skips break a tone's phase
/// and so lower its measured level.
fn assert_n_minus_one(h: &Harness, max_level_error_db: f64) {
    for i in 0..h.peers.len() {
        let levels = h.levels(i, 6, 9);
        for (j, &l) in levels.iter().enumerate() {
            if j == i {
                continue;
            }
            assert!(
                (l - -20.0).abs() < max_level_error_db,
                "peer {i} ({:?}) hears peer {j} at {l:.1} dBFS",
                h.peers[i].codec
            );
            assert!(
                l - levels[i] >= 60.0,
                "peer {i} hears its own tone at {:.1} dBFS, only {:.1} dB below peer {j}",
                levels[i],
                l - levels[i]
            );
        }
    }
}

fn five_in_mixed_codecs(h: &mut Harness, path: PathConfig) {
    let codecs = [
        CodecKind::Pcma,
        CodecKind::Pcmu,
        CodecKind::G722,
        CodecKind::Pcma,
        CodecKind::Pcmu,
    ];
    for (i, c) in codecs.into_iter().enumerate() {
        h.join(c, Src::Tone(Tone::at_dbfs(TONES[i], -20.0)), path.clone());
    }
}

#[test]
fn every_leg_hears_the_others_and_not_itself_on_a_clean_network() {
    let mut h = Harness::new();
    five_in_mixed_codecs(&mut h, PathConfig::default());
    h.run(Duration::from_secs(9));
    assert_n_minus_one(&h, 1.0);
    assert_eq!(h.engine.stats().late_ticks, 0);
}

#[test]
fn n_minus_one_holds_through_loss_jitter_and_reordering() {
    let mut h = Harness::new();
    let lossy = PathConfig {
        jitter: Jitter::Uniform {
            max: Duration::from_millis(30),
        },
        loss: Loss::Bernoulli { p: 0.05 },
        reorder: 0.05,
        ..PathConfig::default()
    };
    five_in_mixed_codecs(&mut h, lossy);
    h.run(Duration::from_secs(9));
    // Concealment stands in for lost frames: the levels stay within 2 dB.
    assert_n_minus_one(&h, 2.0);
    let s = h.engine.leg_stats(h.peers[0].leg).unwrap();
    assert!(s.concealed_frames > 0, "losses were concealed: {s:?}");
}

/// What the listener hears is sample-for-sample what the talker sent. (mu-law has two
/// codes for zero, 0x7f and 0xff, that decode alike; re-encoding maps both to 0xff,
/// so for mu-law the decoded audio is the bit-exact quantity, for A-law the bytes.)
#[test]
fn a_single_g711_talker_reaches_a_g711_listener_bit_exact() {
    for codec in [CodecKind::Pcma, CodecKind::Pcmu] {
        let mut h = Harness::new();
        let talker = h.join(codec, Src::Noise(Rng::new(3)), PathConfig::default());
        let listener = h.join(codec, Src::Silent, PathConfig::default());
        h.run(Duration::from_secs(3));
        let decode = |p: &[u8]| {
            let mut d = Decoder::new(codec).unwrap();
            let mut pcm = [0i16; FRAME_SAMPLES];
            d.decode(p, &mut pcm).unwrap();
            pcm
        };
        let sent: Vec<_> = h.peers[talker].sent.iter().map(|p| decode(p)).collect();
        let got: Vec<_> = h.peers[listener]
            .heard_payloads
            .iter()
            .map(|p| decode(p))
            .collect();
        let first = got
            .iter()
            .position(|p| sent.contains(p))
            .expect("the listener hears the talker's frames");
        let offset = sent.iter().position(|s| *s == got[first]).unwrap();
        let compared = got.len() - first - 5;
        assert!(compared > 100);
        for k in 0..compared {
            assert_eq!(
                got[first + k],
                sent[offset + k],
                "{codec:?} frame {k} differs"
            );
        }
        if codec == CodecKind::Pcma {
            // A-law codes survive decode and re-encode one to one: same bytes too.
            assert_eq!(
                h.peers[listener].heard_payloads[first + 10],
                h.peers[talker].sent[offset + 10]
            );
        }
    }
}

#[test]
fn garbage_foreign_and_unknown_payloads_are_counted_and_calls_go_on() {
    let mut h = Harness::new();
    five_in_mixed_codecs(&mut h, PathConfig::default());
    h.run(Duration::from_millis(500));
    let stranger: SocketAddr = "198.51.100.9:4000".parse().unwrap();
    let member = h.peers[1].addr;
    let mut rng = Rng::new(99);
    for n in 0..2000 {
        let len = rng.below(300) as usize;
        let junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        h.engine.handle_datagram(h.now, stranger, Via::Rtp, &junk);
        h.engine.handle_datagram(h.now, member, Via::Rtp, &junk);
        h.engine.handle_datagram(h.now, member, Via::Rtcp, &junk);
        // A well-formed packet with a payload type nobody negotiated.
        let mut pkt = [0u8; 20];
        RtpHeader {
            marker: false,
            payload_type: 111,
            sequence: n,
            timestamp: 0,
            ssrc: 0xabc0 + member.port() as u32, // the member's own stream
        }
        .write(&mut pkt)
        .unwrap();
        h.engine.handle_datagram(h.now, member, Via::Rtp, &pkt);
    }
    let s = h.engine.stats();
    assert!(s.foreign >= 2000 && s.malformed > 0, "{s:?}");
    // The member's 6000 datagrams in one instant are a flood: its budget's burst is
    // parsed and counted by kind, the rest is dropped unparsed.
    let m = h.engine.leg_stats(h.peers[1].leg).unwrap();
    assert!(m.unknown_payload_type >= 15, "{m:?}");
    assert!(m.flood_dropped >= 6000 - budget::BURST, "{m:?}");
    h.run(Duration::from_millis(8500));
    assert_n_minus_one(&h, 1.0);
}

#[test]
fn telephone_events_become_exactly_one_digit_each() {
    let mut h = Harness::new();
    let addr: SocketAddr = "192.0.2.50:7000".parse().unwrap();
    let mut spec = LegSpec::new(addr, CodecKind::Pcmu);
    spec.telephone_event_pt = Some(101);
    h.engine.add_leg(h.now, MixId(1), LegId(9), spec).unwrap();
    // Digits 1, 1, # ; each event: 3 updates then the end bit sent three times.
    let mut seq = 0u16;
    for (k, event) in [1u8, 1, 11].into_iter().enumerate() {
        let ts = 1000 + 8000 * k as u32;
        for (dur, end) in [
            (160u16, false),
            (320, false),
            (480, false),
            (640, true),
            (640, true),
            (640, true),
        ] {
            let mut pkt = [0u8; 16];
            RtpHeader {
                marker: dur == 160,
                payload_type: 101,
                sequence: seq,
                timestamp: ts,
                ssrc: 5,
            }
            .write(&mut pkt)
            .unwrap();
            pkt[12] = event;
            pkt[13] = if end { 0x80 | 10 } else { 10 };
            pkt[14..16].copy_from_slice(&dur.to_be_bytes());
            h.engine.handle_datagram(h.now, addr, Via::Rtp, &pkt);
            seq += 1;
        }
    }
    let digits: Vec<char> = std::iter::from_fn(|| h.engine.poll_event())
        .filter_map(|e| match e {
            EngineEvent::Dtmf {
                digit,
                leg: LegId(9),
                ..
            } => Some(digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, vec!['1', '1', '#']);
}

/// Half a second of silence, then each key's tones (both at `dbfs` peak) for 50 ms
/// followed by 50 ms of silence: a person keying a command.
fn keyed_in_band(keys: &str, dbfs: f64) -> Vec<i16> {
    let mut x = vec![0i16; 4000];
    for key in keys.chars() {
        let (row, col) = scnf_media::dsp::dtmf_frequencies(key).expect("a DTMF key");
        let (mut a, mut b) = ([0i16; 400], [0i16; 400]);
        Tone::at_dbfs(row, dbfs).fill(&mut a);
        Tone::at_dbfs(col, dbfs).fill(&mut b);
        x.extend(a.iter().zip(&b).map(|(p, q)| p.saturating_add(*q)));
        x.extend([0i16; 400]);
    }
    x
}

fn dtmf_events(h: &mut Harness) -> Vec<(LegId, char)> {
    std::iter::from_fn(|| h.engine.poll_event())
        .filter_map(|e| match e {
            EngineEvent::Dtmf { leg, digit, .. } => Some((leg, digit)),
            _ => None,
        })
        .collect()
}

#[test]
fn in_band_tones_from_a_leg_without_telephone_events_become_digits() {
    for codec in [CodecKind::Pcmu, CodecKind::G722] {
        let mut h = Harness::new();
        let path = PathConfig {
            jitter: Jitter::Uniform {
                max: Duration::from_millis(10),
            },
            ..PathConfig::default()
        };
        let keyer = h.join(codec, Src::Samples(keyed_in_band("*21#", -10.0), 0), path);
        h.join(
            CodecKind::Pcmu,
            Src::Tone(Tone::at_dbfs(TONES[0], -20.0)),
            PathConfig::default(),
        );
        h.run(Duration::from_secs(2));
        let leg = h.peers[keyer].leg;
        let want: Vec<(LegId, char)> = "*21#".chars().map(|d| (leg, d)).collect();
        assert_eq!(dtmf_events(&mut h), want, "{codec:?}");
        let s = h.engine.leg_stats(leg).unwrap();
        assert_eq!((s.dtmf_digits, s.inband_dtmf_digits), (4, 4), "{codec:?}");
    }
}

#[test]
fn a_leg_that_negotiated_telephone_events_is_not_searched_for_tones() {
    let mut h = Harness::new();
    let keyer = h.join_with(
        CodecKind::Pcmu,
        Src::Samples(keyed_in_band("*21#", -10.0), 0),
        PathConfig::default(),
        Some(101),
    );
    h.run(Duration::from_secs(2));
    assert_eq!(dtmf_events(&mut h), vec![]);
    let s = h.engine.leg_stats(h.peers[keyer].leg).unwrap();
    assert!(s.packets_received > 90, "the tones did arrive: {s:?}");
    assert_eq!((s.dtmf_digits, s.inband_dtmf_digits), (0, 0));
}

#[test]
fn a_latching_leg_follows_its_peer_to_a_new_port_and_others_do_not() {
    let mut h = Harness::new();
    let configured: SocketAddr = "192.0.2.60:8000".parse().unwrap();
    let natted: SocketAddr = "192.0.2.60:31337".parse().unwrap();
    let mut spec = LegSpec::new(configured, CodecKind::Pcmu);
    spec.latching = true;
    h.engine.add_leg(h.now, MixId(1), LegId(60), spec).unwrap();
    let plain: SocketAddr = "192.0.2.61:8000".parse().unwrap();
    h.engine
        .add_leg(
            h.now,
            MixId(1),
            LegId(61),
            LegSpec::new(plain, CodecKind::Pcmu),
        )
        .unwrap();
    let mut pkt = [0u8; 172];
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: 1,
        timestamp: 0,
        ssrc: 77,
    }
    .write(&mut pkt)
    .unwrap();
    h.engine.handle_datagram(h.now, natted, Via::Rtp, &pkt);
    assert_eq!(h.engine.leg_stats(LegId(60)).unwrap().packets_received, 1);
    assert!(std::iter::from_fn(|| h.engine.poll_event()).any(|e| e
        == EngineEvent::Latched {
            room: MixId(1),
            leg: LegId(60),
            remote: natted
        }));
    // The non-latching leg ignores its peer's packets from another port.
    let moved: SocketAddr = "192.0.2.61:9999".parse().unwrap();
    h.engine.handle_datagram(h.now, moved, Via::Rtp, &pkt);
    assert_eq!(h.engine.leg_stats(LegId(61)).unwrap().packets_received, 0);
    assert_eq!(h.engine.stats().foreign, 1);
    // The mix now goes to the latched address.
    h.now += Duration::from_millis(100);
    h.engine.handle_timeout(h.now);
    let dsts: Vec<SocketAddr> =
        std::iter::from_fn(|| h.engine.poll_transmit().map(|t| t.dst)).collect();
    assert!(dsts.contains(&natted) && !dsts.contains(&configured));
}

#[test]
fn rtcp_reports_go_out_every_few_seconds_and_silence_raises_a_media_timeout() {
    let mut h = Harness::new();
    five_in_mixed_codecs(&mut h, PathConfig::default());
    h.run(Duration::from_secs(1));
    let silent: SocketAddr = "192.0.2.70:9000".parse().unwrap();
    h.engine
        .add_leg(
            h.now,
            MixId(1),
            LegId(70),
            LegSpec::new(silent, CodecKind::Pcmu),
        )
        .unwrap();
    let mut reports = 0;
    let mut timeouts = Vec::new();
    let end = h.now + Duration::from_secs(12);
    while h.now < end {
        h.now += TICK;
        h.engine.handle_timeout(h.now);
        while let Some(t) = h.engine.poll_transmit() {
            if t.via == Via::Rtcp && t.dst == SocketAddr::new(silent.ip(), 9001) {
                assert!(scnf_media::rtp::is_rtcp(t.data));
                reports += 1;
            }
        }
        while let Some(e) = h.engine.poll_event() {
            if let EngineEvent::MediaTimeout { leg, .. } = e {
                timeouts.push(leg);
            }
        }
    }
    assert!((2..=4).contains(&reports), "{reports} reports in 12 s");
    assert!(timeouts.contains(&LegId(70)));
}

#[test]
fn a_stalled_worker_skips_ticks_instead_of_bursting() {
    let mut h = Harness::new();
    five_in_mixed_codecs(&mut h, PathConfig::default());
    h.run(Duration::from_secs(1));
    let ticks = h.engine.stats().ticks;
    h.now += Duration::from_millis(500);
    h.engine.handle_timeout(h.now);
    let s = h.engine.stats();
    assert_eq!(s.ticks, ticks + 1, "one tick, not 25 in a burst");
    assert!(s.skipped_ticks >= 24 && s.late_ticks >= 1);
    assert!(h.engine.poll_timeout().unwrap() > h.now);
}

#[test]
fn removing_legs_and_closing_rooms_frees_everything() {
    let mut h = Harness::new();
    five_in_mixed_codecs(&mut h, PathConfig::default());
    h.run(Duration::from_millis(500));
    let leg = h.peers[0].leg;
    let stats = h.engine.remove_leg(leg).unwrap();
    assert!(stats.packets_received > 0);
    assert_eq!(h.engine.remove_leg(leg), Err(EngineError::NoSuchLeg(leg)));
    // Its address is free again.
    h.engine
        .add_leg(
            h.now,
            MixId(1),
            LegId(500),
            LegSpec::new(h.peers[0].addr, CodecKind::Pcmu),
        )
        .unwrap();
    assert_eq!(
        h.engine.add_leg(
            h.now,
            MixId(1),
            LegId(501),
            LegSpec::new(h.peers[1].addr, CodecKind::Pcmu)
        ),
        Err(EngineError::RemoteInUse(h.peers[1].addr))
    );
    assert_eq!(h.engine.close_room(MixId(1)).unwrap().len(), 5);
    assert_eq!((h.engine.leg_count(), h.engine.room_count()), (0, 0));
    assert_eq!(h.engine.poll_timeout(), None, "an idle engine has no timer");
}

#[test]
fn a_clean_path_with_a_little_jitter_needs_no_concealment() {
    let mut h = Harness::new();
    let path = PathConfig {
        jitter: Jitter::Uniform {
            max: Duration::from_millis(2),
        },
        ..PathConfig::default()
    };
    let talker = h.join(CodecKind::Pcma, Src::Noise(Rng::new(3)), path.clone());
    h.join(CodecKind::Pcma, Src::Silent, path);
    // The worker's timer fires up to 3 ms late, as on a busy machine.
    h.tick_lateness = Some((Duration::from_millis(3), Rng::new(5), Duration::ZERO));
    h.run(Duration::from_secs(10));
    let s = h.engine.leg_stats(h.peers[talker].leg).unwrap();
    assert_eq!(
        (s.concealed_frames, s.stretched, s.late),
        (0, 0, 0),
        "{s:?}"
    );
}

/// Hostile but well-formed RTP from a member: random sequence numbers, timestamps,
/// SSRCs, markers, payload types and lengths, interleaved with ticks. Nothing
/// panics, and once the peer behaves again the room hears it again.
#[test]
fn a_member_sending_chaotic_rtp_cannot_break_the_room() {
    let mut h = Harness::new();
    five_in_mixed_codecs(&mut h, PathConfig::default());
    h.run(Duration::from_secs(1));
    let victim = h.peers[2].addr; // the G.722 leg: stateful decoder
    let mut rng = Rng::new(2024);
    let mut pkt = [0u8; 1500];
    for n in 0..50_000u32 {
        let len = 12 + rng.below(1400) as usize;
        for b in &mut pkt[12..len] {
            *b = rng.next_u64() as u8;
        }
        let pt = match rng.below(4) {
            0 => 9,
            1 => rtp::PT_CN,
            2 => 101,
            _ => rng.below(128) as u8,
        };
        RtpHeader {
            marker: rng.chance(0.1),
            payload_type: pt,
            sequence: rng.next_u32() as u16,
            timestamp: rng.next_u32(),
            ssrc: if rng.chance(0.05) { rng.next_u32() } else { 7 },
        }
        .write(&mut pkt)
        .unwrap();
        h.engine
            .handle_datagram(h.now, victim, Via::Rtp, &pkt[..len]);
        if n % 50 == 0 {
            h.now += TICK;
            h.engine.handle_timeout(h.now);
            while h.engine.poll_transmit().is_some() {}
            while h.engine.poll_event().is_some() {}
        }
    }
    // The chaos is over: the real peer's stream (new SSRC after the storm's) plays.
    h.next_send = h.now;
    h.run(Duration::from_secs(5));
    // Listener 0's timeline: 1 s before, 20 s of chaos (ticks kept running), 5 s after.
    let levels = h.levels(0, 23, 26);
    assert!(
        (levels[2] - -20.0).abs() < 1.0,
        "the G.722 peer is heard again: {levels:?}"
    );
}
