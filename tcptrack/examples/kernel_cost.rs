//! Kernel cost per packet, from BPF_PROG_TEST_RUN (the kernel's own timing), each program
//! against a TC program that does nothing, in alternating rounds (the median of the rounds'
//! differences), so that whatever else the machine does falls on both alike:
//! - the ablation: the TC counting program stopped after each of its stages (`stage_*`: parse,
//!   key, clock, lookup, update) and whole (`tcptrack_tc`, with events), on a packet of an
//!   existing IPv4 connection (`stages`), on new connections (`stages_new`, an ACK each) and
//!   on the 65,536 below (`stages_many`);
//! - the whole program on an existing IPv6 connection;
//! - new connections (an ACK, and a SYN with its event), one run of a packet each;
//! - 65,536 connections in the interval (in slots of the flow cache where one of their two was free, the
//!   rest in the map), a packet of each in turn, one run each (after one packet of each that
//!   counted them in);
//! - the existing connection's packet through a filter of five primitives that selects it
//!   (libpcap's program, translated), beside the counting program loaded the same way
//!   (`TCPTRACK_BENCH_FILTER` names another filter).
//!
//! The programs are loaded by tcptrack's loader (`Kernel::load`, the flow cache mapped), and
//! each round is a refresh interval of its own: the maps and the cache's slots are drained
//! before it, as the poller does at every refresh.
//!
//! Prints one JSON object. `cargo xtask bench` runs it. Arguments: repeats of one packet per
//! round (default 1,000,000), runs per round of the one-run cases (default 4,000), rounds
//! (default 5).

use std::collections::BTreeMap;

use aya::programs::SchedClassifier;
use aya::{TestRun, TestRunOptions};
use etherparse::PacketBuilder;
use tcptrack::ebpf::Kernel;
use tcptrack_common::{PROGRAM_EMPTY, PROGRAM_STAGES, PROGRAM_TC};

/// Five primitives, all true of [`v4`]'s packets.
const FILTER: &str =
    "tcp and port 443 and host 198.19.0.1 and greater 100 and not net 198.20.0.0/16";

/// The ablation's stages, in order (see `tcptrack-ebpf/src/count.rs`): [`PROGRAM_STAGES`], then
/// the whole program.
const STAGES: [&str; 6] = ["parse", "key", "clock", "lookup", "update", "events"];

fn stage_program(i: usize) -> &'static str {
    PROGRAM_STAGES.get(i).copied().unwrap_or(PROGRAM_TC)
}

/// Connections in the map for the many-connections case.
const MANY: u32 = 65_536;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A 1000-byte segment from client `n` (its port and address vary with `n`) to 198.19.0.1:443.
fn v4(n: u32, syn: bool) -> Vec<u8> {
    let [_, a, b, c] = n.to_be_bytes();
    let port = 1024 + u16::try_from(n % 60_000).unwrap_or(0);
    let mut v = Vec::new();
    let ip = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18 ^ (a & 1), b, c], [198, 19, 0, 1], 64)
        .tcp(port, 443, 1, 1024);
    let payload: &[u8] = if syn { &[] } else { &[0u8; 1000] };
    if syn { ip.syn() } else { ip.ack(1) }
        .write(&mut v, payload)
        .expect("build frame");
    v
}

fn v6() -> Vec<u8> {
    let mut v = Vec::new();
    let mut client = [0u8; 16];
    client[0] = 0xfd;
    client[15] = 1;
    let mut server = client;
    server[15] = 2;
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(client, server, 64)
        .tcp(40_000, 443, 1, 1024)
        .ack(1)
        .write(&mut v, &[0u8; 1000])
        .expect("build frame");
    v
}

/// Mean ns per run: `repeat` runs of one packet.
fn repeated(prog: &mut SchedClassifier, data: &[u8], repeat: u32) -> f64 {
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(data),
            repeat,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    r.duration.as_secs_f64() * 1e9
}

fn program<'a>(k: &'a mut Kernel, name: &str) -> &'a mut SchedClassifier {
    k.classifier(name).expect("load program")
}

/// A new refresh interval: the flow map and the cache's slots emptied, as the poller drains
/// them at every refresh.
fn interval(k: &mut Kernel) {
    let mut drained = Vec::new();
    k.drain(0, &mut drained).expect("drain");
}

/// Mean ns of one run each of `frames` through `name`.
fn each(k: &mut Kernel, name: &str, frames: &[Vec<u8>]) -> f64 {
    let prog = program(k, name);
    let sum: f64 = frames.iter().map(|f| repeated(prog, f, 1)).sum();
    sum / f64::from(u32::try_from(frames.len()).unwrap_or(u32::MAX).max(1))
}

/// A program's figure and the empty program's, measured in alternating rounds.
struct Paired {
    ns: f64,
    empty_ns: f64,
    above: f64,
}

impl Paired {
    fn new(ours: Vec<f64>, empty: Vec<f64>) -> Self {
        let above = ours.iter().zip(&empty).map(|(a, b)| a - b).collect();
        Self {
            ns: median(ours),
            empty_ns: median(empty),
            above: median(above),
        }
    }

    fn json(&self) -> String {
        format!(
            "{{\"ns\":{:.1},\"empty_ns\":{:.1},\"above_ns\":{:.1}}}",
            self.ns, self.empty_ns, self.above
        )
    }
}

fn arg(args: &[String], i: usize, default: u32) -> u32 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// Each case's figures and the empty program's on the same packets, a pair per round; the
/// ablation's under the case's name and the stage's.
#[derive(Default)]
struct Figures(BTreeMap<String, (Vec<f64>, Vec<f64>)>);

impl Figures {
    fn push(&mut self, case: &str, ours: f64, empty: f64) {
        let c = self.0.entry(case.to_string()).or_default();
        c.0.push(ours);
        c.1.push(empty);
    }

    fn take(&mut self, case: &str) -> Paired {
        let (ours, empty) = self.0.remove(case).unwrap_or_default();
        Paired::new(ours, empty)
    }
}

/// The packets of the one-run cases.
struct Packets {
    many: Vec<Vec<u8>>,
    next_client: u32,
    per_round: u32,
}

impl Packets {
    /// `per_round` new connections, a packet each (SYNs or ACKs).
    fn fresh(&mut self, syn: bool) -> Vec<Vec<u8>> {
        let n = self.next_client;
        self.next_client += self.per_round;
        (n..self.next_client).map(|n| v4(n, syn)).collect()
    }
}

/// One round, a refresh interval of its own, its connections new to it.
fn round(k: &mut Kernel, p: &mut Packets, repeat: u32, f: &mut Figures) {
    let (existing, existing_v6) = (v4(0, false), v6());
    interval(k);
    // The first run counts the connection in; the repeats count into its place.
    for frame in [&existing, &existing_v6] {
        repeated(program(k, PROGRAM_TC), frame, 1);
    }
    let empty = repeated(program(k, PROGRAM_EMPTY), &existing, repeat);
    for (i, stage) in STAGES.iter().enumerate() {
        let ns = repeated(program(k, stage_program(i)), &existing, repeat);
        f.push(&format!("stages/{stage}"), ns, empty);
    }
    let ns = repeated(program(k, PROGRAM_TC), &existing_v6, repeat);
    let empty_v6 = repeated(program(k, PROGRAM_EMPTY), &existing_v6, repeat);
    f.push("existing_v6", ns, empty_v6);
    for (case, syn) in [("new_ack", false), ("new_syn", true)] {
        let frames = p.fresh(syn);
        let ns = each(k, PROGRAM_TC, &frames);
        f.push(case, ns, each(k, PROGRAM_EMPTY, &frames));
    }
    // The many: counted in once, then a packet of each in turn, through the whole program
    // and through each stage.
    each(k, PROGRAM_TC, &p.many);
    let ns = each(k, PROGRAM_TC, &p.many);
    f.push("many", ns, each(k, PROGRAM_EMPTY, &p.many));
    for (i, stage) in STAGES.iter().enumerate() {
        let ns = each(k, stage_program(i), &p.many);
        f.push(
            &format!("stages_many/{stage}"),
            ns,
            each(k, PROGRAM_EMPTY, &p.many),
        );
    }
    // The ablation on new connections (ACKs): fresh ones for each stage, each in an interval
    // of its own (as `new_ack`'s come first in theirs, after two connections).
    for (i, stage) in STAGES.iter().enumerate() {
        interval(k);
        let frames = p.fresh(false);
        let ns = each(k, stage_program(i), &frames);
        f.push(
            &format!("stages_new/{stage}"),
            ns,
            each(k, PROGRAM_EMPTY, &frames),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (repeat, per_round, rounds) = (
        arg(&args, 1, 1_000_000),
        arg(&args, 2, 4_000),
        arg(&args, 3, 5).max(1),
    );
    // On one CPU throughout: the flow cache's slots are that CPU's (BPF_PROG_TEST_RUN runs
    // a program on the caller's CPU).
    tcptrack::ebpf::cache::stay_on_this_cpu().expect("stay on this CPU");
    // Loaded as tcptrack loads them, with four times its default capacity.
    let mut k = Kernel::load(262_144, false, false).expect("load the programs (root)");
    // Clients 1..=MANY for the map of many; new connections after them, one per run.
    let mut packets = Packets {
        many: (1..=MANY).map(|n| v4(n, false)).collect(),
        next_client: MANY + 1,
        per_round,
    };
    let mut figures = Figures::default();
    for _ in 0..rounds {
        round(&mut k, &mut packets, repeat, &mut figures);
    }
    let mut fields = vec![
        format!("\"repeat\":{repeat}"),
        format!("\"runs_per_round\":{per_round}"),
        format!("\"rounds\":{rounds}"),
        format!("\"many_connections\":{MANY}"),
    ];
    for name in ["stages", "stages_new", "stages_many"] {
        let stages: Vec<String> = STAGES
            .iter()
            .map(|stage| {
                let p = figures.take(&format!("{name}/{stage}"));
                format!("{{\"stage\":\"{stage}\",\"cost\":{}}}", p.json())
            })
            .collect();
        fields.push(format!("\"{name}\":[{}]", stages.join(",")));
    }
    for case in ["existing_v6", "many", "new_ack", "new_syn"] {
        fields.push(format!("\"{case}\":{}", figures.take(case).json()));
    }
    fields.extend(filter_cost(&v4(0, false), repeat, rounds));
    println!("{{{}}}", fields.join(","));
}

/// The existing connection's packet through tcptrack's own loader, without a filter and with
/// one that selects the packet, in alternating rounds: the JSON fields.
fn filter_cost(existing: &[u8], repeat: u32, rounds: u32) -> [String; 2] {
    let load = |filter: Option<&str>| {
        let mut k = Kernel::load(1024, filter.is_some(), false).expect("load the programs (root)");
        if let Some(expr) = filter {
            let program = tcptrack::filter::compile(expr, pcap::Linktype::ETHERNET)
                .expect("libpcap compiles the filter");
            k.set_filter(&program).expect("the kernel takes the filter");
        }
        k
    };
    let chosen = std::env::var("TCPTRACK_BENCH_FILTER").unwrap_or_else(|_| FILTER.to_owned());
    let (mut plain, mut filtered) = (load(None), load(Some(&chosen)));
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        without.push(repeated(plain.tc().expect("TC program"), existing, repeat));
        with.push(repeated(
            filtered.tc().expect("TC program"),
            existing,
            repeat,
        ));
    }
    [
        format!("\"filtered\":{}", Paired::new(with, without).json()),
        format!("\"filter\":{}", json_string(&chosen)),
    ]
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
