//! The connection table: identity, roles, the state machine, counters, speed and timeouts.
//!
//! No I/O and no clock: every call takes the time it happens at, so a capture file drives the
//! table exactly as a live source does, and gives the same result every time.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Duration;

use hashbrown::{DefaultHashBuilder, HashTable};
use slab::Slab;

use crate::flow::{FlowKey, FlowUpdate, Polled, Timestamp};
use crate::rate::{RateConfig, RateWindow};

/// A connection's state, as the classic tool names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    SynSent,
    SynAckAck,
    Established,
    Closing,
    Closed,
    Reset,
}

impl State {
    /// The name shown on screen and in every output.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::SynSent => "SYN_SENT",
            Self::SynAckAck => "SYN|ACK-ACK",
            Self::Established => "ESTABLISHED",
            Self::Closing => "CLOSING",
            Self::Closed => "CLOSED",
            Self::Reset => "RESET",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the table decides, and when it forgets.
#[derive(Clone, Debug)]
pub struct TableConfig {
    /// Pick up connections that started before tracking did (the classic default; `-d` clears it).
    pub detect_midstream: bool,
    /// How long CLOSED and RESET connections stay after their last packet (`-r`).
    pub closed_linger: Duration,
    /// How long SYN_SENT and SYN|ACK-ACK connections stay idle.
    pub handshake_timeout: Duration,
    /// How long CLOSING connections stay idle.
    pub closing_timeout: Duration,
    /// How long ESTABLISHED connections stay idle (`None`: while they live).
    pub idle_timeout: Option<Duration>,
    /// How speed is averaged.
    pub rate: RateConfig,
    /// Most one-way flows waiting for an answer; the oldest beyond it are forgotten.
    pub max_unanswered: usize,
    /// Keep the connections that leave the table, for an end-of-capture report.
    pub keep_finished: bool,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            detect_midstream: true,
            closed_linger: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(30),
            closing_timeout: Duration::from_secs(60),
            idle_timeout: None,
            rate: RateConfig::CLASSIC,
            max_unanswered: 65_536,
            keep_finished: false,
        }
    }
}

/// What one side of a connection sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// TCP payload bytes.
    pub payload_bytes: u64,
    /// Frame bytes on the wire.
    pub wire_bytes: u64,
    /// Packets on the wire.
    pub packets: u64,
}

impl Counters {
    fn add(&mut self, u: &FlowUpdate) {
        self.payload_bytes = self.payload_bytes.saturating_add(u.payload_bytes);
        self.wire_bytes = self.wire_bytes.saturating_add(u.wire_bytes);
        self.packets = self.packets.saturating_add(u.packets);
    }
}

impl std::ops::Add for Counters {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            payload_bytes: self.payload_bytes.saturating_add(o.payload_bytes),
            wire_bytes: self.wire_bytes.saturating_add(o.wire_bytes),
            packets: self.packets.saturating_add(o.packets),
        }
    }
}

/// One side's FIN: the ACK number that acknowledges it, once it has been sent.
#[derive(Clone, Copy, Debug, Default)]
struct Fin {
    /// Sequence number of the FIN + its payload + 1.
    ack_expected: u32,
    sent: bool,
    acked: bool,
}

/// Sides of a connection, as indexes into its per-side arrays.
const CLIENT: usize = 0;
const SERVER: usize = 1;

/// One TCP connection.
#[derive(Clone, Debug)]
pub struct Connection {
    id: u64,
    endpoints: [SocketAddr; 2],
    state: State,
    /// One-way so far: seen in one direction only, without a handshake (not shown).
    unanswered: bool,
    sent: [Counters; 2],
    first_seen_ns: u64,
    last_seen_ns: u64,
    fin: [Fin; 2],
    rate: RateWindow,
}

impl Connection {
    /// Order in which connections were first seen (unique, increasing).
    #[must_use]
    pub const fn id(&self) -> u64 {
        self.id
    }
    #[must_use]
    pub const fn client(&self) -> SocketAddr {
        self.endpoints[CLIENT]
    }
    #[must_use]
    pub const fn server(&self) -> SocketAddr {
        self.endpoints[SERVER]
    }
    #[must_use]
    pub const fn state(&self) -> State {
        self.state
    }
    /// What the client sent.
    #[must_use]
    pub const fn client_sent(&self) -> Counters {
        self.sent[CLIENT]
    }
    /// What the server sent.
    #[must_use]
    pub const fn server_sent(&self) -> Counters {
        self.sent[SERVER]
    }
    /// Both directions together.
    #[must_use]
    pub fn total(&self) -> Counters {
        self.sent[CLIENT] + self.sent[SERVER]
    }
    #[must_use]
    pub const fn first_seen(&self) -> Timestamp {
        Duration::from_nanos(self.first_seen_ns)
    }
    #[must_use]
    pub const fn last_seen(&self) -> Timestamp {
        Duration::from_nanos(self.last_seen_ns)
    }
    /// Time since the last packet.
    #[must_use]
    pub fn idle(&self, now: Timestamp) -> Duration {
        now.saturating_sub(self.last_seen())
    }
    /// Payload bytes per second, both directions, over the last completed window before `now`.
    #[must_use]
    pub fn speed(&self, cfg: RateConfig, now: Timestamp) -> u64 {
        self.rate.rate(cfg, now)
    }

    /// The connection's key.
    #[must_use]
    pub fn key(&self) -> FlowKey {
        FlowKey::new(self.endpoints[0], self.endpoints[1]).0
    }

    /// Whether this connection is the one `key` names (cheaper than making its key).
    fn is(&self, key: &FlowKey) -> bool {
        let [a, b] = self.endpoints;
        (a == key.lo && b == key.hi) || (a == key.hi && b == key.lo)
    }

    fn side_of(&self, src: SocketAddr) -> usize {
        if src == self.endpoints[CLIENT] {
            CLIENT
        } else {
            SERVER
        }
    }
}

/// Counts of what the table had to leave out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// One-way flows forgotten because too many were waiting for an answer.
    pub unanswered_evicted: u64,
}

/// Every tracked connection, by key, in first-seen order.
pub struct ConnectionTable {
    cfg: TableConfig,
    conns: Slab<Connection>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    next_id: u64,
    /// Slab keys and ids of one-way flows, oldest first (stale entries are skipped).
    unanswered: VecDeque<(u32, u64)>,
    unanswered_live: usize,
    finished: Vec<Connection>,
    stats: TableStats,
    /// The host's listening sockets (live only): they name the server of a connection picked up
    /// mid-stream when one end is local.
    listening: Option<crate::source::sockets::ListeningSockets>,
}

fn ns(t: Timestamp) -> u64 {
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}

impl ConnectionTable {
    #[must_use]
    pub fn new(cfg: TableConfig) -> Self {
        Self {
            cfg,
            conns: Slab::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            next_id: 0,
            unanswered: VecDeque::new(),
            unanswered_live: 0,
            finished: Vec::new(),
            stats: TableStats::default(),
            listening: None,
        }
    }

    /// Gives the table the host's listening sockets, to name the server of connections picked
    /// up mid-stream (the lower-port guess only when neither end is a local listener).
    pub fn set_listening(&mut self, listening: crate::source::sockets::ListeningSockets) {
        self.listening = Some(listening);
    }

    #[must_use]
    pub const fn config(&self) -> &TableConfig {
        &self.cfg
    }

    #[must_use]
    pub const fn stats(&self) -> TableStats {
        self.stats
    }

    /// Connections being shown (one-way flows waiting for an answer are not), in no order.
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.conns.iter().map(|(_, c)| c).filter(|c| !c.unanswered)
    }

    /// Number of connections being shown.
    #[must_use]
    pub fn len(&self) -> usize {
        self.conns.len() - self.unanswered_live
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections that have left the table (kept only with `keep_finished`), oldest first.
    #[must_use]
    pub fn finished(&self) -> &[Connection] {
        &self.finished
    }

    /// The connection (shown or not) that `key` names.
    #[must_use]
    pub fn get(&self, key: &FlowKey) -> Option<&Connection> {
        self.find(key)
            .map(|slot| &self.conns[slot])
            .filter(|c| !c.unanswered)
    }

    fn find(&self, key: &FlowKey) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| self.conns[i as usize].is(key))
            .map(|&i| i as usize)
    }

    fn insert(&mut self, conn: Connection) -> usize {
        let hash = self.hasher.hash_one(conn.key());
        let slot = self.conns.insert(conn);
        let Ok(slot32) = u32::try_from(slot) else {
            // More than 4 billion connections cannot be held anyway; refuse the newest.
            self.conns.remove(slot);
            return usize::MAX;
        };
        let (conns, hasher) = (&self.conns, &self.hasher);
        self.index
            .insert_unique(hash, slot32, |&i| hasher.hash_one(conns[i as usize].key()));
        slot
    }

    fn remove(&mut self, slot: usize) {
        let key = self.conns[slot].key();
        let hash = self.hasher.hash_one(key);
        if let Ok(entry) = self.index.find_entry(hash, |&i| i as usize == slot) {
            entry.remove();
        }
        let conn = self.conns.remove(slot);
        if conn.unanswered {
            self.unanswered_live -= 1;
        } else if self.cfg.keep_finished {
            self.finished.push(conn);
        }
    }

    fn new_connection(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        at: u64,
        state: State,
    ) -> Connection {
        let id = self.next_id;
        self.next_id += 1;
        Connection {
            id,
            endpoints: [client, server],
            state,
            unanswered: false,
            sent: [Counters::default(); 2],
            first_seen_ns: at,
            last_seen_ns: at,
            fin: [Fin::default(); 2],
            rate: RateWindow::default(),
        }
    }

    /// Takes in what a source saw.
    pub fn apply(&mut self, u: &FlowUpdate) {
        let (key, _) = FlowKey::new(u.src, u.dst);
        let at = ns(u.ts);
        let slot = match self.find(&key) {
            Some(slot) => {
                let c = &self.conns[slot];
                if u.flags.bare_syn()
                    && (matches!(c.state, State::Closed | State::Reset) || c.unanswered)
                {
                    // A new handshake on a finished tuple (or after one-way noise): a new connection.
                    self.remove(slot);
                    self.open(u, at)
                } else {
                    slot
                }
            }
            None if u.flags.bare_syn() => self.open(u, at),
            None if self.cfg.detect_midstream && u.flags.plain() => self.open_unanswered(u, at),
            None => return,
        };
        if slot == usize::MAX {
            return;
        }
        self.account(slot, u, at);
    }

    fn open(&mut self, u: &FlowUpdate, at: u64) -> usize {
        let conn = self.new_connection(u.src, u.dst, at, State::SynSent);
        self.insert(conn)
    }

    fn open_unanswered(&mut self, u: &FlowUpdate, at: u64) -> usize {
        let mut conn = self.new_connection(u.src, u.dst, at, State::Established);
        conn.unanswered = true;
        let id = conn.id;
        let slot = self.insert(conn);
        if slot == usize::MAX {
            return slot;
        }
        self.unanswered_live += 1;
        self.unanswered
            .push_back((u32::try_from(slot).unwrap_or(u32::MAX), id));
        while self.unanswered_live > self.cfg.max_unanswered {
            self.evict_oldest_unanswered();
        }
        slot
    }

    fn evict_oldest_unanswered(&mut self) {
        while let Some((slot, id)) = self.unanswered.pop_front() {
            let slot = slot as usize;
            if self
                .conns
                .get(slot)
                .is_some_and(|c| c.id == id && c.unanswered)
            {
                self.remove(slot);
                self.stats.unanswered_evicted += 1;
                return;
            }
        }
    }

    /// Counts the update and moves the state machine.
    fn account(&mut self, slot: usize, u: &FlowUpdate, at: u64) {
        let rate_cfg = self.cfg.rate;
        let c = &mut self.conns[slot];
        let mut side = c.side_of(u.src);
        let flags = u.flags;

        if c.unanswered {
            if side == SERVER && flags.plain() {
                // Both directions seen: a connection picked up mid-stream. A local listening
                // socket names the server; else the classic rule makes the lower port the server,
                // and on equal ports the side seen first stays the client.
                c.unanswered = false;
                self.unanswered_live -= 1;
                let listener = self
                    .listening
                    .as_ref()
                    .and_then(|l| l.server_of(c.endpoints[CLIENT], c.endpoints[SERVER]));
                let swap = match listener {
                    Some(server) => server == c.endpoints[CLIENT],
                    None => c.endpoints[CLIENT].port() < c.endpoints[SERVER].port(),
                };
                if swap {
                    c.endpoints.swap(CLIENT, SERVER);
                    c.sent.swap(CLIENT, SERVER);
                    side = CLIENT;
                }
            } else if side == SERVER {
                // A SYN, FIN or RST answer does not reveal a connection.
                return;
            }
        }

        c.sent[side].add(u);
        c.rate.add(rate_cfg, u.ts, u.payload_bytes);
        c.first_seen_ns = c.first_seen_ns.min(at);
        c.last_seen_ns = c.last_seen_ns.max(at);
        if c.unanswered {
            return;
        }

        let other = 1 - side;
        if flags.rst() {
            c.state = State::Reset;
            return;
        }
        if flags.ack() && c.fin[other].sent && u.ack == c.fin[other].ack_expected {
            c.fin[other].acked = true;
        }
        if flags.fin() && !c.fin[side].sent && c.state != State::Closed {
            c.fin[side] = Fin {
                ack_expected: u.seq.wrapping_add(u.segment_len).wrapping_add(1),
                sent: true,
                acked: false,
            };
        }
        c.state = match c.state {
            State::SynSent if flags.syn() && flags.ack() && side == SERVER => State::SynAckAck,
            State::SynAckAck if flags.ack() && !flags.syn() && side == CLIENT => State::Established,
            s => s,
        };
        if matches!(
            c.state,
            State::SynSent | State::SynAckAck | State::Established
        ) && (c.fin[CLIENT].sent || c.fin[SERVER].sent)
        {
            c.state = State::Closing;
        }
        if c.state == State::Closing && c.fin[CLIENT].acked && c.fin[SERVER].acked {
            c.state = State::Closed;
        }
    }

    /// Takes in one poll of a counting source: its events first (a handshake must open its
    /// connection before its counts arrive), then the counts, then again the events that found
    /// no connection (a FIN of a connection picked up mid-stream, which its counts create).
    pub fn apply_poll(&mut self, poll: &Polled) {
        let mut late = Vec::new();
        for e in &poll.events {
            if e.flags.bare_syn() || self.get(&FlowKey::new(e.src, e.dst).0).is_some() {
                self.apply(e);
            } else {
                late.push(e);
            }
        }
        for c in &poll.counts {
            self.apply(c);
        }
        for e in late {
            self.apply(e);
        }
    }

    /// Forgets the connections whose time is up at `now`. Not to be called while the display is
    /// paused: nothing leaves the table then.
    pub fn expire(&mut self, now: Timestamp) {
        let now = ns(now);
        let cfg = &self.cfg;
        let limit = |c: &Connection| -> Option<Duration> {
            if c.unanswered {
                return Some(cfg.handshake_timeout);
            }
            match c.state {
                State::SynSent | State::SynAckAck => Some(cfg.handshake_timeout),
                State::Established => cfg.idle_timeout,
                State::Closing => Some(cfg.closing_timeout),
                State::Closed | State::Reset => Some(cfg.closed_linger),
            }
        };
        let due: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| limit(c).is_some_and(|l| now.saturating_sub(c.last_seen_ns) > ns(l)))
            .map(|(slot, _)| slot)
            .collect();
        for slot in due {
            self.remove(slot);
        }
        if self.unanswered.len() > 2 * self.unanswered_live + 64 {
            let conns = &self.conns;
            self.unanswered.retain(|&(s, id)| {
                conns
                    .get(s as usize)
                    .is_some_and(|c| c.id == id && c.unanswered)
            });
        }
    }

    /// Every connection seen, first seen first: those that left the table (kept with
    /// `keep_finished`) and those still in it.
    #[must_use]
    pub fn all_by_first_seen(&self) -> Vec<&Connection> {
        let mut all: Vec<&Connection> = self.finished.iter().chain(self.connections()).collect();
        all.sort_by_key(|c| c.id);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::TcpFlags;

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN;
    const RST: u8 = TcpFlags::RST;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    /// One packet: from `src` to `dst` at `ms` milliseconds, with flags, seq, ack and payload.
    fn pkt(src: &str, dst: &str, ms: u64, flags: u8, seq: u32, ack: u32, len: u32) -> FlowUpdate {
        FlowUpdate::test_packet(src, dst, ms, flags, seq, ack, len)
    }

    const C: &str = "198.18.0.1:40000";
    const S: &str = "198.18.0.2:80";

    fn states(table: &ConnectionTable) -> Vec<(String, String, State)> {
        let mut v: Vec<_> = table.connections().collect();
        v.sort_by_key(|c| c.id());
        v.iter()
            .map(|c| (c.client().to_string(), c.server().to_string(), c.state()))
            .collect()
    }

    /// A handshake, data both ways and a close from the client, checking the state after each
    /// packet.
    #[test]
    fn every_transition_of_a_full_connection() {
        let steps: &[(FlowUpdate, State)] = &[
            (pkt(C, S, 0, SYN, 100, 0, 0), State::SynSent),
            (pkt(C, S, 1, SYN, 100, 0, 0), State::SynSent), // retransmitted SYN
            (pkt(S, C, 2, SYN | ACK, 500, 101, 0), State::SynAckAck),
            (pkt(C, S, 3, ACK, 101, 501, 0), State::Established),
            (pkt(C, S, 4, ACK, 101, 501, 10), State::Established),
            (pkt(S, C, 5, ACK, 501, 111, 20), State::Established),
            (pkt(C, S, 6, FIN | ACK, 111, 521, 5), State::Closing),
            (pkt(S, C, 7, ACK, 521, 117, 0), State::Closing), // client's FIN acked
            (pkt(S, C, 8, FIN | ACK, 521, 117, 0), State::Closing),
            (pkt(C, S, 9, ACK, 117, 521, 0), State::Closing), // wrong ack: not the FIN's
            (pkt(C, S, 10, ACK, 117, 522, 0), State::Closed),
        ];
        let mut t = ConnectionTable::new(TableConfig::default());
        for (i, (u, want)) in steps.iter().enumerate() {
            t.apply(u);
            let got = states(&t);
            assert_eq!(got.len(), 1, "step {i}");
            assert_eq!(got[0].2, *want, "step {i}");
        }
        let c = t.connections().next().expect("one connection");
        assert_eq!((c.client(), c.server()), (addr(C), addr(S)));
        assert_eq!(c.client_sent().payload_bytes, 15);
        assert_eq!(c.server_sent().payload_bytes, 20);
        assert_eq!(c.client_sent().packets, 7);
        assert_eq!(c.server_sent().packets, 4);
        assert_eq!(c.total().wire_bytes, 35 + 11 * 54);
    }

    #[test]
    fn a_fin_with_its_ack_in_one_packet_and_simultaneous_close() {
        let mut t = ConnectionTable::new(TableConfig::default());
        for u in [
            pkt(C, S, 0, SYN, 0, 0, 0),
            pkt(S, C, 1, SYN | ACK, 0, 1, 0),
            pkt(C, S, 2, ACK, 1, 1, 0),
            // Both FIN at once, then each acknowledges the other's.
            pkt(C, S, 3, FIN | ACK, 1, 1, 0),
            pkt(S, C, 3, FIN | ACK, 1, 1, 0),
            pkt(C, S, 4, ACK, 2, 2, 0),
        ] {
            t.apply(&u);
        }
        assert_eq!(states(&t)[0].2, State::Closing);
        t.apply(&pkt(S, C, 5, ACK, 2, 2, 0));
        assert_eq!(states(&t)[0].2, State::Closed);
    }

    #[test]
    fn rst_from_either_side_resets_in_any_state() {
        for (prefix, from_client) in [(1, true), (2, false), (3, true), (4, false)] {
            let mut t = ConnectionTable::new(TableConfig::default());
            let opening = [
                pkt(C, S, 0, SYN, 0, 0, 0),
                pkt(S, C, 1, SYN | ACK, 0, 1, 0),
                pkt(C, S, 2, ACK, 1, 1, 0),
                pkt(C, S, 3, FIN | ACK, 1, 1, 0),
            ];
            for u in &opening[..prefix] {
                t.apply(u);
            }
            let rst = if from_client {
                pkt(C, S, 9, RST, 1, 0, 0)
            } else {
                pkt(S, C, 9, RST | ACK, 1, 1, 0)
            };
            t.apply(&rst);
            assert_eq!(states(&t)[0].2, State::Reset, "after {prefix} packets");
        }
    }

    #[test]
    fn fins_are_matched_by_address_and_port() {
        // Two ports of one host: the classic closed this at the first FIN's ACK.
        let a = "198.18.0.1:1000";
        let b = "198.18.0.1:2000";
        let mut t = ConnectionTable::new(TableConfig::default());
        for u in [
            pkt(a, b, 0, SYN, 10, 0, 0),
            pkt(b, a, 1, SYN | ACK, 20, 11, 0),
            pkt(a, b, 2, ACK, 11, 21, 0),
            pkt(a, b, 3, FIN | ACK, 11, 21, 0),
            pkt(b, a, 4, ACK, 21, 12, 0),
        ] {
            t.apply(&u);
        }
        assert_eq!(states(&t)[0].2, State::Closing);
        t.apply(&pkt(b, a, 5, FIN | ACK, 21, 12, 0));
        t.apply(&pkt(a, b, 6, ACK, 12, 22, 0));
        assert_eq!(states(&t)[0].2, State::Closed);
    }

    #[test]
    fn ipv6_closes_like_ipv4() {
        let c6 = "[fd00::1]:50000";
        let s6 = "[fd00::2]:443";
        let mut t = ConnectionTable::new(TableConfig::default());
        for u in [
            pkt(c6, s6, 0, SYN, 0, 0, 0),
            pkt(s6, c6, 1, SYN | ACK, 0, 1, 0),
            pkt(c6, s6, 2, ACK, 1, 1, 0),
            pkt(c6, s6, 3, ACK, 1, 1, 1000),
            pkt(s6, c6, 4, FIN | ACK, 1, 1001, 0),
            pkt(c6, s6, 5, FIN | ACK, 1001, 2, 0),
            pkt(s6, c6, 6, ACK, 2, 1002, 0),
        ] {
            t.apply(&u);
        }
        let got = states(&t);
        assert_eq!(
            got[0],
            (
                "[fd00::1]:50000".into(),
                "[fd00::2]:443".into(),
                State::Closed
            )
        );
    }

    #[test]
    fn midstream_pickup_needs_both_directions_and_the_lower_port_serves() {
        let mut t = ConnectionTable::new(TableConfig::default());
        // The side with the lower port speaks first; it still ends up the server.
        t.apply(&pkt(S, C, 0, ACK, 1, 1, 100));
        t.apply(&pkt(S, C, 1, ACK, 101, 1, 100));
        assert!(t.is_empty(), "one-way traffic is not a connection");
        t.apply(&pkt(C, S, 2, ACK, 1, 201, 0));
        let got = states(&t);
        assert_eq!(got, vec![(C.to_owned(), S.to_owned(), State::Established)]);
        let c = t.connections().next().expect("one connection");
        // What came before the answer is counted.
        assert_eq!(c.server_sent().payload_bytes, 200);
        assert_eq!(c.server_sent().packets, 2);
        assert_eq!(c.client_sent().packets, 1);
    }

    #[test]
    fn a_local_listener_names_the_server_over_the_lower_port() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n";
        let listening = crate::source::sockets::ListeningSockets::parse(
            tcp,
            "",
            ["127.0.0.1".parse().expect("ip")],
        );
        let mut t = ConnectionTable::new(TableConfig::default());
        t.set_listening(listening);
        // 127.0.0.1:40000 listens: it serves, though the other end has the lower port.
        t.apply(&pkt("127.0.0.1:40000", "127.0.0.2:5000", 0, ACK, 1, 1, 10));
        t.apply(&pkt("127.0.0.2:5000", "127.0.0.1:40000", 1, ACK, 1, 11, 10));
        assert_eq!(
            states(&t),
            vec![(
                "127.0.0.2:5000".to_owned(),
                "127.0.0.1:40000".to_owned(),
                State::Established
            )]
        );
        // Neither end listening: the lower port serves.
        t.apply(&pkt("127.0.0.3:40000", "127.0.0.2:5000", 2, ACK, 1, 1, 10));
        t.apply(&pkt("127.0.0.2:5000", "127.0.0.3:40000", 3, ACK, 1, 11, 10));
        assert_eq!(
            states(&t)[1],
            (
                "127.0.0.3:40000".to_owned(),
                "127.0.0.2:5000".to_owned(),
                State::Established
            )
        );
    }

    #[test]
    fn midstream_with_equal_ports_makes_the_first_seen_side_the_client() {
        let a = "198.18.0.1:5000";
        let b = "198.18.0.2:5000";
        let mut t = ConnectionTable::new(TableConfig::default());
        t.apply(&pkt(b, a, 0, ACK, 1, 1, 10));
        t.apply(&pkt(a, b, 1, ACK, 1, 11, 10));
        assert_eq!(
            states(&t),
            vec![(b.to_owned(), a.to_owned(), State::Established)]
        );
    }

    #[test]
    fn midstream_answers_with_syn_fin_or_rst_do_not_count() {
        let mut t = ConnectionTable::new(TableConfig::default());
        t.apply(&pkt(C, S, 0, ACK, 1, 1, 10));
        t.apply(&pkt(S, C, 1, RST, 1, 0, 0));
        t.apply(&pkt(S, C, 2, FIN | ACK, 1, 11, 0));
        assert!(t.is_empty());
    }

    #[test]
    fn no_midstream_with_d() {
        let cfg = TableConfig {
            detect_midstream: false,
            ..TableConfig::default()
        };
        let mut t = ConnectionTable::new(cfg);
        t.apply(&pkt(C, S, 0, ACK, 1, 1, 10));
        t.apply(&pkt(S, C, 1, ACK, 1, 11, 10));
        assert!(t.is_empty());
        t.apply(&pkt(C, S, 2, SYN, 1, 0, 0));
        assert_eq!(states(&t).len(), 1);
    }

    #[test]
    fn a_syn_after_close_or_reset_starts_a_new_connection() {
        let cfg = TableConfig {
            keep_finished: true,
            ..TableConfig::default()
        };
        let mut t = ConnectionTable::new(cfg);
        for u in [
            pkt(C, S, 0, SYN, 0, 0, 0),
            pkt(S, C, 1, SYN | ACK, 0, 1, 0),
            pkt(C, S, 2, RST, 1, 0, 0),
            // Port reused at once: a new connection, the old one kept for the report.
            pkt(C, S, 3, SYN, 1000, 0, 0),
            pkt(S, C, 4, SYN | ACK, 0, 1001, 0),
            pkt(C, S, 5, ACK, 1001, 1, 0),
        ] {
            t.apply(&u);
        }
        assert_eq!(
            states(&t),
            vec![(C.to_owned(), S.to_owned(), State::Established)]
        );
        let all = t.all_by_first_seen();
        let summary: Vec<_> = all.iter().map(|c| (c.state(), c.total().packets)).collect();
        assert_eq!(summary, vec![(State::Reset, 3), (State::Established, 3)]);
    }

    #[test]
    fn a_syn_on_a_live_connection_does_not_restart_it() {
        let mut t = ConnectionTable::new(TableConfig::default());
        t.apply(&pkt(C, S, 0, SYN, 0, 0, 0));
        t.apply(&pkt(S, C, 1, SYN | ACK, 0, 1, 0));
        t.apply(&pkt(C, S, 2, ACK, 1, 1, 0));
        t.apply(&pkt(C, S, 3, SYN, 0, 0, 0));
        assert_eq!(states(&t)[0].2, State::Established);
        assert_eq!(t.connections().next().map(|c| c.total().packets), Some(4));
    }

    #[test]
    fn timeouts_by_state() {
        let mut t = ConnectionTable::new(TableConfig {
            closed_linger: Duration::from_secs(5),
            ..TableConfig::default()
        });
        let (c1, c2, c3, c4) = (
            "198.18.0.1:1",
            "198.18.0.1:2",
            "198.18.0.1:3",
            "198.18.0.1:4",
        );
        t.apply(&pkt(c1, S, 0, SYN, 0, 0, 0)); // SYN_SENT
        t.apply(&pkt(c2, S, 0, SYN, 0, 0, 0));
        t.apply(&pkt(c2, S, 0, RST, 0, 0, 0)); // RESET
        t.apply(&pkt(c3, S, 0, SYN, 0, 0, 0));
        t.apply(&pkt(c3, S, 0, FIN, 1, 0, 0)); // CLOSING
        t.apply(&pkt(c4, S, 0, ACK, 0, 0, 1)); // one-way
        t.apply(&pkt(S, c4, 0, ACK, 0, 0, 1)); // ESTABLISHED
        let count = |t: &ConnectionTable| t.len();
        t.expire(Duration::from_secs(5));
        assert_eq!(count(&t), 4, "nothing is due at 5 s");
        t.expire(Duration::from_millis(5_001));
        assert_eq!(count(&t), 3, "RESET leaves after -r");
        t.expire(Duration::from_secs(30));
        assert_eq!(count(&t), 3);
        t.expire(Duration::from_millis(30_001));
        assert_eq!(count(&t), 2, "SYN_SENT leaves after 30 s");
        t.expire(Duration::from_millis(60_001));
        assert_eq!(count(&t), 1, "CLOSING leaves after 60 s");
        t.expire(Duration::from_secs(1_000_000));
        assert_eq!(
            states(&t)[0].2,
            State::Established,
            "ESTABLISHED stays while it lives"
        );
    }

    #[test]
    fn optional_idle_timeout_for_established() {
        let mut t = ConnectionTable::new(TableConfig {
            idle_timeout: Some(Duration::from_secs(10)),
            ..TableConfig::default()
        });
        t.apply(&pkt(C, S, 0, ACK, 0, 0, 1));
        t.apply(&pkt(S, C, 0, ACK, 0, 0, 1));
        t.expire(Duration::from_secs(10));
        assert_eq!(t.len(), 1);
        t.expire(Duration::from_millis(10_001));
        assert!(t.is_empty());
    }

    #[test]
    fn one_way_floods_stay_bounded_and_are_counted() {
        let mut t = ConnectionTable::new(TableConfig {
            max_unanswered: 100,
            ..TableConfig::default()
        });
        for port in 1..=10_000u16 {
            t.apply(&pkt(&format!("198.18.1.1:{port}"), S, 0, ACK, 0, 0, 1));
        }
        assert!(t.is_empty());
        assert_eq!(t.conns.len(), 100);
        assert_eq!(t.stats().unanswered_evicted, 9_900);
        // The newest are the ones kept: an answer to one of them still makes a connection.
        t.apply(&pkt(S, "198.18.1.1:10000", 1, ACK, 0, 0, 1));
        assert_eq!(t.len(), 1);
        // Expired one-way flows go quietly.
        t.expire(Duration::from_secs(31));
        assert_eq!(t.conns.len(), 1);
    }

    #[test]
    fn unsorted_order_is_first_seen() {
        let mut t = ConnectionTable::new(TableConfig::default());
        for port in [9, 3, 7, 1] {
            t.apply(&pkt(&format!("198.18.0.1:{port}"), S, 0, SYN, 0, 0, 0));
        }
        let ports: Vec<u16> = t
            .all_by_first_seen()
            .iter()
            .map(|c| c.client().port())
            .collect();
        assert_eq!(ports, vec![9, 3, 7, 1]);
    }
}
