//! tcptrack live in a test host's namespace, headless, and what it wrote: the helpers of the
//! kernel path's live tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::netns::{tcptrack_links, wait_until, Background, HostPair};
use crate::run::{json_records, Record};
use crate::tcptrack_bin;

/// Longest tcptrack may take to start live: the kernel's verifier checks its programs first, CPU
/// work that takes about a second here and many times that on a slow or busy machine (a program
/// the verifier struggled with took 27 s to be refused on this 2-core machine with a VM
/// running). A condition's bound: a start that comes sooner ends the wait sooner.
pub const START_LIMIT: Duration = Duration::from_secs(120);

/// tcptrack in kernel mode on host a's interface, writing JSON at every refresh into `out`
/// (and its stderr into `errors`, when given), once its two programs are attached (beside any
/// that were before). It refreshes every 0.2 s unless `extra` sets `--interval`. Fails at once
/// when tcptrack exits before it is attached, or (with `errors`) says it took the libpcap path.
pub fn start_headless(
    hosts: &HostPair,
    out: &Path,
    extra: &[&str],
    errors: Option<&Path>,
) -> Background {
    let before = tcptrack_links().len();
    let mut cmd = headless(&hosts.a, &[&["-i", &hosts.a_if][..], extra].concat());
    cmd.stdout(std::fs::File::create(out).expect("output file"))
        .stderr(errors.map_or_else(Stdio::piped, |e| {
            std::fs::File::create(e).expect("stderr file").into()
        }));
    let mut bg = Background(cmd.spawn().expect("start tcptrack"));
    wait_until("tcptrack's programs to be attached", START_LIMIT, || {
        let exited = bg.0.try_wait().ok().flatten();
        assert!(
            exited.is_none(),
            "tcptrack exited before attaching: {exited:?}"
        );
        // Where its stderr is kept, a start on the libpcap path fails at once, with why.
        let said = errors.map(|e| std::fs::read_to_string(e).unwrap_or_default());
        assert!(
            !said
                .as_ref()
                .is_some_and(|s| s.contains("tcptrack: libpcap on")),
            "tcptrack took the libpcap path: {}",
            said.unwrap_or_default()
        );
        tcptrack_links().len() == before + 2
    });
    bg
}

/// tcptrack in namespace `ns`, headless: JSON at every refresh, every 0.2 s unless `args` sets
/// `--interval`, connections kept 600 s after they end; `args` name the interface and the rest.
#[must_use]
pub fn headless(ns: &str, args: &[&str]) -> Command {
    let mut cmd = HostPair::cmd(ns, &tcptrack_bin().display().to_string());
    cmd.args(["--output", "json", "-r", "600"]);
    if !args.contains(&"--interval") {
        cmd.args(["--interval", "0.2"]);
    }
    cmd.args(args);
    cmd
}

/// Starts `cmd` (tcptrack, live and headless) writing into `out` and its stderr into
/// `errors`, and returns once it has said which path it took: its capture is open then. Fails
/// at once when it exits before.
pub fn start_said(mut cmd: Command, out: &Path, errors: &Path) -> Background {
    cmd.stdout(std::fs::File::create(out).expect("output file"))
        .stderr(std::fs::File::create(errors).expect("stderr file"));
    let mut bg = Background(cmd.spawn().expect("start tcptrack"));
    wait_until("the path line", START_LIMIT, || {
        let exited = bg.0.try_wait().ok().flatten();
        let said = std::fs::read_to_string(errors).unwrap_or_default();
        assert!(exited.is_none(), "tcptrack exited ({exited:?}): {said}");
        said.ends_with('\n')
    });
    bg
}

/// The tests of this file attach programs and count the links of tcptrack's programs on the
/// whole machine: they run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits until `n` links of tcptrack's programs are attached.
pub fn wait_attached(n: usize) {
    wait_until(
        "tcptrack's programs to be attached",
        Duration::from_secs(20),
        || tcptrack_links().len() == n,
    );
}

/// Waits until no link of tcptrack's programs is left.
pub fn wait_detached(how: &str) {
    wait_until(
        &format!("tcptrack's links to go after {how}"),
        Duration::from_secs(20),
        || tcptrack_links().is_empty(),
    );
}

/// The last refresh written into `out` (the records sharing the last `time`). Reads the file's
/// end only, as far back as that refresh goes: a live output grows by a refresh every interval
/// (megabytes a second with thousands of connections), and reading it whole each time would
/// make a wait slower the longer the test has run.
pub fn last_refresh(out: &Path) -> Vec<Record> {
    use std::io::{Read as _, Seek as _};
    let Ok(mut file) = std::fs::File::open(out) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut tail: u64 = 1 << 16;
    loop {
        let from = len.saturating_sub(tail);
        let mut bytes = Vec::new();
        let read = file.seek(std::io::SeekFrom::Start(from)).is_ok()
            && file
                .by_ref()
                .take(len - from)
                .read_to_end(&mut bytes)
                .is_ok();
        if !read {
            return Vec::new();
        }
        let text = String::from_utf8_lossy(&bytes);
        // Whole lines only: the first may be cut by where the read began, the last half
        // written.
        let start = if from == 0 {
            0
        } else {
            text.find('\n').map_or(text.len(), |i| i + 1)
        };
        let end = text.rfind('\n').map_or(0, |i| i + 1);
        let recs = json_records(text.get(start..end.max(start)).unwrap_or_default());
        let Some(last) = recs.last().map(|r| r.time.clone()) else {
            if from == 0 {
                return Vec::new();
            }
            tail *= 4;
            continue;
        };
        // The refresh began within what was read when an older record precedes it (the records
        // of one refresh are written together), or when the whole file was read.
        if from == 0 || recs.iter().any(|r| r.time != last) {
            return recs.into_iter().filter(|r| r.time == last).collect();
        }
        tail *= 4;
    }
}

/// Waits until the last refresh written into `out` satisfies `done`, and returns it; on
/// timeout, fails showing the last refresh seen.
pub fn wait_refresh(
    out: &Path,
    what: &str,
    mut done: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    let mut seen = Vec::new();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(what, Duration::from_secs(20), || {
            seen = last_refresh(out);
            done(&seen)
        });
    }));
    assert!(ok.is_ok(), "{what}: the last refresh was {seen:#?}");
    seen
}

/// What must agree between the kernel's table and the capture's: ends, state, payload each way.
pub fn essence(recs: &[Record]) -> BTreeMap<(String, String), (String, u64, u64)> {
    recs.iter()
        .map(|r| {
            (
                (r.client.clone(), r.server.clone()),
                (
                    r.state.clone(),
                    r.client_payload_bytes,
                    r.server_payload_bytes,
                ),
            )
        })
        .collect()
}

/// Waits until the last refresh in `out` lists the connection to `server` CLOSED with exactly
/// `payload` bytes of payload (client's, server's); on timeout, fails showing that refresh.
pub fn wait_closed_exact(out: &Path, server: &str, payload: (u64, u64)) -> Vec<Record> {
    wait_refresh(
        out,
        &format!("the connection to {server}, CLOSED with {payload:?} bytes"),
        |seen| {
            seen.iter().any(|r| {
                r.server == server
                    && r.state == "CLOSED"
                    && (r.client_payload_bytes, r.server_payload_bytes) == payload
            })
        },
    )
}

/// Sends COUNT TCP packets with FLAGS (as a number) from distinct spoofed tuples (198.19.x.y,
/// ports 1024..) to host a's port 9, from host b's interface IF through a packet socket, to
/// host a's MAC. Host a has no route back to 198.19/16, so nothing answers.
pub const FLOOD: &str = r"
import socket, struct, sys
ifname, dst_mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', ''))
count, flags = int(sys.argv[3]), int(sys.argv[4])
ack = 1 if flags & 0x10 else 0
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
src_mac = s.getsockname()[4]
for i in range(count):
    src = bytes([198, 19, (i >> 8) & 255, i & 255])
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, 0, 0, 64, 6, 0, src, bytes([198, 18, 0, 1]))
    tcp = struct.pack('!HHIIBBHHH', 1024 + (i >> 16), 9, 1, ack, 0x50, flags, 1024, 0, 0)
    s.send(dst_mac + src_mac + b'\x08\x00' + ip + tcp)
";

/// Sends `count` one-way TCP ACKs from distinct spoofed tuples (198.19.x.y) from host b to host
/// a's port 9 ([`FLOOD`]); nothing answers them.
///
/// # Panics
/// The flood cannot be sent.
pub fn flood(hosts: &HostPair, count: u32) {
    send_flood(hosts, count, 0x10);
}

/// Sends `count` SYNs from distinct spoofed tuples (198.19.x.y) from host b to host a's port 9
/// ([`FLOOD`]): as many control events; nothing answers them.
///
/// # Panics
/// The flood cannot be sent.
pub fn syn_flood(hosts: &HostPair, count: u32) {
    send_flood(hosts, count, 0x02);
}

/// [`FLOOD`] of `count` packets with TCP `flags`.
fn send_flood(hosts: &HostPair, count: u32, flags: u8) {
    // Host a's interface is in its namespace: read its MAC there.
    let o = HostPair::cmd(&hosts.a, "cat")
        .arg(format!("/sys/class/net/{}/address", hosts.a_if))
        .output()
        .expect("read host a's MAC");
    let mac = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && mac.trim().len() == 17,
        "host a's MAC: {mac:?} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = HostPair::cmd(&hosts.b, "python3")
        .args(["-c", FLOOD, &hosts.b_if, mac.trim()])
        .args([count.to_string(), flags.to_string()])
        .output()
        .expect("run the flood");
    assert!(
        out.status.success(),
        "flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
