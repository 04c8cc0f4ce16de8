//! Whom the generator loads, and how it places and ends calls there.
//!
//! - **scnf** over the call-control protocol, dialling as a PBX would: every
//!   participant of room `r` dials `*3<id>#` (join or create) with a fixed-length id,
//!   so ids never overlap and the first caller creates the room;
//! - a **reflector**: no signalling, every participant sends to the same address and
//!   hears itself;
//! - **Janus AudioBridge** over its HTTP API, one handle per participant
//!   ([`super::janus`]).

use super::janus::{Janus, JanusCodec, JanusError, JanusLeg};
use scnf_core::control::msg::{CodecDesc, Direction, MediaOffer, WorkerInfo};
use scnf_media::codec::CodecKind;
use scnf_testkit::client::{CallAnswer, Client, ClientError};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use thiserror::Error;

/// Room ids dialled on scnf: `ROOM_ID_BASE + room`, all of the same length.
pub const ROOM_ID_BASE: u64 = 700_000;
/// RFC 4733 payload type offered to scnf (so the node needs no in-band detection,
/// as with a PBX that negotiated telephone-events).
const TELEPHONE_EVENT_PT: u8 = 101;
/// Dynamic payload type offered for Opus.
const OPUS_PT: u8 = 111;

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("call control: {0}")]
    Control(#[from] ClientError),
    #[error("janus: {0}")]
    Janus(#[from] JanusError),
    #[error("the node refused the call: cause {cause} ({reason})")]
    Refused { cause: u8, reason: String },
    #[error("the node answered without an IPv4 media address")]
    NoMedia,
    #[error("{0} is not offered by this target")]
    Codec(&'static str),
}

/// A call in place.
#[derive(Debug)]
pub struct Joined {
    /// Where to send RTP.
    pub media: SocketAddrV4,
    pub payload_type: u8,
    pub codec: CodecKind,
    handle: Handle,
}

#[derive(Debug)]
enum Handle {
    Call(String),
    Janus(JanusLeg),
    None,
}

/// See the module docs.
pub enum Target {
    Scnf(Box<Client>),
    Reflector(SocketAddrV4),
    Janus(Box<Janus>),
}

/// The payload type offered for `codec`.
pub fn offered_pt(codec: CodecKind) -> u8 {
    codec.static_payload_type().unwrap_or(OPUS_PT)
}

impl Target {
    /// A short name for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Scnf(_) => "scnf",
            Target::Reflector(_) => "reflector",
            Target::Janus(_) => "janus",
        }
    }

    /// Places participant `idx` (receiving at `me`) in room `room`.
    pub async fn join(
        &mut self,
        room: usize,
        idx: usize,
        me: SocketAddrV4,
        codec: CodecKind,
    ) -> Result<Joined, TargetError> {
        let pt = offered_pt(codec);
        match self {
            Target::Scnf(client) => {
                let call = format!("g{idx}");
                let offer = MediaOffer {
                    address: IpAddr::V4(*me.ip()),
                    port: me.port(),
                    codecs: vec![CodecDesc {
                        name: codec.name().into(),
                        pt,
                        rate: if codec == CodecKind::Opus {
                            48_000
                        } else {
                            8000
                        },
                    }],
                    ptime: 20,
                    telephone_event: Some(TELEPHONE_EVENT_PT),
                    direction: Direction::default(),
                    rtcp_mux: false,
                    latching: false,
                };
                let called = format!("*3{}#", ROOM_ID_BASE + room as u64);
                match client.setup(&call, &called, true, &offer).await? {
                    CallAnswer::Connect { answer, .. } | CallAnswer::Alerting { answer, .. } => {
                        let SocketAddr::V4(media) = SocketAddr::new(answer.address, answer.port)
                        else {
                            return Err(TargetError::NoMedia);
                        };
                        Ok(Joined {
                            media,
                            payload_type: answer.codec.pt,
                            codec,
                            handle: Handle::Call(call),
                        })
                    }
                    CallAnswer::Release { cause, reason } => {
                        Err(TargetError::Refused { cause, reason })
                    }
                    CallAnswer::AwaitingDigits => Err(TargetError::Refused {
                        cause: 28,
                        reason: "the node waits for more digits".into(),
                    }),
                }
            }
            Target::Reflector(addr) => Ok(Joined {
                media: *addr,
                payload_type: pt,
                codec,
                handle: Handle::None,
            }),
            Target::Janus(janus) => {
                let jc = match codec {
                    CodecKind::Pcmu => JanusCodec::Pcmu,
                    CodecKind::Pcma => JanusCodec::Pcma,
                    _ => return Err(TargetError::Codec(codec.name())),
                };
                let room_id = ROOM_ID_BASE + room as u64;
                janus.create_room(room_id).await?;
                let leg = janus.join(room_id, jc, SocketAddr::V4(me)).await?;
                let SocketAddr::V4(media) = leg.media else {
                    return Err(TargetError::NoMedia);
                };
                Ok(Joined {
                    media,
                    payload_type: leg.payload_type,
                    codec,
                    handle: Handle::Janus(leg),
                })
            }
        }
    }

    /// Ends a call placed by [`Target::join`].
    pub async fn leave(&mut self, joined: &Joined) -> Result<(), TargetError> {
        match (self, &joined.handle) {
            (Target::Scnf(client), Handle::Call(call)) => Ok(client.release(call, None).await?),
            (Target::Janus(janus), Handle::Janus(leg)) => Ok(janus.leave(leg).await?),
            _ => Ok(()),
        }
    }

    /// The node's media workers' clocks, where the target reports them.
    pub async fn workers(&mut self) -> Option<Vec<WorkerInfo>> {
        match self {
            Target::Scnf(client) => client.health().await.ok().map(|s| s.workers),
            _ => None,
        }
    }
}
