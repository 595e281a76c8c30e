//! `tcptrack -T` on captures these tests write themselves: every state from the packets it
//! sent, every count computed from the frames the test generated. The link types, formats,
//! headers, speeds, filters and output formats are in `capture_formats.rs`.

use std::time::Duration;

use tcptrack_tests::on_capture::{assert_session, ms, only, run, run_on, C4, S4};
use tcptrack_tests::{assert_counts, rfc3339, Flags, Link, Session, Side, EPOCH_BASE};

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
