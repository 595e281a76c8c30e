//! tcptrack's kernel side: count bytes, packets and flags per TCP connection and direction into
//! a per-CPU LRU map, and send control packets (SYN, FIN, RST, FIN acknowledged) to userspace
//! through a ring buffer. Every packet passes unchanged, whatever happens while looking at it;
//! nothing is logged per packet.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns,
        bpf_probe_read_kernel, bpf_skb_vlan_push, bpf_xdp_load_bytes,
    },
    macros::{classifier, fentry, fexit, map, xdp},
    maps::{Array, PerCpuArray, PerCpuHashMap, ProgramArray, RingBuf},
    programs::{FEntryContext, FExitContext, TcContext, XdpContext},
};
use tcptrack_common::{
    counter, event, sock, ConnKey, FlowEvent, FlowValue, OpenerEvent, DEFAULT_MAX_FLOWS,
    EVENTS_BYTES, FAMILY_IPV4, FAMILY_IPV6, FILTER_SLOT, OPENERS_BYTES,
};

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::SLOTS, 0);

/// The connections with packets in the current refresh interval, one map per epoch: the
/// programs count into the one `EPOCH` names while userspace drains the other. A map holds only
/// an interval's activity, so an idle connection costs nothing, and a full map is the option's
/// number of connections active at once, not of connections known.
#[map(name = "FLOWS_0")]
static FLOWS_0: PerCpuHashMap<ConnKey, FlowValue> =
    PerCpuHashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

#[map(name = "FLOWS_1")]
static FLOWS_1: PerCpuHashMap<ConnKey, FlowValue> =
    PerCpuHashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

/// The epoch (0 or 1) whose flow map the programs count into; userspace flips it.
#[map(name = "EPOCH")]
static EPOCH: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// 1 where the kernel has `bpf_ktime_get_coarse_ns` (5.11 on). Set by userspace at load time,
/// read-only after: the verifier then knows it, never visits the other branch, and drops it, so
/// an older kernel never sees the helper it lacks.
#[unsafe(no_mangle)]
static COARSE_CLOCK: u8 = 1;

/// The kernel filter's program arrays (see `tcptrack_common::MAP_FILTER_TC`): userspace puts
/// the filter it translated from libpcap's classic BPF in slot `FILTER_SLOT`, and the counting
/// program in the slot the filter tail-calls for the packets it selects.
#[map(name = "FILTER_TC")]
static FILTER_TC: ProgramArray = ProgramArray::with_max_entries(2, 0);

#[map(name = "FILTER_XDP")]
static FILTER_XDP: ProgramArray = ProgramArray::with_max_entries(2, 0);

use tcptrack_common::proto::{ether, ip, tcp};

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
    #[expect(
        clippy::cast_possible_truncation,
        reason = "offsets within one packet and header sizes fit in u32"
    )]
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

/// One TCP packet, parsed.
struct Parsed {
    key: ConnKey,
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

/// Orders two endpoints: address bytes (as two big-endian halves), then port.
fn lower(a: &[u8; 16], ap: u16, b: &[u8; 16], bp: u16) -> bool {
    let half = |x: &[u8; 16], i: usize| {
        u64::from_be_bytes([
            x[i],
            x[i + 1],
            x[i + 2],
            x[i + 3],
            x[i + 4],
            x[i + 5],
            x[i + 6],
            x[i + 7],
        ])
    };
    (half(a, 0), half(a, 8), ap) <= (half(b, 0), half(b, 8), bp)
}

/// The IPv4 header without options, as on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Header {
    version_ihl: u8,
    tos: u8,
    total_len: u16,
    id: u16,
    frag: u16,
    ttl: u8,
    protocol: u8,
    checksum: u16,
    src: [u8; 4],
    dst: [u8; 4],
}

/// The IPv6 fixed header, as on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6Header {
    version_class_flow: u32,
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

/// The TCP fixed header, as on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
struct TcpHeader {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    data_offset: u8,
    flags: u8,
    window: u16,
    checksum: u16,
    urgent: u16,
}

/// What the IP layer says of a TCP packet.
struct L3 {
    family: u8,
    src: [u8; 16],
    dst: [u8; 16],
    /// Offset of the TCP header.
    l4: usize,
    /// TCP header and payload bytes, from the IP length fields.
    l4_len: usize,
}

/// The EtherType and offset of what follows the Ethernet header and its VLAN tags (as many as
/// userspace reads).
#[inline(always)]
fn l2<P: Packet>(p: &P) -> Option<(u16, usize)> {
    let mut off = ether::HEADER_LEN;
    let mut ether_type = be16(p, 12)?;
    let mut tags = 0;
    while tags < ether::MAX_VLAN_TAGS && ether::is_vlan(ether_type) {
        ether_type = be16(p, off + 2)?;
        off += ether::VLAN_TAG_LEN;
        tags += 1;
    }
    Some((ether_type, off))
}

/// An IPv4 header at `off` (options, and an authentication header before TCP, skipped).
#[inline(always)]
fn ipv4<P: Packet>(p: &P, off: usize) -> Option<L3> {
    let ip: Ipv4Header = p.load(off)?;
    let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
    // Fragments carry no (or not all of the) TCP header: not counted.
    if ip.version_ihl >> 4 != 4 || ihl < 20 || u16::from_be(ip.frag) & 0x3fff != 0 {
        return None;
    }
    let mut headers = ihl;
    if ip.protocol == ip::AUTH {
        // An authentication header before TCP: (length + 2) * 4 bytes.
        let ah: [u8; 2] = p.load(off + ihl)?;
        if ah[0] != ip::TCP {
            return None;
        }
        headers += (usize::from(ah[1]) + 2) * 4;
    } else if ip.protocol != ip::TCP {
        return None;
    }
    let total = usize::from(u16::from_be(ip.total_len));
    let mut l3 = L3 {
        family: FAMILY_IPV4,
        src: [0; 16],
        dst: [0; 16],
        l4: off + headers,
        l4_len: 0,
    };
    l3.src[..4].copy_from_slice(&ip.src);
    l3.dst[..4].copy_from_slice(&ip.dst);
    // Zero: a big-TCP super-packet; its length is the packet's.
    l3.l4_len = if total >= headers && total != 0 {
        total - headers
    } else {
        p.len().saturating_sub(l3.l4)
    };
    Some(l3)
}

/// An IPv6 header at `off`, its extension headers skipped.
#[inline(always)]
fn ipv6<P: Packet>(p: &P, off: usize) -> Option<L3> {
    let ip: Ipv6Header = p.load(off)?;
    let declared = usize::from(u16::from_be(ip.payload_len));
    let mut next = ip.next_header;
    let mut l4 = off + 40;
    let mut ext = 0;
    while ext < ip::MAX_IPV6_EXTENSIONS {
        let scale = match next {
            // Hop-by-hop, routing, destination options: (length + 1) * 8 bytes.
            ip::HOP_BY_HOP | ip::ROUTING | ip::DEST_OPTS => 8,
            // Authentication header: (length + 2) * 4 bytes.
            ip::AUTH => 4,
            _ => break,
        };
        let h: [u8; 2] = p.load(l4)?;
        next = h[0];
        l4 += if scale == 8 {
            (usize::from(h[1]) + 1) * 8
        } else {
            (usize::from(h[1]) + 2) * 4
        };
        ext += 1;
    }
    if next != ip::TCP {
        return None;
    }
    let ext_len = l4 - off - 40;
    let l4_len = if declared >= ext_len && declared != 0 {
        declared - ext_len
    } else {
        p.len().saturating_sub(l4)
    };
    Some(L3 {
        family: FAMILY_IPV6,
        src: ip.src,
        dst: ip.dst,
        l4,
        l4_len,
    })
}

/// Parses a packet. Headers are read whole, one helper call each: the calls, not the
/// arithmetic, are what a packet costs here.
#[expect(
    clippy::cast_possible_truncation,
    reason = "offsets and lengths within one packet fit in u32"
)]
fn parse<P: Packet>(p: &P) -> Option<Parsed> {
    let (ether_type, off) = l2(p)?;
    let L3 {
        family,
        src,
        dst,
        l4,
        l4_len,
    } = match ether_type {
        ether::IPV4 => ipv4(p, off)?,
        ether::IPV6 => ipv6(p, off)?,
        _ => return None,
    };
    let th: TcpHeader = p.load(l4)?;
    let tcp_header = usize::from(th.data_offset >> 4) * 4;
    if tcp_header < tcp::FIXED_HEADER_LEN {
        return None;
    }
    let (sport, dport) = (u16::from_be(th.sport), u16::from_be(th.dport));
    let from_lower = lower(&src, sport, &dst, dport);
    let key = if from_lower {
        ConnKey {
            addr: [src, dst],
            port: [sport, dport],
            family,
            _pad: [0; 3],
        }
    } else {
        ConnKey {
            addr: [dst, src],
            port: [dport, sport],
            family,
            _pad: [0; 3],
        }
    };
    Some(Parsed {
        key,
        dir: u8::from(!from_lower),
        flags: th.flags & tcp::FLAGS_MASK,
        seq: u32::from_be(th.seq),
        ack: u32::from_be(th.ack),
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

/// Adds one packet to its connection's entry in `flows`, making the entry if there is none.
/// False when the map is full.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys and values passed by reference stay off the 512-byte BPF stack"
)]
fn add(
    flows: &PerCpuHashMap<ConnKey, FlowValue>,
    pk: &Parsed,
    wire: u64,
    segments: u32,
    now: u64,
) -> bool {
    if let Some(v) = flows.get_ptr_mut(&pk.key) {
        // SAFETY: this CPU's value of a per-CPU map entry.
        add_to(unsafe { &mut *v }, pk, wire, segments, now);
        return true;
    }
    let mut v = FlowValue::default();
    add_to(&mut v, pk, wire, segments, now);
    // NOEXIST: another CPU may have made the entry meanwhile; replacing it would wipe the other
    // CPUs' slots. Then this packet goes into the entry that CPU made.
    if flows.insert(&pk.key, &v, BPF_NOEXIST.into()).is_ok() {
        return true;
    }
    match flows.get_ptr_mut(&pk.key) {
        Some(v) => {
            // SAFETY: as above.
            add_to(unsafe { &mut *v }, pk, wire, segments, now);
            true
        }
        None => false,
    }
}

/// Adds one packet to this CPU's value of its connection.
#[inline(always)]
fn add_to(v: &mut FlowValue, pk: &Parsed, wire: u64, segments: u32, now: u64) {
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
        if pk.flags & tcp::ACK != 0 {
            v.ack[0] = pk.ack;
        }
    } else {
        v.flags[1] |= pk.flags;
        if pk.flags & tcp::ACK != 0 {
            v.ack[1] = pk.ack;
        }
    }
    if v.first_seen_ns == 0 {
        v.first_seen_ns = now;
    }
    v.last_seen_ns = now;
}

/// Counts one packet.
fn count<P: Packet>(p: &P) {
    bump(counter::PACKETS);
    let Some(pk) = parse(p) else {
        return;
    };
    bump(counter::TCP);
    // Counters carry the coarse clock (a tick's resolution, a fraction of the precise clock's
    // cost) where the kernel has it; control events the precise one.
    // SAFETY: a read of a global the loader set; volatile, so the compiler keeps both branches.
    let coarse = unsafe { core::ptr::read_volatile(&raw const COARSE_CLOCK) } == 1;
    // SAFETY: helpers without arguments.
    let now = unsafe {
        if coarse {
            bpf_ktime_get_coarse_ns()
        } else {
            bpf_ktime_get_ns()
        }
    };
    let segments = p.segments();
    let wire = p.len() as u64 + u64::from(segments - 1) * u64::from(pk.headers);
    // Two calls rather than one on either map: each call site then knows its map.
    let counted = if EPOCH.get(0).copied().unwrap_or(0) == 0 {
        add(&FLOWS_0, &pk, wire, segments, now)
    } else {
        add(&FLOWS_1, &pk, wire, segments, now)
    };
    if !counted {
        bump(counter::MAP_FULL);
    }
    if pk.flags & (tcp::SYN | tcp::FIN | tcp::RST) != 0 {
        // SAFETY: a helper without arguments.
        emit(&pk, event::CONTROL, unsafe { bpf_ktime_get_ns() });
    }
}

/// What a TC program returns for every packet: `TC_ACT_UNSPEC`, which tcx reads as
/// `TCX_NEXT` (run the next program of the chain, then the default action) and netlink TC as
/// "go on with the next filter". Anything else would end the chain: `TC_ACT_PIPE` or
/// `TC_ACT_OK` here would hide every packet from the programs attached after this one.
const TC_CONTINUE: i32 = TC_ACT_UNSPEC;

#[classifier]
pub fn tcptrack_tc(ctx: TcContext) -> i32 {
    count(&ctx);
    TC_CONTINUE
}

/// What is attached when a filter runs in the kernel: on to the filter userspace translated,
/// which goes on to `tcptrack_tc` for the packets it selects.
#[classifier]
pub fn tcptrack_tc_f(ctx: TcContext) -> i32 {
    // SAFETY: a tail call into the filter's slot; it returns only if the slot is empty (never
    // once userspace loaded the filter): the packet then passes, uncounted.
    unsafe { FILTER_TC.tail_call(&ctx, FILTER_SLOT) };
    TC_CONTINUE
}

#[xdp]
pub fn tcptrack_xdp(ctx: XdpContext) -> u32 {
    count(&ctx);
    xdp_action::XDP_PASS
}

/// `tcptrack_tc_f`'s XDP twin.
#[xdp]
pub fn tcptrack_xdp_f(ctx: XdpContext) -> u32 {
    // SAFETY: as in `tcptrack_tc_f`.
    unsafe { FILTER_XDP.tail_call(&ctx, FILTER_SLOT) };
    xdp_action::XDP_PASS
}

/// Does nothing but pass the packet: the baseline the benchmarks measure the counting program
/// against (never attached by tcptrack).
#[classifier]
pub fn tcptrack_empty(_ctx: TcContext) -> i32 {
    TC_CONTINUE
}

#[map(name = "PROBE")]
static PROBE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Counts every packet it sees and passes it on, like any well-behaved program of a tcx chain
/// (a CNI's datapath, a firewall, another monitor). The tests attach it before and after
/// tcptrack's programs to show that tcptrack hides nothing from the rest of the chain (never
/// attached by tcptrack; its name does not start with `tcptrack_`).
#[classifier]
pub fn probe_count(_ctx: TcContext) -> i32 {
    if let Some(v) = PROBE.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a per-CPU array; no other CPU writes it.
        unsafe { *v += 1 };
    }
    TC_CONTINUE
}

/// Gives the packet VLAN tag 7 the way a NIC, or the kernel's untagging before TC ingress,
/// does (out of the frame, in `skb->vlan_tci`), then goes on to the filter as
/// `tcptrack_tc_f` does: the tests run libpcap's decisions on the tagged frame against the
/// filter's there (never attached by tcptrack; its name does not start with `tcptrack_`).
#[classifier]
pub fn probe_vlan_7(ctx: TcContext) -> i32 {
    // SAFETY: the helper on this program's own packet; the tail call as in `tcptrack_tc_f`.
    unsafe {
        if bpf_skb_vlan_push(ctx.skb.skb, 0x8100u16.to_be(), 7) == 0 {
            FILTER_TC.tail_call(&ctx, FILTER_SLOT);
        }
    }
    TC_CONTINUE
}

/// The sockets connecting or accepted, with their process (see [`OpenerEvent`]).
#[map(name = "OPENERS")]
static OPENERS: RingBuf = RingBuf::with_byte_size(OPENERS_BYTES, 0);

/// `T` at `offset` bytes into the kernel object at `base`.
fn kernel_read<T>(base: *const u8, offset: usize) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address itself and fails (an error, never a
    // fault) where nothing can be read; the result is a plain copy.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset).cast::<T>()).ok() }
}

/// Sends the socket `sk` (a `struct sock *`) and the current process to userspace.
fn opened(sk: *const u8) -> Option<()> {
    if sk.is_null() {
        return None;
    }
    let family: u16 = kernel_read(sk, sock::FAMILY)?;
    let (mut local, mut remote) = ([0u8; 16], [0u8; 16]);
    match family {
        sock::AF_INET => {
            local[..4].copy_from_slice(&kernel_read::<[u8; 4]>(sk, sock::RCV_SADDR)?);
            remote[..4].copy_from_slice(&kernel_read::<[u8; 4]>(sk, sock::DADDR)?);
        }
        sock::AF_INET6 => {
            local = kernel_read(sk, sock::V6_RCV_SADDR)?;
            remote = kernel_read(sk, sock::V6_DADDR)?;
        }
        _ => return None,
    }
    let event = OpenerEvent {
        local,
        remote,
        local_port: kernel_read(sk, sock::NUM)?,
        remote_port: u16::from_be(kernel_read(sk, sock::DPORT)?),
        family,
        _pad: 0,
        // The thread group's id: the high half.
        pid: u32::try_from(bpf_get_current_pid_tgid() >> 32).unwrap_or(0),
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        _pad2: 0,
    };
    let mut entry = OPENERS.reserve::<OpenerEvent>(0)?;
    entry.write(event);
    entry.submit(0);
    Some(())
}

/// `tcp_connect(struct sock *sk)`: the socket has its ports and addresses by then, and the
/// process connecting is the current one.
#[fentry(function = "tcp_connect")]
pub fn tcptrack_connect(ctx: FEntryContext) -> u32 {
    let _ = opened(ctx.arg::<*const u8>(0));
    0
}

/// `inet_csk_accept` returns the accepted socket, in the process accepting it: after its four
/// arguments until Linux 6.10 (`sk, flags, err, kern`), after two since (`sk, arg`). Userspace
/// loads the one the kernel takes (the verifier refuses the fifth argument of a function of
/// two).
#[fexit(function = "inet_csk_accept")]
pub fn tcptrack_accept4(ctx: FExitContext) -> u32 {
    let _ = opened(ctx.arg::<*const u8>(4));
    0
}

#[fexit(function = "inet_csk_accept")]
pub fn tcptrack_accept2(ctx: FExitContext) -> u32 {
    let _ = opened(ctx.arg::<*const u8>(2));
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
