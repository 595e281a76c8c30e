//! The embedded kernel programs load (the verifier accepts them) and, run on crafted packets
//! with BPF_PROG_TEST_RUN, pass every packet unchanged and count exactly what they should. Needs
//! root, as CI has: without it these tests fail, they do not skip.

use std::net::Ipv6Addr;
use std::time::Duration;

use aya::{TestRun, TestRunOptions};
use etherparse::{
    IpHeaders, IpNumber, Ipv6Extensions, Ipv6Header, Ipv6RawExtHeader, PacketBuilder, VlanId,
};
use tcptrack::ebpf::Kernel;
use tcptrack::source::kernel::monotonic_now;
use tcptrack_common::{
    cache_slot, counter, event, events_wakeup_every, ConnKey, FlowEvent, FlowValue, FAMILY_IPV4,
    FAMILY_IPV6, PROGRAM_PROBE_COPIED,
};

/// `TC_ACT_UNSPEC` (-1, which tcx calls `TCX_NEXT`) and `XDP_PASS`: every packet goes on, to
/// the next program of the chain too.
const TCX_NEXT: u32 = u32::MAX;
const XDP_PASS: u32 = 2;

const C: [u8; 4] = [198, 18, 0, 1];
const S: [u8; 4] = [198, 18, 0, 2];

fn v4(from_client: bool, flags: &str, seq: u32, ack: u32, payload: usize, vlan: bool) -> Vec<u8> {
    let (src, dst, sp, dp) = if from_client {
        (C, S, 40000, 80)
    } else {
        (S, C, 80, 40000)
    };
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut tcp = if vlan {
        eth.single_vlan(VlanId::try_new(7).expect("vlan"))
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq, 1024)
    } else {
        eth.ipv4(src, dst, 64).tcp(sp, dp, seq, 1024)
    };
    for f in flags.chars() {
        tcp = match f {
            'S' => tcp.syn(),
            'F' => tcp.fin(),
            'R' => tcp.rst(),
            'A' => tcp.ack(ack),
            _ => tcp,
        };
    }
    let mut v = Vec::new();
    tcp.write(&mut v, &vec![0xab; payload])
        .expect("build frame");
    v
}

fn v6_with_extension(payload: usize) -> Vec<u8> {
    let a = "fd00::1".parse::<Ipv6Addr>().expect("addr").octets();
    let b = "fd00::2".parse::<Ipv6Addr>().expect("addr").octets();
    let ip = IpHeaders::Ipv6(
        Ipv6Header {
            source: a,
            destination: b,
            hop_limit: 64,
            ..Ipv6Header::default()
        },
        Ipv6Extensions {
            hop_by_hop_options: Some(
                Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[0u8; 14]).expect("ext"),
            ),
            ..Ipv6Extensions::default()
        },
    );
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ip(ip)
        .tcp(50000, 443, 1, 1024)
        .ack(1)
        .write(&mut v, &vec![1; payload])
        .expect("build frame");
    v
}

fn key4() -> ConnKey {
    let mut addr = [[0u8; 16]; 2];
    addr[0][..4].copy_from_slice(&C);
    addr[1][..4].copy_from_slice(&S);
    ConnKey {
        addr,
        port: [40000, 80],
        family: FAMILY_IPV4,
        _pad: [0; 3],
    }
}

fn run_tc(k: &mut Kernel, frame: &[u8]) {
    let mut out = vec![0u8; frame.len() + 64];
    let r = k
        .tc()
        .expect("tc program")
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e:?}", frame.len()));
    assert_eq!(
        r.return_value, TCX_NEXT,
        "every packet goes on to the rest of the tcx chain"
    );
    assert_eq!(
        &out[..r.data_size_out as usize],
        frame,
        "packets are not changed"
    );
}

/// The CPUs' counts of connection `key` in a drain of epoch 0: its flow map entry's and its
/// cache slots'.
fn counts_of(k: &mut Kernel, key: &ConnKey) -> Vec<FlowValue> {
    let mut out = Vec::new();
    k.drain(0, &mut out).expect("drain");
    out.into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, values)| values)
        .expect("the connection was counted")
}

fn events(rb: &mut aya::maps::RingBuf<aya::maps::MapData>) -> Vec<FlowEvent> {
    let mut v = Vec::new();
    while let Some(item) = rb.next() {
        assert_eq!(item.len(), std::mem::size_of::<FlowEvent>());
        // SAFETY: the kernel wrote a FlowEvent (size checked); read unaligned.
        v.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) });
    }
    v
}

#[test]
fn tc_counts_each_direction_and_reports_control_packets() {
    let mut k = Kernel::load(1024, false, false)
        .expect("the verifier accepts both programs (this test needs root)");
    let mut rb = k.take_events().expect("ring buffer");
    let packets = [
        v4(true, "S", 100, 0, 0, false),
        v4(false, "SA", 500, 101, 0, true), // VLAN tag in the packet data
        v4(true, "A", 101, 501, 0, false),
        v4(true, "A", 101, 501, 1000, false),
        v4(false, "A", 501, 1101, 300, false),
        v4(true, "FA", 1101, 801, 10, false), // FIN with 10 bytes: acknowledged by 1112
        v4(false, "A", 801, 1111, 0, false),  // not the FIN's ACK
        v4(false, "A", 801, 1112, 0, false),  // the FIN's ACK
    ];
    for p in &packets {
        run_tc(&mut k, p);
    }
    let values = counts_of(&mut k, &key4());
    let mut dir = [(0u64, 0u64, 0u64); 2];
    let mut first = u64::MAX;
    let mut acks = Vec::new();
    for v in &values {
        // Where packets with ACK were counted each way (the SYN's place has none).
        if v.flags.iter().all(|f| f & 0x10 != 0) {
            acks.push(v.ack);
        }
        for (sum, d) in dir.iter_mut().zip(&v.dir) {
            sum.0 += d.payload_bytes;
            sum.1 += d.wire_bytes;
            sum.2 += d.packets;
        }
        if v.first_seen != 0 {
            first = first.min(v.first_seen);
        }
    }
    let client_wire: u64 = [&packets[0], &packets[2], &packets[3], &packets[5]]
        .iter()
        .map(|p| p.len() as u64)
        .sum();
    let server_wire: u64 = [&packets[1], &packets[4], &packets[6], &packets[7]]
        .iter()
        .map(|p| p.len() as u64)
        .sum();
    assert_eq!(dir[0], (1010, client_wire, 4), "client to server");
    assert_eq!(dir[1], (300, server_wire, 4), "server to client");
    assert!(first > 0 && first != u64::MAX);
    // The last acknowledgment number each way (the server's acknowledges the client's FIN):
    // userspace matches FINs with it.
    assert_eq!(acks, vec![[801, 1112]]);

    let ev = events(&mut rb);
    let summary: Vec<(u8, u8, u8, u32, u32)> = ev
        .iter()
        .map(|e| (e.kind, e.dir, e.flags, e.seq, e.ack))
        .collect();
    assert_eq!(
        summary,
        vec![
            (event::CONTROL, 0, 0x02, 100, 0),
            (event::CONTROL, 1, 0x12, 500, 101),
            (event::CONTROL, 0, 0x11, 1101, 801),
        ]
    );
    assert_eq!(ev[2].segment_len, 10);
    assert!(ev.iter().all(|e| e.key == key4()));
    let c = k.counters().expect("counters");
    assert_eq!(
        (
            c[counter::PACKETS as usize],
            c[counter::TCP as usize],
            c[counter::MAP_FULL as usize]
        ),
        (8, 8, 0)
    );
}

#[test]
fn ipv6_extension_headers_truncated_and_garbage() {
    let mut k = Kernel::load(1024, false, false).expect("load (root)");
    let v6 = v6_with_extension(700);
    let cut = v4(true, "A", 1, 1, 500, false)[..40].to_vec(); // IPv4 header whole, TCP cut
    let udp = {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(C, S, 64)
            .udp(53, 53)
            .write(&mut v, &[1, 2, 3])
            .expect("udp");
        v
    };
    for f in [&v6, &cut, &udp, &vec![0xff; 64]] {
        run_tc(&mut k, f);
    }
    let c = k.counters().expect("counters");
    assert_eq!(
        (c[counter::PACKETS as usize], c[counter::TCP as usize]),
        (4, 1),
        "only the IPv6 segment counts"
    );
    let mut entries = Vec::new();
    k.drain(0, &mut entries).expect("drain");
    assert_eq!(entries.len(), 1);
    let (key, values) = &entries[0];
    assert_eq!((key.family, key.port), (FAMILY_IPV6, [50000, 443]));
    let payload: u64 = values.iter().map(|v| v.dir[0].payload_bytes).sum();
    assert_eq!(payload, 700, "payload counted past the extension header");
}

#[test]
fn xdp_counts_like_tc() {
    let mut k = Kernel::load(1024, false, true).expect("load (root)");
    let frame = v4(true, "A", 1, 1, 1234, false);
    let mut out = vec![0u8; frame.len() + 64];
    let r = k
        .xdp()
        .expect("xdp program")
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, XDP_PASS);
    let values = counts_of(&mut k, &key4());
    let (payload, wire, packets) = values.iter().fold((0, 0, 0), |a, v| {
        (
            a.0 + v.dir[0].payload_bytes,
            a.1 + v.dir[0].wire_bytes,
            a.2 + v.dir[0].packets,
        )
    });
    assert_eq!((payload, wire, packets), (1234, frame.len() as u64, 1));
}

#[test]
fn ipv4_options_and_qinq_are_parsed() {
    let mut k = Kernel::load(1024, false, false).expect("load (root)");
    // IPv4 with 8 bytes of options (two NOPs and an end, padded), 300 bytes of payload.
    let mut h = etherparse::Ipv4Header::new(0, 64, IpNumber::TCP, C, S).expect("header");
    h.options =
        etherparse::Ipv4Options::try_from(&[1u8, 1, 0, 0, 0, 0, 0, 0][..]).expect("options");
    let mut with_options = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ip(IpHeaders::Ipv4(h, Default::default()))
        .tcp(40000, 80, 1, 1024)
        .ack(1)
        .write(&mut with_options, &[9; 300])
        .expect("frame");
    // QinQ: two tags in the packet data, 200 bytes of payload back.
    let mut qinq = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .double_vlan(
            VlanId::try_new(10).expect("vlan"),
            VlanId::try_new(20).expect("vlan"),
        )
        .ipv4(S, C, 64)
        .tcp(80, 40000, 1, 1024)
        .ack(301)
        .write(&mut qinq, &[8; 200])
        .expect("frame");
    run_tc(&mut k, &with_options);
    run_tc(&mut k, &qinq);
    let values = counts_of(&mut k, &key4());
    let sum = |d: usize| {
        values
            .iter()
            .map(|v| (v.dir[d].payload_bytes, v.dir[d].packets))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    assert_eq!(sum(0), (300, 1), "options are header, not payload");
    assert_eq!(sum(1), (200, 1), "both tags skipped");
}

/// A data segment of connection `i` (distinct client addresses and ports).
fn conn_frame(i: u32) -> Vec<u8> {
    let b = i.to_be_bytes();
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, b[2], b[3]], S, 64)
        .tcp(1024 + u16::from(b[1]), 80, 1, 1024)
        .ack(1)
        .write(&mut v, &[3; 100])
        .expect("build frame");
    v
}

/// Connections in a drain and their packets.
fn drained(k: &mut Kernel, epoch: u32) -> (usize, u64) {
    let mut out = Vec::new();
    k.drain(epoch, &mut out).expect("drain");
    let packets = out
        .iter()
        .flat_map(|(_, per_cpu)| per_cpu.iter())
        .map(|v| v.dir[0].packets + v.dir[1].packets)
        .sum();
    (out.len(), packets)
}

fn stay_on_this_cpu() {
    tcptrack::ebpf::cache::stay_on_this_cpu().expect("stay on this CPU");
}

fn map_full(k: &Kernel) -> u64 {
    k.counters().expect("counters")[counter::MAP_FULL as usize]
}

#[test]
fn the_flow_map_holds_its_capacity_beyond_the_cache_and_says_what_it_could_not_count() {
    const CAPACITY: u32 = 2048;
    stay_on_this_cpu();
    let mut k = Kernel::load(CAPACITY, false, false).expect("load (root)");
    // One packet each of four times as many connections as the map holds (and the cache's
    // 2,048 slots on this CPU): the first not counted comes after at least the map's capacity.
    let sent = 4 * CAPACITY;
    let mut first_lost = None;
    for i in 0..sent {
        run_tc(&mut k, &conn_frame(i));
        if first_lost.is_none() && map_full(&k) > 0 {
            first_lost = Some(i);
        }
    }
    let first_lost = first_lost.expect("a flood beyond the map and the cache is not all counted");
    assert!(
        first_lost > CAPACITY,
        "the first lost was connection {first_lost}"
    );
    // The connections already there go on counting.
    let lost = map_full(&k);
    for i in 0..first_lost {
        run_tc(&mut k, &conn_frame(i));
    }
    assert_eq!(map_full(&k), lost);
    // Every packet counted or said not counted: the map full, and the connections in slots
    // beside it.
    let (connections, packets) = drained(&mut k, 0);
    assert_eq!(packets + lost, u64::from(sent + first_lost));
    assert_eq!(connections as u64 + lost, u64::from(sent));
    assert!(
        connections > CAPACITY as usize,
        "{connections} connections counted"
    );
}

#[test]
fn the_epoch_picks_the_map_and_a_drain_empties_it_with_or_without_batches() {
    for batch in [true, false] {
        let mut k = Kernel::load(1024, false, false).expect("load (root)");
        k.use_batch(batch);
        for i in 0..300 {
            run_tc(&mut k, &conn_frame(i));
        }
        k.set_epoch(1).expect("epoch 1");
        for i in 0..300 {
            run_tc(&mut k, &conn_frame(i % 7));
        }
        assert_eq!(drained(&mut k, 0), (300, 300), "epoch 0, batch {batch}");
        assert_eq!(drained(&mut k, 0), (0, 0), "drained, batch {batch}");
        assert_eq!(drained(&mut k, 1), (7, 300), "epoch 1, batch {batch}");
        assert_eq!(k.uses_batch(), batch, "this kernel has batch operations");
    }
}

#[test]
fn reserved_entries_keep_their_place_in_a_full_map() {
    stay_on_this_cpu();
    for batch in [true, false] {
        let mut k = Kernel::load(64, false, false).expect("load (root)");
        k.use_batch(batch);
        run_tc(&mut k, &conn_frame(1000));
        let mut out = Vec::new();
        k.drain(0, &mut out).expect("drain");
        let busy: Vec<_> = out.iter().map(|(key, _)| *key).collect();
        assert_eq!(busy.len(), 1);
        // The busy connection's entry is made before its next packet; 1,000 new tuples then
        // take the cache's 64 slots on this CPU (all of them: one is left free with a
        // chance of about 1 in 30 billion) and the map's 63 other entries, and the rest are not
        // counted, but the busy one is, in its entry.
        k.reserve(0, &busy);
        assert_eq!(drained(&mut k, 0), (1, 0), "reserved, nothing counted");
        k.reserve(0, &busy);
        for i in 0..1000 {
            run_tc(&mut k, &conn_frame(i));
        }
        run_tc(&mut k, &conn_frame(1000));
        assert_eq!(map_full(&k), 1000 - 64 - 63, "batch {batch}");
        assert_eq!(drained(&mut k, 0), (128, 128), "batch {batch}");
        assert_eq!(k.uses_batch(), batch, "this kernel has batch operations");
    }
}

#[test]
fn busy_connections_keep_their_slots_and_entries_in_the_next_interval() {
    stay_on_this_cpu();
    let mut k = Kernel::load(64, false, false).expect("load (root)");
    // 1,000 connections take the 64 slots on this CPU and the map's 64 entries; the rest are
    // not counted.
    for i in 0..1000 {
        run_tc(&mut k, &conn_frame(i));
    }
    assert_eq!(map_full(&k), 1000 - 128);
    assert_eq!(drained(&mut k, 0), (128, 128));
    // Their places kept in the next interval, a flood of 2,000 new tuples finds none free;
    // the 128 busy ones are all counted.
    k.keep_places(1);
    k.set_epoch(1).expect("epoch 1");
    let before = map_full(&k);
    for i in 1000..3000 {
        run_tc(&mut k, &conn_frame(i));
    }
    assert_eq!(map_full(&k) - before, 2000, "the flood finds no place");
    let mut busy = Vec::new();
    k.drain(0, &mut busy).expect("drain");
    assert!(busy.is_empty());
    for i in 0..1000 {
        run_tc(&mut k, &conn_frame(i));
    }
    assert_eq!(map_full(&k) - before, 2000 + 1000 - 128);
    assert_eq!(
        drained(&mut k, 1),
        (128, 128),
        "the busy ones, each counted"
    );
}

/// A segment of connection `i` (as [`conn_frame`]'s) with `flags`, from the client or the
/// server.
fn segment(i: u32, from_client: bool, flags: &str) -> Vec<u8> {
    let b = i.to_be_bytes();
    let (client, port) = ([198, 18, b[2], b[3]], 1024 + u16::from(b[1]));
    let ip = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut tcp = if from_client {
        ip.ipv4(client, S, 64).tcp(port, 80, 1, 1024)
    } else {
        ip.ipv4(S, client, 64).tcp(80, port, 1, 1024)
    }
    .ack(1);
    for flag in flags.chars() {
        tcp = match flag {
            'F' => tcp.fin(),
            'R' => tcp.rst(),
            _ => panic!("flag {flag}"),
        };
    }
    let mut v = Vec::new();
    tcp.write(&mut v, &[]).expect("build frame");
    v
}

#[test]
fn connections_that_ended_keep_no_place_in_the_next_interval() {
    stay_on_this_cpu();
    // 100 connections in 64 slots and the map; 50 reset (by either end), 10 closed both ways,
    // 10 half-closed, 30 open.
    let mut k = Kernel::load(64, false, false).expect("load (root)");
    for i in 0..100 {
        run_tc(&mut k, &conn_frame(i));
    }
    for i in 0..50 {
        run_tc(&mut k, &segment(i, i % 2 == 0, "R"));
    }
    for i in 50..60 {
        run_tc(&mut k, &segment(i, true, "F"));
        run_tc(&mut k, &segment(i, false, "F"));
    }
    for i in 60..70 {
        run_tc(&mut k, &segment(i, false, "F"));
    }
    assert_eq!(map_full(&k), 0);
    let in_map = {
        let mut out = Vec::new();
        k.drain(0, &mut out).expect("drain");
        assert_eq!(out.len(), 100);
        k.counted_in_map().len()
    };
    assert!(in_map > 0, "some counted in the map");
    // Kept: the 40 half-closed or open ones, in their slots or map entries, nothing counted.
    k.keep_places(1);
    let mut kept = Vec::new();
    k.drain(1, &mut kept).expect("drain");
    let mut kept: Vec<u32> = kept
        .iter()
        .map(|(key, values)| {
            assert!(values.iter().all(|v| v.dir.iter().all(|d| d.packets == 0)));
            // The client's end: 198.18.0.i, port 1024 (the server's is port 80).
            let client = usize::from(key.port[0] == 80);
            u32::from(key.addr[client][3])
        })
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, (60..100).collect::<Vec<_>>());
}

#[test]
fn a_connection_takes_the_neighbour_of_a_held_slot_and_the_map_only_when_both_are_held() {
    stay_on_this_cpu();
    // 64 slots a region on this CPU.
    let mut k = Kernel::load(64, false, false).expect("load (root)");
    // Each tuple's key, from a drain of its packet alone; grouped by the pair of slots its key
    // picks.
    let mut by_pair: std::collections::BTreeMap<u32, Vec<(u32, ConnKey)>> = Default::default();
    for i in 0..200 {
        run_tc(&mut k, &conn_frame(i));
        let mut out = Vec::new();
        k.drain(0, &mut out).expect("drain");
        let [(key, _)] = out.as_slice() else {
            panic!("one connection a drain: {out:?}");
        };
        by_pair
            .entry(cache_slot(&key.words(), 64) >> 1)
            .or_default()
            .push((i, *key));
    }
    // Two tuples that pick the same slot, and a third that picks either of that pair.
    let three = by_pair
        .values()
        .find_map(|v| {
            let slot = |key: &ConnKey| cache_slot(&key.words(), 64);
            let (a, b) = v.iter().enumerate().find_map(|(n, a)| {
                v[n + 1..]
                    .iter()
                    .find(|b| slot(&b.1) == slot(&a.1))
                    .map(|b| (a, b))
            })?;
            let c = v.iter().find(|c| c.0 != a.0 && c.0 != b.0)?;
            Some([*a, *b, *c])
        })
        .expect("200 tuples over 64 slots: two in one, a third in its pair");
    // The first takes the slot both pick, the second its neighbour; the third finds both held
    // and is counted in the map.
    for (i, _) in three {
        run_tc(&mut k, &conn_frame(i));
        run_tc(&mut k, &conn_frame(i));
    }
    assert_eq!(drained(&mut k, 0), (3, 6));
    assert_eq!(k.counted_in_map(), &[three[2].1]);
}

/// Whether thread `tid` of this process is asleep in poll(2) (its state and where it waits).
fn asleep_in_poll(tid: i32) -> bool {
    let task = format!("/proc/self/task/{tid}");
    let stat = std::fs::read_to_string(format!("{task}/stat")).unwrap_or_default();
    let wchan = std::fs::read_to_string(format!("{task}/wchan")).unwrap_or_default();
    // The state follows the command's closing parenthesis.
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('S'))
        && wchan.contains("poll")
}

#[test]
fn a_reader_asleep_on_the_ring_is_woken_when_this_cpu_has_sent_its_share_of_an_eighth() {
    stay_on_this_cpu();
    let mut k = Kernel::load(1024, false, false).expect("load the programs (root)");
    let mut rb = k.take_events().expect("ring buffer");
    let cpus = u32::try_from(aya::util::nr_cpus().expect("possible CPUs")).expect("CPUs");
    let every = events_wakeup_every(cpus);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&rb);
    let (tx, woke) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        // SAFETY: a system call without arguments.
        tx.send(unsafe { libc::gettid() }).expect("send");
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, ours.
        let n = unsafe { libc::poll(&raw mut p, 1, 60_000) };
        tx.send(n).expect("send");
    });
    let tid = woke.recv().expect("the waiter's thread id");
    // Asleep before the first event: poll(2) returns at once while the ring holds any.
    for _ in 0..10_000 {
        if asleep_in_poll(tid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(asleep_in_poll(tid), "the waiter never slept in poll(2)");
    let syn = v4(true, "S", 100, 0, 0, false);
    let mut sent = |n: u32| {
        k.tc()
            .expect("tc program")
            .test_run(TestRunOptions {
                data_in: Some(&syn),
                repeat: n,
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN");
    };
    sent(every - 1);
    // Nothing wakes it before: no wakeup is due, however long one waits.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        woke.try_recv().is_err(),
        "woken by fewer than {every} events of one CPU"
    );
    sent(1);
    assert_eq!(
        woke.recv_timeout(Duration::from_secs(30)),
        Ok(1),
        "the {every}th event of this CPU wakes the reader"
    );
    waiter.join().expect("the waiter");
    let got = events(&mut rb);
    assert_eq!(got.len(), every as usize);
    let c = k.counters().expect("counters");
    assert_eq!(
        (
            c[counter::EVENTS as usize],
            c[counter::EVENTS_LOST as usize]
        ),
        (u64::from(every), 0)
    );
}

#[test]
fn a_packet_s_tick_count_reads_as_the_monotonic_time_it_was_counted_at() {
    let mut k = Kernel::load(1024, false, false).expect("load (root)");
    let tick = tcptrack::ebpf::clocks::tick().expect("the tick's length");
    for _ in 0..5 {
        let before = monotonic_now();
        run_tc(&mut k, &conn_frame(1));
        let after = monotonic_now();
        std::thread::sleep(Duration::from_millis(30));
        let ticks = k.ticks().expect("the kernel's clocks");
        let mut out = Vec::new();
        k.drain(0, &mut out).expect("drain");
        let [(_, per_cpu)] = out.as_slice() else {
            panic!("one connection: {out:?}");
        };
        let seen = per_cpu.iter().map(|v| v.last_seen).max().unwrap_or(0);
        let at = Duration::from_nanos(ticks.ns(seen));
        // The tick the packet was counted in began at most a tick before it (and 2 ms more
        // where the timer interrupt that moves the count came late), and never after it.
        assert!(
            at + tick + Duration::from_millis(2) > before && at <= after,
            "counted between {before:?} and {after:?}, read as {at:?} (tick {tick:?})"
        );
    }
}

/// A connection's counts, its CPUs' summed: payload, wire bytes and packets each way, and the
/// flags each way (the clocks left out: they differ between two runs).
type Summed = (ConnKey, [(u64, u64, u64); 2], [u8; 2]);

/// Every connection of a drain, in key order.
fn summed(k: &mut Kernel) -> Vec<Summed> {
    let mut out = Vec::new();
    k.drain(0, &mut out).expect("drain");
    let mut v: Vec<_> = out
        .iter()
        .map(|(key, per_cpu)| {
            let mut dir = [(0, 0, 0); 2];
            let mut flags = [0u8; 2];
            for value in per_cpu {
                for d in 0..2 {
                    dir[d].0 += value.dir[d].payload_bytes;
                    dir[d].1 += value.dir[d].wire_bytes;
                    dir[d].2 += value.dir[d].packets;
                    flags[d] |= value.flags[d];
                }
            }
            (*key, dir, flags)
        })
        .collect();
    v.sort_by_key(|(key, ..)| (key.addr, key.port, key.family));
    v
}

#[test]
fn headers_read_in_place_and_by_the_helper_count_alike() {
    // Headers beyond a packet's linear data are read with bpf_skb_load_bytes; a test run's
    // packet is linear, so a program that reads every header that way stands for that path.
    let mut frames = vec![
        v4(true, "S", 100, 0, 0, false),
        v4(false, "SA", 500, 101, 0, true),
        v4(true, "A", 101, 501, 1000, false),
        v4(true, "FA", 1101, 801, 10, false),
        v4(false, "R", 801, 0, 0, true),
        v6_with_extension(700),
        v4(true, "A", 1, 1, 500, false)[..40].to_vec(),
        vec![0xff; 64],
    ];
    frames.extend((0..50).map(conn_frame));
    let mut direct = Kernel::load(1024, false, false).expect("load (root)");
    let mut copied = Kernel::load(1024, false, false).expect("load (root)");
    let mut direct_events = direct.take_events().expect("ring buffer");
    let mut copied_events = copied.take_events().expect("ring buffer");
    for f in &frames {
        run_tc(&mut direct, f);
        let r = copied
            .classifier(PROGRAM_PROBE_COPIED)
            .expect("the helper's twin")
            .test_run(TestRunOptions {
                data_in: Some(f),
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(r.return_value, TCX_NEXT);
    }
    let counters = |k: &Kernel| k.counters().expect("counters");
    assert_eq!(counters(&direct), counters(&copied));
    assert_eq!(counters(&direct)[counter::TCP as usize], 56);
    let (a, b) = (summed(&mut direct), summed(&mut copied));
    assert_eq!(a.len(), 52, "two connections and the 50 of conn_frame");
    assert_eq!(a, b);
    let control = |rb: &mut aya::maps::RingBuf<aya::maps::MapData>| {
        events(rb)
            .iter()
            .map(|e| (e.key, e.dir, e.flags, e.seq, e.ack, e.segment_len))
            .collect::<Vec<_>>()
    };
    let ev = control(&mut direct_events);
    assert_eq!(ev.len(), 4, "SYN, SYN/ACK, FIN, RST");
    assert_eq!(ev, control(&mut copied_events));
}
