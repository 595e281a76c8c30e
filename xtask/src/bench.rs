//! `cargo xtask bench`: tcptrack against the limits and the classic tool, measured in one run.
//!
//! Every figure printed comes from processes run by this invocation: captures are generated
//! afresh, each case runs several times and the median is kept. Times are CPU seconds (user +
//! system) of the measured process, so that the classic tcptrack, which needs a terminal and a
//! pipe held open to process a whole file, is measured the same way as the others.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::gen::{self, Shape};
use crate::{root, setup, sh, step};

/// What one run of a process cost.
#[derive(Clone, Copy, Debug)]
struct Cost {
    cpu: Duration,
    wall: Duration,
    peak_rss_kib: u64,
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(tv.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(tv.tv_usec).unwrap_or(0))
}

/// Runs `cmd` to its end (stdout discarded) and returns its own CPU time and peak memory.
fn measure(cmd: &mut Command) -> Result<Cost> {
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
    Ok(Cost {
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        wall,
        peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// CPU time and peak memory of a live process, from /proc.
fn proc_cost(pid: u32) -> Result<(Duration, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).context("read /proc/PID/stat")?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
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

/// The classic tcptrack on `file`: it draws with curses (so it runs in a tmux pane) and leaves
/// at the end of reading before it has processed everything, so it reads the capture from a
/// pipe held open, and is measured when it has read all of it.
fn classic(file: &Path, work: &Path) -> Result<Cost> {
    let fifo = work.join("classic.fifo");
    let _ = fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.to_str().context("path")?)?;
    // SAFETY: mkfifo with a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        bail!("mkfifo {}", fifo.display());
    }
    let session = format!("tcptrack-bench-{}", std::process::id());
    let out = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "200",
            "-y",
            "50",
            "-P",
            "-F",
            "#{pane_pid}",
        ])
        .arg(format!("exec tcptrack -T {}", fifo.display()))
        .output()
        .context("start tmux")?;
    let result = (|| {
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("pane pid")?;
        let start = Instant::now();
        // Open for writing once the reader is there (non-blocking open fails until then).
        let mut pipe = loop {
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
            {
                Ok(f) => break f,
                Err(_) if start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => bail!("the classic tcptrack did not open its input: {e}"),
            }
        };
        // Back to blocking writes.
        // SAFETY: fcntl on a file descriptor we own.
        unsafe {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&pipe);
            libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) & !libc::O_NONBLOCK,
            );
        }
        std::io::copy(&mut File::open(file)?, &mut pipe).context("feed the classic tcptrack")?;
        // It has read everything once the pipe is empty; it handles each packet as it reads
        // it (only libpcap's last buffer, a few KiB, may still be in hand). Its screen keeps
        // using CPU after that, in proportion to its connections, so that moment is the end.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&pipe);
        loop {
            let mut unread: libc::c_int = 0;
            // SAFETY: FIONREAD on a pipe we own, into a local int.
            if unsafe { libc::ioctl(fd, libc::FIONREAD, &raw mut unread) } != 0 {
                bail!("FIONREAD on the classic's pipe failed");
            }
            if unread == 0 {
                break;
            }
            if start.elapsed() > Duration::from_secs(600) {
                bail!("the classic tcptrack did not read its input within 10 minutes");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let last = proc_cost(pid)?;
        drop(pipe);
        Ok(Cost {
            cpu: last.0,
            wall: start.elapsed(),
            peak_rss_kib: last.1,
        })
    })();
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .stderr(Stdio::null())
        .status();
    let _ = fs::remove_file(&fifo);
    result
}

/// CPU used by an idle live screen over `span`, in percent of one core: `program -i lo` in a
/// network namespace of its own (nothing flows there), in a tmux pane.
fn idle_cpu(program: &Path, span: Duration) -> Result<f64> {
    let tag = format!("tcptrack-bench-idle-{}", std::process::id());
    sh("ip", &["netns", "add", &tag])?;
    let result = (|| {
        sh("ip", &["-n", &tag, "link", "set", "lo", "up"])?;
        let out = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &tag,
                "-x",
                "120",
                "-y",
                "40",
                "-P",
                "-F",
                "#{pane_pid}",
            ])
            .arg(format!(
                "exec ip netns exec {tag} {} -i lo",
                program.display()
            ))
            .output()
            .context("start tmux")?;
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("pane pid")?;
        // Let it start up; what is measured is the steady state.
        std::thread::sleep(Duration::from_secs(2));
        let (before, _) = proc_cost(pid)?;
        std::thread::sleep(span);
        let (after, _) = proc_cost(pid)?;
        Ok((after - before).as_secs_f64() * 100.0 / span.as_secs_f64())
    })();
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &tag])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("ip").args(["netns", "del", &tag]).status();
    result
}

fn median(mut v: Vec<Cost>) -> Cost {
    v.sort_by_key(|c| c.cpu);
    v[v.len() / 2]
}

fn repeat(runs: usize, mut f: impl FnMut() -> Result<Cost>) -> Result<Cost> {
    let costs = (0..runs).map(|_| f()).collect::<Result<Vec<_>>>()?;
    Ok(median(costs))
}

fn pps(packets: u64, d: Duration) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "packet counts far below 2^52")]
    let p = packets as f64;
    p / d.as_secs_f64().max(1e-9)
}

pub fn run(quick: bool) -> Result<()> {
    setup::ensure(setup::Need::Tests)?;
    step("building tcptrack and the bare libpcap read loop (release)");
    sh(
        "cargo",
        &[
            "build",
            "--quiet",
            "--release",
            "--package",
            "tcptrack",
            "--bin",
            "tcptrack",
            "--example",
            "pcap_read_loop",
        ],
    )?;
    let root = root();
    let ours_bin = root.join("target/release/tcptrack");
    let bare_bin = root.join("target/release/examples/pcap_read_loop");
    let work = root.join("target/bench");
    fs::create_dir_all(&work)?;

    let (packets, big, runs) = if quick {
        (200_000, 20_000, 1)
    } else {
        (1_000_000, 100_000, 3)
    };
    let flows = work.join("flows.pcap");
    let many = work.join("many.pcap");
    let tiny = work.join("tiny.pcap");
    step(&format!("generating captures: {packets} packets with 2,000 concurrent connections; {packets} packets with {big} concurrent connections"));
    let flows_conns = gen::write(
        &flows,
        Shape {
            packets,
            concurrent: 2_000,
            data_segments: Some(20),
        },
    )?;
    let many_conns = gen::write(
        &many,
        Shape {
            packets,
            concurrent: big,
            data_segments: None,
        },
    )?;
    gen::write(
        &tiny,
        Shape {
            packets: 1_000,
            concurrent: 10,
            data_segments: None,
        },
    )?;

    let ours = |f: &Path| -> Result<Cost> {
        measure(
            Command::new(&ours_bin)
                .arg("-T")
                .arg(f)
                .args(["--output", "json"]),
        )
    };
    step(&format!(
        "-T throughput, {runs} run(s) each: tcptrack, bare libpcap loop, tshark, classic tcptrack"
    ));
    let t_ours = repeat(runs, || ours(&flows))?;
    let t_bare = repeat(runs, || measure(Command::new(&bare_bin).arg(&flows)))?;
    let t_tshark = repeat(runs, || {
        measure(
            Command::new("tshark")
                .args(["-n", "-q", "-z", "conv,tcp", "-r"])
                .arg(&flows),
        )
    })?;
    let t_classic = repeat(runs, || classic(&flows, &work))?;

    step(&format!(
        "peak memory with {many_conns} connections, and with 10 (the baseline)"
    ));
    let m_ours = repeat(runs, || ours(&many))?;
    let m_ours_base = repeat(runs, || ours(&tiny))?;
    let m_classic = repeat(1, || classic(&many, &work))?;
    let m_classic_base = repeat(1, || classic(&tiny, &work))?;
    let per_conn = |m: Cost, base: Cost| -> u64 {
        m.peak_rss_kib.saturating_sub(base.peak_rss_kib) * 1024 / many_conns.max(1)
    };

    let span = if quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    };
    step(&format!(
        "CPU of an idle live screen over {} s: tcptrack, classic tcptrack",
        span.as_secs()
    ));
    let idle_ours = idle_cpu(&ours_bin, span)?;
    let idle_classic = idle_cpu(Path::new("/usr/bin/tcptrack"), span)?;

    let rows = [
        ("tcptrack -T --output json", t_ours),
        ("bare libpcap read loop (the limit)", t_bare),
        ("tshark -q -z conv,tcp", t_tshark),
        ("classic tcptrack 1.4.3", t_classic),
    ];
    let ours_pps = pps(packets, t_ours.cpu);
    let mut md = String::new();
    writeln!(
        md,
        "## `-T` throughput: {packets} packets, {flows_conns} connections (2,000 at a time)\n"
    )?;
    writeln!(
        md,
        "| program | CPU s | wall s | packets/s (CPU) | ours ÷ this |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|")?;
    for (name, c) in rows {
        let p = pps(packets, c.cpu);
        writeln!(
            md,
            "| {name} | {:.3} | {:.3} | {:.0} | {:.2} |",
            c.cpu.as_secs_f64(),
            c.wall.as_secs_f64(),
            p,
            ours_pps / p
        )?;
    }
    writeln!(
        md,
        "\n## Memory: {many_conns} concurrent connections ({packets} packets)\n"
    )?;
    writeln!(
        md,
        "| program | peak RSS | baseline (10 connections) | bytes per connection |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    for (name, m, b) in [
        ("tcptrack", m_ours, m_ours_base),
        ("classic tcptrack 1.4.3", m_classic, m_classic_base),
    ] {
        writeln!(
            md,
            "| {name} | {} KiB | {} KiB | {} |",
            m.peak_rss_kib,
            b.peak_rss_kib,
            per_conn(m, b)
        )?;
    }
    writeln!(
        md,
        "\n## CPU of an idle live screen over {} s (`-i lo` in an empty network namespace)\n",
        span.as_secs()
    )?;
    writeln!(md, "| program | CPU, % of one core |")?;
    writeln!(md, "|---|---:|")?;
    writeln!(md, "| tcptrack | {idle_ours:.2} |")?;
    writeln!(md, "| classic tcptrack 1.4.3 | {idle_classic:.2} |")?;
    let ratio_bare = pps(packets, t_bare.cpu) / ours_pps;
    let ratio_classic = ours_pps / pps(packets, t_classic.cpu);
    writeln!(md, "\nTargets: within 3x of the bare loop (measured {ratio_bare:.2}x), at least 10x the classic (measured {ratio_classic:.1}x), under 300 bytes per connection (measured {}), idle screen under 1% of a core (measured {idle_ours:.2}%).", per_conn(m_ours, m_ours_base))?;
    print!("{md}");

    let results = root.join("results");
    fs::create_dir_all(&results)?;
    let name = if quick { "bench-quick" } else { "bench" };
    fs::write(results.join(format!("{name}.md")), &md)?;
    let cost = |c: Cost| serde_json::json!({"cpu_s": c.cpu.as_secs_f64(), "wall_s": c.wall.as_secs_f64(), "peak_rss_kib": c.peak_rss_kib});
    let json = serde_json::json!({
        "packets": packets,
        "runs": runs,
        "throughput": {
            "connections": flows_conns,
            "tcptrack": cost(t_ours), "bare_libpcap": cost(t_bare), "tshark": cost(t_tshark), "classic": cost(t_classic),
            "bare_over_ours": ratio_bare, "ours_over_classic": ratio_classic,
        },
        "memory": {
            "connections": many_conns,
            "tcptrack": cost(m_ours), "tcptrack_baseline": cost(m_ours_base),
            "classic": cost(m_classic), "classic_baseline": cost(m_classic_base),
            "tcptrack_bytes_per_connection": per_conn(m_ours, m_ours_base),
            "classic_bytes_per_connection": per_conn(m_classic, m_classic_base),
        },
    });
    let json = {
        let mut json = json;
        json["idle_screen"] = serde_json::json!({
            "seconds": span.as_secs(), "tcptrack_cpu_percent": idle_ours, "classic_cpu_percent": idle_classic,
        });
        json
    };
    let mut f = File::create(results.join(format!("{name}.json")))?;
    writeln!(f, "{}", serde_json::to_string_pretty(&json)?)?;
    step(&format!(
        "written to {}",
        results.join(format!("{name}.{{md,json}}")).display()
    ));
    Ok(())
}
