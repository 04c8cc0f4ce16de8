//! A deliberately small HTTP/1.1 client: just enough to talk to Janus's HTTP
//! transport on loopback.
//!
//! One TCP connection per request, sent with `Connection: close`. Janus (through
//! libmicrohttpd) would keep a connection alive, but a reused connection brings the
//! stale-connection problem — the server may close it between two requests, and a
//! POST that hit a dying connection cannot be blindly replayed because Janus requests
//! (attach, join) are not idempotent. On loopback a fresh connection costs tens of
//! microseconds, far below what a Janus request itself costs, so the simple choice
//! loses nothing measurable (see the join rate in the module docs of `janus`).
//!
//! Janus answers with `Transfer-Encoding: chunked` (even for small bodies), and with
//! `Content-Length: 0` for errors such as 404; both are parsed, as is a body that runs
//! until the server closes the connection. The parser ([`parse_response`]) is sans-IO
//! and incremental so it can be tested on byte strings; [`request`] is the thin tokio
//! shell around it. Every request, connect included, is bounded by one timeout.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted, headers and body. A long-poll answer carrying many
/// `joined` events of a 300-participant room stays well below this.
pub const MAX_RESPONSE: usize = 8 << 20;

/// What went wrong with one HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    #[error("i/o: {0}")]
    Io(#[source] io::Error),
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    #[error("connection closed after {got} bytes, before the response was complete")]
    Truncated { got: usize },
    #[error("bad status line {0:?}")]
    BadStatusLine(String),
    #[error("bad header line {0:?}")]
    BadHeader(String),
    #[error("bad Content-Length {0:?}")]
    BadContentLength(String),
    #[error("unsupported Transfer-Encoding {0:?}")]
    UnsupportedEncoding(String),
    #[error("bad chunk: {0}")]
    BadChunk(&'static str),
    #[error("response larger than {limit} bytes")]
    TooLarge { limit: usize },
}

/// A complete response: status code and the (de-chunked) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// How the body's end is found.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Parses a response from the start of `buf`.
///
/// Returns `Ok(None)` while more bytes are needed; `eof` says the peer closed the
/// connection, which completes an unframed body and makes any other incomplete
/// response an error. On success returns the response and the bytes consumed.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(Response, usize)>, HttpError> {
    if buf.len() > MAX_RESPONSE {
        return Err(HttpError::TooLarge {
            limit: MAX_RESPONSE,
        });
    }
    let Some(head_len) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return incomplete(buf, eof);
    };
    let head = String::from_utf8_lossy(&buf[..head_len - 4]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = parse_status_line(status_line)?;
    let mut framing = Framing::UntilClose;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| HttpError::BadHeader(line.to_string()))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| HttpError::BadContentLength(value.to_string()))?;
            // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
            if !matches!(framing, Framing::Chunked) {
                framing = Framing::Length(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(HttpError::UnsupportedEncoding(value.to_string()));
            }
            framing = Framing::Chunked;
        }
    }
    // 1xx, 204 and 304 never carry a body.
    if status / 100 == 1 || status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    let rest = &buf[head_len..];
    let body = match framing {
        Framing::Length(n) if n > MAX_RESPONSE => {
            return Err(HttpError::TooLarge {
                limit: MAX_RESPONSE,
            })
        }
        Framing::Length(n) if rest.len() >= n => Some((rest[..n].to_vec(), n)),
        Framing::Length(_) => None,
        Framing::Chunked => dechunk(rest)?,
        Framing::UntilClose => eof.then(|| (rest.to_vec(), rest.len())),
    };
    match body {
        Some((body, used)) => Ok(Some((Response { status, body }, head_len + used))),
        None => incomplete(buf, eof),
    }
}

fn incomplete(buf: &[u8], eof: bool) -> Result<Option<(Response, usize)>, HttpError> {
    if eof {
        Err(HttpError::Truncated { got: buf.len() })
    } else {
        Ok(None)
    }
}

fn parse_status_line(line: &str) -> Result<u16, HttpError> {
    let bad = || HttpError::BadStatusLine(line.to_string());
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().ok_or_else(bad)?;
    if !version.starts_with("HTTP/1.") {
        return Err(bad());
    }
    let code = parts.next().ok_or_else(bad)?;
    if code.len() != 3 {
        return Err(bad());
    }
    code.parse::<u16>().map_err(|_| bad())
}

/// Decodes a chunked body at the start of `buf`: `Ok(None)` while incomplete, else
/// the body and the bytes consumed (trailers included).
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..pos + eol])
            .map_err(|_| HttpError::BadChunk("size line is not text"))?;
        // Chunk extensions (";name=value") are allowed and ignored.
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::BadChunk("size is not hexadecimal"))?;
        if size > MAX_RESPONSE {
            return Err(HttpError::TooLarge {
                limit: MAX_RESPONSE,
            });
        }
        pos += eol + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(eol) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(HttpError::BadChunk("chunk data not followed by CRLF"));
        }
        pos += size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends one request to `addr` on a fresh connection and reads the whole response,
/// all within `timeout`. `body` is sent as `application/json`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, exchange(addr, method, path, body))
        .await
        .unwrap_or(Err(HttpError::Timeout(timeout)))
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Response, HttpError> {
    let mut stream = TcpStream::connect(addr).await.map_err(HttpError::Connect)?;
    // Requests are small and written in one go; no reason to wait for Nagle.
    stream.set_nodelay(true).map_err(HttpError::Io)?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&out).await.map_err(HttpError::Io)?;

    let mut buf = Vec::with_capacity(4096);
    loop {
        let n = stream.read_buf(&mut buf).await.map_err(HttpError::Io)?;
        if let Some((resp, _)) = parse_response(&buf, n == 0)? {
            return Ok(resp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(raw: &[u8]) -> Result<Option<(Response, usize)>, HttpError> {
        parse_response(raw, false)
    }

    #[test]
    fn a_content_length_body_is_complete_exactly_when_all_its_bytes_arrived() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
        for cut in 0..raw.len() {
            assert!(parse_all(&raw[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let (r, used) = parse_all(raw).unwrap().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
        assert_eq!(used, raw.len());
    }

    #[test]
    fn a_chunked_body_is_reassembled_with_extensions_and_trailers_skipped() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                    4;x=1\r\n{\"ja\r\nb\r\nnus\":\"ack\"}\r\n0\r\nT: 1\r\n\r\n";
        for cut in 0..raw.len() {
            assert!(parse_all(&raw[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let (r, used) = parse_all(raw).unwrap().unwrap();
        assert_eq!(r.body, br#"{"janus":"ack"}"#);
        assert_eq!(used, raw.len());
    }

    #[test]
    fn chunked_wins_over_content_length() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n\
                    2\r\nok\r\n0\r\n\r\n";
        assert_eq!(parse_all(raw).unwrap().unwrap().0.body, b"ok");
    }

    #[test]
    fn an_unframed_body_ends_when_the_server_closes() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\n{}";
        assert!(parse_response(raw, false).unwrap().is_none());
        assert_eq!(parse_response(raw, true).unwrap().unwrap().0.body, b"{}");
    }

    #[test]
    fn no_content_has_no_body_even_without_framing_headers() {
        let raw = b"HTTP/1.1 204 No Content\r\n\r\n";
        let (r, _) = parse_all(raw).unwrap().unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
    }

    #[test]
    fn a_connection_closed_mid_response_is_truncated() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(matches!(
            parse_response(raw, true),
            Err(HttpError::Truncated { got }) if got == raw.len()
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 2", true),
            Err(HttpError::Truncated { .. })
        ));
    }

    #[test]
    fn malformed_heads_and_chunks_are_named_errors() {
        type Check = fn(&HttpError) -> bool;
        let cases: [(&[u8], Check); 7] = [
            (b"ICY 200 OK\r\n\r\n", |e| {
                matches!(e, HttpError::BadStatusLine(_))
            }),
            (b"HTTP/1.1 2000 OK\r\n\r\n", |e| {
                matches!(e, HttpError::BadStatusLine(_))
            }),
            (b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", |e| {
                matches!(e, HttpError::BadHeader(_))
            }),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", |e| {
                matches!(e, HttpError::BadContentLength(_))
            }),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", |e| {
                matches!(e, HttpError::UnsupportedEncoding(_))
            }),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                |e| matches!(e, HttpError::BadChunk(_)),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX",
                |e| matches!(e, HttpError::BadChunk(_)),
            ),
        ];
        for (raw, check) in cases {
            let err = parse_all(raw).expect_err(&String::from_utf8_lossy(raw));
            assert!(
                check(&err),
                "{:?} gave {err:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn a_declared_body_beyond_the_limit_is_refused_before_it_arrives() {
        let raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE + 1
        );
        assert!(matches!(
            parse_all(raw.as_bytes()),
            Err(HttpError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let t = Duration::from_millis(100);
        let err = request(addr, "GET", "/x", None, t).await.unwrap_err();
        assert!(matches!(err, HttpError::Timeout(d) if d == t), "{err:?}");
        hold.abort();
    }
}
