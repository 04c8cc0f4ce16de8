//! G.722 (placeholder: being written).
#[derive(Default)]
pub struct LowBandDecoder;
impl LowBandDecoder {
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        let _ = (payload, out);
        unimplemented!("G.722 decoder")
    }
}
#[derive(Default, Clone)]
pub struct LowBandEncoder;
impl LowBandEncoder {
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let _ = (pcm, out);
        unimplemented!("G.722 encoder")
    }
}
