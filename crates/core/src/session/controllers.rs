//! Controllers: who a call belongs to, across connections.
//!
//! A call belongs to a *controller* (a PBX), not to the TCP connection it came on.
//! The login gives the controller a resume token; when its connection is lost, the
//! controller is *detached*: its calls keep their media for the grace period
//! ([`super::SessionConfig::resume_grace`]) and every message it would have been
//! sent goes to a bounded replay buffer. A new connection whose `AppLogin` carries
//! the token takes the controller over: the buffer is replayed in order, or, if it
//! overflowed, a `Resync` lists the calls as they are. A controller that does not
//! come back in time has its calls released with cause 102 (Q.850 "recovery on timer
//! expiry"), by the root's own [`Timer::Resume`], like any other timer.
//!
//! # The token
//! 16 bytes from an HMAC counter stream keyed from the root's seed (so a test is
//! reproducible, and a peer cannot predict the next one), sent as 32 hex digits.
//! The root keeps only [`resume_digest`] of it: a record copied to another node
//! (the cluster will replicate them) proves nothing to whoever reads it, yet is
//! enough to check a resume there. The digest needs no key the nodes would have to
//! share: the token is 128 random bits, so it cannot be found from its hash by
//! trying. Digests are compared in constant time (the MAC crate's `verify_slice`).
//!
//! A login-free connection (no secret, loopback only) gets a controller at once,
//! without a token. It cannot be resumed until it logs in (an `AppLogin` then
//! gives it one), so it releases its calls when it closes, as before.

use super::timers::Timer;
use super::{ConnId, Output, Session};
use crate::conf::{CallRef, Cause, MemberState};
use crate::control::hex;
use crate::control::msg::{self, ResyncCall, ServerMsg};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::VecDeque;
use std::time::Instant;

/// Identifies a controller; random, so ids from different nodes hardly ever meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ControllerId(pub u64);

/// Most messages kept for a detached controller; one more and its resume gets a
/// `Resync` instead (a controller away for long has missed too much to replay).
pub const MAX_REPLAY_FRAMES: usize = 1024;
/// Most bytes of messages kept for a detached controller (same rule).
pub const MAX_REPLAY_BYTES: usize = 1 << 20;
/// Most bytes kept for all detached controllers together: a controller whose
/// message would pass it gets a `Resync` (many controllers away at once cannot take
/// the node's memory).
pub const MAX_REPLAY_TOTAL: usize = 64 << 20;

/// Why a `resume` did not resume (the login answer's `resume_error`).
pub const MALFORMED_TOKEN: &str = "malformed-token";
/// No live controller has this token: it is wrong, or its grace ran out.
pub const UNKNOWN_TOKEN: &str = "unknown-token";

const DIGEST_KEY: &[u8] = b"scnf-resume-token-1";

/// The digest a controller record keeps of its token's 16 bytes:
/// HMAC-SHA256("scnf-resume-token-1", token).
pub fn resume_digest(token: &[u8; 16]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(DIGEST_KEY).expect("any key length");
    mac.update(token);
    mac.finalize().into_bytes().into()
}

/// Whether `token` is the one `digest` was made from (constant time).
fn token_matches(token: &[u8; 16], digest: &[u8; 32]) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(DIGEST_KEY).expect("any key length");
    mac.update(token);
    mac.verify_slice(digest).is_ok()
}

/// What the root tells of a controller ([`Session::controllers`],
/// [`Session::call_controller`]): what another node needs to accept its resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerRecord {
    pub id: ControllerId,
    /// [`resume_digest`] of its token (`None`: a login-free controller, not resumable).
    pub digest: Option<[u8; 32]>,
    /// When its grace runs out (`None`: it is attached to a connection).
    pub deadline: Option<Instant>,
}

/// [`Session::insert_detached`] refused: the id is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("controller {0:?} exists")]
pub struct ControllerExists(pub ControllerId);

pub(super) struct Controller {
    pub(super) conn: Option<ConnId>,
    digest: Option<[u8; 32]>,
    deadline: Option<Instant>,
    replay: Replay,
}

impl Controller {
    /// The digest of its token (none before it logged in).
    pub(super) fn digest(&self) -> Option<[u8; 32]> {
        self.digest
    }
}

/// The messages a detached controller missed, in order, within the caps.
#[derive(Default)]
pub(super) struct Replay {
    frames: VecDeque<String>,
    bytes: usize,
    overflowed: bool,
}

impl Replay {
    /// Keeps `text`; `total` is what every replay keeps together.
    fn push(&mut self, text: String, total: &mut usize) {
        if self.overflowed {
            return;
        }
        let len = text.len();
        if self.frames.len() >= MAX_REPLAY_FRAMES
            || self.bytes + len > MAX_REPLAY_BYTES
            || *total + len > MAX_REPLAY_TOTAL
        {
            self.overflowed = true;
            self.frames.clear();
            *total -= self.bytes;
            self.bytes = 0;
            return;
        }
        self.bytes += len;
        *total += len;
        self.frames.push_back(text);
    }
}

/// What a login did to its connection's controller (the answer's fields).
pub(super) struct Attached {
    pub(super) token: String,
    pub(super) resumed: bool,
    pub(super) resume_error: Option<&'static str>,
}

impl Session {
    /// A new controller for `conn`, without a token yet.
    pub(super) fn new_controller(&mut self, conn: ConnId) -> ControllerId {
        let bytes = self.ids.next_bytes();
        let mut id = ControllerId(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")));
        // Bounded by the number of controllers.
        while self.controllers.contains_key(&id) {
            id.0 = id.0.wrapping_add(1);
        }
        self.controllers.insert(
            id,
            Controller {
                conn: Some(conn),
                digest: None,
                deadline: None,
                replay: Replay::default(),
            },
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.controller = Some(id);
        }
        id
    }

    /// Gives `ctl` a fresh token (an earlier one stops working).
    fn issue_token(&mut self, ctl: ControllerId) -> String {
        let token = self.tokens.next_bytes();
        if let Some(c) = self.controllers.get_mut(&ctl) {
            c.digest = Some(resume_digest(&token));
        }
        hex::encode(&token)
    }

    /// Whether `token` is a live controller's.
    pub(super) fn token_known(&self, token: &str) -> bool {
        self.find_token(token).is_ok()
    }

    /// The live controller whose token `token` is (every record is checked).
    fn find_token(&self, token: &str) -> Result<ControllerId, &'static str> {
        let bytes: [u8; 16] = hex::decode_array(token).map_err(|_| MALFORMED_TOKEN)?;
        let mut found: Vec<ControllerId> = self
            .controllers
            .iter()
            .filter(|(_, c)| c.digest.is_some_and(|d| token_matches(&bytes, &d)))
            .map(|(id, _)| *id)
            .collect();
        found.sort_unstable();
        found.first().copied().ok_or(UNKNOWN_TOKEN)
    }

    /// A successful login on `conn`, with the `resume` it asked for: the connection
    /// keeps (or gets) its controller, or takes over the one the token names.
    pub(super) fn attach_login(
        &mut self,
        now: Instant,
        conn: ConnId,
        resume: Option<&str>,
    ) -> Attached {
        let current = self.conns.get(&conn).and_then(|c| c.controller);
        let mut resume_error = None;
        if let Some(token) = resume {
            match self.find_token(token) {
                Ok(target) => {
                    if current != Some(target) {
                        self.take_over(now, conn, current, target);
                    }
                    // The same token: an answer lost with a cut connection must not
                    // leave the controller holding one that no longer works.
                    return Attached {
                        token: token.to_ascii_lowercase(),
                        resumed: true,
                        resume_error: None,
                    };
                }
                Err(e) => {
                    tracing::info!(?conn, e, "a resume failed; the login goes on as new");
                    resume_error = Some(e);
                }
            }
        }
        let ctl = match current {
            Some(ctl) => ctl,
            None => self.new_controller(conn),
        };
        Attached {
            token: self.issue_token(ctl),
            resumed: false,
            resume_error,
        }
    }

    /// `conn` takes controller `target` over, leaving `current`; a connection still
    /// attached to `target` is closed. Then what `target` missed goes out.
    fn take_over(
        &mut self,
        now: Instant,
        conn: ConnId,
        current: Option<ControllerId>,
        target: ControllerId,
    ) {
        if let Some(cur) = current {
            self.detach(now, cur);
        }
        let Some(t) = self.controllers.get_mut(&target) else {
            return;
        };
        let old = t.conn.replace(conn);
        t.deadline = None;
        let replay = std::mem::take(&mut t.replay);
        self.replay_total -= replay.bytes;
        self.timers.clear(Timer::Resume(target));
        if let Some(c) = self.conns.get_mut(&conn) {
            c.controller = Some(target);
        }
        if let Some(old) = old.and_then(|o| self.conns.get_mut(&o).map(|c| (o, c))) {
            let (old, c) = old;
            c.controller = None;
            c.logged_in = false;
            if !c.closing {
                c.closing = true;
                let reason = "resumed elsewhere".into();
                self.out.push_back(Output::Close { conn: old, reason });
            }
        }
        self.counters.resumes += 1;
        tracing::info!(?conn, ?target, "a controller resumed");
        self.pending_replay = Some((conn, target, replay));
    }

    /// Sends what a resumed controller missed (after its login answer).
    pub(super) fn send_replay(&mut self) {
        let Some((conn, target, replay)) = self.pending_replay.take() else {
            return;
        };
        if replay.overflowed {
            self.counters.resyncs += 1;
            let msg = self.resync(target);
            return self.send(conn, &msg, None);
        }
        for text in replay.frames {
            self.out.push_back(Output::Send { conn, text });
        }
    }

    fn resync(&self, ctl: ControllerId) -> ServerMsg {
        let mut calls: Vec<(&CallRef, &super::Call)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.controller == ctl && !c.ended)
            .collect();
        calls.sort_unstable_by_key(|(r, _)| **r);
        let calls = calls
            .into_iter()
            .map(|(&r, c)| {
                let m = self.conf.member(r);
                let m = m.as_ref();
                ResyncCall {
                    call: c.id.clone(),
                    participant: r.0,
                    room: self.conf.call_room(r).map(String::from),
                    state: match m.map(|m| m.state) {
                        None => "dialing",
                        Some(MemberState::Alerting) => "alerting",
                        Some(MemberState::Connected) => "connected",
                    }
                    .into(),
                    held: m.is_some_and(|m| m.held),
                    receive_off: m.is_some_and(|m| m.receive_off),
                    heard: m.is_some_and(|m| m.heard),
                }
            })
            .collect();
        ServerMsg::Resync { calls }
    }

    /// `ctl` lost its connection: it waits for a resume, or (no grace, no token, no
    /// calls, or the node stopping) its calls are released now as before.
    pub(super) fn detach(&mut self, now: Instant, ctl: ControllerId) {
        let Some(c) = self.controllers.get_mut(&ctl) else {
            return;
        };
        c.conn = None;
        let resumable = c.digest.is_some();
        let grace = self.cfg.resume_grace;
        let owned = self.calls_of(ctl);
        if resumable && !grace.is_zero() && !owned.is_empty() && self.stopping.is_none() {
            let at = now + grace;
            if let Some(c) = self.controllers.get_mut(&ctl) {
                c.deadline = Some(at);
            }
            self.timers.set(Timer::Resume(ctl), at);
            tracing::info!(
                ?ctl,
                calls = owned.len(),
                "a controller is away; its calls wait"
            );
            return;
        }
        self.remove_controller(ctl);
        for call in owned {
            if self.conf.handle_release(call).is_err() {
                // The core no longer knows it (still dialling, say): just forget it.
                self.forget(call);
            } else if let Some(c) = self.calls.get_mut(&call) {
                c.ended = true;
                self.ended.push(call);
            }
        }
        self.drain(None);
    }

    /// `ctl`'s grace ran out: its calls are released with cause 102, members before
    /// creators (as at a shutdown), and it is forgotten.
    pub(super) fn expire(&mut self, ctl: ControllerId) {
        if !self.controllers.get(&ctl).is_some_and(|c| c.conn.is_none()) {
            return;
        }
        let creators: Vec<CallRef> = self.conf.rooms().iter().filter_map(|r| r.creator).collect();
        let mut owned = self.calls_of(ctl);
        owned.sort_unstable_by_key(|c| (creators.contains(c), *c));
        tracing::info!(
            ?ctl,
            calls = owned.len(),
            "a controller did not come back; releasing"
        );
        self.counters.expired += 1;
        self.counters.expired_calls += owned.len() as u64;
        for call in owned {
            if self
                .conf
                .handle_media_failed(call, Cause::TIMER_EXPIRY)
                .is_err()
            {
                self.forget(call);
            } else if let Some(c) = self.calls.get_mut(&call) {
                c.ended = true;
                self.ended.push(call);
            }
        }
        self.drain(None);
        self.remove_controller(ctl);
    }

    /// Forgets a controller and what its replay kept.
    pub(super) fn remove_controller(&mut self, ctl: ControllerId) {
        if let Some(c) = self.controllers.remove(&ctl) {
            self.replay_total -= c.replay.bytes;
            self.timers.clear(Timer::Resume(ctl));
        }
    }

    /// The live calls of `ctl`, in call order.
    pub(super) fn calls_of(&self, ctl: ControllerId) -> Vec<CallRef> {
        let mut owned: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| c.controller == ctl && !c.ended)
            .map(|(r, _)| *r)
            .collect();
        owned.sort_unstable();
        owned
    }

    /// Sends `msg` to controller `ctl`'s connection, or keeps it for its resume.
    pub(super) fn send_to(&mut self, ctl: ControllerId, msg: &ServerMsg, src: Option<&str>) {
        let Some(c) = self.controllers.get_mut(&ctl) else {
            return;
        };
        match c.conn {
            Some(conn) => self.send(conn, msg, src),
            None => c
                .replay
                .push(msg::to_text(msg, src), &mut self.replay_total),
        }
    }

    /// Keeps an event for every detached controller.
    pub(super) fn keep_for_detached(&mut self, text: &str) {
        for c in self.controllers.values_mut().filter(|c| c.conn.is_none()) {
            c.replay.push(text.to_string(), &mut self.replay_total);
        }
    }

    /// (detached controllers, the calls they hold).
    pub(super) fn detached_counts(&self) -> (usize, usize) {
        let detached = self
            .controllers
            .values()
            .filter(|c| c.conn.is_none())
            .count();
        let calls = self
            .calls
            .values()
            .filter(|c| !c.ended)
            .filter(|c| {
                self.controllers
                    .get(&c.controller)
                    .is_some_and(|k| k.conn.is_none())
            })
            .count();
        (detached, calls)
    }

    // ---- for the cluster (replicated controller records) ---------------------

    /// Every controller: its id, token digest and grace deadline, in id order.
    pub fn controllers(&self) -> Vec<ControllerRecord> {
        let mut all: Vec<ControllerRecord> = self
            .controllers
            .iter()
            .map(|(&id, c)| ControllerRecord {
                id,
                digest: c.digest,
                deadline: c.deadline,
            })
            .collect();
        all.sort_unstable_by_key(|r| r.id);
        all
    }

    /// The controller a call belongs to.
    pub fn call_controller(&self, call: CallRef) -> Option<ControllerRecord> {
        let id = self.calls.get(&call)?.controller;
        let c = self.controllers.get(&id)?;
        Some(ControllerRecord {
            id,
            digest: c.digest,
            deadline: c.deadline,
        })
    }

    /// Adds a detached controller known from elsewhere (another node's record): a
    /// login whose token matches `digest` takes it over until `deadline`, when it is
    /// forgotten (with whatever calls are attached to it by then).
    pub fn insert_detached(
        &mut self,
        id: ControllerId,
        digest: [u8; 32],
        deadline: Instant,
    ) -> Result<(), ControllerExists> {
        if self.controllers.contains_key(&id) {
            return Err(ControllerExists(id));
        }
        self.controllers.insert(
            id,
            Controller {
                conn: None,
                digest: Some(digest),
                deadline: Some(deadline),
                replay: Replay::default(),
            },
        );
        self.timers.set(Timer::Resume(id), deadline);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_overflows_at_its_own_caps_or_the_shared_one_and_gives_its_bytes_back() {
        let mut total = 0;
        let mut own = Replay::default();
        for _ in 0..MAX_REPLAY_FRAMES {
            own.push("x".repeat(10), &mut total);
        }
        assert!(!own.overflowed);
        assert_eq!(total, 10 * MAX_REPLAY_FRAMES);
        own.push("x".into(), &mut total);
        assert!(own.overflowed && own.frames.is_empty());
        assert_eq!(total, 0, "an overflowed replay keeps nothing");
        let mut shared = Replay::default();
        let mut total = MAX_REPLAY_TOTAL - 5;
        shared.push("abcd".into(), &mut total);
        shared.push("efgh".into(), &mut total);
        assert!(shared.overflowed, "the shared budget is spent");
        assert_eq!(total, MAX_REPLAY_TOTAL - 5);
    }

    #[test]
    fn a_digest_matches_its_token_only() {
        let token = [7u8; 16];
        let digest = resume_digest(&token);
        assert!(token_matches(&token, &digest));
        assert!(!token_matches(&[8u8; 16], &digest));
    }
}
