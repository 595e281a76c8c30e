//! The interactive screen: the classic layout, keys and an always-restored terminal.
//!
//! [`App`] holds the state and reacts to keys; [`draw`](App::draw) only reads it. The loop in
//! [`run`] feeds it time, packets and keys, and owns the terminal.

mod draw;
mod run;

pub use run::run;

use std::cell::Cell;
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::flow::Timestamp;
use crate::table::ConnectionTable;
use crate::view::ViewState;

/// Where the connections come from, as the status line names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceLabel {
    /// A capture file, read whole.
    File(String),
    /// A capture file played at its pace.
    Replay(String),
    /// A live interface (the kernel or libpcap, as `Live::label` says).
    Live(String),
}

/// What a key asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    Redraw,
    Nothing,
}

/// Everything the screen shows.
pub struct App {
    pub table: ConnectionTable,
    pub view: ViewState,
    pub source: SourceLabel,
    /// The table's clock, as of the last tick.
    pub now: Timestamp,
    /// The capture file has been read to its end.
    pub ended: bool,
    /// A problem to show in the status line (the capture was cut short, say).
    pub notice: Option<String>,
    /// An error to report once the screen is closed (a capture cut short).
    pub pending_error: Option<crate::error::Error>,
    /// Packets the source had to drop (a full channel, the capture's own drops).
    pub dropped: u64,
    /// What the kernel could not keep (kernel path only).
    pub kernel: Option<crate::source::kernel::KernelStats>,
    /// Rows that fit in the last frame drawn (for paging).
    page: Cell<usize>,
}

impl App {
    #[must_use]
    pub fn new(table: ConnectionTable, source: SourceLabel) -> Self {
        Self {
            table,
            view: ViewState::default(),
            source,
            now: Duration::ZERO,
            ended: false,
            notice: None,
            pending_error: None,
            dropped: 0,
            kernel: None,
            page: Cell::new(1),
        }
    }

    /// Moves the clock; the table forgets what has timed out, unless the view is paused
    /// (nothing leaves the table then).
    pub fn tick(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        if !self.view.is_paused() {
            self.table.expire(self.now);
        }
    }

    /// Reacts to a key: the classic's `q`, `p`, `s`, Up/Down, and PgUp/PgDn, Home/End, `?`/`h`.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        let page = self.page.get().max(1);
        let total = self.table.len();
        let jump = isize::try_from(page).unwrap_or(isize::MAX);
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return Action::Quit
            }
            KeyCode::Char('q' | 'Q') => return Action::Quit,
            KeyCode::Esc if self.view.help => self.view.help = false,
            KeyCode::Char('?' | 'h' | 'H') => self.view.help = !self.view.help,
            KeyCode::Char('p' | 'P') => self.view.toggle_pause(&self.table, self.now),
            KeyCode::Char('s' | 'S') => {
                self.view.sort = self.view.sort.next();
                self.view.scroll = 0;
            }
            KeyCode::Up => self.view.scroll_by(-1, total, page),
            KeyCode::Down => self.view.scroll_by(1, total, page),
            KeyCode::PageUp => self.view.scroll_by(-jump, total, page),
            KeyCode::PageDown => self.view.scroll_by(jump, total, page),
            KeyCode::Home => self.view.scroll = 0,
            KeyCode::End => self.view.scroll_by(isize::MAX, total, page),
            _ => return Action::Nothing,
        }
        Action::Redraw
    }
}

#[cfg(test)]
mod tests;
