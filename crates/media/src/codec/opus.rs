//! Opus at 8 kHz mono, through the system libopus (the decoder through audiopus
//! 0.2, the encoder through its raw bindings, for the state copy below).
//!
//! The mixer runs at 8 kHz, and Opus decodes to and encodes from 8 kHz natively, so
//! there is no resampler: the decoder renders any packet (whatever bandwidth the
//! sender chose) at 8 kHz, and the encoder codes narrowband speech.
//!
//! - [`OpusDecoder::samples_in`] reads the packet's duration from its TOC octet and
//!   frame count (RFC 6716 section 3.1) without touching libopus, so the caller can
//!   size and reject before decoding. It checks the framing that the TOC alone
//!   decides; the full packet structure is checked by libopus in `decode`, which
//!   returns an error (never panics) for anything malformed.
//! - [`OpusDecoder::conceal`] is Opus's own packet-loss concealment (a decode with
//!   no data), which extrapolates the last pitch period and fades out over
//!   successive losses.
//! - [`OpusEncoder`] codes 20 ms frames (any Opus frame size works) at
//!   [`ENCODER_BITRATE`] and [`ENCODER_COMPLEXITY`], VoIP application, narrowband,
//!   voice signal.
//!
//! libopus allocates only when a coder is created; decode, conceal and encode do not
//! allocate. Errors from invalid packets map to [`CodecError::BadPayload`] (no
//! allocation either); only unexpected libopus failures carry a message.

use super::{CodecError, CodecKind, MAX_PACKET_SAMPLES};
use audiopus::coder::Decoder as RawDecoder;
use audiopus::{Channels, ErrorCode, SampleRate};

/// Samples in 2.5 ms at 8 kHz, the unit of every Opus frame duration.
const UNIT: usize = 20;

/// The encoder's target bit rate, in bit/s.
///
/// RFC 7587 section 3.1.1 suggests 8-12 kbit/s for narrowband speech from one
/// talker. The mix is harder than one talker (several voices, their background
/// noise) and is often transcoded again downstream (a PBX, a G.711 gateway), so
/// 16 kbit/s buys headroom against both. Narrowband SILK gains little above about
/// 20 kbit/s, and 16 kbit/s is still a quarter of G.711.
pub const ENCODER_BITRATE: i32 = 16_000;

/// The encoder's complexity (libopus's 0-10 scale of analysis effort): 10, its
/// default, kept on purpose.
///
/// Measured on the shipped ITU speech at 16 kbit/s, as one talker, two talkers
/// mixed and one talker 12 dB down (PESQ P.862 narrowband, against the input; µs per
/// 20 ms frame on one core): 10 scores 4.385 / 4.398 / 4.350 at 98 µs, 8 the same
/// at the same cost, 6 scores 4.383 / 4.383 / 4.339 at 73 µs, 5 4.357 / 4.357 /
/// 4.325 at 55 µs. But at 6 and 7 an Opus listener of a mix of four tones hears one
/// of them 2.2 dB low (the system test `opus_and_l16_legs_mix_with_g711_and_g722`
/// holds every tone to 2 dB), and 8 saves nothing: the quarter is not taken.
pub const ENCODER_COMPLEXITY: i32 = 10;

fn bad_payload(len: usize) -> CodecError {
    CodecError::BadPayload {
        codec: CodecKind::Opus,
        len,
    }
}

/// Maps a libopus failure: a packet libopus rejects is a bad payload; anything
/// else is reported with its message.
fn map_err(err: audiopus::Error, len: usize) -> CodecError {
    match err {
        audiopus::Error::Opus(ErrorCode::InvalidPacket) | audiopus::Error::EmptyPacket => {
            bad_payload(len)
        }
        other => CodecError::Opus(other.to_string()),
    }
}

/// The number of 8 kHz samples in an Opus packet, from its TOC octet and frame
/// count byte (RFC 6716 sections 3.1 and 3.2).
pub fn packet_samples(payload: &[u8]) -> Result<usize, CodecError> {
    let len = payload.len();
    let &toc = payload.first().ok_or(bad_payload(len))?;
    let config = toc >> 3;
    // Frame duration in 2.5 ms units: SILK 10/20/40/60 ms, Hybrid 10/20 ms,
    // CELT 2.5/5/10/20 ms.
    let units = match config {
        0..=11 => [4, 8, 16, 24][(config % 4) as usize],
        12..=15 => [4, 8][(config % 2) as usize],
        _ => [1, 2, 4, 8][(config % 4) as usize],
    };
    let frames = match toc & 3 {
        0 => 1,
        // Two frames of equal size: the rest of the packet splits evenly (R3).
        1 if (len - 1) % 2 == 0 => 2,
        1 => return Err(bad_payload(len)),
        // Two frames, the first one's length coded in 1 or 2 bytes (R4).
        2 => {
            let (first, header) = match payload.get(1..) {
                Some([b, ..]) if *b < 252 => (*b as usize, 2),
                Some([b, c, ..]) => (*b as usize + 4 * *c as usize, 3),
                _ => return Err(bad_payload(len)),
            };
            if first > len - header {
                return Err(bad_payload(len));
            }
            2
        }
        // Any number of frames, counted in the second byte (R5: at least one).
        _ => match payload.get(1) {
            Some(&m) if m & 0x3f != 0 => (m & 0x3f) as usize,
            _ => return Err(bad_payload(len)),
        },
    };
    let samples = frames * units * UNIT;
    if samples > MAX_PACKET_SAMPLES {
        return Err(bad_payload(len));
    }
    Ok(samples)
}

/// An Opus decoder producing 8 kHz mono PCM.
pub struct OpusDecoder {
    raw: RawDecoder,
}

impl OpusDecoder {
    /// Creates a decoder at 8 kHz, mono.
    pub fn new() -> Result<Self, CodecError> {
        let raw = RawDecoder::new(SampleRate::Hz8000, Channels::Mono)
            .map_err(|e| CodecError::Opus(e.to_string()))?;
        Ok(OpusDecoder { raw })
    }

    /// The number of 8 kHz samples `payload` decodes to; an error for an empty
    /// packet or framing the TOC rules out.
    pub fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        packet_samples(payload)
    }

    /// Decodes one packet into `out` and returns the number of samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let need = packet_samples(payload)?;
        let have = out.len();
        let out = out
            .get_mut(..need)
            .ok_or(CodecError::BufferTooSmall { need, have })?;
        self.raw
            .decode(Some(payload), out, false)
            .map_err(|e| map_err(e, payload.len()))
    }

    /// Fills `out` with Opus's concealment of a lost packet and returns the number
    /// of samples concealed. Opus conceals in 2.5 ms steps, so a remainder of
    /// `out.len()` that is not a multiple of 20 samples is filled with silence.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        let n = out.len() - out.len() % UNIT;
        let (body, rest) = out.split_at_mut(n);
        rest.fill(0);
        if n == 0 {
            return Ok(0);
        }
        self.raw
            .decode(None::<&[u8]>, body, false)
            .map_err(|e| map_err(e, 0))
    }
}

/// One 16-byte unit of an encoder's state block: the block is allocated in these so
/// it has the alignment `malloc` would have given libopus.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Unit([u8; 16]);

/// An Opus encoder taking 8 kHz mono PCM.
///
/// libopus documents its encoder state as one position-independent block that can
/// be copied freely. So the block lives in memory this type owns (sized by
/// `opus_encoder_get_size`, set up by `opus_encoder_init`), and
/// [`OpusEncoder::clone_state_from`] is a plain copy: a listener leaving the room's
/// shared stream continues exactly where the shared encoder stands, the way G.722
/// does, so the peer's decoder hears no seam.
pub struct OpusEncoder {
    state: Box<[Unit]>,
}

impl OpusEncoder {
    /// Creates an encoder at 8 kHz mono: VoIP application, narrowband, voice,
    /// [`ENCODER_BITRATE`], [`ENCODER_COMPLEXITY`].
    pub fn new() -> Result<Self, CodecError> {
        use audiopus_sys as ffi;
        // SAFETY: a pure query of a constant.
        let size = unsafe { ffi::opus_encoder_get_size(1) };
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| CodecError::Opus(format!("encoder state size {size}")))?;
        let units = size.div_ceil(std::mem::size_of::<Unit>());
        let mut enc = OpusEncoder {
            state: vec![Unit([0; 16]); units].into_boxed_slice(),
        };
        // SAFETY: the block is at least `opus_encoder_get_size(1)` bytes, aligned
        // to 16, and exclusively ours.
        let code =
            unsafe { ffi::opus_encoder_init(enc.raw(), 8000, 1, ffi::OPUS_APPLICATION_VOIP) };
        check(code, "init")?;
        for (request, value, what) in [
            (ffi::OPUS_SET_BITRATE_REQUEST, ENCODER_BITRATE, "bitrate"),
            (
                ffi::OPUS_SET_BANDWIDTH_REQUEST,
                ffi::OPUS_BANDWIDTH_NARROWBAND,
                "bandwidth",
            ),
            (
                ffi::OPUS_SET_SIGNAL_REQUEST,
                ffi::OPUS_SIGNAL_VOICE,
                "signal",
            ),
            (
                ffi::OPUS_SET_COMPLEXITY_REQUEST,
                ENCODER_COMPLEXITY,
                "complexity",
            ),
        ] {
            // SAFETY: an initialised state; each of these requests takes one
            // `opus_int32` argument.
            let code = unsafe { ffi::opus_encoder_ctl(enc.raw(), request, value) };
            check(code, what)?;
        }
        Ok(enc)
    }

    fn raw(&mut self) -> *mut audiopus_sys::OpusEncoder {
        self.state.as_mut_ptr().cast()
    }

    /// Encodes one frame of 8 kHz PCM (20 ms = 160 samples for the mixer; any Opus
    /// frame size of 2.5 to 60 ms is accepted) into `out` and returns the packet
    /// length. `out` should hold at least [`super::MAX_FRAME_PAYLOAD`] bytes.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if !matches!(pcm.len(), 20 | 40 | 80 | 160 | 320 | 480) {
            return Err(CodecError::Opus(format!(
                "{} samples is not an Opus frame size at 8 kHz",
                pcm.len()
            )));
        }
        if out.is_empty() {
            return Err(CodecError::BufferTooSmall { need: 1, have: 0 });
        }
        let max = i32::try_from(out.len()).unwrap_or(i32::MAX);
        // SAFETY: an initialised state; `pcm` holds exactly the frame size given,
        // and libopus writes at most `max` bytes into `out`.
        let n = unsafe {
            audiopus_sys::opus_encode(
                self.raw(),
                pcm.as_ptr(),
                pcm.len() as i32,
                out.as_mut_ptr(),
                max,
            )
        };
        check(n, "encode").map(|()| n as usize)
    }

    /// Makes this encoder's state a copy of `other`'s: from here on both produce the
    /// same packets from the same input.
    pub fn clone_state_from(&mut self, other: &OpusEncoder) {
        self.state.copy_from_slice(&other.state);
    }
}

/// Maps a libopus return code: negative is an error, named by `what` and libopus's
/// own text.
fn check(code: i32, what: &str) -> Result<(), CodecError> {
    if code >= 0 {
        return Ok(());
    }
    // SAFETY: libopus returns a pointer to a static, NUL-terminated string for any
    // code.
    let text = unsafe { std::ffi::CStr::from_ptr(audiopus_sys::opus_strerror(code)) };
    Err(CodecError::Opus(format!(
        "{what}: {}",
        text.to_string_lossy()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testvectors::mean_power;

    fn tone_power(x: &[i16], freq: f64) -> f64 {
        crate::testvectors::tone_power(x, freq, 8000.0)
    }

    fn db(ratio: f64) -> f64 {
        10.0 * ratio.log10()
    }

    /// A sine at `freq`, amplitude 8000 (about -12 dBFS), `len` samples at 8 kHz.
    fn tone(freq: f64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| {
                let t = i as f64 / 8000.0;
                (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    /// Encodes `pcm` in frames of `frame` samples and decodes every packet.
    fn round_trip(pcm: &[i16], frame: usize) -> (Vec<Vec<u8>>, Vec<i16>) {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let (mut packets, mut out) = (Vec::new(), Vec::new());
        for chunk in pcm.chunks_exact(frame) {
            let mut buf = [0u8; 400];
            let n = enc.encode(chunk, &mut buf).unwrap();
            let mut pcm_out = vec![0i16; 960];
            let m = dec.decode(&buf[..n], &mut pcm_out).unwrap();
            out.extend_from_slice(&pcm_out[..m]);
            packets.push(buf[..n].to_vec());
        }
        (packets, out)
    }

    #[test]
    fn a_tone_survives_encode_and_decode_at_its_level_and_frequency() {
        for freq in [440.0, 1000.0, 2000.0] {
            let input = tone(freq, 8000);
            let (packets, out) = round_trip(&input, 160);
            assert_eq!(out.len(), input.len());
            // 16 kbit/s in 20 ms packets is about 40 bytes each.
            let bytes: usize = packets.iter().map(Vec::len).sum();
            assert!(
                bytes * 8 <= 2 * ENCODER_BITRATE as usize,
                "{bytes} bytes in 1 s"
            );
            // Skip 200 ms of start-up.
            let (x, y) = (&input[1600..], &out[1600..]);
            let gain = db(tone_power(y, freq) / tone_power(x, freq));
            assert!(gain.abs() < 3.0, "{freq} Hz: level changed by {gain:.2} dB");
            let tone_share = db(tone_power(y, freq) / mean_power(y));
            assert!(
                tone_share > -1.0,
                "{freq} Hz: tone is {tone_share:.1} dB of output"
            );
        }
    }

    #[test]
    fn samples_in_reads_the_duration_of_encoded_packets() {
        // (frame size in samples = 10, 20, 40, 60 ms)
        for frame in [80, 160, 320, 480] {
            let (packets, _) = round_trip(&tone(1000.0, 960), frame);
            let dec = OpusDecoder::new().unwrap();
            for p in &packets {
                assert_eq!(dec.samples_in(p), Ok(frame), "toc {:02x}", p[0]);
            }
        }
    }

    #[test]
    fn samples_in_follows_the_toc_table() {
        let bad = Err(CodecError::BadPayload {
            codec: CodecKind::Opus,
            len: 0,
        });
        // (packet, samples at 8 kHz)
        let cases: &[(&[u8], Result<usize, CodecError>)] = &[
            (&[0x00, 0xaa], Ok(80)),                    // SILK NB 10 ms, one frame
            (&[0x08, 0xaa], Ok(160)),                   // SILK NB 20 ms
            (&[0x10, 0xaa], Ok(320)),                   // SILK NB 40 ms
            (&[0x18, 0xaa], Ok(480)),                   // SILK NB 60 ms
            (&[0x58, 0xaa], Ok(480)),                   // SILK WB 60 ms
            (&[0x60, 0xaa], Ok(80)),                    // Hybrid SWB 10 ms
            (&[0x78, 0xaa], Ok(160)),                   // Hybrid FB 20 ms
            (&[0x80, 0xaa], Ok(20)),                    // CELT NB 2.5 ms
            (&[0xf8, 0xaa], Ok(160)),                   // CELT FB 20 ms
            (&[0x09, 0xaa, 0xbb], Ok(320)),             // code 1: two 20 ms frames
            (&[0x0a, 0x01, 0xaa, 0xbb], Ok(320)),       // code 2: two frames
            (&[0x0b, 0x03, 0xaa, 0xbb, 0xcc], Ok(480)), // code 3: three 20 ms frames
            (&[0x83, 0x30, 0xaa], Ok(960)),             // code 3: 48 CELT 2.5 ms
        ];
        let dec = OpusDecoder::new().unwrap();
        for (packet, want) in cases {
            assert_eq!(&dec.samples_in(packet), want, "{packet:02x?}");
        }
        assert_eq!(dec.samples_in(&[]), bad);
        // (invalid packet): each is rejected by the TOC framing rules.
        let invalid: &[&[u8]] = &[
            &[0x09, 0xaa],             // code 1 with an odd remainder
            &[0x0a],                   // code 2 without its length byte
            &[0x0a, 0x05, 0xaa],       // code 2 whose first frame overruns
            &[0x0a, 0xfc],             // code 2 two-byte length cut short
            &[0x0b],                   // code 3 without its count byte
            &[0x0b, 0x00, 0xaa],       // code 3 with zero frames
            &[0x1b, 0x03, 0xaa, 0xbb], // code 3: three 60 ms frames exceed 120 ms
            &[0x83, 0x31, 0xaa],       // code 3: 49 x 2.5 ms exceed 120 ms
        ];
        for packet in invalid {
            assert!(
                matches!(dec.samples_in(packet), Err(CodecError::BadPayload { .. })),
                "{packet:02x?}"
            );
        }
    }

    #[test]
    fn decode_refuses_a_too_small_output_buffer() {
        let (packets, _) = round_trip(&tone(1000.0, 160), 160);
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = [0i16; 80];
        assert_eq!(
            dec.decode(&packets[0], &mut out),
            Err(CodecError::BufferTooSmall {
                need: 160,
                have: 80
            })
        );
    }

    #[test]
    fn conceal_fills_a_frame_and_fades_over_successive_losses() {
        let input = tone(440.0, 8000);
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut frame = [0i16; 160];
        for chunk in input.chunks_exact(160) {
            let mut buf = [0u8; 400];
            let n = enc.encode(chunk, &mut buf).unwrap();
            dec.decode(&buf[..n], &mut frame).unwrap();
        }
        let before = mean_power(&frame);
        let mut powers = Vec::new();
        for _ in 0..10 {
            let mut out = [0x7fffi16; 160];
            assert_eq!(dec.conceal(&mut out), Ok(160));
            powers.push(mean_power(&out));
        }
        // The first loss is bridged with something like the signal; later ones fade.
        assert!(
            powers[0] > before / 100.0,
            "first concealed frame is silent"
        );
        assert!(powers[9] < powers[0] / 10.0, "no fade: {powers:?}");
        // Concealment before any packet is silence, not an error.
        let mut fresh = OpusDecoder::new().unwrap();
        let mut out = [1i16; 170];
        assert_eq!(fresh.conceal(&mut out), Ok(160));
        assert!(out[160..].iter().all(|&v| v == 0));
    }

    #[test]
    fn garbage_payloads_are_errors_not_panics() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = [0i16; 960];
        // Definitely invalid: empty, and framing libopus rejects past the TOC
        // (code 3 CBR whose data does not divide into the frame count).
        for packet in [&[][..], &[0x0b, 0x02, 0xaa, 0xbb, 0xcc][..]] {
            assert!(dec.decode(packet, &mut out).is_err(), "{packet:02x?}");
        }
        // Random bytes from a seeded generator: each is either decoded to exactly the
        // TOC's duration or rejected; nothing panics.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut rejected = 0;
        for _ in 0..2000 {
            let len = (next() % 120) as usize;
            let packet: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            match dec.decode(&packet, &mut out) {
                Ok(n) => assert_eq!(Ok(n), dec.samples_in(&packet)),
                Err(_) => rejected += 1,
            }
        }
        assert!(rejected > 0);
    }

    #[test]
    fn the_encoder_is_set_up_as_documented() {
        let mut enc = OpusEncoder::new().unwrap();
        // The bandwidth reads back as that of the last frame coded.
        enc.encode(&tone(1000.0, 160), &mut [0u8; 400]).unwrap();
        let mut get = |request| {
            let mut value = 0i32;
            // SAFETY: an initialised state; each GET request writes one opus_int32
            // through the pointer it is given.
            let code = unsafe {
                audiopus_sys::opus_encoder_ctl(enc.raw(), request, &mut value as *mut i32)
            };
            assert_eq!(code, 0);
            value
        };
        use audiopus_sys as ffi;
        assert_eq!(get(ffi::OPUS_GET_BITRATE_REQUEST), ENCODER_BITRATE);
        assert_eq!(get(ffi::OPUS_GET_COMPLEXITY_REQUEST), ENCODER_COMPLEXITY);
        assert_eq!(get(ffi::OPUS_GET_SIGNAL_REQUEST), ffi::OPUS_SIGNAL_VOICE);
        assert_eq!(
            get(ffi::OPUS_GET_BANDWIDTH_REQUEST),
            ffi::OPUS_BANDWIDTH_NARROWBAND
        );
    }

    #[test]
    fn encode_rejects_a_length_that_is_not_an_opus_frame() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut out = [0u8; 400];
        for len in [0, 1, 159, 161, 960] {
            assert!(enc.encode(&vec![0; len], &mut out).is_err(), "{len}");
        }
        assert!(enc.encode(&[0; 160], &mut []).is_err());
    }
}
