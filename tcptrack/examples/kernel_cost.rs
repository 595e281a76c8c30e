//! Kernel cost per packet, from BPF_PROG_TEST_RUN (the kernel's own timing): the TC counting
//! program on a packet of an existing connection and on packets of new connections, beside a
//! TC program that does nothing; and the same existing connection's packet through a filter
//! of five primitives that selects it (libpcap's program, translated), beside the counting
//! program loaded the same way (`TCPTRACK_BENCH_FILTER` names another filter). Prints one JSON
//! object. `cargo xtask bench` runs it.

use aya::programs::SchedClassifier;
use aya::{EbpfLoader, TestRun, TestRunOptions};
use etherparse::PacketBuilder;
use tcptrack_common::{MAP_FLOWS, PROGRAM_EMPTY, PROGRAM_TC};

/// Five primitives, all true of [`frame`]'s packets.
const FILTER: &str =
    "tcp and port 443 and host 198.19.0.1 and greater 100 and not net 198.20.0.0/16";

/// Alternating rounds of the filter's measurement.
const ROUNDS: u32 = 21;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn frame(client_port: u16, third_octet: u8) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, third_octet, 1], [198, 19, 0, 1], 64)
        .tcp(client_port, 443, 1, 1024)
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let repeat: u32 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let fresh: u16 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_FLOWS[0], 262_144)
        .map_max_entries(MAP_FLOWS[1], 1)
        .load(tcptrack::ebpf::OBJECT)
        .expect("load the eBPF object (root)");
    let existing = frame(40_000, 0);
    let mut run = |name: &str, frames: &mut dyn Iterator<Item = Vec<u8>>, repeat: u32| -> f64 {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .expect("program")
            .try_into()
            .expect("TC program");
        if prog.fd().is_err() {
            prog.load().expect("load program");
        }
        let (mut sum, mut n) = (0.0, 0u32);
        for f in frames {
            sum += repeated(prog, &f, repeat);
            n += 1;
        }
        sum / f64::from(n.max(1))
    };
    let empty_ns = run(
        PROGRAM_EMPTY,
        &mut std::iter::once(existing.clone()),
        repeat,
    );
    // The first run makes the entry; the repeats count into it.
    let existing_ns = run(PROGRAM_TC, &mut std::iter::once(existing.clone()), repeat);
    // Each frame a connection the map has not seen: one run each.
    let new_ns = run(
        PROGRAM_TC,
        &mut (0..fresh).map(|i| {
            frame(
                1024 + (i % 60_000),
                u8::try_from(i / 60_000 + 1).unwrap_or(255),
            )
        }),
        1,
    );
    let empty_single_ns = run(PROGRAM_EMPTY, &mut (0..fresh).map(|_| existing.clone()), 1);
    // Through tcptrack's own loader: without a filter, and with one that selects the packet,
    // in alternating rounds (the median of each, and of the rounds' differences), so that
    // whatever else the machine does falls on both alike.
    let load = |filter: Option<&str>| {
        let mut k = tcptrack::ebpf::Kernel::load(1024, filter.is_some(), false)
            .expect("load the programs (root)");
        if let Some(expr) = filter {
            let program = tcptrack::filter::compile(expr, pcap::Linktype::ETHERNET)
                .expect("libpcap compiles the filter");
            k.set_filter(&program).expect("the kernel takes the filter");
        }
        k
    };
    let chosen = std::env::var("TCPTRACK_BENCH_FILTER").unwrap_or_else(|_| FILTER.to_owned());
    let (mut plain, mut filtered) = (load(None), load(Some(&chosen)));
    let per_round = (repeat / ROUNDS).max(1);
    let (mut without, mut with, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let a = repeated(plain.tc().expect("TC program"), &existing, per_round);
        let b = repeated(filtered.tc().expect("TC program"), &existing, per_round);
        without.push(a);
        with.push(b);
        added.push(b - a);
    }
    let (unfiltered_ns, filtered_ns, filter_added_ns) =
        (median(without), median(with), median(added));
    println!(
        "{{\"repeat\":{repeat},\"new_connections\":{fresh},\"empty_ns\":{empty_ns:.1},\"existing_ns\":{existing_ns:.1},\"new_ns\":{new_ns:.1},\"empty_single_ns\":{empty_single_ns:.1},\"unfiltered_ns\":{unfiltered_ns:.1},\"filtered_ns\":{filtered_ns:.1},\"filter_added_ns\":{filter_added_ns:.1},\"filter\":\"{chosen}\"}}"
    );
}
