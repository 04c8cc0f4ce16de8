//! The controller's video requests (see `docs/control-protocol.md`, "Video").

use super::{Client, ClientError};
use scnf_core::control::msg::{ClientMsg, ServerMsg, VideoAnswer, VideoLayer, VideoOffer};

/// A view slot as the node answered it: the stream's SSRC and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewAnswer {
    pub ssrc: u32,
    pub answer: VideoAnswer,
}

impl Client {
    /// Opens (or replaces) the member's send stream for `layer`; returns where to
    /// send it.
    pub async fn video_send(
        &mut self,
        call: &str,
        layer: VideoLayer,
        media: &VideoOffer,
    ) -> Result<VideoAnswer, ClientError> {
        let req = ClientMsg::VideoSend {
            call: call.into(),
            layer,
            media: media.clone(),
        };
        match self.request(req).await? {
            ServerMsg::VideoSendResult { answer, .. } => Ok(answer),
            other => Err(unexpected("VideoSend", &other)),
        }
    }

    pub async fn video_send_stop(
        &mut self,
        call: &str,
        layer: VideoLayer,
    ) -> Result<(), ClientError> {
        let req = ClientMsg::VideoSendStop {
            call: call.into(),
            layer,
        };
        match self.request(req).await? {
            ServerMsg::VideoSendStopResult { .. } => Ok(()),
            other => Err(unexpected("VideoSendStop", &other)),
        }
    }

    /// Opens view slot `view` of `participant` at `layer`, or switches it.
    pub async fn video_view(
        &mut self,
        call: &str,
        view: u32,
        participant: u64,
        layer: VideoLayer,
        media: &VideoOffer,
    ) -> Result<ViewAnswer, ClientError> {
        let req = ClientMsg::VideoView {
            call: call.into(),
            view,
            participant,
            layer,
            media: media.clone(),
        };
        match self.request(req).await? {
            ServerMsg::VideoViewResult { ssrc, answer, .. } => Ok(ViewAnswer { ssrc, answer }),
            other => Err(unexpected("VideoView", &other)),
        }
    }

    pub async fn video_view_stop(&mut self, call: &str, view: u32) -> Result<(), ClientError> {
        let req = ClientMsg::VideoViewStop {
            call: call.into(),
            view,
        };
        match self.request(req).await? {
            ServerMsg::VideoViewStopResult { .. } => Ok(()),
            other => Err(unexpected("VideoViewStop", &other)),
        }
    }
}

fn unexpected(what: &str, got: &ServerMsg) -> ClientError {
    ClientError::Protocol(format!("{what} answered with {got:?}"))
}
