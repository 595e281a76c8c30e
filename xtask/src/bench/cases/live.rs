//! Live overhead: receiver throughput of iperf3 from one namespace to another across a veth
//! pair, unmonitored and with each monitor in turn watching host a's interface (in a tmux
//! pane, as people run them), and the CPU the monitor used meanwhile.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tcptrack_tests::netns::{wait_until, Background, HostPair, B4};

use super::super::measure::{median_by, percent, READY};
use super::super::report::LiveCase;
use super::super::Bench;
use super::{start_monitor, watchers, Monitor};
use crate::step;

/// iperf3's default port.
const IPERF_PORT: u16 = 5201;

/// Several runs; per monitor, the run of median throughput.
pub fn measure(b: &Bench) -> Result<Vec<LiveCase>> {
    let span = b.profile.live_span();
    step(&format!(
        "live overhead: iperf3 across a veth pair for {} s, unmonitored and under each monitor",
        span.as_secs()
    ));
    let runs = (0..b.profile.runs())
        .map(|_| one_run(&b.ours, span))
        .collect::<Result<Vec<_>>>()?;
    Ok((0..runs.first().map_or(0, Vec::len))
        .filter_map(|i| {
            let cases = runs.iter().filter_map(|r| r.get(i)).cloned().collect();
            median_by(cases, |x: &LiveCase, y| x.gbits.total_cmp(&y.gbits))
        })
        .collect())
}

/// The cases, unmonitored first (the others are compared with it), each monitor watching
/// `interface`.
fn monitors(ours: &Path, interface: &str) -> Vec<(&'static str, Option<Monitor>)> {
    std::iter::once(("unmonitored", None))
        .chain(
            watchers(ours, interface)
                .into_iter()
                .map(|(name, m)| (name, Some(m))),
        )
        .collect()
}

/// Every case once, on a fresh pair of hosts with an iperf3 server on host b.
fn one_run(ours: &Path, span: Duration) -> Result<Vec<LiveCase>> {
    let hosts = HostPair::new();
    let mut server = HostPair::cmd(&hosts.b, "iperf3");
    server.args(["-s", "-B", B4]).stderr(Stdio::null());
    // Declared after `hosts`: stopped before the namespaces go.
    let _server = Background::spawn_with_stderr(server);
    wait_until("the iperf3 server to listen", READY, || {
        HostPair::listening(&hosts.b, IPERF_PORT)
    });
    monitors(ours, &hosts.a_if)
        .into_iter()
        .map(|(name, monitor)| one_case(&hosts, name, monitor.as_ref(), span))
        .collect()
}

/// iperf3 for `span` from host a to host b, with `monitor` (if any) watching host a.
fn one_case(
    hosts: &HostPair,
    name: &str,
    monitor: Option<&Monitor>,
    span: Duration,
) -> Result<LiveCase> {
    let screen = monitor
        .map(|m| start_monitor(&hosts.a, &hosts.a_if, m, (120, 40)))
        .transpose()?;
    let before = screen.as_ref().map(|s| s.usage()).transpose()?;
    let iperf = HostPair::cmd(&hosts.a, "iperf3")
        .args(["-J", "-c", B4, "-t"])
        .arg(span.as_secs().to_string())
        .output()
        .context("run iperf3")?;
    let after = screen.as_ref().map(|s| s.usage()).transpose()?;
    if let Some(s) = screen {
        s.stop();
    }
    let report: serde_json::Value =
        serde_json::from_slice(&iperf.stdout).context("iperf3 -J output")?;
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| {
            format!(
                "iperf3 gave no result: {}",
                String::from_utf8_lossy(&iperf.stdout)
            )
        })?;
    let monitor_cpu_percent = match (before, after) {
        (Some(b), Some(a)) => Some(percent(a.0 - b.0, span)),
        _ => None,
    };
    Ok(LiveCase {
        gbits: bps / 1e9,
        monitor: name.to_owned(),
        monitor_cpu_percent,
    })
}
