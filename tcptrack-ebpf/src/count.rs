//! Counting a packet into its connection's slot of the flow cache, or its entry of the
//! interval's flow map, stage by stage: parse, key, clock, lookup, update, events. The attached
//! programs run every stage; the benchmarks also load programs that stop after each one
//! (`stage_*` in `main.rs`), so that what every stage costs can be read off their differences.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    maps::PerCpuHashMap,
    programs::{TcContext, XdpContext},
};
use tcptrack_common::{counter, proto::tcp, ConnKey, FlowValue};

use crate::cache::place;
use crate::events::emit;
use crate::key::{key, Key};
use crate::maps::{bump, CLOCKS, COUNTERS, EPOCH, FLOWS_0, FLOWS_1};
use crate::packet::{Copied, Frame, Packet};
use crate::parse::{parse, Headers};

/// How far [`counted`] goes: the stages, in order. Each includes those before it.
pub mod stage {
    /// The headers read (and the packet and TCP counters bumped).
    pub const PARSE: u8 = 1;
    /// The connection's key built.
    pub const KEY: u8 = 2;
    /// The clock read.
    pub const CLOCK: u8 = 3;
    /// The connection's place found: its slot in the cache (claimed if it had none and one is
    /// free), or where others hold both, its entry in the interval's map (made by the update).
    pub const LOOKUP: u8 = 4;
    /// The entry updated, or made.
    pub const UPDATE: u8 = 5;
    /// A control packet sent to userspace: all of it, what is attached.
    pub const EVENTS: u8 = 6;
}

/// Keeps `v` computed: a volatile store, so that a stage's work is not optimized away when
/// nothing after it uses its result.
#[inline(always)]
fn keep<T: Copy>(v: T) {
    let mut slot = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: a store into a local.
    unsafe { core::ptr::write_volatile(slot.as_mut_ptr(), v) };
}

/// Counts one TC packet, up to stage `UPTO`.
#[inline(always)]
pub fn tc<const UPTO: u8>(ctx: &TcContext) {
    bump(&COUNTERS, counter::PACKETS);
    let frame = Frame::tc(ctx);
    let headers = match parse(&frame) {
        Some(h) => h,
        // Headers beyond the linear data: read them with the helper.
        None if frame.is_partial() => match parse(&Copied(ctx, frame.segments())) {
            Some(h) => h,
            None => return,
        },
        None => return,
    };
    counted::<UPTO>(&headers, frame.len(), frame.segments());
}

/// Counts one TC packet as [`tc`] does, its headers read with the helper whatever the linear
/// data holds: what the tests hold to [`tc`]'s counts.
#[inline(always)]
pub fn tc_copied(ctx: &TcContext) {
    bump(&COUNTERS, counter::PACKETS);
    let frame = Frame::tc(ctx);
    if let Some(h) = parse(&Copied(ctx, frame.segments())) {
        counted::<{ stage::EVENTS }>(&h, frame.len(), frame.segments());
    }
}

/// Counts one XDP packet (the headers are in the first buffer of a multi-buffer packet).
#[inline(always)]
pub fn xdp(ctx: &XdpContext) {
    bump(&COUNTERS, counter::PACKETS);
    let frame = Frame::xdp(ctx);
    if let Some(h) = parse(&frame) {
        counted::<{ stage::EVENTS }>(&h, frame.len(), 1);
    }
}

/// Counts the TCP packet `h`, `len` bytes standing for `segments` wire packets.
#[inline(always)]
fn counted<const UPTO: u8>(h: &Headers, len: usize, segments: u32) {
    bump(&COUNTERS, counter::TCP);
    if UPTO == stage::PARSE {
        keep((
            h.src, h.dst, h.sport, h.dport, h.flags, h.seq, h.ack, h.payload,
        ));
        return;
    }
    let (key, dir) = key(h);
    if UPTO == stage::KEY {
        keep((key.conn().addr, key.conn().port, dir));
        return;
    }
    let now = clock();
    if UPTO == stage::CLOCK {
        keep(now);
        return;
    }
    let epoch = EPOCH.get(0).copied().unwrap_or(0);
    let mut place = place(epoch, &key);
    if UPTO == stage::LOOKUP {
        let found = place.as_mut().and_then(|p| p.take(&key)).is_some()
            || if epoch == 0 {
                FLOWS_0.get_ptr_mut(key.conn()).is_some()
            } else {
                FLOWS_1.get_ptr_mut(key.conn()).is_some()
            };
        keep((found, now));
        return;
    }
    let wire = len as u64 + u64::from(segments - 1) * u64::from(h.headers);
    let packet = Counted {
        h,
        dir,
        wire,
        segments,
        now,
    };
    if let Some(v) = place.as_mut().and_then(|p| p.take(&key)) {
        add_to(v, &packet);
    } else {
        // Two calls rather than one on either map: each call site then knows its map, and the
        // verifier inlines the lookups.
        let stored = if epoch == 0 {
            add(&FLOWS_0, &key, &packet)
        } else {
            add(&FLOWS_1, &key, &packet)
        };
        if !stored {
            bump(&COUNTERS, counter::MAP_FULL);
        }
    }
    if UPTO == stage::UPDATE {
        return;
    }
    if h.flags & (tcp::SYN | tcp::FIN | tcp::RST) != 0 {
        emit(h, &key, dir);
    }
}

/// The packets' clock: the kernel's tick count (jiffies), a tick's resolution as the coarse
/// monotonic clock has, but a load from memory the verifier puts in place of the helper call,
/// where the coarse clock is a call into the timekeeping code (10 ns a packet, 25 when that
/// code is not in the CPU's caches). Userspace reads ticks as the monotonic clock: see
/// [`clocks`].
#[inline(always)]
fn clock() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_jiffies64() }
}

/// Writes the monotonic clock, the tick count and the monotonic clock again into `CLOCKS`, for
/// userspace, which finds where ticks begin from readings taken across one (see
/// `tcptrack_common::MAP_CLOCKS`).
#[inline(always)]
pub fn clocks() {
    // SAFETY: helpers without arguments.
    let before = unsafe { bpf_ktime_get_ns() };
    let ticks = clock();
    // SAFETY: as above.
    let after = unsafe { bpf_ktime_get_ns() };
    if let Some(p) = CLOCKS.get_ptr_mut(0) {
        // SAFETY: the element of an array map; userspace reads it only after the run.
        unsafe { *p = [before, ticks, after] };
    }
}

/// One packet, as it is added to its connection's counters.
struct Counted<'a> {
    h: &'a Headers,
    dir: u8,
    wire: u64,
    segments: u32,
    now: u64,
}

/// Adds one packet to its connection's entry in `flows`, making the entry if there is none.
/// False when the map is full.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "the value passed by reference stays off the 512-byte BPF stack"
)]
fn add(flows: &PerCpuHashMap<ConnKey, FlowValue>, key: &Key, pk: &Counted) -> bool {
    let key = key.conn();
    if let Some(v) = flows.get_ptr_mut(key) {
        // SAFETY: this CPU's value of a per-CPU map entry.
        add_to(unsafe { &mut *v }, pk);
        return true;
    }
    let mut v = FlowValue::default();
    add_to(&mut v, pk);
    // NOEXIST: another CPU may have made the entry meanwhile; replacing it would wipe the other
    // CPUs' slots. Then this packet goes into the entry that CPU made.
    if flows.insert(key, &v, BPF_NOEXIST.into()).is_ok() {
        return true;
    }
    match flows.get_ptr_mut(key) {
        Some(v) => {
            // SAFETY: as above.
            add_to(unsafe { &mut *v }, pk);
            true
        }
        None => false,
    }
}

/// Adds one packet to this CPU's value of its connection.
#[inline(always)]
fn add_to(v: &mut FlowValue, pk: &Counted) {
    let d = usize::from(pk.dir & 1);
    let dir = &mut v.dir[d];
    dir.payload_bytes += u64::from(pk.h.payload);
    dir.wire_bytes += pk.wire;
    dir.packets += u64::from(pk.segments);
    v.flags[d] |= pk.h.flags;
    if pk.h.flags & tcp::ACK != 0 {
        v.ack[d] = pk.h.ack;
    }
    if v.first_seen == 0 {
        v.first_seen = pk.now;
    }
    v.last_seen = pk.now;
}
