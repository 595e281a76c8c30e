//! `tcptrack -T` on captures these tests write themselves: every link type and file format,
//! and headers and options that are not payload. Every count is computed from the frames the
//! test generated. Speed, filters and output formats are in `capture_outputs.rs`.

use std::time::Duration;

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};
use tcptrack_tests::capture::{gzip, temp_file, zstd};
use tcptrack_tests::link::ETHERTYPE_IPV4;
use tcptrack_tests::on_capture::merged;
use tcptrack_tests::on_capture::{assert_session, only, run, run_on, C4, S4};
use tcptrack_tests::{
    assert_counts, json_of, rfc3339, tcptrack_with_input, CaptureSpec, Format, Link, Packet,
    Session, Side, EPOCH_BASE,
};

// ---- link types ------------------------------------------------------------------------------

/// An IPv4 and an IPv6 connection (those the link type carries), interleaved, on `link`.
fn check_link(link: Link) {
    let mut v4 = Session::new("198.18.1.1:45000", "198.18.1.2:8080");
    v4.handshake()
        .data(Side::Client, 1000)
        .data(Side::Server, 3000)
        .data(Side::Server, 1448)
        .ack(Side::Client)
        .close(Side::Server);
    let mut v6 = Session::new("[2001:db8::10]:45000", "[2001:db8::20]:8080");
    v6.at(EPOCH_BASE + Duration::from_micros(500))
        .handshake()
        .data(Side::Client, 900)
        .data(Side::Server, 1200)
        .close(Side::Client);
    let sessions: Vec<&Session> = [(&v4, false), (&v6, true)]
        .into_iter()
        .filter(|&(_, is_v6)| link.carries(is_v6))
        .map(|(s, _)| s)
        .collect();
    let recs = run_on(link, &sessions, &[]);
    assert_eq!(recs.len(), sessions.len(), "{link:?}: {recs:#?}");
    for (r, s) in recs.iter().zip(&sessions) {
        assert_session(r, s, link, "CLOSED");
        // Frame bytes: the IP packets plus one link header each.
        let ip: usize = s.segments().iter().map(|g| g.ip.len()).sum();
        let frames = s.segments().len();
        assert_eq!(
            usize::try_from(r.bytes).expect("fits"),
            ip + frames * link.header_len(),
            "{link:?}"
        );
    }
}

#[test]
fn link_ethernet() {
    check_link(Link::Ethernet);
}

#[test]
fn link_ethernet_vlan() {
    check_link(Link::Vlan(100));
}

#[test]
fn link_ethernet_qinq() {
    check_link(Link::QinQ(200, 300));
}

#[test]
fn link_linux_sll() {
    check_link(Link::Sll);
}

#[test]
fn link_linux_sll2() {
    check_link(Link::Sll2);
}

#[test]
fn link_raw_ip_101() {
    check_link(Link::Raw);
}

#[test]
fn link_raw_ipv4_228() {
    check_link(Link::RawIpv4);
}

#[test]
fn link_raw_ipv6_229() {
    check_link(Link::RawIpv6);
}

#[test]
fn link_bsd_null_every_ipv6_family() {
    for ipv6_family in [10, 24, 28, 30] {
        check_link(Link::Null { ipv6_family });
    }
}

#[test]
fn link_bsd_loop() {
    check_link(Link::Loop);
}

// ---- file formats -----------------------------------------------------------------------------

#[test]
fn every_capture_format_gives_the_same_counts_and_its_timestamps() {
    let mut s = Session::new(C4, S4);
    s.at(EPOCH_BASE + Duration::from_nanos(123_456_789))
        .step(Duration::from_nanos(1_000_333))
        .handshake()
        .data(Side::Client, 500)
        .data(Side::Server, 700)
        .close(Side::Client);
    let (first, last) = s.first_last();
    for format in Format::ALL {
        for big_endian in [false, true] {
            let mut spec = CaptureSpec::new(format, 1);
            if big_endian {
                spec = spec.big_endian();
            }
            let cap = spec.write(&s.packets(Link::Ethernet));
            let file = cap.file();
            let recs = json_of(file.path(), &[]);
            let r = only(&recs);
            let what = format!("{format:?}, big-endian {big_endian}");
            assert_eq!(r.state, "CLOSED", "{what}");
            assert_counts(r, &s.expected(Link::Ethernet));
            assert_eq!(r.first_seen, rfc3339(format.stored(first)), "{what}");
            assert_eq!(r.last_seen, rfc3339(format.stored(last)), "{what}");
            let fraction = if format.nanosecond() {
                ".123456789Z"
            } else {
                ".123456000Z"
            };
            assert!(r.first_seen.ends_with(fraction), "{what}: {}", r.first_seen);
        }
    }
}

// ---- compressed, and from standard input ----------------------------------------------------

/// 300 connections, some closed, some not, IPv4 and IPv6: enough for compressed streams of
/// several blocks.
fn many_connections() -> Vec<Packet> {
    let sessions: Vec<Session> = (0..300u16)
        .map(|i| {
            let (client, server) = if i % 3 == 0 {
                (
                    format!("[2001:db8::{:x}]:{}", i + 1, 20000 + i),
                    "[2001:db8::ffff]:443".to_owned(),
                )
            } else {
                (
                    format!("198.18.{}.{}:{}", 1 + i / 200, 1 + i % 200, 20000 + i),
                    S4.to_owned(),
                )
            };
            let mut s = Session::new(&client, &server);
            s.at(EPOCH_BASE + Duration::from_micros(u64::from(i) * 700))
                .handshake()
                .data(Side::Client, 100 + usize::from(i))
                .data(Side::Server, 1400);
            if i % 2 == 0 {
                s.close(Side::Client);
            }
            s
        })
        .collect();
    let refs: Vec<&Session> = sessions.iter().collect();
    merged(Link::Ethernet, &refs)
}

#[test]
fn gzip_and_zstd_captures_give_what_the_capture_gives_from_a_file_and_from_stdin() {
    for format in [Format::Pcap, Format::PcapNg] {
        let cap = CaptureSpec::new(format, 1).write(&many_connections());
        let plain = json_of(cap.file().path(), &[]);
        assert_eq!(plain.len(), 300, "{format:?}");
        let filtered = json_of(cap.file().path(), &["port", "443"]);
        assert_eq!(filtered.len(), 100, "{format:?}");
        for (what, bytes) in [
            ("gzip", gzip(&cap.bytes)),
            ("zstd", zstd(&cap.bytes)),
            ("uncompressed", cap.bytes.clone()),
        ] {
            let what = format!("{format:?}, {what}");
            assert!(bytes.len() > 20_000, "{what}: several blocks");
            // Told by the content: the temporary file's name says nothing.
            let file = temp_file(&bytes);
            assert_eq!(json_of(file.path(), &[]), plain, "{what}, file");
            assert_eq!(
                json_of(file.path(), &["port", "443"]),
                filtered,
                "{what}, filter"
            );
            for path in ["-", "/dev/stdin"] {
                let out =
                    tcptrack_with_input(["-T", path, "--output", "json"], Some(bytes.as_slice()));
                assert_eq!(out.code, Some(0), "{what}, {path}: {}", out.stderr);
                assert_eq!(out.stderr, "", "{what}, {path}");
                assert_eq!(out.records(), plain, "{what}, {path}");
            }
        }
    }
}

// ---- headers and options ------------------------------------------------------------------

#[test]
fn ipv4_options_are_not_payload() {
    let mut s = Session::new(C4, S4);
    // Router alert, then NOPs and the end of the list.
    s.ipv4_options(&[0x94, 0x04, 0, 0, 1, 1, 1, 0])
        .handshake()
        .data(Side::Client, 333)
        .data(Side::Server, 444)
        .close(Side::Server);
    assert_eq!(s.segments()[0].ip[0], 0x47, "IHL 7");
    assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSED");
}

#[test]
fn ipv6_extension_headers_are_not_payload() {
    let mut s = Session::new("[2001:db8::1]:40000", "[2001:db8::2]:443");
    // Hop-by-hop (8 bytes) and destination options (16 bytes), both padding.
    s.ipv6_extensions(
        Some(&[0; 6]),
        Some(&[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    )
    .handshake()
    .data(Side::Client, 1000)
    .data(Side::Server, 2000)
    .close(Side::Client);
    assert_eq!(s.segments()[0].ip[6], 0, "hop-by-hop header first");
    assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSED");
    assert_session(
        only(&run_on(Link::Raw, &[&s], &[])),
        &s,
        Link::Raw,
        "CLOSED",
    );
}

#[test]
fn tcp_options_are_not_payload() {
    let mut s = Session::new(C4, S4);
    // NOP, NOP, timestamps.
    s.tcp_options(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
        .handshake()
        .data(Side::Client, 10)
        .data(Side::Server, 20)
        .close(Side::Client);
    assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSED");
}

/// A snapshot length cut case: a session on `link` with `tcp_options`, cut to `snaplen`.
struct SnapCase {
    link: Link,
    client: &'static str,
    server: &'static str,
    tcp_options: &'static [u8],
    snaplen: u32,
}

/// Frames cut right after the fixed TCP header (or inside its options), on several links.
fn snap_cases() -> [SnapCase; 9] {
    const V6: (&str, &str) = ("[2001:db8::1]:40000", "[2001:db8::2]:80");
    let case =
        |link, (client, server): (&'static str, &'static str), tcp_options, snaplen| SnapCase {
            link,
            client,
            server,
            tcp_options,
            snaplen,
        };
    [
        // Ethernet + IPv4 + the fixed TCP header.
        case(Link::Ethernet, (C4, S4), &[], 54),
        // Ethernet + IPv6 + the fixed TCP header.
        case(Link::Ethernet, V6, &[], 74),
        // TCP options cut off: only the fixed header is left.
        case(
            Link::Ethernet,
            (C4, S4),
            &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            54,
        ),
        case(Link::Sll, (C4, S4), &[], 56),
        case(Link::Raw, V6, &[1, 1, 1, 1], 60),
        case(Link::Vlan(7), (C4, S4), &[], 58),
        case(Link::QinQ(7, 8), V6, &[1, 1, 1, 1], 82),
        case(Link::Null { ipv6_family: 24 }, (C4, S4), &[], 44),
        case(Link::Sll2, V6, &[], 80),
    ]
}

#[test]
fn snaplen_truncated_packets_count_by_ip_length() {
    let cases = snap_cases();
    for (i, c) in cases.into_iter().enumerate() {
        // Alternate the formats: pcap and pcapng both keep the wire length apart.
        let format = [Format::Pcap, Format::PcapNg][i % 2];
        let mut s = Session::new(c.client, c.server);
        s.tcp_options(c.tcp_options)
            .handshake()
            .data(Side::Client, 1400)
            .data(Side::Server, 1448)
            .data(Side::Server, 60_000)
            .fin_data(Side::Client, 999)
            .fin(Side::Server)
            .ack(Side::Client);
        let packets = s.packets(c.link);
        let cap = CaptureSpec::new(format, c.link.linktype())
            .snaplen(c.snaplen)
            .write(&packets);
        // Every record was cut to the snapshot length (pcapng: 32 bytes of block, padding).
        let snap = usize::try_from(c.snaplen).expect("fits");
        assert!(cap.records.iter().all(|r| r.len() <= 32 + snap + 3));
        let file = cap.file();
        let recs = json_of(file.path(), &[]);
        let what = format!("{:?} {format:?} snaplen {}", c.link, c.snaplen);
        let r = only(&recs);
        assert_eq!(r.client_payload_bytes, 1400 + 999, "{what}");
        assert_eq!(r.server_payload_bytes, 1448 + 60_000, "{what}");
        assert_session(r, &s, c.link, "CLOSED");
    }
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut s = Session::new(C4, S4);
    s.handshake()
        .data(Side::Client, 3)
        .data(Side::Server, 1)
        .close(Side::Client);
    let mut packets = s.packets(Link::Ethernet);
    for p in &mut packets {
        if p.data.len() < 60 {
            p.data.resize(60, 0);
        }
    }
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&packets);
    let file = cap.file();
    let recs = json_of(file.path(), &[]);
    let r = only(&recs);
    let mut exp = s.expected(Link::Ethernet);
    exp.client.bytes = 60 * exp.client.packets;
    exp.server.bytes = 60 * exp.server.packets;
    assert_counts(r, &exp);
    assert_eq!((r.client_payload_bytes, r.server_payload_bytes), (3, 1));
    assert_eq!(r.state, "CLOSED");
}

#[test]
fn non_tcp_packets_are_ignored() {
    let mut s = Session::new(C4, S4);
    s.handshake()
        .data(Side::Client, 100)
        .data(Side::Server, 200)
        .close(Side::Client);
    let mut packets = s.packets(Link::Ethernet);
    let t = EPOCH_BASE + Duration::from_micros(1500);
    let eth = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut frame = |b: Vec<u8>| packets.push(Packet::new(t, b));
    // UDP on the same addresses and ports, both ways (it would look like a mid-stream
    // connection), and over IPv6.
    for (src, dst, sp, dp) in [
        ([198, 18, 0, 1], [198, 18, 0, 2], 40000, 80),
        ([198, 18, 0, 2], [198, 18, 0, 1], 80, 40000),
    ] {
        let mut v = Vec::new();
        eth()
            .ipv4(src, dst, 64)
            .udp(sp, dp)
            .write(&mut v, &[7; 300])
            .expect("udp");
        frame(v);
    }
    for (sp, dp) in [(5353, 5353), (5353, 5353)] {
        let mut v = Vec::new();
        eth()
            .ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(sp, dp)
            .write(&mut v, &[1; 40])
            .expect("udp6");
        frame(v);
    }
    let mut v = Vec::new();
    eth()
        .arp(
            ArpPacket::new(
                ArpHardwareId::ETHERNET,
                EtherType::IPV4,
                ArpOperation::REQUEST,
                &[2, 0, 0, 0, 0, 1],
                &[198, 18, 0, 1],
                &[0; 6],
                &[198, 18, 0, 2],
            )
            .expect("arp"),
        )
        .write(&mut v)
        .expect("arp");
    frame(v);
    let mut v = Vec::new();
    eth()
        .ipv4([198, 18, 0, 2], [198, 18, 0, 1], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut v, &[0; 56])
        .expect("icmp");
    frame(v);
    // An IPv4 packet whose protocol is not TCP, though its bytes look like one.
    let mut tcp_like = s.segments()[3].ip.clone();
    tcp_like[9] = 17;
    frame(Link::Ethernet.wrap_as(ETHERTYPE_IPV4, &tcp_like));
    packets.sort_by_key(|p| p.ts);
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&packets);
    let file = cap.file();
    let recs = json_of(file.path(), &[]);
    assert_session(only(&recs), &s, Link::Ethernet, "CLOSED");
}
