//! Drawing a frame: the classic layout, fitted to the terminal's real width.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::App;
use crate::monitor::Monitor;
use crate::source::SourceLabel;
use crate::view::Screen;

const STATE_W: usize = 11;
const IDLE_W: usize = 4;
const SPEED_W: usize = 10;
/// The classic's width for an address column.
const ADDR_MIN_W: usize = 21;
/// Everything on a row but the two address columns: margins, gaps, State, Idle, A, Speed.
const FIXED_W: usize = 1 + 2 + 2 + STATE_W + 2 + IDLE_W + 1 + 1 + 1 + SPEED_W;
/// Everything on a row but the one address column of the two-line layout.
const FIXED_NARROW_W: usize = FIXED_W - 2;

const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("p", "pause / unpause (the list stays, values go on)"),
    ("s", "sort: unsorted, by rate, by total bytes"),
    ("Up, Down", "scroll a line"),
    ("PgUp, PgDn", "scroll a page"),
    ("Home, End", "first, last page"),
    ("?, h, Esc", "close this help"),
];

/// How rows are laid out.
enum Layout2 {
    /// Client and server side by side, one line a connection.
    Wide { client_w: usize, server_w: usize },
    /// Client above server in one column, two lines a connection (narrow terminals, long IPv6
    /// addresses): no address is ever cut.
    Narrow { addr_w: usize },
}

/// The cells after the addresses; `a` is the classic's activity column (`*` when a packet came
/// in the last second).
fn fixed_cells(state: &str, idle: &str, a: char, speed: &str) -> String {
    format!("{state:<STATE_W$}  {idle:>IDLE_W$} {a} {speed:>SPEED_W$}")
}

fn layout_for(screen: &Screen, width: usize) -> Option<Layout2> {
    let client_w = screen
        .rows
        .iter()
        .map(|r| r.client.len())
        .max()
        .unwrap_or(0)
        .max(ADDR_MIN_W);
    let server_w = screen
        .rows
        .iter()
        .map(|r| r.server.len())
        .max()
        .unwrap_or(0)
        .max(ADDR_MIN_W);
    if FIXED_W + client_w + server_w <= width {
        return Some(Layout2::Wide { client_w, server_w });
    }
    // Two lines: the server indented by two under its client.
    let addr_w = screen
        .rows
        .iter()
        .map(|r| r.client.len().max(r.server.len() + 2))
        .max()
        .unwrap_or(0)
        .max("Client".len());
    (FIXED_NARROW_W + addr_w <= width).then_some(Layout2::Narrow { addr_w })
}

impl App {
    /// Draws the whole screen into `frame`.
    pub fn draw(&mut self, frame: &mut Frame<'_>, m: &Monitor) {
        let area = frame.area();
        let width = usize::from(area.width);
        let height = usize::from(area.height);
        // Header, at least one row, TOTAL, status.
        let wide_page = height.saturating_sub(3);
        let mut screen = self.view.screen(&m.table, m.now, wide_page);
        let mut layout = if wide_page == 0 {
            None
        } else {
            layout_for(&screen, width)
        };
        if matches!(layout, Some(Layout2::Narrow { .. })) {
            let narrow_page = height.saturating_sub(4) / 2;
            screen = self.view.screen(&m.table, m.now, narrow_page);
            layout = if narrow_page == 0 {
                None
            } else {
                layout_for(&screen, width)
            };
            if matches!(layout, Some(Layout2::Wide { .. })) {
                layout = None;
            }
        }
        let Some(layout) = layout else {
            self.page.set(1);
            let msg = format!(
                "Terminal too small ({}x{}): make it larger, or q to quit",
                area.width, area.height
            );
            frame.render_widget(
                Paragraph::new(msg).wrap(ratatui::widgets::Wrap { trim: true }),
                area,
            );
            return;
        };

        let bold = Style::new().add_modifier(Modifier::BOLD);
        self.page.set(match layout {
            Layout2::Wide { .. } => wide_page,
            Layout2::Narrow { .. } => height.saturating_sub(4) / 2,
        });
        let (lines, total_line) = table_lines(&layout, &screen, bold);
        let rows_area = Rect {
            height: area.height.saturating_sub(2),
            ..area
        };
        frame.render_widget(Paragraph::new(lines), rows_area);
        let total_area = Rect {
            y: area.bottom().saturating_sub(2),
            height: 1,
            ..area
        };
        frame.render_widget(Paragraph::new(Line::styled(total_line, bold)), total_area);
        let status_area = Rect {
            y: area.bottom().saturating_sub(1),
            height: 1,
            ..area
        };
        frame.render_widget(
            Paragraph::new(Self::status(&screen, m))
                .style(Style::new().add_modifier(Modifier::REVERSED)),
            status_area,
        );
        if self.view.help {
            draw_help(frame, area);
        }
    }

    fn status(s: &Screen, m: &Monitor) -> String {
        let mut out = format!(
            " Connections {}-{} of {}  {}  {}",
            s.first,
            s.last,
            s.total,
            if s.paused { "Paused" } else { "Unpaused" },
            s.sort.label()
        );
        let source = match &m.label {
            SourceLabel::File(f) => format!("file {f}"),
            SourceLabel::Replay(f) => format!("replay of {f}"),
            SourceLabel::Live(l) => l.clone(),
        };
        out.push_str("  | ");
        out.push_str(&source);
        if m.ended {
            out.push_str(": end of capture (q quits)");
        }
        let evicted = m.table.stats().unanswered_evicted;
        if m.dropped > 0 {
            out.push_str(&format!(" | dropped {}", m.dropped));
        }
        if let Some(k) = m.kernel {
            if k.uncounted > 0 {
                out.push_str(&format!(" | uncounted (map full) {}", k.uncounted));
            }
            if k.events_lost > 0 {
                out.push_str(&format!(" | events lost {}", k.events_lost));
            }
        }
        if evicted > 0 {
            out.push_str(&format!(" | one-way flows forgotten {evicted}"));
        }
        if let Some(n) = &m.notice {
            out.push_str(" | ");
            out.push_str(n);
        }
        out.push_str("  | ? help");
        out
    }
}

/// The header and the rows of `screen` in `layout`, and the TOTAL line.
fn table_lines(layout: &Layout2, screen: &Screen, bold: Style) -> (Vec<Line<'static>>, String) {
    let mut lines: Vec<Line<'static>> = Vec::with_capacity(screen.rows.len() * 2 + 2);
    let active = |on: bool| if on { '*' } else { ' ' };
    let total_line = match *layout {
        Layout2::Wide { client_w, server_w } => {
            lines.push(Line::styled(
                format!(
                    " {:<client_w$}  {:<server_w$}  {}",
                    "Client",
                    "Server",
                    fixed_cells("State", "Idle", 'A', "Speed")
                ),
                bold,
            ));
            for r in &screen.rows {
                lines.push(Line::raw(format!(
                    " {:<client_w$}  {:<server_w$}  {}",
                    r.client,
                    r.server,
                    fixed_cells(r.state, &r.idle, active(r.active), &r.speed)
                )));
            }
            format!(
                " {:<w$}{:>SPEED_W$}",
                "TOTAL",
                screen.total_speed,
                w = FIXED_W - 1 - SPEED_W + client_w + server_w
            )
        }
        Layout2::Narrow { addr_w } => {
            lines.push(Line::styled(
                format!(
                    " {:<addr_w$}  {}",
                    "Client",
                    fixed_cells("State", "Idle", 'A', "Speed")
                ),
                bold,
            ));
            lines.push(Line::styled(
                format!("   {:<w$}", "Server", w = addr_w - 2),
                bold,
            ));
            for r in &screen.rows {
                lines.push(Line::raw(format!(
                    " {:<addr_w$}  {}",
                    r.client,
                    fixed_cells(r.state, &r.idle, active(r.active), &r.speed)
                )));
                lines.push(Line::raw(format!("   {}", r.server)));
            }
            format!(
                " {:<w$}{:>SPEED_W$}",
                "TOTAL",
                screen.total_speed,
                w = FIXED_NARROW_W - 1 - SPEED_W + addr_w
            )
        }
    };
    (lines, total_line)
}

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let key_w = HELP.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, what)| Line::raw(format!(" {k:<key_w$}  {what} ")))
        .collect();
    let w = u16::try_from(lines.iter().map(Line::width).max().unwrap_or(0) + 2).unwrap_or(u16::MAX);
    let h = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let [row] = Layout::vertical([Constraint::Length(h)])
        .flex(Flex::Center)
        .areas(area);
    let [boxed] = Layout::horizontal([Constraint::Length(w)])
        .flex(Flex::Center)
        .areas(row);
    frame.render_widget(Clear, boxed);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" tcptrack keys ")),
        boxed,
    );
}
