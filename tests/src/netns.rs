//! Test hosts: two network namespaces joined by a veth pair, with addresses from 198.18.0.0/15
//! and fd00::/8 inside them only. Everything is removed on drop, also when a test fails.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two hosts, `a` and `b`, on one veth link.
pub struct HostPair {
    /// Namespace of host a (client side).
    pub a: String,
    /// Namespace of host b (server side).
    pub b: String,
    /// Interface name inside a.
    pub a_if: String,
    /// Interface name inside b.
    pub b_if: String,
}

/// Host a's IPv4 address.
pub const A4: &str = "198.18.0.1";
/// Host b's IPv4 address.
pub const B4: &str = "198.18.0.2";
/// Host a's IPv6 address.
pub const A6: &str = "fd00::1";
/// Host b's IPv6 address.
pub const B6: &str = "fd00::2";

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {} failed: {} (these tests need root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl HostPair {
    /// Makes the two namespaces and their link, up, with addresses.
    #[must_use]
    pub fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{n}", std::process::id());
        let pair = Self {
            a: format!("tt-a-{tag}"),
            b: format!("tt-b-{tag}"),
            a_if: "veth-a".into(),
            b_if: "veth-b".into(),
        };
        // From here on, Drop removes whatever was made.
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "-n", &pair.a, "link", "add", &pair.a_if, "type", "veth", "peer", "name", &pair.b_if,
            "netns", &pair.b,
        ]);
        for (ns, ifname, v4, v6) in [(&pair.a, &pair.a_if, A4, A6), (&pair.b, &pair.b_if, B4, B6)] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", ifname]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
            ip(&["-n", ns, "link", "set", ifname, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// A command to run inside namespace `ns`.
    #[must_use]
    pub fn cmd(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Default for HostPair {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for HostPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the peer. Processes
        // started inside are the caller's to stop (see `Background`).
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Serves one connection: reads until the client's FIN, counts, replies with N bytes, then
/// closes (FIN) or aborts (RST).
pub const SERVER: &str = r"
import socket, struct, sys
addr, port, reply, how = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(1)
c, _ = s.accept()
n = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    n += len(d)
c.sendall(b'x' * reply)
if how == 'rst':
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
c.close()
print(n)
";

/// Sends N bytes, half-closes, and reads the reply to its end.
pub const CLIENT: &str = r"
import socket, sys
addr, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection((addr, port))
c.sendall(b'y' * size)
c.shutdown(socket.SHUT_WR)
n = 0
try:
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
except ConnectionResetError:
    pass
c.close()
print(n)
";

/// Accepts one connection on ADDR:PORT and reads it to its end; with a third argument, then
/// writes how many bytes it got into the file it names (whole: written aside, then renamed).
pub const DRAIN: &str = r"
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
if len(sys.argv) > 3:
    with open(sys.argv[3] + '.tmp', 'w') as f:
        f.write(str(got))
    os.rename(sys.argv[3] + '.tmp', sys.argv[3])
";

impl HostPair {
    /// Python `script` run in namespace `ns` with `args`, once it listens on `port` (which the
    /// script takes from its arguments or has written in); killed on drop.
    ///
    /// # Panics
    /// It does not listen within 10 s.
    #[must_use]
    pub fn python_server(
        ns: &str,
        script: &str,
        port: u16,
        args: &[&std::ffi::OsStr],
    ) -> Background {
        let server = Self::python(ns, script, args);
        wait_until(
            &format!("a server on port {port} in {ns}"),
            Duration::from_secs(10),
            || Self::listening(ns, port),
        );
        server
    }

    /// Python `script` run in namespace `ns` with `args`, in the background; killed on drop.
    #[must_use]
    pub fn python(ns: &str, script: &str, args: &[&std::ffi::OsStr]) -> Background {
        let mut cmd = Self::cmd(ns, "python3");
        cmd.args(["-c", script]).args(args);
        Background::spawn(cmd)
    }

    /// Whether something in namespace `ns` listens on TCP `port`.
    #[must_use]
    pub fn listening(ns: &str, port: u16) -> bool {
        let out = Self::cmd(ns, "ss")
            .args(["-Hltn"])
            .output()
            .expect("run ss");
        String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} "))
    }

    /// One connection from host a to `server`:`port` in host b: the client sends `upload`
    /// bytes and half-closes, the server replies `reply` bytes and closes (with a RST when
    /// `reset`). Returns (bytes the client received, bytes the server received).
    #[must_use]
    pub fn transfer(
        &self,
        server: &str,
        port: u16,
        upload: u64,
        reply: u64,
        reset: bool,
    ) -> (u64, u64) {
        Self::transfer_in((&self.a, &self.b), server, port, (upload, reply), reset)
    }

    /// [`HostPair::transfer`] from the client's namespace to `server`:`port` in the server's
    /// (`hosts`: client's, server's), `amounts` the upload and the reply.
    #[must_use]
    pub fn transfer_in(
        hosts: (&str, &str),
        server: &str,
        port: u16,
        amounts: (u64, u64),
        reset: bool,
    ) -> (u64, u64) {
        let (client_ns, server_ns) = hosts;
        let (upload, reply) = amounts;
        let mut srv = Self::cmd(server_ns, "python3");
        srv.args(["-c", SERVER, server, &port.to_string(), &reply.to_string()]);
        srv.arg(if reset { "rst" } else { "fin" });
        let mut srv = Background::spawn(srv);
        wait_until("the server to listen", Duration::from_secs(20), || {
            Self::listening(server_ns, port)
        });
        let out = Self::cmd(client_ns, "python3")
            .args(["-c", CLIENT, server, &port.to_string(), &upload.to_string()])
            .output()
            .expect("run the client");
        assert!(
            out.status.success(),
            "client: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until("the server to finish", Duration::from_secs(20), || {
            srv.0.try_wait().is_ok_and(|s| s.is_some())
        });
        let mut server_out = String::new();
        if let Some(mut o) = srv.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut server_out);
        }
        let num = |s: &str| s.trim().parse::<u64>().unwrap_or(u64::MAX);
        (num(&String::from_utf8_lossy(&out.stdout)), num(&server_out))
    }
}

/// A process that is killed and reaped on drop.
pub struct Background(pub Child);

impl Background {
    /// Starts `cmd` with its output captured.
    #[must_use]
    pub fn spawn(mut cmd: Command) -> Self {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start background process");
        Self(child)
    }

    /// Starts `cmd` whose stderr the caller has already pointed somewhere (stdout is dropped).
    #[must_use]
    pub fn spawn_with_stderr(mut cmd: Command) -> Self {
        Self(
            cmd.stdout(Stdio::null())
                .spawn()
                .expect("start background process"),
        )
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.0.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we own (not yet reaped) and a valid signal.
        unsafe { libc::kill(pid, signal) };
    }

    /// Asks the process to finish (SIGINT) and waits for its output.
    #[must_use]
    pub fn interrupt(mut self) -> Output {
        self.signal(libc::SIGINT);
        let child = std::mem::replace(
            &mut self.0,
            Command::new("true").spawn().expect("spawn true"),
        );
        child
            .wait_with_output()
            .expect("wait for background process")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `cond` holds, checking every 20 ms, for at most `limit`. Panics with `what` when
/// the deadline passes.
pub fn wait_until(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    wait_until_every(what, limit, Duration::from_millis(20), cond);
}

/// [`wait_until`], checking every `every` (finer, when the moment the condition starts to hold
/// is itself measured).
pub fn wait_until_every(
    what: &str,
    limit: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

/// tcpdump recording host a's side of the link into a pcap file.
pub struct Recorder {
    dump: Background,
    log: std::path::PathBuf,
}

impl Recorder {
    /// Starts recording TCP on host a's interface into `file` (headers only, 128 bytes), and
    /// waits until the file is there.
    #[must_use]
    pub fn start(hosts: &HostPair, file: &std::path::Path) -> Self {
        let log = file.with_extension("tcpdump.log");
        let mut dump = HostPair::cmd(&hosts.a, "tcpdump");
        dump.args([
            "-n",
            "-U",
            "--immediate-mode",
            "-s",
            "128",
            "-i",
            &hosts.a_if,
            "-w",
        ])
        .arg(file)
        .arg("tcp")
        .stderr(std::fs::File::create(&log).expect("tcpdump log"));
        let dump = Background::spawn_with_stderr(dump);
        wait_until(
            "tcpdump to write its file header",
            Duration::from_secs(20),
            || std::fs::metadata(file).is_ok_and(|m| m.len() >= 24),
        );
        Self { dump, log }
    }

    /// Once every connection of host a has closed (only TIME-WAIT left), host b has had the
    /// last ACK of each (none of its sockets waits for one: a lost last ACK makes host b send
    /// its FIN again and host a answer it, packets a capture still running would have), and
    /// tcpdump has written every packet its filter took (it reports both counts on SIGUSR1),
    /// stops it. Returns what tcpdump printed.
    #[must_use]
    pub fn finish(self, hosts: &HostPair) -> String {
        let sockets = |ns: &str, filter: &[&str]| {
            let out = HostPair::cmd(ns, "ss")
                .args(["-Htan"])
                .args(filter)
                .output()
                .expect("ss");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        wait_until("connections to close", Duration::from_secs(20), || {
            sockets(&hosts.a, &[])
                .lines()
                .all(|l| l.starts_with("TIME-WAIT"))
                && sockets(&hosts.b, &["state", "last-ack", "state", "closing"])
                    .trim()
                    .is_empty()
        });
        // "tcpdump: N packets captured, M packets received by filter, ..."
        let number_before = |line: &str, what: &str| -> Option<u64> {
            let head = &line[..line.find(what)?];
            head.rsplit(|c: char| !c.is_ascii_digit())
                .find(|t| !t.is_empty())?
                .parse()
                .ok()
        };
        wait_until(
            "tcpdump to write every packet it took",
            Duration::from_secs(20),
            || {
                self.dump.signal(libc::SIGUSR1);
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                log.lines()
                    .rev()
                    .find(|l| l.contains("packets received by filter"))
                    .is_some_and(|l| {
                        let captured = number_before(l, " packets captured");
                        captured.is_some_and(|c| c > 0)
                            && captured == number_before(l, " packets received by filter")
                    })
            },
        );
        drop(self.dump.interrupt());
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Types of the links of tcptrack's kernel programs attached anywhere on this machine, from
/// bpftool (Debian's bpftool 7.1 names tcx links only by their number, 11, and without their
/// interface; tests that use this run one at a time).
#[must_use]
pub fn tcptrack_links() -> Vec<String> {
    let json = |args: &[&str]| -> serde_json::Value {
        let out = Command::new("bpftool")
            .arg("-j")
            .args(args)
            .output()
            .expect("run bpftool");
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let progs = json(&["prog", "show"]);
    let ours: Vec<u64> = progs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("tcptrack_"))
        })
        .filter_map(|p| p["id"].as_u64())
        .collect();
    let mut types: Vec<String> = json(&["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["prog_id"].as_u64().is_some_and(|id| ours.contains(&id)))
        .map(|l| match &l["type"] {
            serde_json::Value::Number(n) if n.as_u64() == Some(11) => "tcx".to_owned(),
            serde_json::Value::String(t) => t.clone(),
            other => other.to_string(),
        })
        .collect();
    types.sort();
    types
}

impl HostPair {
    /// How many holders keep host a's interface in promiscuous mode (see [`promiscuity`]).
    #[must_use]
    pub fn a_promiscuity(&self) -> u64 {
        promiscuity(&self.a, &self.a_if)
    }
}

/// How many holders keep interface `ifname` of namespace `ns` in promiscuous mode (`ip -d
/// link`'s `promiscuity`; packet sockets' memberships count there, not in the PROMISC flag).
#[must_use]
pub fn promiscuity(ns: &str, ifname: &str) -> u64 {
    let out = Command::new("ip")
        .args(["-d", "-n", ns, "link", "show", ifname])
        .output()
        .expect("ip link show");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "promiscuity")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("ip -d link shows promiscuity")
}

/// A host alone: one network namespace whose only interface is its loopback, up. Removed on
/// drop, also when a test fails.
pub struct LoneHost {
    /// The namespace.
    pub ns: String,
}

impl LoneHost {
    /// Makes the namespace and brings its loopback up.
    #[must_use]
    pub fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let host = Self {
            ns: format!("tt-lo-{}x{n}", std::process::id()),
        };
        // From here on, Drop removes whatever was made.
        ip(&["netns", "add", &host.ns]);
        ip(&["-n", &host.ns, "link", "set", "lo", "up"]);
        host
    }
}

impl Default for LoneHost {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for LoneHost {
    fn drop(&mut self) {
        // Processes started inside are the caller's to stop.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
