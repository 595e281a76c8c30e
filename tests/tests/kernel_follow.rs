//! The kernel path under what production does to it, in network namespaces: interfaces that
//! come and go, a burst of new connections faster than any refresh, and traffic that goes on
//! while the flow maps flip under it. Needs root (CI has it).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tcptrack_tests::live::{
    essence, headless, last_refresh, serial, start_headless, start_said, wait_attached,
    wait_closed_exact, wait_detached, wait_refresh,
};
use tcptrack_tests::netns::{
    tcptrack_links, wait_until, wait_until_every, Background, HostPair, Recorder, A4, B4, SERVER,
};
use tcptrack_tests::run::{json_of, Record};

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .expect("run ip")
        .success();
    assert!(ok, "ip {}", args.join(" "));
}

#[test]
fn the_interface_going_away_ends_the_kernel_path_with_one_line() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, errors) = (dir.path().join("out.json"), dir.path().join("err.txt"));
    let mut tcptrack = start_headless(&hosts, &out, &[], Some(&errors));
    ip(&["-n", &hosts.a, "link", "del", &hosts.a_if]);
    wait_until("tcptrack to exit", Duration::from_secs(10), || {
        tcptrack.0.try_wait().is_ok_and(|s| s.is_some())
    });
    let status = tcptrack.0.wait().expect("exit status");
    let err = std::fs::read_to_string(&errors).expect("stderr");
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        format!(
            "tcptrack: kernel on {0}\ntcptrack: cannot capture on {0}: the interface went away ({0})\n",
            hosts.a_if
        )
    );
    wait_detached("the interface went away");
}

#[test]
fn any_follows_the_interfaces_that_come_and_go() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, errors) = (dir.path().join("any.json"), dir.path().join("any.err"));
    let before = tcptrack_links().len();
    let tcptrack = start_said(headless(&hosts.a, &["-i", "any"]), &out, &errors);
    // Every interface that is up: lo and the veth, TC on ingress and egress of each.
    wait_attached(before + 4);
    assert_eq!(
        hosts.transfer(B4, 5501, 3_000, 4_000, false),
        (4_000, 3_000)
    );
    wait_closed_exact(&out, "198.18.0.2:5501", (3_000, 4_000));
    // A second link between the hosts comes up while tcptrack runs.
    let (a2, b2) = ("veth-a2", "veth-b2");
    ip(&[
        "-n", &hosts.a, "link", "add", a2, "type", "veth", "peer", "name", b2, "netns", &hosts.b,
    ]);
    for (ns, ifname, addr) in [
        (&hosts.a, a2, "198.19.0.1/24"),
        (&hosts.b, b2, "198.19.0.2/24"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", ifname]);
        ip(&["-n", ns, "link", "set", ifname, "up"]);
    }
    wait_attached(before + 6);
    assert_eq!(
        hosts.transfer("198.19.0.2", 5601, 3_000, 4_000, false),
        (4_000, 3_000)
    );
    wait_closed_exact(&out, "198.19.0.2:5601", (3_000, 4_000));
    // It goes: its links go, and tcptrack goes on with the others.
    ip(&["-n", &hosts.a, "link", "del", a2]);
    wait_attached(before + 4);
    assert_eq!(
        hosts.transfer(B4, 5602, 1_000, 2_000, false),
        (2_000, 1_000)
    );
    wait_closed_exact(&out, "198.18.0.2:5602", (1_000, 2_000));
    drop(tcptrack.interrupt());
    wait_detached("SIGINT");
}

/// Listens on 198.18.0.1:PORT with the largest backlog and never accepts: the kernel holds the
/// server side of every connection. Prints "ready"; runs until killed.
const HOLDING_LISTENER: &str = r"
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('198.18.0.1', int(sys.argv[1])))
s.listen(65535)
print('ready', flush=True)
while True:
    time.sleep(3600)
";

/// Opens N connections to 198.18.0.1:PORT as fast as it can, prints "open", and closes them
/// all when the file named by its last argument exists.
const BURST_CLIENT: &str = r"
import os, resource, socket, sys, time
port, n, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))
socks = [socket.create_connection(('198.18.0.1', port)) for _ in range(n)]
print('open', flush=True)
while not os.path.exists(stop):
    time.sleep(0.05)
for s in socks:
    s.close()
";

/// Waits until the last refresh in `out` satisfies `done`, reading the (large) file once a
/// second; returns that refresh.
fn wait_big_refresh(out: &Path, what: &str, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    let mut seen = Vec::new();
    wait_until_every(
        what,
        Duration::from_secs(60),
        Duration::from_secs(1),
        || {
            seen = last_refresh(out);
            done(&seen)
        },
    );
    seen
}

/// Records of connections to `port` in `state`, each with a client of host b and the
/// listener as server.
fn count(recs: &[Record], port: u16, states: &[&str]) -> usize {
    let server = format!("{A4}:{port}");
    recs.iter()
        .filter(|r| r.server == server && r.client.starts_with(&format!("{B4}:")))
        .filter(|r| states.contains(&r.state.as_str()))
        .count()
}

#[test]
fn a_burst_of_twenty_thousand_connections_loses_no_event() {
    const PER_CLIENT: usize = 10_000;
    const PORT: u16 = 5700;
    let _serial = serial();
    let hosts = HostPair::new();
    for setting in [
        "net.core.somaxconn=65535",
        "net.ipv4.tcp_max_syn_backlog=65535",
    ] {
        let ok = HostPair::cmd(&hosts.a, "sysctl")
            .args(["-qw", setting])
            .status()
            .expect("sysctl")
            .success();
        assert!(ok, "{setting}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, errors) = (dir.path().join("out.json"), dir.path().join("err.txt"));
    let mut listener = HostPair::cmd(&hosts.a, "python3");
    listener.args(["-c", HOLDING_LISTENER, &PORT.to_string()]);
    let listener = Background::spawn(listener);
    wait_until("the listener", Duration::from_secs(20), || {
        HostPair::listening(&hosts.a, PORT)
    });
    let args = ["--interval", "1", "-p"];
    let tcptrack = start_headless(&hosts, &out, &args, Some(&errors));
    let stop = dir.path().join("stop");
    let clients: Vec<Background> = (0..2)
        .map(|_| {
            let mut c = HostPair::cmd(&hosts.b, "python3");
            c.args(["-c", BURST_CLIENT, &PORT.to_string()])
                .arg(PER_CLIENT.to_string())
                .arg(&stop);
            Background::spawn(c)
        })
        .collect();
    let all = 2 * PER_CLIENT;
    let seen = wait_big_refresh(&out, "every connection ESTABLISHED", |r| {
        count(r, PORT, &["ESTABLISHED"]) == all
    });
    assert_eq!(count(&seen, PORT, &["ESTABLISHED"]), all);
    // Every event reached the table: nothing reported lost.
    let path = format!("tcptrack: kernel on {}\n", hosts.a_if);
    let err = std::fs::read_to_string(&errors).unwrap_or_default();
    assert_eq!(err, path, "stderr");
    // All closed: the clients close (FIN), then the listener goes (RST for what it held).
    std::fs::write(&stop, b"").expect("stop file");
    drop(clients);
    drop(listener);
    let seen = wait_big_refresh(&out, "every connection CLOSED or RESET", |r| {
        count(r, PORT, &["CLOSED", "RESET"]) == all
    });
    assert_eq!(count(&seen, PORT, &["CLOSED", "RESET"]), all);
    let err = std::fs::read_to_string(&errors).unwrap_or_default();
    assert_eq!(err, path, "stderr");
    drop(tcptrack.interrupt());
    wait_detached("SIGINT");
}

/// Connects to ADDR:PORT and sends 32 KiB every 2 ms for SECONDS, half-closes, reads the
/// reply to its end and prints its length.
const PACED_CLIENT: &str = r"
import socket, sys, time
addr, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = socket.create_connection((addr, port))
end = time.time() + seconds
sent = 0
while time.time() < end:
    c.sendall(b'p' * 32768)
    sent += 32768
    time.sleep(0.002)
c.shutdown(socket.SHUT_WR)
got = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    got += len(d)
print(sent, got)
";

#[test]
fn counts_stay_exact_while_the_maps_flip_under_traffic() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, out) = (dir.path().join("live.pcap"), dir.path().join("out.json"));
    let dump = Recorder::start(&hosts, &file);
    // A flip every 50 ms: 50 of them during the transfer.
    let tcptrack = start_headless(&hosts, &out, &["--interval", "0.05"], None);
    let mut server = HostPair::cmd(&hosts.b, "python3");
    server.args(["-c", SERVER, B4, "5801", "3000000", "fin"]);
    let server = Background::spawn(server);
    wait_until("the server", Duration::from_secs(20), || {
        HostPair::listening(&hosts.b, 5801)
    });
    let client = HostPair::cmd(&hosts.a, "python3")
        .args(["-c", PACED_CLIENT, B4, "5801", "2.5"])
        .output()
        .expect("run the client");
    let said = String::from_utf8_lossy(&client.stdout).into_owned();
    let (sent, got): (u64, u64) = match said.split_whitespace().collect::<Vec<_>>()[..] {
        [s, g] => (s.parse().expect("sent"), g.parse().expect("got")),
        _ => panic!("client: {said} {}", String::from_utf8_lossy(&client.stderr)),
    };
    assert_eq!(got, 3_000_000);
    drop(server);
    let log = dump.finish(&hosts);
    assert!(log.contains(" 0 packets dropped by kernel"), "{log}");
    let from_capture = essence(&json_of(&file, &["-r", "600"]));
    assert_eq!(from_capture.len(), 1, "{from_capture:#?}");
    let (_, (_, up, down)) = from_capture.iter().next().expect("one");
    assert!(*up >= sent && *down >= got, "{from_capture:?}");
    wait_refresh(
        &out,
        &format!("the kernel's table to be the capture's, {from_capture:#?}"),
        |r| essence(r) == from_capture,
    );
    drop(tcptrack.interrupt());
    wait_detached("SIGINT");
}

/// The TC filters tcptrack has on host a's interface, one line each (`tc filter show`).
fn netlink_filters(hosts: &HostPair) -> Vec<String> {
    let mut lines = Vec::new();
    for hook in ["ingress", "egress"] {
        let out = Command::new("tc")
            .args(["-n", &hosts.a, "filter", "show", "dev", &hosts.a_if, hook])
            .output()
            .expect("tc filter show");
        lines.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("tcptrack_tc"))
                .map(|l| format!("{hook}: {l}")),
        );
    }
    lines
}

/// tcptrack in host a with TC hooked through netlink (as on kernels before 6.6), writing JSON
/// into `out`, once its filters are there.
fn start_netlink(hosts: &HostPair, out: &Path, errors: &Path) -> Background {
    let mut cmd = headless(&hosts.a, &["-i", &hosts.a_if]);
    cmd.env("TCPTRACK_TC_HOOK", "netlink");
    start_said(cmd, out, errors)
}

#[test]
fn tc_through_netlink_counts_and_leaves_nothing_even_after_sigkill() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, errors) = (dir.path().join("out.json"), dir.path().join("err.txt"));
    let first = start_netlink(&hosts, &out, &errors);
    assert_eq!(netlink_filters(&hosts).len(), 2, "ingress and egress");
    let counted = |port: u16| wait_closed_exact(&out, &format!("{B4}:{port}"), (3_000, 7_000));
    assert_eq!(
        hosts.transfer(B4, 5951, 3_000, 7_000, false),
        (7_000, 3_000)
    );
    counted(5951);
    // SIGKILL leaves the filters behind; the next start takes them off and counts once.
    first.signal(libc::SIGKILL);
    drop(first);
    assert_eq!(netlink_filters(&hosts).len(), 2, "left behind by SIGKILL");
    let second = start_netlink(&hosts, &out, &errors);
    assert_eq!(
        netlink_filters(&hosts).len(),
        2,
        "{:#?}",
        netlink_filters(&hosts)
    );
    let err = std::fs::read_to_string(&errors).unwrap_or_default();
    assert_eq!(
        err,
        format!("tcptrack: kernel on {} (TC through netlink)\n", hosts.a_if)
    );
    assert_eq!(
        hosts.transfer(B4, 5952, 3_000, 7_000, false),
        (7_000, 3_000)
    );
    counted(5952);
    // Every exit it sees takes its filters off.
    drop(second.interrupt());
    assert_eq!(netlink_filters(&hosts), Vec::<String>::new());
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let t = start_netlink(&hosts, &out, &errors);
        assert_eq!(netlink_filters(&hosts).len(), 2);
        t.signal(signal);
        wait_until("tcptrack to end", Duration::from_secs(10), || {
            netlink_filters(&hosts).is_empty()
        });
        drop(t);
    }
}

/// The libpcap path (every fallback takes it) moves on the clock: a connection that closes and
/// is followed by silence shows CLOSED with all its bytes, with no later packet to push it.
#[test]
fn the_libpcap_path_shows_the_last_packets_without_waiting_for_more() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, errors) = (dir.path().join("out.json"), dir.path().join("err.txt"));
    let cmd = headless(&hosts.a, &["--libpcap", "-i", &hosts.a_if]);
    let tcptrack = start_said(cmd, &out, &errors);
    assert_eq!(
        hosts.transfer(B4, 5961, 2_000, 3_000, false),
        (3_000, 2_000)
    );
    // Nothing else crosses the link from here on.
    wait_closed_exact(&out, "198.18.0.2:5961", (2_000, 3_000));
    drop(tcptrack.interrupt());
}
