//! The flow log (`--flow-log PATH`): one JSON line per connection when it ends, for a log
//! shipper (Vector, Fluent Bit) to carry, as flow logs and bcc's tcplife do.
//!
//! A connection's record is written when tcptrack forgets it: `-r` seconds after it closed or
//! was reset (so that its last packets are in it), or when it timed out; at exit, one for each
//! connection still listed, marked `"how":"open_at_exit"` (or `closed`/`reset` if it had ended
//! and was still lingering). A connection leaves the table once, so it has one record, never
//! two. SIGHUP reopens PATH (after logrotate moved it away); `-` writes on standard output.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Serialize;

use crate::cli::FlowLogTarget;
use crate::error::Error;
use crate::monitor::locals::Local;
use crate::monitor::{Flow, Monitor, Sink};
use crate::output::{Extra, WallClock};
use crate::table::{Connection, Ended, Ending, State};

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
        file: BufWriter<File>,
    },
}

/// The flow log as a sink of the monitor.
pub struct FlowLog {
    out: Out,
}

fn open(path: &PathBuf) -> Result<BufWriter<File>, Error> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(BufWriter::new)
        .map_err(|source| Error::FlowLog {
            path: path.clone(),
            source,
        })
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
            },
        };
        Ok(Self { out })
    }

    /// Writes `records`, one line each, and flushes them.
    fn write(&mut self, records: impl IntoIterator<Item = FlowRecord>) -> Result<(), Error> {
        let mut text = Vec::new();
        for r in records {
            serde_json::to_writer(&mut text, &r).map_err(std::io::Error::from)?;
            text.push(b'\n');
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
            Out::File { path, file } => {
                file.write_all(&text)
                    .and_then(|()| file.flush())
                    .map_err(|source| Error::FlowLog {
                        path: path.clone(),
                        source,
                    })?
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
    fn hangup(&mut self, _m: &Monitor) -> Result<Flow, Error> {
        if let Out::File { path, file } = &mut self.out {
            let _ = file.flush();
            *file = open(path)?;
        }
        Ok(Flow::Continue)
    }

    /// One record for each connection still listed.
    fn exit(&mut self, m: &Monitor) -> Result<(), Error> {
        let mut open: Vec<&Connection> = m.table.connections().collect();
        open.sort_by_key(|c| c.id());
        let clock = m.wall_clock();
        self.write(open.into_iter().map(|c| {
            let how = match c.state() {
                State::Closed | State::Reset => Ending::of(c.state()),
                _ => Ending::OpenAtExit,
            };
            FlowRecord::new(c, how, clock, m.locals.of(c))
        }))
    }
}

#[cfg(test)]
mod tests;
