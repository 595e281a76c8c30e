//! Real TCP stacks in two network namespaces, recorded with tcpdump: tcptrack's report of the
//! capture equals tshark's view of the same file, connection by connection. Needs root (CI has
//! it), python3, tcpdump and tshark (`cargo xtask test` installs them).

use std::collections::BTreeMap;
use std::path::Path;

use tcptrack_tests::netns::{HostPair, Recorder, A4, A6, B4, B6};
use tcptrack_tests::run::{endpoint, json_of, tshark, tshark_packets};

/// Per connection, as tshark counts it: frames, frame bytes, payload per sender.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    frames: u64,
    bytes: u64,
    payload_by_sender: BTreeMap<String, u64>,
    /// Whether any packet carried RST.
    reset: bool,
}

fn conversation_key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// tshark's per-packet fields summed per connection (exact bytes, where `-z conv` rounds).
fn tshark_fields(file: &Path) -> BTreeMap<(String, String), Tally> {
    let packets = tshark_packets(
        file,
        &["-Y", "tcp"],
        &["frame.len", "tcp.len", "tcp.flags.reset"],
    );
    let mut convs: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for p in packets {
        let f = &p.fields;
        let t = convs.entry(conversation_key(&p.src, &p.dst)).or_default();
        t.frames += 1;
        t.bytes += f[0].parse::<u64>().expect("frame.len");
        *t.payload_by_sender.entry(p.src).or_default() += f[1].parse::<u64>().expect("tcp.len");
        t.reset |= matches!(f[2].as_str(), "1" | "True");
    }
    convs
}

/// tshark's `-z conv,tcp`: total frames per conversation, and total bytes where it prints them
/// unrounded (in `bytes`).
fn tshark_conv(file: &Path) -> BTreeMap<(String, String), (u64, Option<u64>)> {
    let out = tshark(file, &["-q", "-z", "conv,tcp"]);
    let mut convs = BTreeMap::new();
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 12 || t[1] != "<->" {
            continue;
        }
        // tshark writes `addr:port` without brackets for IPv6: the last colon ends the address.
        let ep = |s: &str| {
            let (addr, port) = s.rsplit_once(':').expect("addr:port");
            endpoint(addr, port)
        };
        let frames: u64 = t[9].parse().expect("total frames");
        let bytes = (t[11] == "bytes").then(|| t[10].parse().expect("total bytes"));
        convs.insert(conversation_key(&ep(t[0]), &ep(t[2])), (frames, bytes));
    }
    convs
}

#[test]
fn capture_of_real_traffic_matches_tshark() {
    let hosts = HostPair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("real.pcap");

    let dump = Recorder::start(&hosts, &file);

    // Three connections, each sending a known number of bytes both ways: two closed by FINs
    // (IPv4 and IPv6), one by the server's RST (SO_LINGER 0).
    let runs = [
        (B4, 5201u16, 1_000_000u64, 200_000u64, false),
        (B6, 5202, 300_000, 3_000_000, false),
        (B4, 5203, 1_000, 5_000, true),
    ];
    for &(server, port, upload, reply, reset) in &runs {
        let got = hosts.transfer(server, port, upload, reply, reset);
        if !reset {
            assert_eq!(got, (reply, upload), "each side got all the other sent");
        }
    }
    let dumped_err = dump.finish(&hosts);
    assert!(
        dumped_err.contains(" 0 packets dropped by kernel"),
        "tcpdump lost packets: {dumped_err}"
    );
    let ours = json_of(&file, &[]);
    let fields = tshark_fields(&file);
    let conv = tshark_conv(&file);
    assert_eq!(
        ours.len(),
        3,
        "three connections: {ours:#?}\ntcpdump: {dumped_err}"
    );
    assert_eq!(fields.len(), 3, "{fields:#?}");
    assert_eq!(conv.len(), 3, "{conv:#?}");

    for r in &ours {
        let key = conversation_key(&r.client, &r.server);
        let t = fields
            .get(&key)
            .unwrap_or_else(|| panic!("tshark has no {key:?}"));
        assert_eq!(r.packets, t.frames, "frames of {key:?}");
        assert_eq!(r.bytes, t.bytes, "frame bytes of {key:?}");
        assert_eq!(
            r.client_payload_bytes,
            t.payload_by_sender.get(&r.client).copied().unwrap_or(0),
            "client payload of {key:?}"
        );
        assert_eq!(
            r.server_payload_bytes,
            t.payload_by_sender.get(&r.server).copied().unwrap_or(0),
            "server payload of {key:?}"
        );
        assert_eq!(
            r.payload_bytes,
            t.payload_by_sender.values().sum::<u64>(),
            "payload of {key:?}"
        );
        let (frames, bytes) = conv[&key];
        assert_eq!(r.packets, frames, "-z conv,tcp frames of {key:?}");
        if let Some(bytes) = bytes {
            assert_eq!(r.bytes, bytes, "-z conv,tcp bytes of {key:?}");
        }
        // Every connection was opened and ended in the capture, from host a: by a RST where
        // tshark saw one, else by FINs.
        let ended = if t.reset { "RESET" } else { "CLOSED" };
        assert_eq!(r.state, ended, "{r:?}");
        assert!(
            r.client.starts_with(A4) || r.client.starts_with(&format!("[{A6}]")),
            "{r:?}"
        );
    }
    // And each side carried at least what its program wrote (retransmissions are on the wire,
    // and counted, as tshark counts them); an abortive close may drop unsent data.
    assert_eq!(ours.len(), runs.len(), "{ours:#?}");
    for (r, &(server, port, upload, reply, reset)) in ours.iter().zip(&runs) {
        let bracketed = format!("[{server}]:{port}");
        assert!(
            r.server == format!("{server}:{port}") || r.server == bracketed,
            "{r:?}"
        );
        assert!(r.client_payload_bytes >= upload, "{r:?}");
        assert!(reset || r.server_payload_bytes >= reply, "{r:?}");
        assert_eq!(r.state, if reset { "RESET" } else { "CLOSED" }, "{r:?}");
    }
}
