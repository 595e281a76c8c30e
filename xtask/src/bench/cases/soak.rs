//! The soak (`cargo xtask bench --only soak`, 30 minutes unless `--minutes`): tcptrack as a
//! daemon is left running, and what it holds and costs is sampled every 10 s.
//!
//! On host a of a fresh pair, tcptrack's kernel path runs with its screen (tmux), `--metrics`
//! (scraped every second, as Prometheus would, from host a's loopback) and `--flow-log`. From
//! host b, a load ([`LOAD`]) holds [`HELD`] connections for the whole run, each sending 100
//! bytes a second and reading the server's 200, and opens and closes [`RATE`] more a second,
//! each with 100 bytes in and 200 out; it counts what it made and sent. Sampled every 10 s
//! from /proc and the metrics: RSS, open files, threads, CPU and the mean refresh time. At
//! every scrape the metrics must say opened = ended + listed. At the end tcptrack quits and
//! its flow log must hold one record per connection the load made, with the load's bytes.

mod plot;
mod report;
mod sample;

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use tcptrack_tests::netns::{wait_until, Background, HostPair, A4};

use super::super::measure::READY;
use super::scale::scrape::{in_netns, spawn_in_netns};
use super::{start_monitor, sysctl, watchers, Monitor};
use crate::step;
pub use report::Soak;
use report::{Counted, FlowLog, Sample};
use sample::{ticks_per_second, Process, Scrape, METRICS};

/// The server, in host a.
const SERVER: &str = include_str!("soak/server.py");
/// The load, in host b.
const LOAD: &str = include_str!("soak/load.py");
/// The server's port.
const PORT: u16 = 6001;
/// Connections held for the whole run.
const HELD: u32 = 2_000;
/// Connections opened and closed each second.
const RATE: u32 = 200;
/// How often the process and the metrics are sampled.
const EVERY: Duration = Duration::from_secs(10);
/// How often the metrics are scraped.
const SCRAPE: Duration = Duration::from_secs(1);
/// The screen's window.
const SIZE: (u16, u16) = (200, 50);
/// Mismatched scrapes kept in the report (all are counted).
const MISMATCHES_KEPT: usize = 20;

/// Runs the soak for `minutes`; its flow log goes into `work`.
pub fn run(ours: &Path, minutes: u32, work: &Path) -> Result<Soak> {
    step(&format!(
        "soak: tcptrack (kernel path, screen, --metrics, --flow-log) for {minutes} minutes under {HELD} held connections and {RATE} new ones a second"
    ));
    let flow_log = work.join("soak-flows.jsonl");
    let _ = std::fs::remove_file(&flow_log);
    let hosts = HostPair::new();
    sysctl(
        &hosts.a,
        &[
            "net.core.somaxconn=4096",
            "net.ipv4.tcp_max_syn_backlog=4096",
        ],
    )?;
    sysctl(&hosts.b, &["net.ipv4.ip_local_port_range=1024 65535"])?;
    let mut server = HostPair::cmd(&hosts.a, "python3");
    server.args(["-c", SERVER, A4, &PORT.to_string()]);
    let _server = Background::spawn(server);
    wait_until("the soak's server in host a", READY, || {
        HostPair::listening(&hosts.a, PORT)
    });
    let [(_, kernel), ..] = watchers(ours, &hosts.a_if);
    let monitor = Monitor {
        args: format!(
            "--metrics {METRICS} --flow-log '{}' {}",
            flow_log.display(),
            kernel.args
        ),
        ..kernel
    };
    let screen = start_monitor(&hosts.a, &hosts.a_if, &monitor, SIZE)?;
    let seconds = u64::from(minutes) * 60;
    let (load, load_counted, sampled) = loaded(&hosts, screen.pid, seconds)?;
    drop(load);
    let (last, settled) = settle(&hosts.a, load_counted.connections)?;
    screen.keys(&["q"]);
    wait_until("tcptrack to quit", READY, || screen.ended());
    let soak = Soak {
        flow_log: read_flow_log(&flow_log)?,
        held: HELD,
        load: load_counted,
        losses: last.losses(),
        metrics_mismatched: sampled.mismatched,
        metrics_mismatches: sampled.mismatches,
        minutes,
        rate: RATE,
        retransmitted_segments: retransmitted(&hosts.a)? + retransmitted(&hosts.b)?,
        samples: sampled.samples,
        scrape_failures: sampled.failures,
        scrapes: sampled.scrapes,
        settled,
    };
    if soak.targets().iter().all(|t| t.met) {
        // 360,000 records in 30 minutes: kept only when something is to be looked into.
        let _ = std::fs::remove_file(&flow_log);
    }
    Ok(soak)
}

/// Writes `soak` to `NAME.{md,json,png}` in `folder`, and prints it.
pub fn write(soak: &Soak, folder: &Path, name: &str) -> Result<()> {
    let md = soak.to_string();
    print!("{md}");
    std::fs::create_dir_all(folder)?;
    let file = |ext: &str| folder.join(format!("{name}.{ext}"));
    std::fs::write(file("md"), &md).with_context(|| format!("write {}", file("md").display()))?;
    std::fs::write(file("json"), serde_json::to_string_pretty(soak)?)
        .with_context(|| format!("write {}", file("json").display()))?;
    plot::write(soak, &file("png"))?;
    step(&format!("written to {}", file("{md,json,png}").display()));
    Ok(())
}

/// The load run from host b for `seconds` while tcptrack (`pid`) is sampled: the load (ended),
/// what it counted, and the samples.
fn loaded(hosts: &HostPair, pid: u32, seconds: u64) -> Result<(Background, Counted, Sampled)> {
    let mut load = HostPair::cmd(&hosts.b, "python3");
    load.args([
        "-c",
        LOAD,
        A4,
        &PORT.to_string(),
        &HELD.to_string(),
        &RATE.to_string(),
        &seconds.to_string(),
    ]);
    let mut load = Background::spawn(load);
    let lines = lines_of(&mut load)?;
    let ready = lines.recv_timeout(Duration::from_secs(120));
    if ready.as_deref() != Ok("ready") {
        bail!(
            "the soak's load did not say ready within 120 s ({ready:?}): {}",
            stderr_of(&mut load.0)
        );
    }
    let sampler = Sampler::start(&hosts.a, pid)?;
    let deadline = Instant::now() + Duration::from_secs(seconds + 120);
    let last = loop {
        if sampler.thread.is_finished() {
            // It ends only when it fails: tcptrack gone, a scrape refused.
            sampler.stop()?;
            bail!("the sampler ended before the load");
        }
        match lines.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => break line,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => bail!(
                "the soak's load ended without its count: {}",
                stderr_of(&mut load.0)
            ),
        }
    };
    let sampled = sampler.stop()?;
    let counted: Counted =
        serde_json::from_str(&last).with_context(|| format!("the soak's load's count: {last}"))?;
    step(&format!(
        "soak: the load made {} connections, {} bytes from the clients, {} from the server",
        counted.connections, counted.client_bytes, counted.server_bytes
    ));
    Ok((load, counted, sampled))
}

/// The lines `process` writes on its standard output, as they come.
fn lines_of(process: &mut Background) -> Result<mpsc::Receiver<String>> {
    let out = process.0.stdout.take().context("the load's output")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// What `child` said on stderr (it has ended, or is killed first).
fn stderr_of(child: &mut std::process::Child) -> String {
    let _ = child.kill();
    let _ = child.wait();
    let mut said = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut said);
    }
    said.trim().to_owned()
}

/// Waits until tcptrack has listed every connection the load made (`made`) and forgotten
/// them all (closed connections linger `-r` seconds), for at most 60 s: its last scrape, and
/// whether it got there.
fn settle(ns: &str, made: u64) -> Result<(Scrape, bool)> {
    in_netns(ns, move || {
        let start = Instant::now();
        loop {
            let s = Scrape::get()?;
            let settled = s.opened() >= made && s.listed() == 0;
            if settled || start.elapsed() > Duration::from_secs(60) {
                if !settled {
                    step(&format!(
                        "soak: 60 s after the load ended tcptrack lists {} connections, opened {} of {made}",
                        s.listed(),
                        s.opened()
                    ));
                }
                return Ok((s, settled));
            }
            std::thread::sleep(SCRAPE);
        }
    })
}

/// Segments the kernel of network namespace `ns` sent again (`RetransSegs` of its
/// /proc/net/snmp; the namespace is the soak's own, so all of them are the soak's).
fn retransmitted(ns: &str) -> Result<u64> {
    let out = HostPair::cmd(ns, "cat")
        .arg("/proc/net/snmp")
        .output()
        .context("read /proc/net/snmp")?;
    let snmp = String::from_utf8_lossy(&out.stdout);
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next(), tcp.next());
    let (Some(names), Some(values)) = (names, values) else {
        bail!("no Tcp lines in {ns}'s /proc/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")
        .and_then(|(_, v)| v.parse().ok())
        .with_context(|| format!("RetransSegs in {ns}'s /proc/net/snmp"))
}

/// What the sampler gathered.
struct Sampled {
    samples: Vec<Sample>,
    scrapes: u64,
    /// Scrapes that failed.
    failures: u64,
    /// Scrapes where opened was not ended plus listed, and the first few of them.
    mismatched: u64,
    mismatches: Vec<String>,
}

/// Scrapes every second and samples every 10 s, from a thread in host a's namespace, until
/// stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Sampled>>,
}

impl Sampler {
    fn start(ns: &str, pid: u32) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = spawn_in_netns(ns, move || sample(pid, &stopping))?;
        Ok(Self { stop, thread })
    }

    fn stop(self) -> Result<Sampled> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the sampler panicked"))?
    }
}

/// The sampler's loop: tcptrack is process `pid`.
fn sample(pid: u32, stop: &AtomicBool) -> Result<Sampled> {
    let hz = ticks_per_second();
    let start = Instant::now();
    let mut sampled = Sampled {
        samples: Vec::new(),
        scrapes: 0,
        failures: 0,
        mismatched: 0,
        mismatches: Vec::new(),
    };
    let mut before = (start, Process::read(pid)?, Scrape::get()?);
    let mut next_scrape = start + SCRAPE;
    let mut next_sample = start + EVERY;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if now < next_scrape {
            continue;
        }
        // One a second from the start; one that was late does not make the next ones hurry.
        next_scrape = (next_scrape + SCRAPE).max(now);
        let Ok(scrape) = Scrape::get() else {
            sampled.failures += 1;
            continue;
        };
        sampled.scrapes += 1;
        if scrape.opened() != scrape.ended() + scrape.listed() {
            sampled.mismatched += 1;
            if sampled.mismatches.len() < MISMATCHES_KEPT {
                sampled.mismatches.push(format!(
                    "at {:.0} s: opened {}, ended {}, listed {}",
                    start.elapsed().as_secs_f64(),
                    scrape.opened(),
                    scrape.ended(),
                    scrape.listed()
                ));
            }
        }
        if now < next_sample {
            continue;
        }
        next_sample = (next_sample + EVERY).max(now);
        let process = Process::read(pid).context("tcptrack's process")?;
        let (then, was, scraped) = &before;
        let elapsed = now.duration_since(*then).as_secs_f64();
        #[expect(clippy::cast_precision_loss, reason = "ticks of one run")]
        let cpu_percent = (process.cpu_ticks - was.cpu_ticks) as f64 / hz as f64 * 100.0 / elapsed;
        let refreshes = scrape.value("tcptrack_refresh_seconds_count")
            - scraped.value("tcptrack_refresh_seconds_count");
        let refresh_s = scrape.value("tcptrack_refresh_seconds_sum")
            - scraped.value("tcptrack_refresh_seconds_sum");
        sampled.samples.push(Sample {
            seconds: now.duration_since(start).as_secs(),
            rss_kib: process.rss_kib,
            open_files: process.open_files,
            threads: process.threads,
            cpu_percent,
            refresh_ms: if refreshes > 0.0 {
                refresh_s * 1000.0 / refreshes
            } else {
                0.0
            },
            listed: scrape.listed(),
            opened: scrape.opened(),
        });
        before = (now, process, scrape);
    }
    Ok(sampled)
}

/// What the flow log at `path` holds.
fn read_flow_log(path: &Path) -> Result<FlowLog> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut log = FlowLog::default();
    let mut seen = HashSet::new();
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("read {}", path.display()))?;
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            log.bad_lines += 1;
            continue;
        };
        let bytes = |side: &str| record.get(side)?.as_u64();
        let text = |field: &str| record.get(field).and_then(|v| v.as_str());
        let (Some(client), Some(server)) =
            (bytes("client_payload_bytes"), bytes("server_payload_bytes"))
        else {
            log.bad_lines += 1;
            continue;
        };
        let connection = (
            text("client").unwrap_or("").to_owned(),
            text("first_seen").unwrap_or("").to_owned(),
        );
        if !seen.insert(connection) {
            log.repeated += 1;
            continue;
        }
        if text("how") != Some("closed") {
            log.not_closed += 1;
        }
        log.counted.connections += 1;
        log.counted.client_bytes += client;
        log.counted.server_bytes += server;
    }
    Ok(log)
}
