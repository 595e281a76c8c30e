//! The soak's figures and targets, as JSON (serde) and Markdown (`Display`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Samples before this many seconds are the warm-up: the flatness targets compare with the
/// first sample after it.
pub const WARM_UP_SECONDS: u64 = 120;

/// The last sample may be this much above the warm-up's (RSS, open files).
const FLAT: f64 = 0.05;

/// The last quarter's mean CPU may differ from the first quarter's (after the warm-up) by this
/// much.
const CPU_FLAT: f64 = 0.10;

/// One sample, every 10 s.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Since the load started.
    pub seconds: u64,
    pub rss_kib: u64,
    pub open_files: u64,
    pub threads: u64,
    /// CPU (user and system) since the last sample, in percent of one core.
    pub cpu_percent: f64,
    /// tcptrack's mean refresh since the last sample (`tcptrack_refresh_seconds`).
    pub refresh_ms: f64,
    /// Connections listed now, and since the start.
    pub listed: u64,
    pub opened: u64,
}

/// What the load made, as it counted it, and what the flow log says of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    pub connections: u64,
    /// Payload the clients sent.
    pub client_bytes: u64,
    /// Payload the server sent.
    pub server_bytes: u64,
}

/// A whole soak.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Soak {
    /// The flow log's records (connections; payload each way summed).
    pub flow_log: Counted,
    /// Lines of the flow log that were not a whole JSON record.
    pub flow_log_bad_lines: u64,
    /// Long-lived connections, and connections opened and closed each second.
    pub held: u32,
    /// What the load made.
    pub load: Counted,
    /// What tcptrack's metrics counted as lost or left out at the end, where not 0.
    pub losses: Vec<(String, u64)>,
    /// Scrapes (one a second) where opened was not ended plus listed.
    pub metrics_mismatched: u64,
    /// What the first of them said.
    pub metrics_mismatches: Vec<String>,
    pub minutes: u32,
    pub rate: u32,
    pub samples: Vec<Sample>,
    /// Scrapes taken, one a second.
    pub scrapes: u64,
}

/// A target and whether it is met.
pub struct Target {
    pub what: String,
    pub met: bool,
}

impl Soak {
    /// The first sample after the warm-up, and the last.
    fn ends(&self) -> Option<(&Sample, &Sample)> {
        let first = self.samples.iter().find(|s| s.seconds >= WARM_UP_SECONDS)?;
        Some((first, self.samples.last()?))
    }

    /// The mean CPU of the first and of the last quarter of the samples after the warm-up.
    fn cpu_quarters(&self) -> Option<(f64, f64)> {
        let after: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.seconds > WARM_UP_SECONDS)
            .map(|s| s.cpu_percent)
            .collect();
        let quarter = after.len() / 4;
        if quarter == 0 {
            return None;
        }
        let n = f64::from(u32::try_from(quarter).ok()?);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / n;
        Some((
            mean(&after[..quarter]),
            mean(&after[after.len() - quarter..]),
        ))
    }

    /// Every target of the soak.
    pub fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let grown = |from: u64, to: u64| to as f64 <= from as f64 * (1.0 + FLAT);
        if let Some((first, last)) = self.ends() {
            t.push(Target {
                what: format!(
                    "RSS flat: {} KiB at {} s, {} KiB at {} s (at most +{:.0}%)",
                    first.rss_kib,
                    first.seconds,
                    last.rss_kib,
                    last.seconds,
                    FLAT * 100.0
                ),
                met: grown(first.rss_kib, last.rss_kib),
            });
            t.push(Target {
                what: format!(
                    "open files flat: {} at {} s, {} at {} s",
                    first.open_files, first.seconds, last.open_files, last.seconds
                ),
                met: grown(first.open_files, last.open_files),
            });
        } else {
            t.push(Target {
                what: format!("a sample after the {WARM_UP_SECONDS} s warm-up"),
                met: false,
            });
        }
        if let Some((early, late)) = self.cpu_quarters() {
            t.push(Target {
                what: format!(
                    "CPU flat: {early:.2}% of a core in the first quarter after the warm-up, {late:.2}% in the last (within {:.0}%)",
                    CPU_FLAT * 100.0
                ),
                met: (late - early).abs() <= early * CPU_FLAT,
            });
        }
        t.push(Target {
            what: format!(
                "one flow log record per connection: {} records, {} connections made",
                thousands(self.flow_log.connections),
                thousands(self.load.connections)
            ),
            met: self.flow_log.connections == self.load.connections,
        });
        t.push(Target {
            what: format!(
                "the flow log's payload is the load's: client {} / {} bytes, server {} / {} bytes",
                thousands(self.flow_log.client_bytes),
                thousands(self.load.client_bytes),
                thousands(self.flow_log.server_bytes),
                thousands(self.load.server_bytes)
            ),
            met: self.flow_log.client_bytes == self.load.client_bytes
                && self.flow_log.server_bytes == self.load.server_bytes,
        });
        t.push(Target {
            what: format!(
                "every flow log line a whole record: {} that were not",
                self.flow_log_bad_lines
            ),
            met: self.flow_log_bad_lines == 0,
        });
        t.push(Target {
            what: format!(
                "opened = ended + listed at every scrape: {} of {} scrapes differ",
                self.metrics_mismatched,
                thousands(self.scrapes)
            ),
            met: self.metrics_mismatched == 0 && self.scrapes > 0,
        });
        t.push(Target {
            what: format!("nothing lost or left out: {:?}", self.losses),
            met: self.losses.is_empty(),
        });
        t
    }
}

impl fmt::Display for Soak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "## Soak: {} minutes", self.minutes)?;
        writeln!(f)?;
        writeln!(
            f,
            "tcptrack's kernel path with its screen (tmux, 200x50), `--metrics` scraped every second and `--flow-log`, on host a of a veth pair; from host b, {} long-lived connections (100 bytes a second each way in, 200 out) and {} connections a second opened, 100 bytes in, 200 out, closed.",
            thousands(u64::from(self.held)),
            self.rate
        )?;
        writeln!(f)?;
        writeln!(f, "| target | |")?;
        writeln!(f, "|---|---|")?;
        for t in self.targets() {
            writeln!(
                f,
                "| {} | {} |",
                t.what,
                if t.met { "met" } else { "NOT met" }
            )?;
        }
        for m in &self.metrics_mismatches {
            writeln!(f, "\nscrape: {m}")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "| s | RSS KiB | open files | threads | CPU % | refresh ms | listed | opened |"
        )?;
        writeln!(f, "|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for s in &self.samples {
            writeln!(
                f,
                "| {} | {} | {} | {} | {:.2} | {:.3} | {} | {} |",
                s.seconds,
                s.rss_kib,
                s.open_files,
                s.threads,
                s.cpu_percent,
                s.refresh_ms,
                s.listed,
                s.opened
            )?;
        }
        Ok(())
    }
}

/// `n` with a comma between thousands.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seconds: u64, rss_kib: u64, cpu_percent: f64) -> Sample {
        Sample {
            seconds,
            rss_kib,
            open_files: 20,
            threads: 4,
            cpu_percent,
            refresh_ms: 0.5,
            listed: 2400,
            opened: seconds * 200,
        }
    }

    fn soak(samples: Vec<Sample>) -> Soak {
        let load = Counted {
            connections: 10,
            client_bytes: 1000,
            server_bytes: 2000,
        };
        Soak {
            flow_log: load,
            flow_log_bad_lines: 0,
            held: 2000,
            load,
            losses: Vec::new(),
            metrics_mismatched: 0,
            metrics_mismatches: Vec::new(),
            minutes: 5,
            rate: 200,
            samples,
            scrapes: 300,
        }
    }

    #[test]
    fn flat_and_grown() {
        let flat: Vec<Sample> = (1..=30).map(|i| sample(i * 10, 20_000, 3.0)).collect();
        assert!(soak(flat.clone()).targets().iter().all(|t| t.met));
        let mut grown = flat.clone();
        grown.push(sample(310, 21_001, 3.0));
        let t = soak(grown).targets();
        assert!(!t[0].met && t[0].what.contains("21001 KiB at 310 s"));
        let mut hot = flat;
        for s in hot.iter_mut().skip(25) {
            s.cpu_percent = 4.0;
        }
        assert!(soak(hot)
            .targets()
            .iter()
            .any(|t| !t.met && t.what.starts_with("CPU")));
        let mut lost = soak(Vec::new());
        lost.flow_log.connections = 9;
        assert!(lost.targets().iter().filter(|t| !t.met).count() >= 2);
        assert_eq!(thousands(360_000), "360,000");
    }
}
