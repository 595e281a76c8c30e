//! `tcptrack -T` on captures these tests write themselves: speed and idle, filters, output
//! formats, the order of connections and options that leave the report alone.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tcptrack_tests::on_capture::{assert_session, merged, ms, only, run, run_on, C4, S4};
use tcptrack_tests::{
    assert_counts, json_of, rfc3339, tcptrack, tcptrack_bin, CaptureSpec, Expected, Format, Link,
    Record, Session, Side, EPOCH_BASE,
};

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
            "client_speed",
            "server_speed",
            "rtt_us",
            "client_retransmits",
            "server_retransmits",
            "pid",
            "process",
            "cgroup",
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

#[test]
fn a_reader_that_stops_early_ends_tcptrack_quietly() {
    // Far more text than a pipe holds (64 KiB): tcptrack is still writing when the reader goes,
    // as under `tcptrack -T big.pcap --output json | head -1`.
    let sessions: Vec<Session> = (0..2000u16)
        .map(|i| {
            let client = format!("198.18.{}.{}:{}", 2 + i / 200, 1 + i % 200, 30000 + i);
            let mut s = Session::new(&client, S4);
            s.at(EPOCH_BASE + Duration::from_micros(u64::from(i)))
                .handshake();
            s
        })
        .collect();
    let refs: Vec<&Session> = sessions.iter().collect();
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&merged(Link::Ethernet, &refs));
    let file = cap.file();
    for format in ["json", "csv", "table"] {
        let mut child = Command::new(tcptrack_bin())
            .args([OsStr::new("-T"), file.path().as_os_str()])
            .args(["--output", format])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcptrack starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("stdout readable");
        assert!(!line.is_empty(), "{format}: a first line");
        drop(stdout);
        let out = child.wait_with_output().expect("tcptrack waited for");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
        assert_eq!(stderr, "", "{format}: quiet");
    }
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
    let recs = json_warned_out_of_order(file.path());
    let r = only(&recs);
    assert_counts(r, &s.expected(Link::Ethernet));
    assert_eq!(
        r.first_seen,
        rfc3339(EPOCH_BASE + ms(200)),
        "earliest packet"
    );
    assert_eq!(r.last_seen, rfc3339(EPOCH_BASE + ms(900)), "latest packet");
}

/// `tcptrack -T file --output json`: exit 0, and one line on stderr saying that the capture is
/// out of time order; the records.
#[track_caller]
fn json_warned_out_of_order(file: &Path) -> Vec<Record> {
    let out = tcptrack([
        OsStr::new("-T"),
        file.as_os_str(),
        OsStr::new("--output"),
        OsStr::new("json"),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!out.panicked(), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    assert!(
        out.stderr.starts_with("tcptrack: warning: ") && out.stderr.contains("out of time order"),
        "{}",
        out.stderr
    );
    out.records()
}

#[test]
fn time_going_back_is_said_once_and_each_connection_keeps_its_span() {
    // The capturing host's clock stepped back an hour: A goes on and B begins, both stamped
    // "before" A began. Every packet after the step is older than one before it: one warning.
    let mut a = Session::new(C4, S4);
    a.at(EPOCH_BASE + Duration::from_secs(3600))
        .handshake()
        .data(Side::Client, 100)
        .at(EPOCH_BASE + ms(500))
        .data(Side::Server, 200)
        .data(Side::Client, 10);
    let mut b = Session::new("198.18.0.3:40001", "198.18.0.4:443");
    b.at(EPOCH_BASE + Duration::from_secs(1))
        .handshake()
        .data(Side::Client, 300)
        .close(Side::Server);
    let mut packets = a.packets(Link::Ethernet); // file order, not time order
    packets.extend(b.packets(Link::Ethernet));
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&packets);
    let file = cap.file();
    let recs = json_warned_out_of_order(file.path());
    assert_eq!(recs.len(), 2, "{recs:#?}");
    // Each connection spans its earliest to its latest packet, never the other way round.
    for (r, s, state) in [(&recs[0], &a, "ESTABLISHED"), (&recs[1], &b, "CLOSED")] {
        assert_eq!(r.state, state, "{}", r.client);
        assert_counts(r, &s.expected(Link::Ethernet));
        let times = || s.segments().iter().map(|g| g.ts);
        let (first, last) = (
            times().min().expect("packets"),
            times().max().expect("packets"),
        );
        assert_eq!(r.first_seen, rfc3339(first), "{}", r.client);
        assert_eq!(r.last_seen, rfc3339(last), "{}", r.client);
        assert!(
            r.first_seen <= r.last_seen && r.last_seen <= r.time,
            "{r:?}"
        );
        assert!(r.idle >= 0.0, "{r:?}");
    }
    assert_eq!(recs[0].first_seen, rfc3339(EPOCH_BASE + ms(500)));
    // The report's time is the newest packet's: A's, before the step.
    let newest = a.segments().iter().map(|g| g.ts).max().expect("packets");
    assert_eq!(recs[0].time, rfc3339(newest));
    assert_eq!(recs[0].last_seen, rfc3339(newest));
    // The same capture in time order says nothing.
    let mut packets = merged(Link::Ethernet, &[&a, &b]);
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&packets);
    let file = cap.file();
    assert_eq!(json_of(file.path(), &[]).len(), 2);
    // Nor does one a few milliseconds out of order, as captures on several CPUs are.
    packets.swap(1, 2);
    packets[1].ts = packets[2].ts + ms(9);
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&packets);
    let file = cap.file();
    assert_eq!(json_of(file.path(), &[]).len(), 2);
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
