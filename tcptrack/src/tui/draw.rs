//! Drawing a frame: the classic layout, fitted to the terminal's real width.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::App;
use crate::format::Units;
use crate::monitor::Monitor;
use crate::output::ConnectionRecord;
use crate::source::SourceLabel;
use crate::table::Connection;
use crate::view::{Columns, RowView, Screen};

const STATE_W: usize = 11;
const IDLE_W: usize = 4;
/// The classic's width for an address column.
const ADDR_MIN_W: usize = 21;
/// Everything on a row up to A but the two address columns: margins, gaps, State, Idle, A.
const UP_TO_A_W: usize = 1 + 2 + 2 + STATE_W + 2 + IDLE_W + 1 + 1;

/// The width of the columns after A (each a space, then the cell).
fn tail_w(columns: Columns) -> usize {
    columns.heads().iter().map(|(_, w)| 1 + w).sum()
}

/// Everything on a row but the two address columns.
fn fixed_w(columns: Columns) -> usize {
    UP_TO_A_W + tail_w(columns)
}

/// Everything on a row but the one address column of the two-line layout.
fn fixed_narrow_w(columns: Columns) -> usize {
    fixed_w(columns) - 2
}

const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("p", "pause / unpause (the list stays, values go on)"),
    ("s", "sort: unsorted, by rate, bytes, RTT, retransmits"),
    (
        "c",
        "columns: speed, speed each way, RTT and retransmits, process",
    ),
    ("Up, Down", "select the row above, below"),
    ("PgUp, PgDn", "a page up, down"),
    ("Home, End", "first, last row"),
    (
        "Enter",
        "details of the selected connection, addresses in full",
    ),
    ("Ctrl-Z", "suspend (the shell's fg resumes)"),
    ("?, h, Esc", "close this help"),
];

/// The narrowest an address column is shortened to in the two-line layout.
const ADDR_SHORT_MIN_W: usize = 12;

/// How rows are laid out.
enum Layout2 {
    /// Client and server side by side, one line a connection; an address longer than its column
    /// is shortened in the middle (its port kept).
    Wide { client_w: usize, server_w: usize },
    /// Client above server in one column, two lines a connection: terminals narrower than the
    /// classic's 80 columns.
    Narrow { addr_w: usize },
}

/// The cells after the addresses; `a` is the classic's activity column (`*` when a packet came
/// in the last second), `tail` the cells of the column set `columns`, each cut to its width.
fn fixed_cells<S: AsRef<str>>(
    state: &str,
    idle: &str,
    a: char,
    tail: &[S],
    columns: Columns,
) -> String {
    let mut out = format!("{state:<STATE_W$}  {idle:>IDLE_W$} {a}");
    for (cell, (_, w)) in tail.iter().zip(columns.heads()) {
        let cell: String = cell.as_ref().chars().take(*w).collect();
        out.push_str(&format!(" {cell:>w$}"));
    }
    out
}

/// The header's cells after the addresses.
fn head_cells(columns: Columns) -> String {
    let heads: Vec<&str> = columns.heads().iter().map(|(h, _)| *h).collect();
    fixed_cells("State", "Idle", 'A', &heads, columns)
}

/// The TOTAL line, `row_w` wide.
fn total_line<S: AsRef<str>>(totals: &[S], columns: Columns, row_w: usize) -> String {
    let mut out = format!(" {:<w$}", "TOTAL", w = row_w - tail_w(columns) - 1);
    for (cell, (_, w)) in totals.iter().zip(columns.heads()) {
        out.push_str(&format!(" {:>w$}", cell.as_ref()));
    }
    out
}

/// `addr` in at most `w` columns: whole when it fits, else its host cut in the middle with an
/// ellipsis and its port kept (`[fd00:1234:…:beef:2]:443`).
fn shorten(addr: &str, w: usize) -> String {
    if addr.len() <= w {
        return addr.to_owned();
    }
    let Some(colon) = addr.rfind(':') else {
        return addr.to_owned();
    };
    let (host, port) = addr.split_at(colon);
    // Addresses are ASCII: bytes are columns.
    let keep = w.saturating_sub(port.len() + 1);
    let left = keep.div_ceil(2);
    let right = keep - left;
    let head = host.get(..left).unwrap_or(host);
    let tail = host.get(host.len().saturating_sub(right)..).unwrap_or("");
    format!("{head}…{tail}{port}")
}

/// Widths for two columns that want `a` and `b` within `room`: as wanted when they fit, else
/// the wider one gives way first, and neither gets less than half the room.
const fn split(a: usize, b: usize, room: usize) -> (usize, usize) {
    let half = room / 2;
    if a + b <= room {
        (a, b)
    } else if a <= half {
        (a, room - a)
    } else if b <= half {
        (room - b, b)
    } else {
        (half, room - half)
    }
}

fn layout_for(screen: &Screen, width: usize) -> Option<Layout2> {
    let widest = |f: fn(&RowView) -> usize| screen.rows.iter().map(f).max().unwrap_or(0);
    let room = width.saturating_sub(fixed_w(screen.columns));
    if room >= 2 * ADDR_MIN_W {
        let client = widest(|r| r.client.len()).max(ADDR_MIN_W);
        let server = widest(|r| r.server.len()).max(ADDR_MIN_W);
        let (client_w, server_w) = split(client, server, room);
        return Some(Layout2::Wide { client_w, server_w });
    }
    // Two lines: the server indented by two under its client.
    let room = width.saturating_sub(fixed_narrow_w(screen.columns));
    let addr_w = widest(|r| r.client.len().max(r.server.len() + 2))
        .max("Client".len())
        .min(room);
    (addr_w >= ADDR_SHORT_MIN_W).then_some(Layout2::Narrow { addr_w })
}

impl App {
    /// Draws the whole screen into `frame`.
    pub fn draw(&mut self, frame: &mut Frame<'_>, m: &Monitor) {
        let area = frame.area();
        m.locals_on_screen
            .set(self.view.columns.want_locals() || self.view.detail.is_some());
        let width = usize::from(area.width);
        let height = usize::from(area.height);
        // Header, at least one row, TOTAL, status.
        let wide_page = height.saturating_sub(3);
        let mut screen = self.view.screen(&m.table, m.now, wide_page, &m.locals);
        let mut layout = if wide_page == 0 {
            None
        } else {
            layout_for(&screen, width)
        };
        if matches!(layout, Some(Layout2::Narrow { .. })) {
            let narrow_page = height.saturating_sub(4) / 2;
            screen = self.view.screen(&m.table, m.now, narrow_page, &m.locals);
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
        if let Some(c) = self.view.detail(&m.table) {
            draw_detail(frame, area, m, c, self.view.units);
        }
        if self.view.help {
            draw_help(frame, area, m);
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
        out.push_str("  | ");
        out.push_str(&source_name(m));
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
        let flow_log_lost = m.flow_log_lost();
        if flow_log_lost > 0 {
            out.push_str(&format!(" | flow log lost {flow_log_lost}"));
        }
        let (_, ipfix_lost) = m.ipfix_records();
        if ipfix_lost > 0 {
            out.push_str(&format!(" | IPFIX lost {ipfix_lost}"));
        }
        if let Some(n) = &m.notice {
            out.push_str(" | ");
            out.push_str(n);
        }
        out.push_str("  | ? help");
        out
    }
}

/// Where the packets come from, as the status line and the help name it.
fn source_name(m: &Monitor) -> String {
    match &m.label {
        SourceLabel::File(f) => format!("file {f}"),
        SourceLabel::Replay(f) => format!("replay of {f}"),
        SourceLabel::Live(l) => l.clone(),
    }
}

/// The selected row stands out.
fn row_style(r: &RowView) -> Style {
    if r.selected {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new()
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
                    head_cells(screen.columns)
                ),
                bold,
            ));
            for r in &screen.rows {
                lines.push(Line::styled(
                    format!(
                        " {:<client_w$}  {:<server_w$}  {}",
                        shorten(&r.client, client_w),
                        shorten(&r.server, server_w),
                        fixed_cells(r.state, &r.idle, active(r.active), &r.tail, screen.columns)
                    ),
                    row_style(r),
                ));
            }
            total_line(
                &screen.totals,
                screen.columns,
                fixed_w(screen.columns) + client_w + server_w,
            )
        }
        Layout2::Narrow { addr_w } => {
            lines.push(Line::styled(
                format!(" {:<addr_w$}  {}", "Client", head_cells(screen.columns)),
                bold,
            ));
            lines.push(Line::styled(
                format!("   {:<w$}", "Server", w = addr_w - 2),
                bold,
            ));
            for r in &screen.rows {
                lines.push(Line::styled(
                    format!(
                        " {:<addr_w$}  {}",
                        shorten(&r.client, addr_w),
                        fixed_cells(r.state, &r.idle, active(r.active), &r.tail, screen.columns)
                    ),
                    row_style(r),
                ));
                lines.push(Line::styled(
                    format!("   {:<w$}", shorten(&r.server, addr_w - 2), w = addr_w - 2),
                    row_style(r),
                ));
            }
            total_line(
                &screen.totals,
                screen.columns,
                fixed_narrow_w(screen.columns) + addr_w,
            )
        }
    };
    (lines, total_line)
}

/// Lines of at most `w` columns, words kept whole where they fit (a longer word is cut).
fn wrap(text: &str, w: usize) -> Vec<String> {
    let w = w.max(1);
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word;
        loop {
            let sep = usize::from(!line.is_empty());
            if line.chars().count() + sep + word.chars().count() <= w {
                if sep == 1 {
                    line.push(' ');
                }
                line.push_str(word);
                break;
            }
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
                continue;
            }
            let cut = word.char_indices().nth(w).map_or(word.len(), |(i, _)| i);
            out.push(word[..cut].to_owned());
            word = &word[cut..];
        }
    }
    out.push(line);
    out
}

/// A bordered box titled `title`, centred in `area`, holding `text` (each line wrapped to the
/// box, at most `max_w` columns wide inside).
fn draw_box(frame: &mut Frame<'_>, area: Rect, title: &str, text: &[String], max_w: usize) {
    let inner_w = text
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .min(max_w)
        .min(usize::from(area.width).saturating_sub(4))
        .max(1);
    let lines: Vec<Line<'_>> = text
        .iter()
        .flat_map(|l| wrap(l, inner_w))
        .map(|l| Line::raw(format!(" {l} ")))
        .collect();
    let w = u16::try_from(inner_w + 4).unwrap_or(u16::MAX);
    let h = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let [row] = Layout::vertical([Constraint::Length(h)])
        .flex(Flex::Center)
        .areas(area);
    let [boxed] = Layout::horizontal([Constraint::Length(w)])
        .flex(Flex::Center)
        .areas(row);
    frame.render_widget(Clear, boxed);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" {title} "))),
        boxed,
    );
}

/// The keys, then where the packets come from, in full (the status line may cut it).
fn draw_help(frame: &mut Frame<'_>, area: Rect, m: &Monitor) {
    let key_w = HELP.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text: Vec<String> = HELP
        .iter()
        .map(|(k, what)| format!("{k:<key_w$}  {what}"))
        .collect();
    text.push(String::new());
    text.push(format!("Source: {}", source_name(m)));
    if let Some(n) = &m.notice {
        text.push(n.clone());
    }
    if let Some(p) = &m.processes {
        text.push(format!("Processes: {p}"));
    }
    text.extend(m.privileges.iter().flatten().cloned());
    draw_box(frame, area, "tcptrack keys", &text, 72);
}

/// Everything known of one connection, its addresses in full.
fn draw_detail(frame: &mut Frame<'_>, area: Rect, m: &Monitor, c: &Connection, units: Units) {
    let r = ConnectionRecord::new(
        c,
        m.table.config().rate,
        m.now,
        m.wall_clock(),
        m.locals.of(c),
    );
    let duration = c.last_seen().saturating_sub(c.first_seen());
    let num = |n: u64| n.to_string();
    let text = vec![
        format!("Client      {}", r.client),
        format!("Server      {}", r.server),
        format!("State       {}", r.state),
        format!(
            "Speed       {} (client {}, server {})",
            crate::format::rate(r.speed, units),
            crate::format::rate(r.client_speed, units),
            crate::format::rate(r.server_speed, units)
        ),
        format!(
            "RTT         {}",
            r.rtt_us
                .map_or_else(|| "unknown".to_owned(), crate::format::micros)
        ),
        format!(
            "Retransmits client {}, server {}",
            r.client_retransmits
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
            r.server_retransmits
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string())
        ),
        match (&r.pid, &r.process) {
            (Some(pid), Some(p)) => format!(
                "Process     {p} (pid {pid}{})",
                r.cgroup
                    .as_ref()
                    .map_or_else(String::new, |c| format!(", cgroup {c}"))
            ),
            _ => "Process     - (not a socket of this host, or not seen yet)".to_owned(),
        },
        format!("Idle        {:.3} s", r.idle),
        format!("First seen  {}", r.first_seen),
        format!("Last seen   {}", r.last_seen),
        format!("Duration    {:.3} s", duration.as_secs_f64()),
        String::new(),
        format!(
            "{:<12}{:>14}{:>14}{:>10}",
            "Sent by", "payload", "on the wire", "packets"
        ),
        format!(
            "{:<12}{:>14}{:>14}{:>10}",
            "client",
            num(r.client_payload_bytes),
            num(r.client_bytes),
            num(r.client_packets)
        ),
        format!(
            "{:<12}{:>14}{:>14}{:>10}",
            "server",
            num(r.server_payload_bytes),
            num(r.server_bytes),
            num(r.server_packets)
        ),
        format!(
            "{:<12}{:>14}{:>14}{:>10}",
            "both",
            num(r.payload_bytes),
            num(r.bytes),
            num(r.packets)
        ),
        String::new(),
        "Payload is TCP data; on the wire, whole frames. Esc or Enter closes.".to_owned(),
    ];
    draw_box(frame, area, "connection", &text, 72);
}
