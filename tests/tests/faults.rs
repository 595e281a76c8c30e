//! Faults a daemon meets over months, live in network namespaces: the monitored link goes down
//! and up under traffic, on the kernel path and on libpcap's; counting goes on, and nothing
//! sent is missing from the connection's counts. The wall clock steps an hour back and an hour
//! forward (libfaketime): the records' times follow it, speeds, idle times and expiry (on the
//! monotonic clock) do not move. SIGHUP a hundred times a second while thousands of connections
//! a second end: the flow log has each once, whole. Stopped (SIGSTOP) under traffic and let go
//! on: the kernel counted meanwhile, nothing is missing. The flow map full and the event ring
//! overflowing at once (a SYN flood while stopped): the losses reported once, and counting exact
//! again after. (The flow log's full file system is in
//! `metrics.rs`, beside the metrics that count what it lost.) Needs root (CI has it).

use std::process::Command;
use std::time::Duration;

use tcptrack_tests::live::{headless, serial, start_said, syn_flood, wait_refresh};
use tcptrack_tests::netns::{wait_until, Background, HostPair, LoneHost, A4, B4, DRAIN};
use tcptrack_tests::Record;

/// Connects to ADDR:PORT and sends 100 bytes every 50 ms, 120 times (what the link does not
/// carry while it is down waits in the socket and goes once it is up), then closes.
const STEADY: &str = r"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
for _ in range(120):
    c.sendall(b'x' * 100)
    time.sleep(0.05)
c.close()
";

/// A client in host a running `script` against a [`DRAIN`] server on `port` of host b, which
/// writes how many bytes it got into `got` once the client has closed; both killed on drop.
fn drained(
    hosts: &HostPair,
    script: &str,
    port: u16,
    got: &std::path::Path,
) -> (Background, Background) {
    let number = port.to_string();
    let server = HostPair::python_server(
        &hosts.b,
        DRAIN,
        port,
        &[B4.as_ref(), number.as_ref(), got.as_os_str()],
    );
    let client = HostPair::python(&hosts.a, script, &[B4.as_ref(), number.as_ref()]);
    (server, client)
}

/// Sets host a's link down, then up.
fn flap(hosts: &HostPair) {
    for state in ["down", "up"] {
        let status = Command::new("ip")
            .args(["-n", &hosts.a, "link", "set", &hosts.a_if, state])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip link set {state}: {status}");
        std::thread::sleep(Duration::from_millis(400));
    }
}

#[test]
fn counting_goes_on_across_link_flaps_on_both_paths() {
    let _one = serial();
    for (path, args) in [("kernel", &[][..]), ("libpcap", &["--libpcap"][..])] {
        let hosts = HostPair::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let (out, err) = (dir.path().join("live.json"), dir.path().join("live.err"));
        let mut cmd_args = vec!["-i", hosts.a_if.as_str()];
        cmd_args.extend_from_slice(args);
        let live = start_said(headless(&hosts.a, &cmd_args), &out, &err);
        let got = dir.path().join("got");
        let _traffic = drained(&hosts, STEADY, 5320, &got);
        let server = format!("{B4}:5320");
        // Three flaps while it sends: the first once tcptrack has counted some of it.
        wait_refresh(&out, &format!("{path}: the connection counted"), |recs| {
            recs.iter()
                .any(|r| r.server == server && r.client_payload_bytes > 0)
        });
        for _ in 0..3 {
            flap(&hosts);
        }
        wait_until(
            &format!("{path}: the server's whole read"),
            Duration::from_secs(30),
            || got.exists(),
        );
        let sent = std::fs::read_to_string(&got).expect("the count");
        assert_eq!(sent, "12000", "{path}: the server got everything");
        let end = wait_refresh(&out, &format!("{path}: everything counted"), |recs| {
            recs.iter().any(|r| {
                r.server == server && r.state == "CLOSED" && r.client_payload_bytes >= 12_000
            })
        });
        let rec = end
            .iter()
            .find(|r| r.server == server)
            .expect("the connection");
        assert_eq!(rec.client_payload_bytes, 12_000, "{path}: {rec:?}");
        let out = live.interrupt();
        assert_eq!(out.status.code(), Some(0), "{path}: tcptrack went on");
        let said = std::fs::read_to_string(&err).expect("stderr");
        assert_eq!(
            said.lines().count(),
            1,
            "{path}: only its path line: {said}"
        );
    }
}

/// Debian's libfaketime (package `libfaketime`): the wall clock a process reads, from a file it
/// re-reads, the monotonic clock left alone.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Holds one connection on the loopback, sending 100 bytes every 100 ms, for 30 s.
const TICKER: &str = r"
import socket, time
s = socket.socket()
s.bind(('127.0.0.1', 5330))
s.listen(1)
c = socket.create_connection(('127.0.0.1', 5330))
a, _ = s.accept()
for _ in range(300):
    c.sendall(b'x' * 100)
    a.recv(65536)
    time.sleep(0.1)
";

/// RFC 3339 UTC (`2026-12-07T07:12:48.461231594Z`) in seconds since the Unix epoch.
fn epoch_seconds(t: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| -> i64 { t[r].parse().expect("a number") };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    let frac: f64 = t[19..t.len() - 1].parse::<f64>().unwrap_or(0.0);
    secs as f64 + frac
}

/// Now on this machine's wall clock, in seconds since the Unix epoch.
fn real_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[test]
fn records_follow_the_wall_clock_when_it_steps_and_nothing_else_moves() {
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} (Debian's libfaketime; cargo xtask setup --tests installs it)"
    );
    let _one = serial();
    let host = LoneHost::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let offset = dir.path().join("offset");
    std::fs::write(&offset, "+0").expect("the offset");
    let (out, err) = (dir.path().join("live.json"), dir.path().join("live.err"));
    // libfaketime reads its offset file at every clock read: a file outside what confined
    // tcptrack may read. The clocks are the kernel's, which Landlock does not touch.
    let mut cmd = headless(
        &host.ns,
        &["-i", "lo", "--idle-timeout", "5", "--no-sandbox"],
    );
    cmd.env("LD_PRELOAD", FAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", &offset)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let live = start_said(cmd, &out, &err);
    let _ticker = Background::spawn({
        let mut c = HostPair::cmd(&host.ns, "python3");
        c.args(["-c", TICKER]);
        c
    });
    let of = |recs: &[Record]| recs.iter().find(|r| r.server == "127.0.0.1:5330").cloned();
    let moving = |r: &Record| r.state == "ESTABLISHED" && r.speed > 0 && r.idle < 1.0;
    let first = wait_refresh(&out, "the connection moving", |recs| {
        of(recs).is_some_and(|r| moving(&r))
    });
    let first = of(&first).expect("the connection");
    let first_seen = epoch_seconds(&first.first_seen);
    assert!(
        (epoch_seconds(&first.time) - real_now()).abs() < 5.0,
        "{first:?}"
    );
    for (step, hours) in [("-1h", -1.0), ("+1h", 1.0)] {
        std::fs::write(&offset, step).expect("the offset");
        let shift = hours * 3600.0;
        let after = wait_refresh(
            &out,
            &format!("a record written on the clock {step}"),
            |recs| {
                recs.first()
                    .is_some_and(|r| (epoch_seconds(&r.time) - (real_now() + shift)).abs() < 5.0)
            },
        );
        let r = of(&after).expect("still listed");
        // Its times moved with the wall clock, exactly; nothing measured on the monotonic clock
        // did: it moves on, idle under a second, not expired by --idle-timeout 5.
        let moved = epoch_seconds(&r.first_seen) - first_seen;
        assert!(
            (moved - shift).abs() < 0.5,
            "{step}: first seen moved {moved} s: {r:?}"
        );
        assert!(moving(&r), "{step}: {r:?}");
    }
    let out = live.interrupt();
    assert_eq!(out.status.code(), Some(0));
}

/// Accepts connections on ADDR:PORT and closes each at once, until killed.
const CLOSER: &str = r"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
while True:
    c, _ = s.accept()
    c.close()
";

/// Opens COUNT connections to ADDR:PORT one after the other, each from a client port of its
/// own (20000 on: a port the kernel picked again soon would make two connections one tuple,
/// which the kernel's per-interval counts cannot tell apart), each closed once the server has
/// closed it, and writes COUNT into the file named by its fourth argument when done.
const CHURN: &str = r"
import os, socket, sys
addr, port, count, done = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for i in range(count):
    c = socket.socket()
    c.bind(('', 20000 + i))
    c.connect((addr, port))
    c.recv(1)
    c.close()
with open(done + '.tmp', 'w') as f:
    f.write(str(count))
os.rename(done + '.tmp', done)
";

/// SIGHUP a hundred times a second while connections end by the hundreds a second: the flow
/// log, reopened at every one, has every connection once, every line whole.
#[test]
fn sighup_a_hundred_times_a_second_splits_or_loses_no_record() {
    const CONNECTIONS: usize = 10_000;
    let _one = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("flows.jsonl");
    let mut cmd = HostPair::cmd(
        &hosts.a,
        &tcptrack_tests::tcptrack_bin().display().to_string(),
    );
    cmd.args([
        "-i",
        &hosts.a_if,
        "--interval",
        "0.2",
        "-r",
        "0",
        "--output",
        "none",
    ])
    .arg("--flow-log")
    .arg(&log);
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let live = start_said(cmd, &out, &err);
    let _server = HostPair::python_server(&hosts.b, CLOSER, 5340, &[B4.as_ref(), "5340".as_ref()]);
    let done = dir.path().join("done");
    let count = CONNECTIONS.to_string();
    let _client = HostPair::python(
        &hosts.a,
        CHURN,
        &[
            B4.as_ref(),
            "5340".as_ref(),
            count.as_ref(),
            done.as_os_str(),
        ],
    );
    // A hundred a second while the connections end, and at least a hundred (a fast machine
    // may end them all within a second).
    let mut hups = 0u32;
    let start = std::time::Instant::now();
    while !done.exists() || hups < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the connections took too long"
        );
        live.signal(libc::SIGHUP);
        hups += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_until("a record per connection", Duration::from_secs(30), || {
        lines() >= CONNECTIONS
    });
    let flows = tcptrack_tests::flow_records(&std::fs::read_to_string(&log).expect("the log"));
    let connections: std::collections::BTreeSet<&str> =
        flows.iter().map(|f| f.client.as_str()).collect();
    assert_eq!(
        (flows.len(), connections.len()),
        (CONNECTIONS, CONNECTIONS),
        "every connection once, after {hups} SIGHUPs"
    );
    let out = live.interrupt();
    assert_eq!(out.status.code(), Some(0));
    let said = std::fs::read_to_string(&err).expect("stderr");
    assert_eq!(said.lines().count(), 1, "only its path line: {said}");
}

/// Connects to ADDR:PORT and sends 100 bytes every 10 ms (at least), 4,500 times, then closes:
/// 45 s or more, so it still sends once a 30 s stop from its first second is over.
const STREAM: &str = r"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
for _ in range(4500):
    c.sendall(b'x' * 100)
    time.sleep(0.01)
c.close()
";

/// tcptrack stopped (SIGSTOP) for 30 s under traffic, then let go on (SIGCONT): the kernel kept
/// counting meanwhile, so the connection's count is every byte the server got, and the
/// connections opened and closed while it was stopped are each listed with their bytes.
#[test]
fn stopped_and_continued_the_kernel_counts_lose_nothing() {
    const STOPPED: Duration = Duration::from_secs(30);
    let _one = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("live.json"), dir.path().join("live.err"));
    let live = start_said(headless(&hosts.a, &["-i", &hosts.a_if]), &out, &err);
    let got = dir.path().join("got");
    let _traffic = drained(&hosts, STREAM, 5350, &got);
    let server = format!("{B4}:5350");
    wait_refresh(&out, "the stream counted", |recs| {
        recs.iter()
            .any(|r| r.server == server && r.client_payload_bytes > 0)
    });
    live.signal(libc::SIGSTOP);
    // Meanwhile, 20 short connections, 1,000 bytes each way.
    for _ in 0..20 {
        let got = HostPair::transfer_in((&hosts.b, &hosts.a), A4, 5351, (1_000, 1_000), false);
        assert_eq!(got, (1_000, 1_000));
    }
    // Stopped this long, whatever else happened meanwhile: a wait on time itself.
    std::thread::sleep(STOPPED);
    live.signal(libc::SIGCONT);
    // The stream's last 15 s or so (a bound: a slow machine's sleeps last longer).
    wait_until("the server's whole read", Duration::from_secs(120), || {
        got.exists()
    });
    assert_eq!(std::fs::read_to_string(&got).expect("count"), "450000");
    let short = format!("{A4}:5351");
    let end = wait_refresh(&out, "everything counted", |recs| {
        recs.iter()
            .any(|r| r.server == server && r.state == "CLOSED" && r.client_payload_bytes >= 450_000)
            && recs.iter().filter(|r| r.server == short).count() >= 20
    });
    let stream = end.iter().find(|r| r.server == server).expect("the stream");
    assert_eq!(stream.client_payload_bytes, 450_000, "{stream:?}");
    let shorts: Vec<&Record> = end.iter().filter(|r| r.server == short).collect();
    assert_eq!(shorts.len(), 20);
    for r in shorts {
        assert_eq!(
            (
                r.state.as_str(),
                r.client_payload_bytes,
                r.server_payload_bytes
            ),
            ("CLOSED", 1_000, 1_000),
            "{r:?}"
        );
    }
    let out = live.interrupt();
    assert_eq!(out.status.code(), Some(0));
    let said = std::fs::read_to_string(&err).expect("stderr");
    assert_eq!(said.lines().count(), 1, "no loss to report: {said}");
}

/// The kernel's losses as the last "kernel losses so far" line of `said` gives them:
/// (packets not counted, control events lost); (0, 0) before any.
fn losses_said(said: &str) -> Option<(u64, u64)> {
    let Some(line) = said
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("tcptrack: kernel losses so far: "))
    else {
        return Some((0, 0));
    };
    let words: Vec<&str> = line.split(' ').collect();
    let events = words.iter().position(|w| *w == "control")?.checked_sub(1)?;
    Some((
        words.first()?.parse().ok()?,
        words.get(events)?.parse().ok()?,
    ))
}

/// The flow map full and the event ring overflowing at once (70,000 SYNs, each a tuple of its
/// own, while tcptrack is stopped: more than its 4,096 map entries and its 4 MiB ring hold),
/// then a normal connection: both losses are reported, in the metrics and on stderr alike,
/// each figure said once, and they grow no more; the connection after is counted exactly.
#[test]
fn after_the_map_filled_and_the_ring_overflowed_counting_is_exact_again() {
    const METRICS: &str = "127.0.0.1:9100";
    let _one = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = HostPair::cmd(
        &hosts.a,
        &tcptrack_tests::tcptrack_bin().display().to_string(),
    );
    cmd.args(["-i", &hosts.a_if, "--interval", "0.5", "-r", "0"])
        .args(["--max-connections", "4096"])
        .args(["--output", "none", "--metrics", METRICS]);
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let live = start_said(cmd, &out, &err);
    let url = format!("http://{METRICS}/metrics");
    let metric = |name: &str| {
        tcptrack_tests::prometheus::http_get(&hosts.a, &url)
            .and_then(|t| tcptrack_tests::prometheus::sample::<u64>(&t, name))
    };
    let losses = || {
        Some((
            metric("tcptrack_kernel_packets_uncounted_total")?,
            metric("tcptrack_kernel_events_lost_total")?,
        ))
    };
    wait_until("the metrics", Duration::from_secs(10), || {
        losses().is_some()
    });
    live.signal(libc::SIGSTOP);
    syn_flood(&hosts, 70_000);
    live.signal(libc::SIGCONT);
    // The losses, once the map and the ring are read again: both, and then no more.
    wait_until("both losses reported", Duration::from_secs(30), || {
        losses().is_some_and(|(uncounted, lost)| uncounted > 0 && lost > 0)
    });
    let reported = losses().expect("the metrics");
    // Three polls more: the flood's tuples were active in the interval it filled, so the next
    // map starts with their entries reserved; by the third poll they have had an interval
    // without a packet and are no longer carried over (on any machine: polls, not time).
    let polls = || metric("tcptrack_kernel_poll_seconds_count");
    let first = polls().expect("the polls");
    wait_until("three polls more", Duration::from_secs(30), || {
        polls().is_some_and(|n| n >= first + 3)
    });
    assert_eq!(losses(), Some(reported), "losses grew with no flood");
    let said = || std::fs::read_to_string(&err).unwrap_or_default();
    wait_until("the losses line", Duration::from_secs(10), || {
        losses_said(&said()) == Some(reported)
    });
    // A normal connection after it: counted exactly.
    let payload = |sender: &str| {
        metric(&format!(
            "tcptrack_payload_bytes_total{{sender=\"{sender}\"}}"
        ))
    };
    let closed = || metric("tcptrack_connections_ended_total{how=\"closed\"}");
    let before = (payload("client"), payload("server"), closed());
    let got = HostPair::transfer_in((&hosts.b, &hosts.a), A4, 5360, (5_000, 7_000), false);
    assert_eq!(got, (7_000, 5_000), "what the client and the server got");
    let want = (
        before.0.map(|b| b + 5_000),
        before.1.map(|b| b + 7_000),
        before.2.map(|b| b + 1),
    );
    let mut now = before;
    let exact = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the connection counted", Duration::from_secs(20), || {
            now = (payload("client"), payload("server"), closed());
            now == want
        });
    }));
    assert!(
        exact.is_ok(),
        "before {before:?}, now {now:?}, want {want:?}"
    );
    assert_eq!(losses(), Some(reported), "losses grew after the flood");
    let out = live.interrupt();
    assert_eq!(out.status.code(), Some(0));
    // Said once: both figures were final before tcptrack ran again (the flood was over), and
    // they are read together at each poll.
    let lines: Vec<(u64, u64)> = said()
        .lines()
        .filter(|l| l.starts_with("tcptrack: kernel losses so far"))
        .map(|l| losses_said(l).unwrap_or_else(|| panic!("a losses line: {l}")))
        .collect();
    assert_eq!(lines, [reported], "the losses said: {}", said());
    println!("losses: {reported:?} (packets not counted, events lost)");
}
