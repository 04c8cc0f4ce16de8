//! The call-setup command language: what a called party number asks the node to do.
//!
//! A called number is either a `*` command or plain digits:
//! - `*1[<prefix>]<options>#` create a room with a random id (`<prefix>` + random digits),
//! - `*2<number><options>#` create a room with exactly that id,
//! - `*3<number><options>#` join the room with that id, or create it,
//! - `<digits>[#]` join an existing room (the directory decides, see
//!   [`super::directory`]).
//!
//! Options: `*1<channel-max>`, `*2<reserve>` (one or two digits; two digits end the
//! command, a `#` after them is allowed), `*3<prefix>` (also the room number of `*2`/`*3`,
//! so `*2*310` equals `*210`), `*4<match>`, `*5<id-length>` (1..=12, default 6), `*81`
//! disconnect control, `*82` remote-control connect, `*83` multi-video off.
//!
//! Digits may arrive in pieces (overlap dialing), so [`parse`] is given the whole
//! number dialed so far and answers [`Dial::Incomplete`] when it cannot decide yet. A
//! `*` command is complete at `#`, at sending-complete, or right after `*2dd`. The
//! conference feeds the number to [`parse`] one character at a time and acts at the
//! first prefix that decides, so characters after the end of a command are never part
//! of it, however the number was cut into Setup and Info pieces.
//!
//! Any syntax error is a [`DialError`]; the conference releases such calls with cause 28
//! (invalid number format). The reference names only cause 34, which it keeps for
//! "valid command, cannot be satisfied"; 28 tells a misconfigured route apart from a
//! full node.

/// Longest called number accepted (digits collected over all info messages).
pub const MAX_DIALED: usize = 64;
/// Default length of the random part of a `*1` room id.
pub const DEFAULT_ID_LENGTH: u8 = 6;
/// Longest random part allowed by `*5`.
pub const MAX_ID_LENGTH: u8 = 12;

/// Which `*` command was dialed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// `*1`: create a room whose id is the prefix plus random digits.
    CreateRandom,
    /// `*2`: create a room with the given id.
    CreateGiven,
    /// `*3`: join the room with the given id, or create it.
    CreateOrJoin,
}

/// A complete, syntactically valid `*` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub kind: CommandKind,
    /// The prefix (`*1`) or the room id (`*2`, `*3`); empty only for `*1`.
    pub number: String,
    /// `*1<channel-max>`: the node-wide channel limit this call accepts (not stored).
    pub channel_max: Option<u32>,
    /// `*2<reserve>`: channels kept free for the new room (0 when absent).
    pub reserve: u32,
    /// `*4<match>`: the room number must begin with this.
    pub matches: Option<String>,
    /// `*5<id-length>`: digits of the random part of a `*1` id (the node's default,
    /// normally [`DEFAULT_ID_LENGTH`], when absent).
    pub id_length: Option<u8>,
    /// `*81`.
    pub disconnect_control: bool,
    /// `*82`.
    pub remote_connect: bool,
    /// False with `*83`.
    pub multivideo: bool,
}

/// What the digits dialed so far ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dial {
    /// Not decidable yet: wait for more digits.
    Incomplete,
    /// Plain digits (without the `#`); `ended` when `#` or sending-complete was seen.
    Plain { digits: String, ended: bool },
    /// A complete `*` command.
    Command(Command),
}

/// Why a called number is not a valid command (released with cause 28).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    #[error("empty called number")]
    Empty,
    #[error("called number longer than {MAX_DIALED} characters")]
    TooLong,
    #[error("invalid character {0:?} in called number")]
    BadChar(char),
    #[error("unknown command *{0}")]
    UnknownCommand(char),
    #[error("unknown option *{0}")]
    UnknownOption(String),
    #[error("option *{0} needs a value")]
    MissingValue(char),
    #[error("value of option *{0} out of range")]
    OutOfRange(char),
    #[error("the command needs a room number")]
    MissingNumber,
    #[error("digits after the end of the command")]
    Trailing,
    #[error("'*' inside a room number")]
    StarInNumber,
    #[error("command ended in the middle of an option")]
    Truncated,
}

/// Why parsing stopped early.
enum Stop {
    /// Input ran out and sending-complete was not seen.
    More,
    Bad(DialError),
}

impl From<DialError> for Stop {
    fn from(e: DialError) -> Stop {
        Stop::Bad(e)
    }
}

/// Parses the called number dialed so far. `complete` is sending-complete: no more
/// digits will come, so an unfinished command is finished (or rejected) now.
pub fn parse(dialed: &str, complete: bool) -> Result<Dial, DialError> {
    if dialed.len() > MAX_DIALED {
        return Err(DialError::TooLong);
    }
    if let Some(c) = dialed
        .chars()
        .find(|c| !(c.is_ascii_digit() || *c == '*' || *c == '#'))
    {
        return Err(DialError::BadChar(c));
    }
    if dialed.is_empty() || dialed == "#" {
        return if complete || dialed == "#" {
            Err(DialError::Empty)
        } else {
            Ok(Dial::Incomplete)
        };
    }
    if !dialed.starts_with('*') {
        return plain(dialed, complete);
    }
    let mut p = Parser {
        s: dialed.as_bytes(),
        pos: 1,
        complete,
    };
    match p.command() {
        Ok(cmd) => Ok(Dial::Command(cmd)),
        Err(Stop::More) if complete => Err(DialError::Truncated),
        Err(Stop::More) => Ok(Dial::Incomplete),
        Err(Stop::Bad(e)) => Err(e),
    }
}

fn plain(dialed: &str, complete: bool) -> Result<Dial, DialError> {
    let (digits, ended) = match dialed.split_once('#') {
        Some((d, "")) => (d, true),
        Some(_) => return Err(DialError::Trailing),
        None => (dialed, complete),
    };
    if digits.contains('*') {
        return Err(DialError::StarInNumber);
    }
    Ok(Dial::Plain {
        digits: digits.to_string(),
        ended,
    })
}

/// Cursor over a `*` command; `pos` is just past the leading `*`.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    complete: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// The next byte, or `More` (or `Truncated` when complete) at the end.
    fn next_required(&mut self) -> Result<u8, Stop> {
        match self.peek() {
            Some(b) => {
                self.pos += 1;
                Ok(b)
            }
            None if self.complete => Err(DialError::Truncated.into()),
            None => Err(Stop::More),
        }
    }

    /// A run of digits ended by `*`, `#` or (with sending-complete) the end.
    fn digits(&mut self) -> Result<String, Stop> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.peek().is_none() && !self.complete {
            return Err(Stop::More);
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn number(&mut self, option: char) -> Result<u32, Stop> {
        let d = self.digits()?;
        if d.is_empty() {
            return Err(DialError::MissingValue(option).into());
        }
        d.parse::<u32>()
            .map_err(|_| DialError::OutOfRange(option).into())
    }

    fn command(&mut self) -> Result<Command, Stop> {
        let kind = match self.next_required()? {
            b'1' => CommandKind::CreateRandom,
            b'2' => CommandKind::CreateGiven,
            b'3' => CommandKind::CreateOrJoin,
            other => return Err(DialError::UnknownCommand(other as char).into()),
        };
        let mut cmd = Command {
            kind,
            number: self.digits()?,
            channel_max: None,
            reserve: 0,
            matches: None,
            id_length: None,
            disconnect_control: false,
            remote_connect: false,
            multivideo: true,
        };
        loop {
            match self.peek() {
                None => break, // `digits` only lets this happen with sending-complete
                Some(b'#') => {
                    self.pos += 1;
                    break;
                }
                Some(b'*') => {
                    self.pos += 1;
                    if self.option(&mut cmd)? {
                        // `*2dd` ended the command; one `#` may still follow.
                        if self.peek() == Some(b'#') {
                            self.pos += 1;
                        }
                        break;
                    }
                }
                Some(_) => return Err(DialError::Trailing.into()),
            }
        }
        if self.pos != self.s.len() {
            return Err(DialError::Trailing.into());
        }
        if cmd.number.is_empty() && kind != CommandKind::CreateRandom {
            return Err(DialError::MissingNumber.into());
        }
        Ok(cmd)
    }

    /// Parses one option after its `*`; true when it ended the whole command.
    fn option(&mut self, cmd: &mut Command) -> Result<bool, Stop> {
        match self.next_required()? {
            b'1' => cmd.channel_max = Some(self.number('1')?),
            b'2' => return self.reserve(cmd),
            b'3' => cmd.number = self.digits()?,
            b'4' => {
                let m = self.digits()?;
                if m.is_empty() {
                    return Err(DialError::MissingValue('4').into());
                }
                cmd.matches = Some(m);
            }
            b'5' => {
                let n = self.number('5')?;
                if n == 0 || n > u32::from(MAX_ID_LENGTH) {
                    return Err(DialError::OutOfRange('5').into());
                }
                cmd.id_length = Some(n as u8); // n <= MAX_ID_LENGTH fits
            }
            b'8' => match self.next_required()? {
                b'1' => cmd.disconnect_control = true,
                b'2' => cmd.remote_connect = true,
                b'3' => cmd.multivideo = false,
                other => return Err(DialError::UnknownOption(format!("8{}", other as char)).into()),
            },
            other => return Err(DialError::UnknownOption((other as char).to_string()).into()),
        }
        // The value ends at `*`, `#` or the end; a single-digit `*8x` must too.
        match self.peek() {
            None if !self.complete => Err(Stop::More),
            None | Some(b'*') | Some(b'#') => Ok(false),
            Some(_) => Err(DialError::Trailing.into()),
        }
    }

    /// `*2` takes one or two digits; two digits end the command.
    fn reserve(&mut self, cmd: &mut Command) -> Result<bool, Stop> {
        let first = match self.peek() {
            Some(b @ b'0'..=b'9') => b - b'0',
            None if !self.complete => return Err(Stop::More),
            _ => return Err(DialError::MissingValue('2').into()),
        };
        self.pos += 1;
        match self.peek() {
            Some(b @ b'0'..=b'9') => {
                self.pos += 1;
                cmd.reserve = u32::from(first) * 10 + u32::from(b - b'0');
                Ok(true)
            }
            None if !self.complete => Err(Stop::More),
            _ => {
                cmd.reserve = u32::from(first);
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &str) -> Command {
        match parse(s, false) {
            Ok(Dial::Command(c)) => c,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn the_three_worked_examples_and_their_star_three_variants_parse_alike() {
        for (a, b, kind) in [
            ("*110*124*26#", "*1*310*124*26#", CommandKind::CreateRandom),
            ("*210*124*26#", "*2*310*124*26#", CommandKind::CreateGiven),
            ("*310*124*26#", "*3*310*124*26#", CommandKind::CreateOrJoin),
        ] {
            let (x, y) = (cmd(a), cmd(b));
            assert_eq!(x, y);
            assert_eq!(x.kind, kind);
            assert_eq!(x.number, "10");
            assert_eq!(x.channel_max, Some(24));
            assert_eq!(x.reserve, 6);
            assert_eq!(x.id_length, None);
        }
    }

    #[test]
    fn two_reserve_digits_end_the_command_with_or_without_a_hash() {
        assert_eq!(cmd("*210*206").reserve, 6);
        assert_eq!(cmd("*210*206#").reserve, 6);
        assert_eq!(parse("*210*206*81#", false), Err(DialError::Trailing));
        assert_eq!(parse("*210*2065", false), Err(DialError::Trailing));
    }

    #[test]
    fn an_unfinished_command_waits_unless_sending_complete_was_seen() {
        for s in [
            "*", "*1", "*210", "*210*2", "*210*20*", "*1*8", "*1*5", "*210*2", "*1*3",
        ] {
            assert_eq!(parse(s, false), Ok(Dial::Incomplete), "{s}");
        }
        assert_eq!(parse("*210*2", true), Err(DialError::MissingValue('2')));
        assert_eq!(parse("*1*8", true), Err(DialError::Truncated));
        assert_eq!(cmd_complete("*1").number, "");
        assert_eq!(cmd_complete("*210*26").reserve, 6);
    }

    fn cmd_complete(s: &str) -> Command {
        match parse(s, true) {
            Ok(Dial::Command(c)) => c,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn flags_match_and_id_length_are_read() {
        let c = cmd("*1*512*41*81*82*83#");
        assert_eq!(c.id_length, Some(12));
        assert_eq!(c.matches.as_deref(), Some("1"));
        assert!(c.disconnect_control && c.remote_connect && !c.multivideo);
        assert!(!cmd("*1#").disconnect_control);
        assert!(cmd("*1#").multivideo);
    }

    #[test]
    fn syntax_errors_are_named() {
        let cases = [
            ("*4#", DialError::UnknownCommand('4')),
            ("*1*6#", DialError::UnknownOption("6".into())),
            ("*1*84#", DialError::UnknownOption("84".into())),
            ("*1*812#", DialError::Trailing),
            ("*2#", DialError::MissingNumber),
            ("*3*206", DialError::MissingNumber),
            ("*1*1#", DialError::MissingValue('1')),
            ("*1*4#", DialError::MissingValue('4')),
            ("*1*50#", DialError::OutOfRange('5')),
            ("*1*513#", DialError::OutOfRange('5')),
            ("*1*19999999999#", DialError::OutOfRange('1')),
            ("*1A#", DialError::BadChar('A')),
            ("1*2#", DialError::StarInNumber),
            ("10#5", DialError::Trailing),
            ("*210#1", DialError::Trailing),
            ("#", DialError::Empty),
        ];
        for (s, e) in cases {
            assert_eq!(parse(s, false), Err(e), "{s}");
        }
        assert_eq!(parse("", true), Err(DialError::Empty));
        assert_eq!(
            parse(&"1".repeat(MAX_DIALED + 1), false),
            Err(DialError::TooLong)
        );
    }

    #[test]
    fn plain_digits_report_whether_the_number_ended() {
        let p = |d: &str, e| Dial::Plain {
            digits: d.into(),
            ended: e,
        };
        assert_eq!(parse("10", false), Ok(p("10", false)));
        assert_eq!(parse("10#", false), Ok(p("10", true)));
        assert_eq!(parse("10", true), Ok(p("10", true)));
        assert_eq!(parse("", false), Ok(Dial::Incomplete));
    }
}
