//! CPU of an idle live screen: each monitor on `-i lo` in a network namespace of its own
//! (nothing flows there), in a tmux pane.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use tcptrack_tests::netns::LoneHost;

use super::super::measure::percent;
use super::super::report::IdleScreen;
use super::super::Bench;
use super::{start_monitor, Monitor, Ready, CLASSIC};
use crate::step;

/// tcptrack, then the classic.
pub fn measure(b: &Bench) -> Result<IdleScreen> {
    let window = b.profile.idle_span();
    step(&format!(
        "CPU of an idle live screen over {} s: tcptrack, classic tcptrack",
        window.as_secs()
    ));
    let on_lo = |program: &Path, ready: Ready| Monitor {
        program: program.to_path_buf(),
        args: "-i lo".to_owned(),
        ready,
    };
    // tcptrack names its source, kernel or libpcap, once it is open.
    let ours = idle_cpu(&on_lo(&b.ours, Ready::Screen("on lo".to_owned())), window)?;
    let classic = idle_cpu(&on_lo(&PathBuf::from(CLASSIC), Ready::Classic), window)?;
    Ok(IdleScreen {
        classic_cpu_percent: classic,
        seconds: window.as_secs(),
        tcptrack_cpu_percent: ours,
    })
}

/// CPU `monitor` uses over `window` once it is up, in percent of one core.
fn idle_cpu(monitor: &Monitor, window: Duration) -> Result<f64> {
    let host = LoneHost::new();
    let screen = start_monitor(&host.ns, "lo", monitor, (120, 40))?;
    let (before, _) = screen.usage()?;
    // The measurement window itself, not a wait for anything.
    std::thread::sleep(window);
    let (after, _) = screen.usage()?;
    screen.stop();
    Ok(percent(after - before, window))
}
