//! IPFIX export, live, to Debian's nfcapd in a test host: each connection of known traffic
//! (FIN closes, a reset, IPv4 and IPv6, a slow transfer crossing the active timeout) reaches
//! the collector with its ends and, each way, the packets and IP bytes a tcpdump recording of
//! the same link holds; softflowd (`-b -v 10`) on the same traffic to the same collector gives
//! the same connections and counts. Needs root (CI has it).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tcptrack_tests::live::{serial, start_headless};
use tcptrack_tests::netns::{wait_until, Background, HostPair, Recorder, B4, B6, SERVER};
use tcptrack_tests::on_capture::merged;
use tcptrack_tests::run::{stdout_of, tshark_packets};
use tcptrack_tests::{tcptrack, CaptureSpec, Format, Link, Session, Side, EPOCH_BASE};

/// The collector's port, on host a's loopback (not the link tcptrack watches).
const COLLECTOR_PORT: u16 = 4739;
/// tcptrack's observation domain: softflowd's is 0, and a collector tells exporters of one
/// address apart by it.
const DOMAIN: u32 = 38;

/// Sends CHUNKS times 1,000 bytes, one every EVERY seconds, half-closes, reads the reply.
const PACED: &str = r"
import socket, sys, time
addr, port, chunks, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
c = socket.create_connection((addr, port))
for _ in range(chunks):
    c.sendall(b'z' * 1000)
    time.sleep(every)
c.shutdown(socket.SHUT_WR)
while c.recv(65536):
    pass
c.close()
";

/// A connection's two ends, as a collector's record names them: source, destination.
type Ends = (String, String);

/// Packets and IP bytes each way: from the first end named, then from the second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    packets: [u64; 2],
    octets: [u64; 2],
}

/// What the recording holds, by (sender, receiver): packets and IP bytes (IPv4 total length,
/// IPv6 payload length and its 40-byte header), read by tshark.
fn recorded(file: &Path) -> BTreeMap<Ends, (u64, u64)> {
    let mut by = BTreeMap::<Ends, (u64, u64)>::new();
    for p in tshark_packets(file, &[], &["ip.len", "ipv6.plen"]) {
        let f = &p.fields;
        let len: u64 = if f[0].is_empty() {
            40 + f[1].parse::<u64>().expect("ipv6.plen")
        } else {
            f[0].parse().expect("ip.len")
        };
        let e = by.entry((p.src, p.dst)).or_default();
        e.0 += 1;
        e.1 += len;
    }
    by
}

/// One flow record as `nfdump -o json` writes it, with the exporter's system ID.
#[derive(Debug)]
struct Flow {
    sysid: u64,
    ends: Ends,
    counts: Counts,
}

/// `nfdump -o FORMAT` on the files in `dir` (times in UTC): its standard output; fails the
/// test if it fails.
fn nfdump_as(dir: &Path, format: &str) -> String {
    stdout_of(
        Command::new("nfdump")
            .env("TZ", "UTC")
            .arg("-R")
            .arg(dir)
            .args(["-o", format]),
        "nfdump",
    )
}

fn nfdump(dir: &Path) -> Vec<Flow> {
    let all: serde_json::Value =
        serde_json::from_str(&nfdump_as(dir, "json")).expect("nfdump's JSON");
    let num = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap_or(u64::MAX);
    all.as_array()
        .expect("an array of records")
        .iter()
        .map(|r| {
            let end = |a4: &str, a6: &str, port: &str| match r[a4].as_str() {
                Some(a) => format!("{a}:{}", num(r, port)),
                None => format!("[{}]:{}", r[a6].as_str().unwrap_or("?"), num(r, port)),
            };
            Flow {
                sysid: num(r, "export_sysid"),
                ends: (
                    end("src4_addr", "src6_addr", "src_port"),
                    end("dst4_addr", "dst6_addr", "dst_port"),
                ),
                counts: Counts {
                    packets: [num(r, "in_packets"), num(r, "out_packets")],
                    octets: [num(r, "in_bytes"), num(r, "out_bytes")],
                },
            }
        })
        .collect()
}

/// From `nfdump -o raw` (its JSON leaves them out), each record's exporter, destination port,
/// `biflowDirection` and `flowEndReason`, in the order stored.
fn raw_reasons(dir: &Path) -> Vec<(u64, u64, u64, u64)> {
    let text = nfdump_as(dir, "raw");
    let field = |block: &str, name: &str| -> u64 {
        block
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split('=').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            })
            .unwrap_or(u64::MAX)
    };
    text.split("Flow Record:")
        .skip(1)
        .map(|b| {
            (
                field(b, "export sysid"),
                field(b, "dst port"),
                field(b, "biFlow Dir"),
                field(b, "end reason"),
            )
        })
        .collect()
}

/// The exporter system IDs nfcapd gave each observation domain, from what it said.
fn sysids(log: &str) -> BTreeMap<u32, u64> {
    // "New ipfix exporter: SysID: 1, Observation domain 0 from: 127.0.0.1"
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("SysID: ")? + 7..];
            let (id, rest) = rest.split_once(", Observation domain ")?;
            let domain = rest.split_whitespace().next()?;
            Some((domain.parse().ok()?, id.parse().ok()?))
        })
        .collect()
}

/// The sums of `flows` by connection, the ends in the order of `recorded`'s first direction:
/// a record naming them the other way round has its counts swapped.
fn summed<'a>(
    flows: impl Iterator<Item = &'a Flow>,
    expected: &BTreeMap<Ends, Counts>,
) -> BTreeMap<Ends, (Counts, usize)> {
    let mut by = BTreeMap::<Ends, (Counts, usize)>::new();
    for f in flows {
        let swapped = (f.ends.1.clone(), f.ends.0.clone());
        let (key, c) = if expected.contains_key(&f.ends) {
            (f.ends.clone(), f.counts)
        } else {
            let c = f.counts;
            (
                swapped,
                Counts {
                    packets: [c.packets[1], c.packets[0]],
                    octets: [c.octets[1], c.octets[0]],
                },
            )
        };
        let e = by.entry(key).or_default();
        for i in 0..2 {
            e.0.packets[i] += c.packets[i];
            e.0.octets[i] += c.octets[i];
        }
        e.1 += 1;
    }
    by
}

/// The connections of the recording, client first (the client's port is the higher one in
/// this test's traffic), with their counts each way.
fn connections(rec: &BTreeMap<Ends, (u64, u64)>) -> BTreeMap<Ends, Counts> {
    let port = |e: &str| e.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    let mut out = BTreeMap::new();
    for ((src, dst), &(packets, octets)) in rec {
        if port(src) < port(dst) {
            continue;
        }
        let back = rec
            .get(&(dst.clone(), src.clone()))
            .copied()
            .unwrap_or_default();
        out.insert(
            (src.clone(), dst.clone()),
            Counts {
                packets: [packets, back.0],
                octets: [octets, back.1],
            },
        );
    }
    out
}

/// A server in host b that reads to the end and replies `reply` bytes, then closes.
fn server(hosts: &HostPair, addr: &str, port: u16, reply: u64) -> Background {
    let mut srv = HostPair::cmd(&hosts.b, "python3");
    srv.args([
        "-c",
        SERVER,
        addr,
        &port.to_string(),
        &reply.to_string(),
        "fin",
    ]);
    let srv = Background::spawn(srv);
    wait_until("the server to listen", Duration::from_secs(20), || {
        HostPair::listening(&hosts.b, port)
    });
    srv
}

/// Without segmentation offloads, every packet on the link is one on a wire: tcpdump, softflowd
/// and tcptrack count the same packets.
fn offloads_off(hosts: &HostPair) {
    for (ns, ifname) in [(&hosts.a, &hosts.a_if), (&hosts.b, &hosts.b_if)] {
        let ok = HostPair::cmd(ns, "ethtool")
            .args(["-K", ifname, "tso", "off", "gso", "off", "gro", "off"])
            .status()
            .expect("run ethtool");
        assert!(ok.success(), "ethtool -K {ifname}");
    }
}

/// nfcapd in host a, on its loopback, writing into `dir`; it says which exporter is which.
struct Nfcapd {
    process: Background,
    dir: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Nfcapd {
    fn start(hosts: &HostPair, dir: &Path) -> Self {
        let flows = dir.join("nfcapd");
        std::fs::create_dir(&flows).expect("nfcapd's folder");
        let log = dir.join("nfcapd.log");
        let mut cmd = HostPair::cmd(&hosts.a, "nfcapd");
        cmd.arg("-w")
            .arg(&flows)
            .args(["-b", "127.0.0.1", "-p", &COLLECTOR_PORT.to_string()])
            .args(["-t", "3600"])
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(log.with_extension("err")).expect("log"));
        Self {
            process: Background(cmd.spawn().expect("start nfcapd")),
            dir: flows,
            log,
        }
    }

    /// Stops it (it writes its file whole on SIGTERM); returns the system IDs it gave each
    /// observation domain, and the folder of its files.
    fn stop(mut self) -> (BTreeMap<u32, u64>, std::path::PathBuf) {
        self.process.signal(libc::SIGTERM);
        wait_until("nfcapd to end", Duration::from_secs(20), || {
            self.process.0.try_wait().is_ok_and(|s| s.is_some())
        });
        let said = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let log = said(&self.log) + &said(&self.log.with_extension("err"));
        (sysids(&log), self.dir.clone())
    }
}

/// FIN closes (IPv4 and IPv6), a reset, and 6 s of 1,000 bytes every 0.2 s (port 5404).
fn traffic(hosts: &HostPair) {
    assert_eq!(hosts.transfer(B4, 5401, 200_000, 50_000, false).1, 200_000);
    assert_eq!(hosts.transfer(B6, 5402, 100_000, 300_000, false).1, 100_000);
    assert_eq!(hosts.transfer(B4, 5403, 3_000, 9_000, true).1, 3_000);
    let _srv = server(hosts, B4, 5404, 500);
    let paced = HostPair::cmd(&hosts.a, "python3")
        .args(["-c", PACED, B4, "5404", "30", "0.2"])
        .status()
        .expect("run the paced client");
    assert!(paced.success());
}

/// softflowd (`-b -v 10`) on the packets of `file`, exporting to `collector` from host a.
///
/// On the recording rather than live: a live softflowd reads what libpcap buffered only once
/// more comes, and its last packets would wait. Reading a file, it exports every flow at the
/// file's end, says so, and then hangs (1.1.0, joining its reader thread) before it flushes its
/// output (line by line, then) or exits: it is let go once it said it.
fn softflowd(hosts: &HostPair, file: &Path, collector: &str, dir: &Path) {
    let out = dir.join("softflowd.out");
    let mut cmd = HostPair::cmd(&hosts.a, "stdbuf");
    cmd.args([
        "-oL",
        "softflowd",
        "-d",
        "-6",
        "-b",
        "-v",
        "10",
        "-A",
        "milli",
    ])
    .args(["-n", collector, "-r"])
    .arg(file)
    // No control socket: reading a file, 1.1.0 looks at its poll slot without polling,
    // and may wait for a connection to it.
    .args(["-c", "none", "-p"])
    .arg(dir.join("softflowd.pid"))
    .arg("tcp")
    .stdin(std::process::Stdio::null())
    .stdout(std::fs::File::create(&out).expect("softflowd's output"))
    .stderr(std::fs::File::create(out.with_extension("err")).expect("its errors"));
    let _softflowd = Background(cmd.spawn().expect("start softflowd"));
    let said = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !said(&out).contains("Flows exported:") {
        assert!(
            std::time::Instant::now() < deadline,
            "softflowd exported nothing in 30 s: {}",
            said(&out.with_extension("err"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(said(&out).contains("(0 failures)"), "{}", said(&out));
}

/// tcptrack's records, by the port of their server: the client opened each (biflowDirection
/// 1: initiator, which every one must say), and each record's `flowEndReason`, in order.
fn reasons(flows_dir: &Path, ours: u64) -> BTreeMap<u64, Vec<u64>> {
    let mut by = BTreeMap::<u64, Vec<u64>>::new();
    for r in raw_reasons(flows_dir).into_iter().filter(|r| r.0 == ours) {
        assert_eq!(r.2, 1, "initiator: {r:?}");
        by.entry(r.1).or_default().push(r.3);
    }
    by
}

#[test]
fn every_connection_reaches_nfcapd_as_sent_and_as_softflowd_exports_it() {
    let _serial = serial();
    let hosts = HostPair::new();
    offloads_off(&hosts);
    let dir = tempfile::tempdir().expect("temp dir");
    let nfcapd = Nfcapd::start(&hosts, dir.path());
    let file = dir.path().join("live.pcap");
    let dump = Recorder::start(&hosts, &file);
    let collector = format!("127.0.0.1:{COLLECTOR_PORT}");
    let domain = DOMAIN.to_string();
    let tcptrack = start_headless(
        &hosts,
        &dir.path().join("kernel.json"),
        &[
            &["--ipfix", &collector, "--ipfix-active-timeout", "2"][..],
            &["--ipfix-domain", &domain],
        ]
        .concat(),
        Some(&dir.path().join("kernel.err")),
    );
    traffic(&hosts);
    let log = dump.finish(&hosts);
    assert!(
        log.contains(" 0 packets dropped by kernel"),
        "tcpdump lost packets: {log}"
    );
    // tcptrack's last records go at its exit, with what the kernel counted until then.
    let said = tcptrack.interrupt();
    assert!(said.status.success(), "{said:?}");
    softflowd(&hosts, &file, &collector, dir.path());
    let (ids, flows_dir) = nfcapd.stop();

    let expected = connections(&recorded(&file));
    assert_eq!(expected.len(), 4, "{expected:#?}");
    let (Some(&ours), Some(&theirs)) = (ids.get(&DOMAIN), ids.get(&0)) else {
        panic!("two exporters, by domain: {ids:?}");
    };
    let flows = nfdump(&flows_dir);
    // Each of tcptrack's records names the client as its source; their sums are what the
    // recording holds each way.
    for f in flows.iter().filter(|f| f.sysid == ours) {
        assert!(expected.contains_key(&f.ends), "client first: {f:?}");
    }
    let sums = |sysid| -> BTreeMap<Ends, Counts> {
        summed(flows.iter().filter(|f| f.sysid == sysid), &expected)
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    };
    assert_eq!(sums(ours), expected, "tcptrack's records");
    assert_eq!(sums(theirs), expected, "softflowd's records");
    // The slow transfer crossed the active timeout: interim records (2) first, each with what
    // came since the one before, then its end (3: end of flow, its FIN), as the others had.
    let by_port = reasons(&flows_dir, ours);
    let slow = &by_port[&5404];
    assert!(slow.len() >= 2, "interim records: {slow:?}");
    assert!(slow[..slow.len() - 1].iter().all(|&r| r == 2), "{slow:?}");
    for (port, r) in &by_port {
        assert_eq!(r.last(), Some(&3), "{port}: {r:?}");
        assert!(*port == 5404 || r.len() == 1, "{port}: {r:?}");
    }
}

/// A capture of 300 connections (IPv4, each closed after 100 bytes).
fn capture_of_300() -> tcptrack_tests::Capture {
    let sessions: Vec<Session> = (0..300u16)
        .map(|i| {
            let client = format!("198.18.1.{}:{}", 1 + i % 200, 30_000 + i);
            let mut s = Session::new(&client, "198.19.0.1:443");
            s.at(EPOCH_BASE + Duration::from_millis(10 * u64::from(i)))
                .handshake()
                .data(Side::Client, 100)
                .close(Side::Client);
            s
        })
        .collect();
    let refs: Vec<&Session> = sessions.iter().collect();
    CaptureSpec::new(Format::Pcap, 1).write(&merged(Link::Ethernet, &refs))
}

/// A collector that is away (UDP to a port nobody listens on, TCP refused) costs the records it
/// misses, nothing else: the output is the same as without `--ipfix`, the exit status 0, and
/// stderr says it once.
#[test]
fn a_collector_away_changes_nothing_else_and_is_said_once() {
    let cap = capture_of_300();
    let file = cap.file();
    let path = file.path().to_str().expect("a UTF-8 path");
    let plain = tcptrack(["-T", path, "--output", "json"]);
    assert_eq!(plain.code, Some(0), "{}", plain.stderr);
    // Ports just let go: nobody listens on them.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let ports = [
        ("udp", udp.local_addr().expect("addr").port()),
        ("tcp", tcp.local_addr().expect("addr").port()),
    ];
    drop((udp, tcp));
    for (transport, port) in ports {
        let collector = format!("127.0.0.1:{port}");
        let out = tcptrack([
            "-T",
            path,
            "--output",
            "json",
            "--ipfix",
            &collector,
            "--ipfix-transport",
            transport,
        ]);
        assert_eq!(out.code, Some(0), "{transport}: {}", out.stderr);
        assert_eq!(out.stdout, plain.stdout, "{transport}: the same output");
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{transport}: said once: {}", out.stderr);
        assert!(
            lines[0].starts_with("tcptrack: IPFIX: ")
                && lines[0].contains("tcptrack_ipfix_records_lost_total"),
            "{transport}: {}",
            lines[0]
        );
    }
}

/// The data records in a stream of IPFIX messages, each whole (its length in its header), in
/// IPv4 records of a connection without a process (84 bytes: what `-T` sends).
fn records_in_stream(mut stream: &[u8]) -> usize {
    let mut records = 0;
    while stream.len() >= 16 {
        let len = usize::from(u16::from_be_bytes([stream[2], stream[3]]));
        assert!(len >= 16 && len <= stream.len(), "a whole message");
        let mut at = 16;
        while at + 4 <= len {
            let set = u16::from_be_bytes([stream[at], stream[at + 1]]);
            let set_len = usize::from(u16::from_be_bytes([stream[at + 2], stream[at + 3]]));
            assert!(set_len > 4, "no empty set");
            if set == 3804 {
                records += (set_len - 4) / 84;
            }
            at += set_len;
        }
        stream = &stream[len..];
    }
    assert!(stream.is_empty(), "nothing but whole messages");
    records
}

/// Over TCP, confined (Landlock lets tcptrack connect to the collector's port only, from 6.7),
/// every record reaches the collector.
#[test]
fn over_tcp_every_record_reaches_the_collector_through_the_sandbox() {
    let cap = capture_of_300();
    let file = cap.file();
    let path = file.path().to_str().expect("a UTF-8 path");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let to = format!("127.0.0.1:{port}");
    let out = tcptrack([
        "-T",
        path,
        "--output",
        "none",
        "--verbose",
        "--ipfix",
        &to,
        "--ipfix-transport",
        "tcp",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // tcptrack is gone: what it connected and sent waits in the listener's queue.
    listener.set_nonblocking(true).expect("nonblocking");
    let (mut s, _) = listener.accept().expect("tcptrack connected");
    s.set_nonblocking(false).expect("blocking");
    let mut stream = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut stream).expect("read");
    assert_eq!(records_in_stream(&stream), 300);
    // Confined where the kernel can: connects to that port, and no other.
    let confined = out
        .stderr_lines()
        .into_iter()
        .find(|l| l.starts_with("tcptrack: Confinement: "))
        .unwrap_or_default()
        .to_owned();
    let abi: Option<u32> = confined
        .split("ABI ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse().ok());
    if abi.is_some_and(|a| a >= 4) {
        assert!(
            confined.contains(&format!("connects only to TCP port {port}")),
            "{confined}"
        );
    }
}
