//! Kernel cost on live packets, as a user would measure it with `kernel.bpf_stats_enabled=1`:
//! tcptrack (kernel path, headless) on host a's veth, its TC program attached by tcx to ingress
//! and egress, and beside it on the same hooks an empty TC program (`examples/tcx_empty`, from
//! tcptrack's own object). For each load ([`traffic`]: connections held open sending 64-byte
//! segments; connections opened, sent 64 bytes and reset), the kernel's run time and run count
//! of each program over a window give its nanoseconds per run (one run per packet and hook).
//!
//! Before that, with the statistics off as they usually are: what tcptrack takes from the
//! small-packet load, in alternating runs without and with it (ABBA order, round by round).
//!
//! After it, the live ablation: without tcptrack, each of its TC program's stages in turn
//! (`stage_parse` ... `stage_update`, then the whole `tcptrack_tc`), loaded and drained as
//! tcptrack does by `tcx_empty`, against the empty program, under both loads.
//!
//! One window of a load says little: the same program measured in windows one after the other
//! gave 180 to 264 ns above the empty one under churn, 48 to 85 established (where the load's
//! threads ran, what the rest of the host did). Every figure is the median of rounds, with the
//! rounds' spread beside it.

mod traffic;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tcptrack_tests::netns::{Background, HostPair};

use super::super::measure::{median_by, percent, proc_usage, wait_for};
use super::super::report::{KernelLive, LiveLoadCost, LiveStage, SmallPackets, WithAndWithout};
use super::super::Bench;
use super::sysctl;
use crate::step;
use traffic::{Churn, Established, SEGMENT};

/// Connections of the established load.
const CONNECTIONS: u32 = 200;
/// How long a load runs before its window opens (its connections opened, its threads going).
const WARM_UP: Duration = Duration::from_millis(500);
/// How long tcptrack may take to start: the verifier checks its programs first (see
/// `tcptrack_tests::live::START_LIMIT`).
const START_LIMIT: Duration = Duration::from_secs(120);
/// tcptrack's TC program, and the empty one, as the kernel names them.
const TCPTRACK: &str = "tcptrack_tc";
const EMPTY: &str = "tcptrack_empty";
/// The switch of the kernel's run statistics of BPF programs.
const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// Rounds of the live ablation (each stage under both loads, for half the span, once a round).
const ABLATION_ROUNDS: usize = 3;
/// The live ablation's programs, in the order of the stages (see `count::stage` in the kernel
/// crate), the whole program last.
const STAGES: [(&str, &str); 6] = [
    ("stage_parse", "parse"),
    ("stage_key", "key"),
    ("stage_clock", "clock"),
    ("stage_lookup", "lookup"),
    ("stage_update", "update"),
    (TCPTRACK, "events (all of it)"),
];

pub fn measure(b: &Bench) -> Result<KernelLive> {
    let span = b.profile.kernel_live_span();
    let rounds = b.profile.kernel_live_rounds();
    step(&format!(
        "kernel cost on live packets: {CONNECTIONS} connections sending 64-byte segments, \
         {rounds} run(s) of {} s without and with tcptrack, then bpf_stats under that load and \
         under a churn of connections",
        span.as_secs()
    ));
    let hosts = HostPair::new();
    // The churn's client ends: ports enough for what it makes in a window.
    sysctl(&hosts.a, &["net.ipv4.ip_local_port_range=1024 65535"])?;
    let small_packets = small_packets(b, &hosts, span, rounds)?;
    let loads = costs(b, &hosts, span, rounds)?;
    let ablation = ablation(b, &hosts, span / 2, ABLATION_ROUNDS.min(rounds))?;
    Ok(KernelLive {
        ablation,
        loads,
        seconds: span.as_secs(),
        small_packets,
    })
}

/// The established load in `rounds` rounds of a run without tcptrack and one with it (the
/// second of each pair first in every other round), statistics off.
fn small_packets(
    b: &Bench,
    hosts: &HostPair,
    span: Duration,
    rounds: usize,
) -> Result<SmallPackets> {
    let (mut segments, mut packets) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for watched in order {
            let tcptrack = watched.then(|| Tcptrack::start(b, hosts)).transpose()?;
            let mut load = Load::Established(Established::start(
                &hosts.a,
                &hosts.b,
                CONNECTIONS as usize,
            )?);
            let (before, after) = window(hosts, &mut load, span, None, None)?;
            load.stop()?;
            if let Some(t) = tcptrack {
                t.stop()?;
            }
            let i = usize::from(watched);
            let seconds = after.seconds_since(&before);
            #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            let per_second = |n: u64| n as f64 / seconds;
            let segment = SEGMENT as u64;
            segments[i].push(per_second((after.progress - before.progress) / segment));
            packets[i].push(per_second(after.packets - before.packets));
        }
    }
    let [seg_without, seg_with] = segments;
    let [pkt_without, pkt_with] = packets;
    Ok(SmallPackets {
        connections: CONNECTIONS,
        packets_per_second: WithAndWithout::new(pkt_without, pkt_with),
        segments_per_second: WithAndWithout::new(seg_without, seg_with),
    })
}

/// tcptrack and the empty program on host a's veth, the kernel's statistics on: each load
/// for `span` in each of `rounds` rounds, the programs' run statistics read at both ends; per
/// load, the median round.
fn costs(b: &Bench, hosts: &HostPair, span: Duration, rounds: usize) -> Result<Vec<LiveLoadCost>> {
    // Dropped in the reverse order: the statistics off, the empty program detached, tcptrack
    // stopped.
    let tcptrack = Tcptrack::start(b, hosts)?;
    let mut chain = Chain::attach(
        hosts,
        &b.tcx_empty,
        None,
        &b.work.join("kernel-live-tcx-empty.log"),
    )?;
    let stats = BpfStats::enable()?;
    let (mut established, mut churn) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let [e, c] = both_loads(hosts, span, &mut chain, TCPTRACK, Some(tcptrack.pid()))?;
        established.push(e);
        churn.push(c);
    }
    drop(stats);
    drop(chain);
    tcptrack.stop()?;
    Ok(vec![median_round(established)?, median_round(churn)?])
}

/// The round whose difference from the empty program is the median (the upper of an even
/// count), with every round's difference and ratio.
fn median_round(rounds: Vec<LiveLoadCost>) -> Result<LiveLoadCost> {
    let added = rounds.iter().map(|r| r.added_ns).collect();
    let ratios = rounds.iter().map(|r| r.ratio).collect();
    let mut row =
        median_by(rounds, |a, b| a.added_ns.total_cmp(&b.added_ns)).context("no rounds")?;
    row.round_added_ns = added;
    row.round_ratios = ratios;
    Ok(row)
}

/// The established load, then the churn, each for `span` with `chain` attached: the cost of
/// `program` under each.
fn both_loads(
    hosts: &HostPair,
    span: Duration,
    chain: &mut Chain,
    program: &str,
    monitor: Option<u32>,
) -> Result<[LiveLoadCost; 2]> {
    let mut load = Load::Established(Established::start(
        &hosts.a,
        &hosts.b,
        CONNECTIONS as usize,
    )?);
    let (before, after) = window(hosts, &mut load, span, Some(&mut *chain), monitor)?;
    load.stop()?;
    let established = cost("established", program, &before, &after)?;
    let mut load = Load::Churn(Churn::start(&hosts.a, &hosts.b)?);
    let (before, after) = window(hosts, &mut load, span, Some(chain), monitor)?;
    load.stop()?;
    let mut churn = cost("churn", program, &before, &after)?;
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let made = (after.progress - before.progress) as f64;
    churn.connections_per_second = Some(made / after.seconds_since(&before));
    Ok([established, churn])
}

/// Without tcptrack, each of [`STAGES`] in turn on host a's veth (loaded and drained by
/// `tcx_empty` as tcptrack would), beside the empty program, under both loads for `span`;
/// `rounds` times, each round starting one stage further on; per stage and load, the median
/// round.
fn ablation(b: &Bench, hosts: &HostPair, span: Duration, rounds: usize) -> Result<Vec<LiveStage>> {
    step(&format!(
        "the live ablation: each stage of tcptrack's TC program under both loads, {rounds} \
         round(s) of {} s a load",
        span.as_secs_f64()
    ));
    let stats = BpfStats::enable()?;
    let mut runs: Vec<(Vec<LiveLoadCost>, Vec<LiveLoadCost>)> =
        STAGES.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for round in 0..rounds {
        for i in 0..STAGES.len() {
            let at = (i + round) % STAGES.len();
            let program = STAGES[at].0;
            let mut chain = Chain::attach(
                hosts,
                &b.tcx_empty,
                Some(program),
                &b.work.join(format!("kernel-live-{program}.log")),
            )?;
            // The stand-in poller's CPU, where tcptrack's would be.
            let poller = chain.process.id();
            let [established, churn] = both_loads(hosts, span, &mut chain, program, Some(poller))?;
            runs[at].0.push(established);
            runs[at].1.push(churn);
        }
    }
    drop(stats);
    STAGES
        .iter()
        .zip(runs)
        .map(|((_, stage), (established, churn))| {
            Ok(LiveStage {
                stage: (*stage).to_owned(),
                established: median_round(established)?,
                churn: median_round(churn)?,
            })
        })
        .collect()
}

/// The figures of a load's row from the samples at both ends of its window: `program`'s
/// against the empty one's.
fn cost(load: &str, program: &str, before: &Sample, after: &Sample) -> Result<LiveLoadCost> {
    let delta = |name: &str| -> Result<(u64, u64)> {
        let (Some(b), Some(a)) = (
            before.programs.as_ref().and_then(|p| p.get(name)),
            after.programs.as_ref().and_then(|p| p.get(name)),
        ) else {
            bail!("{name}: no run statistics read");
        };
        if a.id != b.id {
            bail!(
                "{name}: another program (id {}, was {}) by the end of the window",
                a.id,
                b.id
            );
        }
        Ok((
            a.run_time_ns.saturating_sub(b.run_time_ns),
            a.run_cnt.saturating_sub(b.run_cnt),
        ))
    };
    let (ours, empty) = (delta(program)?, delta(EMPTY)?);
    if ours.1 == 0 {
        bail!("{load}: {program} did not run in the window");
    }
    if empty.1 == 0 || empty.0 == 0 {
        bail!(
            "{load}: the empty program ran {} times in {} ns: are the kernel's statistics on?",
            empty.1,
            empty.0
        );
    }
    let seconds = after.seconds_since(before);
    let mut row = LiveLoadCost::new(load, ours, empty);
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let runs = empty.1 as f64;
    row.packets_per_second = runs / seconds;
    if let (Some(b), Some(a)) = (before.cpu, after.cpu) {
        row.monitor_cpu_percent = percent(a.saturating_sub(b), after.at - before.at);
    }
    Ok(row)
}

/// A load running.
enum Load {
    Established(Established),
    Churn(Churn),
}

impl Load {
    /// Bytes read (established) or connections made (churn) so far.
    fn progress(&mut self) -> Result<u64> {
        match self {
            Self::Established(l) => l.received(),
            Self::Churn(l) => l.made(),
        }
    }

    fn stop(self) -> Result<()> {
        match self {
            Self::Established(l) => l.stop(),
            Self::Churn(l) => l.stop(),
        }
    }
}

/// What is read at each end of a window.
struct Sample {
    at: Instant,
    progress: u64,
    /// Through host a's veth, both ways.
    packets: u64,
    /// The programs on host a's hooks, when the empty one is there to tell them.
    programs: Option<Programs>,
    /// tcptrack's CPU time so far, when it runs.
    cpu: Option<Duration>,
}

impl Sample {
    fn take(
        hosts: &HostPair,
        load: &mut Load,
        chain: Option<&mut Chain>,
        monitor: Option<u32>,
    ) -> Result<Self> {
        let at = Instant::now();
        Ok(Self {
            at,
            progress: load.progress()?,
            programs: chain.map(Chain::read).transpose()?,
            packets: packets(&hosts.a, &hosts.a_if)?,
            cpu: monitor
                .map(|pid| proc_usage(pid).map(|u| u.0))
                .transpose()?,
        })
    }

    fn seconds_since(&self, before: &Self) -> f64 {
        (self.at - before.at).as_secs_f64()
    }
}

/// `load` warmed up, then a window of `span`: the samples at its ends.
fn window(
    hosts: &HostPair,
    load: &mut Load,
    span: Duration,
    mut chain: Option<&mut Chain>,
    monitor: Option<u32>,
) -> Result<(Sample, Sample)> {
    std::thread::sleep(WARM_UP);
    let before = Sample::take(hosts, load, chain.as_deref_mut(), monitor)?;
    std::thread::sleep(span);
    let after = Sample::take(hosts, load, chain, monitor)?;
    Ok((before, after))
}

/// Packets received and sent so far by `interface` of namespace `ns`.
fn packets(ns: &str, interface: &str) -> Result<u64> {
    let out = Command::new("ip")
        .args(["-n", ns, "-s", "-j", "link", "show", "dev", interface])
        .output()
        .context("run ip")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("ip -j output")?;
    let stats = &v[0]["stats64"];
    match (
        stats["rx"]["packets"].as_u64(),
        stats["tx"]["packets"].as_u64(),
    ) {
        (Some(rx), Some(tx)) => Ok(rx + tx),
        _ => bail!("no packet counts for {interface} in {ns}: {v}"),
    }
}

/// tcptrack on host a's veth, kernel path, headless (`--output none`), stderr into a log.
struct Tcptrack {
    process: Background,
    log: PathBuf,
}

impl Tcptrack {
    /// Starts it and waits until it says it counts in the kernel (its programs attached).
    fn start(b: &Bench, hosts: &HostPair) -> Result<Self> {
        let log = b.work.join("kernel-live-tcptrack.log");
        let mut cmd = HostPair::cmd(&hosts.a, &b.ours.display().to_string());
        cmd.args(["-i", &hosts.a_if, "--output", "none"])
            .stdout(Stdio::null())
            .stderr(File::create(&log).with_context(|| format!("create {}", log.display()))?);
        let mut process = Background(cmd.spawn().context("start tcptrack")?);
        let kernel = format!("tcptrack: kernel on {}", hosts.a_if);
        wait_for(
            "tcptrack to count in the kernel",
            START_LIMIT,
            Duration::from_millis(20),
            || {
                let said = fs::read_to_string(&log).unwrap_or_default();
                if let Some(status) = process.0.try_wait()? {
                    bail!("tcptrack ended ({status}): {}", said.trim());
                }
                if said.contains("libpcap on") {
                    bail!("tcptrack took the libpcap path: {}", said.trim());
                }
                Ok(said.contains(&kernel).then_some(()))
            },
        )?;
        Ok(Self { process, log })
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// Asks it to end (SIGINT) and waits; fails if it failed.
    fn stop(self) -> Result<()> {
        let out = self.process.interrupt();
        if !out.status.success() {
            let said = fs::read_to_string(&self.log).unwrap_or_default();
            bail!("tcptrack failed ({}): {}", out.status, said.trim());
        }
        Ok(())
    }
}

/// One program of host a's tcx chains, with its run statistics.
#[derive(Debug)]
struct Program {
    id: u64,
    run_cnt: u64,
    run_time_ns: u64,
    /// The hooks it is attached to.
    hooks: Vec<String>,
}

/// The programs of host a's chains by name.
type Programs = BTreeMap<String, Program>;

/// `examples/tcx_empty` on host a's veth: the empty program attached after tcptrack's on both
/// hooks (or after `stage`, a program of tcptrack's object it loads and drains itself), and
/// the chains' programs read on request. Killed on drop (its links go with it).
struct Chain {
    process: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    log: PathBuf,
}

impl Chain {
    /// Attaches the empty program (and `stage`) and checks that both hooks hold it and
    /// tcptrack's (or `stage`).
    fn attach(hosts: &HostPair, program: &Path, stage: Option<&str>, log: &Path) -> Result<Self> {
        let mut cmd = HostPair::cmd(&hosts.a, &program.display().to_string());
        cmd.arg(&hosts.a_if)
            .args(stage)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(log).with_context(|| format!("create {}", log.display()))?);
        let mut process = cmd.spawn().context("start tcx_empty")?;
        let (Some(input), Some(output)) = (process.stdin.take(), process.stdout.take()) else {
            let _ = process.kill();
            let _ = process.wait();
            bail!("tcx_empty's pipes");
        };
        let mut chain = Self {
            process,
            input,
            output: BufReader::new(output),
            log: log.to_path_buf(),
        };
        let programs = chain.line()?;
        for name in [stage.unwrap_or(TCPTRACK), EMPTY] {
            let hooks = programs
                .get(name)
                .map(|p| p.hooks.clone())
                .unwrap_or_default();
            if !(hooks.iter().any(|h| h == "ingress") && hooks.iter().any(|h| h == "egress")) {
                bail!(
                    "{name} is not on both of {}'s tcx hooks: {programs:?}",
                    hosts.a_if
                );
            }
        }
        Ok(chain)
    }

    /// The programs and their statistics now.
    fn read(&mut self) -> Result<Programs> {
        let asked = self
            .input
            .write_all(b"\n")
            .and_then(|()| self.input.flush());
        if let Err(e) = asked {
            bail!("tcx_empty ended ({e}): {}", self.said());
        }
        self.line()
    }

    /// What it wrote on its standard error.
    fn said(&self) -> String {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    fn line(&mut self) -> Result<Programs> {
        let mut line = String::new();
        self.output.read_line(&mut line).context("read tcx_empty")?;
        if line.is_empty() {
            bail!("tcx_empty ended: {}", self.said());
        }
        let v: serde_json::Value = serde_json::from_str(&line).context("tcx_empty's line")?;
        programs(&v).with_context(|| format!("tcx_empty's line: {line}"))
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The programs of `tcx_empty`'s line (`{"ingress":[...],"egress":[...]}`) by name, each once
/// (a program attached to both hooks has one id and one set of statistics).
fn programs(v: &serde_json::Value) -> Result<Programs> {
    let mut by_name = Programs::new();
    for hook in ["ingress", "egress"] {
        for p in v[hook].as_array().with_context(|| format!("no {hook}"))? {
            let (Some(name), Some(id), Some(run_cnt), Some(run_time_ns)) = (
                p["name"].as_str(),
                p["id"].as_u64(),
                p["run_cnt"].as_u64(),
                p["run_time_ns"].as_u64(),
            ) else {
                bail!("a program without its name, id or statistics: {p}");
            };
            let entry = by_name.entry(name.to_owned()).or_insert(Program {
                id,
                run_cnt,
                run_time_ns,
                hooks: Vec::new(),
            });
            if entry.id != id {
                bail!(
                    "two programs named {name} on the hooks (ids {} and {id})",
                    entry.id
                );
            }
            entry.hooks.push(hook.to_owned());
        }
    }
    Ok(by_name)
}

/// The kernel's run statistics of BPF programs on (`kernel.bpf_stats_enabled=1`) until drop,
/// then as they were.
struct BpfStats {
    previous: String,
}

impl BpfStats {
    fn enable() -> Result<Self> {
        let previous = fs::read_to_string(BPF_STATS)
            .with_context(|| format!("read {BPF_STATS}"))?
            .trim()
            .to_owned();
        fs::write(BPF_STATS, "1").with_context(|| format!("write 1 to {BPF_STATS}"))?;
        Ok(Self { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = fs::write(BPF_STATS, &self.previous) {
            eprintln!(
                "xtask: could not put {BPF_STATS} back to {}: {e}",
                self.previous
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::programs;

    #[test]
    fn a_program_on_both_hooks_counts_once() {
        let v = serde_json::json!({
            "ingress": [
                {"id": 7, "name": "tcptrack_tc", "run_cnt": 10, "run_time_ns": 900},
                {"id": 9, "name": "tcptrack_empty", "run_cnt": 10, "run_time_ns": 100},
            ],
            "egress": [
                {"id": 7, "name": "tcptrack_tc", "run_cnt": 10, "run_time_ns": 900},
                {"id": 9, "name": "tcptrack_empty", "run_cnt": 10, "run_time_ns": 100},
            ],
        });
        let p = programs(&v).expect("parses");
        assert_eq!(p.len(), 2);
        let tc = &p["tcptrack_tc"];
        assert_eq!((tc.id, tc.run_cnt, tc.run_time_ns), (7, 10, 900));
        assert_eq!(tc.hooks, ["ingress", "egress"]);
    }

    #[test]
    fn two_programs_of_one_name_are_refused() {
        let v = serde_json::json!({
            "ingress": [{"id": 7, "name": "tcptrack_tc", "run_cnt": 1, "run_time_ns": 1}],
            "egress": [{"id": 8, "name": "tcptrack_tc", "run_cnt": 1, "run_time_ns": 1}],
        });
        assert!(programs(&v).is_err());
    }
}
