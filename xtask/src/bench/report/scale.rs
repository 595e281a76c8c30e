//! The scale case's part of the report: each live monitor's CPU and peak memory on loads of
//! many real connections, what tcptrack's kernel path lost, and the targets about them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Each live monitor on each load of real connections between two network namespaces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    /// The quick profile's loads (smaller than those the targets name).
    pub quick: bool,
    pub rows: Vec<ScaleRow>,
    /// The window each monitor's CPU is measured over.
    pub seconds: u64,
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

/// A live monitor's cost over the measurement window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorCost {
    /// Percent of one core, user + system.
    pub cpu_percent: f64,
    /// VmHWM at the end of the window.
    pub peak_rss_kib: u64,
}

/// `n` with commas between thousands: `60,000`.
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
        vec![
            format!(
                "60,000 idle under 0.5% of a core on the kernel path {}",
                self.cpu_target(60_000, false, 0.5)
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
        ]
    }
}

/// The section: a row per load, a column pair per monitor, the kernel path's losses.
impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let profile = if self.quick { "quick profile: " } else { "" };
        writeln!(
            f,
            "## Many real connections ({profile}{}), each monitor on screen for {} s once ready\n",
            self.loads(),
            self.seconds
        )?;
        writeln!(
            f,
            "| connections | tcptrack (kernel) CPU % | MiB | tcptrack --libpcap CPU % | MiB | classic tcptrack 1.4.3 CPU % | MiB | kernel: uncounted packets | kernel: events lost |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for r in &self.rows {
            let load = if r.active {
                format!("{} (100 B/s each)", r.load())
            } else {
                r.load()
            };
            write!(f, "| {load} |")?;
            for m in [r.kernel, r.libpcap, r.classic] {
                write!(f, " {:.2} | {} |", m.cpu_percent, mib(m.peak_rss_kib))?;
            }
            writeln!(f, " {} | {} |", r.kernel_uncounted, r.kernel_events_lost)?;
        }
        writeln!(
            f,
            "\nCPU: % of one core used by the monitor's own process (user + system, from /proc/PID/stat in 10 ms ticks); the kernel programs' cost per packet is charged to the processes the packets pass through, and is in the kernel cost table. MiB: peak resident memory (VmHWM). Losses: read off tcptrack's status line at the end of the window."
        )
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
            rows: vec![row(60_000, false, 0.5, 0.4), row(10_000, true, 2.99, 3.0)],
            seconds: 15,
        };
        let t = s.targets();
        assert!(t[0].ends_with("(measured 0.50%: NOT met)"), "{}", t[0]);
        assert!(t[1].ends_with("(measured 2.99%: met)"), "{}", t[1]);
        assert!(t[2].ends_with(": NOT met)"), "{}", t[2]);
        assert!(t[3].ends_with("(measured uncounted 0, events lost 0: met)"));
    }
}
