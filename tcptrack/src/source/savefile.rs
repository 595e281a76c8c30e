//! Capture files parsed in place: pcap (microsecond and nanosecond, either byte order) and
//! pcapng (every section's byte order, per-interface link types and timestamp resolutions).
//!
//! [`Parser`] reads records from the front of a byte slice and says how many bytes each took:
//! a mapped file is one slice, read once without a copy; a stream (standard input, a
//! decompressed file) refills a buffer whenever a record does not fit yet ([`Step::More`]). The
//! same code decides for both, so both end the same way on the same bytes.

use std::time::Duration;

use crate::flow::Timestamp;

/// pcap's magic numbers, as read in the file's own byte order.
const PCAP_MICRO: u32 = 0xa1b2_c3d4;
const PCAP_NANO: u32 = 0xa1b2_3c4d;
/// pcapng's Section Header Block type (a palindrome: the same in both byte orders).
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER: u32 = 0x1a2b_3c4d;
const PCAP_HEADER_LEN: usize = 24;
const PCAP_RECORD_LEN: usize = 16;
/// libpcap's limit on a record's captured length, whatever the file's snapshot length says.
const MAX_SNAPLEN: u32 = 262_144;
/// The largest pcapng block tcptrack takes (libpcap's limit is 16 MiB too).
const MAX_BLOCK: u32 = 16 * 1024 * 1024;

/// One captured packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub ts: Timestamp,
    /// What was captured of the frame.
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// Its link type (`LINKTYPE_*`).
    pub link: u16,
}

/// What the front of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// A packet, which took `used` bytes.
    Packet { record: Record<'a>, used: usize },
    /// Something else (a pcapng block other than a packet), `used` bytes to pass over.
    Skip { used: usize },
    /// Nothing whole yet: at least this many bytes are needed from the front. At the end of the
    /// input, a file cut short.
    More(usize),
}

/// Why the bytes are not a capture, or not one any more.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("not a capture file (pcap or pcapng)")]
    NotACapture,
    #[error("unsupported pcap version {0}.{1}")]
    Version(u16, u16),
    #[error("a record claims {caplen} captured bytes, more than the maximum of {max}")]
    RecordTooLong { caplen: u32, max: u32 },
    #[error("a pcapng block of {0} bytes is malformed")]
    BadBlock(u32),
    #[error("a packet names interface {0}, which the section did not describe")]
    NoSuchInterface(u32),
}

/// How a pcap file stores its records.
#[derive(Clone, Copy, Debug)]
struct Pcap {
    swapped: bool,
    nanos: bool,
    link: u16,
}

/// A pcapng interface: its link type and how its timestamps count.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: u16,
    snaplen: u32,
    /// Timestamp units per second: 10^n or 2^n.
    units: Units,
    /// Seconds to add to every timestamp (`if_tsoffset`).
    offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Units {
    Decimal(u8),
    Binary(u8),
}

impl Units {
    /// `ticks` of these units as a time since the epoch (saturating far beyond any capture).
    fn to_time(self, ticks: u64, offset: i64) -> Timestamp {
        let nanos: u128 = match self {
            Self::Decimal(e) if e <= 9 => u128::from(ticks) * 10u128.pow(u32::from(9 - e)),
            Self::Decimal(e) => u128::from(ticks) / 10u128.pow(u32::from(e.min(38) - 9)),
            Self::Binary(e) => (u128::from(ticks) * 1_000_000_000) >> e.min(127),
        };
        let t = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        match u64::try_from(offset) {
            Ok(ahead) => t.saturating_add(Duration::from_secs(ahead)),
            Err(_) => t.saturating_sub(Duration::from_secs(offset.unsigned_abs())),
        }
    }
}

#[derive(Clone, Debug)]
enum Kind {
    Pcap(Pcap),
    PcapNg {
        swapped: bool,
        interfaces: Vec<Interface>,
    },
}

/// Reads records from the front of the bytes it is handed.
#[derive(Clone, Debug)]
pub struct Parser {
    kind: Kind,
}

fn u16_at(b: &[u8], at: usize, swapped: bool) -> u16 {
    let v = b
        .get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes);
    if swapped {
        v.swap_bytes()
    } else {
        v
    }
}

fn u32_at(b: &[u8], at: usize, swapped: bool) -> u32 {
    let v = b
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes);
    if swapped {
        v.swap_bytes()
    } else {
        v
    }
}

/// `n` rounded up to a multiple of 4 (pcapng pads to 32 bits).
const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

impl Parser {
    /// Reads the file's header at the front of `buf`: the parser and the bytes the header took,
    /// or how many bytes are needed to tell.
    ///
    /// # Errors
    /// The bytes are not a capture tcptrack reads.
    pub fn start(buf: &[u8]) -> Result<Result<(Self, usize), usize>, Damage> {
        if buf.len() < 4 {
            return Ok(Err(4));
        }
        let magic = u32_at(buf, 0, false);
        if magic == PCAPNG_SHB {
            let mut p = Self {
                kind: Kind::PcapNg {
                    swapped: false,
                    interfaces: Vec::new(),
                },
            };
            // The header block is read as any other block, which sets the byte order.
            return match p.step(buf)? {
                Step::Skip { used } => Ok(Ok((p, used))),
                Step::More(n) => Ok(Err(n)),
                Step::Packet { .. } => Err(Damage::NotACapture),
            };
        }
        let (swapped, nanos) = match magic {
            PCAP_MICRO => (false, false),
            PCAP_NANO => (false, true),
            m if m.swap_bytes() == PCAP_MICRO => (true, false),
            m if m.swap_bytes() == PCAP_NANO => (true, true),
            _ => return Err(Damage::NotACapture),
        };
        if buf.len() < PCAP_HEADER_LEN {
            return Ok(Err(PCAP_HEADER_LEN));
        }
        let (major, minor) = (u16_at(buf, 4, swapped), u16_at(buf, 6, swapped));
        if major != 2 {
            return Err(Damage::Version(major, minor));
        }
        // The link type is the low 16 bits; the high ones say how FCS is stored.
        let link = u16::try_from(u32_at(buf, 20, swapped) & 0xffff).unwrap_or(0);
        let kind = Kind::Pcap(Pcap {
            swapped,
            nanos,
            link,
        });
        Ok(Ok((Self { kind }, PCAP_HEADER_LEN)))
    }

    /// The link type packets have, when the file has one for all (pcap), or the first
    /// interface's (pcapng), if any was described yet.
    #[must_use]
    pub fn link(&self) -> Option<u16> {
        match &self.kind {
            Kind::Pcap(p) => Some(p.link),
            Kind::PcapNg { interfaces, .. } => interfaces.first().map(|i| i.link),
        }
    }

    /// What the front of `buf` holds.
    ///
    /// # Errors
    /// The bytes there cannot be a record: the file is damaged from here on.
    pub fn step<'a>(&mut self, buf: &'a [u8]) -> Result<Step<'a>, Damage> {
        match &mut self.kind {
            Kind::Pcap(p) => pcap_record(p, buf),
            Kind::PcapNg {
                swapped,
                interfaces,
            } => pcapng_block(swapped, interfaces, buf),
        }
    }
}

fn pcap_record<'a>(p: &Pcap, buf: &'a [u8]) -> Result<Step<'a>, Damage> {
    if buf.len() < PCAP_RECORD_LEN {
        return Ok(Step::More(PCAP_RECORD_LEN));
    }
    let s = p.swapped;
    let (secs, frac) = (u32_at(buf, 0, s), u32_at(buf, 4, s));
    let (caplen, orig_len) = (u32_at(buf, 8, s), u32_at(buf, 12, s));
    // Whatever the header's snapshot length says, as libpcap does: a stream never holds more
    // than one such record.
    if caplen > MAX_SNAPLEN {
        return Err(Damage::RecordTooLong {
            caplen,
            max: MAX_SNAPLEN,
        });
    }
    let used = PCAP_RECORD_LEN + caplen as usize;
    let Some(data) = buf.get(PCAP_RECORD_LEN..used) else {
        return Ok(Step::More(used));
    };
    let nanos = if p.nanos {
        frac.min(999_999_999)
    } else {
        frac.min(999_999) * 1000
    };
    Ok(Step::Packet {
        record: Record {
            ts: Duration::new(u64::from(secs), nanos),
            data,
            orig_len,
            link: p.link,
        },
        used,
    })
}

/// pcapng block types tcptrack reads.
const IDB: u32 = 1;
const OPB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;

fn pcapng_block<'a>(
    swapped: &mut bool,
    interfaces: &mut Vec<Interface>,
    buf: &'a [u8],
) -> Result<Step<'a>, Damage> {
    if buf.len() < 12 {
        return Ok(Step::More(12));
    }
    let kind = u32_at(buf, 0, *swapped);
    if kind == PCAPNG_SHB {
        // A new section: its own byte order, its own interfaces.
        let order = u32_at(buf, 8, false);
        *swapped = match order {
            PCAPNG_BYTE_ORDER => false,
            o if o.swap_bytes() == PCAPNG_BYTE_ORDER => true,
            _ => return Err(Damage::NotACapture),
        };
        interfaces.clear();
    }
    let len = u32_at(buf, 4, *swapped);
    if len < 12 || !len.is_multiple_of(4) || len > MAX_BLOCK {
        return Err(Damage::BadBlock(len));
    }
    let used = len as usize;
    let Some(block) = buf.get(..used) else {
        return Ok(Step::More(used));
    };
    if u32_at(block, used - 4, *swapped) != len {
        return Err(Damage::BadBlock(len));
    }
    let body = &block[8..used - 4];
    let s = *swapped;
    let packet = |iface: u32, ts: u64, caplen: u32, orig_len: u32, at: usize| {
        let i = interfaces
            .get(iface as usize)
            .ok_or(Damage::NoSuchInterface(iface))?;
        let data = body
            .get(at..at + caplen as usize)
            .ok_or(Damage::BadBlock(len))?;
        Ok(Step::Packet {
            record: Record {
                ts: i.units.to_time(ts, i.offset),
                data,
                orig_len,
                link: i.link,
            },
            used,
        })
    };
    match kind {
        IDB => {
            interfaces.push(interface(body, s).ok_or(Damage::BadBlock(len))?);
            Ok(Step::Skip { used })
        }
        EPB if body.len() >= 20 => {
            let ts = (u64::from(u32_at(body, 4, s)) << 32) | u64::from(u32_at(body, 8, s));
            packet(
                u32_at(body, 0, s),
                ts,
                u32_at(body, 12, s),
                u32_at(body, 16, s),
                20,
            )
        }
        OPB if body.len() >= 20 => {
            let ts = (u64::from(u32_at(body, 4, s)) << 32) | u64::from(u32_at(body, 8, s));
            packet(
                u32::from(u16_at(body, 0, s)),
                ts,
                u32_at(body, 12, s),
                u32_at(body, 16, s),
                20,
            )
        }
        SPB if body.len() >= 4 => {
            // No timestamp, no captured length: what the block holds, up to the snapshot.
            let orig_len = u32_at(body, 0, s);
            let snap = interfaces.first().map_or(u32::MAX, |i| i.snaplen);
            let room = u32::try_from(body.len() - 4).unwrap_or(u32::MAX);
            let snap = if snap == 0 { u32::MAX } else { snap };
            packet(0, 0, orig_len.min(snap).min(room), orig_len, 4)
        }
        EPB | OPB | SPB => Err(Damage::BadBlock(len)),
        _ => Ok(Step::Skip { used }),
    }
}

/// An Interface Description Block's body.
fn interface(body: &[u8], s: bool) -> Option<Interface> {
    if body.len() < 8 {
        return None;
    }
    let mut i = Interface {
        link: u16_at(body, 0, s),
        snaplen: u32_at(body, 4, s),
        units: Units::Decimal(6),
        offset: 0,
    };
    let mut at = 8;
    while at + 4 <= body.len() {
        let (code, len) = (u16_at(body, at, s), usize::from(u16_at(body, at + 2, s)));
        let value = body.get(at + 4..at + 4 + len)?;
        match (code, len) {
            (0, _) => break,
            (9, 1) => {
                let v = value[0];
                i.units = if v & 0x80 == 0 {
                    Units::Decimal(v)
                } else {
                    Units::Binary(v & 0x7f)
                };
            }
            (14, 8) => {
                let lo = u64::from(u32_at(value, 0, s));
                let hi = u64::from(u32_at(value, 4, s));
                let raw = if s { (lo << 32) | hi } else { (hi << 32) | lo };
                i.offset = i64::from_ne_bytes(raw.to_ne_bytes());
            }
            _ => {}
        }
        at += 4 + pad4(len);
    }
    Some(i)
}

#[cfg(test)]
mod tests;
