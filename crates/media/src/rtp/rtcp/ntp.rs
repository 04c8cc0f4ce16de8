//! NTP timestamps for RTCP (RFC 3550 §4) and the LSR/DLSR round-trip arithmetic
//! (§6.4.1).
//!
//! A full NTP timestamp is 32.32 fixed-point seconds since 1900. RTCP echoes the
//! "compact" middle 32 bits (16.16 seconds): the receiver of an SR stores them as
//! LSR and, when it next reports, sends LSR plus DLSR, the delay since it received
//! that SR in 1/65536 s. The SR's sender then computes `rtt = A - LSR - DLSR` where
//! `A` is its own compact wallclock when the report arrives. The wallclock is an
//! input (a `Duration` since the Unix epoch), never read here.

use std::time::Duration;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// 64-bit NTP timestamp of a wallclock given as time since the Unix epoch. The
/// seconds wrap modulo 2^32 (NTP era rollover in 2036), as on the wire.
pub fn ntp_from_unix(since_epoch: Duration) -> u64 {
    let secs = (since_epoch.as_secs() + NTP_UNIX_OFFSET_SECS) as u32;
    let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (u64::from(secs) << 32) | frac
}

/// The middle 32 bits of an NTP timestamp (the LSR field format).
pub fn ntp_compact(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s units (the DLSR field format), saturating at u32::MAX
/// (about 18 hours).
pub fn compact_from_duration(d: Duration) -> u32 {
    let units = (d.as_nanos() << 16) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// A duration given in 1/65536 s units.
pub fn duration_from_compact(units: u32) -> Duration {
    Duration::from_nanos((u64::from(units) * 1_000_000_000) >> 16)
}

/// Round-trip time from a report block: `now - lsr - dlsr`, all in compact NTP.
///
/// `None` when `lsr` is 0 (the reporter has not received an SR from us yet) or
/// when the result would be negative (clock steps, or a block echoing an SR we
/// never sent).
pub fn rtt(now_compact_ntp: u32, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let since_sr = now_compact_ntp.wrapping_sub(lsr);
    // A "since" in the upper half of the range means `now` is before `lsr`.
    if since_sr >= 0x8000_0000 || dlsr > since_sr {
        return None;
    }
    Some(duration_from_compact(since_sr - dlsr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_converts_to_ntp_fixed_point() {
        let table: &[(Duration, u64)] = &[
            (Duration::ZERO, NTP_UNIX_OFFSET_SECS << 32),
            (
                Duration::from_millis(500),
                (NTP_UNIX_OFFSET_SECS << 32) | 0x8000_0000,
            ),
            (
                Duration::new(1, 250_000_000),
                ((NTP_UNIX_OFFSET_SECS + 1) << 32) | 0x4000_0000,
            ),
            // 2036-02-07T06:28:16Z: the era rolls over to 0.
            (Duration::from_secs((1 << 32) - NTP_UNIX_OFFSET_SECS), 0),
        ];
        for &(d, want) in table {
            assert_eq!(ntp_from_unix(d), want, "{d:?}");
        }
    }

    #[test]
    fn compact_ntp_is_the_middle_32_bits() {
        assert_eq!(ntp_compact(0x1122_3344_5566_7788), 0x3344_5566);
    }

    #[test]
    fn compact_durations_convert_both_ways() {
        assert_eq!(compact_from_duration(Duration::from_secs(1)), 65536);
        assert_eq!(compact_from_duration(Duration::from_millis(250)), 16384);
        assert_eq!(
            compact_from_duration(Duration::from_secs(1 << 20)),
            u32::MAX
        );
        assert_eq!(duration_from_compact(32768), Duration::from_millis(500));
    }

    #[test]
    fn round_trip_time_is_now_minus_lsr_minus_dlsr() {
        // The RFC 3550 §6.4.1 example: A = 0xb710:8000 (46864.500 s),
        // LSR = 0xb705:2000 (46853.125 s), DLSR = 0x0005:4000 (5.250 s) -> 6.125 s.
        let table: &[(&str, u32, u32, u32, Option<Duration>)] = &[
            (
                "RFC example",
                0xb710_8000,
                0xb705_2000,
                0x0005_4000,
                Some(Duration::from_millis(6125)),
            ),
            ("no SR echoed", 0xb710_8000, 0, 0, None),
            ("negative", 0xb705_0000, 0xb705_2000, 0, None),
            ("dlsr too big", 0xb710_8000, 0xb705_2000, 0x0010_0000, None),
            (
                "across the compact wrap",
                0x0000_8000,
                0xffff_8000,
                0,
                Some(Duration::from_secs(1)),
            ),
        ];
        for (name, now, lsr, dlsr, want) in table {
            assert_eq!(rtt(*now, *lsr, *dlsr), *want, "{name}");
        }
    }

    #[test]
    fn round_trip_through_our_own_bookkeeping_recovers_the_path_delay() {
        // We send an SR at t0; the peer receives it 40 ms later, holds it 1.2 s,
        // and its report reaches us 40 ms after that.
        let t0 = Duration::new(1_700_000_000, 123_000_000);
        let lsr = ntp_compact(ntp_from_unix(t0));
        let dlsr = compact_from_duration(Duration::from_millis(1200));
        let now = ntp_compact(ntp_from_unix(t0 + Duration::from_millis(1280)));
        let got = rtt(now, lsr, dlsr).unwrap();
        let want = Duration::from_millis(80);
        let err = if got > want { got - want } else { want - got };
        assert!(err < Duration::from_micros(100), "{got:?}");
    }
}
