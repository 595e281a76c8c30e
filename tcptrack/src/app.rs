//! Running tcptrack: from a validated [`Config`] to a source, the monitor and its sink.

use std::io::Write;

use crate::cli::{Config, OutputFormat};
use crate::error::Error;
use crate::headless::Headless;
use crate::monitor::{drive, Monitor};
use crate::source::{self, Feed, SourceKind, SourceMsg};
use crate::table::ConnectionTable;

/// Runs tcptrack as configured: the screen when standard output is a terminal and no
/// `--output` was asked for, else headless output to `out`. Everything that can fail before the
/// first packet (the file, the interface, the filter) fails before the terminal is touched.
///
/// # Errors
/// Any [`Error`]; for a capture cut short, after its connections have been written or shown.
pub fn run(cfg: &Config, out: &mut impl Write) -> Result<(), Error> {
    let screen = cfg.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    // Headless, a capture is always read whole; `--replay` paces the screen only.
    let replay = if screen { cfg.replay } else { None };
    let (started, feed) = source::start(cfg, replay)?;
    let mut table_cfg = cfg.table.clone();
    // A capture read whole reports every connection it had, also those that ended.
    table_cfg.keep_finished = started.kind == SourceKind::Capture;
    let mut m = Monitor::new(
        ConnectionTable::new(table_cfg),
        started.label.clone(),
        started.kind,
    );
    // Why the live path is libpcap's: beside the path on the status line.
    m.notice = started.fallback.as_ref().map(ToString::to_string);
    m.refresh_origin = started.refresh_origin;
    let rx = match feed {
        Feed::Channel(rx) => rx,
        Feed::Inline(mut file) => {
            // Read whole before the loop, packet by packet into the table; its closed channel
            // then tells the sink it has ended.
            let end = file.read_all(|u| m.apply(u));
            m.handle(SourceMsg::End(end.into_error()))?;
            tokio::sync::mpsc::channel(1).1
        }
    };
    let verifier_log = started.verifier_log().filter(|_| cfg.verbose);
    let result = if screen {
        let shown = crate::tui::run(&mut m, rx, cfg.interval, cfg.units, &runtime);
        // The reason for the path, in full (the status line may have cut it).
        if let Some(why) = &started.fallback {
            eprintln!("tcptrack: {}", source::path_line(&started.label, Some(why)));
        }
        // After the screen: the terminal is ours again.
        if let Some(log) = &verifier_log {
            eprintln!("tcptrack: the verifier's log:\n{log}");
        }
        shown
    } else {
        if started.kind == SourceKind::Live {
            eprintln!(
                "tcptrack: {}",
                source::path_line(&started.label, started.fallback.as_ref())
            );
        }
        if let Some(log) = &verifier_log {
            eprintln!("tcptrack: the verifier's log:\n{log}");
        }
        let mut sink = Headless::new(cfg.output.unwrap_or(OutputFormat::Table), out);
        sink.units = cfg.units;
        runtime.block_on(drive(&mut m, rx, None, &mut sink, cfg.interval))
    };
    // Promiscuous mode is held until here; the kernel's programs go before tcptrack does.
    started.finish();
    // Once, whatever the sink (the screen is gone by now), before any error of the capture.
    if let Some(warning) = m.out_of_order_warning() {
        eprintln!("tcptrack: {warning}");
    }
    result?;
    m.pending_error.map_or(Ok(()), Err)
}
