//! Measuring what participants hear: test tones, level analysis, and synthetic
//! participants over real UDP. Used by `scnf demo`, the system tests, and the load
//! generator.

pub mod participant;
pub mod swarm;
pub mod tone;

pub use participant::{Heard, Participant, Source};
pub use tone::{level_dbfs, level_dbfs_blocked, rms_dbfs, Tone, TONES, TONE_DBFS};
