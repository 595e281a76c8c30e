//! `cargo xtask bench`: tcptrack against the limits and the classic tool, measured in one run.
//!
//! Every figure printed comes from processes run by this invocation: captures are generated
//! afresh, each case runs several times and the median is kept. Times are CPU seconds (user +
//! system) of the measured process, so that the classic tcptrack, which needs a terminal and a
//! pipe held open to process a whole file, is measured the same way as the others.
//!
//! The cases are in [`cases`], what they measure with in [`measure`], and every figure goes into
//! one [`report::Report`], printed and written as Markdown and as JSON.

mod cases;
mod measure;
mod report;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};

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

    /// Runs of one packet each through the kernel programs (new connections).
    pub const fn kernel_new_connections(self) -> u32 {
        match self {
            Self::Quick => 5_000,
            Self::Full => 20_000,
        }
    }

    /// How long each iperf3 run of the live cases lasts.
    pub const fn live_span(self) -> Duration {
        match self {
            Self::Quick => Duration::from_secs(3),
            Self::Full => Duration::from_secs(10),
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

/// A generated capture.
pub struct Capture {
    pub path: PathBuf,
    /// Connections it holds.
    pub connections: u64,
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
    /// A folder for the captures and the classic's FIFO.
    pub work: PathBuf,
    /// Short connections, 2,000 at a time (throughput).
    pub flows: Capture,
    /// Connections that never close, many at a time (memory).
    pub many: Capture,
    /// 10 connections (the memory baseline).
    pub tiny: Capture,
}

/// Runs every case, prints the report and writes it to `results/`.
pub fn run(profile: Profile) -> Result<()> {
    setup::ensure(setup::Need::Tests)?;
    let bench = prepare(profile)?;
    let throughput = cases::throughput::measure(&bench)?;
    let memory = cases::memory::measure(&bench)?;
    let kernel_cost_ns = cases::kernel::measure(&bench)?;
    let live = cases::live::measure(&bench)?;
    let idle_screen = cases::idle::measure(&bench)?;
    let report = Report {
        idle_screen,
        kernel_cost_ns,
        live,
        live_seconds: profile.live_span().as_secs(),
        memory,
        packets: profile.packets(),
        runs: profile.runs(),
        throughput,
    };
    write(&report, profile)
}

/// Builds the programs measured and generates the captures.
fn prepare(profile: Profile) -> Result<Bench> {
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
    let work = root.join("target/bench");
    fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
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
    Ok(Bench {
        profile,
        ours: root.join("target/release/tcptrack"),
        bare: root.join("target/release/examples/pcap_read_loop"),
        kernel_cost: root.join("target/release/examples/kernel_cost"),
        work,
        flows,
        many,
        tiny,
    })
}

/// Prints the report (Markdown) and writes it to `results/NAME.{md,json}`.
fn write(report: &Report, profile: Profile) -> Result<()> {
    let md = report.to_string();
    print!("{md}");
    let results = root().join("results");
    fs::create_dir_all(&results)?;
    let name = profile.results_name();
    let file = |ext: &str| results.join(format!("{name}.{ext}"));
    fs::write(file("md"), &md).with_context(|| format!("write {}", file("md").display()))?;
    fs::write(file("json"), report.json()?)
        .with_context(|| format!("write {}", file("json").display()))?;
    step(&format!("written to {}", file("{md,json}").display()));
    Ok(())
}
