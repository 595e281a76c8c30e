//! The screen driven by keys and time on ratatui's TestBackend, checked with insta snapshots.

use std::time::Duration;

use insta::assert_snapshot;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

use super::{Action, App};
use crate::flow::{FlowUpdate, TcpFlags};
use crate::monitor::Monitor;
use crate::source::{SourceKind, SourceLabel};
use crate::table::{ConnectionTable, TableConfig};

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;

fn pkt(src: &str, dst: &str, ms: u64, flags: u8, seq: u32, ack: u32, len: u32) -> FlowUpdate {
    FlowUpdate::test_packet(src, dst, ms, flags, seq, ack, len)
}

/// A monitor of a live interface and the screen showing it.
pub struct Shown {
    pub m: Monitor,
    pub app: App,
}

impl Shown {
    fn new(table: ConnectionTable, now_ms: u64) -> Self {
        // A capture's kind: no listening sockets read from this host.
        let mut m = Monitor::new(
            table,
            SourceLabel::Live("libpcap on veth0".into()),
            SourceKind::Capture,
        );
        m.now = Duration::from_millis(now_ms);
        Self { m, app: App::new() }
    }

    fn tick(&mut self, now: Duration) {
        self.m.advance_to(now, self.app.view.is_paused());
    }
}

/// One connection in each state, IPv4 and IPv6, with traffic at different times.
fn every_state() -> Shown {
    let mut t = ConnectionTable::new(TableConfig::default());
    let s4 = "198.18.0.2:80";
    let s6 = "[fd00::2]:443";
    let c = |p: u16| format!("198.18.0.1:{p}");
    // SYN_SENT
    t.apply(&pkt(&c(40001), s4, 1_000, SYN, 0, 0, 0));
    // SYN|ACK-ACK
    t.apply(&pkt(&c(40002), s4, 1_000, SYN, 0, 0, 0));
    t.apply(&pkt(s4, &c(40002), 1_001, SYN | ACK, 0, 1, 0));
    // ESTABLISHED over IPv6, busy in the last second
    t.apply(&pkt("[fd00::1]:50000", s6, 1_000, SYN, 0, 0, 0));
    t.apply(&pkt(s6, "[fd00::1]:50000", 1_001, SYN | ACK, 0, 1, 0));
    t.apply(&pkt("[fd00::1]:50000", s6, 1_002, ACK, 1, 1, 0));
    for i in 0..10 {
        t.apply(&pkt(
            s6,
            "[fd00::1]:50000",
            9_000 + i * 90,
            ACK,
            1 + u32::try_from(i).expect("small") * 100_000,
            1,
            100_000,
        ));
    }
    // CLOSING
    t.apply(&pkt(&c(40004), s4, 1_000, SYN, 0, 0, 0));
    t.apply(&pkt(s4, &c(40004), 1_001, SYN | ACK, 0, 1, 0));
    t.apply(&pkt(&c(40004), s4, 1_002, FIN | ACK, 1, 1, 0));
    // CLOSED
    t.apply(&pkt(&c(40005), s4, 8_000, SYN, 0, 0, 0));
    t.apply(&pkt(s4, &c(40005), 8_001, SYN | ACK, 0, 1, 0));
    t.apply(&pkt(&c(40005), s4, 8_002, ACK, 1, 1, 3_000));
    t.apply(&pkt(&c(40005), s4, 9_500, FIN | ACK, 3_001, 1, 0));
    t.apply(&pkt(s4, &c(40005), 9_501, FIN | ACK, 1, 3_002, 0));
    t.apply(&pkt(&c(40005), s4, 9_502, ACK, 3_002, 2, 0));
    // RESET
    t.apply(&pkt(&c(40006), s4, 9_000, SYN, 0, 0, 0));
    t.apply(&pkt(s4, &c(40006), 9_001, RST | ACK, 0, 1, 0));
    Shown::new(t, 10_000)
}

/// `n` established connections, connection i having sent i KiB in the last second.
fn many(n: u16) -> Shown {
    let mut t = ConnectionTable::new(TableConfig::default());
    for i in 1..=n {
        let c = format!("198.18.1.{}:{}", i % 250, 30_000 + i);
        let s = "198.19.0.1:443";
        t.apply(&pkt(&c, s, 0, SYN, 0, 0, 0));
        t.apply(&pkt(s, &c, 1, SYN | ACK, 0, 1, 0));
        t.apply(&pkt(&c, s, 2, ACK, 1, 1, 0));
        t.apply(&pkt(s, &c, 1_500, ACK, 1, 1, u32::from(i) * 1024));
    }
    Shown::new(t, 2_000)
}

fn render(s: &mut Shown, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    terminal.draw(|f| s.app.draw(f, &s.m)).expect("draw");
    terminal.backend().to_string()
}

fn key(s: &mut Shown, code: KeyCode) -> Action {
    s.app.on_key(KeyEvent::new(code, KeyModifiers::NONE), &s.m)
}

#[test]
fn every_state_ipv4_and_ipv6_wide() {
    assert_snapshot!(render(&mut every_state(), 110, 12));
}

#[test]
fn narrow_terminal_puts_the_server_under_the_client() {
    assert_snapshot!(render(&mut every_state(), 64, 20));
}

#[test]
fn too_small_gets_a_message() {
    assert_snapshot!(render(&mut every_state(), 30, 3));
}

#[test]
fn sort_modes_cycle_with_s() {
    let mut app = every_state();
    assert_eq!(key(&mut app, KeyCode::Char('s')), Action::Redraw);
    assert_snapshot!("sorted_by_rate", render(&mut app, 110, 12));
    key(&mut app, KeyCode::Char('s'));
    assert_snapshot!("sorted_by_bytes", render(&mut app, 110, 12));
    key(&mut app, KeyCode::Char('s'));
    assert!(render(&mut app, 110, 12).contains("Sorted by RTT"));
    key(&mut app, KeyCode::Char('s'));
    assert!(render(&mut app, 110, 12).contains("Sorted by retransmits"));
    key(&mut app, KeyCode::Char('s'));
    assert!(render(&mut app, 110, 12).contains("Unsorted"));
}

#[test]
fn c_cycles_the_columns_after_a() {
    let mut app = every_state();
    let header = |app: &mut Shown| {
        render(app, 110, 12)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header(&mut app).contains("A      Speed"));
    key(&mut app, KeyCode::Char('c'));
    assert_snapshot!("columns_speeds", render(&mut app, 110, 12));
    key(&mut app, KeyCode::Char('c'));
    assert_snapshot!("columns_rtt", render(&mut app, 110, 12));
    key(&mut app, KeyCode::Char('c'));
    assert_snapshot!("columns_process", render(&mut app, 110, 12));
    key(&mut app, KeyCode::Char('c'));
    assert!(header(&mut app).contains("A      Speed"));
}

#[test]
fn pause_keeps_the_list_while_values_go_on() {
    let mut app = every_state();
    key(&mut app, KeyCode::Char('p'));
    // A new connection arrives and time passes: it is tracked, not listed; nothing expires.
    app.m
        .table
        .apply(&pkt("198.18.0.9:9", "198.18.0.2:80", 10_500, SYN, 0, 0, 0));
    app.tick(Duration::from_millis(70_000));
    assert_eq!(app.m.table.len(), 7);
    assert_snapshot!("paused", render(&mut app, 110, 12));
    key(&mut app, KeyCode::Char('p'));
    app.tick(Duration::from_millis(70_000));
    assert_snapshot!("unpaused_after_timeouts", render(&mut app, 110, 12));
}

#[test]
fn the_selection_moves_by_line_page_and_ends_and_the_window_follows() {
    let mut app = many(30);
    // 10 lines: header, 7 rows, TOTAL, status.
    render(&mut app, 90, 10);
    key(&mut app, KeyCode::Down);
    assert_snapshot!("down_one", render(&mut app, 90, 10));
    assert_eq!(selected_lines(&mut app, 90, 10), [2]);
    key(&mut app, KeyCode::PageDown);
    assert_snapshot!("page_down", render(&mut app, 90, 10));
    assert_eq!(selected_lines(&mut app, 90, 10), [7]);
    key(&mut app, KeyCode::End);
    assert_snapshot!("end", render(&mut app, 90, 10));
    assert_eq!(selected_lines(&mut app, 90, 10), [7]);
    key(&mut app, KeyCode::PageUp);
    key(&mut app, KeyCode::Up);
    assert!(render(&mut app, 90, 10).contains("Connections 22-28 of 30"));
    assert_eq!(selected_lines(&mut app, 90, 10), [1]);
    key(&mut app, KeyCode::Home);
    assert!(render(&mut app, 90, 10).contains("Connections 1-7 of 30"));
    assert_eq!(selected_lines(&mut app, 90, 10), [1]);
}

/// Which lines of the frame are drawn reversed (the selection), the status line left out.
fn selected_lines(s: &mut Shown, w: u16, h: u16) -> Vec<u16> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    terminal.draw(|f| s.app.draw(f, &s.m)).expect("draw");
    let buf = terminal.backend().buffer();
    (0..h.saturating_sub(1))
        .filter(|&y| {
            buf[(1, y)]
                .style()
                .add_modifier
                .contains(ratatui::style::Modifier::REVERSED)
        })
        .collect()
}

/// Long IPv6 addresses both ends, beside short IPv4 ones.
fn long_addresses() -> Shown {
    let mut t = ConnectionTable::new(TableConfig::default());
    let c6 = "[2001:db8:1234:5678:9abc:def0:1234:5678]:65000";
    let s6 = "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:443";
    t.apply(&pkt(c6, s6, 1_000, SYN, 0, 0, 0));
    t.apply(&pkt(s6, c6, 1_001, SYN | ACK, 0, 1, 0));
    t.apply(&pkt(c6, s6, 1_002, ACK, 1, 1, 0));
    for i in 1..=3 {
        t.apply(&pkt(
            &format!("198.18.0.1:{}", 40_000 + i),
            "198.18.0.2:80",
            1_000,
            SYN,
            0,
            0,
            0,
        ));
    }
    Shown::new(t, 2_000)
}

#[test]
fn long_ipv6_addresses_are_shortened_and_every_row_listed_at_80x24() {
    let mut app = long_addresses();
    let shown = render(&mut app, 80, 24);
    assert_snapshot!("long_ipv6_80x24", shown);
    assert!(shown.contains("Connections 1-4 of 4"), "{shown}");
    // Cut in the middle, the ports kept.
    assert!(
        shown.contains(" [2001:db…4:5678]:65000  [2001:db8…eee:ffff]:443  ESTABLISHED"),
        "{shown}"
    );
    // Wide enough, nothing is cut.
    let wide = render(&mut app, 140, 24);
    assert!(
        wide.contains("[2001:db8:1234:5678:9abc:def0:1234:5678]:65000") && !wide.contains('…'),
        "{wide}"
    );
}

#[test]
fn enter_shows_the_selected_connection_in_full() {
    let mut app = long_addresses();
    assert_eq!(key(&mut app, KeyCode::Enter), Action::Redraw);
    let shown = render(&mut app, 80, 24);
    assert_snapshot!("detail_80x24", shown);
    assert!(
        shown.contains("[2001:db8:1234:5678:9abc:def0:1234:5678]:65000")
            && shown.contains("[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:443"),
        "{shown}"
    );
    key(&mut app, KeyCode::Esc);
    assert!(!render(&mut app, 80, 24).contains("First seen"));
    // Another row's details.
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    assert!(render(&mut app, 80, 24).contains("Client      198.18.0.1:40001"));
}

#[test]
fn help_overlay_opens_and_closes() {
    let mut app = every_state();
    key(&mut app, KeyCode::Char('?'));
    assert_snapshot!("help", render(&mut app, 110, 14));
    key(&mut app, KeyCode::Esc);
    assert!(!render(&mut app, 110, 14).contains("tcptrack keys"));
    key(&mut app, KeyCode::Char('h'));
    assert!(render(&mut app, 110, 14).contains("tcptrack keys"));
}

#[test]
fn end_of_capture_is_marked() {
    let mut app = every_state();
    app.m.label = SourceLabel::File("real.pcap".into());
    app.m.ended = true;
    assert_snapshot!(render(&mut app, 110, 12));
}

#[test]
fn quit_keys() {
    let mut app = every_state();
    assert_eq!(key(&mut app, KeyCode::Char('q')), Action::Quit);
    assert_eq!(
        app.app.on_key(
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
            &app.m
        ),
        Action::Quit
    );
    assert_eq!(key(&mut app, KeyCode::Char('x')), Action::Nothing);
    assert_eq!(
        app.app.on_key(
            KeyEvent::new(KeyCode::Char('z'), KeyModifiers::CONTROL),
            &app.m
        ),
        Action::Suspend
    );
}

#[test]
fn the_end_of_a_capture_lists_every_connection_its_output_reports() {
    let mut t = ConnectionTable::new(TableConfig {
        keep_finished: true,
        ..TableConfig::default()
    });
    let (c, s) = ("198.18.0.1:40005", "198.18.0.2:80");
    t.apply(&pkt(c, s, 1_000, SYN, 0, 0, 0));
    t.apply(&pkt(s, c, 1_001, SYN | ACK, 0, 1, 0));
    t.apply(&pkt(c, s, 1_002, FIN | ACK, 1, 1, 0));
    t.apply(&pkt(s, c, 1_003, FIN | ACK, 1, 2, 0));
    t.apply(&pkt(c, s, 1_004, ACK, 2, 2, 0));
    t.apply(&pkt("198.18.0.1:40006", s, 100_000, SYN, 0, 0, 0));
    t.expire(Duration::from_secs(100));
    // The closed one left the table long before the end, kept for the report.
    assert_eq!((t.len(), t.finished().len()), (1, 1));
    let mut shown = Shown::new(t, 100_000);
    shown.m.ended = true;
    let screen = render(&mut shown, 110, 12);
    assert!(screen.contains("Connections 1-2 of 2"), "{screen}");
    assert!(
        screen.contains(" 198.18.0.1:40005       198.18.0.2:80          CLOSED"),
        "{screen}"
    );
    // Its details open as any other's.
    key(&mut shown, KeyCode::Enter);
    assert!(render(&mut shown, 110, 30).contains("Client      198.18.0.1:40005"));
}
