//! The cases, one per module, each returning its part of the report, and what several of them
//! share: tcptrack and the classic on a capture file, a live monitor started and ready.

pub mod idle;
pub mod ipfix;
pub mod kernel;
pub mod kernel_live;
pub mod live;
pub mod memory;
pub mod scale;
pub mod soak;
pub mod throughput;

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tcptrack_tests::netns::{promiscuity, wait_until, HostPair};

use super::measure::{make_fifo, run_to_end, wait_for, Screen, Usage, READY};

/// The classic tcptrack, as the live cases run it.
pub const CLASSIC: &str = "/usr/bin/tcptrack";

/// tcptrack (`ours`) on capture `file`, headless.
pub fn ours_on_file(ours: &Path, file: &Path) -> Result<Usage> {
    run_to_end(
        Command::new(ours)
            .arg("-T")
            .arg(file)
            .args(["--output", "json"]),
    )
}

/// The classic tcptrack on `file`, measured to the end of its work: it draws with curses (so it
/// runs in a tmux pane), reads the capture from a pipe held open (it leaves at the end of a file
/// before it has processed everything), sorted by bytes, and its CPU time is taken when its
/// screen shows the capture's last connection, the marker ([`crate::gen::MARKER_CLIENT`]: more
/// payload than any other, so first when sorted by bytes, once processed).
pub fn classic_on_file(file: &Path, work: &Path) -> Result<Usage> {
    let fifo = work.join("classic.fifo");
    make_fifo(&fifo)?;
    let result = feed_classic(file, &fifo);
    let _ = fs::remove_file(&fifo);
    result
}

fn feed_classic(file: &Path, fifo: &Path) -> Result<Usage> {
    let screen = Screen::start(
        &format!("tcptrack -T {}", fifo.display()),
        (200, 50),
        "tcptrack",
    )?;
    let still_running = || {
        if screen.ended() {
            bail!("the classic tcptrack ended before it read all its input");
        }
        Ok(())
    };
    // Sorted by bytes (unsorted -> rate -> bytes) before any packet.
    screen.wait_for_text("Unsorted");
    screen.keys(&["s", "s"]);
    screen.wait_for_text("Sorted by bytes");
    // Open for writing once the reader is there (a non-blocking open fails until then).
    let mut pipe = wait_for(
        "the classic tcptrack to open its input",
        Duration::from_secs(10),
        Duration::from_millis(10),
        || {
            still_running()?;
            Ok(OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo)
                .ok())
        },
    )?;
    let fd = pipe.as_raw_fd();
    // Back to blocking writes.
    // SAFETY: fcntl on a file descriptor we own.
    unsafe {
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) & !libc::O_NONBLOCK,
        );
    }
    let mut capture = File::open(file).with_context(|| format!("open {}", file.display()))?;
    std::io::copy(&mut capture, &mut pipe).context("feed the classic tcptrack")?;
    // The end of its work: the marker on its screen, looked for every 5 ms.
    wait_for(
        "the classic tcptrack to show the capture's last connection",
        Duration::from_secs(600),
        Duration::from_millis(5),
        || {
            still_running()?;
            Ok(screen
                .text()
                .contains(crate::gen::MARKER_CLIENT)
                .then_some(()))
        },
    )?;
    let (cpu, peak_rss_kib) = screen.usage()?;
    let wall = screen.started.elapsed();
    drop(pipe);
    screen.stop();
    Ok(Usage {
        cpu,
        wall,
        peak_rss_kib,
    })
}

/// What shows that a live monitor is capturing.
pub enum Ready {
    /// This text on its screen: tcptrack names its source on the status line (`kernel on
    /// veth-a`) once the source is open and its programs attached.
    Screen(String),
    /// The classic: its screen drawn and the interface promiscuous (it draws before it opens
    /// its capture, and opens it promiscuous).
    Classic,
}

/// A live monitor as the cases run it.
pub struct Monitor {
    pub program: PathBuf,
    /// Its arguments, as a shell command line.
    pub args: String,
    pub ready: Ready,
}

/// The live monitors, each watching `interface`, with their names in the report: tcptrack
/// (`ours`) on its kernel path (the default), tcptrack `--libpcap`, and the classic.
pub fn watchers(ours: &Path, interface: &str) -> [(&'static str, Monitor); 3] {
    let watch = |program: &Path, extra: &str, ready: Ready| Monitor {
        program: program.to_path_buf(),
        args: format!("{extra}-i {interface}"),
        ready,
    };
    [
        (
            "tcptrack (kernel)",
            watch(ours, "", Ready::Screen(format!("kernel on {interface}"))),
        ),
        (
            "tcptrack --libpcap",
            watch(
                ours,
                "--libpcap ",
                Ready::Screen(format!("libpcap on {interface}")),
            ),
        ),
        (
            "classic tcptrack 1.4.3",
            watch(&PathBuf::from(CLASSIC), "", Ready::Classic),
        ),
    ]
}

/// Starts `monitor` on interface `interface` of namespace `ns`, in a `size` window, and waits
/// until it captures.
pub fn start_monitor(
    ns: &str,
    interface: &str,
    monitor: &Monitor,
    size: (u16, u16),
) -> Result<Screen> {
    let name = monitor
        .program
        .file_name()
        .and_then(|n| n.to_str())
        .context("program name")?;
    let screen = Screen::start(
        &format!(
            "ip netns exec {ns} {} {}",
            monitor.program.display(),
            monitor.args
        ),
        size,
        name,
    )?;
    match &monitor.ready {
        Ready::Screen(text) => screen.wait_for_text(text),
        Ready::Classic => {
            screen.wait_for_text("Connections");
            wait_until(
                &format!("the classic tcptrack to open {interface} (promiscuous)"),
                READY,
                || promiscuity(ns, interface) > 0,
            );
        }
    }
    Ok(screen)
}

/// Sets kernel `settings` (`name=value`) in namespace `ns`.
pub fn sysctl(ns: &str, settings: &[&str]) -> Result<()> {
    let out = HostPair::cmd(ns, "sysctl")
        .args(["-q", "-w"])
        .args(settings)
        .output()
        .context("run sysctl")?;
    if !out.status.success() {
        bail!(
            "sysctl -w {} in {ns}: {}",
            settings.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
