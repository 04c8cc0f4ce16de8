//! A cluster of real `scnf` processes: one `scnf scaler` and `n` `scnf node
//! --config ...` processes that register to it, each with its own config file in a
//! temp dir, its own address ([`Places`]: 127.R.T.x on loopback, T the test's
//! number and R the run's ([`run`]), or 10.R.T.x in network namespaces, `netns.rs`)
//! and its own RTP port
//! range, so that nothing of one process or test can be mistaken for another's.
//! Each node's media binds, and is advertised, on its own address; its own control
//! listener is on 127.0.0.1:0 (its namespace's loopback). Killing is SIGKILL
//! (`Child::kill`): the process gets no chance to say goodbye, as when a machine
//! dies.
//!
//! Each process's stderr goes to `<dir>/<name>.log`; the directory is kept (and
//! named on stderr) when a test fails or `SURVIVAL_KEEP` is set, removed otherwise.
//! `SURVIVAL_LOG` sets the processes' log filter (default `info`).

use crate::common::Process;
use scnf_testkit::client::Client;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// The control port of the scaler, and the port nodes dial.
const CONTROL_PORT: u16 = 7870;
const NODES_PORT: u16 = 7871;

/// This test process's share of the address space, 200-249 (from its pid): two
/// runs of the tests at once on one machine (a bench script beside a `cargo test`)
/// most likely use different addresses, ports and namespaces, where fixed ones
/// would break each other's clusters.
pub fn run() -> u8 {
    200 + (std::process::id() % 50) as u8
}

/// Where one process runs: its address, and the network namespace it is started
/// in (`ip netns exec`), if any.
#[derive(Clone, Debug)]
pub struct Place {
    pub ip: IpAddr,
    pub netns: Option<String>,
}

/// Where a cluster's processes and its phones are.
#[derive(Clone, Debug)]
pub struct Places {
    pub scaler: Place,
    pub nodes: Vec<Place>,
    /// Where the phones (and the controller) of the test are.
    pub phones: IpAddr,
}

impl Places {
    /// On loopback: the scaler on 127.R.`test`.1, node k on 127.R.`test`.(10 + k),
    /// the phones on 127.R.`test`.200 (R: [`run`]).
    pub fn loopback(test: u8, nodes: usize) -> Places {
        let at = |host: u8| Place {
            ip: IpAddr::V4(Ipv4Addr::new(127, run(), test, host)),
            netns: None,
        };
        Places {
            scaler: at(1),
            nodes: (0..nodes).map(|k| at(10 + k as u8)).collect(),
            phones: IpAddr::V4(Ipv4Addr::new(127, run(), test, 200)),
        }
    }
}

/// How a test's cluster is laid out.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The test's number: it names the temp dir, the nodes and the port ranges.
    pub test: u8,
    pub places: Places,
    /// The scaler's `node_grace_ms`.
    pub node_grace_ms: u64,
    /// Whether the configs spell out `[video]`: multicast on the scaler, and on
    /// each node its own address as the multicast interface, TTL 1, no loopback
    /// (the defaults, written so that a test states what it relies on).
    pub video: bool,
}

impl Layout {
    /// A cluster of `nodes` on loopback with the default grace.
    pub fn loopback(test: u8, nodes: usize) -> Layout {
        Layout {
            test,
            places: Places::loopback(test, nodes),
            node_grace_ms: 10_000,
            video: false,
        }
    }

    pub fn nodes(&self) -> usize {
        self.places.nodes.len()
    }
}

/// One running `scnf` process, SIGKILLed and reaped when dropped.
pub struct Proc {
    /// What it is (`scaler`, a node's name), and the name of its log.
    pub name: String,
    pub log: String,
    child: Process,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// A cluster of processes; dropping it kills whatever still runs.
pub struct Cluster {
    pub layout: Layout,
    pub dir: PathBuf,
    pub secret: String,
    pub scaler: Option<Proc>,
    /// By index; `None` once killed.
    pub nodes: Vec<Option<Proc>>,
    /// Processes started so far (each log is named after its process's start).
    started: usize,
}

impl Cluster {
    /// Writes the config files and starts the scaler and the nodes; returns once a
    /// controller sees every node in the scaler's `Health` (within 15 s).
    pub async fn start(layout: Layout) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "scnf-survival-{}-{}",
            layout.test,
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creates the temp dir");
        let secret = format!("survival-{}-{}", layout.test, std::process::id());
        std::fs::write(dir.join("cluster.secret"), format!("{secret}\n")).expect("secret");
        let mut cl = Cluster {
            nodes: Vec::new(),
            started: 0,
            scaler: None,
            secret,
            dir,
            layout,
        };
        cl.write_scaler_config();
        cl.start_scaler();
        for k in 0..cl.layout.nodes() {
            cl.write_node_config(k);
            cl.nodes.push(None);
            cl.start_node(k);
        }
        let mut c = cl.controller(Duration::from_secs(10)).await;
        let all: Vec<String> = (0..cl.layout.nodes()).map(|k| cl.node_name(k)).collect();
        cl.wait_registered(&mut c, &all, Duration::from_secs(15))
            .await
            .unwrap_or_else(|e| panic!("the cluster forms: {e} (logs in {:?})", cl.dir));
        cl
    }

    /// Where the phones of this test bind.
    pub fn phone_ip(&self) -> IpAddr {
        self.layout.places.phones
    }

    /// The scaler's control face.
    pub fn control(&self) -> SocketAddr {
        SocketAddr::new(self.layout.places.scaler.ip, CONTROL_PORT)
    }

    pub fn node_name(&self, k: usize) -> String {
        format!("survivor-{}-{k}", self.layout.test)
    }

    /// The index of the node named `name`.
    pub fn node_index(&self, name: &str) -> usize {
        (0..self.layout.nodes())
            .find(|&k| self.node_name(k) == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn write_scaler_config(&self) {
        let mut text = format!(
            "listen = \"{ip}:{CONTROL_PORT}\"\n\
             nodes_listen = \"{ip}:{NODES_PORT}\"\n\
             password_file = \"{secret}\"\n\
             node_grace_ms = {grace}\n",
            ip = self.layout.places.scaler.ip,
            secret = self.dir.join("cluster.secret").display(),
            grace = self.layout.node_grace_ms,
        );
        if self.layout.video {
            text.push_str("\n[video]\ntransport = \"multicast\"\n");
        }
        std::fs::write(self.dir.join("scaler.toml"), text).expect("scaler config");
    }

    fn write_node_config(&self, k: usize) {
        let ip = self.layout.places.nodes[k].ip;
        // Disjoint port ranges too, though the addresses differ already.
        let first = 20_000 + 1000 * u16::from(self.layout.test % 40) + 100 * k as u16;
        let mut text = format!(
            "[rtp]\nbind = \"{ip}\"\nport_min = {first}\nport_max = {last}\nworkers = 1\n\
             \n[mixer]\nmax_talkers = 9\n\
             \n[control]\nlisten = \"127.0.0.1:0\"\n\
             \n[scaler]\nurl = \"ws://{scaler}:{NODES_PORT}\"\npassword_file = \"{secret}\"\nname = \"{name}\"\n",
            last = first + 99,
            scaler = self.layout.places.scaler.ip,
            secret = self.dir.join("cluster.secret").display(),
            name = self.node_name(k),
        );
        if self.layout.video {
            text.push_str(&format!(
                "\n[video]\nmulticast_interface = \"{ip}\"\nmulticast_ttl = 1\nmulticast_loop = false\n"
            ));
        }
        std::fs::write(self.dir.join(format!("node-{k}.toml")), text).expect("node config");
    }

    /// Starts (or restarts) the scaler on its fixed addresses.
    pub fn start_scaler(&mut self) {
        let config = self.dir.join("scaler.toml");
        let place = self.layout.places.scaler.clone();
        let p = self.spawn("scaler", "scaler", &config, &place);
        self.scaler = Some(p);
    }

    /// Starts node `k` (again: a SIGKILLed one) with its config.
    pub fn start_node(&mut self, k: usize) {
        let config = self.dir.join(format!("node-{k}.toml"));
        let place = self.layout.places.nodes[k].clone();
        let p = self.spawn(&self.node_name(k), "node", &config, &place);
        self.nodes[k] = Some(p);
    }

    /// The process of node `k`, unless it was killed.
    pub fn node(&self, k: usize) -> Option<&Proc> {
        self.nodes[k].as_ref()
    }

    /// Runs `scnf <what> --config <config>` at `place`, its stderr written to
    /// `<name>.log` (`<name>.<n>.log` for the n-th restart of a process). In a
    /// namespace, `ip netns exec` execs the binary itself: the child is the `scnf`
    /// process, and SIGKILL reaches it.
    fn spawn(&mut self, name: &str, what: &str, config: &Path, place: &Place) -> Proc {
        let bin = env!("CARGO_BIN_EXE_scnf");
        let mut cmd = match &place.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, bin]);
                cmd
            }
            None => Command::new(bin),
        };
        // The test's environment must not reconfigure the processes.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SCNF_") {
                cmd.env_remove(k);
            }
        }
        let log = std::env::var("SURVIVAL_LOG").unwrap_or_else(|_| "info".into());
        let mut child = cmd
            .args(["--log", &log, what, "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starts {name}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        self.started += 1;
        let log = if self.started <= 1 + self.layout.nodes() {
            name.to_string()
        } else {
            format!("{name}.{}", self.started)
        };
        let path = self.dir.join(format!("{log}.log"));
        std::thread::spawn(move || {
            let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            else {
                return;
            };
            // Ends when the process's stderr closes (it exited or was killed).
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{}", crate::common::plain(&line));
            }
        });
        Proc {
            name: name.into(),
            log,
            child: Process(child),
        }
    }

    /// A logged-in controller of the scaler, retrying the connection until the
    /// scaler listens (at most `within`). A login that fails is retried too (and
    /// said on stderr): a scaler just started may close a first connection.
    pub async fn controller(&self, within: Duration) -> Client {
        let deadline = Instant::now() + within;
        loop {
            let error = match Client::connect(self.control()).await {
                Ok(mut c) => match c.login("survival", self.secret.as_bytes()).await {
                    Ok(()) => {
                        c.set_timeout(Duration::from_secs(10));
                        return c;
                    }
                    Err(e) => {
                        eprintln!("login to the scaler failed, retrying: {e}");
                        format!("login: {e}")
                    }
                },
                Err(e) => format!("connect: {e}"),
            };
            assert!(
                Instant::now() < deadline,
                "no controller session with the scaler within {within:?}: {error} (logs in {:?})",
                self.dir
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A controller that logs in again with the resume token of an earlier
    /// session, and whether it got that session's calls back.
    pub async fn controller_resuming(&self, token: &str, within: Duration) -> (Client, bool) {
        let deadline = Instant::now() + within;
        loop {
            match Client::connect(self.control()).await {
                Ok(mut c) => {
                    // A restarted scaler answers once the nodes bring the token back.
                    c.set_timeout(Duration::from_secs(12));
                    let r = c
                        .resume("survival", self.secret.as_bytes(), token)
                        .await
                        .expect("logs in to the scaler");
                    c.set_timeout(Duration::from_secs(10));
                    return (c, r.resumed);
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!("the scaler never listened: {e} (logs in {:?})", self.dir)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Polls `Health` until every node of `names` is registered; how long it took.
    pub async fn wait_registered(
        &self,
        c: &mut Client,
        names: &[String],
        within: Duration,
    ) -> Result<Duration, String> {
        let t0 = Instant::now();
        let mut last = Vec::new();
        while t0.elapsed() < within {
            let h = c.health().await.map_err(|e| e.to_string())?;
            last = h.nodes.iter().map(|n| n.name.clone()).collect();
            if names.iter().all(|n| last.contains(n)) {
                return Ok(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!(
            "only {last:?} of {names:?} registered within {within:?}"
        ))
    }

    /// Waits (polling, at most `within`) until the log `log` (a [`Proc::log`]) has
    /// a line with every one of `needles`; the line.
    pub async fn wait_log(&self, log: &str, needles: &[&str], within: Duration) -> String {
        let path = self.dir.join(format!("{log}.log"));
        let deadline = Instant::now() + within;
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needles:?} in {} within {within:?}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where node `k`'s own control listener is (from its log).
    pub async fn node_control(&self, k: usize) -> SocketAddr {
        let log = &self.node(k).expect("node k runs").log;
        let line = self
            .wait_log(log, &["call control listening"], Duration::from_secs(5))
            .await;
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("local="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    /// SIGKILLs node `k`.
    pub fn kill_node(&mut self, k: usize) {
        drop(self.nodes[k].take());
    }

    /// SIGKILLs the scaler.
    pub fn kill_scaler(&mut self) {
        drop(self.scaler.take());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let names: Vec<String> = self
            .nodes
            .iter()
            .flatten()
            .chain(&self.scaler)
            .map(|p| p.name.clone())
            .collect();
        self.nodes.clear();
        self.scaler = None;
        if std::thread::panicking() || std::env::var_os("SURVIVAL_KEEP").is_some() {
            eprintln!(
                "survival test: the logs of {names:?} and the killed ones are in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
