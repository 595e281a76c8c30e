//! Capture files: pcap (microsecond and nanosecond), pcapng, written with `pcap-file`, with any
//! link type and snapshot length, whole or cut mid-record; gzip or zstd compressed.

use std::borrow::Cow;
use std::io::Write;
use std::ops::Range;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, TsResolution};
use tempfile::NamedTempFile;

/// A frame as it was on the wire, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Capture time, from the Unix epoch.
    pub ts: Duration,
    /// The whole frame (the capture keeps at most the snapshot length of it).
    pub data: Vec<u8>,
}

impl Packet {
    #[must_use]
    pub const fn new(ts: Duration, data: Vec<u8>) -> Self {
        Self { ts, data }
    }
}

/// File formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap, microsecond timestamps.
    Pcap,
    /// Classic pcap, nanosecond timestamps (magic 0xa1b23c4d).
    PcapNano,
    /// pcapng, default (microsecond) timestamp resolution.
    PcapNg,
    /// pcapng with `if_tsresol` 9 (nanoseconds).
    PcapNgNano,
}

impl Format {
    pub const ALL: [Self; 4] = [Self::Pcap, Self::PcapNano, Self::PcapNg, Self::PcapNgNano];

    /// Whether timestamps keep nanoseconds (else they are cut to microseconds).
    #[must_use]
    pub const fn nanosecond(self) -> bool {
        matches!(self, Self::PcapNano | Self::PcapNgNano)
    }

    /// `ts` as this format stores it.
    #[must_use]
    pub fn stored(self, ts: Duration) -> Duration {
        if self.nanosecond() {
            ts
        } else {
            Duration::new(ts.as_secs(), ts.subsec_micros() * 1000)
        }
    }
}

/// How a capture file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    pub format: Format,
    /// `LINKTYPE_*` number.
    pub linktype: u32,
    /// Snapshot length: frames are cut to it (their wire length is kept).
    pub snaplen: u32,
    /// Write the file big-endian (else little-endian).
    pub big_endian: bool,
}

impl CaptureSpec {
    /// A little-endian file of `format` with link type `linktype` and snapshot length 262144.
    #[must_use]
    pub const fn new(format: Format, linktype: u32) -> Self {
        Self {
            format,
            linktype,
            snaplen: 262_144,
            big_endian: false,
        }
    }

    #[must_use]
    pub const fn snaplen(mut self, snaplen: u32) -> Self {
        self.snaplen = snaplen;
        self
    }

    #[must_use]
    pub const fn big_endian(mut self) -> Self {
        self.big_endian = true;
        self
    }

    /// The file holding `packets`.
    #[must_use]
    pub fn write(self, packets: &[Packet]) -> Capture {
        match self.format {
            Format::Pcap | Format::PcapNano => self.write_pcap(packets),
            Format::PcapNg | Format::PcapNgNano => self.write_pcapng(packets),
        }
    }

    fn endianness(self) -> Endianness {
        if self.big_endian {
            Endianness::Big
        } else {
            Endianness::Little
        }
    }

    fn captured(self, p: &Packet) -> (&[u8], u32) {
        let wire = u32::try_from(p.data.len()).expect("frame below 4 GiB");
        let keep = p
            .data
            .len()
            .min(usize::try_from(self.snaplen).expect("snaplen fits usize"));
        (&p.data[..keep], wire)
    }

    fn write_pcap(self, packets: &[Packet]) -> Capture {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: self.snaplen,
            datalink: DataLink::from(self.linktype),
            ts_resolution: if self.format == Format::PcapNano {
                TsResolution::NanoSecond
            } else {
                TsResolution::MicroSecond
            },
            endianness: self.endianness(),
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).expect("pcap header writes");
        let mut at = 24;
        let mut records = Vec::with_capacity(packets.len());
        for p in packets {
            let (data, wire) = self.captured(p);
            let n = w
                .write_packet(&PcapPacket::new(p.ts, wire, data))
                .expect("pcap record writes");
            records.push(at..at + n);
            at += n;
        }
        Capture {
            bytes: w.into_writer(),
            records,
        }
    }

    fn write_pcapng(self, packets: &[Packet]) -> Capture {
        let mut w = PcapNgWriter::with_endianness(Vec::new(), self.endianness())
            .expect("pcapng section header writes");
        let nano = self.format == Format::PcapNgNano;
        let options = if nano {
            vec![InterfaceDescriptionOption::IfTsResol(9)]
        } else {
            Vec::new()
        };
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::from(self.linktype),
            snaplen: self.snaplen,
            options,
        })
        .expect("pcapng interface block writes");
        let mut at = w.get_ref().len();
        let mut records = Vec::with_capacity(packets.len());
        for p in packets {
            let (data, wire) = self.captured(p);
            // The writer stores the timestamp field as the Duration's nanoseconds: in the
            // default microsecond resolution, hand it microseconds.
            let units = if nano {
                p.ts
            } else {
                Duration::from_nanos(u64::try_from(p.ts.as_micros()).expect("timestamp fits"))
            };
            let n = w
                .write_pcapng_block(EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: units,
                    original_len: wire,
                    data: Cow::Borrowed(data),
                    options: Vec::new(),
                })
                .expect("pcapng packet block writes");
            records.push(at..at + n);
            at += n;
        }
        Capture {
            bytes: w.into_inner(),
            records,
        }
    }
}

/// A capture file's bytes, and where each packet's record lies in them.
#[derive(Clone, Debug)]
pub struct Capture {
    pub bytes: Vec<u8>,
    /// Byte range of each packet record (record header and data).
    pub records: Vec<Range<usize>>,
}

impl Capture {
    /// The capture in a temporary file (removed when dropped).
    #[must_use]
    pub fn file(&self) -> NamedTempFile {
        temp_file(&self.bytes)
    }

    /// The capture cut after its first `len` bytes, in a temporary file.
    #[must_use]
    pub fn cut_file(&self, len: usize) -> NamedTempFile {
        temp_file(&self.bytes[..len])
    }
}

/// `bytes` compressed with gzip (as `gzip -1`).
///
/// # Panics
/// Never: the encoder writes into memory.
#[must_use]
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// `bytes` compressed with zstd (as `zstd -1`).
#[must_use]
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

/// A temporary file holding `bytes` (removed when dropped).
#[must_use]
pub fn temp_file(bytes: &[u8]) -> NamedTempFile {
    let mut f = NamedTempFile::new().expect("temporary file");
    f.write_all(bytes).expect("temporary file writes");
    f.flush().expect("temporary file flushes");
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_located_and_cut_to_the_snaplen() {
        let pk = |n: usize| Packet::new(Duration::new(5, 7000), vec![0xab; n]);
        let c = CaptureSpec::new(Format::Pcap, 1)
            .snaplen(60)
            .write(&[pk(100), pk(10)]);
        assert_eq!(c.records, vec![24..24 + 16 + 60, 100..100 + 16 + 10]);
        assert_eq!(c.bytes.len(), 126);
        // incl_len 60, orig_len 100, little-endian.
        assert_eq!(&c.bytes[32..40], &[60, 0, 0, 0, 100, 0, 0, 0]);

        let c = CaptureSpec::new(Format::PcapNg, 1).write(&[pk(10), pk(13)]);
        // An EPB is 32 bytes of fields plus the data padded to 4.
        assert_eq!(c.records[0].len(), 32 + 12);
        assert_eq!(c.records[1].len(), 32 + 16);
        assert_eq!(c.records[1].end, c.bytes.len());
        // Microsecond units: 5 s 7 us = 5_000_007.
        let ts_low = &c.bytes[c.records[0].start + 16..c.records[0].start + 20];
        assert_eq!(ts_low, &5_000_007u32.to_le_bytes());
    }
}
