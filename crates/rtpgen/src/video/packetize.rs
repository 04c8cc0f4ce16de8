//! The VP8 RTP payload (RFC 7741): a frame cut into packets, each behind a payload
//! descriptor.
//!
//! Every packet carries the 4-byte descriptor
//!
//! ```text
//!  byte 0: X=1 R=0 N=0 S PID=0     S set on the first packet of a frame
//!  byte 1: I=1 L=0 T=0 K=0 RSV=0   only the PictureID extension is present
//!  byte 2: M=1 PictureID[14..8]    15-bit PictureID, one per frame, wrapping
//!  byte 3: PictureID[7..0]
//! ```
//!
//! The whole frame goes in partition index 0 (RFC 7741 §4.2 allows that: a
//! packetizer need not split at partition boundaries), and the RTP marker goes on
//! the last packet of the frame. The PictureID is there because the node and real
//! receivers use it to tell frames apart across a layer switch and to spot a lost
//! frame; TL0PICIDX and the temporal-layer fields are left out (the clips have one
//! temporal layer).
//!
//! A frame is cut into equal parts rather than full packets plus a short tail, so
//! that no packet is tiny (libwebrtc does the same); a packet's payload never
//! exceeds the packetizer's `max_payload`. Nothing is allocated: each payload is
//! written into a buffer the caller passes in.

/// Length of the payload descriptor this packetizer writes.
pub const VP8_DESCRIPTOR_LEN: usize = 4;
/// Default largest RTP payload, bytes: leaves room for the RTP header, SRTP, IP,
/// UDP and a tunnel under a 1500-byte MTU.
pub const DEFAULT_MAX_PAYLOAD: usize = 1200;
/// Smallest `max_payload` that can carry a frame: the descriptor and one byte.
pub const MIN_MAX_PAYLOAD: usize = VP8_DESCRIPTOR_LEN + 1;

/// A frame's payloads did not fit the buffer given for them.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("payload buffer of {have} bytes is smaller than the {need} needed")]
pub struct BufferTooSmall {
    pub need: usize,
    pub have: usize,
}

/// Cuts VP8 frames into RTP payloads, numbering the frames with PictureIDs.
#[derive(Debug, Clone)]
pub struct Vp8Packetizer {
    max_payload: usize,
    /// The PictureID of the next frame, 15 bits.
    picture_id: u16,
}

impl Vp8Packetizer {
    /// A packetizer whose payloads are at most `max_payload` bytes (raised to
    /// [`MIN_MAX_PAYLOAD`] if smaller), starting at PictureID `first_picture_id`
    /// (taken modulo 2^15; RFC 7741 suggests a random start).
    pub fn new(max_payload: usize, first_picture_id: u16) -> Vp8Packetizer {
        Vp8Packetizer {
            max_payload: max_payload.max(MIN_MAX_PAYLOAD),
            picture_id: first_picture_id & 0x7fff,
        }
    }

    /// The largest payload this packetizer writes.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// The PictureID the next frame will get.
    pub fn next_picture_id(&self) -> u16 {
        self.picture_id
    }

    /// Starts a frame: the returned cursor writes its payloads one by one. The
    /// frame takes the next PictureID. An empty frame has no payloads.
    pub fn frame<'f>(&mut self, frame: &'f [u8]) -> FramePayloads<'f> {
        let picture_id = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let room = self.max_payload - VP8_DESCRIPTOR_LEN;
        let packets = frame.len().div_ceil(room);
        FramePayloads {
            frame,
            picture_id,
            packets,
            written: 0,
            offset: 0,
        }
    }
}

impl Default for Vp8Packetizer {
    /// [`DEFAULT_MAX_PAYLOAD`], PictureID from 0.
    fn default() -> Self {
        Vp8Packetizer::new(DEFAULT_MAX_PAYLOAD, 0)
    }
}

/// One payload written by [`FramePayloads::next_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Bytes written at the start of the buffer.
    pub len: usize,
    /// Whether this is the frame's last packet (the RTP marker goes on it).
    pub last: bool,
}

/// The payloads of one frame, written on demand.
#[derive(Debug, Clone)]
pub struct FramePayloads<'f> {
    frame: &'f [u8],
    picture_id: u16,
    packets: usize,
    written: usize,
    offset: usize,
}

impl FramePayloads<'_> {
    /// How many payloads the frame takes.
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// The frame's PictureID.
    pub fn picture_id(&self) -> u16 {
        self.picture_id
    }

    /// Writes the next payload at the start of `out`; `None` once the frame is
    /// done. `out` must hold the payload (at most the packetizer's `max_payload`),
    /// else nothing is written and the cursor stays where it was.
    pub fn next_into(&mut self, out: &mut [u8]) -> Option<Result<Payload, BufferTooSmall>> {
        if self.written == self.packets {
            return None;
        }
        // Equal parts: the first `len % packets` parts take one byte more.
        let base = self.frame.len() / self.packets;
        let extra = usize::from(self.written < self.frame.len() % self.packets);
        let chunk = base + extra;
        let need = VP8_DESCRIPTOR_LEN + chunk;
        let Some(out) = out.get_mut(..need) else {
            return Some(Err(BufferTooSmall {
                need,
                have: out.len(),
            }));
        };
        let start = if self.written == 0 { 0x10 } else { 0 };
        out[0] = 0x80 | start;
        out[1] = 0x80;
        out[2] = 0x80 | (self.picture_id >> 8) as u8;
        out[3] = self.picture_id as u8;
        out[VP8_DESCRIPTOR_LEN..].copy_from_slice(&self.frame[self.offset..self.offset + chunk]);
        self.offset += chunk;
        self.written += 1;
        Some(Ok(Payload {
            len: need,
            last: self.written == self.packets,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::clip::Clip;
    use crate::video::viewer::Vp8Descriptor;
    use crate::video::Layer;

    /// Packetizes `frame` and parses every payload back with the viewer's parser.
    fn round_trip(p: &mut Vp8Packetizer, frame: &[u8]) -> (Vec<u8>, Vec<usize>, Vec<Payload>) {
        let mut buf = vec![0u8; p.max_payload()];
        let mut cursor = p.frame(frame);
        let (mut back, mut sizes, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(r) = cursor.next_into(&mut buf) {
            let pl = r.unwrap();
            let (d, data) = Vp8Descriptor::parse(&buf[..pl.len]).unwrap();
            assert_eq!(d.start, back.is_empty(), "S only on the first packet");
            assert_eq!(d.partition, 0);
            assert_eq!(d.picture_id, Some(cursor.picture_id()));
            back.extend_from_slice(data);
            sizes.push(pl.len);
            payloads.push(pl);
        }
        (back, sizes, payloads)
    }

    #[test]
    fn every_shipped_frame_reassembles_from_its_packets_unchanged() {
        for layer in Layer::ALL {
            let clip = Clip::shipped(layer);
            let mut p = Vp8Packetizer::default();
            for i in 0..clip.len() {
                let frame = clip.frame(i).data;
                let (back, sizes, payloads) = round_trip(&mut p, frame);
                assert_eq!(back, frame, "{layer:?} frame {i}");
                assert!(sizes.iter().all(|&s| s <= DEFAULT_MAX_PAYLOAD));
                let markers: Vec<bool> = payloads.iter().map(|p| p.last).collect();
                assert_eq!(markers.iter().filter(|&&m| m).count(), 1);
                assert_eq!(markers.last(), Some(&true), "marker on the last packet");
            }
        }
    }

    #[test]
    fn a_frame_is_cut_into_the_fewest_equal_parts_that_fit() {
        // (frame bytes, max payload, payload sizes)
        let table: &[(usize, usize, &[usize])] = &[
            (1, 1200, &[5]),
            (1196, 1200, &[1200]),
            (1197, 1200, &[603, 602]),
            (2392, 1200, &[1200, 1200]),
            (2393, 1200, &[802, 802, 801]),
            (10, 5, &[5; 10]),
            (10, 1, &[5; 10]),
        ];
        for &(len, max, want) in table {
            let frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut p = Vp8Packetizer::new(max, 0);
            let (back, sizes, _) = round_trip(&mut p, &frame);
            assert_eq!(sizes, want, "{len} bytes at {max}");
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn picture_ids_count_frames_and_wrap_at_15_bits() {
        let mut p = Vp8Packetizer::new(1200, 0x7ffe);
        let ids: Vec<u16> = (0..3).map(|_| p.frame(&[0]).picture_id()).collect();
        assert_eq!(ids, [0x7ffe, 0x7fff, 0]);
        assert_eq!(Vp8Packetizer::new(1200, 0xffff).next_picture_id(), 0x7fff);
    }

    #[test]
    fn an_empty_frame_has_no_packets_and_a_small_buffer_is_an_error() {
        let mut p = Vp8Packetizer::default();
        assert!(p.frame(&[]).next_into(&mut [0; 1200]).is_none());
        let mut cursor = p.frame(&[1, 2, 3]);
        assert_eq!(
            cursor.next_into(&mut [0; 6]),
            Some(Err(BufferTooSmall { need: 7, have: 6 }))
        );
        assert_eq!(
            cursor.next_into(&mut [0; 7]),
            Some(Ok(Payload { len: 7, last: true }))
        );
    }
}
