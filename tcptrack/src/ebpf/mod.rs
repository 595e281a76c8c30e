//! The kernel programs, built from tcptrack-ebpf by the build script and embedded here: loading
//! them (through the verifier), attaching them with links, and reading their maps.
//!
//! Programs are attached only through links (tcx, XDP links): they go away when the process
//! does, even on SIGKILL. Dropping [`Kernel`] detaches everything.

mod attach;
pub mod batch;
pub mod cache;
pub mod cbpf;
pub mod clocks;
mod error;
mod sys;

pub use attach::{
    forget_records, interface_exists, interface_index, records_dir, Attachment, Features, TcHook,
};
pub use error::KernelError;

use aya::maps::{Array, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::programs::{FEntry, FExit, SchedClassifier, Xdp};
use aya::{Ebpf, EbpfLoader, TestRun, TestRunOptions};
use cbpf::{Cbpf, Hook};
use tcptrack_common::{
    counter, events_wakeup_every, ConnKey, FlowValue, COUNT_SLOT, FILTER_SLOT, FN_ACCEPT,
    FN_CONNECT, GLOBAL_EVENTS_WAKEUP_EVERY, MAP_CLAIMED, MAP_CLOCKS, MAP_COUNTERS, MAP_EPOCH,
    MAP_EVENTS, MAP_FILTER_TC, MAP_FILTER_XDP, MAP_FLOWS, MAP_OPENERS, MAP_SLOTS, PROGRAM_ACCEPT,
    PROGRAM_CLOCKS, PROGRAM_CONNECT, PROGRAM_TC, PROGRAM_TC_FILTER, PROGRAM_XDP,
    PROGRAM_XDP_FILTER,
};

/// The eBPF object file (ELF) of this build; empty when built without the `ebpf` feature.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrack-ebpf"));

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
    /// How TC programs are hooked on this kernel.
    hook: TcHook,
    /// The TC and XDP programs to attach (the counting ones, or those that go through the
    /// filter first).
    tc_name: &'static str,
    xdp_name: Option<&'static str>,
    /// The filter programs translated for TC and XDP, while they run (their program arrays
    /// hold them too).
    filters: Vec<std::os::fd::OwnedFd>,
    /// What the flow maps' batch reads fill, kept between drains.
    drained: batch::Buffers<ConnKey, FlowValue>,
    /// The flow cache's slots, mapped.
    cache: cache::Cache,
    /// Where a tick began (see [`Kernel::ticks`]), once found.
    ticks: Option<clocks::Ticks>,
    /// The connections the last drain found packets of in the flow map.
    in_map: Vec<ConnKey>,
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if self.hook == TcHook::Netlink {
            // The attachments (and with them the filters) went before the kernel.
            attach::forget_records();
        }
    }
}

impl Kernel {
    /// Loads the object (its two flow maps sized for `max_flows` connections each) and the TC
    /// program, and the XDP one with `xdp`, through the verifier, without attaching them;
    /// with `filtering`, also the programs that go through a filter first, which
    /// [`Kernel::set_filter`] then gives them. What the running kernel offers decides the
    /// rest ([`Features`]). The programs count into the flow map of epoch 0.
    ///
    /// # Errors
    /// The build has no kernel programs, the kernel lacks what is asked for, no privilege, or a
    /// verifier rejection.
    pub fn load(max_flows: u32, filtering: bool, xdp: bool) -> Result<Self, KernelError> {
        if OBJECT.is_empty() {
            return Err(KernelError::NotBuilt);
        }
        let features = Features::of_this_kernel();
        if xdp && !features.xdp_load_bytes {
            return Err(KernelError::Lacks(
                "bpf_xdp_load_bytes (5.18), which --xdp reads packets with",
            ));
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| KernelError::Cpus(e))?;
        let sizes = cache::Sizes::new(max_flows, cpus);
        let wakeup_every = events_wakeup_every(sizes.cpus);
        let mut loader = EbpfLoader::new();
        sizes.apply(&mut loader);
        loader.override_global(GLOBAL_EVENTS_WAKEUP_EVERY, &wakeup_every, true);
        let ebpf = loader.load(OBJECT).map_err(KernelError::Object)?;
        let fd = |name| match ebpf.map(name) {
            Some(aya::maps::Map::Array(d)) => Ok(std::os::fd::AsFd::as_fd(d.fd())),
            _ => Err(KernelError::Missing(name)),
        };
        let cache = cache::Cache::map(sizes, fd(MAP_SLOTS)?, fd(MAP_CLAIMED)?)
            .map_err(KernelError::Cache)?;
        let hook = if features.tcx {
            TcHook::Tcx
        } else {
            attach::remove_leftovers();
            TcHook::Netlink
        };
        let mut k = Self {
            ebpf,
            cpus,
            batch: true,
            hook,
            tc_name: if filtering {
                PROGRAM_TC_FILTER
            } else {
                PROGRAM_TC
            },
            xdp_name: xdp.then_some(if filtering {
                PROGRAM_XDP_FILTER
            } else {
                PROGRAM_XDP
            }),
            filters: Vec::new(),
            drained: batch::Buffers::default(),
            cache,
            in_map: Vec::new(),
            ticks: None,
        };
        let refused = |program| move |source| KernelError::Refused { program, source };
        let mut names = vec![(PROGRAM_TC, "TC"), (PROGRAM_CLOCKS, "clock")];
        if xdp {
            names.push((PROGRAM_XDP, "XDP"));
        }
        if filtering {
            names.push((PROGRAM_TC_FILTER, "TC"));
            if xdp {
                names.push((PROGRAM_XDP_FILTER, "XDP"));
            }
        }
        for (name, what) in names {
            let program = k
                .ebpf
                .program_mut(name)
                .ok_or(KernelError::Missing("TC or XDP program"))?;
            match program {
                aya::programs::Program::SchedClassifier(p) => p.load(),
                aya::programs::Program::Xdp(p) => p.load(),
                _ => return Err(KernelError::Missing("TC or XDP program")),
            }
            .map_err(refused(what))?;
        }
        Ok(k)
    }

    /// Runs `program` (libpcap's classic BPF for an Ethernet link) ahead of the counting
    /// programs: it is translated into eBPF for each hook loaded with a filter (see
    /// [`cbpf`]), loaded, and put in the slot the attached programs go through; the counting
    /// program goes in the slot the filter goes on to. Replaces the filter that ran before.
    ///
    /// # Errors
    /// Loaded without a filter, the program cannot be translated (an ancillary load the hook
    /// has no field for), or the kernel refused it.
    pub fn set_filter(&mut self, program: &[Cbpf]) -> Result<(), KernelError> {
        if self.tc_name != PROGRAM_TC_FILTER {
            return Err(KernelError::Missing(
                "filter program (loaded without a filter)",
            ));
        }
        let counters = self.map_fd(MAP_COUNTERS)?;
        let mut hooks = vec![(Hook::Tc, MAP_FILTER_TC, PROGRAM_TC)];
        if self.xdp_name.is_some() {
            hooks.push((Hook::Xdp, MAP_FILTER_XDP, PROGRAM_XDP));
        }
        let mut filters = Vec::new();
        for (hook, map, counting) in hooks {
            let programs = self.map_fd(map)?;
            let maps = cbpf::Maps { programs, counters };
            let insns = cbpf::translate(program, hook, maps).map_err(KernelError::Filter)?;
            let filter = sys::load_program(hook, "tcptrack_filter", &insns).map_err(|r| {
                KernelError::FilterRefused {
                    hook,
                    source: r.error,
                    log: r.log,
                }
            })?;
            let counting = self
                .ebpf
                .program(counting)
                .and_then(|p| p.fd().ok())
                .ok_or(KernelError::Missing("counting program"))?;
            let array = self.map_borrowed_fd(map)?;
            let slot = |index, fd| {
                sys::set_program(array, index, fd)
                    .map_err(|source| KernelError::Slot { hook, source })
            };
            use std::os::fd::AsFd as _;
            slot(COUNT_SLOT, counting.as_fd())?;
            slot(FILTER_SLOT, filter.as_fd())?;
            filters.push(filter);
        }
        self.filters = filters;
        Ok(())
    }

    /// The descriptor of map `name`, as a number for the instructions that name it.
    fn map_fd(&self, name: &'static str) -> Result<i32, KernelError> {
        use std::os::fd::AsRawFd as _;
        self.map_borrowed_fd(name).map(|fd| fd.as_raw_fd())
    }

    /// The descriptor of map `name` (of the types the object has that bpf(2) is called on
    /// directly: the flow maps, the counters, the filter's program arrays).
    fn map_borrowed_fd(
        &self,
        name: &'static str,
    ) -> Result<std::os::fd::BorrowedFd<'_>, KernelError> {
        use std::os::fd::AsFd as _;
        match self.ebpf.map(name) {
            Some(
                aya::maps::Map::ProgramArray(d)
                | aya::maps::Map::PerCpuArray(d)
                | aya::maps::Map::PerCpuHashMap(d),
            ) => Ok(d.fd().as_fd()),
            _ => Err(KernelError::Missing(name)),
        }
    }

    /// How the TC programs are hooked on this kernel.
    #[must_use]
    pub const fn hook(&self) -> TcHook {
        self.hook
    }

    /// The TC program, loaded.
    ///
    /// # Errors
    /// The object has no TC program (cannot happen with the embedded object).
    pub fn tc(&mut self) -> Result<&mut SchedClassifier, KernelError> {
        self.ebpf
            .program_mut(self.tc_name)
            .and_then(|p| p.try_into().ok())
            .ok_or(KernelError::Missing("TC program"))
    }

    /// The TC program `name` of the object, loaded (the benchmarks' and tests' own programs).
    ///
    /// # Errors
    /// No such TC program, or the kernel refused it.
    pub fn classifier(&mut self, name: &str) -> Result<&mut SchedClassifier, KernelError> {
        let p: &mut SchedClassifier = self
            .ebpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .ok_or(KernelError::Missing("TC program"))?;
        if p.fd().is_err() {
            p.load().map_err(|source| KernelError::Refused {
                program: "TC",
                source,
            })?;
        }
        Ok(p)
    }

    /// The XDP program, loaded.
    ///
    /// # Errors
    /// The object has no XDP program (cannot happen with the embedded object).
    pub fn xdp(&mut self) -> Result<&mut Xdp, KernelError> {
        self.ebpf
            .program_mut(self.xdp_name.unwrap_or(PROGRAM_XDP))
            .and_then(|p| p.try_into().ok())
            .ok_or(KernelError::Missing("XDP program"))
    }

    /// The file descriptor of the flow map of `epoch`, for the batch calls.
    fn flows_fd(&self, epoch: u32) -> Result<std::os::fd::BorrowedFd<'_>, KernelError> {
        self.map_borrowed_fd(MAP_FLOWS[usize::from(epoch != 0)])
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
    /// entries where the kernel has batch operations, else key by key), with the counts of the
    /// epoch's cache slots added to their connections' CPUs.
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
            // Taken out for the call (the descriptor borrows the maps), put back after.
            let mut drained = std::mem::take(&mut self.drained);
            let taken = batch::take_all(self.flows_fd(epoch)?, cpus, &mut drained, out);
            self.drained = drained;
            match taken {
                Ok(()) => {
                    self.took(epoch, out);
                    return Ok(());
                }
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
        self.took(epoch, out);
        Ok(())
    }

    /// After the flow map of `epoch` was drained into `out`: the connections that counted
    /// packets there kept (for [`Kernel::keep_places`]), then the epoch's slots added.
    fn took(&mut self, epoch: u32, out: &mut Vec<(ConnKey, Vec<FlowValue>)>) {
        // The map's entries come first in `out`; the slots' counts are added to them, or
        // after them.
        let in_map: Vec<usize> = (0..out.len())
            .filter(|&i| out[i].1.iter().any(|v| v.dir.iter().any(|d| d.packets > 0)))
            .collect();
        self.cache.take(epoch, out);
        self.in_map.clear();
        // Those that ended (on any CPU, in the map or a slot) keep no place.
        self.in_map.extend(
            in_map
                .into_iter()
                .filter(|&i| !cache::ended(&out[i].1))
                .map(|i| out[i].0),
        );
    }

    /// How the programs' tick counts read as the monotonic clock: where a tick began, found
    /// the first time from readings across one (three ticks of system calls at most), then
    /// checked with one reading each time and found again where it does not agree (after a
    /// suspend). Where no reading showed the count move (this thread kept off the CPU that
    /// long), the last finding stays, or the first time, the reading's own tick is taken to
    /// have begun a tick before it (a tick early at most).
    ///
    /// # Errors
    /// The clocks' program cannot run, or its map cannot be read.
    pub fn ticks(&mut self) -> Result<clocks::Ticks, KernelError> {
        let now = self.read_clocks()?;
        if let Some(t) = self.ticks.filter(|t| t.agrees(now)) {
            return Ok(t);
        }
        let tick = clocks::tick().map_err(KernelError::Clocks)?;
        let t = match clocks::find(tick, || self.read_clocks())? {
            Some(t) => t,
            None => self
                .ticks
                .unwrap_or_else(|| clocks::Ticks::about(now, tick)),
        };
        self.ticks = Some(t);
        Ok(t)
    }

    /// One reading of the kernel's clocks, by `tcptrack_clocks`.
    fn read_clocks(&mut self) -> Result<clocks::Reading, KernelError> {
        // The smallest frame a TC program runs on: an Ethernet header.
        let frame = [0u8; 14];
        self.classifier(PROGRAM_CLOCKS)?
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ..TestRunOptions::default()
            })
            .map_err(|source| KernelError::Refused {
                program: "clock",
                source,
            })?;
        let map = self
            .ebpf
            .map(MAP_CLOCKS)
            .ok_or(KernelError::Missing("clock map"))?;
        let a: Array<_, clocks::Reading> = Array::try_from(map).map_err(map_err(MAP_CLOCKS))?;
        a.get(&0, 0).map_err(map_err(MAP_CLOCKS))
    }

    /// The connections of the last drain that counted packets in the flow map (on some CPU;
    /// they may have counted in slots on others) and did not end (see [`cache::ended`]): those
    /// whose entries [`Kernel::keep_places`] reserves. Those not listed counted only in slots,
    /// nothing (an entry reserved for them), or ended.
    #[must_use]
    pub fn counted_in_map(&self) -> &[ConnKey] {
        &self.in_map
    }

    /// Before the programs count into `epoch`: the connections that counted packets in the last
    /// drain, and did not end there (a reset, or a FIN each way), keep their places there, in
    /// the map ([`Kernel::reserve`]) for those counted in the map, their slots
    /// ([`cache::Cache::hold`]) for those counted in slots. So a flood of new tuples cannot
    /// crowd them out, and the map's room goes to connections in the map.
    pub fn keep_places(&mut self, epoch: u32) {
        let in_map = std::mem::take(&mut self.in_map);
        self.reserve(epoch, &in_map);
        self.in_map = in_map;
        self.cache.hold(epoch);
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

    /// Loads and attaches the programs that tell which process opens each connection (on entry
    /// to `tcp_connect` and the return of `inet_csk_accept`, BPF trampolines, for every
    /// namespace of the host), and takes their ring buffer (once). They go with the process, as
    /// the other programs do.
    ///
    /// # Errors
    /// No BTF, or the kernel refused a program (they need `CAP_PERFMON` or `CAP_SYS_ADMIN`
    /// besides `CAP_BPF`, and a kernel with BPF trampolines), or the ring is missing.
    pub fn watch_openers(&mut self) -> Result<RingBuf<MapData>, KernelError> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| KernelError::Btf(e.to_string()))?;
        let refused = |program| move |source| KernelError::Refused { program, source };
        let connect: &mut FEntry = self
            .ebpf
            .program_mut(PROGRAM_CONNECT)
            .and_then(|p| p.try_into().ok())
            .ok_or(KernelError::Missing("connect program"))?;
        connect.load(FN_CONNECT, &btf).map_err(refused("connect"))?;
        connect.attach().map_err(refused("connect"))?;
        let mut last = None;
        for name in PROGRAM_ACCEPT {
            let accept: &mut FExit = self
                .ebpf
                .program_mut(name)
                .and_then(|p| p.try_into().ok())
                .ok_or(KernelError::Missing("accept program"))?;
            // The one for the other number of arguments is refused by the verifier.
            match accept.load(FN_ACCEPT, &btf) {
                Ok(()) => {
                    accept.attach().map_err(refused("accept"))?;
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(refused("accept")(e));
        }
        let map = self
            .ebpf
            .take_map(MAP_OPENERS)
            .ok_or(KernelError::Missing("openers' ring buffer"))?;
        RingBuf::try_from(map).map_err(map_err(MAP_OPENERS))
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

/// The object with its TC program `name` loaded and nothing else, its flow maps at one entry
/// each: for a program that counts nothing of tcptrack's and has no use for them (the
/// benchmarks' empty program, the tests' probes). The program is then `program_mut(name)`.
///
/// # Errors
/// The build has no kernel programs, no such TC program, no privilege, or the kernel refused
/// it.
pub fn load_alone(name: &str) -> Result<Ebpf, KernelError> {
    if OBJECT.is_empty() {
        return Err(KernelError::NotBuilt);
    }
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_FLOWS[0], 1)
        .map_max_entries(MAP_FLOWS[1], 1)
        .load(OBJECT)
        .map_err(KernelError::Object)?;
    let p: &mut SchedClassifier = ebpf
        .program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or(KernelError::Missing("TC program"))?;
    p.load().map_err(|source| KernelError::Refused {
        program: "TC",
        source,
    })?;
    Ok(ebpf)
}
