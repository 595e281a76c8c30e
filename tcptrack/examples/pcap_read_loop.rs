//! The limit for `-T` throughput: a bare libpcap loop that reads every packet of a capture and
//! touches its bytes, nothing else. `cargo xtask bench` runs it beside tcptrack on the same file.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: pcap_read_loop FILE");
        return ExitCode::from(2);
    };
    let mut cap = match pcap::Capture::from_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pcap_read_loop: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut packets, mut bytes, mut sum) = (0u64, 0u64, 0u64);
    loop {
        match cap.next_packet() {
            Ok(p) => {
                packets += 1;
                bytes += u64::from(p.header.len);
                // Read the first byte so that the data is really touched.
                sum = sum.wrapping_add(u64::from(p.data.first().copied().unwrap_or(0)));
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => {
                eprintln!("pcap_read_loop: {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{packets} packets {bytes} bytes {sum}");
    ExitCode::SUCCESS
}
