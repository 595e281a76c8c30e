//! Kernel cost per packet, from `examples/kernel_cost` (BPF_PROG_TEST_RUN: the programs are
//! loaded and run on test packets, not attached anywhere).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use super::super::measure::median_by;
use super::super::report::KernelCost;
use super::super::Bench;
use crate::step;

/// One run of `examples/kernel_cost`: its JSON.
fn kernel_cost(bin: &Path, repeat: u32, fresh: u32) -> Result<serde_json::Value> {
    let out = Command::new(bin)
        .args([repeat.to_string(), fresh.to_string()])
        .output()
        .context("run kernel_cost")?;
    if !out.status.success() {
        bail!(
            "kernel_cost failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("kernel_cost output")
}

/// Each figure is the median, over the profile's runs, of that figure.
pub fn measure(b: &Bench) -> Result<KernelCost> {
    step("kernel cost per packet (BPF_PROG_TEST_RUN)");
    let (repeat, fresh) = (
        b.profile.kernel_repeat(),
        b.profile.kernel_new_connections(),
    );
    let runs = (0..b.profile.runs())
        .map(|_| kernel_cost(&b.kernel_cost, repeat, fresh))
        .collect::<Result<Vec<_>>>()?;
    let median = |field: &str| -> f64 {
        let v: Vec<f64> = runs.iter().filter_map(|r| r[field].as_f64()).collect();
        median_by(v, f64::total_cmp).unwrap_or(f64::NAN)
    };
    Ok(KernelCost {
        empty: median("empty_ns"),
        empty_single_run: median("empty_single_ns"),
        existing_connection: median("existing_ns"),
        new_connection: median("new_ns"),
        unfiltered: Some(median("unfiltered_ns")),
        filtered: Some(median("filtered_ns")),
        filter_added: Some(median("filter_added_ns")),
        filter: runs
            .first()
            .and_then(|r| r["filter"].as_str())
            .map(str::to_owned),
        new_connections: fresh,
        repeat,
    })
}
