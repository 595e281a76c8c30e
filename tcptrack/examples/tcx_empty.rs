//! The baseline of the live kernel cost: attaches `tcptrack_empty` (a TC program that only
//! passes the packet) by tcx to the ingress and the egress of interface ARG1, after whatever is
//! attached there, then prints one JSON line at once and one more for every line it reads on
//! standard input: every program of the interface's two tcx chains, in their order, with its
//! id, its name and the run time and run count the kernel keeps for it (non-zero only while
//! `kernel.bpf_stats_enabled` is 1), as BPF_PROG_QUERY and BPF_OBJ_GET_INFO_BY_FD give them:
//!
//! `{"egress":[{"id":7,"name":"tcptrack_tc","run_cnt":10,"run_time_ns":900},...],"ingress":[...]}`
//!
//! Its programs are detached when its input ends (or it is killed). Run it in the interface's
//! network namespace (`ip netns exec NS`); `cargo xtask bench --only kernel-live` does, beside
//! tcptrack on the same interface.

use std::io::{BufRead as _, Write as _};

use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::EbpfLoader;
use serde_json::{json, Value};
use tcptrack_common::{MAP_FLOWS, PROGRAM_EMPTY};

const HOOKS: [(TcAttachType, &str); 2] = [
    (TcAttachType::Ingress, "ingress"),
    (TcAttachType::Egress, "egress"),
];

/// The programs of both chains of `interface`, with their run statistics.
fn chains(interface: &str) -> Value {
    let mut all = serde_json::Map::new();
    for (hook, name) in HOOKS {
        let (_, programs) =
            SchedClassifier::query_tcx(interface, hook).expect("query the tcx chain");
        let programs: Vec<Value> = programs
            .iter()
            .map(|p| {
                json!({
                    "id": p.id(),
                    "name": p.name_as_str().unwrap_or_default(),
                    "run_cnt": p.run_count(),
                    "run_time_ns": u64::try_from(p.run_time().as_nanos()).unwrap_or(u64::MAX),
                })
            })
            .collect();
        all.insert(name.to_owned(), Value::Array(programs));
    }
    Value::Object(all)
}

fn main() {
    let interface = std::env::args().nth(1).expect("usage: tcx_empty INTERFACE");
    let mut ebpf = EbpfLoader::new()
        // The empty program has no use for tcptrack's flow maps: keep them small.
        .map_max_entries(MAP_FLOWS[0], 1)
        .map_max_entries(MAP_FLOWS[1], 1)
        .load(tcptrack::ebpf::OBJECT)
        .expect("load the eBPF object (root)");
    let prog: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM_EMPTY)
        .expect("the empty program")
        .try_into()
        .expect("a TC program");
    prog.load().expect("load the empty program");
    for (hook, _) in HOOKS {
        prog.attach_with_options(
            &interface,
            hook,
            TcAttachOptions::TcxOrder(LinkOrder::last()),
        )
        .expect("attach the empty program with tcx");
    }
    let mut out = std::io::stdout().lock();
    let mut say = || {
        writeln!(out, "{}", chains(&interface)).expect("write to standard output");
        out.flush().expect("flush standard output");
    };
    say();
    for line in std::io::stdin().lock().lines() {
        line.expect("read standard input");
        say();
    }
}
