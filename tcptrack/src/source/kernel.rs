//! Live capture through the kernel: the programs count, this polls their maps at the refresh
//! interval and turns counter deltas and control events into the same `FlowUpdate`s the
//! libpcap path makes, for the same connection table.

use std::collections::HashMap;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tcptrack_common::{counter, event, ConnKey, DirCounters, FlowEvent};

use crate::ebpf::{Kernel, KernelError};
use crate::flow::{FlowKey, FlowUpdate, Polled, TcpFlags, Timestamp};

/// The monotonic clock the kernel stamps packets with (`bpf_ktime_get_ns`), now.
#[must_use]
pub fn monotonic_now() -> Timestamp {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// What the kernel could not keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Connections the flow map had to evict (it was full).
    pub evicted: u64,
    /// Control events lost (the ring buffer was full).
    pub events_lost: u64,
    /// Entries in the flow map at the last poll.
    pub flows: u64,
}

/// Reads the kernel's maps; every poll gives what changed since the last.
pub struct Poller {
    kernel: Kernel,
    events: RingBuf<MapData>,
    /// Totals per connection and direction at the last poll.
    last: HashMap<ConnKey, [DirCounters; 2]>,
    stats: KernelStats,
}

impl Poller {
    /// Starts polling `kernel` (its programs already attached).
    ///
    /// # Errors
    /// The event ring buffer cannot be taken.
    pub fn new(mut kernel: Kernel) -> Result<Self, KernelError> {
        let events = kernel.take_events()?;
        Ok(Self {
            kernel,
            events,
            last: HashMap::new(),
            stats: KernelStats::default(),
        })
    }

    /// The kernel programs it reads (to run them on crafted packets, in tests).
    pub const fn kernel_mut(&mut self) -> &mut Kernel {
        &mut self.kernel
    }

    #[must_use]
    pub const fn stats(&self) -> KernelStats {
        self.stats
    }

    /// What happened since the last poll: the control events, in the order the kernel saw
    /// them (they carry no counts), and one counting update per connection and direction that
    /// carried packets (see [`Polled`]).
    ///
    /// # Errors
    /// A map cannot be read.
    #[expect(
        clippy::too_many_lines,
        reason = "one pass over the map; it goes with the interval maps of the poll rewrite"
    )]
    pub fn poll(&mut self) -> Result<Polled, KernelError> {
        let mut poll = Polled::default();
        // The map first, then the ring: an event is then never behind the counts of a later
        // packet (a FIN whose ACK is already counted), as the table needs them in order.
        let out = &mut poll.counts;
        let flows = self.kernel.flows()?;
        let mut now_totals = HashMap::with_capacity(self.last.len());
        for entry in flows.iter() {
            // An entry evicted while iterating: the next poll sees what remains.
            let Ok((key, per_cpu)) = entry else { continue };
            // Iterating a map that changes under it (evictions) may restart from its first key:
            // a key already counted in this poll is not counted again.
            if now_totals.contains_key(&key) {
                continue;
            }
            let mut total = [DirCounters::default(); 2];
            let mut flags = [0u8; 2];
            // The newest acknowledgment number each way, over the CPUs (sequence space wraps:
            // newer is ahead by less than half of it).
            let mut ack: [Option<u32>; 2] = [None; 2];
            let mut last_seen = 0u64;
            for v in per_cpu.iter() {
                for d in 0..2 {
                    total[d].payload_bytes += v.dir[d].payload_bytes;
                    total[d].wire_bytes += v.dir[d].wire_bytes;
                    total[d].packets += v.dir[d].packets;
                    flags[d] |= v.flags[d];
                    if v.flags[d] & TcpFlags::ACK != 0 {
                        ack[d] = Some(match ack[d] {
                            Some(a) if v.ack[d].wrapping_sub(a).cast_signed() <= 0 => a,
                            _ => v.ack[d],
                        });
                    }
                }
                last_seen = last_seen.max(v.last_seen_ns);
            }
            let before = self.last.get(&key).copied().unwrap_or_default();
            let conn = FlowKey::from(&key);
            for d in 0..2u8 {
                let (now, was) = (total[usize::from(d)], before[usize::from(d)]);
                // A smaller total: the entry was evicted and made anew; count it from zero.
                let was = if now.packets < was.packets {
                    DirCounters::default()
                } else {
                    was
                };
                let packets = now.packets - was.packets;
                if packets == 0 {
                    continue;
                }
                let (src, dst) = conn.ends(d);
                // Counting updates carry only ACK (no SYN, FIN, RST: the events carry those), and
                // the newest acknowledgment number: enough for the table to finish a handshake,
                // pick up a connection mid-stream, and see a FIN acknowledged.
                let ack_flag = if flags[usize::from(d)] & TcpFlags::ACK != 0 {
                    TcpFlags::ACK
                } else {
                    0
                };
                out.push(FlowUpdate {
                    src,
                    dst,
                    ts: Duration::from_nanos(last_seen),
                    flags: TcpFlags(ack_flag),
                    seq: 0,
                    ack: ack[usize::from(d)].unwrap_or(0),
                    segment_len: 0,
                    payload_bytes: now.payload_bytes - was.payload_bytes.min(now.payload_bytes),
                    wire_bytes: now.wire_bytes - was.wire_bytes.min(now.wire_bytes),
                    packets,
                });
            }
            now_totals.insert(key, total);
        }
        self.last = now_totals;
        let out = &mut poll.events;
        while let Some(item) = self.events.next() {
            if item.len() < std::mem::size_of::<FlowEvent>() {
                continue;
            }
            // SAFETY: the kernel wrote a FlowEvent (size checked); read unaligned.
            let e = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) };
            let (src, dst) = FlowKey::from(&e.key).ends(e.dir);
            if e.kind != event::CONTROL {
                continue;
            }
            out.push(FlowUpdate {
                src,
                dst,
                ts: Duration::from_nanos(e.ts_ns),
                flags: TcpFlags(e.flags),
                seq: e.seq,
                ack: e.ack,
                segment_len: e.segment_len,
                payload_bytes: 0,
                wire_bytes: 0,
                packets: 0,
            });
        }
        let c = self.kernel.counters()?;
        let flows_now = self.last.len() as u64;
        self.stats = KernelStats {
            // Entries made minus entries there: what the LRU pushed out (never less than
            // counted before, as the map's size moves while it is read).
            evicted: c[counter::FLOWS_CREATED as usize]
                .saturating_sub(flows_now)
                .max(self.stats.evicted),
            events_lost: c[counter::EVENTS_LOST as usize],
            flows: flows_now,
        };
        Ok(poll)
    }
}

/// Holds an interface in promiscuous mode while it lives, through a packet socket's
/// membership: the kernel drops the membership when the socket closes, however the process
/// ends (even by SIGKILL), so the interface is always restored.
pub struct Promiscuous {
    fd: std::os::fd::OwnedFd,
}

impl Promiscuous {
    /// Puts `interface` into promiscuous mode.
    ///
    /// # Errors
    /// No such interface, or no privilege (CAP_NET_RAW).
    pub fn enable(interface: &str) -> std::io::Result<Self> {
        use std::os::fd::FromRawFd as _;
        let name = std::ffi::CString::new(interface).map_err(std::io::Error::other)?;
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Protocol 0: the socket receives no packets; it exists only for its membership.
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just opened and own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let mreq = libc::packet_mreq {
            mr_ifindex: i32::try_from(index).map_err(std::io::Error::other)?,
            mr_type: u16::try_from(libc::PACKET_MR_PROMISC).map_err(std::io::Error::other)?,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // SAFETY: setsockopt with a valid packet_mreq and its size.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&raw const mreq).cast(),
                u32::try_from(std::mem::size_of::<libc::packet_mreq>())
                    .map_err(std::io::Error::other)?,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { fd })
    }
}

impl std::fmt::Debug for Promiscuous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promiscuous").field("fd", &self.fd).finish()
    }
}

/// The interfaces `-i any` means: every interface that is up, loopback included.
#[must_use]
pub fn interfaces_up() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path().join("flags"))
                .ok()
                .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
                .is_some_and(|flags| flags & 1 != 0) // IFF_UP
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
