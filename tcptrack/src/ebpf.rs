//! The kernel programs, built from tcptrack-ebpf by the build script and embedded here: loading
//! them (through the verifier), attaching them with links, and reading their maps.
//!
//! Programs are attached only through links (tcx, XDP links): they go away when the process
//! does, even on SIGKILL. Dropping [`Kernel`] detaches everything.

use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use tcptrack_common::{
    counter, FilterInsn, FlowKey, FlowValue, GLOBAL_FILTER_ENABLED, MAP_COUNTERS, MAP_EVENTS,
    MAP_FILTER, MAP_FLOWS, MAX_FILTER_INSNS, PROGRAM_TC, PROGRAM_XDP,
};

/// The eBPF object file (ELF) of this build.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrack-ebpf"));

/// Why the kernel path is not available (shown when tcptrack falls back to libpcap).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KernelError(pub String);

fn err(what: &str, e: impl std::fmt::Display) -> KernelError {
    KernelError(format!("{what}: {e}"))
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
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_FLOWS, max_flows)
            .override_global(GLOBAL_FILTER_ENABLED, &u8::from(filtering), true)
            .load(OBJECT)
            .map_err(|e| err("cannot load the eBPF object", e))?;
        let tc: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM_TC)
            .ok_or_else(|| KernelError("the eBPF object has no TC program".into()))?
            .try_into()
            .map_err(|e| err("TC program", e))?;
        tc.load()
            .map_err(|e| err("the kernel refused the TC program", e))?;
        let xdp: &mut Xdp = ebpf
            .program_mut(PROGRAM_XDP)
            .ok_or_else(|| KernelError("the eBPF object has no XDP program".into()))?
            .try_into()
            .map_err(|e| err("XDP program", e))?;
        xdp.load()
            .map_err(|e| err("the kernel refused the XDP program", e))?;
        Ok(Self { ebpf })
    }

    /// The TC program, loaded.
    ///
    /// # Errors
    /// The object has no TC program (cannot happen with the embedded object).
    pub fn tc(&mut self) -> Result<&mut SchedClassifier, KernelError> {
        self.ebpf
            .program_mut(PROGRAM_TC)
            .ok_or_else(|| KernelError("no TC program".into()))?
            .try_into()
            .map_err(|e| err("TC program", e))
    }

    /// The XDP program, loaded.
    ///
    /// # Errors
    /// The object has no XDP program (cannot happen with the embedded object).
    pub fn xdp(&mut self) -> Result<&mut Xdp, KernelError> {
        self.ebpf
            .program_mut(PROGRAM_XDP)
            .ok_or_else(|| KernelError("no XDP program".into()))?
            .try_into()
            .map_err(|e| err("XDP program", e))
    }

    /// Counts the packets of `interface`: TC on egress, and on ingress TC, or XDP with `xdp`.
    ///
    /// # Errors
    /// The interface does not exist, or the kernel refused the attachment.
    pub fn attach(&mut self, interface: &str, xdp: bool) -> Result<(), KernelError> {
        let tcx = || TcAttachOptions::TcxOrder(LinkOrder::default());
        let at = |e| err(&format!("cannot attach to {interface}"), e);
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
            return Err(KernelError("filter program too long".into()));
        }
        let map = self
            .ebpf
            .map_mut(MAP_FILTER)
            .ok_or_else(|| KernelError("no filter map".into()))?;
        let mut filter: Array<_, FilterInsn> =
            Array::try_from(map).map_err(|e| err("filter map", e))?;
        let end = FilterInsn::default();
        for i in 0..MAX_FILTER_INSNS {
            let ins = program.get(i as usize).unwrap_or(&end);
            filter.set(i, *ins, 0).map_err(|e| err("filter map", e))?;
        }
        Ok(())
    }

    /// The flow map.
    ///
    /// # Errors
    /// The map is missing or of another type (cannot happen with the embedded object).
    pub fn flows(&self) -> Result<PerCpuHashMap<&MapData, FlowKey, FlowValue>, KernelError> {
        let map = self
            .ebpf
            .map(MAP_FLOWS)
            .ok_or_else(|| KernelError("no flow map".into()))?;
        PerCpuHashMap::try_from(map).map_err(|e| err("flow map", e))
    }

    /// Takes the event ring buffer (once).
    ///
    /// # Errors
    /// Already taken, or missing.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, KernelError> {
        let map = self
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or_else(|| KernelError("no event ring buffer".into()))?;
        RingBuf::try_from(map).map_err(|e| err("event ring buffer", e))
    }

    /// The programs' counters, summed over CPUs (see [`tcptrack_common::counter`]).
    ///
    /// # Errors
    /// The counter map cannot be read.
    pub fn counters(&self) -> Result<[u64; counter::SLOTS as usize], KernelError> {
        let map = self
            .ebpf
            .map(MAP_COUNTERS)
            .ok_or_else(|| KernelError("no counter map".into()))?;
        let arr: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| err("counter map", e))?;
        let mut out = [0u64; counter::SLOTS as usize];
        for (i, slot) in (0..counter::SLOTS).zip(out.iter_mut()) {
            *slot = arr
                .get(&i, 0)
                .map_err(|e| err("counter map", e))?
                .iter()
                .sum();
        }
        Ok(out)
    }
}
