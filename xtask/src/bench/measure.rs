//! Measurement primitives: the CPU time and peak memory of a child run to its end or of a
//! running process, medians of repeated runs, programs on a screen of their own (tmux), and
//! waiting on conditions that can fail.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tcptrack_tests::netns::{wait_until, wait_until_every};
use tcptrack_tests::tmux::Tmux;

/// How long anything the cases wait for may take to be ready.
pub const READY: Duration = Duration::from_secs(20);

/// What one run of a process cost.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// User + system.
    pub cpu: Duration,
    pub wall: Duration,
    pub peak_rss_kib: u64,
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(tv.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(tv.tv_usec).unwrap_or(0))
}

/// Runs `cmd` to its end (stdout discarded) and returns its own CPU time and peak memory.
pub fn run_to_end(cmd: &mut Command) -> Result<Usage> {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {cmd:?}"))?;
    let pid = i32::try_from(child.id()).context("pid")?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with valid pointers to locals.
    let r = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let wall = start.elapsed();
    if r != pid {
        bail!("wait4 failed for {cmd:?}");
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        bail!("{cmd:?} failed (status {status}): {}", err.trim());
    }
    Ok(Usage {
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        wall,
        peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// A `/proc/PID/stat` line split at its command name (which may hold spaces and parentheses):
/// (command name, the fields after it, from field 3 on).
fn split_stat(stat: &str) -> Option<(&str, Vec<&str>)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let (_, comm) = head.split_once('(')?;
    Some((comm, rest.split_whitespace().collect()))
}

/// CPU time a running process has used so far (user and system), in clock ticks (10 ms on most
/// systems), from /proc.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).context("read /proc/PID/stat")?;
    let (_, f) = split_stat(&stat).context("stat format")?;
    // utime and stime: fields 14 and 15.
    let field = |i: usize| -> Result<u64> {
        f.get(i)
            .context("stat has too few fields")?
            .parse::<u64>()
            .context("stat field")
    };
    Ok(field(11)? + field(12)?)
}

/// CPU time used so far and peak memory of a running process, from /proc.
pub fn proc_usage(pid: u32) -> Result<(Duration, u64)> {
    let ticks = cpu_ticks(pid)?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).context("read /proc/PID/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok((Duration::from_millis(ticks * 1000 / hz), hwm))
}

/// The child of `parent` whose command name is `name` (as the kernel keeps it, cut to 15
/// bytes), if one runs.
fn child_named(parent: u32, name: &str) -> Result<Option<u32>> {
    let name = name.get(..15).unwrap_or(name);
    for entry in fs::read_dir("/proc").context("read /proc")? {
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes may end while the folder is read.
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((comm, f)) = split_stat(&stat) {
            if comm == name && f.get(1).and_then(|p| p.parse().ok()) == Some(parent) {
                return Ok(Some(pid));
            }
        }
    }
    Ok(None)
}

/// Whether process `pid` has ended (it is gone, or a zombie).
fn ended(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        split_stat(&s).is_some_and(|(_, f)| f.first() == Some(&"Z"))
    })
}

/// Waits until `probe` gives a value (checking every `every`, for at most `limit`), and
/// returns it, or the error it fails with. Panics with `what` when the deadline passes.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let mut outcome = None;
    wait_until_every(what, limit, every, || match probe() {
        Ok(None) => false,
        done => {
            outcome = Some(done);
            true
        }
    });
    match outcome {
        Some(Ok(Some(v))) => Ok(v),
        Some(Err(e)) => Err(e.context(format!("waiting for {what}"))),
        _ => bail!("waiting for {what}: it ended without an outcome"),
    }
}

/// A program on a screen of its own (tmux; the monitors draw with curses), stopped on drop.
pub struct Screen {
    tmux: Tmux,
    /// The program's process id.
    pub pid: u32,
    /// When the program's process was seen running.
    pub started: Instant,
}

impl Screen {
    /// Starts shell command line `command` in a `width` x `height` window, and waits until
    /// the process it runs (the pane shell's child called `program`) is there.
    pub fn start(command: &str, (width, height): (u16, u16), program: &str) -> Result<Self> {
        let tmux = Tmux::start(command, width, height);
        let shell = tmux.pane_pid();
        let pid = wait_for(
            &format!("`{program}` to run in its tmux pane"),
            READY,
            Duration::from_millis(20),
            || child_named(shell, program),
        )?;
        Ok(Self {
            tmux,
            pid,
            started: Instant::now(),
        })
    }

    /// Waits until the screen shows `text`.
    pub fn wait_for_text(&self, text: &str) {
        wait_until(&format!("`{text}` on screen"), READY, || {
            self.tmux.screen().contains(text)
        });
    }

    /// Sends keys to the program, as tmux names them.
    pub fn keys(&self, keys: &[&str]) {
        self.tmux.keys(keys);
    }

    /// What the screen shows now, one string per line.
    pub fn text(&self) -> String {
        self.tmux.screen()
    }

    /// CPU time used so far and peak memory of the program.
    pub fn usage(&self) -> Result<(Duration, u64)> {
        proc_usage(self.pid)
    }

    /// Whether the program has ended.
    pub fn ended(&self) -> bool {
        ended(self.pid)
    }

    /// Closes the screen (the program gets SIGHUP) and waits until the program has ended, so
    /// that nothing of it runs in what is measured next.
    pub fn stop(self) {
        let pid = self.pid;
        drop(self.tmux);
        wait_until(&format!("process {pid} to end"), READY, || ended(pid));
    }
}

/// `cpu` in percent of one core over `span`.
pub fn percent(cpu: Duration, span: Duration) -> f64 {
    cpu.as_secs_f64() * 100.0 / span.as_secs_f64()
}

/// The median of `runs` runs of `f`, by CPU time.
pub fn median_of(runs: usize, f: impl FnMut() -> Result<Usage>) -> Result<Usage> {
    median_and_runs(runs, f).map(|(median, _)| median)
}

/// The median of `runs` runs of `f`, by CPU time, and every run's CPU seconds (in the order
/// they ran).
pub fn median_and_runs(
    runs: usize,
    mut f: impl FnMut() -> Result<Usage>,
) -> Result<(Usage, Vec<f64>)> {
    let runs = (0..runs).map(|_| f()).collect::<Result<Vec<_>>>()?;
    let cpu = runs.iter().map(|u| u.cpu.as_secs_f64()).collect();
    let median = median_by(runs, |a, b| a.cpu.cmp(&b.cpu)).context("no runs")?;
    Ok((median, cpu))
}

/// The median of `v` by `order` (the upper one of an even count), if `v` is not empty.
pub fn median_by<T>(mut v: Vec<T>, order: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Option<T> {
    v.sort_by(order);
    let mid = v.len() / 2;
    v.into_iter().nth(mid)
}

/// A FIFO at `path`, replacing whatever was there.
pub fn make_fifo(path: &Path) -> Result<()> {
    let _ = fs::remove_file(path);
    let c = std::ffi::CString::new(path.to_str().context("path")?)?;
    // SAFETY: mkfifo with a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        bail!("mkfifo {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_command_name_with_spaces_and_parentheses() {
        let (comm, f) = split_stat("42 (a (b) c) S 7 42 42 0 -1 4194560 1 0 0 0 12 34 0 0")
            .expect("a stat line");
        assert_eq!(comm, "a (b) c");
        assert_eq!(f[0], "S");
        assert_eq!(f[1], "7");
        assert_eq!((f[11], f[12]), ("12", "34"));
    }

    #[test]
    fn medians() {
        assert_eq!(median_by(vec![3, 1, 2], Ord::cmp), Some(2));
        assert_eq!(median_by(vec![4, 1, 3, 2], Ord::cmp), Some(3));
        assert_eq!(median_by(Vec::<u8>::new(), Ord::cmp), None);
    }

    #[test]
    fn this_process_runs() {
        let me = std::process::id();
        assert!(!ended(me));
        let (cpu, hwm) = proc_usage(me).expect("our own usage");
        assert!(hwm > 0, "{cpu:?}");
    }
}
