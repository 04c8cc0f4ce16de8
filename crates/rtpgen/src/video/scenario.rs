//! A video run against a node or a scaler: publishers looping the shipped clips at
//! their layers, viewers that open a view, switch layers on a seeded pattern and
//! stop near the end, each judged on what it receives ([`VideoReport`]).
//!
//! # What a run does, in order
//! 1. Logs in to the target's call control ([`VideoTarget`]) and places one audio
//!    call per participant in one room (`*3<id>#`), a silent PCMU leg each (the
//!    node wants an audio call before video, and sends it a mix back, which is
//!    dropped). With [`VideoScenario::viewers_apart`] the viewers must land on
//!    another node than the publishers (told apart by the media address of the
//!    Connect answer, one worker per node); a call that lands on the wrong side
//!    stays in the room as an audio-only *filler*, which also steers the scaler's
//!    balancing placement toward the side still short.
//! 2. `VideoSend` for every publisher layer, each from its own socket (the offer
//!    names it: the node keys the stream by where it comes from, and sends its
//!    keyframe requests there, RTCP multiplexed); a [`ClipPublisher`] per layer.
//! 3. Media starts ([`super::drive`]: one task for every socket), then each viewer
//!    opens view slot 1 of its publisher (viewer `v` watches publisher
//!    `v / viewers_per_publisher`) on its own socket, switches layer every
//!    [`VideoScenario::switch_every`] to another of [`VideoScenario::layers`]
//!    (seeded), and stops [`VideoScenario::tail`] before the end, so the tail
//!    checks that nothing comes for a view no longer asked for.
//! 4. Takes the target's status (its figures go in the report), stops the send
//!    streams, releases the calls.
//!
//! The control side never waits on media and the media side never on control: the
//! control task tells the media task of each request *before* sending it, with the
//! time it was made (see [`super::drive`]).

use super::drive::{AudioLeg, Cmd, Media, PublisherLeg, ViewerLeg};
use super::summary::{SentSummary, VideoReport, ViewerSummary};
use super::{Clip, ClipPublisher, Layer, ViewerJudge};
use scnf_core::control::msg::{CodecDesc, Direction, MediaOffer, VideoLayer, VideoOffer};
use scnf_media::util::Rng;
use scnf_testkit::client::{CallAnswer, Client, ClientError};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Dynamic payload type offered for VP8.
pub const VP8_PT: u8 = 96;
/// Room ids of video runs: `VIDEO_ROOM_BASE + seed % 100_000`, all of one length.
pub const VIDEO_ROOM_BASE: u64 = 800_000;
/// When the first view opens, after media starts (the publishers' first key
/// frames have reached the node by then).
const FIRST_VIEW_AT: Duration = Duration::from_millis(300);
/// Viewers open one after another this far apart, as people do.
const VIEW_STAGGER: Duration = Duration::from_millis(20);
/// A switch closer than this to the viewer's stop is not made: its key frame
/// could not come in time, and the judge would count it unanswered.
const SWITCH_MARGIN: Duration = Duration::from_millis(1200);
/// The view slot each viewer uses.
const VIEW_SLOT: u32 = 1;
/// Most participants (publishers + viewers) of a run.
pub const MAX_PARTICIPANTS: usize = 500;

#[derive(Debug, Error)]
pub enum VideoError {
    #[error("call control: {0}")]
    Control(#[from] ClientError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("call {call} refused: cause {cause} ({reason})")]
    Refused {
        call: String,
        cause: u8,
        reason: String,
    },
    #[error("call {0} was answered without media")]
    NoMedia(String),
    #[error("placement: {0}")]
    Placement(String),
    #[error("scenario: {0}")]
    Invalid(String),
    #[error("the media task failed")]
    MediaTask,
}

/// What to run; see the module doc.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoScenario {
    pub publishers: usize,
    /// The layers every publisher sends (and viewers switch among), each once.
    pub layers: Vec<Layer>,
    pub viewers_per_publisher: usize,
    /// How often a viewer switches layer; at least 1 s (a key frame a second is
    /// the clips' slowest answer to a switch).
    pub switch_every: Duration,
    /// How long media runs, tail included.
    pub duration: Duration,
    pub seed: u64,
    /// Viewers on other nodes than the publishers (a scaler target).
    pub viewers_apart: bool,
}

impl VideoScenario {
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = Vec::new();
        for &l in &self.layers {
            if seen.contains(&l) {
                return Err(format!("layer {} given twice", l.label()));
            }
            seen.push(l);
        }
        if self.publishers == 0 || self.layers.is_empty() {
            return Err("at least one publisher and one layer".into());
        }
        let people = self.publishers * (1 + self.viewers_per_publisher);
        if people > MAX_PARTICIPANTS {
            return Err(format!("{people} participants, at most {MAX_PARTICIPANTS}"));
        }
        if self.switch_every < Duration::from_secs(1) {
            return Err("switch_every must be at least 1 s".into());
        }
        if self.duration < Duration::from_secs(2) || self.duration > Duration::from_secs(3600) {
            return Err("duration must be 2 s ..= 1 h".into());
        }
        Ok(())
    }

    /// How long before the end the viewers stop: a sixth of the run, 0.4..=2 s.
    pub fn tail(&self) -> Duration {
        (self.duration / 6).clamp(Duration::from_millis(400), Duration::from_secs(2))
    }

    fn viewers(&self) -> usize {
        self.publishers * self.viewers_per_publisher
    }

    /// Every viewer's requests, in time order: (offset from media start, viewer,
    /// layer or `None` for stop).
    pub fn plan(&self) -> Vec<(Duration, usize, Option<Layer>)> {
        let stop_at = self.duration - self.tail();
        let mut plan = Vec::new();
        for v in 0..self.viewers() {
            let mut rng = Rng::new(self.seed ^ (0x5eed_0000 + v as u64));
            let open = FIRST_VIEW_AT + VIEW_STAGGER * v as u32;
            let n = self.layers.len() as u64;
            let mut layer = self.layers[rng.below(n) as usize];
            plan.push((open, v, Some(layer)));
            let mut at = open + self.switch_every;
            while n > 1 && at + SWITCH_MARGIN <= stop_at {
                // Another layer than the current one, uniformly.
                let cur = self.layers.iter().position(|&l| l == layer).unwrap_or(0);
                let k = (cur + 1 + rng.below(n - 1) as usize) % n as usize;
                layer = self.layers[k];
                plan.push((at, v, Some(layer)));
                at += self.switch_every;
            }
            plan.push((stop_at.max(open), v, None));
        }
        plan.sort_by_key(|&(at, v, _)| (at, v));
        plan
    }
}

/// Whom a run talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTarget {
    /// A node's or a scaler's call-control listener.
    pub control: SocketAddr,
    /// Its password, if it asks for one.
    pub password: Option<String>,
    /// Where this run's sockets are bound (default: the control address's IP).
    pub bind: Option<IpAddr>,
}

impl VideoTarget {
    pub fn new(control: SocketAddr, password: Option<String>) -> VideoTarget {
        VideoTarget {
            control,
            password,
            bind: None,
        }
    }
}

impl From<Layer> for VideoLayer {
    fn from(l: Layer) -> VideoLayer {
        match l {
            Layer::Low => VideoLayer::Low,
            Layer::Medium => VideoLayer::Medium,
            Layer::High => VideoLayer::High,
        }
    }
}

/// A call in place.
struct Placed {
    call: String,
    participant: u64,
    media: SocketAddr,
}

/// Runs `sc` against `target`; see the module doc. An error is a run that could
/// not be set up; what the node did wrong is in the report's faults.
pub async fn run(sc: &VideoScenario, target: &VideoTarget) -> Result<VideoReport, VideoError> {
    sc.validate().map_err(VideoError::Invalid)?;
    let ip = target.bind.unwrap_or(match target.control.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    });
    let mut client = Client::connect(target.control).await?;
    let secret = target.password.as_deref().unwrap_or("").as_bytes();
    client.login_optional("rtpgen-video", secret).await?;
    let room = format!("*3{}#", VIDEO_ROOM_BASE + sc.seed % 100_000);
    let mut rng = Rng::new(sc.seed);

    // 1. The calls.
    let mut calls = Calls::new(ip, room);
    let mut pubs: Vec<Placed> = Vec::new();
    let mut pub_media: Option<SocketAddr> = None;
    while pubs.len() < sc.publishers {
        let p = calls.place(&mut client, &mut rng).await?;
        if sc.viewers_apart && pub_media.is_some_and(|m| m != p.media) {
            calls.fillers += 1;
            calls.check_budget(sc)?;
            continue;
        }
        pub_media = Some(p.media);
        pubs.push(p);
    }
    let mut viewers: Vec<Placed> = Vec::new();
    while viewers.len() < sc.viewers() {
        let p = calls.place(&mut client, &mut rng).await?;
        if sc.viewers_apart && Some(p.media) == pub_media {
            calls.fillers += 1;
            calls.check_budget(sc)?;
            continue;
        }
        viewers.push(p);
    }

    // 2. The send streams.
    let mut pub_legs = Vec::new();
    for (i, p) in pubs.iter().enumerate() {
        for &layer in &sc.layers {
            let socket = bind(ip, "a publisher socket")?;
            let at = local(&socket)?;
            let answer = client.video_send(&p.call, layer.into(), &offer(at)).await?;
            let dest = SocketAddr::new(answer.address, answer.port);
            let clip = Arc::new(Clip::shipped(layer));
            let publisher = ClipPublisher::new(clip, rng.next_u32(), VP8_PT, rng.next_u64());
            pub_legs.push(PublisherLeg {
                publisher: i,
                layer,
                socket,
                dest,
                clip: publisher,
                rtcp: 0,
                keyframe_requests: 0,
                send_errors: 0,
            });
        }
    }
    let mut view_legs = Vec::new();
    let mut view_at = Vec::new();
    for _ in &viewers {
        let socket = bind(ip, "a viewer socket")?;
        view_at.push(local(&socket)?);
        view_legs.push(ViewerLeg {
            socket,
            judge: ViewerJudge::new(),
            ssrc: None,
            foreign_ssrc: 0,
            rtcp: 0,
        });
    }

    // 3. Media, and the viewers' requests.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let media = Media::new(pub_legs, view_legs, std::mem::take(&mut calls.audio));
    let task = tokio::spawn(media.run(rx));
    let t0 = Instant::now();
    let mut refused = Vec::new();
    for (offset, v, layer) in sc.plan() {
        tokio::time::sleep_until(tokio::time::Instant::from_std(t0 + offset)).await;
        let viewer = &viewers[v];
        let at = Instant::now();
        match layer {
            Some(layer) => {
                let _ = tx.send(Cmd::Request {
                    viewer: v,
                    layer,
                    at,
                });
                let publisher = pubs[v / sc.viewers_per_publisher].participant;
                match client
                    .video_view(
                        &viewer.call,
                        VIEW_SLOT,
                        publisher,
                        layer.into(),
                        &offer(view_at[v]),
                    )
                    .await
                {
                    Ok(a) => {
                        let _ = tx.send(Cmd::Ssrc {
                            viewer: v,
                            ssrc: a.ssrc,
                        });
                    }
                    Err(e) => refused.push(format!(
                        "{}: VideoView {} of participant {publisher}: {e}",
                        viewer.call,
                        layer.label()
                    )),
                }
            }
            None => {
                let _ = tx.send(Cmd::Stop { viewer: v, at });
                if let Err(e) = client.video_view_stop(&viewer.call, VIEW_SLOT).await {
                    refused.push(format!("{}: VideoViewStop: {e}", viewer.call));
                }
            }
        }
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(t0 + sc.duration)).await;
    // The status while everything still runs: what the target saw.
    let status = client.status().await;
    drop(tx);
    let media = task.await.map_err(|_| VideoError::MediaTask)?;
    let ended = media.ended.unwrap_or_else(Instant::now);

    // 4. Teardown; a failure here is the target's, and reported as such.
    for p in &pubs {
        for &layer in &sc.layers {
            if let Err(e) = client.video_send_stop(&p.call, layer.into()).await {
                refused.push(format!("{}: VideoSendStop {}: {e}", p.call, layer.label()));
            }
        }
    }
    for call in &calls.names {
        if let Err(e) = client.release(call, None).await {
            refused.push(format!("{call}: release: {e}"));
        }
    }
    let _ = client.close().await;

    let mut report = build_report(sc, &media, &viewers, ended - t0);
    report.fillers = calls.fillers;
    report.refused = refused;
    match status {
        Ok(s) => {
            for r in s.rooms {
                report.status_video.extend(r.video);
                report.status_views.extend(r.views);
            }
        }
        Err(e) => report.refused.push(format!("Status: {e}")),
    }
    Ok(report)
}

fn build_report(
    sc: &VideoScenario,
    media: &Media,
    viewers: &[Placed],
    duration: Duration,
) -> VideoReport {
    let ended = media.ended.unwrap_or_else(Instant::now);
    let mut sent: Vec<SentSummary> = Vec::new();
    for layer in Layer::ALL {
        let mut s = SentSummary::new(layer);
        let mut any = false;
        for p in media.publishers.iter().filter(|p| p.layer == layer) {
            let st = p.clip.stats();
            s.packets += st.packets;
            s.bytes += st.bytes;
            s.keyframes += st.keyframes;
            s.keyframe_requests += p.keyframe_requests;
            s.rtcp += p.rtcp;
            s.send_errors += p.send_errors;
            any = true;
        }
        if any {
            sent.push(s);
        }
    }
    let summaries = media
        .viewers
        .iter()
        .zip(viewers)
        .enumerate()
        .map(|(v, (leg, placed))| ViewerSummary {
            call: placed.call.clone(),
            publisher: v / sc.viewers_per_publisher.max(1),
            report: leg.judge.report(ended),
            foreign_ssrc: leg.foreign_ssrc,
            rtcp: leg.rtcp,
        })
        .collect();
    VideoReport::new(duration, sent, summaries, |l| {
        Clip::shipped(l).bitrate_bps()
    })
}

/// The run's calls: their names, audio legs, how many were fillers.
struct Calls {
    ip: IpAddr,
    room: String,
    names: Vec<String>,
    audio: Vec<AudioLeg>,
    fillers: usize,
}

impl Calls {
    fn new(ip: IpAddr, room: String) -> Calls {
        Calls {
            ip,
            room,
            names: Vec::new(),
            audio: Vec::new(),
            fillers: 0,
        }
    }

    /// Places the next call, `v<k>`, with a silent PCMU leg.
    async fn place(&mut self, client: &mut Client, rng: &mut Rng) -> Result<Placed, VideoError> {
        let call = format!("v{}", self.names.len());
        let socket = bind(self.ip, "an audio socket")?;
        let at = local(&socket)?;
        let offer = MediaOffer {
            address: at.ip(),
            port: at.port(),
            codecs: vec![CodecDesc {
                name: "PCMU".into(),
                pt: 0,
                rate: 8000,
            }],
            ptime: 20,
            telephone_event: None,
            direction: Direction::default(),
            rtcp_mux: true,
            latching: false,
        };
        let answer = client.setup(&call, &self.room, true, &offer).await?;
        let (participant, media) = match answer {
            CallAnswer::Connect {
                participant,
                answer,
                ..
            } => (participant, SocketAddr::new(answer.address, answer.port)),
            CallAnswer::Release { cause, reason } => {
                return Err(VideoError::Refused {
                    call,
                    cause,
                    reason,
                })
            }
            _ => return Err(VideoError::NoMedia(call)),
        };
        self.names.push(call.clone());
        self.audio
            .push(AudioLeg::new(socket, media, rng.next_u32(), rng.next_u32()));
        Ok(Placed {
            call,
            participant,
            media,
        })
    }

    /// Fillers are bounded: a target that never places apart is an error, not a
    /// loop.
    fn check_budget(&self, sc: &VideoScenario) -> Result<(), VideoError> {
        let people = sc.publishers + sc.viewers();
        if self.fillers > 2 * people + 2 {
            return Err(VideoError::Placement(format!(
                "{} calls placed and the viewers still land with the publishers",
                self.names.len()
            )));
        }
        Ok(())
    }
}

/// A video offer at `at`: VP8, RTCP on the RTP port (so keyframe requests reach
/// the publisher's own socket), PLI understood.
fn offer(at: SocketAddr) -> VideoOffer {
    VideoOffer {
        rtcp_mux: true,
        ..VideoOffer::plain(at, CodecDesc::vp8(VP8_PT))
    }
}

fn bind(ip: IpAddr, what: &str) -> Result<UdpSocket, VideoError> {
    let io = |source| VideoError::Io {
        what: format!("binding {what} on {ip}"),
        source,
    };
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(io)?;
    socket.set_nonblocking(true).map_err(io)?;
    Ok(socket)
}

fn local(socket: &UdpSocket) -> Result<SocketAddr, VideoError> {
    socket.local_addr().map_err(|source| VideoError::Io {
        what: "a socket's address".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> VideoScenario {
        VideoScenario {
            publishers: 2,
            layers: Layer::ALL.to_vec(),
            viewers_per_publisher: 3,
            switch_every: Duration::from_millis(1500),
            duration: Duration::from_secs(6),
            seed: 4,
            viewers_apart: false,
        }
    }

    #[test]
    fn every_viewer_opens_switches_to_another_layer_and_stops_before_the_tail() {
        let sc = scenario();
        let plan = sc.plan();
        let stop_at = sc.duration - sc.tail();
        assert_eq!(sc.tail(), Duration::from_secs(1));
        for v in 0..6 {
            let mine: Vec<_> = plan.iter().filter(|p| p.1 == v).collect();
            let (first, last) = (mine[0], mine[mine.len() - 1]);
            assert!(first.2.is_some(), "viewer {v} opens first");
            assert_eq!((last.0, last.2), (stop_at, None), "viewer {v} stops last");
            assert!(mine.len() >= 4, "viewer {v}: open, two switches, stop");
            for w in mine[..mine.len() - 1].windows(2) {
                assert_ne!(w[0].2, w[1].2, "viewer {v}: a switch changes layer");
                assert_eq!(w[1].0 - w[0].0, sc.switch_every);
                assert!(w[1].0 + SWITCH_MARGIN <= stop_at);
            }
        }
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
    }

    #[test]
    fn the_seed_picks_the_pattern_and_every_layer_is_used() {
        let a = scenario().plan();
        assert_eq!(a, scenario().plan());
        let b = VideoScenario {
            seed: 5,
            ..scenario()
        }
        .plan();
        assert_ne!(a, b);
        for layer in Layer::ALL {
            assert!(a.iter().any(|p| p.2 == Some(layer)), "{layer:?}");
        }
    }

    #[test]
    fn one_layer_means_no_switches() {
        let sc = VideoScenario {
            layers: vec![Layer::Medium],
            ..scenario()
        };
        let plan = sc.plan();
        assert_eq!(plan.len(), 12, "an open and a stop per viewer");
    }

    #[test]
    fn bad_scenarios_are_refused() {
        let table: &[(&str, VideoScenario)] = &[
            (
                "no publisher",
                VideoScenario {
                    publishers: 0,
                    ..scenario()
                },
            ),
            (
                "no layer",
                VideoScenario {
                    layers: vec![],
                    ..scenario()
                },
            ),
            (
                "a layer twice",
                VideoScenario {
                    layers: vec![Layer::Low, Layer::Low],
                    ..scenario()
                },
            ),
            (
                "switching too fast",
                VideoScenario {
                    switch_every: Duration::from_millis(900),
                    ..scenario()
                },
            ),
            (
                "too short",
                VideoScenario {
                    duration: Duration::from_secs(1),
                    ..scenario()
                },
            ),
            (
                "too many",
                VideoScenario {
                    publishers: 100,
                    viewers_per_publisher: 5,
                    ..scenario()
                },
            ),
        ];
        for (what, sc) in table {
            assert!(sc.validate().is_err(), "{what}");
        }
        assert!(scenario().validate().is_ok());
    }
}
