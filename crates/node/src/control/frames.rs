//! Watches the WebSocket frames a peer sends, without touching them, to tell when a
//! fragmented message is under way.
//!
//! tungstenite assembles fragments out of sight: a peer that sends the first fragment
//! of a message and never the last, while it answers pings, would look alive forever
//! and hold its slot. [`Watched`] sits between the socket (or the TLS stream) and
//! tungstenite once the handshake is done, feeds every byte read to a [`FrameWatch`]
//! (frame headers only; payloads are skipped by length), and so the session can cut a
//! message that is not finished in time.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The frame-header parser: a sans-IO state machine fed the peer's bytes in order.
#[derive(Debug, Default)]
pub struct FrameWatch {
    /// Bytes of the current header collected so far (at most 2 + 8 + 4).
    header: Vec<u8>,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// Whether a data frame without FIN opened a message that is not finished yet.
    open: bool,
}

/// What one call to [`FrameWatch::feed`] saw happen to the message under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragments {
    /// Nothing changed.
    Same,
    /// A fragmented message started (and is not finished at the end of the input).
    Started,
    /// The message under way was finished.
    Finished,
}

impl FrameWatch {
    /// Whether a fragmented message is under way.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Feeds bytes as read from the peer.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Fragments {
        let was = self.open;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = (bytes.len() as u64).min(self.skip);
                self.skip -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            if let Some(len) = self.header_done() {
                self.frame(self.header[0]);
                self.header.clear();
                self.skip = len;
            }
        }
        match (was, self.open) {
            (false, true) => Fragments::Started,
            (true, false) => Fragments::Finished,
            _ => Fragments::Same,
        }
    }

    /// The payload length once the header is complete.
    fn header_done(&self) -> Option<u64> {
        let h = &self.header;
        if h.len() < 2 {
            return None;
        }
        let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
        let (extra, len) = match h[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        if h.len() < 2 + extra + mask {
            return None;
        }
        Some(len.unwrap_or_else(|| {
            h[2..2 + extra]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        }))
    }

    fn frame(&mut self, b0: u8) {
        let fin = b0 & 0x80 != 0;
        match b0 & 0x0f {
            // Text or binary: starts a message, finished at once when FIN is set.
            0x1 | 0x2 => self.open = !fin,
            // Continuation.
            0x0 if fin => self.open = false,
            // Control frames (close, ping, pong) may come between fragments.
            _ => {}
        }
    }
}

/// When the message under way started (`None`: none is), shared with the session.
#[derive(Clone, Debug, Default)]
pub struct Assembly(Arc<Mutex<(FrameWatch, Option<Instant>)>>);

impl Assembly {
    /// When the unfinished message's first fragment was read.
    pub fn started(&self) -> Option<Instant> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    fn feed(&self, bytes: &[u8]) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match state.0.feed(bytes) {
            Fragments::Started => state.1 = Some(Instant::now()),
            Fragments::Finished => state.1 = None,
            Fragments::Same => {}
        }
    }
}

/// A byte stream whose reads are shown to an [`Assembly`] once `watching` is set
/// (after the handshake: its HTTP bytes are not frames).
pub struct Watched<S> {
    inner: S,
    assembly: Assembly,
    watching: bool,
}

impl<S> Watched<S> {
    pub fn new(inner: S, assembly: Assembly) -> Watched<S> {
        Watched {
            inner,
            assembly,
            watching: false,
        }
    }
}

/// Turns watching on for a stream inside a `WebSocketStream`.
pub fn start_watching<S>(stream: &mut Watched<S>) {
    stream.watching = true;
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.watching {
            if let Poll::Ready(Ok(())) = polled {
                self.assembly.feed(&buf.filled()[before..]);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame: `b0` (FIN and opcode), then `len` payload bytes.
    fn frame(b0: u8, len: usize) -> Vec<u8> {
        let mut f = vec![b0];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=65_535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        // Payload bytes that look like headers, to prove they are skipped.
        f.extend(std::iter::repeat_n(0x01u8, len));
        f
    }

    #[test]
    fn whole_messages_never_open_an_assembly() {
        let mut w = FrameWatch::default();
        let mut input = frame(0x81, 5);
        input.extend(frame(0x89, 0)); // ping
        input.extend(frame(0x82, 70_000));
        input.extend(frame(0x81, 300));
        assert_eq!(w.feed(&input), Fragments::Same);
        assert!(!w.is_open());
    }

    #[test]
    fn a_first_fragment_opens_it_until_the_final_continuation_even_byte_by_byte() {
        let mut w = FrameWatch::default();
        assert_eq!(w.feed(&frame(0x01, 10)), Fragments::Started);
        // Pongs and non-final continuations keep it open.
        assert_eq!(w.feed(&frame(0x8a, 4)), Fragments::Same);
        assert_eq!(w.feed(&frame(0x00, 200)), Fragments::Same);
        assert!(w.is_open());
        let last = frame(0x80, 3);
        let mut seen = Vec::new();
        for b in &last {
            seen.push(w.feed(std::slice::from_ref(b)));
        }
        // Finished once the final frame's header is in.
        let finished: Vec<usize> = (0..seen.len())
            .filter(|&i| seen[i] == Fragments::Finished)
            .collect();
        assert_eq!(finished, vec![5], "{seen:?}");
        assert!(!w.is_open());
        // Started and finished within one read: nothing to watch.
        let mut both = frame(0x02, 1);
        both.extend(frame(0x80, 1));
        assert_eq!(w.feed(&both), Fragments::Same);
    }
}
