//! The interactive loop: sources, keys, the refresh tick and signals, one terminal.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event};
use ratatui::DefaultTerminal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::{Action, App, SourceLabel};
use crate::app::read_capture;
use crate::cli::{Config, Source};
use crate::error::Error;
use crate::flow::Timestamp;
use crate::source::{file::CaptureFile, live, Live, SourceMsg};
use crate::table::ConnectionTable;

/// Batches waiting for the main loop; beyond this a live source drops (and counts).
const SOURCE_QUEUE: usize = 256;

/// Maps the wall clock to the table's clock.
#[derive(Clone, Copy)]
enum Clock {
    /// A file read whole: time stands at its last packet.
    Stopped,
    /// `at` was the instant `wall`; time runs `speed` times the wall clock.
    Running {
        at: Timestamp,
        wall: Instant,
        speed: f64,
    },
}

impl Clock {
    fn now(self) -> Option<Timestamp> {
        match self {
            Self::Stopped => None,
            Self::Running { at, wall, speed } => Some(at + wall.elapsed().mul_f64(speed)),
        }
    }
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Runs the screen until `q` (or Ctrl-C, SIGINT, SIGTERM, SIGHUP). Everything that can fail
/// before drawing (opening the file or interface, the filter) fails before the terminal is
/// touched; the terminal is restored on every way out, panics included.
///
/// # Errors
/// Opening the source failed, the live capture broke, or the capture file was cut short (after
/// its connections have been shown).
pub fn run(cfg: &Config) -> Result<(), Error> {
    let (tx, rx) = mpsc::channel(SOURCE_QUEUE);
    let mut clock = Clock::Stopped;
    // Promiscuous mode lasts while this lives (to the end of the screen).
    let mut held_promiscuous = Vec::new();
    let mut app = match &cfg.source {
        Source::File(path) if cfg.replay.is_none() => {
            let report = read_capture(path, cfg)?;
            let mut app = App::new(report.table, SourceLabel::File(file_name(path)));
            app.now = report.end;
            app.ended = true;
            app.notice = report.truncated.as_ref().map(ToString::to_string);
            app.pending_error = report.truncated;
            drop(tx);
            app
        }
        Source::File(path) => {
            let file = CaptureFile::open(path, cfg.filter.as_deref())?;
            crate::source::file::spawn_replay(file, cfg.replay.unwrap_or(1.0), tx);
            App::new(
                ConnectionTable::new(cfg.table.clone()),
                SourceLabel::Replay(file_name(path)),
            )
        }
        Source::Interface(_) | Source::DefaultInterface => {
            let (source, notice) = crate::source::open_live(cfg)?;
            let label = source.label();
            match source {
                Live::Kernel {
                    poller,
                    promiscuous,
                    ..
                } => {
                    clock = Clock::Running {
                        at: crate::source::kernel::monotonic_now(),
                        wall: Instant::now(),
                        speed: 1.0,
                    };
                    held_promiscuous = promiscuous;
                    crate::source::spawn_kernel_poller(poller, cfg.interval, tx);
                }
                Live::Libpcap {
                    cap,
                    link,
                    interface,
                } => {
                    let start = Instant::now();
                    clock = Clock::Running {
                        at: Duration::ZERO,
                        wall: start,
                        speed: 1.0,
                    };
                    live::spawn_reader(cap, link, interface, start, tx);
                }
            }
            let mut app = App::new(
                ConnectionTable::new(cfg.table.clone()),
                SourceLabel::Live(label),
            );
            crate::source::refresh_listening(&mut app.table);
            app.notice = notice;
            app
        }
    };
    let mut terminal = ratatui::try_init().map_err(Error::Output)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(event_loop(&mut terminal, &mut app, rx, clock, cfg.interval)),
        Err(e) => Err(Error::Output(e)),
    };
    ratatui::restore();
    drop(held_promiscuous);
    result?;
    app.pending_error.map_or(Ok(()), Err)
}

/// Reads terminal events on a thread of its own (crossterm's read blocks).
fn spawn_input() -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        while let Ok(ev) = event::read() {
            if tx.blocking_send(ev).is_err() {
                return;
            }
        }
    });
    rx
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    mut source: mpsc::Receiver<SourceMsg>,
    mut clock: Clock,
    interval: Duration,
) -> Result<(), Error> {
    let mut input = spawn_input();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut term = signal(SignalKind::terminate()).map_err(Error::Output)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Output)?;
    let mut hup = signal(SignalKind::hangup()).map_err(Error::Output)?;
    let mut source_open = true;
    let mut listening_read = Instant::now();
    loop {
        let mut redraw = false;
        tokio::select! {
            _ = ticker.tick() => {
                if let Some(now) = clock.now() {
                    app.tick(now);
                }
                if matches!(app.source, SourceLabel::Live(_)) && listening_read.elapsed() >= crate::source::LISTENING_REFRESH {
                    crate::source::refresh_listening(&mut app.table);
                    listening_read = Instant::now();
                }
                redraw = true;
            }
            msg = source.recv(), if source_open => match msg {
                Some(SourceMsg::Clock { at, wall, speed }) => clock = Clock::Running { at, wall, speed },
                Some(SourceMsg::Batch(batch)) => {
                    for u in &batch {
                        app.table.apply(u);
                    }
                }
                Some(SourceMsg::Dropped(n)) => app.dropped += n,
                Some(SourceMsg::Kernel(poll)) => crate::source::kernel::apply_poll(&mut app.table, &poll),
                Some(SourceMsg::KernelStats(s)) => app.kernel = Some(s),
                Some(SourceMsg::End(err)) => {
                    source_open = false;
                    if matches!(app.source, SourceLabel::Replay(_)) {
                        // The replay is over: time stands at the last packet.
                        if let Some(now) = clock.now() {
                            app.tick(now);
                        }
                        clock = Clock::Stopped;
                        app.ended = true;
                        app.notice = err.as_ref().map(ToString::to_string);
                        app.pending_error = err;
                        redraw = true;
                    } else if let Some(e) = err {
                        return Err(e);
                    }
                }
                None => source_open = false,
            },
            ev = input.recv() => match ev {
                Some(Event::Key(key)) => match app.on_key(key) {
                    Action::Quit => return Ok(()),
                    Action::Redraw => redraw = true,
                    Action::Nothing => {}
                },
                Some(Event::Resize(..)) => redraw = true,
                Some(_) => {}
                None => return Ok(()),
            },
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => return Ok(()),
        }
        if redraw {
            terminal.draw(|f| app.draw(f)).map_err(Error::Output)?;
        }
    }
}
