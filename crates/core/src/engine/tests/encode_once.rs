//! Encode-once: listeners of one codec share the room's encoding, and a talker who
//! stops goes back to it where its peer's decoder cannot hear the seam.

use super::*;

#[test]
fn encode_once_encodes_each_codec_once_per_tick_for_listeners() {
    let mut h = Harness::new();
    h.join(
        CodecKind::Pcmu,
        Src::Tone(Tone::at_dbfs(440.0, -20.0)),
        PathConfig::default(),
    );
    for i in 0..30 {
        let c = if i % 3 == 0 {
            CodecKind::Pcma
        } else {
            CodecKind::Pcmu
        };
        h.join(c, Src::Silent, PathConfig::default());
    }
    h.run(Duration::from_secs(2));
    let before = h.engine.stats().clone();
    h.run(Duration::from_secs(1));
    let s = h.engine.stats();
    let ticks = s.ticks - before.ticks;
    // Per tick: one PCMU and one PCMA shared mix, plus the talker's own (silence).
    assert_eq!(s.encodes - before.encodes, 3 * ticks);
    assert_eq!(s.shared_sends - before.shared_sends, 30 * ticks);
    assert_eq!(
        s.encode_failures, 0,
        "a working encoder is never counted as failing"
    );
}

/// Encoder calls per tick over the next `d` of the run.
fn encodes_per_tick(h: &mut Harness, d: Duration) -> f64 {
    let before = h.engine.stats().clone();
    h.run(d);
    let s = h.engine.stats();
    (s.encodes - before.encodes) as f64 / (s.ticks - before.ticks) as f64
}

/// A room of `talkers` (joined first), then `rounds` times one silent listener of
/// each of `listeners`' codecs, all on clean paths.
fn room(talkers: Vec<(CodecKind, Src)>, listeners: &[CodecKind], rounds: usize) -> Harness {
    let mut h = Harness::new();
    for (codec, src) in talkers {
        h.join(codec, src, PathConfig::default());
    }
    for _ in 0..rounds {
        for &codec in listeners {
            h.join(codec, Src::Silent, PathConfig::default());
        }
    }
    h
}

/// One second of a tone, then silence.
fn a_second_of_tone(hz: f64) -> Src {
    let mut tone = Tone::at_dbfs(hz, -20.0);
    let mut pcm = vec![0; 8000];
    tone.fill(&mut pcm);
    Src::Samples(pcm, 0)
}

#[test]
fn opus_and_g722_listeners_share_one_encoding_per_codec() {
    let talker = (CodecKind::Pcmu, Src::Tone(Tone::at_dbfs(TONES[0], -20.0)));
    let mut h = room(vec![talker], &[CodecKind::Opus, CodecKind::G722], 10);
    h.run(Duration::from_secs(1));
    // The talker's own (silence, nobody else talks), one Opus and one G.722 mix.
    assert_eq!(encodes_per_tick(&mut h, Duration::from_secs(1)), 3.0);
    // Everyone hears the talker: the shared streams decode to its tone.
    for i in 1..h.peers.len() {
        let level = h.levels(i, 1, 2)[0];
        assert!((level + 20.0).abs() < 1.5, "peer {i}: {level:.1} dBFS");
    }
}

#[test]
fn an_opus_talker_who_stops_rejoins_the_shared_stream_once_the_mix_is_silent() {
    let talker = (CodecKind::Opus, a_second_of_tone(440.0));
    let mut h = room(vec![talker], &[CodecKind::Opus], 5);
    h.run(Duration::from_millis(500));
    // Talking: its own stream (the room minus itself) and the listeners' one.
    assert_eq!(encodes_per_tick(&mut h, Duration::from_millis(400)), 2.0);
    // Stopped at 1 s; mixed through the hangover, then three silent frames on both
    // encoders and it is back on the shared stream.
    h.run(Duration::from_millis(1100));
    assert_eq!(encodes_per_tick(&mut h, Duration::from_secs(1)), 1.0);
}

#[test]
fn an_opus_talker_who_stops_in_a_room_that_never_falls_silent_rejoins_at_the_limit() {
    let talkers = vec![
        (CodecKind::Pcmu, Src::Tone(Tone::at_dbfs(440.0, -20.0))),
        (CodecKind::Opus, a_second_of_tone(660.0)),
    ];
    let mut h = room(talkers, &[CodecKind::Opus, CodecKind::Pcmu], 3);
    h.run(Duration::from_secs(2));
    // After its talk the Opus leg keeps its own encoder (with the PCMU talker's own
    // and the two shared mixes): a switch in mid-speech would be heard.
    assert_eq!(encodes_per_tick(&mut h, Duration::from_secs(1)), 4.0);
    // Two seconds after it left the mix it rejoins anyway.
    h.run(Duration::from_secs(1));
    assert_eq!(encodes_per_tick(&mut h, Duration::from_secs(1)), 3.0);
}
