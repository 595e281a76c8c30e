//! Capture files (`-T`): pcap, nanosecond pcap and pcapng, read through libpcap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap::{Capture, Offline, Precision};

use crate::decode::{decode, LinkType};
use crate::error::Error;
use crate::flow::{FlowUpdate, Timestamp};

/// An open capture file, its filter applied.
pub struct CaptureFile {
    path: PathBuf,
    cap: Capture<Offline>,
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
        let mut cap = Capture::from_file_with_precision(path, Precision::Nano)
            .map_err(|source| unreadable(path, source))?;
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
                Err(pcap::Error::NoMorePackets) => return ReadEnd::Complete,
                Err(source) => {
                    return ReadEnd::Truncated(Error::Truncated {
                        path: self.path.clone(),
                        packets: self.packets,
                        source,
                    })
                }
            }
        }
    }

    /// Packets read so far (TCP or not, after the filter).
    #[must_use]
    pub const fn packets(&self) -> u64 {
        self.packets
    }
}

/// Why libpcap could not open `path`, said once: the file system's reason when there is one
/// (libpcap's repeats the path), an empty file as such, else libpcap's reason.
fn unreadable(path: &Path, source: pcap::Error) -> Error {
    let path = path.to_owned();
    if path.as_os_str() == "-" {
        return Error::OpenCapture { path, source };
    }
    match std::fs::File::open(&path).and_then(|f| f.metadata()) {
        Err(source) => Error::CaptureFile { path, source },
        Ok(m) if m.is_dir() => Error::CaptureFile {
            path,
            source: std::io::ErrorKind::IsADirectory.into(),
        },
        Ok(m) if m.is_file() && m.len() == 0 => Error::EmptyCapture { path },
        Ok(_) => Error::OpenCapture { path, source },
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
