//! When connections leave the table: how long each state may stay idle.

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

impl ConnectionTable {
    /// Forgets the connections whose time is up at `now`. Not to be called while the display is
    /// paused: nothing leaves the table then.
    pub fn expire(&mut self, now: Timestamp) {
        let now = ns(now);
        let cfg = &self.cfg;
        let mut due: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                limit(cfg, c).is_some_and(|l| now.saturating_sub(c.last_seen_ns()) > ns(l))
            })
            .map(|(slot, _)| slot)
            .collect();
        // Those leaving together leave first seen first.
        due.sort_by_key(|&slot| self.conns[slot].id());
        for slot in due {
            self.remove(slot);
        }
        self.compact_unanswered();
    }
}
