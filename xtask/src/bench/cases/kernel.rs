//! Kernel cost per packet, from `examples/kernel_cost` (BPF_PROG_TEST_RUN: the programs are
//! loaded and run on test packets, not attached anywhere): the ablation of the TC program's
//! stages, an existing IPv4 and IPv6 connection, new connections, a map of 65,536, and the
//! kernel filter, each against the empty program in alternating rounds.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::super::measure::median_by;
use super::super::report::{KernelCost, Paired, StageCost};
use super::super::Bench;
use crate::step;

/// One run of `examples/kernel_cost`: its JSON.
fn kernel_cost(bin: &Path, repeat: u32, per_round: u32, rounds: u32) -> Result<Value> {
    let out = Command::new(bin)
        .args([repeat, per_round, rounds].map(|n| n.to_string()))
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

/// The median over `runs` of the figure `pick` finds in each.
fn median(runs: &[Value], pick: impl Fn(&Value) -> Option<f64>) -> f64 {
    median_by(runs.iter().filter_map(pick).collect(), f64::total_cmp).unwrap_or(f64::NAN)
}

/// The median over `runs` of each figure of the pair at `path`.
fn paired(runs: &[Value], path: &[&str]) -> Paired {
    let at = |field: &'static str| {
        median(runs, |r| {
            path.iter()
                .try_fold(r, |v, p| v.get(p))
                .and_then(|v| v[field].as_f64())
        })
    };
    Paired {
        ns: at("ns"),
        empty_ns: at("empty_ns"),
        above_ns: at("above_ns"),
    }
}

/// The ablation listed under `name` (`stages`: an existing connection's, `stages_new`,
/// `stages_many`): each stage's figures, the median over `runs`.
fn staged(runs: &[Value], name: &str) -> Result<Vec<StageCost>> {
    let first = runs.first().context("no run")?;
    let names: Vec<String> = first[name]
        .as_array()
        .with_context(|| format!("{name} in kernel_cost's output"))?
        .iter()
        .filter_map(|s| s["stage"].as_str().map(str::to_owned))
        .collect();
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(i, stage)| {
            let pick = |field: &'static str| median(runs, |r| r[name][i]["cost"][field].as_f64());
            StageCost {
                stage,
                cost: Paired {
                    ns: pick("ns"),
                    empty_ns: pick("empty_ns"),
                    above_ns: pick("above_ns"),
                },
            }
        })
        .collect())
}

/// Each figure is the median, over the profile's runs, of that figure.
pub fn measure(b: &Bench) -> Result<KernelCost> {
    step("kernel cost per packet (BPF_PROG_TEST_RUN)");
    let (repeat, per_round, rounds) = (
        b.profile.kernel_repeat(),
        b.profile.kernel_new_connections(),
        b.profile.kernel_rounds(),
    );
    let runs = (0..b.profile.runs())
        .map(|_| kernel_cost(&b.kernel_cost, repeat, per_round, rounds))
        .collect::<Result<Vec<_>>>()?;
    let first = runs.first().context("no run")?;
    let stages = staged(&runs, "stages")?;
    let (stages_new, stages_many) = (staged(&runs, "stages_new")?, staged(&runs, "stages_many")?);
    let whole = stages.last().map(|s| s.cost).context("no stage")?;
    let (new_ack, filtered) = (paired(&runs, &["new_ack"]), paired(&runs, &["filtered"]));
    Ok(KernelCost {
        empty: whole.empty_ns,
        empty_single_run: new_ack.empty_ns,
        existing_connection: whole.ns,
        new_connection: new_ack.ns,
        unfiltered: Some(filtered.empty_ns),
        filtered: Some(filtered.ns),
        filter_added: Some(filtered.above_ns),
        filter: first["filter"].as_str().map(str::to_owned),
        new_connections: per_round,
        repeat,
        rounds: Some(rounds),
        stages,
        stages_new,
        stages_many,
        existing_v6: Some(paired(&runs, &["existing_v6"])),
        new_ack: Some(new_ack),
        new_syn: Some(paired(&runs, &["new_syn"])),
        many: Some(paired(&runs, &["many"])),
        many_connections: first["many_connections"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok()),
    })
}
