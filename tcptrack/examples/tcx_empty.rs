//! The baseline of the live kernel cost: attaches `tcptrack_empty` (a TC program that only
//! passes the packet) by tcx to the ingress and the egress of interface ARG1, after whatever is
//! attached there, then prints one JSON line at once and one more for every line it reads on
//! standard input: every program of the interface's two tcx chains, in their order, with its
//! id, its name and the run time and run count the kernel keeps for it (non-zero only while
//! `kernel.bpf_stats_enabled` is 1), as BPF_PROG_QUERY and BPF_OBJ_GET_INFO_BY_FD give them:
//!
//! `{"egress":[{"id":7,"name":"tcptrack_tc","run_cnt":10,"run_time_ns":900},...],"ingress":[...]}`
//!
//! With a second argument, a TC program of tcptrack's object (`stage_parse` ... `stage_update`,
//! `tcptrack_tc`: the live ablation), it also attaches that program ahead of the empty one,
//! from an object loaded as tcptrack loads it (its flow maps and cache sized alike), and
//! stands in for tcptrack's poller: every second it flips the epoch and drains the other
//! one, and it reads the event ring, so that the program counts as it does under tcptrack.
//!
//! Its programs are detached when its input ends (or it is killed). Run it in the interface's
//! network namespace (`ip netns exec NS`); `cargo xtask bench --only kernel-live` does, beside
//! tcptrack on the same interface, and alone for the ablation.

use std::io::{BufRead as _, Write as _};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use serde_json::{json, Value};
use tcptrack::ebpf::{load_alone, Kernel};
use tcptrack_common::{DEFAULT_MAX_FLOWS, PROGRAM_EMPTY};

const HOOKS: [(TcAttachType, &str); 2] = [
    (TcAttachType::Ingress, "ingress"),
    (TcAttachType::Egress, "egress"),
];

/// How often the stand-in poller drains an epoch: tcptrack's default refresh.
const POLL: Duration = Duration::from_secs(1);

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

/// Attaches `prog` to both hooks of `interface`, at `order`.
fn attach(prog: &mut SchedClassifier, interface: &str, order: fn() -> LinkOrder) {
    for (hook, _) in HOOKS {
        prog.attach_with_options(interface, hook, TcAttachOptions::TcxOrder(order()))
            .expect("attach with tcx");
    }
}

/// Prints the chains for every line of standard input until it ends, running `poll` every
/// [`POLL`] meanwhile.
fn serve(interface: &str, mut poll: impl FnMut()) {
    let (lines, asked) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() || lines.send(()).is_err() {
                break;
            }
        }
    });
    let mut out = std::io::stdout().lock();
    let mut say = || {
        writeln!(out, "{}", chains(interface)).expect("write to standard output");
        out.flush().expect("flush standard output");
    };
    say();
    let mut next = Instant::now() + POLL;
    loop {
        match asked.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(()) => say(),
            Err(RecvTimeoutError::Timeout) => {
                poll();
                next += POLL;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let interface = args.next().expect("usage: tcx_empty INTERFACE [PROGRAM]");
    let Some(stage) = args.next() else {
        let mut ebpf = load_alone(PROGRAM_EMPTY).expect("load the empty program (root)");
        let prog: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM_EMPTY)
            .expect("the empty program")
            .try_into()
            .expect("a TC program");
        attach(prog, &interface, LinkOrder::last);
        serve(&interface, || {});
        return;
    };
    let mut k = Kernel::load(DEFAULT_MAX_FLOWS, false, false).expect("load the programs (root)");
    let mut events = k.take_events().expect("the event ring");
    attach(
        k.classifier(&stage).expect("the program to measure"),
        &interface,
        LinkOrder::first,
    );
    attach(
        k.classifier(PROGRAM_EMPTY).expect("the empty program"),
        &interface,
        LinkOrder::last,
    );
    let (mut epoch, mut drained) = (0, Vec::new());
    serve(&interface, || {
        while events.next().is_some() {}
        k.set_epoch(epoch ^ 1).expect("flip the epoch");
        drained.clear();
        k.drain(epoch, &mut drained).expect("drain the epoch");
        epoch ^= 1;
    });
}
