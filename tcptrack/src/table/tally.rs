//! What the table has seen since it started, kept as it happens: connections opened and ended,
//! what they sent by side, how many are listed in each state, and the same per local server
//! port. Every number only grows, except those of connections listed now; none grows with the
//! number of connections, and a refresh reads them without going through the table.
//!
//! A connection counts from the moment it is listed (a handshake seen, or a one-way flow
//! answered: then with what it had sent before); one-way flows that are never answered are not
//! connections and count nowhere here.

use hashbrown::HashMap;

use super::{Connection, Counters, State};

/// How a connection left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ending {
    /// Forgotten `-r` seconds after both FINs were acknowledged.
    Closed,
    /// Forgotten `-r` seconds after a RST.
    Reset,
    /// Idle for longer than its state allows (a handshake, a close, `--idle-timeout`).
    Timeout,
    /// Forgotten to make room. No listed connection is, today: only one-way flows are, and
    /// those are no connections (see [`TableStats`](super::TableStats)).
    Evicted,
    /// Still listed when tcptrack stopped (for the flow log; never counted as ended).
    OpenAtExit,
}

impl Ending {
    /// Every way a connection ends in the table, in the order of [`Tally::ended`].
    pub const TABLE: [Self; 4] = [Self::Closed, Self::Reset, Self::Timeout, Self::Evicted];

    /// The name in metrics labels and flow-log records.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Evicted => "evicted",
            Self::OpenAtExit => "open_at_exit",
        }
    }

    /// How a connection in state `state` that leaves the table (not to make room) ended.
    #[must_use]
    pub const fn of(state: State) -> Self {
        match state {
            State::Closed => Self::Closed,
            State::Reset => Self::Reset,
            _ => Self::Timeout,
        }
    }

    /// How a connection in state `state` still listed when tcptrack stops ended: closed or
    /// reset if it had (and was lingering), else open at exit.
    #[must_use]
    pub const fn at_exit(state: State) -> Self {
        match state {
            State::Closed | State::Reset => Self::of(state),
            _ => Self::OpenAtExit,
        }
    }

    /// Its place in [`Tally::ended`] (`None` for [`Ending::OpenAtExit`]).
    const fn index(self) -> Option<usize> {
        match self {
            Self::Closed => Some(0),
            Self::Reset => Some(1),
            Self::Timeout => Some(2),
            Self::Evicted => Some(3),
            Self::OpenAtExit => None,
        }
    }
}

/// A connection that left the table, as it was then, and how.
#[derive(Clone, Debug)]
pub struct Ended {
    pub conn: Connection,
    pub how: Ending,
}

/// What connections served by one local port did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortTally {
    /// Listed now.
    pub connections: u64,
    /// Sent since tcptrack started: by the clients, by this host (the server).
    pub sent: [Counters; 2],
    /// Something here accepted a connection on this port: it answered a handshake with SYN+ACK
    /// (SYN|ACK-ACK reached), or a connection on it was picked up mid-stream (ESTABLISHED). A
    /// port scan's SYNs, answered by RSTs, never are.
    pub accepted: bool,
}

/// Whether a connection in `state` shows that its server accepted it. (A kernel poll may bring
/// a short connection's SYN+ACK and FINs before the ACK that makes it ESTABLISHED: SYN|ACK-ACK
/// is what every accepted handshake passes through.)
const fn accepts(state: State) -> bool {
    matches!(state, State::SynAckAck | State::Established)
}

/// Every connection's numbers together (see the module's documentation).
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Connections listed since the start.
    pub opened: u64,
    /// Connections that left the table, by [`Ending::TABLE`].
    pub ended: [u64; 4],
    /// Sent since the start: by clients, by servers.
    pub sent: [Counters; 2],
    /// Listed now, by state (in the order of [`State::ALL`]).
    pub by_state: [u64; 6],
    /// Connections whose server end is an address of this host, by its port.
    pub ports: HashMap<u16, PortTally>,
}

impl Tally {
    /// Connections that left the table in `how`.
    #[must_use]
    pub fn ended(&self, how: Ending) -> u64 {
        how.index().map_or(0, |i| self.ended[i])
    }

    /// Connections listed now in `state`.
    #[must_use]
    pub const fn listed(&self, state: State) -> u64 {
        self.by_state[state.index()]
    }

    /// `c` is listed from now on, with what it sent so far.
    pub(super) fn open(&mut self, c: &Connection) {
        self.opened += 1;
        self.by_state[c.state().index()] += 1;
        self.count(c, c.client_sent(), c.server_sent());
        if let Some(p) = self.port(c) {
            p.connections += 1;
            p.accepted |= accepts(c.state());
        }
    }

    /// Listed `c` sent `client` and `server` more, and its state was `before`.
    pub(super) fn advanced(&mut self, c: &Connection, before: State, sent: (Counters, Counters)) {
        if c.state() != before {
            self.by_state[before.index()] -= 1;
            self.by_state[c.state().index()] += 1;
        }
        self.count(c, sent.0, sent.1);
        if accepts(c.state()) {
            if let Some(p) = self.port(c) {
                p.accepted = true;
            }
        }
    }

    /// Listed `c` left the table in `how`.
    pub(super) fn close(&mut self, c: &Connection, how: Ending) {
        if let Some(i) = how.index() {
            self.ended[i] += 1;
        }
        self.by_state[c.state().index()] -= 1;
        if let Some(p) = self.port(c) {
            p.connections -= 1;
        }
    }

    fn count(&mut self, c: &Connection, client: Counters, server: Counters) {
        self.sent[0] = self.sent[0] + client;
        self.sent[1] = self.sent[1] + server;
        if let Some(p) = self.port(c) {
            p.sent[0] = p.sent[0] + client;
            p.sent[1] = p.sent[1] + server;
        }
    }

    /// The tally of the local port serving `c`, if its server is this host.
    fn port(&mut self, c: &Connection) -> Option<&mut PortTally> {
        c.local_server()
            .then(|| self.ports.entry(c.server().port()).or_default())
    }
}
