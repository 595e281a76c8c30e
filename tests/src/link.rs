//! Link layers: the header in front of an IP packet for every link type tcptrack reads.

use etherparse::{EtherType, Ethernet2Header, SingleVlanHeader, VlanId, VlanPcp};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// MAC addresses of every generated Ethernet frame.
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// A link type, and how its frames are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II (`LINKTYPE_ETHERNET`, 1).
    Ethernet,
    /// Ethernet with one 802.1Q tag.
    Vlan(u16),
    /// Ethernet with an 802.1ad (0x88a8) outer tag and an 802.1Q inner tag.
    QinQ(u16, u16),
    /// Linux cooked capture v1 (`LINKTYPE_LINUX_SLL`, 113): 16 bytes, protocol at offset 14.
    Sll,
    /// Linux cooked capture v2 (`LINKTYPE_LINUX_SLL2`, 276): 20 bytes, protocol at offset 0.
    Sll2,
    /// Raw IP (`LINKTYPE_RAW`, 101).
    Raw,
    /// Raw IPv4 (`LINKTYPE_IPV4`, 228).
    RawIpv4,
    /// Raw IPv6 (`LINKTYPE_IPV6`, 229).
    RawIpv6,
    /// BSD loopback (`LINKTYPE_NULL`, 0): the address family, 4 bytes little-endian (the
    /// capturing host's order); the value given is used for IPv6 (10 Linux, 24 OpenBSD/NetBSD,
    /// 28 FreeBSD, 30 macOS).
    Null { ipv6_family: u32 },
    /// OpenBSD loopback (`LINKTYPE_LOOP`, 108): the address family, 4 bytes big-endian
    /// (2 IPv4, 24 IPv6).
    Loop,
}

/// The EtherType of an IP packet, by its version nibble.
#[must_use]
pub fn ethertype_of(ip: &[u8]) -> u16 {
    match ip.first().map(|b| b >> 4) {
        Some(6) => ETHERTYPE_IPV6,
        _ => ETHERTYPE_IPV4,
    }
}

fn vlan_tag(id: u16, next: u16) -> [u8; 4] {
    SingleVlanHeader {
        pcp: VlanPcp::ZERO,
        drop_eligible_indicator: false,
        vlan_id: VlanId::try_new(id).expect("VLAN id below 4096"),
        ether_type: EtherType(next),
    }
    .to_bytes()
}

fn ethernet(ether_type: u16) -> [u8; 14] {
    Ethernet2Header {
        source: SRC_MAC,
        destination: DST_MAC,
        ether_type: EtherType(ether_type),
    }
    .to_bytes()
}

impl Link {
    /// Every link type, one of each (VLAN ids, families picked).
    pub const ALL: [Self; 10] = [
        Self::Ethernet,
        Self::Vlan(100),
        Self::QinQ(200, 300),
        Self::Sll,
        Self::Sll2,
        Self::Raw,
        Self::RawIpv4,
        Self::RawIpv6,
        Self::Null { ipv6_family: 30 },
        Self::Loop,
    ];

    /// The capture file's link type number (`LINKTYPE_*`).
    #[must_use]
    pub const fn linktype(self) -> u32 {
        match self {
            Self::Ethernet | Self::Vlan(_) | Self::QinQ(..) => 1,
            Self::Sll => 113,
            Self::Sll2 => 276,
            Self::Raw => 101,
            Self::RawIpv4 => 228,
            Self::RawIpv6 => 229,
            Self::Null { .. } => 0,
            Self::Loop => 108,
        }
    }

    /// Whether this link type carries packets of this IP version.
    #[must_use]
    pub const fn carries(self, ipv6: bool) -> bool {
        match self {
            Self::RawIpv4 => !ipv6,
            Self::RawIpv6 => ipv6,
            _ => true,
        }
    }

    /// The frame of the IP packet `ip`.
    #[must_use]
    pub fn wrap(self, ip: &[u8]) -> Vec<u8> {
        self.wrap_as(ethertype_of(ip), ip)
    }

    /// The frame of `payload`, whose protocol is `ether_type` (used where the link layer names
    /// the protocol: Ethernet, VLAN and Linux cooked; the others carry IP only, and the loopback
    /// family follows the IP version nibble).
    #[must_use]
    pub fn wrap_as(self, ether_type: u16, payload: &[u8]) -> Vec<u8> {
        let v6 = payload.first().is_some_and(|b| b >> 4 == 6);
        let mut f = Vec::with_capacity(payload.len() + 22);
        match self {
            Self::Ethernet => f.extend_from_slice(&ethernet(ether_type)),
            Self::Vlan(id) => {
                f.extend_from_slice(&ethernet(0x8100));
                f.extend_from_slice(&vlan_tag(id, ether_type));
            }
            Self::QinQ(outer, inner) => {
                f.extend_from_slice(&ethernet(0x88a8));
                f.extend_from_slice(&vlan_tag(outer, 0x8100));
                f.extend_from_slice(&vlan_tag(inner, ether_type));
            }
            Self::Sll => {
                f.extend_from_slice(&0u16.to_be_bytes()); // packet type: to us
                f.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                f.extend_from_slice(&6u16.to_be_bytes()); // address length
                f.extend_from_slice(&SRC_MAC);
                f.extend_from_slice(&[0, 0]); // address padding to 8 bytes
                f.extend_from_slice(&ether_type.to_be_bytes());
            }
            Self::Sll2 => {
                f.extend_from_slice(&ether_type.to_be_bytes());
                f.extend_from_slice(&[0, 0]); // reserved
                f.extend_from_slice(&2u32.to_be_bytes()); // interface index
                f.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                f.push(4); // packet type: outgoing
                f.push(6); // address length
                f.extend_from_slice(&SRC_MAC);
                f.extend_from_slice(&[0, 0]);
            }
            Self::Raw | Self::RawIpv4 | Self::RawIpv6 => {}
            Self::Null { ipv6_family } => {
                let family: u32 = if v6 { ipv6_family } else { 2 };
                f.extend_from_slice(&family.to_le_bytes());
            }
            Self::Loop => {
                let family: u32 = if v6 { 24 } else { 2 };
                f.extend_from_slice(&family.to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    /// Length of the link-layer header.
    #[must_use]
    pub fn header_len(self) -> usize {
        self.wrap_as(ETHERTYPE_IPV4, &[]).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_and_protocol_fields() {
        let ip = [0x45u8, 0];
        assert_eq!(Link::Ethernet.header_len(), 14);
        assert_eq!(Link::Vlan(5).header_len(), 18);
        assert_eq!(Link::QinQ(5, 6).header_len(), 22);
        assert_eq!(Link::Sll.header_len(), 16);
        assert_eq!(Link::Sll2.header_len(), 20);
        assert_eq!(Link::Raw.header_len(), 0);
        assert_eq!(Link::Null { ipv6_family: 10 }.header_len(), 4);
        assert_eq!(Link::Loop.header_len(), 4);
        let q = Link::QinQ(5, 6).wrap(&ip);
        assert_eq!(
            (&q[12..14], &q[16..18], &q[20..22]),
            (&[0x88, 0xa8][..], &[0x81, 0][..], &[8, 0][..])
        );
        assert_eq!(&Link::Sll.wrap(&ip)[14..16], &[8, 0]);
        assert_eq!(&Link::Sll2.wrap(&[0x60])[0..2], &[0x86, 0xdd]);
        assert_eq!(
            &Link::Null { ipv6_family: 28 }.wrap(&[0x60])[0..4],
            &[28, 0, 0, 0]
        );
        assert_eq!(&Link::Loop.wrap(&ip)[0..4], &[0, 0, 0, 2]);
    }
}
