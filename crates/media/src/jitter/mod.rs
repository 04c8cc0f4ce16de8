//! Per-leg jitter buffer and playout: RTP packets in whenever the network delivers
//! them, exactly one 20 ms frame of 8 kHz PCM out per mix tick.
//!
//! # Contract
//! - [`Playout::insert`] takes a packet with its arrival time `now`. It never panics;
//!   an expected drop (duplicate, late, overflow, too large, undecodable) is a
//!   [`Rejected`] value and a counter in [`PlayoutStats`].
//! - [`Playout::next_frame`] is called once per mix tick and always fills exactly
//!   [`FRAME_SAMPLES`] samples, saying whether they were decoded, concealed or silence.
//! - Time is only ever an argument; nothing here reads a clock.
//! - Packets may be 10-60 ms (anything up to 120 ms); the decoder says how many 8 kHz
//!   samples a payload holds ([`FrameDecoder::samples_in`]), and the RTP clock may be
//!   any multiple of 8000 (one 8 kHz sample = `clock_rate / 8000` timestamp units).
//!
//! # Files
//! - `buffer.rs`: the preallocated ring of packet slots, keyed by extended sequence
//!   number (sequence numbers and timestamps are extended by [`crate::rtp::seq`]);
//! - `adapt.rs`: the playout-delay estimator (what delay the network needs);
//! - `plc.rs`: waveform-repetition packet-loss concealment for codecs without their
//!   own;
//! - `playout.rs`: the state machine that ties them together (anchoring, resync,
//!   adaptation, drift);
//! - `scenarios.rs` (tests only): end-to-end runs through [`crate::netsim`] on a
//!   virtual clock.
//!
//! # Departures from the usual designs
//! Unlike RFC 3550's jitter estimate (a mean deviation), the target delay is a high
//! percentile of observed relative delay, as in WebRTC's NetEq, because a mean
//! under-reacts to the long tails that make packets late. Unlike NetEq, delay
//! changes in the middle of a talk spurt are whole 20 ms steps taken rarely (a
//! pitch-repetition frame to grow, a cross-faded skip to shrink) rather than
//! continuous time-stretching: it is far cheaper per leg, and the mixer only needs
//! to bound the delay, not to minimise it to the millisecond.

mod adapt;
mod buffer;
mod playout;
pub mod plc;
#[cfg(test)]
mod scenarios;

/// Longest packet accepted, in 8 kHz samples (120 ms, the Opus maximum).
pub use crate::codec::MAX_PACKET_SAMPLES;
pub use playout::{Playout, MAX_PAYLOAD};

use crate::codec::{CodecError, Decoder, FRAME_SAMPLES};
use std::time::Duration;

/// Playout-delay bounds of one leg. The delay is measured from the arrival of the
/// fastest recent packet to its playout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// The adaptive target never goes below this. Default 5 ms: the target is the
    /// wait from the fastest packet's arrival to the tick that plays it, and the
    /// tick phase (0-20 ms) comes on top, so a clean path needs only a few ms.
    pub min_delay: Duration,
    /// Delay used for the first talk spurt, before any jitter has been measured.
    /// Default 40 ms.
    pub start_delay: Duration,
    /// The adaptive target never goes above this; it also bounds the buffer's memory
    /// (one slot per 10 ms of it). Default 500 ms: a sender that writes in bursts
    /// (`ffmpeg -re`: ~256 ms at once) needs the whole burst, and the adaptive target
    /// keeps well-behaved legs far below the cap.
    pub max_delay: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_delay: Duration::from_millis(5),
            start_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(500),
        }
    }
}

impl JitterConfig {
    /// Checks `min_delay <= start_delay <= max_delay`, and `20 ms <= max_delay <= 1 s`.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_delay > self.start_delay || self.start_delay > self.max_delay {
            return Err(format!(
                "jitter delays must satisfy min <= start <= max, got {:?} / {:?} / {:?}",
                self.min_delay, self.start_delay, self.max_delay
            ));
        }
        if self.max_delay < Duration::from_millis(20) || self.max_delay > Duration::from_secs(1) {
            return Err(format!(
                "jitter max_delay {:?} must be between 20 ms and 1 s",
                self.max_delay
            ));
        }
        Ok(())
    }
}

/// What the playout needs from a codec. Implemented for [`Decoder`]; tests use fakes.
pub trait FrameDecoder {
    /// How many 8 kHz samples `payload` decodes to.
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError>;
    /// Decodes `payload` into `out`, returning the samples written.
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError>;
    /// Fills `out` for lost audio with the codec's own concealment and returns true,
    /// or returns false when the codec has none (the playout then uses [`plc`]).
    fn conceal(&mut self, out: &mut [i16]) -> bool;
    /// The one sample value every sample of `payload` decodes to, when the codec
    /// knows it without decoding (see [`Decoder::uniform`]): the playout then
    /// keeps that value instead of the payload and fills the frame with it.
    fn uniform(&self, _payload: &[u8]) -> Option<i16> {
        None
    }
}

impl FrameDecoder for Decoder {
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        Decoder::samples_in(self, payload)
    }
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        Decoder::decode(self, payload, out)
    }
    fn conceal(&mut self, out: &mut [i16]) -> bool {
        Decoder::conceal(self, out)
    }
    fn uniform(&self, payload: &[u8]) -> Option<i16> {
        Decoder::uniform(self, payload)
    }
}

/// How an accepted packet was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored for playout in its place.
    Queued,
    /// The first packet of a stream (after `new` or `reset`): it anchors playout.
    Started,
    /// The packet broke continuity (timestamp jump, or a stream that fell behind) and
    /// playout was re-anchored on it; what was buffered before was flushed.
    Resynced,
}

/// Why a packet was dropped. Each is an expected event, counted in [`PlayoutStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The same sequence number is buffered or was just played.
    Duplicate,
    /// Its playout time has passed.
    Late,
    /// Too far ahead of what is still buffered for the ring to hold it.
    Overflow,
    /// Payload or duration above [`MAX_PAYLOAD`] / [`MAX_PACKET_SAMPLES`].
    TooLarge,
    /// The decoder cannot size it (or it holds no audio).
    Undecodable,
}

/// What one [`Playout::next_frame`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// Decoded audio only.
    Decoded,
    /// At least part of the frame was synthesised (loss concealment or a delay
    /// adjustment).
    Concealed,
    /// Nothing to play: not started, between talk spurts, or concealment faded out.
    Silence,
}

/// Counters and gauges of one [`Playout`], for RTCP and reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// Packets offered to `insert` (accepted or not).
    pub received: u64,
    /// Packets decoded and played.
    pub played: u64,
    pub late: u64,
    pub duplicate: u64,
    pub overflow: u64,
    pub too_large: u64,
    pub undecodable: u64,
    /// Packets thrown away by a resync (buffered, never played).
    pub flushed: u64,
    /// Re-anchorings on a discontinuity ([`Inserted::Resynced`]).
    pub resyncs: u64,
    /// Re-anchorings at a talk-spurt boundary (marker bit or silence, no flush).
    pub spurts: u64,
    pub decoded_frames: u64,
    /// Frames holding loss concealment, counted once sequence numbers show audio was
    /// missing: a stream's end or a sender's pause is faded out (as
    /// [`FrameKind::Concealed`]) but not counted here.
    pub concealed_frames: u64,
    pub silence_frames: u64,
    /// Frames inserted mid-spurt to grow the delay (late packets, slow sender clock).
    pub stretched: u64,
    /// Frames skipped mid-spurt to shrink the delay (fast sender clock, calmer path).
    pub compressed: u64,
    /// Current target delay (ms).
    pub target_delay_ms: u32,
    /// Current playout delay relative to the fastest recent packet (ms).
    pub delay_ms: u32,
    /// Audio currently buffered ahead of the playout point (ms).
    pub buffered_ms: u32,
}

const _: () = assert!(
    FRAME_SAMPLES == 160,
    "the playout assumes 20 ms frames at 8 kHz"
);
