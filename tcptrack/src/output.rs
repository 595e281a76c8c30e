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

    /// How far `wall` is from what this mapping makes of `t` (a step of the wall clock since
    /// the mapping was made, or its slow drift).
    #[must_use]
    pub fn off_by(self, t: Timestamp, wall: SystemTime) -> Duration {
        let mapped = if t >= self.origin {
            self.origin_wall.checked_add(t - self.origin)
        } else {
            self.origin_wall.checked_sub(self.origin - t)
        };
        mapped.map_or(Duration::MAX, |m| {
            wall.duration_since(m)
                .or_else(|_| m.duration_since(wall))
                .unwrap_or(Duration::MAX)
        })
    }

    /// `t` as RFC 3339 UTC with nanoseconds; a time RFC 3339 cannot hold (a damaged capture's
    /// year 40000, say) as seconds since the Unix epoch instead, never a panic.
    pub(crate) fn rfc3339(self, t: Timestamp) -> String {
        let mut out = String::with_capacity(30);
        self.rfc3339_into(t, &mut out);
        out
    }

    /// [`WallClock::rfc3339`], appended to `out`.
    pub(crate) fn rfc3339_into(self, t: Timestamp, out: &mut String) {
        let since = self.since_epoch(t);
        if let Some(text) = since.and_then(|d| rfc3339_utc(d.as_secs(), d.subsec_nanos())) {
            // Digits and ASCII punctuation only: always UTF-8.
            out.push_str(std::str::from_utf8(&text).unwrap_or_default());
            return;
        }
        self.fallback_into(t, since, out);
    }

    /// `t` in milliseconds since the Unix epoch (0 before it).
    pub(crate) fn unix_ms(self, t: Timestamp) -> u64 {
        self.since_epoch(t)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// `t` as time since the Unix epoch (`None` before it, or past what `SystemTime` holds).
    fn since_epoch(self, t: Timestamp) -> Option<Duration> {
        let wall = if t >= self.origin {
            self.origin_wall.checked_add(t - self.origin)
        } else {
            self.origin_wall.checked_sub(self.origin - t)
        };
        wall.and_then(|w| w.duration_since(SystemTime::UNIX_EPOCH).ok())
    }

    /// What RFC 3339 cannot hold: seconds since the Unix epoch (`since`), else on the table's
    /// clock.
    fn fallback_into(self, t: Timestamp, since: Option<Duration>, out: &mut String) {
        use std::fmt::Write as _;
        let since = since.unwrap_or(t);
        let _ = write!(out, "{}.{:09}", since.as_secs(), since.subsec_nanos());
    }
}

/// RFC 3339 times, as [`WallClock::rfc3339`] writes them, keeping the date and time of day of
/// the last second written: a capture's connections start and end in far fewer seconds than
/// there are connections.
struct Dates {
    clock: WallClock,
    /// The last second written (since the Unix epoch), and its text up to its fraction
    /// (`2023-11-14T22:13:20.`).
    second: Option<(u64, [u8; 20])>,
    /// The text of a time RFC 3339 cannot hold.
    fallback: String,
}

impl Dates {
    const fn new(clock: WallClock) -> Self {
        Self {
            clock,
            second: None,
            fallback: String::new(),
        }
    }

    /// `t`, written into `buf` (RFC 3339 takes 30 bytes): the text, in `buf` or (a time RFC
    /// 3339 cannot hold) in `fallback`.
    fn write<'b>(&mut self, t: Timestamp, buf: &'b mut [u8; 30]) -> &'b [u8] {
        let since = self.clock.since_epoch(t);
        let Some(since) = since.filter(|d| d.as_secs() < RFC3339_END) else {
            self.fallback.clear();
            self.clock.fallback_into(t, since, &mut self.fallback);
            let n = self.fallback.len().min(30);
            buf[..n].copy_from_slice(&self.fallback.as_bytes()[..n]);
            return &buf[..n];
        };
        let secs = since.as_secs();
        let prefix = match self.second {
            Some((s, prefix)) if s == secs => prefix,
            _ => {
                let mut prefix = [0; 20];
                if let Some(text) = rfc3339_utc(secs, 0) {
                    prefix.copy_from_slice(&text[..20]);
                }
                self.second = Some((secs, prefix));
                prefix
            }
        };
        buf[..20].copy_from_slice(&prefix);
        digits::<9>(buf, 20, u64::from(since.subsec_nanos()));
        buf[29] = b'Z';
        buf
    }
}

/// Writes `value` as `N` decimal digits at `at` of an RFC 3339 text.
fn digits<const N: usize>(buf: &mut [u8; 30], at: usize, mut value: u64) {
    for i in (at..at + N).rev() {
        // A digit: below 10.
        buf[i] = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
    }
}

/// The first second (since the Unix epoch) of the year 10000, which RFC 3339 cannot write.
const RFC3339_END: u64 = 253_402_300_800;

/// `secs` and `nanos` since the Unix epoch as RFC 3339 UTC with nanoseconds
/// (`2023-11-14T22:13:20.000000005Z`), as `humantime::format_rfc3339_nanos` writes them (a test
/// holds them equal) without going through `fmt`; `None` from the year 10000 on.
fn rfc3339_utc(secs: u64, nanos: u32) -> Option<[u8; 30]> {
    if secs >= RFC3339_END || nanos >= 1_000_000_000 {
        return None;
    }
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, years from March on).
    let z = days + 719_468;
    let (era, of_era) = (z / 146_097, z % 146_097);
    let year_of_era = (of_era - of_era / 1_460 + of_era / 36_524 - of_era / 146_096) / 365;
    let day_of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    let mut buf = *b"0000-00-00T00:00:00.000000000Z";
    digits::<4>(&mut buf, 0, year);
    digits::<2>(&mut buf, 5, month);
    digits::<2>(&mut buf, 8, day);
    digits::<2>(&mut buf, 11, of_day / 3_600);
    digits::<2>(&mut buf, 14, of_day / 60 % 60);
    digits::<2>(&mut buf, 17, of_day % 60);
    digits::<9>(&mut buf, 20, u64::from(nanos));
    Some(buf)
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
            retransmits[side] = retransmits[side].or(l.retransmits);
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

/// Appends `key` (a whole `,"name":`, or `{"name":` for the first) and `value` as JSON,
/// exactly as serde_json writes them (a test holds them equal), with no `fmt` and no allocation.
mod json {
    /// `,"name":`, as bytes.
    macro_rules! key {
        ($name:literal) => {
            concat!(",\"", $name, "\":").as_bytes()
        };
    }
    pub(super) use key;

    #[inline(always)]
    pub(super) fn str(buf: &mut Vec<u8>, key: &[u8], value: &[u8]) {
        buf.extend_from_slice(key);
        // serde_json escapes control characters, quotes and backslashes, nothing else. (A fold
        // with no early exit: the compiler checks many bytes at a time.)
        let escapes = value
            .iter()
            .fold(false, |e, &b| e | (b < 0x20) | (b == b'"') | (b == b'\\'));
        if escapes {
            // Writing to memory does not fail; the text is UTF-8 (it comes from a `str`), so
            // nothing is replaced.
            let _ = serde_json::to_writer(&mut *buf, &String::from_utf8_lossy(value));
        } else {
            buf.push(b'"');
            buf.extend_from_slice(value);
            buf.push(b'"');
        }
    }

    #[inline(always)]
    pub(super) fn opt_str(buf: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
        match value {
            Some(v) => str(buf, key, v.as_bytes()),
            None => null(buf, key),
        }
    }

    #[inline(always)]
    pub(super) fn num(buf: &mut Vec<u8>, key: &[u8], value: impl itoa::Integer) {
        buf.extend_from_slice(key);
        buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    #[inline(always)]
    pub(super) fn opt_num(buf: &mut Vec<u8>, key: &[u8], value: Option<impl itoa::Integer>) {
        match value {
            Some(v) => num(buf, key, v),
            None => null(buf, key),
        }
    }

    /// As serde_json writes an `f64`: its shortest form (zmij's, which serde_json calls), and
    /// `null` for what JSON cannot hold.
    #[inline(always)]
    pub(super) fn float(buf: &mut Vec<u8>, key: &[u8], value: f64) {
        if !value.is_finite() {
            return null(buf, key);
        }
        buf.extend_from_slice(key);
        buf.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    }

    #[inline(always)]
    pub(super) fn null(buf: &mut Vec<u8>, key: &[u8]) {
        buf.extend_from_slice(key);
        buf.extend_from_slice(b"null");
    }
}

/// The fields of one JSON line, borrowed: from a [`ConnectionRecord`], or straight from a
/// connection ([`JsonLines`]), in the record's order.
struct JsonFields<'a> {
    client: &'a str,
    server: &'a str,
    figures: Figures,
    /// RFC 3339 text.
    first_seen: &'a [u8],
    last_seen: &'a [u8],
    rtt_us: Option<u32>,
    retransmits: [Option<u32>; 2],
    pid: Option<u32>,
    process: Option<&'a str>,
    cgroup: Option<&'a str>,
    time: &'a [u8],
}

/// A connection's state, counts, speeds and idle time at a moment, as every output writes them.
#[derive(Clone, Copy, Debug)]
struct Figures {
    state: &'static str,
    /// Payload bytes, bytes, packets: both ways, the client's, the server's.
    totals: [u64; 3],
    client_sent: [u64; 3],
    server_sent: [u64; 3],
    /// Payload bytes per second sent by the client, by the server.
    speeds: [u64; 2],
    idle: f64,
}

impl Figures {
    /// Those of `c` at `now`.
    fn of(c: &Connection, rate: RateConfig, now: Timestamp) -> Self {
        let three = |x: crate::table::Counters| [x.payload_bytes, x.wire_bytes, x.packets];
        Self {
            state: c.state().name(),
            totals: three(c.total()),
            client_sent: three(c.client_sent()),
            server_sent: three(c.server_sent()),
            speeds: c.speeds(rate, now),
            idle: c.idle(now).as_secs_f64(),
        }
    }

    /// The Speed column's: both ways.
    const fn speed(&self) -> u64 {
        self.speeds[0].saturating_add(self.speeds[1])
    }
}

impl JsonFields<'_> {
    fn write(&self, buf: &mut Vec<u8>) {
        use json::{float, key, num, opt_num, opt_str, str};
        let f = &self.figures;
        str(buf, b"{\"client\":", self.client.as_bytes());
        str(buf, key!("server"), self.server.as_bytes());
        str(buf, key!("state"), f.state.as_bytes());
        num(buf, key!("payload_bytes"), f.totals[0]);
        num(buf, key!("bytes"), f.totals[1]);
        num(buf, key!("packets"), f.totals[2]);
        num(buf, key!("client_payload_bytes"), f.client_sent[0]);
        num(buf, key!("server_payload_bytes"), f.server_sent[0]);
        num(buf, key!("client_bytes"), f.client_sent[1]);
        num(buf, key!("server_bytes"), f.server_sent[1]);
        num(buf, key!("client_packets"), f.client_sent[2]);
        num(buf, key!("server_packets"), f.server_sent[2]);
        num(buf, key!("speed"), f.speed());
        float(buf, key!("idle"), f.idle);
        str(buf, key!("first_seen"), self.first_seen);
        str(buf, key!("last_seen"), self.last_seen);
        num(buf, key!("client_speed"), f.speeds[0]);
        num(buf, key!("server_speed"), f.speeds[1]);
        opt_num(buf, key!("rtt_us"), self.rtt_us);
        opt_num(buf, key!("client_retransmits"), self.retransmits[0]);
        opt_num(buf, key!("server_retransmits"), self.retransmits[1]);
        opt_num(buf, key!("pid"), self.pid);
        opt_str(buf, key!("process"), self.process);
        opt_str(buf, key!("cgroup"), self.cgroup);
        str(buf, key!("time"), self.time);
        buf.push(b'}');
    }
}

/// Writes connections as JSON lines straight from the table: the text
/// [`ConnectionRecord::write_json`] writes for the record [`ConnectionRecord::new`] makes (a test
/// holds them equal), with no allocation per connection (a capture's end writes 100,000).
pub struct JsonLines {
    rate: RateConfig,
    now: Timestamp,
    /// For first-seen times, and last-seen times: each kept apart, they stay within few seconds.
    dates: [Dates; 2],
    time: String,
    client: String,
    server: String,
    first_seen: [u8; 30],
    last_seen: [u8; 30],
}

impl JsonLines {
    /// For the connections of the table as it is at `now`.
    #[must_use]
    pub fn new(rate: RateConfig, now: Timestamp, clock: WallClock) -> Self {
        Self {
            rate,
            now,
            dates: [Dates::new(clock), Dates::new(clock)],
            time: clock.rfc3339(now),
            client: String::new(),
            server: String::new(),
            first_seen: [0; 30],
            last_seen: [0; 30],
        }
    }

    /// Appends `c` (with `local`, its socket on this host) to `buf`, as one object (no
    /// newline).
    pub fn write(&mut self, c: &Connection, local: Option<&Local>, buf: &mut Vec<u8>) {
        let extra = Extra::new(c, local);
        for (text, end) in [
            (&mut self.client, c.client()),
            (&mut self.server, c.server()),
        ] {
            text.clear();
            format::endpoint_into(end, text);
        }
        let first_seen = self.dates[0].write(c.first_seen(), &mut self.first_seen);
        let last_seen = self.dates[1].write(c.last_seen(), &mut self.last_seen);
        JsonFields {
            client: &self.client,
            server: &self.server,
            figures: Figures::of(c, self.rate, self.now),
            first_seen,
            last_seen,
            rtt_us: extra.rtt_us,
            retransmits: [extra.client_retransmits, extra.server_retransmits],
            pid: extra.pid,
            process: extra.process.as_deref(),
            cgroup: extra.cgroup.as_deref(),
            time: self.time.as_bytes(),
        }
        .write(buf);
    }
}

impl ConnectionRecord {
    /// Appends this record to `buf` as one JSON object (no newline): what serde_json writes for
    /// it, several times faster (a capture of 100,000 connections spent a third of its time in
    /// serde_json).
    pub fn write_json(&self, buf: &mut Vec<u8>) {
        JsonFields {
            client: &self.client,
            server: &self.server,
            figures: Figures {
                state: self.state,
                totals: [self.payload_bytes, self.bytes, self.packets],
                client_sent: [
                    self.client_payload_bytes,
                    self.client_bytes,
                    self.client_packets,
                ],
                server_sent: [
                    self.server_payload_bytes,
                    self.server_bytes,
                    self.server_packets,
                ],
                speeds: [self.client_speed, self.server_speed],
                idle: self.idle,
            },
            first_seen: self.first_seen.as_bytes(),
            last_seen: self.last_seen.as_bytes(),
            rtt_us: self.rtt_us,
            retransmits: [self.client_retransmits, self.server_retransmits],
            pid: self.pid,
            process: self.process.as_deref(),
            cgroup: self.cgroup.as_deref(),
            time: self.time.as_bytes(),
        }
        .write(buf);
    }

    #[must_use]
    pub fn new(
        c: &Connection,
        rate: RateConfig,
        now: Timestamp,
        clock: WallClock,
        local: Option<&Local>,
    ) -> Self {
        let extra = Extra::new(c, local);
        let f = Figures::of(c, rate, now);
        Self {
            client: format::endpoint(c.client()),
            server: format::endpoint(c.server()),
            state: f.state,
            payload_bytes: f.totals[0],
            bytes: f.totals[1],
            packets: f.totals[2],
            client_payload_bytes: f.client_sent[0],
            server_payload_bytes: f.server_sent[0],
            client_bytes: f.client_sent[1],
            server_bytes: f.server_sent[1],
            client_packets: f.client_sent[2],
            server_packets: f.server_sent[2],
            speed: f.speed(),
            idle: f.idle,
            first_seen: clock.rfc3339(c.first_seen()),
            last_seen: clock.rfc3339(c.last_seen()),
            client_speed: f.speeds[0],
            server_speed: f.speeds[1],
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
            let mut line = Vec::with_capacity(640);
            for r in records {
                line.clear();
                r.write_json(&mut line);
                line.push(b'\n');
                out.write_all(&line)?;
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
    fn rfc3339_is_written_as_humantime_writes_it() {
        let mut rng = crate::testing::XorShift(0x2545_f491_4f6c_dd1d);
        for i in 0..100_000u64 {
            let x = rng.next();
            // Every day boundary near the epoch and leap years, then any second to year 9999.
            let secs = match i {
                0..1_000 => i * 86_400 + (i % 3) * 86_399,
                1_000..2_000 => 951_782_400 + (i - 1_000) * 43_200,
                _ => x % 253_402_300_800,
            };
            let nanos = u32::try_from(x % 1_000_000_000).expect("below 10^9");
            let wall = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
            let ours = rfc3339_utc(secs, nanos).expect("before year 10000");
            assert_eq!(
                std::str::from_utf8(&ours).expect("ASCII"),
                humantime::format_rfc3339_nanos(wall).to_string(),
                "{secs}.{nanos}"
            );
        }
        assert_eq!(
            rfc3339_utc(253_402_300_799, 999_999_999)
                .as_ref()
                .map(|b| &b[..]),
            Some(&b"9999-12-31T23:59:59.999999999Z"[..])
        );
        assert_eq!(rfc3339_utc(253_402_300_800, 0), None);
    }

    #[test]
    fn dates_kept_by_second_are_written_as_the_clock_writes_them() {
        let mut rng = crate::testing::XorShift(0x9e37_79b9_7f4a_7c15);
        // A capture's clock and a live one (whose origin maps before the epoch too), each with
        // runs in one second, jumps between seconds, times past year 9999 and before 1970.
        let live = WallClock::new(
            Duration::from_secs(100),
            SystemTime::UNIX_EPOCH + Duration::from_secs(50),
        );
        for clock in [WallClock::CAPTURE, live] {
            let mut dates = Dates::new(clock);
            let mut buf = [0; 30];
            let mut t = Duration::new(1_700_000_000, 0);
            for i in 0..50_000u64 {
                let x = rng.next();
                t = match x % 100 {
                    0..70 => t + Duration::from_nanos(x % 50_000),
                    70..95 => Duration::new(
                        1_700_000_000 + x % 10,
                        u32::try_from(x % 1_000_000_000).expect("below 10^9"),
                    ),
                    95..98 => Duration::new(253_402_300_790 + x % 20, 7),
                    _ => Duration::new(
                        x % 120,
                        u32::try_from(i % 1_000_000_000).expect("below 10^9"),
                    ),
                };
                let ours = dates.write(t, &mut buf).to_vec();
                assert_eq!(
                    String::from_utf8(ours).expect("ASCII"),
                    clock.rfc3339(t),
                    "{t:?}"
                );
            }
        }
    }

    /// Records with every kind of field: IPv4 and IPv6, nulls and values, names that need
    /// escaping, idle times that are and are not round.
    fn varied_records() -> Vec<ConnectionRecord> {
        let mut out = Vec::new();
        for (i, process) in [
            None,
            Some("nginx"),
            Some("a \"quoted\" name\\ with\ttab\u{1}"),
            Some("ünïcødé ✓"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = record();
            r.process = process.map(str::to_owned);
            r.cgroup = process.map(|p| format!("/system.slice/{p}.service"));
            r.pid = process.map(|_| 4_294_967_295);
            r.rtt_us = (i % 2 == 1).then_some(12_345);
            r.client_retransmits = (i > 1).then_some(0);
            r.server_retransmits = (i > 2).then_some(u32::MAX);
            r.idle = [0.0, 61.5, 1e-9, 123_456_789.123_456][i];
            r.payload_bytes = u64::MAX >> i;
            if i == 3 {
                r.client = "198.18.255.255:65535".into();
            }
            out.push(r);
        }
        out
    }

    #[test]
    fn json_is_what_serde_json_writes() {
        let mut records = varied_records();
        // Floats serde_json writes in its own ways: null for what JSON cannot hold, and the
        // shortest forms of the very small, very large and negative zero.
        for idle in [f64::NAN, f64::INFINITY, -0.0, 5e-324, 1e16, 1e-7, f64::MAX] {
            let mut r = record();
            r.idle = idle;
            records.push(r);
        }
        for r in records {
            let mut ours = Vec::new();
            r.write_json(&mut ours);
            let theirs = serde_json::to_vec(&r).expect("serialize");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }

    #[test]
    fn json_lines_from_the_table_are_the_records_lines() {
        use crate::flow::{FlowUpdate, TcpFlags};
        use crate::source::process::Owner;
        use crate::table::{ConnectionTable, TableConfig};
        let (syn, ack, fin) = (TcpFlags::SYN, TcpFlags::ACK, TcpFlags::FIN);
        let mut t = ConnectionTable::new(TableConfig::default());
        for (i, (client, server)) in [
            ("198.18.0.1:40000", "198.18.0.2:80"),
            ("[fd00::1]:40001", "[fd00::2]:443"),
            ("198.18.255.255:65535", "198.18.0.2:1"),
        ]
        .into_iter()
        .enumerate()
        {
            let ms = 1_700_000_000_000 + 10 * i as u64;
            for u in [
                FlowUpdate::test_packet(client, server, ms, syn, 0, 0, 0),
                FlowUpdate::test_packet(server, client, ms + 1, syn | ack, 0, 1, 0),
                FlowUpdate::test_packet(client, server, ms + 2, ack, 1, 1, 100),
                FlowUpdate::test_packet(server, client, ms + 3, ack, 1, 101, 7),
            ] {
                t.apply(&u);
            }
            if i == 2 {
                t.apply(&FlowUpdate::test_packet(
                    client,
                    server,
                    ms + 4,
                    fin | ack,
                    101,
                    8,
                    0,
                ));
            }
        }
        let owner = Local {
            addr: "198.18.0.1:40000".parse().expect("address"),
            rtt_us: 1234,
            retransmits: Some(3),
            inode: 7,
            owner: Some(Owner {
                pid: 99,
                command: "a \"name\"\twith\\ escapes".into(),
                cgroup: Some("/system.slice/x.service".into()),
            }),
        };
        let (rate, clock) = (t.config().rate, WallClock::CAPTURE);
        let now = Duration::from_millis(1_700_000_003_500);
        let mut lines = JsonLines::new(rate, now, clock);
        let mut n = 0;
        for c in t.connections() {
            for local in [None, Some(&owner)] {
                let mut ours = Vec::new();
                lines.write(c, local, &mut ours);
                let mut theirs = Vec::new();
                ConnectionRecord::new(c, rate, now, clock, local).write_json(&mut theirs);
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs)
                );
                n += 1;
            }
        }
        assert_eq!(n, 6);
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

    #[test]
    fn a_mapping_says_how_far_the_wall_clock_moved_from_it() {
        let epoch = SystemTime::UNIX_EPOCH;
        let live = WallClock::new(Duration::from_secs(10), epoch + Duration::from_secs(100));
        let s = Duration::from_secs;
        assert_eq!(live.off_by(s(15), epoch + s(105)), s(0));
        // Stepped back an hour, forward a second; before the mapping's origin too.
        assert_eq!(
            live.off_by(s(15), epoch + s(105) - s(3600)).min(s(4000)),
            s(3600)
        );
        assert_eq!(live.off_by(s(15), epoch + s(106)), s(1));
        assert_eq!(live.off_by(s(4), epoch + s(94)), s(0));
        // A time the mapping cannot place is as far as can be.
        let origin = WallClock::new(s(0), epoch);
        assert_eq!(origin.off_by(Duration::MAX, epoch), Duration::MAX);
    }
}
