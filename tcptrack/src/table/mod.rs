//! The connection table: identity, roles, the state machine, counters, speed and timeouts.
//!
//! No I/O and no clock: every call takes the time it happens at, so a capture file drives the
//! table exactly as a live source does, and gives the same result every time.
//!
//! The table holds the connections and finds them by key ([`ConnectionTable`], here); each
//! connection moves its own state machine ([`Connection`], in `connection`); timeouts are in
//! `expiry`.

mod connection;
pub mod diag;
mod expiry;
mod order;
mod slots;
mod tally;

pub use connection::{Connection, Counters, State};
pub use tally::{Ended, Ending, PortTally, Tally};

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Duration;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::flow::{FlowKey, FlowUpdate, Polled, Timestamp};
use crate::listening::ListeningSockets;
use crate::rate::RateConfig;
use connection::Side;
use order::Order;
use slots::Slots;

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
    /// Hand out the connections that leave the table, as they do (see
    /// [`ConnectionTable::take_ended`]): for the flow log.
    pub report_ended: bool,
    /// Keep the connections first seen first, and a list of those whose speed may not be zero
    /// (see [`ConnectionTable::moving`]): for what lists the connections at every refresh (the
    /// screen, a live output), which then walks them instead of sorting them, and sums speeds
    /// over what moves. 12 bytes a connection, which a capture read whole does not spend.
    pub listing: bool,
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
            report_ended: false,
            listing: false,
        }
    }
}

/// Counts of the one-way flows (tuples first seen without a handshake, not listed unless
/// answered): how many the table took in, and how many it had to leave out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// One-way flows taken in since the start (answered later or not): every tuple whose first
    /// packet was not a bare SYN, with `detect_midstream`.
    pub unanswered_opened: u64,
    /// One-way flows forgotten because too many were waiting for an answer.
    pub unanswered_evicted: u64,
}

/// Every tracked connection, by key, in first-seen order.
pub struct ConnectionTable {
    cfg: TableConfig,
    conns: Slots,
    index: HashTable<Slot>,
    /// The connections first seen first (with `listing`).
    order: Order,
    /// Slots and ids of the connections that carried payload within a speed window (with
    /// `listing`; stale entries are dropped by [`ConnectionTable::expire`]).
    moving: Vec<(u32, u64)>,
    /// Slots of the connections whose state may time out, each marked so (an entry whose slot
    /// holds no marked connection is stale, dropped by [`ConnectionTable::expire`]): an
    /// established connection without `--idle-timeout` costs nothing there.
    expiring: Vec<u32>,
    hasher: DefaultHashBuilder,
    next_id: u64,
    /// Slab keys and ids of one-way flows, oldest first (stale entries are skipped).
    unanswered: VecDeque<(u32, u64)>,
    unanswered_live: usize,
    finished: Vec<Connection>,
    /// Connections that left the table since the last [`ConnectionTable::take_ended`] (with
    /// `report_ended`).
    ended: Vec<Ended>,
    stats: TableStats,
    tally: Tally,
    /// The host's listening sockets (live only): they name the server of a connection picked up
    /// mid-stream when one end is local.
    listening: Option<ListeningSockets>,
}

/// An entry of the index: where the connection is, and its key's hash (32 bits of it).
#[derive(Clone, Copy, Debug)]
struct Slot {
    slot: u32,
    hash: u32,
}

/// `key`'s hash, folded to 32 bits.
fn hash32(hasher: &DefaultHashBuilder, key: &FlowKey) -> u32 {
    let h = hasher.hash_one(key);
    // The high half and the low half, both well mixed: 32 bits of either are as good.
    u32::try_from((h ^ (h >> 32)) & 0xffff_ffff).unwrap_or(0)
}

/// A 32-bit hash as the index takes it: the same bits high (which pick the control byte) and
/// low (which pick the bucket).
fn widen(hash: u32) -> u64 {
    u64::from(hash) << 32 | u64::from(hash)
}

/// `t` in nanoseconds (saturating).
fn ns(t: Timestamp) -> u64 {
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether the one-way flow queued as (`slot`, `id`) is still in the table and still one-way.
fn still_unanswered(conns: &Slots, slot: u32, id: u64) -> bool {
    conns
        .get(slot as usize)
        .is_some_and(|c| c.id() == id && c.is_unanswered())
}

impl ConnectionTable {
    /// An empty table that decides as `cfg` says.
    #[must_use]
    pub fn new(cfg: TableConfig) -> Self {
        Self {
            cfg,
            conns: Slots::default(),
            index: HashTable::new(),
            order: Order::default(),
            moving: Vec::new(),
            expiring: Vec::new(),
            hasher: DefaultHashBuilder::default(),
            next_id: 0,
            unanswered: VecDeque::new(),
            unanswered_live: 0,
            finished: Vec::new(),
            ended: Vec::new(),
            stats: TableStats::default(),
            tally: Tally::default(),
            listening: None,
        }
    }

    /// Gives the table the host's listening sockets, to name the server of connections picked
    /// up mid-stream (the lower-port guess only when neither end is a local listener).
    pub fn set_listening(&mut self, listening: ListeningSockets) {
        self.listening = Some(listening);
    }

    /// How the table decides, and when it forgets.
    #[must_use]
    pub const fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// Counts of what the table had to leave out.
    #[must_use]
    pub const fn stats(&self) -> TableStats {
        self.stats
    }

    /// Every connection's numbers together, since the table started.
    #[must_use]
    pub const fn tally(&self) -> &Tally {
        &self.tally
    }

    /// The connections that left the table since the last call, in the order they left
    /// (those leaving together first seen first), and how (only
    /// with `report_ended`; each connection once).
    pub fn take_ended(&mut self) -> Vec<Ended> {
        std::mem::take(&mut self.ended)
    }

    /// Connections being shown (one-way flows waiting for an answer are not), in no order.
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.conns
            .iter()
            .map(|(_, c)| c)
            .filter(|c| !c.is_unanswered())
    }

    /// Number of connections being shown.
    #[must_use]
    pub fn len(&self) -> usize {
        self.conns.len() - self.unanswered_live
    }

    /// Whether no connection is being shown.
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
            .filter(|c| !c.is_unanswered())
    }

    /// Every connection seen, first seen first: those that left the table (kept with
    /// `keep_finished`) and those still in it.
    #[must_use]
    pub fn all_by_first_seen(&self) -> Vec<&Connection> {
        if self.cfg.listing && self.finished.is_empty() {
            return self.in_order().collect();
        }
        let mut all: Vec<&Connection> = self.finished.iter().chain(self.connections()).collect();
        all.sort_by_key(|c| c.id());
        all
    }

    /// Connections being shown, first seen first (walked, not sorted; with `listing`, none
    /// without).
    pub fn in_order(&self) -> impl Iterator<Item = &Connection> {
        self.in_order_from(0)
    }

    /// Connections being shown, first seen first, from the `skip`-th on: those skipped are not
    /// touched.
    pub fn in_order_from(&self, skip: usize) -> impl Iterator<Item = &Connection> {
        self.order
            .listed_slots()
            .skip(skip)
            .map(|slot| &self.conns[slot])
    }

    /// Connections being shown, first seen first, but those of `ids` left out: they are
    /// known by their ids, not touched.
    pub fn in_order_without<'a>(
        &'a self,
        ids: &'a hashbrown::HashSet<u64>,
    ) -> impl Iterator<Item = (u64, usize)> + 'a {
        self.order
            .listed_entries()
            .filter(move |(id, _)| !ids.contains(id))
    }

    /// The connection shown at `slot` (from [`ConnectionTable::in_order_without`]).
    #[must_use]
    pub fn at(&self, slot: usize) -> &Connection {
        &self.conns[slot]
    }

    /// With `listing`: the connections whose speed may not be zero (every connection with
    /// a speed above zero is among them), in no order; `None` without it.
    #[must_use]
    pub fn moving(&self) -> Option<impl Iterator<Item = &Connection>> {
        self.cfg.listing.then(|| {
            self.moving.iter().filter_map(|&(slot, id)| {
                self.conns
                    .get(slot as usize)
                    .filter(|c| c.id() == id && !c.is_unanswered())
            })
        })
    }

    /// Takes in one packet a source saw (a capture, libpcap).
    pub fn apply(&mut self, u: &FlowUpdate) {
        self.take(u, true);
    }

    /// Takes in what a source saw: one packet (`per_packet`), or a kernel poll's update.
    fn take(&mut self, u: &FlowUpdate, per_packet: bool) {
        let (key, _) = FlowKey::new(u.src, u.dst);
        let at = ns(u.ts);
        let slot = match self.find(&key) {
            Some(slot) => {
                let c = &self.conns[slot];
                if u.flags.bare_syn()
                    && (matches!(c.state(), State::Closed | State::Reset) || c.is_unanswered())
                {
                    // A new handshake on a finished tuple (or after one-way noise): a new connection.
                    self.remove(slot);
                    self.open(u, at)
                } else {
                    Some(slot)
                }
            }
            None if u.flags.bare_syn() => self.open(u, at),
            None if self.cfg.detect_midstream && u.flags.plain() => self.open_unanswered(u, at),
            None => None,
        };
        if let Some(slot) = slot {
            self.account(slot, u, at, per_packet);
        }
    }

    /// Takes in one poll of a counting source: its events first (a handshake must open its
    /// connection before its counts arrive), then the counts, then again the events that found
    /// no connection (a FIN of a connection picked up mid-stream, which its counts create).
    pub fn apply_poll(&mut self, poll: &Polled) {
        let mut late = Vec::new();
        for e in &poll.events {
            if e.flags.bare_syn() || self.get(&FlowKey::new(e.src, e.dst).0).is_some() {
                self.take(e, false);
            } else {
                late.push(e);
            }
        }
        for c in &poll.counts {
            self.take(c, false);
        }
        for e in late {
            self.take(e, false);
        }
    }

    /// The slot of the connection (shown or not) that `key` names.
    fn find(&self, key: &FlowKey) -> Option<usize> {
        let hash = hash32(&self.hasher, key);
        self.index
            .find(widen(hash), |e| {
                e.hash == hash && self.conns[e.slot as usize].is(key)
            })
            .map(|e| e.slot as usize)
    }

    /// Puts `conn` in the table; `None` if it cannot be held.
    fn insert(&mut self, conn: Connection) -> Option<usize> {
        let hash = hash32(&self.hasher, &conn.key());
        // More than 2 billion connections cannot be held anyway: the newest is refused.
        let (id, listed) = (conn.id(), !conn.is_unanswered());
        let slot = self.conns.insert(conn)?;
        if slot >= Order::SLOTS {
            self.conns.remove(slot);
            return None;
        }
        let slot32 = u32::try_from(slot).ok()?;
        if self.cfg.listing {
            self.order.push(id, slot, listed);
        }
        // Growing the index rehashes from the kept hashes, not from the connections (which
        // would be a cache miss each).
        self.index
            .insert_unique(widen(hash), Slot { slot: slot32, hash }, |e| widen(e.hash));
        Some(slot)
    }

    /// Takes the connection at `slot` out of the table (into `finished` with `keep_finished`,
    /// unless it was a one-way flow).
    fn remove(&mut self, slot: usize) {
        let hash = hash32(&self.hasher, &self.conns[slot].key());
        if let Ok(entry) = self
            .index
            .find_entry(widen(hash), |e| e.slot as usize == slot)
        {
            entry.remove();
        }
        let conn = self.conns.remove(slot);
        self.order.remove(conn.id());
        if conn.is_unanswered() {
            self.unanswered_live -= 1;
            return;
        }
        let how = Ending::of(conn.state());
        self.tally.close(&conn, how);
        match (self.cfg.keep_finished, self.cfg.report_ended) {
            (true, true) => {
                self.ended.push(Ended {
                    conn: conn.clone(),
                    how,
                });
                self.finished.push(conn);
            }
            (true, false) => self.finished.push(conn),
            (false, true) => self.ended.push(Ended { conn, how }),
            (false, false) => {}
        }
    }

    /// Whether `server` is an address of this host (known live only).
    fn is_local(&self, server: SocketAddr) -> bool {
        self.listening
            .as_ref()
            .is_some_and(|l| l.is_local_addr(server.ip()))
    }

    /// The id of the next connection first seen.
    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Opens a connection with the handshake `u` starts.
    fn open(&mut self, u: &FlowUpdate, at: u64) -> Option<usize> {
        let mut conn = Connection::new(self.next_id(), u.src, u.dst, at, State::SynSent);
        conn.set_local_server(self.is_local(u.dst));
        let slot = self.insert(conn)?;
        self.tally.open(&self.conns[slot]);
        self.watch(slot);
        Some(slot)
    }

    /// Opens a one-way flow with `u`, forgetting the oldest beyond `max_unanswered`.
    fn open_unanswered(&mut self, u: &FlowUpdate, at: u64) -> Option<usize> {
        let conn = Connection::one_way(self.next_id(), u.src, u.dst, at);
        let id = conn.id();
        let slot = self.insert(conn)?;
        self.stats.unanswered_opened += 1;
        self.unanswered_live += 1;
        self.unanswered
            .push_back((u32::try_from(slot).unwrap_or(u32::MAX), id));
        while self.unanswered_live > self.cfg.max_unanswered {
            self.evict_oldest_unanswered();
        }
        self.watch(slot);
        Some(slot)
    }

    /// Forgets the oldest one-way flow still in the table.
    fn evict_oldest_unanswered(&mut self) {
        while let Some((slot, id)) = self.unanswered.pop_front() {
            if still_unanswered(&self.conns, slot, id) {
                self.remove(slot as usize);
                self.stats.unanswered_evicted += 1;
                return;
            }
        }
    }

    /// Drops the stale entries of the one-way queue once they outnumber the live ones.
    fn compact_unanswered(&mut self) {
        if self.unanswered.len() > 2 * self.unanswered_live + 64 {
            let conns = &self.conns;
            self.unanswered
                .retain(|&(slot, id)| still_unanswered(conns, slot, id));
        }
    }

    /// Puts the connection at `slot` in the list of those that may time out, if its state may
    /// and it is not there yet.
    fn watch(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        if !c.is_expiring() && expiry::limit(&self.cfg, c).is_some() {
            c.set_expiring(true);
            self.expiring.push(u32::try_from(slot).unwrap_or(u32::MAX));
        }
    }

    /// Puts the connection at `slot`, which just carried `payload` bytes, in the list of those
    /// whose speed may not be zero (with `listing`), if it is not there yet.
    fn watch_moving(&mut self, slot: usize, payload: u64) {
        if !self.cfg.listing || payload == 0 {
            return;
        }
        let c = &mut self.conns[slot];
        if !c.is_moving() {
            c.set_moving(true);
            self.moving
                .push((u32::try_from(slot).unwrap_or(u32::MAX), c.id()));
        }
    }

    /// Counts the update and moves the state machine of the connection at `slot`. The answer to
    /// a one-way flow makes it a connection picked up mid-stream; its other packets only count.
    fn account(&mut self, slot: usize, u: &FlowUpdate, at: u64, per_packet: bool) {
        let c = &mut self.conns[slot];
        if c.is_unanswered() && c.side_of(u.src) == Side::Server {
            if !u.flags.plain() {
                // A SYN, FIN or RST answer does not reveal a connection.
                return;
            }
            // Both directions seen: a local listening socket names the server.
            let listener = self
                .listening
                .as_ref()
                .and_then(|l| l.server_of(c.client(), c.server()));
            c.answered(listener);
            self.unanswered_live -= 1;
            c.advance(u, at, self.cfg.rate, per_packet);
            let local = self.is_local(self.conns[slot].server());
            let c = &mut self.conns[slot];
            c.set_local_server(local);
            // Listed from now on, with everything it sent while one-way.
            self.tally.open(c);
            self.order.listed(c.id());
            self.watch(slot);
            self.watch_moving(slot, u.payload_bytes);
            return;
        }
        let (before, listed) = (c.state(), !c.is_unanswered());
        let side = c.side_of(u.src);
        c.advance(u, at, self.cfg.rate, per_packet);
        self.watch(slot);
        self.watch_moving(slot, u.payload_bytes);
        if listed {
            let (none, sent) = (Counters::default(), Counters::of(u));
            let by_side = match side {
                Side::Client => (sent, none),
                Side::Server => (none, sent),
            };
            self.tally.advanced(&self.conns[slot], before, by_side);
        }
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
