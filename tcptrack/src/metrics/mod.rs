//! Metrics for Prometheus (`--metrics`): bounded aggregates of the table, never one series per
//! connection. A sink of the monitor ([`Metrics`]) sets them at every refresh from the table's
//! [`Tally`] (what every connection did, kept as it happened) and what was lost; [`serve`]
//! answers scrapes with them in the OpenMetrics text format. A scrape reads numbers that the
//! last refresh set: its cost is the number of series, which the port bound caps, whatever
//! the number of connections.
//!
//! Counters are exact: each is the table's running total, so once traffic has stopped and a
//! refresh has passed, the bytes counters are the bytes sent.
//!
//! Per local server port (`tcptrack_server_*`), series are bounded by `--metrics-ports N`, and
//! stay monotonic by one rule: a port gets its own series once something here accepted a
//! connection on it (answered a handshake with SYN+ACK, or served one picked up mid-stream; a
//! port scan's SYNs answered by RSTs do not) while fewer than N ports have one, the busiest first when several qualify at one refresh; once it has its series it keeps
//! it while tcptrack runs. Everything else served by this host counts in `port="other"`: what a
//! port did before it had its own series stays there, so no counter ever goes back and the
//! ports' counters add up to all that local servers did.

mod serve;
pub mod web;

pub use serve::{bind, serve};
pub use web::Web;

use std::borrow::Cow;
use std::time::Duration;

use hashbrown::HashMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::error::Error;
use crate::monitor::{Flow, Monitor, Sink};
use crate::table::{Ending, State, Tally};

/// A label set of `N` labels.
type Labels<const N: usize> = [(&'static str, Cow<'static, str>); N];

/// The two senders of a connection, in the order of [`Tally::sent`].
const SENDERS: [&str; 2] = ["client", "server"];

/// What tcptrack says about itself in `tcptrack_info`.
#[derive(Clone, Debug)]
pub struct About {
    /// `kernel` or `libpcap` live, `file` for a capture.
    pub path: &'static str,
    /// The interface (or the capture file's name).
    pub interface: String,
}

/// Sets every metric from the monitor at each refresh.
pub struct Metrics {
    connections: Family<Labels<1>, Gauge>,
    opened: Counter,
    ended: Family<Labels<1>, Counter>,
    payload: Family<Labels<1>, Counter>,
    packets: Family<Labels<1>, Counter>,
    server_connections: Family<Labels<1>, Gauge>,
    server_payload: Family<Labels<2>, Counter>,
    events_lost: Counter,
    uncounted: Counter,
    one_way: Counter,
    evictions: Counter,
    dropped: Counter,
    flow_log_lost: Counter,
    ipfix_sent: Counter,
    ipfix_lost: Counter,
    refresh: Histogram,
    kernel_poll: Histogram,
    ports: PortSeries,
}

fn label(
    key: &'static str,
    value: impl Into<Cow<'static, str>>,
) -> (&'static str, Cow<'static, str>) {
    (key, value.into())
}

/// Raises `counter` to `total` (counters only grow; a total never goes back).
fn raise(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

fn gauge(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

impl Metrics {
    /// The metrics, registered in a new registry (which [`serve`] answers scrapes from), at
    /// most `ports` local server ports with series of their own.
    #[must_use]
    pub fn new(ports: u16, about: &About) -> (Self, Registry) {
        let m = Self {
            connections: Family::default(),
            opened: Counter::default(),
            ended: Family::default(),
            payload: Family::default(),
            packets: Family::default(),
            server_connections: Family::default(),
            server_payload: Family::default(),
            events_lost: Counter::default(),
            uncounted: Counter::default(),
            one_way: Counter::default(),
            evictions: Counter::default(),
            dropped: Counter::default(),
            flow_log_lost: Counter::default(),
            ipfix_sent: Counter::default(),
            ipfix_lost: Counter::default(),
            refresh: Histogram::new(exponential_buckets(0.000_1, 2.0, 15)),
            kernel_poll: Histogram::new(exponential_buckets(0.000_1, 2.0, 15)),
            ports: PortSeries::new(ports),
        };
        // Every series of a bounded label set from the start, so that a query finds a 0.
        for s in State::ALL {
            let _ = m.connections.get_or_create(&[label("state", s.name())]);
        }
        for how in Ending::TABLE {
            let _ = m.ended.get_or_create(&[label("how", how.name())]);
        }
        for s in SENDERS {
            let _ = m.payload.get_or_create(&[label("sender", s)]);
            let _ = m.packets.get_or_create(&[label("sender", s)]);
        }
        let mut r = Registry::default();
        m.register(&mut r, about);
        (m, r)
    }

    fn register(&self, r: &mut Registry, about: &About) {
        let info: Labels<3> = [
            label("version", env!("CARGO_PKG_VERSION")),
            label("path", about.path),
            label("interface", about.interface.clone()),
        ];
        r.register(
            "tcptrack",
            "What this tcptrack is and what it watches",
            Info::new(info),
        );
        r.register(
            "tcptrack_connections",
            "Connections listed now, by state",
            self.connections.clone(),
        );
        r.register(
            "tcptrack_connections_opened",
            "Connections listed since the start",
            self.opened.clone(),
        );
        r.register(
            "tcptrack_connections_ended",
            "Connections forgotten since the start, by how they ended",
            self.ended.clone(),
        );
        r.register_with_unit(
            "tcptrack_payload",
            "TCP payload sent, by the connection's side",
            Unit::Bytes,
            self.payload.clone(),
        );
        r.register(
            "tcptrack_packets",
            "Packets sent, by the connection's side",
            self.packets.clone(),
        );
        r.register(
            "tcptrack_server_connections",
            "Connections listed now that this host serves, by local port",
            self.server_connections.clone(),
        );
        r.register_with_unit(
            "tcptrack_server_payload",
            "TCP payload of connections this host serves, by local port and side",
            Unit::Bytes,
            self.server_payload.clone(),
        );
        self.register_health(r);
    }

    /// What was lost or left out, and how long refreshes and polls take.
    fn register_health(&self, r: &mut Registry) {
        r.register(
            "tcptrack_kernel_events_lost",
            "Control events (SYN, FIN, RST) the kernel's ring buffer could not hold",
            self.events_lost.clone(),
        );
        r.register(
            "tcptrack_kernel_packets_uncounted",
            "Packets the kernel did not count: its flow map was full (see --max-connections)",
            self.uncounted.clone(),
        );
        r.register(
            "tcptrack_one_way_flows",
            "One-way flows taken in: tuples first seen without a handshake (listed once answered)",
            self.one_way.clone(),
        );
        r.register(
            "tcptrack_evictions",
            "One-way flows forgotten to make room for newer ones",
            self.evictions.clone(),
        );
        r.register(
            "tcptrack_dropped_packets",
            "Packets dropped before the table (a full channel, the capture's own drops)",
            self.dropped.clone(),
        );
        r.register(
            "tcptrack_flow_log_records_lost",
            "Flow log records that could not be written (its file system full, an I/O error)",
            self.flow_log_lost.clone(),
        );
        r.register(
            "tcptrack_ipfix_records",
            "IPFIX records sent to the collector (--ipfix)",
            self.ipfix_sent.clone(),
        );
        r.register(
            "tcptrack_ipfix_records_lost",
            "IPFIX records not sent: the exporter's queue full, the collector refusing or away",
            self.ipfix_lost.clone(),
        );
        r.register_with_unit(
            "tcptrack_refresh",
            "Time one refresh takes (the clock, expiry, the screen or output, metrics)",
            Unit::Seconds,
            self.refresh.clone(),
        );
        r.register_with_unit(
            "tcptrack_kernel_poll",
            "Time one poll of the kernel takes (wall time: the flip of its maps, a 2 ms grace, the drain, the events)",
            Unit::Seconds,
            self.kernel_poll.clone(),
        );
    }

    /// Sets every metric from `m`.
    pub fn update(&mut self, m: &Monitor) {
        let t = m.table.tally();
        for s in State::ALL {
            gauge(
                &self.connections.get_or_create(&[label("state", s.name())]),
                t.listed(s),
            );
        }
        raise(&self.opened, t.opened);
        for how in Ending::TABLE {
            raise(
                &self.ended.get_or_create(&[label("how", how.name())]),
                t.ended(how),
            );
        }
        for (i, s) in SENDERS.into_iter().enumerate() {
            raise(
                &self.payload.get_or_create(&[label("sender", s)]),
                t.sent[i].payload_bytes,
            );
            raise(
                &self.packets.get_or_create(&[label("sender", s)]),
                t.sent[i].packets,
            );
        }
        self.ports
            .update(t, &self.server_connections, &self.server_payload);
        if let Some(k) = m.kernel {
            raise(&self.events_lost, k.events_lost);
            raise(&self.uncounted, k.uncounted);
        }
        raise(&self.one_way, m.table.stats().unanswered_opened);
        raise(&self.evictions, m.table.stats().unanswered_evicted);
        raise(&self.dropped, m.dropped);
        raise(&self.flow_log_lost, m.flow_log_lost());
        let (sent, lost) = m.ipfix_records();
        raise(&self.ipfix_sent, sent);
        raise(&self.ipfix_lost, lost);
    }
}

impl Sink for Metrics {
    fn refresh(&mut self, m: &Monitor) -> Result<(), Error> {
        self.update(m);
        Ok(())
    }

    fn refreshed(&mut self, took: Duration) {
        self.refresh.observe(took.as_secs_f64());
    }

    fn polled(&mut self, took: &[Duration]) {
        for t in took {
            self.kernel_poll.observe(t.as_secs_f64());
        }
    }

    fn ended(&mut self, m: &Monitor) -> Result<Flow, Error> {
        self.update(m);
        Ok(Flow::Continue)
    }

    fn finish(&mut self, m: &Monitor) -> Result<(), Error> {
        self.update(m);
        Ok(())
    }
}

/// Which local server ports have series of their own (see the module's documentation).
struct PortSeries {
    /// Most ports with their own series.
    limit: usize,
    /// Ports with their own series.
    own: hashbrown::HashSet<u16>,
    /// Payload of each port (by sender) as of the last refresh: the next one hands on what
    /// came since, to the port's series or to `other`.
    last: HashMap<u16, [u64; 2]>,
}

const OTHER: &str = "other";

impl PortSeries {
    fn new(limit: u16) -> Self {
        Self {
            limit: usize::from(limit),
            own: hashbrown::HashSet::new(),
            last: HashMap::new(),
        }
    }

    /// Gives series to the busiest ports that qualify while there is room.
    fn assign(&mut self, t: &Tally) {
        let free = self.limit.saturating_sub(self.own.len());
        if free == 0 {
            return;
        }
        let mut waiting: Vec<(u64, u16)> = t
            .ports
            .iter()
            .filter(|(port, p)| p.accepted && !self.own.contains(*port))
            .map(|(&port, p)| {
                (
                    p.sent[0]
                        .payload_bytes
                        .saturating_add(p.sent[1].payload_bytes),
                    port,
                )
            })
            .collect();
        // The busiest first; of equals, the lower port.
        waiting.sort_by_key(|&(bytes, port)| (std::cmp::Reverse(bytes), port));
        self.own
            .extend(waiting.into_iter().take(free).map(|(_, port)| port));
    }

    fn update(
        &mut self,
        t: &Tally,
        conns: &Family<Labels<1>, Gauge>,
        payload: &Family<Labels<2>, Counter>,
    ) {
        self.assign(t);
        let mut other_conns = 0;
        let mut other_sent = [0u64; 2];
        for (&port, p) in &t.ports {
            let now = [p.sent[0].payload_bytes, p.sent[1].payload_bytes];
            let last = self.last.insert(port, now).unwrap_or([0; 2]);
            let new = [
                now[0].saturating_sub(last[0]),
                now[1].saturating_sub(last[1]),
            ];
            if self.own.contains(&port) {
                let name: Cow<'static, str> = port.to_string().into();
                gauge(
                    &conns.get_or_create(&[label("port", name.clone())]),
                    p.connections,
                );
                for (i, s) in SENDERS.into_iter().enumerate() {
                    let series =
                        payload.get_or_create(&[label("port", name.clone()), label("sender", s)]);
                    series.inc_by(new[i]);
                }
            } else {
                other_conns += p.connections;
                other_sent[0] += new[0];
                other_sent[1] += new[1];
            }
        }
        gauge(&conns.get_or_create(&[label("port", OTHER)]), other_conns);
        for (i, s) in SENDERS.into_iter().enumerate() {
            payload
                .get_or_create(&[label("port", OTHER), label("sender", s)])
                .inc_by(other_sent[i]);
        }
    }
}

#[cfg(test)]
mod tests;
