//! Installs what is missing, says what it does, and costs next to nothing when all is there.

use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::step;

/// What the prerequisites are for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Building and running tcptrack.
    Run,
    /// Running every test too.
    Tests,
}

/// Debian packages for building and running tcptrack (libpcap and its headers).
const RUN_PACKAGES: &[&str] = &["libpcap-dev", "pkg-config"];
/// Debian packages the tests and benchmarks use.
const TEST_PACKAGES: &[&str] = &[
    "tcpdump",
    "tshark",
    "tmux",
    "iproute2",
    "iperf3",
    "tcptrack",
    "bpftool",
    // setcap, for the least-privilege tests.
    "libcap2-bin",
    // groff renders the man page; zsh and fish load their completions.
    "groff-base",
    "zsh",
    "fish",
    // A real Prometheus server scraping --metrics in the metrics tests.
    "prometheus",
    // Loss (nftables' random drop) and segmentation offload off (ethtool) in the
    // diagnostics tests.
    "nftables",
    "ethtool",
    // The wall clock stepped under a running tcptrack, in the fault tests.
    "libfaketime",
    // The text of the soak's plot (`cargo xtask bench --only soak`).
    "fonts-dejavu-core",
    // Certificates (openssl) and bcrypt hashes (htpasswd) for the metrics' web configuration.
    "openssl",
    "apache2-utils",
    // A real IPFIX collector (nfcapd, nfdump) and a second exporter (softflowd) in the IPFIX
    // tests.
    "nfdump",
    "softflowd",
];

const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Makes sure everything `need` asks for is installed.
///
/// # Errors
/// Something is missing and cannot be installed.
pub fn ensure(need: Need) -> Result<()> {
    let mut packages: Vec<&str> = RUN_PACKAGES.to_vec();
    if need == Need::Tests {
        packages.extend_from_slice(TEST_PACKAGES);
    }
    debian_packages(&packages)?;
    let llvm = nightly_llvm_major()?;
    rust_src()?;
    bpf_linker(llvm)?;
    if need == Need::Tests {
        cargo_fuzz()?;
    }
    Ok(())
}

/// cargo-fuzz, which builds and runs the fuzz targets (`fuzz/`) with the nightly toolchain.
fn cargo_fuzz() -> Result<()> {
    if output("cargo", &["+nightly", "fuzz", "--version"]).is_some() {
        return Ok(());
    }
    step(&format!(
        "installing cargo-fuzz {CARGO_FUZZ_VERSION} (builds and runs the fuzz targets)"
    ));
    crate::sh(
        "cargo",
        &[
            "install",
            "--locked",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
        ],
    )
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `args` as root: directly when this is root, else through sudo.
pub fn privileged(args: &[&str]) -> Result<()> {
    let (program, rest): (&str, Vec<&str>) = if is_root() {
        (args[0], args[1..].to_vec())
    } else {
        ("sudo", args.to_vec())
    };
    let status = Command::new(program)
        .args(&rest)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("cannot run {}", args.join(" ")))?;
    if !status.success() {
        bail!("`{}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn installed(package: &str) -> bool {
    output("dpkg-query", &["-W", "-f=${Status}", package])
        .is_some_and(|s| s.contains("install ok installed"))
}

/// Installs those of `packages` that are missing, saying which.
pub fn debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    privileged(&["apt-get", "update", "-q"])?;
    let mut args = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
    args.extend_from_slice(&missing);
    privileged(&args)
}

/// The LLVM major version of the `nightly` toolchain, which builds the kernel programs.
fn nightly_llvm_major() -> Result<u32> {
    let vv = output("rustc", &["+nightly", "-vV"]).context(
        "the Rust toolchain named `nightly` is missing; it builds the eBPF programs (rustup toolchain install nightly)",
    )?;
    let version = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` names no LLVM version")?;
    version
        .split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .with_context(|| format!("cannot read LLVM version `{version}`"))
}

fn rust_src() -> Result<()> {
    let have = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .is_some_and(|s| s.lines().any(|l| l.starts_with("rust-src")));
    if have {
        return Ok(());
    }
    step("adding rust-src to the nightly toolchain (the eBPF build compiles core from source)");
    crate::sh(
        "rustup",
        &["component", "add", "rust-src", "--toolchain", "nightly"],
    )
}

/// The LLVM feature the installed bpf-linker was built with, from cargo's install records.
fn bpf_linker_llvm() -> Option<u32> {
    output("bpf-linker", &["--version"])?;
    let home = std::env::var("CARGO_HOME")
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.cargo")))?;
    let records = std::fs::read_to_string(format!("{home}/.crates2.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&records).ok()?;
    json.get("installs")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("bpf-linker "))?
        .1
        .get("features")?
        .as_array()?
        .iter()
        .find_map(|f| f.as_str()?.strip_prefix("llvm-")?.parse().ok())
}

fn bpf_linker(llvm: u32) -> Result<()> {
    match bpf_linker_llvm() {
        Some(have) if have >= llvm => return Ok(()),
        Some(have) => step(&format!(
            "bpf-linker was built with LLVM {have}, older than the nightly's LLVM {llvm} (linking would fail with `Invalid record`): rebuilding it"
        )),
        None => step(&format!("installing bpf-linker {BPF_LINKER_VERSION} with LLVM {llvm} (links the eBPF programs)")),
    }
    let dev = format!("llvm-{llvm}-dev");
    if !installed(&dev) {
        step(&format!("installing {dev} (the LLVM bpf-linker builds on)"));
        privileged(&["apt-get", "update", "-q"])?;
        privileged(&[
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            &dev,
        ])?;
    }
    let status = Command::new("cargo")
        .args([
            "install",
            "--force",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{llvm}"))
        .env("LLVM_PREFIX", format!("/usr/lib/llvm-{llvm}"))
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("installing bpf-linker failed ({status})");
    }
    Ok(())
}
