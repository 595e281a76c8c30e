//! `cargo xtask bench`: tcptrack against the limits and the classic tool, measured in one run.
//!
//! Every figure printed comes from processes run by this invocation: captures are generated
//! afresh, each case runs several times and the median is kept. Times are CPU seconds (user +
//! system) of the measured process, so that the classic tcptrack, which needs a terminal and a
//! pipe held open to process a whole file, is measured the same way as the others.
//!
//! `--only CASE` runs some of the cases (see [`Case`]); the report of such a run holds only
//! their sections and goes to `target/bench/`, so that `results/` keeps the last whole run.
//!
//! The cases are in [`cases`], what they measure with in [`measure`], and every figure goes into
//! one [`report::Report`], printed and written as Markdown and as JSON.

mod cases;
mod measure;
mod report;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::ValueEnum;

use crate::gen::{self, Shape};
use crate::{root, setup, sh, step};
use report::Report;

/// How big a run is: every size, duration and repeat count that differs between a quick run
/// and a full one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `--quick`: under a minute.
    Quick,
    /// The figures the README quotes.
    Full,
}

impl Profile {
    /// Packets in each of the two big captures.
    pub const fn packets(self) -> u64 {
        match self {
            Self::Quick => 200_000,
            Self::Full => 1_000_000,
        }
    }

    /// Connections open at once in the memory case's capture.
    pub const fn many_connections(self) -> u32 {
        match self {
            Self::Quick => 20_000,
            Self::Full => 100_000,
        }
    }

    /// Runs of each case (the classic's memory is measured once).
    pub const fn runs(self) -> usize {
        match self {
            Self::Quick => 1,
            Self::Full => 3,
        }
    }

    /// Repeats of one packet through the kernel programs (existing connection).
    pub const fn kernel_repeat(self) -> u32 {
        match self {
            Self::Quick => 200_000,
            Self::Full => 1_000_000,
        }
    }

    /// Runs of one packet each through the kernel programs (new connections), per round.
    pub const fn kernel_new_connections(self) -> u32 {
        match self {
            Self::Quick => 1_000,
            Self::Full => 4_000,
        }
    }

    /// Rounds alternating each kernel program with the empty one.
    pub const fn kernel_rounds(self) -> u32 {
        match self {
            Self::Quick => 5,
            Self::Full => 9,
        }
    }

    /// How long each iperf3 run of the live cases lasts.
    pub const fn live_span(self) -> Duration {
        match self {
            Self::Quick => Duration::from_secs(3),
            Self::Full => Duration::from_secs(10),
        }
    }

    /// How long each load of the live kernel cost case is measured.
    pub const fn kernel_live_span(self) -> Duration {
        match self {
            Self::Quick => Duration::from_secs(3),
            Self::Full => Duration::from_secs(10),
        }
    }

    /// Runs of the small-packet load without tcptrack, and as many with it, alternating.
    pub const fn kernel_live_rounds(self) -> usize {
        match self {
            Self::Quick => 2,
            Self::Full => 5,
        }
    }

    /// The loads of the scale case, each held while every monitor in turn watches it.
    pub const fn scale_loads(self) -> &'static [Load] {
        const QUICK: [Load; 3] = [Load::idle(1_000), Load::idle(10_000), Load::active(2_000)];
        const FULL: [Load; 4] = [
            Load::idle(1_000),
            Load::idle(10_000),
            Load::idle(60_000),
            Load::active(10_000),
        ];
        match self {
            Self::Quick => &QUICK,
            Self::Full => &FULL,
        }
    }

    /// How long the CPU of each monitor is measured on each load of the scale case: /proc
    /// counts CPU in 10 ms ticks, so 30 s tell 0.03% of a core apart (the targets are 0.2% and
    /// 0.3%).
    pub const fn scale_span(self) -> Duration {
        match self {
            Self::Quick => Duration::from_secs(5),
            Self::Full => Duration::from_secs(30),
        }
    }

    /// How long the CPU of an idle screen is measured.
    pub const fn idle_span(self) -> Duration {
        match self {
            Self::Quick => Duration::from_secs(5),
            Self::Full => Duration::from_secs(30),
        }
    }

    /// The name of the files written in `results/`.
    pub const fn results_name(self) -> &'static str {
        match self {
            Self::Quick => "bench-quick",
            Self::Full => "bench",
        }
    }
}

/// Real TCP connections held open between the two hosts of a [`HostPair`](tcptrack_tests::netns::HostPair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub connections: u32,
    /// Each connection sends 100 bytes a second (otherwise: idle, nothing sent).
    pub active: bool,
}

impl Load {
    const fn idle(connections: u32) -> Self {
        Self {
            connections,
            active: false,
        }
    }

    const fn active(connections: u32) -> Self {
        Self {
            connections,
            active: true,
        }
    }
}

/// A case of the bench (`--only` runs the ones it names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Case {
    /// `-T` throughput against the bare libpcap loop, tshark and the classic
    Throughput,
    /// Peak memory per connection (`-T` on many connections)
    Memory,
    /// Kernel cost per packet (BPF_PROG_TEST_RUN)
    Kernel,
    /// Kernel cost per packet on live packets (bpf_stats), beside an empty program on the same
    /// hooks, and what it takes from a small-packet load
    KernelLive,
    /// iperf3 across a veth pair under each monitor
    Live,
    /// CPU of an idle live screen
    Idle,
    /// CPU and memory of each live monitor on many real connections, idle and active
    Scale,
    /// IPFIX export's CPU: `-T` with and without `--ipfix` to a local UDP collector
    Ipfix,
    /// tcptrack left running under steady load and churn, sampled every 10 s (30 minutes, or
    /// `--minutes`); only when named
    Soak,
}

impl Case {
    fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_owned())
    }
}

/// A generated capture.
pub struct Capture {
    pub path: PathBuf,
    /// Connections it holds.
    pub connections: u64,
}

/// The captures the `-T` cases read.
pub struct Captures {
    /// Short connections, 2,000 at a time (throughput).
    pub flows: Capture,
    /// Connections that never close, many at a time (memory).
    pub many: Capture,
    /// 10 connections (the memory baseline).
    pub tiny: Capture,
}

/// What every case works with: the programs built, the captures generated.
pub struct Bench {
    pub profile: Profile,
    /// tcptrack (release).
    pub ours: PathBuf,
    /// The bare libpcap read loop (`examples/pcap_read_loop`).
    pub bare: PathBuf,
    /// `examples/kernel_cost`.
    pub kernel_cost: PathBuf,
    /// `examples/tcx_empty`.
    pub tcx_empty: PathBuf,
    /// A folder for the captures and the classic's FIFO.
    pub work: PathBuf,
    /// Generated only when a case that reads them runs.
    captures: Option<Captures>,
}

impl Bench {
    /// The captures the `-T` cases read.
    pub fn captures(&self) -> Result<&Captures> {
        self.captures
            .as_ref()
            .context("the captures were not generated for this run")
    }
}

/// Runs every case but the soak (or those of `only`, when it names any), prints the report and
/// writes it. The soak runs only when named, for `minutes` (by default 30, or 4 with
/// `--quick`), and has a report of its own.
pub fn run(profile: Profile, only: &[Case], minutes: Option<u32>) -> Result<()> {
    setup::ensure(setup::Need::Tests)?;
    let runs = |case: Case| only.is_empty() || only.contains(&case);
    let bench = prepare(
        profile,
        runs(Case::Throughput) || runs(Case::Memory) || runs(Case::Ipfix),
    )?;
    if only.contains(&Case::Soak) {
        let minutes = minutes.unwrap_or(match profile {
            Profile::Quick => 4,
            Profile::Full => 30,
        });
        let soak = cases::soak::run(&bench.ours, minutes, &bench.work)?;
        cases::soak::write(&soak, &root().join("results"), "soak")?;
        let unmet: Vec<String> = soak
            .targets()
            .into_iter()
            .filter(|t| !t.met)
            .map(|t| t.what)
            .collect();
        if !unmet.is_empty() {
            bail!("the soak's targets not met: {}", unmet.join("; "));
        }
        if only == [Case::Soak] {
            return Ok(());
        }
    } else if minutes.is_some() {
        bail!("--minutes is the soak's: add --only soak");
    }
    // Each case if it runs, in this order (fields are evaluated as written).
    let report = Report {
        throughput: run_if(runs(Case::Throughput), &bench, cases::throughput::measure)?,
        throughput_many: run_if(
            runs(Case::Throughput),
            &bench,
            cases::throughput::measure_many,
        )?,
        memory: run_if(runs(Case::Memory), &bench, cases::memory::measure)?,
        kernel_cost_ns: run_if(runs(Case::Kernel), &bench, cases::kernel::measure)?,
        kernel_live: run_if(runs(Case::KernelLive), &bench, cases::kernel_live::measure)?,
        live: run_if(runs(Case::Live), &bench, cases::live::measure)?.unwrap_or_default(),
        idle_screen: run_if(runs(Case::Idle), &bench, cases::idle::measure)?,
        scale: run_if(runs(Case::Scale), &bench, cases::scale::measure)?,
        ipfix: run_if(runs(Case::Ipfix), &bench, cases::ipfix::measure)?,
        live_seconds: profile.live_span().as_secs(),
        packets: profile.packets(),
        runs: profile.runs(),
    };
    write(&report, profile, only)
}

/// `case` on `bench` if it `runs`.
fn run_if<T>(runs: bool, bench: &Bench, case: fn(&Bench) -> Result<T>) -> Result<Option<T>> {
    runs.then(|| case(bench)).transpose()
}

/// Builds the programs measured and, when `captures`, generates the captures.
fn prepare(profile: Profile, captures: bool) -> Result<Bench> {
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
            "--example",
            "tcx_empty",
        ],
    )?;
    let root = root();
    let work = root.join("target/bench");
    fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    Ok(Bench {
        profile,
        ours: root.join("target/release/tcptrack"),
        bare: root.join("target/release/examples/pcap_read_loop"),
        kernel_cost: root.join("target/release/examples/kernel_cost"),
        tcx_empty: root.join("target/release/examples/tcx_empty"),
        captures: captures.then(|| generate(profile, &work)).transpose()?,
        work,
    })
}

/// Generates the captures of the `-T` cases into `work`.
fn generate(profile: Profile, work: &Path) -> Result<Captures> {
    let packets = profile.packets();
    let big = profile.many_connections();
    step(&format!("generating captures: {packets} packets with 2,000 concurrent connections; {packets} packets with {big} concurrent connections"));
    let capture = |name: &str, shape: Shape| -> Result<Capture> {
        let path = work.join(name);
        let connections = gen::write(&path, shape)?;
        Ok(Capture { path, connections })
    };
    let flows = capture(
        "flows.pcap",
        Shape {
            packets,
            concurrent: 2_000,
            data_segments: Some(20),
        },
    )?;
    let many = capture(
        "many.pcap",
        Shape {
            packets,
            concurrent: big,
            data_segments: None,
        },
    )?;
    let tiny = capture(
        "tiny.pcap",
        Shape {
            packets: 1_000,
            concurrent: 10,
            data_segments: None,
        },
    )?;
    Ok(Captures { flows, many, tiny })
}

/// Prints the report (Markdown) and writes it to `results/NAME.{md,json}`, or for a run of
/// some cases only, to `target/bench/NAME-only-CASES.{md,json}`.
fn write(report: &Report, profile: Profile, only: &[Case]) -> Result<()> {
    let md = report.to_string();
    print!("{md}");
    let (results, name) = if only.is_empty() {
        (root().join("results"), profile.results_name().to_owned())
    } else {
        let cases: Vec<String> = only.iter().map(|c| c.name()).collect();
        (
            root().join("target/bench"),
            format!("{}-only-{}", profile.results_name(), cases.join("-")),
        )
    };
    fs::create_dir_all(&results)?;
    let file = |ext: &str| results.join(format!("{name}.{ext}"));
    fs::write(file("md"), &md).with_context(|| format!("write {}", file("md").display()))?;
    fs::write(file("json"), report.json()?)
        .with_context(|| format!("write {}", file("json").display()))?;
    step(&format!("written to {}", file("{md,json}").display()));
    Ok(())
}
