//! The flow cache's slots, mapped into tcptrack's memory: read and emptied in place at each
//! drain, without a system call (see `tcptrack_common::MAP_SLOTS` and the kernel side's
//! `cache.rs`).
//!
//! A drain adds each claimed slot's counts to its connection's entry from the flow map as one
//! more CPU's values, or makes an entry of its own for a connection the map does not hold (most
//! of those in slots).

use hashbrown::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::EbpfLoader;
use tcptrack_common::{
    proto::tcp, ConnKey, FlowValue, Slot, GLOBAL_CACHE_CPUS, GLOBAL_CACHE_SLOTS, MAP_CLAIMED,
    MAP_FLOWS, MAP_SLOTS,
};

/// Bytes the slots of both epochs may take, whatever the CPUs: a region per CPU and epoch
/// gets the largest power of two of slots that fits (and no more than the flow map's
/// capacity). Two CPUs: 32,768 slots each, four megabytes a region. The claimed lists add an
/// eighth of that.
const BUDGET_BYTES: usize = 16 << 20;

/// The sizes of the kernel object's maps and the cache's globals for `flows` connections a
/// flow map and `cpus` possible CPUs: what [`Sizes::apply`] gives a loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub flows: u32,
    pub cpus: u32,
    /// Slots per region (a power of two).
    pub slots: u32,
}

impl Sizes {
    #[must_use]
    pub fn new(flows: u32, cpus: usize) -> Self {
        let fit = BUDGET_BYTES / (2 * cpus.max(1) * std::mem::size_of::<Slot>());
        let cap = u32::try_from(fit).unwrap_or(u32::MAX).min(flows).max(2);
        Self {
            flows,
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            // The largest power of two not above the cap.
            slots: 1 << (31 - cap.leading_zeros()),
        }
    }

    /// Elements of the slots' array (both epochs) and of the claimed lists'.
    const fn elements(&self) -> (u32, u32) {
        let regions = 2 * self.cpus;
        (regions * self.slots, regions * (self.slots + 1))
    }

    /// Sizes the flow maps, the slots and the claimed lists, and sets the cache's globals.
    pub fn apply<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        let (slots, claimed) = self.elements();
        loader
            .map_max_entries(MAP_FLOWS[0], self.flows)
            .map_max_entries(MAP_FLOWS[1], self.flows)
            .map_max_entries(MAP_SLOTS, slots)
            .map_max_entries(MAP_CLAIMED, claimed)
            .override_global(GLOBAL_CACHE_SLOTS, &self.slots, true)
            .override_global(GLOBAL_CACHE_CPUS, &self.cpus, true);
    }
}

/// An array map mapped into memory, `len` elements of `T`.
struct Mapped<T> {
    map: memmap2::MmapRaw,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T> Mapped<T> {
    fn new(fd: BorrowedFd<'_>, len: usize) -> std::io::Result<Self> {
        // A shared mapping of the map's memory (BPF_F_MMAPABLE), no larger than the kernel
        // made it; its contents change under it (the programs write it), which is why it is
        // reached only through raw pointers, by volatile reads and writes (never a reference).
        let map = memmap2::MmapOptions::new()
            .len(len * std::mem::size_of::<T>())
            .map_raw(fd.as_raw_fd())?;
        Ok(Self {
            map,
            len,
            _t: std::marker::PhantomData,
        })
    }

    /// Element `i`, as the programs last wrote it.
    fn get(&self, i: usize) -> Option<T> {
        // An array's elements lie one after the other from a page boundary, each the size of
        // `T` (`Slot` and `u64` are multiples of 8, the kernel's element alignment).
        let p = self.map.as_ptr().cast::<T>().wrapping_add(i);
        // SAFETY: within the mapping (i < len) and aligned. The kernel writes other elements
        // meanwhile, never this one (see `Cache::take`): a volatile read of shared memory.
        (i < self.len).then(|| unsafe { p.read_volatile() })
    }

    fn set(&mut self, i: usize, v: T) {
        let p = self.map.as_mut_ptr().cast::<T>().wrapping_add(i);
        if i < self.len {
            // SAFETY: as in `get`.
            unsafe { p.write_volatile(v) };
        }
    }
}

/// The slots and claimed lists of both epochs, mapped.
pub struct Cache {
    sizes: Sizes,
    slots: Mapped<Slot>,
    claimed: Mapped<u64>,
    /// Where each key of a drain is in its output (kept for its allocation).
    index: HashMap<ConnKey, usize>,
    /// The slots of the last drain that counted packets: (CPU, slot, connection), held for
    /// their connections in the next interval (see [`Cache::hold`]).
    held: Vec<(usize, usize, ConnKey)>,
}

impl Cache {
    /// Maps the object's slots and claimed lists, sized as `sizes` says.
    ///
    /// # Errors
    /// mmap(2) refused (a kernel whose arrays cannot be mapped: before 5.5).
    pub fn map(
        sizes: Sizes,
        slots: BorrowedFd<'_>,
        claimed: BorrowedFd<'_>,
    ) -> std::io::Result<Self> {
        let (n_slots, n_claimed) = sizes.elements();
        Ok(Self {
            sizes,
            slots: Mapped::new(slots, n_slots as usize)?,
            claimed: Mapped::new(claimed, n_claimed as usize)?,
            index: HashMap::new(),
            held: Vec::new(),
        })
    }

    /// Where the region of `epoch` and `cpu` starts, as the programs lay them out: its first
    /// slot in `SLOTS`, and its count of claims in `CLAIMED` (the list of them follows).
    fn region(&self, epoch: u32, cpu: usize) -> (usize, usize) {
        let slots = self.sizes.slots as usize;
        let region = usize::from(epoch != 0) * self.sizes.cpus as usize + cpu;
        (region * slots, region * (slots + 1))
    }

    /// Adds the claimed slots of `epoch` to the connections of `out` (the flow map's drain of
    /// the same epoch), and empties them. The programs count into the other epoch meanwhile.
    pub fn take(&mut self, epoch: u32, out: &mut Vec<(ConnKey, Vec<FlowValue>)>) {
        let slots = self.sizes.slots as usize;
        let cpus = self.sizes.cpus as usize;
        let mut indexed = false;
        self.held.clear();
        for cpu in 0..cpus {
            let (first, list) = self.region(epoch, cpu);
            let claims = self.claimed.get(list).unwrap_or(0);
            let claims = usize::try_from(claims).unwrap_or(usize::MAX).min(slots);
            if claims == 0 {
                continue;
            }
            if !indexed {
                self.index.clear();
                self.index
                    .extend(out.iter().enumerate().map(|(i, (key, _))| (*key, i)));
                indexed = true;
            }
            for c in 0..claims {
                let Some(at) = self.claimed.get(list + 1 + c) else {
                    break;
                };
                // An index out of the region (the kernel writes none) is passed over.
                let Some(at) = usize::try_from(at).ok().filter(|&at| at < slots) else {
                    continue;
                };
                let Some(slot) = self.slots.get(first + at) else {
                    continue;
                };
                self.slots.set(first + at, Slot::default());
                if slot.key.family == 0 {
                    continue;
                }
                if slot.value.dir.iter().any(|d| d.packets > 0) {
                    self.held.push((cpu, at, slot.key));
                }
                match self.index.get(&slot.key) {
                    Some(&i) => out[i].1.push(slot.value),
                    None => {
                        self.index.insert(slot.key, out.len());
                        out.push((slot.key, vec![slot.value]));
                    }
                }
            }
            self.claimed.set(list, 0);
        }
        // A connection that ended keeps no slot (see `ended`), whichever CPU saw it end.
        let index = &self.index;
        self.held.retain(|(_, _, key)| {
            index
                .get(key)
                .and_then(|&i| out.get(i))
                .is_none_or(|(_, values)| !ended(values))
        });
    }

    /// Gives the connections whose slots counted packets in the last drain the same slots in
    /// `epoch`, with nothing counted yet, so that a flood of new tuples cannot take them
    /// first (as [`super::Kernel::reserve`] does for the map's). Only while the programs count
    /// into the other epoch: the regions are then idle, emptied by their last drain (a slot
    /// found taken, or a list not empty, after a drain that failed, is left as it is).
    pub fn hold(&mut self, epoch: u32) {
        let slots = self.sizes.slots as usize;
        let held = std::mem::take(&mut self.held);
        for &(cpu, at, key) in &held {
            let (first, list) = self.region(epoch, cpu);
            let claims = self.claimed.get(list).unwrap_or(u64::MAX);
            let Ok(n) = usize::try_from(claims) else {
                continue;
            };
            let slot = first + at;
            if n >= slots || self.slots.get(slot).is_none_or(|s| s.key.family != 0) {
                continue;
            }
            self.slots.set(
                slot,
                Slot {
                    key,
                    ..Slot::default()
                },
            );
            self.claimed.set(list + 1 + n, at as u64);
            self.claimed.set(list, claims + 1);
        }
        self.held = held;
    }
}

/// Whether a connection's counts of an interval (one value per CPU that counted it) show it
/// ended: a reset either way, or a FIN each way. Its place is not kept for the next interval
/// (see [`Cache::hold`], `Kernel::reserve`): under a churn of short connections, the places
/// of those gone would otherwise fill the cache and the map, and send the new ones to the
/// map's insert. A packet after the end (the last ACK, a reset ignored) takes a place anew.
#[must_use]
pub fn ended(values: &[FlowValue]) -> bool {
    let seen = |d: usize| values.iter().fold(0, |f, v| f | v.flags[d]);
    let (a, b) = (seen(0), seen(1));
    (a | b) & tcp::RST != 0 || (a & b & tcp::FIN) != 0
}

/// Keeps the calling thread on the CPU it is on, for tests and benchmarks that run the
/// programs with BPF_PROG_TEST_RUN (which runs them on the caller's CPU): the slots a program
/// counts into are its CPU's.
///
/// # Errors
/// The kernel refused the affinity.
pub fn stay_on_this_cpu() -> std::io::Result<()> {
    // SAFETY: sched_getcpu and sched_setaffinity on this thread, with a set made here.
    unsafe {
        let cpu =
            usize::try_from(libc::sched_getcpu()).map_err(|_| std::io::Error::last_os_error())?;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_setaffinity(0, size, &raw const set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
