//! Headless outputs: the connections as JSON lines, CSV or a plain table.

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cli::OutputFormat;
use crate::flow::Timestamp;
use crate::format;
use crate::rate::RateConfig;
use crate::table::Connection;

/// Maps the table's clock to wall-clock time: capture timestamps are already wall-clock (origin
/// at the Unix epoch); live, monotonic time is mapped through the moment tracking started.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    origin: Timestamp,
    origin_wall: SystemTime,
}

impl WallClock {
    /// For capture files: timestamps count from the Unix epoch.
    pub const CAPTURE: Self = Self {
        origin: Duration::ZERO,
        origin_wall: SystemTime::UNIX_EPOCH,
    };

    /// `origin` on the table's clock is `origin_wall` on the wall clock.
    #[must_use]
    pub const fn new(origin: Timestamp, origin_wall: SystemTime) -> Self {
        Self {
            origin,
            origin_wall,
        }
    }

    fn rfc3339(self, t: Timestamp) -> String {
        let wall = if t >= self.origin {
            self.origin_wall + (t - self.origin)
        } else {
            self.origin_wall - (self.origin - t)
        };
        humantime::format_rfc3339_nanos(wall).to_string()
    }
}

/// One connection as every headless output writes it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConnectionRecord {
    pub client: String,
    pub server: String,
    pub state: &'static str,
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
    /// Payload bytes per second, both directions, as the Speed column.
    pub speed: u64,
    /// Seconds since the last packet.
    pub idle: f64,
    pub first_seen: String,
    pub last_seen: String,
}

impl ConnectionRecord {
    #[must_use]
    pub fn new(c: &Connection, rate: RateConfig, now: Timestamp, clock: WallClock) -> Self {
        let (cs, ss, total) = (c.client_sent(), c.server_sent(), c.total());
        Self {
            client: c.client().to_string(),
            server: c.server().to_string(),
            state: c.state().name(),
            payload_bytes: total.payload_bytes,
            bytes: total.wire_bytes,
            packets: total.packets,
            client_payload_bytes: cs.payload_bytes,
            server_payload_bytes: ss.payload_bytes,
            client_bytes: cs.wire_bytes,
            server_bytes: ss.wire_bytes,
            client_packets: cs.packets,
            server_packets: ss.packets,
            speed: c.speed(rate, now),
            idle: c.idle(now).as_secs_f64(),
            first_seen: clock.rfc3339(c.first_seen()),
            last_seen: clock.rfc3339(c.last_seen()),
        }
    }
}

/// Writes `records` in `format`.
///
/// # Errors
/// Writing to `out` failed.
pub fn write(
    format: OutputFormat,
    records: &[ConnectionRecord],
    out: &mut impl Write,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => {
            for r in records {
                serde_json::to_writer(&mut *out, r)?;
                out.write_all(b"\n")?;
            }
        }
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut *out);
            if records.is_empty() {
                w.write_record(CSV_HEADER)?;
            }
            for r in records {
                w.serialize(r).map_err(std::io::Error::other)?;
            }
            w.flush()?;
        }
        OutputFormat::Table => write_table(records, out)?,
    }
    out.flush()
}

/// The CSV header (written alone when there is no connection to name the columns).
const CSV_HEADER: [&str; 16] = [
    "client",
    "server",
    "state",
    "payload_bytes",
    "bytes",
    "packets",
    "client_payload_bytes",
    "server_payload_bytes",
    "client_bytes",
    "server_bytes",
    "client_packets",
    "server_packets",
    "speed",
    "idle",
    "first_seen",
    "last_seen",
];

fn write_table(records: &[ConnectionRecord], out: &mut impl Write) -> std::io::Result<()> {
    let header = [
        "Client", "Server", "State", "Idle", "Speed", "Payload", "Packets",
    ];
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            [
                r.client.clone(),
                r.server.clone(),
                r.state.to_owned(),
                format::idle(Duration::from_secs_f64(r.idle)),
                format::speed(r.speed),
                r.payload_bytes.to_string(),
                r.packets.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 7], out: &mut dyn Write| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            // Numbers right-aligned, words left-aligned.
            if i >= 4 {
                s.push_str(&format!("{cell:>w$}"));
            } else {
                s.push_str(&format!("{cell:<w$}"));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(header, out)?;
    for row in &rows {
        line(row.each_ref().map(String::as_str), out)?;
    }
    let total_speed: u64 = records.iter().map(|r| r.speed).fold(0, u64::saturating_add);
    let total_payload: u64 = records
        .iter()
        .map(|r| r.payload_bytes)
        .fold(0, u64::saturating_add);
    let total_packets: u64 = records
        .iter()
        .map(|r| r.packets)
        .fold(0, u64::saturating_add);
    line(
        [
            "TOTAL",
            "",
            "",
            "",
            &format::speed(total_speed),
            &total_payload.to_string(),
            &total_packets.to_string(),
        ],
        out,
    )?;
    writeln!(out, "{} connections", records.len())
}
