//! The one loop: source messages, terminal input, the refresh tick and signals, fed to the
//! monitor, read by a sink (which may be several: see the `Sink` impls for pairs and options).

use std::time::Duration;

use ratatui::crossterm::event::Event;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::Receiver;

use super::Monitor;
use crate::error::Error;
use crate::source::SourceMsg;
use crate::table::Ended;

/// Whether the loop goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What reads the monitor: the screen, headless text, the metrics endpoint, the flow log. Sinks
/// only read the table. Several sinks are one: a pair of sinks is a sink, and so is an optional
/// one (see [`Flow`] for how their answers combine).
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

    /// After every sink's refresh: how long the refresh took (the clock, expiry, every sink).
    fn refreshed(&mut self, _took: Duration) {}

    /// Kernel polls came (kernel path): how long each took.
    fn polled(&mut self, _took: &[Duration]) {}

    /// Connections left the table (with the table's `report_ended`), oldest first: each is
    /// handed out once.
    ///
    /// # Errors
    /// The sink cannot write.
    fn departed(&mut self, _m: &Monitor, _ended: &[Ended]) -> Result<(), Error> {
        Ok(())
    }

    /// SIGHUP came: stop (the default), or go on once the sink reopened what it writes (a flow
    /// log rotated away).
    ///
    /// # Errors
    /// The sink cannot reopen its file.
    fn hangup(&mut self, _m: &Monitor) -> Result<Flow, Error> {
        Ok(Flow::Stop)
    }

    /// The loop is over, however it ended (also on an error): the last word of sinks that
    /// write about what is still open.
    ///
    /// # Errors
    /// The sink cannot write.
    fn exit(&mut self, _m: &Monitor) -> Result<(), Error> {
        Ok(())
    }

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

impl Flow {
    /// Two sinks' answers as one: either stopping stops.
    #[must_use]
    pub const fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::Continue, Self::Continue) => Self::Continue,
            _ => Self::Stop,
        }
    }

    /// Two sinks' answers to SIGHUP as one: either going on (it reopened its file) goes on.
    #[must_use]
    pub const fn or(self, other: Self) -> Self {
        match (self, other) {
            (Self::Stop, Self::Stop) => Self::Stop,
            _ => Self::Continue,
        }
    }
}

/// A sink lent out is a sink.
impl<S: Sink + ?Sized> Sink for &mut S {
    fn holds(&self) -> bool {
        (**self).holds()
    }
    fn refresh(&mut self, m: &Monitor) -> Result<(), Error> {
        (**self).refresh(m)
    }
    fn refreshed(&mut self, took: Duration) {
        (**self).refreshed(took);
    }
    fn polled(&mut self, took: &[Duration]) {
        (**self).polled(took);
    }
    fn departed(&mut self, m: &Monitor, ended: &[Ended]) -> Result<(), Error> {
        (**self).departed(m, ended)
    }
    fn hangup(&mut self, m: &Monitor) -> Result<Flow, Error> {
        (**self).hangup(m)
    }
    fn exit(&mut self, m: &Monitor) -> Result<(), Error> {
        (**self).exit(m)
    }
    fn ended(&mut self, m: &Monitor) -> Result<Flow, Error> {
        (**self).ended(m)
    }
    fn finish(&mut self, m: &Monitor) -> Result<(), Error> {
        (**self).finish(m)
    }
    fn input(&mut self, m: &Monitor, event: Event) -> Result<Flow, Error> {
        (**self).input(m, event)
    }
    fn suspend(&mut self, m: &Monitor) -> Result<(), Error> {
        (**self).suspend(m)
    }
    fn resumed(&mut self, m: &Monitor) -> Result<(), Error> {
        (**self).resumed(m)
    }
}

/// Two sinks, each told everything, the first first. Either holding holds the table, either
/// stopping stops, except on SIGHUP, where either going on goes on. Both have their last word
/// even when the first fails.
impl<A: Sink, B: Sink> Sink for (A, B) {
    fn holds(&self) -> bool {
        self.0.holds() || self.1.holds()
    }
    fn refresh(&mut self, m: &Monitor) -> Result<(), Error> {
        self.0.refresh(m)?;
        self.1.refresh(m)
    }
    fn refreshed(&mut self, took: Duration) {
        self.0.refreshed(took);
        self.1.refreshed(took);
    }
    fn polled(&mut self, took: &[Duration]) {
        self.0.polled(took);
        self.1.polled(took);
    }
    fn departed(&mut self, m: &Monitor, ended: &[Ended]) -> Result<(), Error> {
        self.0.departed(m, ended)?;
        self.1.departed(m, ended)
    }
    fn hangup(&mut self, m: &Monitor) -> Result<Flow, Error> {
        Ok(self.0.hangup(m)?.or(self.1.hangup(m)?))
    }
    fn exit(&mut self, m: &Monitor) -> Result<(), Error> {
        let first = self.0.exit(m);
        let second = self.1.exit(m);
        first.and(second)
    }
    fn ended(&mut self, m: &Monitor) -> Result<Flow, Error> {
        Ok(self.0.ended(m)?.and(self.1.ended(m)?))
    }
    fn finish(&mut self, m: &Monitor) -> Result<(), Error> {
        self.0.finish(m)?;
        self.1.finish(m)
    }
    fn input(&mut self, m: &Monitor, event: Event) -> Result<Flow, Error> {
        Ok(self.0.input(m, event.clone())?.and(self.1.input(m, event)?))
    }
    fn suspend(&mut self, m: &Monitor) -> Result<(), Error> {
        self.0.suspend(m)?;
        self.1.suspend(m)
    }
    fn resumed(&mut self, m: &Monitor) -> Result<(), Error> {
        self.0.resumed(m)?;
        self.1.resumed(m)
    }
}

/// A sink that may not be there: when it is not, it changes nothing of the other's answers.
impl<S: Sink> Sink for Option<S> {
    fn holds(&self) -> bool {
        self.as_ref().is_some_and(Sink::holds)
    }
    fn refresh(&mut self, m: &Monitor) -> Result<(), Error> {
        self.as_mut().map_or(Ok(()), |s| s.refresh(m))
    }
    fn refreshed(&mut self, took: Duration) {
        if let Some(s) = self {
            s.refreshed(took);
        }
    }
    fn polled(&mut self, took: &[Duration]) {
        if let Some(s) = self {
            s.polled(took);
        }
    }
    fn departed(&mut self, m: &Monitor, ended: &[Ended]) -> Result<(), Error> {
        self.as_mut().map_or(Ok(()), |s| s.departed(m, ended))
    }
    fn hangup(&mut self, m: &Monitor) -> Result<Flow, Error> {
        self.as_mut().map_or(Ok(Flow::Stop), |s| s.hangup(m))
    }
    fn exit(&mut self, m: &Monitor) -> Result<(), Error> {
        self.as_mut().map_or(Ok(()), |s| s.exit(m))
    }
    fn ended(&mut self, m: &Monitor) -> Result<Flow, Error> {
        self.as_mut().map_or(Ok(Flow::Continue), |s| s.ended(m))
    }
    fn finish(&mut self, m: &Monitor) -> Result<(), Error> {
        self.as_mut().map_or(Ok(()), |s| s.finish(m))
    }
    fn input(&mut self, m: &Monitor, event: Event) -> Result<Flow, Error> {
        self.as_mut()
            .map_or(Ok(Flow::Continue), |s| s.input(m, event))
    }
    fn suspend(&mut self, m: &Monitor) -> Result<(), Error> {
        self.as_mut().map_or(Ok(()), |s| s.suspend(m))
    }
    fn resumed(&mut self, m: &Monitor) -> Result<(), Error> {
        self.as_mut().map_or(Ok(()), |s| s.resumed(m))
    }
}

/// Stopping on a signal: the clock moves to now, and the sink has its last word.
fn finish(m: &mut Monitor, sink: &mut impl Sink) -> Result<Flow, Error> {
    m.tick(sink.holds());
    hand_over(m, sink)?;
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

/// Hands the sink the connections that just left the table, and the kernel polls' times.
fn hand_over(m: &mut Monitor, sink: &mut impl Sink) -> Result<(), Error> {
    let polls = m.take_poll_times();
    if !polls.is_empty() {
        sink.polled(&polls);
    }
    let ended = m.table.take_ended();
    if ended.is_empty() {
        return Ok(());
    }
    sink.departed(m, &ended)
}

/// One refresh: the clock moves, what ended is handed over, the sink refreshes and is told how
/// long that took.
fn refresh(m: &mut Monitor, sink: &mut impl Sink) -> Result<Flow, Error> {
    let started = std::time::Instant::now();
    m.tick(sink.holds());
    hand_over(m, sink)?;
    sink.refresh(m)?;
    sink.refreshed(started.elapsed());
    Ok(Flow::Continue)
}

/// Takes in one message of the source (`None`: the channel closed).
fn source_msg(
    m: &mut Monitor,
    msg: Option<SourceMsg>,
    sink: &mut impl Sink,
) -> Result<Flow, Error> {
    let end = match msg {
        Some(msg) => {
            let end = matches!(msg, SourceMsg::End(_));
            m.handle(msg)?;
            end
        }
        // The channel closed: the source has ended (a capture read before the loop did so
        // already, or its thread went without a word).
        None => {
            if !m.ended {
                m.handle(SourceMsg::End(None))?;
            }
            true
        }
    };
    hand_over(m, sink)?;
    if end {
        sink.ended(m)
    } else {
        Ok(Flow::Continue)
    }
}

/// The next terminal event, or never when there is no terminal input.
async fn next_input(input: &mut Option<Receiver<Event>>) -> Option<Event> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs until the sink says stop, a signal (SIGINT, SIGTERM, SIGHUP unless the sink reopens on
/// it) comes, the terminal input ends, or the source fails: feeds every source message to `m`,
/// ticks its clock every `interval` and has `sink` refresh, hands it the connections that leave
/// the table, and hands terminal events (when there is `input`) to `sink`. On SIGINT and
/// SIGTERM the clock moves to that moment and `sink` has the last word ([`Sink::finish`]);
/// however the loop ends, [`Sink::exit`] is called once.
///
/// # Errors
/// The source failed (the live interface went away), a signal handler cannot be set, or the
/// sink cannot write.
pub async fn drive(
    m: &mut Monitor,
    source: Receiver<SourceMsg>,
    input: Option<Receiver<Event>>,
    sink: &mut impl Sink,
    interval: Duration,
) -> Result<(), Error> {
    let mut source = source;
    let mut result = run(m, &mut source, input, sink, interval).await;
    // Ended by a key or the terminal: what was counted since the last refresh still goes into
    // the last records.
    if result.is_ok() {
        result = last_poll(m, &mut source, sink).await;
    }
    let exit = sink.exit(m);
    result.and(exit)
}

/// How long tcptrack's end waits for the kernel's last poll.
const LAST_POLL_WAIT: Duration = Duration::from_secs(2);

/// Most messages taken in at the end from a source that has no last poll: what its channel
/// holds (it may be sending still).
const DRAIN_MOST: usize = crate::source::SOURCE_QUEUE;

/// On the kernel path, asks for a last poll and takes in everything up to it (waiting
/// [`LAST_POLL_WAIT`] at most), once; on the others, takes in what the source had sent.
async fn last_poll(
    m: &mut Monitor,
    source: &mut Receiver<SourceMsg>,
    sink: &mut impl Sink,
) -> Result<(), Error> {
    let Some(ask) = m.last_poll.take() else {
        for _ in 0..DRAIN_MOST {
            let Ok(msg) = source.try_recv() else {
                break;
            };
            if take_in(m, msg, sink)? {
                break;
            }
        }
        return Ok(());
    };
    ask.store(true, std::sync::atomic::Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + LAST_POLL_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, source.recv()).await {
            // The channel closed: the source had ended (and the sinks were told) already.
            Ok(Some(SourceMsg::LastPoll) | None) | Err(_) => return Ok(()),
            Ok(Some(msg)) => {
                if take_in(m, msg, sink)? {
                    return Ok(());
                }
            }
        }
    }
}

/// Takes in one message at the end; whether it was the source's last (its end).
fn take_in(m: &mut Monitor, msg: SourceMsg, sink: &mut impl Sink) -> Result<bool, Error> {
    let end = matches!(msg, SourceMsg::End(_));
    source_msg(m, Some(msg), sink)?;
    Ok(end)
}

/// Stopping on SIGINT or SIGTERM: what was counted until now taken in, then the sink's last
/// word.
async fn stop(
    m: &mut Monitor,
    source: &mut Receiver<SourceMsg>,
    sink: &mut impl Sink,
) -> Result<Flow, Error> {
    last_poll(m, source, sink).await?;
    finish(m, sink)
}

async fn run(
    m: &mut Monitor,
    source: &mut Receiver<SourceMsg>,
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
            _ = ticker.tick() => refresh(m, sink)?,
            msg = source.recv(), if source_open => {
                source_open = msg.as_ref().is_some_and(|msg| !matches!(msg, SourceMsg::End(_)));
                source_msg(m, msg, sink)?
            }
            ev = next_input(&mut input) => match ev {
                Some(ev) => sink.input(m, ev)?,
                None => Flow::Stop,
            },
            _ = term.recv() => stop(m, source, sink).await?,
            _ = int.recv() => stop(m, source, sink).await?,
            _ = hup.recv() => sink.hangup(m)?,
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
