//! Kernel cost per packet, from BPF_PROG_TEST_RUN (the kernel's own timing), each program
//! against a TC program that does nothing, in alternating rounds (the median of the rounds'
//! differences), so that whatever else the machine does falls on both alike:
//! - the ablation: the TC counting program stopped after each of its stages (`stage_*`: parse,
//!   key, clock, lookup, update) and whole (`tcptrack_tc`, with events), on a packet of an
//!   existing IPv4 connection;
//! - the whole program on an existing IPv6 connection;
//! - new connections (an ACK, and a SYN with its event), one run of a packet each;
//! - 65,536 connections in the interval (in slots of the flow cache where theirs was free, the
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
    let (existing, existing_v6) = (v4(0, false), v6());
    // Clients 1..=MANY for the map of many; new connections after them, one per run.
    let many: Vec<Vec<u8>> = (1..=MANY).map(|n| v4(n, false)).collect();
    let mut next_client = MANY + 1;
    let mut fresh = |syn: bool| -> Vec<Vec<u8>> {
        let frames = (next_client..next_client + per_round)
            .map(|n| v4(n, syn))
            .collect();
        next_client += per_round;
        frames
    };

    let mut stage_ns: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut cases: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut push = |case: &'static str, ours: f64, empty: f64| {
        let c = cases.entry(case).or_default();
        c.0.push(ours);
        c.1.push(empty);
    };
    let mut empty_repeated = Vec::new();
    // Each round is a refresh interval of its own, its connections new to it.
    for _ in 0..rounds {
        interval(&mut k);
        // The first run counts the connection in; the repeats count into its place.
        for frame in [&existing, &existing_v6] {
            repeated(program(&mut k, PROGRAM_TC), frame, 1);
        }
        let empty = repeated(program(&mut k, PROGRAM_EMPTY), &existing, repeat);
        empty_repeated.push(empty);
        for (i, stage) in STAGES.into_iter().enumerate() {
            let ns = repeated(program(&mut k, stage_program(i)), &existing, repeat);
            stage_ns.entry(stage).or_default().push(ns);
        }
        let ns = repeated(program(&mut k, PROGRAM_TC), &existing_v6, repeat);
        let empty_v6 = repeated(program(&mut k, PROGRAM_EMPTY), &existing_v6, repeat);
        push("existing_v6", ns, empty_v6);
        for (case, syn) in [("new_ack", false), ("new_syn", true)] {
            let frames = fresh(syn);
            let ns = each(&mut k, PROGRAM_TC, &frames);
            push(case, ns, each(&mut k, PROGRAM_EMPTY, &frames));
        }
        // The many: counted in once, then a packet of each in turn.
        each(&mut k, PROGRAM_TC, &many);
        let ns = each(&mut k, PROGRAM_TC, &many);
        push("many", ns, each(&mut k, PROGRAM_EMPTY, &many));
    }
    let mut fields = vec![
        format!("\"repeat\":{repeat}"),
        format!("\"runs_per_round\":{per_round}"),
        format!("\"rounds\":{rounds}"),
        format!("\"many_connections\":{MANY}"),
    ];
    let stages: Vec<String> = STAGES
        .iter()
        .map(|stage| {
            let ns = stage_ns.remove(stage).unwrap_or_default();
            let p = Paired::new(ns, empty_repeated.clone());
            format!("{{\"stage\":\"{stage}\",\"cost\":{}}}", p.json())
        })
        .collect();
    fields.push(format!("\"stages\":[{}]", stages.join(",")));
    for (case, (ours, empty)) in cases {
        fields.push(format!("\"{case}\":{}", Paired::new(ours, empty).json()));
    }

    fields.extend(filter_cost(&existing, repeat, rounds));
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
