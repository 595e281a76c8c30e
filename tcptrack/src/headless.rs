//! Headless text as the monitor's sink: JSON lines, CSV or a plain table, at every refresh on a
//! live interface, or once for a capture read to its end.

use std::io::Write;

use crate::cli::OutputFormat;
use crate::error::Error;
use crate::format::Units;
use crate::monitor::{Flow, Monitor, Sink};
use crate::output::{self, ConnectionRecord};
use crate::source::SourceKind;

/// Writes the table as text into `out`.
pub struct Headless<W: Write> {
    format: OutputFormat,
    out: W,
    /// How the table writes speeds.
    pub units: Units,
    /// The CSV header is written (once: the refreshes of a live capture make one CSV file).
    header_written: bool,
    /// The kernel's losses (packets not counted, events lost) last reported on stderr.
    reported: (u64, u64),
    /// Packets dropped before the table (libpcap's drops, a full channel) last reported.
    reported_dropped: u64,
}

impl<W: Write> Headless<W> {
    pub const fn new(format: OutputFormat, out: W) -> Self {
        Self {
            format,
            out,
            units: Units::Bytes,
            header_written: false,
            reported: (0, 0),
            reported_dropped: 0,
        }
    }

    fn write<'a>(
        &mut self,
        m: &Monitor,
        conns: impl IntoIterator<Item = &'a crate::table::Connection>,
    ) -> Result<(), Error> {
        let rate = m.table.config().rate;
        if self.format == OutputFormat::Json {
            // Straight from the table, as the records would write it.
            // Lines go out some hundreds at a time, in one write each.
            const CHUNK: usize = 256 * 1024;
            let mut lines = output::JsonLines::new(rate, m.now, m.wall_clock());
            let mut chunk = Vec::with_capacity(CHUNK + 4096);
            for c in conns {
                lines.write(c, m.locals.of(c), &mut chunk);
                chunk.push(b'\n');
                if chunk.len() >= CHUNK {
                    self.out.write_all(&chunk)?;
                    chunk.clear();
                }
            }
            self.out.write_all(&chunk)?;
            self.out.flush()?;
            return Ok(());
        }
        let records = conns
            .into_iter()
            .map(|c| ConnectionRecord::new(c, rate, m.now, m.wall_clock(), m.locals.of(c)));
        output::write_part(
            self.format,
            records,
            !self.header_written,
            self.units,
            &mut self.out,
        )?;
        self.header_written = true;
        Ok(())
    }
}

impl<W: Write> Sink for Headless<W> {
    fn refresh(&mut self, m: &Monitor) -> Result<(), Error> {
        if m.kind() != SourceKind::Live {
            // A capture is written once, at its end.
            return Ok(());
        }
        if self.format != OutputFormat::None {
            // First seen first, as the table keeps them (walked, not sorted).
            self.write(m, m.table.all_by_first_seen())?;
        }
        // Losses are never silent: one line on stderr whenever they grow.
        if m.dropped != self.reported_dropped {
            self.reported_dropped = m.dropped;
            eprintln!(
                "tcptrack: packets dropped so far: {} (by the capture, or on the way to the table)",
                m.dropped
            );
        }
        if let Some(k) = m.kernel {
            if (k.uncounted, k.events_lost) != self.reported {
                self.reported = (k.uncounted, k.events_lost);
                eprintln!(
                    "tcptrack: kernel losses so far: {} packets not counted (the flow map was full: see --max-connections), {} control events",
                    k.uncounted, k.events_lost
                );
            }
        }
        Ok(())
    }

    fn ended(&mut self, m: &Monitor) -> Result<Flow, Error> {
        if m.kind() != SourceKind::Live {
            self.write(m, m.table.all_by_first_seen())?;
        }
        Ok(Flow::Stop)
    }

    /// Live, the interval a signal ends is written as every other one.
    fn finish(&mut self, m: &Monitor) -> Result<(), Error> {
        self.refresh(m)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::flow::{FlowUpdate, TcpFlags};
    use crate::source::{SourceLabel, SourceMsg};
    use crate::table::{ConnectionTable, TableConfig};

    /// A handshake from `client` to 198.18.0.2:80 at `ms` milliseconds.
    fn handshake(client: &str, ms: u64) -> SourceMsg {
        let (s, syn, ack) = ("198.18.0.2:80", TcpFlags::SYN, TcpFlags::ACK);
        SourceMsg::Batch(vec![
            FlowUpdate::test_packet(client, s, ms, syn, 0, 0, 0),
            FlowUpdate::test_packet(s, client, ms + 1, syn | ack, 0, 1, 0),
            FlowUpdate::test_packet(client, s, ms + 2, ack, 1, 1, 10),
        ])
    }

    #[test]
    fn live_csv_is_one_file_its_header_once_every_row_with_its_time() {
        let mut m = Monitor::new(
            ConnectionTable::new(TableConfig::default()),
            SourceLabel::Live("test".into()),
            SourceKind::Live,
        );
        let mut out = Vec::new();
        let mut sink = Headless::new(OutputFormat::Csv, &mut out);
        // No connection yet: the header alone, at once.
        sink.refresh(&m).expect("refresh");
        m.handle(handshake("198.18.0.1:40000", 100)).expect("batch");
        m.advance_to(Duration::from_secs(1), false);
        sink.refresh(&m).expect("refresh");
        m.handle(handshake("198.18.0.1:40001", 1_500))
            .expect("batch");
        m.advance_to(Duration::from_secs(2), false);
        sink.refresh(&m).expect("refresh");
        let text = String::from_utf8(out).expect("UTF-8");
        assert_eq!(text.matches("client,server,").count(), 1, "{text}");
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let header = rd.headers().expect("header").clone();
        assert_eq!(header.iter().next_back(), Some("time"), "{text}");
        let rows: Vec<csv::StringRecord> = rd.records().collect::<Result<_, _>>().expect("rows");
        let cells = |r: &csv::StringRecord| (r[0].to_owned(), r[r.len() - 1].to_owned());
        let (a, b) = ("198.18.0.1:40000", "198.18.0.1:40001");
        let at = |s| format!("1970-01-01T00:00:0{s}.000000000Z");
        assert_eq!(
            rows.iter().map(cells).collect::<Vec<_>>(),
            [(a.into(), at(1)), (a.into(), at(2)), (b.into(), at(2))],
            "{text}"
        );
    }
}
