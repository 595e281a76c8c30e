//! The live cost of monitoring many real TCP connections: for each load (thousands of
//! connections from host b to host a, idle or each sending 100 bytes a second), each live
//! monitor in turn, started once the connections exist (it picks them up mid-stream, as on a
//! busy host) and on its screen at its default refresh: its CPU over a window once it is ready,
//! its peak memory, and for tcptrack's kernel path what it could not count.

mod load;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use tcptrack_tests::netns::HostPair;

use super::super::measure::percent;
use super::super::report::{MonitorCost, Scale, ScaleRow};
use super::super::{Bench, Load, Profile};
use super::{start_monitor, watchers, Monitor};
use crate::step;
use load::Held;

/// The monitors' window: wide enough for tcptrack's status line with every count on it.
const SIZE: (u16, u16) = (200, 50);

/// The kernel path's status line shows these, each followed by its count, when it is not 0.
const UNCOUNTED: &str = " | uncounted (map full) ";
const EVENTS_LOST: &str = " | events lost ";

/// Every load of the profile, one after the other, each on a fresh pair of hosts.
pub fn measure(b: &Bench) -> Result<Scale> {
    let window = b.profile.scale_span();
    let loads = b.profile.scale_loads();
    step(&format!(
        "many real connections: {} loads, each watched by tcptrack (kernel), tcptrack --libpcap and the classic for {} s",
        loads.len(),
        window.as_secs()
    ));
    let rows = loads
        .iter()
        .map(|&load| one_load(&b.ours, load, window))
        .collect::<Result<Vec<_>>>()?;
    Ok(Scale {
        quick: b.profile == Profile::Quick,
        rows,
        seconds: window.as_secs(),
    })
}

/// `load` held between a fresh pair of hosts while each monitor watches host a's interface.
fn one_load(ours: &Path, load: Load, window: Duration) -> Result<ScaleRow> {
    let what = format!(
        "{} {} connections",
        load.connections,
        if load.active { "active" } else { "idle" }
    );
    let hosts = HostPair::new();
    let opening = Instant::now();
    // Declared after `hosts`: the holders are killed before the namespaces go.
    let mut held = Held::open(&hosts, load).with_context(|| format!("open {what}"))?;
    step(&format!(
        "{what}: established in {:.1} s",
        opening.elapsed().as_secs_f64()
    ));
    let mut seen = Vec::new();
    for (name, monitor) in watchers(ours, &hosts.a_if) {
        let (cost, screen) = watch(&hosts, name, &monitor, window)?;
        held.check()
            .with_context(|| format!("{what}, while {name} watched"))?;
        step(&format!(
            "{what}, {name}: {:.2}% of a core, peak {} KiB; bottom line: {}",
            cost.cpu_percent,
            cost.peak_rss_kib,
            bottom_line(&screen)
        ));
        seen.push((cost, screen));
    }
    let [(kernel, kernel_screen), (libpcap, _), (classic, _)]: [(MonitorCost, String); 3] = seen
        .try_into()
        .map_err(|_| anyhow!("three monitors watch each load"))?;
    Ok(ScaleRow {
        active: load.active,
        classic,
        connections: load.connections,
        kernel,
        kernel_events_lost: count_after(&kernel_screen, EVENTS_LOST)?,
        kernel_uncounted: count_after(&kernel_screen, UNCOUNTED)?,
        libpcap,
    })
}

/// `monitor` (called `name`) on host a's interface, once ready, for `window`: its cost, and
/// its screen at the end.
fn watch(
    hosts: &HostPair,
    name: &str,
    monitor: &Monitor,
    window: Duration,
) -> Result<(MonitorCost, String)> {
    let screen = start_monitor(&hosts.a, &hosts.a_if, monitor, SIZE)?;
    let (before, _) = screen.usage()?;
    // The measurement window itself, not a wait for anything. The CPU is taken over the
    // window as slept (the few ms of reading /proc on either side count against the monitor),
    // so that equal CPU times come out as equal percentages for every monitor.
    std::thread::sleep(window);
    if screen.ended() {
        bail!(
            "{name} ended during its window; its screen:\n{}",
            screen.text()
        );
    }
    let (after, peak_rss_kib) = screen.usage()?;
    let text = screen.text();
    screen.stop();
    let cost = MonitorCost {
        cpu_percent: percent(after.saturating_sub(before), window),
        peak_rss_kib,
    };
    Ok((cost, text))
}

/// The last line of `screen` with something on it (tcptrack's status line), trimmed.
fn bottom_line(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// The count `screen` shows after `label`; 0 when the label is not there (tcptrack shows it
/// only when not 0).
fn count_after(screen: &str, label: &str) -> Result<u64> {
    let Some((_, after)) = screen.split_once(label) else {
        return Ok(0);
    };
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .with_context(|| format!("no count after `{}` on screen", label.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_read_off_the_status_line() {
        let none = " Connections 0-0 of 0  Unpaused  Unsorted  | kernel on veth-a  | ? help\n";
        assert_eq!(count_after(none, UNCOUNTED).ok(), Some(0));
        assert_eq!(count_after(none, EVENTS_LOST).ok(), Some(0));
        let both = " Connections 1-47 of 9000  Unpaused  Unsorted  | kernel on veth-a | uncounted (map full) 1234 | events lost 56  | ? help\n";
        assert_eq!(count_after(both, UNCOUNTED).ok(), Some(1234));
        assert_eq!(count_after(both, EVENTS_LOST).ok(), Some(56));
        assert!(count_after(" | events lost ", EVENTS_LOST).is_err());
        assert_eq!(bottom_line("a\n b \n\n  \n"), "b");
    }
}
