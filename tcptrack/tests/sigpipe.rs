//! A compressed capture damaged early, its stream long after the damage: the parser stops
//! reading, and the thread that decompresses into its pipe must stop without killing the
//! process, even where SIGPIPE has its default action (a program embedding tcptrack's library
//! may leave it so; tcptrack's binary ignores it). Its own test binary: the signal's action is
//! the process's.

use std::io::Write;

use tcptrack::source::file::{CaptureFile, ReadEnd};

#[test]
fn a_damaged_compressed_capture_ends_without_sigpipe() {
    // SAFETY: signal(2) with SIG_DFL, at the start of this binary's only test.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let mut pcap = Vec::new();
    // A pcap header (microseconds, little-endian, Ethernet), then a record that claims 4 GiB.
    pcap.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65_535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&u32::MAX.to_le_bytes());
    pcap.extend_from_slice(&u32::MAX.to_le_bytes());
    // Then 8 MiB more: far more than a pipe holds, so that the feeder is still writing.
    pcap.resize(pcap.len() + (8 << 20), 0x5a);
    let path =
        std::env::temp_dir().join(format!("tcptrack-sigpipe-{}.pcap.gz", std::process::id()));
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).expect("create"),
        flate2::Compression::fast(),
    );
    gz.write_all(&pcap).expect("compress");
    gz.finish().expect("compress");
    let mut file = CaptureFile::open(&path, None).expect("a capture, by its header");
    let end = file.read_all(|_: &tcptrack::flow::FlowUpdate| {});
    assert!(matches!(end, ReadEnd::Truncated(_)), "not read as damaged");
    // Dropping the capture closes the pipe and waits for the feeder: it must end, and the
    // process with it only when this test does.
    drop(file);
    let _ = std::fs::remove_file(&path);
}
