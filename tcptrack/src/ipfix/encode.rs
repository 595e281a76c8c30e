//! IPFIX messages (RFC 7011): a connection as one two-way record (RFC 5103), in a template of
//! standard information elements, the reverse direction's under PEN 29305, and tcptrack's own
//! elements after them (unless `--ipfix-standard-only`).

use std::net::{IpAddr, SocketAddr};

/// IPFIX's version number, the first field of every message.
pub const VERSION: u16 = 10;
/// The Set ID of a Template Set.
const TEMPLATE_SET: u16 = 2;
/// A message's header: version, length, export time, sequence number, observation domain.
pub const MESSAGE_HEADER: usize = 16;
/// A set's header: its ID and length.
const SET_HEADER: usize = 4;
/// The enterprise bit of an information element's ID.
const ENTERPRISE_BIT: u16 = 0x8000;
/// RFC 5103's Private Enterprise Number for reverse information elements.
pub const REVERSE_PEN: u32 = 29_305;
/// The enterprise number of tcptrack's own elements: RFC 5612's number for documentation, as
/// tcptrack has none registered (see the README's IPFIX section).
pub const TCPTRACK_PEN: u32 = 32_473;
/// The length of a variable-length element, in a template.
const VARIABLE: u16 = 65_535;

/// The template IDs: IPv4 and IPv6 connections. Not 256 and up, which other exporters on the
/// same host take first (softflowd: 256, 1024, 1025, 2048, 2049), and which a collector keeps
/// apart only by the observation domain (`--ipfix-domain`).
pub const TEMPLATE_V4: u16 = 3_804;
pub const TEMPLATE_V6: u16 = 3_806;

/// Information elements (IANA), by ID.
pub mod ie {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const PACKET_DELTA_COUNT: u16 = 2;
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const TCP_CONTROL_BITS: u16 = 6;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const FLOW_END_REASON: u16 = 136;
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    pub const FLOW_END_MILLISECONDS: u16 = 153;
    pub const BIFLOW_DIRECTION: u16 = 239;
    /// tcptrack's own (under [`super::TCPTRACK_PEN`]): the smoothed round-trip time in
    /// microseconds (0: unknown), segments the client and the server sent again, the pid and
    /// the command of this host's process (0 and empty: none known).
    pub const RTT_MICROSECONDS: u16 = 1;
    pub const CLIENT_RETRANSMISSIONS: u16 = 2;
    pub const SERVER_RETRANSMISSIONS: u16 = 3;
    pub const PROCESS_ID: u16 = 4;
    pub const PROCESS_NAME: u16 = 5;
}

/// Why a record was sent (`flowEndReason`, IANA's values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Idle for longer than its state allows.
    IdleTimeout = 1,
    /// An interim record of a connection still open (`--ipfix-active-timeout`).
    ActiveTimeout = 2,
    /// Closed (both FINs) or reset.
    EndOfFlow = 3,
    /// Still open when tcptrack stopped.
    ForcedEnd = 4,
    /// Forgotten to make room.
    LackOfResources = 5,
}

/// One connection's record: the client's end as the source, so that the forward counts are
/// what the client sent and the reverse ones what the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Octets (IP header and payload) and packets the client sent, then the server.
    pub octets: [u64; 2],
    pub packets: [u64; 2],
    /// Milliseconds since the Unix epoch.
    pub start_ms: u64,
    pub end_ms: u64,
    /// TCP flags the client sent, then the server (or-ed).
    pub flags: [u8; 2],
    pub reason: EndReason,
    /// The client is known to have opened it (its SYN was seen): `biflowDirection` 1
    /// (initiator); else 0 (arbitrary: picked up mid-stream).
    pub initiator_known: bool,
    /// tcptrack's own elements (0 or empty where unknown).
    pub rtt_us: u32,
    pub retransmits: [u32; 2],
    pub pid: u32,
    pub process: String,
}

/// One field of a template: element ID, length, enterprise number.
type Field = (u16, u16, Option<u32>);

/// The fields of the template of `v6` connections, in the order records write them.
fn fields(v6: bool, standard_only: bool) -> Vec<Field> {
    let addr = if v6 { 16 } else { 4 };
    let (src, dst) = if v6 {
        (ie::SOURCE_IPV6_ADDRESS, ie::DESTINATION_IPV6_ADDRESS)
    } else {
        (ie::SOURCE_IPV4_ADDRESS, ie::DESTINATION_IPV4_ADDRESS)
    };
    let rev = Some(REVERSE_PEN);
    let mut f = vec![
        (src, addr, None),
        (dst, addr, None),
        (ie::SOURCE_TRANSPORT_PORT, 2, None),
        (ie::DESTINATION_TRANSPORT_PORT, 2, None),
        (ie::PROTOCOL_IDENTIFIER, 1, None),
        (ie::OCTET_DELTA_COUNT, 8, None),
        (ie::PACKET_DELTA_COUNT, 8, None),
        (ie::OCTET_DELTA_COUNT, 8, rev),
        (ie::PACKET_DELTA_COUNT, 8, rev),
        (ie::FLOW_START_MILLISECONDS, 8, None),
        (ie::FLOW_END_MILLISECONDS, 8, None),
        // The reverse flags before the forward ones: nfcapd (1.7) reads a reverse element
        // other than the counters as its forward one, and keeps the later of the two.
        (ie::TCP_CONTROL_BITS, 2, rev),
        (ie::TCP_CONTROL_BITS, 2, None),
        (ie::FLOW_END_REASON, 1, None),
        (ie::BIFLOW_DIRECTION, 1, None),
    ];
    if !standard_only {
        let own = Some(TCPTRACK_PEN);
        f.extend([
            (ie::RTT_MICROSECONDS, 4, own),
            (ie::CLIENT_RETRANSMISSIONS, 4, own),
            (ie::SERVER_RETRANSMISSIONS, 4, own),
            (ie::PROCESS_ID, 4, own),
            (ie::PROCESS_NAME, VARIABLE, own),
        ]);
    }
    f
}

/// Appends the Template Set of both templates to `out`.
pub fn template_set(out: &mut Vec<u8>, standard_only: bool) {
    let start = out.len();
    put16(out, TEMPLATE_SET);
    put16(out, 0);
    for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
        let f = fields(v6, standard_only);
        put16(out, id);
        put16(out, u16::try_from(f.len()).unwrap_or(u16::MAX));
        for (element, len, pen) in f {
            match pen {
                Some(pen) => {
                    put16(out, element | ENTERPRISE_BIT);
                    put16(out, len);
                    put32(out, pen);
                }
                None => {
                    put16(out, element);
                    put16(out, len);
                }
            }
        }
    }
    set_length(out, start);
}

/// The template a record goes in.
#[must_use]
pub const fn template_of(r: &Record) -> u16 {
    match r.client.ip() {
        IpAddr::V4(_) => TEMPLATE_V4,
        IpAddr::V6(_) => TEMPLATE_V6,
    }
}

/// The most a process name takes in a record (longer ones are cut, on a character boundary).
const PROCESS_MAX: usize = 64;

/// Appends record `r` (of `template_of(r)`) to `out`.
pub fn record(out: &mut Vec<u8>, r: &Record, standard_only: bool) {
    for a in [r.client.ip(), r.server.ip()] {
        match a {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    put16(out, r.client.port());
    put16(out, r.server.port());
    out.push(6);
    for v in [
        r.octets[0],
        r.packets[0],
        r.octets[1],
        r.packets[1],
        r.start_ms,
        r.end_ms,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    put16(out, u16::from(r.flags[1]));
    put16(out, u16::from(r.flags[0]));
    out.push(r.reason as u8);
    out.push(u8::from(r.initiator_known));
    if standard_only {
        return;
    }
    for v in [r.rtt_us, r.retransmits[0], r.retransmits[1], r.pid] {
        put32(out, v);
    }
    let mut end = r.process.len().min(PROCESS_MAX);
    while !r.process.is_char_boundary(end) {
        end -= 1;
    }
    // Under 255 bytes: the one-byte length form.
    out.push(u8::try_from(end).unwrap_or(u8::MAX));
    out.extend_from_slice(&r.process.as_bytes()[..end]);
}

/// The most bytes one record takes.
pub const RECORD_MAX: usize = 2 * 16 + 5 + 6 * 8 + 4 + 2 + 4 * 4 + 1 + PROCESS_MAX;

/// Starts a message in `out` (emptied): its header, the length filled in by [`finish`].
pub fn begin(out: &mut Vec<u8>, export_secs: u32, sequence: u32, domain: u32) {
    out.clear();
    put16(out, VERSION);
    put16(out, 0);
    put32(out, export_secs);
    put32(out, sequence);
    put32(out, domain);
}

/// Opens a Data Set of `template` at the end of `out`; returns where it starts.
pub fn begin_set(out: &mut Vec<u8>, template: u16) -> usize {
    let start = out.len();
    put16(out, template);
    put16(out, 0);
    start
}

/// Closes the set that starts at `start`: its length.
pub fn set_length(out: &mut [u8], start: usize) {
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Whether a set begun at `start` holds nothing yet.
#[must_use]
pub const fn set_is_empty(out: &[u8], start: usize) -> bool {
    out.len() == start + SET_HEADER
}

/// Fills in the message's length.
pub fn finish(out: &mut [u8]) {
    let len = u16::try_from(out.len()).unwrap_or(u16::MAX);
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
