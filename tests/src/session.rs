//! A TCP session builder: IP + TCP packets with correct sequence and acknowledgment numbers.
//!
//! Each side keeps its next sequence number; a packet with ACK acknowledges everything the other
//! side has sent so far (packets arrive in order), unless the test names the ACK number itself.

use std::net::{IpAddr, SocketAddr};
use std::ops::BitOr;
use std::time::Duration;

use etherparse::{
    ip_number, IpHeaders, Ipv4Header, Ipv4Options, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header,
    Ipv6RawExtHeader, PacketBuilder,
};

use crate::capture::Packet;
use crate::expect::{Expected, Tally};
use crate::link::Link;

/// Which end of the connection sends a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The end that sent the first SYN (or the one the test calls the client).
    Client,
    /// The other end.
    Server,
}

impl Side {
    /// The other end.
    #[must_use]
    pub const fn other(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::Client => 0,
            Self::Server => 1,
        }
    }
}

/// TCP flags, combinable with `|`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u8);

impl Flags {
    pub const NONE: Self = Self(0);
    pub const FIN: Self = Self(0x01);
    pub const SYN: Self = Self(0x02);
    pub const RST: Self = Self(0x04);
    pub const PSH: Self = Self(0x08);
    pub const ACK: Self = Self(0x10);

    /// Whether every flag of `other` is set.
    #[must_use]
    pub const fn has(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Flags {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

/// One packet of a session, at the IP layer.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Capture time (from the Unix epoch).
    pub ts: Duration,
    /// Who sent it.
    pub from: Side,
    pub flags: Flags,
    pub seq: u32,
    pub ack: u32,
    /// TCP payload length.
    pub payload_len: usize,
    /// The IP packet: IP header (with options or extension headers), TCP header, payload.
    pub ip: Vec<u8>,
}

impl Segment {
    /// The frame on `link`, stamped with this segment's time.
    #[must_use]
    pub fn packet(&self, link: Link) -> Packet {
        Packet::new(self.ts, link.wrap(&self.ip))
    }
}

/// What tcptrack must count for `segments` on `link`: payload from the lengths the segments
/// were built with, bytes from the frames' lengths, per sender.
#[must_use]
pub fn expected_of(segments: &[Segment], link: Link) -> Expected {
    let mut e = Expected::default();
    for s in segments {
        let t = Tally {
            payload: s.payload_len as u64,
            bytes: link.wrap(&s.ip).len() as u64,
            packets: 1,
        };
        match s.from {
            Side::Client => e.client += t,
            Side::Server => e.server += t,
        }
    }
    e
}

/// Default start time of a session: 2023-11-14T22:13:20Z, a whole second.
pub const EPOCH_BASE: Duration = Duration::from_secs(1_700_000_000);

/// A TCP conversation between a client and a server, packet by packet.
#[derive(Clone, Debug)]
pub struct Session {
    ends: [SocketAddr; 2],
    next_seq: [u32; 2],
    now: Duration,
    step: Duration,
    window: u16,
    ipv4_options: Vec<u8>,
    ipv6_hop_by_hop: Option<Vec<u8>>,
    ipv6_destination: Option<Vec<u8>>,
    tcp_options: Vec<u8>,
    segments: Vec<Segment>,
}

fn endpoint(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("`{s}` is not an address:port: {e}"))
}

impl Session {
    /// A session between `client` and `server` ("a.b.c.d:port" or "[v6]:port", same family).
    /// It starts at [`EPOCH_BASE`], each packet 1 ms after the previous one.
    #[must_use]
    pub fn new(client: &str, server: &str) -> Self {
        let ends = [endpoint(client), endpoint(server)];
        assert_eq!(
            ends[0].is_ipv4(),
            ends[1].is_ipv4(),
            "client and server must be of one address family"
        );
        Self {
            ends,
            next_seq: [1_000_000, 3_000_000_000],
            now: EPOCH_BASE,
            step: Duration::from_millis(1),
            window: 64_240,
            ipv4_options: Vec::new(),
            ipv6_hop_by_hop: None,
            ipv6_destination: None,
            tcp_options: Vec::new(),
            segments: Vec::new(),
        }
    }

    /// The client's endpoint.
    #[must_use]
    pub const fn client(&self) -> SocketAddr {
        self.ends[0]
    }

    /// The server's endpoint.
    #[must_use]
    pub const fn server(&self) -> SocketAddr {
        self.ends[1]
    }

    /// Initial sequence numbers of the client and the server (before any packet is sent).
    pub fn isn(&mut self, client: u32, server: u32) -> &mut Self {
        assert!(self.segments.is_empty(), "set ISNs before the first packet");
        self.next_seq = [client, server];
        self
    }

    /// Time of the next packet.
    pub fn at(&mut self, ts: Duration) -> &mut Self {
        self.now = ts;
        self
    }

    /// Moves the time of the next packet `d` later.
    pub fn wait(&mut self, d: Duration) -> &mut Self {
        self.now += d;
        self
    }

    /// How much later each packet is than the previous one (default 1 ms).
    pub fn step(&mut self, d: Duration) -> &mut Self {
        self.step = d;
        self
    }

    /// Time the next packet will have.
    #[must_use]
    pub const fn now(&self) -> Duration {
        self.now
    }

    /// IPv4 options (a multiple of 4 bytes, at most 40) on every following packet.
    pub fn ipv4_options(&mut self, options: &[u8]) -> &mut Self {
        self.ipv4_options = options.to_vec();
        self
    }

    /// IPv6 hop-by-hop and destination options headers (their payloads, 6 + 8n bytes) on every
    /// following packet.
    pub fn ipv6_extensions(
        &mut self,
        hop_by_hop: Option<&[u8]>,
        destination: Option<&[u8]>,
    ) -> &mut Self {
        self.ipv6_hop_by_hop = hop_by_hop.map(<[u8]>::to_vec);
        self.ipv6_destination = destination.map(<[u8]>::to_vec);
        self
    }

    /// TCP options (a multiple of 4 bytes, at most 40) on every following packet.
    pub fn tcp_options(&mut self, options: &[u8]) -> &mut Self {
        self.tcp_options = options.to_vec();
        self
    }

    /// Next sequence number `side` will send.
    #[must_use]
    pub const fn next_seq(&self, side: Side) -> u32 {
        self.next_seq[side.index()]
    }

    /// Sends a packet from `from` with `flags` and `payload_len` bytes of payload; with ACK, it
    /// acknowledges everything the other side has sent.
    pub fn send(&mut self, from: Side, flags: Flags, payload_len: usize) -> &mut Self {
        let ack = if flags.has(Flags::ACK) {
            self.next_seq[from.other().index()]
        } else {
            0
        };
        self.send_acking(from, flags, payload_len, ack)
    }

    /// As [`Session::send`], with the acknowledgment number given.
    pub fn send_acking(
        &mut self,
        from: Side,
        flags: Flags,
        payload_len: usize,
        ack: u32,
    ) -> &mut Self {
        let seq = self.next_seq[from.index()];
        let payload: Vec<u8> = (0..payload_len)
            .map(|i| u8::try_from(i % 251).expect("below 251"))
            .collect();
        let ip = self.build(from, flags, seq, ack, &payload);
        self.segments.push(Segment {
            ts: self.now,
            from,
            flags,
            seq,
            ack,
            payload_len,
            ip,
        });
        let len = u32::try_from(payload_len).expect("payload fits a TCP segment");
        let consumed = len + u32::from(flags.has(Flags::SYN)) + u32::from(flags.has(Flags::FIN));
        self.next_seq[from.index()] = seq.wrapping_add(consumed);
        self.now += self.step;
        self
    }

    /// The client's bare SYN.
    pub fn syn(&mut self) -> &mut Self {
        self.send(Side::Client, Flags::SYN, 0)
    }

    /// The server's SYN+ACK.
    pub fn syn_ack(&mut self) -> &mut Self {
        self.send(Side::Server, Flags::SYN | Flags::ACK, 0)
    }

    /// A pure ACK from `from`.
    pub fn ack(&mut self, from: Side) -> &mut Self {
        self.send(from, Flags::ACK, 0)
    }

    /// SYN, SYN+ACK, ACK.
    pub fn handshake(&mut self) -> &mut Self {
        self.syn().syn_ack().ack(Side::Client)
    }

    /// `len` bytes of data (PSH+ACK) from `from`.
    pub fn data(&mut self, from: Side, len: usize) -> &mut Self {
        self.send(from, Flags::PSH | Flags::ACK, len)
    }

    /// A FIN+ACK from `from`.
    pub fn fin(&mut self, from: Side) -> &mut Self {
        self.send(from, Flags::FIN | Flags::ACK, 0)
    }

    /// A FIN+PSH+ACK carrying `len` bytes from `from`.
    pub fn fin_data(&mut self, from: Side, len: usize) -> &mut Self {
        self.send(from, Flags::FIN | Flags::PSH | Flags::ACK, len)
    }

    /// A RST+ACK from `from`.
    pub fn rst(&mut self, from: Side) -> &mut Self {
        self.send(from, Flags::RST | Flags::ACK, 0)
    }

    /// `from` closes first, the other side answers with its own FIN, `from` acknowledges it.
    pub fn close(&mut self, from: Side) -> &mut Self {
        self.fin(from).fin(from.other()).ack(from)
    }

    /// Every packet sent so far.
    #[must_use]
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Every packet sent so far, as frames on `link`.
    #[must_use]
    pub fn packets(&self, link: Link) -> Vec<Packet> {
        self.segments.iter().map(|s| s.packet(link)).collect()
    }

    /// What tcptrack must count for this session on `link`, from the generated frames.
    #[must_use]
    pub fn expected(&self, link: Link) -> Expected {
        expected_of(&self.segments, link)
    }

    /// Time of the first and of the last packet.
    #[must_use]
    pub fn first_last(&self) -> (Duration, Duration) {
        let first = self.segments.first().expect("session has packets").ts;
        let last = self.segments.last().expect("session has packets").ts;
        (first, last)
    }

    fn build(&self, from: Side, flags: Flags, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = (self.ends[from.index()], self.ends[from.other().index()]);
        let ip = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = Ipv4Header::new(0, 64, ip_number::TCP, s.octets(), d.octets())
                    .expect("an empty IPv4 payload fits");
                h.options = Ipv4Options::try_from(&self.ipv4_options[..])
                    .expect("IPv4 options: a multiple of 4 bytes, at most 40");
                IpHeaders::Ipv4(h, Default::default())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ext = |p: &Option<Vec<u8>>| {
                    p.as_ref().map(|p| {
                        Ipv6RawExtHeader::new_raw(ip_number::TCP, p)
                            .expect("IPv6 extension payload: 6 + 8n bytes")
                    })
                };
                let h = Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::ZERO,
                    payload_length: 0,
                    next_header: ip_number::TCP,
                    hop_limit: 64,
                    source: s.octets(),
                    destination: d.octets(),
                };
                let exts = Ipv6Extensions {
                    hop_by_hop_options: ext(&self.ipv6_hop_by_hop),
                    destination_options: ext(&self.ipv6_destination),
                    ..Default::default()
                };
                IpHeaders::Ipv6(h, exts)
            }
            _ => unreachable!("checked in Session::new"),
        };
        let mut b = PacketBuilder::ip(ip).tcp(src.port(), dst.port(), seq, self.window);
        if flags.has(Flags::SYN) {
            b = b.syn();
        }
        if flags.has(Flags::FIN) {
            b = b.fin();
        }
        if flags.has(Flags::RST) {
            b = b.rst();
        }
        if flags.has(Flags::PSH) {
            b = b.psh();
        }
        if flags.has(Flags::ACK) {
            b = b.ack(ack);
        }
        if !self.tcp_options.is_empty() {
            b = b
                .options_raw(&self.tcp_options)
                .expect("TCP options: a multiple of 4 bytes, at most 40");
        }
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).expect("packet builds");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    #[test]
    fn bookkeeping_follows_tcp() {
        let mut s = Session::new("198.18.0.1:40000", "198.18.0.2:80");
        s.isn(100, 5000)
            .handshake()
            .data(Side::Client, 10)
            .fin(Side::Server);
        let seg = s.segments();
        assert_eq!((seg[0].seq, seg[1].seq, seg[1].ack), (100, 5000, 101));
        assert_eq!((seg[2].seq, seg[2].ack), (101, 5001));
        assert_eq!((seg[3].seq, seg[3].payload_len), (101, 10));
        assert_eq!((seg[4].seq, seg[4].ack), (5001, 111));
        assert_eq!(s.next_seq(Side::Server), 5002);
        assert_eq!(seg[4].ts - seg[0].ts, Duration::from_millis(4));
    }

    #[test]
    fn packets_parse_back_with_their_extensions() {
        let mut s = Session::new("[2001:db8::1]:40000", "[2001:db8::2]:443");
        s.ipv6_extensions(
            Some(&[0; 6]),
            Some(&[1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        );
        s.data(Side::Server, 33);
        let p = SlicedPacket::from_ip(&s.segments()[0].ip).expect("parses");
        let Some(NetSlice::Ipv6(ip)) = p.net else {
            panic!("not IPv6")
        };
        assert_eq!(ip.extensions().slice().len(), 8 + 16);
        assert_eq!(usize::from(ip.header().payload_length()), 8 + 16 + 20 + 33);
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("not TCP")
        };
        assert_eq!((t.source_port(), t.destination_port()), (443, 40000));
        assert_eq!(t.payload().len(), 33);

        let mut s = Session::new("198.18.0.1:1", "198.18.0.2:2");
        s.ipv4_options(&[0x94, 4, 0, 0])
            .tcp_options(&[1, 1, 1, 0])
            .data(Side::Client, 5);
        let ip = &s.segments()[0].ip;
        assert_eq!(ip[0], 0x46, "IPv4, IHL 6");
        assert_eq!(ip.len(), 24 + 24 + 5);
    }
}
