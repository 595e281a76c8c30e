//! Least privilege: tcptrack run by an ordinary user from a copy of the binary that holds file
//! capabilities, each capability taken away in turn. The kernel path needs CAP_BPF,
//! CAP_PERFMON and CAP_NET_ADMIN, and CAP_NET_RAW for promiscuous mode; libpcap needs
//! CAP_NET_RAW. What is missing is named in one line. Needs root to set it up (CI has it).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::time::Duration;

use tcptrack_tests::live::{serial, start_said, wait_closed_exact, wait_detached, wait_refresh};
use tcptrack_tests::netns::{wait_until, HostPair, B4};
use tcptrack_tests::prometheus::{http_get, sample};
use tcptrack_tests::tcptrack_bin;

/// The whole set, in `setcap`'s words.
const ALL: [&str; 4] = ["cap_bpf", "cap_perfmon", "cap_net_admin", "cap_net_raw"];

/// A copy of the binary holding `caps` (effective and permitted), in a folder anyone can read.
fn with_caps(dir: &Path, caps: &[&str]) -> PathBuf {
    let bin = dir.join("tcptrack");
    let _ = std::fs::remove_file(&bin);
    std::fs::copy(tcptrack_bin(), &bin).expect("copy the binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    if !caps.is_empty() {
        let ok = Command::new("setcap")
            .arg(format!("{}+ep", caps.join(",")))
            .arg(&bin)
            .status()
            .expect("setcap (libcap2-bin)")
            .success();
        assert!(ok, "setcap {caps:?}");
    }
    bin
}

/// setpriv's options that make a command user nobody, without inherited capabilities.
const NOBODY: [&str; 4] = [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
];

/// `bin` as user nobody, without inherited capabilities, in host a.
fn as_nobody(hosts: &HostPair, bin: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &hosts.a, "setpriv"])
        .args(NOBODY)
        .arg(bin);
    c
}

/// Runs `bin` as nobody on host a's interface, has one connection go through, and returns its
/// first stderr line once the connection shows in its output, counted exactly.
fn counts_as_nobody(hosts: &HostPair, dir: &Path, bin: &Path, extra: &[&str], port: u16) -> String {
    let (out, err) = (dir.join("out.json"), dir.join("err.txt"));
    let mut c = as_nobody(hosts, bin);
    c.args([
        "-i",
        &hosts.a_if,
        "--output",
        "json",
        "--interval",
        "0.2",
        "-r",
        "600",
    ])
    .args(extra);
    // The path is said once the capture is open (programs attached, or libpcap's socket).
    let tcptrack = start_said(c, &out, &err);
    let first = || {
        std::fs::read_to_string(&err)
            .unwrap_or_default()
            .lines()
            .next()
            .map(str::to_owned)
    };
    assert_eq!(
        hosts.transfer(B4, port, 3_000, 5_000, false),
        (5_000, 3_000)
    );
    wait_closed_exact(&out, &format!("{B4}:{port}"), (3_000, 5_000));
    drop(tcptrack.interrupt());
    first().expect("a path line")
}

fn run_as_nobody(hosts: &HostPair, bin: &Path, extra: &[&str]) -> Output {
    as_nobody(hosts, bin)
        .args(["-i", &hosts.a_if, "--output", "json"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run tcptrack as nobody")
}

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn an_ordinary_user_with_the_four_capabilities_counts_in_the_kernel() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = folder();
    let bin = with_caps(dir.path(), &ALL);
    let line = counts_as_nobody(&hosts, dir.path(), &bin, &[], 5901);
    assert_eq!(line, format!("tcptrack: kernel on {}", hosts.a_if));
    wait_detached("SIGINT");
    // Without promiscuous mode, CAP_NET_RAW is not needed.
    let bin = with_caps(dir.path(), &ALL[..3]);
    let line = counts_as_nobody(&hosts, dir.path(), &bin, &["-p"], 5902);
    assert_eq!(line, format!("tcptrack: kernel on {}", hosts.a_if));
    wait_detached("SIGINT");
}

#[test]
fn each_missing_capability_is_named_in_one_line() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = folder();
    // Without one the kernel path needs: libpcap counts, and the line says what was missing.
    for (i, (missing, name)) in [
        ("cap_bpf", "CAP_BPF"),
        ("cap_perfmon", "CAP_PERFMON"),
        ("cap_net_admin", "CAP_NET_ADMIN"),
    ]
    .into_iter()
    .enumerate()
    {
        let caps: Vec<&str> = ALL.iter().copied().filter(|c| *c != missing).collect();
        let bin = with_caps(dir.path(), &caps);
        let port = 5910 + u16::try_from(i).expect("small");
        let line = counts_as_nobody(&hosts, dir.path(), &bin, &[], port);
        assert_eq!(
            line,
            format!(
                "tcptrack: libpcap on {}: the kernel path needs {name}",
                hosts.a_if
            )
        );
    }
    // Without CAP_NET_RAW: promiscuous mode and libpcap both need it.
    let bin = with_caps(dir.path(), &ALL[..3]);
    let out = run_as_nobody(&hosts, &bin, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "tcptrack: cannot capture on {}: needs CAP_NET_RAW for promiscuous mode (-p does \
             without it on the kernel path)\n",
            hosts.a_if
        )
    );
    // Without any: one line naming them all.
    let bin = with_caps(dir.path(), &[]);
    let out = run_as_nobody(&hosts, &bin, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "tcptrack: cannot capture on {}: needs CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and \
             CAP_NET_RAW for the kernel path, or CAP_NET_RAW for libpcap\n",
            hosts.a_if
        )
    );
}

/// Capability numbers, as `/proc/PID/status` shows the sets.
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_BPF: u32 = 39;

/// A set of capabilities as `/proc/PID/status` writes it (16 hex digits).
fn set_of(caps: &[u32]) -> String {
    format!("{:016x}", caps.iter().fold(0u64, |m, c| m | 1 << c))
}

/// The privilege fields of `/proc/PID/status` of every thread of `pid`, as `Name: value`.
fn threads_status(pid: u32) -> Vec<std::collections::BTreeMap<String, String>> {
    let fields = [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
        "Uid",
        "Gid",
    ];
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    tasks
        .filter_map(Result::ok)
        .map(|t| {
            let s = std::fs::read_to_string(t.path().join("status")).expect("a thread's status");
            s.lines()
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| fields.contains(k))
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                .collect()
        })
        .collect()
}

/// Whether this kernel refuses reading BPF maps without CAP_BPF (before 6.5, with unprivileged
/// BPF disabled): then the kernel path keeps it.
fn maps_need_bpf() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    let disabled = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .is_ok_and(|s| s.trim() != "0");
    version < (6, 5) && disabled
}

/// Asserts that every thread of `pid` holds exactly `caps` (effective, permitted, bounding),
/// nothing inheritable or ambient, no new privileges, has a seccomp filter, and runs as `uid`.
#[track_caller]
fn assert_holds(pid: u32, caps: &[u32], uid: u32, what: &str) {
    let threads = threads_status(pid);
    assert!(!threads.is_empty(), "{what}: no threads read");
    let want = set_of(caps);
    let ids = format!("{uid}\t{uid}\t{uid}\t{uid}");
    for t in &threads {
        let got = |k: &str| t.get(k).map_or("", String::as_str);
        assert_eq!(
            (got("CapEff"), got("CapPrm"), got("CapBnd")),
            (want.as_str(), want.as_str(), want.as_str()),
            "{what}: {t:?}"
        );
        assert_eq!(
            (got("CapInh"), got("CapAmb")),
            ("0000000000000000", "0000000000000000")
        );
        assert_eq!(got("NoNewPrivs"), "1", "{what}: {t:?}");
        // A filter (mode 2): the seccomp filter.
        assert_eq!(got("Seccomp"), "2", "{what}: {t:?}");
        assert_eq!(
            (got("Uid"), got("Gid")),
            (ids.as_str(), ids.as_str()),
            "{what}: {t:?}"
        );
    }
}

/// Where the cases below serve metrics, in host a.
const METRICS: &str = "127.0.0.1:9464";

/// After setup, the live paths: what each still holds (`/proc/PID/task/*/status`), and that
/// each still counts a connection exactly (its records, or its metrics).
/// Asserts that tcptrack `pid` has a helper naming processes (holding CAP_SYS_PTRACE and
/// CAP_DAC_READ_SEARCH, running as `uid`) when `wanted`, and no child at all otherwise.
#[track_caller]
fn assert_helper(pid: u32, wanted: bool, uid: u32, what: &str) {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("the children of tcptrack");
    let children: Vec<u32> = children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    if !wanted {
        assert_eq!(children, Vec::<u32>::new(), "{what}: no helper");
        return;
    }
    let [helper] = children[..] else {
        panic!("{what}: one helper, not {children:?}");
    };
    let comm = std::fs::read_to_string(format!("/proc/{helper}/comm")).expect("comm");
    assert_eq!(comm.trim_end(), "tcptrack-procs", "{what}");
    assert_holds(helper, &[CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE], uid, what);
}

#[test]
fn after_setup_each_live_path_keeps_only_what_it_uses() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = folder();
    let bpf: &[u32] = if maps_need_bpf() { &[CAP_BPF] } else { &[] };
    let metrics_only = ["--output", "none", "--metrics", METRICS];
    let cases: [(&str, &[&str], Vec<u32>); 6] = [
        // Nothing wants process names: nothing (CAP_BPF only where reading maps needs it).
        (
            "kernel, -p, metrics only",
            &["-p", "--output", "none", "--metrics", METRICS],
            bpf.to_vec(),
        ),
        // Records name processes, also other users': a helper holds what that needs.
        ("kernel, records", &[], bpf.to_vec()),
        // `-i any` attaches to interfaces that come up later.
        (
            "kernel, -i any, metrics only",
            &metrics_only,
            vec![CAP_NET_ADMIN, CAP_BPF],
        ),
        // Netlink filters are taken off at exit.
        (
            "kernel, netlink, metrics only",
            &metrics_only,
            [bpf, &[CAP_NET_ADMIN]].concat(),
        ),
        ("libpcap, records", &["--libpcap"], Vec::new()),
        (
            "libpcap, metrics only",
            &["--libpcap", "--output", "none", "--metrics", METRICS],
            Vec::new(),
        ),
    ];
    for (i, (what, args, mut caps)) in cases.into_iter().enumerate() {
        let (out, err) = (dir.path().join("out.json"), dir.path().join("err.txt"));
        let interface = if what.contains("any") {
            "any"
        } else {
            hosts.a_if.as_str()
        };
        let mut c = HostPair::cmd(&hosts.a, &tcptrack_bin().display().to_string());
        c.args(["-i", interface, "--interval", "0.2", "-r", "600"]);
        if !args.contains(&"--output") {
            c.args(["--output", "json"]);
        }
        c.args(args);
        if what.contains("netlink") {
            c.env("TCPTRACK_TC_HOOK", "netlink");
        }
        let tcptrack = start_said(c, &out, &err);
        caps.sort_unstable();
        caps.dedup();
        assert_holds(tcptrack.0.id(), &caps, 0, what);
        assert_helper(tcptrack.0.id(), what.contains("records"), 0, what);
        let port = 5920 + u16::try_from(i).expect("small");
        assert_eq!(
            hosts.transfer(B4, port, 3_000, 5_000, false),
            (5_000, 3_000)
        );
        if args.contains(&"--metrics") {
            let url = format!("http://{METRICS}/metrics");
            wait_until(
                &format!("{what}: the connection in the metrics"),
                Duration::from_secs(20),
                || {
                    // At least: with -i any, the scrapes on host a's loopback are connections too.
                    http_get(&hosts.a, &url)
                        .and_then(|t| sample::<u64>(&t, "tcptrack_connections_opened_total"))
                        .is_some_and(|n| n >= 1)
                },
            );
        } else {
            counted_and_named(&hosts, &out, port, what);
        }
        let pid = tcptrack.0.id();
        drop(tcptrack.interrupt());
        wait_detached(what);
        // Its record of netlink filters is removed at exit, confined as it is.
        assert_eq!(records_left(pid), Vec::<String>::new(), "{what}");
    }
}

/// Holds one connection open: accepts it and waits.
const HOLD_SERVER: &str = r"
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
c, _ = s.accept()
time.sleep(600)
";

/// Opens one connection, sends a byte and waits.
const HOLD_CLIENT: &str = r"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
c.sendall(b'x')
time.sleep(600)
";

/// The connection of 3,000 and 5,000 bytes to host b's `port` is in `out` closed and counted
/// exactly; a connection held open to `port + 100` is named: its client is host a's python,
/// root's, whoever tcptrack runs as.
#[track_caller]
fn counted_and_named(hosts: &HostPair, out: &Path, port: u16, what: &str) {
    let server = format!("{B4}:{port}");
    wait_closed_exact(out, &server, (3_000, 5_000));
    let held = port + 100;
    let p = std::ffi::OsString::from(held.to_string());
    let args = [std::ffi::OsStr::new(B4), p.as_os_str()];
    let _server = HostPair::python_server(&hosts.b, HOLD_SERVER, held, &args);
    let _client = HostPair::python(&hosts.a, HOLD_CLIENT, &args);
    let server = format!("{B4}:{held}");
    wait_refresh(out, &format!("{what}: the held connection named"), |recs| {
        recs.iter()
            .any(|r| r.server == server && r.process.as_deref() == Some("python3"))
    });
}

/// The records of netlink filters root's tcptrack `pid` left (in either folder they may be).
fn records_left(pid: u32) -> Vec<String> {
    ["/run/user/0", "/tmp"]
        .iter()
        .filter_map(|base| std::fs::read_dir(format!("{base}/tcptrack-0")).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(&format!("-{pid}")))
        .collect()
}

type Switch<'a> = (&'a str, &'a [&'a str], Option<&'a str>, &'a [u32]);

/// Started as root, `-Z nobody` (and, by default, the user who ran sudo) runs as that user
/// after setup, and still counts; processes of other users (root's python) are still named
/// from `/proc`, as the capabilities kept for them allow.
#[test]
fn a_switch_to_another_user_still_counts_and_names_processes() {
    let _serial = serial();
    let hosts = HostPair::new();
    let dir = folder();
    let bpf: &[u32] = if maps_need_bpf() { &[CAP_BPF] } else { &[] };
    let bpf_net_admin = [bpf, &[CAP_NET_ADMIN]].concat();
    // What, the options, SUDO_UID, the capabilities kept (the helper keeps those for names).
    let cases: [Switch<'_>; 3] = [
        (
            "kernel, netlink, -Z nobody",
            &["-Z", "nobody"],
            None,
            &bpf_net_admin,
        ),
        ("kernel, under sudo", &[], Some("65534"), bpf),
        (
            "libpcap, -Z 65534",
            &["-Z", "65534", "--libpcap"],
            None,
            &[],
        ),
    ];
    for (i, (what, args, sudo, caps)) in cases.into_iter().enumerate() {
        let (out, err) = (dir.path().join("out.json"), dir.path().join("err.txt"));
        let mut c = tcptrack_tests::live::headless(&hosts.a, &["-i", &hosts.a_if]);
        c.args(args);
        if let Some(uid) = sudo {
            c.env("SUDO_UID", uid).env("SUDO_GID", uid);
        }
        if what.contains("netlink") {
            c.env("TCPTRACK_TC_HOOK", "netlink");
        }
        let tcptrack = start_said(c, &out, &err);
        assert_holds(tcptrack.0.id(), caps, 65_534, what);
        assert_helper(tcptrack.0.id(), true, 65_534, what);
        let port = 5930 + u16::try_from(i).expect("small");
        assert_eq!(
            hosts.transfer(B4, port, 3_000, 5_000, false),
            (5_000, 3_000)
        );
        counted_and_named(&hosts, &out, port, what);
        // No record of netlink filters that nobody could remove at exit is left behind.
        let pid = tcptrack.0.id();
        assert_eq!(records_left(pid), Vec::<String>::new(), "{what}");
        drop(tcptrack.interrupt());
        wait_detached(what);
        assert_eq!(records_left(pid), Vec::<String>::new(), "{what}");
    }
}

/// Only root switches users; a user that does not exist is a usage error. One line each.
#[test]
fn a_switch_that_cannot_be_made_is_refused_in_one_line() {
    let file = tcptrack_tests::capture::temp_file(b"not a capture");
    let run = |c: &mut Command| c.output().expect("run tcptrack");
    let mut nobody = Command::new("setpriv");
    nobody
        .args(NOBODY)
        .arg(tcptrack_bin())
        .args(["-Z", "root", "-T"])
        .arg(file.path());
    let out = run(&mut nobody);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "tcptrack: -Z root: only root can switch users\n"
    );
    let out = run(Command::new(tcptrack_bin())
        .args(["-Z", "no-such-user-here", "-T"])
        .arg(file.path()));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "tcptrack: -Z no-such-user-here: no such user\n"
    );
}

/// An ordinary user without any capability reads a capture file, as root would.
#[test]
fn an_ordinary_user_reads_a_capture_file_with_no_privilege() {
    let mut s = tcptrack_tests::Session::new("198.18.0.1:40000", "198.18.0.2:80");
    s.at(Duration::from_secs(1))
        .handshake()
        .data(tcptrack_tests::Side::Client, 500)
        .close(tcptrack_tests::Side::Client);
    let file = tcptrack_tests::CaptureSpec::new(
        tcptrack_tests::Format::Pcap,
        tcptrack_tests::Link::Ethernet.linktype(),
    )
    .write(&s.packets(tcptrack_tests::Link::Ethernet))
    .file();
    let dir = folder();
    let capture = dir.path().join("c.pcap");
    std::fs::copy(file.path(), &capture).expect("copy the capture");
    std::fs::set_permissions(&capture, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let json = |c: &mut Command| {
        let out = c.args(["--output", "json", "-T"]).arg(&capture).output();
        let out = out.expect("run tcptrack");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut nobody = Command::new("setpriv");
    nobody
        .args(NOBODY)
        .args(["--bounding-set=-all"])
        .arg(tcptrack_bin());
    let as_nobody = json(&mut nobody);
    assert!(
        as_nobody.contains("\"server\":\"198.18.0.2:80\""),
        "{as_nobody}"
    );
    assert_eq!(as_nobody, json(&mut Command::new(tcptrack_bin())));
}

/// A capture file is read with no capability at all, even started as root; the help view
/// says so, and how tcptrack is confined.
#[test]
fn a_capture_file_is_read_with_no_privilege() {
    let file = tcptrack_tests::CaptureSpec::new(
        tcptrack_tests::Format::Pcap,
        tcptrack_tests::Link::Ethernet.linktype(),
    )
    .write(&[])
    .file();
    let dir = folder();
    let pid_file = dir.path().join("pid");
    let t = tcptrack_tests::tmux::Tmux::start(
        &format!(
            "sh -c 'echo $$ > {}; exec {} -T {}'",
            pid_file.display(),
            tcptrack_bin().display(),
            file.path().display()
        ),
        110,
        30,
    );
    t.wait_for("end of capture");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    assert_holds(pid, &[], 0, "-T");
    t.keys(&["?"]);
    let s = t.wait_for("Privileges:");
    assert!(
        s.contains("Privileges: no capabilities; no new privileges"),
        "{s}"
    );
    assert!(s.contains("Confinement: Landlock (ABI "), "{s}");
    t.keys(&["q"]);
}

/// Confined, tcptrack writes only in the flow log's folder: a flow log reopened on SIGHUP after
/// its path became a symlink to a file elsewhere is refused, in one line, and records go on
/// to the file open until then. With `--no-sandbox` the same reopen follows the link (the
/// check can fail).
#[test]
fn a_flow_log_cannot_be_reopened_outside_its_folder() {
    let _serial = serial();
    let hosts = HostPair::new();
    for (i, sandbox) in [true, false].into_iter().enumerate() {
        let (logs, elsewhere, dir) = (folder(), folder(), folder());
        let log = logs.path().join("flows.jsonl");
        let outside = elsewhere.path().join("outside.jsonl");
        std::fs::write(&outside, "").expect("the outside file");
        let (out, err) = (dir.path().join("out"), dir.path().join("err.txt"));
        let mut c = HostPair::cmd(&hosts.a, &tcptrack_bin().display().to_string());
        c.args([
            "-i",
            &hosts.a_if,
            "--output",
            "none",
            "--interval",
            "0.2",
            "--flow-log",
        ])
        .arg(&log);
        if !sandbox {
            c.arg("--no-sandbox");
        }
        let tcptrack = start_said(c, &out, &err);
        let port = 5940 + 2 * u16::try_from(i).expect("small");
        let lines = |p: &Path| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .count()
        };
        assert_eq!(hosts.transfer(B4, port, 100, 200, false), (200, 100));
        wait_until("the first record", Duration::from_secs(20), || {
            lines(&log) == 1
        });
        let rotated = logs.path().join("flows.jsonl.1");
        std::fs::rename(&log, &rotated).expect("rotate");
        std::os::unix::fs::symlink(&outside, &log).expect("symlink");
        let pid = i32::try_from(tcptrack.0.id()).expect("a pid");
        // SAFETY: kill sends a signal to the child we started.
        let sent = unsafe { libc::kill(pid, libc::SIGHUP) };
        assert_eq!(sent, 0);
        assert_eq!(hosts.transfer(B4, port + 1, 100, 200, false), (200, 100));
        let said = || std::fs::read_to_string(&err).unwrap_or_default();
        if sandbox {
            wait_until("the second record", Duration::from_secs(20), || {
                lines(&rotated) == 2
            });
            assert_eq!(lines(&outside), 0);
            let refused: Vec<String> = said()
                .lines()
                .filter(|l| l.contains("flow log"))
                .map(str::to_owned)
                .collect();
            assert_eq!(
                refused,
                [format!(
                    "tcptrack: cannot write the flow log {}: permission denied; records go on to \
                     the file open until now",
                    log.display()
                )]
            );
        } else {
            wait_until("the second record", Duration::from_secs(20), || {
                lines(&outside) == 1
            });
            assert_eq!(lines(&rotated), 1);
            assert!(!said().contains("flow log"), "{}", said());
            assert!(
                said().contains("tcptrack: not confined (--no-sandbox)\n"),
                "{}",
                said()
            );
        }
        drop(tcptrack.interrupt());
        wait_detached("SIGINT");
    }
}
