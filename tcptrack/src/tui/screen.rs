//! The screen as the monitor's sink, over any ratatui backend (the real terminal, or
//! `TestBackend` in tests).

use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event};
use ratatui::Terminal;
use tokio::sync::mpsc;

use super::{Action, App};
use crate::error::Error;
use crate::monitor::{Flow, Monitor, Sink};

/// A terminal showing the monitor.
pub struct Screen<B: Backend> {
    pub terminal: Terminal<B>,
    pub app: App,
}

impl<B: Backend> Screen<B> {
    #[must_use]
    pub fn new(terminal: Terminal<B>) -> Self {
        Self {
            terminal,
            app: App::new(),
        }
    }

    /// Draws a whole frame.
    ///
    /// # Errors
    /// The terminal cannot be written.
    pub fn draw(&mut self, m: &Monitor) -> Result<(), Error> {
        let app = &mut self.app;
        self.terminal
            .draw(|f| app.draw(f, m))
            .map_err(|e| Error::Terminal(std::io::Error::other(e.to_string())))?;
        Ok(())
    }
}

impl<B: Backend> Sink for Screen<B> {
    fn holds(&self) -> bool {
        self.app.view.is_paused()
    }

    fn refresh(&mut self, m: &Monitor) -> Result<(), Error> {
        self.draw(m)
    }

    fn ended(&mut self, m: &Monitor) -> Result<Flow, Error> {
        // The capture is over: its final table stays on screen until `q`.
        self.draw(m)?;
        Ok(Flow::Continue)
    }

    fn input(&mut self, m: &Monitor, event: Event) -> Result<Flow, Error> {
        match event {
            Event::Key(key) => match self.app.on_key(key, m) {
                Action::Quit => return Ok(Flow::Stop),
                Action::Redraw => self.draw(m)?,
                Action::Nothing => {}
            },
            Event::Resize(..) => self.draw(m)?,
            _ => {}
        }
        Ok(Flow::Continue)
    }
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

/// Shows `m`, fed by `source`, on the real terminal until `q` (or Ctrl-C, SIGINT, SIGTERM,
/// SIGHUP unless `beside` reopens on it), `beside` (metrics, the flow log) told everything the
/// screen is. The terminal is restored on every way out, panics included (ratatui's hook).
///
/// # Errors
/// The terminal cannot be set up or written, or the live source broke.
pub fn run(
    m: &mut Monitor,
    source: mpsc::Receiver<crate::source::SourceMsg>,
    interval: std::time::Duration,
    runtime: &tokio::runtime::Runtime,
    beside: &mut impl Sink,
) -> Result<(), Error> {
    let terminal = ratatui::try_init().map_err(Error::Terminal)?;
    let mut screen = Screen::new(terminal);
    // The first frame at once; the loop's ticks draw the next ones.
    let result = screen.draw(m).and_then(|()| {
        runtime.block_on(crate::monitor::drive(
            m,
            source,
            Some(spawn_input()),
            &mut (&mut screen, beside),
            interval,
        ))
    });
    ratatui::restore();
    result
}
