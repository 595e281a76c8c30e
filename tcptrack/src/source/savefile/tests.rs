//! Hand-made files of each kind, read whole and a byte at a time.

use super::*;

/// A packet as read: (ts in ns, data, orig_len, link).
type Rec = (u128, Vec<u8>, u32, u16);

/// Records of `bytes` as a stream would read them: the parser handed a buffer that grows by
/// `chunk` bytes whenever it asks for more. Returns (ts in ns, data, orig_len, link) per packet,
/// and whether the input ended cut short, or the damage.
fn read_in_chunks(bytes: &[u8], chunk: usize) -> (Vec<Rec>, Result<bool, Damage>) {
    let mut out = Vec::new();
    let mut have = chunk.min(bytes.len());
    let (mut parser, mut at) = loop {
        match Parser::start(&bytes[..have]) {
            Ok(Ok(started)) => break started,
            Ok(Err(_)) if have < bytes.len() => have = (have + chunk).min(bytes.len()),
            Ok(Err(_)) => return (out, Ok(true)),
            Err(e) => return (out, Err(e)),
        }
    };
    loop {
        match parser.step(&bytes[at..have]) {
            Ok(Step::Packet { record, used }) => {
                out.push((
                    record.ts.as_nanos(),
                    record.data.to_vec(),
                    record.orig_len,
                    record.link,
                ));
                at += used;
            }
            Ok(Step::Skip { used }) => at += used,
            Ok(Step::More(_)) if have < bytes.len() => have = (have + chunk).min(bytes.len()),
            Ok(Step::More(_)) => return (out, Ok(at < bytes.len())),
            Err(e) => return (out, Err(e)),
        }
    }
}

fn pcap(nanos: bool, big_endian: bool, link: u16, records: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut b = Vec::new();
    b.extend(w32(if nanos { PCAP_NANO } else { PCAP_MICRO }));
    b.extend(w16(2));
    b.extend(w16(4));
    b.extend(w32(0));
    b.extend(w32(0));
    b.extend(w32(65535));
    b.extend(w32(u32::from(link)));
    for &(secs, frac, data, orig) in records {
        b.extend(w32(secs));
        b.extend(w32(frac));
        b.extend(w32(u32::try_from(data.len()).expect("small")));
        b.extend(w32(orig));
        b.extend(data);
    }
    b
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(12 + pad4(body.len())).expect("small");
    let mut b = Vec::new();
    b.extend(kind.to_le_bytes());
    b.extend(len.to_le_bytes());
    b.extend(body);
    b.resize(8 + pad4(body.len()), 0);
    b.extend(len.to_le_bytes());
    b
}

fn shb() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(PCAPNG_BYTE_ORDER.to_le_bytes());
    body.extend(1u16.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend((-1i64).to_le_bytes());
    block(PCAPNG_SHB, &body)
}

fn idb(link: u16, tsresol: Option<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(link.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend(0u32.to_le_bytes());
    if let Some(r) = tsresol {
        body.extend(9u16.to_le_bytes());
        body.extend(1u16.to_le_bytes());
        body.extend([r, 0, 0, 0]);
        body.extend([0u8; 4]);
    }
    block(IDB, &body)
}

fn epb(iface: u32, ts: u64, data: &[u8], orig: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(iface.to_le_bytes());
    body.extend(u32::try_from(ts >> 32).expect("high").to_le_bytes());
    body.extend(u32::try_from(ts & 0xffff_ffff).expect("low").to_le_bytes());
    body.extend(u32::try_from(data.len()).expect("small").to_le_bytes());
    body.extend(orig.to_le_bytes());
    body.extend(data);
    block(EPB, &body)
}

#[test]
fn pcap_in_micro_and_nanoseconds_and_both_byte_orders() {
    let recs: &[(u32, u32, &[u8], u32)] = &[(10, 500, b"abc", 60), (11, 999_999, b"", 0)];
    for (nanos, be) in [(false, false), (true, false), (false, true), (true, true)] {
        let file = pcap(nanos, be, 1, recs);
        let (got, end) = read_in_chunks(&file, file.len());
        assert_eq!(end, Ok(false));
        let unit = if nanos { 1 } else { 1000 };
        assert_eq!(
            got,
            [
                (10_000_000_000 + 500 * unit, b"abc".to_vec(), 60, 1),
                (11_000_000_000 + 999_999 * unit, Vec::new(), 0, 1)
            ],
            "nanos {nanos}, big endian {be}"
        );
        // A byte at a time, the same.
        assert_eq!(read_in_chunks(&file, 1), (got, Ok(false)));
    }
}

#[test]
fn a_pcap_cut_short_keeps_what_came_before() {
    let file = pcap(false, false, 1, &[(1, 0, b"abcd", 4), (2, 0, b"efgh", 4)]);
    for cut in [file.len() - 1, file.len() - 5, file.len() - 19] {
        let (got, end) = read_in_chunks(&file[..cut], 7);
        assert_eq!(got.len(), 1, "cut at {cut}");
        assert_eq!(end, Ok(true), "cut at {cut}");
    }
    // Cut in the file header: no packet, cut short.
    assert_eq!(read_in_chunks(&file[..10], 3), (Vec::new(), Ok(true)));
}

#[test]
fn damage_is_named() {
    let mut file = pcap(false, false, 1, &[(1, 0, b"abcd", 4)]);
    // The record's captured length, beyond any snapshot.
    file[24 + 8..24 + 12].copy_from_slice(&1_000_000u32.to_le_bytes());
    assert_eq!(
        read_in_chunks(&file, file.len()).1,
        Err(Damage::RecordTooLong {
            caplen: 1_000_000,
            max: MAX_SNAPLEN
        })
    );
    assert_eq!(
        read_in_chunks(b"GIF89a, not a capture", 64).1,
        Err(Damage::NotACapture)
    );
    let mut v3 = pcap(false, false, 1, &[]);
    v3[4] = 3;
    assert_eq!(read_in_chunks(&v3, 64).1, Err(Damage::Version(3, 4)));
}

/// Found by fuzzing (`fuzz/fuzz_targets/capture.rs`): a pcap header's snapshot length raised
/// the limit on a record's captured length, so that 40 bytes (snapshot length 0xffffffff, a
/// record claiming 1.7 GB) had a stream (`-T -`) grow its buffer to 1.7 GB before it could
/// tell the file was cut short. libpcap refuses any record over 262144 bytes, whatever the
/// header says; so does the parser now.
#[test]
fn a_file_header_cannot_raise_the_record_limit() {
    for nanos in [false, true] {
        for be in [false, true] {
            let mut file = pcap(nanos, be, 1, &[(1, 0, b"abcd", 4)]);
            let at = |i: usize| i..i + 4;
            let bytes = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
            file[at(16)].copy_from_slice(&bytes(u32::MAX));
            file[at(24 + 8)].copy_from_slice(&bytes(1_700_000_000));
            let want = Err(Damage::RecordTooLong {
                caplen: 1_700_000_000,
                max: MAX_SNAPLEN,
            });
            assert_eq!(read_in_chunks(&file, file.len()).1, want);
            assert_eq!(read_in_chunks(&file, 7).1, want);
            // Up to the limit, records are read.
            let big = vec![0u8; 262_144];
            let mut file = pcap(nanos, be, 1, &[(1, 0, &big, 262_144)]);
            file[at(16)].copy_from_slice(&bytes(u32::MAX));
            let (got, end) = read_in_chunks(&file, 65_536);
            assert_eq!((got.len(), end), (1, Ok(false)));
        }
    }
}

#[test]
fn pcapng_interfaces_have_their_own_link_types_and_resolutions() {
    let mut file = shb();
    file.extend(idb(1, None));
    file.extend(idb(101, Some(9)));
    file.extend(idb(113, Some(0x80 | 10)));
    file.extend(block(5, b"stats, skipped"));
    file.extend(epb(0, 1_500_000, b"eth", 54));
    file.extend(epb(1, 2_000_000_123, b"raw ip", 40));
    file.extend(epb(2, 3 * 1024 + 512, b"sll", 70));
    let (got, end) = read_in_chunks(&file, file.len());
    assert_eq!(end, Ok(false));
    assert_eq!(
        got,
        [
            (1_500_000_000, b"eth".to_vec(), 54, 1),
            (2_000_000_123, b"raw ip".to_vec(), 40, 101),
            (3_500_000_000, b"sll".to_vec(), 70, 113),
        ]
    );
    assert_eq!(read_in_chunks(&file, 5), (got, Ok(false)));
}

#[test]
fn pcapng_damage_and_cuts() {
    let mut file = shb();
    file.extend(idb(1, None));
    file.extend(epb(0, 1, b"x", 1));
    let whole = file.len();
    file.extend(epb(3, 1, b"y", 1));
    assert_eq!(
        read_in_chunks(&file, 9),
        (
            vec![(1000, b"x".to_vec(), 1, 1)],
            Err(Damage::NoSuchInterface(3))
        )
    );
    let (got, end) = read_in_chunks(&file[..whole + 10], 9);
    assert_eq!((got.len(), end), (1, Ok(true)));
    // A block whose trailing length disagrees with its leading one.
    let mut bad = file[..whole].to_vec();
    let n = bad.len();
    bad[n - 4] ^= 0x40;
    assert!(matches!(
        read_in_chunks(&bad, 64).1,
        Err(Damage::BadBlock(_))
    ));
}

#[test]
fn timestamp_units_convert_exactly() {
    assert_eq!(
        Units::Decimal(6).to_time(1_500_000, 0).as_nanos(),
        1_500_000_000
    );
    assert_eq!(Units::Decimal(9).to_time(7, 0).as_nanos(), 7);
    assert_eq!(Units::Decimal(12).to_time(7_000, 0).as_nanos(), 7);
    assert_eq!(Units::Binary(10).to_time(1024, 0).as_nanos(), 1_000_000_000);
    assert_eq!(Units::Decimal(0).to_time(2, 100).as_secs(), 102);
    assert_eq!(Units::Decimal(0).to_time(2, -100).as_secs(), 0);
    // Beyond any capture: saturates, no panic.
    let _ = Units::Decimal(0).to_time(u64::MAX, i64::MAX);
    let _ = Units::Decimal(255).to_time(u64::MAX, i64::MIN);
    let _ = Units::Binary(127).to_time(u64::MAX, 0);
}
