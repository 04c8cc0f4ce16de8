//! Requests of a logged-in (or login-free) session: parsing is done, the budget is
//! charged, and each request becomes conference inputs, media operations and
//! answers.

use super::*;

impl Session {
    pub(super) fn on_request(&mut self, now: Instant, conn: ConnId, req: Incoming) {
        let Incoming { src, msg } = req;
        let Some(session) = self.conns.get_mut(&conn) else {
            return;
        };
        // Over budget: refused before any work, and said so (never dropped silently).
        let report = matches!(msg, ClientMsg::Status | ClientMsg::Health);
        let busy = report && session.reports_pending >= MAX_PENDING_REPORTS;
        if !session.requests.take(now) || (report && (busy || !session.reports.take(now))) {
            self.counters.rate_limited += 1;
            return self.send(conn, &error(&msg, RATE_LIMITED), src.as_deref());
        }
        let is_login = matches!(
            msg,
            ClientMsg::AppChallenge { .. } | ClientMsg::AppLogin { .. }
        );
        if !is_login && (!session.logged_in || session.controller.is_none()) {
            let reply = error(&msg, "not logged in: send AppChallenge and AppLogin first");
            return self.send(conn, &reply, src.as_deref());
        }
        let reply = match msg {
            ClientMsg::AppChallenge { version } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                let reply = self
                    .login
                    .challenge(now, c.peer.ip(), &mut c.challenges, version);
                if matches!(reply, ServerMsg::AppChallengeResult { .. }) && !c.logged_in {
                    let step = LoginStep::Challenged;
                    self.out.push_back(Output::Login { conn, step });
                }
                Some(reply)
            }
            ClientMsg::AppLogin {
                name,
                cnonce,
                info,
                digest,
                resume,
            } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                let (reply, admission) = self.login.login(
                    now,
                    c.peer.ip(),
                    &mut c.challenges,
                    &name,
                    &cnonce,
                    &info,
                    &digest,
                );
                if let Admission::LoggedIn { name } = admission {
                    tracing::info!(peer = %c.peer, name, "control session logged in");
                    self.timers.clear(Timer::Login(conn));
                    let unknown = resume.as_ref().is_some_and(|t| !self.token_known(t));
                    if unknown && self.may_park(now) {
                        // A restarted scaler: the nodes may bring the token back.
                        let token = resume.unwrap_or_default();
                        let parked = super::keep::Parked {
                            conn,
                            token,
                            reply,
                            src,
                        };
                        return self.park(parked);
                    }
                    return self.finish_login(now, conn, resume.as_deref(), reply, src);
                }
                Some(reply)
            }
            ClientMsg::Setup {
                call,
                called,
                complete,
                media,
            } => self.setup(now, conn, call, &called, complete, media, src.clone()),
            ClientMsg::VideoSend { .. }
            | ClientMsg::VideoSendStop { .. }
            | ClientMsg::VideoView { .. }
            | ClientMsg::VideoViewStop { .. } => self.video_request(conn, msg, src.clone()),
            ClientMsg::Status => self.query(conn, src.clone(), true),
            ClientMsg::Health => self.query(conn, src.clone(), false),
            ClientMsg::Info { .. }
            | ClientMsg::Dtmf { .. }
            | ClientMsg::RemoteControl { .. }
            | ClientMsg::Hold { .. }
            | ClientMsg::Retrieve { .. }
            | ClientMsg::Direction { .. }
            | ClientMsg::Release { .. } => self.call_request(now, conn, msg, src.clone()),
        };
        if let Some(reply) = reply {
            self.send(conn, &reply, src.as_deref());
        }
    }

    #[allow(clippy::too_many_arguments)] // the Setup fields, one to one
    fn setup(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: String,
        called: &str,
        complete: bool,
        offer: MediaOffer,
        src: Option<String>,
    ) -> Option<ServerMsg> {
        let ctl = self.conns.get(&conn).and_then(|c| c.controller)?;
        if id.is_empty() {
            return Some(call_error("Setup", &id, "the call id is empty"));
        }
        if let Some(cause) = self.stopping {
            return Some(ServerMsg::Release {
                call: id,
                cause: cause.0,
                reason: format!("{}: {SHUTDOWN_REASON}", cause.text()),
            });
        }
        if self.by_id.contains_key(&(ctl, id.clone())) {
            return Some(call_error("Setup", &id, "a call with this id exists"));
        }
        if let Err(bad) = media_addr::check(
            offer.address,
            offer.port,
            offer.rtcp_mux,
            &self.cfg.own_media,
            &self.cfg.workers,
        ) {
            tracing::info!(call = %id, %bad, "setup refused");
            let cause = Cause::INVALID_CONTENTS;
            return Some(ServerMsg::Release {
                call: id,
                cause: cause.0,
                reason: format!("{}: {bad}", cause.text()),
            });
        }
        let Some(codec) = msg::choose_codec(&offer) else {
            let cause = Cause::INCOMPATIBLE;
            return Some(ServerMsg::Release {
                call: id,
                cause: cause.0,
                reason: format!("{}: no offered codec is supported", cause.text()),
            });
        };
        let call = CallRef(self.next_call);
        self.next_call += 1;
        let hold = offer.direction.is_hold();
        self.calls.insert(
            call,
            Call {
                controller: ctl,
                id: id.clone(),
                offer,
                codec,
                leg: None,
                node: None,
                ended: false,
            },
        );
        self.by_id.insert((ctl, id.clone()), call);
        if let Err(e) = self.conf.handle_setup(now, call, called, complete) {
            self.forget(call);
            return Some(call_error("Setup", &id, &format!("call {id:?}: {e}")));
        }
        // A call offered on hold joins held: its hold is queued behind the setup's
        // outputs, so it runs after the leg exists whatever the wait.
        if hold {
            let _ = self.conf.handle_hold(call, true);
        }
        self.drain(src);
        None
    }

    /// Requests that name an existing call.
    fn call_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: ClientMsg,
        src: Option<String>,
    ) -> Option<ServerMsg> {
        let id = msg.call().unwrap_or_default().to_string();
        let ctl = self.conns.get(&conn).and_then(|c| c.controller)?;
        let Some(&call) = self.by_id.get(&(ctl, id.clone())) else {
            return Some(error(&msg, &format!("unknown call {id:?}")));
        };
        let named = format!("call {id:?}");
        let (result, ack) = match &msg {
            ClientMsg::Info {
                digits, complete, ..
            } => (
                self.conf.handle_info(now, call, digits, *complete),
                ServerMsg::InfoResult { call: id },
            ),
            ClientMsg::Dtmf { digit, .. } => {
                let mut chars = digit.chars();
                let result = match (chars.next(), chars.next()) {
                    (Some(d), None) => self.conf.handle_dtmf(now, call, d),
                    _ => Err(ConfError::BadDigit('?')),
                };
                (result, ServerMsg::DtmfResult { call: id })
            }
            ClientMsg::RemoteControl { code, .. } => (
                self.conf.handle_remote_control(call, *code),
                ServerMsg::RemoteControlResult {
                    call: id,
                    code: *code,
                },
            ),
            ClientMsg::Hold { .. } => (
                self.conf.handle_hold(call, true),
                ServerMsg::HoldResult { call: id },
            ),
            ClientMsg::Retrieve { .. } => (
                self.conf.handle_hold(call, false),
                ServerMsg::RetrieveResult { call: id },
            ),
            ClientMsg::Direction { direction, .. } => (
                self.conf.handle_hold(call, direction.is_hold()),
                ServerMsg::DirectionResult { call: id },
            ),
            ClientMsg::Release { .. } => {
                let result = self.conf.handle_release(call);
                if let Some(c) = self.calls.get_mut(&call) {
                    // Forgotten once the outputs are drained, like any ended call.
                    c.ended = true;
                    self.ended.push(call);
                }
                (result, ServerMsg::ReleaseResult { call: id })
            }
            ClientMsg::AppChallenge { .. }
            | ClientMsg::AppLogin { .. }
            | ClientMsg::Setup { .. }
            | ClientMsg::VideoSend { .. }
            | ClientMsg::VideoSendStop { .. }
            | ClientMsg::VideoView { .. }
            | ClientMsg::VideoViewStop { .. }
            | ClientMsg::Status
            | ClientMsg::Health => return Some(error(&msg, "not a call request")),
        };
        match result {
            Ok(()) => {
                self.send(conn, &ack, src.as_deref());
                self.drain(src);
                None
            }
            // A release of a call the core no longer knows still ends it here.
            Err(_) if matches!(msg, ClientMsg::Release { .. }) => {
                self.forget(call);
                Some(ack)
            }
            Err(e) => Some(error(&msg, &format!("{named}: {e}"))),
        }
    }
}

fn error(msg: &ClientMsg, problem: &str) -> ServerMsg {
    ServerMsg::Error {
        error: problem.into(),
        of: Some(msg.mt().into()),
        call: msg.call().map(String::from),
    }
}

fn call_error(mt: &str, call: &str, problem: &str) -> ServerMsg {
    ServerMsg::Error {
        error: problem.into(),
        of: Some(mt.into()),
        call: Some(call.into()),
    }
}

impl Session {
    /// A login whose proof was right: the connection logs in, keeps, gets or takes
    /// over its controller, and is answered, then sent what a resumed controller
    /// missed.
    pub(super) fn finish_login(
        &mut self,
        now: Instant,
        conn: ConnId,
        resume: Option<&str>,
        mut reply: ServerMsg,
        src: Option<String>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.logged_in {
            let step = LoginStep::LoggedIn;
            self.out.push_back(Output::Login { conn, step });
        }
        c.logged_in = true;
        let attached = self.attach_login(now, conn, resume);
        if !attached.resumed {
            if let Some(ctl) = self.conns.get(&conn).and_then(|c| c.controller) {
                self.rekeep_controller(ctl);
            }
        }
        if let ServerMsg::AppLoginResult {
            token,
            resumed,
            resume_error,
            ..
        } = &mut reply
        {
            *token = Some(attached.token);
            *resumed = attached.resumed;
            *resume_error = attached.resume_error.map(String::from);
        }
        // The answer first, then what the resumed controller missed.
        self.send(conn, &reply, src.as_deref());
        self.send_replay();
    }
}
