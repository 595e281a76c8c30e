//! The table's connections by slot: a slab (a vector with a free list) that holds a connection
//! in its own size (an empty slot is `None`, which the connection's niche holds: no tag beside
//! it, where `slab` spent 8 bytes a connection).

use std::ops::{Index, IndexMut};

use super::Connection;

#[derive(Debug, Default)]
pub(super) struct Slots {
    entries: Vec<Option<Connection>>,
    /// Empty slots, the last freed last.
    free: Vec<u32>,
    len: usize,
}

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
        // Slots are below 2^32 (see `insert`).
        self.free.push(u32::try_from(slot).unwrap_or(u32::MAX));
        self.len -= 1;
        conn
    }

    pub(super) fn get(&self, slot: usize) -> Option<&Connection> {
        self.entries.get(slot).and_then(Option::as_ref)
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
