//! From a captured frame to a [`FlowUpdate`]: link layer, IP, TCP.
//!
//! Parsing is lax: a frame cut short by the snapshot length still counts, by its IP length fields,
//! as long as the fixed TCP header was captured.

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    err, EtherType, Ethernet2HeaderSlice, IpNumber, LaxIpSlice, SingleVlanHeaderSlice, TcpSlice,
};

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
}

impl TcpFields {
    fn from_slice(t: &etherparse::TcpSlice<'_>) -> Self {
        let bit = |on: bool, flag: u8| if on { flag } else { 0 };
        let flags = bit(t.fin(), tcp::FIN)
            | bit(t.syn(), tcp::SYN)
            | bit(t.rst(), tcp::RST)
            | bit(t.psh(), tcp::PSH)
            | bit(t.ack(), tcp::ACK);
        Self {
            src_port: t.source_port(),
            dst_port: t.destination_port(),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            header_len: u32::from(t.data_offset()) * 4,
            flags,
        }
    }

    /// The fixed header of a TCP header whose options were cut off by the snapshot length (the
    /// parser wants the whole header; the counters need only its first 20 bytes).
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
        })
    }
}

/// Decodes one captured frame. `wire_len` is its length on the wire (the capture header's `len`).
/// Frames that are not TCP, or too damaged to tell, give `None`.
#[must_use]
pub fn decode(link: LinkType, frame: &[u8], wire_len: u32, ts: Timestamp) -> Option<FlowUpdate> {
    let (ip, _) = LaxIpSlice::from_slice(ip_of(link, frame)?).ok()?;
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
    let tcp = match TcpSlice::from_slice(payload.payload) {
        Ok(t) => TcpFields::from_slice(&t),
        // Options cut off by the snapshot length: the fixed header is enough.
        Err(err::tcp::HeaderSliceError::Len(_)) => TcpFields::from_fixed_header(payload.payload)?,
        Err(err::tcp::HeaderSliceError::Content(_)) => return None,
    };
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
        payload_bytes: u64::from(segment_len),
        wire_bytes: u64::from(wire_len),
        packets: 1,
    })
}
