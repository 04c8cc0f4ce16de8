//! The node face: logins, registrations, heartbeats, and what nodes answer and
//! report.

use super::{Conn, Node, NodeId, Owner, Pending, PlanOutput, Planner};
use crate::cluster::link::{NodeMsg, Register, ScalerMsg, LINK_VERSION};
use crate::control::auth::Challenges;
use crate::control::login::Admission;
use crate::control::msg::{self, ClientMsg, ServerMsg};
use crate::engine::{EngineEvent, MediaResult};
use crate::session::LoginStep;
use std::net::SocketAddr;
use std::time::Instant;

/// Longest node name accepted, bytes.
const MAX_NAME: usize = 64;
/// Most workers one node may register.
const MAX_WORKERS: usize = 256;
/// Most channels one node may offer (a larger claim is a lie or a typo).
const MAX_CHANNELS: u32 = 100_000;

impl Planner {
    /// A node connection opened from `peer` (not logged in yet).
    pub fn handle_node_open(&mut self, now: Instant, node: NodeId, peer: SocketAddr) {
        let logged_in = !self.login.required();
        self.conns.insert(
            node,
            Conn {
                peer,
                opened: now,
                challenges: Challenges::new(),
                logged_in,
                node: None,
                last_heard: now,
            },
        );
        if logged_in {
            self.out.push_back(PlanOutput::Login {
                node,
                step: LoginStep::LoggedIn,
            });
        }
        if self.next_heartbeat.is_none() {
            self.next_heartbeat = Some(now + self.cfg.heartbeat);
        }
    }

    /// A text frame from a node: its login, its registration, then link messages.
    pub fn handle_node_text(&mut self, now: Instant, node: NodeId, text: &str) {
        let Some(conn) = self.conns.get_mut(&node) else {
            self.stats.bad_frames += 1;
            return;
        };
        conn.last_heard = now;
        if !conn.logged_in {
            return self.node_login(now, node, text);
        }
        let msg = match serde_json::from_str::<NodeMsg>(text) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_frames += 1;
                tracing::warn!(?node, %e, "a node sent a frame that is not a link message");
                return;
            }
        };
        let registered = self.node(node).is_some();
        match msg {
            NodeMsg::Register(reg) if !registered => self.register(now, node, reg),
            NodeMsg::Register(_) => {
                self.stats.bad_frames += 1;
                tracing::warn!(?node, "a node registered twice on one connection");
            }
            _ if !registered => {
                self.stats.bad_frames += 1;
                self.close(node, "register first");
            }
            NodeMsg::Load(load) => {
                if let Some(n) = self.node_mut(node) {
                    n.local = load.local.min(n.channels);
                    if load.workers.len() <= n.workers.len() {
                        n.stats = load.workers;
                    }
                }
                self.note_capacity();
            }
            NodeMsg::Result { req, result } => self.node_result(node, req, result),
            NodeMsg::Event { event } => self.node_event(now, node, event),
        }
    }

    /// The HMAC login of a node, exactly as a controller logs in to a node.
    fn node_login(&mut self, now: Instant, node: NodeId, text: &str) {
        let Some(conn) = self.conns.get_mut(&node) else {
            return;
        };
        let peer = conn.peer.ip();
        let reply = match msg::parse_client(text).map(|m| m.msg) {
            Ok(ClientMsg::AppChallenge { version }) => {
                let reply = self
                    .login
                    .challenge(now, peer, &mut conn.challenges, version);
                self.out.push_back(PlanOutput::Login {
                    node,
                    step: LoginStep::Challenged,
                });
                reply
            }
            Ok(ClientMsg::AppLogin {
                name,
                cnonce,
                info,
                digest,
                ..
            }) => {
                let (reply, admission) = self.login.login(
                    now,
                    peer,
                    &mut conn.challenges,
                    &name,
                    &cnonce,
                    &info,
                    &digest,
                );
                match admission {
                    Admission::LoggedIn { .. } => {
                        conn.logged_in = true;
                        self.out.push_back(PlanOutput::Login {
                            node,
                            step: LoginStep::LoggedIn,
                        });
                    }
                    Admission::Refused => {
                        self.stats.logins_refused += 1;
                        tracing::warn!(%peer, name, "a node's login was refused (wrong cluster secret?)");
                    }
                }
                reply
            }
            _ => {
                self.stats.bad_frames += 1;
                ServerMsg::Error {
                    error: "log in first".into(),
                    of: None,
                    call: None,
                }
            }
        };
        self.send_server(node, &reply);
    }

    fn send_server(&mut self, node: NodeId, msg: &ServerMsg) {
        let text = serde_json::to_string(msg).expect("server messages always serialise");
        self.out.push_back(PlanOutput::ToNode { node, text });
    }

    pub(super) fn send(&mut self, node: NodeId, msg: &ScalerMsg) {
        let text = msg.to_json();
        self.out.push_back(PlanOutput::ToNode { node, text });
    }

    pub(super) fn close(&mut self, node: NodeId, reason: &str) {
        self.out.push_back(PlanOutput::CloseNode {
            node,
            reason: reason.into(),
        });
    }

    /// Checks a registration; a refused one is told why and closed.
    fn register(&mut self, now: Instant, node: NodeId, reg: Register) {
        let Some(reg) = self.reattach(now, node, reg) else {
            return;
        };
        let mut reg = reg;
        match self.check_registration(&reg) {
            Ok(()) => {
                let peer = self.conns.get(&node).map(|c| c.peer);
                tracing::info!(
                    name = %reg.name, ?peer, workers = reg.workers.len(),
                    channels = reg.channels, "node registered"
                );
                self.names.insert(reg.name.clone(), node);
                let holds = std::mem::take(&mut reg.holds);
                if let Some(conn) = self.conns.get_mut(&node) {
                    conn.last_heard = now;
                    conn.node = Some(Node::new(
                        reg.name,
                        reg.version,
                        reg.workers,
                        reg.channels,
                        reg.local,
                    ));
                }
                self.send(
                    node,
                    &ScalerMsg::Registered {
                        ok: true,
                        error: None,
                    },
                );
                self.adopt(now, node, &holds);
                self.reconcile(node, holds);
                self.sweep_unadopted();
                self.note_capacity();
            }
            Err(error) => {
                self.stats.registrations_refused += 1;
                let peer = self.conns.get(&node).map(|c| c.peer);
                tracing::warn!(name = %reg.name, ?peer, %error, "node registration refused");
                self.send(
                    node,
                    &ScalerMsg::Registered {
                        ok: false,
                        error: Some(error.clone()),
                    },
                );
                self.close(node, &error);
            }
        }
    }

    fn check_registration(&self, reg: &Register) -> Result<(), String> {
        if reg.link_version != LINK_VERSION {
            return Err(format!(
                "link version {} is not supported (this scaler speaks {LINK_VERSION})",
                reg.link_version
            ));
        }
        let name_ok = !reg.name.is_empty()
            && reg.name.len() <= MAX_NAME
            && reg
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !name_ok {
            return Err("a node name is 1-64 characters of [A-Za-z0-9-_.:]".into());
        }
        if self.names.contains_key(&reg.name) {
            return Err(format!("node name {} is already registered", reg.name));
        }
        if reg.workers.is_empty() || reg.workers.len() > MAX_WORKERS {
            return Err(format!("a node has 1-{MAX_WORKERS} media workers"));
        }
        let bad =
            |a: &SocketAddr| a.ip().is_unspecified() || a.port() == 0 || a.ip().is_multicast();
        if reg.workers.iter().any(|w| bad(&w.rtp) || bad(&w.rtcp)) {
            return Err("a worker address is unspecified, multicast or port 0".into());
        }
        if reg.channels == 0 || reg.channels > MAX_CHANNELS {
            return Err(format!("a node offers 1-{MAX_CHANNELS} channels"));
        }
        Ok(())
    }

    /// A node's connection is gone (closed by either side).
    pub fn handle_node_closed(&mut self, now: Instant, node: NodeId) {
        self.connection_lost(now, node, "closed");
    }

    /// Forgets a connection; a registered node's rooms are repaired and its
    /// outstanding requests answered.
    pub(super) fn drop_node(&mut self, node: NodeId, why: &str) {
        let Some(conn) = self.conns.remove(&node) else {
            return;
        };
        let Some(n) = conn.node else {
            return;
        };
        if n.members + n.links > 0 {
            tracing::warn!(name = %n.name, peer = %conn.peer, why, members = n.members, "node gone with calls on it");
        } else {
            tracing::info!(name = %n.name, peer = %conn.peer, why, "node gone");
        }
        self.names.remove(&n.name);
        self.stats.nodes_lost += 1;
        self.lose_node(node);
        let why = format!("node {} lost", n.name);
        self.fail_pending(node, node, &why);
        self.sweep_unadopted();
        self.note_capacity();
    }

    /// Answers (`Failed`, `why`) what waits on a request `node` will never answer,
    /// as `answer_as`, and forgets its other requests: a gone node's members are
    /// handled by its caller, and a quiet op's refusal would be no news.
    pub(super) fn fail_pending(&mut self, node: NodeId, answer_as: NodeId, why: &str) {
        let reqs: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (on, _))| *on == node)
            .map(|(r, _)| *r)
            .collect();
        for req in reqs {
            if let Some((_, pending @ (Pending::Stats { .. } | Pending::Snapshot { .. }))) =
                self.pending.remove(&req)
            {
                self.answer(answer_as, pending, MediaResult::Failed(why.into()));
            }
        }
    }

    /// Every heartbeat: drops the silent nodes and tells the others the scaler is
    /// alive.
    pub(super) fn heartbeat(&mut self, now: Instant) {
        self.check_nodes(now);
        let registered: Vec<NodeId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.node.as_ref().is_some_and(|n| n.gone.is_none()))
            .map(|(id, _)| *id)
            .collect();
        for node in registered {
            self.send(node, &ScalerMsg::Heartbeat);
        }
        self.next_heartbeat = (!self.conns.is_empty()).then(|| now + self.cfg.heartbeat);
    }

    /// The answer to one of our requests.
    fn node_result(&mut self, node: NodeId, req: u64, result: MediaResult) {
        if let Some(n) = self.node_mut(node) {
            n.stalled = false;
        }
        match self.pending.remove(&req) {
            Some((on, pending)) if on == node => self.answer(node, pending, result),
            Some(other) => {
                // Another node's request: not this one's to answer.
                self.pending.insert(req, other);
                self.stats.bad_frames += 1;
            }
            None => self.stats.bad_frames += 1,
        }
    }

    pub(super) fn answer(&mut self, node: NodeId, pending: Pending, result: MediaResult) {
        if result.is_failed() {
            self.stats.node_refusals += 1;
        }
        match pending {
            Pending::Member { vleg } => match result {
                MediaResult::Done => {}
                other => {
                    let name = self.node_name(node);
                    tracing::warn!(node = %name, result = ?other, "a node refused a member");
                    if !other.is_failed() {
                        self.stats.bad_frames += 1;
                    }
                    // Refused: there is no leg to remove there.
                    self.lose_member(vleg, false);
                }
            },
            Pending::Stats { req, vleg } => {
                let result = match result {
                    MediaResult::Legs(legs) => {
                        MediaResult::Legs(legs.into_iter().map(|(_, s)| (vleg, s)).collect())
                    }
                    other => other,
                };
                self.out.push_back(PlanOutput::Result { req, result });
            }
            Pending::Snapshot { round, worker } => self.on_snapshot(node, round, worker, result),
            Pending::Quiet => {
                if let MediaResult::Failed(e) = result {
                    tracing::warn!(node = %self.node_name(node), %e, "a node refused an operation");
                }
            }
        }
    }

    /// Where a placed member's peer sends.
    pub(super) fn placed(&self, node: NodeId, vleg: crate::engine::LegId) -> Option<MediaResult> {
        let m = self.members.get(&vleg)?;
        let n = self.node(node)?;
        let w = n.workers.get(m.worker)?;
        Some(MediaResult::Placed {
            rtp: w.rtp,
            rtcp: w.rtcp,
            node: n.name.clone(),
        })
    }

    /// A node's media event, in the root's ids (links' events are the planner's).
    fn node_event(&mut self, now: Instant, node: NodeId, event: EngineEvent) {
        let leg = match &event {
            EngineEvent::Dtmf { leg, .. }
            | EngineEvent::Talking { leg, .. }
            | EngineEvent::MediaTimeout { leg, .. }
            | EngineEvent::Latched { leg, .. }
            | EngineEvent::Lost { leg, .. } => *leg,
        };
        match self.owners.get(&(node, leg)).copied() {
            Some(Owner::Member(vleg)) => {
                let Some(room) = self.members.get(&vleg).map(|m| m.room) else {
                    return;
                };
                let event = match event {
                    EngineEvent::Dtmf { digit, .. } => EngineEvent::Dtmf {
                        room,
                        leg: vleg,
                        digit,
                    },
                    EngineEvent::Talking { talking, .. } => EngineEvent::Talking {
                        room,
                        leg: vleg,
                        talking,
                    },
                    EngineEvent::MediaTimeout { .. } => {
                        EngineEvent::MediaTimeout { room, leg: vleg }
                    }
                    EngineEvent::Latched { remote, .. } => EngineEvent::Latched {
                        room,
                        leg: vleg,
                        remote,
                    },
                    // A node does not report its own loss.
                    EngineEvent::Lost { .. } => return,
                };
                self.out.push_back(PlanOutput::Event(event));
            }
            Some(Owner::Link { room, peer }) => {
                if let EngineEvent::MediaTimeout { .. } = event {
                    self.link_silent(now, node, peer, room);
                }
            }
            None => self.stats.bad_frames += 1,
        }
    }
}
