//! The kernel path on the kernels production hosts run: Debian's 5.10 (bullseye), 6.1
//! (bookworm) and 6.12 (trixie), each booted in QEMU with this machine's root file system
//! (`tests/vm/`: `prepare.sh` fetches and unpacks the kernels once, `run.sh` boots one and runs
//! `matrix.sh` inside). The host's own kernel runs the same tests in `kernel_live.rs` and
//! `kernel_follow.rs`. Needs root (CI has it).
//!
//! Time: no VM has one fixed bound. `matrix.sh` times the emulated CPU first and scales its
//! waits and its steps' bounds to it; `run.sh` holds the boot, each step and the power-off to
//! their own bounds, and says where a cut run was. Each report says when each step started and
//! how long it took.

use std::path::Path;
use std::process::Command;

use tcptrack_tests::tcptrack_bin;

fn vm_script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vm").join(name)
}

#[test]
fn the_kernel_path_on_debian_kernels_5_10_6_1_and_6_12() {
    let prepared = Command::new("sh")
        .arg(vm_script("prepare.sh"))
        .status()
        .expect("run tests/vm/prepare.sh");
    assert!(prepared.success(), "tests/vm/prepare.sh failed");
    let mut failures = Vec::new();
    for version in ["5.10", "6.1", "6.12"] {
        // Under /tmp: the guest sees it (and writes into it).
        let out = tempfile::Builder::new()
            .prefix("tcptrack-matrix-")
            .tempdir_in("/tmp")
            .expect("output folder");
        std::fs::write(out.path().join("bin"), tcptrack_bin().display().to_string())
            .expect("write the binary's path");
        let status = Command::new("sh")
            .arg(vm_script("run.sh"))
            .arg(version)
            .arg(vm_script("matrix.sh"))
            .arg(out.path())
            .status()
            .expect("run tests/vm/run.sh");
        let report = std::fs::read_to_string(out.path().join("report.txt")).unwrap_or_default();
        println!("{version}:\n{report}");
        if !status.success() {
            let details =
                std::fs::read_to_string(out.path().join("details.txt")).unwrap_or_default();
            failures.push(format!("{version} ({status}):\n{report}\n{details}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
