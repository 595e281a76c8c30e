use std::collections::HashMap as StdMap;
use std::net::UdpSocket;

use super::encode::{ie, REVERSE_PEN, TCPTRACK_PEN};
use super::*;
use crate::flow::{FlowUpdate, TcpFlags};
use crate::source::{SourceKind, SourceLabel, SourceMsg};
use crate::table::{ConnectionTable, TableConfig};

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const RST: u8 = TcpFlags::RST;
const FIN: u8 = TcpFlags::FIN;
const PSH: u8 = TcpFlags::PSH;

fn pkt(src: &str, dst: &str, ms: u64, flags: u8, seq: u32, ack: u32, len: u32) -> FlowUpdate {
    FlowUpdate::test_packet(src, dst, ms, flags, seq, ack, len)
}

/// A field as a template names it: element, enterprise (0: IANA's), length.
type Spec = (u16, u32, u16);

/// One decoded data record: each field's bytes, by element and enterprise (a repeated one keeps
/// every value, in order).
#[derive(Debug, Default)]
struct Decoded {
    template: u16,
    fields: StdMap<(u16, u32), Vec<Vec<u8>>>,
}

impl Decoded {
    fn bytes(&self, ie: u16, pen: u32) -> &[u8] {
        &self.fields[&(ie, pen)][0]
    }
    fn num(&self, ie: u16, pen: u32) -> u64 {
        self.bytes(ie, pen)
            .iter()
            .fold(0, |n, &b| n << 8 | u64::from(b))
    }
}

/// An IPFIX message's header fields and records, as a collector reads them (RFC 7011), with
/// the templates known so far in `templates`.
#[derive(Debug)]
struct Message {
    sequence: u32,
    domain: u32,
    records: Vec<Decoded>,
    had_templates: bool,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn decode(msg: &[u8], templates: &mut StdMap<u16, Vec<Spec>>) -> Message {
    assert_eq!(u16_at(msg, 0), 10, "version");
    assert_eq!(usize::from(u16_at(msg, 2)), msg.len(), "length");
    let mut out = Message {
        sequence: u32_at(msg, 8),
        domain: u32_at(msg, 12),
        records: Vec::new(),
        had_templates: false,
    };
    let mut at = 16;
    while at < msg.len() {
        let id = u16_at(msg, at);
        let len = usize::from(u16_at(msg, at + 2));
        assert!(len > 4, "no empty set");
        let set = &msg[at + 4..at + len];
        if id == 2 {
            out.had_templates = true;
            let mut p = 0;
            while p < set.len() {
                let (tid, count) = (u16_at(set, p), u16_at(set, p + 2));
                p += 4;
                let mut specs = Vec::new();
                for _ in 0..count {
                    let (ie, flen) = (u16_at(set, p), u16_at(set, p + 2));
                    p += 4;
                    let pen = if ie & 0x8000 != 0 {
                        p += 4;
                        u32_at(set, p - 4)
                    } else {
                        0
                    };
                    specs.push((ie & 0x7fff, pen, flen));
                }
                templates.insert(tid, specs);
            }
        } else {
            let specs = &templates[&id];
            let mut p = 0;
            while p < set.len() {
                let mut d = Decoded {
                    template: id,
                    ..Decoded::default()
                };
                for &(ie, pen, flen) in specs {
                    let n = if flen == 65_535 {
                        p += 1;
                        usize::from(set[p - 1])
                    } else {
                        usize::from(flen)
                    };
                    d.fields
                        .entry((ie, pen))
                        .or_default()
                        .push(set[p..p + n].to_vec());
                    p += n;
                }
                out.records.push(d);
            }
        }
        at += len;
    }
    out
}

/// A collector: a UDP socket on 127.0.0.1 that reads messages until none comes for a while.
struct Collector(UdpSocket);

impl Collector {
    fn new() -> Self {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        Self(s)
    }
    fn addr(&self) -> SocketAddr {
        self.0.local_addr().expect("addr")
    }
    fn messages(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65_536];
        while let Ok(n) = self.0.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    /// The messages, decoded in order, and the templates they defined.
    fn decoded(&self) -> (Vec<Message>, StdMap<u16, Vec<Spec>>) {
        let mut templates = StdMap::new();
        let msgs = self
            .messages()
            .iter()
            .map(|b| decode(b, &mut templates))
            .collect();
        (msgs, templates)
    }

    /// Every data record of the messages, in order.
    fn records(&self) -> Vec<Decoded> {
        self.decoded()
            .0
            .into_iter()
            .flat_map(|m| m.records)
            .collect()
    }
}

fn config(collector: SocketAddr, standard_only: bool) -> Config {
    Config {
        collector,
        transport: Transport::Udp,
        active_timeout: Duration::from_secs(60),
        domain: 7,
        standard_only,
    }
}

fn monitor() -> Monitor {
    let cfg = TableConfig {
        report_ended: true,
        ..TableConfig::default()
    };
    Monitor::new(
        ConnectionTable::new(cfg),
        SourceLabel::File("test.pcap".into()),
        SourceKind::Capture,
    )
}

fn hand_over(m: &mut Monitor, x: &mut Ipfix) {
    let ended = m.table.take_ended();
    x.departed(m, &ended).expect("departed");
}

/// A closed connection (100 bytes up, 30 down), a reset one and an IPv6 one still open, seen
/// from 1 s on; then 5 s.
fn three_connections(m: &mut Monitor) {
    let (c, s, r, o6, s6) = (
        "198.18.0.1:40000",
        "198.18.0.2:80",
        "198.18.0.1:40001",
        "[fd00::1]:40002",
        "[fd00::2]:443",
    );
    m.handle(SourceMsg::Batch(vec![
        // Closed: 100 bytes up, 30 down.
        pkt(c, s, 1_000, SYN, 0, 0, 0),
        pkt(s, c, 1_001, SYN | ACK, 0, 1, 0),
        pkt(c, s, 1_002, ACK | PSH, 1, 1, 100),
        pkt(s, c, 1_003, ACK, 1, 101, 30),
        pkt(c, s, 1_004, FIN | ACK, 101, 31, 0),
        pkt(s, c, 1_005, FIN | ACK, 31, 102, 0),
        pkt(c, s, 1_006, ACK, 102, 32, 0),
        // Reset.
        pkt(r, s, 1_010, SYN, 0, 0, 0),
        pkt(s, r, 1_011, RST | ACK, 0, 1, 0),
        // IPv6, open at exit.
        pkt(o6, s6, 1_020, SYN, 0, 0, 0),
        pkt(s6, o6, 1_021, SYN | ACK, 0, 1, 0),
        pkt(o6, s6, 1_022, ACK, 1, 1, 5),
    ]))
    .expect("batch");
    m.advance_to(Duration::from_secs(5), false);
}

#[test]
fn each_connection_is_one_two_way_record_the_client_its_source() {
    let collector = Collector::new();
    let mut x = Ipfix::start(&config(collector.addr(), false), 14, false, false).expect("start");
    let mut m = monitor();
    three_connections(&mut m);
    hand_over(&mut m, &mut x);
    x.exit(&m).expect("exit");
    let (msgs, _) = collector.decoded();
    assert!(msgs[0].had_templates, "templates first");
    assert!(msgs.iter().all(|m| m.domain == 7));
    // Sequence numbers count the records sent before each message.
    let mut sent = 0;
    for msg in &msgs {
        assert_eq!(msg.sequence, sent);
        sent += u32::try_from(msg.records.len()).expect("a few records");
    }
    let recs: Vec<&Decoded> = msgs.iter().flat_map(|m| &m.records).collect();
    assert_eq!(recs.len(), 3);
    // The two that left the table (closed, reset: end of flow), then the one open at exit
    // (forced end).
    let closed = recs[0];
    assert_eq!(closed.template, encode::TEMPLATE_V4);
    assert_eq!(closed.bytes(ie::SOURCE_IPV4_ADDRESS, 0), [198, 18, 0, 1]);
    assert_eq!(
        closed.bytes(ie::DESTINATION_IPV4_ADDRESS, 0),
        [198, 18, 0, 2]
    );
    assert_eq!(closed.num(ie::SOURCE_TRANSPORT_PORT, 0), 40_000);
    assert_eq!(closed.num(ie::DESTINATION_TRANSPORT_PORT, 0), 80);
    assert_eq!(closed.num(ie::PROTOCOL_IDENTIFIER, 0), 6);
    // IP bytes: the test's 54 header bytes are 14 of Ethernet and 40 of IP and TCP.
    assert_eq!(closed.num(ie::PACKET_DELTA_COUNT, 0), 4);
    assert_eq!(closed.num(ie::OCTET_DELTA_COUNT, 0), 100 + 4 * 40);
    assert_eq!(closed.num(ie::PACKET_DELTA_COUNT, REVERSE_PEN), 3);
    assert_eq!(closed.num(ie::OCTET_DELTA_COUNT, REVERSE_PEN), 30 + 3 * 40);
    assert_eq!(
        closed.num(ie::TCP_CONTROL_BITS, 0),
        u64::from(SYN | ACK | PSH | FIN)
    );
    assert_eq!(
        closed.num(ie::TCP_CONTROL_BITS, REVERSE_PEN),
        u64::from(SYN | ACK | FIN)
    );
    assert_eq!(closed.num(ie::FLOW_START_MILLISECONDS, 0), 1_000);
    assert_eq!(closed.num(ie::FLOW_END_MILLISECONDS, 0), 1_006);
    assert_eq!(
        closed.num(ie::FLOW_END_REASON, 0),
        EndReason::EndOfFlow as u64
    );
    assert_eq!(closed.num(ie::BIFLOW_DIRECTION, 0), 1);
    assert_eq!(closed.bytes(ie::PROCESS_NAME, TCPTRACK_PEN), b"");
    let reset = recs[1];
    assert_eq!(reset.num(ie::SOURCE_TRANSPORT_PORT, 0), 40_001);
    assert_eq!(
        reset.num(ie::FLOW_END_REASON, 0),
        EndReason::EndOfFlow as u64
    );
    assert_eq!(
        reset.num(ie::TCP_CONTROL_BITS, REVERSE_PEN),
        u64::from(RST | ACK)
    );
    let open = recs[2];
    assert_eq!(open.template, encode::TEMPLATE_V6);
    assert_eq!(
        open.bytes(ie::SOURCE_IPV6_ADDRESS, 0),
        "fd00::1"
            .parse::<std::net::Ipv6Addr>()
            .expect("v6")
            .octets()
    );
    assert_eq!(open.num(ie::DESTINATION_TRANSPORT_PORT, 0), 443);
    assert_eq!(
        open.num(ie::FLOW_END_REASON, 0),
        EndReason::ForcedEnd as u64
    );
    assert_eq!(open.num(ie::OCTET_DELTA_COUNT, 0), 5 + 2 * 40);
    assert_eq!(x.counts().sent.load(Ordering::Relaxed), 3);
    assert_eq!(x.counts().lost.load(Ordering::Relaxed), 0);
}

#[test]
fn the_standard_template_has_no_element_of_tcptracks_own() {
    let collector = Collector::new();
    let mut x = Ipfix::start(&config(collector.addr(), true), 14, false, false).expect("start");
    let mut m = monitor();
    m.handle(SourceMsg::Batch(vec![pkt(
        "198.18.0.1:1",
        "198.18.0.2:2",
        0,
        SYN,
        0,
        0,
        0,
    )]))
    .expect("batch");
    // A bare SYN is a connection only once answered: one with an answer.
    m.handle(SourceMsg::Batch(vec![pkt(
        "198.18.0.2:2",
        "198.18.0.1:1",
        1,
        SYN | ACK,
        0,
        1,
        0,
    )]))
    .expect("batch");
    x.exit(&m).expect("exit");
    let (msgs, templates) = collector.decoded();
    assert!(templates
        .values()
        .flatten()
        .all(|&(_, pen, _)| pen != TCPTRACK_PEN));
    assert_eq!(templates[&encode::TEMPLATE_V4].len(), 15);
    assert_eq!(msgs.iter().map(|m| m.records.len()).sum::<usize>(), 1);
}

/// The client and server of [`handshake_then`]'s connection.
const CLIENT: &str = "198.18.0.1:40000";
const SERVER: &str = "198.18.0.2:80";

/// An exporter with a 10 s active timeout (`offline`: for a capture) to a collector, and a
/// monitor that took a handshake at 0 s, then the packets `after`.
fn handshake_then(offline: bool, after: Vec<FlowUpdate>) -> (Collector, Ipfix, Monitor) {
    let collector = Collector::new();
    let mut cfg = config(collector.addr(), false);
    cfg.active_timeout = Duration::from_secs(10);
    let x = Ipfix::start(&cfg, 14, offline, false).expect("start");
    let mut m = monitor();
    let mut batch = vec![
        pkt(CLIENT, SERVER, 0, SYN, 0, 0, 0),
        pkt(SERVER, CLIENT, 1, SYN | ACK, 0, 1, 0),
    ];
    batch.extend(after);
    m.handle(SourceMsg::Batch(batch)).expect("batch");
    (collector, x, m)
}

#[test]
fn a_long_connection_sends_interim_records_whose_sums_are_its_totals() {
    let (collector, mut x, mut m) = handshake_then(false, Vec::new());
    let (c, s) = (CLIENT, SERVER);
    // 100 bytes each second for 35 seconds, a refresh after each.
    for i in 0..35u32 {
        let ms = 1_000 * u64::from(i + 1);
        m.handle(SourceMsg::Batch(vec![pkt(
            c,
            s,
            ms,
            ACK,
            1 + 100 * i,
            1,
            100,
        )]))
        .expect("batch");
        m.advance_to(Duration::from_millis(ms), false);
        x.refresh(&m).expect("refresh");
    }
    x.exit(&m).expect("exit");
    let recs = collector.records();
    let reasons: Vec<u64> = recs.iter().map(|r| r.num(ie::FLOW_END_REASON, 0)).collect();
    assert_eq!(reasons, [2, 2, 2, 4], "three active timeouts, then the end");
    let sum = |ie, pen| recs.iter().map(|r| r.num(ie, pen)).sum::<u64>();
    assert_eq!(sum(ie::PACKET_DELTA_COUNT, 0), 36);
    assert_eq!(sum(ie::OCTET_DELTA_COUNT, 0), 35 * 100 + 36 * 40);
    assert_eq!(sum(ie::PACKET_DELTA_COUNT, REVERSE_PEN), 1);
    // Each record starts where the one before ended.
    for w in recs.windows(2) {
        assert_eq!(
            w[1].num(ie::FLOW_START_MILLISECONDS, 0),
            w[0].num(ie::FLOW_END_MILLISECONDS, 0)
        );
    }
    assert_eq!(recs[0].num(ie::FLOW_START_MILLISECONDS, 0), 0);
    assert_eq!(recs[3].num(ie::FLOW_END_MILLISECONDS, 0), 35_000);
}

#[test]
fn many_records_go_in_messages_that_fit_a_datagram() {
    let collector = Collector::new();
    let mut x = Ipfix::start(&config(collector.addr(), false), 14, false, false).expect("start");
    let mut m = monitor();
    let mut batch = Vec::new();
    for port in 0..300u16 {
        let c = format!("198.18.0.1:{}", 10_000 + port);
        batch.push(pkt(&c, "198.18.0.2:80", 0, SYN, 0, 0, 0));
        batch.push(pkt("198.18.0.2:80", &c, 1, SYN | ACK, 0, 1, 0));
    }
    m.handle(SourceMsg::Batch(batch)).expect("batch");
    x.exit(&m).expect("exit");
    let raw = collector.messages();
    assert!(raw.len() > 1);
    assert!(raw.iter().all(|b| b.len() <= 1_400), "under the MTU");
    let mut templates = StdMap::new();
    let ports: Vec<u64> = raw
        .iter()
        .flat_map(|b| decode(b, &mut templates).records)
        .map(|r| r.num(ie::SOURCE_TRANSPORT_PORT, 0))
        .collect();
    assert_eq!(ports, (10_000..10_300).collect::<Vec<u64>>());
}

/// A record of one packet each way, handed to the exporter without a monitor.
fn one_record() -> Record {
    Record {
        client: "198.18.0.1:1".parse().expect("a"),
        server: "198.18.0.2:2".parse().expect("a"),
        octets: [41; 2],
        packets: [1; 2],
        start_ms: 0,
        end_ms: 0,
        flags: [0; 2],
        reason: EndReason::ForcedEnd,
        initiator_known: true,
        rtt_us: 0,
        retransmits: [0; 2],
        pid: 0,
        process: String::new(),
    }
}

#[test]
fn a_process_name_is_cut_on_a_character_boundary() {
    let r = Record {
        // 81 bytes, the 64th byte inside a character.
        process: format!("a{}", "é".repeat(40)),
        ..one_record()
    };
    let mut out = Vec::new();
    encode::record(&mut out, &r, false);
    assert_eq!(out[out.len() - 64], 63, "the name's length");
    assert!(std::str::from_utf8(&out[out.len() - 63..]).is_ok());
    assert!(out.len() <= encode::RECORD_MAX);
}

#[test]
fn a_collector_that_refuses_costs_the_records_it_misses_counted() {
    // A TCP port with no listener: refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut cfg = config(port, false);
    cfg.transport = Transport::Tcp;
    let mut x = Ipfix::start(&cfg, 14, false, false).expect("start");
    let mut m = monitor();
    m.handle(SourceMsg::Batch(vec![
        pkt("198.18.0.1:1", "198.18.0.2:2", 0, SYN, 0, 0, 0),
        pkt("198.18.0.2:2", "198.18.0.1:1", 1, SYN | ACK, 0, 1, 0),
    ]))
    .expect("batch");
    x.exit(&m).expect("exit");
    assert_eq!(x.counts().lost.load(Ordering::Relaxed), 1);
    assert_eq!(x.counts().sent.load(Ordering::Relaxed), 0);
}

#[test]
fn over_tcp_the_templates_lead_the_stream() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut cfg = config(listener.local_addr().expect("addr"), false);
    cfg.transport = Transport::Tcp;
    let mut x = Ipfix::start(&cfg, 14, false, false).expect("start");
    let mut m = monitor();
    m.handle(SourceMsg::Batch(vec![
        pkt("198.18.0.1:1", "198.18.0.2:2", 0, SYN, 0, 0, 0),
        pkt("198.18.0.2:2", "198.18.0.1:1", 1, SYN | ACK, 0, 1, 0),
    ]))
    .expect("batch");
    x.exit(&m).expect("exit");
    let (mut stream, _) = listener.accept().expect("accept");
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut all).expect("read");
    let mut templates = StdMap::new();
    let msg = decode(&all, &mut templates);
    assert!(msg.had_templates);
    assert_eq!(msg.records.len(), 1);
    assert_eq!(x.counts().sent.load(Ordering::Relaxed), 1);
}

#[test]
fn a_stalled_collector_costs_the_records_it_does_not_take_and_never_holds_the_sender() {
    // Accepts, and never reads: the stream fills, then every write waits.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = std::thread::spawn(move || {
        let mut streams = Vec::new();
        listener.set_nonblocking(true).expect("nonblocking");
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < until {
            if let Ok((s, _)) = listener.accept() {
                streams.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let mut sender = send::Sender::start(send::Options {
        collector: addr,
        transport: Transport::Tcp,
        standard_only: true,
        domain: 0,
        say: false,
    })
    .expect("start");
    // 200 batches of 1,000 records, about 17 MB: more than the stream's buffers take.
    let batches = vec![vec![one_record(); 1_000]; 200];
    let started = std::time::Instant::now();
    for b in batches {
        sender.send(b);
    }
    // Handing over never waited for the collector: a send that did would take the write's
    // 2-second timeout at least.
    let handed = started.elapsed();
    assert!(sender.close(Duration::from_secs(60)), "the exporter ended");
    let (sent, lost) = totals(&sender.counts());
    assert_eq!(sent + lost, 200_000, "every record accounted for");
    assert!(lost > 0, "a stalled collector misses records");
    assert!(handed < Duration::from_secs(2), "handed over in {handed:?}");
    drop(held);
}

/// One connection: a handshake at 0 s and 100 bytes at 10.5 s, refreshed every second to
/// 20 s, then the end; the records `x` sent.
fn quiet_after_ten_seconds(offline: bool) -> Vec<Decoded> {
    let data = pkt(CLIENT, SERVER, 10_500, ACK, 1, 1, 100);
    let (collector, mut x, mut m) = handshake_then(offline, vec![data]);
    for sec in 1..=20 {
        m.advance_to(Duration::from_secs(sec), false);
        x.refresh(&m).expect("refresh");
    }
    x.exit(&m).expect("exit");
    collector.records()
}

#[test]
fn no_record_carries_nothing_and_a_capture_has_one_a_connection() {
    // Live: the interim record covered all it carried; its end adds no empty record.
    let live = quiet_after_ten_seconds(false);
    let reasons: Vec<u64> = live.iter().map(|r| r.num(ie::FLOW_END_REASON, 0)).collect();
    assert_eq!(reasons, [2]);
    assert_eq!(live[0].num(ie::PACKET_DELTA_COUNT, 0), 2);
    // A capture file: no interim record, one at the end with everything.
    let file = quiet_after_ten_seconds(true);
    let reasons: Vec<u64> = file.iter().map(|r| r.num(ie::FLOW_END_REASON, 0)).collect();
    assert_eq!(reasons, [4]);
    assert_eq!(file[0].num(ie::PACKET_DELTA_COUNT, 0), 2);
    assert_eq!(file[0].num(ie::PACKET_DELTA_COUNT, REVERSE_PEN), 1);
}
