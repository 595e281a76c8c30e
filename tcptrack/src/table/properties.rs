//! Properties of the table over random packet sequences of a few random connections (proptest):
//! what it counts, how states move, and that nothing panics. Shrunk failures are kept in
//! `proptest-regressions/table/properties.txt` and run first.
//!
//! - Counts: payload bytes and packets per direction, summed over every connection the table
//!   shows or has finished (`keep_finished`), equal those of the input, less exactly what the
//!   table deliberately leaves out ([`Model`]).
//! - States: between one event and the next, each connection stays as it is or moves as
//!   SPEC.md's transitions allow for that packet ([`allowed`]); connections appear only from a
//!   bare SYN or an answered one-way flow, and leave only by expiry or a new handshake on a
//!   closed or reset tuple.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::flow::TcpFlags;
use crate::rate::RateConfig;

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;

/// Endpoints of the connections: two hosts with two ports each (one host's two ports talk to
/// each other too), and two IPv6 hosts on one port.
const ENDPOINTS: [&str; 6] = [
    "198.18.0.1:40000",
    "198.18.0.2:80",
    "198.18.0.1:80",
    "198.18.0.2:40000",
    "[fd00::1]:443",
    "[fd00::2]:443",
];

/// The connections packets go between (indexes into [`ENDPOINTS`]).
const PAIRS: [(usize, usize); 6] = [(0, 1), (0, 2), (3, 1), (2, 3), (0, 3), (4, 5)];

/// One thing that happens to the table.
#[derive(Clone, Debug)]
enum Event {
    /// A packet `gap_ms` after the previous event, on connection `pair`, from its second
    /// endpoint when `reply`.
    Packet {
        gap_ms: u64,
        pair: usize,
        reply: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        len: u32,
    },
    /// The monitor forgets what is due, `gap_ms` after the previous event.
    Expire { gap_ms: u64 },
}

fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![6 => 0u64..50, 2 => 0u64..5_000, 1 => 0u64..80_000]
}

/// Flags of every combination, the usual ones most often, RST seldom enough that connections
/// live to close.
fn flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => Just(ACK),
        2 => Just(SYN),
        2 => Just(SYN | ACK),
        3 => Just(FIN | ACK),
        1 => Just(FIN),
        1 => prop_oneof![Just(RST), Just(RST | ACK)],
        1 => 0u8..32,
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let packet = (
        gap(),
        // One connection busier than the others, so that it lives through more of its life.
        prop_oneof![2 => Just(0), 3 => 0..PAIRS.len()],
        any::<bool>(),
        flags(),
        // Small sequence and ACK numbers and payloads, so that ACKs often acknowledge a FIN.
        0u32..3,
        prop_oneof![4 => 0u32..6, 1 => any::<u32>()],
        prop_oneof![3 => 0u32..3, 1 => 0u32..1500],
    )
        .prop_map(
            |(gap_ms, pair, reply, flags, seq, ack, len)| Event::Packet {
                gap_ms,
                pair,
                reply,
                flags,
                seq,
                ack,
                len,
            },
        );
    prop_oneof![12 => packet, 1 => gap().prop_map(|gap_ms| Event::Expire { gap_ms })]
}

fn config() -> impl Strategy<Value = TableConfig> {
    (
        any::<bool>(),
        0u64..5_000,
        1_000u64..40_000,
        1_000u64..70_000,
        proptest::option::of(1_000u64..100_000),
        1usize..5,
        any::<bool>(),
    )
        .prop_map(
            |(midstream, linger, handshake, closing, idle, unanswered, fast)| TableConfig {
                detect_midstream: midstream,
                closed_linger: Duration::from_millis(linger),
                handshake_timeout: Duration::from_millis(handshake),
                closing_timeout: Duration::from_millis(closing),
                idle_timeout: idle.map(Duration::from_millis),
                rate: if fast {
                    RateConfig::FAST
                } else {
                    RateConfig::CLASSIC
                },
                max_unanswered: unanswered,
                keep_finished: true,
                report_ended: false,
                listing: fast,
            },
        )
}

/// Payload bytes and packets per direction (sender, receiver).
type Sums = BTreeMap<(SocketAddr, SocketAddr), (u64, u64)>;

fn add(sums: &mut Sums, from: (SocketAddr, SocketAddr), payload: u64, packets: u64) {
    let s = sums.entry(from).or_default();
    s.0 += payload;
    s.1 += packets;
}

/// What the table knows of a tuple, as far as counting goes.
#[derive(Debug)]
enum Entry {
    /// A one-way flow (not shown): its packets count only if it is answered.
    OneWay {
        client: SocketAddr,
        /// When it was opened, among one-way flows (the oldest is forgotten first).
        opened: u64,
        last_seen_ns: u64,
        pending: Sums,
    },
    /// A connection the table shows (or will keep when it finishes).
    Shown,
}

/// What the table must have counted: every packet, less those it leaves out by design, which
/// are: a packet of no connection that is not a bare SYN (or, with mid-stream pickup, not a
/// plain packet); the packets of a one-way flow never answered (forgotten beyond
/// `max_unanswered`, at its handshake timeout, or when a bare SYN restarts its tuple); a SYN,
/// FIN or RST answering a one-way flow.
struct Model {
    cfg: TableConfig,
    entries: HashMap<FlowKey, Entry>,
    counted: Sums,
    opened: u64,
}

impl Model {
    fn new(cfg: TableConfig) -> Self {
        Self {
            cfg,
            entries: HashMap::new(),
            counted: Sums::new(),
            opened: 0,
        }
    }

    fn apply(&mut self, u: &FlowUpdate) {
        let key = FlowKey::new(u.src, u.dst).0;
        let at = ns(u.ts);
        let dir = (u.src, u.dst);
        match self.entries.get_mut(&key) {
            // A bare SYN opens a connection, over a one-way flow too (whose packets are lost).
            _ if u.flags.bare_syn() => {
                self.entries.insert(key, Entry::Shown);
                add(&mut self.counted, dir, u.payload_bytes, u.packets);
            }
            Some(Entry::Shown) => add(&mut self.counted, dir, u.payload_bytes, u.packets),
            Some(Entry::OneWay {
                client,
                last_seen_ns,
                pending,
                ..
            }) => {
                if u.src == *client {
                    add(pending, dir, u.payload_bytes, u.packets);
                    *last_seen_ns = (*last_seen_ns).max(at);
                } else if u.flags.plain() {
                    for (d, (payload, packets)) in std::mem::take(pending) {
                        add(&mut self.counted, d, payload, packets);
                    }
                    add(&mut self.counted, dir, u.payload_bytes, u.packets);
                    self.entries.insert(key, Entry::Shown);
                }
            }
            None if self.cfg.detect_midstream && u.flags.plain() => self.open_one_way(key, u, at),
            None => {}
        }
    }

    fn open_one_way(&mut self, key: FlowKey, u: &FlowUpdate, at: u64) {
        let mut pending = Sums::new();
        add(&mut pending, (u.src, u.dst), u.payload_bytes, u.packets);
        self.opened += 1;
        self.entries.insert(
            key,
            Entry::OneWay {
                client: u.src,
                opened: self.opened,
                last_seen_ns: at,
                pending,
            },
        );
        let one_way = |e: &Entry| match e {
            Entry::OneWay { opened, .. } => Some(*opened),
            Entry::Shown => None,
        };
        while self.entries.values().filter_map(one_way).count() > self.cfg.max_unanswered {
            let oldest = self
                .entries
                .iter()
                .filter_map(|(k, e)| Some((one_way(e)?, *k)))
                .min()
                .map(|(_, k)| k);
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
    }

    /// Expiry at `now`: one-way flows past the handshake timeout are lost; connections the
    /// table no longer shows have finished (and keep their counts).
    fn expire(&mut self, now: Timestamp, table: &ConnectionTable) {
        let (now, limit) = (ns(now), ns(self.cfg.handshake_timeout));
        self.entries.retain(|key, e| match e {
            Entry::OneWay { last_seen_ns, .. } => now.saturating_sub(*last_seen_ns) <= limit,
            Entry::Shown => table.get(key).is_some(),
        });
    }
}

/// Sums per direction of what the table holds, finished connections included.
fn table_sums(table: &ConnectionTable) -> Sums {
    let mut sums = Sums::new();
    for c in table.all_by_first_seen() {
        let (client, server) = (c.client_sent(), c.server_sent());
        add(
            &mut sums,
            (c.client(), c.server()),
            client.payload_bytes,
            client.packets,
        );
        add(
            &mut sums,
            (c.server(), c.client()),
            server.payload_bytes,
            server.packets,
        );
    }
    sums.retain(|_, s| *s != (0, 0));
    sums
}

/// Whether one packet with `flags` from the client (`from_client`) or the server may move a
/// connection from `from` to `to`: SPEC.md's transitions, each on the packet it names.
fn allowed(from: State, to: State, flags: TcpFlags, from_client: bool) -> bool {
    let (syn, ack, fin, rst) = (flags.syn(), flags.ack(), flags.fin(), flags.rst());
    match (from, to) {
        _ if from == to => true,
        // Any RST resets.
        (_, State::Reset) => rst,
        // The server's SYN+ACK.
        (State::SynSent, State::SynAckAck) => syn && ack && !from_client,
        // The client's ACK of it.
        (State::SynAckAck, State::Established) => ack && !syn && from_client,
        // A FIN.
        (State::Established, State::Closing) => fin,
        // The ACK of the last FIN not yet acknowledged.
        (State::Closing, State::Closed) => ack,
        // The client's ACK of the SYN+ACK carrying its FIN: the two steps above in one packet.
        (State::SynAckAck, State::Closing) if ack && !syn && from_client && fin => true,
        // Beyond SPEC.md, as tcptrack has always done: a FIN before the handshake was seen to
        // complete (a capture that missed a packet of it) closes as a FIN of an established
        // connection does, rather than leaving it in the handshake until it times out.
        (State::SynSent | State::SynAckAck, State::Closing) => fin,
        _ => false,
    }
}

/// (state, client, server) of every connection shown, by id.
fn shown(table: &ConnectionTable) -> BTreeMap<u64, (State, SocketAddr, SocketAddr)> {
    table
        .connections()
        .map(|c| (c.id(), (c.state(), c.client(), c.server())))
        .collect()
}

/// The connections before and after packet `u` moved as SPEC.md allows.
fn check_moves(
    before: &BTreeMap<u64, (State, SocketAddr, SocketAddr)>,
    table: &ConnectionTable,
    u: &FlowUpdate,
) -> Result<(), TestCaseError> {
    let after = shown(table);
    let key = FlowKey::new(u.src, u.dst).0;
    let on_tuple = |c: &SocketAddr, s: &SocketAddr| FlowKey::new(*c, *s).0 == key;
    for (id, (was, c, s)) in before {
        match after.get(id) {
            Some((now, ..)) if on_tuple(c, s) => prop_assert!(
                allowed(*was, *now, u.flags, u.src == *c),
                "connection {id}: {was} -> {now} on {u:?}"
            ),
            Some((now, ..)) => prop_assert_eq!(was, now, "connection {} moved by {:?}", id, u),
            // Gone: only a new handshake on a closed or reset tuple replaces a connection.
            None => {
                prop_assert!(on_tuple(c, s) && u.flags.bare_syn());
                prop_assert!(
                    matches!(was, State::Closed | State::Reset),
                    "{} replaced",
                    was
                );
                prop_assert!(table.finished().iter().any(|f| f.id() == *id));
            }
        }
    }
    for (id, (now, c, s)) in after.iter().filter(|(id, _)| !before.contains_key(id)) {
        prop_assert!(
            on_tuple(c, s),
            "connection {} appeared on another tuple",
            id
        );
        if u.flags.bare_syn() {
            // Opened by this SYN in SYN_SENT, its sender the client, then moved by it.
            prop_assert_eq!(*c, u.src);
            prop_assert!(
                allowed(State::SynSent, *now, u.flags, true),
                "opened in {}",
                now
            );
        } else {
            // A one-way flow answered: picked up mid-stream.
            prop_assert!(
                u.flags.plain() && *now == State::Established,
                "appeared {}",
                now
            );
        }
    }
    Ok(())
}

fn packet_of(event: &Event, ms: u64) -> Option<FlowUpdate> {
    let Event::Packet {
        pair,
        reply,
        flags,
        seq,
        ack,
        len,
        ..
    } = *event
    else {
        return None;
    };
    let (a, b) = PAIRS[pair];
    let (src, dst) = if reply { (b, a) } else { (a, b) };
    Some(FlowUpdate::test_packet(
        ENDPOINTS[src],
        ENDPOINTS[dst],
        ms,
        flags,
        seq,
        ack,
        len,
    ))
}

/// The ids of every connection held (one-way flows too) whose time is up at `now`, as a scan
/// of all of them finds them.
fn due(table: &ConnectionTable, now: Timestamp) -> Vec<u64> {
    let now = ns(now);
    let mut due: Vec<u64> = table
        .conns
        .iter()
        .filter(|(_, c)| {
            expiry::limit(&table.cfg, c)
                .is_some_and(|l| now.saturating_sub(c.last_seen_ns()) > ns(l))
        })
        .map(|(_, c)| c.id())
        .collect();
    due.sort_unstable();
    due
}

/// The screen, in the default order and by rate, at every scroll position, holds the rows and
/// totals an order of every connection gives (the screen walks the table's order and its list
/// of moving connections instead).
fn check_view(table: &ConnectionTable, now: Timestamp) -> Result<(), TestCaseError> {
    use crate::monitor::locals::Locals;
    use crate::view::{SortMode, ViewState};
    let rate = table.config().rate;
    let mut all: Vec<&Connection> = table.finished().iter().chain(table.connections()).collect();
    let sums = all.iter().fold([0u64; 2], |[a, b], c| {
        let [x, y] = c.speeds(rate, now);
        [a + x, b + y]
    });
    for sort in [SortMode::Unsorted, SortMode::Rate] {
        match sort {
            SortMode::Rate => all.sort_by(|a, b| {
                b.speed(rate, now)
                    .cmp(&a.speed(rate, now))
                    .then(a.id().cmp(&b.id()))
            }),
            _ => all.sort_by_key(|c| c.id()),
        }
        let page = 2;
        for scroll in 0..=all.len() {
            let mut v = ViewState::default();
            v.sort = sort;
            v.scroll = scroll;
            v.selected = scroll;
            v.columns = crate::view::Columns::Speeds;
            let screen = v.screen(table, now, page, &Locals::default());
            let want: Vec<(String, String)> = all
                .iter()
                .skip(v.scroll)
                .take(page)
                .map(|c| (c.client().to_string(), c.server().to_string()))
                .collect();
            let got: Vec<(String, String)> = screen
                .rows
                .iter()
                .map(|r| (r.client.clone(), r.server.clone()))
                .collect();
            prop_assert_eq!(got, want, "{:?} from {}", sort, v.scroll);
            prop_assert_eq!(screen.total, all.len());
            let units = crate::format::Units::Bytes;
            prop_assert_eq!(
                screen.totals,
                vec![
                    crate::format::rate(sums[0], units),
                    crate::format::rate(sums[1], units)
                ]
            );
        }
    }
    Ok(())
}

fn run(cfg: TableConfig, events: &[Event]) -> Result<(), TestCaseError> {
    let mut table = ConnectionTable::new(cfg.clone());
    let mut model = Model::new(cfg);
    let mut ms = 0;
    for event in events {
        let (Event::Packet { gap_ms, .. } | Event::Expire { gap_ms }) = *event;
        ms += gap_ms;
        let before = shown(&table);
        if let Some(u) = packet_of(event, ms) {
            model.apply(&u);
            table.apply(&u);
            check_moves(&before, &table, &u)?;
        } else {
            let now = Duration::from_millis(ms);
            let due = due(&table, now);
            table.expire(now);
            model.expire(now, &table);
            let after = shown(&table);
            prop_assert!(after.iter().all(|(id, s)| before.get(id) == Some(s)));
            // Exactly those whose time was up left (the table looks only at its lists).
            let left: Vec<u64> = before
                .keys()
                .filter(|id| !after.contains_key(id))
                .copied()
                .collect();
            let due_shown: Vec<u64> = due
                .iter()
                .filter(|id| before.contains_key(id))
                .copied()
                .collect();
            prop_assert_eq!(left, due_shown);
            prop_assert!(table.conns.iter().all(|(_, c)| !due.contains(&c.id())));
        }
        check_view(&table, Duration::from_millis(ms))?;
        for (key, e) in &model.entries {
            let is_shown = matches!(e, Entry::Shown);
            prop_assert_eq!(table.get(key).is_some(), is_shown, "{:?}", key);
        }
        for c in table.connections() {
            let entry = model.entries.get(&c.key());
            prop_assert!(
                matches!(entry, Some(Entry::Shown)),
                "{:?} not opened",
                c.key()
            );
        }
    }
    model.counted.retain(|_, s| *s != (0, 0));
    prop_assert_eq!(table_sums(&table), model.counted);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn counts_and_states_follow_the_spec(
        cfg in config(),
        events in proptest::collection::vec(event(), 1..150),
    ) {
        run(cfg, &events)?;
    }

    /// As above, without the finished connections (the screen of a live table walks its
    /// order only then).
    #[test]
    fn a_live_table_screen_is_its_order(
        cfg in config(),
        events in proptest::collection::vec(event(), 1..150),
    ) {
        let cfg = TableConfig { keep_finished: false, ..cfg };
        let mut table = ConnectionTable::new(cfg);
        let mut ms = 0;
        for event in &events {
            let (Event::Packet { gap_ms, .. } | Event::Expire { gap_ms }) = *event;
            ms += gap_ms;
            let now = Duration::from_millis(ms);
            if let Some(u) = packet_of(event, ms) {
                table.apply(&u);
            } else {
                let due = due(&table, now);
                table.expire(now);
                prop_assert!(table.conns.iter().all(|(_, c)| !due.contains(&c.id())));
            }
            check_view(&table, now)?;
        }
    }
}
