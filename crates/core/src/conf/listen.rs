//! Who is heard in a room: hold, receive on/off, exclusive and normal listen mode.
//!
//! Rule (the invariant every mutation re-establishes for every member `m`):
//!
//! `heard(m) = connected ∧ ¬held ∧ ¬receive_off ∧ (no exclusive ∨ exclusive = m ∨ m.receive_on)`
//!
//! The override rules of the reference live in the mutations:
//! - receive on (24) clears `receive_off` and sets `receive_on`, so `m` stays heard
//!   while another member is exclusive;
//! - receive off (25) sets `receive_off` and clears `receive_on`;
//! - exclusive (26, `*21#`) makes `m` exclusive and clears the `receive_on` of everyone
//!   else (a later exclusive overrides an earlier receive on);
//! - normal (27, `*6#`) ends exclusive listen and clears the `receive_off` of everyone
//!   else (a later normal overrides an earlier receive off). The caller's own
//!   `receive_off` stays: normal listen is about the others.
//!
//! Every mutation reports what changed as [`Change`]s: the exclusive member first, then
//! each member whose `heard` flipped, in member order.

use super::CallRef;

/// Whether a member is connected yet (`*82` rooms alert until remote control 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MemberState {
    Alerting,
    Connected,
}

/// One member's listen flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub call: CallRef,
    pub state: MemberState,
    pub held: bool,
    pub receive_off: bool,
    /// Receive-on override: heard even while another member is exclusive.
    pub receive_on: bool,
    /// The cached result of the rule; what the media engine was last told.
    pub heard: bool,
}

/// What a mutation changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Heard { call: CallRef, heard: bool },
    Exclusive(Option<CallRef>),
}

/// The listen state of one room.
#[derive(Clone, Debug, Default)]
pub struct Listen {
    exclusive: Option<CallRef>,
    members: Vec<Member>,
}

impl Listen {
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn exclusive(&self) -> Option<CallRef> {
        self.exclusive
    }

    pub fn member(&self, call: CallRef) -> Option<&Member> {
        self.members.iter().find(|m| m.call == call)
    }

    /// Adds a member and returns whether it is heard right away (never reported as a
    /// change: the media engine learns it with the member).
    pub fn add(&mut self, call: CallRef, state: MemberState) -> bool {
        let mut m = Member {
            call,
            state,
            held: false,
            receive_off: false,
            receive_on: false,
            heard: false,
        };
        m.heard = self.rule(&m);
        let heard = m.heard;
        self.members.push(m);
        heard
    }

    /// Removes a member; if it was exclusive the room returns to normal listen.
    pub fn remove(&mut self, call: CallRef, changes: &mut Vec<Change>) -> Option<Member> {
        let i = self.members.iter().position(|m| m.call == call)?;
        let m = self.members.remove(i);
        if self.exclusive == Some(call) {
            self.set_exclusive(None, changes);
        }
        self.settle(changes);
        Some(m)
    }

    /// Connects an alerting member. False if `call` is not an alerting member.
    pub fn connect(&mut self, call: CallRef, changes: &mut Vec<Change>) -> bool {
        match self.members.iter_mut().find(|m| m.call == call) {
            Some(m) if m.state == MemberState::Alerting => m.state = MemberState::Connected,
            _ => return false,
        }
        self.settle(changes);
        true
    }

    pub fn hold(&mut self, call: CallRef, held: bool, changes: &mut Vec<Change>) {
        self.with(call, |m| m.held = held);
        self.settle(changes);
    }

    pub fn receive_on(&mut self, call: CallRef, changes: &mut Vec<Change>) {
        self.with(call, |m| {
            m.receive_off = false;
            m.receive_on = true;
        });
        self.settle(changes);
    }

    pub fn receive_off(&mut self, call: CallRef, changes: &mut Vec<Change>) {
        self.with(call, |m| {
            m.receive_off = true;
            m.receive_on = false;
        });
        self.settle(changes);
    }

    pub fn exclusive_listen(&mut self, call: CallRef, changes: &mut Vec<Change>) {
        if self.member(call).is_none() {
            return;
        }
        for m in self.members.iter_mut().filter(|m| m.call != call) {
            m.receive_on = false;
        }
        self.set_exclusive(Some(call), changes);
        self.settle(changes);
    }

    pub fn normal_listen(&mut self, call: CallRef, changes: &mut Vec<Change>) {
        if self.member(call).is_none() {
            return;
        }
        for m in self.members.iter_mut().filter(|m| m.call != call) {
            m.receive_off = false;
        }
        self.set_exclusive(None, changes);
        self.settle(changes);
    }

    /// Puts back a member as a restarted scaler found it kept (its `heard` follows
    /// from its flags by the rule). False if `call` is a member already.
    pub fn restore(&mut self, mut m: Member) -> bool {
        if self.member(m.call).is_some() {
            return false;
        }
        m.heard = self.rule(&m);
        self.members.push(m);
        true
    }

    /// Puts back the exclusive member of a kept room (before its members).
    pub fn restore_exclusive(&mut self, exclusive: Option<CallRef>) {
        self.exclusive = exclusive;
    }

    fn with(&mut self, call: CallRef, f: impl FnOnce(&mut Member)) {
        if let Some(m) = self.members.iter_mut().find(|m| m.call == call) {
            f(m);
        }
    }

    fn set_exclusive(&mut self, exclusive: Option<CallRef>, changes: &mut Vec<Change>) {
        if self.exclusive != exclusive {
            self.exclusive = exclusive;
            changes.push(Change::Exclusive(exclusive));
        }
    }

    fn rule(&self, m: &Member) -> bool {
        m.state == MemberState::Connected
            && !m.held
            && !m.receive_off
            && (self.exclusive.is_none() || self.exclusive == Some(m.call) || m.receive_on)
    }

    /// Recomputes `heard` for everyone and reports the flips.
    fn settle(&mut self, changes: &mut Vec<Change>) {
        for i in 0..self.members.len() {
            let heard = self.rule(&self.members[i]);
            let m = &mut self.members[i];
            if m.heard != heard {
                m.heard = heard;
                changes.push(Change::Heard {
                    call: m.call,
                    heard,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: CallRef = CallRef(1);
    const B: CallRef = CallRef(2);
    const C: CallRef = CallRef(3);

    fn room() -> Listen {
        let mut l = Listen::default();
        for c in [A, B, C] {
            assert!(l.add(c, MemberState::Connected));
        }
        l
    }

    fn heard(l: &Listen) -> Vec<bool> {
        l.members().iter().map(|m| m.heard).collect()
    }

    #[test]
    fn exclusive_mutes_everyone_else_and_reports_the_mode_first() {
        let mut l = room();
        let mut ch = Vec::new();
        l.exclusive_listen(B, &mut ch);
        assert_eq!(
            ch,
            vec![
                Change::Exclusive(Some(B)),
                Change::Heard {
                    call: A,
                    heard: false
                },
                Change::Heard {
                    call: C,
                    heard: false
                },
            ]
        );
        assert_eq!(heard(&l), [false, true, false]);
    }

    #[test]
    fn receive_on_overrides_an_earlier_exclusive_and_a_later_exclusive_overrides_it() {
        let mut l = room();
        let mut ch = Vec::new();
        l.exclusive_listen(A, &mut ch);
        l.receive_on(C, &mut ch);
        assert_eq!(heard(&l), [true, false, true]);
        l.exclusive_listen(B, &mut ch);
        assert_eq!(heard(&l), [false, true, false]);
    }

    #[test]
    fn normal_listen_clears_the_receive_off_of_the_others_but_not_the_callers() {
        let mut l = room();
        let mut ch = Vec::new();
        l.receive_off(A, &mut ch);
        l.receive_off(B, &mut ch);
        assert_eq!(heard(&l), [false, false, true]);
        l.normal_listen(B, &mut ch);
        assert_eq!(heard(&l), [true, false, true]);
    }

    #[test]
    fn hold_mutes_and_retrieve_restores_the_listen_state() {
        let mut l = room();
        let mut ch = Vec::new();
        l.exclusive_listen(A, &mut ch);
        l.hold(A, true, &mut ch);
        assert_eq!(heard(&l), [false, false, false]);
        l.hold(A, false, &mut ch);
        assert_eq!(heard(&l), [true, false, false]);
    }

    #[test]
    fn the_exclusive_member_leaving_returns_the_room_to_normal_listen() {
        let mut l = room();
        let mut ch = Vec::new();
        l.exclusive_listen(A, &mut ch);
        ch.clear();
        assert!(l.remove(A, &mut ch).is_some());
        assert_eq!(l.exclusive(), None);
        assert_eq!(ch[0], Change::Exclusive(None));
        assert_eq!(heard(&l), [true, true]);
    }

    #[test]
    fn an_alerting_member_is_heard_only_once_connected() {
        let mut l = Listen::default();
        assert!(!l.add(A, MemberState::Alerting));
        let mut ch = Vec::new();
        assert!(l.connect(A, &mut ch));
        assert_eq!(
            ch,
            vec![Change::Heard {
                call: A,
                heard: true
            }]
        );
        assert!(!l.connect(A, &mut ch), "already connected");
    }
}
