//! WAV files for rtpgen: reading the speech a participant sends, writing what it heard.
//!
//! # Contract
//! - [`read_wav`] accepts RIFF/WAVE holding 16-bit PCM, either format tag 1 or
//!   `WAVE_FORMAT_EXTENSIBLE` with the PCM sub-format, any channel count and rate.
//!   Unknown chunks (`LIST`, `fact`, `cue `...) are skipped, honouring the pad byte
//!   after an odd-sized chunk. Anything else is a [`WavError`] that names the problem;
//!   no input makes it panic, and it never allocates more than the input's size.
//! - A trailing partial frame (fewer bytes than one sample per channel) is dropped:
//!   it carries no complete sample instant.
//! - The RIFF size field is not trusted beyond the real length of the input (many
//!   streaming writers leave it 0 or `0xFFFFFFFF`); chunk sizes are, and a chunk
//!   that claims more bytes than the file has is an error.
//! - [`Wav::mono_8k`] averages the channels and, for any rate other than 8000 Hz,
//!   resamples with our own windowed-sinc low-pass (Blackman window, cut-off at
//!   0.45 × the lower of the two rates, stop band from the lower Nyquist frequency
//!   on, at least 64 taps), so nothing above 4 kHz folds back into the band.
//! - [`write_wav`] writes the canonical 44-byte header and mono 16-bit samples.
//!
//! This is the I/O edge of the load generator, not the media path: it allocates freely.

use std::f64::consts::PI;

/// Errors from [`read_wav`] and [`Wav::mono_8k`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WavError {
    #[error("not a RIFF file (the first four bytes are not \"RIFF\")")]
    NotRiff,
    #[error("RIFF file of form {0:?}, not WAVE")]
    NotWave(String),
    #[error("file of {len} bytes ends inside the {what}")]
    Truncated { what: &'static str, len: usize },
    #[error("chunk {id:?} at byte {offset} declares {declared} bytes but only {available} remain")]
    TruncatedChunk {
        id: String,
        offset: usize,
        declared: u32,
        available: usize,
    },
    #[error("data chunk declares {declared} bytes but only {available} remain in the file")]
    DataBeyondFile { declared: u32, available: usize },
    #[error("fmt chunk of {0} bytes is shorter than the 16 a PCM format needs")]
    ShortFmt(u32),
    #[error("format tag {0:#06x} is not PCM (1 or extensible PCM)")]
    NotPcm(u16),
    #[error("extensible format with sub-format {0} is not PCM")]
    NotPcmSubformat(String),
    #[error("8-bit samples are not supported (16-bit PCM only)")]
    EightBit,
    #[error("{0}-bit samples are not supported (16-bit PCM only)")]
    UnsupportedBits(u16),
    #[error("the format declares zero channels")]
    NoChannels,
    #[error("the format declares a sample rate of 0 Hz")]
    ZeroRate,
    #[error("block align {block_align} does not match {channels} channels of 16 bits")]
    BadBlockAlign { block_align: u16, channels: u16 },
    #[error("no fmt chunk before the end of the file")]
    MissingFmt,
    #[error("no data chunk before the end of the file")]
    MissingData,
    #[error("cannot resample from {0} Hz: supported rates are {MIN_RATE}..={MAX_RATE} Hz")]
    RateOutOfRange(u32),
}

/// A decoded 16-bit PCM WAV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wav {
    /// Sample rate in Hz (never 0).
    pub rate: u32,
    /// Channel count (never 0).
    pub channels: u16,
    /// Samples, interleaved by channel; `samples.len()` is a multiple of `channels`.
    pub samples: Vec<i16>,
}

/// The tail of the PCM sub-format GUID `00000001-0000-0010-8000-00aa00389b71`, as
/// it is stored (little-endian first fields) after the 2-byte format code.
const PCM_GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
];
const FORMAT_PCM: u16 = 1;
const FORMAT_EXTENSIBLE: u16 = 0xfffe;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn fourcc(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// The fields of a `fmt ` chunk that matter for 16-bit PCM.
struct Format {
    channels: u16,
    rate: u32,
}

fn parse_fmt(body: &[u8]) -> Result<Format, WavError> {
    let short = || WavError::ShortFmt(body.len() as u32);
    let tag = u16_at(body, 0).ok_or_else(short)?;
    let channels = u16_at(body, 2).ok_or_else(short)?;
    let rate = u32_at(body, 4).ok_or_else(short)?;
    let block_align = u16_at(body, 12).ok_or_else(short)?;
    let bits = u16_at(body, 14).ok_or_else(short)?;
    match tag {
        FORMAT_PCM => {}
        FORMAT_EXTENSIBLE => {
            // cbSize (16), valid bits (18), channel mask (20), sub-format GUID (24..40).
            let guid = body.get(24..40).ok_or(WavError::Truncated {
                what: "extensible fmt chunk",
                len: body.len(),
            })?;
            let code = u16::from_le_bytes([guid[0], guid[1]]);
            if code != FORMAT_PCM || guid[2..] != PCM_GUID_TAIL {
                let hex: String = guid.iter().map(|b| format!("{b:02x}")).collect();
                return Err(WavError::NotPcmSubformat(hex));
            }
        }
        other => return Err(WavError::NotPcm(other)),
    }
    match bits {
        16 => {}
        8 => return Err(WavError::EightBit),
        other => return Err(WavError::UnsupportedBits(other)),
    }
    if channels == 0 {
        return Err(WavError::NoChannels);
    }
    if rate == 0 {
        return Err(WavError::ZeroRate);
    }
    if u32::from(block_align) != 2 * u32::from(channels) {
        return Err(WavError::BadBlockAlign {
            block_align,
            channels,
        });
    }
    Ok(Format { channels, rate })
}

/// Parses a RIFF/WAVE file of 16-bit PCM (see the module docs for what is accepted).
pub fn read_wav(bytes: &[u8]) -> Result<Wav, WavError> {
    let truncated = |what| WavError::Truncated {
        what,
        len: bytes.len(),
    };
    let magic = bytes.get(0..4).ok_or_else(|| truncated("RIFF header"))?;
    if magic != b"RIFF" {
        return Err(WavError::NotRiff);
    }
    let form = bytes.get(8..12).ok_or_else(|| truncated("RIFF header"))?;
    if form != b"WAVE" {
        return Err(WavError::NotWave(fourcc(form)));
    }
    let mut format: Option<Format> = None;
    let mut data: Option<&[u8]> = None;
    let mut at = 12;
    while at < bytes.len() && (format.is_none() || data.is_none()) {
        let header = bytes
            .get(at..at + 8)
            .ok_or_else(|| truncated("a chunk header"))?;
        let id = &header[0..4];
        let declared = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body_start = at + 8;
        let available = bytes.len() - body_start;
        // usize is at least 32 bits on every target this crate builds for.
        let size = declared as usize;
        if size > available {
            return Err(if id == b"data" {
                WavError::DataBeyondFile {
                    declared,
                    available,
                }
            } else {
                WavError::TruncatedChunk {
                    id: fourcc(id),
                    offset: at,
                    declared,
                    available,
                }
            });
        }
        let body = &bytes[body_start..body_start + size];
        match id {
            b"fmt " if format.is_none() => format = Some(parse_fmt(body)?),
            b"data" if data.is_none() => data = Some(body),
            _ => {}
        }
        // Odd-sized chunks are followed by one pad byte (which may be missing at
        // the very end of a sloppily written file: the loop condition handles that).
        at = body_start + size + (size & 1);
    }
    let format = format.ok_or(WavError::MissingFmt)?;
    let data = data.ok_or(WavError::MissingData)?;
    let frame_bytes = 2 * usize::from(format.channels);
    let whole = data.len() / frame_bytes * frame_bytes;
    let samples = data[..whole]
        .chunks_exact(2)
        .map(|p| i16::from_le_bytes([p[0], p[1]]))
        .collect();
    Ok(Wav {
        rate: format.rate,
        channels: format.channels,
        samples,
    })
}

/// A mono 16-bit PCM WAV file at `rate` Hz holding `samples`.
///
/// The RIFF sizes are 32-bit: more than about 2^31 samples cannot be represented,
/// and such a buffer (4 GiB of audio) is outside what rtpgen records; the sizes then
/// saturate rather than wrap.
pub fn write_wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&FORMAT_PCM.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // channels
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&rate.saturating_mul(2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The rate every rtpgen participant sends at (G.711 / the G.722 RTP clock).
pub const TARGET_RATE: u32 = scnf_media::codec::MIX_RATE;
/// Lowest rate [`Wav::mono_8k`] resamples from: below it the output would be
/// mostly interpolation (and a 1 Hz file would grow 8000-fold).
pub const MIN_RATE: u32 = 4000;
/// Highest rate [`Wav::mono_8k`] resamples from; the low-pass grows with the
/// ratio (about 2,600 taps at this rate).
pub const MAX_RATE: u32 = 384_000;

impl Wav {
    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.channels.max(1)) / f64::from(self.rate.max(1))
    }

    /// The channels averaged to mono (rounded to nearest), at the file's own rate.
    pub fn mono(&self) -> Vec<i16> {
        let ch = usize::from(self.channels.max(1));
        self.samples
            .chunks_exact(ch)
            .map(|frame| {
                let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
                // The mean of i16 values is within i16 range.
                (f64::from(sum) / ch as f64).round() as i16
            })
            .collect()
    }

    /// Mono at 8 kHz: channels averaged, then resampled through an anti-aliasing
    /// low-pass if the file's rate is not 8000 Hz (see the module docs).
    pub fn mono_8k(&self) -> Result<Vec<i16>, WavError> {
        if self.rate == 0 {
            return Err(WavError::ZeroRate);
        }
        if self.channels == 0 {
            return Err(WavError::NoChannels);
        }
        if !(MIN_RATE..=MAX_RATE).contains(&self.rate) {
            return Err(WavError::RateOutOfRange(self.rate));
        }
        let mono = self.mono();
        if self.rate == TARGET_RATE {
            return Ok(mono);
        }
        Ok(resample(&mono, self.rate, TARGET_RATE))
    }
}

/// Kernel table resolution: kernel values per input-sample interval. Linear
/// interpolation between entries of a kernel this finely sampled stays below the
/// Blackman window's own stop-band level.
const PHASES: usize = 256;

/// A windowed-sinc low-pass sampled on a fine grid, in units of input samples.
struct Kernel {
    /// Half width in input samples: taps reach from `t - half` to `t + half`.
    half: f64,
    /// `h(x)` at `x = -half + i / PHASES`.
    table: Vec<f64>,
}

impl Kernel {
    /// Low-pass for resampling from `from` Hz to `to` Hz. The cut-off (-6 dB) is at
    /// 0.45 × the lower rate and the transition band 0.1 × the lower rate wide, so it
    /// ends at the lower Nyquist frequency. A Blackman window's transition is about
    /// 5.5 / N of the sampling rate for N taps, which sets the width; the
    /// Blackman's side lobes sit near -74 dB.
    fn new(from: u32, to: u32) -> Kernel {
        let low = f64::from(from.min(to));
        let fs = f64::from(from);
        let cutoff = 0.45 * low / fs; // cycles per input sample
        let transition = 0.1 * low / fs;
        let taps = (5.5 / transition).ceil().max(64.0);
        let half = taps / 2.0;
        let n = (2.0 * half * PHASES as f64).ceil() as usize + 1;
        let table = (0..n)
            .map(|i| {
                let x = -half + i as f64 / PHASES as f64;
                let sinc = if x == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * PI * cutoff * x).sin() / (PI * x)
                };
                // Blackman over [-half, half].
                let u = (x + half) / (2.0 * half);
                let w = 0.42 - 0.5 * (2.0 * PI * u).cos() + 0.08 * (4.0 * PI * u).cos();
                sinc * w
            })
            .collect();
        Kernel { half, table }
    }

    /// `h(x)` by linear interpolation; 0 outside the support.
    fn at(&self, x: f64) -> f64 {
        let pos = (x + self.half) * PHASES as f64;
        if !(0.0..=(self.table.len() - 1) as f64).contains(&pos) {
            return 0.0;
        }
        let i = pos.floor() as usize;
        let frac = pos - i as f64;
        let a = self.table[i];
        let b = self.table.get(i + 1).copied().unwrap_or(0.0);
        a + (b - a) * frac
    }
}

/// Band-limited resampling of `x` from `from` Hz to `to` Hz (both non-zero).
///
/// Each output sample is the kernel-weighted sum of the input around its instant,
/// divided by the sum of the weights, so the DC gain is exactly 1 whatever the
/// fractional phase. Beyond both ends the input counts as silence.
fn resample(x: &[i16], from: u32, to: u32) -> Vec<i16> {
    let kernel = Kernel::new(from, to);
    let step = f64::from(from) / f64::from(to);
    let out_len = (x.len() as u128 * u128::from(to) / u128::from(from)) as usize;
    let reach = kernel.half.ceil() as i64;
    (0..out_len)
        .map(|n| {
            let t = n as f64 * step;
            let centre = t.floor() as i64;
            let (mut acc, mut weights) = (0.0, 0.0);
            for k in centre - reach..=centre + reach + 1 {
                let w = kernel.at(t - k as f64);
                weights += w;
                if let Some(&s) = usize::try_from(k).ok().and_then(|k| x.get(k)) {
                    acc += w * f64::from(s);
                }
            }
            let y = if weights > 0.0 { acc / weights } else { 0.0 };
            y.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scnf_media::testvectors::{read_vector, tone_power};
    use scnf_media::util::Rng;

    fn tone(freq: f64, rate: u32, amp: f64, secs: f64) -> Vec<i16> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()).round() as i16)
            .collect()
    }

    fn db(p: f64) -> f64 {
        10.0 * p.max(1e-12).log10()
    }

    /// A stereo file with an odd-sized LIST chunk (and its pad byte) between fmt
    /// and data, and an unknown chunk after the data.
    fn stereo_with_extra_chunks(frames: &[(i16, i16)]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(b"WAVEfmt ");
        body.extend_from_slice(&16u32.to_le_bytes());
        for v in [1u16, 2] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&44_100u32.to_le_bytes());
        body.extend_from_slice(&(44_100u32 * 4).to_le_bytes());
        for v in [4u16, 16] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(b"LIST");
        body.extend_from_slice(&5u32.to_le_bytes());
        body.extend_from_slice(b"INFOx\0"); // 5 bytes + pad
        body.extend_from_slice(b"data");
        body.extend_from_slice(&(frames.len() as u32 * 4).to_le_bytes());
        for &(l, r) in frames {
            body.extend_from_slice(&l.to_le_bytes());
            body.extend_from_slice(&r.to_le_bytes());
        }
        body.extend_from_slice(b"junk");
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"abc");
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn extensible(subformat: u16, bits: u16) -> Vec<u8> {
        let mut fmt = Vec::new();
        for v in [FORMAT_EXTENSIBLE, 1] {
            fmt.extend_from_slice(&v.to_le_bytes());
        }
        fmt.extend_from_slice(&16_000u32.to_le_bytes());
        fmt.extend_from_slice(&32_000u32.to_le_bytes());
        for v in [2u16, bits, 22, bits] {
            fmt.extend_from_slice(&v.to_le_bytes());
        }
        fmt.extend_from_slice(&4u32.to_le_bytes()); // channel mask: front centre
        fmt.extend_from_slice(&subformat.to_le_bytes());
        fmt.extend_from_slice(&PCM_GUID_TAIL);
        let mut out = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        out.extend_from_slice(&fmt);
        out.extend_from_slice(b"data");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&[1, 0, 2, 0]);
        out
    }

    #[test]
    fn a_written_file_reads_back_unchanged() {
        let samples = [0, 1, -1, i16::MAX, i16::MIN, 1234];
        let bytes = write_wav(&samples, 8000);
        assert_eq!(bytes.len(), 44 + 12);
        let wav = read_wav(&bytes).unwrap();
        assert_eq!(
            wav,
            Wav {
                rate: 8000,
                channels: 1,
                samples: samples.to_vec()
            }
        );
        assert_eq!(wav.mono_8k().unwrap(), samples.to_vec());
    }

    #[test]
    fn unknown_and_odd_sized_chunks_are_skipped_and_stereo_is_averaged() {
        let frames = [(100, 300), (-5, -6), (i16::MAX, i16::MAX), (-32768, 32767)];
        let wav = read_wav(&stereo_with_extra_chunks(&frames)).unwrap();
        assert_eq!((wav.rate, wav.channels), (44_100, 2));
        assert_eq!(
            wav.samples,
            vec![100, 300, -5, -6, 32767, 32767, -32768, 32767]
        );
        // -5.5 rounds away from zero; -0.5 as well.
        assert_eq!(wav.mono(), vec![200, -6, 32767, -1]);
    }

    #[test]
    fn extensible_pcm_is_accepted_and_other_subformats_are_named() {
        let wav = read_wav(&extensible(1, 16)).unwrap();
        assert_eq!(
            (wav.rate, wav.channels, wav.samples),
            (16_000, 1, vec![1, 2])
        );
        assert_eq!(
            read_wav(&extensible(3, 16)),
            Err(WavError::NotPcmSubformat(
                "0300000000001000800000aa00389b71".into()
            ))
        );
    }

    #[test]
    fn each_kind_of_bad_file_gets_its_own_error() {
        let good = write_wav(&[1, 2, 3], 8000);
        let with = |at: usize, bytes: &[u8]| {
            let mut b = good.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            b
        };
        let cases: Vec<(Vec<u8>, WavError)> = vec![
            (b"RIFX".to_vec(), WavError::NotRiff),
            (with(8, b"AVI "), WavError::NotWave("AVI ".into())),
            (with(20, &3u16.to_le_bytes()), WavError::NotPcm(3)),
            (with(34, &8u16.to_le_bytes()), WavError::EightBit),
            (
                with(34, &24u16.to_le_bytes()),
                WavError::UnsupportedBits(24),
            ),
            (with(22, &0u16.to_le_bytes()), WavError::NoChannels),
            (with(24, &0u32.to_le_bytes()), WavError::ZeroRate),
            (
                with(22, &2u16.to_le_bytes()),
                WavError::BadBlockAlign {
                    block_align: 2,
                    channels: 2,
                },
            ),
            (with(16, &14u32.to_le_bytes()), WavError::ShortFmt(14)),
            (
                with(40, &100u32.to_le_bytes()),
                WavError::DataBeyondFile {
                    declared: 100,
                    available: 6,
                },
            ),
            (
                with(16, &1000u32.to_le_bytes()),
                WavError::TruncatedChunk {
                    id: "fmt ".into(),
                    offset: 12,
                    declared: 1000,
                    available: good.len() - 20,
                },
            ),
            (with(36, b"daTA"), WavError::MissingData),
            (with(12, b"fmT "), WavError::MissingFmt),
            (
                good[..30].to_vec(),
                WavError::TruncatedChunk {
                    id: "fmt ".into(),
                    offset: 12,
                    declared: 16,
                    available: 10,
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(read_wav(&bytes), Err(want));
        }
    }

    #[test]
    fn no_truncation_or_corruption_of_a_valid_file_panics() {
        let frames: Vec<(i16, i16)> = (0..40).map(|i| (i * 7, -i * 3)).collect();
        let good = stereo_with_extra_chunks(&frames);
        let full = read_wav(&good).unwrap();
        for len in 0..good.len() {
            // A cut either fails, or (inside the trailing chunk, after the data)
            // still yields the complete samples.
            if let Ok(wav) = read_wav(&good[..len]) {
                assert_eq!(wav, full, "truncated to {len} bytes");
            }
        }
        let mut rng = Rng::new(7);
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len() as u64) as usize;
                b[at] = rng.next_u32() as u8;
            }
            let cut = b.len() - rng.below(8) as usize;
            if let Ok(wav) = read_wav(&b[..cut]) {
                assert_eq!(
                    wav.mono().len() * usize::from(wav.channels),
                    wav.samples.len()
                );
            }
        }
        for _ in 0..2_000 {
            let len = rng.below(200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            if len >= 12 && rng.chance(0.5) {
                b[0..4].copy_from_slice(b"RIFF");
                b[8..12].copy_from_slice(b"WAVE");
            }
            let _ = read_wav(&b);
        }
    }

    #[test]
    fn resampling_keeps_an_in_band_tone_at_its_level() {
        for rate in [11_025, 16_000, 22_050, 44_100, 48_000, 6_000] {
            let wav = Wav {
                rate,
                channels: 1,
                samples: tone(1000.0, rate, 10_000.0, 1.0),
            };
            let out = wav.mono_8k().unwrap();
            assert_eq!(out.len(), 8000, "{rate} Hz");
            // Skip the filter's edges.
            let mid = &out[800..7200];
            let level = db(tone_power(mid, 1000.0, 8000.0)) - db(10_000.0f64.powi(2) / 2.0);
            assert!(level.abs() < 0.1, "{rate} Hz: 1 kHz at {level:.2} dB");
        }
    }

    #[test]
    fn resampling_to_8k_removes_what_would_alias() {
        // 5 kHz at 48 kHz would fold to 3 kHz; 7.9 kHz at 44.1 kHz to 100 Hz;
        // 4.5 kHz at 16 kHz to 3.5 kHz.
        for (rate, freq, alias) in [
            (48_000, 5000.0, 3000.0),
            (44_100, 7900.0, 100.0),
            (16_000, 4500.0, 3500.0),
        ] {
            let wav = Wav {
                rate,
                channels: 1,
                samples: tone(freq, rate, 20_000.0, 1.0),
            };
            let out = wav.mono_8k().unwrap();
            let mid = &out[800..7200];
            let rel = db(tone_power(mid, alias, 8000.0)) - db(20_000.0f64.powi(2) / 2.0);
            assert!(
                rel < -60.0,
                "{rate} Hz, {freq} Hz tone: alias at {rel:.1} dB"
            );
        }
    }

    #[test]
    fn rates_outside_the_resampler_range_are_refused() {
        for rate in [1, MIN_RATE - 1, MAX_RATE + 1, u32::MAX] {
            let wav = Wav {
                rate,
                channels: 1,
                samples: vec![0; 100],
            };
            assert_eq!(wav.mono_8k(), Err(WavError::RateOutOfRange(rate)));
        }
        let edge = Wav {
            rate: MAX_RATE,
            channels: 1,
            samples: vec![1000; 4800],
        };
        let out = edge.mono_8k().unwrap();
        assert_eq!(out.len(), 100);
        assert_eq!(out[50], 1000, "DC passes with unit gain");
    }

    #[test]
    fn the_shipped_speech_sample_is_8k_mono_speech_of_about_ten_seconds() {
        let wav = read_wav(&read_vector("speech/speech-8k.wav")).unwrap();
        assert_eq!((wav.rate, wav.channels), (8000, 1));
        let secs = wav.duration_s();
        assert!((8.0..=12.0).contains(&secs), "{secs} s");
        let rms = (scnf_media::testvectors::mean_power(&wav.samples)).sqrt();
        let rms_dbfs = 20.0 * (rms / 32768.0).log10();
        assert!(
            (-30.0..=-12.0).contains(&rms_dbfs),
            "RMS {rms_dbfs:.1} dBFS"
        );
        let peak = wav
            .samples
            .iter()
            .map(|s| i32::from(*s).abs())
            .max()
            .unwrap_or(0);
        let peak_dbfs = 20.0 * (f64::from(peak) / 32768.0).log10();
        assert!(peak_dbfs <= -3.0 + 0.05, "peak {peak_dbfs:.2} dBFS");
    }
}
