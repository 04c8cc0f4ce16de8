//! A packet capture on the bridge: `tshark` in the switch's namespace, writing a
//! pcap file, started before the cluster and stopped (SIGINT, so it flushes) once
//! the scenario is over.
//!
//! The capture is on the bridge device itself: tshark puts it in promiscuous mode,
//! and a Linux bridge in promiscuous mode hands its own device every frame it
//! forwards, once, whatever port it came in by and however many ports it goes out
//! of. One frame there is one datagram on the wire of its sender: what "crosses
//! once" is counted on.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running capture; killed if dropped before [`Capture::stop`].
pub struct Capture {
    child: Option<Child>,
    path: PathBuf,
    /// tshark's stderr so far, for messages.
    said: Arc<Mutex<Vec<String>>>,
}

/// Whether `tshark` can be run at all.
pub fn tshark_present() -> Result<(), String> {
    match Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("tshark --version exited with {s}")),
        Err(e) => Err(format!("tshark: {e}")),
    }
}

impl Capture {
    /// Captures what `filter` (a capture filter) admits on `iface` in namespace
    /// `netns` into `path`; returns once tshark says it captures (within 15 s).
    pub fn start(netns: &str, iface: &str, filter: &str, path: &Path) -> Result<Capture, String> {
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", netns, "tshark", "-q", "-i", iface, "-f", filter,
            ])
            .args(["-F", "pcap", "-w"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starts tshark: {e}"))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let said = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = said.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Capturing on") {
                    let _ = tx.send(());
                }
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let mut capture = Capture {
            child: Some(child),
            path: path.to_path_buf(),
            said,
        };
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(()) => Ok(capture),
            Err(_) => {
                capture.kill();
                Err(format!(
                    "tshark did not start capturing on {iface} in {netns} within 15 s: {}",
                    capture.said()
                ))
            }
        }
    }

    fn said(&self) -> String {
        self.said
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join(" / ")
    }

    /// Stops the capture (SIGINT: tshark writes out what it holds and exits,
    /// within 10 s) and returns the file's bytes.
    pub fn stop(mut self) -> Result<Vec<u8>, String> {
        let mut child = self.child.take().expect("a capture is stopped once");
        // `ip netns exec` execs tshark: the child's pid is tshark's.
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("tshark did not stop within 10 s: {}", self.said()));
                }
            }
        }
        std::fs::read(&self.path).map_err(|e| {
            format!(
                "reads the capture {}: {e} (tshark: {})",
                self.path.display(),
                self.said()
            )
        })
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.kill();
    }
}
