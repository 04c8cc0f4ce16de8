//! Measuring what participants hear: test tones and level analysis (pure
//! functions). The synthetic participants that send and receive them over real UDP
//! live in the test kit (`scnf_testkit::participant`, `scnf_testkit::swarm`).

pub mod tone;

pub use tone::{level_dbfs, level_dbfs_blocked, rms_dbfs, Tone, TONES, TONE_DBFS};
