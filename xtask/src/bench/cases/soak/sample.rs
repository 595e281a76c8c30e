//! What the soak reads while it runs: tcptrack's metrics, scraped as Prometheus would, and its
//! process's figures from /proc.

use std::collections::HashMap;
use std::fs;

use anyhow::{bail, Context as _, Result};

use super::super::scale::scrape::get;
pub use super::super::scale::scrape::METRICS;

/// One scrape: each series' value summed over its labels (`tcptrack_connections` over its
/// states, `tcptrack_connections_ended_total` over how they ended).
#[derive(Clone, Debug, Default)]
pub struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// One GET of `/metrics` (from a thread in host a's network namespace).
    pub fn get() -> Result<Self> {
        Self::parse(&get()?)
    }

    /// The series of an OpenMetrics `body`.
    fn parse(body: &str) -> Result<Self> {
        let mut sums = HashMap::new();
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line
                .rsplit_once(' ')
                .with_context(|| format!("a line without a value: {line}"))?;
            let name = series.split_once('{').map_or(series, |(n, _)| n);
            let value: f64 = value
                .parse()
                .with_context(|| format!("the value of {line}"))?;
            *sums.entry(name.to_owned()).or_insert(0.0) += value;
        }
        Ok(Self(sums))
    }

    /// The value of series `name` (0 when it has none yet).
    pub fn value(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// A counter or gauge of whole things.
    pub fn count(&self, name: &str) -> u64 {
        // Counts are whole numbers well within f64's exact integers.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a whole, non-negative count"
        )]
        let n = self.value(name).round().max(0.0) as u64;
        n
    }

    /// Connections listed now.
    pub fn listed(&self) -> u64 {
        self.count("tcptrack_connections")
    }

    /// Connections listed since the start.
    pub fn opened(&self) -> u64 {
        self.count("tcptrack_connections_opened_total")
    }

    /// Connections forgotten since the start.
    pub fn ended(&self) -> u64 {
        self.count("tcptrack_connections_ended_total")
    }

    /// What was lost or left out, by series, where not 0.
    pub fn losses(&self) -> Vec<(String, u64)> {
        LOSSES
            .iter()
            .map(|&name| (name.to_owned(), self.count(name)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// The series that count what tcptrack lost or left out.
const LOSSES: [&str; 4] = [
    "tcptrack_kernel_events_lost_total",
    "tcptrack_kernel_packets_uncounted_total",
    "tcptrack_dropped_packets_total",
    "tcptrack_flow_log_records_lost_total",
];

/// A process's figures, read from /proc.
#[derive(Clone, Copy, Debug)]
pub struct Process {
    /// Resident memory now.
    pub rss_kib: u64,
    pub open_files: u64,
    pub threads: u64,
    /// CPU time used so far (user and system), in clock ticks.
    pub cpu_ticks: u64,
}

impl Process {
    /// Process `pid`'s figures now.
    pub fn read(pid: u32) -> Result<Self> {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status: tcptrack has ended"))?;
        if status.lines().any(|l| l.starts_with("State:\tZ")) {
            bail!("tcptrack has ended");
        }
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .with_context(|| format!("{name} in /proc/{pid}/status"))
        };
        let open_files = fs::read_dir(format!("/proc/{pid}/fd"))
            .with_context(|| format!("read /proc/{pid}/fd"))?
            .count();
        Ok(Self {
            rss_kib: field("VmRSS:")?,
            open_files: u64::try_from(open_files)?,
            threads: field("Threads:")?,
            cpu_ticks: super::super::super::measure::cpu_ticks(pid)?,
        })
    }
}

/// Clock ticks a second, as /proc counts CPU time.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_over_their_labels() {
        let body = "# TYPE tcptrack_connections gauge\ntcptrack_connections{state=\"ESTABLISHED\"} 2000\ntcptrack_connections{state=\"CLOSED\"} 400\ntcptrack_connections_opened_total 9000\ntcptrack_connections_ended_total{how=\"closed\"} 6500\ntcptrack_connections_ended_total{how=\"reset\"} 100\ntcptrack_refresh_seconds_sum 1.5\ntcptrack_kernel_events_lost_total 0\ntcptrack_dropped_packets_total 3\n# EOF\n";
        let s = Scrape::parse(body).expect("a scrape");
        assert_eq!(s.listed(), 2400);
        assert_eq!(s.opened(), 9000);
        assert_eq!(s.ended(), 6600);
        assert!((s.value("tcptrack_refresh_seconds_sum") - 1.5).abs() < 1e-9);
        assert_eq!(s.count("tcptrack_nothing_total"), 0);
        assert_eq!(
            s.losses(),
            [("tcptrack_dropped_packets_total".to_owned(), 3)]
        );
        assert!(Scrape::parse("tcptrack_connections x\n").is_err());
    }

    #[test]
    fn this_process_is_read() {
        let me = Process::read(std::process::id()).expect("our own figures");
        assert!(me.rss_kib > 0 && me.open_files > 0 && me.threads > 0);
    }
}
