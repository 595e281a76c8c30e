use super::*;
use crate::flow::{FlowUpdate, TcpFlags};
use crate::listening::ListeningSockets;
use crate::source::{SourceKind, SourceLabel, SourceMsg};
use crate::table::{ConnectionTable, TableConfig};
use std::net::SocketAddr;

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;

fn pkt(src: &str, dst: &str, ms: u64, flags: u8, seq: u32, ack: u32, len: u32) -> FlowUpdate {
    FlowUpdate::test_packet(src, dst, ms, flags, seq, ack, len)
}

/// A monitor whose table knows 198.18.0.2 as this host's address.
fn monitor() -> Monitor {
    let mut table = ConnectionTable::new(TableConfig::default());
    table.set_listening(ListeningSockets::new(
        Vec::new(),
        ["198.18.0.2".parse().expect("ip")],
    ));
    Monitor::new(table, SourceLabel::Live("test".into()), SourceKind::Capture)
}

/// A whole connection from `client` to `server`: handshake, `up` bytes, `down` bytes, and
/// a close, from `ms` on.
fn connection(client: &str, server: &str, ms: u64, up: u32, down: u32) -> Vec<FlowUpdate> {
    vec![
        pkt(client, server, ms, SYN, 0, 0, 0),
        pkt(server, client, ms + 1, SYN | ACK, 0, 1, 0),
        pkt(client, server, ms + 2, ACK, 1, 1, up),
        pkt(server, client, ms + 3, ACK, 1, 1 + up, down),
        pkt(client, server, ms + 4, FIN | ACK, 1 + up, 1 + down, 0),
        pkt(server, client, ms + 5, FIN | ACK, 1 + down, 2 + up, 0),
        pkt(client, server, ms + 6, ACK, 2 + up, 2 + down, 0),
    ]
}

fn feed(m: &mut Monitor, updates: Vec<FlowUpdate>) {
    m.handle(SourceMsg::Batch(updates)).expect("batch");
}

fn about() -> About {
    About {
        path: "kernel",
        interface: "veth-a".into(),
    }
}

/// The scrape's text.
fn scrape(r: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, r).expect("encode");
    text
}

/// The value of the sample `series` (name and labels as written) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The samples in `text` (lines that are not comments).
fn samples(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#')).count()
}

#[test]
fn counters_are_the_table_s_exact_totals_under_the_issue_s_names() {
    let mut m = monitor();
    let (mut metrics, registry) = Metrics::new(50, &about());
    feed(
        &mut m,
        connection("198.18.0.1:40000", "198.18.0.2:8080", 0, 1000, 250),
    );
    feed(
        &mut m,
        connection("198.18.0.1:40001", "198.18.0.9:443", 10, 7, 3),
    );
    metrics.update(&m);
    metrics.refreshed(Duration::from_millis(3));
    let text = scrape(&registry);
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in {text}"));
    assert_eq!(
        v(r#"tcptrack_payload_bytes_total{sender="client"}"#),
        1007.0
    );
    assert_eq!(v(r#"tcptrack_payload_bytes_total{sender="server"}"#), 253.0);
    assert_eq!(v(r#"tcptrack_packets_total{sender="client"}"#), 8.0);
    assert_eq!(v(r#"tcptrack_packets_total{sender="server"}"#), 6.0);
    assert_eq!(v("tcptrack_connections_opened_total"), 2.0);
    assert_eq!(v(r#"tcptrack_connections{state="CLOSED"}"#), 2.0);
    assert_eq!(v(r#"tcptrack_connections{state="ESTABLISHED"}"#), 0.0);
    assert_eq!(v(r#"tcptrack_connections_ended_total{how="closed"}"#), 0.0);
    // Only the connection this host serves counts by port.
    assert_eq!(v(r#"tcptrack_server_connections{port="8080"}"#), 1.0);
    assert_eq!(
        v(r#"tcptrack_server_payload_bytes_total{port="8080",sender="client"}"#),
        1000.0
    );
    assert_eq!(
        v(r#"tcptrack_server_payload_bytes_total{port="8080",sender="server"}"#),
        250.0
    );
    assert_eq!(v(r#"tcptrack_server_connections{port="other"}"#), 0.0);
    for name in [
        "tcptrack_kernel_events_lost_total",
        "tcptrack_kernel_packets_uncounted_total",
        "tcptrack_one_way_flows_total",
        "tcptrack_evictions_total",
        "tcptrack_dropped_packets_total",
        "tcptrack_flow_log_records_lost_total",
        "tcptrack_ipfix_records_total",
        "tcptrack_ipfix_records_lost_total",
        "tcptrack_refresh_seconds_count",
        "tcptrack_kernel_poll_seconds_count",
        r#"tcptrack_info{version="0.1.0",path="kernel",interface="veth-a"}"#,
    ] {
        assert!(value(&text, name).is_some(), "{name} in {text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    // Past -r, both are forgotten: ended, as closed, and no longer listed.
    m.advance_to(Duration::from_secs(5), false);
    metrics.update(&m);
    let text = scrape(&registry);
    assert_eq!(
        value(&text, r#"tcptrack_connections_ended_total{how="closed"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(&text, r#"tcptrack_connections{state="CLOSED"}"#),
        Some(0.0)
    );
    assert_eq!(
        value(&text, r#"tcptrack_server_connections{port="8080"}"#),
        Some(0.0)
    );
}

#[test]
fn the_busiest_ports_get_series_the_rest_is_other_and_nothing_goes_back() {
    let mut m = monitor();
    let (mut metrics, registry) = Metrics::new(3, &about());
    // Ports 9001..=9005, the higher the busier, all in one refresh.
    for (i, port) in (9001..=9005u32).enumerate() {
        let client = format!("198.18.0.1:{}", 40_000 + i);
        let server = format!("198.18.0.2:{port}");
        feed(&mut m, connection(&client, &server, 0, port, 1));
    }
    // A scan of port 9100 (SYN, no answer): not accepted, so no series of its own yet.
    feed(
        &mut m,
        vec![pkt("198.18.0.1:50000", "198.18.0.2:9100", 1, SYN, 0, 0, 0)],
    );
    metrics.update(&m);
    let text = scrape(&registry);
    let up = |text: &str, port: &str| {
        value(
            text,
            &format!(r#"tcptrack_server_payload_bytes_total{{port="{port}",sender="client"}}"#),
        )
    };
    assert_eq!(up(&text, "9005"), Some(9005.0));
    assert_eq!(up(&text, "9004"), Some(9004.0));
    assert_eq!(up(&text, "9003"), Some(9003.0));
    assert_eq!(up(&text, "9002"), None, "{text}");
    assert_eq!(up(&text, "other"), Some(9002.0 + 9001.0));
    assert_eq!(
        value(&text, r#"tcptrack_server_connections{port="other"}"#),
        Some(3.0),
        "9001, 9002 and the scanned 9100"
    );
    // Later, 9002 gets busier than anyone: there is no room, it stays in other, which grows.
    feed(
        &mut m,
        connection("198.18.0.1:41000", "198.18.0.2:9002", 100, 50_000, 0),
    );
    metrics.update(&m);
    let text = scrape(&registry);
    assert_eq!(up(&text, "9002"), None);
    assert_eq!(up(&text, "other"), Some(9002.0 + 9001.0 + 50_000.0));
    // All ports together are all that local servers received.
    let total: f64 = ["9005", "9004", "9003", "other"]
        .iter()
        .filter_map(|p| up(&text, p))
        .sum();
    assert_eq!(
        total,
        value(&text, r#"tcptrack_payload_bytes_total{sender="client"}"#).expect("total")
    );
}

#[test]
fn a_port_that_gets_its_series_late_leaves_what_came_before_in_other() {
    let mut m = monitor();
    let (mut metrics, registry) = Metrics::new(50, &about());
    // Before anything here accepted a connection on port 7000, a SYN and 10 bytes that no
    // SYN+ACK answered.
    feed(
        &mut m,
        vec![
            pkt("198.18.0.1:40000", "198.18.0.2:7000", 0, SYN, 0, 0, 0),
            pkt("198.18.0.1:40000", "198.18.0.2:7000", 1, ACK, 1, 1, 10),
        ],
    );
    metrics.update(&m);
    let before = scrape(&registry);
    let other = r#"tcptrack_server_payload_bytes_total{port="other",sender="client"}"#;
    let own = r#"tcptrack_server_payload_bytes_total{port="7000",sender="client"}"#;
    assert_eq!(value(&before, other), Some(10.0));
    assert_eq!(value(&before, own), None);
    feed(
        &mut m,
        connection("198.18.0.1:40001", "198.18.0.2:7000", 10, 20, 0),
    );
    metrics.update(&m);
    let after = scrape(&registry);
    assert_eq!(value(&after, other), Some(10.0), "other never goes back");
    assert_eq!(value(&after, own), Some(20.0));
}

#[test]
fn a_flood_of_tuples_adds_no_series_beyond_the_port_bound() {
    let mut m = monitor();
    let (mut metrics, registry) = Metrics::new(50, &about());
    metrics.update(&m);
    let empty = samples(&scrape(&registry));
    // 100,000 one-way tuples to local ports, and 1,000 ports that served real connections.
    let flood: Vec<FlowUpdate> = (0..100_000u32)
        .map(|i| {
            let src = format!("198.19.{}.{}:{}", (i >> 8) & 255, i & 255, 1024 + (i >> 16));
            let port = 1 + (i % 60_000);
            pkt(&src, &format!("198.18.0.2:{port}"), 1, ACK, 1, 1, 0)
        })
        .collect();
    feed(&mut m, flood);
    for port in 0..1_000u16 {
        let client = format!("198.18.0.1:{}", 20_000 + port);
        let server = format!("198.18.0.2:{}", 10_000 + port);
        feed(&mut m, connection(&client, &server, 2, 1, 1));
    }
    metrics.update(&m);
    let text = scrape(&registry);
    // Each port with a series of its own has three: connections, payload by two senders;
    // `other` was there from the first refresh.
    assert_eq!(samples(&text), empty + 50 * 3, "{text}");
    // Every tuple taken in as a one-way flow, and those beyond the table's cap (65,536) told.
    assert_eq!(
        value(&text, "tcptrack_one_way_flows_total"),
        Some(100_000.0)
    );
    assert_eq!(
        value(&text, "tcptrack_evictions_total"),
        Some(100_000.0 - 65_536.0)
    );
}

#[test]
fn churn_leaves_nothing_behind() {
    // 30,000 connections to three local ports, each closed and forgotten as time goes: the
    // table, the tally's ports and the series stay as they were after the first thousand.
    let mut m = monitor();
    let (mut metrics, registry) = Metrics::new(50, &about());
    let mut after_first = None;
    for i in 0..30_000u32 {
        let client = format!("198.18.1.{}:{}", 1 + i / 50_000, 10_000 + i % 50_000);
        let server = format!("198.18.0.2:{}", 8080 + i % 3);
        let ms = u64::from(i) * 10;
        feed(&mut m, connection(&client, &server, ms, 100, 10));
        if i % 1_000 == 999 {
            m.advance_to(Duration::from_millis(ms), false);
            metrics.update(&m);
            let now = (
                m.table.len(),
                m.table.tally().ports.len(),
                samples(&scrape(&registry)),
            );
            assert!(now.0 <= 1_000, "{now:?}");
            let first = *after_first.get_or_insert(now);
            assert_eq!((now.1, now.2), (first.1, first.2), "at {i}");
        }
    }
    let text = scrape(&registry);
    assert_eq!(
        value(&text, r#"tcptrack_payload_bytes_total{sender="client"}"#),
        Some(100.0 * 30_000.0)
    );
}

/// The endpoint on a port of its own on the loopback, within `limits`, on this test's runtime.
fn endpoint(limits: serve::Limits) -> SocketAddr {
    let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_m, registry) = Metrics::new(8, &about());
    tokio::spawn(
        serve::serve_within(listener, registry, limits, web::Web::default()).expect("serve"),
    );
    addr
}

/// One request `head` to `addr`: the whole answer. A minute is the guard against a server
/// that never answers, not a speed bound (a loopback scrape takes milliseconds).
async fn ask(addr: SocketAddr, head: &[u8]) -> String {
    tokio::time::timeout(Duration::from_secs(60), ask_unguarded(addr, head))
        .await
        .expect("an answer")
}

async fn ask_unguarded(addr: SocketAddr, head: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // A server that refuses a head closes before it has read it all.
    let _ = s.write_all(head).await;
    let mut answer = Vec::new();
    // A server that closes first may reset: what was read is the answer.
    let _ = s.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: tcptrack\r\nConnection: close\r\n\r\n";

/// Connections that never finish a request (silent, or half a head) do not keep a scrape out,
/// however many: with a head timeout of an hour, a scrape that waited for one of them would
/// never come.
#[tokio::test]
async fn idle_connections_and_half_requests_do_not_keep_a_scrape_out() {
    let limits = serve::Limits {
        head_timeout: Duration::from_secs(3600),
        ..serve::Limits::DEFAULT
    };
    let addr = endpoint(limits);
    let mut idle = Vec::new();
    for i in 0..300 {
        use tokio::io::AsyncWriteExt as _;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        if i % 2 == 0 {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost:")
                .await
                .expect("half a head");
        }
        idle.push(s);
    }
    for _ in 0..3 {
        let answer = ask(addr, SCRAPE).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("# EOF\n"), "{answer}");
    }
    drop(idle);
}

/// A head larger than the limit (64 KiB, well within hyper's own default of about 400 KiB;
/// and 1 MiB) gets 431 and the connection closes; a scrape after it is answered.
#[tokio::test]
async fn a_huge_head_is_refused() {
    let addr = endpoint(serve::Limits::DEFAULT);
    for size in [64 << 10, 1 << 20] {
        let mut head = b"GET /metrics HTTP/1.1\r\nHost: tcptrack\r\nX-Big: ".to_vec();
        head.extend(std::iter::repeat_n(b'x', size));
        head.extend_from_slice(b"\r\n\r\n");
        let answer = ask(addr, &head).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{size}: {}",
            answer.lines().next().unwrap_or("")
        );
    }
    assert!(ask(addr, SCRAPE).await.starts_with("HTTP/1.1 200"));
}

/// Past the limit of open connections, the oldest that has sent nothing is closed first; one
/// that has asked and waits on a kept-alive connection stays while quiet ones remain.
#[tokio::test]
async fn past_the_limit_the_oldest_quiet_connection_goes() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let limits = serve::Limits {
        open: 4,
        head_timeout: Duration::from_secs(3600),
        ..serve::Limits::DEFAULT
    };
    let addr = endpoint(limits);
    // A kept-alive scraper, answered once.
    let mut kept = tokio::net::TcpStream::connect(addr).await.expect("connect");
    kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: tcptrack\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0; 64 * 1024];
    let mut got = String::new();
    while !got.ends_with("# EOF\n") {
        let n = kept.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before its answer: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Quiet ones up to the limit, then one more: the first quiet one is closed.
    let mut quiet = Vec::new();
    for _ in 0..4 {
        quiet.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        // Accepted before the next (the answer of a scrape means the loop went round).
        assert!(ask(addr, SCRAPE).await.starts_with("HTTP/1.1 200"));
    }
    let n = tokio::time::timeout(Duration::from_secs(60), quiet[0].read(&mut buf))
        .await
        .expect("the oldest quiet connection closed");
    assert_eq!(n.unwrap_or(0), 0, "closed, with nothing said");
    // The kept-alive scraper is still served.
    kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: tcptrack\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut again = Vec::new();
    let _ = kept.read_to_end(&mut again).await;
    assert!(String::from_utf8_lossy(&again).starts_with("HTTP/1.1 200"));
}
