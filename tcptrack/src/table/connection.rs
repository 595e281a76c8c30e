//! One connection: its endpoints, state, counters and speed, and the state machine that moves it
//! one update at a time.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::diag::{Diag, Segment};
use crate::flow::{FlowKey, FlowUpdate, Timestamp};
use crate::rate::{RateConfig, RateWindow};

/// A connection's state, as the classic tool names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// The client sent a SYN; no answer yet.
    SynSent,
    /// The server answered with SYN+ACK; the client's ACK is not seen yet.
    SynAckAck,
    /// The handshake is done, or the connection was picked up mid-stream.
    Established,
    /// A side sent a FIN; not both FINs are acknowledged yet.
    Closing,
    /// Both FINs are acknowledged.
    Closed,
    /// A side sent an RST.
    Reset,
}

impl State {
    /// Every state, in the order of [`State::index`].
    pub const ALL: [Self; 6] = [
        Self::SynSent,
        Self::SynAckAck,
        Self::Established,
        Self::Closing,
        Self::Closed,
        Self::Reset,
    ];

    /// Its place in [`State::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::SynSent => 0,
            Self::SynAckAck => 1,
            Self::Established => 2,
            Self::Closing => 3,
            Self::Closed => 4,
            Self::Reset => 5,
        }
    }

    /// The name shown on screen and in every output.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::SynSent => "SYN_SENT",
            Self::SynAckAck => "SYN|ACK-ACK",
            Self::Established => "ESTABLISHED",
            Self::Closing => "CLOSING",
            Self::Closed => "CLOSED",
            Self::Reset => "RESET",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one side of a connection sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// TCP payload bytes.
    pub payload_bytes: u64,
    /// Frame bytes on the wire.
    pub wire_bytes: u64,
    /// Packets on the wire.
    pub packets: u64,
}

impl Counters {
    /// What `u` counts.
    #[must_use]
    pub const fn of(u: &FlowUpdate) -> Self {
        Self {
            payload_bytes: u.payload_bytes,
            wire_bytes: u.wire_bytes,
            packets: u.packets,
        }
    }

    fn add(&mut self, u: &FlowUpdate) {
        self.payload_bytes = self.payload_bytes.saturating_add(u.payload_bytes);
        self.wire_bytes = self.wire_bytes.saturating_add(u.wire_bytes);
        self.packets = self.packets.saturating_add(u.packets);
    }
}

impl std::ops::Add for Counters {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            payload_bytes: self.payload_bytes.saturating_add(o.payload_bytes),
            wire_bytes: self.wire_bytes.saturating_add(o.wire_bytes),
            packets: self.packets.saturating_add(o.packets),
        }
    }
}

/// A side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Server,
}

impl Side {
    /// The side across the connection.
    const fn other(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }

    /// This side's place in a connection's per-side arrays.
    pub(super) const fn index(self) -> usize {
        match self {
            Self::Client => 0,
            Self::Server => 1,
        }
    }
}

/// One TCP connection.
#[derive(Clone, Debug)]
pub struct Connection {
    id: u64,
    /// Client, server (indexed by [`Side::index`]): addresses and ports apart, 38 bytes where
    /// two `SocketAddr`s take 64 (an IPv6 flow label and scope, which they also hold, are
    /// never set by the sources).
    ips: [IpAddr; 2],
    ports: [u16; 2],
    state: State,
    /// [`UNANSWERED`], [`LOCAL_SERVER`], and each side's FIN sent and acknowledged
    /// ([`FIN_SENT`], [`FIN_ACKED`], shifted by the side's index): one byte, so that the
    /// connection fits in 248.
    marks: u8,
    sent: [Counters; 2],
    /// The TCP flags each side sent, or-ed (what a flow record's `tcpControlBits` carry).
    tcp_flags: [u8; 2],
    first_seen_ns: u64,
    last_seen_ns: u64,
    /// The ACK number that acknowledges each side's FIN (its sequence number + its payload +
    /// 1), once it was sent.
    fin_ack_expected: [u32; 2],
    rate: RateWindow,
    diag: Diag,
}

/// [`Connection::marks`]: one-way so far (seen in one direction only, without a handshake: not
/// shown); its server end is an address of this host (decided when it is first listed); the
/// client's FIN sent, acknowledged (the server's: shifted left by one).
const UNANSWERED: u8 = 1;
const LOCAL_SERVER: u8 = 2;
const FIN_SENT: u8 = 4;
const FIN_ACKED: u8 = 16;
/// In the table's list of connections whose speed may not be zero (see `ConnectionTable`).
const MOVING: u8 = 64;
/// In the table's list of connections that may time out.
const EXPIRING: u8 = 128;

impl Connection {
    /// Whether every mark of `marks` is set.
    const fn has(&self, marks: u8) -> bool {
        self.marks & marks == marks
    }

    const fn mark(&mut self, marks: u8, on: bool) {
        if on {
            self.marks |= marks;
        } else {
            self.marks &= !marks;
        }
    }

    /// Whether the table's list of connections whose speed may not be zero holds this one.
    pub(super) const fn is_moving(&self) -> bool {
        self.has(MOVING)
    }

    pub(super) const fn set_moving(&mut self, on: bool) {
        self.mark(MOVING, on);
    }

    /// Whether the table's list of connections that may time out holds this one.
    pub(super) const fn is_expiring(&self) -> bool {
        self.has(EXPIRING)
    }

    pub(super) const fn set_expiring(&mut self, on: bool) {
        self.mark(EXPIRING, on);
    }

    /// Whether its speed is zero at `now` and stays so until it carries payload again.
    #[must_use]
    pub fn is_quiet(&self, rate: RateConfig, now: Timestamp) -> bool {
        self.rate.is_quiet(rate, now)
    }

    /// A connection first seen at `at` (ns), `client` to `server`, in `state`.
    pub(super) fn new(
        id: u64,
        client: SocketAddr,
        server: SocketAddr,
        at: u64,
        state: State,
    ) -> Self {
        Self {
            id,
            ips: [client.ip(), server.ip()],
            ports: [client.port(), server.port()],
            state,
            marks: 0,
            sent: [Counters::default(); 2],
            tcp_flags: [0; 2],
            first_seen_ns: at,
            last_seen_ns: at,
            fin_ack_expected: [0; 2],
            rate: RateWindow::default(),
            diag: Diag::default(),
        }
    }

    /// A one-way flow first seen at `at` (ns), from `src` to `dst`: not shown until answered.
    pub(super) fn one_way(id: u64, src: SocketAddr, dst: SocketAddr, at: u64) -> Self {
        Self {
            marks: UNANSWERED,
            ..Self::new(id, src, dst, at, State::Established)
        }
    }

    /// Order in which connections were first seen (unique, increasing).
    #[must_use]
    pub const fn id(&self) -> u64 {
        self.id
    }
    /// End `i` (as [`Side::index`]).
    const fn end(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.ips[i], self.ports[i])
    }

    /// The end that opened the connection (or, picked up mid-stream, the one taken for it).
    #[must_use]
    pub const fn client(&self) -> SocketAddr {
        self.end(Side::Client.index())
    }
    /// The end that accepted the connection (or, picked up mid-stream, the one taken for it).
    #[must_use]
    pub const fn server(&self) -> SocketAddr {
        self.end(Side::Server.index())
    }
    /// Where the connection is in its life.
    #[must_use]
    pub const fn state(&self) -> State {
        self.state
    }
    /// What the client sent.
    #[must_use]
    pub const fn client_sent(&self) -> Counters {
        self.sent[Side::Client.index()]
    }
    /// What the server sent.
    #[must_use]
    pub const fn server_sent(&self) -> Counters {
        self.sent[Side::Server.index()]
    }
    /// The TCP flags the client, then the server, sent (or-ed over every packet).
    #[must_use]
    pub const fn tcp_flags(&self) -> [u8; 2] {
        self.tcp_flags
    }
    /// Both directions together.
    #[must_use]
    pub fn total(&self) -> Counters {
        self.client_sent() + self.server_sent()
    }
    /// When its first packet was seen.
    #[must_use]
    pub const fn first_seen(&self) -> Timestamp {
        Duration::from_nanos(self.first_seen_ns)
    }
    /// When its last packet was seen.
    #[must_use]
    pub const fn last_seen(&self) -> Timestamp {
        Duration::from_nanos(self.last_seen_ns)
    }
    /// Time since the last packet.
    #[must_use]
    pub fn idle(&self, now: Timestamp) -> Duration {
        now.saturating_sub(self.last_seen())
    }
    /// Payload bytes per second, both directions, over the last completed window before `now`.
    #[must_use]
    pub fn speed(&self, cfg: RateConfig, now: Timestamp) -> u64 {
        self.rate.rate(cfg, now)
    }

    /// Payload bytes per second sent by the client, then by the server, over the last completed
    /// window before `now`.
    #[must_use]
    pub fn speeds(&self, cfg: RateConfig, now: Timestamp) -> [u64; 2] {
        self.rate.rates(cfg, now)
    }

    /// Retransmissions and round-trip time, as the packets tell them.
    #[must_use]
    pub const fn diag(&self) -> &Diag {
        &self.diag
    }

    /// The connection's key.
    #[must_use]
    pub fn key(&self) -> FlowKey {
        FlowKey::new(self.end(0), self.end(1)).0
    }

    /// Whether this connection is the one `key` names (cheaper than making its key).
    pub(super) fn is(&self, key: &FlowKey) -> bool {
        let is_end = |i: usize, a: &SocketAddr| self.ips[i] == a.ip() && self.ports[i] == a.port();
        (is_end(0, &key.lo) && is_end(1, &key.hi)) || (is_end(0, &key.hi) && is_end(1, &key.lo))
    }

    /// One-way so far: seen in one direction only, without a handshake (not shown).
    pub(super) const fn is_unanswered(&self) -> bool {
        self.has(UNANSWERED)
    }

    /// Its server end is an address of this host (known live only, from the host's
    /// addresses when it was first listed).
    #[must_use]
    pub const fn local_server(&self) -> bool {
        self.has(LOCAL_SERVER)
    }

    pub(super) const fn set_local_server(&mut self, local: bool) {
        self.mark(LOCAL_SERVER, local);
    }

    /// When the last packet was seen, in ns.
    pub(super) const fn last_seen_ns(&self) -> u64 {
        self.last_seen_ns
    }

    /// The side that sent from `src`.
    pub(super) fn side_of(&self, src: SocketAddr) -> Side {
        if src == self.client() {
            Side::Client
        } else {
            Side::Server
        }
    }

    /// A one-way flow is answered: it becomes a connection picked up mid-stream. `listener` (a
    /// local listening socket, if one end is) names the server; else the classic rule makes the
    /// lower port the server, and on equal ports the side seen first stays the client.
    pub(super) fn answered(&mut self, listener: Option<SocketAddr>) {
        self.mark(UNANSWERED, false);
        let swap = match listener {
            Some(server) => server == self.client(),
            None => self.client().port() < self.server().port(),
        };
        if swap {
            self.ips.swap(Side::Client.index(), Side::Server.index());
            self.ports.swap(Side::Client.index(), Side::Server.index());
            self.sent.swap(Side::Client.index(), Side::Server.index());
            self.tcp_flags
                .swap(Side::Client.index(), Side::Server.index());
            self.diag.swap_sides();
        }
    }

    /// Takes in one update seen at `at` (ns): counts it and, unless the connection is still a
    /// one-way flow, moves the state machine.
    /// `per_packet`: `u` is one packet (a capture, libpcap), whose sequence numbers tell
    /// retransmissions and round trips; not a kernel poll's sum of packets.
    pub(super) fn advance(
        &mut self,
        u: &FlowUpdate,
        at: u64,
        rate_cfg: RateConfig,
        per_packet: bool,
    ) {
        let side = self.side_of(u.src);
        self.sent[side.index()].add(u);
        self.tcp_flags[side.index()] |= u.flags.0;
        self.rate.add(rate_cfg, u.ts, side.index(), u.payload_bytes);
        if per_packet {
            // Microseconds since first seen, modulo 2^32 (see `diag`).
            let since = at.saturating_sub(self.first_seen_ns) / 1000;
            self.diag.segment(
                side.index(),
                Segment {
                    flags: u.flags,
                    seq: u.seq,
                    ack: u.ack,
                    len: u.segment_len,
                    window: u.window,
                    at: u32::try_from(since & u64::from(u32::MAX)).unwrap_or(0),
                },
            );
        }
        self.first_seen_ns = self.first_seen_ns.min(at);
        self.last_seen_ns = self.last_seen_ns.max(at);
        if self.has(UNANSWERED) {
            return;
        }

        let flags = u.flags;
        if flags.rst() {
            self.state = State::Reset;
            return;
        }
        self.track_fins(side, u);
        self.state = match self.state {
            State::SynSent if flags.syn() && flags.ack() && side == Side::Server => {
                State::SynAckAck
            }
            State::SynAckAck if flags.ack() && !flags.syn() && side == Side::Client => {
                State::Established
            }
            s => s,
        };
        if matches!(
            self.state,
            State::SynSent | State::SynAckAck | State::Established
        ) && self.marks & (FIN_SENT | FIN_SENT << 1) != 0
        {
            self.state = State::Closing;
        }
        if self.state == State::Closing && self.has(FIN_ACKED | FIN_ACKED << 1) {
            self.state = State::Closed;
        }
    }

    /// Notes an ACK of the other side's FIN, and a FIN from `side`.
    fn track_fins(&mut self, side: Side, u: &FlowUpdate) {
        let (this, other) = (side.index(), side.other().index());
        if u.flags.ack() && self.has(FIN_SENT << other) && u.ack == self.fin_ack_expected[other] {
            self.mark(FIN_ACKED << other, true);
        }
        if u.flags.fin() && !self.has(FIN_SENT << this) && self.state != State::Closed {
            self.mark(FIN_SENT << this, true);
            self.mark(FIN_ACKED << this, false);
            self.fin_ack_expected[this] = u.seq.wrapping_add(u.segment_len).wrapping_add(1);
        }
    }
}
