//! Live capture through the kernel, in network namespaces: the kernel path's table equals the
//! `-T` table of a tcpdump recording of the same traffic, the traffic is unchanged by the
//! monitor, and nothing of tcptrack stays attached however it ends. Needs root (CI has it).

use std::process::Command;
use std::time::Duration;

use aya::programs::TcAttachType;
use tcptrack_tests::live::{
    essence, flood, headless, serial, start_headless, start_said, wait_attached, wait_detached,
    wait_refresh,
};
use tcptrack_tests::netns::{tcptrack_links, wait_until, Background, HostPair, Recorder, B4, B6};
use tcptrack_tests::probe::{Order, TcxProbe};
use tcptrack_tests::prometheus::{http_get, sample};
use tcptrack_tests::run::{json_of, Record};
use tcptrack_tests::tcptrack_bin;
use tcptrack_tests::tmux::Tmux;

#[test]
fn kernel_table_equals_the_capture_table_and_traffic_is_unchanged() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("live.pcap");
    let out = dir.path().join("kernel.json");
    let dump = Recorder::start(&hosts, &file);
    let with_tcpdump = hosts.a_promiscuity();
    let tcptrack = start_headless(&hosts, &out, &[], None);
    assert_eq!(
        hosts.a_promiscuity(),
        with_tcpdump + 1,
        "promiscuous while tcptrack runs (no -p)"
    );

    let runs = [
        (B4, 5301u16, 2_000_000u64, 300_000u64, false),
        (B6, 5302, 100_000, 1_500_000, false),
        (B4, 5303, 2_000, 9_000, true),
    ];
    for &(server, port, upload, reply, reset) in &runs {
        let got = hosts.transfer(server, port, upload, reply, reset);
        // The monitor changes nothing: each side received exactly what the other sent.
        assert_eq!(got.1, upload, "the server got the whole upload");
        if !reset {
            assert_eq!(got.0, reply, "the client got the whole reply");
        }
    }
    let log = dump.finish(&hosts);
    assert!(
        log.contains(" 0 packets dropped by kernel"),
        "tcpdump lost packets: {log}"
    );
    let from_capture = essence(&json_of(&file, &["-r", "600"]));
    assert_eq!(from_capture.len(), 3, "{from_capture:#?}");

    wait_refresh(
        &out,
        &format!("the kernel's table to be the capture's, {from_capture:#?}"),
        |r| essence(r) == from_capture,
    );

    drop(tcptrack.interrupt());
    wait_detached("SIGINT");
    assert_eq!(hosts.a_promiscuity(), 0, "promiscuous mode is given back");
}

/// A monitor never changes what the other programs on its hook see: two tcptrack on one
/// interface, with a counting program attached before them and one after them on each hook.
/// Both tcptrack count every connection exactly, and the probe after them counts as many
/// packets as the probe before them.
#[test]
fn two_monitors_and_the_rest_of_the_tcx_chain_see_every_packet() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("live.pcap");
    let hooks = [TcAttachType::Ingress, TcAttachType::Egress];
    let first = hooks.map(|h| TcxProbe::attach(&hosts.a, &hosts.a_if, h, Order::First));
    let outs = [dir.path().join("one.json"), dir.path().join("two.json")];
    let monitors: Vec<Background> = outs
        .iter()
        .map(|out| start_headless(&hosts, out, &["-p"], None))
        .collect();
    let last = hooks.map(|h| TcxProbe::attach(&hosts.a, &hosts.a_if, h, Order::Last));
    let dump = Recorder::start(&hosts, &file);
    // What the probes saw while the chain was being built does not count.
    let seen = |probes: &[TcxProbe; 2]| probes.each_ref().map(TcxProbe::packets);
    let (first_start, last_start) = (seen(&first), seen(&last));

    for (server, port) in [(B4, 5311u16), (B6, 5312)] {
        let got = hosts.transfer(server, port, 400_000, 100_000, false);
        assert_eq!(got, (100_000, 400_000), "both ends got all the bytes");
    }
    let log = dump.finish(&hosts);
    assert!(
        log.contains(" 0 packets dropped by kernel"),
        "tcpdump lost packets: {log}"
    );
    let (first_end, last_end) = (seen(&first), seen(&last));
    for (i, hook) in hooks.iter().enumerate() {
        let (b, a) = (first_end[i] - first_start[i], last_end[i] - last_start[i]);
        assert!(
            b >= 20,
            "{hook:?}: the first probe saw the transfers ({b} packets)"
        );
        assert_eq!(
            a, b,
            "{hook:?}: the probe after both tcptrack saw every packet the probe before them saw"
        );
    }
    let from_capture = essence(&json_of(&file, &["-r", "600"]));
    assert_eq!(from_capture.len(), 2, "{from_capture:#?}");
    for out in &outs {
        wait_refresh(
            out,
            &format!(
                "{}'s table to be the capture's, {from_capture:#?}",
                out.display()
            ),
            |r| essence(r) == from_capture,
        );
    }
    drop(monitors);
    drop((first, last));
    wait_detached("SIGKILL");
}

#[test]
fn nothing_stays_attached_after_any_exit() {
    let _serial = serial();
    wait_detached("the tests before");
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let bg = start_headless(&hosts, &dir.path().join("out.json"), &["-p"], None);
        assert_eq!(hosts.a_promiscuity(), 0, "-p: not promiscuous");
        bg.signal(signal);
        drop(bg);
        wait_detached(&format!("signal {signal}"));
    }
    // XDP on ingress, TC on egress.
    let bg = start_headless(&hosts, &dir.path().join("xdp.json"), &["--xdp"], None);
    let kinds = tcptrack_links();
    assert_eq!(kinds, ["tcx", "xdp"]);
    bg.signal(libc::SIGKILL);
    drop(bg);
    wait_detached("SIGKILL with --xdp");
    // The screen, left with q.
    let t = Tmux::start(
        &format!(
            "ip netns exec {} {} -i {}",
            hosts.a,
            tcptrack_bin().display(),
            hosts.a_if
        ),
        100,
        12,
    );
    t.wait_for(&format!("kernel on {}", hosts.a_if));
    wait_attached(2);
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    wait_detached("q");
    let (before, after) = t.stty();
    assert_eq!(before, after, "the terminal is restored");
}

/// Outside what the kernel decided before it ran libpcap's programs: bytes of the headers and a
/// length. (VLAN tags taken out of the frame are `kernel_filter.rs`'s: this host's kernel has
/// no VLAN devices.)
const FILTER: &str =
    "(tcp[2:2] = 5401 or tcp[0:2] = 5401 or ip6[40:2] = 5403 or ip6[42:2] = 5403) and greater 60";

#[test]
fn every_filter_runs_in_the_kernel_and_selects_what_libpcap_selects() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("kernel.json");
    let errors = dir.path().join("kernel.err");
    let tcptrack = start_headless(&hosts, &out, &[FILTER], Some(&errors));
    // The same filter through libpcap, on the same traffic.
    let pcap_out = dir.path().join("libpcap.json");
    let pcap_errors = dir.path().join("libpcap.err");
    let libpcap = start_said(
        headless(&hosts.a, &["-i", &hosts.a_if, "--libpcap", FILTER]),
        &pcap_out,
        &pcap_errors,
    );
    for (server, port) in [(B4, 5401u16), (B4, 5402), (B6, 5403), (B4, 5404)] {
        assert_eq!(
            hosts.transfer(server, port, 1_000, 2_000, false),
            (2_000, 1_000)
        );
    }
    let expected = ["198.18.0.2:5401", "[fd00::2]:5403"];
    let mut tables = Vec::new();
    for out in [&out, &pcap_out] {
        let seen = wait_refresh(out, "the two selected connections, closed", |seen| {
            seen.len() == 2 && seen.iter().all(|r| r.state == "CLOSED")
        });
        let mut table: Vec<(String, u64, u64)> = seen
            .iter()
            .map(|r| {
                (
                    r.server.clone(),
                    r.client_payload_bytes,
                    r.server_payload_bytes,
                )
            })
            .collect();
        table.sort();
        let servers: Vec<&str> = table.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(servers, expected);
        tables.push(table);
    }
    assert_eq!(tables[0], tables[1], "the kernel's table, then libpcap's");
    assert_eq!(tables[0][0].1, 1_000);
    drop(tcptrack.interrupt());
    drop(libpcap.interrupt());
    assert_eq!(
        std::fs::read_to_string(&errors).unwrap_or_default(),
        format!("tcptrack: kernel on {}\n", hosts.a_if),
        "the kernel path, no fallback"
    );
    wait_detached("SIGINT");
    // A bad filter is an error before anything is drawn or attached.
    let out = Command::new("ip")
        .args(["netns", "exec", &hosts.a])
        .arg(tcptrack_bin())
        .args(["-i", &hosts.a_if, "--output", "json", "port"])
        .output()
        .expect("run tcptrack");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad filter expression `port`"));
    assert!(tcptrack_links().is_empty());
}

/// Listens on host a, port 40000, and reads until the peer closes.
const LONG_SERVER: &str = r"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('198.18.0.1', 40000))
s.listen(1)
c, _ = s.accept()
while c.recv(65536):
    pass
";

/// From host b, port 5000 (lower than the server's), sends 100 bytes every 50 ms until it is
/// killed (however long the test takes).
const LONG_CLIENT: &str = r"
import socket, time
c = socket.socket()
c.bind(('198.18.0.2', 5000))
c.connect(('198.18.0.1', 40000))
while True:
    c.sendall(b'z' * 100)
    time.sleep(0.05)
";

/// Starts [`LONG_SERVER`] on host a and waits until it listens.
fn start_long_server(hosts: &HostPair) -> Background {
    let mut server = HostPair::cmd(&hosts.a, "python3");
    server.args(["-c", LONG_SERVER]);
    let server = Background::spawn(server);
    wait_until("the server to listen", Duration::from_secs(20), || {
        HostPair::listening(&hosts.a, 40000)
    });
    server
}

#[test]
fn a_connection_opened_before_the_start_gets_the_right_client_and_server() {
    let _serial = serial();
    let hosts = HostPair::new();
    let _server = start_long_server(&hosts);
    let mut client = HostPair::cmd(&hosts.b, "python3");
    client.args(["-c", LONG_CLIENT]);
    let _client = Background::spawn(client);
    wait_until("the connection to be up", Duration::from_secs(20), || {
        let out = HostPair::cmd(&hosts.a, "ss")
            .args(["-Htn", "state", "established"])
            .output()
            .expect("ss");
        String::from_utf8_lossy(&out.stdout).contains("198.18.0.2:5000")
    });
    // tcptrack starts on host a after the handshake: it picks the connection up mid-stream.
    // The lower port (5000) would make host b the server; host a's listening socket says
    // otherwise.
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.json");
    let tcptrack = start_headless(&hosts, &out, &[], None);
    let seen = wait_refresh(&out, "the connection on screen", |r| !r.is_empty());
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        (
            seen[0].client.as_str(),
            seen[0].server.as_str(),
            seen[0].state.as_str()
        ),
        ("198.18.0.2:5000", "198.18.0.1:40000", "ESTABLISHED")
    );
    drop(tcptrack.interrupt());
    wait_detached("SIGINT");

    // On the client's host: nobody listens on its local port 5000, so it is the client,
    // though its port is the lower one.
    let (out, errors) = (dir.path().join("b.json"), dir.path().join("b.err"));
    let tcptrack = start_said(headless(&hosts.b, &["-i", &hosts.b_if]), &out, &errors);
    let seen = wait_refresh(&out, "the connection on host b", |r| !r.is_empty());
    assert_eq!(
        (seen[0].client.as_str(), seen[0].server.as_str()),
        ("198.18.0.2:5000", "198.18.0.1:40000"),
        "{seen:#?}"
    );
    drop(tcptrack.interrupt());
    wait_detached("SIGINT");
}

/// From host b to host a's port 40000: 500 bytes every 10 ms until the file named by its
/// argument exists; then prints how many it sent and closes.
const STEADY_CLIENT: &str = r"
import os, socket, sys, time
c = socket.create_connection(('198.18.0.1', 40000))
n = 0
while not os.path.exists(sys.argv[1]):
    c.sendall(b's' * 500)
    n += 1
    time.sleep(0.01)
c.close()
print(n)
";

/// Where tcptrack serves its metrics in host a (the flood test reads its one-way flows there).
const METRICS: &str = "127.0.0.1:9100";

/// What tcptrack has told of a flood of new tuples: each packet is either counted, and the
/// kernel's count of its tuple makes a one-way flow in the table (`one_way`, from the metrics),
/// or not counted because the interval's flow map was full (`uncounted`, its losses line on
/// stderr; `uncounted_metric` is the same figure in the metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Told {
    one_way: u64,
    uncounted: u64,
    uncounted_metric: u64,
    events_lost: u64,
    evicted: u64,
}

impl Told {
    /// Reads the metrics (through host a) and the last losses line of `errors` (none yet: no
    /// loss).
    fn now(hosts: &HostPair, errors: &std::path::Path) -> Option<Self> {
        let text = http_get(&hosts.a, &format!("http://{METRICS}/metrics"))?;
        let metric = |name: &str| sample::<u64>(&text, name);
        // "tcptrack: kernel losses so far: N packets not counted (...), M control events"
        let said = std::fs::read_to_string(errors).unwrap_or_default();
        let (uncounted, events_lost) = said
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("tcptrack: kernel losses so far: "))
            .map_or(Some((0, 0)), |l| {
                let words: Vec<&str> = l.split(' ').collect();
                let events = words.iter().position(|w| *w == "control")?.checked_sub(1)?;
                Some((words[0].parse().ok()?, words[events].parse().ok()?))
            })?;
        Some(Self {
            one_way: metric("tcptrack_one_way_flows_total")?,
            uncounted,
            uncounted_metric: metric("tcptrack_kernel_packets_uncounted_total")?,
            events_lost,
            evicted: metric("tcptrack_evictions_total")?,
        })
    }

    /// Packets accounted for: counted into one-way flows, or said not counted.
    const fn accounted(self) -> u64 {
        self.one_way + self.uncounted
    }
}

/// Stops [`STEADY_CLIENT`] (the file `stop` it waits for) and returns the bytes it sent.
fn stop_steady(client: &mut Background, stop: &std::path::Path) -> u64 {
    std::fs::write(stop, b"").expect("stop file");
    wait_until(
        "the steady client to finish",
        Duration::from_secs(30),
        || client.0.try_wait().is_ok_and(|s| s.is_some()),
    );
    let mut sent = String::new();
    if let Some(mut o) = client.0.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut sent);
    }
    let sent: u64 = sent.trim().parse::<u64>().expect("packets sent") * 500;
    assert!(sent > 0);
    sent
}

/// The peak resident memory of process `pid` (`VmHWM`), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM")
}

/// A flood of 200,000 one-way tuples while a real connection sends: every packet of the flood
/// is accounted for, counted (a one-way flow in the table) or said not counted (the losses
/// line), exactly, however many refresh intervals the flood spans (that is the machine's
/// speed: a fast one sends it within one interval and loses more of it, a slow one spreads it
/// over several and counts more). The real connection stays exact through it, and memory stays
/// bounded.
#[test]
fn a_flood_of_tuples_stays_bounded_and_a_real_connection_stays_exact() {
    const FLOOD: u32 = 200_000;
    let _serial = serial();
    let hosts = HostPair::new();
    let _server = start_long_server(&hosts);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.json");
    let errors = dir.path().join("err.txt");
    // The real connection keeps its place in the kernel's map under the flood as long as it
    // has packets in every interval (the poller reserves its entry in the next map): it sends
    // every 10 ms, and a 1 s interval leaves room for a slow, busy machine to delay it.
    let args = [
        "--interval",
        "1",
        "--max-connections",
        "16384",
        "--metrics",
        METRICS,
    ];
    let tcptrack = start_headless(&hosts, &out, &args, Some(&errors));

    let mut client = HostPair::cmd(&hosts.b, "python3");
    let stop = dir.path().join("stop");
    client.args(["-c", STEADY_CLIENT]).arg(&stop);
    let mut client = Background::spawn(client);
    // Its handshake counted before the flood begins.
    wait_refresh(&out, "the real connection, ESTABLISHED", |r| {
        r.iter()
            .any(|r| r.server == "198.18.0.1:40000" && r.state == "ESTABLISHED")
    });
    let mut told = Told::default();
    wait_until("the metrics", Duration::from_secs(20), || {
        Told::now(&hosts, &errors).is_some_and(|t| {
            told = t;
            true
        })
    });
    let before = told;
    flood(&hosts, FLOOD);
    // The flood is over; the connection closes now.
    let sent = stop_steady(&mut client, &stop);

    // Every packet of the flood accounted for: losses are told, never silent. The figures only
    // grow: once they reach the flood, they must be it exactly (more would be packets of the
    // real connection not counted, or a tuple counted twice).
    let want = before.accounted() + u64::from(FLOOD);
    let accounted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            "every packet of the flood to be accounted for",
            Duration::from_secs(60),
            || {
                if let Some(t) = Told::now(&hosts, &errors) {
                    told = t;
                }
                told.accounted() >= want
            },
        );
    }));
    println!(
        "flood: {FLOOD} packets sent; {} counted (one-way flows taken in, {} of them forgotten \
         beyond the table's cap), {} said not counted; before the flood {before:?}",
        told.one_way - before.one_way,
        told.evicted - before.evicted,
        told.uncounted - before.uncounted,
    );
    assert!(
        accounted.is_ok() && told.accounted() == want,
        "the flood's {FLOOD} packets: {} counted + {} said not counted; told {told:?}, before \
         {before:?}; stderr: {}",
        told.one_way - before.one_way,
        told.uncounted - before.uncounted,
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
    // The losses line and the metrics tell the same figure; the flood has no control packets.
    let settled = Told::now(&hosts, &errors).expect("the metrics");
    assert_eq!(settled.uncounted, settled.uncounted_metric, "{settled:?}");
    assert_eq!(settled.events_lost, before.events_lost, "{settled:?}");
    // The real connection, through it all: exact.
    wait_refresh(&out, "the real connection, closed and exact", |r| {
        let mine: Vec<&Record> = r
            .iter()
            .filter(|r| r.server == "198.18.0.1:40000")
            .collect();
        mine.len() == 1 && mine[0].state == "CLOSED" && mine[0].client_payload_bytes == sent
    });
    // Memory stays bounded: the kernel map is fixed; one-way flows in the table are capped.
    let hwm_kib = peak_kib(tcptrack.0.id());
    assert!(hwm_kib < 120 * 1024, "peak memory {hwm_kib} KiB");
    drop(tcptrack.interrupt());
    wait_detached("SIGINT");
}
