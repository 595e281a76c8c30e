//! Headless outputs: the connections as JSON lines, CSV or a plain table.

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cli::OutputFormat;
use crate::flow::Timestamp;
use crate::format::{self, Units};
use crate::monitor::locals::Local;
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

    /// `t` as RFC 3339 UTC with nanoseconds; a time RFC 3339 cannot hold (a damaged capture's
    /// year 40000, say) as seconds since the Unix epoch instead, never a panic.
    pub(crate) fn rfc3339(self, t: Timestamp) -> String {
        use std::fmt::Write as _;
        let wall = if t >= self.origin {
            self.origin_wall.checked_add(t - self.origin)
        } else {
            self.origin_wall.checked_sub(self.origin - t)
        };
        let mut out = String::new();
        if let Some(wall) = wall {
            if write!(out, "{}", humantime::format_rfc3339_nanos(wall)).is_ok() {
                return out;
            }
        }
        out.clear();
        let since = wall
            .and_then(|w| w.duration_since(SystemTime::UNIX_EPOCH).ok())
            .unwrap_or(t);
        let _ = write!(out, "{}.{:09}", since.as_secs(), since.subsec_nanos());
        out
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
    /// Payload bytes per second sent by the client, and by the server (see [`Extra`]).
    pub client_speed: u64,
    pub server_speed: u64,
    pub rtt_us: Option<u32>,
    pub client_retransmits: Option<u32>,
    pub server_retransmits: Option<u32>,
    pub pid: Option<u32>,
    pub process: Option<String>,
    pub cgroup: Option<String>,
    /// When this was written, on the table's clock (the end of a capture; live, the refresh):
    /// the records of one refresh share it.
    pub time: String,
}

/// What is known of a connection beyond its counts and speeds: round-trip time, retransmissions
/// each way, and the local process. `None` (null in JSON, empty in CSV) where
/// unknown: the round trip before both legs were timed, retransmissions on the kernel path of
/// a connection that is not this host's, the process of one that is not this host's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    /// Smoothed round-trip time, microseconds: this host's kernel's for its own sockets, else
    /// from the packets (see `table::diag`).
    pub rtt_us: Option<u32>,
    /// Segments each side sent again.
    pub client_retransmits: Option<u32>,
    pub server_retransmits: Option<u32>,
    /// The process holding this host's end, as `ss -tp` names it, and its cgroup.
    pub pid: Option<u32>,
    pub process: Option<String>,
    pub cgroup: Option<String>,
}

impl Extra {
    /// What `c` tells, and `local`, its socket on this host when it has one.
    #[must_use]
    pub fn new(c: &Connection, local: Option<&Local>) -> Self {
        let mut retransmits = c.diag().retransmits().map_or([None, None], |r| r.map(Some));
        if let Some(l) = local {
            // The kernel's count of what this host's end sent again, where the packets said
            // nothing (the kernel path counts sums).
            let side = usize::from(l.addr != c.client());
            retransmits[side] = retransmits[side].or(Some(l.retransmits));
        }
        let owner = local.and_then(|l| l.owner.as_ref());
        Self {
            rtt_us: local
                .map(|l| l.rtt_us)
                .filter(|&r| r > 0)
                .or_else(|| c.diag().rtt_us()),
            client_retransmits: retransmits[0],
            server_retransmits: retransmits[1],
            pid: owner.map(|o| o.pid),
            process: owner.map(|o| o.command.clone()),
            cgroup: owner.and_then(|o| o.cgroup.clone()),
        }
    }
}

impl ConnectionRecord {
    #[must_use]
    pub fn new(
        c: &Connection,
        rate: RateConfig,
        now: Timestamp,
        clock: WallClock,
        local: Option<&Local>,
    ) -> Self {
        let (cs, ss, total) = (c.client_sent(), c.server_sent(), c.total());
        let extra = Extra::new(c, local);
        let [client_speed, server_speed] = c.speeds(rate, now);
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
            speed: client_speed.saturating_add(server_speed),
            idle: c.idle(now).as_secs_f64(),
            first_seen: clock.rfc3339(c.first_seen()),
            last_seen: clock.rfc3339(c.last_seen()),
            client_speed,
            server_speed,
            rtt_us: extra.rtt_us,
            client_retransmits: extra.client_retransmits,
            server_retransmits: extra.server_retransmits,
            pid: extra.pid,
            process: extra.process,
            cgroup: extra.cgroup,
            time: clock.rfc3339(now),
        }
    }
}

/// Writes `records` in `format`, one at a time (JSON and CSV hold no more than one in memory),
/// CSV with its header row.
///
/// # Errors
/// Writing to `out` failed.
pub fn write(
    format: OutputFormat,
    records: impl IntoIterator<Item = ConnectionRecord>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    write_part(format, records, true, Units::Bytes, out)
}

/// Writes `records` in `format`, as [`write`], but CSV with its header row only when `header`:
/// a stream of refreshes is one CSV file, its header written once. The table writes speeds in
/// `units`; JSON and CSV always in bytes per second.
///
/// # Errors
/// Writing to `out` failed.
pub fn write_part(
    format: OutputFormat,
    records: impl IntoIterator<Item = ConnectionRecord>,
    header: bool,
    units: Units,
    out: &mut impl Write,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => {
            for r in records {
                serde_json::to_writer(&mut *out, &r)?;
                out.write_all(b"\n")?;
            }
        }
        OutputFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut *out);
            if header {
                w.write_record(CSV_HEADER).map_err(csv_io)?;
            }
            for r in records {
                w.serialize(&r).map_err(csv_io)?;
            }
            w.flush()?;
        }
        OutputFormat::Table => {
            write_table(&records.into_iter().collect::<Vec<_>>(), units, out)?;
        }
        OutputFormat::None => return Ok(()),
    }
    out.flush()
}

/// A CSV writer's error as the I/O error it is, when it is one (a closed pipe stays a closed
/// pipe).
fn csv_io(e: csv::Error) -> std::io::Error {
    if !e.is_io_error() {
        return std::io::Error::other(e);
    }
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

/// The CSV header, the record's field names (written by hand, so that it is there with no rows).
const CSV_HEADER: [&str; 25] = [
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
    "client_speed",
    "server_speed",
    "rtt_us",
    "client_retransmits",
    "server_retransmits",
    "pid",
    "process",
    "cgroup",
    "time",
];

fn write_table(
    records: &[ConnectionRecord],
    units: Units,
    out: &mut impl Write,
) -> std::io::Result<()> {
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
                format::rate(r.speed, units),
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
            &format::rate(total_speed, units),
            &total_payload.to_string(),
            &total_packets.to_string(),
        ],
        out,
    )?;
    writeln!(out, "{} connections", records.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ConnectionRecord {
        ConnectionRecord {
            client: "198.18.0.1:40000".into(),
            server: "[fd00::2]:80".into(),
            state: "ESTABLISHED",
            payload_bytes: 3,
            bytes: 200,
            packets: 4,
            client_payload_bytes: 1,
            server_payload_bytes: 2,
            client_bytes: 100,
            server_bytes: 100,
            client_packets: 2,
            server_packets: 2,
            speed: 1536,
            idle: 61.5,
            first_seen: "2026-01-01T00:00:00.000000000Z".into(),
            last_seen: "2026-01-01T00:01:00.000000000Z".into(),
            client_speed: 512,
            server_speed: 1024,
            rtt_us: Some(1234),
            client_retransmits: Some(0),
            server_retransmits: None,
            pid: None,
            process: None,
            cgroup: None,
            time: "2026-01-01T00:02:01.500000000Z".into(),
        }
    }

    fn written(format: OutputFormat, records: Vec<ConnectionRecord>) -> String {
        let mut out = Vec::new();
        write(format, records, &mut out).expect("write to memory");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn csv_header_names_the_record_fields() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(record()).expect("serialize");
        let derived = String::from_utf8(w.into_inner().expect("flush")).expect("UTF-8");
        let text = written(OutputFormat::Csv, vec![record()]);
        assert_eq!(text, derived);
        assert_eq!(
            written(OutputFormat::Csv, vec![]),
            derived.lines().next().expect("header").to_owned() + "\n"
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let text = written(OutputFormat::Json, vec![record(), record()]);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
        assert_eq!(v["server"], "[fd00::2]:80");
        assert_eq!(v["state"], "ESTABLISHED");
        assert_eq!(v["payload_bytes"], 3);
    }

    #[test]
    fn table_has_header_rows_and_total() {
        let text = written(OutputFormat::Table, vec![record(), record()]);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("Client"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "198.18.0.1:40000",
                "[fd00::2]:80",
                "ESTABLISHED",
                "1m",
                "1.50",
                "KB/s",
                "3",
                "4"
            ]
        );
        assert!(
            lines[3].starts_with("TOTAL") && lines[3].contains("3.00 KB/s"),
            "{text}"
        );
        assert_eq!(lines[4], "2 connections");
    }

    #[test]
    fn table_in_bits_per_second() {
        let mut out = Vec::new();
        write_part(
            OutputFormat::Table,
            vec![record()],
            true,
            Units::Bits,
            &mut out,
        )
        .expect("written");
        let text = String::from_utf8(out).expect("UTF-8");
        // 1536 B/s are 12288 bit/s.
        assert!(
            text.lines().nth(1).is_some_and(|l| l.contains("12.2 kb/s")),
            "{text}"
        );
    }

    #[test]
    fn times_beyond_rfc3339_are_seconds_not_panics() {
        let far = Duration::from_secs(400_000_000_000);
        assert_eq!(WallClock::CAPTURE.rfc3339(far), "400000000000.000000000");
        assert_eq!(
            WallClock::CAPTURE.rfc3339(Duration::MAX),
            format!("{}.999999999", u64::MAX)
        );
    }

    #[test]
    fn capture_times_are_rfc3339_in_utc() {
        let c = WallClock::CAPTURE;
        assert_eq!(
            c.rfc3339(Duration::new(1_700_000_000, 5)),
            "2023-11-14T22:13:20.000000005Z"
        );
        let live = WallClock::new(
            Duration::from_secs(10),
            SystemTime::UNIX_EPOCH + Duration::from_secs(100),
        );
        assert_eq!(
            live.rfc3339(Duration::from_secs(4)),
            "1970-01-01T00:01:34.000000000Z"
        );
    }
}
