//! The table's connections first seen first, kept as they come and go, so that a list in that
//! order (the screen's default, the headless formats') is walked, not sorted, and its window
//! found without touching the connections before it.
//!
//! Ids are handed out in increasing order as connections are first seen, so appending keeps the
//! order; a connection that leaves is found by its id (a binary search) and its entry marked
//! gone; gone entries are dropped in one pass once they are a quarter of all. Each entry is 12
//! bytes (the id and the slot), beside the connection's 248.

/// An entry's slot that no longer holds its connection.
const GONE: u32 = u32::MAX;
/// Set in an entry's slot while its connection is a one-way flow (not listed).
const UNLISTED: u32 = 1 << 31;

/// Ids and slots, in id order.
#[derive(Debug, Default)]
pub(super) struct Order {
    ids: Vec<u64>,
    slots: Vec<u32>,
    gone: usize,
}

impl Order {
    /// Slots at or past this cannot be held (the high bit marks one-way flows).
    pub(super) const SLOTS: usize = UNLISTED as usize;

    /// Appends connection `id` (higher than any before it) at `slot` (below [`Order::SLOTS`]).
    pub(super) fn push(&mut self, id: u64, slot: usize, listed: bool) {
        debug_assert!(self.ids.last().is_none_or(|&last| last < id));
        let slot = u32::try_from(slot).unwrap_or(GONE);
        self.ids.push(id);
        self.slots.push(if listed { slot } else { slot | UNLISTED });
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// Connection `id` is listed from now on.
    pub(super) fn listed(&mut self, id: u64) {
        if let Some(i) = self.position(id) {
            if self.slots[i] != GONE {
                self.slots[i] &= !UNLISTED;
            }
        }
    }

    /// Connection `id` left.
    pub(super) fn remove(&mut self, id: u64) {
        if let Some(i) = self.position(id) {
            if self.slots[i] != GONE {
                self.slots[i] = GONE;
                self.gone += 1;
            }
        }
        if self.gone * 4 > self.ids.len() + 64 {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let mut keep = 0;
        for i in 0..self.ids.len() {
            if self.slots[i] != GONE {
                self.ids[keep] = self.ids[i];
                self.slots[keep] = self.slots[i];
                keep += 1;
            }
        }
        self.ids.truncate(keep);
        self.slots.truncate(keep);
        self.gone = 0;
    }

    /// The slots of the listed connections, first seen first.
    pub(super) fn listed_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .filter(|&&s| s & UNLISTED == 0)
            .map(|&s| s as usize)
    }

    /// The ids and slots of the listed connections, first seen first.
    pub(super) fn listed_entries(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.ids
            .iter()
            .zip(&self.slots)
            .filter(|(_, &s)| s & UNLISTED == 0)
            .map(|(&id, &s)| (id, s as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_first_seen_first_and_go() {
        let mut o = Order::default();
        o.push(1, 10, true);
        o.push(2, 11, false);
        o.push(5, 3, true);
        o.push(7, 12, true);
        assert_eq!(o.listed_slots().collect::<Vec<_>>(), [10, 3, 12]);
        o.listed(2);
        o.remove(5);
        // Unknown or gone ids change nothing.
        o.remove(5);
        o.remove(6);
        o.listed(5);
        assert_eq!(o.listed_slots().collect::<Vec<_>>(), [10, 11, 12]);
        assert_eq!(
            o.listed_entries().collect::<Vec<_>>(),
            [(1, 10), (2, 11), (7, 12)]
        );
    }

    #[test]
    fn gone_entries_are_dropped_once_a_quarter_of_all() {
        let mut o = Order::default();
        for slot in 0..1000usize {
            o.push(slot as u64, slot, true);
        }
        for id in (0..1000u64).step_by(2) {
            o.remove(id);
        }
        assert!(o.ids.len() < 1000, "compacted: {} entries", o.ids.len());
        assert!(o.gone * 4 <= o.ids.len() + 64);
        let left: Vec<usize> = o.listed_slots().collect();
        assert_eq!(left, (1..1000).step_by(2).collect::<Vec<_>>());
        // The search still finds what is left after a compaction.
        o.remove(999);
        assert_eq!(o.listed_slots().last(), Some(997));
    }
}
