//! The direct reading of plain IPv4 gives what etherparse's lax parser gives, on valid packets
//! and on every one-byte change of them (xorshift: deterministic, no crate).

use super::*;

/// An IPv4 TCP packet: header (no options), TCP header with `opt` option bytes, `data` payload.
fn ipv4(opt: usize, data: usize, total_extra: i32) -> Vec<u8> {
    let tcp_len = 20 + opt;
    let total = 20 + tcp_len + data;
    let declared = u16::try_from(i32::try_from(total).expect("small") + total_extra).expect("fits");
    let mut p = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ];
    p[2..4].copy_from_slice(&declared.to_be_bytes());
    let mut t = vec![0u8; tcp_len];
    t[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    t[2..4].copy_from_slice(&443u16.to_be_bytes());
    t[4..8].copy_from_slice(&7u32.to_be_bytes());
    t[8..12].copy_from_slice(&9u32.to_be_bytes());
    t[12] = u8::try_from(tcp_len / 4).expect("small") << 4;
    t[13] = 0x18;
    p.extend(t);
    p.extend(std::iter::repeat_n(0xab, data));
    p
}

/// What a reading of an IP packet gives: (src, dst, TCP segment, its length by the IP header).
type Read = Option<(IpAddr, IpAddr, Vec<u8>, usize)>;

/// The lax parser's reading, and whether the direct one was taken (it must agree).
fn both(ip: &[u8]) -> (Read, bool) {
    let lax = lax_ip(ip).map(|(s, d, p, n)| (s, d, p.to_vec(), n));
    match plain_ipv4(ip) {
        Some((s, d, p, n)) => {
            assert_eq!(Some((s, d, p.to_vec(), n)), lax, "{ip:02x?}");
            (lax, true)
        }
        None => (lax, false),
    }
}

#[test]
fn plain_ipv4_reads_as_the_lax_parser_does() {
    let mut direct = 0;
    let mut rng = crate::testing::XorShift(0x9e37_79b9_7f4a_7c15);
    let mut next = || rng.next();
    for (opt, data, extra) in [
        (0, 0, 0),
        (12, 100, 0),
        (0, 30, -10),
        (0, 30, 500),
        (8, 0, 6),
    ] {
        let p = ipv4(opt, data, extra);
        for cut in [p.len(), 54 - 14, 39, 20, 19] {
            let frame = &p[..cut.min(p.len())];
            direct += usize::from(both(frame).1);
            // Every byte of the headers changed, one at a time, to random values.
            for at in 0..frame.len().min(44) {
                for _ in 0..8 {
                    let mut m = frame.to_vec();
                    m[at] = next().to_le_bytes()[0];
                    direct += usize::from(both(&m).1);
                }
            }
        }
    }
    // The direct reading was taken, and agreed, often.
    assert!(direct > 500, "{direct}");
}

#[test]
fn the_fixed_tcp_header_is_all_decode_needs() {
    let p = ipv4(12, 100, 0);
    let u = decode(LinkType::RawIp, &p, 999, Timestamp::ZERO).expect("a TCP packet");
    assert_eq!(
        (
            u.src.port(),
            u.dst.port(),
            u.seq,
            u.ack,
            u.flags.0,
            u.segment_len
        ),
        (40_000, 443, 7, 9, 0x18, 100)
    );
    // Options cut off by the snapshot length: the same counts.
    let cut = decode(LinkType::RawIp, &p[..44], 999, Timestamp::ZERO).expect("still TCP");
    assert_eq!(cut, u);
    // A data offset under five words is no TCP header.
    let mut bad = p.clone();
    bad[32] = 4 << 4;
    assert_eq!(decode(LinkType::RawIp, &bad, 999, Timestamp::ZERO), None);
}
