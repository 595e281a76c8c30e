//! Capture files (`-T`): pcap, nanosecond pcap and pcapng, parsed in place ([`savefile`]).
//!
//! A regular file is mapped and read once, without a copy; standard input, FIFOs and compressed
//! captures (gzip, zstd: told by their first bytes, decompressed by a [`Feeder`] thread into a
//! pipe) are read through a buffer that the same parser reads from. libpcap serves for the
//! filter only: compiled once per link type, run on each record.

use std::fs::File;
use std::io::{Read, Seek as _};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use super::savefile::{Parser, Record, Step};
use super::stream::{Compression, Feeder};
use crate::decode::{decode, LinkType};
use crate::error::{CaptureCut, Error};
use crate::flow::{FlowUpdate, Timestamp};

/// Where the bytes come from.
enum Input {
    /// A regular file, mapped: records are read in place. The pages before `released` are
    /// given back as reading passes them (the file's pages stay in the page cache; they only
    /// leave this process's memory).
    Mapped {
        map: memmap2::Mmap,
        at: usize,
        released: usize,
    },
    /// A stream: bytes `start..end` of `buf` are read and not yet parsed.
    Stream {
        reader: Box<dyn Read + Send>,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        eof: bool,
    },
}

/// How much of a mapped file is read before what was read is given back.
const RELEASE_EVERY: usize = 1 << 20;

/// The least a stream reads at a time.
const STREAM_CHUNK: usize = 256 * 1024;

impl Input {
    /// The unparsed bytes.
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped { map, at, .. } => map.get(*at..).unwrap_or_default(),
            Self::Stream {
                buf, start, end, ..
            } => &buf[*start..*end],
        }
    }

    /// Marks `n` bytes as parsed.
    fn consume(&mut self, n: usize) {
        match self {
            Self::Mapped { map, at, released } => {
                *at += n;
                if *at - *released >= RELEASE_EVERY {
                    // Whole pages only, all before what is being read.
                    let end = *at & !4095;
                    // SAFETY: the pages given back are before every record still in use (the
                    // caller is done with what it consumed); a file mapping reads them again
                    // from the file if they are ever touched.
                    let _ = unsafe {
                        map.unchecked_advise_range(
                            memmap2::UncheckedAdvice::DontNeed,
                            *released,
                            end - *released,
                        )
                    };
                    *released = end;
                }
            }
            Self::Stream { start, .. } => *start += n,
        }
    }

    /// Makes at least `n` unparsed bytes available, if the input has them. Returns whether it
    /// does (false: the input ended before).
    fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        let Self::Stream {
            reader,
            buf,
            start,
            end,
            eof,
        } = self
        else {
            return Ok(self.bytes().len() >= n);
        };
        while *end - *start < n && !*eof {
            if *start > 0 {
                buf.copy_within(*start..*end, 0);
                *end -= *start;
                *start = 0;
            }
            let want = (*start + n).max(*end + STREAM_CHUNK);
            if buf.len() < want {
                buf.resize(want, 0);
            }
            match reader.read(&mut buf[*end..]) {
                Ok(0) => *eof = true,
                Ok(k) => *end += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(*end - *start >= n)
    }
}

/// A libpcap filter, compiled once for each link type it meets.
struct Filter {
    expr: String,
    compiled: Vec<(u16, pcap::BpfProgram)>,
}

/// `bpf_program` as libpcap declares it (what `pcap::BpfProgram` wraps, `repr(transparent)`).
#[repr(C)]
struct BpfProgramRaw {
    bf_len: libc::c_uint,
    bf_insns: *mut libc::c_void,
}

extern "C" {
    fn pcap_offline_filter(
        prog: *const BpfProgramRaw,
        header: *const PcapPkthdr,
        data: *const u8,
    ) -> libc::c_int;
}

/// `pcap_pkthdr`.
#[repr(C)]
struct PcapPkthdr {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

/// libpcap's `DLT_*` for a file's `LINKTYPE_*` (they differ for raw IP only, among the types
/// tcptrack reads).
const fn dlt_of(linktype: u16) -> i32 {
    match linktype {
        101 => 12,
        l => l as i32,
    }
}

impl Filter {
    fn compile(expr: &str, link: u16) -> Result<pcap::BpfProgram, Error> {
        let fail = |source| Error::Filter {
            expr: expr.to_owned(),
            source,
        };
        pcap::Capture::dead(pcap::Linktype(dlt_of(link)))
            .map_err(fail)?
            .compile(expr, true)
            .map_err(fail)
    }

    /// Whether the filter takes `r`.
    fn matches(&mut self, r: &Record<'_>) -> Result<bool, Error> {
        let i = match self.compiled.iter().position(|(l, _)| *l == r.link) {
            Some(i) => i,
            None => {
                let prog = Self::compile(&self.expr, r.link)?;
                self.compiled.push((r.link, prog));
                self.compiled.len() - 1
            }
        };
        let header = PcapPkthdr {
            ts: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            caplen: u32::try_from(r.data.len()).unwrap_or(u32::MAX),
            len: r.orig_len,
        };
        let prog: *const pcap::BpfProgram = &self.compiled[i].1;
        // SAFETY: `pcap::BpfProgram` is `repr(transparent)` over libpcap's `bpf_program`, which
        // `BpfProgramRaw` declares; the program lives in `self.compiled` for the call; the header
        // says how many bytes of `data` there are, and the filter reads no further.
        Ok(unsafe { pcap_offline_filter(prog.cast(), &header, r.data.as_ptr()) } > 0)
    }
}

/// An open capture file, its filter applied.
pub struct CaptureFile {
    path: PathBuf,
    /// Declared before `feeder`, so dropped first: the pipe's read end closes, and the feeder's
    /// thread, joined when `feeder` drops, ends.
    input: Input,
    /// The thread that decompresses a compressed capture into the pipe `input` reads.
    feeder: Option<Feeder>,
    parser: Parser,
    filter: Option<Filter>,
    packets: u64,
}

/// What reading a file ended with.
#[derive(Debug)]
pub enum ReadEnd {
    /// The whole file was read.
    Complete,
    /// The file was cut short (or damaged) after the packets read so far.
    Truncated(Error),
}

impl ReadEnd {
    /// The damage, for a file cut short.
    #[must_use]
    pub fn into_error(self) -> Option<Error> {
        match self {
            Self::Complete => None,
            Self::Truncated(e) => Some(e),
        }
    }
}

/// Opens `path` for reading (`-` for standard input): mapped when it is a regular file, not
/// compressed; else a stream (decompressed by a feeder when it is compressed). `opened` runs
/// once the file is open and before the feeder's thread starts.
fn open_input(
    path: &Path,
    opened: &mut dyn FnMut() -> Result<(), Error>,
) -> Result<(Input, Option<Feeder>), Error> {
    let io = |source| Error::CaptureFile {
        path: path.to_owned(),
        source,
    };
    let stream = |reader: Box<dyn Read + Send>| Input::Stream {
        reader,
        buf: Vec::new(),
        start: 0,
        end: 0,
        eof: false,
    };
    let (mut file, regular) = if path.as_os_str() == "-" {
        // A handle of our own on standard input, unbuffered: no byte waits in a buffer of std's.
        let stdin = std::io::stdin().as_fd().try_clone_to_owned().map_err(io)?;
        (File::from(stdin), false)
    } else {
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::ErrorKind::IsADirectory.into()));
        }
        (file, meta.is_file())
    };
    // The first bytes tell the compression; a stream gets them back first.
    let mut head = Vec::with_capacity(Compression::MAGIC_LEN);
    (&mut file)
        .take(Compression::MAGIC_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    if head.is_empty() {
        return Err(Error::EmptyCapture {
            path: path.to_owned(),
        });
    }
    opened()?;
    match Compression::of(&head) {
        Some(compression) => {
            let (feeder, pipe) = Feeder::start(head, file, Some(compression)).map_err(io)?;
            Ok((stream(Box::new(File::from(pipe))), Some(feeder)))
        }
        None if regular => {
            // SAFETY: the map is only read. A file changed under the map while it is read
            // changes what is read (as it would through read(2)); one cut shorter under it would
            // fault, which capture files being written elsewhere do not do to files written.
            if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
                let _ = map.advise(memmap2::Advice::Sequential);
                return Ok((
                    Input::Mapped {
                        map,
                        at: 0,
                        released: 0,
                    },
                    None,
                ));
            }
            file.rewind().map_err(io)?;
            Ok((stream(Box::new(file)), None))
        }
        None => Ok((
            stream(Box::new(std::io::Cursor::new(head).chain(file))),
            None,
        )),
    }
}

impl CaptureFile {
    /// Opens `path` (`-` for standard input) and applies `filter` (tcpdump syntax).
    ///
    /// # Errors
    /// The file cannot be read, is not a capture, has a link type tcptrack cannot decode, or the
    /// filter does not compile.
    pub fn open(path: &Path, filter: Option<&str>) -> Result<Self, Error> {
        Self::open_then(path, filter, &mut || Ok(()))
    }

    /// [`CaptureFile::open`], running `opened` once the file is open and before any thread
    /// starts (a compressed capture's feeder): privileges are given up there.
    ///
    /// # Errors
    /// As [`CaptureFile::open`], and what `opened` returns.
    pub fn open_then(
        path: &Path,
        filter: Option<&str>,
        opened: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<Self, Error> {
        let (mut input, feeder) = open_input(path, opened)?;
        let not_a_capture = |cut: CaptureCut| Error::NotACapture {
            path: path.to_owned(),
            cut,
        };
        let (parser, used) = loop {
            match Parser::start(input.bytes()) {
                Ok(Ok(started)) => break started,
                Ok(Err(need)) => {
                    let more = input
                        .fill(need)
                        .map_err(|e| not_a_capture(CaptureCut::Io(e)))?;
                    if !more {
                        let nothing = input.bytes().is_empty();
                        drop(input);
                        // The stream's damage first, then nothing at all (a compressed capture
                        // of nothing), then a header cut short.
                        return Err(
                            match feeder.and_then(Feeder::finish).and_then(|f| f.error) {
                                Some(e) => not_a_capture(CaptureCut::Stream(e)),
                                None if nothing => Error::EmptyCapture {
                                    path: path.to_owned(),
                                },
                                None => not_a_capture(CaptureCut::Header),
                            },
                        );
                    }
                }
                Err(d) => {
                    // A damaged compressed stream may decompress into garbage first: its
                    // feeder's word goes first.
                    drop(input);
                    let stream = feeder.and_then(Feeder::finish).and_then(|f| f.error);
                    return Err(not_a_capture(
                        stream.map_or(CaptureCut::Damaged(d), Into::into),
                    ));
                }
            }
        };
        input.consume(used);
        let mut file = Self {
            path: path.to_owned(),
            input,
            feeder,
            parser,
            filter: None,
            packets: 0,
        };
        file.first_link()?;
        if let Some(expr) = filter {
            // Compiled now for the first link type, so that a bad filter fails before reading.
            let link = file.parser.link().unwrap_or(1);
            let first = Filter::compile(expr, link)?;
            file.filter = Some(Filter {
                expr: expr.to_owned(),
                compiled: vec![(link, first)],
            });
        }
        Ok(file)
    }

    /// Reads up to the first interface of a pcapng file (blocks before it carry no packet),
    /// and refuses a file whose first link type tcptrack cannot decode.
    fn first_link(&mut self) -> Result<(), Error> {
        while self.parser.link().is_none() {
            match self.parser.step(self.input.bytes()) {
                Ok(Step::Skip { used }) => self.input.consume(used),
                Ok(Step::More(need)) => match self.input.fill(need) {
                    Ok(true) => {}
                    // No interface at all: a capture of nothing, or one cut short, which the
                    // first read says.
                    Ok(false) | Err(_) => return Ok(()),
                },
                // A packet before any interface: the first read says it is damaged.
                Ok(Step::Packet { .. }) | Err(_) => return Ok(()),
            }
        }
        let link = self.parser.link().unwrap_or(1);
        if LinkType::from_dlt(dlt_of(link)).is_none() {
            let dlt = dlt_of(link);
            return Err(Error::UnsupportedLinkType {
                path: self.path.clone(),
                name: pcap::Linktype(dlt)
                    .get_name()
                    .unwrap_or_else(|_| "unknown".into()),
                dlt,
            });
        }
        Ok(())
    }

    /// The link type of its (first) interface, once known.
    #[must_use]
    pub fn link(&self) -> Option<LinkType> {
        LinkType::from_dlt(dlt_of(self.parser.link()?))
    }

    /// Reads every packet, handing each TCP packet's update to `sink` with its capture time.
    /// Stops at the end of the file, or at the first damage (what came before is kept).
    pub fn read_all(&mut self, mut sink: impl FnMut(&FlowUpdate)) -> ReadEnd {
        loop {
            let step = self.parser.step(self.input.bytes());
            let cut = match step {
                Ok(Step::Packet { record, used }) => {
                    self.packets += 1;
                    let take = match &mut self.filter {
                        Some(f) => match f.matches(&record) {
                            Ok(take) => take,
                            Err(e) => return ReadEnd::Truncated(e),
                        },
                        None => true,
                    };
                    if take {
                        if let Some(link) = LinkType::from_dlt(dlt_of(record.link)) {
                            if let Some(u) = decode(link, record.data, record.orig_len, record.ts) {
                                sink(&u);
                            }
                        }
                    }
                    self.input.consume(used);
                    continue;
                }
                Ok(Step::Skip { used }) => {
                    self.input.consume(used);
                    continue;
                }
                Ok(Step::More(need)) => match self.input.fill(need) {
                    Ok(true) => continue,
                    Ok(false) if self.input.bytes().is_empty() => {
                        // The end of the bytes; a compressed stream may still have been cut
                        // short on a record's boundary (its feeder says so before its end).
                        match self.feeder.as_ref().and_then(Feeder::ended) {
                            Some(fed) if fed.error.is_some() => {
                                return self.cut(fed.error.map_or(CaptureCut::Record, Into::into))
                            }
                            _ => return ReadEnd::Complete,
                        }
                    }
                    Ok(false) => CaptureCut::Record,
                    Err(e) => CaptureCut::Io(e),
                },
                Err(d) => CaptureCut::Damaged(d),
            };
            // A damaged or cut compressed stream is what cut the capture short, whatever the
            // parser made of the bytes before it.
            let stream = self.feeder.as_ref().and_then(Feeder::ended);
            return self.cut(stream.and_then(|fed| fed.error).map_or(cut, Into::into));
        }
    }

    /// Reading ended at `cut`.
    fn cut(&self, cut: CaptureCut) -> ReadEnd {
        ReadEnd::Truncated(Error::Truncated {
            path: self.path.clone(),
            packets: self.packets,
            cut,
        })
    }

    /// Packets read so far (TCP or not, before the filter).
    #[must_use]
    pub const fn packets(&self) -> u64 {
        self.packets
    }
}

/// Plays `file` at its recorded pace times `speed` on a thread of its own, sending batches of
/// updates (and, first, the clock that maps capture time to the wall clock) into `tx`.
pub fn spawn_replay(
    mut file: CaptureFile,
    speed: f64,
    tx: tokio::sync::mpsc::Sender<super::SourceMsg>,
) -> std::thread::JoinHandle<()> {
    use super::{SourceMsg, BATCH_AGE, BATCH_MAX};
    use std::time::Instant;
    std::thread::spawn(move || {
        let mut origin: Option<(Timestamp, Instant)> = None;
        let mut batch = Vec::with_capacity(BATCH_MAX);
        let mut sent_at = Instant::now();
        let mut closed = false;
        let end = file.read_all(|u| {
            if closed {
                return;
            }
            let (t0, w0) = *origin.get_or_insert_with(|| {
                let o = (u.ts, Instant::now());
                closed |= tx
                    .blocking_send(SourceMsg::Clock {
                        at: o.0,
                        wall: o.1,
                        speed,
                    })
                    .is_err();
                o
            });
            // Wait until the packet is due, sending what is ready first.
            let due = w0 + u.ts.saturating_sub(t0).div_f64(speed);
            let now = Instant::now();
            if due > now {
                if !batch.is_empty() {
                    closed |= tx
                        .blocking_send(SourceMsg::Batch(std::mem::take(&mut batch)))
                        .is_err();
                    sent_at = Instant::now();
                }
                std::thread::sleep(due - now);
            }
            batch.push(*u);
            if batch.len() >= BATCH_MAX || sent_at.elapsed() >= BATCH_AGE {
                closed |= tx
                    .blocking_send(SourceMsg::Batch(std::mem::take(&mut batch)))
                    .is_err();
                sent_at = Instant::now();
            }
        });
        if !closed {
            let _ = tx.blocking_send(SourceMsg::Batch(batch));
            let _ = tx.blocking_send(SourceMsg::End(end.into_error()));
        }
    })
}
