//! From a captured frame to a [`FlowUpdate`]: link layer, IP, TCP.
//!
//! Parsing is lax: a frame cut short by the snapshot length still counts, by its IP length fields,
//! as long as the fixed TCP header was captured.

use std::net::{IpAddr, SocketAddr};

use etherparse::{EtherType, Ethernet2HeaderSlice, IpNumber, LaxIpSlice, SingleVlanHeaderSlice};

use tcptrack_common::proto::{ether, tcp};

use crate::flow::{FlowUpdate, TcpFlags, Timestamp};

/// The link layers tcptrack reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet, with 802.1Q and QinQ tags.
    Ethernet,
    /// Linux cooked capture v1 (`-i any`).
    LinuxSll,
    /// Linux cooked capture v2.
    LinuxSll2,
    /// Raw IPv4 or IPv6.
    RawIp,
    /// BSD loopback, address family in host (NULL) or network (LOOP) byte order.
    Loopback,
}

impl LinkType {
    /// The link type of a libpcap data link number (`DLT_*`; libpcap hands savefiles'
    /// `LINKTYPE_*` over as the platform's `DLT_*`).
    #[must_use]
    pub const fn from_dlt(dlt: i32) -> Option<Self> {
        match dlt {
            1 => Some(Self::Ethernet),
            113 => Some(Self::LinuxSll),
            276 => Some(Self::LinuxSll2),
            // DLT_RAW is 12 on Linux (14 on OpenBSD); LINKTYPE_RAW 101; LINKTYPE_IPV4/IPV6.
            12 | 14 | 101 | 228 | 229 => Some(Self::RawIp),
            0 | 108 => Some(Self::Loopback),
            _ => None,
        }
    }

    /// The bytes before the IP header in a frame of this link without VLAN tags in it.
    #[must_use]
    pub const fn header_len(self) -> usize {
        match self {
            Self::Ethernet => 14,
            Self::LinuxSll => SLL_HEADER_LEN,
            Self::LinuxSll2 => SLL2_HEADER_LEN,
            Self::RawIp => 0,
            Self::Loopback => LOOPBACK_HEADER_LEN,
        }
    }
}

const SLL_HEADER_LEN: usize = 16;
const SLL2_HEADER_LEN: usize = 20;
const LOOPBACK_HEADER_LEN: usize = 4;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The IP packet after an EtherType and what follows it, past as many VLAN tags as the kernel
/// programs read.
fn ip_after(mut ether_type: EtherType, mut rest: &[u8]) -> Option<&[u8]> {
    for _ in 0..ether::MAX_VLAN_TAGS {
        if !ether::is_vlan(ether_type.0) {
            break;
        }
        let tag = SingleVlanHeaderSlice::from_slice(rest).ok()?;
        ether_type = tag.ether_type();
        rest = rest.get(tag.slice().len()..)?;
    }
    matches!(ether_type.0, ether::IPV4 | ether::IPV6).then_some(rest)
}

/// The IP packet inside a frame of link type `link`.
///
/// (The link layers are walked here rather than through `LaxSlicedPacket`, whose size made
/// copying it a quarter of the time spent per packet.)
fn ip_of(link: LinkType, frame: &[u8]) -> Option<&[u8]> {
    match link {
        LinkType::Ethernet => {
            let eth = Ethernet2HeaderSlice::from_slice(frame).ok()?;
            ip_after(eth.ether_type(), frame.get(eth.slice().len()..)?)
        }
        LinkType::LinuxSll => ip_after(EtherType(be16(frame, 14)?), frame.get(SLL_HEADER_LEN..)?),
        LinkType::LinuxSll2 => ip_after(EtherType(be16(frame, 0)?), frame.get(SLL2_HEADER_LEN..)?),
        LinkType::RawIp => Some(frame),
        // The family field's byte order depends on the capturing host; the IP version nibble
        // after it says the same thing without guessing.
        LinkType::Loopback => frame.get(LOOPBACK_HEADER_LEN..),
    }
}

/// The TCP fields tcptrack needs.
struct TcpFields {
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    header_len: u32,
    flags: u8,
    window: u16,
}

impl TcpFields {
    /// The fixed header of a TCP segment (its options, if captured, are not needed).
    fn from_fixed_header(b: &[u8]) -> Option<Self> {
        if b.len() < tcp::FIXED_HEADER_LEN {
            return None;
        }
        let header_len = u32::from(b[12] >> 4) * 4;
        if (header_len as usize) < tcp::FIXED_HEADER_LEN {
            return None;
        }
        Some(Self {
            src_port: be16(b, 0)?,
            dst_port: be16(b, 2)?,
            seq: be32(b, 4)?,
            ack: be32(b, 8)?,
            header_len,
            flags: b[13] & tcp::FLAGS_MASK,
            window: be16(b, 14)?,
        })
    }
}

/// The common case, read directly: IPv4 without options, not a fragment, carrying TCP, its
/// total length covering both fixed headers. (src, dst, the IP payload captured, its length by
/// the header.) Anything else goes through [`lax_ip`], which gives the same for this case.
fn plain_ipv4(ip: &[u8]) -> Option<(IpAddr, IpAddr, &[u8], usize)> {
    let h = ip.get(..20)?;
    if h[0] != 0x45 || h[9] != IpNumber::TCP.0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff;
    if fragment != 0 || total < 40 {
        return None;
    }
    let src = IpAddr::from([h[12], h[13], h[14], h[15]]);
    let dst = IpAddr::from([h[16], h[17], h[18], h[19]]);
    Some((src, dst, ip.get(20..total.min(ip.len()))?, total - 20))
}

/// Any IP packet through etherparse's lax parser (options, extension headers, IPv6, headers
/// cut short): (src, dst, the TCP segment captured, its length by the IP headers), or `None`
/// for what is not an unfragmented TCP packet.
fn lax_ip(ip: &[u8]) -> Option<(IpAddr, IpAddr, &[u8], usize)> {
    let (ip, _) = LaxIpSlice::from_slice(ip).ok()?;
    let (src, dst, payload, ip_payload_len) = match &ip {
        LaxIpSlice::Ipv4(ip) => {
            let h = ip.header();
            let payload = ip.payload();
            let header_len =
                usize::from(h.ihl()) * 4 + ip.extensions().auth.map_or(0, |a| a.slice().len());
            let total = usize::from(h.total_len());
            // A zero total length (segmentation offload on the capturing host) says nothing.
            let len = if total >= header_len && total != 0 {
                total - header_len
            } else {
                payload.payload.len()
            };
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                payload,
                len,
            )
        }
        LaxIpSlice::Ipv6(ip) => {
            let h = ip.header();
            let payload = ip.payload();
            let ext_len = ip.extensions().slice().len();
            let declared = usize::from(h.payload_length());
            // Zero is a jumbogram or offload: the captured length is all there is to go by.
            let len = if declared >= ext_len && declared != 0 {
                declared - ext_len
            } else {
                payload.payload.len()
            };
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                payload,
                len,
            )
        }
    };
    if payload.ip_number != IpNumber::TCP || payload.fragmented {
        return None;
    }
    Some((src, dst, payload.payload, ip_payload_len))
}

/// Decodes one captured frame. `wire_len` is its length on the wire (the capture header's `len`).
/// Frames that are not TCP, or too damaged to tell, give `None`.
#[must_use]
pub fn decode(link: LinkType, frame: &[u8], wire_len: u32, ts: Timestamp) -> Option<FlowUpdate> {
    let ip = ip_of(link, frame)?;
    let (src, dst, segment, ip_payload_len) = plain_ipv4(ip).or_else(|| lax_ip(ip))?;
    // The fixed header is all the counters need: options cut off by the snapshot length do not
    // matter, a data offset under 5 words is no TCP header.
    let tcp = TcpFields::from_fixed_header(segment)?;
    let ip_payload_len = u32::try_from(ip_payload_len).unwrap_or(u32::MAX);
    let segment_len = ip_payload_len.saturating_sub(tcp.header_len);
    Some(FlowUpdate {
        src: SocketAddr::new(src, tcp.src_port),
        dst: SocketAddr::new(dst, tcp.dst_port),
        ts,
        flags: TcpFlags(tcp.flags),
        seq: tcp.seq,
        ack: tcp.ack,
        segment_len,
        window: tcp.window,
        payload_bytes: u64::from(segment_len),
        wire_bytes: u64::from(wire_len),
        packets: 1,
    })
}

#[cfg(test)]
mod tests;
