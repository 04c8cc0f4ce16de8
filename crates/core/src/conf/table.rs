//! The conformance table `vectors/conf-commands.tsv`: one row per rule of the dial
//! language, read by the unit tests here and by the WebSocket system tests, so both
//! check the same cases.
//!
//! Format (see `vectors/README.md`): tab-separated, `#` starts a comment line, the first
//! other line names the columns (extra columns are allowed and ignored). Required
//! columns: `name`, `capacity`, `present`, `dial`, `complete`, `info`, `expect`,
//! `options`. In `dial` and `info`, `-` stands for "nothing".

use super::{CallRef, Cause, ConfEvent, Output};

/// A room that exists before the row's call is dialed.
///
/// A driver creates it by dialing [`Present::create_dial`] and then
/// `members − 1` times [`Present::join_dial`], each with sending-complete off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Present {
    pub id: String,
    pub members: u32,
    pub reserve: Option<u32>,
}

impl Present {
    /// `*2<id>*2<rr>` (two reserve digits end the command) or `*2<id>#`.
    pub fn create_dial(&self) -> String {
        match self.reserve {
            Some(r) => format!("*2{}*2{:02}", self.id, r),
            None => format!("*2{}#", self.id),
        }
    }

    /// `<id>#`.
    pub fn join_dial(&self) -> String {
        format!("{}#", self.id)
    }
}

/// The options a created room must have (defaults when the column is `-`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomOptions {
    pub reserve: u32,
    pub disconnect_control: bool,
    pub remote_connect: bool,
    pub multivideo_off: bool,
}

/// What must happen to the row's call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `join <id>`.
    Join(String),
    /// `create <id>`: exactly this id.
    Create(String),
    /// `create <prefix>+<n>`: the prefix followed by `n` random digits.
    CreateRandom { prefix: String, digits: usize },
    /// `wait`: still collecting digits.
    Wait,
    /// `reject <cause>`.
    Reject(Cause),
}

/// One row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// 1-based line in the file, for messages.
    pub line: usize,
    pub name: String,
    pub capacity: u32,
    pub present: Vec<Present>,
    /// The called number of the setup (may be empty).
    pub dial: String,
    pub complete: bool,
    /// Digits sent later as info messages, one element per message.
    pub info: Vec<String>,
    pub expect: Expect,
    pub options: RoomOptions,
}

/// What happened to a call, as read from the outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Joined(String),
    Created { room: String, options: RoomOptions },
    Waiting,
    Released(Cause),
}

/// A malformed table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("the table has no header line")]
    NoHeader,
    #[error("the header lacks column {0:?}")]
    MissingColumn(&'static str),
    #[error("line {line}: {msg}")]
    Line { line: usize, msg: String },
}

const COLUMNS: [&str; 8] = [
    "name", "capacity", "present", "dial", "complete", "info", "expect", "options",
];

/// Parses the whole table.
pub fn parse(text: &str) -> Result<Vec<Row>, TableError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (_, header) = lines.next().ok_or(TableError::NoHeader)?;
    let header: Vec<&str> = header.split('\t').map(str::trim).collect();
    let mut index = [0usize; 8];
    for (slot, col) in index.iter_mut().zip(COLUMNS) {
        *slot = header
            .iter()
            .position(|h| *h == col)
            .ok_or(TableError::MissingColumn(col))?;
    }
    lines
        .map(|(line, l)| {
            let fields: Vec<&str> = l.split('\t').map(str::trim).collect();
            row(line, &fields, &index).map_err(|msg| TableError::Line { line, msg })
        })
        .collect()
}

fn row(line: usize, f: &[&str], index: &[usize; 8]) -> Result<Row, String> {
    let get = |i: usize| -> Result<&str, String> {
        f.get(index[i])
            .copied()
            .ok_or_else(|| format!("missing column {:?}", COLUMNS[i]))
    };
    let none_if_dash = |s: &str| {
        if s == "-" {
            String::new()
        } else {
            s.to_string()
        }
    };
    Ok(Row {
        line,
        name: get(0)?.to_string(),
        capacity: get(1)?
            .parse()
            .map_err(|_| format!("bad capacity {:?}", get(1)))?,
        present: presents(get(2)?)?,
        dial: none_if_dash(get(3)?),
        complete: match get(4)? {
            "0" => false,
            "1" => true,
            other => return Err(format!("complete must be 0 or 1, not {other:?}")),
        },
        info: match get(5)? {
            "-" => Vec::new(),
            s => s.split('|').map(str::to_string).collect(),
        },
        expect: expect(get(6)?)?,
        options: options(get(7)?)?,
    })
}

fn presents(s: &str) -> Result<Vec<Present>, String> {
    if s == "-" {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|p| {
            let (id, rest) = p.split_once(':').unwrap_or((p, "1"));
            let (members, reserve) = match rest.split_once('/') {
                Some((m, r)) => (
                    m,
                    Some(r.parse().map_err(|_| format!("bad reserve in {p:?}"))?),
                ),
                None => (rest, None),
            };
            let members: u32 = members
                .parse()
                .map_err(|_| format!("bad member count in {p:?}"))?;
            if members == 0 || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("bad present room {p:?}"));
            }
            if reserve.is_some_and(|r: u32| r > 99) {
                return Err(format!("reserve above 99 in {p:?}"));
            }
            Ok(Present {
                id: id.to_string(),
                members,
                reserve,
            })
        })
        .collect()
}

fn expect(s: &str) -> Result<Expect, String> {
    let (verb, arg) = s.split_once(' ').unwrap_or((s, ""));
    match verb {
        "wait" if arg.is_empty() => Ok(Expect::Wait),
        "join" if !arg.is_empty() => Ok(Expect::Join(arg.to_string())),
        "create" => match arg.split_once('+') {
            Some((prefix, n)) => Ok(Expect::CreateRandom {
                prefix: prefix.to_string(),
                digits: n
                    .parse()
                    .map_err(|_| format!("bad random length in {s:?}"))?,
            }),
            None if !arg.is_empty() => Ok(Expect::Create(arg.to_string())),
            None => Err("create needs an id".into()),
        },
        "reject" => Ok(Expect::Reject(Cause(
            arg.parse().map_err(|_| format!("bad cause in {s:?}"))?,
        ))),
        _ => Err(format!("bad expect {s:?}")),
    }
}

fn options(s: &str) -> Result<RoomOptions, String> {
    let mut o = RoomOptions::default();
    if s == "-" {
        return Ok(o);
    }
    for word in s.split_whitespace() {
        match word {
            "dc" => o.disconnect_control = true,
            "rc" => o.remote_connect = true,
            "mv-off" => o.multivideo_off = true,
            w => match w.strip_prefix("reserve=").map(str::parse) {
                Some(Ok(r)) => o.reserve = r,
                _ => return Err(format!("bad option {w:?}")),
            },
        }
    }
    Ok(o)
}

/// Reads what happened to `call` from the outputs that its setup and infos produced.
pub fn outcome(call: CallRef, outputs: &[Output]) -> Outcome {
    for o in outputs {
        match o {
            Output::Released { call: c, cause } if *c == call => return Outcome::Released(*cause),
            Output::Connected { call: c, room, .. } | Output::Alerting { call: c, room }
                if *c == call =>
            {
                let created = outputs.iter().find_map(|o| match o {
                    Output::Event(ConfEvent::RoomCreated {
                        room: r,
                        reserve,
                        disconnect_control,
                        remote_connect,
                        multivideo,
                    }) if r == room => Some(RoomOptions {
                        reserve: *reserve,
                        disconnect_control: *disconnect_control,
                        remote_connect: *remote_connect,
                        multivideo_off: !*multivideo,
                    }),
                    _ => None,
                });
                return match created {
                    Some(options) => Outcome::Created {
                        room: room.clone(),
                        options,
                    },
                    None => Outcome::Joined(room.clone()),
                };
            }
            _ => {}
        }
    }
    Outcome::Waiting
}

impl Row {
    /// Checks an outcome against the row's expectation (and options, for creations).
    pub fn check(&self, got: &Outcome) -> Result<(), String> {
        let ok = match (&self.expect, got) {
            (Expect::Join(want), Outcome::Joined(room)) => want == room,
            (Expect::Create(want), Outcome::Created { room, options }) => {
                want == room && *options == self.options
            }
            (Expect::CreateRandom { prefix, digits }, Outcome::Created { room, options }) => {
                room.len() == prefix.len() + digits
                    && room.starts_with(prefix.as_str())
                    && room.bytes().all(|b| b.is_ascii_digit())
                    && *options == self.options
            }
            (Expect::Wait, Outcome::Waiting) => true,
            (Expect::Reject(want), Outcome::Released(cause)) => want == cause,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "line {} ({}): expected {:?} with {:?}, got {:?}",
                self.line, self.name, self.expect, self.options, got
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "name\tcapacity\tpresent\tdial\tcomplete\tinfo\texpect\toptions\textra\n";

    #[test]
    fn a_row_is_read_by_column_name_with_dashes_for_nothing() {
        let text = format!(
            "# comment\n{HEADER}A row\t8\t10:2/6,1\t*2*310*26\t0\t1|#\tcreate 10+4\treserve=6 dc rc mv-off\tx\n"
        );
        let rows = parse(&text).expect("valid table");
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.line, 3);
        assert_eq!(
            r.present,
            vec![
                Present {
                    id: "10".into(),
                    members: 2,
                    reserve: Some(6)
                },
                Present {
                    id: "1".into(),
                    members: 1,
                    reserve: None
                },
            ]
        );
        assert_eq!(r.present[0].create_dial(), "*210*206");
        assert_eq!(r.present[1].create_dial(), "*21#");
        assert_eq!(r.info, vec!["1".to_string(), "#".to_string()]);
        assert_eq!(
            r.expect,
            Expect::CreateRandom {
                prefix: "10".into(),
                digits: 4
            }
        );
        assert!(
            r.options.disconnect_control && r.options.remote_connect && r.options.multivideo_off
        );
        assert_eq!(r.options.reserve, 6);
    }

    #[test]
    fn malformed_rows_and_headers_are_errors() {
        assert_eq!(parse("# only a comment\n"), Err(TableError::NoHeader));
        assert_eq!(
            parse("name\tcapacity\n"),
            Err(TableError::MissingColumn("present"))
        );
        for bad in [
            "x\tmany\t-\t1\t0\t-\twait\t-",
            "x\t8\t-\t1\t2\t-\twait\t-",
            "x\t8\t10:0\t1\t0\t-\twait\t-",
            "x\t8\t-\t1\t0\t-\tjoin\t-",
            "x\t8\t-\t1\t0\t-\tcreate 1+x\t-",
            "x\t8\t-\t1\t0\t-\twait\tloud",
            "x\t8\t-\t1",
        ] {
            assert!(
                matches!(
                    parse(&format!("{HEADER}{bad}\n")),
                    Err(TableError::Line { line: 2, .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_outcome_tells_a_creation_from_a_join_and_the_check_compares_options() {
        let call = CallRef(9);
        let created = [
            Output::Event(ConfEvent::RoomCreated {
                room: "1234".into(),
                reserve: 0,
                disconnect_control: false,
                remote_connect: false,
                multivideo: true,
            }),
            Output::Connected {
                call,
                room: "1234".into(),
                multivideo: true,
            },
        ];
        let got = outcome(call, &created);
        let mut row = parse(&format!("{HEADER}x\t8\t-\t*1\t1\t-\tcreate 12+2\t-\n"))
            .expect("valid")
            .remove(0);
        assert_eq!(row.check(&got), Ok(()));
        row.options.reserve = 1;
        assert!(row.check(&got).is_err(), "options differ");
        assert_eq!(outcome(call, &created[1..]), Outcome::Joined("1234".into()));
        assert_eq!(outcome(CallRef(1), &created), Outcome::Waiting);
    }
}
