//! What a source reports about a connection: [`FlowUpdate`], keyed by [`FlowKey`].

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tcptrack_common::proto::tcp;
use tcptrack_common::{ConnKey, FAMILY_IPV4};

/// A point in time as the sources report it: capture time in `-T` mode, monotonic time live.
///
/// Only differences between two timestamps of one source mean anything to the table.
pub type Timestamp = Duration;

/// The TCP flags tcptrack looks at, as they sit in the TCP header's flags byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = tcp::FIN;
    pub const SYN: u8 = tcp::SYN;
    pub const RST: u8 = tcp::RST;
    pub const PSH: u8 = tcp::PSH;
    pub const ACK: u8 = tcp::ACK;

    #[must_use]
    pub const fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    #[must_use]
    pub const fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    #[must_use]
    pub const fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    #[must_use]
    pub const fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    /// SYN without ACK: the first packet of a handshake.
    #[must_use]
    pub const fn bare_syn(self) -> bool {
        self.syn() && !self.ack()
    }
    /// Neither SYN, FIN nor RST: a packet that may reveal a connection picked up mid-stream.
    #[must_use]
    pub const fn plain(self) -> bool {
        self.0 & (Self::SYN | Self::FIN | Self::RST) == 0
    }
}

/// A connection's identity: its two endpoints in a canonical order, so that both directions of a
/// connection have the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    /// The lower endpoint (by address, then port).
    pub lo: SocketAddr,
    /// The higher endpoint.
    pub hi: SocketAddr,
}

impl FlowKey {
    /// The key of the connection between `src` and `dst`, and whether `src` is its `lo` end.
    #[must_use]
    pub fn new(src: SocketAddr, dst: SocketAddr) -> (Self, bool) {
        let src_first = match (src, dst) {
            // The same order as the general case's (an IPv4 address orders as its 32 bits,
            // big-endian), in one comparison.
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                (u64::from(s.ip().to_bits()) << 16 | u64::from(s.port()))
                    <= (u64::from(d.ip().to_bits()) << 16 | u64::from(d.port()))
            }
            _ => (src.ip(), src.port()) <= (dst.ip(), dst.port()),
        };
        if src_first {
            (Self { lo: src, hi: dst }, true)
        } else {
            (Self { lo: dst, hi: src }, false)
        }
    }
}

impl FlowKey {
    /// (sender, receiver) of the packets of direction `dir` of a kernel key: 0 from its
    /// endpoint 0 (`lo`), 1 from endpoint 1.
    #[must_use]
    pub const fn ends(&self, dir: u8) -> (SocketAddr, SocketAddr) {
        if dir == 0 {
            (self.lo, self.hi)
        } else {
            (self.hi, self.lo)
        }
    }
}

/// The kernel's key, the one way into userspace's. Both order the endpoints alike (address
/// bytes, then port; one family per key), so the kernel's endpoint 0 is `lo`.
impl From<&ConnKey> for FlowKey {
    fn from(key: &ConnKey) -> Self {
        let endpoint = |i: usize| {
            let a = key.addr[i];
            let ip = if key.family == FAMILY_IPV4 {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            } else {
                IpAddr::V6(Ipv6Addr::from(a))
            };
            SocketAddr::new(ip, key.port[i])
        };
        Self {
            lo: endpoint(0),
            hi: endpoint(1),
        }
    }
}

/// An address as one number (IPv4 in the low 32 bits), for hashing.
fn addr_bits(a: &SocketAddr) -> u128 {
    match a {
        SocketAddr::V4(v4) => u128::from(v4.ip().to_bits()),
        SocketAddr::V6(v6) => v6.ip().to_bits(),
    }
}

impl Hash for FlowKey {
    // Two integers and the ports: several times cheaper per packet than hashing the two
    // `SocketAddr`s field by field. (An IPv4 address and its IPv4-mapped IPv6 form hash alike;
    // equality still tells them apart.)
    fn hash<H: Hasher>(&self, state: &mut H) {
        let ports = u32::from(self.lo.port()) << 16 | u32::from(self.hi.port());
        if let (SocketAddr::V4(lo), SocketAddr::V4(hi)) = (self.lo, self.hi) {
            // IPv4 (most connections): one word of addresses and one of ports.
            state.write_u64(u64::from(lo.ip().to_bits()) << 32 | u64::from(hi.ip().to_bits()));
            state.write_u32(ports);
            return;
        }
        state.write_u128(addr_bits(&self.lo));
        state.write_u128(addr_bits(&self.hi));
        state.write_u32(ports);
    }
}

/// What a source saw of one connection in one direction: one packet (libpcap), or the packets
/// counted since the last poll (kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowUpdate {
    /// Sender of these packets.
    pub src: SocketAddr,
    /// Receiver of these packets.
    pub dst: SocketAddr,
    /// When the (last) packet was seen.
    pub ts: Timestamp,
    /// Flags of the packet (for a batch: of every packet, or-ed).
    pub flags: TcpFlags,
    /// Sequence number of the packet (for a batch: of the one that carried FIN).
    pub seq: u32,
    /// Acknowledgment number of the packet (for a batch: the highest seen).
    pub ack: u32,
    /// TCP payload length of the packet that `seq` belongs to (FIN matching needs it).
    pub segment_len: u32,
    /// The advertised window, as in the header (a packet's; 0 for a kernel poll's sums).
    pub window: u16,
    /// TCP payload bytes, from the IP length fields (so snaplen does not shorten them).
    pub payload_bytes: u64,
    /// Bytes on the wire (frame length).
    pub wire_bytes: u64,
    /// Packets on the wire.
    pub packets: u64,
}

#[cfg(test)]
impl FlowUpdate {
    /// One packet from `src` to `dst` at `ms` milliseconds, with `len` payload bytes behind 54
    /// header bytes (tests).
    pub(crate) fn test_packet(
        src: &str,
        dst: &str,
        ms: u64,
        flags: u8,
        seq: u32,
        ack: u32,
        len: u32,
    ) -> Self {
        Self {
            src: src.parse().expect("test address"),
            dst: dst.parse().expect("test address"),
            ts: Duration::from_millis(ms),
            flags: TcpFlags(flags),
            seq,
            ack,
            segment_len: len,
            window: 512,
            payload_bytes: u64::from(len),
            wire_bytes: u64::from(len) + 54,
            packets: 1,
        }
    }
}

/// One poll of a counting source (the kernel's maps): what happened since the last poll.
#[derive(Clone, Debug, Default)]
pub struct Polled {
    /// Control packets (SYN, FIN, RST), without counts, in the order seen.
    pub events: Vec<FlowUpdate>,
    /// Counts per connection and direction since the last poll.
    pub counts: Vec<FlowUpdate>,
    /// Sockets connected or accepted since the last poll, with their process.
    pub opened: Vec<Opened>,
}

/// A socket of this host that connected or was accepted, and the process that did it, as the
/// kernel's probes saw it (in any network namespace of the host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The socket's own end, and the other.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub pid: u32,
    /// The command name of the thread that connected or accepted.
    pub command: String,
}

impl Opened {
    /// What the probe sent; `None` for a family other than IPv4 and IPv6. An IPv4 address
    /// mapped into IPv6 (`::ffff:a.b.c.d`, an IPv6 socket talking IPv4) is IPv4, as on the wire.
    #[must_use]
    pub fn from_event(e: &tcptrack_common::OpenerEvent) -> Option<Self> {
        use tcptrack_common::sock::{AF_INET, AF_INET6};
        let ip = |a: [u8; 16]| -> Option<IpAddr> {
            match e.family {
                AF_INET => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
                AF_INET6 => Some(Ipv6Addr::from(a).to_canonical()),
                _ => None,
            }
        };
        let end = e.comm.iter().position(|&b| b == 0).unwrap_or(e.comm.len());
        Some(Self {
            local: SocketAddr::new(ip(e.local)?, e.local_port),
            remote: SocketAddr::new(ip(e.remote)?, e.remote_port),
            pid: e.pid,
            command: String::from_utf8_lossy(&e.comm[..end]).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opener_is_read_as_the_probe_wrote_it() {
        let mut e = tcptrack_common::OpenerEvent {
            local: [0; 16],
            remote: [0; 16],
            local_port: 40_000,
            remote_port: 80,
            family: tcptrack_common::sock::AF_INET,
            _pad: 0,
            pid: 42,
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
            _pad2: 0,
        };
        e.local[..4].copy_from_slice(&[198, 18, 0, 1]);
        e.remote[..4].copy_from_slice(&[198, 18, 0, 2]);
        let o = Opened::from_event(&e).expect("IPv4");
        assert_eq!(o.local, "198.18.0.1:40000".parse().expect("a"));
        assert_eq!(o.remote, "198.18.0.2:80".parse().expect("b"));
        assert_eq!((o.pid, o.command.as_str()), (42, "curl"));
        // An IPv6 socket talking IPv4 (mapped addresses) is IPv4, as its packets are.
        e.family = tcptrack_common::sock::AF_INET6;
        e.local = "::ffff:198.18.0.1"
            .parse::<Ipv6Addr>()
            .expect("v6")
            .octets();
        e.remote = "fd00::2".parse::<Ipv6Addr>().expect("v6").octets();
        let o = Opened::from_event(&e).expect("IPv6");
        assert_eq!(o.local, "198.18.0.1:40000".parse().expect("a"));
        assert_eq!(o.remote, "[fd00::2]:80".parse().expect("b"));
        e.comm = *b"sixteen-letters!";
        assert_eq!(
            Opened::from_event(&e).expect("v6").command,
            "sixteen-letters!"
        );
        e.family = 1;
        assert_eq!(Opened::from_event(&e), None);
    }

    #[test]
    fn a_key_orders_its_ends_by_address_then_port_whatever_the_family() {
        let mut rng = crate::testing::XorShift(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let (r, s) = (rng.next(), rng.next());
            // Few distinct addresses and ports, so that equal ones and equal pairs come up.
            let v4 = |r: u64| {
                SocketAddr::from((
                    Ipv4Addr::from((r % 5) as u32 * 0x0101_0101),
                    (r >> 8 & 3) as u16,
                ))
            };
            let v6 =
                |r: u64| SocketAddr::from((Ipv6Addr::from(u128::from(r % 3)), (r >> 8 & 3) as u16));
            let (src, dst) = match i % 4 {
                0 | 1 => (v4(r), v4(s)),
                2 => (v4(r), v6(s)),
                _ => (v6(r), v6(s)),
            };
            let (key, src_is_lo) = FlowKey::new(src, dst);
            let expected = (src.ip(), src.port()) <= (dst.ip(), dst.port());
            assert_eq!(src_is_lo, expected, "{src} {dst}");
            assert_eq!(
                (key.lo, key.hi),
                if expected { (src, dst) } else { (dst, src) }
            );
            assert_eq!(FlowKey::new(dst, src).0, key, "{src} {dst}");
        }
    }
}
