//! Opus (placeholder: being written).
use super::CodecError;
pub struct OpusDecoder;
impl OpusDecoder {
    pub fn new() -> Result<Self, CodecError> {
        unimplemented!()
    }
    pub fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        let _ = payload;
        unimplemented!()
    }
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let _ = (payload, out);
        unimplemented!()
    }
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        let _ = out;
        unimplemented!()
    }
}
pub struct OpusEncoder;
impl OpusEncoder {
    pub fn new() -> Result<Self, CodecError> {
        unimplemented!()
    }
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let _ = (pcm, out);
        unimplemented!()
    }
}
