//! The node's default name in the cluster: `scnf-<last 3 bytes of the media
//! interface's MAC>-<interface id>`, the form the vendor gives as
//! `IP800-08-03-01-TEL2` (here `scnf-08-03-01-1`).
//!
//! The MAC makes the name stable across restarts and unique on a LAN without any
//! configuration. The media interface is the one that carries the address peers
//! send media to (the workers' advertised address, or the bind address). Loopback
//! and virtual interfaces without a MAC (all zeros or none) fall back to the
//! hostname: `scnf-<hostname>-1`. [`format_name`] is the pure part; the rest reads
//! the OS.

use std::net::IpAddr;

/// The interface id of a node's one media interface. (The vendor numbers the
/// interfaces of a box; a node has one media address, whatever its worker count.)
pub const INTERFACE_ID: u32 = 1;

/// The name for `mac` (when it is a real one) or else `hostname`, and interface `id`.
pub fn format_name(mac: Option<[u8; 6]>, hostname: &str, id: u32) -> String {
    match mac.filter(|m| *m != [0; 6]) {
        Some(m) => format!("scnf-{:02x}-{:02x}-{:02x}-{id}", m[3], m[4], m[5]),
        None => {
            // A hostname is printable ASCII by RFC 1123; anything else (a label from
            // a misconfigured container) is replaced so the name stays a valid one.
            let host: String = hostname
                .trim()
                .chars()
                .map(|c| if c.is_ascii_graphic() { c } else { '_' })
                .take(crate::config::scaler::MAX_NAME - 16)
                .collect();
            let host = if host.is_empty() { "node".into() } else { host };
            format!("scnf-{host}-{id}")
        }
    }
}

/// Parses `/sys/class/net/<if>/address` text: `08:00:27:08:03:01`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The default name of a node whose media peers send to `media` (then `bind`).
pub fn default_name(media: IpAddr, bind: IpAddr) -> String {
    let mac = [media, bind]
        .into_iter()
        .find_map(|ip| mac_of(ip).filter(|m| *m != [0; 6]));
    format_name(mac, &hostname(), INTERFACE_ID)
}

/// The MAC of the interface carrying `ip`, when the host tells.
fn mac_of(ip: IpAddr) -> Option<[u8; 6]> {
    if ip.is_loopback() || ip.is_unspecified() {
        return None;
    }
    let iface = scnf_udp::interface_of(ip).ok().flatten()?;
    // An interface name never holds a slash; refuse one rather than read elsewhere.
    if iface.is_empty() || iface.contains('/') {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    parse_mac(&text)
}

/// The host's name: the kernel's (right inside containers too), else /etc/hostname.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .find(|t| !t.is_empty())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_gives_its_last_three_bytes_and_the_interface_id() {
        let mac = [0x02, 0x42, 0xac, 0x08, 0x03, 0x01];
        assert_eq!(format_name(Some(mac), "ignored", 1), "scnf-08-03-01-1");
        let mac = [0, 0, 0, 0xab, 0xcd, 0xef];
        assert_eq!(format_name(Some(mac), "h", 2), "scnf-ab-cd-ef-2");
    }

    #[test]
    fn no_mac_or_an_all_zero_mac_falls_back_to_the_hostname() {
        assert_eq!(format_name(None, "vm\n", 1), "scnf-vm-1");
        assert_eq!(format_name(Some([0; 6]), "media-7", 1), "scnf-media-7-1");
        assert_eq!(format_name(None, "", 1), "scnf-node-1");
        assert_eq!(format_name(None, "bad name", 1), "scnf-bad_name-1");
    }

    #[test]
    fn every_default_name_is_a_valid_node_name() {
        let long = "h".repeat(300);
        for name in [
            format_name(None, &long, 1),
            format_name(None, "ünï", 1),
            format_name(Some([1, 2, 3, 4, 5, 6]), "", 1),
        ] {
            crate::config::scaler::check_name(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn sysfs_mac_text_parses() {
        assert_eq!(
            parse_mac("08:00:27:08:03:01\n"),
            Some([0x08, 0x00, 0x27, 0x08, 0x03, 0x01])
        );
        assert_eq!(parse_mac("00:00:00:00:00:00"), Some([0; 6]));
        for bad in [
            "",
            "08:00:27:08:03",
            "08:00:27:08:03:01:02",
            "zz:00:27:08:03:01",
            "8:0:27:8:3:1",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_loopback_media_address_names_the_node_after_its_host() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let name = default_name(lo, lo);
        assert_eq!(name, format_name(None, &hostname(), 1));
        assert!(name.starts_with("scnf-") && name.ends_with("-1"), "{name}");
    }
}
