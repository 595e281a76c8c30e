//! Driving a terminal program as a person would: in tmux, with send-keys and capture-pane.
//! Each `Tmux` has its own server (socket), killed on drop, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::netns::wait_until;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The prompt of [`Tmux::shell`].
pub const PROMPT: &str = "tcptrack-test$";

/// A tmux server with one window running a shell command.
pub struct Tmux {
    socket: String,
    /// A folder for the files the wrapped command leaves (exit status, `stty -a` before and after).
    pub dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a `width` x `height` window. The command runs
    /// inside a wrapper that records `stty -a` before and after it, and its exit status.
    #[must_use]
    pub fn start(command: &str, width: u16, height: u16) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let socket = format!("tcptrack-test-{}-{n}", std::process::id());
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        let wrapped = format!(
            "stty -a > {d}/stty.before; {command}; echo $? > {d}/status.tmp; stty -a > {d}/stty.after; mv {d}/status.tmp {d}/status; sleep 600"
        );
        let t = Self { socket, dir };
        t.new_session(&wrapped, width, height);
        t
    }

    /// An interactive bash with job control (no startup files), its prompt [`PROMPT`], in a
    /// `width` x `height` window: for what only a shell does (Ctrl-Z, `fg`).
    #[must_use]
    pub fn shell(width: u16, height: u16) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let socket = format!("tcptrack-test-{}-{n}", std::process::id());
        let t = Self {
            socket,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        t.new_session(
            &format!("env PS1='{PROMPT} ' bash --norc --noprofile -i"),
            width,
            height,
        );
        t.wait_for(PROMPT);
        t
    }

    /// Types `line` into the window and presses Enter.
    pub fn type_line(&self, line: &str) {
        let ok = self
            .tmux()
            .args(["send-keys", "-l", line])
            .status()
            .expect("send-keys")
            .success();
        assert!(ok, "send-keys {line:?} failed");
        self.keys(&["Enter"]);
    }

    fn new_session(&self, command: &str, width: u16, height: u16) {
        let ok = self
            .tmux()
            .args([
                "new-session",
                "-d",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(command)
            .status()
            .expect("run tmux")
            .success();
        assert!(ok, "tmux new-session failed");
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        // A predictable terminal for the program under test.
        c.env("TERM", "xterm-256color");
        c
    }

    /// The visible screen, one string per line.
    #[must_use]
    pub fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen holds `text`; panics with the screen when it does not in time.
    pub fn wait_for(&self, text: &str) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(
                &format!("`{text}` on screen"),
                Duration::from_secs(20),
                || {
                    last = self.screen();
                    last.contains(text)
                },
            );
        }));
        assert!(
            found.is_ok(),
            "`{text}` never appeared; the screen was:\n{last}"
        );
        last
    }

    /// Sends keys, as tmux names them (`q`, `Down`, `C-c`, `PPage`).
    pub fn keys(&self, keys: &[&str]) {
        let ok = self
            .tmux()
            .arg("send-keys")
            .args(keys)
            .status()
            .expect("send-keys")
            .success();
        assert!(ok, "send-keys {keys:?} failed");
    }

    /// Resizes the window.
    pub fn resize(&self, width: u16, height: u16) {
        let ok = self
            .tmux()
            .args([
                "resize-window",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .status()
            .expect("resize-window")
            .success();
        assert!(ok, "resize-window failed");
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits for the wrapped command to end; returns its exit status.
    #[must_use]
    pub fn wait_exit(&self) -> i32 {
        let status = self.file("status");
        wait_until("the program to exit", Duration::from_secs(20), || {
            status.exists()
        });
        std::fs::read_to_string(&status)
            .expect("status file")
            .trim()
            .parse()
            .expect("exit status")
    }

    /// `stty -a` as it was before the program started, and after it ended.
    #[must_use]
    pub fn stty(&self) -> (String, String) {
        let read = |p: &Path| std::fs::read_to_string(p).expect("stty file");
        (
            read(&self.file("stty.before")),
            read(&self.file("stty.after")),
        )
    }

    /// The process id of the pane's shell: the wrapper, whose child the command runs as.
    #[must_use]
    pub fn pane_pid(&self) -> u32 {
        let out = self
            .tmux()
            .args(["display-message", "-p", "#{pane_pid}"])
            .output()
            .expect("display-message");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a pane pid")
    }

    /// A tmux format of the pane (`#{alternate_on}`, `#{cursor_flag}`), expanded.
    #[must_use]
    pub fn pane_format(&self, format: &str) -> String {
        let out = self
            .tmux()
            .args(["display-message", "-p", format])
            .output()
            .expect("display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Whether a process whose command line holds `pattern` runs.
    #[must_use]
    pub fn running(pattern: &str) -> bool {
        let status = Command::new("pgrep")
            .args(["-f", "--", pattern])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pgrep");
        match status.code() {
            Some(0) => true,
            Some(1) => false,
            _ => panic!("pgrep -f {pattern:?} failed: {status}"),
        }
    }

    /// The process id of the program: the newest process whose command line holds `pattern`.
    #[must_use]
    pub fn pid_of(pattern: &str) -> i32 {
        let out = Command::new("pgrep")
            .args(["-n", "-f", "--", pattern])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a pid")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}
