//! The soak's figures and targets, as JSON (serde) and Markdown (`Display`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::super::super::report::thousands;

/// Samples before this many seconds are the warm-up: the flatness targets compare with the
/// first sample after it.
pub const WARM_UP_SECONDS: u64 = 120;

/// The last sample may be this much above the warm-up's (RSS, open files).
const FLAT: f64 = 0.05;

/// Open files may also be this many more: the scrape's own connection comes and goes.
const FILES_SLACK: u64 = 2;

/// The last quarter's mean CPU may differ from the first quarter's (after the warm-up) by this
/// much, or by [`CPU_FLOOR`] points of a core, whichever is more: /proc counts CPU in 10 ms
/// ticks, 0.1 points of a 10 s sample.
const CPU_FLAT: f64 = 0.10;
const CPU_FLOOR: f64 = 0.3;

/// Samples a quarter needs for the CPU target to be judged.
const QUARTER_SAMPLES: usize = 3;

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

/// What the flow log holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLog {
    /// Its records (connections; payload each way summed), each connection once.
    pub counted: Counted,
    /// Lines that were not a whole JSON record.
    pub bad_lines: u64,
    /// Records of a connection already recorded (the same client and first seen).
    pub repeated: u64,
    /// Records of connections that did not end by a close both ways (`"how":"closed"`).
    pub not_closed: u64,
}

/// A whole soak.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Soak {
    pub flow_log: FlowLog,
    /// Long-lived connections, and connections opened and closed each second.
    pub held: u32,
    /// What the load made.
    pub load: Counted,
    /// What tcptrack's metrics counted as lost or left out at the end, where not 0.
    pub losses: Vec<(String, u64)>,
    /// Segments the two hosts' kernels sent again (`RetransSegs`): their payload is on the wire
    /// twice, and tcptrack counts the wire.
    pub retransmitted_segments: u64,
    /// Scrapes that failed (refused, cut short, timed out).
    pub scrape_failures: u64,
    /// Whether, within 60 s of the load's end, tcptrack had listed every connection it made
    /// and forgotten them all.
    pub settled: bool,
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
            .filter(|s| s.seconds >= WARM_UP_SECONDS)
            .map(|s| s.cpu_percent)
            .collect();
        let quarter = after.len() / 4;
        if quarter < QUARTER_SAMPLES {
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
        #[expect(clippy::cast_precision_loss, reason = "KiB and file counts")]
        let grown =
            |from: u64, to: u64, slack: u64| to as f64 <= from as f64 * (1.0 + FLAT) + slack as f64;
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
                met: grown(first.rss_kib, last.rss_kib, 0),
            });
            t.push(Target {
                what: format!(
                    "open files flat: {} at {} s, {} at {} s (at most +{:.0}% or +{FILES_SLACK})",
                    first.open_files,
                    first.seconds,
                    last.open_files,
                    last.seconds,
                    FLAT * 100.0
                ),
                met: grown(first.open_files, last.open_files, FILES_SLACK),
            });
        } else {
            t.push(Target {
                what: format!("a sample after the {WARM_UP_SECONDS} s warm-up"),
                met: false,
            });
        }
        t.push(match self.cpu_quarters() {
            Some((early, late)) => Target {
                what: format!(
                    "CPU flat: {early:.2}% of a core in the first quarter after the warm-up, {late:.2}% in the last (within {:.0}% or {CPU_FLOOR} points)",
                    CPU_FLAT * 100.0
                ),
                met: (late - early).abs() <= (early * CPU_FLAT).max(CPU_FLOOR),
            },
            None => Target {
                what: format!(
                    "CPU flat: {QUARTER_SAMPLES} samples a quarter after the warm-up (a run of 4 minutes or more)"
                ),
                met: false,
            },
        });
        self.flow_log_targets(&mut t);
        t.push(Target {
            what: format!(
                "opened = ended + listed at every scrape: {} of {} scrapes differ, {} failed",
                self.metrics_mismatched,
                thousands(self.scrapes),
                self.scrape_failures
            ),
            met: self.metrics_mismatched == 0 && self.scrapes > 0 && self.scrape_failures == 0,
        });
        t.push(Target {
            what: "every connection listed, and forgotten within 60 s of the load's end".into(),
            met: self.settled,
        });
        t.push(Target {
            what: format!("nothing lost or left out: {:?}", self.losses),
            met: self.losses.is_empty(),
        });
        t
    }
}

impl Soak {
    /// The flow log's targets: one whole record per connection, the load's payload.
    fn flow_log_targets(&self, t: &mut Vec<Target>) {
        let (log, load) = (&self.flow_log.counted, &self.load);
        t.push(Target {
            what: format!(
                "one flow log record per connection: {} records, {} connections made; {} lines not a record, {} repeated, {} not closed both ways",
                thousands(log.connections),
                thousands(load.connections),
                self.flow_log.bad_lines,
                self.flow_log.repeated,
                self.flow_log.not_closed
            ),
            met: log.connections == load.connections
                && self.flow_log.bad_lines == 0
                && self.flow_log.repeated == 0
                && self.flow_log.not_closed == 0,
        });
        // Exact when nothing was sent again; otherwise the wire (tcptrack's count) has the
        // retransmitted payload once more.
        let exact = self.retransmitted_segments == 0;
        t.push(Target {
            what: format!(
                "the flow log's payload is the load's: client {} / {} bytes, server {} / {} bytes ({} segments sent again{})",
                thousands(log.client_bytes),
                thousands(load.client_bytes),
                thousands(log.server_bytes),
                thousands(load.server_bytes),
                self.retransmitted_segments,
                if exact { ": exact" } else { ": at least" }
            ),
            met: if exact {
                log.client_bytes == load.client_bytes && log.server_bytes == load.server_bytes
            } else {
                log.client_bytes >= load.client_bytes && log.server_bytes >= load.server_bytes
            },
        });
    }
}

impl fmt::Display for Soak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "## Soak: {} minutes", self.minutes)?;
        writeln!(f)?;
        writeln!(
            f,
            "tcptrack's kernel path with its screen (tmux, 200x50), `--metrics` scraped every second and `--flow-log`, on host a of a veth pair. From host b, {} long-lived connections, each sending 100 bytes a second and getting 200 back, and {} connections a second opened, sending 100 bytes, getting 200 and closed.",
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
            flow_log: FlowLog {
                counted: load,
                ..FlowLog::default()
            },
            held: 2000,
            load,
            losses: Vec::new(),
            retransmitted_segments: 0,
            scrape_failures: 0,
            settled: true,
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
        let mut hot = flat.clone();
        for s in hot.iter_mut().skip(25) {
            s.cpu_percent = 4.0;
        }
        assert!(soak(hot)
            .targets()
            .iter()
            .any(|t| !t.met && t.what.starts_with("CPU")));
        // A tick more in one sample is not a trend.
        let mut tick = flat.clone();
        tick[29].cpu_percent = 3.1;
        assert!(soak(tick).targets().iter().all(|t| t.met));
        let mut lost = soak(flat.clone());
        lost.flow_log.counted.connections = 9;
        assert_eq!(lost.targets().iter().filter(|t| !t.met).count(), 1);
        let mut again = soak(flat.clone());
        again.flow_log.counted.client_bytes += 100;
        assert!(again.targets().iter().any(|t| !t.met));
        again.retransmitted_segments = 1;
        assert!(again.targets().iter().all(|t| t.met));
        let mut reset = soak(flat);
        reset.flow_log.not_closed = 1;
        assert!(reset.targets().iter().any(|t| !t.met));
        assert!(soak(Vec::new()).targets().iter().filter(|t| !t.met).count() >= 2);
    }
}
