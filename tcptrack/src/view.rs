//! What the screen shows, made from the table without drawing anything: order, pause, paging
//! and formatted cells. Pause lives here, not in the table: the table keeps counting.

use crate::flow::{FlowKey, Timestamp};
use crate::format;
use crate::monitor::locals::Locals;
use crate::output::Extra;
use crate::table::{Connection, ConnectionTable};

/// Which columns follow Client, Server, State, Idle and A; `c` cycles through them, `--columns`
/// picks the first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Columns {
    /// The classic's Speed, both ways.
    #[default]
    Classic,
    /// The speed each way: what the client sends, what the server sends.
    Speeds,
    /// The round-trip time and the retransmissions each way (client/server).
    Rtt,
    /// The process holding this host's end: its pid and command.
    Process,
}

impl Columns {
    /// The next set, as `c` cycles.
    #[must_use]
    pub const fn next(self) -> Self {
        match self {
            Self::Classic => Self::Speeds,
            Self::Speeds => Self::Rtt,
            Self::Rtt => Self::Process,
            Self::Process => Self::Classic,
        }
    }

    /// The columns' headers and widths.
    #[must_use]
    pub const fn heads(self) -> &'static [(&'static str, usize)] {
        match self {
            Self::Classic => &[("Speed", 10)],
            Self::Speeds => &[("Client>", 10), ("Server>", 10)],
            Self::Rtt => &[("RTT", 9), ("Retrans", 11)],
            Self::Process => &[("PID", 7), ("Process", 15)],
        }
    }

    /// Whether they need this host's sockets read (RTT, retransmissions and process of its own
    /// connections come from its kernel).
    #[must_use]
    pub const fn want_locals(self) -> bool {
        matches!(self, Self::Rtt | Self::Process)
    }

    /// The cells of a connection that sends `speeds` (client's, server's) and of which `e` is
    /// known beyond its counts.
    fn cells(self, [client, server]: [u64; 2], e: &Extra, units: format::Units) -> Vec<String> {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        match self {
            Self::Classic => vec![format::rate(client.saturating_add(server), units)],
            Self::Speeds => vec![format::rate(client, units), format::rate(server, units)],
            Self::Rtt => vec![
                or_dash(e.rtt_us.map(format::micros)),
                format!(
                    "{}/{}",
                    or_dash(e.client_retransmits.map(|n| n.to_string())),
                    or_dash(e.server_retransmits.map(|n| n.to_string()))
                ),
            ],
            Self::Process => vec![
                or_dash(e.pid.map(|p| p.to_string())),
                or_dash(e.process.clone()),
            ],
        }
    }
}

/// How rows are ordered; `s` cycles through them in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortMode {
    /// First seen first (a stable order).
    #[default]
    Unsorted,
    /// Fastest first.
    Rate,
    /// Most payload bytes (both directions) first.
    Bytes,
    /// Longest round trip first (unknown last).
    Rtt,
    /// Most retransmissions (both directions) first.
    Retransmits,
}

impl SortMode {
    /// The next mode, as `s` cycles.
    #[must_use]
    pub const fn next(self) -> Self {
        match self {
            Self::Unsorted => Self::Rate,
            Self::Rate => Self::Bytes,
            Self::Bytes => Self::Rtt,
            Self::Rtt => Self::Retransmits,
            Self::Retransmits => Self::Unsorted,
        }
    }

    /// The name in the status line.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Unsorted => "Unsorted",
            Self::Rate => "Sorted by rate",
            Self::Bytes => "Sorted by bytes",
            Self::Rtt => "Sorted by RTT",
            Self::Retransmits => "Sorted by retransmits",
        }
    }
}

/// What the user chose to see: sort, pause, the selected row and scroll position, help, the
/// details of one connection.
#[derive(Clone, Debug, Default)]
pub struct ViewState {
    pub sort: SortMode,
    /// While paused: the connections listed when the pause began, in their order.
    frozen: Option<Vec<u64>>,
    /// Index of the first row shown.
    pub scroll: usize,
    /// Index of the selected row (always within the window shown).
    pub selected: usize,
    /// The connection whose details are shown (it stays the same one while the list moves).
    pub detail: Option<(FlowKey, u64)>,
    /// The help overlay is up.
    pub help: bool,
    /// How speeds are written.
    pub units: format::Units,
    /// The columns after A.
    pub columns: Columns,
}

/// One connection's cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowView {
    pub client: String,
    pub server: String,
    pub state: &'static str,
    pub idle: String,
    /// A packet in the last second (the classic's `A` column).
    pub active: bool,
    /// The cells of the column set after A.
    pub tail: Vec<String>,
    /// The row is the selected one.
    pub selected: bool,
}

/// A screenful: the rows in the window and the lines around them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Screen {
    pub rows: Vec<RowView>,
    /// Connections listed in all (not only in the window).
    pub total: usize,
    /// 1-based index of the first row in the window (0 when there is none).
    pub first: usize,
    /// 1-based index of the last row in the window.
    pub last: usize,
    /// The TOTAL row's cells of the column set (speeds summed over every listed connection).
    pub totals: Vec<String>,
    pub columns: Columns,
    pub paused: bool,
    pub sort: SortMode,
}

impl ViewState {
    #[must_use]
    pub const fn is_paused(&self) -> bool {
        self.frozen.is_some()
    }

    /// Pauses (freezing which connections are listed, and their order) or unpauses (the view
    /// catches up at once).
    pub fn toggle_pause(&mut self, table: &ConnectionTable, now: Timestamp, locals: &Locals) {
        self.frozen = match self.frozen {
            Some(_) => None,
            None => Some(
                self.ordered(table, now, locals)
                    .iter()
                    .map(|c| c.id())
                    .collect(),
            ),
        };
    }

    /// The listed connections, in display order: those in the table, and those a capture read
    /// whole has seen end (the table keeps them for its report: the screen lists what the
    /// output does).
    #[must_use]
    pub fn ordered<'t>(
        &self,
        table: &'t ConnectionTable,
        now: Timestamp,
        locals: &Locals,
    ) -> Vec<&'t Connection> {
        let listed = || table.connections().chain(table.finished());
        if let Some(frozen) = &self.frozen {
            let by_id: hashbrown::HashMap<u64, &Connection> =
                listed().map(|c| (c.id(), c)).collect();
            return frozen
                .iter()
                .filter_map(|id| by_id.get(id).copied())
                .collect();
        }
        let rate = table.config().rate;
        let mut v: Vec<&Connection> = listed().collect();
        match self.sort {
            SortMode::Unsorted => v.sort_unstable_by_key(|c| c.id()),
            SortMode::Rate => {
                let mut keyed: Vec<_> = v.into_iter().map(|c| (c.speed(rate, now), c)).collect();
                keyed.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.id().cmp(&b.1.id())));
                v = keyed.into_iter().map(|(_, c)| c).collect();
            }
            SortMode::Bytes => v.sort_unstable_by(|a, b| {
                b.total()
                    .payload_bytes
                    .cmp(&a.total().payload_bytes)
                    .then(a.id().cmp(&b.id()))
            }),
            SortMode::Rtt | SortMode::Retransmits => {
                let key = |c: &Connection| {
                    let e = Extra::new(c, locals.of(c));
                    match self.sort {
                        SortMode::Rtt => e.rtt_us.map(u64::from),
                        _ => match (e.client_retransmits, e.server_retransmits) {
                            (None, None) => None,
                            (a, b) => Some(u64::from(a.unwrap_or(0)) + u64::from(b.unwrap_or(0))),
                        },
                    }
                };
                let mut keyed: Vec<_> = v.into_iter().map(|c| (key(c), c)).collect();
                // Highest first, unknown last; first seen first among equals.
                keyed.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.id().cmp(&b.1.id())));
                v = keyed.into_iter().map(|(_, c)| c).collect();
            }
        }
        v
    }

    /// Moves the selection by `delta` rows, within `total` rows shown `page` at a time; the
    /// window follows it.
    pub fn move_selection(&mut self, delta: isize, total: usize, page: usize) {
        self.selected = self
            .selected
            .saturating_add_signed(delta)
            .min(total.saturating_sub(1));
        self.follow_selection(total, page);
    }

    /// Moves the window so that the selection is in it, and the selection into the list.
    fn follow_selection(&mut self, total: usize, page: usize) {
        let page = page.max(1);
        self.selected = self.selected.min(total.saturating_sub(1));
        if self.selected < self.scroll {
            self.scroll = self.selected;
        } else if self.selected >= self.scroll + page {
            self.scroll = self.selected + 1 - page;
        }
        self.scroll = self.scroll.min(total.saturating_sub(page));
    }

    /// Opens the details of the selected connection, or closes them.
    pub fn toggle_detail(&mut self, table: &ConnectionTable, now: Timestamp, locals: &Locals) {
        self.detail = match self.detail {
            Some(_) => None,
            None => self
                .ordered(table, now, locals)
                .get(self.selected)
                .map(|c| (c.key(), c.id())),
        };
    }

    /// The connection whose details are open, while it is listed.
    #[must_use]
    pub fn detail<'t>(&self, table: &'t ConnectionTable) -> Option<&'t Connection> {
        let (key, id) = self.detail?;
        table
            .get(&key)
            .filter(|c| c.id() == id)
            .or_else(|| table.finished().iter().find(|c| c.id() == id))
    }

    /// The listed connections' count, the window's connections (`page` from the scroll
    /// position, after the selection is followed), and the speeds summed each way over every
    /// listed connection. The default order and the order by rate are walked from the table's
    /// order and its list of moving connections (a table kept for listing): a refresh then
    /// costs the window and what moves, not every connection listed. Other orders, a pause, and
    /// a capture's finished connections order every connection.
    fn window<'t>(
        &mut self,
        table: &'t ConnectionTable,
        now: Timestamp,
        page: usize,
        locals: &Locals,
    ) -> (usize, Vec<&'t Connection>, [u64; 2]) {
        let rate = table.config().rate;
        let sum = |conns: &mut dyn Iterator<Item = &Connection>| {
            conns.fold([0u64; 2], |[a, b], c| {
                let [x, y] = c.speeds(rate, now);
                [a.saturating_add(x), b.saturating_add(y)]
            })
        };
        let walkable = self.frozen.is_none() && table.finished().is_empty();
        match (walkable, self.sort, table.moving()) {
            (true, SortMode::Unsorted, Some(mut moving)) => {
                let total = table.len();
                self.follow_selection(total, page);
                let window = table.in_order_from(self.scroll).take(page).collect();
                (total, window, sum(&mut moving))
            }
            (true, SortMode::Rate, Some(moving)) => {
                // Those with a speed, fastest first; then every other one, first seen first.
                let mut fast: Vec<(u64, u64, &Connection)> = moving
                    .map(|c| (c.speed(rate, now), c.id(), c))
                    .filter(|&(speed, _, _)| speed > 0)
                    .collect();
                fast.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                let total = table.len();
                self.follow_selection(total, page);
                let ids: hashbrown::HashSet<u64> = fast.iter().map(|&(_, id, _)| id).collect();
                let mut window: Vec<&Connection> = fast
                    .iter()
                    .skip(self.scroll)
                    .take(page)
                    .map(|&(_, _, c)| c)
                    .collect();
                let rest = page - window.len();
                window.extend(
                    table
                        .in_order_without(&ids)
                        .skip(self.scroll.saturating_sub(fast.len()))
                        .take(rest)
                        .map(|(_, slot)| table.at(slot)),
                );
                let sums = sum(&mut fast.iter().map(|&(_, _, c)| c));
                (total, window, sums)
            }
            _ => {
                let ordered = self.ordered(table, now, locals);
                let total = ordered.len();
                self.follow_selection(total, page);
                let sums = sum(&mut ordered.iter().copied());
                let window = ordered.into_iter().skip(self.scroll).take(page).collect();
                (total, window, sums)
            }
        }
    }

    /// Makes a screenful of `page` rows.
    #[must_use]
    pub fn screen(
        &mut self,
        table: &ConnectionTable,
        now: Timestamp,
        page: usize,
        locals: &Locals,
    ) -> Screen {
        let rate = table.config().rate;
        let (total, window, sums) = self.window(table, now, page, locals);
        let rows: Vec<RowView> = window
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let idle = c.idle(now);
                RowView {
                    client: c.client().to_string(),
                    server: c.server().to_string(),
                    state: c.state().name(),
                    idle: format::idle(idle),
                    active: idle.as_secs() < 1,
                    tail: self.columns.cells(
                        c.speeds(rate, now),
                        &Extra::new(c, locals.of(c)),
                        self.units,
                    ),
                    selected: self.scroll + i == self.selected,
                }
            })
            .collect();
        let sum = |i: usize| sums[i];
        let totals = match self.columns {
            Columns::Classic => vec![format::rate(sum(0).saturating_add(sum(1)), self.units)],
            Columns::Speeds => vec![
                format::rate(sum(0), self.units),
                format::rate(sum(1), self.units),
            ],
            Columns::Rtt | Columns::Process => vec![String::new(), String::new()],
        };
        Screen {
            first: if rows.is_empty() { 0 } else { self.scroll + 1 },
            last: self.scroll + rows.len(),
            rows,
            total,
            totals,
            columns: self.columns,
            paused: self.is_paused(),
            sort: self.sort,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowUpdate, TcpFlags};
    use crate::table::TableConfig;
    use std::time::Duration;

    fn pkt(src: &str, dst: &str, ms: u64, flags: u8, len: u32) -> FlowUpdate {
        FlowUpdate::test_packet(src, dst, ms, flags, 0, 0, len)
    }

    /// Three connections: port 1 slow and big, port 2 fast in the last second, port 3 idle.
    fn table() -> ConnectionTable {
        let mut t = ConnectionTable::new(TableConfig::default());
        let s = "198.18.0.2:80";
        for (c, _) in [
            ("198.18.0.1:1", 0),
            ("198.18.0.1:2", 0),
            ("198.18.0.1:3", 0),
        ] {
            t.apply(&pkt(c, s, 0, TcpFlags::SYN, 0));
        }
        t.apply(&pkt("198.18.0.1:1", s, 100, TcpFlags::ACK, 50_000));
        t.apply(&pkt("198.18.0.1:2", s, 1_500, TcpFlags::ACK, 3_000));
        t
    }

    fn ports(v: &ViewState, t: &ConnectionTable, now: u64) -> Vec<u16> {
        v.ordered(t, Duration::from_millis(now), &Locals::default())
            .iter()
            .map(|c| c.client().port())
            .collect()
    }

    #[test]
    fn sort_cycles_unsorted_rate_bytes() {
        let t = table();
        let mut v = ViewState::default();
        assert_eq!(ports(&v, &t, 2_000), [1, 2, 3]);
        v.sort = v.sort.next();
        assert_eq!(v.sort, SortMode::Rate);
        assert_eq!(ports(&v, &t, 2_000), [2, 1, 3]);
        v.sort = v.sort.next();
        assert_eq!(ports(&v, &t, 2_000), [1, 2, 3]);
        assert_eq!(v.sort, SortMode::Bytes);
        v.sort = v.sort.next();
        assert_eq!(v.sort, SortMode::Rtt);
        v.sort = v.sort.next();
        assert_eq!(v.sort, SortMode::Retransmits);
        v.sort = v.sort.next();
        assert_eq!(v.sort, SortMode::Unsorted);
    }

    #[test]
    fn pause_freezes_membership_and_order_but_not_values() {
        let mut t = table();
        let mut v = ViewState {
            sort: SortMode::Rate,
            ..ViewState::default()
        };
        v.toggle_pause(&t, Duration::from_millis(2_000), &Locals::default());
        // New traffic would reorder and a new connection would appear: neither does.
        t.apply(&pkt(
            "198.18.0.1:3",
            "198.18.0.2:80",
            2_100,
            TcpFlags::ACK,
            900_000,
        ));
        t.apply(&pkt(
            "198.18.0.1:4",
            "198.18.0.2:80",
            2_200,
            TcpFlags::SYN,
            0,
        ));
        let s = v.screen(&t, Duration::from_millis(3_000), 10, &Locals::default());
        assert!(s.paused);
        let shown: Vec<_> = s.rows.iter().map(|r| r.client.as_str()).collect();
        assert_eq!(shown, ["198.18.0.1:2", "198.18.0.1:1", "198.18.0.1:3"]);
        // Values keep updating.
        assert_eq!(s.rows[2].tail, ["878 KB/s"]);
        // Unpausing catches up at once.
        v.toggle_pause(&t, Duration::from_millis(3_000), &Locals::default());
        assert_eq!(ports(&v, &t, 3_000), [3, 1, 2, 4]);
    }

    #[test]
    fn the_window_follows_the_selection_within_the_list() {
        let t = table();
        let mut v = ViewState::default();
        // Two rows shown of three: the first move stays in the window.
        v.move_selection(1, 3, 2);
        assert_eq!((v.selected, v.scroll), (1, 0));
        v.move_selection(1, 3, 2);
        assert_eq!((v.selected, v.scroll), (2, 1));
        v.move_selection(5, 3, 2);
        assert_eq!((v.selected, v.scroll), (2, 1));
        let s = v.screen(&t, Duration::from_millis(2_000), 2, &Locals::default());
        assert_eq!((s.first, s.last, s.total), (2, 3, 3));
        assert_eq!(
            s.rows.iter().map(|r| r.selected).collect::<Vec<_>>(),
            [false, true]
        );
        v.move_selection(-9, 3, 2);
        assert_eq!((v.selected, v.scroll), (0, 0));
        // A taller window pulls the scroll back; a shorter list pulls the selection in.
        v.selected = 2;
        v.scroll = 2;
        let s = v.screen(&t, Duration::from_millis(2_000), 10, &Locals::default());
        assert_eq!((s.first, s.last), (1, 3));
        v.selected = 7;
        let s = v.screen(&t, Duration::from_millis(2_000), 10, &Locals::default());
        assert!(s.rows[2].selected);
    }

    #[test]
    fn details_follow_their_connection_until_it_goes() {
        let mut t = table();
        let mut v = ViewState::default();
        let shown = |v: &ViewState, t: &ConnectionTable| v.detail(t).map(|c| c.client().port());
        v.move_selection(1, 3, 10);
        v.toggle_detail(&t, Duration::from_millis(2_000), &Locals::default());
        assert_eq!(shown(&v, &t), Some(2));
        // Sorted otherwise, or another row selected, the details stay with their connection.
        v.sort = SortMode::Bytes;
        v.move_selection(1, 3, 10);
        assert_eq!(shown(&v, &t), Some(2));
        v.toggle_detail(&t, Duration::from_millis(2_000), &Locals::default());
        assert_eq!(v.detail, None);
        // Port 3 only ever sent a SYN: it times out, and its details with it.
        v.sort = SortMode::Unsorted;
        v.toggle_detail(&t, Duration::from_millis(2_000), &Locals::default());
        assert_eq!(shown(&v, &t), Some(3));
        t.expire(Duration::from_secs(100_000));
        assert_eq!(shown(&v, &t), None);
    }

    #[test]
    fn rows_are_formatted_and_totals_summed() {
        let t = table();
        let mut v = ViewState::default();
        let s = v.screen(&t, Duration::from_millis(2_000), 10, &Locals::default());
        assert_eq!(s.totals, ["2.92 KB/s"]);
        let r = &s.rows[1];
        assert_eq!(
            (r.client.as_str(), r.server.as_str()),
            ("198.18.0.1:2", "198.18.0.2:80")
        );
        assert_eq!(
            (r.state, r.idle.as_str(), r.active, r.tail.as_slice()),
            ("SYN_SENT", "0s", true, ["2.92 KB/s".to_owned()].as_slice())
        );
        assert!(!s.rows[2].active);
    }
}
