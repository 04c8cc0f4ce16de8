//! What crossed the bridge, read from the capture file: IPv4 frames with their
//! time, addresses and TTL, UDP payloads whole, and IGMP membership changes.
//!
//! Read here rather than through `tshark -T fields`: the assertions need each UDP
//! payload byte for byte (to match a datagram the publisher's node sent to the
//! group with the one it received from the publisher) and every record of an
//! IGMPv3 report, and field names and aggregation differ between Wireshark
//! versions. The file is classic pcap (`tshark -F pcap`), link type Ethernet.
//! A file the reader does not understand is an error; a frame that is not IPv4
//! (ARP, IPv6 neighbour discovery) or is a later fragment is skipped.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

/// One IPv4 frame seen on the bridge.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// When the bridge saw it (the kernel's wall clock, as `SystemTime::now()`).
    pub at: SystemTime,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub what: What,
}

/// What an IPv4 frame carries.
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// Membership changes an IGMP message announces (a query announces none).
    Igmp(Vec<Membership>),
    Other,
}

/// One group's membership, as an IGMP report or leave states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    pub group: Ipv4Addr,
    /// In the group (v1/v2 report; v3 record in EXCLUDE mode, or INCLUDE with
    /// sources), or out of it (v2 leave; v3 INCLUDE mode with no source).
    pub joined: bool,
}

const LINKTYPE_ETHERNET: u32 = 1;

/// The frames of a pcap file, in file order.
pub fn read(file: &[u8]) -> Result<Vec<Frame>, String> {
    let header = file.get(..24).ok_or("a pcap file has a 24-byte header")?;
    let magic = [header[0], header[1], header[2], header[3]];
    let (big, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
        _ => return Err(format!("not a classic pcap file (magic {magic:02x?})")),
    };
    let u32_at = |b: &[u8], at: usize| {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    let link = u32_at(header, 20);
    if link != LINKTYPE_ETHERNET {
        return Err(format!("link type {link}, not Ethernet"));
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at < file.len() {
        let rec = file
            .get(at..at + 16)
            .ok_or_else(|| format!("a record header cut short at byte {at}"))?;
        let (sec, frac, len) = (u32_at(rec, 0), u32_at(rec, 4), u32_at(rec, 8) as usize);
        let data = file
            .get(at + 16..at + 16 + len)
            .ok_or_else(|| format!("a record cut short at byte {at}"))?;
        at += 16 + len;
        let frac = if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        };
        let when = SystemTime::UNIX_EPOCH + Duration::new(u64::from(sec), frac);
        if let Some(frame) = ethernet(when, data) {
            frames.push(frame);
        }
    }
    Ok(frames)
}

/// The IPv4 frame in an Ethernet frame (VLAN tags skipped), if it is one.
fn ethernet(at: SystemTime, data: &[u8]) -> Option<Frame> {
    let mut kind = u16::from_be_bytes([*data.get(12)?, *data.get(13)?]);
    let mut off = 14;
    while kind == 0x8100 {
        kind = u16::from_be_bytes([*data.get(off + 2)?, *data.get(off + 3)?]);
        off += 4;
    }
    if kind != 0x0800 {
        return None;
    }
    ipv4(at, data.get(off..)?)
}

fn ipv4(at: SystemTime, ip: &[u8]) -> Option<Frame> {
    let first = *ip.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let ip = ip.get(..total)?;
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let body = ip.get(ihl..)?;
    let what = match ip[9] {
        _ if fragment != 0 => What::Other,
        17 => udp(body).unwrap_or(What::Other),
        2 => What::Igmp(igmp(body)),
        _ => What::Other,
    };
    Some(Frame {
        at,
        src,
        dst,
        ttl: ip[8],
        what,
    })
}

fn udp(b: &[u8]) -> Option<What> {
    let len = usize::from(u16::from_be_bytes([*b.get(4)?, *b.get(5)?]));
    Some(What::Udp {
        sport: u16::from_be_bytes([b[0], b[1]]),
        dport: u16::from_be_bytes([b[2], b[3]]),
        payload: b.get(8..len)?.to_vec(),
    })
}

/// The membership changes of an IGMP message (RFC 1112, RFC 2236, RFC 3376 §4.2).
fn igmp(b: &[u8]) -> Vec<Membership> {
    let group_at = |at: usize| {
        b.get(at..at + 4)
            .map(|g| Ipv4Addr::new(g[0], g[1], g[2], g[3]))
    };
    match b.first() {
        // v1 and v2 membership reports, v2 leave.
        Some(0x12 | 0x16) => group_at(4)
            .map(|group| Membership {
                group,
                joined: true,
            })
            .into_iter()
            .collect(),
        Some(0x17) => group_at(4)
            .map(|group| Membership {
                group,
                joined: false,
            })
            .into_iter()
            .collect(),
        Some(0x22) => v3_records(b),
        _ => Vec::new(),
    }
}

/// The group records of an IGMPv3 report: MODE_IS_INCLUDE (1) and
/// CHANGE_TO_INCLUDE_MODE (3) with no source mean "not a member"; EXCLUDE modes
/// (2, 4) mean a member of any source; source lists (1, 3, 5 with sources) mean a
/// member of those; BLOCK_OLD_SOURCES (6) changes no membership of the group.
fn v3_records(b: &[u8]) -> Vec<Membership> {
    let mut out = Vec::new();
    let Some(n) = b.get(6..8).map(|n| u16::from_be_bytes([n[0], n[1]])) else {
        return out;
    };
    let mut at = 8;
    for _ in 0..n {
        let Some(r) = b.get(at..at + 8) else { break };
        let (kind, aux, sources) = (r[0], usize::from(r[1]), u16::from_be_bytes([r[2], r[3]]));
        let group = Ipv4Addr::new(r[4], r[5], r[6], r[7]);
        let joined = match kind {
            2 | 4 => Some(true),
            1 | 3 => Some(sources > 0),
            5 if sources > 0 => Some(true),
            _ => None,
        };
        if let Some(joined) = joined {
            out.push(Membership { group, joined });
        }
        at += 8 + 4 * usize::from(sources) + 4 * aux;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian microsecond pcap of Ethernet frames, each an IPv4 packet of
    /// protocol `proto` from 10.0.0.`src` to `dst` with `body`, at `sec` s.
    fn pcap(frames: &[(u32, u8, Ipv4Addr, u8, Vec<u8>)]) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        for (sec, src, dst, proto, body) in frames {
            let mut eth = vec![0; 12];
            eth.extend_from_slice(&[0x08, 0x00]);
            let total = (20 + body.len()) as u16;
            eth.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0]);
            eth.extend_from_slice(&[1, *proto, 0, 0, 10, 0, 0, *src]);
            eth.extend_from_slice(&dst.octets());
            eth.extend_from_slice(body);
            eth.extend_from_slice(&[0xee; 4]); // Ethernet padding past the IP packet
            f.extend_from_slice(&sec.to_le_bytes());
            f.extend_from_slice(&250_000u32.to_le_bytes());
            f.extend_from_slice(&(eth.len() as u32).to_le_bytes());
            f.extend_from_slice(&(eth.len() as u32).to_le_bytes());
            f.extend_from_slice(&eth);
        }
        f
    }

    const G1: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 0);
    const G2: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 1);
    const REPORTS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);

    fn v3_report(records: &[(u8, Ipv4Addr, u16)]) -> Vec<u8> {
        let mut b = vec![0x22, 0, 0, 0, 0, 0, 0, records.len() as u8];
        for (kind, group, sources) in records {
            b.extend_from_slice(&[*kind, 0, 0, *sources as u8]);
            b.extend_from_slice(&group.octets());
            for _ in 0..*sources {
                b.extend_from_slice(&[10, 0, 0, 9]);
            }
        }
        b
    }

    #[test]
    fn a_udp_datagram_comes_out_with_its_time_addresses_ttl_and_payload_without_padding() {
        let udp = [0x13, 0x88, 0x13, 0x8c, 0, 11, 0, 0, 0xaa, 0xbb, 0xcc];
        let frames = read(&pcap(&[(7, 10, G1, 17, udp.to_vec())])).unwrap();
        assert_eq!(
            frames,
            vec![Frame {
                at: SystemTime::UNIX_EPOCH + Duration::from_micros(7_250_000),
                src: Ipv4Addr::new(10, 0, 0, 10),
                dst: G1,
                ttl: 1,
                what: What::Udp {
                    sport: 5000,
                    dport: 5004,
                    payload: vec![0xaa, 0xbb, 0xcc],
                },
            }]
        );
    }

    #[test]
    fn igmp_joins_and_leaves_of_every_version_are_read_record_by_record() {
        let table: [(&str, Vec<u8>, Vec<Membership>); 6] = [
            (
                "v2 report",
                vec![0x16, 0, 0, 0, 239, 192, 0, 0],
                vec![join(G1)],
            ),
            (
                "v2 leave",
                vec![0x17, 0, 0, 0, 239, 192, 0, 0],
                vec![leave(G1)],
            ),
            (
                "v3: to exclude {} (join), to include {} (leave)",
                v3_report(&[(4, G1, 0), (3, G2, 0)]),
                vec![join(G1), leave(G2)],
            ),
            (
                "v3: is exclude, is include {} ",
                v3_report(&[(2, G1, 0), (1, G2, 0)]),
                vec![join(G1), leave(G2)],
            ),
            (
                "v3: a source list is a membership, blocking sources says nothing",
                v3_report(&[(3, G1, 2), (6, G2, 1)]),
                vec![join(G1)],
            ),
            ("a query", vec![0x11, 0, 0, 0, 0, 0, 0, 0], vec![]),
        ];
        for (what, body, want) in table {
            let frames = read(&pcap(&[(1, 11, REPORTS, 2, body)])).unwrap();
            assert_eq!(frames[0].what, What::Igmp(want), "{what}");
        }
    }

    fn join(group: Ipv4Addr) -> Membership {
        Membership {
            group,
            joined: true,
        }
    }

    fn leave(group: Ipv4Addr) -> Membership {
        Membership {
            group,
            joined: false,
        }
    }

    #[test]
    fn a_damaged_file_is_an_error_and_a_truncated_igmp_report_yields_what_it_holds() {
        assert!(read(b"not a pcap").is_err());
        let mut file = pcap(&[(1, 10, G1, 17, vec![0; 12])]);
        file.truncate(file.len() - 5);
        assert!(read(&file).unwrap_err().contains("cut short"));
        let mut report = v3_report(&[(4, G1, 0), (4, G2, 0)]);
        report.truncate(report.len() - 2);
        let frames = read(&pcap(&[(1, 11, REPORTS, 2, report)])).unwrap();
        assert_eq!(frames[0].what, What::Igmp(vec![join(G1)]));
    }
}
