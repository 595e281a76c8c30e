//! The IPFIX case's part of the report: what exporting every connection costs tcptrack's CPU.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::thousands;

/// What the target speaks of: 60,000 connections ending within a minute.
pub const TARGET_CONNECTIONS: f64 = 60_000.0;
/// At most this share of a core, in percent.
pub const TARGET_PERCENT: f64 = 1.0;

/// `-T` on a capture with and without `--ipfix` to a local UDP collector, in alternating
/// rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IpfixExport {
    /// Connections in the capture (one record each).
    pub connections: u64,
    /// CPU seconds of each round, without and with the export.
    pub without_cpu_s: Vec<f64>,
    pub with_cpu_s: Vec<f64>,
    /// The median of the rounds' differences (with less without).
    pub extra_cpu_s: f64,
    /// Records and messages the collector got in each round with the export (all rounds alike).
    pub records_received: Vec<u64>,
    pub messages_received: Vec<u64>,
}

impl IpfixExport {
    /// The export's CPU per connection, as a share of one core (percent) when 60,000
    /// connections end within a minute.
    #[must_use]
    pub fn percent_of_core(&self) -> f64 {
        let per_connection = self.extra_cpu_s / self.connections.max(1) as f64;
        per_connection * TARGET_CONNECTIONS / 60.0 * 100.0
    }

    /// Its target, with what was measured.
    #[must_use]
    pub fn target(&self) -> String {
        let p = self.percent_of_core();
        format!(
            "IPFIX export of 60,000 connections a minute under {TARGET_PERCENT}% of a core \
             (measured {p:.3}%: {})",
            super::met(p < TARGET_PERCENT)
        )
    }
}

impl fmt::Display for IpfixExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "## IPFIX export: `-T` on {} connections, `--output none`, with and without `--ipfix` to a UDP collector on 127.0.0.1 ({} alternating rounds)\n",
            thousands(self.connections),
            self.with_cpu_s.len()
        )?;
        writeln!(
            f,
            "| round | CPU s without | CPU s with | records received | messages |"
        )?;
        writeln!(f, "|---:|---:|---:|---:|---:|")?;
        for (i, (without, with)) in self.without_cpu_s.iter().zip(&self.with_cpu_s).enumerate() {
            writeln!(
                f,
                "| {} | {without:.3} | {with:.3} | {} | {} |",
                i + 1,
                thousands(self.records_received.get(i).copied().unwrap_or(0)),
                thousands(self.messages_received.get(i).copied().unwrap_or(0)),
            )?;
        }
        writeln!(
            f,
            "\nThe export's CPU (median of the rounds' differences): {:.3} s for {} records, \
             {:.2} µs a record; 60,000 connections ending within a minute: {:.3}% of a core.",
            self.extra_cpu_s,
            thousands(self.connections),
            self.extra_cpu_s / self.connections.max(1) as f64 * 1e6,
            self.percent_of_core()
        )
    }
}
