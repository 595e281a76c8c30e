//! `-T` throughput: CPU time per packet of tcptrack, the bare libpcap read loop (the limit),
//! tshark and the classic tcptrack on a capture of short connections.

use std::process::Command;

use anyhow::Result;

use super::super::measure::{median_of, run_to_end};
use super::super::report::{Cost, Throughput};
use super::super::Bench;
use super::{classic_on_file, ours_on_file};
use crate::step;

/// The median of the profile's runs of each program.
pub fn measure(b: &Bench) -> Result<Throughput> {
    let runs = b.profile.runs();
    let captures = b.captures()?;
    let flows = &captures.flows.path;
    step(&format!(
        "-T throughput, {runs} run(s) each: tcptrack, bare libpcap loop, tshark, classic tcptrack"
    ));
    let ours = median_of(runs, || ours_on_file(&b.ours, flows))?;
    let bare = median_of(runs, || run_to_end(Command::new(&b.bare).arg(flows)))?;
    let tshark = median_of(runs, || {
        run_to_end(
            Command::new("tshark")
                .args(["-n", "-q", "-z", "conv,tcp", "-r"])
                .arg(flows),
        )
    })?;
    let classic = median_of(runs, || classic_on_file(flows, &b.work))?;
    Ok(Throughput::new(
        b.profile.packets(),
        captures.flows.connections,
        [ours, bare, tshark, classic].map(Cost::from),
    ))
}
