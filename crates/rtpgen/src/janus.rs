//! A Janus AudioBridge adapter: rtpgen's participants join a Janus room as plain-RTP
//! (non-WebRTC) participants, so the same load can be measured against Janus and scnf.
//!
//! # Flow
//! 1. [`Janus::connect`] creates a session (`{"janus":"create"}`) and attaches one
//!    control handle to `janus.plugin.audiobridge`, used for room requests.
//! 2. [`Janus::create_room`] sends the synchronous `create` request with
//!    `sampling_rate` 8000 (otherwise Janus resamples every G.711 leg both ways) and
//!    `allow_rtp_participants`. A room that already exists (AudioBridge error 486) is
//!    reused as it is.
//! 3. [`Janus::join`] attaches a new handle per participant, sends the asynchronous
//!    `join` (Janus answers `ack`), then long-polls the session
//!    (`GET /janus/<session>?maxev=N`) until that handle's `joined` event for that
//!    transaction arrives. Events for other attached handles ("participant X joined",
//!    `left`, ...) are queued per handle ([`Janus::take_events`]), at most
//!    [`EVENT_QUEUE_CAP`] each, oldest dropped first; events for handles that are no
//!    longer attached are dropped. Both drops are counted ([`Janus::dropped_events`]).
//!    The `joined` event's `rtp` object says where to send ([`JanusLeg::media`]).
//! 4. [`Janus::leave`] sends `leave` and detaches the handle; [`Janus::destroy_room`]
//!    and [`Janus::close`] (destroys the session) tidy up.
//!
//! The private configuration (`bench/janus/`) sets `session_timeout = 0`, so the
//! session never expires and no keepalive is sent. Every HTTP exchange runs on its own
//! TCP connection (`Connection: close`) under a timeout ([`Timeouts`]): no stale
//! keep-alive connection can eat a non-idempotent request (attach, join), and on
//! loopback a connect costs far less than the Janus work behind each request.
//! Janus answers with `Transfer-Encoding: chunked`; the client de-chunks.

//! # Quirks of Janus the caller must honour (not enforceable here)
//! - Janus sends a participant nothing until it has received one RTP packet from it.
//! - Janus accepts packets only from the exact ip:port given in the join: send from
//!   the address the participant receives on.
//! - G.711 payloads must be exactly 160 bytes (20 ms); others are dropped silently.
//! - Error codes come at two levels: Janus's own (`"janus":"error"`, e.g. 458 no such
//!   session) and the plugin's (`error_code` inside `plugindata.data`), both mapped to
//!   [`JanusError`].
//!
//! # Measured
//! Joining 300 participants one after another into one room on loopback (Janus
//! 1.1.2, debug build of this client, 2-core machine shared with builds): 170-270
//! joins/s overall, ~500/s for the first 100. A join gets slower as the room grows
//! because Janus notifies every participant already in the room and lists them all in
//! the `joined` event: the n-th join carries n events, all parsed here (in a debug
//! build our CPU time is about that of Janus). Leaves (leave + detach): ~1000/s.
//! Two participants exchanging tones hear each other at the sent level (-20.5 dBFS
//! for -20) and themselves at -90 dBFS or below.

mod events;
mod http;
mod reply;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use events::EventQueues;
pub use events::EVENT_QUEUE_CAP;
pub use http::HttpError;
use reply::{check_janus_error, parse_joined, plugin_data, quote, success_id, unexpected};

/// Events asked for per long-poll (`maxev`). Janus tells every participant about
/// each join, so a join into a room of n brings n events; asking for few per poll
/// made a join into a 300-participant room take ~10 polls (208 joins/s for 300
/// instead of 259/s).
const MAX_EVENTS_PER_POLL: u32 = 1000;
/// Longer than Janus's own 30 s long-poll hold, so the poll ends on Janus's side.
const LONG_POLL: Duration = Duration::from_secs(40);
/// The AudioBridge's "room already exists" error code.
const ROOM_EXISTS: i64 = 486;
const PLUGIN: &str = "janus.plugin.audiobridge";

/// What can go wrong talking to Janus. `what` names the request.
#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    #[error("{what}: HTTP exchange failed: {source}")]
    Http {
        what: &'static str,
        #[source]
        source: HttpError,
    },
    #[error("{what}: HTTP status {status}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("{what}: response is not JSON ({source}): {body}")]
    Json {
        what: &'static str,
        body: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: Janus error {code}: {reason}")]
    Janus {
        what: &'static str,
        code: i64,
        reason: String,
    },
    #[error("{what}: AudioBridge error {code}: {reason}")]
    Plugin {
        what: &'static str,
        code: i64,
        reason: String,
    },
    #[error("{what}: unexpected response: {detail}")]
    Unexpected { what: &'static str, detail: String },
    #[error("{what}: no answer event within {after:?}")]
    EventTimeout { what: &'static str, after: Duration },
}

/// Time limits. `request` bounds each synchronous exchange (connect to last byte);
/// `event` bounds the wait for an asynchronous answer such as `joined`, all long-polls
/// included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub request: Duration,
    pub event: Duration,
}

impl Default for Timeouts {
    /// 5 s per request, 10 s for an event: far above Janus's loopback latency (a join
    /// takes milliseconds) but short enough that a wedged Janus fails a run quickly.
    fn default() -> Self {
        Timeouts {
            request: Duration::from_secs(5),
            event: Duration::from_secs(10),
        }
    }
}

/// Codecs a plain-RTP AudioBridge participant can use (no G.722 there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JanusCodec {
    Pcmu,
    Pcma,
    Opus,
}

impl JanusCodec {
    /// The name the join request uses.
    pub fn name(self) -> &'static str {
        match self {
            JanusCodec::Pcmu => "pcmu",
            JanusCodec::Pcma => "pcma",
            JanusCodec::Opus => "opus",
        }
    }
}

/// One joined participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JanusLeg {
    /// The plugin handle (one per participant).
    pub handle: u64,
    /// The room.
    pub room: u64,
    /// Janus's participant id in the room.
    pub participant: u64,
    /// Where to send this participant's RTP (Janus's port for it).
    pub media: SocketAddr,
    /// The payload type Janus sends and expects.
    pub payload_type: u8,
}

/// A Janus session on the HTTP API. Requests are sequential (`&mut self`).
#[derive(Debug)]
pub struct Janus {
    http: SocketAddr,
    timeouts: Timeouts,
    session: u64,
    control: u64,
    next_tx: u64,
    /// Events of every attached handle not yet asked for.
    events: EventQueues,
}

impl Janus {
    /// Creates a session on the Janus HTTP API at `http` with default [`Timeouts`].
    pub async fn connect(http: SocketAddr) -> Result<Janus, JanusError> {
        Janus::connect_with(http, Timeouts::default()).await
    }

    /// Creates a session and attaches the control handle.
    pub async fn connect_with(http: SocketAddr, timeouts: Timeouts) -> Result<Janus, JanusError> {
        let mut j = Janus {
            http,
            timeouts,
            session: 0,
            control: 0,
            next_tx: 0,
            events: EventQueues::default(),
        };
        let what = "create session";
        let msg = json!({"janus": "create", "transaction": j.tx()});
        let r = j.post(what, "/janus".into(), msg).await?;
        j.session = success_id(what, &r)?;
        j.control = j.attach().await?;
        Ok(j)
    }

    /// The session id.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Creates room `room` at 8 kHz with plain-RTP participants allowed; an existing
    /// room of that number is reused as it is.
    pub async fn create_room(&mut self, room: u64) -> Result<(), JanusError> {
        let body = json!({"request": "create", "room": room, "sampling_rate": 8000,
                          "allow_rtp_participants": true});
        match self.sync_request("create room", self.control, body).await {
            Ok(_) => Ok(()),
            Err(JanusError::Plugin { code, .. }) if code == ROOM_EXISTS => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Destroys room `room` (its participants are kicked by Janus).
    pub async fn destroy_room(&mut self, room: u64) -> Result<(), JanusError> {
        let body = json!({"request": "destroy", "room": room});
        self.sync_request("destroy room", self.control, body)
            .await?;
        Ok(())
    }

    /// Joins `room` as a plain-RTP participant receiving on `rtp` (which must also be
    /// the address it sends from). Attaches a handle, sends the join and waits for
    /// its `joined` event.
    pub async fn join(
        &mut self,
        room: u64,
        codec: JanusCodec,
        rtp: SocketAddr,
    ) -> Result<JanusLeg, JanusError> {
        let what = "join";
        let handle = self.attach().await?;
        let tx = self.tx();
        let msg = json!({"janus": "message", "transaction": tx, "body": {
            "request": "join", "room": room, "codec": codec.name(),
            "rtp": {"ip": rtp.ip().to_string(), "port": rtp.port()}}});
        let path = format!("/janus/{}/{handle}", self.session);
        let r = self.post(what, path, msg).await?;
        check_janus_error(what, &r)?;
        if r["janus"] != "ack" {
            return Err(unexpected(what, &r));
        }
        let ev = self.wait_event(what, handle, &tx).await?;
        let data = plugin_data(what, &ev)?;
        if data["audiobridge"] != "joined" {
            return Err(unexpected(what, &ev));
        }
        parse_joined(what, handle, room, data)
    }

    /// Leaves the room and detaches the participant's handle. The `left` event is not
    /// waited for: the detach alone already removes the participant.
    pub async fn leave(&mut self, leg: &JanusLeg) -> Result<(), JanusError> {
        let what = "leave";
        let path = format!("/janus/{}/{}", self.session, leg.handle);
        let msg = json!({"janus": "message", "transaction": self.tx(),
                         "body": {"request": "leave"}});
        let r = self.post(what, path.clone(), msg).await?;
        check_janus_error(what, &r)?;
        let what = "detach";
        let msg = json!({"janus": "detach", "transaction": self.tx()});
        let r = self.post(what, path, msg).await?;
        check_janus_error(what, &r)?;
        if r["janus"] != "success" {
            return Err(unexpected(what, &r));
        }
        self.events.detach(leg.handle);
        Ok(())
    }

    /// Destroys the session (Janus detaches every handle left).
    pub async fn close(mut self) -> Result<(), JanusError> {
        let what = "destroy session";
        let path = format!("/janus/{}", self.session);
        let msg = json!({"janus": "destroy", "transaction": self.tx()});
        let r = self.post(what, path, msg).await?;
        check_janus_error(what, &r)?;
        if r["janus"] != "success" {
            return Err(unexpected(what, &r));
        }
        Ok(())
    }

    /// Takes the events queued for `handle` (oldest first).
    pub fn take_events(&mut self, handle: u64) -> Vec<Value> {
        self.events.take_all(handle)
    }

    /// Events dropped: beyond [`EVENT_QUEUE_CAP`] or for handles not attached.
    pub fn dropped_events(&self) -> u64 {
        self.events.dropped()
    }

    async fn attach(&mut self) -> Result<u64, JanusError> {
        let what = "attach";
        let msg = json!({"janus": "attach", "plugin": PLUGIN, "transaction": self.tx()});
        let path = format!("/janus/{}", self.session);
        let r = self.post(what, path, msg).await?;
        let handle = success_id(what, &r)?;
        self.events.attach(handle);
        Ok(handle)
    }

    /// A plugin request Janus answers synchronously (`success` with plugindata).
    async fn sync_request(
        &mut self,
        what: &'static str,
        handle: u64,
        body: Value,
    ) -> Result<Value, JanusError> {
        let msg = json!({"janus": "message", "transaction": self.tx(), "body": body});
        let path = format!("/janus/{}/{handle}", self.session);
        let r = self.post(what, path, msg).await?;
        check_janus_error(what, &r)?;
        if r["janus"] != "success" {
            return Err(unexpected(what, &r));
        }
        Ok(plugin_data(what, &r)?.clone())
    }

    /// Waits for the event answering transaction `tx` on `handle`, queueing the rest.
    async fn wait_event(
        &mut self,
        what: &'static str,
        handle: u64,
        tx: &str,
    ) -> Result<Value, JanusError> {
        let after = self.timeouts.event;
        tokio::time::timeout(after, self.poll_until(what, handle, tx))
            .await
            .unwrap_or(Err(JanusError::EventTimeout { what, after }))
    }

    async fn poll_until(
        &mut self,
        what: &'static str,
        handle: u64,
        tx: &str,
    ) -> Result<Value, JanusError> {
        loop {
            if let Some(ev) = self.events.take_answer(handle, tx) {
                return Ok(ev);
            }
            // Janus answers an idle long-poll with a keepalive after 30 s; the caller's
            // timeout cuts this wait short anyway.
            let path = format!("/janus/{}?maxev={MAX_EVENTS_PER_POLL}", self.session);
            let r = self.exchange(what, "GET", path, None, LONG_POLL).await?;
            if let Some(ev) = self.events.file(what, r, (handle, tx))? {
                return Ok(ev);
            }
        }
    }

    fn tx(&mut self) -> String {
        self.next_tx += 1;
        format!("rtpgen-{}", self.next_tx)
    }

    async fn post(
        &mut self,
        what: &'static str,
        path: String,
        msg: Value,
    ) -> Result<Value, JanusError> {
        let t = self.timeouts.request;
        self.exchange(what, "POST", path, Some(msg), t).await
    }

    async fn exchange(
        &self,
        what: &'static str,
        method: &str,
        path: String,
        msg: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, JanusError> {
        let body = msg.map(|m| m.to_string());
        let r = http::request(
            self.http,
            method,
            &path,
            body.as_deref().map(str::as_bytes),
            timeout,
        )
        .await
        .map_err(|source| JanusError::Http { what, source })?;
        if r.status != 200 {
            return Err(JanusError::Status {
                what,
                status: r.status,
                body: quote(&String::from_utf8_lossy(&r.body)),
            });
        }
        serde_json::from_slice(&r.body).map_err(|source| JanusError::Json {
            what,
            body: quote(&String::from_utf8_lossy(&r.body)),
            source,
        })
    }
}

#[cfg(test)]
mod interop;

#[cfg(test)]
mod tests {
    //! Against a fake Janus: a listener that answers each connection with the next
    //! canned reply, and records what it was asked.
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Builds the reply from the transaction of the last POST the fake received.
    type Responder = Box<dyn Fn(&str) -> Option<Vec<u8>> + Send>;
    type Log = Arc<Mutex<Vec<(String, Value)>>>;

    fn ok(v: Value) -> Responder {
        Box::new(move |_| Some(chunked(200, &v.to_string())))
    }
    /// A reply that has `"transaction"` set to the last POST's.
    fn answering(v: Value) -> Responder {
        Box::new(move |tx| {
            let mut v = v.clone();
            v["transaction"] = json!(tx);
            Some(chunked(200, &format!("[{v}]")))
        })
    }
    fn raw(status: u16, body: &'static str) -> Responder {
        Box::new(move |_| Some(chunked(status, body)))
    }
    /// Accepts the connection and never answers.
    fn silent() -> Responder {
        Box::new(|_| None)
    }
    fn chunked(status: u16, body: &str) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n");
        // Two chunks, so reassembly is exercised.
        let mid = body.len() / 2;
        for part in [&body[..mid], &body[mid..]] {
            if !part.is_empty() {
                out.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
            }
        }
        out.push_str("0\r\n\r\n");
        out.into_bytes()
    }

    async fn read_request(s: &mut TcpStream) -> (String, Value) {
        let mut buf = Vec::new();
        let head_end = loop {
            let mut b = [0u8; 1024];
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "client closed before sending its request");
            buf.extend_from_slice(&b[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        while buf.len() < head_end + len {
            let mut b = [0u8; 1024];
            let n = s.read(&mut b).await.unwrap();
            buf.extend_from_slice(&b[..n]);
        }
        let body = if len == 0 {
            Value::Null
        } else {
            serde_json::from_slice(&buf[head_end..head_end + len]).unwrap()
        };
        (head.lines().next().unwrap().to_string(), body)
    }

    async fn fake(script: Vec<Responder>) -> (SocketAddr, Log) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Log = Arc::default();
        let log2 = log.clone();
        tokio::spawn(async move {
            let mut last_tx = String::new();
            for reply in script {
                let (mut s, _) = listener.accept().await.unwrap();
                let (line, body) = read_request(&mut s).await;
                if let Some(tx) = body["transaction"].as_str() {
                    last_tx = tx.to_string();
                }
                log2.lock().unwrap().push((line, body));
                match reply(&last_tx) {
                    Some(bytes) => s.write_all(&bytes).await.unwrap(),
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            }
        });
        (addr, log)
    }

    const SESSION: u64 = 1000;
    const CONTROL: u64 = 11;
    const HANDLE: u64 = 22;

    fn connect_script() -> Vec<Responder> {
        vec![
            ok(json!({"janus": "success", "data": {"id": SESSION}})),
            ok(json!({"janus": "success", "data": {"id": CONTROL}})),
        ]
    }
    fn joined(handle: u64) -> Value {
        json!({"janus": "event", "sender": handle, "plugindata": {"plugin": PLUGIN,
               "data": {"audiobridge": "joined", "room": 5, "id": 77, "participants": [],
                        "rtp": {"ip": "127.0.0.1", "port": 40002, "payload_type": 0}}}})
    }
    fn short() -> Timeouts {
        Timeouts {
            request: Duration::from_millis(300),
            event: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn connect_creates_a_session_and_attaches_a_control_handle() {
        let (addr, log) = fake(connect_script()).await;
        let j = Janus::connect(addr).await.unwrap();
        assert_eq!(j.session(), SESSION);
        let log = log.lock().unwrap();
        assert_eq!(log[0].0, "POST /janus HTTP/1.1");
        assert_eq!(log[0].1["janus"], "create");
        assert_eq!(log[1].0, format!("POST /janus/{SESSION} HTTP/1.1"));
        assert_eq!(log[1].1["plugin"], PLUGIN);
        assert_ne!(log[0].1["transaction"], log[1].1["transaction"]);
    }

    #[tokio::test]
    async fn join_waits_for_its_own_event_and_queues_the_others_by_handle() {
        let mut script = connect_script();
        script.push(ok(json!({"janus": "success", "data": {"id": HANDLE}})));
        script.push(ok(json!({"janus": "ack"})));
        // First poll: an event for the control handle, one for a stranger, a keepalive.
        let other = json!({"janus": "event", "sender": CONTROL, "transaction": "x",
                          "plugindata": {"plugin": PLUGIN, "data": {"audiobridge": "event"}}});
        let stranger = json!({"janus": "event", "sender": 999});
        let first = json!([other, stranger, {"janus": "keepalive"}]);
        script.push(ok(first));
        script.push(answering(joined(HANDLE)));
        let (addr, log) = fake(script).await;
        let mut j = Janus::connect(addr).await.unwrap();
        let rtp: SocketAddr = "127.1.0.7:4000".parse().unwrap();
        let leg = j.join(5, JanusCodec::Pcmu, rtp).await.unwrap();
        assert_eq!(
            leg,
            JanusLeg {
                handle: HANDLE,
                room: 5,
                participant: 77,
                media: "127.0.0.1:40002".parse().unwrap(),
                payload_type: 0
            }
        );
        assert_eq!(j.take_events(CONTROL), vec![other]);
        assert!(
            j.take_events(CONTROL).is_empty(),
            "taking empties the queue"
        );
        assert_eq!(j.dropped_events(), 1, "the stranger's event");
        let log = log.lock().unwrap();
        let join = &log[3].1["body"];
        assert_eq!(log[3].0, format!("POST /janus/{SESSION}/{HANDLE} HTTP/1.1"));
        assert_eq!(join["codec"], "pcmu");
        assert_eq!(join["rtp"], json!({"ip": "127.1.0.7", "port": 4000}));
        assert!(log[4]
            .0
            .starts_with(&format!("GET /janus/{SESSION}?maxev=")));
    }

    #[tokio::test]
    async fn a_queued_answer_is_found_without_polling_again() {
        let mut script = connect_script();
        script.push(ok(json!({"janus": "success", "data": {"id": HANDLE}})));
        script.push(ok(json!({"janus": "ack"})));
        script.push(answering(joined(HANDLE)));
        script.push(silent());
        let (addr, _) = fake(script).await;
        let mut j = Janus::connect_with(addr, short()).await.unwrap();
        // The same event polled while waiting for something else is kept, then found.
        let path = format!("/janus/{SESSION}/{HANDLE}");
        let attach = j.attach().await.unwrap();
        let msg = json!({"janus": "message", "transaction": j.tx()});
        j.post("t", path, msg).await.unwrap();
        let tx = format!("rtpgen-{}", j.next_tx);
        let err = j.wait_event("t", attach, "never").await.unwrap_err();
        assert!(matches!(err, JanusError::EventTimeout { .. }), "{err:?}");
        let ev = j.wait_event("t", attach, &tx).await.unwrap();
        assert_eq!(ev["plugindata"]["data"]["id"], 77);
    }

    #[tokio::test]
    async fn http_errors_broken_json_and_janus_errors_are_named() {
        type Check = fn(&JanusError) -> bool;
        let cases: [(Responder, Check); 4] = [
            (
                raw(500, "oops"),
                |e| matches!(e, JanusError::Status { status: 500, body, .. } if body == "oops"),
            ),
            (raw(200, "{\"janus\":"), |e| {
                matches!(e, JanusError::Json { .. })
            }),
            (
                ok(json!({"janus": "error", "error": {"code": 458, "reason": "No such session"}})),
                |e| matches!(e, JanusError::Janus { code: 458, .. }),
            ),
            (ok(json!({"janus": "success", "data": {}})), |e| {
                matches!(e, JanusError::Unexpected { .. })
            }),
        ];
        for (reply, check) in cases {
            let (addr, _) = fake(vec![reply]).await;
            let err = Janus::connect(addr).await.unwrap_err();
            assert!(check(&err), "{err}");
        }
    }

    #[tokio::test]
    async fn a_join_refused_by_the_plugin_is_a_plugin_error() {
        let mut script = connect_script();
        script.push(ok(json!({"janus": "success", "data": {"id": HANDLE}})));
        script.push(ok(json!({"janus": "ack"})));
        script.push(answering(json!({"janus": "event", "sender": HANDLE,
            "plugindata": {"plugin": PLUGIN, "data": {"audiobridge": "event",
                "error_code": 485, "error": "No such room (5)"}}})));
        let (addr, _) = fake(script).await;
        let mut j = Janus::connect(addr).await.unwrap();
        let err = j
            .join(5, JanusCodec::Pcma, "127.0.0.1:9".parse().unwrap())
            .await;
        assert!(
            matches!(&err, Err(JanusError::Plugin { code: 485, reason, .. }) if reason.contains("No such room")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_joined_event_without_rtp_is_unexpected() {
        let mut script = connect_script();
        script.push(ok(json!({"janus": "success", "data": {"id": HANDLE}})));
        script.push(ok(json!({"janus": "ack"})));
        let mut ev = joined(HANDLE);
        ev["plugindata"]["data"]["rtp"] = json!({"ip": "not-an-ip", "port": 40002});
        script.push(answering(ev));
        let (addr, _) = fake(script).await;
        let mut j = Janus::connect(addr).await.unwrap();
        let err = j
            .join(5, JanusCodec::Pcmu, "127.0.0.1:9".parse().unwrap())
            .await;
        assert!(matches!(err, Err(JanusError::Unexpected { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn a_join_whose_event_never_comes_times_out() {
        let mut script = connect_script();
        script.push(ok(json!({"janus": "success", "data": {"id": HANDLE}})));
        script.push(ok(json!({"janus": "ack"})));
        script.push(silent());
        let (addr, _) = fake(script).await;
        let mut j = Janus::connect_with(addr, short()).await.unwrap();
        let err = j
            .join(5, JanusCodec::Pcmu, "127.0.0.1:9".parse().unwrap())
            .await;
        assert!(
            matches!(err, Err(JanusError::EventTimeout { what: "join", after }) if after == short().event),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_request_that_gets_no_answer_times_out() {
        let (addr, _) = fake(vec![silent()]).await;
        let err = Janus::connect_with(addr, short()).await.unwrap_err();
        assert!(
            matches!(
                err,
                JanusError::Http {
                    source: HttpError::Timeout(_),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn creating_a_room_that_exists_succeeds_and_other_errors_do_not() {
        let mut script = connect_script();
        let refusal = |code: i64| {
            ok(
                json!({"janus": "success", "sender": CONTROL, "plugindata": {"plugin": PLUGIN,
                "data": {"audiobridge": "event", "error_code": code, "error": "x"}}}),
            )
        };
        script.push(refusal(486));
        script.push(refusal(487));
        let (addr, log) = fake(script).await;
        let mut j = Janus::connect(addr).await.unwrap();
        j.create_room(5).await.unwrap();
        let err = j.create_room(5).await;
        assert!(
            matches!(err, Err(JanusError::Plugin { code: 487, .. })),
            "{err:?}"
        );
        let body = log.lock().unwrap()[2].1["body"].clone();
        assert_eq!(body["sampling_rate"], 8000);
        assert_eq!(body["allow_rtp_participants"], true);
    }

    #[tokio::test]
    async fn leave_sends_leave_then_detach_and_forgets_the_handle() {
        let mut script = connect_script();
        script.push(ok(json!({"janus": "success", "data": {"id": HANDLE}})));
        script.push(ok(json!({"janus": "ack"})));
        script.push(answering(joined(HANDLE)));
        script.push(ok(json!({"janus": "ack"})));
        script.push(ok(json!({"janus": "success"})));
        let (addr, log) = fake(script).await;
        let mut j = Janus::connect(addr).await.unwrap();
        let leg = j
            .join(5, JanusCodec::Pcmu, "127.0.0.1:9".parse().unwrap())
            .await
            .unwrap();
        j.leave(&leg).await.unwrap();
        assert!(!j.events.is_attached(HANDLE));
        let log = log.lock().unwrap();
        assert_eq!(log[5].1["body"]["request"], "leave");
        assert_eq!(log[6].1["janus"], "detach");
        assert_eq!(log[6].0, format!("POST /janus/{SESSION}/{HANDLE} HTTP/1.1"));
    }
}
