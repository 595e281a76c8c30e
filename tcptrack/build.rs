//! Builds the kernel programs (tcptrack-ebpf) for the BPF target, so that the binary embeds the
//! object of the very sources it was built from.

use std::path::Path;

use anyhow::{Context as _, Result};

fn main() -> Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let workspace = Path::new(&manifest)
        .parent()
        .context("tcptrack has no parent folder")?;
    let ebpf_dir = workspace.join("tcptrack-ebpf");
    let common_dir = workspace.join("tcptrack-common");
    // aya-build watches the eBPF crate; the contract it includes changes it too.
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let root_dir = ebpf_dir
        .to_str()
        .context("non-UTF-8 path to tcptrack-ebpf")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "tcptrack-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
