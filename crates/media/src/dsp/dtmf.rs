//! In-band DTMF detection: dual tones inside decoded 8 kHz audio, for legs that did
//! not negotiate RFC 4733 telephone-events.
//!
//! # Method
//! [`InbandDtmf`] runs eight Goertzel filters (the four row and four column
//! frequencies) over consecutive blocks of [`BLOCK`] samples, whatever the frame
//! boundaries. Each block yields at most one candidate key, the strongest row and
//! the strongest column, if they pass every check below (each a named constant that
//! gives its reason):
//! - each tone at least [`MIN_TONE_DBFS`];
//! - the column tone at most [`NORMAL_TWIST_DB`] below and at most
//!   [`REVERSE_TWIST_DB`] above the row tone;
//! - the strongest row and column exceed the other rows and columns by
//!   [`ROW_DOMINANCE_DB`] and [`COL_DOMINANCE_DB`];
//! - the two tones carry at least [`TONE_ENERGY_FRACTION`] of the block's energy
//!   (speech and music spread their energy over many partials);
//! - between two consecutive blocks with the same candidate, the phase advance of
//!   each tone's Goertzel output shows its frequency within
//!   [`MAX_FREQ_DEVIATION`] of nominal.
//!
//! The last check is what makes short blocks usable. A block of 88 samples has a
//! frequency resolution of about 90 Hz, far too coarse to tell 697 Hz from
//! 697 Hz + 3.5 % by magnitude. But the complex DFT coefficient of a steady tone
//! turns by `2π·Δf·N/8000` from one block to the next, `Δf` being its offset from
//! the filter's frequency: 0.7 rad for a 1.5 % offset at 697 Hz, 1.7 rad at 3.5 %.
//! Where the offset is large enough for that angle to wrap past π (the upper
//! columns), the magnitude has already fallen so far that the energy check fails.
//!
//! A key is reported when [`BLOCKS_TO_DETECT`] consecutive blocks agree, and only
//! once per press: it can be reported again only after [`BLOCKS_TO_RELEASE`]
//! consecutive blocks without it (a pause) or after another key.
//!
//! # Timing
//! With 88-sample blocks (11 ms) and three agreeing blocks, a block counting only
//! when the tones cover at least [`TONE_ENERGY_FRACTION`] of it: the shortest tone
//! that can be detected lasts `88·(1 + 2·0.75)` = 220 samples (27.5 ms, at the most
//! favourable alignment), and every tone of `88·(2 + 2·0.75)` = 308 samples
//! (38.5 ms) or longer is detected whatever its alignment — so 40 ms tones are always
//! found and tones under 27 ms never are. A 40 ms pause always contains two whole
//! blocks, so it always releases a key. Blocks of 102 or 105 samples (the common
//! choice) cannot give both: two agreeing blocks of 102 would accept 26 ms tones,
//! three would miss some 40 ms ones.
//!
//! # Cost
//! A frame whose energy is below what two minimum-level tones put into a quarter
//! block (see [`InbandDtmf::push_frame_with_energy`]) skips the filters entirely:
//! its blocks count as "no tone". Silent legs, the vast majority on a node, cost
//! one comparison per tick when the caller already knows the frame energy.
//! Otherwise each sample costs eight multiply-adds in `f32` and the steady state
//! never allocates.

use super::goertzel::{Complex, GoertzelBank};
use crate::codec::MIX_RATE;
use std::f32::consts::PI;

/// Samples per analysis block (11 ms at 8 kHz); see the module docs for why 88.
pub const BLOCK: usize = 88;
/// Sample rate of the analysed audio.
const RATE: f32 = MIX_RATE as f32;
/// Row (low group) frequencies, Hz.
pub const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high group) frequencies, Hz.
pub const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Rows then columns: the filters of the bank.
const FREQS: [f32; 8] = [
    ROWS[0], ROWS[1], ROWS[2], ROWS[3], COLS[0], COLS[1], COLS[2], COLS[3],
];
/// Keys in row-major order: `KEYS[row * 4 + col]`.
const KEYS: [char; 16] = [
    '1', '2', '3', 'A', '4', '5', '6', 'B', '7', '8', '9', 'C', '*', '0', '#', 'D',
];

/// Weakest tone accepted, dBFS peak. A G.711 full-scale sine is +3.17 dBm0, so this
/// is about −30 dBm0, the lower edge of what telephones send (−25 dBm0 and below is
/// rare); quieter tones are more likely speech leaking under the threshold.
pub const MIN_TONE_DBFS: f32 = -33.0;
/// How far the column tone may be *weaker* than the row tone, dB ("normal" twist:
/// lines attenuate the high group more).
pub const NORMAL_TWIST_DB: f32 = 8.0;
/// How far the column tone may be *stronger* than the row tone, dB (reverse twist;
/// telephones pre-emphasise the high group by about 2 dB, rarely more).
pub const REVERSE_TWIST_DB: f32 = 4.0;
/// The strongest row must exceed every other row by this much, dB. Adjacent rows are
/// only 73–89 Hz apart, less than the 91 Hz resolution of a block, so a genuine
/// tone 1.5 % off leaks to within 8 dB of its neighbour; 6 dB keeps a margin.
pub const ROW_DOMINANCE_DB: f32 = 6.0;
/// The strongest column must exceed every other column by this much, dB. Columns
/// are more than a bin apart, so a real tone's neighbours sit far lower.
pub const COL_DOMINANCE_DB: f32 = 8.0;
/// Share of the block's energy the two tones must carry. A clean dual tone carries
/// all of it; 1.5 % frequency offsets, codec noise and quieter speech underneath
/// leave it above 0.8. Speech, noise and chords spread energy over many
/// frequencies and stay well below.
pub const TONE_ENERGY_FRACTION: f32 = 0.75;
/// Largest accepted frequency deviation of each tone, as a fraction of its nominal
/// frequency: halfway between the ±1.5 % a receiver must accept and the ±3.5 % it
/// must reject (ITU-T Q.24).
pub const MAX_FREQ_DEVIATION: f32 = 0.025;
/// Consecutive agreeing blocks that make a key (33 ms of tone).
pub const BLOCKS_TO_DETECT: u8 = 3;
/// Consecutive blocks without the key that end a press (22 ms: shorter than the
/// 40 ms minimum pause between keys, longer than a single disturbed block).
pub const BLOCKS_TO_RELEASE: u8 = 2;

/// Counters of a detector, for statistics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InbandStats {
    /// Frames pushed.
    pub frames: u64,
    /// Frames skipped by the energy gate (no filtering done).
    pub gated_frames: u64,
    /// Blocks the filters analysed.
    pub blocks: u64,
    /// Blocks that held a candidate key (passed the level, twist, dominance and
    /// energy checks). On speech these are near misses: a talk-off margin.
    pub key_blocks: u64,
    /// Keys reported.
    pub digits: u64,
}

/// The thresholds in the units the checks compare, computed once per detector.
#[derive(Clone, Debug)]
struct Limits {
    /// Largest phase advance per block, rad, for [`MAX_FREQ_DEVIATION`].
    max_phase: [f32; 8],
    /// Goertzel power of a tone at [`MIN_TONE_DBFS`].
    min_power: f32,
    normal_twist: f32,
    reverse_twist: f32,
    row_dominance: f32,
    col_dominance: f32,
    /// Frame energy below which the filters are skipped.
    gate_energy: f32,
}

impl Limits {
    fn new() -> Limits {
        let n = BLOCK as f32;
        let min_amplitude = 32768.0 * db_to_amplitude(MIN_TONE_DBFS);
        let mut max_phase = [0.0; 8];
        for (m, &f) in max_phase.iter_mut().zip(ROWS.iter().chain(COLS.iter())) {
            *m = 2.0 * PI * MAX_FREQ_DEVIATION * f * n / RATE;
        }
        Limits {
            max_phase,
            // A sine of amplitude A gives |X| = A·N/2.
            min_power: (min_amplitude * n / 2.0).powi(2),
            normal_twist: db_to_power(-NORMAL_TWIST_DB),
            reverse_twist: db_to_power(REVERSE_TWIST_DB),
            row_dominance: db_to_power(ROW_DOMINANCE_DB),
            col_dominance: db_to_power(COL_DOMINANCE_DB),
            // Two minimum-level tones (A²/2 each per sample) over a quarter block.
            gate_energy: min_amplitude * min_amplitude * (BLOCK / 4) as f32,
        }
    }
}

fn db_to_amplitude(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

fn db_to_power(db: f32) -> f32 {
    10f32.powf(db / 10.0)
}

/// The last block that held a candidate key: its key and its two tones' DFT
/// coefficients, for the phase check of the next block.
#[derive(Clone, Copy, Debug)]
struct Prev {
    key: u8,
    row: Complex,
    col: Complex,
}

/// What one block showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockResult {
    None,
    /// A key's tones; `continues` when the previous block held the same key and the
    /// phase advance between them confirms both frequencies.
    Key {
        key: u8,
        continues: bool,
    },
}

/// A streaming in-band DTMF detector; see the module docs. Fixed-size state (no
/// allocation), fed one frame at a time.
#[derive(Clone, Debug)]
pub struct InbandDtmf {
    /// Rows then columns.
    filters: GoertzelBank<8>,
    limits: Limits,
    prev: Option<Prev>,
    /// Key of the current run of agreeing blocks and its length.
    candidate: Option<u8>,
    run: u8,
    /// The key reported and not yet released, and blocks since it was last seen.
    latched: Option<u8>,
    misses: u8,
    /// A second key completed within one long frame, reported by the next call.
    pending: Option<char>,
    stats: InbandStats,
}

impl Default for InbandDtmf {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDtmf {
    pub fn new() -> InbandDtmf {
        InbandDtmf {
            filters: GoertzelBank::new(FREQS, BLOCK, RATE),
            limits: Limits::new(),
            prev: None,
            candidate: None,
            run: 0,
            latched: None,
            misses: 0,
            pending: None,
            stats: InbandStats::default(),
        }
    }

    /// Forgets everything heard so far (a new stream began), keeping the counters.
    pub fn reset(&mut self) {
        let stats = self.stats;
        *self = InbandDtmf {
            stats,
            ..InbandDtmf::new()
        };
    }

    pub fn stats(&self) -> &InbandStats {
        &self.stats
    }

    /// Feeds the next frame of audio; returns a key the moment it is recognised
    /// (`0-9`, `*`, `#`, `A-D`), once per press.
    pub fn push_frame(&mut self, frame: &[i16]) -> Option<char> {
        let energy = frame
            .iter()
            .map(|&x| i64::from(x) * i64::from(x))
            .sum::<i64>();
        self.push_frame_with_energy(frame, energy as u64)
    }

    /// [`InbandDtmf::push_frame`] for a caller that already knows the frame's sum of
    /// squares (the playout computes it for talker detection).
    ///
    /// A frame below the energy of two minimum-level tones over a quarter block
    /// cannot hold enough of a key to matter: it is treated as zeros without running
    /// the filters, which ends the block in progress as "no tone". This can only
    /// lose a tone's first or last quarter block, which the timing in the module
    /// docs allows for.
    pub fn push_frame_with_energy(&mut self, frame: &[i16], energy: u64) -> Option<char> {
        self.stats.frames += 1;
        let mut out = self.pending.take();
        if frame.len() >= BLOCK && (energy as f32) < self.limits.gate_energy {
            self.stats.gated_frames += 1;
            let total = self.filters.filled() + frame.len();
            for _ in 0..total / BLOCK {
                // A block without tones can end a press but never report one.
                let none = self.on_block(BlockResult::None);
                debug_assert!(none.is_none(), "a block without tones reports nothing");
            }
            self.prev = None;
            // The rest of the frame starts the next block as zeros.
            self.filters.clear(total % BLOCK);
            return out;
        }
        let mut rest = frame;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(self.filters.remaining().min(rest.len()));
            self.filters.feed(now);
            rest = later;
            if self.filters.remaining() == 0 {
                let result = self.analyse();
                self.filters.clear(0);
                if let Some(key) = self.on_block(result) {
                    match out {
                        None => out = Some(key),
                        Some(_) => self.pending = Some(key),
                    }
                }
            }
        }
        out
    }

    /// Judges a complete block (see the module docs for the checks).
    fn analyse(&mut self) -> BlockResult {
        self.stats.blocks += 1;
        let b = &self.limits;
        let power: [f32; 8] = std::array::from_fn(|i| self.filters.power(i));
        let row = strongest(&power[..4]);
        let col = 4 + strongest(&power[4..]);
        let (pr, pc) = (power[row], power[col]);
        let dominant = |best: usize, range: std::ops::Range<usize>, margin: f32| {
            range
                .filter(|&i| i != best)
                .all(|i| power[i] * margin <= power[best])
        };
        let ok = pr >= b.min_power
            && pc >= b.min_power
            && pc >= pr * b.normal_twist
            && pc <= pr * b.reverse_twist
            && dominant(row, 0..4, b.row_dominance)
            && dominant(col, 4..8, b.col_dominance)
            // Tone power 2|X|²/N² against mean power E/N.
            && 2.0 * (pr + pc) >= TONE_ENERGY_FRACTION * BLOCK as f32 * self.filters.energy();
        let prev = self.prev.take();
        if !ok {
            return BlockResult::None;
        }
        self.stats.key_blocks += 1;
        let key = (row * 4 + (col - 4)) as u8;
        let now = Prev {
            key,
            row: self.filters.coefficient(row),
            col: self.filters.coefficient(col),
        };
        self.prev = Some(now);
        let continues = prev.is_some_and(|p| {
            p.key == key
                && self.on_frequency(row, p.row, now.row)
                && self.on_frequency(col, p.col, now.col)
        });
        BlockResult::Key { key, continues }
    }

    /// Whether the phase advance from `before` to `after` (consecutive blocks of
    /// filter `i`) puts the tone within [`MAX_FREQ_DEVIATION`] of its frequency.
    fn on_frequency(&self, i: usize, before: Complex, after: Complex) -> bool {
        self.filters.phase_advance(i, before, after).abs() <= self.limits.max_phase[i]
    }

    /// Advances the press logic by one block; returns a newly recognised key.
    fn on_block(&mut self, result: BlockResult) -> Option<char> {
        match result {
            BlockResult::Key { key, continues } => {
                if continues && self.candidate == Some(key) {
                    self.run = self.run.saturating_add(1);
                } else {
                    self.candidate = Some(key);
                    self.run = 1;
                }
            }
            BlockResult::None => {
                self.candidate = None;
                self.run = 0;
            }
        }
        if let Some(latched) = self.latched {
            // A block of the latched key keeps it held even when its phase check
            // failed (a jitter-buffer adjustment can break the phase mid-press).
            if matches!(result, BlockResult::Key { key, .. } if key == latched) {
                self.misses = 0;
            } else {
                self.misses = self.misses.saturating_add(1);
                if self.misses >= BLOCKS_TO_RELEASE {
                    self.latched = None;
                }
            }
        }
        let key = self.candidate?;
        if self.run >= BLOCKS_TO_DETECT && self.latched != Some(key) {
            self.latched = Some(key);
            self.misses = 0;
            self.stats.digits += 1;
            return Some(KEYS[usize::from(key)]);
        }
        None
    }
}

/// Index of the largest value.
fn strongest(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// The row and column frequencies (Hz) of a key (`0-9`, `*`, `#`, `A-D`, either
/// case), e.g. to generate its tones.
pub fn dtmf_frequencies(key: char) -> Option<(f64, f64)> {
    let k = KEYS.iter().position(|&c| c == key.to_ascii_uppercase())?;
    Some((f64::from(ROWS[k / 4]), f64::from(COLS[k % 4])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{CodecKind, FRAME_SAMPLES};
    use crate::dsp::testsignals::*;

    /// Runs `x` through a fresh detector in 160-sample frames (the last one padded
    /// with zeros, then 100 ms of silence) and collects the keys.
    fn detect(x: &[i16]) -> Vec<char> {
        let mut det = InbandDtmf::new();
        detect_with(&mut det, x)
    }

    fn detect_with(det: &mut InbandDtmf, x: &[i16]) -> Vec<char> {
        let mut keys = Vec::new();
        let mut frame = [0i16; FRAME_SAMPLES];
        let tail = [0i16; 5 * FRAME_SAMPLES];
        for chunk in x.chunks(FRAME_SAMPLES).chain(tail.chunks(FRAME_SAMPLES)) {
            frame.fill(0);
            frame[..chunk.len()].copy_from_slice(chunk);
            keys.extend(det.push_frame(&frame));
        }
        keys
    }

    /// `lead` samples of silence, the key's tones for `ms`, 60 ms of silence.
    fn press(
        key: char,
        ms: usize,
        row_db: f64,
        col_db: f64,
        devs: (f64, f64),
        lead: usize,
    ) -> Vec<i16> {
        let (r, c) = dtmf_frequencies(key).expect("a DTMF key");
        let mut x = vec![0.0; lead];
        x.extend(dual(
            r * (1.0 + devs.0),
            c * (1.0 + devs.1),
            row_db,
            col_db,
            ms * 8,
            0.3,
        ));
        x.extend(silence(60));
        to_i16(&x)
    }

    #[test]
    fn every_key_is_detected_once_at_levels_from_minus_5_to_minus_25_dbfs() {
        for (k, &key) in KEYS.iter().enumerate() {
            for level in [-5.0, -10.0, -15.0, -20.0, -25.0] {
                let x = press(key, 60, level, level, (0.0, 0.0), 37 * k);
                assert_eq!(detect(&x), vec![key], "key {key} at {level} dBFS");
            }
        }
    }

    #[test]
    fn keys_are_detected_with_frequencies_up_to_one_and_a_half_percent_off() {
        let offsets = [-0.015, 0.0, 0.015];
        for &key in &KEYS {
            for &dr in &offsets {
                for &dc in &offsets {
                    let x = press(key, 50, -15.0, -15.0, (dr, dc), 50);
                    assert_eq!(detect(&x), vec![key], "key {key} off by {dr}/{dc}");
                }
            }
        }
    }

    #[test]
    fn tones_three_and_a_half_percent_or_more_off_are_rejected() {
        for &key in &KEYS {
            for off in [0.035, -0.035, 0.04, -0.04, 0.05, -0.05] {
                for devs in [(off, 0.0), (0.0, off), (off, off), (off, -off)] {
                    let x = press(key, 100, -15.0, -15.0, devs, 50);
                    assert_eq!(detect(&x), vec![], "key {key} off by {devs:?}");
                }
            }
        }
    }

    #[test]
    fn twist_within_the_limits_is_accepted_and_beyond_them_rejected() {
        // (column level - row level, detected)
        let cases = [
            (0.0, true),
            (-6.0, true),
            (3.0, true),
            (-10.0, false),
            (-12.0, false),
            (6.0, false),
            (8.0, false),
        ];
        for &key in &KEYS {
            for (twist, want) in cases {
                let x = press(key, 60, -12.0, -12.0 + twist, (0.0, 0.0), 11);
                let want = if want { vec![key] } else { vec![] };
                assert_eq!(detect(&x), want, "key {key} with twist {twist} dB");
            }
        }
    }

    #[test]
    fn forty_ms_tones_are_found_at_every_alignment_and_shorter_than_27_ms_never() {
        for &key in &['1', '5', '#', 'D'] {
            for lead in (0..FRAME_SAMPLES).step_by(5) {
                let x = press(key, 40, -10.0, -10.0, (0.0, 0.0), lead);
                assert_eq!(detect(&x), vec![key], "40 ms of {key} after {lead}");
                for ms in [10, 20, 25] {
                    let x = press(key, ms, -10.0, -10.0, (0.0, 0.0), lead);
                    assert_eq!(detect(&x), vec![], "{ms} ms of {key} after {lead}");
                }
            }
        }
    }

    #[test]
    fn tones_below_the_minimum_level_are_ignored() {
        for &key in &KEYS {
            for level in [-40.0, -50.0] {
                let x = press(key, 100, level, level, (0.0, 0.0), 0);
                assert_eq!(detect(&x), vec![], "key {key} at {level} dBFS");
            }
        }
    }

    fn sequence(keys: &str, on_ms: usize, off_ms: usize, dbfs: f64) -> Vec<f64> {
        let mut x = silence(30);
        for key in keys.chars() {
            let (r, c) = dtmf_frequencies(key).expect("a DTMF key");
            x.extend(dual(r, c, dbfs, dbfs, on_ms * 8, 1.0));
            x.extend(silence(off_ms));
        }
        x
    }

    #[test]
    fn star_21_hash_with_50_ms_tones_and_pauses_gives_exactly_those_four_keys() {
        let x = to_i16(&sequence("*21#", 50, 50, -12.0));
        assert_eq!(detect(&x), vec!['*', '2', '1', '#']);
    }

    #[test]
    fn a_key_repeats_after_a_40_ms_pause_but_a_long_press_counts_once() {
        let x = to_i16(&sequence("1111", 45, 40, -12.0));
        assert_eq!(detect(&x), vec!['1'; 4]);
        let x = to_i16(&sequence("5", 1500, 0, -12.0));
        assert_eq!(detect(&x), vec!['5']);
    }

    #[test]
    fn keys_survive_g711_and_g722_round_trips() {
        let all: String = KEYS.iter().collect();
        for level in [-6.0, -15.0, -25.0] {
            let x = to_i16(&sequence(&all, 50, 50, level));
            for codec in [CodecKind::Pcmu, CodecKind::Pcma, CodecKind::G722] {
                let y = through(codec, &x);
                assert_eq!(
                    detect(&y).into_iter().collect::<String>(),
                    all,
                    "{codec:?} at {level} dBFS"
                );
            }
        }
    }

    #[test]
    fn synthetic_voiced_speech_never_triggers() {
        let voices = [
            Voice {
                f0_low: 90.0,
                f0_high: 140.0,
            },
            Voice {
                f0_low: 120.0,
                f0_high: 190.0,
            },
            Voice {
                f0_low: 170.0,
                f0_high: 250.0,
            },
        ];
        for (i, v) in voices.into_iter().enumerate() {
            for seed in 0..4 {
                let mut x = voiced_speech(v, 15.0, 1000 * i as u64 + seed);
                for gain_db in [0.0, 12.0] {
                    let g = 10f64.powf(gain_db / 20.0);
                    x.iter_mut().for_each(|s| *s *= g);
                    let keys = detect(&to_i16(&x));
                    assert_eq!(keys, vec![], "voice {v:?} seed {seed} +{gain_db} dB");
                }
            }
        }
    }

    #[test]
    fn the_speech_of_the_itu_vectors_never_triggers_at_any_level() {
        for (name, x) in itu_speech() {
            for gain in [0.25, 1.0, 2.0, 4.0] {
                let y: Vec<f64> = x.iter().map(|&s| f64::from(s) * gain).collect();
                assert_eq!(detect(&to_i16(&y)), vec![], "{name} x{gain}");
                let through_ulaw = through(CodecKind::Pcmu, &to_i16(&y));
                assert_eq!(detect(&through_ulaw), vec![], "{name} x{gain} via PCMU");
            }
        }
    }

    #[test]
    fn noise_and_chords_never_trigger() {
        for seed in 0..3 {
            for dbfs in [-30.0, -15.0, -6.0] {
                let n = 80_000;
                assert_eq!(
                    detect(&to_i16(&white_noise(n, dbfs, seed))),
                    vec![],
                    "white {dbfs}"
                );
                assert_eq!(
                    detect(&to_i16(&pink_noise(n, dbfs, seed))),
                    vec![],
                    "pink {dbfs}"
                );
                assert_eq!(
                    detect(&to_i16(&chords(10.0, dbfs, seed))),
                    vec![],
                    "chords {dbfs}"
                );
            }
        }
    }

    #[test]
    fn a_key_is_found_with_speech_underneath_at_a_lower_level() {
        let speech = voiced_speech(
            Voice {
                f0_low: 100.0,
                f0_high: 180.0,
            },
            3.0,
            5,
        );
        for (offset, key) in [(4_000, '3'), (9_000, '*'), (16_000, '0')] {
            let (r, c) = dtmf_frequencies(key).expect("a DTMF key");
            let mut x = speech.clone();
            // Tones at -10 dBFS peak each; the speech is at -20 dBFS RMS, which
            // puts its peaks about as high as the tones'.
            let tone = dual(r, c, -10.0, -10.0, 480, 0.0);
            mix_into(&mut x[offset..], &tone);
            assert_eq!(detect(&to_i16(&x)), vec![key], "{key} over speech");
        }
    }

    #[test]
    fn silent_frames_skip_the_filters_and_end_a_press() {
        let mut det = InbandDtmf::new();
        let quiet = to_i16(&white_noise(8000, -55.0, 1));
        assert_eq!(detect_with(&mut det, &quiet), vec![]);
        assert_eq!(det.stats().blocks, 0, "quiet frames are gated");
        assert_eq!(det.stats().gated_frames, det.stats().frames);
        let x = to_i16(&sequence("77", 60, 40, -10.0));
        assert_eq!(detect_with(&mut det, &x), vec!['7', '7']);
        assert!(det.stats().blocks > 0);
        assert_eq!(det.stats().digits, 2);
    }

    #[test]
    fn key_names_map_to_their_row_and_column() {
        assert_eq!(dtmf_frequencies('5'), Some((770.0, 1336.0)));
        assert_eq!(dtmf_frequencies('#'), Some((941.0, 1477.0)));
        assert_eq!(dtmf_frequencies('d'), Some((941.0, 1633.0)));
        assert_eq!(dtmf_frequencies('x'), None);
    }
}
