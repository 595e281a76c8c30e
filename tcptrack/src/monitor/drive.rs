//! The one loop: source messages, terminal input, the refresh tick and signals, fed to the
//! monitor, read by a sink.

use std::time::Duration;

use ratatui::crossterm::event::Event;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::Receiver;

use super::Monitor;
use crate::error::Error;
use crate::source::SourceMsg;

/// Whether the loop goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What reads the monitor: the screen, headless text, and so on. Sinks only read the table.
pub trait Sink {
    /// Whether nothing may leave the table now (a paused screen).
    fn holds(&self) -> bool {
        false
    }

    /// At every refresh tick, after the monitor's clock moved.
    ///
    /// # Errors
    /// The sink cannot write or draw.
    fn refresh(&mut self, m: &Monitor) -> Result<(), Error>;

    /// The source has ended (a capture read to its end, or cut short: see
    /// [`Monitor::pending_error`]).
    ///
    /// # Errors
    /// The sink cannot write or draw.
    fn ended(&mut self, m: &Monitor) -> Result<Flow, Error>;

    /// The loop stops on SIGINT or SIGTERM, the monitor's clock just moved to that moment: a
    /// last word (headless live output writes that last interval; the screen has none).
    ///
    /// # Errors
    /// The sink cannot write.
    fn finish(&mut self, _m: &Monitor) -> Result<(), Error> {
        Ok(())
    }

    /// SIGTSTP (only when there is terminal input): give the terminal back, stop the process as
    /// a job, and take the terminal again once continued.
    ///
    /// # Errors
    /// The sink cannot draw.
    fn suspend(&mut self, _m: &Monitor) -> Result<(), Error> {
        Ok(())
    }

    /// SIGCONT (only when there is terminal input): the process was stopped and goes on; the
    /// terminal may have been changed meanwhile.
    ///
    /// # Errors
    /// The sink cannot draw.
    fn resumed(&mut self, _m: &Monitor) -> Result<(), Error> {
        Ok(())
    }

    /// A terminal event (keys, resizes), for sinks that read them.
    ///
    /// # Errors
    /// The sink cannot draw.
    fn input(&mut self, _m: &Monitor, _event: Event) -> Result<Flow, Error> {
        Ok(Flow::Continue)
    }
}

/// Stopping on a signal: the clock moves to now, and the sink has its last word.
fn finish(m: &mut Monitor, sink: &mut impl Sink) -> Result<Flow, Error> {
    m.tick(sink.holds());
    sink.finish(m)?;
    Ok(Flow::Stop)
}

/// The next delivery of `sig`, or never when it is not listened to.
async fn next_signal(sig: &mut Option<tokio::signal::unix::Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// The next terminal event, or never when there is no terminal input.
async fn next_input(input: &mut Option<Receiver<Event>>) -> Option<Event> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs until the sink says stop, a signal (SIGINT, SIGTERM, SIGHUP) comes, the terminal input
/// ends, or the source fails: feeds every source message to `m`, ticks its clock every
/// `interval` and has `sink` refresh, and hands terminal events (when there is `input`) to
/// `sink`. On SIGINT and SIGTERM the clock moves to that moment and `sink` has the last word
/// ([`Sink::finish`]).
///
/// # Errors
/// The source failed (the live interface went away), a signal handler cannot be set, or the
/// sink cannot write.
pub async fn drive(
    m: &mut Monitor,
    mut source: Receiver<SourceMsg>,
    mut input: Option<Receiver<Event>>,
    sink: &mut impl Sink,
    interval: Duration,
) -> Result<(), Error> {
    // The first refresh one interval from the origin (the source's polls, or now), as every
    // one after it.
    let origin = m
        .refresh_origin
        .map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std);
    let mut ticker = tokio::time::interval_at(origin + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let signals = |kind| signal(kind).map_err(Error::Signal);
    let mut term = signals(SignalKind::terminate())?;
    let mut int = signals(SignalKind::interrupt())?;
    let mut hup = signals(SignalKind::hangup())?;
    // Job control, with a terminal only: headless, a stop keeps its default action.
    let (mut tstp, mut cont) = if input.is_some() {
        (
            Some(signals(SignalKind::from_raw(libc::SIGTSTP))?),
            Some(signals(SignalKind::from_raw(libc::SIGCONT))?),
        )
    } else {
        (None, None)
    };
    let mut source_open = true;
    loop {
        let flow = tokio::select! {
            _ = ticker.tick() => {
                m.tick(sink.holds());
                sink.refresh(m)?;
                Flow::Continue
            }
            msg = source.recv(), if source_open => match msg {
                Some(msg) => {
                    let end = matches!(msg, SourceMsg::End(_));
                    m.handle(msg)?;
                    if end {
                        source_open = false;
                        sink.ended(m)?
                    } else {
                        Flow::Continue
                    }
                }
                // The channel closed: the source has ended (a capture read before the loop
                // did so already, or its thread went without a word).
                None => {
                    source_open = false;
                    if !m.ended {
                        m.handle(SourceMsg::End(None))?;
                    }
                    sink.ended(m)?
                }
            },
            ev = next_input(&mut input) => match ev {
                Some(ev) => sink.input(m, ev)?,
                None => Flow::Stop,
            },
            _ = term.recv() => finish(m, sink)?,
            _ = int.recv() => finish(m, sink)?,
            _ = hup.recv() => Flow::Stop,
            () = next_signal(&mut tstp) => {
                sink.suspend(m)?;
                Flow::Continue
            }
            () = next_signal(&mut cont) => {
                sink.resumed(m)?;
                Flow::Continue
            }
        };
        if flow == Flow::Stop {
            return Ok(());
        }
    }
}
