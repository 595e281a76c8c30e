//! The scale case's part of the report: each live monitor's CPU and peak memory on loads of
//! many real connections, what tcptrack's kernel path lost, and the targets about them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How long after all the connections of a load are established a monitor may take to list
/// them all; one that has not by then is measured anyway.
pub const LISTING_SECONDS: u64 = 30;

/// Each live monitor on each load of real connections between two network namespaces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    /// The quick profile's loads (smaller than those the targets name).
    pub quick: bool,
    pub rows: Vec<ScaleRow>,
    /// The window each monitor's CPU is measured over.
    pub seconds: u64,
    /// The kernel path on the largest idle load again, with `--metrics` scraped every second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsCost>,
    /// The kernel path on the largest idle load again, headless (`--output none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headless: Option<HeadlessCost>,
}

/// tcptrack's kernel path headless (`--output none`) on an idle load, over a longer window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadlessCost {
    pub connections: u32,
    /// Its window.
    pub seconds: u64,
    /// Its cost, and the connections its metrics listed at the end.
    pub cost: MonitorCost,
}

/// tcptrack's kernel path with `--metrics`, scraped every second, beside the same load's
/// figure without.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsCost {
    pub connections: u32,
    /// The same load's kernel path without `--metrics` (its row's figure), % of a core.
    pub without_percent: f64,
    /// With `--metrics` and a scrape every second.
    pub with: MonitorCost,
    /// Scrapes answered in the window.
    pub scrapes: u32,
    /// The size of one answer.
    pub scrape_bytes: u64,
}

impl MetricsCost {
    /// What the metrics and their scrapes added, % of a core.
    fn added(&self) -> f64 {
        self.with.cpu_percent - self.without_percent
    }
}

/// One load, watched by each monitor in turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleRow {
    /// Each connection sends 100 bytes a second (otherwise: idle).
    pub active: bool,
    pub classic: MonitorCost,
    pub connections: u32,
    /// tcptrack on its kernel path.
    pub kernel: MonitorCost,
    /// Control events the kernel path lost (its status line's `events lost`).
    pub kernel_events_lost: u64,
    /// Packets the kernel path did not count (its status line's `uncounted (map full)`).
    pub kernel_uncounted: u64,
    /// tcptrack `--libpcap`.
    pub libpcap: MonitorCost,
}

/// A live monitor over the measurement window: its cost, and the connections it listed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorCost {
    /// Percent of one core, user + system.
    pub cpu_percent: f64,
    /// The connections its screen listed at the end of the window (N of its status line's
    /// `Connections 1-K of N`).
    pub listed: u32,
    /// VmHWM at the end of the window.
    pub peak_rss_kib: u64,
}

/// `n` with commas between thousands: `60,000`.
pub(crate) fn thousands(n: u64) -> String {
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

/// `kib` in MiB, one decimal.
fn mib(kib: u64) -> String {
    format!(
        "{:.1}",
        f64::from(u32::try_from(kib).unwrap_or(u32::MAX)) / 1024.0
    )
}

impl ScaleRow {
    /// `60,000 idle`, `10,000 active`.
    fn load(&self) -> String {
        let what = if self.active { "active" } else { "idle" };
        format!("{} {what}", thousands(self.connections.into()))
    }

    fn is(&self, connections: u32, active: bool) -> bool {
        self.connections == connections && self.active == active
    }
}

/// What was measured against a target, and whether it is met: `(measured 0.40%: met)`.
fn verdict(measured: &str, met: bool) -> String {
    format!(
        "(measured {measured}: {})",
        if met { "met" } else { "NOT met" }
    )
}

impl Scale {
    /// The loads, as the title names them: `1,000 and 10,000 idle, 2,000 active`.
    fn loads(&self) -> String {
        let list = |active: bool| -> Option<String> {
            let n: Vec<String> = self
                .rows
                .iter()
                .filter(|r| r.active == active)
                .map(|r| thousands(r.connections.into()))
                .collect();
            let (last, rest) = n.split_last()?;
            let what = if active { "active" } else { "idle" };
            Some(if rest.is_empty() {
                format!("{last} {what}")
            } else {
                format!("{} and {last} {what}", rest.join(", "))
            })
        };
        [list(false), list(true)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The CPU of the kernel path on load (`connections`, `active`) against `limit` percent;
    /// when that load was not run (a quick run), says so with the nearest load measured.
    fn cpu_target(&self, connections: u32, active: bool, limit: f64) -> String {
        if let Some(r) = self.rows.iter().find(|r| r.is(connections, active)) {
            let cpu = r.kernel.cpu_percent;
            return verdict(&format!("{cpu:.2}%"), cpu < limit);
        }
        let nearest = self
            .rows
            .iter()
            .filter(|r| r.active == active)
            .max_by_key(|r| r.connections);
        match nearest {
            Some(r) if self.quick => format!(
                "(not measured: a quick run; {} measured {:.2}%)",
                r.load(),
                r.kernel.cpu_percent
            ),
            _ => "(not measured)".to_owned(),
        }
    }

    /// The targets of the scale case, each with its measured figure and whether it is met.
    pub fn targets(&self) -> Vec<String> {
        let versus: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{} {:.2}% vs {:.2}%",
                    r.load(),
                    r.kernel.cpu_percent,
                    r.libpcap.cpu_percent
                )
            })
            .collect();
        let never_costlier = self
            .rows
            .iter()
            .all(|r| r.kernel.cpu_percent <= r.libpcap.cpu_percent);
        let uncounted: u64 = self.rows.iter().map(|r| r.kernel_uncounted).sum();
        let lost: u64 = self.rows.iter().map(|r| r.kernel_events_lost).sum();
        let mut targets = vec![
            format!(
                "60,000 idle under 0.3% of a core on the kernel path, with the screen {}",
                self.cpu_target(60_000, false, 0.3)
            ),
            format!(
                "10,000 active under 3% {}",
                self.cpu_target(10_000, true, 3.0)
            ),
            format!(
                "the kernel path never costlier than libpcap on the same load {}",
                verdict(
                    &format!("kernel vs libpcap: {}", versus.join("; ")),
                    never_costlier
                )
            ),
            format!(
                "nothing uncounted or lost {}",
                verdict(
                    &format!("uncounted {uncounted}, events lost {lost}"),
                    uncounted == 0 && lost == 0
                )
            ),
        ];
        targets.extend(self.headless_target());
        targets.extend(self.metrics_target());
        targets
    }

    /// The target of the headless kernel path, when it was measured: 60,000 idle under 0.2%.
    fn headless_target(&self) -> Option<String> {
        let h = self.headless.as_ref()?;
        let what = "60,000 idle under 0.2% of a core headless (--output none)";
        let cpu = h.cost.cpu_percent;
        Some(if h.connections == 60_000 {
            let listed = h.cost.listed >= h.connections;
            let measured = if listed {
                format!("{cpu:.2}%")
            } else {
                format!("{cpu:.2}%, but {} listed", thousands(h.cost.listed.into()))
            };
            format!("{what} {}", verdict(&measured, listed && cpu < 0.2))
        } else {
            format!(
                "{what} (not measured: {} idle measured {cpu:.2}%)",
                thousands(h.connections.into())
            )
        })
    }
}

/// The section: a row per load, a column triple per monitor, the kernel path's losses, and
/// which monitors listed fewer connections than were opened.
impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let profile = if self.quick { "quick profile: " } else { "" };
        writeln!(
            f,
            "## Many real connections ({profile}{}), opened under each monitor, then measured for {} s once it listed them all\n",
            self.loads(),
            self.seconds
        )?;
        writeln!(
            f,
            "| connections | tcptrack (kernel) CPU % | MiB | listed | tcptrack --libpcap CPU % | MiB | listed | classic tcptrack 1.4.3 CPU % | MiB | listed | kernel: uncounted packets | kernel: events lost |"
        )?;
        writeln!(
            f,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for r in &self.rows {
            let load = if r.active {
                format!("{} (100 B/s each)", r.load())
            } else {
                r.load()
            };
            write!(f, "| {load} |")?;
            for m in [r.kernel, r.libpcap, r.classic] {
                write!(
                    f,
                    " {:.2} | {} | {} |",
                    m.cpu_percent,
                    mib(m.peak_rss_kib),
                    thousands(m.listed.into())
                )?;
            }
            writeln!(f, " {} | {} |", r.kernel_uncounted, r.kernel_events_lost)?;
        }
        writeln!(
            f,
            "\nEach monitor in turn on a fresh pair of hosts: started and ready, then the connections opened (in bursts) and established, then its window, from the moment the total on its screen's status line (`Connections 1-K of N`, on the classic's as on tcptrack's) reached the load, or, if it had not, {LISTING_SECONDS} s after ss in host b counted them all established. CPU: % of one core used by the monitor's own process (user + system, from /proc/PID/stat in 10 ms ticks); the kernel programs' cost per packet is charged to the processes the packets pass through, and is in the kernel cost table. MiB: peak resident memory (VmHWM), the opening included. Listed: N on the status line at the end of the window. Losses: read off tcptrack's status line at the end of the window, counted since it started (the opening included)."
        )?;
        let short = self.short();
        if !short.is_empty() {
            writeln!(
                f,
                "\nListed fewer connections than were opened: {}.",
                short.join("; ")
            )?;
        }
        self.write_headless(f)?;
        self.write_metrics(f)
    }
}

impl Scale {
    /// The target of `--metrics`, when it was measured: scraped every second with 60,000
    /// connections, it adds under 1% of a core.
    fn metrics_target(&self) -> Option<String> {
        let m = self.metrics.as_ref()?;
        let what = "being scraped every second with 60,000 connections adds under 1% of a core";
        let added = m.added();
        Some(if m.connections == 60_000 {
            format!("{what} {}", verdict(&format!("{added:.2}%"), added < 1.0))
        } else {
            format!(
                "{what} (not measured: {} idle added {added:.2}%)",
                thousands(m.connections.into())
            )
        })
    }

    /// The section's line on the headless kernel path, when it was measured.
    fn write_headless(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(h) = &self.headless else {
            return Ok(());
        };
        writeln!(
            f,
            "
### Headless ({} idle, kernel path, --output none)

| CPU % | MiB | listed | window, s |
|---:|---:|---:|---:|
| {:.2} | {} | {} | {} |

The same load on a fresh pair of hosts under tcptrack with `--output none --metrics`: the metrics tell when it lists them all (a scrape a second until then, none during the window, one after it for the count listed).",
            thousands(h.connections.into()),
            h.cost.cpu_percent,
            mib(h.cost.peak_rss_kib),
            thousands(h.cost.listed.into()),
            h.seconds
        )
    }

    /// The section's table of `--metrics` scraped every second, when it was measured.
    fn write_metrics(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(m) = &self.metrics else {
            return Ok(());
        };
        writeln!(
            f,
            "
### --metrics scraped every second ({} idle, kernel path)
",
            thousands(m.connections.into())
        )?;
        writeln!(f, "| tcptrack (kernel) CPU % | with --metrics, scraped every 1 s, CPU % | added, % of a core | MiB | scrapes | bytes per scrape |")?;
        writeln!(f, "|---:|---:|---:|---:|---:|---:|")?;
        writeln!(
            f,
            "| {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            m.without_percent,
            m.with.cpu_percent,
            m.added(),
            mib(m.with.peak_rss_kib),
            m.scrapes,
            thousands(m.scrape_bytes)
        )?;
        writeln!(
            f,
            "
The same load on a fresh pair of hosts under tcptrack with `--metrics`, a plain HTTP GET of /metrics every second on the monitor's loopback over the same window; added: its CPU less the kernel path's in the table above."
        )
    }

    /// Each monitor that listed fewer connections than its load held: `classic tcptrack 1.4.3
    /// on 60,000 idle (59,188)`.
    fn short(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.rows {
            for (name, m) in [
                ("tcptrack (kernel)", r.kernel),
                ("tcptrack --libpcap", r.libpcap),
                ("classic tcptrack 1.4.3", r.classic),
            ] {
                if m.listed < r.connections {
                    out.push(format!(
                        "{name} on {} ({})",
                        r.load(),
                        thousands(m.listed.into())
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(60_000), "60,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    fn row(connections: u32, active: bool, kernel: f64, libpcap: f64) -> ScaleRow {
        let cost = |cpu_percent| MonitorCost {
            cpu_percent,
            listed: connections,
            peak_rss_kib: 1024,
        };
        ScaleRow {
            active,
            classic: cost(10.0),
            connections,
            kernel: cost(kernel),
            kernel_events_lost: 0,
            kernel_uncounted: 0,
            libpcap: cost(libpcap),
        }
    }

    #[test]
    fn a_target_just_over_is_not_met() {
        let s = Scale {
            quick: false,
            rows: vec![row(60_000, false, 0.3, 0.2), row(10_000, true, 2.99, 3.0)],
            seconds: 15,
            metrics: None,
            headless: None,
        };
        let t = s.targets();
        assert!(t[0].ends_with("(measured 0.30%: NOT met)"), "{}", t[0]);
        assert!(t[1].ends_with("(measured 2.99%: met)"), "{}", t[1]);
        assert!(t[2].ends_with(": NOT met)"), "{}", t[2]);
        assert!(t[3].ends_with("(measured uncounted 0, events lost 0: met)"));
    }

    #[test]
    fn the_metrics_scrape_is_its_own_table_and_target() {
        let mut s = Scale {
            quick: false,
            rows: vec![row(60_000, false, 0.4, 0.5)],
            seconds: 15,
            metrics: Some(MetricsCost {
                connections: 60_000,
                without_percent: 0.4,
                with: MonitorCost {
                    cpu_percent: 0.9,
                    listed: 60_000,
                    peak_rss_kib: 2048,
                },
                scrapes: 15,
                scrape_bytes: 12_345,
            }),
            headless: None,
        };
        let text = s.to_string();
        assert!(
            text.contains("| 0.40 | 0.90 | 0.50 | 2.0 | 15 | 12,345 |"),
            "{text}"
        );
        let t = s.targets();
        assert!(
            t[4].ends_with("adds under 1% of a core (measured 0.50%: met)"),
            "{}",
            t[4]
        );
        s.metrics = None;
        assert_eq!(s.targets().len(), 4);
        assert!(!s.to_string().contains("--metrics"));
    }

    #[test]
    fn the_headless_run_is_its_own_table_and_target() {
        let headless = |cpu_percent: f64, listed: u32| HeadlessCost {
            connections: 60_000,
            seconds: 60,
            cost: MonitorCost {
                cpu_percent,
                listed,
                peak_rss_kib: 4096,
            },
        };
        let mut s = Scale {
            quick: false,
            rows: vec![row(60_000, false, 0.2, 0.5)],
            seconds: 15,
            metrics: None,
            headless: Some(headless(0.17, 60_000)),
        };
        assert!(
            s.to_string().contains("| 0.17 | 4.0 | 60,000 | 60 |"),
            "{s}"
        );
        let t = s.targets();
        assert_eq!(t.len(), 5);
        assert!(
            t[4].ends_with("headless (--output none) (measured 0.17%: met)"),
            "{}",
            t[4]
        );
        s.headless = Some(headless(0.2, 60_000));
        assert!(s.targets()[4].ends_with("(measured 0.20%: NOT met)"));
        // Cheap because it missed connections is not met.
        s.headless = Some(headless(0.1, 59_000));
        assert!(s.targets()[4].ends_with("(measured 0.10%, but 59,000 listed: NOT met)"));
    }

    #[test]
    fn monitors_that_listed_fewer_are_named() {
        let mut r = row(60_000, false, 0.1, 0.2);
        r.classic.listed = 59_188;
        let s = Scale {
            quick: false,
            rows: vec![row(1_000, false, 0.0, 0.0), r],
            seconds: 15,
            metrics: None,
            headless: None,
        };
        assert_eq!(
            s.short(),
            ["classic tcptrack 1.4.3 on 60,000 idle (59,188)"]
        );
        assert!(s
            .to_string()
            .ends_with("\nListed fewer connections than were opened: classic tcptrack 1.4.3 on 60,000 idle (59,188).\n"));
        assert!(s.to_string().contains("| 60,000 idle | 0.10 | 1.0 | 60,000 | 0.20 | 1.0 | 60,000 | 10.00 | 1.0 | 59,188 | 0 | 0 |"));
    }
}
