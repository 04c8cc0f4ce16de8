//! (being written by a helper; this stub carries the API the target uses)
use std::net::SocketAddr;
#[derive(Debug, thiserror::Error)]
#[error("janus stub")]
pub struct JanusError;
pub enum JanusCodec { Pcmu, Pcma }
#[derive(Debug)]
pub struct JanusLeg { pub handle: u64, pub media: SocketAddr, pub payload_type: u8 }
pub struct Janus;
impl Janus {
    pub async fn connect(_http: SocketAddr) -> Result<Janus, JanusError> { Err(JanusError) }
    pub async fn create_room(&mut self, _room: u64) -> Result<(), JanusError> { Err(JanusError) }
    pub async fn join(&mut self, _room: u64, _c: JanusCodec, _rtp: SocketAddr) -> Result<JanusLeg, JanusError> { Err(JanusError) }
    pub async fn leave(&mut self, _leg: &JanusLeg) -> Result<(), JanusError> { Err(JanusError) }
}
