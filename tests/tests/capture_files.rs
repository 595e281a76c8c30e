//! `tcptrack -T` on captures these tests write themselves: every count is computed from the
//! frames the test generated, every state from the packets it sent.

use std::time::Duration;

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};
use tcptrack_tests::link::ETHERTYPE_IPV4;
use tcptrack_tests::{
    assert_counts, json_of, rfc3339, tcptrack, CaptureSpec, Expected, Flags, Format, Link, Packet,
    Record, Session, Side, EPOCH_BASE,
};

const C4: &str = "198.18.0.1:40000";
const S4: &str = "198.18.0.2:80";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The frames of every session on `link`, in time order.
fn merged(link: Link, sessions: &[&Session]) -> Vec<Packet> {
    let mut all: Vec<Packet> = sessions.iter().flat_map(|s| s.packets(link)).collect();
    all.sort_by_key(|p| p.ts);
    all
}

/// `tcptrack -T <pcap of the sessions on link> --output json extra...`.
#[track_caller]
fn run_on(link: Link, sessions: &[&Session], extra: &[&str]) -> Vec<Record> {
    let cap = CaptureSpec::new(Format::Pcap, link.linktype()).write(&merged(link, sessions));
    let file = cap.file();
    json_of(file.path(), extra)
}

#[track_caller]
fn run(sessions: &[&Session]) -> Vec<Record> {
    run_on(Link::Ethernet, sessions, &[])
}

#[track_caller]
fn only(recs: &[Record]) -> &Record {
    assert_eq!(recs.len(), 1, "expected one connection: {recs:#?}");
    &recs[0]
}

/// `rec` is session `s` seen on `link`: its ends (the session's client as client), `state`, every
/// counter, first and last seen.
#[track_caller]
fn assert_session(rec: &Record, s: &Session, link: Link, state: &str) {
    assert_eq!(
        (rec.client.as_str(), rec.server.as_str()),
        (
            s.client().to_string().as_str(),
            s.server().to_string().as_str()
        ),
        "ends"
    );
    assert_eq!(
        rec.state, state,
        "state of {} -> {}",
        rec.client, rec.server
    );
    assert_counts(rec, &s.expected(link));
    let (first, last) = s.first_last();
    assert_eq!(rec.first_seen, rfc3339(first), "first_seen");
    assert_eq!(rec.last_seen, rfc3339(last), "last_seen");
}

// ---- states --------------------------------------------------------------------------------

#[test]
fn bare_syn_is_syn_sent_and_its_sender_the_client() {
    let mut s = Session::new(C4, S4);
    s.syn().wait(Duration::from_secs(1)).syn();
    let recs = run(&[&s]);
    let r = only(&recs);
    assert_session(r, &s, Link::Ethernet, "SYN_SENT");
    assert_eq!((r.client.as_str(), r.server.as_str()), (C4, S4));
    assert_eq!(r.client_packets, 2);

    // The SYN's sender is the client even from the lower port.
    let mut s = Session::new("198.18.0.5:22", "198.18.0.6:50000");
    s.handshake().data(Side::Server, 10);
    let recs = run(&[&s]);
    assert_session(only(&recs), &s, Link::Ethernet, "ESTABLISHED");
    assert_eq!(recs[0].client, "198.18.0.5:22");
}

#[test]
fn syn_ack_from_the_server_is_syn_ack_ack() {
    let mut s = Session::new(C4, S4);
    s.syn().syn_ack();
    assert_session(only(&run(&[&s])), &s, Link::Ethernet, "SYN|ACK-ACK");
}

#[test]
fn handshake_then_data_is_established() {
    let mut s = Session::new(C4, S4);
    s.handshake()
        .data(Side::Client, 120)
        .data(Side::Server, 2000)
        .ack(Side::Client);
    let recs = run(&[&s]);
    let r = only(&recs);
    assert_session(r, &s, Link::Ethernet, "ESTABLISHED");
    assert_eq!(
        (r.client_payload_bytes, r.server_payload_bytes),
        (120, 2000)
    );
    assert_eq!((r.client_packets, r.server_packets), (4, 2));
}

#[test]
fn fin_from_either_side_is_closing_until_both_fins_are_acked() {
    for side in [Side::Client, Side::Server] {
        let mut s = Session::new(C4, S4);
        s.handshake().data(Side::Client, 10).fin(side);
        assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSING");
        // The FIN acknowledged: half closed, still closing.
        s.ack(side.other());
        assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSING");
        // The other side's FIN, not yet acknowledged.
        s.data(side.other(), 77).fin(side.other());
        assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSING");
    }
}

#[test]
fn close_from_either_side_is_closed() {
    for side in [Side::Client, Side::Server] {
        let mut s = Session::new(C4, S4);
        s.handshake()
            .data(Side::Client, 300)
            .data(Side::Server, 4000)
            .fin(side)
            .fin(side.other());
        assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSING");
        s.ack(side);
        assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSED");
    }
}

#[test]
fn fin_is_acknowledged_only_by_its_seq_plus_payload_plus_one() {
    let mut s = Session::new(C4, S4);
    s.handshake()
        .data(Side::Server, 50)
        .fin_data(Side::Client, 100);
    let fin_seq = s.segments().last().expect("sent").seq;
    // The server acknowledges the data but not the FIN, then closes its side.
    s.send_acking(Side::Server, Flags::ACK, 0, fin_seq.wrapping_add(100))
        .send_acking(
            Side::Server,
            Flags::FIN | Flags::ACK,
            0,
            fin_seq.wrapping_add(100),
        )
        .ack(Side::Client);
    assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSING");
    // Now the FIN itself.
    s.send_acking(Side::Server, Flags::ACK, 0, fin_seq.wrapping_add(101));
    assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSED");
}

#[test]
fn fin_matching_wraps_around_the_sequence_space() {
    let mut s = Session::new(C4, S4);
    s.isn(u32::MAX - 50, u32::MAX - 2)
        .handshake()
        .data(Side::Client, 100)
        .data(Side::Server, 10)
        .close(Side::Client);
    let fins: Vec<u32> = s
        .segments()
        .iter()
        .filter(|g| g.flags.has(Flags::FIN))
        .map(|g| g.seq)
        .collect();
    assert_eq!(fins, vec![50, 8], "both FINs after the wrap");
    assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSED");
}

#[test]
fn rst_from_either_side_is_reset() {
    for side in [Side::Client, Side::Server] {
        let mut s = Session::new(C4, S4);
        s.handshake()
            .data(Side::Client, 10)
            .data(Side::Server, 20)
            .rst(side);
        assert_session(only(&run(&[&s])), &s, Link::Ethernet, "RESET");
    }
    // A refused connection: SYN answered by RST.
    let mut s = Session::new(C4, S4);
    s.syn().rst(Side::Server);
    assert_session(only(&run(&[&s])), &s, Link::Ethernet, "RESET");
    // A RST during the close.
    let mut s = Session::new(C4, S4);
    s.handshake().fin(Side::Client).rst(Side::Server);
    assert_session(only(&run(&[&s])), &s, Link::Ethernet, "RESET");
}

// ---- mid-stream pick-up ------------------------------------------------------------------

#[test]
fn midstream_pickup_makes_the_lower_port_the_server_and_counts_early_packets() {
    // The high port speaks first, twice, before any answer.
    let mut a = Session::new("198.18.0.1:40000", "198.18.0.2:80");
    a.data(Side::Client, 100)
        .data(Side::Client, 200)
        .data(Side::Server, 50)
        .ack(Side::Client);
    // The low port speaks first: tcptrack must still call it the server.
    let mut b = Session::new("198.18.0.3:443", "198.18.0.4:51000");
    b.at(EPOCH_BASE + ms(500))
        .data(Side::Client, 700)
        .ack(Side::Server)
        .data(Side::Server, 20);
    let recs = run(&[&a, &b]);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_session(&recs[0], &a, Link::Ethernet, "ESTABLISHED");
    let r = &recs[1];
    assert_eq!(
        (r.client.as_str(), r.server.as_str()),
        ("198.18.0.4:51000", "198.18.0.3:443")
    );
    assert_eq!(r.state, "ESTABLISHED");
    assert_counts(r, &b.expected(Link::Ethernet).swapped());
    assert_eq!(r.first_seen, rfc3339(b.first_last().0));
}

#[test]
fn midstream_equal_ports_make_the_first_sender_the_client() {
    // The first sender has the higher address, then the lower: neither order may decide.
    let mut a = Session::new("198.18.0.9:5000", "198.18.0.1:5000");
    a.data(Side::Client, 10).data(Side::Server, 20);
    let mut b = Session::new("198.18.0.3:6000", "198.18.0.7:6000");
    b.at(EPOCH_BASE + ms(100))
        .data(Side::Client, 30)
        .data(Side::Server, 40);
    let recs = run(&[&a, &b]);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_session(&recs[0], &a, Link::Ethernet, "ESTABLISHED");
    assert_session(&recs[1], &b, Link::Ethernet, "ESTABLISHED");
}

#[test]
fn midstream_connections_close_and_reset_like_any_other() {
    let mut a = Session::new(C4, S4);
    a.data(Side::Client, 10)
        .data(Side::Server, 10)
        .close(Side::Server);
    let mut b = Session::new("198.18.0.3:40001", "198.18.0.4:443");
    b.at(EPOCH_BASE + ms(100))
        .data(Side::Server, 10)
        .data(Side::Client, 10)
        .rst(Side::Client);
    let recs = run(&[&a, &b]);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_session(&recs[0], &a, Link::Ethernet, "CLOSED");
    assert_session(&recs[1], &b, Link::Ethernet, "RESET");
}

#[test]
fn d_disables_midstream_pickup() {
    let mut mid = Session::new("198.18.0.1:40000", "198.18.0.2:80");
    mid.data(Side::Client, 100).data(Side::Server, 50);
    let mut full = Session::new("198.18.0.3:40001", "198.18.0.4:443");
    full.at(EPOCH_BASE + ms(10))
        .handshake()
        .data(Side::Client, 5)
        .data(Side::Server, 6);
    let recs = run_on(Link::Ethernet, &[&mid, &full], &[]);
    assert_eq!(recs.len(), 2, "without -d: {recs:#?}");
    let recs = run_on(Link::Ethernet, &[&mid, &full], &["-d"]);
    assert_session(only(&recs), &full, Link::Ethernet, "ESTABLISHED");
}

#[test]
fn one_way_traffic_is_not_a_connection() {
    let mut a = Session::new(C4, S4);
    a.data(Side::Client, 100)
        .data(Side::Client, 100)
        .ack(Side::Client);
    // Answers that are RST or FIN do not reveal a connection.
    let mut b = Session::new("198.18.0.3:40001", "198.18.0.4:443");
    b.data(Side::Client, 10).rst(Side::Server);
    let mut c = Session::new("198.18.0.5:40002", "198.18.0.6:443");
    c.data(Side::Client, 10).fin(Side::Server);
    let recs = run(&[&a, &b, &c]);
    assert!(recs.is_empty(), "{recs:#?}");
}

// ---- new connections on an old tuple -------------------------------------------------------

#[test]
fn syn_after_close_starts_a_new_connection() {
    // Within the -r linger and after it.
    for gap in [ms(100), Duration::from_secs(5)] {
        let mut first = Session::new(C4, S4);
        first
            .handshake()
            .data(Side::Client, 100)
            .close(Side::Client);
        let mut second = Session::new(C4, S4);
        second
            .isn(7, 9)
            .at(first.now() + gap)
            .handshake()
            .data(Side::Server, 55);
        let recs = run(&[&first, &second]);
        assert_eq!(recs.len(), 2, "gap {gap:?}: {recs:#?}");
        assert_session(&recs[0], &first, Link::Ethernet, "CLOSED");
        assert_session(&recs[1], &second, Link::Ethernet, "ESTABLISHED");
        // The old server opens the new connection: it is the new client.
        let mut reversed = Session::new(S4, C4);
        reversed
            .isn(11, 13)
            .at(first.now() + gap)
            .handshake()
            .data(Side::Client, 66);
        let recs = run(&[&first, &reversed]);
        assert_eq!(recs.len(), 2, "gap {gap:?}: {recs:#?}");
        assert_session(&recs[0], &first, Link::Ethernet, "CLOSED");
        assert_session(&recs[1], &reversed, Link::Ethernet, "ESTABLISHED");
        assert_eq!(recs[1].client, S4);
    }
}

#[test]
fn syn_after_reset_starts_a_new_connection() {
    for gap in [ms(100), Duration::from_secs(5)] {
        let mut first = Session::new(C4, S4);
        first.handshake().data(Side::Client, 100).rst(Side::Server);
        let mut second = Session::new(C4, S4);
        second
            .isn(7, 9)
            .at(first.now() + gap)
            .handshake()
            .data(Side::Client, 33)
            .close(Side::Server);
        let recs = run(&[&first, &second]);
        assert_eq!(recs.len(), 2, "gap {gap:?}: {recs:#?}");
        assert_session(&recs[0], &first, Link::Ethernet, "RESET");
        assert_session(&recs[1], &second, Link::Ethernet, "CLOSED");
    }
}

// ---- IPv6 and one host -----------------------------------------------------------------------

#[test]
fn ipv6_closes_like_ipv4() {
    let mut a = Session::new("[2001:db8::1]:40000", "[2001:db8:0:0:1:0:0:1]:443");
    a.handshake()
        .data(Side::Client, 1000)
        .data(Side::Server, 5000)
        .close(Side::Client);
    let mut b = Session::new("[fd00::2]:58745", "[fd00::1]:22");
    b.at(EPOCH_BASE + ms(100))
        .handshake()
        .data(Side::Server, 64)
        .close(Side::Server);
    let recs = run(&[&a, &b]);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_session(&recs[0], &a, Link::Ethernet, "CLOSED");
    assert_session(&recs[1], &b, Link::Ethernet, "CLOSED");
    // RFC 5952, in brackets.
    assert_eq!(recs[0].client, "[2001:db8::1]:40000");
    assert_eq!(recs[0].server, "[2001:db8::1:0:0:1]:443");
    assert_eq!(recs[1].client, "[fd00::2]:58745");
    assert_eq!(
        (recs[0].client_payload_bytes, recs[0].server_payload_bytes),
        (1000, 5000)
    );
}

#[test]
fn a_connection_between_two_ports_of_one_host_closes_only_when_both_fins_are_acked() {
    for (client, server) in [
        ("198.18.0.1:1000", "198.18.0.1:2000"),
        ("[fd00::1]:1000", "[fd00::1]:2000"),
    ] {
        let mut s = Session::new(client, server);
        s.handshake()
            .data(Side::Client, 10)
            .fin(Side::Client)
            .ack(Side::Server);
        assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSING");
        s.data(Side::Server, 20).fin(Side::Server);
        assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSING");
        s.ack(Side::Client);
        assert_session(only(&run(&[&s])), &s, Link::Ethernet, "CLOSED");
    }
}

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

#[test]
fn snaplen_truncated_packets_count_by_ip_length() {
    struct Case {
        link: Link,
        client: &'static str,
        server: &'static str,
        tcp_options: &'static [u8],
        snaplen: u32,
    }
    let cases = [
        // Ethernet + IPv4 + the fixed TCP header.
        Case {
            link: Link::Ethernet,
            client: C4,
            server: S4,
            tcp_options: &[],
            snaplen: 54,
        },
        // Ethernet + IPv6 + the fixed TCP header.
        Case {
            link: Link::Ethernet,
            client: "[2001:db8::1]:40000",
            server: "[2001:db8::2]:80",
            tcp_options: &[],
            snaplen: 74,
        },
        // TCP options cut off: only the fixed header is left.
        Case {
            link: Link::Ethernet,
            client: C4,
            server: S4,
            tcp_options: &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            snaplen: 54,
        },
        Case {
            link: Link::Sll,
            client: C4,
            server: S4,
            tcp_options: &[],
            snaplen: 56,
        },
        Case {
            link: Link::Raw,
            client: "[2001:db8::1]:40000",
            server: "[2001:db8::2]:80",
            tcp_options: &[1, 1, 1, 1],
            snaplen: 60,
        },
        Case {
            link: Link::Vlan(7),
            client: C4,
            server: S4,
            tcp_options: &[],
            snaplen: 58,
        },
        Case {
            link: Link::QinQ(7, 8),
            client: "[2001:db8::1]:40000",
            server: "[2001:db8::2]:80",
            tcp_options: &[1, 1, 1, 1],
            snaplen: 82,
        },
        Case {
            link: Link::Null { ipv6_family: 24 },
            client: C4,
            server: S4,
            tcp_options: &[],
            snaplen: 44,
        },
        Case {
            link: Link::Sll2,
            client: "[2001:db8::1]:40000",
            server: "[2001:db8::2]:80",
            tcp_options: &[],
            snaplen: 80,
        },
    ];
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

// ---- speed and idle -----------------------------------------------------------------------

/// Payload of `s` sent in `[from, to)`.
fn payload_between(s: &Session, from: Duration, to: Duration) -> u64 {
    s.segments()
        .iter()
        .filter(|g| g.ts >= from && g.ts < to)
        .map(|g| g.payload_len as u64)
        .sum()
}

/// 10 x 1000 bytes over the second [S, S+1), then a packet at `last`.
fn ten_by_thousand(last: Duration) -> Session {
    let s0 = EPOCH_BASE + Duration::from_secs(10);
    let mut s = Session::new(C4, S4);
    s.at(s0 - ms(10)).handshake();
    for i in 0..10 {
        s.at(s0 + ms(50 + 100 * i)).data(Side::Client, 1000);
    }
    s.at(last).ack(Side::Server);
    s
}

#[test]
fn speed_is_the_payload_of_the_last_completed_second() {
    let s0 = EPOCH_BASE + Duration::from_secs(10);
    let s = ten_by_thousand(s0 + ms(1950));
    // Both directions in the same second count together; a connection silent in the last
    // completed second shows 0 and its idle time.
    let mut both = Session::new("198.18.0.3:40001", "198.18.0.4:443");
    both.at(s0 + ms(100))
        .data(Side::Client, 3000)
        .data(Side::Server, 2000);
    let mut early = Session::new("198.18.0.5:40002", "198.18.0.6:443");
    early
        .at(EPOCH_BASE + Duration::from_secs(2))
        .handshake()
        .data(Side::Server, 5000);
    let recs = run(&[&s, &both, &early]);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let (by_client, now) = (
        |c: &str| recs.iter().find(|r| r.client == c).expect("listed"),
        s.first_last().1,
    );
    assert_eq!(payload_between(&s, s0, s0 + Duration::from_secs(1)), 10_000);
    assert_eq!(by_client(C4).speed, 10_000);
    assert_eq!(by_client("198.18.0.3:40001").speed, 5000);
    let e = by_client("198.18.0.5:40002");
    assert_eq!(e.speed, 0);
    assert_eq!(e.idle, (now - early.first_last().1).as_secs_f64());
    assert_eq!(by_client(C4).idle, 0.0);
    assert_session(
        by_client("198.18.0.5:40002"),
        &early,
        Link::Ethernet,
        "ESTABLISHED",
    );
}

#[test]
fn fast_speed_is_a_one_second_window_sliding_in_tenths() {
    let s0 = EPOCH_BASE + Duration::from_secs(10);
    for last in [ms(1450), ms(1000), ms(1999), ms(1020)] {
        let s = ten_by_thousand(s0 + last);
        let now = s.first_last().1;
        // The window: the ten completed tenths before the one `now` falls in.
        let tenth = Duration::from_millis(100);
        let bucket = Duration::from_nanos(
            u64::try_from(now.as_nanos() / tenth.as_nanos() * tenth.as_nanos()).expect("fits"),
        );
        let expected = payload_between(&s, bucket - Duration::from_secs(1), bucket);
        let recs = run_on(Link::Ethernet, &[&s], &["-f"]);
        assert_eq!(only(&recs).speed, expected, "last packet at S+{last:?}");
        // Classic averaging on the same file: the last completed whole second.
        let recs = run(&[&s]);
        let second = Duration::from_secs(now.as_secs());
        let classic = payload_between(&s, second - Duration::from_secs(1), second);
        assert_eq!(only(&recs).speed, classic, "classic, last at S+{last:?}");
    }
    // The case the brief computes by hand: at S+1.45 the window [S+0.4, S+1.4) holds 6 packets.
    let recs = run_on(Link::Ethernet, &[&ten_by_thousand(s0 + ms(1450))], &["-f"]);
    assert_eq!(only(&recs).speed, 6000);
}

// ---- filter ---------------------------------------------------------------------------------

fn three_services() -> [Session; 3] {
    let mut a = Session::new(C4, S4);
    a.handshake().data(Side::Client, 11).close(Side::Client);
    let mut b = Session::new("198.18.0.3:40001", "198.18.0.4:443");
    b.at(EPOCH_BASE + ms(2))
        .handshake()
        .data(Side::Server, 22)
        .rst(Side::Client);
    let mut c = Session::new("[2001:db8::1]:40002", "[2001:db8::2]:80");
    c.at(EPOCH_BASE + ms(4)).handshake().data(Side::Client, 33);
    [a, b, c]
}

#[test]
fn filter_expression_keeps_only_matching_connections() {
    let [a, b, c] = three_services();
    let recs = run_on(Link::Ethernet, &[&a, &b, &c], &["port", "80"]);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_session(&recs[0], &a, Link::Ethernet, "CLOSED");
    assert_session(&recs[1], &c, Link::Ethernet, "ESTABLISHED");
    let recs = run_on(
        Link::Ethernet,
        &[&a, &b, &c],
        &["tcp", "and", "host", "198.18.0.3"],
    );
    assert_session(only(&recs), &b, Link::Ethernet, "RESET");
    let recs = run_on(Link::Ethernet, &[&a, &b, &c], &["port", "9"]);
    assert!(recs.is_empty(), "{recs:#?}");
}

#[test]
fn bad_filter_is_a_usage_error_naming_it() {
    let [a, b, c] = three_services();
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&merged(Link::Ethernet, &[&a, &b, &c]));
    let file = cap.file();
    let path = file.path().to_str().expect("utf-8 path");
    let out = tcptrack(["-T", path, "--output", "json", "port"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr_lines().len(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("filter"), "{}", out.stderr);
    assert!(out.stderr.contains("`port`"), "{}", out.stderr);
    assert!(!out.panicked());
}

// ---- output formats -------------------------------------------------------------------------

#[test]
fn csv_output_has_a_header_and_one_row_per_connection() {
    let [a, b, c] = three_services();
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&merged(Link::Ethernet, &[&a, &b, &c]));
    let file = cap.file();
    let json = json_of(file.path(), &[]);
    assert_eq!(json.len(), 3);
    let path = file.path().to_str().expect("utf-8 path");
    let out = tcptrack(["-T", path, "--output", "csv"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stderr, "");
    let mut rd = csv::Reader::from_reader(out.stdout.as_bytes());
    let header: Vec<String> = rd
        .headers()
        .expect("header row")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "client",
            "server",
            "state",
            "payload_bytes",
            "bytes",
            "packets",
            "client_payload_bytes",
            "server_payload_bytes",
            "client_bytes",
            "server_bytes",
            "client_packets",
            "server_packets",
            "speed",
            "idle",
            "first_seen",
            "last_seen",
            "time"
        ]
    );
    let rows: Vec<Record> = rd
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("rows are records");
    assert_eq!(rows, json);
    assert_session(&rows[1], &b, Link::Ethernet, "RESET");

    // No connection: the header alone.
    let out = tcptrack(["-T", path, "--output", "csv", "port", "9"]);
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.starts_with("client,server,state,"));
}

#[test]
fn table_output_has_a_header_a_row_per_connection_and_a_total() {
    let [a, b, c] = three_services();
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&merged(Link::Ethernet, &[&a, &b, &c]));
    let file = cap.file();
    let json = json_of(file.path(), &[]);
    let path = file.path().to_str().expect("utf-8 path");
    let out = tcptrack(["-T", path, "--output", "table"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 3 + 1 + 1, "{}", out.stdout);
    let head: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(head[..5], ["Client", "Server", "State", "Idle", "Speed"]);
    let last_two = |l: &str| -> (u64, u64) {
        let w: Vec<&str> = l.split_whitespace().collect();
        let n = |s: &str| s.parse::<u64>().expect("a number");
        (n(w[w.len() - 2]), n(w[w.len() - 1]))
    };
    for (line, r) in lines[1..4].iter().zip(&json) {
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            (w[0], w[1], w[2]),
            (r.client.as_str(), r.server.as_str(), r.state.as_str())
        );
        assert_eq!(last_two(line), (r.payload_bytes, r.packets), "{line}");
    }
    assert!(lines[4].starts_with("TOTAL"), "{}", lines[4]);
    let payload: u64 = json.iter().map(|r| r.payload_bytes).sum();
    let packets: u64 = json.iter().map(|r| r.packets).sum();
    assert_eq!(last_two(lines[4]), (payload, packets));
    assert_eq!(payload, 11 + 22 + 33);
    assert_eq!(lines[5], "3 connections");
}

// ---- order, timestamps, options that do not change the report -------------------------------

#[test]
fn connections_are_listed_first_seen_first_with_their_own_timestamps() {
    // A closes and leaves the table (linger 2 s) long before the end; B and C interleave.
    let mut a = Session::new(C4, S4);
    a.handshake().data(Side::Client, 1).close(Side::Client);
    let mut b = Session::new("198.18.0.3:40001", "198.18.0.4:443");
    b.at(EPOCH_BASE + Duration::from_micros(1500))
        .step(Duration::from_secs(1))
        .handshake()
        .data(Side::Server, 9);
    let mut c = Session::new("198.18.0.5:40002", "198.18.0.6:443");
    c.at(EPOCH_BASE + Duration::from_millis(2500))
        .step(Duration::from_secs(3))
        .handshake()
        .data(Side::Client, 4);
    let recs = run(&[&c, &b, &a]);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    assert_session(&recs[0], &a, Link::Ethernet, "CLOSED");
    assert_session(&recs[1], &b, Link::Ethernet, "ESTABLISHED");
    assert_session(&recs[2], &c, Link::Ethernet, "ESTABLISHED");
    let now = c.first_last().1;
    for (r, s) in recs.iter().zip([&a, &b, &c]) {
        assert_eq!(
            r.idle,
            (now - s.first_last().1).as_secs_f64(),
            "{}",
            r.client
        );
    }
}

#[test]
fn linger_does_not_change_the_report() {
    let [a, b, c] = three_services();
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&merged(Link::Ethernet, &[&a, &b, &c]));
    let file = cap.file();
    let default = json_of(file.path(), &[]);
    assert_eq!(default.len(), 3);
    for r in ["0", "100"] {
        assert_eq!(json_of(file.path(), &["-r", r]), default, "-r {r}");
    }
}

#[test]
fn many_connections_are_all_reported_exactly() {
    // 300 connections, interleaved packet by packet, each with its own amounts.
    let sessions: Vec<Session> = (0..300u16)
        .map(|i| {
            let client = format!("198.18.{}.{}:{}", 2 + i / 200, 1 + i % 200, 30000 + i);
            let mut s = Session::new(&client, "198.19.0.1:443");
            s.at(EPOCH_BASE + Duration::from_micros(u64::from(i)))
                .step(ms(1))
                .handshake()
                .data(Side::Client, usize::from(i) * 3)
                .data(Side::Server, usize::from(i) + 1);
            match i % 3 {
                0 => s.close(Side::Client),
                1 => s.rst(Side::Server),
                _ => &mut s,
            };
            s
        })
        .collect();
    let refs: Vec<&Session> = sessions.iter().collect();
    let recs = run(&refs);
    assert_eq!(recs.len(), 300);
    for (i, (r, s)) in recs.iter().zip(&sessions).enumerate() {
        let state = ["CLOSED", "RESET", "ESTABLISHED"][i % 3];
        assert_session(r, s, Link::Ethernet, state);
    }
    let mut total = Expected::default();
    for s in &sessions {
        total += s.expected(Link::Ethernet);
    }
    let payload: u64 = recs.iter().map(|r| r.payload_bytes).sum();
    assert_eq!(payload, total.client.payload + total.server.payload);
}

// ---- clock edges and offload ------------------------------------------------------------------

#[test]
fn custom_window_averages_over_it() {
    let s0 = EPOCH_BASE + Duration::from_secs(10);
    let s = ten_by_thousand(s0 + ms(1950));
    // Two whole seconds before S+1.95: [S-1, S+1), 10000 bytes over 2 s.
    let second = Duration::from_secs(s.first_last().1.as_secs());
    let expected = payload_between(&s, second - Duration::from_secs(2), second) / 2;
    assert_eq!(expected, 5000);
    let recs = run_on(Link::Ethernet, &[&s], &["--window", "2"]);
    assert_eq!(only(&recs).speed, expected);
}

#[test]
fn timestamps_at_the_epoch_and_after_2038() {
    // The pcap record's seconds field is unsigned 32-bit: it reaches 2106. Past 2038-01-19 it
    // no longer fits a signed 32-bit number; pcapng has 64 bits.
    let mut wrong = Vec::new();
    for format in Format::ALL {
        let mut early = Session::new(C4, S4);
        early
            .at(Duration::from_micros(1))
            .handshake()
            .data(Side::Client, 10);
        let mut late = Session::new("198.18.0.3:40001", "198.18.0.4:443");
        late.at(Duration::new(u64::from(u32::MAX) - 1, 999_000_000))
            .handshake()
            .data(Side::Server, 20);
        let cap = CaptureSpec::new(format, 1).write(&merged(Link::Ethernet, &[&early, &late]));
        let file = cap.file();
        let recs = json_of(file.path(), &[]);
        assert_eq!(recs.len(), 2, "{format:?}: {recs:#?}");
        assert_eq!(
            recs[0].first_seen, "1970-01-01T00:00:00.000001000Z",
            "{format:?}"
        );
        assert_session(&recs[0], &early, Link::Ethernet, "ESTABLISHED");
        let seen = (recs[1].first_seen.as_str(), recs[1].last_seen.as_str());
        let want = (rfc3339(late.first_last().0), rfc3339(late.first_last().1));
        if seen != (want.0.as_str(), want.1.as_str()) {
            wrong.push(format!("{format:?}: {seen:?}, want {want:?}"));
        }
        assert_eq!(want.1, "2106-02-07T06:28:15.002000000Z");
        assert_counts(&recs[1], &late.expected(Link::Ethernet));
    }
    assert!(
        wrong.is_empty(),
        "times after 2038 read wrong:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn first_seen_is_the_earliest_packet_when_timestamps_go_back() {
    // Merged captures (several interfaces) can have timestamps out of order.
    let mut s = Session::new(C4, S4);
    s.at(EPOCH_BASE + ms(500))
        .handshake()
        .at(EPOCH_BASE + ms(200))
        .data(Side::Client, 10)
        .at(EPOCH_BASE + ms(900))
        .data(Side::Server, 20);
    let packets = s.packets(Link::Ethernet); // file order, not time order
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&packets);
    let file = cap.file();
    let recs = json_of(file.path(), &[]);
    let r = only(&recs);
    assert_counts(r, &s.expected(Link::Ethernet));
    assert_eq!(
        r.first_seen,
        rfc3339(EPOCH_BASE + ms(200)),
        "earliest packet"
    );
    assert_eq!(r.last_seen, rfc3339(EPOCH_BASE + ms(900)), "latest packet");
}

#[test]
fn zero_ipv4_total_length_counts_the_captured_payload() {
    // Captured on the sending host with segmentation offload: total length 0.
    let mut s = Session::new(C4, S4);
    s.handshake()
        .data(Side::Client, 3000)
        .data(Side::Server, 10);
    let mut packets = s.packets(Link::Ethernet);
    packets[3].data[16] = 0;
    packets[3].data[17] = 0;
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&packets);
    let file = cap.file();
    let recs = json_of(file.path(), &[]);
    let r = only(&recs);
    assert_counts(r, &s.expected(Link::Ethernet));
    assert_eq!(r.client_payload_bytes, 3000);
}
