//! Multicast between two hosts, for real: network namespaces A and B, each with an
//! `eth0` joined by a veth pair to one Linux bridge in a third namespace (the
//! switch; snooping off, so the bridge floods groups as a plain switch does and the
//! kernel's own socket filtering is what is tested). A is 10.0.0.1/24, B 10.0.0.2/24.
//!
//! Sockets are made inside a namespace by a short-lived thread that enters it
//! (`setns`); a socket stays in the namespace it was made in, so the test's own
//! thread then sends and receives on it. The test process itself never changes
//! namespace.
//!
//! Negative assertions ("gets nothing") wait for an event instead of a time: a
//! datagram sent *after* the one that must not arrive, on the same path, reaching
//! its own socket. The kernel delivers a multicast datagram to every matching socket
//! of a host at once and a path keeps its order, so by then the unwanted one would
//! be there.
//!
//! Needs root and `ip` (iproute2); without them the tests fail and say so. Names
//! carry the process's share (`scnfmcR-T...`, R from the pid) and the test's number;
//! what a crashed earlier run of the same names left behind is removed first.

use scnf_udp::multicast::{self, SenderOptions};
use scnf_udp::{bind_udp, RecvBatch, UdpOptions};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 5004;
const G1: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 1);
const G2: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 2);
/// How long a datagram that must arrive may take.
const WAIT: Duration = Duration::from_secs(2);

/// Runs `ip <args>` and returns its stdout; the error names the command and its
/// stderr.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e} (these tests need iproute2)", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces A and B on one bridge; removed when dropped.
struct Net {
    test: u8,
}

impl Net {
    fn up(test: u8) -> Net {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the multicast tests need root (network namespaces); run them as root, as CI does"
        );
        let net = Net { test };
        net.remove();
        net.build()
            .unwrap_or_else(|e| panic!("building the test network: {e}"));
        net
    }

    fn build(&self) -> Result<(), String> {
        let sw = self.ns("sw");
        ip(&["netns", "add", &sw])?;
        ip(&[
            "-n",
            &sw,
            "link",
            "add",
            "name",
            "sw0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &sw, "link", "set", "sw0", "up"])?;
        for (host, addr) in [("a", A), ("b", B)] {
            let ns = self.ns(host);
            let port = format!("p{host}");
            ip(&["netns", "add", &ns])?;
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "sw0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn ns(&self, role: &str) -> String {
        format!("scnfmc{}-{}{role}", std::process::id() % 50, self.test)
    }

    /// Runs `f` on a thread inside namespace `host` ("a", "b"): sockets it makes
    /// live there.
    fn within<T: Send>(&self, host: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.ns(host));
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: a descriptor of a network namespace file, open for the
                // call; setns only changes this (short-lived) thread's namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("the thread in the namespace")
        })
    }

    /// The IPv4 groups `host`'s eth0 is a member of, as the kernel lists them
    /// (`/proc/net/igmp` through `ip maddr`).
    fn memberships(&self, host: &str) -> Vec<Ipv4Addr> {
        let out = ip(&["-n", &self.ns(host), "maddr", "show", "dev", "eth0"])
            .unwrap_or_else(|e| panic!("{e}"));
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("inet "))
            .filter_map(|a| a.split_whitespace().next()?.parse().ok())
            .collect()
    }

    fn remove(&self) {
        for role in ["a", "b", "sw"] {
            let _ = ip(&["netns", "del", &self.ns(role)]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}

fn receiver() -> UdpSocket {
    multicast::bind_receiver(PORT, &UdpOptions::default()).expect("binding the receiver")
}

/// A socket of `from`'s host that sends multicast by its eth0.
fn sender(from: Ipv4Addr, ttl: u32, loopback: bool) -> UdpSocket {
    let sock = bind_udp(SocketAddrV4::new(from, 0).into(), 0, 0).expect("binding the sender");
    let opts = SenderOptions {
        interface: from,
        ttl,
        loopback,
    };
    multicast::configure_sender(&sock, &opts).expect("configuring the sender");
    sock
}

fn send(sock: &UdpSocket, group: Ipv4Addr, payload: &[u8]) {
    sock.send_to(payload, SocketAddrV4::new(group, PORT))
        .unwrap_or_else(|e| panic!("sending to {group}: {e}"));
}

/// What a socket has received: (the group it was sent to, payload).
type Got = Vec<(Option<IpAddr>, Vec<u8>)>;

/// Everything already queued on `sock`, without waiting.
fn drain(sock: &UdpSocket) -> Got {
    let mut batch = RecvBatch::default();
    let mut got = Got::new();
    while batch.recv(sock).expect("recv on a healthy socket") > 0 {
        got.extend(batch.iter().map(|d| (d.dst, d.data.to_vec())));
    }
    got
}

/// Waits until `sock` is readable (poll), at most [`WAIT`], then drains it.
fn wait_and_drain(sock: &UdpSocket) -> Got {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd that lives across the call, and its count.
        let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
        if rc > 0 || left.is_zero() {
            return drain(sock);
        }
        assert!(
            rc == 0 || std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted,
            "poll: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn from(group: Ipv4Addr, payload: &[u8]) -> (Option<IpAddr>, Vec<u8>) {
    (Some(IpAddr::V4(group)), payload.to_vec())
}

#[test]
fn a_group_reaches_only_the_sockets_of_the_other_host_that_joined_it() {
    let net = Net::up(1);
    let tx = net.within("a", || sender(A, 1, false));
    let (r1, r2, idle) = net.within("b", || (receiver(), receiver(), receiver()));
    multicast::join(&r1, G1, B).unwrap();
    multicast::join(&r2, G2, B).unwrap();

    send(&tx, G1, b"one");
    send(&tx, G2, b"two");

    // With TTL 1 across the switch, each receiver gets its own group, told by the
    // datagram's destination; the one sent later arriving means the earlier one
    // would have reached every socket it was going to.
    assert_eq!(wait_and_drain(&r1), vec![from(G1, b"one")]);
    assert_eq!(wait_and_drain(&r2), vec![from(G2, b"two")]);
    assert_eq!(drain(&r1), Got::new(), "r1 joined G1 only");
    // Same port, joined nothing: with IP_MULTICAST_ALL on it would get both.
    assert_eq!(drain(&idle), Got::new(), "a socket that joined nothing");
}

#[test]
fn after_leave_nothing_arrives_and_the_membership_is_gone() {
    let net = Net::up(2);
    let tx = net.within("a", || sender(A, 1, false));
    let (r1, r2) = net.within("b", || (receiver(), receiver()));
    assert!(
        !net.memberships("b").contains(&G1),
        "no member before joining"
    );

    multicast::join(&r1, G1, B).unwrap();
    multicast::join(&r2, G2, B).unwrap();
    let err = multicast::join(&r1, G1, B).unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::AddrInUse,
        "joining twice: {err}"
    );
    let joined = net.memberships("b");
    assert!(joined.contains(&G1) && joined.contains(&G2), "{joined:?}");
    send(&tx, G1, b"before");
    assert_eq!(wait_and_drain(&r1), vec![from(G1, b"before")]);

    multicast::leave(&r1, G1, B).unwrap();
    let left = net.memberships("b");
    assert!(!left.contains(&G1) && left.contains(&G2), "{left:?}");
    send(&tx, G1, b"after");
    send(&tx, G2, b"marker");
    assert_eq!(wait_and_drain(&r2), vec![from(G2, b"marker")]);
    assert_eq!(drain(&r1), Got::new(), "r1 left G1");

    let err = multicast::leave(&r1, G1, B).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrNotAvailable, "{err}");
}

#[test]
fn with_loopback_off_the_senders_own_host_hears_nothing() {
    let net = Net::up(3);
    let (quiet, looped, own) = net.within("a", || {
        (sender(A, 1, false), sender(A, 1, true), receiver())
    });
    let remote = net.within("b", receiver);
    multicast::join(&own, G1, A).unwrap();
    multicast::join(&remote, G1, B).unwrap();

    send(&quiet, G1, b"quiet");
    send(&looped, G1, b"looped");

    // The other host hears both; the sender's own host only the one sent with
    // loopback on, which is also what shows a looped copy would have arrived.
    assert_eq!(
        wait_and_drain(&own),
        vec![from(G1, b"looped")],
        "loopback off: no copy of `quiet` on the sending host"
    );
    let mut heard = wait_and_drain(&remote);
    if heard.len() < 2 {
        heard.extend(wait_and_drain(&remote));
    }
    assert_eq!(heard, vec![from(G1, b"quiet"), from(G1, b"looped")]);
}
