//! Video requests of members: send streams per layer, view slots, and the figures
//! `Status` shows of them.
//!
//! A member's send stream for one layer is a video *source* on its room's worker; a
//! view slot is a *sink* there, pointed at the source of the participant and layer
//! it asked for (see [`crate::engine::video`]). The root keeps which is which, so a
//! view asked for before its publisher sends (or after the publisher re-opens a
//! layer) is pointed at the stream as soon as it exists, and a publisher who leaves
//! ends the views that showed it.
//!
//! Video answers do not hold the root up as an `AddLeg` does: nothing else depends on
//! them, so the answer goes out when the worker's result comes in, and requests keep
//! flowing meanwhile.

use super::*;
use crate::control::msg::{VideoAnswer, VideoChannelInfo, VideoLayer, VideoOffer, VideoViewInfo};
use crate::engine::{VideoId, VideoSinkSpec, VideoSourceSpec, VideoStats};
use scnf_media::video::VideoCodec;
use std::collections::BTreeMap;

/// A member's send stream for one layer.
#[derive(Clone, Debug)]
pub(super) struct Stream {
    id: VideoId,
    worker: usize,
    codec: CodecDesc,
    /// Where the member sends it (the worker's addresses; on a scaler, the node's).
    local: Option<(SocketAddr, SocketAddr)>,
    rtcp_mux: bool,
}

/// A member's view slot.
#[derive(Clone, Debug)]
pub(super) struct View {
    id: VideoId,
    worker: usize,
    participant: CallRef,
    layer: VideoLayer,
    codec: CodecDesc,
    remote: SocketAddr,
    /// The source it is pointed at (`None`: that stream does not exist now).
    source: Option<VideoId>,
    ssrc: Option<u32>,
    local: Option<(SocketAddr, SocketAddr)>,
    rtcp_mux: bool,
}

/// An answer waiting for its media result.
enum Pending {
    Send {
        call: CallRef,
        layer: VideoLayer,
        src: Option<String>,
    },
    View {
        call: CallRef,
        view: u32,
        src: Option<String>,
    },
}

/// The root's video state (see the module docs).
#[derive(Default)]
pub(super) struct VideoState {
    next_id: u64,
    streams: BTreeMap<(CallRef, VideoLayer), Stream>,
    views: BTreeMap<(CallRef, u32), View>,
    pending: HashMap<ReqId, Pending>,
}

/// Why a video request is refused (the `error` of its `Error` answer).
fn refuse(mt: &str, call: &str, problem: String) -> ServerMsg {
    ServerMsg::Error {
        error: problem,
        of: Some(mt.into()),
        call: Some(call.into()),
    }
}

/// The first offered video codec the node forwards: VP8 or H.264 at 90 kHz on a
/// dynamic payload type.
fn choose_video_codec(offer: &VideoOffer) -> Option<(VideoCodec, CodecDesc)> {
    offer.codecs.iter().find_map(|c| {
        let kind = VideoCodec::from_name(&c.name)?;
        (c.rate == 90_000 && (96..128).contains(&c.pt)).then(|| (kind, c.clone()))
    })
}

impl Session {
    /// `VideoSend`, `VideoSendStop`, `VideoView`, `VideoViewStop`.
    pub(super) fn video_request(
        &mut self,
        conn: ConnId,
        msg: ClientMsg,
        src: Option<String>,
    ) -> Option<ServerMsg> {
        let mt = msg.mt();
        let id = msg.call().unwrap_or_default().to_string();
        let ctl = self.conns.get(&conn).and_then(|c| c.controller)?;
        let Some(&call) = self.by_id.get(&(ctl, id.clone())) else {
            return Some(refuse(mt, &id, format!("unknown call {id:?}")));
        };
        let room = match self.video_room(call) {
            Ok(room) => room,
            Err(problem) => return Some(refuse(mt, &id, format!("call {id:?}: {problem}"))),
        };
        let result = match msg {
            ClientMsg::VideoSend { layer, media, .. } => {
                self.video_send(call, &room, layer, media, src.clone())
            }
            ClientMsg::VideoSendStop { layer, .. } => {
                self.video_send_stop(call, &room, layer).map(|()| {
                    Some(ServerMsg::VideoSendStopResult {
                        call: id.clone(),
                        layer,
                    })
                })
            }
            ClientMsg::VideoView {
                view,
                participant,
                layer,
                media,
                ..
            } => self.video_view(
                call,
                &room,
                view,
                CallRef(participant),
                layer,
                media,
                src.clone(),
            ),
            ClientMsg::VideoViewStop { view, .. } => self.video_view_stop(call, view).map(|()| {
                Some(ServerMsg::VideoViewStopResult {
                    call: id.clone(),
                    view,
                })
            }),
            _ => Err("not a video request".into()),
        };
        match result {
            Ok(reply) => reply,
            Err(problem) => Some(refuse(mt, &id, format!("call {id:?}: {problem}"))),
        }
    }

    /// The room a call's video belongs to: it must be connected in a room that takes
    /// video.
    fn video_room(&self, call: CallRef) -> Result<String, String> {
        let room = self
            .conf
            .call_room(call)
            .ok_or_else(|| "is not in a room".to_string())?
            .to_string();
        if self
            .conf
            .member(call)
            .is_some_and(|m| m.state != MemberState::Connected)
        {
            return Err("is not connected yet".into());
        }
        if self.conf.room_multivideo(&room) == Some(false) {
            return Err(format!("room {room} does not take video (*83)"));
        }
        Ok(room)
    }

    fn video_place(&self, room: &str) -> Result<MixPlace, String> {
        self.table
            .room(&RoomId(room.to_string()))
            .ok_or_else(|| format!("room {room} has no media"))
    }

    fn check_video_media(&self, media: &VideoOffer) -> Result<(VideoCodec, CodecDesc), String> {
        media_addr::check(
            media.address,
            media.port,
            media.rtcp_mux,
            &self.cfg.own_media,
            &self.cfg.workers,
        )
        .map_err(|bad| bad.to_string())?;
        choose_video_codec(media)
            .ok_or_else(|| "no offered video codec is supported (VP8, H264 at 90000)".into())
    }

    fn next_video_id(&mut self) -> VideoId {
        self.video.next_id += 1;
        VideoId(self.video.next_id)
    }

    fn video_send(
        &mut self,
        call: CallRef,
        room: &str,
        layer: VideoLayer,
        media: VideoOffer,
        src: Option<String>,
    ) -> Result<Option<ServerMsg>, String> {
        let (codec, desc) = self.check_video_media(&media)?;
        let place = self.video_place(room)?;
        if let Some(old) = self.video.streams.remove(&(call, layer)) {
            // A new offer for a layer it sends: the new stream replaces the old.
            self.media(old.worker, MediaOp::RemoveVideo { video: old.id });
        }
        let id = self.next_video_id();
        let spec = VideoSourceSpec {
            remote: SocketAddr::new(media.address, media.port),
            rtcp_mux: media.rtcp_mux,
            codec,
            payload_type: desc.pt,
            fir: media.wants_fir(),
            peer_ssrc: None,
        };
        let op = MediaOp::AddVideoSource {
            mix: place.mix,
            video: id,
            spec,
            member: self.calls.get(&call).and_then(|c| c.leg).map(|l| l.id),
        };
        let req = self.media(place.worker, op);
        self.video
            .pending
            .insert(req, Pending::Send { call, layer, src });
        self.video.streams.insert(
            (call, layer),
            Stream {
                id,
                worker: place.worker,
                codec: desc,
                local: None,
                rtcp_mux: media.rtcp_mux,
            },
        );
        self.repoint_views(call, layer);
        self.announce_streams(call, room);
        Ok(None)
    }

    fn video_send_stop(
        &mut self,
        call: CallRef,
        room: &str,
        layer: VideoLayer,
    ) -> Result<(), String> {
        let stream = self
            .video
            .streams
            .remove(&(call, layer))
            .ok_or_else(|| format!("sends no {layer} video"))?;
        self.media(stream.worker, MediaOp::RemoveVideo { video: stream.id });
        self.repoint_views(call, layer);
        self.announce_streams(call, room);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the VideoView fields, one to one
    fn video_view(
        &mut self,
        call: CallRef,
        room: &str,
        view: u32,
        participant: CallRef,
        layer: VideoLayer,
        media: VideoOffer,
        src: Option<String>,
    ) -> Result<Option<ServerMsg>, String> {
        if self.conf.call_room(participant) != Some(room) {
            return Err(format!(
                "participant {} is not in room {room}",
                participant.0
            ));
        }
        let stream = self.video.streams.get(&(participant, layer)).cloned();
        let offered = |name: &str| {
            media
                .codecs
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name) && c.rate == 90_000)
                .cloned()
        };
        if let Some(v) = self.video.views.get(&(call, view)).cloned() {
            // A switch: same slot, same stream, another participant or layer.
            if SocketAddr::new(media.address, media.port) != v.remote {
                return Err(format!(
                    "view {view} is open at {}; stop it before opening it elsewhere",
                    v.remote
                ));
            }
            if let Some(s) = &stream {
                if !s.codec.name.eq_ignore_ascii_case(&v.codec.name) {
                    return Err(format!(
                        "participant {} sends {layer} video in {}, view {view} receives {}",
                        participant.0, s.codec.name, v.codec.name
                    ));
                }
            }
            let Some(ssrc) = v.ssrc else {
                return Err(format!("view {view} is still being set up"));
            };
            let source = stream.as_ref().map(|s| s.id);
            if let Some(slot) = self.video.views.get_mut(&(call, view)) {
                slot.participant = participant;
                slot.layer = layer;
                slot.source = source;
            }
            self.media(
                v.worker,
                MediaOp::SwitchVideoSink {
                    video: v.id,
                    source,
                },
            );
            return Ok(Some(self.view_result(
                call,
                view,
                &v,
                participant,
                layer,
                ssrc,
            )));
        }
        self.check_video_media(&media)?;
        let desc = match &stream {
            Some(s) => offered(&s.codec.name).ok_or_else(|| {
                format!(
                    "participant {} sends {layer} video in {}, which the offer lacks",
                    participant.0, s.codec.name
                )
            })?,
            None => choose_video_codec(&media)
                .map(|(_, d)| d)
                .ok_or("no video codec")?,
        };
        let place = self.video_place(room)?;
        let id = self.next_video_id();
        let remote = SocketAddr::new(media.address, media.port);
        let spec = VideoSinkSpec {
            remote,
            rtcp_mux: media.rtcp_mux,
            payload_type: desc.pt,
            ssrc: None,
            relay: false,
        };
        let source = stream.as_ref().map(|s| s.id);
        let op = MediaOp::AddVideoSink {
            mix: place.mix,
            video: id,
            spec,
            source,
            member: self.calls.get(&call).and_then(|c| c.leg).map(|l| l.id),
        };
        let req = self.media(place.worker, op);
        self.video
            .pending
            .insert(req, Pending::View { call, view, src });
        self.video.views.insert(
            (call, view),
            View {
                id,
                worker: place.worker,
                participant,
                layer,
                codec: desc,
                remote,
                source,
                ssrc: None,
                local: None,
                rtcp_mux: media.rtcp_mux,
            },
        );
        Ok(None)
    }

    fn video_view_stop(&mut self, call: CallRef, view: u32) -> Result<(), String> {
        let v = self
            .video
            .views
            .remove(&(call, view))
            .ok_or_else(|| format!("has no view {view}"))?;
        self.media(v.worker, MediaOp::RemoveVideo { video: v.id });
        Ok(())
    }

    fn view_result(
        &self,
        call: CallRef,
        view: u32,
        v: &View,
        participant: CallRef,
        layer: VideoLayer,
        ssrc: u32,
    ) -> ServerMsg {
        ServerMsg::VideoViewResult {
            call: self.call_name_of(call),
            view,
            participant: participant.0,
            layer,
            ssrc,
            answer: self.video_answer(v.worker, v.local, v.rtcp_mux, &v.codec),
        }
    }

    fn video_answer(
        &self,
        worker: usize,
        local: Option<(SocketAddr, SocketAddr)>,
        rtcp_mux: bool,
        codec: &CodecDesc,
    ) -> VideoAnswer {
        let (rtp, rtcp) = local.unwrap_or_else(|| {
            let w = self.table.workers().get(worker).copied();
            w.map_or(
                (
                    SocketAddr::from(([0, 0, 0, 0], 0)),
                    SocketAddr::from(([0, 0, 0, 0], 0)),
                ),
                |w| (w.rtp, w.rtcp),
            )
        });
        VideoAnswer {
            address: rtp.ip(),
            port: rtp.port(),
            rtcp_port: if rtcp_mux { rtp.port() } else { rtcp.port() },
            codec: codec.clone(),
        }
    }

    fn call_name_of(&self, call: CallRef) -> String {
        self.calls
            .get(&call)
            .map(|c| c.id.clone())
            .unwrap_or_default()
    }

    /// Points every view of `(participant, layer)` at that stream as it is now
    /// (the stream appeared, was replaced or went away).
    fn repoint_views(&mut self, participant: CallRef, layer: VideoLayer) {
        let source = self.video.streams.get(&(participant, layer)).map(|s| s.id);
        let mut ops = Vec::new();
        for v in self.video.views.values_mut() {
            if v.participant == participant && v.layer == layer && v.source != source {
                v.source = source;
                ops.push((v.worker, v.id));
            }
        }
        for (worker, video) in ops {
            self.media(worker, MediaOp::SwitchVideoSink { video, source });
        }
    }

    /// Tells every session which layers `call` sends now.
    fn announce_streams(&mut self, call: CallRef, room: &str) {
        let layers: Vec<VideoLayer> = VideoLayer::ALL
            .into_iter()
            .filter(|l| self.video.streams.contains_key(&(call, *l)))
            .collect();
        let event = ServerMsg::VideoStreams {
            room: room.to_string(),
            participant: call.0,
            call: self.call_name_of(call),
            layers,
        };
        self.broadcast(&event);
    }

    /// A member left its room: its streams and views end, and so do the views of
    /// others that showed it (their controllers are told).
    pub(super) fn video_member_left(&mut self, call: CallRef) {
        let streams: Vec<(CallRef, VideoLayer)> = self
            .video
            .streams
            .keys()
            .filter(|(c, _)| *c == call)
            .copied()
            .collect();
        for key in streams {
            if let Some(s) = self.video.streams.remove(&key) {
                self.media(s.worker, MediaOp::RemoveVideo { video: s.id });
            }
        }
        let views: Vec<(CallRef, u32)> = self
            .video
            .views
            .iter()
            .filter(|(k, v)| k.0 == call || v.participant == call)
            .map(|(k, _)| *k)
            .collect();
        for key in views {
            let Some(v) = self.video.views.remove(&key) else {
                continue;
            };
            self.media(v.worker, MediaOp::RemoveVideo { video: v.id });
            if key.0 != call {
                let Some(c) = self.calls.get(&key.0) else {
                    continue;
                };
                let msg = ServerMsg::VideoViewEnded {
                    call: c.id.clone(),
                    view: key.1,
                    reason: format!("participant {} left the room", call.0),
                };
                let ctl = c.controller;
                self.send_to(ctl, &msg, None);
            }
        }
    }

    /// Whether `req` is a video request's, whose answer waits for it.
    pub(super) fn video_pending(&self, req: ReqId) -> bool {
        self.video.pending.contains_key(&req)
    }

    /// The answer to a video request, once its worker (or the scaler) has it.
    /// `false`: `req` was not a video request's.
    pub(super) fn video_result(&mut self, req: ReqId, result: MediaResult) -> bool {
        let Some(pending) = self.video.pending.remove(&req) else {
            return false;
        };
        match pending {
            Pending::Send { call, layer, src } => {
                let Some(stream) = self.video.streams.get_mut(&(call, layer)) else {
                    return true;
                };
                let refused = match result {
                    MediaResult::Placed { rtp, rtcp, .. } => {
                        stream.local = Some((rtp, rtcp));
                        None
                    }
                    MediaResult::Failed(e) | MediaResult::NoChannel(e) => Some(e),
                    _ => None,
                };
                let stream = stream.clone();
                let name = self.call_name_of(call);
                let reply = match refused {
                    Some(e) => {
                        self.video.streams.remove(&(call, layer));
                        self.repoint_views(call, layer);
                        if let Some(room) = self.conf.call_room(call).map(String::from) {
                            self.announce_streams(call, &room);
                        }
                        refuse("VideoSend", &name, format!("call {name:?}: {e}"))
                    }
                    None => ServerMsg::VideoSendResult {
                        call: name,
                        layer,
                        answer: self.video_answer(
                            stream.worker,
                            stream.local,
                            stream.rtcp_mux,
                            &stream.codec,
                        ),
                    },
                };
                self.reply_to_call(call, &reply, src.as_deref());
            }
            Pending::View { call, view, src } => {
                let Some(v) = self.video.views.get_mut(&(call, view)) else {
                    return true;
                };
                let name = self
                    .calls
                    .get(&call)
                    .map(|c| c.id.clone())
                    .unwrap_or_default();
                let reply = match result {
                    MediaResult::VideoSink { ssrc, placed } => {
                        v.ssrc = Some(ssrc);
                        if let Some(p) = placed {
                            v.local = Some((p.rtp, p.rtcp));
                        }
                        let v = v.clone();
                        self.view_result(call, view, &v, v.participant, v.layer, ssrc)
                    }
                    other => {
                        self.video.views.remove(&(call, view));
                        let e = match other {
                            MediaResult::Failed(e) | MediaResult::NoChannel(e) => e,
                            other => format!("unexpected answer {other:?}"),
                        };
                        refuse("VideoView", &name, format!("call {name:?}: {e}"))
                    }
                };
                self.reply_to_call(call, &reply, src.as_deref());
            }
        }
        true
    }

    fn reply_to_call(&mut self, call: CallRef, msg: &ServerMsg, src: Option<&str>) {
        if let Some(ctl) = self.calls.get(&call).map(|c| c.controller) {
            self.send_to(ctl, msg, src);
        }
    }

    /// The room's video channels and view slots for `Status`, from the workers'
    /// figures (`stats`, by video id; a scaler's come from its nodes).
    pub(super) fn video_report(
        &self,
        room: &str,
        stats: &HashMap<VideoId, &VideoStats>,
        placed: &HashMap<VideoId, (String, Option<String>)>,
    ) -> (Vec<VideoChannelInfo>, Vec<VideoViewInfo>) {
        let in_room = |c: CallRef| self.conf.call_room(c) == Some(room);
        let channels = self
            .video
            .streams
            .iter()
            .filter(|((c, _), _)| in_room(*c))
            .map(|((c, layer), s)| {
                let st = stats.get(&s.id).copied().cloned().unwrap_or_default();
                VideoChannelInfo {
                    participant: c.0,
                    call: self.call_name_of(*c),
                    layer: Some(*layer),
                    codec: s.codec.name.clone(),
                    viewers: st.viewers,
                    packets: st.packets,
                    bytes: st.bytes,
                    bitrate_kbps: st.bitrate_kbps,
                    keyframes: st.keyframes,
                    keyframe_requests: st.keyframe_requests,
                    keyframe_requests_suppressed: st.keyframe_requests_suppressed,
                    malformed: st.malformed,
                    node: placed.get(&s.id).map(|p| p.0.clone()),
                    group: placed.get(&s.id).and_then(|p| p.1.clone()),
                }
            })
            .collect();
        let views = self
            .video
            .views
            .iter()
            .filter(|((c, _), _)| in_room(*c))
            .map(|((c, view), v)| {
                let st = stats.get(&v.id).copied().cloned().unwrap_or_default();
                VideoViewInfo {
                    call: self.call_name_of(*c),
                    view: *view,
                    participant: v.participant.0,
                    layer: Some(v.layer),
                    ssrc: v.ssrc.unwrap_or(st.ssrc),
                    packets_sent: st.packets_sent,
                    switches: st.switches,
                    waiting_keyframe: st.waiting_keyframe,
                }
            })
            .collect();
        (channels, views)
    }
}
