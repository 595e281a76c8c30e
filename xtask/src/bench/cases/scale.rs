//! The live cost of tracking many real TCP connections: for each load (thousands of
//! connections from host b to host a, idle or each sending 100 bytes a second), each live
//! monitor in turn, on its screen at its default refresh and on a fresh pair of hosts: the
//! monitor starts first, then the connections are opened (it sees every handshake), then, once
//! its screen lists them all, its CPU over a window, its peak memory, what it listed at the
//! end, and for tcptrack's kernel path what it could not count. On the largest idle load,
//! tcptrack's kernel path once more with `--metrics`, scraped every second, and once headless
//! (`--output none`) over a longer window.

mod load;
pub mod scrape;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use tcptrack_tests::netns::HostPair;

use super::super::measure::{percent, Screen};
use super::super::report::{
    HeadlessCost, MetricsCost, MonitorCost, Scale, ScaleRow, LISTING_SECONDS,
};
use super::super::{Bench, Load, Profile};
use super::{start_monitor, watchers, Monitor};
use crate::step;
use load::Held;
use scrape::{Scraped, Scraper, METRICS};

/// The monitors' window: wide enough for tcptrack's status line with every count on it.
const SIZE: (u16, u16) = (200, 50);

/// The kernel path's status line shows these, each followed by its count, when it is not 0.
const UNCOUNTED: &str = " | uncounted (map full) ";
const EVENTS_LOST: &str = " | events lost ";

/// How long after all the connections are established a monitor may take to list them all;
/// one that has not by then is measured anyway (the count it listed is in the report).
const LISTING: Duration = Duration::from_secs(LISTING_SECONDS);

// tcptrack re-reads the listening sockets every 10 s: the full profile's window holds one.
const _: () = assert!(Profile::Full.scale_span().as_secs() >= 15);

/// Every load of the profile, one after the other, each monitor on a fresh pair of hosts.
pub fn measure(b: &Bench) -> Result<Scale> {
    let window = b.profile.scale_span();
    let loads = b.profile.scale_loads();
    step(&format!(
        "many real connections: {} loads, each opened under tcptrack (kernel), tcptrack --libpcap and the classic in turn, then watched for {} s",
        loads.len(),
        window.as_secs()
    ));
    let rows = loads
        .iter()
        .map(|&load| one_load(&b.ours, load, window))
        .collect::<Result<Vec<_>>>()?;
    let largest_idle = rows
        .iter()
        .filter(|r| !r.active)
        .max_by_key(|r| r.connections);
    let headless = largest_idle
        .map(|r| headless(&b.ours, r.connections, window * HEADLESS_WINDOWS))
        .transpose()?;
    let metrics = largest_idle
        .map(|r| scraped(&b.ours, r, window))
        .transpose()?;
    Ok(Scale {
        quick: b.profile == Profile::Quick,
        rows,
        seconds: window.as_secs(),
        metrics,
        headless,
    })
}

/// The headless window is this many of the screens': its figure is a fraction of theirs, and
/// /proc counts CPU in 10 ms ticks.
const HEADLESS_WINDOWS: u32 = 2;

/// `connections` idle connections under tcptrack's kernel path headless (`--output none`,
/// with `--metrics` to tell when it lists them all: scraped every second until it does, not
/// during the window), on a fresh pair of hosts.
fn headless(ours: &Path, connections: u32, window: Duration) -> Result<HeadlessCost> {
    let what = format!("{connections} idle connections");
    let name = "tcptrack (kernel) --output none";
    let hosts = HostPair::new();
    let [(_, kernel), ..] = watchers(ours, &hosts.a_if);
    let monitor = Monitor {
        args: format!("--output none --metrics {METRICS} {}", kernel.args),
        ..kernel
    };
    // Its path line (`tcptrack: kernel on ...`) is on stderr, in the pane, once attached.
    let screen = start_monitor(&hosts.a, &hosts.a_if, &monitor, SIZE)?;
    let load = Load {
        connections,
        active: false,
    };
    let mut held = Held::open(&hosts, load).with_context(|| format!("open them under {name}"))?;
    let start = Instant::now();
    let mut listed = scrape::listed_in(&hosts.a)?;
    while listed < connections && start.elapsed() < LISTING {
        std::thread::sleep(Duration::from_secs(1));
        listed = scrape::listed_in(&hosts.a)?;
    }
    step(&format!(
        "{what}, {name}: {listed} listed {:.1} s after all were established",
        start.elapsed().as_secs_f64()
    ));
    let (before, _) = screen.usage()?;
    // The measurement window itself, as in `measure_window`.
    std::thread::sleep(window);
    if screen.ended() {
        bail!("{name} ended during its window:\n{}", screen.text());
    }
    let (after, peak_rss_kib) = screen.usage()?;
    let listed = scrape::listed_in(&hosts.a)?;
    held.check()
        .with_context(|| format!("while {name} was measured"))?;
    screen.stop();
    drop(held);
    let cost = MonitorCost {
        cpu_percent: percent(after.saturating_sub(before), window),
        listed,
        peak_rss_kib,
    };
    step(&format!(
        "{what}, {name}: {:.2}% of a core over {} s, peak {} KiB, {listed} listed",
        cost.cpu_percent,
        window.as_secs(),
        cost.peak_rss_kib
    ));
    Ok(HeadlessCost {
        connections,
        seconds: window.as_secs(),
        cost,
    })
}

/// The load of `row` under tcptrack's kernel path with `--metrics`, scraped every second over
/// the window, beside the row's figure without.
fn scraped(ours: &Path, row: &ScaleRow, window: Duration) -> Result<MetricsCost> {
    let load = Load {
        connections: row.connections,
        active: row.active,
    };
    let what = format!("{} idle connections", row.connections);
    let name = "tcptrack (kernel) --metrics";
    let pick = |interface: &str| {
        let [(_, kernel), ..] = watchers(ours, interface);
        Ok(Monitor {
            args: format!("--metrics {METRICS} {}", kernel.args),
            ..kernel
        })
    };
    let (with, _, scraped) =
        watch(name, pick, load, window, &what, true).with_context(|| what.clone())?;
    let Scraped { scrapes, bytes } = scraped.context("the scrapes")?;
    step(&format!(
        "{what}, {name}: {scrapes} scrapes of {bytes} bytes, {:.2}% of a core (without: {:.2}%)",
        with.cpu_percent, row.kernel.cpu_percent
    ));
    Ok(MetricsCost {
        connections: row.connections,
        without_percent: row.kernel.cpu_percent,
        with,
        scrapes,
        scrape_bytes: bytes,
    })
}

/// `load` opened and held under each monitor in turn.
fn one_load(ours: &Path, load: Load, window: Duration) -> Result<ScaleRow> {
    let what = format!(
        "{} {} connections",
        load.connections,
        if load.active { "active" } else { "idle" }
    );
    let mut seen = Vec::new();
    let names = watchers(ours, "").map(|(name, _)| name);
    for (which, name) in names.into_iter().enumerate() {
        let pick = |interface: &str| {
            watchers(ours, interface)
                .into_iter()
                .nth(which)
                .map(|(_, m)| m)
                .context("no such monitor")
        };
        let (cost, screen, _) =
            watch(name, pick, load, window, &what, false).with_context(|| what.clone())?;
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

/// The monitor `pick` makes for host a's interface (`name` in the report) on a fresh pair of
/// hosts, ready before `load` is opened from host b, then, once it lists the connections, for
/// `window`, scraped every second when `scrape`: its cost and what it listed, its screen at the
/// end, and what the scrapes gave. The connections are closed and the hosts removed before it
/// returns.
fn watch(
    name: &str,
    pick: impl FnOnce(&str) -> Result<Monitor>,
    load: Load,
    window: Duration,
    what: &str,
    scrape: bool,
) -> Result<(MonitorCost, String, Option<Scraped>)> {
    let hosts = HostPair::new();
    let monitor = pick(&hosts.a_if)?;
    let screen = start_monitor(&hosts.a, &hosts.a_if, &monitor, SIZE)?;
    let opening = Instant::now();
    // Declared after `hosts`: the holders are killed before the namespaces go.
    let mut held = Held::open(&hosts, load).with_context(|| format!("open them under {name}"))?;
    let established = opening.elapsed();
    let listing = wait_listed(&screen, name, load.connections)?;
    step(&format!(
        "{what}, {name}: established in {:.1} s, {}",
        established.as_secs_f64(),
        listing.map_or_else(
            || format!(
                "NOT all listed {} s later: {}",
                LISTING.as_secs(),
                bottom_line(&screen.text())
            ),
            |d| format!("all listed {:.1} s later", d.as_secs_f64())
        )
    ));
    let scraper = scrape.then(|| Scraper::start(&hosts.a)).transpose()?;
    let measured = measure_window(&screen, name, window);
    let scraped = scraper.map(Scraper::stop).transpose();
    let (cost, text) = measured?;
    let scraped = scraped?;
    held.check()
        .with_context(|| format!("while {name} was measured"))?;
    screen.stop();
    drop(held);
    step(&format!(
        "{what}, {name}: {:.2}% of a core, peak {} KiB, {} listed; bottom line: {}",
        cost.cpu_percent,
        cost.peak_rss_kib,
        cost.listed,
        bottom_line(&text)
    ));
    Ok((cost, text, scraped))
}

/// Waits until `screen` (of `name`) lists at least `want` connections, for at most
/// [`LISTING`]: how long it took, or `None` when it did not get there.
fn wait_listed(screen: &Screen, name: &str, want: u32) -> Result<Option<Duration>> {
    let start = Instant::now();
    loop {
        if screen.ended() {
            bail!("{name} ended; its screen:\n{}", screen.text());
        }
        if listed(&screen.text()).is_some_and(|n| n >= want) {
            return Ok(Some(start.elapsed()));
        }
        if start.elapsed() > LISTING {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `screen` (of `name`) for `window`: its cost, and the screen at the end.
fn measure_window(screen: &Screen, name: &str, window: Duration) -> Result<(MonitorCost, String)> {
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
    let listed = listed(&text)
        .with_context(|| format!("no connection count on {name}'s screen:\n{text}"))?;
    let cost = MonitorCost {
        cpu_percent: percent(after.saturating_sub(before), window),
        listed,
        peak_rss_kib,
    };
    Ok((cost, text))
}

/// The connections `screen` lists in all: N of its status line's `Connections 1-K of N`
/// (tcptrack's and the classic's alike).
fn listed(screen: &str) -> Option<u32> {
    let (_, status) = screen.rsplit_once(" Connections ")?;
    let (range, rest) = status.split_once(" of ")?;
    let (first, last) = range.split_once('-')?;
    let number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !number(first) || !number(last) {
        return None;
    }
    let total: String = rest.chars().take_while(char::is_ascii_digit).collect();
    total.parse().ok()
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

    #[test]
    fn the_total_listed_read_off_either_status_line() {
        let ours = " Client  Server\n Connections 1-47 of 60000  Unpaused  Unsorted  | kernel on veth-a  | ? help\n";
        assert_eq!(listed(ours), Some(60_000));
        let classic =
            " TOTAL    0 B/s\n Connections 1-47 of 59188                    Unpaused  Unsorted\n";
        assert_eq!(listed(classic), Some(59_188));
        assert_eq!(listed(" Connections 0-0 of 0  Unpaused\n"), Some(0));
        assert_eq!(listed(" Connections  Unpaused\n"), None);
        assert_eq!(listed(" Connections 1-x of 5\n"), None);
        assert_eq!(listed("nothing here\n"), None);
    }
}
