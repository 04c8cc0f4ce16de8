//! A network of namespaces for cutting one process off: the scaler and every node
//! in a namespace of its own, each joined by a veth pair to one Linux bridge (in a
//! namespace of its own too, the "switch"), addresses 10.R.T.x/24 (T: the test's
//! number, R the run's, `cluster::run`). The test's process, with its phones and
//! controller, is on 10.R.T.1,
//! through one more veth pair to the bridge. Cutting a node is `ip link set <its
//! port> down` on the bridge: the process lives on but nothing reaches it or
//! leaves it, as when a cable or a switch port fails.
//!
//! Needs root and `ip` (iproute2). [`Network::up`] fails with the command that did
//! not work; it never skips. The names carry the run and the test (`scnfR-T...`);
//! what an earlier run of the same names left behind (it crashed) is removed
//! before the network is built.

use crate::cluster::{run, Place, Places};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// The namespaces, veth pairs and bridge of one test; removed when dropped (after
/// the processes in them are gone: drop the cluster first).
pub struct Network {
    test: u8,
    nodes: usize,
}

/// Runs `ip <args>`; the error names the command and its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Network {
    /// Builds the network of a scaler and `nodes` nodes.
    pub fn up(test: u8, nodes: usize) -> Result<Network, String> {
        let net = Network { test, nodes };
        net.remove();
        // The bridge lives in a namespace of its own: the machine's firewall (with
        // br_netfilter, Docker's FORWARD policy DROP applies to bridged frames) is
        // not in the way, and is left as it is.
        let sw = net.switch();
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "name", "sw0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "sw0", "up"])?;
        // The test's own end: phones and controller on 10.R.T.1.
        let host = net.host_veth();
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "vh", "netns", &sw,
        ])?;
        ip(&["-n", &sw, "link", "set", "vh", "master", "sw0", "up"])?;
        ip(&["addr", "add", &format!("{}/24", net.addr(1)), "dev", &host])?;
        ip(&["link", "set", &host, "up"])?;
        for (i, host) in net.hosts() {
            let ns = net.netns(i);
            let port = Network::port(i);
            ip(&["netns", "add", &ns])?;
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "sw0", "up"])?;
            let addr = format!("{}/24", net.addr(host));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Process `i` (0: the scaler, 1 + k: node k) and its host number.
    fn hosts(&self) -> impl Iterator<Item = (usize, u8)> {
        (0..=self.nodes).map(|i| (i, if i == 0 { 2 } else { 9 + i as u8 }))
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, run(), self.test, host)
    }

    /// The namespace of the bridge (`sw0`), where a capture sees every frame.
    pub fn switch(&self) -> String {
        format!("scnf{}-{}sw", run(), self.test)
    }

    /// The test's end of its link to the bridge.
    fn host_veth(&self) -> String {
        format!("sn{}-{}h", run(), self.test)
    }

    fn netns(&self, i: usize) -> String {
        format!("scnf{}-{}ns{i}", run(), self.test)
    }

    /// The bridge's port for process `i` (in the switch's namespace).
    fn port(i: usize) -> String {
        format!("p{i}")
    }

    /// Where the cluster's processes run, and the phones' address.
    pub fn places(&self) -> Places {
        let mut places = self.hosts().map(|(i, host)| Place {
            ip: IpAddr::V4(self.addr(host)),
            netns: Some(self.netns(i)),
        });
        let scaler = places.next().expect("the scaler's place");
        Places {
            scaler,
            nodes: places.collect(),
            phones: IpAddr::V4(self.addr(1)),
        }
    }

    /// Cuts node `k` off the network (both ways): its port on the bridge goes down.
    pub fn cut(&self, k: usize) -> Result<(), String> {
        self.set_port(k, "down")
    }

    /// Puts node `k` back on the network.
    pub fn restore(&self, k: usize) -> Result<(), String> {
        self.set_port(k, "up")
    }

    /// Node `k`'s port on the bridge goes `state` (`up`, `down`).
    fn set_port(&self, k: usize, state: &str) -> Result<(), String> {
        let port = Network::port(1 + k);
        ip(&["-n", &self.switch(), "link", "set", &port, state])
    }

    /// Everything of this test's network, whatever exists of it (the veth pairs go
    /// with their namespaces).
    fn remove(&self) {
        for (i, _) in self.hosts() {
            let _ = ip(&["netns", "del", &self.netns(i)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
        let _ = ip(&["link", "del", &self.host_veth()]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}
