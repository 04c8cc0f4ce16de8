//! A batched UDP echo server built on the node's own I/O layer
//! (`scnf::io::udp`): every datagram goes back to its sender. A stand-in for the
//! node when testing the support code, and a smoke test of the batch API from
//! outside the crate. Runs on a background thread with a bounded lifetime.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use scnf::io::udp::{bind_udp, RecvBatch, SendBatch};

/// Counters returned by [`Echo::stop`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EchoStats {
    pub received: u64,
    pub echoed: u64,
    pub failed: u64,
    /// `recv` calls that returned datagrams (batching shows as received/recv_calls).
    pub recv_calls: u64,
}

pub struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<EchoStats>>>,
}

impl Echo {
    /// Starts echoing on a fresh 127.0.0.1 port for at most `lifetime`.
    pub fn start(lifetime: Duration) -> io::Result<Echo> {
        let sock = bind_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), 1 << 20, 1 << 20)?;
        let addr = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + lifetime;
            let mut rx = RecvBatch::default();
            let mut tx = SendBatch::default();
            let mut stats = EchoStats::default();
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                let n = rx.recv(&sock)?;
                if n == 0 {
                    // Nonblocking socket and no reactor here: nap briefly.
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
                stats.recv_calls += 1;
                stats.received += n as u64;
                for d in rx.iter().filter(|d| !d.truncated) {
                    // Same slot sizes on both sides, so Full is the only refusal,
                    // and the batch was flushed before this receive.
                    if tx.push(d.src, d.data).is_err() {
                        stats.failed += 1;
                    }
                }
                let f = tx.flush(&sock)?;
                stats.echoed += f.sent as u64;
                stats.failed += f.failed as u64;
                // Echo is best effort: drop what the kernel would not take now.
                tx.clear();
            }
            Ok(stats)
        });
        Ok(Echo {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and returns its counters (or the error that ended it).
    pub fn stop(mut self) -> io::Result<EchoStats> {
        self.halt()
    }

    fn halt(&mut self) -> io::Result<EchoStats> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("echo thread panicked")),
            None => Ok(EchoStats::default()),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::client::{run_concurrently, Participant};
    use crate::support::impair::{Impairment, Relay, RelayConfig};
    use crate::support::tones::{level_db, Tone, TEST_TONES_HZ};
    use scnf::codec::CodecKind;

    #[test]
    fn five_participants_behind_lossy_jittery_relays_hear_their_own_tones_back() {
        let echo = Echo::start(Duration::from_secs(10)).unwrap();
        let mut parts = Vec::new();
        let mut relays = Vec::new();
        for (i, &f) in TEST_TONES_HZ.iter().enumerate() {
            let codec = if i % 2 == 0 {
                CodecKind::Pcmu
            } else {
                CodecKind::Pcma
            };
            let pt = codec
                .static_payload_type()
                .expect("G.711 has a static payload type");
            let (mut p, local) =
                Participant::with_seed(codec, pt, Tone::new(f, -20.0), i as u64).unwrap();
            let relay = Relay::start(
                local,
                Some(echo.addr()),
                RelayConfig::symmetric(Impairment::TYPICAL, 100 + i as u64),
            )
            .unwrap();
            p.set_remote(relay.addr());
            parts.push(p);
            relays.push(relay);
        }
        let got = run_concurrently(&mut parts, Duration::from_millis(2500)).unwrap();
        let relay_stats: Vec<_> = relays.into_iter().map(Relay::stop).collect();
        let echo_stats = echo.stop().unwrap();
        assert_eq!(echo_stats.failed, 0);
        assert_eq!(echo_stats.received, echo_stats.echoed);

        for (i, (r, rs)) in got.iter().zip(&relay_stats).enumerate() {
            let f = TEST_TONES_HZ[i];
            // About 5% lost each way; placement by timestamp turns losses into gaps.
            let lost = rs.to_node.lost + rs.to_participant.lost;
            assert!(
                r.frame_coverage() > 0.8,
                "{f}: coverage {:.2}",
                r.frame_coverage()
            );
            // The last few frames may still be in flight when the run ends.
            assert!(r.packets + lost + 6 >= r.sent, "{f}: {r:?} {rs:?}");
            let w = r.window(Duration::from_millis(200), Duration::from_secs(2));
            let own = level_db(w, f);
            assert!(
                (-22.0..=-19.5).contains(&own),
                "{f}: own tone at {own:.1} dB"
            );
            for &g in TEST_TONES_HZ.iter().filter(|&&g| g != f) {
                let other = level_db(w, g);
                assert!(other < own - 40.0, "{f}: {g} Hz at {other:.1} dB");
            }
        }
    }
}
