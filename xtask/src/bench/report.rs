//! Every figure of a benchmark run in one [`Report`]: written as JSON by serde and as Markdown
//! by its `Display`, so that the two cannot disagree.
//!
//! Fields are declared in alphabetical order: the JSON's keys come out in the order they had
//! when it was built with `serde_json::json!` (sorted), and runs before and after compare line
//! by line.
//!
//! A case not run (`--only`) leaves its section out of both renderings.

mod ipfix;
mod scale;

use std::fmt;

use serde::{Deserialize, Serialize};

use super::measure::{median_by, Usage};
pub(crate) use scale::thousands;

/// `met` or `NOT met`.
const fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "NOT met"
    }
}
pub use ipfix::IpfixExport;
pub use scale::{HeadlessCost, MetricsCost, MonitorCost, Scale, ScaleRow, LISTING_SECONDS};

/// One benchmark run; a case not run is `None` (or, for `live`, empty).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_screen: Option<IdleScreen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfix: Option<IpfixExport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_cost_ns: Option<KernelCost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_live: Option<KernelLive>,
    /// Per monitor, unmonitored first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<LiveCase>,
    /// How long each iperf3 run of the live cases lasted.
    pub live_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Packets in each generated capture but the baseline's.
    pub packets: u64,
    /// Runs of each case; the median is kept.
    pub runs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
    /// `-T` on the capture of 100,000 connections at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_many: Option<Throughput>,
}

/// What one run of a process cost.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// CPU seconds, user + system.
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
    pub wall_s: f64,
}

impl From<Usage> for Cost {
    fn from(u: Usage) -> Self {
        Self {
            cpu_s: u.cpu.as_secs_f64(),
            peak_rss_kib: u.peak_rss_kib,
            wall_s: u.wall.as_secs_f64(),
        }
    }
}

/// `-T` on the capture of short connections, 2,000 at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub bare_libpcap: Cost,
    /// Packets per CPU second of the bare loop over tcptrack's.
    pub bare_over_ours: f64,
    pub classic: Cost,
    /// Connections in the capture.
    pub connections: u64,
    /// Connections open at any time.
    #[serde(default = "two_thousand")]
    pub concurrent: u32,
    /// The classic's CPU seconds in each run (to the end of its work), in the order they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classic_runs_cpu_s: Vec<f64>,
    /// Packets per CPU second of tcptrack over the classic's.
    pub ours_over_classic: f64,
    pub tcptrack: Cost,
    pub tshark: Cost,
}

const fn two_thousand() -> u32 {
    2_000
}

impl Throughput {
    /// The costs measured on a capture of `packets` packets and `connections` connections,
    /// with the ratios the targets are about.
    pub fn new(packets: u64, (connections, concurrent): (u64, u32), costs: [Cost; 4]) -> Self {
        let [tcptrack, bare_libpcap, tshark, classic] = costs;
        let ours = pps(packets, tcptrack.cpu_s);
        Self {
            bare_over_ours: pps(packets, bare_libpcap.cpu_s) / ours,
            ours_over_classic: ours / pps(packets, classic.cpu_s),
            bare_libpcap,
            classic,
            connections,
            concurrent,
            classic_runs_cpu_s: Vec::new(),
            tcptrack,
            tshark,
        }
    }
}

/// `-T` on a capture of many connections that never close, against a baseline of 10.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub classic: Cost,
    pub classic_baseline: Cost,
    pub classic_bytes_per_connection: u64,
    /// Connections in the capture.
    pub connections: u64,
    pub tcptrack: Cost,
    pub tcptrack_baseline: Cost,
    pub tcptrack_bytes_per_connection: u64,
}

impl Memory {
    /// The peaks of tcptrack and of the classic, each with its baseline, on a capture of
    /// `connections` connections.
    pub fn new(connections: u64, ours: (Cost, Cost), classic: (Cost, Cost)) -> Self {
        let per_connection = |(m, base): (Cost, Cost)| -> u64 {
            m.peak_rss_kib.saturating_sub(base.peak_rss_kib) * 1024 / connections.max(1)
        };
        Self {
            classic: classic.0,
            classic_baseline: classic.1,
            classic_bytes_per_connection: per_connection(classic),
            connections,
            tcptrack: ours.0,
            tcptrack_baseline: ours.1,
            tcptrack_bytes_per_connection: per_connection(ours),
        }
    }
}

/// Nanoseconds per packet of the kernel programs, from `examples/kernel_cost`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelCost {
    pub empty: f64,
    pub empty_single_run: f64,
    pub existing_connection: f64,
    pub new_connection: f64,
    /// The existing connection's packet through tcptrack's loader without a filter, and with
    /// a filter of five primitives that selects it (older results have neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfiltered: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtered: Option<f64>,
    /// The median of what the filter added, round by round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_added: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Runs of one packet each, for the new-connection figures (per round, where there are
    /// rounds).
    pub new_connections: u32,
    /// Repeats of one packet, for the existing-connection figures (per round, where there are
    /// rounds).
    pub repeat: u32,
    /// Rounds alternating each program with the empty one (older results: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<u32>,
    /// The ablation: the TC program stopped after each of its stages, in order, the last one
    /// the whole program (existing IPv4 connection, repeats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageCost>,
    /// The same stages on new connections (a packet with data each, one run each) and on the
    /// many connections (one run each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages_new: Vec<StageCost>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages_many: Vec<StageCost>,
    /// The whole program on an existing IPv6 connection (repeats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_v6: Option<Paired>,
    /// New connections, one run each: a packet with data, and a SYN (with its event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_ack: Option<Paired>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_syn: Option<Paired>,
    /// `many_connections` in the map, a packet of each in turn, one run each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub many: Option<Paired>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub many_connections: Option<u32>,
}

/// A program's ns per packet and the empty program's, measured in alternating rounds: the
/// medians of each, and the median of the rounds' differences.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    pub ns: f64,
    pub empty_ns: f64,
    pub above_ns: f64,
}

/// One stage of the ablation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageCost {
    pub stage: String,
    pub cost: Paired,
}

/// What the kernel cost's targets allow above the empty program (ns), and what they measure.
const KERNEL_TARGETS: [(&str, f64); 4] = [
    ("an existing IPv4 connection", 60.0),
    ("an existing IPv6 connection", 75.0),
    ("a new connection", 250.0),
    ("65,536 connections in the map", 90.0),
];

impl KernelCost {
    /// The measured figure above the empty program of each of [`KERNEL_TARGETS`] (newer
    /// results only).
    fn against_targets(&self) -> Option<[f64; 4]> {
        Some([
            self.stages.last()?.cost.above_ns,
            self.existing_v6?.above_ns,
            self.new_ack?.above_ns,
            self.many?.above_ns,
        ])
    }
}

/// What tcptrack's kernel programs cost on live packets: the kernel's own statistics of each
/// program (`kernel.bpf_stats_enabled`), tcptrack's and an empty program's on the same tcx
/// hooks of one veth, under each load; and what tcptrack takes from a small-packet load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelLive {
    /// The live ablation: each stage of the TC program alone (without tcptrack), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ablation: Vec<LiveStage>,
    /// Per load, established first.
    pub loads: Vec<LiveLoadCost>,
    /// How long each load (and each run of `small_packets`) was measured.
    pub seconds: u64,
    pub small_packets: SmallPackets,
}

/// One stage of the live ablation: the TC program stopped after it, under each load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveStage {
    pub churn: LiveLoadCost,
    pub established: LiveLoadCost,
    /// The stage's name (each includes those before it).
    pub stage: String,
}

/// The programs' cost under one load: nanoseconds per run, Δrun_time_ns ÷ Δrun_cnt over the
/// window, of tcptrack's TC program and of the empty program beside it (both attached to
/// ingress and egress: one run per packet each). The empty program's figure is mostly what
/// the kernel's timing of a run costs itself (two clock reads), which tcptrack's includes too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveLoadCost {
    /// `tcptrack_ns` - `empty_ns`: what tcptrack's program adds per packet.
    pub added_ns: f64,
    /// Connections made per second (the churn), `None` for connections held open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_per_second: Option<f64>,
    pub empty_ns: f64,
    /// Runs of the empty program in the window (packets through the hooks).
    pub empty_runs: u64,
    /// Which load (`established`, `churn`), as the report names it.
    pub load: String,
    /// The CPU of tcptrack's process (its userspace and system calls; its programs' runs are
    /// charged to whoever sent or received the packet), percent of one core.
    pub monitor_cpu_percent: f64,
    /// Packets per second through the hooks: the empty program's runs over the window.
    pub packets_per_second: f64,
    /// tcptrack's ns per run over the empty program's.
    pub ratio: f64,
    /// Where the row is the median of rounds: every round's `added_ns`, in the order they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_added_ns: Vec<f64>,
    /// ... and every round's `ratio`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_ratios: Vec<f64>,
    pub tcptrack_ns: f64,
    pub tcptrack_runs: u64,
}

impl LiveLoadCost {
    /// Nanoseconds per run of both programs from their Δrun_time_ns and Δrun_cnt (tcptrack's,
    /// the empty one's).
    pub fn new(load: &str, tcptrack: (u64, u64), empty: (u64, u64)) -> Self {
        let per_run = |(ns, runs): (u64, u64)| {
            #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            let (ns, runs) = (ns as f64, runs as f64);
            if runs > 0.0 {
                ns / runs
            } else {
                f64::NAN
            }
        };
        let (tcptrack_ns, empty_ns) = (per_run(tcptrack), per_run(empty));
        Self {
            added_ns: tcptrack_ns - empty_ns,
            connections_per_second: None,
            empty_ns,
            empty_runs: empty.1,
            load: load.to_owned(),
            monitor_cpu_percent: f64::NAN,
            packets_per_second: f64::NAN,
            ratio: tcptrack_ns / empty_ns,
            round_added_ns: Vec::new(),
            round_ratios: Vec::new(),
            tcptrack_ns,
            tcptrack_runs: tcptrack.1,
        }
    }
}

/// The established load (connections sending 64-byte segments) in alternating runs without
/// and with tcptrack on the veth (statistics off): each run's figures in the order they ran,
/// their medians, and with ÷ without.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmallPackets {
    pub connections: u32,
    /// Packets per second through the veth (both ways: segments and ACKs).
    pub packets_per_second: WithAndWithout,
    /// 64-byte segments per second, from the bytes the receivers read.
    pub segments_per_second: WithAndWithout,
}

/// One figure of runs without and with tcptrack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WithAndWithout {
    pub median_with: f64,
    pub median_without: f64,
    /// `median_with` ÷ `median_without`.
    pub ratio: f64,
    pub with: Vec<f64>,
    pub without: Vec<f64>,
}

impl WithAndWithout {
    pub fn new(without: Vec<f64>, with: Vec<f64>) -> Self {
        let median = |v: &[f64]| median_by(v.to_vec(), f64::total_cmp).unwrap_or(f64::NAN);
        let (median_without, median_with) = (median(&without), median(&with));
        Self {
            median_with,
            median_without,
            ratio: median_with / median_without,
            with,
            without,
        }
    }
}

/// Receiver throughput of an iperf3 run, and the CPU of the monitor watching it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveCase {
    pub gbits: f64,
    pub monitor: String,
    /// Percent of one core (`None`: unmonitored).
    pub monitor_cpu_percent: Option<f64>,
}

/// CPU of a live screen with nothing to show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleScreen {
    /// Percent of one core.
    pub classic_cpu_percent: f64,
    /// The span measured.
    pub seconds: u64,
    /// Percent of one core.
    pub tcptrack_cpu_percent: f64,
}

/// `v`'s figures with `decimals` decimals, comma-separated; `-` for none.
fn listed(v: &[f64], decimals: usize) -> String {
    if v.is_empty() {
        return "-".to_owned();
    }
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `x` rounded to a whole number (0 for what is not a finite, positive number).
fn whole(x: f64) -> u64 {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "rounded, and clamped at 0 by the cast"
    )]
    let n = x.round() as u64;
    n
}

/// Packets per second of `cpu_s` CPU seconds.
pub fn pps(packets: u64, cpu_s: f64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "packet counts far below 2^52")]
    let p = packets as f64;
    p / cpu_s.max(1e-9)
}

impl Report {
    /// The JSON written to `results/*.json`.
    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self).map(|j| j + "\n")
    }

    fn throughput_md(&self, f: &mut fmt::Formatter<'_>, t: &Throughput) -> fmt::Result {
        let packets = self.packets;
        writeln!(
            f,
            "## `-T` throughput: {packets} packets, {} connections ({} at a time)\n",
            t.connections,
            thousands(u64::from(t.concurrent))
        )?;
        writeln!(
            f,
            "| program | CPU s | wall s | packets/s (CPU) | ours ÷ this |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        let ours = pps(packets, t.tcptrack.cpu_s);
        for (name, c) in [
            ("tcptrack -T --output json", t.tcptrack),
            ("bare libpcap read loop (the limit)", t.bare_libpcap),
            ("tshark -q -z conv,tcp", t.tshark),
            ("classic tcptrack 1.4.3", t.classic),
        ] {
            let p = pps(packets, c.cpu_s);
            writeln!(
                f,
                "| {name} | {:.3} | {:.3} | {p:.0} | {:.2} |",
                c.cpu_s,
                c.wall_s,
                ours / p
            )?;
        }
        if !t.classic_runs_cpu_s.is_empty() {
            let runs: Vec<String> = t
                .classic_runs_cpu_s
                .iter()
                .map(|s| format!("{s:.3}"))
                .collect();
            writeln!(
                f,
                "\nThe classic's CPU s in each run, to the moment its screen (sorted by bytes) showed \
                 the capture's last connection: {}; the median is in the table.",
                runs.join(", ")
            )?;
        }
        Ok(())
    }

    fn memory_md(&self, f: &mut fmt::Formatter<'_>, m: &Memory) -> fmt::Result {
        writeln!(
            f,
            "## Memory: {} concurrent connections ({} packets)\n",
            m.connections, self.packets
        )?;
        writeln!(
            f,
            "| program | peak RSS | baseline (10 connections) | bytes per connection |"
        )?;
        writeln!(f, "|---|---:|---:|---:|")?;
        for (name, peak, base, per) in [
            (
                "tcptrack",
                m.tcptrack,
                m.tcptrack_baseline,
                m.tcptrack_bytes_per_connection,
            ),
            (
                "classic tcptrack 1.4.3",
                m.classic,
                m.classic_baseline,
                m.classic_bytes_per_connection,
            ),
        ] {
            writeln!(
                f,
                "| {name} | {} KiB | {} KiB | {per} |",
                peak.peak_rss_kib, base.peak_rss_kib
            )?;
        }
        Ok(())
    }

    fn idle_md(f: &mut fmt::Formatter<'_>, i: &IdleScreen) -> fmt::Result {
        writeln!(
            f,
            "## CPU of an idle live screen over {} s (`-i lo` in an empty network namespace)\n",
            i.seconds
        )?;
        writeln!(f, "| program | CPU, % of one core |")?;
        writeln!(f, "|---|---:|")?;
        writeln!(f, "| tcptrack | {:.2} |", i.tcptrack_cpu_percent)?;
        writeln!(
            f,
            "| classic tcptrack 1.4.3 | {:.2} |",
            i.classic_cpu_percent
        )
    }

    fn kernel_md(f: &mut fmt::Formatter<'_>, k: &KernelCost) -> fmt::Result {
        let (repeat, fresh) = (k.repeat, k.new_connections);
        writeln!(
            f,
            "## Kernel cost per packet (BPF_PROG_TEST_RUN, TC, 1000-byte TCP segments)\n"
        )?;
        writeln!(f, "| program | ns per packet |")?;
        writeln!(f, "|---|---:|")?;
        writeln!(
            f,
            "| empty TC program ({repeat} repeats) | {:.0} |",
            k.empty
        )?;
        writeln!(
            f,
            "| tcptrack, existing connection ({repeat} repeats) | {:.0} |",
            k.existing_connection
        )?;
        writeln!(
            f,
            "| empty TC program, one run each ({fresh} runs) | {:.0} |",
            k.empty_single_run
        )?;
        writeln!(
            f,
            "| tcptrack, new connection, one run each ({fresh} runs) | {:.0} |",
            k.new_connection
        )?;
        if let (Some(without), Some(with), Some(added), Some(filter)) =
            (k.unfiltered, k.filtered, k.filter_added, &k.filter)
        {
            writeln!(
                f,
                "| tcptrack, existing connection, through its own loader (median of rounds \
                 alternating with the next row, {repeat} repeats in all) | {without:.0} |"
            )?;
            writeln!(
                f,
                "| the same through a filter of five primitives that selects it (`{filter}`) | \
                 {with:.0} (+{added:.0}: the median of the rounds' differences) |"
            )?;
        }
        Self::ablation_md(f, k)
    }

    /// The newer results' sections: where the nanoseconds go, and the other cases.
    fn ablation_md(f: &mut fmt::Formatter<'_>, k: &KernelCost) -> fmt::Result {
        let Some(rounds) = k.rounds.filter(|_| !k.stages.is_empty()) else {
            return Ok(());
        };
        writeln!(
            f,
            "\n### Where a packet's nanoseconds go: the TC program stopped after each stage \
             (existing IPv4 connection, {} repeats, median of {rounds} rounds alternating with \
             the empty program)\n",
            k.repeat
        )?;
        writeln!(
            f,
            "| stage (each includes those above) | ns | empty | above empty | this stage |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        let mut before = 0.0;
        for s in &k.stages {
            let c = s.cost;
            writeln!(
                f,
                "| {} | {:.0} | {:.0} | {:.0} | {:+.0} |",
                s.stage,
                c.ns,
                c.empty_ns,
                c.above_ns,
                c.above_ns - before
            )?;
            before = c.above_ns;
        }
        Self::one_run_ablation_md(f, k)?;
        writeln!(
            f,
            "\n### Against the targets (ns above the empty program)\n"
        )?;
        writeln!(f, "| case | ns | empty | above empty | target |")?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        let many = thousands(u64::from(k.many_connections.unwrap_or(0)));
        let cases = [
            (
                format!("existing IPv4 connection ({} repeats)", k.repeat),
                k.stages.last().map(|s| s.cost),
            ),
            (
                format!("existing IPv6 connection ({} repeats)", k.repeat),
                k.existing_v6,
            ),
            (
                format!(
                    "new connection, a packet with data ({} runs of one packet a round)",
                    k.new_connections
                ),
                k.new_ack,
            ),
            (
                format!(
                    "new connection, a SYN and its event ({} runs a round)",
                    k.new_connections
                ),
                k.new_syn,
            ),
            (
                format!("{many} connections in the map, a packet of each in turn (one run each)"),
                k.many,
            ),
        ];
        // The targets of KERNEL_TARGETS, in the rows' order (the SYN's row has none).
        let t = |i: usize| Some(KERNEL_TARGETS[i].1);
        let limits = [t(0), t(1), t(2), None, t(3)];
        for ((name, cost), limit) in cases.iter().zip(limits) {
            let Some(c) = cost else { continue };
            let target = limit.map_or_else(
                || "-".to_owned(),
                |l| format!("{l:.0} ({})", met(c.above_ns <= l)),
            );
            writeln!(
                f,
                "| {name} | {:.0} | {:.0} | {:.0} | {target} |",
                c.ns, c.empty_ns, c.above_ns
            )?;
        }
        Ok(())
    }

    /// The ablation on packets run once each, whose connection's place is cold: new
    /// connections and the many (results that have them).
    fn one_run_ablation_md(f: &mut fmt::Formatter<'_>, k: &KernelCost) -> fmt::Result {
        if k.stages_new.is_empty() || k.stages_many.is_empty() {
            return Ok(());
        }
        let many = thousands(u64::from(k.many_connections.unwrap_or(0)));
        writeln!(
            f,
            "\n### The same stages on packets run once each (ns above the empty program): new \
             connections ({} a round, an ACK each, each stage in an interval of its own) and \
             {many} connections counted in, a packet of each in turn\n",
            k.new_connections
        )?;
        writeln!(
            f,
            "| stage | new: above empty | this stage | {many}: above empty | this stage |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        let (mut new_before, mut many_before) = (0.0, 0.0);
        for (n, m) in k.stages_new.iter().zip(&k.stages_many) {
            let (a, b) = (n.cost.above_ns, m.cost.above_ns);
            writeln!(
                f,
                "| {} | {a:.0} | {:+.0} | {b:.0} | {:+.0} |",
                n.stage,
                a - new_before,
                b - many_before
            )?;
            (new_before, many_before) = (a, b);
        }
        Ok(())
    }

    fn kernel_live_md(f: &mut fmt::Formatter<'_>, k: &KernelLive) -> fmt::Result {
        let seconds = k.seconds;
        writeln!(
            f,
            "## Kernel cost on live packets (kernel.bpf_stats_enabled=1; tcx, ingress and egress \
             of a veth; {seconds} s per load)\n"
        )?;
        writeln!(
            f,
            "| load | packets/s through the hooks | tcptrack_tc, ns per run | tcptrack_empty, ns \
             per run | ratio | difference, ns | tcptrack's process, % of a core | every round's \
             ratio |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|---|")?;
        for l in &k.loads {
            let load = match l.connections_per_second {
                Some(c) => format!(
                    "{}: {} connections/s (connect, 64 bytes, RST)",
                    l.load,
                    thousands(whole(c))
                ),
                None => format!(
                    "{}: {} connections held open, 64-byte segments",
                    l.load,
                    thousands(u64::from(k.small_packets.connections))
                ),
            };
            writeln!(
                f,
                "| {load} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.1} | {} |",
                thousands(whole(l.packets_per_second)),
                l.tcptrack_ns,
                l.empty_ns,
                l.ratio,
                l.added_ns,
                l.monitor_cpu_percent,
                listed(&l.round_ratios, 2)
            )?;
        }
        writeln!(
            f,
            "\nns per run: Δrun_time_ns ÷ Δrun_cnt over the window, each program run once per \
             packet on its hook. The empty program's figure is mostly the kernel's own timing of \
             a run, which tcptrack's includes too: the difference is what tcptrack adds per \
             packet. Each row is the round of the median difference, of {} round(s) with both \
             programs attached throughout; every round's ratio is beside it (rounds of the same \
             program differ with where the load's threads ran and what else the host did).",
            k.loads.first().map_or(1, |l| l.round_ratios.len().max(1))
        )?;
        Self::small_packets_md(f, k)?;
        Self::live_ablation_md(f, k)
    }

    /// The part of [`Self::kernel_live_md`] on the live ablation.
    fn live_ablation_md(f: &mut fmt::Formatter<'_>, k: &KernelLive) -> fmt::Result {
        if k.ablation.is_empty() {
            return Ok(());
        }
        let rounds = k.ablation[0].established.round_added_ns.len().max(1);
        writeln!(
            f,
            "\n### Where a live packet's nanoseconds go: the TC program stopped after each stage, \
             without tcptrack (loaded and drained every second as tcptrack does), beside the \
             empty program; median of {rounds} round(s), each stage under each load once a \
             round\n"
        )?;
        writeln!(
            f,
            "| stage (each includes those above) | established: ns above empty | this stage | \
             rounds | churn: ns above empty | this stage | rounds |"
        )?;
        writeln!(f, "|---|---:|---:|---|---:|---:|---|")?;
        let mut before = (0.0, 0.0);
        for s in &k.ablation {
            let (e, c) = (s.established.added_ns, s.churn.added_ns);
            writeln!(
                f,
                "| {} | {e:.0} | {:+.0} | {} | {c:.0} | {:+.0} | {} |",
                s.stage,
                e - before.0,
                listed(&s.established.round_added_ns, 0),
                c - before.1,
                listed(&s.churn.round_added_ns, 0),
            )?;
            before = (e, c);
        }
        writeln!(
            f,
            "\nA stage's own cost is the difference of two medians: only differences larger \
             than the rounds' spread (beside each median) say much."
        )?;
        Ok(())
    }

    /// The part of [`Self::kernel_live_md`] on the small-packet load without and with tcptrack.
    fn small_packets_md(f: &mut fmt::Formatter<'_>, k: &KernelLive) -> fmt::Result {
        let seconds = k.seconds;
        let p = &k.small_packets;
        let runs = p.segments_per_second.with.len();
        writeln!(
            f,
            "\nThe established load without and with tcptrack (kernel path, statistics off), \
             {runs} run(s) each, alternating, {seconds} s each, median (the upper of an even \
             count):\n"
        )?;
        writeln!(f, "| | 64-byte segments/s | packets/s through the veth |")?;
        writeln!(f, "|---|---:|---:|")?;
        let (seg, pkt) = (&p.segments_per_second, &p.packets_per_second);
        writeln!(
            f,
            "| without tcptrack | {} | {} |",
            thousands(whole(seg.median_without)),
            thousands(whole(pkt.median_without))
        )?;
        writeln!(
            f,
            "| with tcptrack | {} | {} |",
            thousands(whole(seg.median_with)),
            thousands(whole(pkt.median_with))
        )?;
        writeln!(
            f,
            "| with ÷ without | {:.3} | {:.3} |",
            seg.ratio, pkt.ratio
        )?;
        let each = |v: &[f64]| -> String {
            v.iter()
                .map(|x| thousands(whole(*x)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "\nSegments/s in each run, without: {}; with: {}.",
            each(&seg.without),
            each(&seg.with)
        )
    }

    fn live_md(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "## Live overhead: iperf3 across a veth pair, {} s each, median of {} run(s)\n",
            self.live_seconds, self.runs
        )?;
        writeln!(
            f,
            "| monitor | receiver Gbit/s | vs unmonitored | monitor CPU, % of a core |"
        )?;
        writeln!(f, "|---|---:|---:|---:|")?;
        let base = self.live.first().map_or(f64::NAN, |c| c.gbits);
        for c in &self.live {
            let cpu = c
                .monitor_cpu_percent
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
            writeln!(
                f,
                "| {} | {:.2} | {:.1}% | {cpu} |",
                c.monitor,
                c.gbits,
                c.gbits * 100.0 / base
            )?;
        }
        Ok(())
    }

    /// Every target of the cases run, each with what was measured.
    fn targets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (t, limit) in [(&self.throughput, 1.5), (&self.throughput_many, 2.5)] {
            let Some(t) = t else { continue };
            let at = thousands(u64::from(t.concurrent));
            out.push(format!(
                "within {limit}x of the bare loop at {at} connections (measured {:.2}x: {})",
                t.bare_over_ours,
                met(t.bare_over_ours <= limit)
            ));
            out.push(format!(
                "at least 10x the classic at {at} (measured {:.1}x: {})",
                t.ours_over_classic,
                met(t.ours_over_classic >= 10.0)
            ));
        }
        if let Some(m) = &self.memory {
            out.push(format!(
                "under 300 bytes per connection (measured {})",
                m.tcptrack_bytes_per_connection
            ));
        }
        if let Some(i) = &self.idle_screen {
            out.push(format!(
                "idle screen under 1% of a core (measured {:.2}%)",
                i.tcptrack_cpu_percent
            ));
        }
        if let Some(s) = &self.scale {
            out.extend(s.targets());
        }
        if let Some(i) = &self.ipfix {
            out.push(i.target());
        }
        if let Some(above) = self
            .kernel_cost_ns
            .as_ref()
            .and_then(KernelCost::against_targets)
        {
            for ((what, limit), ns) in KERNEL_TARGETS.iter().zip(above) {
                out.push(format!(
                    "{what} at most {limit:.0} ns above the empty program in the kernel \
                     (measured {ns:.0}: {})",
                    met(ns <= *limit)
                ));
            }
        }
        out
    }
}

/// The Markdown printed and written to `results/*.md`: the section of each case run, a blank
/// line apart, then the targets.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut gap = |f: &mut fmt::Formatter<'_>| {
            let blank = if first { Ok(()) } else { writeln!(f) };
            first = false;
            blank
        };
        for t in [&self.throughput, &self.throughput_many]
            .into_iter()
            .flatten()
        {
            gap(f)?;
            self.throughput_md(f, t)?;
        }
        if let Some(m) = &self.memory {
            gap(f)?;
            self.memory_md(f, m)?;
        }
        if let Some(i) = &self.idle_screen {
            gap(f)?;
            Self::idle_md(f, i)?;
        }
        if let Some(k) = &self.kernel_cost_ns {
            gap(f)?;
            Self::kernel_md(f, k)?;
        }
        if let Some(k) = &self.kernel_live {
            gap(f)?;
            Self::kernel_live_md(f, k)?;
        }
        if !self.live.is_empty() {
            gap(f)?;
            self.live_md(f)?;
        }
        if let Some(s) = &self.scale {
            gap(f)?;
            write!(f, "{s}")?;
        }
        if let Some(i) = &self.ipfix {
            gap(f)?;
            write!(f, "{i}")?;
        }
        let targets = self.targets();
        if !targets.is_empty() {
            gap(f)?;
            writeln!(f, "Targets: {}.", targets.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
