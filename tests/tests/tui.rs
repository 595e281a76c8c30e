//! The real binary in tmux, used as a person would: `-T` on a capture, keys sent, screens read,
//! and after every way out the terminal as it was before (`stty -a`).

use std::process::Command;
use std::time::Duration;

use tcptrack_tests::netns::HostPair;
use tcptrack_tests::tmux::Tmux;
use tcptrack_tests::{tcptrack_bin, CaptureSpec, Format, Link, Session, Side};

/// A capture with one connection in each of three states, IPv4 and IPv6, and data at a known
/// rate in its last second. Returns the file (kept alive by the caller).
fn capture() -> tempfile::NamedTempFile {
    // The capture ends at 103.2 s; its last completed second is [102 s, 103 s).
    let mut busy = Session::new("[fd00::1]:50000", "[fd00::2]:443");
    busy.at(Duration::from_secs(100)).handshake();
    busy.at(Duration::from_secs(102))
        .step(Duration::from_millis(90));
    for _ in 0..10 {
        busy.data(Side::Server, 1024);
    }
    let mut done = Session::new("198.18.0.1:40000", "198.18.0.2:80");
    done.at(Duration::from_millis(102_500))
        .handshake()
        .data(Side::Client, 500)
        .close(Side::Client);
    let mut opening = Session::new("198.18.0.1:40001", "198.18.0.2:22");
    opening.at(Duration::from_millis(103_200)).syn();
    let mut all: Vec<_> = [&done, &busy, &opening]
        .iter()
        .flat_map(|s| s.packets(Link::Ethernet))
        .collect();
    all.sort_by_key(|p| p.ts);
    CaptureSpec::new(Format::Pcap, Link::Ethernet.linktype())
        .write(&all)
        .file()
}

fn command(args: &str) -> String {
    format!("{} {args}", tcptrack_bin().display())
}

#[track_caller]
fn assert_restored(t: &Tmux) {
    let (before, after) = t.stty();
    assert_eq!(before, after, "the terminal settings changed");
}

#[test]
fn capture_file_screen_keys_and_quit() {
    let file = capture();
    let t = Tmux::start(&command(&format!("-T {}", file.path().display())), 100, 12);
    let s = t.wait_for("end of capture");
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[0].starts_with(" Client") && lines[0].contains("State") && lines[0].contains("Speed"),
        "{s}"
    );
    assert!(
        s.contains("198.18.0.1:40000       198.18.0.2:80          CLOSED"),
        "{s}"
    );
    assert!(
        s.contains("[fd00::1]:50000        [fd00::2]:443          ESTABLISHED"),
        "{s}"
    );
    assert!(
        s.contains("198.18.0.1:40001       198.18.0.2:22          SYN_SENT"),
        "{s}"
    );
    // 10 KiB in the last completed second.
    assert!(s.contains("10 KB/s"), "{s}");
    assert!(
        s.contains("Connections 1-3 of 3  Unpaused  Unsorted"),
        "{s}"
    );

    t.keys(&["s"]);
    let s = t.wait_for("Sorted by rate");
    let first_row = s.lines().nth(1).unwrap_or_default();
    assert!(first_row.contains("[fd00::1]:50000"), "fastest first: {s}");
    t.keys(&["s"]);
    t.wait_for("Sorted by bytes");
    t.keys(&["s"]);
    t.wait_for("Unsorted");
    t.keys(&["p"]);
    t.wait_for("Paused");
    t.keys(&["p"]);
    t.wait_for("Unpaused");
    t.keys(&["?"]);
    t.wait_for("tcptrack keys");
    t.keys(&["Escape"]);
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_restored(&t);
}

#[test]
fn resizing_follows_the_terminal() {
    let file = capture();
    let t = Tmux::start(&command(&format!("-T {}", file.path().display())), 100, 14);
    t.wait_for("end of capture");
    // Too narrow for both address columns: the server goes under its client.
    t.resize(60, 14);
    let s = t.wait_for("   [fd00::2]:443");
    assert!(s.contains(" [fd00::1]:50000   ESTABLISHED"), "{s}");
    t.resize(20, 3);
    t.wait_for("Terminal too small");
    t.resize(100, 14);
    t.wait_for("Connections 1-3 of 3");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_restored(&t);
}

#[test]
fn ctrl_c_sigterm_and_sigint_restore_the_terminal() {
    let file = capture();
    for how in ["C-c", "TERM", "INT"] {
        let t = Tmux::start(
            &command(&format!("-T {} -r 7", file.path().display())),
            100,
            12,
        );
        t.wait_for("end of capture");
        if how == "C-c" {
            t.keys(&["C-c"]);
        } else {
            let pid = Tmux::pid_of(&format!("{} -r 7", file.path().display()));
            let ok = Command::new("kill")
                .args([&format!("-{how}"), &pid.to_string()])
                .status()
                .expect("kill")
                .success();
            assert!(ok, "kill -{how}");
        }
        assert_eq!(t.wait_exit(), 0, "exit after {how}");
        assert_restored(&t);
    }
}

#[test]
fn a_capture_cut_short_is_shown_then_reported() {
    let file = capture();
    let bytes = std::fs::read(file.path()).expect("read capture");
    let cut = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(cut.path(), &bytes[..bytes.len() - 7]).expect("write cut capture");
    let t = Tmux::start(&command(&format!("-T {}", cut.path().display())), 140, 12);
    let s = t.wait_for("end of capture");
    assert!(s.contains("cut short"), "{s}");
    assert!(s.contains("198.18.0.1:40000"), "{s}");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 3);
    assert_restored(&t);
}

#[test]
fn replay_plays_the_capture_at_its_pace() {
    let file = capture();
    // 4 s of capture at 4x: about a second to play.
    let t = Tmux::start(
        &command(&format!("-T {} --replay=4", file.path().display())),
        100,
        12,
    );
    let s = t.wait_for("replay of");
    assert!(
        !s.contains("end of capture") || s.contains("Connections 1-3 of 3"),
        "{s}"
    );
    let s = t.wait_for("end of capture");
    assert!(s.contains("Connections 1-3 of 3"), "{s}");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_restored(&t);
}

#[test]
fn live_capture_error_restores_the_terminal_and_exits_1() {
    // libpcap's path, then the kernel's.
    for (args, label, reason) in [
        ("--libpcap -i", "libpcap on", "The interface disappeared"),
        ("-i", "kernel on", "the interface went away"),
    ] {
        let hosts = HostPair::new();
        let t = Tmux::start(
            &format!(
                "ip netns exec {} {}",
                hosts.a,
                command(&format!("{args} {}", hosts.a_if))
            ),
            100,
            12,
        );
        t.wait_for(&format!("{label} {}", hosts.a_if));
        // The interface goes away under the capture.
        let ok = Command::new("ip")
            .args(["-n", &hosts.a, "link", "del", &hosts.a_if])
            .status()
            .expect("ip link del")
            .success();
        assert!(ok);
        assert_eq!(t.wait_exit(), 1, "{label}");
        assert_restored(&t);
        let s = t.screen();
        assert!(
            s.contains(&format!(
                "tcptrack: cannot capture on {}: {reason}",
                hosts.a_if
            )),
            "{s}"
        );
    }
}

/// A TCP port on loopback that nobody listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// `GET /metrics` of 127.0.0.1:`port`: the whole answer.
fn scrape(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("ask");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    answer
}

#[test]
fn metrics_and_the_flow_log_beside_the_screen() {
    let file = capture();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("flows.jsonl");
    let port = free_port();
    let t = Tmux::start(
        &command(&format!(
            "-T {} --metrics 127.0.0.1:{port} --flow-log {}",
            file.path().display(),
            log.display()
        )),
        100,
        12,
    );
    t.wait_for("end of capture");
    let answer = scrape(port);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("application/openmetrics-text"), "{answer}");
    assert!(
        answer.contains("\ntcptrack_connections_opened_total 3\n"),
        "{answer}"
    );
    let name = file.path().file_name().expect("name").to_string_lossy();
    assert!(
        answer.contains(&format!(
            r#"tcptrack_info{{version="0.1.0",path="file",interface="{name}"}} 1"#
        )),
        "{answer}"
    );
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_restored(&t);
    // At exit, one record for each connection still listed.
    let flows = tcptrack_tests::flow_records(&std::fs::read_to_string(&log).expect("log"));
    let hows: Vec<(&str, &str)> = flows
        .iter()
        .map(|f| (f.client.as_str(), f.how.as_str()))
        .collect();
    assert_eq!(
        hows,
        [
            ("[fd00::1]:50000", "open_at_exit"),
            ("198.18.0.1:40000", "closed"),
            ("198.18.0.1:40001", "open_at_exit")
        ]
    );
}
