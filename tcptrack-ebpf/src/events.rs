//! Control packets (SYN, FIN, RST) to userspace, through the `EVENTS` ring.
//!
//! An event is copied into the ring by one helper call (`bpf_ringbuf_output`), where reserving
//! a record, writing it in place and submitting it took two, and asking the ring how full it was
//! a third: on hosts whose kernel mitigates return-stack attacks (Safe RET) every call and
//! return is dear. A new connection's SYN cost about 150 ns more than its ACK where it cost 180
//! (BPF_PROG_TEST_RUN, `examples/kernel_cost`, four runs of each build in turn).
//!
//! A record does not wake the reader: a wakeup per record (the ring's default whenever the
//! reader has caught up) is an interrupt and a scheduler call charged to the packet, most of a
//! new connection's cost under churn. The reader reads the ring on its own clock (at least every
//! `tcptrack_common::EVENTS_READ_EVERY_MS`), and each CPU wakes it every
//! `EVENTS_WAKEUP_EVERY` events it sends (counted in `COUNTERS`), so that a burst never waits
//! for that clock in a ring that can fill: by the time every CPU has sent that many but one,
//! the ring holds `tcptrack_common::EVENTS_WAKEUP_BYTES` at most.

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
};
use tcptrack_common::{counter, event, FlowEvent};

use crate::key::Key;
use crate::maps::{bump, COUNTERS, EVENTS};
use crate::parse::Headers;

/// Events each CPU sends between two wakeups of the reader, set by userspace at load time
/// (`tcptrack_common::events_wakeup_every`); 0 (not set) wakes it at every event.
#[unsafe(no_mangle)]
static EVENTS_WAKEUP_EVERY: u32 = 0;

/// Sends the control packet `h` of connection `key`, from its endpoint `dir`.
#[inline(always)]
pub fn emit(h: &Headers, key: &Key, dir: u8) {
    let event = FlowEvent {
        key: *key.conn(),
        // The precise clock: the order of control packets matters to the state machine.
        // SAFETY: a helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        seq: h.seq,
        ack: h.ack,
        segment_len: h.payload,
        flags: h.flags,
        dir,
        kind: event::CONTROL,
        _pad: 0,
    };
    if EVENTS.output::<FlowEvent>(&event, wakeup().into()).is_err() {
        bump(&COUNTERS, counter::EVENTS_LOST);
    }
}

/// Whether this event wakes the reader: every `EVENTS_WAKEUP_EVERY`-th this CPU sends.
#[inline(always)]
fn wakeup() -> u32 {
    // SAFETY: a read of a global the loader set; volatile, so that the compiler does not fold
    // the default in (the verifier knows the value loaded).
    let every = unsafe { core::ptr::read_volatile(&raw const EVENTS_WAKEUP_EVERY) };
    let Some(sent) = COUNTERS.get_ptr_mut(counter::EVENTS) else {
        return BPF_RB_FORCE_WAKEUP;
    };
    // SAFETY: this CPU's slot of a per-CPU array; no other CPU writes it.
    let n = unsafe {
        *sent += 1;
        *sent
    };
    if every <= 1 || n % u64::from(every) == 0 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}
