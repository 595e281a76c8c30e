//! Running tcptrack: from a validated [`Config`] to output.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::cli::{Config, OutputFormat, Source};
use crate::error::Error;
use crate::flow::Timestamp;
use crate::output::{self, ConnectionRecord, WallClock};
use crate::source::file::{CaptureFile, ReadEnd};
use crate::table::ConnectionTable;

/// How often, in capture time, a file's table forgets what has timed out.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Every connection a capture file holds, in its final state, first seen first.
#[derive(Debug)]
pub struct CaptureReport {
    pub records: Vec<ConnectionRecord>,
    /// Packets read (after the filter).
    pub packets: u64,
    /// Set when the file was cut short: the records are those of the packets before the cut.
    pub truncated: Option<Error>,
}

/// Reads the whole capture at `path` through the connection table, its clock the capture's.
///
/// # Errors
/// The file cannot be opened as a capture, or the filter is bad. A file cut short is not an
/// error here: see [`CaptureReport::truncated`].
pub fn read_capture(path: &Path, cfg: &Config) -> Result<CaptureReport, Error> {
    let mut file = CaptureFile::open(path, cfg.filter.as_deref())?;
    let mut table_cfg = cfg.table.clone();
    table_cfg.keep_finished = true;
    let rate = table_cfg.rate;
    let mut table = ConnectionTable::new(table_cfg);
    let mut now: Timestamp = Duration::ZERO;
    let mut next_expiry: Timestamp = Duration::ZERO;
    let end = file.read_all(|u| {
        now = now.max(u.ts);
        table.apply(u);
        if now >= next_expiry {
            table.expire(now);
            next_expiry = now + EXPIRE_EVERY;
        }
    });
    let records = table
        .into_all()
        .iter()
        .map(|c| ConnectionRecord::new(c, rate, now, WallClock::CAPTURE))
        .collect();
    Ok(CaptureReport {
        records,
        packets: file.packets(),
        truncated: match end {
            ReadEnd::Complete => None,
            ReadEnd::Truncated(e) => Some(e),
        },
    })
}

/// Runs tcptrack as configured, writing headless output to `out`.
///
/// # Errors
/// Any [`Error`]; for a capture cut short, after its report has been written.
pub fn run(cfg: &Config, out: &mut impl Write) -> Result<(), Error> {
    match &cfg.source {
        Source::File(path) => {
            let report = read_capture(path, cfg)?;
            output::write(
                cfg.output.unwrap_or(OutputFormat::Table),
                &report.records,
                out,
            )?;
            report.truncated.map_or(Ok(()), Err)
        }
        Source::Interface(_) | Source::DefaultInterface => {
            crate::source::live::run_headless(cfg, out)
        }
    }
}
