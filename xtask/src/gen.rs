//! Generated captures for benchmarks: many TCP connections interleaved, headers only on file
//! (snaplen), payload lengths in the IP headers, as a live capture of a busy host looks.

use std::fs::File;
use std::io::BufWriter;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, TcpHeader};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

/// Bytes of each frame kept in the file (Ethernet + IPv4 + TCP headers).
const SNAPLEN: u32 = 54;
/// TCP payload of a data segment.
const SEGMENT: u16 = 1400;
/// Time between two packets of the capture.
const GAP: Duration = Duration::from_micros(5);

/// The marker connection: the capture's last packets, more payload than any other connection,
/// so that a screen sorted by bytes shows it first once the packets before it are processed.
pub const MARKER_CLIENT: &str = "198.18.255.254:65000";
/// Packets of the marker connection (handshake, then data from the client).
pub const MARKER_PACKETS: u64 = 403;

/// What a generated capture holds.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Packets in the file, the marker connection's included.
    pub packets: u64,
    /// Connections open at any time.
    pub concurrent: u32,
    /// Data segments per connection before it closes (`None`: never closes).
    pub data_segments: Option<u32>,
}

/// One connection's progress through its packets.
struct Conn {
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    step: u32,
    seq_c: u32,
    seq_s: u32,
}

/// Writes a capture of `shape` to `path`; returns the number of connections it holds.
pub fn write(path: &Path, shape: Shape) -> Result<u64> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let header = PcapHeader {
        snaplen: SNAPLEN,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(BufWriter::new(file), header).context("pcap header")?;
    let mut made: u64 = 0;
    let new_conn = |made: &mut u64| {
        let n = *made;
        *made += 1;
        // Clients spread over 198.18.0.0/16, servers over 198.19.0.0/24 (benchmark ranges).
        let host = u32::try_from(n / 50_000).unwrap_or(0);
        let client = Ipv4Addr::from(0xC612_0000 | (host & 0xffff));
        let port = 10_000 + u16::try_from(n % 50_000).unwrap_or(0);
        let server = Ipv4Addr::from(0xC613_0000 | (u32::try_from(n % 250).unwrap_or(0) + 1));
        Conn {
            client: (client, port),
            server: (server, 443),
            step: 0,
            seq_c: 1000,
            seq_s: 5000,
        }
    };
    let mut conns: Vec<Conn> = (0..shape.concurrent).map(|_| new_conn(&mut made)).collect();
    let mut frame = Vec::with_capacity(128);
    let mut ts = Duration::from_secs(1_700_000_000);
    let mut written = 0u64;
    let body = shape.packets.saturating_sub(MARKER_PACKETS);
    'outer: loop {
        for slot in &mut conns {
            if written == body {
                break 'outer;
            }
            let (from_client, flags, payload, done) = next_packet(slot, shape.data_segments);
            frame.clear();
            let wire = build(&mut frame, slot, from_client, flags, payload)?;
            let kept = frame.len().min(SNAPLEN as usize);
            w.write_packet(&PcapPacket::new(ts, wire, &frame[..kept]))
                .context("write packet")?;
            written += 1;
            ts += GAP;
            if done {
                *slot = new_conn(&mut made);
            }
        }
    }
    // The marker: a handshake, then data from the client only, all at the end.
    let mut marker = Conn {
        client: (Ipv4Addr::new(198, 18, 255, 254), 65_000),
        server: (Ipv4Addr::new(198, 19, 255, 254), 443),
        step: 0,
        seq_c: 1000,
        seq_s: 5000,
    };
    for i in 0..shape.packets.min(MARKER_PACKETS) {
        let (from_client, flags, payload) = match i {
            0 => (true, SYN, 0),
            1 => (false, SYN | ACK, 0),
            _ => (true, ACK, SEGMENT),
        };
        frame.clear();
        let wire = build(&mut frame, &mut marker, from_client, flags, payload)?;
        let kept = frame.len().min(SNAPLEN as usize);
        w.write_packet(&PcapPacket::new(ts, wire, &frame[..kept]))
            .context("write packet")?;
        ts += GAP;
    }
    w.into_writer().into_inner().context("flush capture")?;
    Ok(made + 1)
}

const SYN: u8 = 1;
const ACK: u8 = 2;
const FIN: u8 = 4;

/// The next packet of a connection: (from the client?, flags, payload, last packet?).
fn next_packet(c: &mut Conn, data_segments: Option<u32>) -> (bool, u8, u16, bool) {
    let step = c.step;
    c.step += 1;
    match step {
        0 => (true, SYN, 0, false),
        1 => (false, SYN | ACK, 0, false),
        2 => (true, ACK, 0, false),
        _ => {
            let data_step = step - 3;
            match data_segments {
                Some(n) if data_step >= n * 2 => match data_step - n * 2 {
                    0 => (true, FIN | ACK, 0, false),
                    1 => (false, FIN | ACK, 0, false),
                    _ => (true, ACK, 0, true),
                },
                // Data from the server, acknowledged by the client.
                _ if data_step.is_multiple_of(2) => (false, ACK, SEGMENT, false),
                _ => (true, ACK, 0, false),
            }
        }
    }
}

fn build(
    buf: &mut Vec<u8>,
    c: &mut Conn,
    from_client: bool,
    flags: u8,
    payload: u16,
) -> Result<u32> {
    let ((src, sport), (dst, dport)) = if from_client {
        (c.client, c.server)
    } else {
        (c.server, c.client)
    };
    let (seq, ack) = if from_client {
        (&mut c.seq_c, c.seq_s)
    } else {
        (&mut c.seq_s, c.seq_c)
    };
    let mut tcp = TcpHeader::new(sport, dport, *seq, 64_000);
    tcp.syn = flags & SYN != 0;
    tcp.fin = flags & FIN != 0;
    tcp.ack = flags & ACK != 0;
    tcp.acknowledgment_number = if tcp.ack { ack } else { 0 };
    *seq = seq.wrapping_add(u32::from(payload) + u32::from(tcp.syn || tcp.fin));
    let ip = Ipv4Header::new(
        u16::try_from(tcp.header_len()).unwrap_or(20) + payload,
        64,
        IpNumber::TCP,
        src.octets(),
        dst.octets(),
    )
    .context("IPv4 header")?;
    Ethernet2Header {
        source: [2, 0, 0, 0, 0, 1],
        destination: [2, 0, 0, 0, 0, 2],
        ether_type: EtherType::IPV4,
    }
    .write(buf)
    .context("Ethernet header")?;
    ip.write(buf).context("IPv4 header")?;
    tcp.write(buf).context("TCP header")?;
    let wire = buf.len() + usize::from(payload);
    buf.resize(wire.min(SNAPLEN as usize), 0);
    u32::try_from(wire).context("frame length")
}
