//! IPFIX export (`--ipfix HOST:PORT`): every connection as a two-way flow record (RFC 5103) to
//! a flow collector (nfcapd, pmacct, goflow2, ElastiFlow, ntopng), over UDP or TCP (RFC 7011).
//!
//! A connection's record goes when it leaves the table (closed or reset: end of flow; timed
//! out: idle timeout; at exit: forced end), as the flow log's does. A connection that lives
//! longer than `--ipfix-active-timeout` also sends interim records (active timeout), each with
//! what it carried since the record before: a collector's sums are the connection's totals.
//! Each record's span starts where the one before ended (the first at the connection's first
//! packet) and ends at its last packet so far.
//!
//! The client is the record's source: forward counts are what the client sent, reverse ones
//! (PEN 29305) what the server sent. Octets are IP bytes (header and payload), as routers and
//! softflowd count them: frame bytes less the link's header, per packet.

pub mod encode;
pub mod send;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;

pub use encode::{EndReason, Record};
pub use send::{Counts, Transport};

use crate::error::Error;
use crate::monitor::locals::Local;
use crate::monitor::{Flow, Monitor, Sink};
use crate::output::{Extra, WallClock};
use crate::table::{Connection, Counters, Ended, Ending};

/// What `--ipfix` and its options asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub collector: SocketAddr,
    pub transport: Transport,
    /// Interim records of connections open longer than this.
    pub active_timeout: Duration,
    /// The messages' observation domain.
    pub domain: u32,
    /// Standard information elements only (no tcptrack's own).
    pub standard_only: bool,
}

/// How long tcptrack's exit waits, at most, for the last records to go: the exporter gives up
/// on a message a TCP collector has not taken in 2 s by itself; this bounds the rest (over UDP,
/// up to 240,000 records a second).
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// A connection that had records before its end: what they covered.
#[derive(Clone, Copy, Debug)]
struct Covered {
    /// The last packet the last record counted.
    until: crate::flow::Timestamp,
    /// Its counts then, client's and server's.
    sent: [Counters; 2],
}

/// The exporter as a sink of the monitor.
pub struct Ipfix {
    sender: send::Sender,
    cfg: Config,
    /// Bytes before the IP header in each of the source's frames.
    link_header: u64,
    covered: HashMap<u64, Covered>,
    /// The source is a capture file: records wait for room in the queue rather than be lost
    /// (nothing to keep up with), and there are no interim records (one record a connection).
    offline: bool,
    /// When (table time) the open connections are next looked at for interim records.
    next_sweep: crate::flow::Timestamp,
}

impl Ipfix {
    /// Starts exporting as `cfg` says, frames of the source having `link_header` bytes before
    /// the IP header; `offline`: the source is a capture file; `say`: losses are said on stderr
    /// (not under the screen).
    ///
    /// # Errors
    /// The exporter's socket or thread cannot be made.
    pub fn start(
        cfg: &Config,
        link_header: usize,
        offline: bool,
        say: bool,
    ) -> Result<Self, Error> {
        let sender = send::Sender::start(send::Options {
            collector: cfg.collector,
            transport: cfg.transport,
            standard_only: cfg.standard_only,
            domain: cfg.domain,
            say,
        })
        .map_err(|source| Error::Ipfix {
            collector: cfg.collector,
            source,
        })?;
        Ok(Self {
            sender,
            cfg: cfg.clone(),
            link_header: u64::try_from(link_header).unwrap_or(0),
            covered: HashMap::new(),
            offline,
            next_sweep: Duration::ZERO,
        })
    }

    /// What it sent and lost, as it grows.
    #[must_use]
    pub fn counts(&self) -> Arc<Counts> {
        self.sender.counts()
    }

    /// The record of `c` from where the last one ended, sent for `reason`.
    fn record(
        &self,
        c: &Connection,
        reason: EndReason,
        clock: WallClock,
        local: Option<&Local>,
    ) -> Record {
        let covered = self.covered.get(&c.id());
        let sent = [c.client_sent(), c.server_sent()];
        let before = covered.map_or([Counters::default(); 2], |v| v.sent);
        let packets = [0, 1].map(|i| sent[i].packets.saturating_sub(before[i].packets));
        let frames = [0, 1].map(|i| sent[i].wire_bytes.saturating_sub(before[i].wire_bytes));
        let flags = c.tcp_flags();
        let mut r = Record {
            client: c.client(),
            server: c.server(),
            octets: [0, 1].map(|i| frames[i].saturating_sub(packets[i] * self.link_header)),
            packets,
            start_ms: clock.unix_ms(covered.map_or(c.first_seen(), |v| v.until)),
            end_ms: clock.unix_ms(c.last_seen()),
            flags,
            reason,
            initiator_known: flags[0] & crate::flow::TcpFlags::SYN != 0,
            rtt_us: 0,
            retransmits: [0; 2],
            pid: 0,
            process: String::new(),
        };
        if !self.cfg.standard_only {
            let extra = Extra::new(c, local);
            r.rtt_us = extra.rtt_us.unwrap_or(0);
            r.retransmits = [
                extra.client_retransmits.unwrap_or(0),
                extra.server_retransmits.unwrap_or(0),
            ];
            r.pid = extra.pid.unwrap_or(0);
            r.process = extra.process.unwrap_or_default();
        }
        r
    }

    /// Interim records of the connections whose span since their last record reached the
    /// active timeout. Looked at a few times per timeout, not at every refresh.
    fn sweep(&mut self, m: &Monitor) {
        if self.offline || m.now < self.next_sweep {
            return;
        }
        let every =
            (self.cfg.active_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        self.next_sweep = m.now + every;
        let clock = m.wall_clock();
        let mut due = Vec::new();
        for c in m.table.connections() {
            let from = self
                .covered
                .get(&c.id())
                .map_or(c.first_seen(), |v| v.until);
            if c.last_seen().saturating_sub(from) >= self.cfg.active_timeout {
                due.push(self.record(c, EndReason::ActiveTimeout, clock, m.locals.of(c)));
                self.covered.insert(
                    c.id(),
                    Covered {
                        until: c.last_seen(),
                        sent: [c.client_sent(), c.server_sent()],
                    },
                );
            }
        }
        if !due.is_empty() {
            self.sender.send(due);
        }
    }

    /// Hands `records` to the exporter, those that carry something: a connection whose last
    /// record covered all it carried (idle since an interim record) has no record at its end.
    fn send(&self, mut records: Vec<Record>) {
        records.retain(|r| r.packets != [0, 0]);
        if self.offline {
            self.sender.send_waiting(records);
        } else {
            self.sender.send(records);
        }
    }
}

/// The reason of a connection that left the table as `how`.
const fn reason(how: Ending) -> EndReason {
    match how {
        Ending::Closed | Ending::Reset => EndReason::EndOfFlow,
        Ending::Timeout => EndReason::IdleTimeout,
        Ending::Evicted => EndReason::LackOfResources,
        Ending::OpenAtExit => EndReason::ForcedEnd,
    }
}

impl Sink for Ipfix {
    fn refresh(&mut self, m: &Monitor) -> Result<(), Error> {
        self.sweep(m);
        Ok(())
    }

    fn departed(&mut self, m: &Monitor, ended: &[Ended]) -> Result<(), Error> {
        let clock = m.wall_clock();
        let records = ended
            .iter()
            .map(|e| self.record(&e.conn, reason(e.how), clock, m.locals.of(&e.conn)))
            .collect();
        for e in ended {
            self.covered.remove(&e.conn.id());
        }
        self.send(records);
        Ok(())
    }

    fn ended(&mut self, _m: &Monitor) -> Result<Flow, Error> {
        Ok(Flow::Continue)
    }

    fn hangup(&mut self, _m: &Monitor) -> Result<Flow, Error> {
        Ok(Flow::Stop)
    }

    /// A record for each connection still listed (forced end; end of flow for one closed or
    /// reset and still lingering), then the last records' wait.
    fn exit(&mut self, m: &Monitor) -> Result<(), Error> {
        let mut open: Vec<&Connection> = m.table.connections().collect();
        open.sort_by_key(|c| c.id());
        let clock = m.wall_clock();
        let records = open
            .into_iter()
            .map(|c| {
                let how = Ending::at_exit(c.state());
                self.record(c, reason(how), clock, m.locals.of(c))
            })
            .collect();
        self.send(records);
        self.covered.clear();
        // What it could not send in time is lost with tcptrack's exit, as records are.
        let _ = self.sender.close(EXIT_WAIT);
        Ok(())
    }
}

/// The records sent and lost so far, for the monitor's readers.
#[must_use]
pub fn totals(counts: &Counts) -> (u64, u64) {
    (
        counts.sent.load(Ordering::Relaxed),
        counts.lost.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests;
