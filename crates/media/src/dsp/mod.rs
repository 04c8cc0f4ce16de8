//! Signal analysis on the decoded 8 kHz audio of a leg (as opposed to [`crate::mixer`],
//! which combines legs, and [`crate::codec`], which converts them).
//!
//! - [`dtmf`]: in-band DTMF detection for legs that did not negotiate RFC 4733
//!   telephone-events.
//! - [`goertzel`]: the filter bank it runs on (DFT at a few frequencies, with the
//!   phase needed to measure a tone's frequency finely).

pub mod dtmf;
pub mod goertzel;

#[cfg(test)]
pub(crate) mod testsignals;

pub use dtmf::{dtmf_frequencies, InbandDtmf, InbandStats};
