//! Running tcptrack: from a validated [`Config`] to a source, the monitor and its sinks.

use std::io::Write;

use std::path::PathBuf;

use crate::cli::{Config, FlowLogTarget, OutputFormat, Source};
use crate::error::Error;
use crate::flowlog::FlowLog;
use crate::headless::Headless;
use crate::ipfix::{Ipfix, Transport};
use crate::metrics::{self, About, Metrics};
use crate::monitor::{drive, Monitor};
use crate::privilege::{Dropped, Plan, User};
use crate::sandbox::Rules;
use crate::source::{self, Feed, SourceKind, SourceMsg, Started};
use crate::table::ConnectionTable;

/// Runs tcptrack as configured: the screen when standard output is a terminal and no
/// `--output` was asked for, else headless output to `out`; beside either, the metrics endpoint
/// and the flow log when asked for. Everything that can fail before the first packet (the
/// metrics address, the flow log, the file, the interface, the filter) fails before the
/// terminal is touched.
///
/// # Errors
/// Any [`Error`]; for a capture cut short, after its connections have been written or shown.
pub fn run(cfg: &Config, out: &mut impl Write) -> Result<(), Error> {
    let screen = cfg.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let records = records_wanted(cfg);
    // Processes are named live only.
    let live = !matches!(cfg.source, Source::File(_));
    let plan = privilege_plan(cfg, live && (screen || records));
    plan.check()?;
    let listener = cfg
        .metrics
        .as_ref()
        .map(|c| metrics::bind(c.addr))
        .transpose()?;
    // Headless, a capture is always read whole; `--replay` paces the screen only.
    let replay = if screen { cfg.replay } else { None };
    let (started, feed) = source::start(cfg, replay, &plan)?;
    let (flow_log, ipfix) = match records_out(cfg, &started, screen) {
        Ok(w) => w,
        Err(e) => return Err(started.stop(feed, e)),
    };
    let mut beside = (
        serve_metrics(cfg, &started, listener, &runtime)?,
        (flow_log, ipfix),
    );
    let mut m = monitor(cfg, &started, screen, &beside.1);
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
        let shown = crate::tui::run(
            &mut m,
            rx,
            cfg.interval,
            crate::tui::App::with(cfg.units, cfg.columns),
            &runtime,
            &mut beside,
        );
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
        if cfg.verbose {
            for line in m.privileges.iter().flatten() {
                eprintln!("tcptrack: {line}");
            }
        } else if cfg.no_sandbox {
            eprintln!("tcptrack: not confined (--no-sandbox)");
        }
        let mut headless = Headless::new(cfg.output.unwrap_or(OutputFormat::Table), out);
        headless.units = cfg.units;
        let mut sink = (headless, &mut beside);
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

/// Where ended connections' records go: the flow log, opened (as tcpdump writes its files: as
/// the user it runs as, once privileges are given up), and the IPFIX exporter, started. Under
/// the screen, neither says on stderr what it could not write or send: the status line does.
fn records_out(
    cfg: &Config,
    started: &Started,
    screen: bool,
) -> Result<(Option<FlowLog>, Option<Ipfix>), Error> {
    let flow_log = cfg
        .flow_log
        .as_ref()
        .map(FlowLog::open)
        .transpose()?
        .map(|f| if screen { f.quiet() } else { f });
    let ipfix = cfg
        .ipfix
        .as_ref()
        .map(|i| {
            let offline = started.kind != SourceKind::Live;
            Ipfix::start(i, started.link_header, offline, !screen)
        })
        .transpose()?;
    Ok((flow_log, ipfix))
}

/// Whether the headless output lists connections (at every refresh, live).
fn lists(cfg: &Config) -> bool {
    matches!(
        cfg.output,
        Some(OutputFormat::Json | OutputFormat::Csv | OutputFormat::Table)
    )
}

/// Whether records are written that carry the RTT, retransmissions and process of this host's
/// sockets (the screen asks for them while it shows them).
fn records_wanted(cfg: &Config) -> bool {
    cfg.flow_log.is_some() || cfg.ipfix.as_ref().is_some_and(|i| !i.standard_only) || lists(cfg)
}

/// The monitor of `started`'s connections, with what `out` could not write or send.
fn monitor(
    cfg: &Config,
    started: &Started,
    screen: bool,
    out: &(Option<FlowLog>, Option<Ipfix>),
) -> Monitor {
    let mut table_cfg = cfg.table.clone();
    // A capture read whole reports every connection it had, also those that ended.
    table_cfg.keep_finished = started.kind == SourceKind::Capture;
    // What lists the connections at every refresh walks the table's order.
    table_cfg.listing = screen || (started.kind == SourceKind::Live && lists(cfg));
    let mut m = Monitor::new(
        ConnectionTable::new(table_cfg),
        started.label.clone(),
        started.kind,
    );
    // Why the live path is libpcap's: beside the path on the status line.
    m.notice = started.fallback.as_ref().map(ToString::to_string);
    m.processes = started.processes.clone();
    m.refresh_origin = started.refresh_origin;
    m.last_poll.clone_from(&started.last_poll);
    m.privileges = started.dropped.as_ref().map(Dropped::lines);
    m.locals_for_records = records_wanted(cfg);
    m.flow_log_lost = out.0.as_ref().map(FlowLog::lost);
    m.ipfix = out.1.as_ref().map(Ipfix::counts);
    m
}

/// What is given up once the source is open: see [`crate::privilege`].
fn privilege_plan(cfg: &Config, processes: bool) -> Plan {
    let mut write = Vec::new();
    if let Some(FlowLogTarget::File(p)) = &cfg.flow_log {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        write.push(dir.map_or_else(|| PathBuf::from("."), PathBuf::from));
    }
    Plan {
        user: cfg.user.clone().or_else(User::from_sudo),
        processes,
        sandbox: Rules {
            off: cfg.no_sandbox,
            read: match &cfg.source {
                Source::File(p) => vec![p.clone()],
                _ => Vec::new(),
            },
            write,
            records: (!cfg.libpcap && !matches!(cfg.source, Source::File(_)))
                .then(crate::ebpf::records_dir),
            bind: cfg.metrics.as_ref().map(|c| c.addr.port()),
            connect: cfg
                .ipfix
                .as_ref()
                .filter(|i| i.transport == Transport::Tcp)
                .map(|i| i.collector.port()),
        },
    }
}

/// The metrics of `started`'s source, served on `listener` (when `--metrics` asked) by a task
/// of `runtime`: it answers while the monitor's loop runs.
fn serve_metrics(
    cfg: &Config,
    started: &Started,
    listener: Option<std::net::TcpListener>,
    runtime: &tokio::runtime::Runtime,
) -> Result<Option<Metrics>, Error> {
    let (Some(c), Some(listener)) = (cfg.metrics.as_ref(), listener) else {
        return Ok(None);
    };
    let path = match (started.kind, &started.fallback) {
        (SourceKind::Live, None) => "kernel",
        (SourceKind::Live, Some(_)) => "libpcap",
        (SourceKind::Capture | SourceKind::Replay, _) => "file",
    };
    let about = About {
        path,
        interface: started.interface.clone(),
    };
    let (metrics, registry) = Metrics::new(c.ports, &about);
    let _in_runtime = runtime.enter();
    let server =
        metrics::serve(listener, registry, c.web.clone()).map_err(|source| Error::Metrics {
            addr: c.addr,
            source,
        })?;
    runtime.spawn(server);
    Ok(Some(metrics))
}
