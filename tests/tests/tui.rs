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

/// tcptrack with `args` in host a's namespace, in a `width` x `height` window.
fn on_host_a(hosts: &HostPair, args: &str, (width, height): (u16, u16)) -> Tmux {
    Tmux::start(
        &format!("ip netns exec {} {}", hosts.a, command(args)),
        width,
        height,
    )
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
    assert!(s.contains("10.0 KB/s"), "{s}");
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
    t.wait_for("Sorted by RTT");
    t.keys(&["s"]);
    t.wait_for("Sorted by retransmits");
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
        let t = on_host_a(&hosts, &format!("{args} {}", hosts.a_if), (100, 12));
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

/// Waits until the screen is exactly `expected` (a redraw after a stop is whole, not half).
#[track_caller]
fn wait_for_screen(t: &Tmux, expected: &str, what: &str) {
    let mut last = String::new();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tcptrack_tests::netns::wait_until(what, Duration::from_secs(10), || {
            last = t.screen();
            last == expected
        });
    }));
    assert!(
        ok.is_ok(),
        "{what}: the screen was\n{last}\ninstead of\n{expected}"
    );
}

/// `q` alone (no Enter) ends the program whose command line holds `pattern`: keys reach it
/// raw, one at a time.
#[track_caller]
fn quits_on_a_single_q(t: &Tmux, pattern: &str) {
    t.keys(&["q"]);
    let gone = std::panic::catch_unwind(|| {
        tcptrack_tests::netns::wait_until("q to end tcptrack", Duration::from_secs(5), || {
            !Tmux::running(pattern)
        });
    });
    assert!(
        gone.is_ok(),
        "q without Enter did not end tcptrack: the terminal is not in raw mode\n{}",
        t.screen()
    );
}

#[test]
fn ctrl_z_suspends_with_the_terminal_restored_and_fg_or_sigcont_redraws_whole() {
    let file = capture();
    let t = Tmux::shell(100, 12);
    let d = t.dir.path().display().to_string();
    t.type_line(&format!("stty -a > {d}/before"));
    // A unique command line, to find the process by.
    let args = format!("-T {} -r 11", file.path().display());
    t.type_line(&command(&args));
    let frame = t.wait_for("end of capture");
    assert_eq!(t.pane_format("#{alternate_on}"), "1");

    // Ctrl-Z: the shell's job stops, on the terminal as it was (main screen, cursor shown).
    t.keys(&["C-z"]);
    let s = t.wait_for("Stopped");
    assert!(s.contains(&format!("stty -a > {d}/before")), "{s}");
    assert_eq!(
        t.pane_format("#{alternate_on} #{cursor_flag}"),
        "0 1",
        "after Ctrl-Z: still on the alternate screen, or the cursor hidden"
    );
    // The terminal's settings as the shell has them now, in `name` once written whole.
    let stty = |name: &str| {
        t.type_line(&format!(
            "stty -a > {d}/{name}.tmp && mv {d}/{name}.tmp {d}/{name}"
        ));
        tcptrack_tests::netns::wait_until("stty", Duration::from_secs(5), || {
            t.dir.path().join(name).exists()
        });
        std::fs::read_to_string(t.dir.path().join(name)).expect("stty file")
    };
    let stopped = stty("stopped");
    let read = |f: &str| std::fs::read_to_string(t.dir.path().join(f)).expect("stty file");
    assert_eq!(read("before"), stopped, "the terminal while stopped");

    // fg: the frame whole again, keys raw.
    t.type_line("fg");
    wait_for_screen(&t, &frame, "the frame after fg");

    // Stopped from outside (SIGSTOP cannot be caught: the shell prints over the screen and
    // resets the terminal), continued by fg: redrawn whole, raw again.
    let pid = Tmux::pid_of(&args);
    // SAFETY: kill(2) with a pid just found and a valid signal.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    t.wait_for("Stopped");
    t.type_line("fg");
    wait_for_screen(&t, &frame, "the frame after SIGSTOP and fg");
    quits_on_a_single_q(&t, &args);
    assert_eq!(read("before"), stty("after"), "the terminal after q");
}

/// A capture with long IPv6 addresses at both ends beside IPv4 connections, and connections
/// closed early enough to leave the table long before the capture ends.
fn long_and_closed_capture() -> tempfile::NamedTempFile {
    let mut sessions = Vec::new();
    let mut v6 = Session::new(
        "[2001:db8:1234:5678:9abc:def0:1234:5678]:65000",
        "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:443",
    );
    v6.at(Duration::from_secs(100))
        .handshake()
        .data(Side::Client, 300);
    sessions.push(v6);
    for i in 0..6u16 {
        let mut s = Session::new(&format!("198.18.0.1:{}", 41_000 + i), "198.18.0.2:80");
        s.at(Duration::from_secs(80 + u64::from(i)))
            .handshake()
            .data(Side::Client, 100)
            .close(Side::Client);
        sessions.push(s);
    }
    let mut late = Session::new("198.18.0.1:42000", "198.18.0.2:80");
    late.at(Duration::from_secs(110)).syn();
    sessions.push(late);
    let mut all: Vec<_> = sessions
        .iter()
        .flat_map(|s| s.packets(Link::Ethernet))
        .collect();
    all.sort_by_key(|p| p.ts);
    CaptureSpec::new(Format::Pcap, Link::Ethernet.linktype())
        .write(&all)
        .file()
}

#[test]
fn at_80x24_long_addresses_are_shortened_every_connection_listed_and_enter_shows_them_whole() {
    let file = long_and_closed_capture();
    let path = file.path().display().to_string();
    // What the output reports: the screen lists as many.
    let json = Command::new(tcptrack_bin())
        .args(["-T", &path, "--output", "json"])
        .output()
        .expect("run tcptrack");
    let reported = String::from_utf8_lossy(&json.stdout).lines().count();
    assert_eq!(reported, 8);
    let t = Tmux::start(&command(&format!("-T {path}")), 80, 24);
    let s = t.wait_for("end of capture");
    assert!(
        s.contains(&format!("Connections 1-{reported} of {reported}")),
        "{s}"
    );
    assert!(
        s.contains("[2001:db…4:5678]:65000  [2001:db8…eee:ffff]:443  ESTABLISHED"),
        "{s}"
    );
    assert!(
        s.contains("198.18.0.1:41000"),
        "closed long before the end:\n{s}"
    );
    // The IPv6 connection is the last one first seen but one: select it, open its details.
    t.keys(&["End", "Up", "Enter"]);
    let s = t.wait_for("First seen");
    assert!(
        s.contains("[2001:db8:1234:5678:9abc:def0:1234:5678]:65000")
            && s.contains("[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:443"),
        "{s}"
    );
    t.keys(&["Escape"]);
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_restored(&t);
}

#[test]
fn the_help_view_says_where_processes_come_from_on_the_kernel_path() {
    let _one = tcptrack_tests::live::serial();
    let hosts = HostPair::new();
    let t = on_host_a(&hosts, &format!("-i {}", hosts.a_if), (160, 40));
    t.wait_for(&format!("kernel on {}", hosts.a_if));
    t.keys(&["?"]);
    // From the kernel where its probes load, else from /proc with the reason.
    let s = t.wait_for("Processes: from");
    assert!(
        s.contains("Processes: from the kernel as each socket connects")
            || s.contains("Processes: from /proc, as ss -p finds them ("),
        "{s}"
    );
    t.keys(&["Escape"]);
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
}

#[test]
fn the_reason_for_the_libpcap_path_is_readable_in_full() {
    let _one = tcptrack_tests::live::serial();
    let hosts = HostPair::new();
    // A tun device: its bare IP packets are libpcap's, and the reason is long.
    for args in [
        &["tuntap", "add", "mode", "tun", "name", "tt-tun"][..],
        &["link", "set", "tt-tun", "up"],
    ] {
        let ok = std::process::Command::new("ip")
            .args(["-n", &hosts.a])
            .args(args)
            .status()
            .expect("run ip");
        assert!(ok.success(), "ip {}", args.join(" "));
    }
    let t = on_host_a(&hosts, "-i tt-tun", (80, 24));
    t.wait_for("libpcap on tt-tun");
    t.keys(&["?"]);
    let s = t.wait_for("Source:");
    // The help box's text, its lines joined.
    let help: String = s
        .lines()
        .filter_map(|l| {
            let (a, b) = (l.find('│')?, l.rfind('│')?);
            (a < b).then(|| l[a + '│'.len_utf8()..b].trim())
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let why = "the interface carries bare IP packets (link type 65534, a tun or IP tunnel), \
               and the kernel path reads Ethernet frames only";
    assert!(help.contains(why), "{help}\n{s}");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    // And on the terminal after the screen is gone, one line (the window wraps it).
    let s = t.screen();
    let line = format!("tcptrack: libpcap on tt-tun: {why}");
    assert!(s.replace('\n', "").contains(&line), "{s}");
}

/// Sends 100 bytes every 200 ms to ADDR:PORT until it is killed (however long the screens take
/// to read).
const EVERY_200_MS: &str = r"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
while True:
    c.sendall(b'x' * 100)
    time.sleep(0.2)
";

/// Accepts connections on ADDR:PORT and reads them to their end.
const SINK: &str = r"
import socket, sys, threading
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
def drain(c):
    while c.recv(65536):
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
";

#[test]
fn a_flow_sending_every_200_ms_is_active_on_every_frame_on_both_paths() {
    use tcptrack_tests::netns::{Background, B4};
    let _one = tcptrack_tests::live::serial();
    for path in ["kernel", "libpcap"] {
        let hosts = HostPair::new();
        let flag = if path == "libpcap" { "--libpcap " } else { "" };
        let t = on_host_a(&hosts, &format!("{flag}-i {}", hosts.a_if), (100, 12));
        t.wait_for(&format!("{path} on {}", hosts.a_if));
        let _server = Background::spawn({
            let mut c = HostPair::cmd(&hosts.b, "python3");
            c.args(["-c", SINK, B4, "7070"]);
            c
        });
        tcptrack_tests::netns::wait_until("the server", Duration::from_secs(10), || {
            HostPair::listening(&hosts.b, 7070)
        });
        let _client = Background::spawn({
            let mut c = HostPair::cmd(&hosts.a, "python3");
            c.args(["-c", EVERY_200_MS, B4, "7070"]);
            c
        });
        t.wait_for("198.18.0.2:7070");
        // Ten refreshes, each seen at least twice: the row has its `*` on every one.
        let row = |s: &str| {
            s.lines()
                .find(|l| l.contains("198.18.0.2:7070"))
                .map(str::to_owned)
        };
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(250));
            let s = t.screen();
            let r = row(&s).unwrap_or_else(|| panic!("{path}: the row went:\n{s}"));
            assert!(
                r.contains("ESTABLISHED") && r.split_whitespace().any(|w| w == "*"),
                "{path}: a flow sending every 200 ms shown without activity:\n{s}"
            );
        }
        t.keys(&["q"]);
        assert_eq!(t.wait_exit(), 0, "{path}");
        assert_restored(&t);
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
