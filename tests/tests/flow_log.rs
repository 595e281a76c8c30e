//! The flow log on capture files: one record per connection, when tcptrack forgets it (on the
//! capture's clock) or, for those still listed at the end, then; the same counts as
//! `--output json`.

use std::collections::BTreeMap;
use std::time::Duration;

use tcptrack_tests::on_capture::merged;
use tcptrack_tests::{
    flow_records, json_of, tcptrack, CaptureSpec, FlowRecord, Format, Link, Session, Side,
    EPOCH_BASE,
};

/// 300 connections, one every 100 ms over 30 s: closed, reset, or still open at the end.
fn sessions() -> Vec<Session> {
    (0..300u16)
        .map(|i| {
            let client = format!("198.18.{}.{}:{}", 2 + i / 200, 1 + i % 200, 30000 + i);
            let mut s = Session::new(&client, "198.19.0.1:443");
            s.at(EPOCH_BASE + Duration::from_millis(100 * u64::from(i)))
                .step(Duration::from_millis(1))
                .handshake()
                .data(Side::Client, usize::from(i) * 3)
                .data(Side::Server, usize::from(i) + 1);
            match i % 3 {
                0 => s.close(Side::Client),
                1 => s.rst(Side::Server),
                _ => &mut s,
            };
            s
        })
        .collect()
}

/// Each record of `flows` has the state, times and counts `--output json` gives for its
/// connection in `capture`; `how` is how that state ended (or that it had not).
fn same_as_json(flows: &[FlowRecord], capture: &std::path::Path) {
    let by_client: BTreeMap<&str, _> = flows.iter().map(|f| (f.client.as_str(), f)).collect();
    assert_eq!(by_client.len(), flows.len(), "never two for one connection");
    for r in json_of(capture, &[]) {
        let f = by_client[r.client.as_str()];
        let how = match r.state.as_str() {
            "CLOSED" => "closed",
            "RESET" => "reset",
            _ => "open_at_exit",
        };
        assert_eq!(
            (
                &f.server,
                &f.state,
                f.how.as_str(),
                &f.first_seen,
                &f.last_seen
            ),
            (&r.server, &r.state, how, &r.first_seen, &r.last_seen),
            "{f:?}"
        );
        assert_eq!(
            [
                f.client_payload_bytes,
                f.server_payload_bytes,
                f.client_bytes,
                f.server_bytes
            ],
            [
                r.client_payload_bytes,
                r.server_payload_bytes,
                r.client_bytes,
                r.server_bytes
            ]
        );
        assert_eq!(
            [
                f.client_packets,
                f.server_packets,
                f.payload_bytes,
                f.bytes,
                f.packets
            ],
            [
                r.client_packets,
                r.server_packets,
                r.payload_bytes,
                r.bytes,
                r.packets
            ]
        );
    }
}

#[test]
fn one_record_per_connection_with_the_counts_of_the_json_output() {
    let sessions = sessions();
    let refs: Vec<&Session> = sessions.iter().collect();
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&merged(Link::Ethernet, &refs));
    let file = cap.file();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("flows.jsonl");
    let out = tcptrack([
        "-T".as_ref(),
        file.path().as_os_str(),
        "--output".as_ref(),
        "none".as_ref(),
        "--flow-log".as_ref(),
        log.as_os_str(),
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "", "")
    );
    let flows = flow_records(&std::fs::read_to_string(&log).expect("the flow log"));
    assert_eq!(flows.len(), 300, "one record per connection");
    same_as_json(&flows, file.path());
    // Forgotten ones come as the capture's clock passes -r after their end, the open ones at
    // the end: the first records are early closed and reset connections.
    assert_eq!(flows[0].client, "198.18.2.1:30000");
    assert_eq!(flows[0].how, "closed");
    assert_eq!(flows.last().map(|f| f.how.as_str()), Some("open_at_exit"));
    // On standard output, the same lines.
    let out = tcptrack([
        "-T".as_ref(),
        file.path().as_os_str(),
        "--flow-log".as_ref(),
        "-".as_ref(),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(flow_records(&out.stdout), flows);
}
