use std::time::Duration;

use super::*;
use crate::flow::{FlowUpdate, TcpFlags};
use crate::source::{SourceKind, SourceLabel, SourceMsg};
use crate::table::{ConnectionTable, TableConfig};

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const RST: u8 = TcpFlags::RST;
const FIN: u8 = TcpFlags::FIN;

fn pkt(src: &str, dst: &str, ms: u64, flags: u8, seq: u32, ack: u32, len: u32) -> FlowUpdate {
    FlowUpdate::test_packet(src, dst, ms, flags, seq, ack, len)
}

/// A file of this test's own in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tcptrack-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        Self(p)
    }

    fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Hands what left `m`'s table to `log`, as the loop does.
fn hand_over(m: &mut Monitor, log: &mut FlowLog) {
    let ended = m.table.take_ended();
    log.departed(m, &ended).expect("write");
}

#[test]
fn one_record_per_connection_when_forgotten_and_the_open_ones_at_exit() {
    let file = TempFile::new("flowlog-records");
    let mut log = FlowLog::open(&FlowLogTarget::File(file.0.clone())).expect("open");
    let cfg = TableConfig {
        report_ended: true,
        ..TableConfig::default()
    };
    let mut m = Monitor::new(
        ConnectionTable::new(cfg),
        SourceLabel::File("test.pcap".into()),
        SourceKind::Capture,
    );
    let (c, s, r, o) = (
        "198.18.0.1:40000",
        "198.18.0.2:80",
        "198.18.0.1:40001",
        "198.18.0.1:40002",
    );
    let batch = vec![
        // Closed: handshake, 100 bytes up, 30 down, FINs both ways.
        pkt(c, s, 0, SYN, 0, 0, 0),
        pkt(s, c, 1, SYN | ACK, 0, 1, 0),
        pkt(c, s, 2, ACK, 1, 1, 100),
        pkt(s, c, 3, ACK, 1, 101, 30),
        pkt(c, s, 4, FIN | ACK, 101, 31, 0),
        pkt(s, c, 5, FIN | ACK, 31, 102, 0),
        pkt(c, s, 6, ACK, 102, 32, 0),
        // Reset.
        pkt(r, s, 10, SYN, 0, 0, 0),
        pkt(s, r, 11, RST | ACK, 0, 1, 0),
        // Open: established, 5 bytes.
        pkt(o, s, 20, SYN, 0, 0, 0),
        pkt(s, o, 21, SYN | ACK, 0, 1, 0),
        pkt(o, s, 22, ACK, 1, 1, 5),
    ];
    m.handle(SourceMsg::Batch(batch)).expect("batch");
    hand_over(&mut m, &mut log);
    assert!(file.records().is_empty(), "nothing forgotten yet");
    m.advance_to(Duration::from_secs(3), false);
    hand_over(&mut m, &mut log);
    m.advance_to(Duration::from_secs(4), false);
    hand_over(&mut m, &mut log);
    log.exit(&m).expect("exit");
    let recs = file.records();
    let row = |v: &serde_json::Value| {
        (
            v["client"].as_str().unwrap_or_default().to_owned(),
            v["state"].as_str().unwrap_or_default().to_owned(),
            v["how"].as_str().unwrap_or_default().to_owned(),
            v["client_payload_bytes"].as_u64(),
            v["server_payload_bytes"].as_u64(),
        )
    };
    let rows: Vec<_> = recs.iter().map(row).collect();
    let own = |a: &str, b: &str, h: &str, up, down| {
        (
            a.to_owned(),
            b.to_owned(),
            h.to_owned(),
            Some(up),
            Some(down),
        )
    };
    assert_eq!(
        rows,
        [
            own(c, "CLOSED", "closed", 100, 30),
            own(r, "RESET", "reset", 0, 0),
            own(o, "ESTABLISHED", "open_at_exit", 5, 0),
        ]
    );
    let first = &recs[0];
    assert_eq!(first["server"], "198.18.0.2:80");
    assert_eq!(first["first_seen"], "1970-01-01T00:00:00.000000000Z");
    assert_eq!(first["last_seen"], "1970-01-01T00:00:00.006000000Z");
    assert_eq!(first["duration"], 0.006);
    assert_eq!(first["payload_bytes"], 130);
    assert_eq!(first["packets"], 7);
    assert_eq!(first["client_packets"], 4);
    assert_eq!(first["bytes"], 130 + 7 * 54);
    assert_diagnostics(first);
}

/// What the packets of a test connection tell: the handshake's round trip and no
/// retransmission; no process (not a socket of this host).
fn assert_diagnostics(r: &serde_json::Value) {
    assert!(r["rtt_us"].is_u64(), "{r}");
    assert_eq!(r["client_retransmits"], 0);
    assert_eq!(r["server_retransmits"], 0);
    assert!(r["process"].is_null() && r["pid"].is_null(), "{r}");
}

#[test]
fn hangup_reopens_the_path_after_a_rotation() {
    let file = TempFile::new("flowlog-rotate");
    let rotated = TempFile::new("flowlog-rotate.1");
    let mut log = FlowLog::open(&FlowLogTarget::File(file.0.clone())).expect("open");
    let m = Monitor::new(
        ConnectionTable::new(TableConfig::default()),
        SourceLabel::File("test.pcap".into()),
        SourceKind::Capture,
    );
    let mut t = ConnectionTable::new(TableConfig {
        report_ended: true,
        ..TableConfig::default()
    });
    let mut ended = |port: u16, ms: u64| {
        let c = format!("198.18.0.1:{port}");
        t.apply(&pkt(&c, "198.18.0.2:80", ms, SYN, 0, 0, 0));
        t.apply(&pkt("198.18.0.2:80", &c, ms + 1, RST | ACK, 0, 1, 0));
        t.expire(Duration::from_millis(ms) + Duration::from_secs(10));
        t.take_ended()
    };
    log.departed(&m, &ended(40000, 0)).expect("write");
    std::fs::rename(&file.0, &rotated.0).expect("rotate");
    assert_eq!(log.hangup(&m).expect("reopen"), Flow::Continue);
    log.departed(&m, &ended(40001, 20_000)).expect("write");
    let port = |recs: Vec<serde_json::Value>| -> Vec<String> {
        recs.iter()
            .map(|r| r["client"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(port(rotated.records()), ["198.18.0.1:40000"]);
    assert_eq!(port(file.records()), ["198.18.0.1:40001"]);
}

#[test]
fn a_line_cut_by_a_failed_write_is_taken_back_out() {
    let f = TempFile::new("cut");
    std::fs::write(&f.0, "{}\n").expect("write");
    let mut file = open(&f.0).expect("open");
    // Two lines ("aa", "bbb") of which the write got 5 bytes out before failing.
    file.write_all(b"aa\nbb").expect("append");
    let err = std::io::Error::from(std::io::ErrorKind::StorageFull);
    let (whole, e) = cut(&file, Ok(3), &[3, 7], 5, err);
    assert_eq!(
        (whole, e.map(|e| e.kind())),
        (1, Some(std::io::ErrorKind::StorageFull))
    );
    assert_eq!(std::fs::read_to_string(&f.0).expect("read"), "{}\naa\n");
    // Nothing whole: back to where it was.
    file.write_all(b"c").expect("append");
    let err = std::io::Error::from(std::io::ErrorKind::StorageFull);
    assert_eq!(cut(&file, Ok(6), &[4], 1, err).0, 0);
    assert_eq!(std::fs::read_to_string(&f.0).expect("read"), "{}\naa\n");
    // Everything written: nothing to take out.
    let mut file = open(&f.0).expect("open");
    assert_eq!(append(&mut file, b"dd\ne\n", &[3, 5]).0, 2);
    assert_eq!(
        std::fs::read_to_string(&f.0).expect("read"),
        "{}\naa\ndd\ne\n"
    );
}
