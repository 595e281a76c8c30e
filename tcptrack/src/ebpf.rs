//! The kernel programs, built from tcptrack-ebpf by the build script and embedded here: loading
//! them (through the verifier), attaching them with links, and reading their maps.
//!
//! Programs are attached only through links (tcx, XDP links): they go away when the process
//! does, even on SIGKILL. Dropping [`Kernel`] detaches everything.

use aya::maps::{Array, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::programs::{
    tc::TcAttachOptions, LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
};
use aya::{Ebpf, EbpfLoader};
use tcptrack_common::{
    counter, ConnKey, FilterInsn, FlowValue, GLOBAL_FILTER_ENABLED, MAP_COUNTERS, MAP_EVENTS,
    MAP_FILTER, MAP_FLOWS, MAX_FILTER_INSNS, PROGRAM_TC, PROGRAM_XDP,
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
}

impl Kernel {
    /// Loads the object (its flow map sized for `max_flows` connections; with the filter code
    /// when `filtering`) and both programs, through the verifier, without attaching them.
    ///
    /// # Errors
    /// No privilege (CAP_BPF, CAP_NET_ADMIN), a kernel without what the programs need, or a
    /// verifier rejection.
    pub fn load(max_flows: u32, filtering: bool) -> Result<Self, KernelError> {
        let ebpf = EbpfLoader::new()
            .map_max_entries(MAP_FLOWS, max_flows)
            .override_global(GLOBAL_FILTER_ENABLED, &u8::from(filtering), true)
            .load(OBJECT)
            .map_err(KernelError::Object)?;
        let mut k = Self { ebpf };
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
    pub fn attach(&mut self, interface: &str, xdp: bool) -> Result<(), KernelError> {
        let tcx = || TcAttachOptions::TcxOrder(LinkOrder::default());
        let at = |source| KernelError::Attach {
            interface: interface.to_owned(),
            source,
        };
        self.tc()?
            .attach_with_options(interface, TcAttachType::Egress, tcx())
            .map_err(at)?;
        if xdp {
            self.xdp()?
                .attach(interface, XdpMode::default())
                .map_err(at)?;
        } else {
            self.tc()?
                .attach_with_options(interface, TcAttachType::Ingress, tcx())
                .map_err(at)?;
        }
        Ok(())
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

    /// The flow map.
    ///
    /// # Errors
    /// The map is missing or of another type (cannot happen with the embedded object).
    pub fn flows(&self) -> Result<PerCpuHashMap<&MapData, ConnKey, FlowValue>, KernelError> {
        let map = self
            .ebpf
            .map(MAP_FLOWS)
            .ok_or(KernelError::Missing("flow map"))?;
        PerCpuHashMap::try_from(map).map_err(map_err(MAP_FLOWS))
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
