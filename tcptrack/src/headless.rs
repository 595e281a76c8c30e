//! Headless text as the monitor's sink: JSON lines, CSV or a plain table, at every refresh on a
//! live interface, or once for a capture read to its end.

use std::io::Write;

use crate::cli::OutputFormat;
use crate::error::Error;
use crate::monitor::{Flow, Monitor, Sink};
use crate::output::{self, ConnectionRecord};
use crate::source::SourceKind;

/// Writes the table as text into `out`.
pub struct Headless<W: Write> {
    format: OutputFormat,
    out: W,
    /// The kernel's losses (packets not counted, events lost) last reported on stderr.
    reported: (u64, u64),
}

impl<W: Write> Headless<W> {
    pub const fn new(format: OutputFormat, out: W) -> Self {
        Self {
            format,
            out,
            reported: (0, 0),
        }
    }

    fn write<'a>(
        &mut self,
        m: &Monitor,
        conns: impl IntoIterator<Item = &'a crate::table::Connection>,
    ) -> Result<(), Error> {
        let rate = m.table.config().rate;
        let records = conns
            .into_iter()
            .map(|c| ConnectionRecord::new(c, rate, m.now, m.wall_clock()));
        output::write(self.format, records, &mut self.out)?;
        Ok(())
    }
}

impl<W: Write> Sink for Headless<W> {
    fn refresh(&mut self, m: &Monitor) -> Result<(), Error> {
        if m.kind() != SourceKind::Live {
            // A capture is written once, at its end.
            return Ok(());
        }
        let mut conns: Vec<_> = m.table.connections().collect();
        conns.sort_by_key(|c| c.id());
        self.write(m, conns)?;
        // Losses are never silent: one line on stderr whenever they grow.
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
}
