//! The frame decoder on arbitrary bytes, for every link type.
//!
//! Input: a byte choosing the link type, a byte added to the frame's length to make its wire
//! length (a frame cut by the snapshot length), then the frame. Besides not panicking:
//! - an update says what was asked (one packet, the wire length given, the payload it counts as
//!   its segment's length, one address family);
//! - the same bytes taken as an IP packet decode alike behind every link layer's header
//!   (Ethernet with and without VLAN tags, Linux cooked v1 and v2, BSD loopback);
//! - an IP packet that etherparse's strict parser takes whole as unfragmented TCP decodes to the
//!   same ports, numbers, flags and payload length.

#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use libfuzzer_sys::fuzz_target;
use tcptrack::decode::{decode, LinkType};
use tcptrack::flow::FlowUpdate;
use tcptrack_common::proto::{ether, tcp};

const LINKS: [LinkType; 5] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Loopback,
];

const TS: Duration = Duration::new(1_700_000_000, 123_456_789);

/// What every update must say, whatever the bytes.
fn check_update(u: &FlowUpdate, wire_len: u32) {
    assert_eq!(u.packets, 1);
    assert_eq!(u.wire_bytes, u64::from(wire_len));
    assert_eq!(u.payload_bytes, u64::from(u.segment_len));
    assert_eq!(u.ts, TS);
    assert_eq!(u.src.is_ipv4(), u.dst.is_ipv4(), "one family: {u:?}");
    assert_eq!(
        u.flags.0 & !tcp::FLAGS_MASK,
        0,
        "only the flags kept: {u:?}"
    );
}

/// `ip` behind the header of `link` (`ether_type` where the link names one).
fn wrapped(link: LinkType, ether_type: u16, vlan_tags: usize, ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ip.len() + 32);
    let et = ether_type.to_be_bytes();
    match link {
        LinkType::Ethernet => {
            f.extend([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            let tags = [ether::QINQ, ether::VLAN, ether::QINQ_OLD];
            for tag in &tags[..vlan_tags] {
                f.extend(tag.to_be_bytes());
                f.extend([0x00, 0x07]);
            }
            f.extend(et);
        }
        LinkType::LinuxSll => {
            f.extend([0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            f.extend(et);
        }
        LinkType::LinuxSll2 => {
            f.extend(et);
            f.extend([0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        }
        // The family, in either byte order: the decoder goes by the IP version instead.
        LinkType::Loopback => f.extend(if ether_type == ether::IPV6 {
            [0, 0, 0, 30]
        } else {
            [2, 0, 0, 0]
        }),
        LinkType::RawIp => {}
    }
    f.extend(ip);
    f
}

/// etherparse's strict parser as the oracle for whole, unfragmented TCP packets.
fn strict_agrees(ip: &[u8], got: Option<&FlowUpdate>) {
    let Ok(p) = SlicedPacket::from_ip(ip) else {
        return;
    };
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        return;
    };
    let (whole, addrs) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => (
            usize::from(v4.header().total_len()) == ip.len() && !v4.is_payload_fragmented(),
            (
                std::net::IpAddr::from(v4.header().source_addr()),
                std::net::IpAddr::from(v4.header().destination_addr()),
            ),
        ),
        Some(NetSlice::Ipv6(v6)) => (
            usize::from(v6.header().payload_length()) + 40 == ip.len()
                && v6.header().payload_length() != 0
                && !v6.is_payload_fragmented(),
            (
                std::net::IpAddr::from(v6.header().source_addr()),
                std::net::IpAddr::from(v6.header().destination_addr()),
            ),
        ),
        _ => return,
    };
    if !whole {
        return;
    }
    let u = got.unwrap_or_else(|| panic!("a whole TCP packet decodes: {p:?}"));
    assert_eq!(u.src, SocketAddr::new(addrs.0, t.source_port()));
    assert_eq!(u.dst, SocketAddr::new(addrs.1, t.destination_port()));
    assert_eq!(
        (u.seq, u.ack),
        (t.sequence_number(), t.acknowledgment_number())
    );
    assert_eq!(u64::try_from(t.payload().len()).ok(), Some(u.payload_bytes));
    assert_eq!(u.flags.fin(), t.fin());
    assert_eq!(u.flags.syn(), t.syn());
    assert_eq!(u.flags.rst(), t.rst());
    assert_eq!(u.flags.ack(), t.ack());
}

fuzz_target!(|data: &[u8]| {
    let [pick, extra, frame @ ..] = data else {
        return;
    };
    let link = LINKS[usize::from(*pick) % LINKS.len()];
    let Ok(len) = u32::try_from(frame.len()) else {
        return;
    };
    let wire_len = len + u32::from(*extra);
    if let Some(u) = decode(link, frame, wire_len, TS) {
        check_update(&u, wire_len);
    }

    // The frame as an IP packet, behind every link layer.
    let raw = decode(LinkType::RawIp, frame, wire_len, TS);
    if let Some(u) = &raw {
        check_update(u, wire_len);
    }
    let ether_type = match frame.first().map(|b| b >> 4) {
        Some(6) => ether::IPV6,
        _ => ether::IPV4,
    };
    for link in LINKS {
        let tags = if link == LinkType::Ethernet {
            0..=3
        } else {
            0..=0
        };
        for vlan_tags in tags {
            let f = wrapped(link, ether_type, vlan_tags, frame);
            let got = decode(link, &f, wire_len, TS);
            assert_eq!(
                got.map(|u| (u.src, u.dst, u.flags, u.seq, u.ack, u.payload_bytes)),
                raw.map(|u| (u.src, u.dst, u.flags, u.seq, u.ack, u.payload_bytes)),
                "{link:?} with {vlan_tags} VLAN tags decodes as raw IP does"
            );
        }
    }
    strict_agrees(frame, raw.as_ref());
});
