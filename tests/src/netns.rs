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
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
