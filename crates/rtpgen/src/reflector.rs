//! The bare batched UDP reflector: the benchmark baseline for rtpgen.
//!
//! It echoes every datagram back to its sender and does nothing else, so the
//! packets per CPU-second it reaches are the ceiling any media node on this
//! machine could reach with the same socket path ([`scnf_udp`]:
//! `recvmmsg`/`sendmmsg`, [`DEFAULT_BATCH`] datagrams per call). A mixer measured
//! by rtpgen is compared against it.
//!
//! It is all I/O shell: it reads the socket and the clock (for its deadline) and
//! judges nothing.
//!
//! # Contract
//! - [`run`] works on the calling thread until `stop` is set or `deadline` passes,
//!   and returns what it did. It notices either within [`POLL_SLICE`], because it
//!   sleeps in `poll(2)` (never a busy spin) for at most that long at a time.
//! - All memory (two batches of [`DEFAULT_BATCH`] × [`DEFAULT_SLOT_BYTES`]) is
//!   allocated once at the start; nothing is allocated per datagram.
//! - A datagram is echoed byte for byte, zero-length ones included, to the address
//!   it came from. One larger than a slot arrives truncated and is dropped (an
//!   echo of its head would be a lie), and so is one the kernel refuses twice:
//!   both are counted in [`ReflectorStats::dropped`], never an error.
//! - When the socket's send buffer is full the reflector waits until it drains
//!   (still stopping on time) rather than dropping: the baseline measures what
//!   the socket path can carry, not how fast it can discard.
//! - Only errors that make the socket unusable are returned as `Err`.
//!
//! This is an I/O shell: it reads the clock for its deadline.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use scnf_udp::{RecvBatch, SendBatch, DEFAULT_BATCH, DEFAULT_SLOT_BYTES};

/// The longest single sleep in `poll(2)`, hence the latency of noticing `stop`.
pub const POLL_SLICE: Duration = Duration::from_millis(20);

/// What a [`run`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReflectorStats {
    /// Datagrams received (echoed or dropped).
    pub received: u64,
    /// Datagrams the kernel accepted for sending back.
    pub reflected: u64,
    /// Datagrams not echoed: truncated (larger than a slot) or refused by the
    /// kernel twice, or left queued when the run ended.
    pub dropped: u64,
    /// `recvmmsg` calls that returned at least one datagram.
    pub batches: u64,
}

/// Echoes every datagram on `socket` to its sender until `stop` is set or
/// `deadline` passes (see the module docs). The socket may be blocking or not:
/// every receive and send is `MSG_DONTWAIT`.
pub fn run(
    socket: &UdpSocket,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> io::Result<ReflectorStats> {
    run_resting(socket, stop, deadline, Duration::ZERO)
}

/// [`run`], resting `rest` after every read that found datagrams and emptied the
/// socket (a batch that came back short), as a scnf
/// worker does with `rtp.rx_coalesce_us`: it then wakes once per `rest` under
/// load instead of once per handful of arrivals. The baseline for a node that
/// coalesces its reads is this one, the same wake-up strategy on the same socket
/// path. `Duration::ZERO` is [`run`].
pub fn run_resting(
    socket: &UdpSocket,
    stop: &AtomicBool,
    deadline: Option<Instant>,
    rest: Duration,
) -> io::Result<ReflectorStats> {
    let mut stats = ReflectorStats::default();
    let mut resting = false;
    let mut rx = RecvBatch::new(DEFAULT_BATCH, DEFAULT_SLOT_BYTES);
    let mut tx = SendBatch::new(DEFAULT_BATCH, DEFAULT_SLOT_BYTES);
    while let Some(wait) = time_left(stop, deadline) {
        // Echoes wait for room in the send buffer before more is read, so a
        // full buffer slows the reflector down instead of losing datagrams.
        if !tx.is_empty() {
            let sent = tx.flush(socket)?;
            stats.reflected += sent.sent as u64;
            stats.dropped += sent.failed as u64;
            if !tx.is_empty() {
                wait_for(socket, libc::POLLOUT, wait)?;
            }
            continue;
        }
        if resting {
            std::thread::sleep(rest.min(wait));
        }
        let n = rx.recv(socket)?;
        // A full batch may have left more behind: read on before resting.
        resting = n > 0 && rx.emptied() && !rest.is_zero();
        if n == 0 {
            wait_for(socket, libc::POLLIN, wait)?;
            continue;
        }
        stats.batches += 1;
        stats.received += n as u64;
        for d in rx.iter() {
            // `tx` is empty here and has as many slots of the same size as `rx`,
            // so a push fails only for a truncated datagram, which is not echoed.
            if d.truncated || tx.push(d.src, d.data).is_err() {
                stats.dropped += 1;
            }
        }
    }
    stats.dropped += tx.len() as u64;
    Ok(stats)
}

/// How long the next sleep may last, or `None` when the run is over.
fn time_left(stop: &AtomicBool, deadline: Option<Instant>) -> Option<Duration> {
    if stop.load(Ordering::Relaxed) {
        return None;
    }
    match deadline {
        None => Some(POLL_SLICE),
        Some(d) => {
            let left = d.checked_duration_since(Instant::now())?;
            (!left.is_zero()).then(|| left.min(POLL_SLICE))
        }
    }
}

/// Sleeps in `poll(2)` until `socket` has `events` or `wait` has passed. A signal
/// just ends the sleep early; the caller's loop re-checks everything anyway.
fn wait_for(socket: &UdpSocket, events: libc::c_short, wait: Duration) -> io::Result<()> {
    let mut fds = libc::pollfd {
        fd: socket.as_raw_fd(),
        events,
        revents: 0,
    };
    // Round up, so a sub-millisecond remainder does not turn into a busy loop.
    let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is one valid, initialised pollfd living across the call, and
    // the count passed is 1.
    let rc = unsafe { libc::poll(&mut fds, 1, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    // POLLERR / POLLNVAL: the next recv/flush reports whatever is wrong.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scnf_udp::bind_udp;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::thread::JoinHandle;

    struct Running {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: JoinHandle<io::Result<ReflectorStats>>,
    }

    impl Running {
        fn start(sock: UdpSocket) -> Running {
            Running::resting(sock, Duration::ZERO)
        }

        fn resting(sock: UdpSocket, rest: Duration) -> Running {
            let addr = sock.local_addr().expect("a bound socket has an address");
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let thread = std::thread::spawn(move || run_resting(&sock, &flag, None, rest));
            Running { addr, stop, thread }
        }

        fn finish(self) -> ReflectorStats {
            self.stop.store(true, Ordering::Relaxed);
            self.thread
                .join()
                .expect("reflector thread")
                .expect("reflector run")
        }
    }

    fn reflector_socket() -> UdpSocket {
        bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20, 1 << 20).unwrap()
    }

    fn client() -> UdpSocket {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c
    }

    /// Receives `n` datagrams (2 s timeout each), checking they come from `from`.
    fn receive(c: &UdpSocket, n: usize, from: SocketAddr) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 4096];
        (0..n)
            .map(|i| {
                let (len, src) = c
                    .recv_from(&mut buf)
                    .unwrap_or_else(|e| panic!("echo {i} of {n}: {e}"));
                assert_eq!(src, from);
                buf[..len].to_vec()
            })
            .collect()
    }

    #[test]
    fn each_sender_gets_exactly_its_own_datagrams_back_unchanged() {
        echoes_each_sender_its_own(Running::start(reflector_socket()));
    }

    #[test]
    fn resting_between_reads_still_echoes_each_sender_its_own_datagrams() {
        echoes_each_sender_its_own(Running::resting(
            reflector_socket(),
            Duration::from_millis(1),
        ));
    }

    fn echoes_each_sender_its_own(r: Running) {
        let clients: Vec<UdpSocket> = (0..4).map(|_| client()).collect();
        let mut sent: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
        for round in 0..50u32 {
            for (i, c) in clients.iter().enumerate() {
                let len = (round as usize * 7 + i * 13) % 300 + 1;
                let msg: Vec<u8> = (0..len)
                    .map(|k| (k as u32 ^ round ^ i as u32) as u8)
                    .collect();
                c.send_to(&msg, r.addr).unwrap();
                sent.entry(i).or_default().push(msg);
            }
        }
        for (i, c) in clients.iter().enumerate() {
            assert_eq!(receive(c, 50, r.addr), sent[&i], "client {i}");
            c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            assert!(c.recv_from(&mut [0u8; 16]).is_err(), "client {i} got extra");
        }
        let stats = r.finish();
        assert_eq!(
            (stats.received, stats.reflected, stats.dropped),
            (200, 200, 0)
        );
    }

    #[test]
    fn bursts_are_echoed_completely_and_a_backlog_is_read_in_batches() {
        let sock = reflector_socket();
        let addr = sock.local_addr().unwrap();
        let c = client();
        // A backlog queued before the reflector starts must come out of the first
        // recvmmsg calls many at a time.
        for k in 0..100u32 {
            c.send_to(&k.to_be_bytes(), addr).unwrap();
        }
        let r = Running::start(sock);
        let mut got = receive(&c, 100, addr);
        for burst in 0..10u32 {
            let mut out = SendBatch::default();
            for k in 0..200u32 {
                while out.is_full() {
                    assert_eq!(out.flush(&c).unwrap().failed, 0);
                }
                out.push(addr, &(1000 + burst * 200 + k).to_be_bytes())
                    .unwrap();
            }
            while !out.is_empty() {
                assert_eq!(out.flush(&c).unwrap().failed, 0);
            }
            got.extend(receive(&c, 200, addr));
        }
        let mut ids: Vec<u32> = got
            .iter()
            .map(|d| u32::from_be_bytes(d[..].try_into().expect("4-byte echo")))
            .collect();
        ids.sort_unstable();
        let want: Vec<u32> = (0..100).chain(1000..3000).collect();
        assert_eq!(ids, want);
        let stats = r.finish();
        assert_eq!(
            (stats.received, stats.reflected, stats.dropped),
            (2100, 2100, 0)
        );
        assert!(stats.batches < 2100 - 60, "backlog not batched: {stats:?}");
    }

    #[test]
    fn the_stop_flag_and_the_deadline_end_an_idle_run_promptly() {
        let r = Running::start(reflector_socket());
        std::thread::sleep(Duration::from_millis(60));
        let asked = Instant::now();
        let stats = r.finish();
        assert!(asked.elapsed() < POLL_SLICE * 5, "{:?}", asked.elapsed());
        assert_eq!(stats, ReflectorStats::default());

        let sock = reflector_socket();
        let started = Instant::now();
        let never = AtomicBool::new(false);
        run(&sock, &never, Some(started + Duration::from_millis(80))).unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(80), "{took:?}");
        assert!(
            took < Duration::from_millis(80) + POLL_SLICE * 5,
            "{took:?}"
        );
    }

    #[test]
    fn an_empty_datagram_is_echoed_and_an_oversized_one_is_counted_as_dropped() {
        let r = Running::start(reflector_socket());
        let c = client();
        c.send_to(&[], r.addr).unwrap();
        assert_eq!(receive(&c, 1, r.addr), vec![Vec::<u8>::new()]);
        c.send_to(&[7u8; DEFAULT_SLOT_BYTES + 1], r.addr).unwrap();
        c.send_to(b"after", r.addr).unwrap();
        assert_eq!(receive(&c, 1, r.addr), vec![b"after".to_vec()]);
        let stats = r.finish();
        assert_eq!((stats.received, stats.reflected, stats.dropped), (3, 2, 1));
    }
}
