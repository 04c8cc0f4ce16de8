//! Compound RTCP: the packet iterator and the report writer.

use super::rr::REPORT_BLOCK_LEN;
use super::sdes::{cname_packet_len, write_cname};
use super::sr::SENDER_INFO_LEN;
use super::{
    put_header, Bye, ReceiverReport, ReportBlock, RtcpError, RtcpPacket, Sdes, SenderInfo,
    SenderReport, MAX_COUNT, PT_BYE, PT_RR, PT_SDES, PT_SR, RTCP_HEADER_LEN,
};

/// Iterates the RTCP packets of a compound datagram. See the module docs of
/// [`super`] for the tolerance rules.
pub fn parse_compound(buf: &[u8]) -> RtcpPackets<'_> {
    RtcpPackets { rest: buf }
}

/// Iterator over a compound datagram. Each step consumes at least 4 bytes or ends
/// the iteration, so it always terminates; after an error it yields `None`.
#[derive(Debug, Clone)]
pub struct RtcpPackets<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RtcpPackets<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = split_packet(self.rest);
        match result {
            Ok((packet, rest)) => {
                self.rest = rest;
                Some(Ok(packet))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Parses the packet at the start of `buf`; returns it and what follows.
fn split_packet(buf: &[u8]) -> Result<(RtcpPacket<'_>, &[u8]), RtcpError> {
    if buf.len() < RTCP_HEADER_LEN {
        return Err(RtcpError::TooShort { len: buf.len() });
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let has_padding = buf[0] & 0x20 != 0;
    let count = buf[0] & 0x1f;
    let pt = buf[1];
    let total = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
    if buf.len() < total {
        return Err(RtcpError::Truncated {
            need: total,
            have: buf.len(),
        });
    }
    let (packet, rest) = buf.split_at(total);
    let mut body = &packet[RTCP_HEADER_LEN..];
    if has_padding {
        let available = body.len();
        let pad = packet[total - 1];
        if pad == 0 || usize::from(pad) > available {
            return Err(RtcpError::BadPadding {
                count: pad,
                available,
            });
        }
        body = &body[..available - usize::from(pad)];
    }
    let parsed = match pt {
        PT_SR => RtcpPacket::SenderReport(SenderReport::parse(count, body)?),
        PT_RR => RtcpPacket::ReceiverReport(ReceiverReport::parse(count, body)?),
        PT_SDES => RtcpPacket::Sdes(Sdes::new(count, body)),
        PT_BYE => RtcpPacket::Bye(Bye::parse(count, body)?),
        _ => RtcpPacket::Other { pt, count, body },
    };
    Ok((parsed, rest))
}

/// Writes one compound report: an SR (when `sender` is set: we sent RTP since the
/// last report) or an RR, carrying `blocks`, then an SDES with our CNAME.
///
/// More than 31 blocks spill into additional RR packets after the first, as
/// RFC 3550 §6.4.2 prescribes. No padding, no encryption prefix.
#[derive(Debug, Clone, Copy)]
pub struct ReportWriter<'a> {
    /// Our SSRC.
    pub ssrc: u32,
    pub sender: Option<SenderInfo>,
    pub blocks: &'a [ReportBlock],
    /// At most 255 bytes.
    pub cname: &'a str,
}

impl ReportWriter<'_> {
    /// Bytes [`ReportWriter::write`] will produce.
    pub fn encoded_len(&self) -> usize {
        let first_blocks = self.blocks.len().min(MAX_COUNT);
        let spill = self.blocks.len() - first_blocks;
        let spill_packets = spill.div_ceil(MAX_COUNT);
        let sender = if self.sender.is_some() {
            SENDER_INFO_LEN
        } else {
            0
        };
        RTCP_HEADER_LEN
            + 4
            + sender
            + first_blocks * REPORT_BLOCK_LEN
            + spill_packets * (RTCP_HEADER_LEN + 4)
            + spill * REPORT_BLOCK_LEN
            + cname_packet_len(self.cname)
    }

    /// Writes the compound report at the start of `out`; returns bytes written.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtcpError> {
        if self.cname.len() > 255 {
            return Err(RtcpError::CnameTooLong {
                len: self.cname.len(),
            });
        }
        let need = self.encoded_len();
        let Some(out) = out.get_mut(..need) else {
            return Err(RtcpError::BufferTooSmall {
                need,
                have: out.len(),
            });
        };
        let mut pos = 0;
        let mut chunks = self.blocks.chunks(MAX_COUNT);
        let first = chunks.next().unwrap_or(&[]);
        pos += self.write_report(&mut out[pos..], self.sender.as_ref(), first);
        for more in chunks {
            pos += self.write_report(&mut out[pos..], None, more);
        }
        pos += write_cname(&mut out[pos..], self.ssrc, self.cname)?;
        debug_assert_eq!(pos, need);
        Ok(pos)
    }

    /// Writes one SR (with `sender`) or RR; `out` was sized by `encoded_len()`.
    fn write_report(
        &self,
        out: &mut [u8],
        sender: Option<&SenderInfo>,
        blocks: &[ReportBlock],
    ) -> usize {
        let mut pos = RTCP_HEADER_LEN;
        out[pos..pos + 4].copy_from_slice(&self.ssrc.to_be_bytes());
        pos += 4;
        if let Some(info) = sender {
            let dst = (&mut out[pos..pos + SENDER_INFO_LEN])
                .try_into()
                .expect("slice is exactly SENDER_INFO_LEN long");
            info.write(dst);
            pos += SENDER_INFO_LEN;
        }
        for block in blocks {
            let dst = (&mut out[pos..pos + REPORT_BLOCK_LEN])
                .try_into()
                .expect("slice is exactly REPORT_BLOCK_LEN long");
            block.write(dst);
            pos += REPORT_BLOCK_LEN;
        }
        let pt = if sender.is_some() { PT_SR } else { PT_RR };
        // blocks come from chunks(MAX_COUNT), so the count fits in 5 bits.
        put_header(out, blocks.len() as u8, pt, pos);
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 3,
            cumulative_lost: -2,
            extended_highest_seq: 70000,
            jitter: 12,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 99,
        }
    }

    #[test]
    fn a_sender_report_compound_round_trips() {
        let info = SenderInfo {
            ntp_time: 0xe1e1_e1e1_0000_0001,
            rtp_time: 8000,
            packet_count: 50,
            octet_count: 8000,
        };
        let blocks = [block(7), block(8)];
        let w = ReportWriter {
            ssrc: 0xabc,
            sender: Some(info),
            blocks: &blocks,
            cname: "mixer@node1",
        };
        let mut buf = [0u8; 256];
        let n = w.write(&mut buf).unwrap();
        assert_eq!(n, w.encoded_len());
        assert_eq!(n, 4 + 4 + 20 + 48 + 24);
        let packets: Vec<_> = parse_compound(&buf[..n]).map(Result::unwrap).collect();
        assert_eq!(packets.len(), 2);
        let RtcpPacket::SenderReport(sr) = &packets[0] else {
            panic!("first is not an SR: {:?}", packets[0]);
        };
        assert_eq!(sr.ssrc, 0xabc);
        assert_eq!(sr.info, info);
        assert_eq!(sr.blocks.clone().collect::<Vec<_>>(), blocks.to_vec());
        let RtcpPacket::Sdes(sdes) = &packets[1] else {
            panic!("second is not SDES");
        };
        assert_eq!(sdes.cname(), Some((0xabc, &b"mixer@node1"[..])));
    }

    #[test]
    fn without_sender_info_a_receiver_report_is_written_even_with_no_blocks() {
        let w = ReportWriter {
            ssrc: 1,
            sender: None,
            blocks: &[],
            cname: "c",
        };
        let mut buf = [0u8; 64];
        let n = w.write(&mut buf).unwrap();
        let packets: Vec<_> = parse_compound(&buf[..n]).map(Result::unwrap).collect();
        let RtcpPacket::ReceiverReport(rr) = &packets[0] else {
            panic!("not an RR");
        };
        assert_eq!((rr.ssrc, rr.blocks.len()), (1, 0));
    }

    #[test]
    fn more_than_31_blocks_spill_into_extra_receiver_reports() {
        let blocks: Vec<_> = (0..70).map(block).collect();
        let w = ReportWriter {
            ssrc: 9,
            sender: Some(SenderInfo::default()),
            blocks: &blocks,
            cname: "x",
        };
        let mut buf = vec![0u8; w.encoded_len()];
        assert_eq!(w.write(&mut buf), Ok(w.encoded_len()));
        let mut seen = Vec::new();
        let mut kinds = Vec::new();
        for p in parse_compound(&buf) {
            match p.unwrap() {
                RtcpPacket::SenderReport(sr) => {
                    kinds.push(PT_SR);
                    seen.extend(sr.blocks);
                }
                RtcpPacket::ReceiverReport(rr) => {
                    kinds.push(PT_RR);
                    seen.extend(rr.blocks);
                }
                RtcpPacket::Sdes(_) => kinds.push(PT_SDES),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(kinds, vec![PT_SR, PT_RR, PT_RR, PT_SDES]);
        assert_eq!(seen, blocks);
    }

    #[test]
    fn the_writer_rejects_small_buffers_and_long_cnames() {
        let w = ReportWriter {
            ssrc: 1,
            sender: None,
            blocks: &[],
            cname: "abc",
        };
        assert_eq!(
            w.write(&mut [0u8; 10]),
            Err(RtcpError::BufferTooSmall { need: 24, have: 10 })
        );
        let long = "y".repeat(300);
        let w = ReportWriter { cname: &long, ..w };
        assert!(matches!(
            w.write(&mut [0u8; 400]),
            Err(RtcpError::CnameTooLong { len: 300 })
        ));
    }

    /// An RR with padding, a BYE with a reason, an APP, and an unknown type.
    fn mixed_compound() -> Vec<u8> {
        let mut v = Vec::new();
        // RR, P set, RC=0, length 2 words: ssrc + 4 bytes of padding.
        v.extend_from_slice(&[0xa0, PT_RR, 0, 2, 0, 0, 0, 5, 0, 0, 0, 4]);
        // BYE, SC=1, ssrc 5, reason "gone" (len 1 + 4 = 5, padded to 8).
        v.extend_from_slice(&[
            0x81, PT_BYE, 0, 3, 0, 0, 0, 5, 4, b'g', b'o', b'n', b'e', 0, 0, 0,
        ]);
        // APP subtype 3, ssrc, name "scnf".
        v.extend_from_slice(&[0x83, 204, 0, 2, 0, 0, 0, 5, b's', b'c', b'n', b'f']);
        // Unknown type 210, empty body.
        v.extend_from_slice(&[0x80, 210, 0, 0]);
        v
    }

    #[test]
    fn bye_app_unknown_types_and_padding_are_understood() {
        let buf = mixed_compound();
        let packets: Vec<_> = parse_compound(&buf).map(Result::unwrap).collect();
        assert_eq!(packets.len(), 4);
        let RtcpPacket::ReceiverReport(rr) = &packets[0] else {
            panic!()
        };
        assert_eq!(rr.ssrc, 5);
        assert!(rr.extension.is_empty());
        let RtcpPacket::Bye(bye) = &packets[1] else {
            panic!()
        };
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![5]);
        assert_eq!(bye.reason, Some(&b"gone"[..]));
        assert_eq!(
            packets[2],
            RtcpPacket::Other {
                pt: 204,
                count: 3,
                body: &[0, 0, 0, 5, b's', b'c', b'n', b'f']
            }
        );
        assert_eq!(
            packets[3],
            RtcpPacket::Other {
                pt: 210,
                count: 0,
                body: &[]
            }
        );
    }

    #[test]
    fn garbage_yields_one_error_then_stops() {
        let good = mixed_compound();
        let mut bad_version = good.clone();
        bad_version[12] = 0x41;
        let mut zero_pad = good.clone();
        zero_pad[11] = 0;
        let mut big_pad = good.clone();
        big_pad[11] = 9;
        let mut sr_short = vec![0x80, PT_SR, 0, 1, 0, 0, 0, 1];
        sr_short.extend_from_slice(&good);
        let table: &[(&str, &[u8], usize, RtcpError)] = &[
            (
                "3 bytes",
                &[0x80, 201, 0],
                0,
                RtcpError::TooShort { len: 3 },
            ),
            (
                "length beyond buffer",
                &[0x80, 201, 0, 9, 0, 0, 0, 0],
                0,
                RtcpError::Truncated { need: 40, have: 8 },
            ),
            (
                "bad version in 2nd",
                &bad_version,
                1,
                RtcpError::BadVersion(1),
            ),
            (
                "zero padding count",
                &zero_pad,
                0,
                RtcpError::BadPadding {
                    count: 0,
                    available: 8,
                },
            ),
            (
                "padding past body",
                &big_pad,
                0,
                RtcpError::BadPadding {
                    count: 9,
                    available: 8,
                },
            ),
            (
                "SR without sender info",
                &sr_short,
                0,
                RtcpError::BadCount {
                    pt: PT_SR,
                    count: 0,
                    need: 24,
                    have: 4,
                },
            ),
            (
                "trailing 2 bytes",
                &[0x80, 210, 0, 0, 0x80, 210],
                1,
                RtcpError::TooShort { len: 2 },
            ),
        ];
        for (name, buf, oks, err) in table {
            let results: Vec<_> = parse_compound(buf).collect();
            assert_eq!(results.len(), oks + 1, "{name}: {results:?}");
            assert!(results[..*oks].iter().all(Result::is_ok), "{name}");
            assert_eq!(results[*oks].as_ref().unwrap_err(), err, "{name}");
        }
    }
}
