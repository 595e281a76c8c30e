//! The flow cache: a two-way table of slots per epoch and CPU in front of the flow maps.
//!
//! A connection's packets on a CPU are counted in one of its two slots there: a dozen
//! instructions of hashing, an array element and a comparison of five words (two where the
//! neighbour holds it), no hash-map call. The first connection to reach a free slot in an
//! interval holds it until userspace drains the epoch; one whose two slots others hold is
//! counted in the flow map, as without the cache (a lookup: a
//! call, a hash of 40 bytes, its bucket, its entry and this CPU's value, each a cache line; an
//! insert for a new connection, which costs several times that). Userspace maps the slots, reads the
//! claimed ones of the epoch it drains (listed in `CLAIMED`) and empties them (see
//! `tcptrack_common::MAP_SLOTS`).

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE, helpers::bpf_get_smp_processor_id, macros::map, maps::Array,
};
use tcptrack_common::{FlowValue, Slot};

use crate::key::Key;

#[map(name = "SLOTS")]
pub static SLOTS: Array<Slot> = Array::with_max_entries(1, BPF_F_MMAPABLE);

#[map(name = "CLAIMED")]
pub static CLAIMED: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Slots per region (a power of two; 0: no cache), set by userspace at load time, read-only
/// after: the verifier knows it.
#[unsafe(no_mangle)]
static CACHE_SLOTS: u32 = 0;

/// Regions per epoch: the possible CPUs.
#[unsafe(no_mangle)]
static CACHE_CPUS: u32 = 0;

/// Whether two keys' words are the same: word by word, without branches (an array's `==` may
/// become a call to memcmp).
#[inline(always)]
const fn same(a: &[u64; 5], b: &[u64; 5]) -> bool {
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) == 0
}

/// A connection's two slots on this CPU in the epoch's region: the one its key hashes to and
/// its neighbour (the other half of the same 256 bytes, on the same page). Either may hold it;
/// with two ways a new connection finds a free slot where one way alone would have sent it to
/// the flow map's insert, which costs several times a slot (while a region fills to a
/// quarter, about one new connection in nine with one way, one in thirty with two).
pub struct Place {
    ways: [*mut Slot; 2],
    /// The region's first element in `CLAIMED`.
    claimed: u32,
    /// The slots' indexes in their region.
    index: [u32; 2],
    slots: u32,
}

/// The slots of `key` on this CPU in `epoch`, whoever holds them; `None` without a cache.
#[inline(always)]
pub fn place(epoch: u32, key: &Key) -> Option<Place> {
    // SAFETY: reads of globals the loader set; volatile, so that the compiler does not fold
    // the defaults in (the verifier knows the values loaded).
    let (slots, cpus) = unsafe {
        (
            core::ptr::read_volatile(&raw const CACHE_SLOTS),
            core::ptr::read_volatile(&raw const CACHE_CPUS),
        )
    };
    // A region of one slot has no neighbour: no cache (the loader never makes one).
    if slots < 2 {
        return None;
    }
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    // A CPU numbered beyond the regions (possible CPUs numbered with gaps): the flow map
    // counts, rather than another epoch's region.
    if cpu >= cpus {
        return None;
    }
    let region = epoch.wrapping_mul(cpus).wrapping_add(cpu);
    let first = region.wrapping_mul(slots);
    let index = key.slot(slots);
    let index = [index, index ^ 1];
    // Out of the array (an epoch other than 0 and 1 cannot be): no slot, the flow map counts.
    let ways = [
        SLOTS.get_ptr_mut(first.wrapping_add(index[0]))?,
        SLOTS.get_ptr_mut(first.wrapping_add(index[1]))?,
    ];
    Some(Place {
        ways,
        claimed: region.wrapping_mul(slots.wrapping_add(1)),
        index,
        slots,
    })
}

/// Whether `slot` holds `key`.
#[inline(always)]
fn holds(slot: &Slot, key: &Key) -> bool {
    // SAFETY: `Slot` starts with the key, 40 bytes at an 8-aligned offset (elements are 128
    // bytes): read as the five words `Key` is made of.
    let held = unsafe { &*(&raw const slot.key).cast::<[u64; 5]>() };
    same(held, key.words())
}

impl Place {
    /// One of the two slots (0: the one the key picks, else its neighbour). Chosen by a
    /// branch, not an index: a pointer read at a variable offset of the stack would not pass
    /// the verifier.
    #[inline(always)]
    fn way(&mut self, way: usize) -> &mut Slot {
        let slot = if way == 0 { self.ways[0] } else { self.ways[1] };
        // SAFETY: an element of the slots' array, written only by this CPU's programs, one at
        // a time (as a per-CPU map's value is), and by userspace only in the other epoch.
        unsafe { &mut *slot }
    }

    /// Which of the two slots holds `key`, if one does.
    #[inline(always)]
    fn way_of(&mut self, key: &Key) -> Option<usize> {
        if holds(self.way(0), key) {
            Some(0)
        } else if holds(self.way(1), key) {
            Some(1)
        } else {
            None
        }
    }

    /// This CPU's counts of `key` in one of its slots: one holds it, or one held nothing and
    /// is claimed for it now (nothing counted yet). `None`: others hold both.
    #[inline(always)]
    pub fn take(&mut self, key: &Key) -> Option<&mut FlowValue> {
        if let Some(way) = self.way_of(key) {
            return Some(&mut self.way(way).value);
        }
        let way = if self.way(0).key.family == 0 {
            0
        } else if self.way(1).key.family == 0 {
            1
        } else {
            return None;
        };
        let count = CLAIMED.get_ptr_mut(self.claimed)?;
        // SAFETY: an element of `CLAIMED`, this CPU's region's count (see `way`).
        let n = unsafe { *count };
        // Never more claims than slots, unless userspace failed to empty the region: then
        // the list would run into the next region's.
        if n >= u64::from(self.slots) {
            return None;
        }
        #[expect(clippy::cast_possible_truncation, reason = "below `slots`, a u32")]
        let at = self.claimed.wrapping_add(1).wrapping_add(n as u32);
        let entry = CLAIMED.get_ptr_mut(at)?;
        // SAFETY: as above.
        unsafe {
            *entry = u64::from(if way == 0 {
                self.index[0]
            } else {
                self.index[1]
            });
            *count = n + 1;
        }
        let slot = self.way(way);
        slot.key = *key.conn();
        slot.value = FlowValue::default();
        Some(&mut slot.value)
    }
}
