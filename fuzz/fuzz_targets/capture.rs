//! Capture files: arbitrary bytes (and mutations of the suite's own captures, the seeds) read
//! three ways, which must agree.
//!
//! - The parser handed the whole input, as a mapped file is read.
//! - The parser handed a buffer that grows a few bytes at a time whenever it asks for more, as a
//!   stream is read: the same records and the same ending (clean, cut short, or the same damage).
//!   On the way, what a stream reader relies on: a step takes at least one byte and no more than
//!   it was given, and asking for more always asks for more than it has, and never for more than
//!   the largest record (16 MiB), so that a stream's buffer stays bounded.
//! - `CaptureFile` on the bytes written to a file (mapped): the updates of the records its
//!   link types decode, and an ending that says the same. Bytes that start as a gzip or zstd
//!   stream are a compressed capture: what `CaptureFile` must agree with is then the parser's
//!   reading of what the stream decompresses to, cut short if the stream is.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tcptrack::decode::{decode, LinkType};
use tcptrack::error::Error;
use tcptrack::flow::FlowUpdate;
use tcptrack::source::file::{CaptureFile, ReadEnd};
use tcptrack::source::savefile::{Damage, Parser, Step};
use tcptrack::source::stream::{Compression, Feeder};

/// The most a record or block may ask a stream to hold (pcapng's block limit).
const MOST_BUFFERED: usize = 16 * 1024 * 1024;

/// A record as read: (ns since the epoch, captured bytes, wire length, link type).
type Rec = (u128, Vec<u8>, u32, u16);

#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    /// The input ended on a record's end.
    Clean,
    /// The input ended inside the header or a record.
    Cut,
    Damaged(Damage),
}

/// How much a step of `avail` bytes may ask for, and how much it may take.
fn check_step(step: &Step<'_>, avail: usize) {
    match step {
        Step::Packet { used, .. } | Step::Skip { used } => {
            assert!(*used > 0 && *used <= avail, "took {used} of {avail} bytes");
        }
        Step::More(n) => {
            assert!(*n > avail, "asked for {n} bytes while holding {avail}");
            assert!(*n <= MOST_BUFFERED, "asked a stream to hold {n} bytes");
        }
    }
}

/// The records of `bytes`, the parser handed `chunk` more bytes whenever it asks for more
/// (`chunk` = the length: the whole input at once).
fn read(bytes: &[u8], chunk: usize) -> (Vec<Rec>, End) {
    let mut out = Vec::new();
    let mut have = chunk.min(bytes.len());
    let (mut parser, mut at) = loop {
        match Parser::start(&bytes[..have]) {
            Ok(Ok((p, used))) => {
                assert!(
                    used > 0 && used <= have,
                    "the header took {used} of {have} bytes"
                );
                break (p, used);
            }
            Ok(Err(n)) => {
                assert!(
                    n > have,
                    "the header asked for {n} bytes while holding {have}"
                );
                if have == bytes.len() {
                    return (out, End::Cut);
                }
                have = (have + chunk).min(bytes.len());
            }
            Err(d) => return (out, End::Damaged(d)),
        }
    };
    loop {
        let step = parser.step(&bytes[at..have]);
        if let Ok(s) = &step {
            check_step(s, have - at);
        }
        match step {
            Ok(Step::Packet { record, used }) => {
                out.push((
                    record.ts.as_nanos(),
                    record.data.to_vec(),
                    record.orig_len,
                    record.link,
                ));
                at += used;
            }
            Ok(Step::Skip { used }) => at += used,
            Ok(Step::More(_)) if have < bytes.len() => have = (have + chunk).min(bytes.len()),
            Ok(Step::More(_)) if at == bytes.len() => return (out, End::Clean),
            Ok(Step::More(_)) => return (out, End::Cut),
            Err(d) => return (out, End::Damaged(d)),
        }
    }
}

fn link_type(link: u16) -> Option<LinkType> {
    LinkType::from_dlt(i32::from(link))
}

/// The updates `records` decode to.
fn updates(records: &[Rec]) -> Vec<FlowUpdate> {
    records
        .iter()
        .filter_map(|(ts, data, orig_len, link)| {
            let ts = std::time::Duration::from_nanos(u64::try_from(*ts).ok()?);
            decode(link_type(*link)?, data, *orig_len, ts)
        })
        .collect()
}

/// The link type of the file's first interface, once one is described.
fn first_link(bytes: &[u8]) -> Option<u16> {
    let (mut parser, mut at) = Parser::start(bytes).ok()?.ok()?;
    loop {
        if let Some(link) = parser.link() {
            return Some(link);
        }
        match parser.step(bytes.get(at..)?).ok()? {
            Step::Skip { used } => at += used,
            Step::Packet { .. } | Step::More(_) => return None,
        }
    }
}

/// A file of this process's own in memory (tmpfs when there is one).
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("tcptrack-fuzz-capture-{}", std::process::id()))
    })
}

/// The most a compressed input may decompress to for the file's check (a few KiB of zstd can
/// say hundreds of MiB).
const MOST_INFLATED: usize = 64 * 1024 * 1024;

/// What tcptrack's feeder decompresses from the file at `path` (compressed as `compression`
/// says), and whether the stream was whole; `None` past [`MOST_INFLATED`].
fn inflate(path: &std::path::Path, compression: Compression) -> Option<(Vec<u8>, bool)> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).expect("open the scratch file");
    let mut head = Vec::new();
    (&mut file)
        .take(Compression::MAGIC_LEN as u64)
        .read_to_end(&mut head)
        .expect("read the head");
    let (feeder, pipe) = Feeder::start(head, file, Some(compression)).expect("start the feeder");
    let mut inflated = Vec::new();
    std::fs::File::from(pipe)
        .take(MOST_INFLATED as u64 + 1)
        .read_to_end(&mut inflated)
        .expect("read the pipe");
    if inflated.len() > MOST_INFLATED {
        return None;
    }
    let whole = feeder.finish().is_none_or(|fed| fed.error.is_none());
    Some((inflated, whole))
}

/// `CaptureFile` on `bytes` through a file agrees with the parser's reading of them (of what
/// they decompress to, for a compressed capture).
fn file_agrees(bytes: &[u8], records: &[Rec], end: &End) {
    let path = scratch();
    std::fs::write(path, bytes).expect("write the scratch file");
    let inflated;
    let (bytes, records, end) = match Compression::of(bytes) {
        None => (bytes, records.to_vec(), end.clone()),
        Some(compression) => {
            let Some((inner, whole)) = inflate(path, compression) else {
                let _ = std::fs::remove_file(path);
                return;
            };
            inflated = inner;
            let (records, end) = read(&inflated, inflated.len().max(1));
            // A stream cut or damaged on a record's boundary still cuts the capture short.
            let end = if !whole && end == End::Clean { End::Cut } else { end };
            (&inflated[..], records, end)
        }
    };
    let (records, end) = (&records[..], &end);
    let opened = CaptureFile::open(path, None);
    // The map outlives the name: nothing is left behind.
    let _ = std::fs::remove_file(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => {
            // Refused before any packet: the header is cut or damaged, the file empty, or the
            // first link type is one tcptrack does not decode.
            let refusable = records.is_empty()
                || matches!(e, Error::UnsupportedLinkType { .. })
                    && first_link(bytes).is_some_and(|l| link_type(l).is_none());
            assert!(refusable, "open refused {} records: {e}", records.len());
            return;
        }
    };
    let mut got = Vec::new();
    let read_end = file.read_all(|u| got.push(*u));
    assert_eq!(
        got,
        updates(records),
        "CaptureFile decodes the parser's records"
    );
    match read_end {
        ReadEnd::Complete => assert_eq!(*end, End::Clean),
        ReadEnd::Truncated(Error::Truncated { packets, .. }) => {
            assert_ne!(*end, End::Clean);
            assert_eq!(Some(packets), u64::try_from(records.len()).ok());
        }
        ReadEnd::Truncated(e) => panic!("not a cut: {e}"),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let (records, end) = read(bytes, bytes.len().max(1));
    for chunk in [1, 2 + bytes.len() % 23] {
        assert_eq!(
            read(bytes, chunk),
            (records.clone(), end.clone()),
            "{chunk} bytes at a time"
        );
    }
    file_agrees(bytes, &records, &end);
});
