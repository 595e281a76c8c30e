//! Capture files (`-T`): pcap, nanosecond pcap and pcapng, read through libpcap, also compressed
//! (gzip, zstd) and from standard input (see [`stream`](super::stream)).

use std::fs::File;
use std::io::{Read as _, Seek as _};
use std::os::fd::{AsFd as _, AsRawFd as _, IntoRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap::{Capture, Offline, Precision};

use super::stream::{Compression, Fed, Feeder};
use crate::decode::{decode, LinkType};
use crate::error::{Cut, Error};
use crate::flow::{FlowUpdate, Timestamp};

/// An open capture file, its filter applied.
pub struct CaptureFile {
    path: PathBuf,
    /// Declared before `feeder`, so dropped first: the pipe's read end closes, and the feeder's
    /// thread, joined when `feeder` drops, ends.
    cap: Capture<Offline>,
    /// The thread that feeds libpcap a compressed capture or standard input through a pipe.
    feeder: Option<Feeder>,
    link: LinkType,
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

impl CaptureFile {
    /// Opens `path` (`-` for standard input) and applies `filter` (tcpdump syntax).
    ///
    /// # Errors
    /// The file cannot be read, is not a capture, has a link type tcptrack cannot decode, or the
    /// filter does not compile.
    pub fn open(path: &Path, filter: Option<&str>) -> Result<Self, Error> {
        let (mut cap, feeder) = open_capture(path)?;
        let dlt = cap.get_datalink();
        let link = LinkType::from_dlt(dlt.0).ok_or_else(|| Error::UnsupportedLinkType {
            path: path.to_owned(),
            name: dlt.get_name().unwrap_or_else(|_| "unknown".into()),
            dlt: dlt.0,
        })?;
        if let Some(expr) = filter {
            cap.filter(expr, true).map_err(|source| Error::Filter {
                expr: expr.to_owned(),
                source,
            })?;
        }
        Ok(Self {
            path: path.to_owned(),
            cap,
            feeder,
            link,
            packets: 0,
        })
    }

    /// Reads every packet, handing each TCP packet's update to `sink` with its capture time.
    /// Stops at the end of the file, or at the first damage (what came before is kept).
    pub fn read_all(&mut self, mut sink: impl FnMut(&FlowUpdate)) -> ReadEnd {
        loop {
            match self.cap.next_packet() {
                Ok(p) => {
                    self.packets += 1;
                    let ts = timestamp(p.header.ts);
                    if let Some(u) = decode(self.link, p.data, p.header.len, ts) {
                        sink(&u);
                    }
                }
                Err(pcap::Error::NoMorePackets) => return self.end(None),
                Err(source) => return self.end(Some(source)),
            }
        }
    }

    /// How reading ended, libpcap having said `libpcap` (`None`: the end of the stream). A
    /// damaged compressed stream, or standard input's read error, is what cut the capture
    /// short, whatever libpcap made of the bytes before it.
    fn end(&self, libpcap: Option<pcap::Error>) -> ReadEnd {
        let stream = self.feeder.as_ref().and_then(Feeder::ended);
        let cut = match (stream.and_then(|fed| fed.error), libpcap) {
            (Some(e), _) => Cut::Stream(e),
            (None, Some(e)) => Cut::Libpcap(e),
            (None, None) => return ReadEnd::Complete,
        };
        ReadEnd::Truncated(Error::Truncated {
            path: self.path.clone(),
            packets: self.packets,
            source: cut,
        })
    }

    /// Packets read so far (TCP or not, after the filter).
    #[must_use]
    pub const fn packets(&self) -> u64 {
        self.packets
    }
}

/// libpcap's handle on the capture at `path` (`-`: standard input). libpcap reads a regular,
/// uncompressed file itself, from the start; anything else from a pipe that a [`Feeder`] fills:
/// decompressed (told by the first bytes, not the name), the bytes read to tell first.
fn open_capture(path: &Path) -> Result<(Capture<Offline>, Option<Feeder>), Error> {
    let file_error = |source| Error::CaptureFile {
        path: path.to_owned(),
        source,
    };
    let (mut input, regular) = if path.as_os_str() == "-" {
        // A handle of our own on standard input, unbuffered: no byte waits in a buffer of std's.
        let stdin = std::io::stdin().as_fd().try_clone_to_owned();
        (File::from(stdin.map_err(file_error)?), false)
    } else {
        let file = File::open(path).map_err(file_error)?;
        let regular = file.metadata().map_err(file_error)?.is_file();
        (file, regular)
    };
    let mut head = Vec::with_capacity(Compression::MAGIC_LEN);
    (&mut input)
        .take(Compression::MAGIC_LEN as u64)
        .read_to_end(&mut head)
        .map_err(file_error)?;
    if head.is_empty() {
        return Err(Error::EmptyCapture {
            path: path.to_owned(),
        });
    }
    let compression = Compression::of(&head);
    if regular && compression.is_none() {
        input.rewind().map_err(file_error)?;
        return libpcap_on(input.into())
            .map(|cap| (cap, None))
            .map_err(|source| Error::OpenCapture {
                path: path.to_owned(),
                source,
            });
    }
    let (feeder, pipe) = Feeder::start(head, input, compression).map_err(file_error)?;
    match libpcap_on(pipe) {
        Ok(cap) => Ok((cap, Some(feeder))),
        // The read end is closed: the feeder ends, and can say how its stream went.
        Err(source) => Err(not_a_capture(path, source, feeder.finish())),
    }
}

/// libpcap's handle on the capture `fd` reads, which it owns from then on. When libpcap cannot
/// open it, `fd` is closed all the same.
fn libpcap_on(fd: OwnedFd) -> Result<Capture<Offline>, pcap::Error> {
    let fd = fd.into_raw_fd();
    // SAFETY: `fd` is open and ours alone; the capture owns it from here.
    unsafe { Capture::from_raw_fd_with_precision(fd, Precision::Nano) }.inspect_err(|_| {
        // libpcap leaves a stream it could not open to its caller (its own `pcap_open_offline`
        // closes it then), and the pcap crate drops it unclosed: the descriptor stays open,
        // held by a `FILE` nobody will use. It is replaced by /dev/null rather than closed, so
        // that its number is not reused while that `FILE` names it.
        match File::open("/dev/null") {
            // SAFETY: dup2 onto `fd`, still ours (see above); this closes what it was.
            Ok(null) => unsafe {
                libc::dup2(null.as_raw_fd(), fd);
            },
            // SAFETY: as above; without /dev/null, closing is the way left.
            Err(_) => unsafe {
                libc::close(fd);
            },
        }
    })
}

/// Why libpcap could not open what the feeder gave it: the stream's damage first, then nothing
/// at all (an empty standard input, a compressed capture of nothing), then libpcap's reason.
fn not_a_capture(path: &Path, source: pcap::Error, fed: Option<Fed>) -> Error {
    let path = path.to_owned();
    match fed {
        Some(Fed {
            error: Some(source),
            ..
        }) => Error::CaptureStream { path, source },
        Some(Fed { bytes: 0, .. }) => Error::EmptyCapture { path },
        _ => Error::OpenCapture { path, source },
    }
}

/// A capture header's time (nanosecond precision: `tv_usec` holds nanoseconds).
///
/// pcap stores seconds as an unsigned 32-bit number (good until 2106), which libpcap hands over
/// sign-extended: a negative value is such a time after 2038.
fn timestamp(tv: libc::timeval) -> Timestamp {
    // time_t is i64 on the 64-bit targets tcptrack builds for.
    let secs: i64 = tv.tv_sec;
    let secs = if (i64::from(i32::MIN)..0).contains(&secs) {
        secs + (1 << 32)
    } else {
        secs
    };
    let secs = u64::try_from(secs).unwrap_or(0);
    let nanos = u32::try_from(tv.tv_usec).unwrap_or(0).min(999_999_999);
    Duration::new(secs, nanos)
}

impl CaptureFile {
    /// Reads the file whole, handing `feed` its updates in batches, then the end (with the
    /// damage, for a file cut short). On the caller's thread: a file read whole has nobody to
    /// wait for, and a thread would only add hand-overs.
    pub fn feed(&mut self, mut feed: impl FnMut(super::SourceMsg)) {
        use super::{SourceMsg, BATCH_MAX};
        let mut batch = Vec::with_capacity(BATCH_MAX);
        let end = self.read_all(|u| {
            batch.push(*u);
            if batch.len() >= BATCH_MAX {
                feed(SourceMsg::Batch(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(BATCH_MAX),
                )));
            }
        });
        feed(SourceMsg::Batch(batch));
        feed(SourceMsg::End(end.into_error()));
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
