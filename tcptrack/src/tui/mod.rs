//! The interactive screen: the classic layout, keys and an always-restored terminal.
//!
//! [`App`] holds what the screen alone knows (sort, scroll, pause, help) and reacts to keys;
//! [`draw`](App::draw) only reads it and the [`Monitor`]. [`Screen`] is the monitor's sink that
//! owns a terminal; [`run`] sets up the real one.

mod draw;
mod screen;

pub use screen::{run, Screen};

use std::cell::Cell;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::monitor::Monitor;
use crate::view::ViewState;

/// What a key asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    Redraw,
    /// Ctrl-Z: give the terminal back and stop, as a shell's job.
    Suspend,
    Nothing,
}

/// The screen's own state.
pub struct App {
    pub view: ViewState,
    /// Rows that fit in the last frame drawn (for paging).
    page: Cell<usize>,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    #[must_use]
    pub fn new() -> Self {
        Self {
            view: ViewState::default(),
            page: Cell::new(1),
        }
    }

    /// A screen writing speeds in `units`, its columns after A `columns` first.
    #[must_use]
    pub fn with(units: crate::format::Units, columns: crate::view::Columns) -> Self {
        let mut app = Self::new();
        app.view.units = units;
        app.view.columns = columns;
        app
    }

    /// Reacts to a key: the classic's `q`, `p`, `s`, Up/Down, and PgUp/PgDn, Home/End, Enter
    /// (details), `c` (columns), `?`/`h` (help), Ctrl-Z (suspend).
    pub fn on_key(&mut self, key: KeyEvent, m: &Monitor) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        let page = self.page.get().max(1);
        let total = m.table.len() + m.table.finished().len();
        let jump = isize::try_from(page).unwrap_or(isize::MAX);
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Char('z') if ctrl => return Action::Suspend,
            KeyCode::Char('q' | 'Q') => return Action::Quit,
            KeyCode::Esc if self.view.help => self.view.help = false,
            KeyCode::Esc if self.view.detail.is_some() => self.view.detail = None,
            KeyCode::Char('?' | 'h' | 'H') => self.view.help = !self.view.help,
            KeyCode::Enter => self.view.toggle_detail(&m.table, m.now, &m.locals),
            KeyCode::Char('p' | 'P') => self.view.toggle_pause(&m.table, m.now, &m.locals),
            KeyCode::Char('c' | 'C') => self.view.columns = self.view.columns.next(),
            KeyCode::Char('s' | 'S') => {
                self.view.sort = self.view.sort.next();
                self.view.scroll = 0;
                self.view.selected = 0;
            }
            KeyCode::Up => self.view.move_selection(-1, total, page),
            KeyCode::Down => self.view.move_selection(1, total, page),
            KeyCode::PageUp => self.view.move_selection(-jump, total, page),
            KeyCode::PageDown => self.view.move_selection(jump, total, page),
            KeyCode::Home => self.view.move_selection(isize::MIN, total, page),
            KeyCode::End => self.view.move_selection(isize::MAX, total, page),
            _ => return Action::Nothing,
        }
        Action::Redraw
    }
}

#[cfg(test)]
mod tests;
