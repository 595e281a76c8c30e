//! Inputs that are not what they should be: not captures, cut short, unsupported, damaged frames,
//! bad command lines. tcptrack must say so clearly, exit with the documented status, keep what it
//! could read, and never panic.

use std::ops::Range;
use std::time::Duration;

use tcptrack_tests::capture::{gzip, temp_file, zstd};
use tcptrack_tests::{
    assert_counts, expected_of, json_records, rfc3339, tcptrack, tcptrack_with_input, CaptureSpec,
    Format, Link, Output, Packet, Record, Session, Side, EPOCH_BASE,
};

/// xorshift64: deterministic, no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n")
    }

    fn in_range(&mut self, r: Range<usize>) -> usize {
        r.start + self.below(r.end - r.start)
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// `tcptrack -T <bytes in a file> --output json extra...`.
fn run_bytes(bytes: &[u8], extra: &[&str]) -> Output {
    let file = temp_file(bytes);
    let path = file.path().to_str().expect("utf-8 path").to_owned();
    let mut args = vec!["-T", &path, "--output", "json"];
    args.extend_from_slice(extra);
    tcptrack(args)
}

#[track_caller]
fn assert_runtime_error(out: &Output, what: &str) {
    assert_eq!(out.code, Some(1), "{what}: {out:?}");
    assert_eq!(out.stdout, "", "{what}: nothing on stdout");
    assert_eq!(
        out.stderr_lines().len(),
        1,
        "{what}: one line: {}",
        out.stderr
    );
    assert!(!out.panicked(), "{what}: {}", out.stderr);
}

#[track_caller]
fn assert_usage_error(out: &Output, what: &str) {
    assert_eq!(out.code, Some(2), "{what}: {out:?}");
    assert_eq!(out.stdout, "", "{what}: nothing on stdout");
    assert!(!out.stderr.trim().is_empty(), "{what}: says why");
    assert!(!out.panicked(), "{what}: {}", out.stderr);
}

/// The lines of stderr but the warning that the capture is out of time order, which must come
/// once at most.
#[track_caller]
fn but_order_warning(out: &Output) -> Vec<&str> {
    let warning = |l: &str| l.starts_with("tcptrack: warning: the capture is out of time order");
    let lines = out.stderr_lines();
    assert!(
        lines.iter().filter(|l| warning(l)).count() <= 1,
        "one warning at most: {}",
        out.stderr
    );
    lines.into_iter().filter(|l| !warning(l)).collect()
}

#[track_caller]
fn assert_clean(out: &Output, what: &str) -> Vec<Record> {
    assert!(!out.panicked(), "{what}: {}", out.stderr);
    assert_eq!(out.code, Some(0), "{what}: {}", out.stderr);
    assert_eq!(out.stderr, "", "{what}");
    out.records()
}

// ---- not a capture --------------------------------------------------------------------------

#[test]
fn random_bytes_are_not_a_capture() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut bytes = rng.bytes(4096);
    bytes[0] = 0x17; // no capture magic starts so
    let file = temp_file(&bytes);
    let path = file.path().to_str().expect("utf-8 path");
    let out = tcptrack(["-T", path, "--output", "json"]);
    assert_runtime_error(&out, "random bytes");
    assert!(out.stderr.contains(path), "names the file: {}", out.stderr);
}

#[test]
fn empty_file_is_not_a_capture() {
    assert_runtime_error(&run_bytes(&[], &[]), "empty file");
}

#[test]
fn text_file_is_not_a_capture() {
    let text = b"# not a capture\nclient,server\n198.18.0.1:40000,198.18.0.2:80\n".repeat(20);
    assert_runtime_error(&run_bytes(&text, &[]), "text file");
    // The same without --output (the default table).
    let file = temp_file(&text);
    let out = tcptrack(["-T", file.path().to_str().expect("utf-8 path")]);
    assert_runtime_error(&out, "text file, default output");
}

#[test]
fn a_capture_cut_inside_its_file_header_is_not_a_capture() {
    let mut s = Session::new("198.18.0.1:40000", "198.18.0.2:80");
    s.handshake();
    for format in [Format::Pcap, Format::PcapNg] {
        let cap = CaptureSpec::new(format, 1).write(&s.packets(Link::Ethernet));
        let out = run_bytes(&cap.bytes[..10], &[]);
        assert_runtime_error(&out, &format!("{format:?} header cut"));
    }
}

#[test]
fn nonexistent_path_is_a_runtime_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("missing.pcap");
    let out = tcptrack([
        "-T",
        missing.to_str().expect("utf-8 path"),
        "--output",
        "json",
    ]);
    assert_runtime_error(&out, "missing file");
    assert!(out.stderr.contains("missing.pcap"), "{}", out.stderr);
    // A directory is not a capture either.
    let out = tcptrack(["-T", dir.path().to_str().expect("utf-8 path")]);
    assert_runtime_error(&out, "directory");
}

#[test]
fn unsupported_link_type_is_named() {
    let mut s = Session::new("198.18.0.1:40000", "198.18.0.2:80");
    s.handshake().data(Side::Client, 10);
    for (linktype, name) in [(105, "IEEE802_11"), (127, "IEEE802_11_RADIO")] {
        for format in [Format::Pcap, Format::PcapNg] {
            let cap = CaptureSpec::new(format, linktype).write(&s.packets(Link::Ethernet));
            let out = run_bytes(&cap.bytes, &[]);
            let what = format!("link type {linktype} in {format:?}");
            assert_runtime_error(&out, &what);
            assert!(
                out.stderr.contains(&linktype.to_string()),
                "{what}: {}",
                out.stderr
            );
            assert!(out.stderr.contains(name), "{what}: {}", out.stderr);
        }
    }
}

// ---- cut short ------------------------------------------------------------------------------

/// A closed connection, then a second one whose packets the cut falls in.
fn two_connections() -> (Session, Session) {
    let mut a = Session::new("198.18.0.1:40000", "198.18.0.2:80");
    a.handshake()
        .data(Side::Client, 100)
        .data(Side::Server, 1000)
        .close(Side::Client);
    let mut b = Session::new("[2001:db8::1]:40001", "[2001:db8::2]:443");
    b.at(a.now() + Duration::from_millis(5))
        .handshake()
        .data(Side::Client, 200)
        .data(Side::Server, 300)
        .data(Side::Server, 400);
    (a, b)
}

/// Cuts the capture of [`two_connections`] at `cut(record range of b's fifth packet)` and checks
/// that the exit status is 3 and that exactly what came before the cut is reported.
fn check_cut(format: Format, cut: impl Fn(&Range<usize>) -> usize, what: &str) {
    let (a, b) = two_connections();
    let mut packets = a.packets(Link::Ethernet);
    packets.extend(b.packets(Link::Ethernet));
    let cap = CaptureSpec::new(format, 1).write(&packets);
    let kept = 4; // b's packets before the cut: SYN, SYN+ACK, ACK, 200 bytes
    let at = cut(&cap.records[a.segments().len() + kept]);
    let file = cap.cut_file(at);
    let path = file.path().to_str().expect("utf-8 path");
    let out = tcptrack(["-T", path, "--output", "json"]);
    let what = format!("{format:?}, {what}");
    assert!(!out.panicked(), "{what}: {}", out.stderr);
    assert_eq!(out.code, Some(3), "{what}: {out:?}");
    assert_eq!(out.stderr_lines().len(), 1, "{what}: {}", out.stderr);
    let recs = out.records();
    assert_eq!(recs.len(), 2, "{what}: {recs:#?}");
    assert_eq!(recs[0].state, "CLOSED", "{what}");
    assert_counts(&recs[0], &a.expected(Link::Ethernet));
    assert_eq!(recs[1].state, "ESTABLISHED", "{what}");
    assert_eq!(recs[1].client, "[2001:db8::1]:40001");
    let before = &b.segments()[..kept];
    assert_counts(&recs[1], &expected_of(before, Link::Ethernet));
    assert_eq!(recs[1].last_seen, rfc3339(before[kept - 1].ts), "{what}");
}

#[test]
fn cut_in_a_record_header_reports_what_came_before() {
    for format in [Format::Pcap, Format::PcapNano, Format::PcapNg] {
        check_cut(format, |r| r.start + 5, "record header cut");
        check_cut(format, |r| r.start + 1, "one byte of the record header");
    }
}

#[test]
fn cut_in_record_data_reports_what_came_before() {
    for format in [Format::Pcap, Format::PcapNano, Format::PcapNg] {
        check_cut(format, |r| r.start + 40, "record data cut");
        check_cut(format, |r| r.end - 1, "last byte missing");
    }
}

#[test]
fn a_capture_ending_on_a_record_boundary_is_complete() {
    let (a, b) = two_connections();
    let mut packets = a.packets(Link::Ethernet);
    packets.extend(b.packets(Link::Ethernet));
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&packets);
    let end = cap.records[a.segments().len() + 4].start;
    let out = run_bytes(&cap.bytes[..end], &[]);
    let recs = assert_clean(&out, "boundary");
    assert_eq!(recs.len(), 2);
    assert_counts(&recs[1], &expected_of(&b.segments()[..4], Link::Ethernet));
}

// ---- compressed captures cut short or damaged, empty standard input -------------------------

/// Many connections (some closed): compressed, a stream of several blocks.
fn many_connections(format: Format) -> tcptrack_tests::Capture {
    let mut packets = Vec::new();
    for i in 0..400u16 {
        let client = format!("198.18.{}.{}:{}", 1 + i / 200, 1 + i % 200, 20000 + i);
        let mut s = Session::new(&client, "198.18.0.2:443");
        s.at(EPOCH_BASE + Duration::from_millis(u64::from(i)))
            .handshake()
            .data(Side::Client, 300)
            .data(Side::Server, 1400);
        if i % 2 == 0 {
            s.close(Side::Server);
        }
        packets.extend(s.packets(Link::Ethernet));
    }
    packets.sort_by_key(|p| p.ts);
    CaptureSpec::new(format, 1).write(&packets)
}

/// The N of `... cut short after N packets ...`.
fn packets_before_the_cut(stderr: &str) -> usize {
    let after = stderr
        .split("cut short after ")
        .nth(1)
        .unwrap_or_else(|| panic!("says where: {stderr}"));
    after
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count: {stderr}"))
}

#[test]
fn a_compressed_capture_cut_short_reports_what_came_before_the_cut() {
    for format in [Format::Pcap, Format::PcapNg] {
        let cap = many_connections(format);
        for (name, compressed) in [("gzip", gzip(&cap.bytes)), ("zstd", zstd(&cap.bytes))] {
            let cut = &compressed[..compressed.len() * 3 / 5];
            let what = format!("{format:?}, {name} cut at 60%");
            let file = temp_file(cut);
            let path = file.path().to_str().expect("utf-8 path");
            let from_file = tcptrack(["-T", path, "--output", "json"]);
            let from_stdin = tcptrack_with_input(["-T", "-", "--output", "json"], Some(cut));
            for (out, shown) in [(&from_file, path), (&from_stdin, "standard input")] {
                assert!(!out.panicked(), "{what}: {}", out.stderr);
                assert_eq!(out.code, Some(3), "{what}: {out:?}");
                let n = packets_before_the_cut(&out.stderr);
                assert_eq!(
                    out.stderr,
                    format!(
                        "tcptrack: {shown}: capture cut short after {n} packets (the {name} \
                         stream ends early); reported what came before the cut\n"
                    ),
                    "{what}"
                );
                // Exactly what the first n packets give, read from the capture itself.
                assert!(n > 100 && n < cap.records.len(), "{what}: {n}");
                let before = &cap.bytes[..cap.records[n].start];
                let expected = tcptrack(["-T", &path_of(&temp_file(before)), "--output", "json"]);
                assert_eq!(expected.code, Some(0), "{what}: {expected:?}");
                assert_eq!(out.records(), json_records(&expected.stdout), "{what}");
            }
        }
    }
}

fn path_of(file: &tempfile::NamedTempFile) -> String {
    file.path().to_str().expect("utf-8 path").to_owned()
}

#[test]
fn a_damaged_compressed_capture_ends_as_a_cut_one() {
    let cap = many_connections(Format::Pcap);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (name, mut compressed) in [("gzip", gzip(&cap.bytes)), ("zstd", zstd(&cap.bytes))] {
        let mid = compressed.len() / 2;
        for b in &mut compressed[mid..mid + 200] {
            *b = rng.byte();
        }
        let what = format!("{name} damaged in its middle");
        let out = tcptrack_with_input(["-T", "-", "--output", "json"], Some(&compressed));
        assert!(!out.panicked(), "{what}: {}", out.stderr);
        assert_eq!(out.code, Some(3), "{what}: {out:?}");
        // The damage may have been decoded into frames before it was found (gzip and zstd
        // check their checksums at the end), and libpcap may stop on one of those first (a
        // record length out of bounds): its reason is then the one given. Some of those
        // frames may go back in time.
        let lines = but_order_warning(&out);
        assert_eq!(lines.len(), 1, "{what}: {}", out.stderr);
        assert!(
            lines[0].contains("cut short after"),
            "{what}: {}",
            out.stderr
        );
        let n = packets_before_the_cut(lines[0]);
        assert!(n > 0 && n <= cap.records.len(), "{what}: {n}");
        assert!(!out.records().is_empty(), "{what}");
    }
}

#[test]
fn empty_standard_input_is_said_empty() {
    for input in [None, Some(&b""[..])] {
        let out = tcptrack_with_input(["-T", "-", "--output", "json"], input);
        assert_runtime_error(&out, "empty standard input");
        assert_eq!(
            out.stderr,
            "tcptrack: standard input is empty, not a capture\n"
        );
    }
}

#[test]
fn compressed_nothing_text_or_garbage_is_not_a_capture() {
    let text = b"# not a capture\nclient,server\n".repeat(50);
    let mut garbage = vec![0x1f, 0x8b];
    garbage.extend(Rng(7).bytes(2000));
    let mut zstd_garbage = vec![0x28, 0xb5, 0x2f, 0xfd];
    zstd_garbage.extend(Rng(8).bytes(2000));
    for (what, bytes, says) in [
        (
            "gzip of nothing",
            gzip(b""),
            "is empty, not a capture".to_owned(),
        ),
        (
            "zstd of nothing",
            zstd(b""),
            "is empty, not a capture".to_owned(),
        ),
        (
            "gzip of text",
            gzip(&text),
            ": not a capture file (pcap or pcapng)".to_owned(),
        ),
        (
            "zstd of text",
            zstd(&text),
            ": not a capture file (pcap or pcapng)".to_owned(),
        ),
        (
            "gzip magic, then garbage",
            garbage,
            ": the gzip stream is damaged: ".to_owned(),
        ),
        (
            "zstd magic, then garbage",
            zstd_garbage,
            ": the zstd stream is damaged: ".to_owned(),
        ),
    ] {
        let file = temp_file(&bytes);
        let path = path_of(&file);
        let from_file = tcptrack(["-T", &path, "--output", "json"]);
        let from_stdin = tcptrack_with_input(["-T", "-", "--output", "json"], Some(&bytes));
        for (out, shown) in [(&from_file, path.as_str()), (&from_stdin, "standard input")] {
            assert_runtime_error(out, what);
            assert!(out.stderr.contains(shown), "{what}: {}", out.stderr);
            assert!(out.stderr.contains(&says), "{what}: {}", out.stderr);
        }
    }
}

// ---- damaged frames in a sound file -----------------------------------------------------------

#[test]
fn garbage_frames_are_skipped_and_valid_connections_stay_exact() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut a = Session::new("198.18.0.1:40000", "198.18.0.2:80");
    a.step(Duration::from_millis(10))
        .handshake()
        .data(Side::Client, 1000)
        .data(Side::Server, 2000)
        .close(Side::Client);
    let mut b = Session::new("[2001:db8::1]:40001", "[2001:db8::2]:443");
    b.at(EPOCH_BASE + Duration::from_millis(5))
        .step(Duration::from_millis(10))
        .handshake()
        .data(Side::Client, 700)
        .data(Side::Server, 800);
    let a_data = a.segments()[3].packet(Link::Ethernet).data; // 1000 bytes, client
    let a_ack = a.segments()[2].packet(Link::Ethernet).data; // pure ACK, 54 bytes
    let b_data = b.segments()[3].packet(Link::Ethernet).data;
    let mut garbage: Vec<Vec<u8>> = Vec::new();
    // Random frames.
    for _ in 0..20 {
        let n = rng.in_range(0..300);
        garbage.push(rng.bytes(n));
    }
    // Valid frames of the connections, cut before the end of the TCP fixed header.
    for n in [0, 1, 6, 13, 14, 15, 20, 33, 34, 40, 53] {
        garbage.push(a_data[..n].to_vec());
    }
    for n in [54, 60, 73] {
        garbage.push(b_data[..n].to_vec());
    }
    // Bad IPv4 header lengths (and a bad version), on the connection's own frames.
    for (frame, first) in [
        (&a_data, 0x44),
        (&a_data, 0x43),
        (&a_data, 0x40),
        (&a_ack, 0x4f),
        (&a_data, 0x55),
    ] {
        let mut f = frame.clone();
        f[14] = first;
        garbage.push(f);
    }
    // TCP data offset below 5.
    for off in [0x40, 0x10, 0x00] {
        let mut f = a_data.clone();
        f[14 + 20 + 12] = off;
        garbage.push(f);
        let mut f = b_data.clone();
        f[14 + 40 + 12] = off;
        garbage.push(f);
    }
    let mut packets = a.packets(Link::Ethernet);
    packets.extend(b.packets(Link::Ethernet));
    for (i, g) in garbage.into_iter().enumerate() {
        let ts = EPOCH_BASE + Duration::from_millis(2) + Duration::from_micros(900 * i as u64);
        packets.push(Packet::new(ts, g));
    }
    packets.sort_by_key(|p| p.ts);
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&packets);
    let recs = assert_clean(&run_bytes(&cap.bytes, &[]), "garbage frames");
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_eq!(recs[0].state, "CLOSED");
    assert_counts(&recs[0], &a.expected(Link::Ethernet));
    assert_eq!(recs[1].state, "ESTABLISHED");
    assert_counts(&recs[1], &b.expected(Link::Ethernet));
}

/// Offsets worth damaging in a frame: its link, IP and TCP headers, where the lengths are.
fn header_offset(rng: &mut Rng, link: Link, len: usize) -> usize {
    let span = (link.header_len() + 40 + 40).min(len);
    rng.below(span.max(1))
}

/// A frame made from `seed` by one of five kinds of damage, or random bytes.
fn damaged(rng: &mut Rng, link: Link, seed: &[u8]) -> Vec<u8> {
    match rng.below(5) {
        0 => {
            let n = rng.below(120);
            rng.bytes(n)
        }
        1 => {
            let mut f = seed.to_vec();
            for _ in 0..rng.in_range(1..5) {
                let at = header_offset(rng, link, f.len());
                f[at] = rng.byte();
            }
            f
        }
        2 => seed[..rng.below(seed.len())].to_vec(),
        3 => {
            // A length-like field gets an extreme value.
            let mut f = seed.to_vec();
            let at = header_offset(rng, link, f.len()).min(f.len() - 2);
            let v: u16 = [0, 1, 0xffff, 0x7fff, 20, 40][rng.below(6)];
            f[at..at + 2].copy_from_slice(&v.to_be_bytes());
            f
        }
        _ => {
            // Random tail after a valid header.
            let keep = link.header_len() + rng.below(60);
            let mut f = seed[..keep.min(seed.len())].to_vec();
            let n = rng.below(80);
            f.extend(rng.bytes(n));
            f
        }
    }
}

#[test]
fn random_and_mutated_frames_never_panic() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut frames_tried = 0;
    for link in Link::ALL {
        let mut seeds: Vec<Packet> = Vec::new();
        let mut v4 = Session::new("198.18.0.1:40000", "198.18.0.2:80");
        v4.ipv4_options(&[1, 1, 1, 0])
            .handshake()
            .data(Side::Client, 1000)
            .fin(Side::Server);
        let mut v6 = Session::new("[fd00::1]:40000", "[fd00::2]:80");
        v6.ipv6_extensions(Some(&[0; 6]), None)
            .tcp_options(&[1, 1, 1, 1])
            .handshake()
            .data(Side::Server, 500)
            .rst(Side::Client);
        for (s, is_v6) in [(&v4, false), (&v6, true)] {
            if link.carries(is_v6) {
                seeds.extend(s.packets(link));
            }
        }
        let mut packets = seeds.clone();
        for i in 0..30u64 {
            let seed = &seeds[rng.below(seeds.len())].data;
            let frame = damaged(&mut rng, link, seed);
            // Timestamps in order, out of order, at the epoch and far ahead.
            let ts = match rng.below(12) {
                0 => Duration::ZERO,
                1 => Duration::new(4_000_000_000, 999_999_999),
                2 => EPOCH_BASE - Duration::from_secs(3600),
                _ => EPOCH_BASE + Duration::from_millis(i * 37),
            };
            packets.push(Packet::new(ts, frame));
            frames_tried += 1;
        }
        let snaplen = [262_144, 96, 58, 40][rng.below(4)];
        let format = Format::ALL[rng.below(4)];
        let cap = CaptureSpec::new(format, link.linktype())
            .snaplen(snaplen)
            .write(&packets);
        let what = format!("{link:?}, {format:?}, snaplen {snaplen}");
        for extra in [&[][..], &["-f"][..], &["-d", "--output", "table"][..]] {
            let file = temp_file(&cap.bytes);
            let path = file.path().to_str().expect("utf-8 path");
            let mut args = vec!["-T", path];
            if !extra.contains(&"--output") {
                args.extend(["--output", "json"]);
            }
            args.extend_from_slice(extra);
            let out = tcptrack(&args);
            assert!(!out.panicked(), "{what} {extra:?}: {}", out.stderr);
            assert_eq!(out.code, Some(0), "{what} {extra:?}: {}", out.stderr);
            // Timestamps out of order are said, in one line; nothing else is.
            assert_eq!(but_order_warning(&out), [""; 0], "{what} {extra:?}");
            if !extra.contains(&"--output") {
                let _ = out.records(); // panics if a line is not a record
            }
        }
    }
    assert_eq!(frames_tried, 300);
}

#[test]
fn damaged_capture_files_never_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let (a, b) = two_connections();
    let mut packets = a.packets(Link::Ethernet);
    packets.extend(b.packets(Link::Ethernet));
    for format in [Format::Pcap, Format::PcapNg] {
        let cap = CaptureSpec::new(format, 1).write(&packets);
        for i in 0..30 {
            let mut bytes = cap.bytes.clone();
            if i % 5 == 4 {
                bytes.truncate(rng.below(bytes.len()));
            } else {
                for _ in 0..rng.in_range(1..4) {
                    // Mostly record headers (lengths), sometimes anywhere.
                    let at = if rng.below(3) > 0 {
                        let r = &cap.records[rng.below(cap.records.len())];
                        r.start + rng.below(16)
                    } else {
                        rng.below(bytes.len())
                    };
                    bytes[at] = rng.byte();
                }
            }
            let out = run_bytes(&bytes, &[]);
            let what = format!("{format:?} damage #{i}");
            assert!(!out.panicked(), "{what}: {}", out.stderr);
            // Damaged record headers are often damaged timestamps: the one line that says the
            // capture is out of time order may come too.
            match out.code {
                Some(0) => assert_eq!(but_order_warning(&out), [""; 0], "{what}"),
                Some(1 | 3) => {
                    let lines = but_order_warning(&out);
                    assert_eq!(lines.len(), 1, "{what}: {}", out.stderr);
                }
                other => panic!("{what}: exit {other:?}: {}", out.stderr),
            }
            let _ = out.records(); // panics if a line is not a record
        }
    }
}

// ---- command line -------------------------------------------------------------------------

#[test]
fn interface_and_file_together_are_a_usage_error() {
    assert_usage_error(&tcptrack(["-i", "x", "-T", "y"]), "-i x -T y");
    assert_usage_error(&tcptrack(["-T", "y", "-i", "x"]), "-T y -i x");
}

#[test]
fn unknown_options_and_bad_values_are_usage_errors() {
    let mut s = Session::new("198.18.0.1:40000", "198.18.0.2:80");
    s.handshake();
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&s.packets(Link::Ethernet));
    let file = cap.file();
    let path = file.path().to_str().expect("utf-8 path");
    for args in [
        vec!["--bogus", "-T", path],
        vec!["-x", "-T", path],
        vec!["-T"],
        vec!["-T", path, "-r", "soon"],
        vec!["-T", path, "-r", "-1"],
        vec!["-T", path, "--output", "xml"],
        vec!["-T", path, "--interval", "0"],
    ] {
        assert_usage_error(&tcptrack(&args), &format!("{args:?}"));
    }
}

#[test]
fn negative_values_say_they_must_be_positive() {
    // clap's own hint (`use '-- -5'`) would make the value part of the filter expression.
    let mut s = Session::new("198.18.0.1:40000", "198.18.0.2:80");
    s.handshake();
    let cap = CaptureSpec::new(Format::Pcap, 1).write(&s.packets(Link::Ethernet));
    let file = cap.file();
    let path = file.path().to_str().expect("utf-8 path");
    for (flag, value) in [
        ("-r", "-5"),
        ("--interval", "-1"),
        ("--window", "-1"),
        ("--idle-timeout", "-2.5"),
    ] {
        let what = format!("{flag} {value}");
        let out = tcptrack(["-T", path, "--output", "json", flag, value]);
        assert_usage_error(&out, &what);
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("positive number") && out.stderr.contains(flag),
            "{what}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("'-- "), "{what}: {}", out.stderr);
    }
}

#[test]
fn a_missing_or_empty_file_is_said_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("missing.pcap");
    let missing = missing.to_str().expect("utf-8 path");
    let out = tcptrack(["-T", missing, "--output", "json"]);
    assert_runtime_error(&out, "missing file");
    assert_eq!(
        out.stderr,
        format!("tcptrack: cannot read capture {missing}: no such file\n")
    );
    let empty = temp_file(&[]);
    let empty = empty.path().to_str().expect("utf-8 path");
    for extra in [&["--output", "json"][..], &["--output", "table"][..]] {
        let mut args = vec!["-T", empty];
        args.extend_from_slice(extra);
        let out = tcptrack(&args);
        assert_runtime_error(&out, "empty file");
        assert_eq!(
            out.stderr,
            format!("tcptrack: {empty} is empty, not a capture\n")
        );
    }
}
