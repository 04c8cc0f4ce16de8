//! The IVF container: a 32-byte file header, then frames, each behind a 12-byte
//! header (little-endian frame size and 64-bit presentation timestamp).
//!
//! IVF is what libvpx and ffmpeg write for a bare VP8 stream, and it has nothing
//! else in it: no index, no codec private data. That is why the clips under
//! `vectors/video/` are IVF: reading one is a few lines, and each frame comes out
//! as exactly the bytes an RTP packetizer needs.
//!
//! The reader borrows the file and never panics: a short header, a frame header cut
//! off, or a frame running past the end of the file is an [`IvfError`] naming the
//! frame. The header's frame count is not trusted (ffmpeg fills it in on close, and
//! a writer killed early leaves it stale); the frames are whatever follows.

/// Length of the IVF file header.
pub const IVF_HEADER_LEN: usize = 32;
/// Length of the header in front of every frame.
pub const IVF_FRAME_HEADER_LEN: usize = 12;
/// The file signature.
const SIGNATURE: &[u8; 4] = b"DKIF";

/// Why bytes are not a readable IVF file.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum IvfError {
    #[error("{len} bytes is shorter than the 32-byte IVF header")]
    TooShort { len: usize },
    #[error("no DKIF signature")]
    BadSignature,
    #[error("IVF header length {0}, expected 32")]
    BadHeaderLength(u16),
    #[error("IVF time base {num}/{den} has a zero in it")]
    ZeroTimebase { num: u32, den: u32 },
    #[error("frame {frame}: header cut off at byte {offset}")]
    TruncatedFrameHeader { frame: usize, offset: usize },
    #[error("frame {frame}: {size} bytes announced, {have} left in the file")]
    TruncatedFrame {
        frame: usize,
        size: usize,
        have: usize,
    },
}

/// The fields of the IVF file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfHeader {
    /// Codec, e.g. `b"VP80"`.
    pub fourcc: [u8; 4],
    /// Pixels.
    pub width: u16,
    /// Pixels.
    pub height: u16,
    /// Time base denominator: a pts of `n` is `n * timebase_num / timebase_den`
    /// seconds (ffmpeg writes the frame rate here, e.g. 15 over 1).
    pub timebase_den: u32,
    /// Time base numerator.
    pub timebase_num: u32,
    /// The frame count the writer recorded (informative only, see the module doc).
    pub frame_count: u32,
}

impl IvfHeader {
    /// Parses the 32-byte header at the start of `file`.
    pub fn parse(file: &[u8]) -> Result<IvfHeader, IvfError> {
        let Some(h) = file.first_chunk::<IVF_HEADER_LEN>() else {
            return Err(IvfError::TooShort { len: file.len() });
        };
        if &h[0..4] != SIGNATURE {
            return Err(IvfError::BadSignature);
        }
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let header_len = u16_at(6);
        if usize::from(header_len) != IVF_HEADER_LEN {
            return Err(IvfError::BadHeaderLength(header_len));
        }
        let (den, num) = (u32_at(16), u32_at(20));
        if den == 0 || num == 0 {
            return Err(IvfError::ZeroTimebase { num, den });
        }
        Ok(IvfHeader {
            fourcc: [h[8], h[9], h[10], h[11]],
            width: u16_at(12),
            height: u16_at(14),
            timebase_den: den,
            timebase_num: num,
            frame_count: u32_at(24),
        })
    }

    /// A pts in this file's time base converted to a 90 kHz clock (the RTP video
    /// clock, RFC 7741 §4.1), rounded down.
    pub fn pts_to_90k(&self, pts: u64) -> u64 {
        let t = u128::from(pts) * 90_000 * u128::from(self.timebase_num)
            / u128::from(self.timebase_den);
        u64::try_from(t).unwrap_or(u64::MAX)
    }
}

/// One frame of an IVF file, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfFrame<'a> {
    /// Presentation timestamp in the file's time base.
    pub pts: u64,
    /// The compressed frame.
    pub data: &'a [u8],
    /// Whether the frame is a VP8 key frame ([`is_vp8_keyframe`]).
    pub keyframe: bool,
}

/// Whether a VP8 frame is a key frame: bit 0 of the frame tag (RFC 6386 §9.1) is
/// the inverse key-frame flag, 0 for a key frame. An empty frame is not one.
pub fn is_vp8_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// The frames of an IVF file, in file order; an error ends the iteration.
#[derive(Debug, Clone)]
pub struct IvfReader<'a> {
    header: IvfHeader,
    file: &'a [u8],
    offset: usize,
    frame: usize,
    failed: bool,
}

impl<'a> IvfReader<'a> {
    /// Checks the file header; the frames are read by iterating.
    pub fn new(file: &'a [u8]) -> Result<IvfReader<'a>, IvfError> {
        Ok(IvfReader {
            header: IvfHeader::parse(file)?,
            file,
            offset: IVF_HEADER_LEN,
            frame: 0,
            failed: false,
        })
    }

    /// The file header.
    pub fn header(&self) -> &IvfHeader {
        &self.header
    }

    fn read_frame(&mut self) -> Result<IvfFrame<'a>, IvfError> {
        let rest = &self.file[self.offset..];
        let Some(fh) = rest.first_chunk::<IVF_FRAME_HEADER_LEN>() else {
            return Err(IvfError::TruncatedFrameHeader {
                frame: self.frame,
                offset: self.offset,
            });
        };
        let size = u32::from_le_bytes([fh[0], fh[1], fh[2], fh[3]]) as usize;
        let mut pts = [0u8; 8];
        pts.copy_from_slice(&fh[4..12]);
        let body = &rest[IVF_FRAME_HEADER_LEN..];
        let Some(data) = body.get(..size) else {
            return Err(IvfError::TruncatedFrame {
                frame: self.frame,
                size,
                have: body.len(),
            });
        };
        self.offset += IVF_FRAME_HEADER_LEN + size;
        self.frame += 1;
        Ok(IvfFrame {
            pts: u64::from_le_bytes(pts),
            data,
            keyframe: is_vp8_keyframe(data),
        })
    }
}

impl<'a> Iterator for IvfReader<'a> {
    type Item = Result<IvfFrame<'a>, IvfError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.file.len() {
            return None;
        }
        let r = self.read_frame();
        self.failed = r.is_err();
        Some(r)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IVF file of the given frames, time base 1/15.
    pub(crate) fn ivf(frames: &[(u64, &[u8])]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(b"DKIF");
        f.extend_from_slice(&0u16.to_le_bytes());
        f.extend_from_slice(&32u16.to_le_bytes());
        f.extend_from_slice(b"VP80");
        f.extend_from_slice(&320u16.to_le_bytes());
        f.extend_from_slice(&180u16.to_le_bytes());
        f.extend_from_slice(&15u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&(frames.len() as u32).to_le_bytes());
        f.extend_from_slice(&[0; 4]);
        for (pts, data) in frames {
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(&pts.to_le_bytes());
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn a_file_yields_its_frames_with_pts_and_keyframe_flags() {
        let file = ivf(&[(0, &[0x10, 1, 2]), (1, &[0x11, 3]), (2, &[0x00])]);
        let r = IvfReader::new(&file).unwrap();
        assert_eq!(r.header().fourcc, *b"VP80");
        assert_eq!((r.header().width, r.header().height), (320, 180));
        assert_eq!((r.header().timebase_num, r.header().timebase_den), (1, 15));
        let frames: Vec<_> = r.map(Result::unwrap).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1].pts, 1);
        assert_eq!(frames[1].data, &[0x11, 3]);
        let keys: Vec<bool> = frames.iter().map(|f| f.keyframe).collect();
        assert_eq!(keys, [true, false, true]);
    }

    #[test]
    fn pts_convert_to_the_90_khz_clock() {
        let file = ivf(&[]);
        let h = IvfHeader::parse(&file).unwrap();
        assert_eq!(h.pts_to_90k(0), 0);
        assert_eq!(h.pts_to_90k(1), 6000);
        assert_eq!(h.pts_to_90k(15), 90_000);
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        let good = ivf(&[(0, &[0x10, 1, 2, 3]), (1, &[0x11, 4, 5])]);
        assert_eq!(
            IvfReader::new(&good[..31]).unwrap_err(),
            IvfError::TooShort { len: 31 }
        );
        let mut bad_sig = good.clone();
        bad_sig[0] = b'X';
        assert_eq!(
            IvfReader::new(&bad_sig).unwrap_err(),
            IvfError::BadSignature
        );
        let mut bad_len = good.clone();
        bad_len[6] = 33;
        assert_eq!(
            IvfReader::new(&bad_len).unwrap_err(),
            IvfError::BadHeaderLength(33)
        );
        let mut zero_tb = good.clone();
        zero_tb[16..20].copy_from_slice(&[0; 4]);
        assert!(matches!(
            IvfReader::new(&zero_tb).unwrap_err(),
            IvfError::ZeroTimebase { .. }
        ));

        // Every cut of the file inside a frame is an error for that frame, after
        // the frames before it came out whole.
        let first_end = 32 + 12 + 4;
        for cut in 33..good.len() {
            let frames: Vec<_> = IvfReader::new(&good[..cut]).unwrap().collect();
            let whole = usize::from(cut >= first_end);
            if cut == first_end {
                assert_eq!(frames.len(), 1, "cut at {cut}");
                continue;
            }
            assert_eq!(frames.len(), whole + 1, "cut at {cut}");
            assert!(frames[..whole].iter().all(Result::is_ok));
            let err = frames[whole].unwrap_err();
            match err {
                IvfError::TruncatedFrameHeader { frame, .. }
                | IvfError::TruncatedFrame { frame, .. } => assert_eq!(frame, whole),
                other => panic!("cut at {cut}: {other}"),
            }
        }
    }

    #[test]
    fn a_huge_announced_frame_size_is_an_error() {
        let mut file = ivf(&[(0, &[0x10, 1])]);
        file[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        let r: Vec<_> = IvfReader::new(&file).unwrap().collect();
        assert!(matches!(
            r[0],
            Err(IvfError::TruncatedFrame { frame: 0, .. })
        ));
    }
}
