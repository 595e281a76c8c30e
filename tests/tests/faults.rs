//! Faults a daemon meets over months, live in network namespaces: the monitored link goes down
//! and up under traffic, on the kernel path and on libpcap's; counting goes on, and nothing
//! sent is missing from the connection's counts. (The flow log's full file system is in
//! `metrics.rs`, beside the metrics that count what it lost.) Needs root (CI has it).

use std::process::Command;
use std::time::Duration;

use tcptrack_tests::live::{headless, serial, start_said, wait_refresh};
use tcptrack_tests::netns::{wait_until, Background, HostPair, B4};

/// Accepts one connection on ADDR:PORT, reads it to its end, and writes how many bytes it got
/// into the file named by its third argument.
const DRAIN: &str = r"
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
c, _ = s.accept()
got = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    got += len(b)
c.close()
with open(sys.argv[3] + '.tmp', 'w') as f:
    f.write(str(got))
os.rename(sys.argv[3] + '.tmp', sys.argv[3])
";

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
        let _server = Background::spawn({
            let mut c = HostPair::cmd(&hosts.b, "python3");
            c.args(["-c", DRAIN, B4, "5320"]).arg(&got);
            c
        });
        wait_until("the server", Duration::from_secs(10), || {
            HostPair::listening(&hosts.b, 5320)
        });
        let _client = Background::spawn({
            let mut c = HostPair::cmd(&hosts.a, "python3");
            c.args(["-c", STEADY, B4, "5320"]);
            c
        });
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
