//! When connections leave the table: how long each state may stay idle.

use std::cmp::Reverse;
use std::time::Duration;

use super::{ns, Connection, ConnectionTable, State, TableConfig};
use crate::flow::Timestamp;

/// How long `c` may stay idle before it leaves the table (`None`: while it lives).
fn limit(cfg: &TableConfig, c: &Connection) -> Option<Duration> {
    if c.is_unanswered() {
        return Some(cfg.handshake_timeout);
    }
    match c.state() {
        State::SynSent | State::SynAckAck => Some(cfg.handshake_timeout),
        State::Established => cfg.idle_timeout,
        State::Closing => Some(cfg.closing_timeout),
        State::Closed | State::Reset => Some(cfg.closed_linger),
    }
}

/// The moment after which `c` may leave the table (nanoseconds), if it ever does.
fn deadline(cfg: &TableConfig, c: &Connection) -> Option<u64> {
    limit(cfg, c).map(|l| c.last_seen_ns().saturating_add(ns(l)))
}

impl ConnectionTable {
    /// Queues the connection at `slot` to be looked at when its time may be up: when it comes
    /// in and when its state changes (what its time limit depends on). A connection whose state
    /// has no limit (established, without `idle_timeout`) is not queued, and costs nothing at
    /// expiry.
    pub(super) fn queue_deadline(&mut self, slot: usize) {
        let c = &self.conns[slot];
        if let Some(at) = deadline(&self.cfg, c) {
            // Slots are below 2^32 (see `Slots::insert`).
            let slot = u32::try_from(slot).unwrap_or(u32::MAX);
            self.deadlines.push(Reverse((at, c.id(), slot)));
        }
    }

    /// Forgets the connections whose time is up at `now`. Not to be called while the display is
    /// paused: nothing leaves the table then.
    ///
    /// Costs what is due, not what the table holds: the queue's entries up to `now` are looked
    /// at, each against its connection as it is now (gone, or seen since: queued again at its
    /// new deadline).
    pub fn expire(&mut self, now: Timestamp) {
        let now = ns(now);
        let mut due: Vec<(u64, usize)> = Vec::new();
        while let Some(&Reverse((at, id, slot))) = self.deadlines.peek() {
            if at >= now {
                break;
            }
            self.deadlines.pop();
            let slot = slot as usize;
            let Some(c) = self.conns.get(slot).filter(|c| c.id() == id) else {
                continue; // gone (its slot empty or another connection's)
            };
            match deadline(&self.cfg, c) {
                Some(at) if now > at => due.push((id, slot)),
                Some(at) => {
                    self.deadlines
                        .push(Reverse((at, id, u32::try_from(slot).unwrap_or(u32::MAX))))
                }
                None => {}
            }
        }
        // Those leaving together leave first seen first (a connection queued twice, once).
        due.sort_unstable();
        due.dedup();
        for (_, slot) in due {
            self.remove(slot);
        }
        self.compact_unanswered();
        self.settle(Duration::from_nanos(now));
    }
}
