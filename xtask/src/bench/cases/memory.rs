//! Memory per connection: peak RSS of tcptrack and of the classic on a capture of many
//! connections that never close, less their peak on a capture of 10.

use anyhow::Result;

use super::super::measure::median_of;
use super::super::report::{Cost, Memory};
use super::super::{Bench, Captures};
use super::{classic_on_file, ours_on_file};
use crate::step;

/// tcptrack's peaks are medians of the profile's runs; the classic's are of one run each.
pub fn measure(b: &Bench) -> Result<Memory> {
    let runs = b.profile.runs();
    let Captures { many, tiny, .. } = b.captures()?;
    step(&format!(
        "peak memory with {} connections, and with 10 (the baseline)",
        many.connections
    ));
    let ours = median_of(runs, || ours_on_file(&b.ours, &many.path))?;
    let ours_base = median_of(runs, || ours_on_file(&b.ours, &tiny.path))?;
    let classic = classic_on_file(&many.path, &b.work)?;
    let classic_base = classic_on_file(&tiny.path, &b.work)?;
    Ok(Memory::new(
        many.connections,
        (Cost::from(ours), Cost::from(ours_base)),
        (Cost::from(classic), Cost::from(classic_base)),
    ))
}
