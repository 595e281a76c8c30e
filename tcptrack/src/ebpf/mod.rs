//! The kernel programs, built from tcptrack-ebpf by the build script and embedded here: loading
//! them (through the verifier), attaching them with links, and reading their maps.
//!
//! Programs are attached only through links (tcx, XDP links): they go away when the process
//! does, even on SIGKILL. Dropping [`Kernel`] detaches everything.

pub mod batch;

use aya::maps::{Array, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::programs::{
    tc::TcAttachOptions, LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
};
use aya::{Ebpf, EbpfLoader};
use tcptrack_common::{
    counter, ConnKey, FilterInsn, FlowValue, GLOBAL_FILTER_ENABLED, MAP_COUNTERS, MAP_EPOCH,
    MAP_EVENTS, MAP_FILTER, MAP_FLOWS, MAX_FILTER_INSNS, PROGRAM_TC, PROGRAM_XDP,
};

/// The eBPF object file (ELF) of this build.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrack-ebpf"));

/// What went wrong on the kernel path. Each says it in one line; a verifier's log is kept in
/// the error ([`KernelError::verifier_log`]), never in its message.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot load the eBPF object: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("the kernel refused the {program} program ({})", short(.source))]
    Refused {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("cannot attach to {interface}: {}", short(.source))]
    Attach {
        interface: String,
        #[source]
        source: ProgramError,
    },
    #[error("the {map} map: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("no interface is up")]
    NoInterfaceUp,
    #[error("the interface went away ({0})")]
    InterfaceGone(String),
    #[error("cannot count the CPUs: {0}")]
    Cpus(#[source] std::io::Error),
    #[error("cannot drain a flow map: {0}")]
    Batch(#[source] std::io::Error),
    #[error("promiscuous mode on {interface}: {source}")]
    Promiscuous {
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the filter needs {0} instructions, the kernel holds at most {MAX_FILTER_INSNS}")]
    FilterTooLong(usize),
}

/// A program error in one line: a load error's system error without the verifier's log.
fn short(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError { io_error, .. } => io_error.to_string(),
        other => other.to_string(),
    }
}

impl KernelError {
    /// The verifier's log, for a program the kernel refused.
    #[must_use]
    pub fn verifier_log(&self) -> Option<String> {
        match self {
            Self::Refused {
                source: ProgramError::LoadError { verifier_log, .. },
                ..
            } => Some(verifier_log.to_string()),
            _ => None,
        }
    }
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> KernelError {
    move |source| KernelError::Map { map, source }
}

/// The loaded kernel programs and their maps.
pub struct Kernel {
    ebpf: Ebpf,
    /// Possible CPUs: the per-CPU maps hold a value for each.
    cpus: usize,
    /// Whether the kernel takes batch operations on the flow maps (until it refuses one).
    batch: bool,
}

/// The links that count one interface's packets; [`Kernel::detach`] takes them off.
#[derive(Debug)]
pub struct Attachment {
    /// The interface's name when it was attached.
    pub interface: String,
    /// Its index: names can be reused, indexes are not while it exists.
    pub index: u32,
    tc: Vec<aya::programs::tc::SchedClassifierLinkId>,
    xdp: Option<aya::programs::xdp::XdpLinkId>,
}

/// The index of interface `name` in this network namespace, if there is one.
#[must_use]
pub fn interface_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// Whether an interface with `index` still exists in this network namespace.
#[must_use]
pub fn interface_exists(index: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into the buffer we own.
    !unsafe { libc::if_indextoname(index, name.as_mut_ptr()) }.is_null()
}

impl Kernel {
    /// Loads the object (its two flow maps sized for `max_flows` connections each; with the
    /// filter code when `filtering`) and both programs, through the verifier, without attaching
    /// them. The programs count into the flow map of epoch 0.
    ///
    /// # Errors
    /// No privilege (CAP_BPF, CAP_NET_ADMIN), a kernel without what the programs need, or a
    /// verifier rejection.
    pub fn load(max_flows: u32, filtering: bool) -> Result<Self, KernelError> {
        let ebpf = EbpfLoader::new()
            .map_max_entries(MAP_FLOWS[0], max_flows)
            .map_max_entries(MAP_FLOWS[1], max_flows)
            .override_global(GLOBAL_FILTER_ENABLED, &u8::from(filtering), true)
            .load(OBJECT)
            .map_err(KernelError::Object)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| KernelError::Cpus(e))?;
        let mut k = Self {
            ebpf,
            cpus,
            batch: true,
        };
        k.tc()?.load().map_err(|source| KernelError::Refused {
            program: "TC",
            source,
        })?;
        k.xdp()?.load().map_err(|source| KernelError::Refused {
            program: "XDP",
            source,
        })?;
        Ok(k)
    }

    /// The TC program, loaded.
    ///
    /// # Errors
    /// The object has no TC program (cannot happen with the embedded object).
    pub fn tc(&mut self) -> Result<&mut SchedClassifier, KernelError> {
        self.ebpf
            .program_mut(PROGRAM_TC)
            .and_then(|p| p.try_into().ok())
            .ok_or(KernelError::Missing("TC program"))
    }

    /// The XDP program, loaded.
    ///
    /// # Errors
    /// The object has no XDP program (cannot happen with the embedded object).
    pub fn xdp(&mut self) -> Result<&mut Xdp, KernelError> {
        self.ebpf
            .program_mut(PROGRAM_XDP)
            .and_then(|p| p.try_into().ok())
            .ok_or(KernelError::Missing("XDP program"))
    }

    /// Counts the packets of `interface`: TC on egress, and on ingress TC, or XDP with `xdp`.
    ///
    /// # Errors
    /// The interface does not exist, or the kernel refused the attachment.
    pub fn attach(&mut self, interface: &str, xdp: bool) -> Result<Attachment, KernelError> {
        let tcx = || TcAttachOptions::TcxOrder(LinkOrder::default());
        let at = |source| KernelError::Attach {
            interface: interface.to_owned(),
            source,
        };
        let index = interface_index(interface).ok_or_else(|| KernelError::Attach {
            interface: interface.to_owned(),
            source: ProgramError::UnknownInterface {
                name: interface.to_owned(),
            },
        })?;
        let mut a = Attachment {
            interface: interface.to_owned(),
            index,
            tc: Vec::new(),
            xdp: None,
        };
        let attached = (|| {
            a.tc.push(
                self.tc()?
                    .attach_with_options(interface, TcAttachType::Egress, tcx())
                    .map_err(at)?,
            );
            if xdp {
                a.xdp = Some(
                    self.xdp()?
                        .attach(interface, XdpMode::default())
                        .map_err(at)?,
                );
            } else {
                a.tc.push(
                    self.tc()?
                        .attach_with_options(interface, TcAttachType::Ingress, tcx())
                        .map_err(at)?,
                );
            }
            Ok(())
        })();
        match attached {
            Ok(()) => Ok(a),
            Err(e) => {
                // Half attached is not attached.
                self.detach(a);
                Err(e)
            }
        }
    }

    /// Takes `a`'s links off (those the kernel has not already dropped with their interface).
    pub fn detach(&mut self, a: Attachment) {
        if let Ok(tc) = self.tc() {
            for link in a.tc {
                let _ = tc.detach(link);
            }
        }
        if let (Some(link), Ok(xdp)) = (a.xdp, self.xdp()) {
            let _ = xdp.detach(link);
        }
    }

    /// Sets the filter program the kernel runs on every TCP packet (see [`crate::filter`]);
    /// an empty program selects everything.
    ///
    /// # Errors
    /// The program is too long, or the filter map cannot be written.
    pub fn set_filter(&mut self, program: &[FilterInsn]) -> Result<(), KernelError> {
        if program.len() >= MAX_FILTER_INSNS as usize {
            return Err(KernelError::FilterTooLong(program.len()));
        }
        let map = self
            .ebpf
            .map_mut(MAP_FILTER)
            .ok_or(KernelError::Missing("filter map"))?;
        let mut filter: Array<_, FilterInsn> = Array::try_from(map).map_err(map_err(MAP_FILTER))?;
        let end = FilterInsn::default();
        for i in 0..MAX_FILTER_INSNS {
            let ins = program.get(i as usize).unwrap_or(&end);
            filter.set(i, *ins, 0).map_err(map_err(MAP_FILTER))?;
        }
        Ok(())
    }

    /// The flow map of `epoch` (0 or 1).
    ///
    /// # Errors
    /// The map is missing or of another type (cannot happen with the embedded object).
    pub fn flows(
        &self,
        epoch: u32,
    ) -> Result<PerCpuHashMap<&MapData, ConnKey, FlowValue>, KernelError> {
        let name = MAP_FLOWS[usize::from(epoch != 0)];
        let map = self
            .ebpf
            .map(name)
            .ok_or(KernelError::Missing("flow map"))?;
        PerCpuHashMap::try_from(map).map_err(map_err(name))
    }

    /// The file descriptor of the flow map of `epoch`, for the batch calls.
    fn flows_fd(&self, epoch: u32) -> Result<std::os::fd::BorrowedFd<'_>, KernelError> {
        use std::os::fd::AsFd as _;
        match self.ebpf.map(MAP_FLOWS[usize::from(epoch != 0)]) {
            Some(aya::maps::Map::PerCpuHashMap(data)) => Ok(data.fd().as_fd()),
            _ => Err(KernelError::Missing("flow map")),
        }
    }

    fn flows_mut(
        &mut self,
        epoch: u32,
    ) -> Result<PerCpuHashMap<&mut MapData, ConnKey, FlowValue>, KernelError> {
        let name = MAP_FLOWS[usize::from(epoch != 0)];
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(KernelError::Missing("flow map"))?;
        PerCpuHashMap::try_from(map).map_err(map_err(name))
    }

    /// Whether to use batch operations on the flow maps (where the kernel has them), or go key
    /// by key as on kernels without them (tests exercise both).
    pub const fn use_batch(&mut self, on: bool) {
        self.batch = on;
    }

    /// Whether the flow maps are read with batch operations (false once the kernel refused one).
    #[must_use]
    pub const fn uses_batch(&self) -> bool {
        self.batch
    }

    /// Makes the programs count into the flow map of `epoch` (0 or 1) from their next packet on.
    ///
    /// # Errors
    /// The epoch map cannot be written.
    pub fn set_epoch(&mut self, epoch: u32) -> Result<(), KernelError> {
        let map = self
            .ebpf
            .map_mut(MAP_EPOCH)
            .ok_or(KernelError::Missing("epoch map"))?;
        let mut a: Array<_, u32> = Array::try_from(map).map_err(map_err(MAP_EPOCH))?;
        a.set(0, epoch, 0).map_err(map_err(MAP_EPOCH))
    }

    /// Takes every entry out of the flow map of `epoch` into `out` (one batch call per 4,096
    /// entries where the kernel has batch operations, else key by key).
    ///
    /// # Errors
    /// The map cannot be read.
    pub fn drain(
        &mut self,
        epoch: u32,
        out: &mut Vec<(ConnKey, Vec<FlowValue>)>,
    ) -> Result<(), KernelError> {
        let cpus = self.cpus;
        if self.batch {
            match batch::take_all(self.flows_fd(epoch)?, cpus, out) {
                Ok(()) => return Ok(()),
                Err(e) if batch::unsupported(&e) => self.batch = false,
                Err(e) => return Err(KernelError::Batch(e)),
            }
        }
        let mut flows = self.flows_mut(epoch)?;
        let keys: Vec<ConnKey> = flows.keys().filter_map(Result::ok).collect();
        for key in keys {
            // An entry that went meanwhile: nothing to take.
            if let Ok(values) = flows.get(&key, 0) {
                out.push((key, values.iter().copied().collect()));
                let _ = flows.remove(&key);
            }
        }
        Ok(())
    }

    /// Puts `keys` into the flow map of `epoch` with nothing counted yet: their packets then
    /// never need a new entry, even when a flood of new tuples fills the map. Best effort: a
    /// key that does not fit is made by its next packet if there is room.
    pub fn reserve(&mut self, epoch: u32, keys: &[ConnKey]) {
        let cpus = self.cpus;
        if self.batch {
            if let Ok(fd) = self.flows_fd(epoch) {
                match batch::put_zeroed::<ConnKey, FlowValue>(fd, cpus, keys) {
                    Err(e) if batch::unsupported(&e) => self.batch = false,
                    _ => return,
                }
            }
        }
        if let Ok(mut flows) = self.flows_mut(epoch) {
            let zero = vec![FlowValue::default(); cpus];
            for key in keys {
                let Ok(values) = aya::maps::PerCpuValues::try_from(zero.clone()) else {
                    return;
                };
                if flows.insert(key, values, 0).is_err() {
                    return;
                }
            }
        }
    }

    /// Takes the event ring buffer (once).
    ///
    /// # Errors
    /// Already taken, or missing.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, KernelError> {
        let map = self
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or(KernelError::Missing("event ring buffer"))?;
        RingBuf::try_from(map).map_err(map_err(MAP_EVENTS))
    }

    /// The programs' counters, summed over CPUs (see [`tcptrack_common::counter`]).
    ///
    /// # Errors
    /// The counter map cannot be read.
    pub fn counters(&self) -> Result<[u64; counter::SLOTS as usize], KernelError> {
        let map = self
            .ebpf
            .map(MAP_COUNTERS)
            .ok_or(KernelError::Missing("counter map"))?;
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(MAP_COUNTERS))?;
        let mut out = [0u64; counter::SLOTS as usize];
        for (i, slot) in (0..counter::SLOTS).zip(out.iter_mut()) {
            *slot = arr.get(&i, 0).map_err(map_err(MAP_COUNTERS))?.iter().sum();
        }
        Ok(out)
    }
}
