//! Running the built `tcptrack` binary, and reading what it printed.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

/// Longest a run may take before the test fails (a hang is a bug, not a slow machine).
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The binary under test: `$TCPTRACK_BIN`, else `target/<profile>/tcptrack` beside the test
/// executable (`target/<profile>/deps/...`).
///
/// # Panics
/// The binary is not there.
#[must_use]
pub fn tcptrack_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TCPTRACK_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "TCPTRACK_BIN={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("tcptrack{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build -p tcptrack --bins` (with the same profile) before \
         these tests, or set TCPTRACK_BIN",
        bin.display()
    );
    bin
}

/// What a run of tcptrack gave.
#[derive(Clone, Debug)]
pub struct Output {
    /// Exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The JSON lines of stdout, parsed.
    ///
    /// # Panics
    /// A line is not a connection record.
    #[must_use]
    pub fn records(&self) -> Vec<Record> {
        json_records(&self.stdout)
    }

    /// Whether anything on stderr looks like a panic.
    #[must_use]
    pub fn panicked(&self) -> bool {
        self.stderr.contains("panicked") || self.stderr.contains("RUST_BACKTRACE")
    }

    /// Non-empty lines of stderr.
    #[must_use]
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs tcptrack with `args`, stdin closed, and waits for it (at most two minutes).
///
/// # Panics
/// The binary is missing, cannot be started, or runs too long.
pub fn tcptrack<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    tcptrack_with_input(args, None)
}

/// Runs tcptrack with `args` and `input` on its standard input (`None`: closed), and waits for
/// it (at most two minutes).
///
/// # Panics
/// The binary is missing, cannot be started, or runs too long.
pub fn tcptrack_with_input<I, S>(args: I, input: Option<&[u8]>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(tcptrack_bin())
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcptrack starts");
    let pid = child.id();
    let (done, finished) = mpsc::channel::<()>();
    // Kills a run that hangs; ends as soon as the run does.
    let watchdog = std::thread::spawn(move || {
        let timed_out = finished.recv_timeout(RUN_LIMIT) == Err(mpsc::RecvTimeoutError::Timeout);
        if timed_out {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        timed_out
    });
    // Writes the input, then closes it; tcptrack may stop reading early (a broken pipe then).
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.unwrap_or_default().to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    let mut stderr = child.stderr.take().expect("stderr piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout piped")
        .read_to_end(&mut out)
        .expect("stdout readable");
    let status = child.wait().expect("tcptrack waited for");
    let err = err_reader.join().expect("stderr reader");
    if let Some(writer) = writer {
        writer.join().expect("stdin writer");
    }
    let _ = done.send(());
    let timed_out = watchdog.join().expect("watchdog");
    assert!(!timed_out, "tcptrack ran longer than {RUN_LIMIT:?}");
    Output {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// One connection of `--output json`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Record {
    pub client: String,
    pub server: String,
    pub state: String,
    pub payload_bytes: u64,
    pub bytes: u64,
    pub packets: u64,
    pub client_payload_bytes: u64,
    pub server_payload_bytes: u64,
    pub client_bytes: u64,
    pub server_bytes: u64,
    pub client_packets: u64,
    pub server_packets: u64,
    pub speed: u64,
    pub idle: f64,
    pub first_seen: String,
    pub last_seen: String,
    /// Speed each way, round trip, retransmissions each way, and this host's process.
    #[serde(default)]
    pub client_speed: u64,
    #[serde(default)]
    pub server_speed: u64,
    #[serde(default)]
    pub rtt_us: Option<u64>,
    #[serde(default)]
    pub client_retransmits: Option<u64>,
    #[serde(default)]
    pub server_retransmits: Option<u64>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub process: Option<String>,
    #[serde(default)]
    pub cgroup: Option<String>,
    /// When the record was written, on the table's clock (the end of a capture).
    pub time: String,
}

/// Parses `--output json` (one record per line).
///
/// # Panics
/// A line is not a connection record.
#[must_use]
pub fn json_records(stdout: &str) -> Vec<Record> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a connection record ({e}): {l}"))
        })
        .collect()
}

/// Runs `tcptrack -T file --output json [extra...]`, asserts a clean exit (0, empty stderr) and
/// returns the records.
///
/// # Panics
/// The run failed or printed something else.
#[track_caller]
pub fn json_of(file: &std::path::Path, extra: &[&str]) -> Vec<Record> {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("-T"),
        file.as_os_str(),
        OsStr::new("--output"),
        OsStr::new("json"),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let out = tcptrack(&args);
    assert_eq!(
        out.code,
        Some(0),
        "tcptrack {args:?} failed; stderr: {}",
        out.stderr
    );
    assert_eq!(out.stderr, "", "tcptrack {args:?} wrote to stderr");
    out.records()
}

/// One record of `--flow-log`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FlowRecord {
    pub client: String,
    pub server: String,
    pub state: String,
    pub how: String,
    pub first_seen: String,
    pub last_seen: String,
    pub duration: f64,
    pub payload_bytes: u64,
    pub bytes: u64,
    pub packets: u64,
    pub client_payload_bytes: u64,
    pub server_payload_bytes: u64,
    pub client_bytes: u64,
    pub server_bytes: u64,
    pub client_packets: u64,
    pub server_packets: u64,
}

/// Parses a flow log (one record per line).
///
/// # Panics
/// A line is not a flow record.
#[must_use]
pub fn flow_records(text: &str) -> Vec<FlowRecord> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a flow record ({e}): {l}")))
        .collect()
}

/// `cmd`'s standard output; fails the test, saying `what`, if it cannot run or fails.
pub fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tshark's output on `file` (numeric, `-n`) with `args`; fails the test if tshark fails.
#[must_use]
pub fn tshark(file: &std::path::Path, args: &[&str]) -> String {
    stdout_of(
        Command::new("tshark")
            .args(["-n", "-r"])
            .arg(file)
            .args(args),
        "tshark",
    )
}

/// An endpoint as tshark's fields give it (an address, a port) and as tcptrack writes it:
/// `addr:port`, `[addr]:port` for IPv6.
#[must_use]
pub fn endpoint(addr: &str, port: &str) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// A packet of a recording as tshark reads it: its sender's and receiver's endpoints (IPv4 or
/// IPv6, and the TCP ports), and the fields asked for, in their order.
pub struct TsharkPacket {
    pub src: String,
    pub dst: String,
    pub fields: Vec<String>,
}

/// Every packet of `file` tshark shows with `args` (a display filter, say), with `fields`.
#[must_use]
pub fn tshark_packets(file: &std::path::Path, args: &[&str], fields: &[&str]) -> Vec<TsharkPacket> {
    const ENDS: [&str; 6] = [
        "ip.src",
        "ipv6.src",
        "tcp.srcport",
        "ip.dst",
        "ipv6.dst",
        "tcp.dstport",
    ];
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-T", "fields", "-E", "separator=,"]);
    for f in ENDS.iter().chain(fields) {
        all.extend(["-e", f]);
    }
    tshark(file, &all)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), ENDS.len() + fields.len(), "tshark line {line:?}");
            TsharkPacket {
                src: endpoint(if f[0].is_empty() { f[1] } else { f[0] }, f[2]),
                dst: endpoint(if f[3].is_empty() { f[4] } else { f[3] }, f[5]),
                fields: f[ENDS.len()..].iter().map(|&v| v.to_owned()).collect(),
            }
        })
        .collect()
}
