//! Control packets (SYN, FIN, RST) to userspace, through the `EVENTS` ring.
//!
//! A record does not wake the reader: a wakeup per record (the ring's default whenever the
//! reader has caught up) is an interrupt and a scheduler call charged to the packet, most of a
//! new connection's cost under churn. The reader reads the ring on its own clock (at least every
//! `tcptrack_common::EVENTS_READ_EVERY_MS`), and is woken only as the ring fills past each
//! `EVENTS_WAKEUP_BYTES`, so that a burst never waits for that clock in a ring that can fill.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
};
use tcptrack_common::{counter, event, FlowEvent, EVENTS_WAKEUP_BYTES};

use crate::key::Key;
use crate::maps::{bump, COUNTERS, EVENTS};
use crate::parse::Headers;

/// What a record takes in the ring: the event and the ring's 8-byte header.
const RECORD_BYTES: u64 = core::mem::size_of::<FlowEvent>() as u64 + 8;

/// Sends the control packet `h` of connection `key`, from its endpoint `dir`.
#[inline(always)]
pub fn emit(h: &Headers, key: &Key, dir: u8) {
    let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) else {
        bump(&COUNTERS, counter::EVENTS_LOST);
        return;
    };
    entry.write(FlowEvent {
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
    });
    // The ring's fill, this record included: a wakeup as it crosses each eighth of the ring
    // (one wakeup, not one per record past the mark, whatever the reader is doing).
    let filled = EVENTS.query(BPF_RB_AVAIL_DATA.into());
    let before = filled.saturating_sub(RECORD_BYTES);
    let wakeup = if filled / EVENTS_WAKEUP_BYTES != before / EVENTS_WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(wakeup.into());
}
