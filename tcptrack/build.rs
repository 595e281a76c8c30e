//! Builds the kernel programs (tcptrack-ebpf) for the BPF target, so that the binary embeds the
//! object of the very sources it was built from. Without the `ebpf` feature it embeds an empty
//! object, which `ebpf::Kernel::load` refuses by name.

use std::path::Path;

use anyhow::{Context as _, Result};

fn main() -> Result<()> {
    if std::env::var_os("CARGO_FEATURE_EBPF").is_none() {
        println!("cargo:rerun-if-changed=build.rs");
        let out = std::env::var("OUT_DIR").context("OUT_DIR not set")?;
        std::fs::write(Path::new(&out).join("tcptrack-ebpf"), [])
            .context("cannot write the empty eBPF object")?;
        return Ok(());
    }
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
