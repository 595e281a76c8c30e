//! The maps the programs share with userspace, and the load-time globals.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, PerCpuHashMap, ProgramArray, RingBuf},
};
use tcptrack_common::{
    counter, ConnKey, FlowValue, DEFAULT_MAX_FLOWS, EVENTS_BYTES, OPENERS_BYTES,
};

#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::SLOTS, 0);

/// The connections with packets in the current refresh interval, one map per epoch: the
/// programs count into the one `EPOCH` names while userspace drains the other. A map holds only
/// an interval's activity, so an idle connection costs nothing, and a full map is the option's
/// number of connections active at once, not of connections known.
#[map(name = "FLOWS_0")]
pub static FLOWS_0: PerCpuHashMap<ConnKey, FlowValue> =
    PerCpuHashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

#[map(name = "FLOWS_1")]
pub static FLOWS_1: PerCpuHashMap<ConnKey, FlowValue> =
    PerCpuHashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

/// The epoch (0 or 1) whose flow map the programs count into; userspace flips it.
#[map(name = "EPOCH")]
pub static EPOCH: Array<u32> = Array::with_max_entries(1, 0);

/// Control packets (SYN, FIN, RST), for userspace's state machine.
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// The sockets connecting or accepted, with their process (see `OpenerEvent`).
#[map(name = "OPENERS")]
pub static OPENERS: RingBuf = RingBuf::with_byte_size(OPENERS_BYTES, 0);

/// The kernel filter's program arrays (see `tcptrack_common::MAP_FILTER_TC`): userspace puts
/// the filter it translated from libpcap's classic BPF in slot `FILTER_SLOT`, and the counting
/// program in the slot the filter tail-calls for the packets it selects.
#[map(name = "FILTER_TC")]
pub static FILTER_TC: ProgramArray = ProgramArray::with_max_entries(2, 0);

#[map(name = "FILTER_XDP")]
pub static FILTER_XDP: ProgramArray = ProgramArray::with_max_entries(2, 0);

/// The clocks `tcptrack_clocks` reads (see `tcptrack_common::MAP_CLOCKS`).
#[map(name = "CLOCKS")]
pub static CLOCKS: Array<[u64; 3]> = Array::with_max_entries(1, 0);

/// What `probe_count` counts.
#[map(name = "PROBE")]
pub static PROBE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Adds one to this CPU's counter `slot` of `map`.
#[inline(always)]
pub fn bump(map: &PerCpuArray<u64>, slot: u32) {
    if let Some(v) = map.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot of a per-CPU array; no other CPU writes it.
        unsafe { *v += 1 };
    }
}
