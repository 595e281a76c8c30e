//! Another program of the same tcx chain: a small TC program that counts every packet it sees
//! and passes it on, attached inside a test host's namespace before or after everything else.
//! A monitor that ends the chain hides packets from the probes attached after it.

use std::os::fd::AsRawFd;

use aya::maps::PerCpuArray;
use aya::programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType};
use aya::Ebpf;
use tcptrack_common::{MAP_PROBE, PROGRAM_PROBE};

/// Where in the chain a probe goes.
#[derive(Clone, Copy, Debug)]
pub enum Order {
    /// Before every program attached so far.
    First,
    /// After every program attached so far.
    Last,
}

/// A counting program attached to one hook of one interface; detached on drop.
pub struct TcxProbe {
    ebpf: Ebpf,
}

/// Runs `f` with this thread in network namespace `ns` (made by `ip netns add`), on a thread of
/// its own so that the caller's thread never changes namespace.
fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open the namespace");
            // SAFETY: setns(2) on a namespace fd we hold open; it moves this thread only.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns into {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the namespace thread")
    })
}

impl TcxProbe {
    /// Loads a probe and attaches it to `hook` of `interface` in namespace `ns`, at `order`.
    ///
    /// # Panics
    /// Without root, or where the kernel has no tcx.
    #[must_use]
    pub fn attach(ns: &str, interface: &str, hook: TcAttachType, order: Order) -> Self {
        let ebpf = in_namespace(ns, || {
            let mut ebpf =
                tcptrack::ebpf::load_alone(PROGRAM_PROBE).expect("load the probe (root)");
            let prog: &mut SchedClassifier = ebpf
                .program_mut(PROGRAM_PROBE)
                .expect("the probe program")
                .try_into()
                .expect("a TC program");
            let order = match order {
                Order::First => LinkOrder::first(),
                Order::Last => LinkOrder::last(),
            };
            prog.attach_with_options(interface, hook, TcAttachOptions::TcxOrder(order))
                .expect("attach the probe with tcx");
            ebpf
        });
        Self { ebpf }
    }

    /// Packets the probe has seen so far, all CPUs.
    ///
    /// # Panics
    /// The probe's map cannot be read.
    #[must_use]
    pub fn packets(&self) -> u64 {
        let map: PerCpuArray<_, u64> = self
            .ebpf
            .map(MAP_PROBE)
            .expect("the probe's map")
            .try_into()
            .expect("a per-CPU array");
        map.get(&0, 0).expect("read the probe").iter().sum()
    }
}
