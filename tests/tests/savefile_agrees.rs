//! tcptrack's capture file parser reads what libpcap reads: for every file format, byte order,
//! link type and snapshot length the suite writes, the same records (time to the nanosecond,
//! captured bytes, wire length), read whole from a slice and a few bytes at a time as from a
//! stream; and `-T -` (standard input, the stream path) reports what `-T FILE` (mapped) does.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use tcptrack::source::savefile::{Parser, Step};
use tcptrack_tests::{tcptrack_bin, CaptureSpec, Format, Link, Packet, Session, Side};

/// (ns since the epoch, captured bytes, wire length).
type Rec = (u128, Vec<u8>, u32);

fn by_libpcap(path: &std::path::Path) -> Vec<Rec> {
    let mut cap = pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano)
        .expect("libpcap opens it");
    let mut out = Vec::new();
    while let Ok(p) = cap.next_packet() {
        let secs = u64::try_from(p.header.ts.tv_sec).expect("after 1970");
        let nanos = u32::try_from(p.header.ts.tv_usec).expect("nanoseconds");
        out.push((
            Duration::new(secs, nanos).as_nanos(),
            p.data.to_vec(),
            p.header.len,
        ));
    }
    out
}

/// Our parser, handed `chunk` more bytes whenever it asks for more.
fn by_parser(bytes: &[u8], chunk: usize) -> Vec<Rec> {
    let mut have = chunk.min(bytes.len());
    let (mut parser, mut at) = loop {
        match Parser::start(&bytes[..have]).expect("a capture") {
            Ok(started) => break started,
            Err(_) => have = (have + chunk).min(bytes.len()),
        }
    };
    let mut out = Vec::new();
    loop {
        match parser.step(&bytes[at..have]).expect("not damaged") {
            Step::Packet { record, used } => {
                out.push((record.ts.as_nanos(), record.data.to_vec(), record.orig_len));
                at += used;
            }
            Step::Skip { used } => at += used,
            Step::More(_) if have < bytes.len() => have = (have + chunk).min(bytes.len()),
            Step::More(_) => {
                assert_eq!(at, bytes.len(), "ends on a record boundary");
                return out;
            }
        }
    }
}

fn packets(link: Link) -> Vec<Packet> {
    let mut s = Session::new("198.18.0.1:40000", "198.18.0.2:443");
    s.step(Duration::from_micros(1_234))
        .handshake()
        .data(Side::Client, 700)
        .data(Side::Server, 1400)
        .close(Side::Client);
    let mut v6 = Session::new("[fd00::1]:40001", "[fd00::2]:80");
    v6.step(Duration::from_nanos(1_000_777))
        .handshake()
        .data(Side::Server, 90);
    let mut all = s.packets(link);
    if link.carries(true) {
        all.extend(v6.packets(link));
    }
    if !link.carries(false) {
        all = v6.packets(link);
    }
    all.sort_by_key(|p| p.ts);
    all
}

#[test]
fn every_format_byte_order_link_and_snapshot_reads_as_libpcap_reads_it() {
    let links = [
        Link::Ethernet,
        Link::Vlan(7),
        Link::Sll,
        Link::Sll2,
        Link::Raw,
        Link::RawIpv4,
        Link::RawIpv6,
        Link::Null { ipv6_family: 10 },
        Link::Loop,
    ];
    let mut checked = 0;
    for link in links {
        let packets = packets(link);
        for format in Format::ALL {
            for big_endian in [false, true] {
                for snaplen in [262_144, 96] {
                    let mut spec = CaptureSpec::new(format, link.linktype()).snaplen(snaplen);
                    if big_endian {
                        spec = spec.big_endian();
                    }
                    let cap = spec.write(&packets);
                    let file = cap.file();
                    let what =
                        format!("{link:?} {format:?} big endian {big_endian} snap {snaplen}");
                    let theirs = by_libpcap(file.path());
                    assert_eq!(theirs.len(), packets.len(), "{what}");
                    assert_eq!(by_parser(&cap.bytes, cap.bytes.len()), theirs, "{what}");
                    assert_eq!(
                        by_parser(&cap.bytes, 13),
                        theirs,
                        "{what}, 13 bytes at a time"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 9 * 4 * 2 * 2);
}

#[test]
fn standard_input_reports_what_the_mapped_file_does() {
    for format in Format::ALL {
        let cap = CaptureSpec::new(format, 1).write(&packets(Link::Ethernet));
        let file = cap.file();
        let path = file.path().to_str().expect("utf-8 path");
        let mapped = Command::new(tcptrack_bin())
            .args(["-T", path, "--output", "json", "port 443 or port 80"])
            .output()
            .expect("run tcptrack");
        let mut child = Command::new(tcptrack_bin())
            .args(["-T", "-", "--output", "json", "port 443 or port 80"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run tcptrack");
        let mut stdin = child.stdin.take().expect("stdin");
        // A byte at a time at first, then the rest: the stream path refills as it goes.
        for b in &cap.bytes[..100] {
            stdin.write_all(&[*b]).expect("write");
        }
        stdin.write_all(&cap.bytes[100..]).expect("write");
        drop(stdin);
        let streamed = child.wait_with_output().expect("tcptrack ends");
        assert!(
            mapped.status.success() && streamed.status.success(),
            "{format:?}"
        );
        let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(text(&mapped).lines().count(), 2, "{format:?}");
        assert_eq!(text(&mapped), text(&streamed), "{format:?}");
    }
}
