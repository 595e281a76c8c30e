//! Reading the kernel's maps at a cost that follows activity.
//!
//! The programs count into one of two flow maps and flow caches, those the epoch names. At
//! every poll the poller flips the epoch, waits for the programs still running on the old ones
//! to finish, and drains them (batch lookup-and-delete for the map, the cache's claimed slots
//! read in place): a poll costs what the interval's active connections cost, and an idle
//! connection costs nothing (the table knows its last packet). Before the flip, the
//! connections active in the previous interval get their places in the next epoch already
//! (their entries in the map, or their slots), so that a flood of new tuples cannot crowd
//! them out.
//! Control events are read between polls, at least every `EVENTS_READ_EVERY_MS` and at once
//! when the programs may have filled an eighth of the ring (each CPU wakes the poller thread,
//! which waits on the ring's descriptor, at every so many events it sent: a wakeup per event
//! would cost each packet more than its counting), so that a burst of them does not wait a
//! whole interval in a ring that can fill.

use std::os::fd::AsRawFd;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tcptrack_common::{counter, event, ConnKey, FlowEvent, FlowValue, OpenerEvent};

use crate::ebpf::clocks::Ticks;
use crate::ebpf::{interface_exists, interface_index, Attachment, Kernel, KernelError};
use crate::flow::{FlowKey, FlowUpdate, Opened, Polled, TcpFlags};

/// How long a flip of the epoch waits for programs still counting into the old map: a program
/// runs for microseconds, with preemption off; this is a thousand times that.
const GRACE: Duration = Duration::from_millis(2);

/// What the kernel could not keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets not counted: the interval's flow map was full (see `--max-connections`).
    pub uncounted: u64,
    /// Control events lost (the ring buffer was full).
    pub events_lost: u64,
    /// Connections with packets since the poll before.
    pub active: u64,
    /// How long the poll these numbers follow took (wall time: the flip of the maps, its
    /// grace, the drain, the events), as the poller's thread measured it.
    pub poll_time: Duration,
}

/// The interfaces counted, and how they follow the host's.
#[derive(Debug)]
pub enum Interfaces {
    /// The interfaces named: one going away ends the capture.
    Named(Vec<Attachment>),
    /// `-i any`: every interface that is up, those that come up later too.
    Any {
        attached: Vec<Attachment>,
        /// XDP on ingress rather than TC.
        xdp: bool,
        /// Interfaces that could not be attached (not tried again while they exist).
        refused: Vec<String>,
    },
}

/// Reads the kernel's maps and events; every poll gives what happened since the last.
pub struct Poller {
    /// First, so that its links go before the kernel's programs and records (netlink filters
    /// are taken off, then forgotten).
    interfaces: Interfaces,
    kernel: Kernel,
    events: RingBuf<MapData>,
    /// The probes' sockets connecting or accepted, where the kernel let them be attached (else
    /// why not: the process is then looked up in /proc only).
    openers: Result<RingBuf<MapData>, String>,
    opened: Vec<Opened>,
    /// The epoch the programs count into.
    epoch: u32,
    /// Events read since the last poll.
    pending: Vec<FlowUpdate>,
    /// The last drain (kept for its allocation).
    drained: Vec<(ConnKey, Vec<FlowValue>)>,
    stats: KernelStats,
}

/// An event of the ring as the table takes it.
fn event_update(e: &FlowEvent) -> FlowUpdate {
    let (src, dst) = FlowKey::from(&e.key).ends(e.dir);
    FlowUpdate {
        src,
        dst,
        ts: Duration::from_nanos(e.ts_ns),
        flags: TcpFlags(e.flags),
        seq: e.seq,
        ack: e.ack,
        window: 0,
        segment_len: e.segment_len,
        payload_bytes: 0,
        wire_bytes: 0,
        packets: 0,
    }
}

/// The counting updates of one drained connection: one per direction that carried packets,
/// with the newest acknowledgment number over the CPUs and only the ACK flag (SYN, FIN and RST
/// come as events). Nothing for an entry reserved but idle.
fn count_updates(
    key: &ConnKey,
    per_cpu: &[FlowValue],
    ticks: &Ticks,
    out: &mut Vec<FlowUpdate>,
) -> bool {
    let conn = FlowKey::from(key);
    let mut any = false;
    let last_seen = ticks.ns(per_cpu.iter().map(|v| v.last_seen).max().unwrap_or(0));
    for d in 0..2u8 {
        let i = usize::from(d);
        let (mut payload, mut wire, mut packets) = (0u64, 0u64, 0u64);
        // The newest acknowledgment number (sequence space wraps: newer is ahead by less
        // than half of it).
        let mut ack: Option<u32> = None;
        for v in per_cpu {
            payload += v.dir[i].payload_bytes;
            wire += v.dir[i].wire_bytes;
            packets += v.dir[i].packets;
            if v.flags[i] & TcpFlags::ACK != 0 {
                ack = Some(match ack {
                    Some(a) if v.ack[i].wrapping_sub(a).cast_signed() <= 0 => a,
                    _ => v.ack[i],
                });
            }
        }
        if packets == 0 {
            continue;
        }
        any = true;
        let (src, dst) = conn.ends(d);
        out.push(FlowUpdate {
            src,
            dst,
            ts: Duration::from_nanos(last_seen),
            flags: TcpFlags(if ack.is_some() { TcpFlags::ACK } else { 0 }),
            seq: 0,
            ack: ack.unwrap_or(0),
            window: 0,
            segment_len: 0,
            payload_bytes: payload,
            wire_bytes: wire,
            packets,
        });
    }
    any
}

impl Poller {
    /// Starts reading `kernel`, whose programs count `interfaces` (attached already).
    ///
    /// # Errors
    /// The event ring buffer cannot be taken, or the epoch cannot be set.
    pub fn new(mut kernel: Kernel, interfaces: Interfaces) -> Result<Self, KernelError> {
        let events = kernel.take_events()?;
        let openers = kernel.watch_openers().map_err(|e| e.to_string());
        kernel.set_epoch(0)?;
        Ok(Self {
            kernel,
            events,
            openers,
            opened: Vec::new(),
            epoch: 0,
            pending: Vec::new(),
            drained: Vec::new(),
            interfaces,
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

    /// Waits at most `limit` for events to arrive, then reads those there are.
    pub fn wait_events(&mut self, limit: Duration) {
        let mut fds = libc::pollfd {
            fd: self.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: poll(2) on one pollfd we own; it only reads and writes that struct.
        unsafe { libc::poll(&raw mut fds, 1, ms) };
        self.read_events();
    }

    /// Why the processes of connections are not told by the kernel's probes, if they are not.
    #[must_use]
    pub fn openers_refused(&self) -> Option<&str> {
        self.openers.as_ref().err().map(String::as_str)
    }

    /// Reads the events the rings hold now.
    fn read_events(&mut self) {
        if let Ok(openers) = &mut self.openers {
            while let Some(item) = openers.next() {
                if item.len() < std::mem::size_of::<OpenerEvent>() {
                    continue;
                }
                // SAFETY: the kernel wrote an OpenerEvent (size checked); read unaligned.
                let e = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<OpenerEvent>()) };
                self.opened.extend(Opened::from_event(&e));
            }
        }
        while let Some(item) = self.events.next() {
            if item.len() < std::mem::size_of::<FlowEvent>() {
                continue;
            }
            // SAFETY: the kernel wrote a FlowEvent (size checked); read unaligned.
            let e = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) };
            if e.kind == event::CONTROL {
                self.pending.push(event_update(&e));
            }
        }
    }

    /// What happened since the last poll: the control events, in the order the kernel saw
    /// them (they carry no counts), and one counting update per connection and direction that
    /// carried packets (see [`Polled`]).
    ///
    /// # Errors
    /// An interface named went away, or a map cannot be read.
    pub fn poll(&mut self) -> Result<Polled, KernelError> {
        self.follow_interfaces()?;
        let (old, next) = (self.epoch, 1 - self.epoch);
        self.kernel.keep_places(next);
        self.kernel.set_epoch(next)?;
        self.epoch = next;
        std::thread::sleep(GRACE);
        self.drained.clear();
        self.kernel.drain(old, &mut self.drained)?;
        // The map first, then the ring: an event is then never behind the counts of a later
        // packet (a FIN whose ACK is already counted), as the table needs them in order.
        self.read_events();
        // After the drain, so that every tick count drained is at most the one read now.
        let ticks = self.kernel.ticks()?;
        let mut counts = Vec::with_capacity(self.drained.len() * 2);
        let mut active = 0u64;
        for (key, per_cpu) in &self.drained {
            if count_updates(key, per_cpu, &ticks, &mut counts) {
                active += 1;
            }
        }
        let c = self.kernel.counters()?;
        self.stats = KernelStats {
            uncounted: c[counter::MAP_FULL as usize],
            events_lost: c[counter::EVENTS_LOST as usize],
            active,
            poll_time: Duration::ZERO,
        };
        Ok(Polled {
            events: std::mem::take(&mut self.pending),
            counts,
            opened: std::mem::take(&mut self.opened),
        })
    }

    /// Named interfaces: ends the capture when one went away. `-i any`: counts the interfaces
    /// that came up, and lets go of those that went.
    fn follow_interfaces(&mut self) -> Result<(), KernelError> {
        match &mut self.interfaces {
            Interfaces::Named(attached) => {
                if let Some(gone) = attached.iter().find(|a| !interface_exists(a.index)) {
                    return Err(KernelError::InterfaceGone(gone.interface.clone()));
                }
            }
            Interfaces::Any {
                attached,
                xdp,
                refused,
            } => {
                let up = super::interfaces_up();
                let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(attached)
                    .into_iter()
                    .partition(|a| interface_exists(a.index) && up.contains(&a.interface));
                *attached = keep;
                for a in gone {
                    self.kernel.detach(a);
                }
                refused.retain(|name| up.contains(name));
                for name in up {
                    let known =
                        attached.iter().any(|a| a.interface == name) || refused.contains(&name);
                    if known || interface_index(&name).is_none() {
                        continue;
                    }
                    match self.kernel.attach(&name, *xdp) {
                        Ok(a) => attached.push(a),
                        Err(_) => refused.push(name),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reading the kernel's maps as the process now stands: the privilege drop tries it without
/// `CAP_BPF`.
impl crate::privilege::Attempt for Poller {
    fn works(&self) -> bool {
        self.kernel.counters().is_ok()
    }
}
