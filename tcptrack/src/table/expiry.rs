//! When connections leave the table: how long each state may stay idle.

use std::time::Duration;

use super::{ns, Connection, ConnectionTable, State, TableConfig};
use crate::flow::Timestamp;

/// How long `c` may stay idle before it leaves the table (`None`: while it lives).
pub(super) fn limit(cfg: &TableConfig, c: &Connection) -> Option<Duration> {
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
    ///
    /// Only the connections whose state may time out are looked at (the `expiring` list), and,
    /// with `listing`, those that carried payload lately: a refresh costs what is active,
    /// not every connection held.
    pub fn expire(&mut self, now: Timestamp) {
        let now_ns = ns(now);
        let (cfg, conns) = (&self.cfg, &mut self.conns);
        let mut due: Vec<(u64, usize)> = Vec::new();
        // Each marked connection is looked at once: its mark is taken off as its first entry is
        // seen (another entry of the same slot is then stale), and put back on those kept.
        self.expiring.retain(|&slot| {
            let slot = slot as usize;
            let Some(c) = conns.get(slot).filter(|c| c.is_expiring()) else {
                // Stale: its slot empty, or its connection seen already or not waiting.
                return false;
            };
            let keep = match limit(cfg, c) {
                None => false,
                Some(l) if now_ns.saturating_sub(c.last_seen_ns()) > ns(l) => {
                    due.push((c.id(), slot));
                    false
                }
                Some(_) => true,
            };
            conns[slot].set_expiring(false);
            keep
        });
        for &slot in &self.expiring {
            self.conns[slot as usize].set_expiring(true);
        }
        // Those leaving together leave first seen first.
        due.sort_unstable();
        for (_, slot) in due {
            self.remove(slot);
        }
        self.compact_unanswered();
        self.sweep_moving(now);
    }

    /// Drops from the `moving` list the connections gone or quiet at `now`.
    fn sweep_moving(&mut self, now: Timestamp) {
        let (rate, conns) = (self.cfg.rate, &mut self.conns);
        self.moving.retain(|&(slot, id)| {
            let slot = slot as usize;
            match conns.get(slot) {
                Some(c) if c.id() == id => {
                    let quiet = c.is_quiet(rate, now);
                    if quiet {
                        conns[slot].set_moving(false);
                    }
                    !quiet
                }
                _ => false,
            }
        });
    }
}
