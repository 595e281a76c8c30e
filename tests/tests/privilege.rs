//! Least privilege: tcptrack run by an ordinary user from a copy of the binary that holds file
//! capabilities, each capability taken away in turn. The kernel path needs CAP_BPF,
//! CAP_PERFMON and CAP_NET_ADMIN, and CAP_NET_RAW for promiscuous mode; libpcap needs
//! CAP_NET_RAW. What is missing is named in one line. Needs root to set it up (CI has it).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tcptrack_tests::live::{serial, start_said, wait_closed_exact, wait_detached};
use tcptrack_tests::netns::{HostPair, B4};
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

/// `bin` as user nobody, without inherited capabilities, in host a.
fn as_nobody(hosts: &HostPair, bin: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &hosts.a, "setpriv", "--reuid=65534"])
        .args(["--regid=65534", "--clear-groups", "--inh-caps=-all"])
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
