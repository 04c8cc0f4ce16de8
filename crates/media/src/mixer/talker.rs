//! Talker detection: frame energy against a threshold, with hangover.
//!
//! A frame is *speech* when its mean power is above `threshold_dbfs`. A leg is
//! *talking* from its first speech frame until `hangover_frames` pass without speech,
//! so the gaps between words do not chop the mix.
//!
//! Deliberately no adaptive noise floor: energy alone cannot tell steady hum from a
//! held vowel or a test tone, and a floor that learns one learns the other (a tone
//! would be gated after some seconds). Noise above the threshold is instead bounded
//! by the mixer's talker cap: only the loudest few legs are ever summed, so noise does
//! not build up with the size of the room. Arithmetic is on linear energy (sum of
//! squares); no logarithm per frame.

use crate::codec::FRAME_SAMPLES;

/// Talker detection settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TalkerConfig {
    /// Frames quieter than this (dBFS, mean power) are never speech. Default -50.
    pub threshold_dbfs: f64,
    /// Frames a leg stays "talking" after its last speech frame. Default 20 (400 ms).
    pub hangover_frames: u32,
}

impl Default for TalkerConfig {
    fn default() -> Self {
        TalkerConfig {
            threshold_dbfs: -50.0,
            hangover_frames: 20,
        }
    }
}

/// Energy of a full-scale square wave over one frame.
const FULL_SCALE_FRAME: f64 = 32768.0 * 32768.0 * FRAME_SAMPLES as f64;

/// What changed with the last frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TalkerChange {
    None,
    Started,
    Stopped,
}

/// Per-leg detector state (a few words; no allocation).
#[derive(Clone, Debug)]
pub struct TalkerDetector {
    threshold: u64,
    hangover_frames: u32,
    hang: u32,
    talking: bool,
    /// Peak-hold of recent frame energy, used to rank talkers.
    level: u64,
}

impl TalkerDetector {
    pub fn new(cfg: &TalkerConfig) -> Self {
        TalkerDetector {
            threshold: (FULL_SCALE_FRAME * 10f64.powf(cfg.threshold_dbfs / 10.0)) as u64,
            hangover_frames: cfg.hangover_frames,
            hang: 0,
            talking: false,
            level: 0,
        }
    }

    /// Feeds one frame's energy (see [`frame_energy`]) and reports a state change.
    pub fn update(&mut self, energy: u64) -> TalkerChange {
        let speech = energy > self.threshold;
        // Peak-hold that decays by about 3 dB every 5 frames.
        self.level = energy.max(self.level - self.level / 8);

        let was = self.talking;
        if speech {
            self.hang = self.hangover_frames;
            self.talking = true;
        } else if self.hang > 0 {
            self.hang -= 1;
        } else {
            self.talking = false;
        }
        match (was, self.talking) {
            (false, true) => TalkerChange::Started,
            (true, false) => TalkerChange::Stopped,
            _ => TalkerChange::None,
        }
    }

    /// Forgets everything (e.g. the leg was put on hold).
    pub fn reset(&mut self) {
        self.hang = 0;
        self.talking = false;
        self.level = 0;
    }

    pub fn is_talking(&self) -> bool {
        self.talking
    }

    /// Recent loudness, for ranking talkers when more talk than may be mixed.
    pub fn level(&self) -> u64 {
        self.level
    }
}

/// Sum of squares of one frame.
#[inline]
pub fn frame_energy(pcm: &[i16]) -> u64 {
    pcm.iter().map(|&s| (s as i64 * s as i64) as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin()) as i16)
            .collect()
    }

    fn noise(amp: i32, n: usize, seed: &mut u64) -> Vec<i16> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((*seed >> 33) as i32 % (2 * amp + 1)) - amp) as i16
            })
            .collect()
    }

    #[test]
    fn silence_is_never_talking() {
        let mut d = TalkerDetector::new(&TalkerConfig::default());
        for _ in 0..100 {
            assert_eq!(d.update(0), TalkerChange::None);
        }
        assert!(!d.is_talking());
    }

    #[test]
    fn a_tone_starts_at_once_and_stops_after_the_hangover() {
        let cfg = TalkerConfig::default();
        let mut d = TalkerDetector::new(&cfg);
        let loud = frame_energy(&tone(8000.0, 160));
        assert_eq!(d.update(loud), TalkerChange::Started);
        for _ in 0..50 {
            d.update(loud);
        }
        for i in 0..cfg.hangover_frames {
            assert_eq!(d.update(0), TalkerChange::None, "frame {i} of the hangover");
        }
        assert_eq!(d.update(0), TalkerChange::Stopped);
    }

    #[test]
    fn a_continuous_tone_stays_talking_for_a_minute() {
        let mut d = TalkerDetector::new(&TalkerConfig::default());
        let loud = frame_energy(&tone(3000.0, 160));
        for _ in 0..50 * 60 {
            d.update(loud);
        }
        assert!(d.is_talking());
    }

    #[test]
    fn low_level_line_noise_is_never_talking() {
        let mut d = TalkerDetector::new(&TalkerConfig::default());
        let mut seed = 7;
        // Uniform noise of +-150 is about -52 dBFS: below the default threshold.
        for _ in 0..500 {
            d.update(frame_energy(&noise(150, 160, &mut seed)));
            assert!(!d.is_talking());
        }
        assert_eq!(
            d.update(frame_energy(&tone(1000.0, 160))),
            TalkerChange::Started
        );
    }

    #[test]
    fn level_ranks_louder_talkers_higher() {
        let cfg = TalkerConfig::default();
        let mut a = TalkerDetector::new(&cfg);
        let mut b = TalkerDetector::new(&cfg);
        for _ in 0..10 {
            a.update(frame_energy(&tone(2000.0, 160)));
            b.update(frame_energy(&tone(8000.0, 160)));
        }
        assert!(b.level() > a.level());
    }
}
