//! A room: its legs (indices into the engine's leg slab), its mixer scratch, and the
//! shared per-codec encoders of encode-once.

use super::leg::{Leg, MixId, Stream};
use super::slab::Slab;
use super::tx::{TxQueue, Via};
use super::EngineEvent;
use scnf_media::codec::{CodecKind, Encoder, FRAME_SAMPLES, MAX_FRAME_PAYLOAD, MIX_RATE};
use scnf_media::jitter::FrameKind;
use scnf_media::mixer::talker::TalkerChange;
use scnf_media::mixer::{Frame, MixConfig, Mixer};
use scnf_media::rtp::{RtpHeader, RTP_HEADER_LEN};
use std::collections::VecDeque;
use std::time::Instant;

// The engine's tick and the media frame are one fact in two units.
const _: () = assert!(
    super::TICK.as_nanos() == FRAME_SAMPLES as u128 * 1_000_000_000 / MIX_RATE as u128,
    "one tick mixes exactly one frame"
);

/// Ticks after which a leg that waits for a seam-free moment to rejoin the shared
/// stream (see [`CodecKind::seam_silence_frames`]) rejoins anyway, in a room whose
/// mix is never silent that long: its peer then hears a few rough frames once, and
/// the room stops paying for the leg's own encoder.
const REJOIN_LIMIT: u32 = 100;

/// One codec's shared encoding for this tick.
struct Shared {
    encoder: Encoder,
    payload: [u8; MAX_FRAME_PAYLOAD],
    len: usize,
    /// Tick number the payload was encoded for (`u64::MAX` = never).
    tick: u64,
    /// Silent frames encoded on consecutive ticks, up to `tick`.
    silent: u32,
}

/// Per-tick counters the engine aggregates.
#[derive(Clone, Copy, Debug, Default)]
pub struct TickWork {
    pub encodes: u64,
    /// Encoder calls that returned an error (the frame was not sent as audio).
    pub encode_failures: u64,
    pub shared_sends: u64,
}

impl TickWork {
    /// Encodes one frame with `encoder` into `out`, counting the call and, when the
    /// encoder fails, the failure: `None` then, and the caller sends nothing (or, for
    /// the shared stream, an empty payload).
    fn encode(&mut self, encoder: &mut Encoder, pcm: &[i16], out: &mut [u8]) -> Option<usize> {
        self.encodes += 1;
        match encoder.encode(pcm, out) {
            Ok(n) => Some(n),
            Err(_) => {
                self.encode_failures += 1;
                None
            }
        }
    }
}

pub struct Room {
    pub id: MixId,
    /// Slab indices of the legs, in join order.
    pub legs: Vec<usize>,
    mixer: Mixer,
    shared: [Option<Box<Shared>>; CodecKind::ALL.len()],
    shared_pcm: Frame,
    /// Whether `shared_pcm` is pure silence this tick.
    mix_silent: bool,
    scratch: Frame,
    payload: [u8; MAX_FRAME_PAYLOAD],
    /// Whether encode-once is on (off only for benchmarks that measure its worth).
    pub encode_once: bool,
}

impl Room {
    pub fn new(id: MixId, mix: &MixConfig) -> Room {
        Room {
            id,
            legs: Vec::new(),
            mixer: Mixer::new(mix),
            shared: Default::default(),
            shared_pcm: [0; FRAME_SAMPLES],
            mix_silent: true,
            scratch: [0; FRAME_SAMPLES],
            payload: [0; MAX_FRAME_PAYLOAD],
            encode_once: true,
        }
    }

    /// Runs one 20 ms mix tick: play out every leg, pick and sum talkers, encode and
    /// queue each leg's packet.
    pub fn tick(
        &mut self,
        now: Instant,
        tick: u64,
        legs: &mut Slab<Leg>,
        tx: &mut TxQueue,
        events: &mut VecDeque<EngineEvent>,
    ) -> TickWork {
        let mut work = TickWork::default();
        self.mixer.begin();
        for (i, &li) in self.legs.iter().enumerate() {
            let leg = legs.get_mut(li).expect("room legs are live slab entries");
            let kind = leg
                .playout
                .next_frame(now, &mut leg.decoder, &mut leg.frame);
            let frame_energy = leg.playout.frame_energy();
            let energy = match kind {
                FrameKind::Silence => 0,
                _ if leg.muted => 0,
                _ => frame_energy,
            };
            if let Some(detector) = &mut leg.inband {
                // The playout's energy of this very frame lets the detector skip
                // silent frames for the price of one comparison.
                if let Some(digit) = detector.push_frame_with_energy(&leg.frame, frame_energy) {
                    leg.stats.dtmf_digits += 1;
                    leg.stats.inband_dtmf_digits += 1;
                    events.push_back(EngineEvent::Dtmf {
                        room: self.id,
                        leg: leg.id,
                        digit,
                    });
                }
            }
            let link = leg.spec.link.is_some();
            match leg.talker.update(energy) {
                TalkerChange::None => {}
                // A link carries other nodes' mix, not a person.
                _ if link => {}
                change => events.push_back(EngineEvent::Talking {
                    room: self.id,
                    leg: leg.id,
                    talking: change == TalkerChange::Started,
                }),
            }
            if leg.talker.is_talking() && !leg.muted {
                // A link already holds the other nodes' selected talkers: it is
                // always mixed, whatever the local talkers' levels.
                let level = if link { u64::MAX } else { leg.talker.level() };
                self.mixer.offer(i as u32, level);
            }
        }
        self.mixer.select();
        for k in 0..self.mixer.selected().len() {
            let i = self.mixer.selected()[k];
            let leg = legs.get_mut(self.legs[i as usize]).expect("live leg");
            self.mixer.add(&leg.frame);
            // A listener leaving the shared stream continues from the state the peer's
            // decoder has been tracking (the shared encoder after the last tick);
            // without this a G.722 or Opus stream would glitch at every turn.
            if leg.stream == Stream::Shared {
                if let Some(shared) = &self.shared[leg.spec.codec.index()] {
                    leg.encoder.clone_state_from(&shared.encoder);
                }
            }
        }
        self.mix_silent = !self.mixer.render_shared(&mut self.shared_pcm);

        for i in 0..self.legs.len() {
            let li = self.legs[i];
            let leg = legs.get_mut(li).expect("room legs are live slab entries");
            if !leg.receives {
                continue;
            }
            let codec = leg.spec.codec;
            let mixed = self.mixer.is_mixed(i as u32);
            let own = !self.encode_once
                || mixed
                || match leg.stream {
                    Stream::Own { silent, unmixed } => {
                        !self.may_rejoin(codec, silent, unmixed, tick, &mut work)
                    }
                    Stream::Fresh | Stream::Shared => false,
                };
            // Only an Opus encoder can fail to be made; the leg's own then serves.
            let shared = if own {
                None
            } else {
                self.shared_encoding(codec, tick, &mut work)
            };
            let payload: &[u8] = match shared {
                Some(slot) => {
                    work.shared_sends += 1;
                    leg.stream = Stream::Shared;
                    &slot.payload[..slot.len]
                }
                None => {
                    let (pcm, silent) = if mixed {
                        let sound = self.mixer.render_minus(&leg.frame, &mut self.scratch);
                        (&self.scratch, !sound)
                    } else {
                        (&self.shared_pcm, self.mix_silent)
                    };
                    let Some(n) = work.encode(&mut leg.encoder, pcm, &mut self.payload) else {
                        continue;
                    };
                    let (s, u) = match leg.stream {
                        Stream::Own { silent, unmixed } => (silent, unmixed),
                        Stream::Fresh | Stream::Shared => (0, 0),
                    };
                    leg.stream = Stream::Own {
                        silent: if silent { s.saturating_add(1) } else { 0 },
                        unmixed: if mixed { 0 } else { u.saturating_add(1) },
                    };
                    &self.payload[..n]
                }
            };
            send_rtp(leg, payload, tx);
        }
        work
    }

    /// Whether a leg on its own encoder, no longer mixed, may go back to the shared
    /// stream this tick without its peer hearing the seam: at once for a codec
    /// without one; for Opus once its own encoder and the shared one have both coded
    /// enough silence (the shared one a frame more, this tick's), or at
    /// [`REJOIN_LIMIT`].
    fn may_rejoin(
        &mut self,
        codec: CodecKind,
        silent: u32,
        unmixed: u32,
        tick: u64,
        work: &mut TickWork,
    ) -> bool {
        let Some(needed) = codec.seam_silence_frames() else {
            return true;
        };
        if unmixed >= REJOIN_LIMIT {
            return true;
        }
        silent >= needed
            && self
                .shared_encoding(codec, tick, work)
                .is_some_and(|shared| shared.silent > needed)
    }

    /// The room's shared encoding of `codec` for this tick, made on first use
    /// (`None` only if the encoder cannot be made).
    fn shared_encoding(
        &mut self,
        codec: CodecKind,
        tick: u64,
        work: &mut TickWork,
    ) -> Option<&mut Shared> {
        let slot = &mut self.shared[codec.index()];
        if slot.is_none() {
            *slot = Some(Box::new(Shared {
                encoder: Encoder::new(codec).ok()?,
                payload: [0; MAX_FRAME_PAYLOAD],
                len: 0,
                tick: u64::MAX,
                silent: 0,
            }));
        }
        let shared = slot.as_deref_mut()?;
        if shared.tick != tick {
            let run = shared.tick.wrapping_add(1) == tick;
            shared.len = work
                .encode(&mut shared.encoder, &self.shared_pcm, &mut shared.payload)
                .unwrap_or(0);
            shared.silent = match (self.mix_silent, run) {
                (false, _) => 0,
                (true, true) => shared.silent.saturating_add(1),
                (true, false) => 1,
            };
            shared.tick = tick;
        }
        Some(shared)
    }
}

/// Queues one RTP packet of `payload` to the leg and advances its send state.
pub fn send_rtp(leg: &mut Leg, payload: &[u8], tx: &mut TxQueue) {
    let header = RtpHeader {
        marker: leg.first_packet,
        payload_type: leg.spec.payload_type,
        sequence: leg.seq,
        timestamp: leg.ts,
        ssrc: leg.ssrc,
    };
    tx.push_with(
        leg.remote,
        Via::Rtp,
        RTP_HEADER_LEN + payload.len(),
        |buf| {
            let h = header.write(buf).ok()?;
            buf[h..h + payload.len()].copy_from_slice(payload);
            Some(h + payload.len())
        },
    );
    leg.first_packet = false;
    leg.seq = leg.seq.wrapping_add(1);
    leg.ts = leg.ts.wrapping_add(leg.spec.codec.frame_ts());
    leg.stats.packets_sent += 1;
    leg.sender.on_sent(payload.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use scnf_media::codec::CodecKind;

    /// No codec fails on the tick's own frame and buffer, so the failures are made
    /// here: an L16 frame into a buffer too small for it, and an Opus encoder given a
    /// length that is no Opus frame size. Both tick paths count through this call.
    #[test]
    fn encoder_errors_are_counted_not_hidden() {
        let pcm = [0i16; FRAME_SAMPLES];
        let mut out = [0u8; MAX_FRAME_PAYLOAD];
        let mut work = TickWork::default();

        let mut pcmu = Encoder::new(CodecKind::Pcmu).unwrap();
        assert_eq!(work.encode(&mut pcmu, &pcm, &mut out), Some(FRAME_SAMPLES));
        assert_eq!((work.encodes, work.encode_failures), (1, 0));

        let mut l16 = Encoder::new(CodecKind::L16).unwrap();
        assert_eq!(work.encode(&mut l16, &pcm, &mut out[..FRAME_SAMPLES]), None);
        assert_eq!((work.encodes, work.encode_failures), (2, 1));

        let mut opus = Encoder::new(CodecKind::Opus).unwrap();
        assert_eq!(work.encode(&mut opus, &pcm[..100], &mut out), None);
        assert_eq!((work.encodes, work.encode_failures), (3, 2));
    }
}
