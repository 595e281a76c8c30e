//! The table's connections by slot: a slab (a vector with a free list) that holds a connection
//! in its own size (an empty slot is `None`, which the connection's niche holds: no tag beside
//! it, where `slab` spent 8 bytes a connection).

use std::ops::{Index, IndexMut};

use super::Connection;

#[derive(Debug, Default)]
pub(super) struct Slots {
    entries: Vec<Option<Connection>>,
    /// Each slot's connection's id and marks ([`LISTED`], [`MOVING`]), [`EMPTY`] for none: what
    /// the list and the totals ask of every connection at every refresh, in 8 bytes a slot
    /// rather than in the connection (a cache miss each, on a big table).
    tags: Vec<u64>,
    /// Empty slots, the last freed last.
    free: Vec<u32>,
    len: usize,
}

/// A slot's tag when it holds no connection.
pub(super) const EMPTY: u64 = u64::MAX;
/// The connection is shown (not a one-way flow waiting for an answer).
pub(super) const LISTED: u64 = 1 << 63;
/// The connection is in the table's list of those that carried payload lately.
pub(super) const MOVING: u64 = 1 << 62;
/// The id's bits of a tag.
const ID: u64 = MOVING - 1;

impl Slots {
    /// Puts `conn` in a free slot (the last freed first), or a new one; `None` past 2^32 slots.
    pub(super) fn insert(&mut self, conn: Connection) -> Option<usize> {
        let slot = match self.free.pop() {
            Some(slot) => slot as usize,
            None => {
                u32::try_from(self.entries.len()).ok()?;
                self.entries.push(None);
                self.entries.len() - 1
            }
        };
        let listed = if conn.is_unanswered() { 0 } else { LISTED };
        self.tags.resize(self.entries.len(), EMPTY);
        self.tags[slot] = (conn.id() & ID) | listed;
        self.entries[slot] = Some(conn);
        self.len += 1;
        Some(slot)
    }

    /// Takes the connection out of `slot`.
    ///
    /// # Panics
    /// `slot` holds none (a bug of the table's).
    pub(super) fn remove(&mut self, slot: usize) -> Connection {
        let conn = self.entries[slot].take().expect("a connection in the slot");
        self.tags[slot] = EMPTY;
        // Slots are below 2^32 (see `insert`).
        self.free.push(u32::try_from(slot).unwrap_or(u32::MAX));
        self.len -= 1;
        conn
    }

    pub(super) fn get(&self, slot: usize) -> Option<&Connection> {
        self.entries.get(slot).and_then(Option::as_ref)
    }

    /// Whether `slot` holds connection `id` with all of `marks`.
    pub(super) fn holds(&self, slot: usize, id: u64, marks: u64) -> bool {
        self.tags
            .get(slot)
            .is_some_and(|&t| t != EMPTY && t & ID == id & ID && t & marks == marks)
    }

    /// Sets (`on`) or clears `mark` on the connection in `slot`.
    pub(super) fn mark(&mut self, slot: usize, mark: u64, on: bool) {
        if let Some(t) = self.tags.get_mut(slot).filter(|t| **t != EMPTY) {
            *t = if on { *t | mark } else { *t & !mark };
        }
    }

    /// Whether `mark` is set on the connection in `slot`.
    pub(super) fn marked(&self, slot: usize, mark: u64) -> bool {
        self.tags
            .get(slot)
            .is_some_and(|&t| t != EMPTY && t & mark != 0)
    }

    pub(super) const fn len(&self) -> usize {
        self.len
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Connection)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| c.as_ref().map(|c| (slot, c)))
    }
}

impl Index<usize> for Slots {
    type Output = Connection;

    fn index(&self, slot: usize) -> &Connection {
        self.entries[slot]
            .as_ref()
            .expect("a connection in the slot")
    }
}

impl IndexMut<usize> for Slots {
    fn index_mut(&mut self, slot: usize) -> &mut Connection {
        self.entries[slot]
            .as_mut()
            .expect("a connection in the slot")
    }
}
