//! A pre-encoded VP8 clip held in memory, ready to be looped as RTP.
//!
//! Encoding video live would make the load generator far costlier than the node
//! it loads (the node never decodes video), so a publisher plays a clip encoded
//! once, offline, by ffmpeg: `vectors/video/` (its README has the recipe). A
//! [`Clip`] is parsed once and shared (`Arc`) by every publisher of that layer; it
//! keeps all frames in one buffer and a small table of where each frame lies, when
//! it is due (90 kHz, from the clip's start) and whether it is a key frame.
//!
//! Playing in a loop needs a length: the clip lasts from its first frame to one
//! frame interval after its last (the interval before the last frame is repeated),
//! so that a 4 s clip at 15 fps loops every 360,000 ticks, not 354,000.

use super::ivf::{IvfError, IvfHeader, IvfReader};
use super::Layer;

/// Why a file is not a clip a publisher can loop.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum ClipError {
    #[error(transparent)]
    Ivf(#[from] IvfError),
    #[error("codec {0:?} is not VP8")]
    NotVp8([u8; 4]),
    #[error("the clip has no frames")]
    NoFrames,
    #[error("the clip has no key frame, so a viewer could never start decoding")]
    NoKeyframe,
    #[error("frame {frame}: pts does not increase")]
    PtsNotIncreasing { frame: usize },
    #[error("frame {frame}: over {MAX_FRAME_GAP_90K} ticks after the one before")]
    GapTooLong { frame: usize },
    #[error("the clip is over 4 GiB")]
    TooLarge,
}

/// Longest time between two frames a clip may have, 90 kHz ticks (10 s). A live
/// encoder never pauses that long; the bound keeps every time computed from a
/// damaged file small enough not to overflow.
pub const MAX_FRAME_GAP_90K: u64 = 10 * 90_000;

/// Where one frame lies in a [`Clip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameEntry {
    start: u32,
    end: u32,
    /// Due time from the clip's first frame, 90 kHz.
    ts_90k: u64,
    keyframe: bool,
}

/// One frame of a [`Clip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipFrame<'a> {
    /// The compressed VP8 frame.
    pub data: &'a [u8],
    /// When it is due, 90 kHz ticks from the clip's first frame.
    pub ts_90k: u64,
    /// Whether it is a key frame.
    pub keyframe: bool,
}

/// A VP8 clip: frames, their times and key-frame flags, read from IVF.
///
/// Times stay small: frames are at most [`MAX_FRAME_GAP_90K`] apart, so a loop
/// of `n` frames lasts at most `n` × 10 s, and nothing computed from it (due
/// times, `Instant`s) overflows whatever the file says.
#[derive(Debug, Clone)]
pub struct Clip {
    header: IvfHeader,
    data: Vec<u8>,
    /// Invariant: at least one entry, timestamps strictly increasing, at least one
    /// key frame (checked by [`Clip::parse`]).
    frames: Vec<FrameEntry>,
    duration_90k: u64,
}

impl Clip {
    /// Reads a whole IVF file of VP8 frames.
    pub fn parse(file: &[u8]) -> Result<Clip, ClipError> {
        let reader = IvfReader::new(file)?;
        let header = *reader.header();
        if header.fourcc != *b"VP80" {
            return Err(ClipError::NotVp8(header.fourcc));
        }
        let mut data = Vec::with_capacity(file.len());
        let mut frames: Vec<FrameEntry> = Vec::new();
        let mut first_pts = None;
        for (i, frame) in reader.enumerate() {
            let frame = frame?;
            let first = *first_pts.get_or_insert(frame.pts);
            if frame.pts < first {
                return Err(ClipError::PtsNotIncreasing { frame: i });
            }
            let ts_90k = header.pts_to_90k(frame.pts - first);
            if let Some(prev) = frames.last() {
                if ts_90k <= prev.ts_90k {
                    return Err(ClipError::PtsNotIncreasing { frame: i });
                }
                if ts_90k - prev.ts_90k > MAX_FRAME_GAP_90K {
                    return Err(ClipError::GapTooLong { frame: i });
                }
            }
            let start = u32::try_from(data.len()).map_err(|_| ClipError::TooLarge)?;
            data.extend_from_slice(frame.data);
            let end = u32::try_from(data.len()).map_err(|_| ClipError::TooLarge)?;
            frames.push(FrameEntry {
                start,
                end,
                ts_90k,
                keyframe: frame.keyframe,
            });
        }
        let last_interval = match frames.as_slice() {
            [] => return Err(ClipError::NoFrames),
            [_] => header.pts_to_90k(1).clamp(1, MAX_FRAME_GAP_90K),
            [.., a, b] => b.ts_90k - a.ts_90k,
        };
        if !frames.iter().any(|f| f.keyframe) {
            return Err(ClipError::NoKeyframe);
        }
        let last = frames[frames.len() - 1].ts_90k;
        Ok(Clip {
            header,
            data,
            frames,
            duration_90k: last + last_interval,
        })
    }

    /// The clip of `layer` shipped in `vectors/video/` (built into the binary, so
    /// rtpgen needs no file at run time; a test checks the bytes against
    /// `vectors/SHA256SUMS`).
    pub fn shipped(layer: Layer) -> Clip {
        Clip::parse(layer.shipped_ivf()).expect("the shipped clips parse (tested in video::clip)")
    }

    /// The IVF file header.
    pub fn header(&self) -> &IvfHeader {
        &self.header
    }

    /// Number of frames (at least 1).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Always false: a clip has at least one frame (here for clippy's sake).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frame `i` (`i < len()`, else the index wraps around the loop).
    pub fn frame(&self, i: usize) -> ClipFrame<'_> {
        let e = self.frames[i % self.frames.len()];
        ClipFrame {
            data: &self.data[e.start as usize..e.end as usize],
            ts_90k: e.ts_90k,
            keyframe: e.keyframe,
        }
    }

    /// Indices of the key frames, ascending.
    pub fn keyframes(&self) -> impl Iterator<Item = usize> + '_ {
        self.frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.keyframe)
            .map(|(i, _)| i)
    }

    /// Length of one pass of the loop, 90 kHz ticks (see the module doc).
    pub fn duration_90k(&self) -> u64 {
        self.duration_90k
    }

    /// Ticks from frame `i` to the frame after it in the loop.
    pub fn interval_90k(&self, i: usize) -> u64 {
        let i = i % self.frames.len();
        let next = self
            .frames
            .get(i + 1)
            .map_or(self.duration_90k, |f| f.ts_90k);
        next - self.frames[i].ts_90k
    }

    /// Frames per second, from the loop length.
    pub fn fps(&self) -> f64 {
        self.frames.len() as f64 * 90_000.0 / self.duration_90k as f64
    }

    /// Bits per second of the frames' bytes over the loop length (no RTP overhead).
    pub fn bitrate_bps(&self) -> f64 {
        self.data.len() as f64 * 8.0 * 90_000.0 / self.duration_90k as f64
    }

    /// The key frame nearest to frame `i`, looking both ways around the loop (a
    /// tie goes forward): where a publisher jumps when asked for a key frame, so
    /// that the jump skips or repeats as little of the picture as it can.
    pub fn nearest_keyframe(&self, i: usize) -> usize {
        let n = self.frames.len();
        let i = i % n;
        (0..n)
            .find_map(|d| {
                let fwd = (i + d) % n;
                let back = (i + n - d) % n;
                if self.frames[fwd].keyframe {
                    Some(fwd)
                } else if self.frames[back].keyframe {
                    Some(back)
                } else {
                    None
                }
            })
            .expect("a clip has a key frame (checked by Clip::parse)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::ivf::tests::ivf;
    use scnf_media::testvectors::read_vector;

    #[test]
    fn the_shipped_clips_are_the_checksummed_vectors() {
        for layer in Layer::ALL {
            let file = read_vector(&format!("video/{}.ivf", layer.label()));
            assert!(file == layer.shipped_ivf(), "{layer:?}");
        }
    }

    #[test]
    fn the_shipped_clips_are_4_s_at_15_fps_with_a_key_frame_every_second() {
        // (layer, width, height, nominal kbit/s)
        let table = [
            (Layer::Low, 320, 180, 80.0),
            (Layer::Medium, 640, 360, 250.0),
            (Layer::High, 1280, 720, 1000.0),
        ];
        for (layer, w, h, kbps) in table {
            let clip = Clip::shipped(layer);
            assert_eq!((clip.header().width, clip.header().height), (w, h));
            assert_eq!(clip.len(), 60, "{layer:?}");
            assert_eq!(clip.duration_90k(), 4 * 90_000, "{layer:?}");
            assert_eq!(clip.fps(), 15.0);
            assert!((0..60).all(|i| clip.interval_90k(i) == 6000));
            let keys: Vec<usize> = clip.keyframes().collect();
            assert_eq!(keys, [0, 15, 30, 45], "{layer:?}");
            // libvpx's rate control lands near the target on this easy source.
            let got = clip.bitrate_bps() / 1000.0;
            assert!(
                got > kbps * 0.75 && got < kbps * 1.1,
                "{layer:?}: {got:.0} kbit/s for {kbps}"
            );
        }
    }

    #[test]
    fn the_nearest_key_frame_looks_both_ways_around_the_loop() {
        let clip = Clip::shipped(Layer::Low);
        let table = [
            (0, 0),
            (7, 0),
            (8, 15),
            (14, 15),
            (15, 15),
            (52, 45),
            (53, 0),
            (59, 0),
        ];
        for (from, want) in table {
            assert_eq!(clip.nearest_keyframe(from), want, "from {from}");
        }
    }

    #[test]
    fn clips_without_frames_or_key_frames_or_rising_pts_are_refused() {
        assert_eq!(Clip::parse(&ivf(&[])).unwrap_err(), ClipError::NoFrames);
        assert_eq!(
            Clip::parse(&ivf(&[(0, &[0x01]), (1, &[0x01])])).unwrap_err(),
            ClipError::NoKeyframe
        );
        assert_eq!(
            Clip::parse(&ivf(&[(0, &[0x00]), (2, &[0x01]), (2, &[0x01])])).unwrap_err(),
            ClipError::PtsNotIncreasing { frame: 2 }
        );
        // 150 ticks of 1/15 s is 10 s: the longest gap allowed.
        assert!(Clip::parse(&ivf(&[(0, &[0x00]), (150, &[0x01])])).is_ok());
        assert_eq!(
            Clip::parse(&ivf(&[(0, &[0x00]), (151, &[0x01])])).unwrap_err(),
            ClipError::GapTooLong { frame: 1 }
        );
        let mut not_vp8 = ivf(&[(0, &[0x00])]);
        not_vp8[8..12].copy_from_slice(b"VP90");
        assert_eq!(
            Clip::parse(&not_vp8).unwrap_err(),
            ClipError::NotVp8(*b"VP90")
        );
    }

    #[test]
    fn the_loop_lasts_one_interval_past_the_last_frame() {
        let clip = Clip::parse(&ivf(&[(10, &[0x00]), (12, &[0x01]), (13, &[0x01])])).unwrap();
        assert_eq!(clip.frame(0).ts_90k, 0);
        assert_eq!(clip.frame(1).ts_90k, 12_000);
        assert_eq!(clip.duration_90k(), 24_000);
        assert_eq!(clip.interval_90k(2), 6000);
        assert_eq!(clip.frame(3), clip.frame(0));
    }

    #[test]
    fn damaged_clips_are_errors_or_clips_never_panics() {
        let good = Layer::Low.shipped_ivf();
        let mut rng = scnf_media::util::Rng::new(5);
        let (mut ok, mut err) = (0, 0);
        for _ in 0..3000 {
            // Half of them cut short (which almost always cuts a frame).
            let len = if rng.chance(0.5) {
                rng.below(good.len() as u64) as usize
            } else {
                good.len()
            };
            let mut file = good[..len].to_vec();
            for _ in 0..rng.below(4) {
                // Aim at the headers: the file header and the first frame headers.
                let at = rng.below(file.len().min(200) as u64) as usize;
                if let Some(b) = file.get_mut(at) {
                    *b = rng.next_u32() as u8;
                }
            }
            match Clip::parse(&file) {
                Ok(clip) => {
                    ok += 1;
                    assert!(clip.duration_90k() > 0);
                    let _ = clip.nearest_keyframe(rng.below(100) as usize);
                }
                Err(_) => err += 1,
            }
        }
        assert!(ok > 100 && err > 100, "{ok} parsed, {err} refused");
    }
}
