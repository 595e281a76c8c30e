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

/// A capture file read to its end: the table holds every connection it had, in its final state.
pub struct CaptureReport {
    /// The table after the last packet (with the connections that left it).
    pub table: ConnectionTable,
    /// The capture time of the last packet.
    pub end: Timestamp,
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
    Ok(CaptureReport {
        table,
        end: now,
        packets: file.packets(),
        truncated: match end {
            ReadEnd::Complete => None,
            ReadEnd::Truncated(e) => Some(e),
        },
    })
}

/// Runs tcptrack as configured: the screen when standard output is a terminal and no
/// `--output` was asked for, else headless output to `out`.
///
/// # Errors
/// Any [`Error`]; for a capture cut short, after its report has been written (or shown).
pub fn run(cfg: &Config, out: &mut impl Write) -> Result<(), Error> {
    if cfg.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return crate::tui::run(cfg);
    }
    match &cfg.source {
        Source::File(path) => {
            let report = read_capture(path, cfg)?;
            let rate = report.table.config().rate;
            let records = report
                .table
                .all_by_first_seen()
                .into_iter()
                .map(|c| ConnectionRecord::new(c, rate, report.end, WallClock::CAPTURE));
            output::write(cfg.output.unwrap_or(OutputFormat::Table), records, out)?;
            report.truncated.map_or(Ok(()), Err)
        }
        Source::Interface(_) | Source::DefaultInterface => {
            crate::source::live::run_headless(cfg, out)
        }
    }
}
