//! G.722 (7 kHz audio coding within 64 kbit/s), our own implementation, bit-exact
//! with the ITU-T reference on every G.722 Appendix II test sequence.
//!
//! G.722 splits 16 kHz audio with a quadrature mirror filter (module `qmf`) into a
//! 0-4 kHz and a 4-8 kHz sub-band, each sampled at 8 kHz, and codes them with ADPCM
//! (module `band`): 6 bits for the low band, 2 for the high band. Each code pair is
//! one octet — bits 0-5 low band, bits 6-7 high band — which is the RTP payload layout
//! (RFC 3551; the RTP clock is 8000 although the audio is 16 kHz).
//!
//! Two pairs of types:
//! - [`G722Encoder`] / [`G722Decoder`]: the full codec, 16 kHz PCM with the QMF.
//! - [`LowBandEncoder`] / [`LowBandDecoder`]: what the 8 kHz mixer uses. The low
//!   sub-band *is* the 0-4 kHz signal sampled at 8 kHz, so the mixer needs neither
//!   QMF nor resampler: the decoder runs only the low-band ADPCM, the encoder feeds
//!   8 kHz PCM to the low band and codes silence in the high band, which gives a
//!   valid stream that a wideband phone plays as narrowband speech.
//!
//! # Scaling between the low band and 8 kHz PCM
//! The QMF analysis has a pass-band gain of 1/2 and the synthesis a gain of 2 (see
//! module `qmf`): a 16 kHz tone of amplitude `A` below 4 kHz becomes a low-band
//! signal of amplitude `A / 2`, and a low-band reconstruction `rl` plays as `2 * rl`. So the
//! 8 kHz types convert with exactly that factor: [`LowBandDecoder`] outputs `rl << 1`
//! (which is also the ITU's own low-band output format, `bt3l*.rc1`, and always fits
//! an `i16` because `rl` is 15-bit), and [`LowBandEncoder`] feeds `x >> 1` to the band
//! encoder (the same scaling as the ITU's bypassed-QMF encoder sequences). A 1 kHz
//! tone at 8 kHz thus comes back at the same level through the 8 kHz decoder and
//! through a wideband phone's full decoder; the tests check both.
//!
//! No allocation happens in any encode or decode call: all state is inline.

mod band;
mod ops;
mod qmf;

pub use band::Mode;
use band::{HighBand, LowBand};

/// Full-band G.722 encoder: 16 kHz PCM in, one octet per sample pair out.
/// `Default` is the reset state.
#[derive(Clone, Debug, Default)]
pub struct G722Encoder {
    qmf: qmf::Analysis,
    low: LowBand,
    high: HighBand,
    /// The first sample of a pair whose second sample has not arrived yet, so
    /// that odd-length calls stream correctly.
    held: Option<i16>,
}

impl G722Encoder {
    /// Creates an encoder in the reset state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes 16 kHz PCM into `out`, one octet per sample pair, and returns the
    /// number of octets written. An odd sample left over is kept for the next call.
    /// `out` should hold `(pcm.len() + held) / 2` octets; input beyond what fits is
    /// not consumed.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let mut input = pcm.iter().copied();
        let mut n = 0;
        while n < out.len() {
            let Some(first) = self.held.take().or_else(|| input.next()) else {
                break;
            };
            let Some(second) = input.next() else {
                self.held = Some(first);
                break;
            };
            let (xl, xh) = self.qmf.split(first, second);
            let il = self.low.encode(xl);
            let ih = self.high.encode(xh);
            out[n] = (ih << 6) | il;
            n += 1;
        }
        n
    }
}

/// Full-band G.722 decoder: one octet in, two 16 kHz PCM samples out.
/// `Default` is the reset state in mode 1 (64 kbit/s).
#[derive(Clone, Debug, Default)]
pub struct G722Decoder {
    qmf: qmf::Synthesis,
    low: LowBand,
    high: HighBand,
    mode: Mode,
}

impl G722Decoder {
    /// Creates a decoder in the reset state that reads the low band at `mode`'s
    /// bit rate (the unused low bits of each octet carry auxiliary data).
    pub fn new(mode: Mode) -> Self {
        G722Decoder {
            mode,
            ..Self::default()
        }
    }

    /// Decodes `payload` into 16 kHz PCM and returns the number of samples written:
    /// two per octet, for as many octets as `out` has room for.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        let mut n = 0;
        for (&code, pair) in payload.iter().zip(out.chunks_exact_mut(2)) {
            let rl = self.low.decode(code & 0x3f, self.mode);
            let rh = self.high.decode(code >> 6);
            pair.copy_from_slice(&self.qmf.merge(rl, rh));
            n += 2;
        }
        n
    }
}

/// The mixer's G.722 decoder: each octet gives one 8 kHz sample, the low sub-band
/// decoded at 64 kbit/s; the high band is ignored. `Default` is the reset state.
#[derive(Clone, Debug, Default)]
pub struct LowBandDecoder {
    low: LowBand,
}

impl LowBandDecoder {
    /// Decodes `payload` into `out` (8 kHz) and returns the number of samples
    /// written, `min(payload.len(), out.len())`.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        let n = payload.len().min(out.len());
        for (o, &code) in out[..n].iter_mut().zip(payload) {
            // rl is 15-bit, so doubling it cannot overflow.
            *o = self.low.decode(code & 0x3f, Mode::Kbit64) << 1;
        }
        n
    }
}

/// The mixer's G.722 encoder: each 8 kHz sample is coded by the low-band encoder,
/// the high band codes silence. One octet per sample. `Default` is the reset state.
#[derive(Clone, Debug, Default)]
pub struct LowBandEncoder {
    low: LowBand,
    /// A real high-band encoder fed with zeros, so the high-band codes are the ones
    /// a full encoder would send for silence and the decoder's high band stays quiet.
    high: HighBand,
}

impl LowBandEncoder {
    /// Encodes 8 kHz `pcm` into `out` and returns the number of octets written,
    /// `min(pcm.len(), out.len())`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let n = pcm.len().min(out.len());
        for (o, &x) in out[..n].iter_mut().zip(pcm) {
            // The low band carries the signal at half scale (QMF analysis gain 1/2).
            let il = self.low.encode(x >> 1);
            let ih = self.high.encode(0);
            *o = (ih << 6) | il;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testvectors::{read_vector, words_le};

    fn samples_le(data: &[u8]) -> Vec<i16> {
        words_le(data).into_iter().map(|w| w as i16).collect()
    }

    fn count_diffs<T: PartialEq>(got: &[T], want: &[T]) -> (usize, Option<usize>) {
        assert_eq!(got.len(), want.len(), "length");
        let first = (0..got.len()).find(|&i| got[i] != want[i]);
        (got.iter().zip(want).filter(|(a, b)| a != b).count(), first)
    }

    use crate::testvectors::{mean_power, tone_power};

    fn db(ratio: f64) -> f64 {
        10.0 * ratio.log10()
    }

    /// A 1 kHz sine at 8 kHz, amplitude 8000 (about -12 dBFS).
    fn tone_8k(len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * i as f64 / 8.0).sin()).round() as i16)
            .collect()
    }

    #[test]
    fn full_encoder_reproduces_the_itu_speech_sequence() {
        let pcm = samples_le(&read_vector("g722/inpsp.bin"));
        let want = read_vector("g722/codsp.cod");
        let mut out = vec![0u8; pcm.len() / 2];
        let n = G722Encoder::new().encode(&pcm, &mut out);
        assert_eq!(n, want.len());
        let (diffs, first) = count_diffs(&out, &want);
        assert_eq!(diffs, 0, "first difference at octet {first:?}");
    }

    #[test]
    fn full_encoder_streams_odd_length_calls_like_one_call() {
        let pcm = samples_le(&read_vector("g722/inpsp.bin"));
        let want = read_vector("g722/codsp.cod");
        let mut enc = G722Encoder::new();
        let mut out = vec![0u8; want.len()];
        let mut n = 0;
        for chunk in pcm.chunks(321) {
            n += enc.encode(chunk, &mut out[n..]);
        }
        assert_eq!(n, want.len());
        assert!(out == want, "chunked encode differs");
    }

    #[test]
    fn full_decoder_reproduces_the_itu_speech_output_in_all_three_modes() {
        let codes = read_vector("g722/codsp.cod");
        for (mode, file) in [
            (Mode::Kbit64, "g722/outsp1.bin"),
            (Mode::Kbit56, "g722/outsp2.bin"),
            (Mode::Kbit48, "g722/outsp3.bin"),
        ] {
            let want = samples_le(&read_vector(file));
            let mut out = vec![0i16; codes.len() * 2];
            assert_eq!(G722Decoder::new(mode).decode(&codes, &mut out), want.len());
            let (diffs, first) = count_diffs(&out, &want);
            assert_eq!(diffs, 0, "{file}: first difference at sample {first:?}");
        }
    }

    #[test]
    fn codspw_holds_the_same_codes_as_codsp() {
        let bytes = read_vector("g722/codsp.cod");
        let words = words_le(&read_vector("g722/codspw.cod"));
        assert!(words.iter().map(|&w| w as u8).eq(bytes.iter().copied()));
    }

    #[test]
    fn low_band_decoder_at_8k_reproduces_the_itu_low_band_output() {
        // The ITU low-band output `rl << 1` is exactly the 8 kHz decode. Each file
        // has 16 reset words at each end; the data words in between carry the code
        // in their high byte.
        for (input, reference) in [
            ("bt2r1.cod", "bt3l1.rc1"),
            ("bt2r2.cod", "bt3l2.rc1"),
            ("bt1d3.cod", "bt3l3.rc1"),
        ] {
            let words = words_le(&read_vector(&format!("g722/{input}")));
            let want = samples_le(&read_vector(&format!("g722/{reference}")));
            let data = 16..words.len() - 16;
            assert!(words[data.clone()].iter().all(|w| w & 1 == 0), "{input}");
            let payload: Vec<u8> = words[data.clone()].iter().map(|w| (w >> 8) as u8).collect();
            let mut out = vec![0i16; payload.len()];
            assert_eq!(
                LowBandDecoder::default().decode(&payload, &mut out),
                out.len()
            );
            let (diffs, first) = count_diffs(&out, &want[data]);
            assert_eq!(diffs, 0, "{reference}: first difference at {first:?}");
        }
    }

    #[test]
    fn derived_spandsp_low_band_decode_equals_ours() {
        // libspandsp 0.0.6 in 8 kHz mode also outputs `rl << 1`: the same scale as
        // the ITU low-band files and as the low band of a 16 kHz decode. So the
        // derived file is a sample-exact match, not merely a scaled one.
        let codes = read_vector("g722/codsp.cod");
        let derived = samples_le(&read_vector("derived/codsp_lowband8k.s16le"));
        let mut ours = vec![0i16; codes.len()];
        assert_eq!(
            LowBandDecoder::default().decode(&codes, &mut ours),
            codes.len()
        );
        let (diffs, first) = count_diffs(&ours, &derived);
        assert_eq!(diffs, 0, "first difference at {first:?}");
    }

    #[test]
    fn low_band_decoder_writes_the_shorter_of_payload_and_output() {
        // (payload length, output length, written)
        for (p, o, want) in [(160, 160, 160), (160, 200, 160), (160, 80, 80), (0, 10, 0)] {
            let mut out = vec![0i16; o];
            assert_eq!(
                LowBandDecoder::default().decode(&vec![0xff; p], &mut out),
                want
            );
        }
    }

    #[test]
    fn low_band_round_trip_keeps_a_1khz_tone_at_its_level_and_frequency() {
        let input = tone_8k(8000);
        let mut codes = vec![0u8; input.len()];
        assert_eq!(
            LowBandEncoder::default().encode(&input, &mut codes),
            input.len()
        );
        let mut out = vec![0i16; codes.len()];
        assert_eq!(
            LowBandDecoder::default().decode(&codes, &mut out),
            out.len()
        );

        // Skip the first 100 ms while the ADPCM adapts.
        let (x, y) = (&input[800..], &out[800..]);
        let gain = db(tone_power(y, 1000.0, 8000.0) / tone_power(x, 1000.0, 8000.0));
        assert!(gain.abs() < 1.0, "1 kHz level changed by {gain:.2} dB");
        // The tone carries nearly all the output power: no shift, little noise.
        let snr =
            db(tone_power(y, 1000.0, 8000.0) / (mean_power(y) - tone_power(y, 1000.0, 8000.0)));
        // Measured: gain 0.00 dB, tone to rest 47.5 dB.
        assert!(snr > 25.0, "tone to rest {snr:.1} dB");
    }

    #[test]
    fn a_wideband_decoder_plays_the_low_band_encoders_tone_at_the_same_level() {
        let input = tone_8k(8000);
        let mut codes = vec![0u8; input.len()];
        LowBandEncoder::default().encode(&input, &mut codes);
        let mut wide = vec![0i16; codes.len() * 2];
        assert_eq!(G722Decoder::default().decode(&codes, &mut wide), wide.len());

        let (x, y) = (&input[800..], &wide[1600..]);
        let gain = db(tone_power(y, 1000.0, 16000.0) / tone_power(x, 1000.0, 8000.0));
        assert!(
            gain.abs() < 1.0,
            "1 kHz level at 16 kHz off by {gain:.2} dB"
        );

        // Power above 4 kHz (the QMF image at 7 kHz, high-band idle noise), from a
        // DFT over 100 ms in 10 Hz bins.
        let frame = &y[..1600];
        let mut above = 0.0;
        for k in 400..800 {
            above += tone_power(frame, k as f64 * 10.0, 16000.0);
        }
        let rel = db(above / tone_power(frame, 1000.0, 16000.0));
        // Measured: about -61 dB.
        assert!(
            rel < -40.0,
            "power above 4 kHz is {rel:.1} dB relative to the tone"
        );
        let tone = tone_power(y, 1000.0, 16000.0);
        let snr = db(tone / (mean_power(y) - tone));
        assert!(snr > 25.0, "tone to rest {snr:.1} dB");
    }

    #[test]
    fn low_band_encoder_codes_silence_in_the_high_band() {
        let mut enc = LowBandEncoder::default();
        let mut codes = [0u8; 800];
        enc.encode(&[0; 800], &mut codes);
        // Silence settles on the smallest quantiser steps in both bands, and a
        // wideband decoder turns the codes back into near-silence (measured peak 3).
        let mut wide = vec![0i16; 1600];
        G722Decoder::default().decode(&codes, &mut wide);
        assert!(
            wide.iter().all(|v| v.abs() < 8),
            "silence decodes to {:?}",
            &wide[..16]
        );
    }
}
