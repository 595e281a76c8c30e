//! `--metrics` and `--flow-log` live, in network namespaces: a real Prometheus server
//! (Debian's) scrapes tcptrack every second and its HTTP API gives the counters after known
//! traffic; the flow log of the same traffic has one record per connection with the same
//! totals; a flood of 100,000 tuples adds no series. Needs root (CI has it).

use std::path::Path;
use std::time::Duration;

use tcptrack_tests::live::{flood, serial, start_said, wait_detached};
use tcptrack_tests::netns::{wait_until, Background, HostPair, A4};
use tcptrack_tests::prometheus::{http_get, sample, Prometheus};
use tcptrack_tests::{flow_records, tcptrack_bin, FlowRecord};

/// Where tcptrack serves its metrics, in its host's namespace.
const METRICS: &str = "127.0.0.1:9100";

/// Connections from host b to host a, which serves them: (port, upload, reply, reset). A reset
/// server replies nothing, so that everything sent is on the wire before its RST.
const RUNS: [(u16, u64, u64, bool); 3] = [
    (5301, 200_000, 30_000, false),
    (5301, 1_000, 70_000, false),
    (5302, 5_000, 0, true),
];

/// tcptrack in host a, `extra` after its metrics and flow-log options, once it said its path.
fn start(hosts: &HostPair, dir: &Path, extra: &[&str]) -> Background {
    let mut cmd = HostPair::cmd(&hosts.a, &tcptrack_bin().display().to_string());
    cmd.args(["-i", &hosts.a_if, "--interval", "0.2", "-r", "1"])
        .args(["--metrics", METRICS, "--flow-log"])
        .arg(dir.join("flows.jsonl"))
        .args(extra);
    start_said(cmd, &dir.join("out"), &dir.join("err"))
}

/// Runs [`RUNS`], each checked whole at both ends.
fn traffic(hosts: &HostPair) {
    for (port, up, down, reset) in RUNS {
        let got = HostPair::transfer_in((&hosts.b, &hosts.a), A4, port, (up, down), reset);
        assert_eq!(got.1, up, "the server got the whole upload");
        if !reset {
            assert_eq!(got.0, down, "the client got the whole reply");
        }
    }
}

/// Sums over [`RUNS`] of (upload, reply), all or of one port.
fn sent(port: Option<u16>) -> (u64, u64) {
    RUNS.iter()
        .filter(|r| port.is_none_or(|p| p == r.0))
        .fold((0, 0), |(u, d), r| (u + r.1, d + r.2))
}

/// Waits for one record per connection of [`RUNS`] in the flow log, and checks each.
fn check_flow_log(dir: &Path) -> Vec<FlowRecord> {
    let log = dir.join("flows.jsonl");
    let mut flows = Vec::new();
    wait_until("a record per connection", Duration::from_secs(20), || {
        flows = flow_records(&std::fs::read_to_string(&log).unwrap_or_default());
        flows.len() >= RUNS.len()
    });
    assert_eq!(flows.len(), RUNS.len(), "{flows:#?}");
    flows.sort_by(|a, b| a.first_seen.cmp(&b.first_seen));
    for (f, (port, up, down, reset)) in flows.iter().zip(RUNS) {
        assert_eq!(f.server, format!("{A4}:{port}"), "{f:?}");
        assert_eq!((f.client_payload_bytes, f.server_payload_bytes), (up, down));
        let ended = if reset {
            ("RESET", "reset")
        } else {
            ("CLOSED", "closed")
        };
        assert_eq!((f.state.as_str(), f.how.as_str()), ended, "{f:?}");
        assert_eq!(f.payload_bytes, up + down);
        assert!(f.duration >= 0.0 && f.first_seen <= f.last_seen, "{f:?}");
    }
    flows
}

/// Series of tcptrack_* a scrape has at most with `--metrics-ports 50`: 58 whatever the traffic
/// (info 1, connections by state 6, opened 1, ended 4, payload 2, packets 2, health 6, the
/// refresh and kernel poll histograms' 16 buckets, sum and count 2 x 18), and 3 per port with a
/// series (connections, payload by 2 senders), `other` included.
const SERIES_BOUND: f64 = 58.0 + 3.0 * 51.0;

/// Waits until Prometheus has the bytes each way and the connections opened and ended of
/// [`RUNS`], exactly; then checks how they ended and the series per port and of tcptrack_info.
fn check_prometheus(prom: &Prometheus, interface: &str) {
    let (up, down) = sent(None);
    let v = |expr: &str| prom.value(expr);
    let n = f64::from(u8::try_from(RUNS.len()).expect("few"));
    let want = [Some(up as f64), Some(down as f64), Some(n), Some(n)];
    let mut seen = Vec::new();
    let exact = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            "Prometheus's exact counters",
            Duration::from_secs(30),
            || {
                seen = [
                    r#"tcptrack_payload_bytes_total{sender="client"}"#,
                    r#"tcptrack_payload_bytes_total{sender="server"}"#,
                    "tcptrack_connections_opened_total",
                    "sum(tcptrack_connections_ended_total)",
                ]
                .map(v)
                .to_vec();
                seen == want
            },
        );
    }));
    assert!(
        exact.is_ok(),
        "seen {seen:?}, want {want:?}; {}",
        prom.log()
    );
    let ended = |how: &str| {
        v(&format!(
            r#"tcptrack_connections_ended_total{{how="{how}"}}"#
        ))
    };
    assert_eq!((ended("closed"), ended("reset")), (Some(2.0), Some(1.0)));
    assert_eq!(
        v("sum(tcptrack_connections)"),
        Some(0.0),
        "all forgotten after -r 1"
    );
    for port in [5301, 5302] {
        let (up, down) = sent(Some(port));
        let series =
            |s| format!(r#"tcptrack_server_payload_bytes_total{{port="{port}",sender="{s}"}}"#);
        assert_eq!(
            (v(&series("client")), v(&series("server"))),
            (Some(up as f64), Some(down as f64))
        );
    }
    let polls = v("tcptrack_kernel_poll_seconds_count");
    assert!(polls > Some(0.0), "kernel polls timed: {polls:?}");
    let info = prom.query("tcptrack_info").expect("tcptrack_info");
    assert_eq!(info.len(), 1, "{info:?}");
    let labels = &info[0].0;
    assert_eq!(
        (labels["path"].as_str(), labels["interface"].as_str()),
        ("kernel", interface)
    );
}

/// A flood of 100,000 one-way tuples from host b: every packet of it accounted for (a one-way
/// flow taken in, or a packet the kernel's full map did not count), exactly, whatever the
/// number of refresh intervals it spans; and no series beyond the bound, in fact none added,
/// on any scrape.
fn flood_adds_no_series(hosts: &HostPair, prom: &Prometheus) {
    const FLOOD: u32 = 100_000;
    let v = |expr: &str| prom.value(expr);
    let count = r#"count({__name__=~"tcptrack_.*"})"#;
    let before = v(count).expect("series count");
    assert!(before <= SERIES_BOUND, "{before} series");
    let accounted = "tcptrack_one_way_flows_total + tcptrack_kernel_packets_uncounted_total";
    let start = v(accounted).expect("one-way flows and uncounted packets");
    flood(hosts, FLOOD);
    let want = start + f64::from(FLOOD);
    // The figures only grow: once they reach the flood, they must be it exactly.
    let mut seen = None;
    let all = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            "a scrape with every packet of the flood accounted for",
            Duration::from_secs(60),
            || {
                seen = v(accounted);
                seen.is_some_and(|n| n >= want)
            },
        );
    }));
    assert!(
        all.is_ok() && seen == Some(want),
        "one-way flows and uncounted packets: {seen:?}, {start} before a flood of {FLOOD}"
    );
    let most = v(&format!("max_over_time({count}[5m:1s])")).expect("most series");
    assert_eq!(
        (v(count), most),
        (Some(before), before),
        "the flood added series"
    );
}

#[test]
fn prometheus_reads_exact_counters_and_a_flood_adds_no_series() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let tcptrack = start(&hosts, dir.path(), &["--output", "none"]);
    let prom = Prometheus::start(&hosts.a, METRICS);
    traffic(&hosts);
    check_prometheus(&prom, &hosts.a_if);
    // The flow log of the same traffic: one record each, the same totals.
    let flows = check_flow_log(dir.path());
    let total: u64 = flows.iter().map(|f| f.client_payload_bytes).sum();
    let counted = prom.value(r#"tcptrack_payload_bytes_total{sender="client"}"#);
    assert_eq!(Some(total as f64), counted);
    flood_adds_no_series(&hosts, &prom);
    drop(tcptrack.interrupt());
    wait_detached("SIGINT");
}

/// The libpcap path, beside `--output json`: the scrape (a plain GET) has the exact counters,
/// and the flow log one record per connection.
#[test]
fn libpcap_counts_exactly_beside_json_output() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let tcptrack = start(&hosts, dir.path(), &["--libpcap", "--output", "json"]);
    traffic(&hosts);
    let (up, down) = sent(None);
    let url = format!("http://{METRICS}/metrics");
    let mut text = String::new();
    let want = [
        format!(r#"tcptrack_payload_bytes_total{{sender="client"}} {up}"#),
        format!(r#"tcptrack_payload_bytes_total{{sender="server"}} {down}"#),
        r#"tcptrack_connections_ended_total{how="closed"} 2"#.to_owned(),
        r#"tcptrack_connections_ended_total{how="reset"} 1"#.to_owned(),
        "tcptrack_connections_opened_total 3".to_owned(),
        r#"tcptrack_info{version="0.1.0",path="libpcap",interface="veth-a"} 1"#.to_owned(),
    ];
    let exact = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the exact counters", Duration::from_secs(30), || {
            text = http_get(&hosts.a, &url).unwrap_or_default();
            want.iter().all(|w| text.lines().any(|l| l == w))
        });
    }));
    assert!(exact.is_ok(), "want {want:#?} in {text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    check_flow_log(dir.path());
    let out = tcptrack.interrupt();
    assert_eq!(out.status.code(), Some(0));
    // The JSON output went on beside them.
    let json = std::fs::read_to_string(dir.path().join("out")).expect("output");
    assert!(json.contains(r#""server":"198.18.0.1:5301""#), "{json}");
}

/// A small tmpfs of its own, unmounted on drop.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tcptrack-test"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs: {status}");
        Self(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Fills it with a file written until not one byte more fits; returns the file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("the filler");
        for size in [4096, 1] {
            let chunk = vec![0u8; size];
            while matches!(f.write(&chunk), Ok(n) if n > 0) {}
        }
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// `n` connections from host b to host a, each closed after 100 bytes each way.
fn connections(hosts: &HostPair, n: usize) {
    for _ in 0..n {
        let got = HostPair::transfer_in((&hosts.b, &hosts.a), A4, 5303, (100, 100), false);
        assert_eq!(got, (100, 100), "the whole exchange");
    }
}

/// The flow log's file system fills up under traffic, then has room again: tcptrack goes on,
/// says so once each way on stderr, counts every record it could not write, writes again by
/// itself, and the file holds only whole records.
#[test]
fn a_full_flow_log_file_system_loses_only_what_does_not_fit() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = SmallFs::new();
    let log = fs.path().join("flows.jsonl");
    let mut cmd = HostPair::cmd(&hosts.a, &tcptrack_bin().display().to_string());
    cmd.args(["-i", &hosts.a_if, "--interval", "0.2", "-r", "0"])
        .args(["--output", "none", "--metrics", METRICS, "--flow-log"])
        .arg(&log);
    let tcptrack = start_said(cmd, &dir.path().join("out"), &dir.path().join("err"));
    let url = format!("http://{METRICS}/metrics");
    let lost = || {
        let text = http_get(&hosts.a, &url).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("tcptrack_flow_log_records_lost_total "))
            .and_then(|n| n.parse::<u64>().ok())
    };
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // Each connection ends as one record, in the file or counted lost.
    let accounted = |made: usize| {
        wait_until(
            &format!("{made} records written or counted lost"),
            Duration::from_secs(30),
            || lost().is_some_and(|n| lines() + usize::try_from(n).unwrap_or(0) >= made),
        );
    };
    connections(&hosts, 10);
    accounted(10);
    assert_eq!((lines(), lost()), (10, Some(0)), "room for all at first");
    let filler = fs.fill();
    connections(&hosts, 20);
    accounted(30);
    let (written, missed) = (lines(), lost().unwrap_or(0));
    assert!(
        missed > 0,
        "nothing lost on a full file system: {written} lines"
    );
    std::fs::remove_file(filler).expect("remove the filler");
    connections(&hosts, 10);
    accounted(40);
    let (after, missed_after) = (lines(), lost().unwrap_or(0));
    assert_eq!(missed_after, missed, "none lost once there was room again");
    assert_eq!(after, written + 10, "the records after the room came back");
    assert_eq!(
        after + usize::try_from(missed).unwrap_or(0),
        40,
        "every connection once"
    );
    // Whole records only (a line the full file system cut was taken back out), one per
    // connection.
    let flows = flow_records(&std::fs::read_to_string(&log).expect("the flow log"));
    let clients: std::collections::BTreeSet<&str> =
        flows.iter().map(|f| f.client.as_str()).collect();
    assert_eq!(clients.len(), flows.len(), "never two for one connection");
    assert!(flows.iter().all(|f| f.payload_bytes == 200), "{flows:#?}");
    let out = tcptrack.interrupt();
    assert_eq!(out.status.code(), Some(0), "tcptrack went on");
    let said = std::fs::read_to_string(dir.path().join("err")).expect("stderr");
    let count = |what: &str| said.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        (
            count("cannot write the flow log"),
            count("is written again")
        ),
        (1, 1),
        "{said}"
    );
    assert!(
        said.contains(&format!("({missed} records could not be written)")),
        "{said}"
    );
    drop(fs);
    wait_detached("SIGINT");
}

/// Requests as fast as one local client sends them (`ab`, 8 at a time, kept alive: thousands a
/// second) do not hold the monitor back: while they go on, scrapes of
/// its own succeed, the refreshes go on, a connection that ends is in the flow log, and memory
/// grows by less than 8 MiB.
#[test]
fn a_flood_of_requests_does_not_hold_the_monitor_back() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let tcptrack = start(&hosts, dir.path(), &["--output", "none"]);
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", tcptrack.0.id()))
            .expect("tcptrack's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("VmRSS")
    };
    let url = format!("http://{METRICS}/metrics");
    let refreshes = || {
        let text = http_get(&hosts.a, &url).expect("a scrape while the flood goes on");
        sample::<u64>(&text, "tcptrack_refresh_seconds_count").expect("the refresh count")
    };
    let before = rss();
    let mut ab = HostPair::cmd(&hosts.a, "ab");
    ab.args(["-q", "-k", "-c", "8", "-t", "600", "-n", "100000000", &url]);
    let ab = Background::spawn(ab);
    // The flood is on once ab's 8 connections are.
    wait_until("ab's connections", Duration::from_secs(20), || {
        let out = HostPair::cmd(&hosts.a, "ss")
            .args(["-Htn", "state", "established", "dport", "=", ":9100"])
            .output()
            .expect("ss");
        String::from_utf8_lossy(&out.stdout).lines().count() >= 8
    });
    let first = refreshes();
    connections(&hosts, 1);
    let log = dir.path().join("flows.jsonl");
    wait_until(
        "the connection in the flow log",
        Duration::from_secs(20),
        || flow_records(&std::fs::read_to_string(&log).unwrap_or_default()).len() == 1,
    );
    wait_until("ten more refreshes", Duration::from_secs(20), || {
        refreshes() >= first + 10
    });
    let out = ab.interrupt();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    eprintln!(
        "ab: {} requests, {} a second",
        field("Complete requests:").unwrap_or_default(),
        field("Requests per second:").unwrap_or_default()
    );
    let complete: u64 = field("Complete requests:")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("ab's summary: {text}"));
    assert!(complete > 0, "{text}");
    assert_eq!(field("Non-2xx responses:"), None, "{text}");
    let after = rss();
    assert!(
        after < before + 8 * 1024,
        "RSS {before} KiB, then {after} KiB"
    );
}
