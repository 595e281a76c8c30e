//! The flow cache: a direct-mapped table of slots per epoch and CPU in front of the flow maps.
//!
//! A connection's packets on a CPU are counted in its slot there: a dozen instructions of
//! hashing, an array element and a comparison of five words, no hash-map call. The first
//! connection to reach a free slot in an interval holds it until userspace drains the epoch;
//! one whose slot another holds is counted in the flow map, as without the cache (a lookup: a
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

/// A connection's slot on this CPU in the epoch's region.
pub struct Place {
    slot: *mut Slot,
    /// The region's first element in `CLAIMED`.
    claimed: u32,
    /// The slot's index in its region.
    index: u32,
    slots: u32,
}

/// The slot of `key` on this CPU in `epoch`, whoever holds it; `None` without a cache.
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
    if slots == 0 {
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
    let index = key.slot(slots);
    // Out of the array (an epoch other than 0 and 1 cannot be): no slot, the flow map counts.
    let slot = SLOTS.get_ptr_mut(region.wrapping_mul(slots).wrapping_add(index))?;
    Some(Place {
        slot,
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
    /// The slot.
    #[inline(always)]
    fn slot(&mut self) -> &mut Slot {
        // SAFETY: an element of the slots' array, written only by this CPU's programs, one at
        // a time (as a per-CPU map's value is), and by userspace only in the other epoch.
        unsafe { &mut *self.slot }
    }

    /// This CPU's counts of `key` in its slot, if the slot holds it.
    #[inline(always)]
    pub fn holding(&mut self, key: &Key) -> Option<&mut FlowValue> {
        let slot = self.slot();
        holds(slot, key).then_some(&mut slot.value)
    }

    /// This CPU's counts of `key` in its slot: the slot holds it, or held nothing and is
    /// claimed for it now (nothing counted yet). `None`: another connection holds it.
    #[inline(always)]
    pub fn take(&mut self, key: &Key) -> Option<&mut FlowValue> {
        let (claimed, index, slots) = (self.claimed, self.index, self.slots);
        let slot = self.slot();
        if holds(slot, key) {
            return Some(&mut slot.value);
        }
        if slot.key.family != 0 {
            return None;
        }
        let count = CLAIMED.get_ptr_mut(claimed)?;
        // SAFETY: an element of `CLAIMED`, this CPU's region's count (see `slot`).
        let n = unsafe { *count };
        // Never more claims than slots, unless userspace failed to empty the region: then
        // the list would run into the next region's.
        if n >= u64::from(slots) {
            return None;
        }
        #[expect(clippy::cast_possible_truncation, reason = "below `slots`, a u32")]
        let at = claimed.wrapping_add(1).wrapping_add(n as u32);
        let entry = CLAIMED.get_ptr_mut(at)?;
        // SAFETY: as above.
        unsafe {
            *entry = u64::from(index);
            *count = n + 1;
        }
        slot.key = *key.conn();
        slot.value = FlowValue::default();
        Some(&mut slot.value)
    }
}
