//! The two packet parsers agree: the same frames through userspace's `decode()` (every link
//! type tcptrack reads) and through the kernel's TC program (`BPF_PROG_TEST_RUN` on the
//! Ethernet form of each, read back through the poller) give the same connection, direction,
//! payload, packets and (Ethernet) wire bytes, or are both left out. Needs root (CI has it).
//!
//! One difference is by design and not tested here: a frame cut short by a capture's snapshot
//! length (TCP options missing) still counts in `decode()`; the kernel never sees such frames.

use std::time::Duration;

use aya::{TestRun, TestRunOptions};
use etherparse::{
    IpAuthHeader, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv4Options, Ipv6Extensions,
    Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder,
};
use tcptrack::decode::{decode, LinkType};
use tcptrack::ebpf::Kernel;
use tcptrack::flow::{FlowUpdate, TcpFlags};
use tcptrack::source::kernel::{Interfaces, Poller};
use tcptrack_tests::link::Link;

const A4: [u8; 4] = [198, 18, 0, 1];
const B4: [u8; 4] = [198, 18, 0, 2];

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = last;
    a
}

/// An IP packet carrying TCP from port `sport` to 80 (or 80 to `sport` when `back`), with
/// `payload` bytes, built on `ip`.
fn tcp_on(ip: IpHeaders, sport: u16, back: bool, flags: &str, payload: usize) -> Vec<u8> {
    let (sp, dp) = if back { (80, sport) } else { (sport, 80) };
    let mut t = PacketBuilder::ip(ip).tcp(sp, dp, 1000, 4096);
    for f in flags.chars() {
        t = match f {
            'S' => t.syn(),
            'F' => t.fin(),
            'R' => t.rst(),
            'P' => t.psh(),
            'A' => t.ack(77),
            _ => t,
        };
    }
    let mut v = Vec::new();
    t.write(&mut v, &vec![0x5a; payload]).expect("build packet");
    v
}

fn v4_header(src: [u8; 4], dst: [u8; 4], protocol: IpNumber) -> Ipv4Header {
    Ipv4Header::new(0, 64, protocol, src, dst).expect("IPv4 header")
}

fn v4(ext: Ipv4Extensions, options: &[u8]) -> IpHeaders {
    let protocol = if ext.auth.is_some() {
        IpNumber::AUTHENTICATION_HEADER
    } else {
        IpNumber::TCP
    };
    let mut h = v4_header(A4, B4, protocol);
    h.options = Ipv4Options::try_from(options).expect("options");
    IpHeaders::Ipv4(h, ext)
}

fn v6_on(ext: Ipv6Extensions) -> IpHeaders {
    IpHeaders::Ipv6(
        Ipv6Header {
            source: v6(1),
            destination: v6(2),
            hop_limit: 64,
            ..Ipv6Header::default()
        },
        ext,
    )
}

fn raw_ext(next: IpNumber) -> Ipv6RawExtHeader {
    Ipv6RawExtHeader::new_raw(next, &[0u8; 6]).expect("extension header")
}

fn auth(next: IpNumber) -> IpAuthHeader {
    IpAuthHeader::new(next, 0x1234, 1, &[0u8; 8]).expect("auth header")
}

/// Sets bytes of an IP packet: `(offset, value)`.
fn patched(mut ip: Vec<u8>, bytes: &[(usize, u8)]) -> Vec<u8> {
    for &(at, v) in bytes {
        ip[at] = v;
    }
    ip
}

/// IPv6 extension header sets: hop-by-hop; hop-by-hop, destination options and routing; a
/// fragment header; an authentication header.
fn v6_extensions() -> [Ipv6Extensions; 4] {
    let hbh = Ipv6Extensions {
        hop_by_hop_options: Some(raw_ext(IpNumber::TCP)),
        ..Ipv6Extensions::default()
    };
    let mut chain = Ipv6Extensions {
        hop_by_hop_options: Some(raw_ext(IpNumber::IPV6_DESTINATION_OPTIONS)),
        destination_options: Some(raw_ext(IpNumber::IPV6_ROUTE_HEADER)),
        routing: Some(Ipv6RoutingExtensions {
            routing: raw_ext(IpNumber::TCP),
            final_destination_options: None,
        }),
        ..Ipv6Extensions::default()
    };
    chain.set_next_headers(IpNumber::TCP);
    let offset = 0.try_into().expect("offset");
    let fragment = Ipv6Extensions {
        fragment: Some(Ipv6FragmentHeader::new(IpNumber::TCP, offset, true, 9)),
        ..Ipv6Extensions::default()
    };
    let v6_ah = Ipv6Extensions {
        auth: Some(auth(IpNumber::TCP)),
        ..Ipv6Extensions::default()
    };
    [hbh, chain, fragment, v6_ah]
}

/// The IP packets of the comparison, each with a name.
fn packets() -> Vec<(&'static str, Vec<u8>)> {
    let plain = || v4(Ipv4Extensions::default(), &[]);
    let [hbh, chain, fragment, v6_ah] = v6_extensions();
    let with_ah = Ipv4Extensions {
        auth: Some(auth(IpNumber::TCP)),
    };
    let v4_data = tcp_on(plain(), 40001, false, "PA", 100);
    // IPv4 flags and fragment offset are bytes 6 and 7; more fragments: 0x20.
    let v4_fragment = patched(v4_data.clone(), &[(6, 0x20)]);
    // Total length (bytes 2-3) 20 bytes short of what was built: both count the IP length.
    let total = (u16::from_be_bytes([v4_data[2], v4_data[3]]) - 20).to_be_bytes();
    let v4_short_total = patched(v4_data.clone(), &[(2, total[0]), (3, total[1])]);
    // TCP data offset below 5 (byte 20 + 12): not a TCP header.
    let bad_offset = patched(v4_data.clone(), &[(32, 0x40)]);
    let v6_data = tcp_on(v6_on(Ipv6Extensions::default()), 40007, false, "A", 700);
    // IPv6 payload length 0 (an offloaded super-packet): the packet's own length counts.
    let v6_zero_len = patched(v6_data.clone(), &[(4, 0), (5, 0)]);
    let mut udp = Vec::new();
    PacketBuilder::ipv4(A4, B4, 64)
        .udp(53, 53)
        .write(&mut udp, &[1, 2, 3])
        .expect("udp");
    vec![
        ("IPv4, data", v4_data.clone()),
        ("IPv4, the answer", tcp_on(plain(), 40001, true, "A", 37)),
        ("IPv4 SYN", tcp_on(plain(), 40002, false, "S", 0)),
        ("IPv4 FIN with data", tcp_on(plain(), 40002, true, "FA", 12)),
        ("IPv4 RST", tcp_on(plain(), 40002, false, "RA", 0)),
        (
            "IPv4 options",
            tcp_on(
                v4(Ipv4Extensions::default(), &[1, 1, 1, 0, 0, 0, 0, 0]),
                40003,
                false,
                "A",
                300,
            ),
        ),
        (
            "IPv4 authentication header",
            tcp_on(v4(with_ah, &[]), 40004, false, "A", 200),
        ),
        ("IPv4 fragment", v4_fragment),
        ("IPv4 total length short of the frame", v4_short_total),
        ("TCP data offset below 5", bad_offset),
        ("TCP header cut", v4_data[..30].to_vec()),
        ("UDP", udp),
        ("IPv6, data", v6_data),
        ("IPv6 payload length 0", v6_zero_len),
        ("IPv6 hop-by-hop", tcp_on(v6_on(hbh), 40008, true, "A", 50)),
        (
            "IPv6 hop-by-hop, destination, routing",
            tcp_on(v6_on(chain), 40009, false, "PA", 80),
        ),
        (
            "IPv6 authentication header",
            tcp_on(v6_on(v6_ah), 40010, false, "A", 60),
        ),
        (
            "IPv6 fragment",
            tcp_on(v6_on(fragment), 40011, false, "A", 60),
        ),
    ]
}

/// A frame with three VLAN tags, the outer one the old QinQ 0x9100.
fn three_tags(ip: &[u8]) -> Vec<u8> {
    let eth = Link::Ethernet.wrap(ip);
    let mut f = eth[..12].to_vec();
    for (tpid, vid) in [(0x9100u16, 5u16), (0x88a8, 6), (0x8100, 7)] {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&eth[12..]);
    f
}

fn link_type(link: Link) -> LinkType {
    LinkType::from_dlt(i32::try_from(link.linktype()).expect("small"))
        .expect("a link tcptrack reads")
}

/// What the kernel made of one frame: its counting update and control events, through the
/// poller (as the live path sees them).
fn through_kernel(poller: &mut Poller, frame: &[u8]) -> (Vec<FlowUpdate>, Vec<FlowUpdate>) {
    let r = poller
        .kernel_mut()
        .tc()
        .expect("TC program")
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, u32::MAX, "TCX_NEXT: the packet goes on");
    let polled = poller.poll().expect("poll");
    (polled.counts, polled.events)
}

#[test]
fn decode_and_the_kernel_program_read_every_frame_alike() {
    let kernel = Kernel::load(4096, false, false).expect("load the kernel programs (root)");
    let mut poller = Poller::new(kernel, Interfaces::Named(Vec::new())).expect("poller");
    let mut compared = 0;
    for (name, ip) in packets() {
        let v6 = ip[0] >> 4 == 6;
        let mut frames: Vec<(String, LinkType, Vec<u8>, bool)> = Link::ALL
            .iter()
            .filter(|l| l.carries(v6))
            .map(|&l| {
                let ethernet = matches!(l, Link::Ethernet | Link::Vlan(_) | Link::QinQ(..));
                (format!("{l:?}"), link_type(l), l.wrap(&ip), ethernet)
            })
            .collect();
        frames.push((
            "three tags".into(),
            LinkType::Ethernet,
            three_tags(&ip),
            true,
        ));
        let eth = Link::Ethernet.wrap(&ip);
        let (counts, events) = through_kernel(&mut poller, &eth);
        for (link, lt, frame, ethernet) in &frames {
            let what = format!("{name} on {link}");
            let wire = u32::try_from(frame.len()).expect("small");
            let user = decode(*lt, frame, wire, Duration::ZERO);
            // The kernel runs on this very frame when it is Ethernet; else on the Ethernet
            // form of the same IP packet.
            let (counts, events) = if *ethernet && frame != &eth {
                through_kernel(&mut poller, frame)
            } else {
                (counts.clone(), events.clone())
            };
            let Some(u) = user else {
                assert!(
                    counts.is_empty() && events.is_empty(),
                    "{what}: left out by decode(), counted by the kernel: {counts:?} {events:?}"
                );
                continue;
            };
            assert_eq!(
                counts.len(),
                1,
                "{what}: decode() counted {u:?}, the kernel {counts:?}"
            );
            let k = &counts[0];
            assert_eq!(
                (k.src, k.dst),
                (u.src, u.dst),
                "{what}: connection and direction"
            );
            assert_eq!(
                (k.payload_bytes, k.packets),
                (u.payload_bytes, 1),
                "{what}: payload, packets"
            );
            if *ethernet {
                assert_eq!(k.wire_bytes, u.wire_bytes, "{what}: wire bytes");
            }
            if u.flags.ack() {
                assert_eq!(
                    (k.flags, k.ack),
                    (TcpFlags(TcpFlags::ACK), u.ack),
                    "{what}: ACK"
                );
            }
            if u.flags.plain() {
                assert!(events.is_empty(), "{what}: no control event");
            } else {
                assert_eq!(events.len(), 1, "{what}: one control event");
                let e = &events[0];
                assert_eq!(
                    (e.src, e.dst, e.flags, e.seq, e.ack, e.segment_len),
                    (u.src, u.dst, u.flags, u.seq, u.ack, u.segment_len),
                    "{what}: the control event"
                );
            }
            compared += 1;
        }
    }
    // Every packet both parsers count, on every link type that carries it: 8 IPv4 packets on
    // 10 links (9 of `Link::ALL` and three tags), 5 IPv6 packets on 10. A parser that left out
    // one of them (both alike) would show here.
    assert_eq!(compared, 8 * 10 + 5 * 10, "frames compared");
}
