//! Whom the generator loads, and how it places and ends calls there.
//!
//! - **scnf** over the call-control protocol, dialling as a PBX would: every
//!   participant of room `r` dials `*3<id>#` (join or create) with a fixed-length id,
//!   so ids never overlap and the first caller creates the room. Given where to
//!   redial ([`Scnf::redial`]), a lost connection (a scaler killed and started
//!   again, a network cut) is dialled again and the controller resumed with its
//!   token, as a PBX does: the calls go on and the run judges what they heard;
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

/// scnf's call control, and how to get back to it.
pub struct Scnf {
    client: Client,
    redial: Option<Redial>,
    /// Connections lost and resumed.
    pub resumed: u64,
}

struct Redial {
    addr: SocketAddr,
    name: String,
    secret: Vec<u8>,
}

/// How long a lost connection is redialled before the calls count as lost.
const REDIAL_FOR: std::time::Duration = std::time::Duration::from_secs(20);

impl Scnf {
    pub fn new(client: Client) -> Scnf {
        Scnf {
            client,
            redial: None,
            resumed: 0,
        }
    }

    /// Redials `addr` and resumes (logging in as `name` with `secret`) when the
    /// connection is lost.
    pub fn redial(mut self, addr: SocketAddr, name: &str, secret: &[u8]) -> Scnf {
        self.redial = Some(Redial {
            addr,
            name: name.into(),
            secret: secret.to_vec(),
        });
        self
    }

    /// After `e`: whether the connection was lost and is back, resumed (the
    /// request is then worth one more try).
    async fn recovered(&mut self, e: &ClientError) -> bool {
        let lost = matches!(
            e,
            ClientError::Io(_) | ClientError::WebSocket(_) | ClientError::Closed
        );
        let (true, Some(r), Some(token)) = (lost, &self.redial, self.client.token()) else {
            return false;
        };
        let token = token.to_string();
        let deadline = tokio::time::Instant::now() + REDIAL_FOR;
        while tokio::time::Instant::now() < deadline {
            if let Ok(mut c) = Client::connect(r.addr).await {
                // A restarted scaler answers once its nodes bring the calls back.
                c.set_timeout(std::time::Duration::from_secs(12));
                if let Ok(answer) = c.resume(&r.name, &r.secret, &token).await {
                    if !answer.resumed {
                        return false; // the calls are gone
                    }
                    self.client = c;
                    self.resumed += 1;
                    return true;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        false
    }
}

/// See the module docs.
pub enum Target {
    Scnf(Box<Scnf>),
    Reflector(SocketAddrV4),
    Janus(Box<Janus>),
}

impl Target {
    /// scnf's call control over `client`.
    pub fn scnf(client: Client) -> Target {
        Target::Scnf(Box::new(Scnf::new(client)))
    }
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
                let answer = match client.client.setup(&call, &called, true, &offer).await {
                    Err(e) if client.recovered(&e).await => {
                        client.client.setup(&call, &called, true, &offer).await?
                    }
                    other => other?,
                };
                match answer {
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
            (Target::Scnf(client), Handle::Call(call)) => {
                match client.client.release(call, None).await {
                    Err(e) if client.recovered(&e).await => {
                        Ok(client.client.release(call, None).await?)
                    }
                    other => Ok(other?),
                }
            }
            (Target::Janus(janus), Handle::Janus(leg)) => Ok(janus.leave(leg).await?),
            _ => Ok(()),
        }
    }

    /// The node's media workers' clocks, where the target reports them.
    pub async fn workers(&mut self) -> Option<Vec<WorkerInfo>> {
        match self {
            Target::Scnf(client) => match client.client.health().await {
                Ok(s) => Some(s.workers),
                Err(e) if client.recovered(&e).await => {
                    client.client.health().await.ok().map(|s| s.workers)
                }
                Err(_) => None,
            },
            _ => None,
        }
    }
}
