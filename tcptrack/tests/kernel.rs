//! The embedded kernel program loads (the verifier accepts it) and, run on crafted packets with
//! BPF_PROG_TEST_RUN, passes every packet unchanged and counts what it should. Needs root, as CI
//! has: without it this test fails, it does not skip.

use aya::maps::PerCpuArray;
use aya::programs::SchedClassifier;
use aya::{TestRun, TestRunOptions};
use etherparse::PacketBuilder;
use tcptrack_common::{counter, MAP_PACKETS_SEEN, PROGRAM_TC};

/// TC_ACT_PIPE: the program hands every packet on.
const TC_ACT_PIPE: u32 = 3;

fn tcp_v4() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .tcp(40000, 80, 1, 1024)
        .syn()
        .write(&mut v, &[])
        .expect("build frame");
    v
}

fn tcp_v6() -> Vec<u8> {
    let a = "fd00::1"
        .parse::<std::net::Ipv6Addr>()
        .expect("addr")
        .octets();
    let b = "fd00::2"
        .parse::<std::net::Ipv6Addr>()
        .expect("addr")
        .octets();
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(a, b, 64)
        .tcp(40000, 80, 1, 1024)
        .ack(1)
        .write(&mut v, &[0u8; 100])
        .expect("build frame");
    v
}

fn udp_v4() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(53, 53)
        .write(&mut v, &[1, 2, 3])
        .expect("build frame");
    v
}

fn counters(ebpf: &aya::Ebpf) -> [u64; 2] {
    let map = ebpf.map(MAP_PACKETS_SEEN).expect("counter map present");
    let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map).expect("per-CPU array");
    [counter::PACKETS, counter::TCP].map(|i| arr.get(&i, 0).expect("read counter").iter().sum())
}

#[test]
fn kernel_program_passes_the_verifier_and_every_packet() {
    let mut ebpf = tcptrack::ebpf::load_and_verify()
        .expect("the verifier accepts the embedded program (this test needs root)");
    let prog: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM_TC)
        .expect("program present")
        .try_into()
        .expect("a TC program");
    let frames = [
        tcp_v4(),
        tcp_v6(),
        udp_v4(),
        tcp_v4()[..34].to_vec(),
        vec![0xff; 64],
    ];
    for frame in &frames {
        let mut out = vec![0u8; frame.len() + 64];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e:?}", frame.len()));
        assert_eq!(r.return_value, TC_ACT_PIPE, "every packet passes");
        assert_eq!(
            &out[..r.data_size_out as usize],
            frame.as_slice(),
            "packets are not changed"
        );
    }
    // Five packets seen; TCP by the IP protocol field: the IPv4 SYN, the IPv6 segment and the
    // IPv4 frame cut before its TCP header. UDP and garbage count as packets only. (The kernel's
    // test harness refuses frames cut inside the IP header, so none is sent.)
    assert_eq!(counters(&ebpf), [5, 3]);
}
