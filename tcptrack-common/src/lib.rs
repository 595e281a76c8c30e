//! The contract between tcptrack's kernel programs and its userspace.
//!
//! Everything here is `#[repr(C)]`, made of fixed-width integers with explicit padding, so that
//! the kernel and userspace agree on every byte. Rich Rust types live on the userspace side and
//! are made from these in one conversion there.
#![no_std]

/// Name of the kernel program attached to TC ingress and egress.
pub const PROGRAM_TC: &str = "tcptrack_tc";
/// The TC program attached when a filter runs in the kernel: it tail-calls the translated
/// filter (slot [`FILTER_SLOT`] of [`MAP_FILTER_TC`]), which tail-calls [`PROGRAM_TC`] (slot
/// [`COUNT_SLOT`]) for the packets it selects.
pub const PROGRAM_TC_FILTER: &str = "tcptrack_tc_f";
/// Name of a TC program that only passes packets: the benchmarks' baseline.
pub const PROGRAM_EMPTY: &str = "tcptrack_empty";
/// Name of the kernel program attached to XDP (ingress, with `--xdp`).
pub const PROGRAM_XDP: &str = "tcptrack_xdp";
/// [`PROGRAM_TC_FILTER`]'s XDP twin ([`MAP_FILTER_XDP`], [`PROGRAM_XDP`]).
pub const PROGRAM_XDP_FILTER: &str = "tcptrack_xdp_f";
/// Name of a TC program that counts every packet into [`MAP_PROBE`] and passes it on: the
/// tests' stand-in for another program of the same tcx chain (never attached by tcptrack).
pub const PROGRAM_PROBE: &str = "probe_count";
/// Name of a TC program that puts VLAN tag 7 in `skb->vlan_tci`, then runs the filter: the
/// tests' way to a tag taken out of the frame (never attached by tcptrack).
pub const PROGRAM_PROBE_VLAN: &str = "probe_vlan_7";
/// Name of a TC program that counts as [`PROGRAM_TC`] does, with every header read by the
/// helper that reaches paged data: the tests compare the two (never attached by tcptrack).
pub const PROGRAM_PROBE_COPIED: &str = "probe_copied";
/// The ablation's programs: [`PROGRAM_TC`] stopped after each of its stages (parse, key,
/// clock, lookup, update), for the benchmarks (never attached by tcptrack).
pub const PROGRAM_STAGES: [&str; 5] = [
    "stage_parse",
    "stage_key",
    "stage_clock",
    "stage_lookup",
    "stage_update",
];

/// Per-CPU counters of the kernel programs (`[u64; counter::SLOTS]` per CPU).
pub const MAP_COUNTERS: &str = "COUNTERS";
/// The two per-CPU hashes of [`ConnKey`] to [`FlowValue`], one per epoch: the programs count
/// into the one [`MAP_EPOCH`] names, userspace drains the other (see [`map_flows`]).
pub const MAP_FLOWS: [&str; 2] = ["FLOWS_0", "FLOWS_1"];
/// Array of one `u32`: the epoch (0 or 1) whose flow map the programs count into.
pub const MAP_EPOCH: &str = "EPOCH";
/// The flow cache in front of the flow maps: an array of [`Slot`]s, [`GLOBAL_CACHE_SLOTS`] for
/// each epoch and CPU (region `epoch * GLOBAL_CACHE_CPUS + cpu`), where a connection's packets
/// on one CPU are counted without a hash lookup (in the slot its key hashes to or that slot's
/// neighbour, index xor 1: the first connection to reach a free one in an interval holds it;
/// those that find both held go to the flow map). Memory-mapped by userspace
/// (`BPF_F_MMAPABLE`), which reads and empties the claimed slots in place at each drain.
pub const MAP_SLOTS: &str = "SLOTS";
/// The slots claimed in each region of [`MAP_SLOTS`], as `u64`s: region `r` holds its count at
/// `r * (GLOBAL_CACHE_SLOTS + 1)`, then the indexes of its claimed slots in claim order.
pub const MAP_CLAIMED: &str = "CLAIMED";
/// Load-time globals (`u32`): the cache's slots per region (a power of two; 0 turns the cache
/// off), and the regions per epoch (the possible CPUs).
pub const GLOBAL_CACHE_SLOTS: &str = "CACHE_SLOTS";
pub const GLOBAL_CACHE_CPUS: &str = "CACHE_CPUS";
/// Ring buffer of [`FlowEvent`]s.
pub const MAP_EVENTS: &str = "EVENTS";
/// Per-CPU array of one `u64`: the packets [`PROGRAM_PROBE`] saw.
pub const MAP_PROBE: &str = "PROBE";
/// The program arrays of the kernel filter, TC's and XDP's (a program array takes programs of
/// one type): the translated filter in slot [`FILTER_SLOT`], the counting program in slot
/// [`COUNT_SLOT`].
pub const MAP_FILTER_TC: &str = "FILTER_TC";
pub const MAP_FILTER_XDP: &str = "FILTER_XDP";
pub const FILTER_SLOT: u32 = 0;
pub const COUNT_SLOT: u32 = 1;
/// Name of the fentry program on `tcp_connect`: who opens a connection (the socket's process).
pub const PROGRAM_CONNECT: &str = "tcptrack_connect";
/// Names of the fexit programs on `inet_csk_accept`, who accepts one: for the function of four
/// arguments (before Linux 6.10), and of two.
pub const PROGRAM_ACCEPT: [&str; 2] = ["tcptrack_accept4", "tcptrack_accept2"];
/// The kernel functions they are attached to.
pub const FN_CONNECT: &str = "tcp_connect";
pub const FN_ACCEPT: &str = "inet_csk_accept";
/// Ring buffer of [`OpenerEvent`]s.
pub const MAP_OPENERS: &str = "OPENERS";
/// Bytes of the openers' ring buffer: 4,096 connections opened between two reads.
pub const OPENERS_BYTES: u32 = 1 << 18;

/// Name of a TC program that writes the kernel's clocks into [`MAP_CLOCKS`] (run by userspace
/// with BPF_PROG_TEST_RUN at each poll, never attached).
pub const PROGRAM_CLOCKS: &str = "tcptrack_clocks";
/// Array of one `[u64; 3]`: the monotonic clock in ns, the tick count (jiffies) the programs
/// stamp packets with, and the monotonic clock again, read in that order by [`PROGRAM_CLOCKS`].
pub const MAP_CLOCKS: &str = "CLOCKS";
/// The protocol numbers and bits both packet parsers use: the kernel programs' and userspace's
/// (`tcptrack::decode`). One definition, so that the two agree on what they read.
pub mod proto {
    /// EtherTypes.
    pub mod ether {
        pub const IPV4: u16 = 0x0800;
        pub const IPV6: u16 = 0x86dd;
        /// 802.1Q VLAN tag.
        pub const VLAN: u16 = 0x8100;
        /// 802.1ad (QinQ) service tag.
        pub const QINQ: u16 = 0x88a8;
        /// The older, pre-standard QinQ tag.
        pub const QINQ_OLD: u16 = 0x9100;
        /// Most VLAN tags read before the IP header (both parsers).
        pub const MAX_VLAN_TAGS: usize = 3;
        /// Length of one VLAN tag.
        pub const VLAN_TAG_LEN: usize = 4;
        /// Length of the Ethernet header without tags.
        pub const HEADER_LEN: usize = 14;

        /// Whether `t` is one of the VLAN tags read through.
        #[must_use]
        pub const fn is_vlan(t: u16) -> bool {
            t == VLAN || t == QINQ || t == QINQ_OLD
        }
    }

    /// IP protocol numbers (IPv4's protocol field, IPv6's next header).
    pub mod ip {
        pub const TCP: u8 = 6;
        /// IPv6 hop-by-hop options.
        pub const HOP_BY_HOP: u8 = 0;
        /// IPv6 routing header.
        pub const ROUTING: u8 = 43;
        /// IPv6 fragment header (fragments are not counted).
        pub const FRAGMENT: u8 = 44;
        /// Authentication header (IPv4 and IPv6).
        pub const AUTH: u8 = 51;
        /// IPv6 destination options.
        pub const DEST_OPTS: u8 = 60;
        /// Most IPv6 extension headers the kernel walks before giving up on a packet.
        pub const MAX_IPV6_EXTENSIONS: usize = 6;
    }

    /// TCP header fields.
    pub mod tcp {
        pub const FIN: u8 = 0x01;
        pub const SYN: u8 = 0x02;
        pub const RST: u8 = 0x04;
        pub const PSH: u8 = 0x08;
        pub const ACK: u8 = 0x10;
        /// The flags both parsers keep (FIN to ACK; URG, ECE, CWR are not looked at).
        pub const FLAGS_MASK: u8 = 0x1f;
        /// Length of the TCP header without options.
        pub const FIXED_HEADER_LEN: usize = 20;
    }
}

/// Default number of connections each flow map holds (`--max-connections`): connections with
/// packets in one refresh interval.
pub const DEFAULT_MAX_FLOWS: u32 = 65_536;
/// Bytes of the event ring buffer (a power of two, a multiple of the page size): 4 MiB hold
/// 58,000 events of 72 bytes (with the ring's header), a burst of 100,000 new connections a
/// second (a SYN and a SYN/ACK each) for 290 ms with the reader away.
pub const EVENTS_BYTES: u32 = 1 << 22;
/// The programs wake the events' reader only when the ring may hold this much (an eighth of it,
/// about 7,000 events); otherwise the reader reads it on its own clock, at least every
/// [`EVENTS_READ_EVERY_MS`]. A wakeup per event costs the packet more than all the rest.
pub const EVENTS_WAKEUP_BYTES: u64 = EVENTS_BYTES as u64 / 8;
/// Bytes an event takes in the ring: the event and the ring's 8-byte header.
pub const EVENT_RECORD_BYTES: u64 = core::mem::size_of::<FlowEvent>() as u64 + 8;
/// The load-time global (u32) of how many events a CPU sends between two wakeups of the reader
/// (see [`events_wakeup_every`]).
pub const GLOBAL_EVENTS_WAKEUP_EVERY: &str = "EVENTS_WAKEUP_EVERY";

/// How many events each of `cpus` CPUs sends between two wakeups of the events' reader: as
/// many as fill [`EVENTS_WAKEUP_BYTES`] of the ring when every CPU has sent that many but one
/// since the reader was last woken (at least 1). Each CPU counts its own (`counter::EVENTS`),
/// so that no packet asks the ring how full it is (a helper call).
#[must_use]
pub const fn events_wakeup_every(cpus: u32) -> u32 {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "an eighth of the ring in records: 7,281"
    )]
    let most = (EVENTS_WAKEUP_BYTES / EVENT_RECORD_BYTES) as u32;
    let every = most / if cpus == 0 { 1 } else { cpus };
    if every == 0 {
        1
    } else {
        every
    }
}
/// How often, at most, userspace leaves the event ring unread (milliseconds).
pub const EVENTS_READ_EVERY_MS: u64 = 100;

/// Indexes into [`MAP_COUNTERS`].
pub mod counter {
    /// Every packet the programs ran on.
    pub const PACKETS: u32 = 0;
    /// TCP packets counted in the flow map.
    pub const TCP: u32 = 1;
    /// Packets not counted: the flow map of the interval was full (`--max-connections`).
    pub const MAP_FULL: u32 = 2;
    /// Events that did not fit in the ring buffer.
    pub const EVENTS_LOST: u32 = 3;
    /// Packets the kernel filter left out (it runs before anything else: any packet).
    pub const FILTERED_OUT: u32 = 4;
    /// Events sent to the ring buffer (each CPU's count decides when it wakes the reader).
    pub const EVENTS: u32 = 5;
    /// Number of slots.
    pub const SLOTS: u32 = 6;
}

/// Address families in [`ConnKey::family`].
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// A connection: its two endpoints in canonical order (endpoint 0 is the lower, comparing
/// address bytes then port), so both directions share one key. IPv4 addresses sit in the first
/// four bytes, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub addr: [[u8; 16]; 2],
    /// Ports in host byte order.
    pub port: [u16; 2],
    pub family: u8,
    pub _pad: [u8; 3],
}

impl ConnKey {
    /// The key as five 64-bit words, as the programs read it (BPF is little-endian here).
    #[must_use]
    pub fn words(&self) -> [u64; 5] {
        let mut words = [0u64; 5];
        let (a, b) = (self.addr[0], self.addr[1]);
        let mut tail = [0u8; 8];
        tail[..2].copy_from_slice(&self.port[0].to_le_bytes());
        tail[2..4].copy_from_slice(&self.port[1].to_le_bytes());
        tail[4] = self.family;
        tail[5..].copy_from_slice(&self._pad);
        for (i, half) in [&a[..8], &a[8..], &b[..8], &b[8..], &tail[..]]
            .into_iter()
            .enumerate()
        {
            let mut w = [0u8; 8];
            w.copy_from_slice(half);
            words[i] = u64::from_le_bytes(w);
        }
        words
    }
}

/// The first of a key's two slots in a flow-cache region of `slots` (a power of two; the
/// other is its neighbour, index xor 1): the key's five words folded into one, then mixed as
/// MurmurHash3's finalizer mixes (every input bit reaches every output bit, so keys that
/// differ in any bits spread over the low ones taken), a dozen instructions where the flow
/// map's hash of 40 bytes is a call and three rounds of mixing.
#[must_use]
#[inline(always)]
pub const fn cache_slot(w: &[u64; 5], slots: u32) -> u32 {
    let mut h = w[0] ^ w[1].rotate_left(13) ^ w[2].rotate_left(29) ^ w[3].rotate_left(43) ^ w[4];
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    #[expect(clippy::cast_possible_truncation, reason = "the low bits are taken")]
    let low = h as u32;
    low & slots.wrapping_sub(1)
}

/// What one direction of a connection carried (direction 0: from endpoint 0 to endpoint 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirCounters {
    /// TCP payload bytes, from the IP length fields.
    pub payload_bytes: u64,
    /// Bytes on the wire (GSO super-packets: each segment with its own headers).
    pub wire_bytes: u64,
    /// Packets on the wire (GSO super-packets count as their segments).
    pub packets: u64,
}

/// One CPU's share of a connection's counters (userspace sums the CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub dir: [DirCounters; 2],
    /// The kernel's tick count (jiffies) at the first packet seen on this CPU; 0: none (the
    /// count starts five minutes short of wrapping 32 bits, never at 0). Userspace reads it as
    /// the monotonic clock (see [`MAP_CLOCKS`]).
    pub first_seen: u64,
    /// The tick count at the last packet seen on this CPU.
    pub last_seen: u64,
    /// The acknowledgment number of the last packet with ACK in each direction, on this CPU
    /// (userspace matches it against FINs: no lookup per packet in the kernel).
    pub ack: [u32; 2],
    /// TCP flags seen in each direction, or-ed.
    pub flags: [u8; 2],
    pub _pad: [u8; 6],
}

/// A slot of the flow cache ([`MAP_SLOTS`]): the connection holding it (all zero: free; a held
/// key's family is never 0) and this CPU's counts of it in the interval, in one 128-byte piece
/// (two cache lines).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub key: ConnKey,
    pub value: FlowValue,
    pub _pad: [u8; 8],
}

/// Kinds of [`FlowEvent`].
pub mod event {
    /// A packet with SYN, FIN or RST (its flags, seq, ack and length are in the event).
    pub const CONTROL: u8 = 1;
}

/// A control packet, sent to userspace through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    pub key: ConnKey,
    /// Monotonic time of the packet.
    pub ts_ns: u64,
    pub seq: u32,
    pub ack: u32,
    /// TCP payload length of the packet.
    pub segment_len: u32,
    /// TCP flags byte.
    pub flags: u8,
    /// 0: from endpoint 0 to endpoint 1; 1: the other way.
    pub dir: u8,
    /// One of [`event`].
    pub kind: u8,
    pub _pad: u8,
}

/// A TCP socket connecting or accepted, and the process doing it: from the programs on
/// [`FN_CONNECT`] and [`FN_ACCEPT`], read out of the socket (`struct sock_common`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenerEvent {
    /// The socket's own end (IPv4 in the first four bytes) and the remote one.
    pub local: [u8; 16],
    pub remote: [u8; 16],
    /// Host byte order.
    pub local_port: u16,
    pub remote_port: u16,
    /// `AF_INET` (2) or `AF_INET6` (10), as the socket says.
    pub family: u16,
    pub _pad: u16,
    /// The process (thread group) id, in the initial pid namespace.
    pub pid: u32,
    /// The calling thread's command name (NUL-padded).
    pub comm: [u8; 16],
    pub _pad2: u32,
}

/// Offsets in `struct sock_common`, where a socket's addresses and ports are (the first few
/// have not moved since Linux 2.6; the IPv6 ones are those of every kernel from 5.10 to 6.18
/// built with network namespaces). A kernel laid out otherwise gives tuples of no connection
/// seen, and the process is then looked up in /proc.
pub mod sock {
    pub const DADDR: usize = 0;
    pub const RCV_SADDR: usize = 4;
    pub const DPORT: usize = 12;
    pub const NUM: usize = 14;
    pub const FAMILY: usize = 16;
    pub const V6_DADDR: usize = 56;
    pub const V6_RCV_SADDR: usize = 72;
    pub const AF_INET: u16 = 2;
    pub const AF_INET6: u16 = 10;
}

const _: () = assert!(core::mem::size_of::<OpenerEvent>() == 64);
const _: () = assert!(core::mem::size_of::<ConnKey>() == 40);
const _: () = assert!(core::mem::size_of::<FlowValue>() == 80);
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 64);
const _: () = assert!(core::mem::size_of::<Slot>() == 128);
// Every CPU one event short of its next wakeup: never more than the wakeup's fill.
const _: () = {
    let mut cpus = 1;
    while cpus <= 512 {
        let every = events_wakeup_every(cpus) as u64;
        assert!(every >= 1);
        assert!((every - 1) * cpus as u64 * EVENT_RECORD_BYTES <= EVENTS_WAKEUP_BYTES);
        cpus += 1;
    }
};
const _: () = assert!(events_wakeup_every(2) == 3_640);
const _: () = assert!(events_wakeup_every(0) == events_wakeup_every(1));
const _: () = assert!(events_wakeup_every(100_000) == 1);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] structs of integers with explicit padding: every bit pattern is
    // valid and there are no hidden padding bytes.
    unsafe impl aya::Pod for super::ConnKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Slot {}
}
