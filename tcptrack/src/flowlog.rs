//! The flow log (`--flow-log PATH`): one JSON line per connection when it ends, for a log
//! shipper (Vector, Fluent Bit) to carry, as flow logs and bcc's tcplife do.
//!
//! A connection's record is written when tcptrack forgets it: `-r` seconds after it closed or
//! was reset (so that its last packets are in it), or when it timed out; at exit, one for each
//! connection still listed, marked `"how":"open_at_exit"` (or `closed`/`reset` if it had ended
//! and was still lingering). A connection leaves the table once, so it has one record, never
//! two. SIGHUP reopens PATH (after logrotate moved it away); `-` writes on standard output.
//!
//! A file that cannot be written (its file system full, a quota, an I/O error) does not end
//! tcptrack: the records that could not be written are counted
//! (`tcptrack_flow_log_records_lost_total`, and on the status line), said once on stderr when
//! it starts and once when writing resumes, which it does by itself at the next record that
//! fits. Only whole lines stay in the file: a line cut by the failure is taken back out.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::cli::FlowLogTarget;
use crate::error::Error;
use crate::monitor::locals::Local;
use crate::monitor::{Flow, Monitor, Sink};
use crate::output::{Extra, WallClock};
use crate::table::{Connection, Ended, Ending};

/// One connection, as it ended. The field names are those of `--output json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FlowRecord {
    pub client: String,
    pub server: String,
    /// The state it ended in.
    pub state: &'static str,
    /// `closed`, `reset`, `timeout`, `evicted`, or `open_at_exit`.
    pub how: &'static str,
    pub first_seen: String,
    pub last_seen: String,
    /// From the first packet to the last, in seconds.
    pub duration: f64,
    /// TCP payload bytes, both directions.
    pub payload_bytes: u64,
    /// Frame bytes, both directions.
    pub bytes: u64,
    /// Packets, both directions.
    pub packets: u64,
    pub client_payload_bytes: u64,
    pub server_payload_bytes: u64,
    pub client_bytes: u64,
    pub server_bytes: u64,
    pub client_packets: u64,
    pub server_packets: u64,
    /// Smoothed round-trip time (µs), retransmissions each way, and this host's process, as
    /// `--output json` has them (null where unknown).
    pub rtt_us: Option<u32>,
    pub client_retransmits: Option<u32>,
    pub server_retransmits: Option<u32>,
    pub pid: Option<u32>,
    pub process: Option<String>,
    pub cgroup: Option<String>,
}

impl FlowRecord {
    /// The record of `c`, which ended as `how`; times through `clock`.
    #[must_use]
    pub fn new(c: &Connection, how: Ending, clock: WallClock, local: Option<&Local>) -> Self {
        let (cs, ss, total) = (c.client_sent(), c.server_sent(), c.total());
        let extra = Extra::new(c, local);
        Self {
            client: c.client().to_string(),
            server: c.server().to_string(),
            state: c.state().name(),
            how: how.name(),
            first_seen: clock.rfc3339(c.first_seen()),
            last_seen: clock.rfc3339(c.last_seen()),
            duration: c.last_seen().saturating_sub(c.first_seen()).as_secs_f64(),
            payload_bytes: total.payload_bytes,
            bytes: total.wire_bytes,
            packets: total.packets,
            client_payload_bytes: cs.payload_bytes,
            server_payload_bytes: ss.payload_bytes,
            client_bytes: cs.wire_bytes,
            server_bytes: ss.wire_bytes,
            client_packets: cs.packets,
            server_packets: ss.packets,
            rtt_us: extra.rtt_us,
            client_retransmits: extra.client_retransmits,
            server_retransmits: extra.server_retransmits,
            pid: extra.pid,
            process: extra.process,
            cgroup: extra.cgroup,
        }
    }
}

/// Where records go.
enum Out {
    Stdout,
    File {
        path: PathBuf,
        file: File,
        /// Why the last write failed, while writes fail.
        failing: Option<String>,
    },
}

/// The flow log as a sink of the monitor.
pub struct FlowLog {
    out: Out,
    /// Records that could not be written, since the start.
    lost: Arc<AtomicU64>,
    /// Records lost when the current failure began (what is said when writing resumes).
    lost_before: u64,
    /// Say on stderr when writing fails and when it resumes (not under the screen, whose
    /// status line says it).
    say: bool,
}

fn open(path: &PathBuf) -> Result<File, Error> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| Error::FlowLog {
            path: path.clone(),
            source,
        })
}

/// Appends `text` to `file`, whose lines end at `ends` (offsets in `text`): all of it, or, on
/// an error, the lines written whole before it (a line cut short is taken back out). Returns
/// how many lines are in the file, and the error.
fn append(file: &mut File, text: &[u8], ends: &[usize]) -> (usize, Option<std::io::Error>) {
    let start = file.metadata().map(|m| m.len());
    let mut written = 0;
    while written < text.len() {
        match file.write(&text[written..]) {
            Ok(0) => {
                return cut(
                    file,
                    start,
                    ends,
                    written,
                    std::io::ErrorKind::WriteZero.into(),
                );
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return cut(file, start, ends, written, e),
        }
    }
    (ends.len(), None)
}

/// After `written` bytes of a batch whose lines end at `ends` went into `file` (of length
/// `start` before it) and then `error`: the file cut back to its last whole line.
fn cut(
    file: &File,
    start: std::io::Result<u64>,
    ends: &[usize],
    written: usize,
    error: std::io::Error,
) -> (usize, Option<std::io::Error>) {
    let whole = ends.partition_point(|&end| end <= written);
    let keep = whole.checked_sub(1).map_or(0, |i| ends[i]);
    if written > keep {
        // Without the length it had, or if it cannot be cut, a cut line stays: the records
        // after the last whole line are lost all the same.
        if let Ok(start) = start {
            let _ = file.set_len(start + keep as u64);
        }
    }
    (whole, Some(error))
}

impl FlowLog {
    /// Opens the flow log `target` names (a file is appended to).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(target: &FlowLogTarget) -> Result<Self, Error> {
        let out = match target {
            FlowLogTarget::Stdout => Out::Stdout,
            FlowLogTarget::File(path) => Out::File {
                file: open(path)?,
                path: path.clone(),
                failing: None,
            },
        };
        Ok(Self {
            out,
            lost: Arc::default(),
            lost_before: 0,
            say: true,
        })
    }

    /// Leaves what the status line says to it: nothing on stderr about writes that fail.
    #[must_use]
    pub const fn quiet(mut self) -> Self {
        self.say = false;
        self
    }

    /// The count of records that could not be written, as it grows.
    #[must_use]
    pub fn lost(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.lost)
    }

    /// Writes `records`, one line each. Standard output that fails ends tcptrack as other
    /// output does; a file does not (see the module's documentation).
    fn write(&mut self, records: impl IntoIterator<Item = FlowRecord>) -> Result<(), Error> {
        let mut text = Vec::new();
        let mut ends = Vec::new();
        for r in records {
            serde_json::to_writer(&mut text, &r).map_err(std::io::Error::from)?;
            text.push(b'\n');
            ends.push(text.len());
        }
        if text.is_empty() {
            return Ok(());
        }
        match &mut self.out {
            // The reader of standard output gone is a closed pipe, as for other output.
            Out::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&text)?;
                stdout.flush()?;
            }
            Out::File {
                path,
                file,
                failing,
            } => {
                let (whole, error) = append(file, &text, &ends);
                let lost = (ends.len() - whole) as u64;
                let total = self.lost.fetch_add(lost, Ordering::Relaxed) + lost;
                match (error, failing.is_some()) {
                    (Some(e), false) => {
                        let e = Error::FlowLog {
                            path: path.clone(),
                            source: e,
                        };
                        if self.say {
                            eprintln!("tcptrack: {e}; monitoring goes on, and the records that cannot be written are counted (tcptrack_flow_log_records_lost_total) until it can be written again");
                        }
                        *failing = Some(e.to_string());
                        self.lost_before = total - lost;
                    }
                    (None, true) => {
                        if self.say {
                            eprintln!(
                                "tcptrack: the flow log {} is written again ({} records could not be written)",
                                path.display(),
                                total - self.lost_before
                            );
                        }
                        *failing = None;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

impl Sink for FlowLog {
    fn refresh(&mut self, _m: &Monitor) -> Result<(), Error> {
        Ok(())
    }

    fn departed(&mut self, m: &Monitor, ended: &[Ended]) -> Result<(), Error> {
        let clock = m.wall_clock();
        self.write(
            ended
                .iter()
                .map(|e| FlowRecord::new(&e.conn, e.how, clock, m.locals.of(&e.conn))),
        )
    }

    fn ended(&mut self, _m: &Monitor) -> Result<Flow, Error> {
        Ok(Flow::Continue)
    }

    /// A rotated file is let go and PATH opened anew; standard output stays.
    /// If PATH cannot be opened, the file open so far is kept (and said so).
    fn hangup(&mut self, _m: &Monitor) -> Result<Flow, Error> {
        if let Out::File { path, file, .. } = &mut self.out {
            match open(path) {
                Ok(f) => *file = f,
                Err(e) if self.say => {
                    eprintln!("tcptrack: {e}; records go on to the file open until now");
                }
                Err(_) => {}
            }
        }
        Ok(Flow::Continue)
    }

    /// One record for each connection still listed.
    fn exit(&mut self, m: &Monitor) -> Result<(), Error> {
        let mut open: Vec<&Connection> = m.table.connections().collect();
        open.sort_by_key(|c| c.id());
        let clock = m.wall_clock();
        self.write(
            open.into_iter()
                .map(|c| FlowRecord::new(c, Ending::at_exit(c.state()), clock, m.locals.of(c))),
        )
    }
}

#[cfg(test)]
mod tests;
