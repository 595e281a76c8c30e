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

/// A program in a tmux session of its own (the monitors draw with curses), killed on drop.
struct Pane {
    session: String,
    /// The program's pid (the pane runs it with `exec`).
    pid: u32,
}

impl Pane {
    fn start(session: &str, (width, height): (u16, u16), command: &str) -> Result<Self> {
        let out = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                session,
                "-P",
                "-F",
                "#{pane_pid}",
                "-x",
            ])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(command)
            .output()
            .context("start tmux")?;
        let pid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("pane pid")?;
        Ok(Self {
            session: session.to_owned(),
            pid,
        })
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .stderr(Stdio::null())
            .status();
    }
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
    let pane = Pane::start(
        &format!("tcptrack-bench-{}", std::process::id()),
        (200, 50),
        &format!("exec tcptrack -T {}", fifo.display()),
    );
    let result = (|| {
        let pid = pane.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?.pid;
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
    drop(pane);
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
        let pane = Pane::start(
            &tag,
            (120, 40),
            &format!("exec ip netns exec {tag} {} -i lo", program.display()),
        )?;
        let pid = pane.pid;
        // Let it start up; what is measured is the steady state.
        std::thread::sleep(Duration::from_secs(2));
        let (before, _) = proc_cost(pid)?;
        std::thread::sleep(span);
        let (after, _) = proc_cost(pid)?;
        Ok((after - before).as_secs_f64() * 100.0 / span.as_secs_f64())
    })();
    let _ = Command::new("ip").args(["netns", "del", &tag]).status();
    result
}

/// Kernel cost per packet, from `examples/kernel_cost` (BPF_PROG_TEST_RUN).
fn kernel_cost(bin: &Path, repeat: u32, fresh: u32) -> Result<serde_json::Value> {
    let out = Command::new(bin)
        .args([repeat.to_string(), fresh.to_string()])
        .output()
        .context("run kernel_cost")?;
    if !out.status.success() {
        bail!(
            "kernel_cost failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("kernel_cost output")
}

/// One live case: receiver throughput of an iperf3 run across a veth pair, and the CPU the
/// monitor (if any) used meanwhile, in percent of one core.
struct LiveCase {
    name: &'static str,
    gbits: f64,
    monitor_cpu: Option<f64>,
}

/// iperf3 from one namespace to another across a veth pair, `span` long, with each monitor in
/// turn watching host a's interface (in a tmux pane, as people run them).
fn live_overhead(ours: &Path, span: Duration) -> Result<Vec<LiveCase>> {
    let pid = std::process::id();
    let (a, b) = (
        format!("tcptrack-bench-a-{pid}"),
        format!("tcptrack-bench-b-{pid}"),
    );
    sh("ip", &["netns", "add", &a])?;
    let result = (|| {
        sh("ip", &["netns", "add", &b])?;
        sh(
            "ip",
            &[
                "-n", &a, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
                "netns", &b,
            ],
        )?;
        for (ns, dev, addr) in [
            (&a, "veth-a", "198.18.0.1/24"),
            (&b, "veth-b", "198.18.0.2/24"),
        ] {
            sh("ip", &["-n", ns, "addr", "add", addr, "dev", dev])?;
            sh("ip", &["-n", ns, "link", "set", dev, "up"])?;
            sh("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        let mut server = Command::new("ip")
            .args(["netns", "exec", &b, "iperf3", "-s", "-B", "198.18.0.2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start iperf3 server")?;
        let cases = [
            ("unmonitored", None),
            (
                "tcptrack (kernel)",
                Some(format!("{} -i veth-a", ours.display())),
            ),
            (
                "tcptrack --libpcap",
                Some(format!("{} --libpcap -i veth-a", ours.display())),
            ),
            (
                "classic tcptrack 1.4.3",
                Some("/usr/bin/tcptrack -i veth-a".to_owned()),
            ),
        ];
        let mut out = Vec::new();
        let run = (|| -> Result<()> {
            // Let the server come up.
            std::thread::sleep(Duration::from_millis(500));
            for (name, monitor) in cases {
                let session = format!("tcptrack-bench-live-{pid}");
                let pane = match &monitor {
                    Some(cmd) => {
                        let pane = Pane::start(
                            &session,
                            (120, 40),
                            &format!("exec ip netns exec {a} {cmd}"),
                        )?;
                        // Let it load and attach before measuring.
                        std::thread::sleep(Duration::from_secs(2));
                        Some(pane)
                    }
                    None => None,
                };
                let before = pane.as_ref().map(|p| proc_cost(p.pid)).transpose()?;
                let iperf = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &a,
                        "iperf3",
                        "-J",
                        "-c",
                        "198.18.0.2",
                        "-t",
                    ])
                    .arg(span.as_secs().to_string())
                    .output()
                    .context("run iperf3")?;
                let after = pane.as_ref().map(|p| proc_cost(p.pid)).transpose()?;
                drop(pane);
                let report: serde_json::Value =
                    serde_json::from_slice(&iperf.stdout).context("iperf3 -J output")?;
                let bps = report["end"]["sum_received"]["bits_per_second"]
                    .as_f64()
                    .with_context(|| {
                        format!(
                            "iperf3 gave no result: {}",
                            String::from_utf8_lossy(&iperf.stdout)
                        )
                    })?;
                let monitor_cpu = match (before, after) {
                    (Some(b), Some(a)) => {
                        Some((a.0 - b.0).as_secs_f64() * 100.0 / span.as_secs_f64())
                    }
                    _ => None,
                };
                out.push(LiveCase {
                    name,
                    gbits: bps / 1e9,
                    monitor_cpu,
                });
            }
            Ok(())
        })();
        let _ = server.kill();
        let _ = server.wait();
        run.map(|()| out)
    })();
    let _ = Command::new("ip").args(["netns", "del", &a]).status();
    let _ = Command::new("ip").args(["netns", "del", &b]).status();
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
            "--example",
            "kernel_cost",
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

    step("kernel cost per packet (BPF_PROG_TEST_RUN)");
    let (repeat, fresh) = if quick {
        (200_000, 5_000)
    } else {
        (1_000_000, 20_000)
    };
    let costs = (0..runs)
        .map(|_| {
            kernel_cost(
                &root.join("target/release/examples/kernel_cost"),
                repeat,
                fresh,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let med = |field: &str| -> f64 {
        let mut v: Vec<f64> = costs.iter().filter_map(|c| c[field].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (empty_ns, existing_ns, new_ns, empty_single_ns) = (
        med("empty_ns"),
        med("existing_ns"),
        med("new_ns"),
        med("empty_single_ns"),
    );

    let live_span = if quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    step(&format!(
        "live overhead: iperf3 across a veth pair for {} s, unmonitored and under each monitor",
        live_span.as_secs()
    ));
    // Several runs; per monitor, the run of median throughput.
    let live_runs = (0..runs)
        .map(|_| live_overhead(&ours_bin, live_span))
        .collect::<Result<Vec<_>>>()?;
    let live: Vec<LiveCase> = (0..live_runs.first().map_or(0, Vec::len))
        .map(|i| {
            let mut v: Vec<&LiveCase> = live_runs.iter().filter_map(|r| r.get(i)).collect();
            v.sort_by(|a, b| a.gbits.total_cmp(&b.gbits));
            let m = v[v.len() / 2];
            LiveCase {
                name: m.name,
                gbits: m.gbits,
                monitor_cpu: m.monitor_cpu,
            }
        })
        .collect();

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
    writeln!(
        md,
        "\n## Kernel cost per packet (BPF_PROG_TEST_RUN, TC, 1000-byte TCP segments)\n"
    )?;
    writeln!(md, "| program | ns per packet |")?;
    writeln!(md, "|---|---:|")?;
    writeln!(
        md,
        "| empty TC program ({repeat} repeats) | {empty_ns:.0} |"
    )?;
    writeln!(
        md,
        "| tcptrack, existing connection ({repeat} repeats) | {existing_ns:.0} |"
    )?;
    writeln!(
        md,
        "| empty TC program, one run each ({fresh} runs) | {empty_single_ns:.0} |"
    )?;
    writeln!(
        md,
        "| tcptrack, new connection, one run each ({fresh} runs) | {new_ns:.0} |"
    )?;
    writeln!(
        md,
        "\n## Live overhead: iperf3 across a veth pair, {} s each, median of {runs} run(s)\n",
        live_span.as_secs()
    )?;
    writeln!(
        md,
        "| monitor | receiver Gbit/s | vs unmonitored | monitor CPU, % of a core |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    let base = live.first().map_or(f64::NAN, |c| c.gbits);
    for c in &live {
        let cpu = c
            .monitor_cpu
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        writeln!(
            md,
            "| {} | {:.2} | {:.1}% | {cpu} |",
            c.name,
            c.gbits,
            c.gbits * 100.0 / base
        )?;
    }
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
        json["kernel_cost_ns"] = serde_json::json!({
            "empty": empty_ns, "existing_connection": existing_ns, "new_connection": new_ns,
            "empty_single_run": empty_single_ns, "repeat": repeat, "new_connections": fresh,
        });
        json["live"] = live
            .iter()
            .map(|c| serde_json::json!({"monitor": c.name, "gbits": c.gbits, "monitor_cpu_percent": c.monitor_cpu}))
            .collect();
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
