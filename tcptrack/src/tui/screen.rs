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
    /// The terminal is the process's own (raw mode, alternate screen): job control gives it
    /// back on a stop and takes it again on a continue. Not so for a test backend.
    owns_tty: bool,
}

impl<B: Backend> Screen<B> {
    #[must_use]
    pub fn new(terminal: Terminal<B>) -> Self {
        Self {
            terminal,
            app: App::new(),
            owns_tty: false,
        }
    }

    /// Takes the terminal again after a stop (whoever stopped the process, the shell may have
    /// reset the terminal's modes meanwhile) and redraws it whole.
    fn take_tty(&mut self, m: &Monitor) -> Result<(), Error> {
        if self.owns_tty {
            tty::enter().map_err(Error::Terminal)?;
            // A blank frame first, so that the next one is drawn whole, not as a difference;
            // ratatui's own clear would ask the terminal for the cursor while the input thread
            // reads the answer.
            self.terminal
                .draw(|f| f.render_widget(ratatui::widgets::Clear, f.area()))
                .map_err(|e| Error::Terminal(std::io::Error::other(e.to_string())))?;
            tty::clear().map_err(Error::Terminal)?;
        }
        self.draw(m)
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

    fn suspend(&mut self, m: &Monitor) -> Result<(), Error> {
        if self.owns_tty {
            let _ = self.terminal.show_cursor();
            ratatui::restore();
            tty::stop();
        }
        // Here again after `fg` (or SIGCONT).
        self.take_tty(m)
    }

    fn resumed(&mut self, m: &Monitor) -> Result<(), Error> {
        self.take_tty(m)
    }

    fn input(&mut self, m: &Monitor, event: Event) -> Result<Flow, Error> {
        match event {
            Event::Key(key) => match self.app.on_key(key, m) {
                Action::Quit => return Ok(Flow::Stop),
                Action::Redraw => self.draw(m)?,
                Action::Suspend => self.suspend(m)?,
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
    app: App,
    runtime: &tokio::runtime::Runtime,
    beside: &mut impl Sink,
) -> Result<(), Error> {
    let terminal = ratatui::try_init().map_err(Error::Terminal)?;
    let mut screen = Screen::new(terminal);
    screen.owns_tty = true;
    screen.app = app;
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

/// The real terminal's side of job control.
mod tty {
    use ratatui::crossterm::execute;
    use ratatui::crossterm::terminal::{
        disable_raw_mode, enable_raw_mode, Clear, ClearType, EnterAlternateScreen,
    };

    /// Raw mode and the alternate screen, again. crossterm skips enabling raw mode when it
    /// believes it is on, which a shell that reset the terminal meanwhile makes untrue: off
    /// first (back to the modes saved at start), then on.
    pub fn enter() -> std::io::Result<()> {
        disable_raw_mode()?;
        enable_raw_mode()?;
        execute!(std::io::stdout(), EnterAlternateScreen)
    }

    /// Clears the whole screen.
    pub fn clear() -> std::io::Result<()> {
        execute!(std::io::stdout(), Clear(ClearType::All))
    }

    /// Stops the process as Ctrl-Z does in a cooked terminal: SIGTSTP with its default action,
    /// so the shell sees a job stopped from the terminal. The loop's own SIGTSTP handler is put
    /// back once the process continues.
    pub fn stop() {
        // SAFETY: a zeroed sigaction is a valid "default action, empty mask"; the old action is
        // read into `old` and put back; `raise` only sends a signal to this thread.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGTSTP, &dfl, &mut old) != 0 {
                // Cannot stop as a job would: stop anyway (SIGSTOP cannot be caught).
                libc::raise(libc::SIGSTOP);
                return;
            }
            libc::raise(libc::SIGTSTP);
            libc::sigaction(libc::SIGTSTP, &old, std::ptr::null_mut());
        }
    }
}
