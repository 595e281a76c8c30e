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

use crate::flow::{FlowKey, FlowUpdate, Timestamp};
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

    fn key(&self) -> FlowKey {
        FlowKey::new(self.endpoints[0], self.endpoints[1]).0
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
        }
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

    fn find(&self, key: &FlowKey) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| self.conns[i as usize].key() == *key)
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
                // Both directions seen: a connection picked up mid-stream. The classic rule makes
                // the lower port the server; on equal ports the side seen first stays the client.
                c.unanswered = false;
                self.unanswered_live -= 1;
                if c.endpoints[CLIENT].port() < c.endpoints[SERVER].port() {
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

    /// Every connection seen: those that left the table, then those still in it, in first-seen
    /// order. Consumes the table (the end of a capture).
    #[must_use]
    pub fn into_all(self) -> Vec<Connection> {
        let mut all = self.finished;
        all.extend(
            self.conns
                .into_iter()
                .map(|(_, c)| c)
                .filter(|c| !c.unanswered),
        );
        all.sort_by_key(Connection::id);
        all
    }
}
