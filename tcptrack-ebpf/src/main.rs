//! tcptrack's kernel side: count bytes, packets and flags per TCP connection and direction into
//! a per-CPU LRU map, and send control packets (SYN, FIN, RST, FIN acknowledged) to userspace
//! through a ring buffer. Every packet passes unchanged, whatever happens while looking at it;
//! nothing is logged per packet.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST, TC_ACT_PIPE},
    helpers::{bpf_ktime_get_ns, bpf_xdp_load_bytes},
    macros::{classifier, map, xdp},
    maps::{HashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use tcptrack_common::{
    counter, event, FinState, FlowEvent, FlowKey, FlowValue, DEFAULT_MAX_FLOWS, EVENTS_BYTES,
    FAMILY_IPV4, FAMILY_IPV6, MAX_FINS,
};

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::SLOTS, 0);

#[map(name = "FLOWS")]
static FLOWS: LruPerCpuHashMap<FlowKey, FlowValue> =
    LruPerCpuHashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

#[map(name = "FINS")]
static FINS: HashMap<FlowKey, FinState> = HashMap::with_max_entries(MAX_FINS, 0);

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Reading a packet, whichever hook it came through.
trait Packet {
    fn load<T: Copy>(&self, offset: usize) -> Option<T>;
    /// Bytes of the packet (for TC, of the whole GSO super-packet).
    fn len(&self) -> usize;
    /// Wire packets this packet stands for (GSO segments in TC; 1 in XDP).
    fn segments(&self) -> u32;
}

impl Packet for TcContext {
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        TcContext::load(self, offset).ok()
    }
    fn len(&self) -> usize {
        TcContext::len(self) as usize
    }
    fn segments(&self) -> u32 {
        // SAFETY: the context pointer the kernel handed this program.
        let segs = unsafe { (*self.skb.skb).gso_segs };
        if segs == 0 {
            1
        } else {
            segs
        }
    }
}

impl Packet for XdpContext {
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        // The helper (kernel 5.18) rather than direct access: header offsets here depend on the
        // packet (IPv6 extension headers), which direct access makes hard to verify.
        let mut out = core::mem::MaybeUninit::<T>::uninit();
        // SAFETY: the helper writes exactly size_of::<T>() bytes into `out`, or fails.
        let r = unsafe {
            bpf_xdp_load_bytes(
                self.ctx,
                offset as u32,
                out.as_mut_ptr().cast(),
                core::mem::size_of::<T>() as u32,
            )
        };
        // SAFETY: initialized by the successful helper call.
        (r == 0).then(|| unsafe { out.assume_init() })
    }
    fn len(&self) -> usize {
        self.data_end() - self.data()
    }
    fn segments(&self) -> u32 {
        1
    }
}

fn be16<P: Packet>(p: &P, off: usize) -> Option<u16> {
    p.load::<u16>(off).map(u16::from_be)
}

fn be32<P: Packet>(p: &P, off: usize) -> Option<u32> {
    p.load::<u32>(off).map(u32::from_be)
}

/// One TCP packet, parsed.
struct Parsed {
    key: FlowKey,
    /// 0: from endpoint 0 of the key; 1: from endpoint 1.
    dir: u8,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: u32,
    /// Link, IP and TCP header bytes (each GSO segment carries them).
    headers: u32,
}

fn bump(slot: u32) {
    if let Some(v) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot of a per-CPU array; no other CPU writes it.
        unsafe { *v += 1 };
    }
}

/// Orders two endpoints: address bytes, then port.
fn lower(a: &[u8; 16], ap: u16, b: &[u8; 16], bp: u16) -> bool {
    let mut i = 0;
    while i < 16 {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    ap <= bp
}

fn parse<P: Packet>(p: &P) -> Option<Parsed> {
    let mut off = 14usize;
    let mut ether_type = be16(p, 12)?;
    // Up to two VLAN tags left in the packet data (802.1Q, QinQ).
    let mut tags = 0;
    while tags < 2 && (ether_type == 0x8100 || ether_type == 0x88a8) {
        ether_type = be16(p, off + 2)?;
        off += 4;
        tags += 1;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    let (family, l4, l4_len) = match ether_type {
        0x0800 => {
            let vihl: u8 = p.load(off)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return None;
            }
            // Fragments carry no (or not all of the) TCP header: not counted.
            if be16(p, off + 6)? & 0x3fff != 0 || p.load::<u8>(off + 9)? != 6 {
                return None;
            }
            let total = usize::from(be16(p, off + 2)?);
            let s: [u8; 4] = p.load(off + 12)?;
            let d: [u8; 4] = p.load(off + 16)?;
            src[..4].copy_from_slice(&s);
            dst[..4].copy_from_slice(&d);
            let l4 = off + ihl;
            // Zero: a big-TCP super-packet; its length is the packet's.
            let len = if total >= ihl {
                total - ihl
            } else {
                p.len().saturating_sub(l4)
            };
            (FAMILY_IPV4, l4, len)
        }
        0x86dd => {
            let declared = usize::from(be16(p, off + 4)?);
            let mut next: u8 = p.load(off + 6)?;
            src = p.load(off + 8)?;
            dst = p.load(off + 24)?;
            let mut l4 = off + 40;
            let mut ext = 0;
            while ext < 6 {
                match next {
                    // Hop-by-hop, routing, destination options: (length + 1) * 8 bytes.
                    0 | 43 | 60 => {
                        let n: u8 = p.load(l4)?;
                        let len: u8 = p.load(l4 + 1)?;
                        next = n;
                        l4 += (usize::from(len) + 1) * 8;
                    }
                    // Authentication header: (length + 2) * 4 bytes.
                    51 => {
                        let n: u8 = p.load(l4)?;
                        let len: u8 = p.load(l4 + 1)?;
                        next = n;
                        l4 += (usize::from(len) + 2) * 4;
                    }
                    _ => break,
                }
                ext += 1;
            }
            if next != 6 {
                return None;
            }
            let ext_len = l4 - off - 40;
            let len = if declared >= ext_len && declared != 0 {
                declared - ext_len
            } else {
                p.len().saturating_sub(l4)
            };
            (FAMILY_IPV6, l4, len)
        }
        _ => return None,
    };
    let sport = be16(p, l4)?;
    let dport = be16(p, l4 + 2)?;
    let seq = be32(p, l4 + 4)?;
    let ack = be32(p, l4 + 8)?;
    let doff: u8 = p.load(l4 + 12)?;
    let flags: u8 = p.load(l4 + 13)?;
    let tcp_header = usize::from(doff >> 4) * 4;
    if tcp_header < 20 {
        return None;
    }
    let from_lower = lower(&src, sport, &dst, dport);
    let key = if from_lower {
        FlowKey {
            addr: [src, dst],
            port: [sport, dport],
            family,
            _pad: [0; 3],
        }
    } else {
        FlowKey {
            addr: [dst, src],
            port: [dport, sport],
            family,
            _pad: [0; 3],
        }
    };
    Some(Parsed {
        key,
        dir: u8::from(!from_lower),
        flags: flags & 0x1f,
        seq,
        ack,
        payload: l4_len.saturating_sub(tcp_header) as u32,
        headers: (l4 + tcp_header) as u32,
    })
}

fn emit(pk: &Parsed, kind: u8, now: u64) {
    match EVENTS.reserve::<FlowEvent>(0) {
        Some(mut entry) => {
            entry.write(FlowEvent {
                key: pk.key,
                ts_ns: now,
                seq: pk.seq,
                ack: pk.ack,
                segment_len: pk.payload,
                flags: pk.flags,
                dir: pk.dir,
                kind,
                _pad: 0,
            });
            entry.submit(0);
        }
        None => bump(counter::EVENTS_LOST),
    }
}

/// Keeps each direction's FIN and reports the ACK that acknowledges it.
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys and values passed by reference stay off the 512-byte BPF stack"
)]
fn track_fins(pk: &Parsed, now: u64) {
    let d = usize::from(pk.dir & 1);
    let other = 1 - d;
    if pk.flags & TCP_RST != 0 {
        let _ = FINS.remove(&pk.key);
        return;
    }
    if pk.flags & TCP_FIN != 0 && FINS.get_ptr_mut(&pk.key).is_none() {
        let _ = FINS.insert(&pk.key, &FinState::default(), BPF_NOEXIST.into());
    }
    let Some(fin) = FINS.get_ptr_mut(&pk.key) else {
        return;
    };
    // SAFETY: a value of the shared FIN map; races between CPUs only repeat the same writes.
    let fin = unsafe { &mut *fin };
    if pk.flags & TCP_ACK != 0
        && fin.sent[other] == 1
        && fin.acked[other] == 0
        && pk.ack == fin.ack_expected[other]
    {
        fin.acked[other] = 1;
        emit(pk, event::FIN_ACKED, now);
    }
    if pk.flags & TCP_FIN != 0 && fin.sent[d] == 0 {
        fin.ack_expected[d] = pk.seq.wrapping_add(pk.payload).wrapping_add(1);
        fin.sent[d] = 1;
    }
    if fin.acked[0] == 1 && fin.acked[1] == 1 {
        let _ = FINS.remove(&pk.key);
    }
}

#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys and values passed by reference stay off the 512-byte BPF stack"
)]
fn count<P: Packet>(p: &P) {
    bump(counter::PACKETS);
    let Some(pk) = parse(p) else {
        return;
    };
    bump(counter::TCP);
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let segments = p.segments();
    let wire = p.len() as u64 + u64::from(segments - 1) * u64::from(pk.headers);
    match FLOWS.get_ptr_mut(&pk.key) {
        Some(v) => {
            // SAFETY: this CPU's value of a per-CPU map entry.
            let v = unsafe { &mut *v };
            let dir = if pk.dir == 0 {
                &mut v.dir[0]
            } else {
                &mut v.dir[1]
            };
            dir.payload_bytes += u64::from(pk.payload);
            dir.wire_bytes += wire;
            dir.packets += u64::from(segments);
            if pk.dir == 0 {
                v.flags[0] |= pk.flags;
            } else {
                v.flags[1] |= pk.flags;
            }
            if v.first_seen_ns == 0 {
                v.first_seen_ns = now;
            }
            v.last_seen_ns = now;
        }
        None => {
            let mut v = FlowValue::default();
            let d = usize::from(pk.dir & 1);
            v.dir[d].payload_bytes = u64::from(pk.payload);
            v.dir[d].wire_bytes = wire;
            v.dir[d].packets = u64::from(segments);
            v.flags[d] = pk.flags;
            v.first_seen_ns = now;
            v.last_seen_ns = now;
            // NOEXIST: another CPU may have made the entry meanwhile; replacing it would wipe
            // the other CPUs' slots. Losing this packet's counts in that race is the price.
            if FLOWS.insert(&pk.key, &v, BPF_NOEXIST.into()).is_ok() {
                bump(counter::FLOWS_CREATED);
            }
        }
    }
    if pk.flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
        emit(&pk, event::CONTROL, now);
    }
    if pk.flags & (TCP_FIN | TCP_ACK | TCP_RST) != 0 {
        track_fins(&pk, now);
    }
}

#[classifier]
pub fn tcptrack_tc(ctx: TcContext) -> i32 {
    count(&ctx);
    TC_ACT_PIPE
}

#[xdp]
pub fn tcptrack_xdp(ctx: XdpContext) -> u32 {
    count(&ctx);
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
