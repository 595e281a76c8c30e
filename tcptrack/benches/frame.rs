//! Building and drawing one frame of the screen with 100,000 connections (target: under 50 ms),
//! unsorted and sorted by rate (the sort is redone every frame).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tcptrack::flow::{FlowUpdate, TcpFlags};
use tcptrack::monitor::Monitor;
use tcptrack::source::{SourceKind, SourceLabel};
use tcptrack::table::{ConnectionTable, TableConfig};
use tcptrack::tui::App;
use tcptrack::view::SortMode;

const CONNECTIONS: u32 = 100_000;

fn update(
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    ms: u64,
    flags: u8,
    len: u32,
) -> FlowUpdate {
    FlowUpdate {
        src,
        dst,
        ts: Duration::from_millis(ms),
        flags: TcpFlags(flags),
        seq: 1,
        ack: 1,
        segment_len: len,
        window: 512,
        payload_bytes: u64::from(len),
        wire_bytes: u64::from(len) + 54,
        packets: 1,
    }
}

fn monitor() -> Monitor {
    let mut t = ConnectionTable::new(TableConfig::default());
    let server: std::net::SocketAddr = "198.19.0.1:443".parse().expect("addr");
    for i in 0..CONNECTIONS {
        let b = i.to_be_bytes();
        let client = std::net::SocketAddr::from((
            [198, 18, b[1], b[2]],
            1024 + u16::from(b[3]) * 200 + u16::from(b[0]),
        ));
        t.apply(&update(client, server, 0, TcpFlags::SYN, 0));
        t.apply(&update(server, client, 1, TcpFlags::SYN | TcpFlags::ACK, 0));
        t.apply(&update(client, server, 2, TcpFlags::ACK, 0));
        t.apply(&update(server, client, 1_500, TcpFlags::ACK, i % 5_000));
    }
    assert_eq!(t.len(), CONNECTIONS as usize);
    let mut m = Monitor::new(
        t,
        SourceLabel::Live("kernel on bench0".into()),
        SourceKind::Capture,
    );
    m.now = Duration::from_millis(2_000);
    m
}

fn frame(c: &mut Criterion) {
    let m = monitor();
    let mut app = App::new();
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
    let mut g = c.benchmark_group("frame_100k_connections");
    g.sample_size(20);
    for sort in [SortMode::Unsorted, SortMode::Rate, SortMode::Bytes] {
        app.view.sort = sort;
        g.bench_function(format!("{sort:?}"), |b| {
            b.iter(|| {
                terminal.draw(|f| app.draw(f, &m)).expect("draw");
            });
        });
    }
    g.finish();
}

criterion_group!(benches, frame);
criterion_main!(benches);
