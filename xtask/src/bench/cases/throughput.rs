//! `-T` throughput: CPU time per packet of tcptrack, the bare libpcap read loop (the limit),
//! tshark and the classic tcptrack, on the capture of short connections (2,000 at a time) and
//! on the one of many connections that never close.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::super::measure::{median_and_runs, median_of, run_to_end};
use super::super::report::{Cost, Throughput};
use super::super::{Bench, Capture};
use super::{classic_on_file, ours_on_file};
use crate::step;

/// The median of the profile's runs of each program on the capture of short connections.
pub fn measure(b: &Bench) -> Result<Throughput> {
    on(b, &b.captures()?.flows, 2_000)
}

/// The same on the capture of many connections (`Profile::many_connections` at a time).
pub fn measure_many(b: &Bench) -> Result<Throughput> {
    on(b, &b.captures()?.many, b.profile.many_connections())
}

fn on(b: &Bench, capture: &Capture, concurrent: u32) -> Result<Throughput> {
    let runs = b.profile.runs();
    let file: &Path = &capture.path;
    step(&format!(
        "-T throughput on {} ({concurrent} at a time), {runs} run(s) each: tcptrack, bare \
         libpcap loop, tshark, classic tcptrack",
        file.display()
    ));
    let ours = median_of(runs, || ours_on_file(&b.ours, file))?;
    let bare = median_of(runs, || run_to_end(Command::new(&b.bare).arg(file)))?;
    let tshark = median_of(runs, || {
        run_to_end(
            Command::new("tshark")
                .args(["-n", "-q", "-z", "conv,tcp", "-r"])
                .arg(file),
        )
    })?;
    let (classic, classic_runs) = median_and_runs(runs, || classic_on_file(file, &b.work))?;
    let mut t = Throughput::new(
        b.profile.packets(),
        (capture.connections, concurrent),
        [ours, bare, tshark, classic].map(Cost::from),
    );
    t.classic_runs_cpu_s = classic_runs;
    Ok(t)
}
