//! Signal analysis on the decoded 8 kHz audio of a leg (as opposed to [`crate::mixer`],
//! which combines legs, and [`crate::codec`], which converts them).
//!
//! - [`dtmf`]: in-band DTMF detection for legs that did not negotiate RFC 4733
//!   telephone-events.

pub mod dtmf;

#[cfg(test)]
pub(crate) mod testsignals;

pub use dtmf::{dtmf_frequencies, InbandDtmf, InbandStats};
