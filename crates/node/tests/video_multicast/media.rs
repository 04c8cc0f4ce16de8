//! The members' video on the test's side of the bridge: a publisher's layer (the
//! shipped clip looped as VP8 RTP, answering keyframe requests) and a viewer's
//! socket (what arrives, when, judged by rtpgen's [`ViewerJudge`]).

use rtpgen::video::{Clip, ClipPublisher, Layer, PublisherStats, ViewerJudge};
use scnf_core::control::msg::{CodecDesc, VideoLayer, VideoOffer};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The payload type every video offer of the test names.
pub const VP8_PT: u8 = 100;

/// rtpgen's layer for a protocol layer (the same three clips).
fn clip_layer(layer: VideoLayer) -> Layer {
    match layer {
        VideoLayer::Low => Layer::Low,
        VideoLayer::Medium => Layer::Medium,
        VideoLayer::High => Layer::High,
    }
}

/// VP8 on [`VP8_PT`], RTCP on the RTP port, PLI.
fn offer(at: SocketAddr) -> VideoOffer {
    let mut offer = VideoOffer::plain(at, CodecDesc::vp8(VP8_PT));
    offer.rtcp_mux = true;
    offer
}

/// Whether `data` is RTCP (RFC 5761 §4: payload types 64-95 with the marker bit).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 8 && data[0] >> 6 == 2 && (192..=223).contains(&data[1])
}

/// Whether an RTCP compound packet holds a PLI (RFC 4585 §6.3.1: PSFB, FMT 1).
fn has_pli(mut data: &[u8]) -> bool {
    while data.len() >= 4 {
        let words = usize::from(u16::from_be_bytes([data[2], data[3]]));
        if data[1] == 206 && data[0] & 0x1f == 1 {
            return true;
        }
        data = data.get(4 + 4 * words..).unwrap_or_default();
    }
    false
}

/// One layer of the publisher: bound first (its address is the offer), sending
/// once the node answered.
pub struct Publisher {
    pub layer: VideoLayer,
    pub local: SocketAddr,
    socket: Option<UdpSocket>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<PublisherStats>>,
}

impl Publisher {
    pub async fn bind(ip: IpAddr, layer: VideoLayer) -> std::io::Result<Publisher> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        Ok(Publisher {
            layer,
            local: socket.local_addr()?,
            socket: Some(socket),
            stop: watch::channel(false).0,
            task: None,
        })
    }

    /// The offer of this layer's send stream (it comes from [`Publisher::local`]).
    pub fn offer(&self) -> VideoOffer {
        offer(self.local)
    }

    /// Sends the layer's clip to `to` until [`Publisher::stop`], a key frame next
    /// whenever a PLI comes back.
    pub fn start(&mut self, to: SocketAddr) {
        let socket = self.socket.take().expect("a publisher starts once");
        let clip = Arc::new(Clip::shipped(clip_layer(self.layer)));
        let seed = u64::from(self.local.port());
        let mut publisher = ClipPublisher::new(clip, 0x5eed_0000 + seed as u32, VP8_PT, seed);
        let mut stop = self.stop.subscribe();
        self.task = Some(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                publisher.poll(Instant::now(), &mut |p| {
                    // A full send buffer loses the packet: what crossed is what the
                    // capture says, not what was meant to.
                    let _ = socket.try_send_to(p, to);
                });
                let next = publisher.next_deadline().unwrap_or_else(Instant::now);
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    r = socket.recv_from(&mut buf) => {
                        if let Ok((n, _)) = r {
                            if is_rtcp(&buf[..n]) && has_pli(&buf[..n]) {
                                publisher.on_pli(Instant::now());
                            }
                        }
                    }
                    _ = stop.changed() => return publisher.stats(),
                }
            }
        }));
    }

    /// Stops sending; what was sent.
    pub async fn stop(mut self) -> PublisherStats {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(t) => t.await.expect("the publisher's task"),
            None => PublisherStats::default(),
        }
    }
}

/// What one viewer's socket received.
#[derive(Default)]
pub struct Seen {
    /// Each RTP packet's arrival and whole datagram.
    pub packets: Vec<(SystemTime, Vec<u8>)>,
    pub ssrcs: Vec<u32>,
    pub sources: Vec<SocketAddr>,
    pub judge: ViewerJudge,
}

/// A viewer's socket, receiving from the moment it is bound.
pub struct Viewer {
    pub local: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Viewer {
    pub async fn bind(ip: IpAddr) -> std::io::Result<Viewer> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let data = &buf[..n];
                if n < 12 || is_rtcp(data) {
                    continue; // sender reports of the slot
                }
                let mut s = lock(&shared);
                s.judge.on_packet(Instant::now(), data);
                s.packets.push((SystemTime::now(), data.to_vec()));
                let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
                if !s.ssrcs.contains(&ssrc) {
                    s.ssrcs.push(ssrc);
                }
                if !s.sources.contains(&from) {
                    s.sources.push(from);
                }
            }
        });
        Ok(Viewer { local, seen, task })
    }

    /// The offer of a view slot shown here.
    pub fn offer(&self) -> VideoOffer {
        offer(self.local)
    }

    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        lock(&self.seen)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
