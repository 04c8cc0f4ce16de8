//! What one virtual participant heard: N-1 correctness and mouth-to-ear latency.
//!
//! Every tone talker of a room owns a slot with its own frequency
//! ([`super::source::SLOT_TONES`]). Each received 20 ms frame is decoded and the level
//! of every slot's tone measured with a Goertzel filter over the frame's 160 samples;
//! the tones sit on the 50 Hz grid, so in that window they are exactly orthogonal and
//! one talker's tone never reads as another's.
//!
//! Other participants may send speech, which has energy at every tone's frequency;
//! a tone is only taken as present where its bin stands well above the bins 100 Hz
//! and 150 Hz beside it ([`TONAL_DB`]), which a tone does and broadband sound does not. A talker
//! that should be heard only needs its level: loud speech beside its tone must not
//! make it "missed" (so speech can hide a missing talker, never invent a fault).
//!
//! **N-1.** A talker's state is known from its [`Pattern`]; it counts as *steadily on*
//! (or off) at time `t` when it was on (off) for every frame sent in the last
//! `settle` before `t`, so whatever the node's delay below `settle`, the frame heard
//! at `t` carries that state. In steady-on frames the others' tones must be heard (at
//! most [`HEARD_BELOW_SENT_DB`] below the sent level) and a participant's own tone
//! must not ([`OWN_HEARD_DBFS`]); in steady-off frames a talker must not be heard.
//! Frames in transition are not judged.
//!
//! **Latency.** A talk spurt starts on a frame boundary with the tone at phase zero,
//! and the generator notes when that frame left. When a slot's tone appears in the
//! received audio (present now, absent in the frame before), the frame after is
//! awaited so a full frame of tone is on hand, and the onset is located within the
//! last three frames to a quarter millisecond: a Hann-windowed 8 ms Goertzel slides
//! over them and the onset is the window centre where the tone's amplitude first
//! reaches half its full-frame amplitude (a symmetric window half covered). The
//! sample's "ear time" is its frame's arrival stamp plus its offset in the frame; the
//! latency is ear time minus the time the onset frame left the generator. That is
//! the delay the node adds to a sample; the sender's packetisation and a receiving
//! phone's jitter buffer are not in it. The three frames must be consecutive packets
//! or no latency is taken.

use super::source::Pattern;
use scnf_media::codec::FRAME_SAMPLES;
use scnf_media::dsp::goertzel::GoertzelBank;
use std::f32::consts::PI;
use std::time::{Duration, Instant};

/// A tone this much below its sent level still counts as heard.
pub const HEARD_BELOW_SENT_DB: f32 = 10.0;
/// A participant's own tone above this is "hearing itself".
pub const OWN_HEARD_DBFS: f32 = -45.0;
/// A silent talker above this is a ghost.
pub const GHOST_DBFS: f32 = -40.0;
/// A tone counts as present (an onset, a ghost, one's own voice) only when its bin
/// stands this far above the bins 100 and 150 Hz beside it: speech and noise in the mix
/// are broadband and must not read as a talker's tone.
pub const TONAL_DB: f32 = 12.0;

/// The bins beside a tone that [`tonality`] compares it with, Hz.
const SIDE_BINS: [f32; 4] = [-150.0, -100.0, 100.0, 150.0];

/// Onset window length (8 ms).
const ONSET_WINDOW: usize = 64;
/// Onset window step.
const ONSET_STEP: usize = 2;

/// What a participant expects to hear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A mixer: everyone else, never itself.
    NMinusOne,
    /// A reflector: itself, and nobody else.
    Echo,
}

/// What the analysis needs to know about a room's talker slot.
#[derive(Clone, Copy, Debug)]
pub struct SlotView {
    /// The participant talking in this slot.
    pub participant: usize,
    /// When its frame 0 was due.
    pub start: Instant,
    /// Its pattern and the pattern's offset in frames.
    pub pattern: Pattern,
    pub offset: u64,
    /// When its two latest talk spurts started (latest first).
    pub onsets: [Option<Instant>; 2],
}

impl SlotView {
    /// The talker's state if it was the same for every frame sent in
    /// `(t - settle, t]`; `None` when it changed or the talker is newer than that.
    fn steady(&self, t: Instant, settle: Duration) -> Option<bool> {
        let from = t.checked_sub(settle)?.checked_duration_since(self.start)?;
        let to = t.checked_duration_since(self.start)?;
        let k1 = from.as_micros() as u64 / 20_000;
        let k2 = to.as_micros() as u64 / 20_000;
        [true, false]
            .into_iter()
            .find(|&on| self.pattern.constant_over(k1, k2, self.offset, on))
    }
}

/// Frame counts of one participant's ears.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EarCounts {
    /// Frames analysed.
    pub frames: u64,
    /// (Frame, other talker) pairs where that talker was steadily on, and of those
    /// the ones where it was heard.
    pub expected: u64,
    pub heard: u64,
    /// Frames where this participant was itself steadily talking, and of those the
    /// ones where its own tone came back (an N-1 violation; for an echo, expected).
    pub own_expected: u64,
    pub own_heard: u64,
    /// (Frame, talker) pairs where a steadily silent talker was heard.
    pub ghosts: u64,
    /// Onsets found, and those that gave no latency (gap in the packets, no
    /// matching spurt).
    pub onsets: u64,
    pub onsets_unmatched: u64,
}

impl EarCounts {
    pub fn add(&mut self, o: &EarCounts) {
        self.frames += o.frames;
        self.expected += o.expected;
        self.heard += o.heard;
        self.own_expected += o.own_expected;
        self.own_heard += o.own_heard;
        self.ghosts += o.ghosts;
        self.onsets += o.onsets;
        self.onsets_unmatched += o.onsets_unmatched;
    }

    /// Whether what was heard is right for `expect`: at least 95 % of expected
    /// (frame, talker) pairs heard, and never itself (mixer) / at least 95 % of its
    /// own frames back (echo); at most 0.5 % ghosts. `None` when nothing was judged.
    pub fn verdict(&self, expect: Expect) -> Option<bool> {
        let share = |a: u64, b: u64| a as f64 >= 0.95 * b as f64;
        let ghosts_ok =
            self.ghosts as f64 <= 0.005 * (self.expected + self.own_expected).max(1) as f64;
        match expect {
            Expect::NMinusOne => {
                if self.expected + self.own_expected == 0 {
                    return None;
                }
                Some(share(self.heard, self.expected) && self.own_heard == 0 && ghosts_ok)
            }
            Expect::Echo => {
                if self.own_expected == 0 {
                    return None;
                }
                Some(share(self.own_heard, self.own_expected) && ghosts_ok)
            }
        }
    }
}

/// Goertzel level of `freq` in `x` (8 kHz) with optional window, as dBFS of a sine's
/// peak (a full-scale sine of whole periods reads 0).
fn tone_amplitude(x: &[i16], freq: f32, window: Option<&[f32]>) -> f32 {
    let w = 2.0 * PI * freq / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    let mut gain = 0.0f32;
    for (n, &v) in x.iter().enumerate() {
        let wn = window.map_or(1.0, |w| w[n]);
        gain += wn;
        let s = v as f32 * wn + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    2.0 * power.sqrt() / gain.max(1e-9)
}

/// How many dB the level at `freq` stands above the loudest of the bins 100 and
/// 150 Hz either side. A tone on the 50 Hz grid puts nothing in those bins (whole
/// periods in the frame), speech and noise put about as much there as at `freq`;
/// with four neighbours a noise bin rarely stands out by chance.
/// `sides` is the tone's bank of [`SIDE_BINS`].
fn tonality(sides: &mut GoertzelBank<4>, x: &[i16], level: f32) -> f32 {
    let side = amplitudes(sides, x)
        .into_iter()
        .map(dbfs)
        .fold(f32::MIN, f32::max);
    level - side
}

/// [`tone_amplitude`] (unwindowed) of every filter of `bank` over `x` (one frame).
/// The bank runs its Goertzel recursions side by side in one pass; each is one long
/// dependency chain, so four bins cost little more than one (this is most of the
/// generator's analysis time).
fn amplitudes<const N: usize>(bank: &mut GoertzelBank<N>, x: &[i16]) -> [f32; N] {
    bank.clear(0);
    bank.feed(x);
    let n = bank.filled().max(1) as f32;
    std::array::from_fn(|k| 2.0 * bank.power(k).max(0.0).sqrt() / n)
}

/// The filters the ears listen with, for a set of slot tones (at most 16). Made
/// once per media thread, since each filter's coefficients cost trigonometry, and
/// reset for every frame.
#[derive(Clone, Debug)]
pub struct Filters {
    tones: Vec<f64>,
    /// The slot tones, four to a bank.
    levels: Vec<GoertzelBank<4>>,
    /// Per slot, its tone's [`SIDE_BINS`].
    sides: Vec<GoertzelBank<4>>,
}

impl Filters {
    pub fn new(tones: &[f64]) -> Filters {
        let tones = &tones[..tones.len().min(16)];
        let bank = |freqs| GoertzelBank::new(freqs, FRAME_SAMPLES, 8000.0);
        Filters {
            tones: tones.to_vec(),
            levels: tones
                .chunks(4)
                .map(|c| bank(std::array::from_fn(|k| c.get(k).map_or(0.0, |&f| f as f32))))
                .collect(),
            sides: tones
                .iter()
                .map(|&f| bank(SIDE_BINS.map(|d| f as f32 + d)))
                .collect(),
        }
    }

    /// The amplitude of every slot's tone in `pcm`, up to slot `used` (exclusive).
    fn levels(&mut self, pcm: &[i16], used: usize) -> [f32; 16] {
        let mut out = [0.0f32; 16];
        for (chunk, bank) in out
            .chunks_mut(4)
            .zip(&mut self.levels)
            .take(used.div_ceil(4))
        {
            chunk.copy_from_slice(&amplitudes(bank, pcm));
        }
        out
    }
}

fn dbfs(amplitude: f32) -> f32 {
    20.0 * (amplitude.max(1e-3) / 32768.0).log10()
}

/// One participant's ears. See the module docs.
#[derive(Debug)]
pub struct Ears {
    me: usize,
    expect: Expect,
    settle: Duration,
    sent_dbfs: f32,
    /// The last three frames (oldest first), their arrival stamps and sequence numbers.
    pcm: [[i16; FRAME_SAMPLES]; 3],
    at: [Option<Instant>; 3],
    seq: [Option<u16>; 3],
    /// When the first frame arrived: nothing is judged for `settle` after it, while
    /// the node's stream to this participant and its decoder start up.
    first_at: Option<Instant>,
    /// Slots whose tone was present in the latest frame.
    present: u16,
    /// Slots whose onset was seen in the latest frame, to be located with the next.
    pending: u16,
    /// The talk spurt each slot's last latency was taken from: one sample per spurt,
    /// so a tone masked for a moment and found again is not a second onset.
    matched: [Option<Instant>; 16],
    pub counts: EarCounts,
}

impl Ears {
    /// Ears of participant `me`; tones were sent at `sent_dbfs`.
    pub fn new(me: usize, expect: Expect, settle: Duration, sent_dbfs: f32) -> Ears {
        Ears {
            me,
            expect,
            settle,
            sent_dbfs,
            pcm: [[0; FRAME_SAMPLES]; 3],
            at: [None; 3],
            seq: [None; 3],
            first_at: None,
            present: 0,
            pending: 0,
            matched: [None; 16],
            counts: EarCounts::default(),
        }
    }

    /// Analyses one received frame (packet `seq`, arrived `at`); every latency found
    /// goes to `on_latency`.
    pub fn on_frame(
        &mut self,
        pcm: &[i16; FRAME_SAMPLES],
        seq: u16,
        at: Instant,
        slots: &[Option<SlotView>],
        filters: &mut Filters,
        mut on_latency: impl FnMut(Duration),
    ) {
        self.pcm.rotate_left(1);
        self.at.rotate_left(1);
        self.seq.rotate_left(1);
        self.pcm[2] = *pcm;
        self.at[2] = Some(at);
        self.seq[2] = Some(seq);
        self.counts.frames += 1;

        // Every slot's tone in this frame, up to the last slot in use.
        let used = slots.iter().rposition(Option::is_some).map_or(0, |s| s + 1);
        let amps = filters.levels(pcm, used);
        let pending = std::mem::take(&mut self.pending);
        for s in (0..16).filter(|s| pending & (1 << s) != 0) {
            self.locate_onset(s, slots, &filters.tones, amps[s], &mut on_latency);
        }
        let heard_floor = self.sent_dbfs - HEARD_BELOW_SENT_DB;
        let first = *self.first_at.get_or_insert(at);
        let judging = at.saturating_duration_since(first) >= self.settle;
        let mut present = 0u16;
        for (s, slot) in slots.iter().enumerate().take(filters.sides.len()) {
            let Some(slot) = slot else { continue };
            let level = dbfs(amps[s]);
            // How far the bin stands out of its neighbourhood; only computed when
            // the level could count for anything.
            let tonality = if level > OWN_HEARD_DBFS {
                tonality(&mut filters.sides[s], pcm, level)
            } else {
                0.0
            };
            let tonal = tonality >= TONAL_DB;
            let mine = slot.participant == self.me;
            let audible_to_me = !mine || self.expect == Expect::Echo;
            if level >= heard_floor && tonal {
                present |= 1 << s;
                if audible_to_me && self.present & (1 << s) == 0 {
                    self.pending |= 1 << s;
                }
            }
            if !judging {
                continue;
            }
            let steady = slot.steady(at, self.settle);
            if steady == Some(true) {
                if mine {
                    self.counts.own_expected += 1;
                    let bar = if self.expect == Expect::Echo {
                        heard_floor
                    } else {
                        OWN_HEARD_DBFS
                    };
                    self.counts.own_heard += (level > bar && tonal) as u64;
                } else {
                    self.counts.expected += 1;
                    self.counts.heard += (level >= heard_floor) as u64;
                }
            } else if steady == Some(false) && audible_to_me && level > GHOST_DBFS && tonal {
                self.counts.ghosts += 1;
            }
        }
        self.present = present;
    }

    /// Locates the onset of `slot`'s tone in the last three frames; `full` is the
    /// tone's amplitude in the latest one.
    fn locate_onset(
        &mut self,
        slot: usize,
        slots: &[Option<SlotView>],
        tones: &[f64],
        full: f32,
        on_latency: &mut impl FnMut(Duration),
    ) {
        self.counts.onsets += 1;
        let (Some(Some(view)), Some(&freq)) = (slots.get(slot), tones.get(slot)) else {
            self.counts.onsets_unmatched += 1;
            return;
        };
        let consecutive = matches!(self.seq, [Some(a), Some(b), Some(c)]
            if b == a.wrapping_add(1) && c == b.wrapping_add(1));
        let [Some(_), Some(_), Some(_)] = self.at else {
            self.counts.onsets_unmatched += 1;
            return;
        };
        if !consecutive {
            self.counts.onsets_unmatched += 1;
            return;
        }
        let mut buf = [0i16; 3 * FRAME_SAMPLES];
        for (k, f) in self.pcm.iter().enumerate() {
            buf[k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES].copy_from_slice(f);
        }
        let Some(sample) = onset_sample(&buf, freq as f32, full) else {
            self.counts.onsets_unmatched += 1;
            return;
        };
        let frame = (sample as usize / FRAME_SAMPLES).min(2);
        let within = sample - (frame * FRAME_SAMPLES) as f32;
        let Some(at) = self.at[frame] else {
            self.counts.onsets_unmatched += 1;
            return;
        };
        let ear = at + Duration::from_secs_f32(within.max(0.0) / 8000.0);
        let sent = view.onsets.iter().flatten().copied().find(|&t| t <= ear);
        match sent {
            Some(t) if ear - t <= self.settle && self.matched.get(slot) != Some(&Some(t)) => {
                if let Some(m) = self.matched.get_mut(slot) {
                    *m = Some(t);
                }
                on_latency(ear - t);
            }
            _ => self.counts.onsets_unmatched += 1,
        }
    }
}

/// The sample (fractional) where a tone of amplitude `full` starts in `buf`, or
/// `None` when it never reaches half that amplitude or is already there at the start.
fn onset_sample(buf: &[i16], freq: f32, full: f32) -> Option<f32> {
    let window: [f32; ONSET_WINDOW] = std::array::from_fn(|n| {
        let x = (n as f32 + 0.5) / ONSET_WINDOW as f32;
        0.5 - 0.5 * (2.0 * PI * x).cos()
    });
    let half = full / 2.0;
    let mut prev: Option<(usize, f32)> = None;
    let mut pos = 0;
    while pos + ONSET_WINDOW <= buf.len() {
        let a = tone_amplitude(&buf[pos..pos + ONSET_WINDOW], freq, Some(&window));
        if a >= half && pos == 0 {
            // On from the start: the onset was before these frames (found late,
            // e.g. masked by speech), and where is unknown.
            return None;
        }
        if a >= half {
            // Interpolate between the previous position and this one.
            let centre = pos as f32 + ONSET_WINDOW as f32 / 2.0;
            return Some(match prev {
                Some((_, pa)) if a > pa => centre - ONSET_STEP as f32 * (a - half) / (a - pa),
                _ => centre,
            });
        }
        prev = Some((pos, a));
        pos += ONSET_STEP;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use scnf_media::probe::Tone;

    const SETTLE: Duration = Duration::from_millis(600);

    fn slot(participant: usize, start: Instant, pattern: Pattern) -> SlotView {
        SlotView {
            participant,
            start,
            pattern,
            offset: 0,
            onsets: [Some(start), None],
        }
    }

    /// A mix of the given tones (Hz, starting at the given sample of the stream).
    fn mix(tones: &[(f64, usize)], from: usize, out: &mut [i16; FRAME_SAMPLES]) {
        out.fill(0);
        for &(f, start) in tones {
            let mut t = Tone::at_dbfs(f, -20.0);
            let mut buf = vec![0i16; from + FRAME_SAMPLES];
            t.fill(&mut buf);
            for (n, o) in out.iter_mut().enumerate() {
                if from + n >= start {
                    *o += buf[from + n - start];
                }
            }
        }
    }

    #[test]
    fn bins_side_by_side_read_as_each_bin_alone() {
        let mut pcm = [0i16; FRAME_SAMPLES];
        mix(&[(700.0, 0), (1450.0, 0)], 0, &mut pcm);
        let freqs = [550.0, 700.0, 850.0, 1450.0, 3100.0];
        let together = amplitudes(&mut GoertzelBank::new(freqs, FRAME_SAMPLES, 8000.0), &pcm);
        for (f, a) in freqs.iter().zip(together) {
            let alone = tone_amplitude(&pcm, *f, None);
            assert!(
                (a - alone).abs() <= 1e-3 * alone.max(1.0),
                "{f} Hz: {a} vs {alone}"
            );
        }
        // The tones stand out, their neighbours do not.
        assert!(dbfs(together[1]) > -21.0 && dbfs(together[3]) > -30.0);
        assert!(dbfs(together[0]) < -60.0 && dbfs(together[4]) < -60.0);
    }

    #[test]
    fn a_tone_onset_is_located_to_a_fraction_of_a_millisecond() {
        // Onsets are located from the second frame of tone, so they lie in 109..270.
        for onset in [110usize, 159, 160, 201, 268] {
            let mut buf = [0i16; 480];
            let mut tone = vec![0i16; 480];
            Tone::at_dbfs(850.0, -20.0).fill(&mut tone);
            buf[onset..].copy_from_slice(&tone[..480 - onset]);
            let full = tone_amplitude(&buf[320..], 850.0, None);
            let s = onset_sample(&buf, 850.0, full).unwrap();
            assert!((s - onset as f32).abs() < 2.0, "onset {onset} found at {s}");
        }
    }

    #[test]
    fn the_onset_is_found_beside_another_talker() {
        let mut buf = [0i16; 480];
        let mut a = vec![0i16; 480];
        let mut b = vec![0i16; 480];
        Tone::at_dbfs(850.0, -20.0).fill(&mut a);
        Tone::at_dbfs(1250.0, -20.0).fill(&mut b);
        for n in 0..480 {
            buf[n] = b[n] + if n >= 250 { a[n - 250] } else { 0 };
        }
        let full = tone_amplitude(&buf[320..], 850.0, None);
        let s = onset_sample(&buf, 850.0, full).unwrap();
        assert!((s - 250.0).abs() < 3.0, "found at {s}");
    }

    #[test]
    fn listeners_hear_talkers_and_measure_the_delay_while_talkers_miss_only_themselves() {
        let t0 = Instant::now();
        let tones = [500.0, 850.0];
        let mut filters = Filters::new(&tones);
        let talk = Pattern {
            talk_ms: 1000,
            silence_ms: 1000,
        };
        // Participant 0 and 1 talk in slots 0 and 1; participant 2 listens.
        let slots = [Some(slot(0, t0, talk)), Some(slot(1, t0, talk))];
        let delay = Duration::from_micros(43_125); // 345 samples
        let mut ears: Vec<Ears> = (0..3)
            .map(|me| Ears::new(me, Expect::NMinusOne, SETTLE, -20.0))
            .collect();
        let mut latencies = vec![Vec::new(); 3];
        let mut pcm = [0i16; FRAME_SAMPLES];
        // The node's output frames start at 40 ms phase offset + delay handled as a
        // sample shift: frame j covers stream samples [160 j, 160 j + 160) and
        // arrives at t0 + 20 ms (j + 1); the talkers' tones start at stream sample
        // 345 (their onset at t0 heard 43.125 ms later minus the frame's duration).
        for j in 0..100u16 {
            let from = j as usize * FRAME_SAMPLES;
            let at = t0 + Duration::from_millis(20) * j as u32;
            for (me, ear) in ears.iter_mut().enumerate() {
                let heard: Vec<(f64, usize)> = (0..2)
                    .filter(|&s| s != me)
                    .map(|s| (tones[s], delay.as_micros() as usize * 8 / 1000))
                    .collect();
                // Talk stops after 1 s: model it by cutting the tones off there.
                if from < 8000 {
                    mix(&heard, from, &mut pcm);
                } else {
                    pcm.fill(0);
                }
                ear.on_frame(&pcm, j, at, &slots, &mut filters, |l| latencies[me].push(l));
            }
        }
        for (me, ear) in ears.iter().enumerate() {
            let c = ear.counts;
            assert_eq!(c.own_heard, 0, "{me}: {c:?}");
            assert!(c.expected > 0 && c.heard == c.expected, "{me}: {c:?}");
            assert_eq!(c.ghosts, 0, "{me}: {c:?}");
            assert_eq!(c.verdict(Expect::NMinusOne), Some(true));
        }
        assert_eq!(ears[0].counts.own_expected, ears[0].counts.expected);
        assert_eq!(latencies[2].len(), 2);
        assert_eq!(latencies[0].len(), 1);
        for l in latencies.iter().flatten() {
            let err = l.as_secs_f64() - delay.as_secs_f64();
            assert!(err.abs() < 0.000_3, "latency {l:?}");
        }
    }

    #[test]
    fn hearing_oneself_or_missing_a_talker_fails_the_verdict() {
        let t0 = Instant::now();
        let tones = [500.0, 850.0];
        let mut filters = Filters::new(&tones);
        let slots = [
            Some(slot(0, t0, Pattern::ALWAYS)),
            Some(slot(1, t0, Pattern::ALWAYS)),
        ];
        // Participant 0 hears itself and participant 1.
        let mut both = Ears::new(0, Expect::NMinusOne, SETTLE, -20.0);
        // Participant 1 hears nobody.
        let mut deaf = Ears::new(1, Expect::NMinusOne, SETTLE, -20.0);
        let mut pcm = [0i16; FRAME_SAMPLES];
        let silence = [0i16; FRAME_SAMPLES];
        for j in 0..60u16 {
            let at = t0 + Duration::from_millis(20) * j as u32;
            mix(&[(500.0, 0), (850.0, 0)], j as usize * 160, &mut pcm);
            both.on_frame(&pcm, j, at, &slots, &mut filters, |_| {});
            deaf.on_frame(&silence, j, at, &slots, &mut filters, |_| {});
        }
        assert!(both.counts.own_heard > 0);
        assert_eq!(both.counts.verdict(Expect::NMinusOne), Some(false));
        assert_eq!(deaf.counts.heard, 0);
        assert_eq!(deaf.counts.verdict(Expect::NMinusOne), Some(false));
        // An echo expects exactly what `both` got for its own slot.
        let mut echo = Ears::new(0, Expect::Echo, SETTLE, -20.0);
        for j in 0..60u16 {
            let at = t0 + Duration::from_millis(20) * j as u32;
            mix(&[(500.0, 0)], j as usize * 160, &mut pcm);
            echo.on_frame(&pcm, j, at, &slots[..1], &mut filters, |_| {});
        }
        assert_eq!(echo.counts.verdict(Expect::Echo), Some(true));
    }

    #[test]
    fn loud_broadband_sound_is_neither_a_ghost_nor_ones_own_voice() {
        let t0 = Instant::now();
        let tones = [500.0, 850.0];
        let mut filters = Filters::new(&tones);
        let silent = Pattern {
            talk_ms: 0,
            silence_ms: 1000,
        };
        // Participant 0 talks (slot 0), slot 1's talker is silent; participant 0
        // hears loud noise only (someone else's speech, say).
        let slots = [
            Some(slot(0, t0, Pattern::ALWAYS)),
            Some(slot(1, t0, silent)),
        ];
        let mut ears = Ears::new(0, Expect::NMinusOne, SETTLE, -20.0);
        let mut rng = scnf_media::util::Rng::new(7);
        let mut pcm = [0i16; FRAME_SAMPLES];
        let mut got = 0;
        for j in 0..100u16 {
            for x in pcm.iter_mut() {
                *x = (rng.next_f64() * 16000.0 - 8000.0) as i16;
            }
            let at = t0 + Duration::from_millis(20) * j as u32;
            ears.on_frame(&pcm, j, at, &slots, &mut filters, |_| got += 1);
        }
        let c = ears.counts;
        assert!(c.own_expected > 50 && c.own_heard == 0, "{c:?}");
        assert_eq!((c.ghosts, c.onsets, got), (0, 0, 0), "{c:?}");
    }

    #[test]
    fn a_gap_in_the_packets_gives_no_latency() {
        let t0 = Instant::now();
        let tones = [500.0];
        let mut filters = Filters::new(&tones);
        let slots = [Some(slot(0, t0, Pattern::ALWAYS))];
        let mut ears = Ears::new(1, Expect::NMinusOne, SETTLE, -20.0);
        let mut pcm = [0i16; FRAME_SAMPLES];
        let mut got = 0;
        for (j, seq) in [0u16, 1, 2, 5, 6].into_iter().enumerate() {
            if j >= 3 {
                mix(&[(500.0, 0)], j * 160, &mut pcm);
            }
            let at = t0 + Duration::from_millis(20) * j as u32;
            ears.on_frame(&pcm, seq, at, &slots, &mut filters, |_| got += 1);
        }
        assert_eq!(got, 0);
        assert_eq!(ears.counts.onsets, 1);
        assert_eq!(ears.counts.onsets_unmatched, 1);
    }
}
