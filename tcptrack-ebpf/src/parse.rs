//! From a packet to its TCP headers: Ethernet and VLAN tags, IPv4 (options, authentication
//! header) or IPv6 (extension headers), then TCP. Each header is read whole, with one check of
//! its bounds; fields stay in network order until something compares them.

use tcptrack_common::{
    proto::{ether, ip, tcp},
    FAMILY_IPV4, FAMILY_IPV6,
};

use crate::packet::Packet;

/// What the counting needs of one TCP packet.
pub struct Headers {
    pub family: u8,
    /// The addresses as their bytes lie in the packet, in two 64-bit words (an IPv4 address in
    /// the first four bytes, the rest zero): what `ConnKey::addr` holds.
    pub src: [u64; 2],
    pub dst: [u64; 2],
    /// Ports in host order.
    pub sport: u16,
    pub dport: u16,
    /// FIN to ACK (`tcp::FLAGS_MASK`).
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// TCP payload bytes, from the IP length fields.
    pub payload: u32,
    /// Link, IP and TCP header bytes (each GSO segment carries them).
    pub headers: u32,
}

/// The IPv4 header without options, as on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Header {
    version_ihl: u8,
    tos: u8,
    total_len: u16,
    id: u16,
    frag: u16,
    ttl: u8,
    protocol: u8,
    checksum: u16,
    src: u32,
    dst: u32,
}

/// The IPv6 fixed header, as on the wire (addresses as two words each, bytes as they lie).
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6Header {
    version_class_flow: u32,
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    src: [u64; 2],
    dst: [u64; 2],
}

/// The TCP fixed header, as on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
struct TcpHeader {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    data_offset: u8,
    flags: u8,
    window: u16,
    checksum: u16,
    urgent: u16,
}

/// What the IP layer says of a TCP packet.
struct L3 {
    family: u8,
    src: [u64; 2],
    dst: [u64; 2],
    /// Offset of the TCP header.
    l4: usize,
    /// TCP header and payload bytes, from the IP length fields.
    l4_len: usize,
}

fn be16<P: Packet>(p: &P, off: usize) -> Option<u16> {
    p.load::<u16>(off).map(u16::from_be)
}

/// The EtherType and offset of what follows the Ethernet header and its VLAN tags (as many as
/// userspace reads).
#[inline(always)]
fn l2<P: Packet>(p: &P) -> Option<(u16, usize)> {
    let mut off = ether::HEADER_LEN;
    let mut ether_type = be16(p, 12)?;
    let mut tags = 0;
    while tags < ether::MAX_VLAN_TAGS && ether::is_vlan(ether_type) {
        ether_type = be16(p, off + 2)?;
        off += ether::VLAN_TAG_LEN;
        tags += 1;
    }
    Some((ether_type, off))
}

/// An IPv4 header at `off` (options, and an authentication header before TCP, skipped).
#[inline(always)]
fn ipv4<P: Packet>(p: &P, off: usize) -> Option<L3> {
    let ip: Ipv4Header = p.load(off)?;
    let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
    // Fragments carry no (or not all of the) TCP header: not counted.
    if ip.version_ihl >> 4 != 4 || ihl < 20 || u16::from_be(ip.frag) & 0x3fff != 0 {
        return None;
    }
    let mut headers = ihl;
    if ip.protocol == ip::AUTH {
        // An authentication header before TCP: (length + 2) * 4 bytes.
        let ah: [u8; 2] = p.load(off + ihl)?;
        if ah[0] != ip::TCP {
            return None;
        }
        headers += (usize::from(ah[1]) + 2) * 4;
    } else if ip.protocol != ip::TCP {
        return None;
    }
    let total = usize::from(u16::from_be(ip.total_len));
    let l4 = off + headers;
    // Zero: a big-TCP super-packet; its length is the packet's.
    let l4_len = if total >= headers && total != 0 {
        total - headers
    } else {
        p.len().saturating_sub(l4)
    };
    Some(L3 {
        family: FAMILY_IPV4,
        src: [u64::from(ip.src), 0],
        dst: [u64::from(ip.dst), 0],
        l4,
        l4_len,
    })
}

/// An IPv6 header at `off`, its extension headers skipped.
#[inline(always)]
fn ipv6<P: Packet>(p: &P, off: usize) -> Option<L3> {
    let ip: Ipv6Header = p.load(off)?;
    let declared = usize::from(u16::from_be(ip.payload_len));
    let mut next = ip.next_header;
    let mut l4 = off + 40;
    let mut ext = 0;
    while ext < ip::MAX_IPV6_EXTENSIONS {
        let scale = match next {
            // Hop-by-hop, routing, destination options: (length + 1) * 8 bytes.
            ip::HOP_BY_HOP | ip::ROUTING | ip::DEST_OPTS => 8,
            // Authentication header: (length + 2) * 4 bytes.
            ip::AUTH => 4,
            _ => break,
        };
        let h: [u8; 2] = p.load(l4)?;
        next = h[0];
        l4 += if scale == 8 {
            (usize::from(h[1]) + 1) * 8
        } else {
            (usize::from(h[1]) + 2) * 4
        };
        ext += 1;
    }
    if next != ip::TCP {
        return None;
    }
    let ext_len = l4 - off - 40;
    let l4_len = if declared >= ext_len && declared != 0 {
        declared - ext_len
    } else {
        p.len().saturating_sub(l4)
    };
    Some(L3 {
        family: FAMILY_IPV6,
        src: ip.src,
        dst: ip.dst,
        l4,
        l4_len,
    })
}

/// The TCP headers of a packet; `None` for anything else (and for a packet cut short).
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "offsets and lengths within one packet fit in u32"
)]
pub fn parse<P: Packet>(p: &P) -> Option<Headers> {
    let (ether_type, off) = l2(p)?;
    let l3 = match ether_type {
        ether::IPV4 => ipv4(p, off)?,
        ether::IPV6 => ipv6(p, off)?,
        _ => return None,
    };
    let th: TcpHeader = p.load(l3.l4)?;
    let tcp_header = usize::from(th.data_offset >> 4) * 4;
    if tcp_header < tcp::FIXED_HEADER_LEN {
        return None;
    }
    Some(Headers {
        family: l3.family,
        src: l3.src,
        dst: l3.dst,
        sport: u16::from_be(th.sport),
        dport: u16::from_be(th.dport),
        flags: th.flags & tcp::FLAGS_MASK,
        seq: u32::from_be(th.seq),
        ack: u32::from_be(th.ack),
        payload: l3.l4_len.saturating_sub(tcp_header) as u32,
        headers: (l3.l4 + tcp_header) as u32,
    })
}
