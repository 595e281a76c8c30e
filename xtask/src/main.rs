//! tcptrack's chores. `cargo xtask run -- ARGS` runs tcptrack, `cargo xtask test` runs every
//! test, `cargo xtask dist` and `cargo xtask install` package and install it; each first
//! installs what is missing (see `setup`).

mod bench;
mod dist;
mod fuzz;
mod gen;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "tcptrack's chores")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and running tcptrack needs (Debian packages, the nightly's rust-src, bpf-linker)
    Setup {
        /// Also what the tests need (tcpdump, tshark, tmux, iperf3, the classic tcptrack, cargo-fuzz)
        #[arg(long)]
        tests: bool,
    },
    /// Build tcptrack (release) and run it with ARGS
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build tcptrack (release) into target/dist/ with its man page (tcptrack.1) and shell
    /// completions (tcptrack.bash, _tcptrack for zsh, tcptrack.fish)
    Dist,
    /// Build as `dist` does and install the binary, the man page and the completions under
    /// PREFIX (bin/, share/man/man1/, share/bash-completion/, share/zsh/, share/fish/)
    Install {
        /// Where to install
        #[arg(long, value_name = "DIR", default_value = "/usr/local")]
        prefix: PathBuf,
        /// Also give the installed binary the file capabilities live capture needs (setcap), so
        /// that users other than root can run it
        #[arg(long)]
        setcap: bool,
    },
    /// Check formatting and lints, then run every test (eBPF and network-namespace tests
    /// included), then each fuzz target for 60 s
    Test,
    /// Run the fuzz targets (cargo-fuzz, nightly) for a fixed time each, or write their seeds
    Fuzz {
        /// Seconds each target runs
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Write the seed corpora (fuzz/seeds/) from the suite's own captures instead
        #[arg(long)]
        seeds: bool,
        /// Targets to run (decode, capture, filter; default: all)
        targets: Vec<String>,
    },
    /// Measure tcptrack against a bare libpcap read loop and the classic tcptrack, and each live
    /// monitor on many real connections
    Bench {
        /// A smaller run (fewer packets, smaller loads, shorter windows)
        #[arg(long)]
        quick: bool,
        /// Run only CASE (repeat, or separate with commas, for several). The report then holds
        /// only those cases and is written to target/bench/NAME-only-CASES.{md,json}, leaving
        /// results/ to whole runs. Example: `cargo xtask bench --quick --only scale`
        #[arg(long, value_name = "CASE", value_enum, value_delimiter = ',')]
        only: Vec<bench::Case>,
        /// How long the soak runs (`--only soak`; default 30, 4 with --quick; at least 4: the
        /// first 2 are its warm-up)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(4..))]
        minutes: Option<u32>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup { tests } => setup::ensure(if tests {
            setup::Need::Tests
        } else {
            setup::Need::Run
        }),
        Task::Run { args } => run(&args),
        Task::Dist => dist::dist().map(|_| ()),
        Task::Install { prefix, setcap } => dist::install(&prefix, setcap),
        Task::Test => test(),
        Task::Fuzz {
            seconds,
            seeds,
            targets,
        } => {
            if seeds {
                fuzz::write_seeds()
            } else {
                setup::ensure(setup::Need::Tests)?;
                fuzz::run(seconds, &targets)
            }
        }
        Task::Bench {
            quick,
            only,
            minutes,
        } => bench::run(
            if quick {
                bench::Profile::Quick
            } else {
                bench::Profile::Full
            },
            &only,
            minutes,
        ),
    }
}

/// The workspace's root folder.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs a command in the workspace, failing if it fails.
fn sh(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn step(what: &str) {
    eprintln!("xtask: {what}");
}

/// Builds tcptrack (release), first installing what that needs, and returns the binary.
fn build_release() -> Result<PathBuf> {
    setup::ensure(setup::Need::Run)?;
    step("building tcptrack (release)");
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
        ],
    )?;
    Ok(root().join("target/release/tcptrack"))
}

fn run(args: &[String]) -> Result<()> {
    let bin = build_release()?;
    let status = Command::new(&bin)
        .args(args)
        .status()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}

fn test() -> Result<()> {
    setup::ensure(setup::Need::Tests)?;
    step("checking formatting (cargo fmt --check)");
    sh("cargo", &["fmt", "--all", "--check"])?;
    step("linting (cargo clippy -D warnings)");
    sh(
        "cargo",
        &["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"],
    )?;
    step("linting the kernel programs (nightly clippy for bpfel-unknown-none)");
    sh(
        "cargo",
        &[
            "+nightly",
            "clippy",
            "--quiet",
            "--package",
            "tcptrack-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step("building tcptrack for the end-to-end tests");
    sh(
        "cargo",
        &["build", "--quiet", "--package", "tcptrack", "--bins"],
    )?;
    step("running every test");
    // The default members: every crate but tcptrack-ebpf, whose build (and load through the
    // verifier) is tested from tcptrack.
    // Started under sudo, tcptrack would run as sudo's user after setup: the tests start it as
    // root and say when they want another user.
    let status = Command::new("cargo")
        .args(["test", "--no-fail-fast"])
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .current_dir(root())
        .status()
        .context("cannot start cargo")?;
    if !status.success() {
        bail!("`cargo test --no-fail-fast` failed ({status})");
    }
    // A short, fixed time each: enough to keep the targets building and finding what a change
    // breaks at once; the long runs are by hand (`cargo xtask fuzz --seconds N`).
    fuzz::run(FUZZ_SECONDS, &[])
}

/// Seconds `cargo xtask test` runs each fuzz target.
const FUZZ_SECONDS: u32 = 60;
