//! Which leg a datagram belongs to: by its source address, and for link legs (see
//! [`super::LinkTags`]) by address and the SSRC they accept.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;

/// Which leg (slab index) owns a remote address, for RTP and for RTCP; link legs
/// (see [`super::LinkTags`]) by address and the SSRC they accept.
#[derive(Debug)]
pub(super) struct Addresses {
    pub(super) rtp: HashMap<SocketAddr, usize, AddrHash>,
    pub(super) rtcp: HashMap<SocketAddr, usize, AddrHash>,
    pub(super) links: HashMap<(SocketAddr, u32), usize, AddrHash>,
}

/// The hash of the address maps, keyed from the engine's seed: every datagram
/// is looked up here, and SipHash (std's default) was a tenth of the engine's
/// instructions per packet. A folded 64x64-bit multiply per word with secret keys
/// spreads addresses as well for a table (the scheme of foldhash and aHash's
/// fallback), and its keys come from the seed the engine is given, not from the
/// OS. Only the control side inserts keys (legs), so a sender cannot grow a
/// colliding chain; the keys keep the layout unpredictable all the same.
#[derive(Clone, Copy, Debug)]
pub(super) struct AddrHash {
    k0: u64,
    k1: u64,
}

impl AddrHash {
    pub(super) fn new(seed: u64) -> AddrHash {
        // splitmix64 twice: two well-mixed keys from any seed; `k1` odd.
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        AddrHash {
            k0: next(),
            k1: next() | 1,
        }
    }
}

impl BuildHasher for AddrHash {
    type Hasher = AddrHasher;
    fn build_hasher(&self) -> AddrHasher {
        AddrHasher {
            h: self.k0,
            k: self.k1,
        }
    }
}

pub(super) struct AddrHasher {
    h: u64,
    k: u64,
}

/// The high and low halves of a 128-bit product, folded.
fn folded_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl AddrHasher {
    fn mix(&mut self, word: u64) {
        self.h = folded_mul(self.h ^ word, self.k);
    }
}

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(w) ^ ((chunk.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.mix(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.mix(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.mix(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }
    fn finish(&self) -> u64 {
        folded_mul(self.h, self.k ^ 0x2d35_8dcc_aa6c_78a5)
    }
}

impl Addresses {
    pub(super) fn new(seed: u64) -> Addresses {
        let h = AddrHash::new(seed);
        Addresses {
            rtp: HashMap::with_hasher(h),
            rtcp: HashMap::with_hasher(h),
            links: HashMap::with_hasher(h),
        }
    }

    pub(super) fn map(&mut self, idx: usize, rtp: SocketAddr, rtcp: SocketAddr) {
        self.rtp.insert(rtp, idx);
        if rtcp != rtp {
            self.rtcp.insert(rtcp, idx);
        }
    }

    /// The link leg a datagram from `from` belongs to, by the SSRC it carries
    /// (RTP: bytes 8-11; RTCP: the sender's, bytes 4-7).
    pub(super) fn link(&self, from: SocketAddr, data: &[u8], rtcp: bool) -> Option<usize> {
        if self.links.is_empty() {
            return None;
        }
        let at = if rtcp { 4 } else { 8 };
        let ssrc = data.get(at..at + 4)?;
        let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
        self.links.get(&(from, ssrc)).copied()
    }

    /// Forgets the leg's addresses (only where they still point at this leg).
    pub(super) fn unmap(&mut self, idx: usize, rtp: SocketAddr, rtcp: SocketAddr) {
        if self.rtp.get(&rtp) == Some(&idx) {
            self.rtp.remove(&rtp);
        }
        if self.rtcp.get(&rtcp) == Some(&idx) {
            self.rtcp.remove(&rtcp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(h: &AddrHash, a: &SocketAddr) -> u64 {
        h.hash_one(a)
    }

    #[test]
    fn addresses_spread_over_the_low_bits_and_depend_on_the_seed() {
        let h = AddrHash::new(1);
        // A swarm's addresses: one IP, consecutive even ports; and many IPs, one port.
        let ports: Vec<SocketAddr> = (0..4096u16)
            .map(|i| SocketAddr::from(([10, 0, 0, 1], 20_000 + 2 * i)))
            .collect();
        let hosts: Vec<SocketAddr> = (0..4096u32)
            .map(|i| SocketAddr::from(((0x0a00_0000 + i).to_be_bytes(), 5004)))
            .collect();
        for set in [&ports, &hosts] {
            // hashbrown takes the bucket from the low bits: 4,096 keys in 4,096
            // buckets should fill about 1 - 1/e of them.
            let mut used = vec![false; 4096];
            for a in set.iter() {
                used[(hash(&h, a) & 4095) as usize] = true;
            }
            let filled = used.iter().filter(|&&u| u).count();
            assert!((2400..=2800).contains(&filled), "{filled} of 4096 buckets");
        }
        let a = ports[0];
        assert_ne!(
            hash(&h, &a),
            hash(&AddrHash::new(2), &a),
            "the seed keys it"
        );
        assert_eq!(
            hash(&h, &a),
            hash(&AddrHash::new(1), &a),
            "and only the seed"
        );
    }
}
