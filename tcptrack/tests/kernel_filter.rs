//! The kernel filter decides as libpcap does: every expression below is compiled by libpcap,
//! translated and run in the kernel (TC and XDP, BPF_PROG_TEST_RUN) on frames of every shape
//! the decoder knows, and run by libpcap's own interpreter on the same frames; any
//! disagreement fails. In TC, each untagged frame runs once more with VLAN tag 7 taken out of
//! it into `skb->vlan_tci` (as NICs and the kernel's untagging leave it before TC), against
//! libpcap on the frame with the tag in it (as libpcap captures it). Needs root, as CI has.

use aya::{TestRun as _, TestRunOptions};
use etherparse::{IpHeaders, IpNumber, Ipv6Extensions, Ipv6Header, Ipv6RawExtHeader};
use etherparse::{PacketBuilder, VlanId};
use tcptrack::ebpf::Kernel;
use tcptrack_common::{counter, proto::ether, PROGRAM_PROBE_VLAN};

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const BROADCAST: [u8; 6] = [0xff; 6];

/// What a TCP segment looks like beyond its ends.
#[derive(Clone, Copy)]
struct Shape {
    flags: &'static str,
    payload: usize,
    vlan: Option<u16>,
    macs: ([u8; 6], [u8; 6]),
}

const PLAIN: Shape = Shape {
    flags: "A",
    payload: 20,
    vlan: None,
    macs: (MAC_A, MAC_B),
};

fn ip_of(a: &str) -> std::net::IpAddr {
    a.parse().expect("address")
}

/// A TCP segment between two endpoints, as `shape` says.
fn segment(src: (&str, u16), dst: (&str, u16), shape: Shape) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(shape.macs.0, shape.macs.1);
    let ip = match (ip_of(src.0), ip_of(dst.0)) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => IpHeaders::Ipv4(
            etherparse::Ipv4Header::new(0, 64, IpNumber::TCP, a.octets(), b.octets())
                .expect("header"),
            Default::default(),
        ),
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => IpHeaders::Ipv6(
            Ipv6Header {
                source: a.octets(),
                destination: b.octets(),
                hop_limit: 64,
                ..Ipv6Header::default()
            },
            Ipv6Extensions::default(),
        ),
        _ => panic!("one family per segment"),
    };
    let ip_step = match shape.vlan {
        Some(id) => eth.single_vlan(VlanId::try_new(id).expect("vlan")).ip(ip),
        None => eth.ip(ip),
    };
    let mut tcp = ip_step.tcp(src.1, dst.1, 1000, 1024);
    for f in shape.flags.chars() {
        tcp = match f {
            'S' => tcp.syn(),
            'F' => tcp.fin(),
            'R' => tcp.rst(),
            'P' => tcp.psh(),
            'A' => tcp.ack(1),
            _ => tcp,
        };
    }
    let mut v = Vec::new();
    tcp.write(&mut v, &vec![0xab; shape.payload])
        .expect("build frame");
    v
}

/// Frames of every shape: segments both ways between addresses of each family on several port
/// pairs; every flag; small and large payloads; VLAN tags (one, two); IPv4 options; an IPv6
/// extension header; other MAC addresses; UDP, ICMP, ARP; an IPv4 fragment; frames cut short.
#[expect(clippy::too_many_lines, reason = "a list of frames")]
fn frames() -> Vec<Vec<u8>> {
    let v4 = ["198.18.0.1", "198.18.0.2", "198.19.5.5"];
    let v6 = ["fd00::1", "fd00::2", "fd00:1::9"];
    let ports = [22u16, 80, 443, 1024, 5000, 40000];
    let mut frames = Vec::new();
    for addrs in [&v4[..], &v6[..]] {
        for (i, a) in addrs.iter().enumerate() {
            for b in &addrs[i + 1..] {
                for (j, pa) in ports.iter().enumerate() {
                    let pb = ports[(j + 2) % ports.len()];
                    frames.push(segment((a, *pa), (b, pb), PLAIN));
                    frames.push(segment((b, pb), (a, *pa), PLAIN));
                }
            }
        }
    }
    for (a, b) in [("198.18.0.1", "198.18.0.2"), ("fd00::1", "fd00::2")] {
        for flags in ["S", "SA", "FA", "R", "RA", "PA"] {
            for payload in [0, 100, 600, 1400] {
                let shape = Shape {
                    flags,
                    payload,
                    ..PLAIN
                };
                frames.push(segment((a, 40000), (b, 80), shape));
            }
        }
        for vlan in [7, 100] {
            let shape = Shape {
                vlan: Some(vlan),
                ..PLAIN
            };
            frames.push(segment((a, 40000), (b, 80), shape));
            frames.push(segment((b, 443), (a, 5000), shape));
        }
        for macs in [(MAC_B, MAC_A), (MAC_B, BROADCAST)] {
            let shape = Shape { macs, ..PLAIN };
            frames.push(segment((a, 22), (b, 1024), shape));
        }
    }
    // Two VLAN tags.
    let mut qinq = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .double_vlan(
            VlanId::try_new(10).expect("vlan"),
            VlanId::try_new(20).expect("vlan"),
        )
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .tcp(40000, 80, 1, 1024)
        .ack(1)
        .write(&mut qinq, &[1; 200])
        .expect("frame");
    frames.push(qinq);
    // IPv4 with 8 bytes of options.
    let mut h = etherparse::Ipv4Header::new(0, 64, IpNumber::TCP, [198, 18, 0, 2], [198, 18, 0, 1])
        .expect("header");
    h.options =
        etherparse::Ipv4Options::try_from(&[1u8, 1, 0, 0, 0, 0, 0, 0][..]).expect("options");
    let mut with_options = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ip(IpHeaders::Ipv4(h, Default::default()))
        .tcp(80, 40000, 1, 1024)
        .ack(1)
        .write(&mut with_options, &[9; 300])
        .expect("frame");
    frames.push(with_options);
    // IPv6 with a hop-by-hop header before TCP.
    let ip = IpHeaders::Ipv6(
        Ipv6Header {
            source: ip_octets6("fd00::1"),
            destination: ip_octets6("fd00::2"),
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
    let mut v6_ext = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ip(ip)
        .tcp(50000, 443, 1, 1024)
        .syn()
        .write(&mut v6_ext, &[1; 700])
        .expect("frame");
    frames.push(v6_ext);
    // Not TCP: UDP, ICMP, ARP.
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(40000, 80)
        .write(&mut udp, &[3; 50])
        .expect("frame");
    frames.push(udp);
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, &[4; 56])
        .expect("frame");
    frames.push(icmp);
    let mut arp = Vec::new();
    arp.extend_from_slice(&BROADCAST);
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2]);
    arp.resize(60, 0);
    frames.push(arp);
    // A fragment of a TCP packet (offset 185 x 8 bytes): no TCP header in it.
    let mut frag = segment(("198.18.0.1", 40000), ("198.18.0.2", 80), PLAIN);
    frag[20] = 0x00;
    frag[21] = 185;
    frames.push(frag);
    // Cut short: inside the TCP header, and just after the IP header.
    let whole = segment(("198.18.0.2", 80), ("198.18.0.1", 40000), PLAIN);
    frames.push(whole[..14 + 20 + 10].to_vec());
    frames.push(whole[..14 + 20].to_vec());
    frames
}

fn ip_octets6(a: &str) -> [u8; 16] {
    a.parse::<std::net::Ipv6Addr>().expect("address").octets()
}

/// Every primitive of pcap-filter(7) that can select TCP packets on Ethernet, alone and
/// combined.
const EXPRESSIONS: &[&str] = &[
    "port 80",
    "src port 80",
    "dst port 443",
    "tcp port 22",
    "tcp src port 1024",
    "portrange 1000-5000",
    "src portrange 1-1024",
    "dst portrange 40000-50000",
    "tcp portrange 440-450",
    "host 198.18.0.1",
    "src host 198.18.0.2",
    "dst host fd00::2",
    "host fd00:1::9",
    "ip host 198.19.5.5",
    "ip6 src host fd00::1",
    "net 198.18.0.0/24",
    "dst net 198.19.0.0/16",
    "src net 198.18.0.0/15",
    "net fd00::/64",
    "src net fd00:1::/32",
    "net 198.18.0.0 mask 255.255.255.0",
    "ip",
    "ip6",
    "tcp",
    "udp",
    "icmp",
    "arp",
    "ip proto 6",
    "ip6 proto 6",
    "ip and tcp",
    "ip6 and tcp",
    "greater 500",
    "less 100",
    "len > 1000",
    "len <= 80",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[tcpflags] & tcp-fin != 0",
    "tcp[tcpflags] & tcp-rst != 0",
    "tcp[tcpflags] & tcp-push != 0",
    "tcp[13] = 0x10",
    "ip[2:2] > 600",
    "ip[8] = 64",
    "ip[0] & 0xf > 5",
    "ip[6:2] & 0x1fff != 0",
    "tcp[0:2] = 80",
    "tcp[2:2] > 1023",
    "ip6[6] = 0",
    "ip6[4:2] > 100",
    "tcp[((tcp[12] & 0xf0) >> 2):1] = 0xab",
    "ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) > 0",
    "tcp[0:2] % 7 = 3",
    "tcp[2:2] / 100 = 4",
    "(tcp[13] << tcp[12]) = 0",
    "(tcp[13] << (tcp[12] - 60)) != 0",
    "(tcp[0:2] >> (tcp[13] & 0x1f)) > 1",
    "tcp[4:4] * 3 + 7 > 3000",
    "-tcp[0:2] & 0xff = 0xb0",
    "tcp[0:2] ^ tcp[2:2] > 1000",
    "vlan",
    "vlan 7",
    "vlan 100 and tcp",
    "vlan and vlan",
    "vlan and port 80",
    "not vlan",
    "ether host 02:00:00:00:00:01",
    "ether src 02:00:00:00:00:02",
    "ether dst ff:ff:ff:ff:ff:ff",
    "ether broadcast",
    "ether proto 0x0800",
    "ether[0] & 1 = 0",
    "not port 22",
    "! tcp",
    "port 80 or 443",
    "port 80 and host 198.18.0.1",
    "(port 80 or port 22) and not src host 198.18.0.2",
    "ip6 and dst port 443",
    "src net 198.18.0.0/16 and dst portrange 40000-50000 or host fd00:1::9",
    "not (ip and (src port 5000 or dst port 5000))",
    "tcp and (port 80 or port 443) and greater 100 and not host 198.19.5.5 and src net 198.18.0.0/15",
    "tcp[tcpflags] & tcp-syn != 0 or port 5000",
    "ip[2:2] > 600 and tcp[tcpflags] & tcp-push != 0",
];

/// Where a frame goes through the filter.
#[derive(Clone, Copy, Debug)]
enum Through {
    Tc,
    Xdp,
    /// TC, with VLAN tag 7 put in `skb->vlan_tci` first.
    TcTagged,
}

/// `frame` with VLAN tag 7 in it, after the MAC addresses.
fn tagged(frame: &[u8]) -> Vec<u8> {
    let mut v = frame[..12].to_vec();
    v.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    v.extend_from_slice(&frame[12..]);
    v
}

/// What the kernel did with a frame: (selected and counted, left out by the filter).
fn decide(k: &mut Kernel, through: Through, frame: &[u8]) -> (bool, bool) {
    let before = k.counters().expect("counters");
    let mut out = vec![0u8; frame.len() + 64];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    let r = match through {
        Through::Xdp => k.xdp().expect("xdp program").test_run(options),
        Through::Tc => k.tc().expect("tc program").test_run(options),
        Through::TcTagged => k
            .classifier(PROGRAM_PROBE_VLAN)
            .expect("the tagging program")
            .test_run(options),
    }
    .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e:?}", frame.len()));
    let pass = if matches!(through, Through::Xdp) {
        2
    } else {
        u32::MAX
    };
    assert_eq!(r.return_value, pass, "every packet passes");
    let after = k.counters().expect("counters");
    let moved = |slot: u32| after[slot as usize] - before[slot as usize];
    (
        moved(counter::PACKETS) == 1,
        moved(counter::FILTERED_OUT) == 1,
    )
}

#[test]
fn the_kernel_filter_decides_every_expression_like_libpcap() {
    let frames = frames();
    let mut k = Kernel::load(4096, true, true).expect("load (root)");
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).expect("dead capture");
    let mut differences = Vec::new();
    let mut unexercised = Vec::new();
    assert!(EXPRESSIONS.len() >= 60);
    for expr in EXPRESSIONS {
        let program = tcptrack::filter::compile(expr, pcap::Linktype::ETHERNET)
            .unwrap_or_else(|e| panic!("`{expr}`: {e}"));
        k.set_filter(&program)
            .unwrap_or_else(|e| panic!("`{expr}`: {e}\n{}", e.verifier_log().unwrap_or_default()));
        let libpcap = dead.compile(expr, true).expect("libpcap compiles it");
        let mut seen = (false, false);
        for f in &frames {
            let untagged = !ether::is_vlan(u16::from_be_bytes([f[12], f[13]]));
            let mut runs = vec![
                (Through::Tc, libpcap.filter(f)),
                (Through::Xdp, libpcap.filter(f)),
            ];
            if untagged {
                runs.push((Through::TcTagged, libpcap.filter(&tagged(f))));
            }
            for (through, wanted) in runs {
                if wanted {
                    seen.0 = true;
                } else {
                    seen.1 = true;
                }
                let (counted, left_out) = decide(&mut k, through, f);
                if counted == left_out || counted != wanted {
                    differences.push(format!(
                        "`{expr}` ({through:?}) on a {}-byte frame: libpcap {wanted}, kernel \
                         counted {counted}, left out {left_out}",
                        f.len(),
                    ));
                }
            }
        }
        if seen != (true, true) {
            unexercised.push(*expr);
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // A real test of each: every expression both selects and leaves out some frame here.
    assert!(
        unexercised.is_empty(),
        "not exercised by the frames: {unexercised:?}"
    );
}

#[test]
fn without_a_filter_slot_nothing_is_counted_and_everything_passes() {
    // Loaded for a filter but given none: the tail call finds no program and the packet goes
    // on, uncounted (never counted unfiltered).
    let mut k = Kernel::load(1024, true, false).expect("load (root)");
    let f = segment(("198.18.0.1", 40000), ("198.18.0.2", 80), PLAIN);
    assert_eq!(decide(&mut k, Through::Tc, &f), (false, false));
}

#[test]
fn a_filter_replaces_the_one_before() {
    let mut k = Kernel::load(1024, true, false).expect("load (root)");
    let f = segment(("198.18.0.1", 40000), ("198.18.0.2", 80), PLAIN);
    let compile = |e| tcptrack::filter::compile(e, pcap::Linktype::ETHERNET).expect("compiles");
    k.set_filter(&compile("port 80")).expect("set");
    assert_eq!(decide(&mut k, Through::Tc, &f), (true, false));
    k.set_filter(&compile("port 81")).expect("set");
    assert_eq!(decide(&mut k, Through::Tc, &f), (false, true));
}

#[test]
fn the_kernels_ancillary_loads_read_the_packets_own_fields() {
    use tcptrack::ebpf::cbpf::Cbpf;
    // ld [SKF_AD_OFF + what]; jeq #value; ret #1; ret #0
    let equals = |what: u32, value: u32| {
        [
            Cbpf::new(0x20, 0, 0, 0xffff_f000 + what),
            Cbpf::new(0x15, 0, 1, value),
            Cbpf::new(0x06, 0, 0, 1),
            Cbpf::new(0x06, 0, 0, 0),
        ]
    };
    const PROTOCOL: u32 = 0;
    const VLAN_TCI: u32 = 44;
    const VLAN_PRESENT: u32 = 48;
    const VLAN_TPID: u32 = 60;
    let v4 = segment(("198.18.0.1", 40000), ("198.18.0.2", 80), PLAIN);
    let v6 = segment(("fd00::1", 40000), ("fd00::2", 80), PLAIN);
    let mut k = Kernel::load(1024, true, false).expect("load (root)");
    let cases = [
        (equals(PROTOCOL, 0x86dd), Through::Tc, &v6, true),
        (equals(PROTOCOL, 0x86dd), Through::Tc, &v4, false),
        (equals(VLAN_PRESENT, 1), Through::TcTagged, &v4, true),
        (equals(VLAN_PRESENT, 1), Through::Tc, &v4, false),
        (equals(VLAN_TCI, 7), Through::TcTagged, &v6, true),
        (equals(VLAN_TCI, 8), Through::TcTagged, &v6, false),
        (equals(VLAN_TPID, 0x8100), Through::TcTagged, &v4, true),
    ];
    for (program, through, frame, selected) in cases {
        k.set_filter(&program).expect("set");
        assert_eq!(
            decide(&mut k, through, frame),
            (selected, !selected),
            "{program:?} {through:?}"
        );
    }
}

/// `struct __sk_buff` as BPF_PROG_TEST_RUN takes it, with `gso_segs` and `gso_size` set (the
/// rest zero, as the kernel requires).
fn gso_context(segments: u32, size: u32) -> Vec<u8> {
    // Offsets of gso_segs and gso_size in struct __sk_buff (192 bytes).
    let mut ctx = vec![0u8; 192];
    ctx[164..168].copy_from_slice(&segments.to_ne_bytes());
    ctx[176..180].copy_from_slice(&size.to_ne_bytes());
    ctx
}

#[test]
fn a_gso_super_packet_is_decided_once_and_counted_as_its_segments() {
    // 3,000 bytes of payload in one super-packet of 4 segments: libpcap on the same interface
    // sees one 3,054-byte packet, and so does the filter (`greater 2000` selects it, `less 1000`
    // does not, though each segment is shorter); what it selects counts as 4 packets.
    let shape = Shape {
        payload: 3000,
        ..PLAIN
    };
    let frame = segment(("198.18.0.1", 40000), ("198.18.0.2", 80), shape);
    let ctx = gso_context(4, 750);
    let compile = |e| tcptrack::filter::compile(e, pcap::Linktype::ETHERNET).expect("compiles");
    for (expr, selected) in [("greater 2000", true), ("less 1000", false)] {
        let mut k = Kernel::load(1024, true, false).expect("load (root)");
        k.set_filter(&compile(expr)).expect("set");
        let mut out = vec![0u8; frame.len() + 64];
        let r = k
            .tc()
            .expect("tc program")
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(r.return_value, u32::MAX);
        let c = k.counters().expect("counters");
        assert_eq!(
            (
                c[counter::PACKETS as usize],
                c[counter::FILTERED_OUT as usize]
            ),
            (u64::from(selected), u64::from(!selected)),
            "`{expr}`: decided once"
        );
        let mut drained = Vec::new();
        k.drain(0, &mut drained).expect("drain");
        let packets: u64 = drained
            .iter()
            .flat_map(|(_, values)| values)
            .map(|v| v.dir[0].packets)
            .sum();
        assert_eq!(packets, if selected { 4 } else { 0 }, "`{expr}`");
    }
}
