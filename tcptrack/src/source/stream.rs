//! Compressed captures (gzip, zstd: told by their first bytes, as tshark does, not by their
//! name), from a file or standard input. A thread writes the capture's bytes, decompressed, into
//! a pipe whose read end the capture parser reads; the first bytes, read to tell the
//! compression, go first, so that none is lost.
//!
//! The thread ends at the end of its input, or as soon as the pipe's read end is closed (the
//! reader stopped early): it waits for input and for that at once (`poll`), so that a silent
//! standard input cannot hold it.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::os::fd::{AsRawFd as _, OwnedFd, RawFd};
use std::sync::mpsc;
use std::thread::JoinHandle;

use flate2::read::MultiGzDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

/// How a capture's bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// Bytes enough to tell ([`Compression::of`]).
    pub const MAGIC_LEN: usize = 4;

    /// The compression whose magic number `head` starts with, if any.
    #[must_use]
    pub fn of(head: &[u8]) -> Option<Self> {
        match head {
            [0x1f, 0x8b, ..] => Some(Self::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Self::Zstd),
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        })
    }
}

/// Why the bytes fed to libpcap stopped before the end of the input: a compressed stream
/// damaged or cut short, or the input's read error.
#[derive(Debug)]
pub struct StreamError {
    compression: Option<Compression>,
    /// The input had ended: the stream is cut short, not damaged in its middle.
    cut: bool,
    source: io::Error,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.compression, self.cut) {
            (Some(c), true) => write!(f, "the {c} stream ends early"),
            (Some(c), false) => write!(f, "the {c} stream is damaged: {}", self.source),
            (None, _) => write!(f, "{}", self.source),
        }
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// How feeding ended.
#[derive(Debug)]
pub struct Fed {
    /// Bytes written into the pipe (decompressed).
    pub bytes: u64,
    /// What stopped it before the end of the input.
    pub error: Option<StreamError>,
}

/// Blocks SIGPIPE in the calling thread: a write into the pipe after its reader stopped early
/// then fails with `EPIPE`, which [`feed`] takes for the reader gone, instead of killing the
/// process where SIGPIPE has its default action (the binary ignores it, as Rust programs do;
/// a program embedding this library, or the fuzzer's harness, may not). The signal left
/// pending goes with the thread.
fn no_sigpipe_here() {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; pthread_sigmask changes this
    // thread's mask only, and is given a valid set and no old-set pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
    }
}

/// The thread that feeds libpcap's pipe. Dropping it waits for the thread, which ends once the
/// pipe's read end is closed, if not before: drop the capture that reads the pipe first.
pub struct Feeder {
    thread: Option<JoinHandle<()>>,
    ended: mpsc::Receiver<Fed>,
}

impl Feeder {
    /// Starts writing `head`, then the rest of `input`, decompressed as `compression` says, into
    /// a new pipe. Returns the feeder and the pipe's read end.
    ///
    /// # Errors
    /// The pipe or the thread cannot be made.
    pub fn start(
        head: Vec<u8>,
        input: File,
        compression: Option<Compression>,
    ) -> io::Result<(Self, OwnedFd)> {
        let (reader, writer) = io::pipe()?;
        let (done, ended) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("capture-feeder".into())
            .spawn(move || {
                no_sigpipe_here();
                feed(head, input, compression, writer, &done);
            })?;
        let feeder = Self {
            thread: Some(thread),
            ended,
        };
        Ok((feeder, reader.into()))
    }

    /// How the stream ended, once it has; `None` while the thread still writes (the reader
    /// stopped before the end of the stream). Once libpcap has read the pipe to its end, this is
    /// `Some`: the thread says how it ended before it closes the pipe. Says it once.
    #[must_use]
    pub fn ended(&self) -> Option<Fed> {
        self.ended.try_recv().ok()
    }

    /// Waits for the thread and says how the stream ended. The pipe's read end must be closed
    /// (or read to its end) first: the thread ends then.
    #[must_use]
    pub fn finish(mut self) -> Option<Fed> {
        self.join();
        self.ended()
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A panic in the thread has been reported by the panic hook; the stream just ends.
            let _ = thread.join();
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.join();
    }
}

/// The feeder thread: copies `head` and `input`, decompressed, into `out`, then says how that
/// ended on `done`, and only then closes the pipe.
fn feed(
    head: Vec<u8>,
    input: File,
    compression: Option<Compression>,
    out: io::PipeWriter,
    done: &mpsc::Sender<Fed>,
) {
    let input = Watched {
        input,
        pipe: out.as_raw_fd(),
        reader_gone: false,
    };
    let mut source = Tracked {
        inner: Cursor::new(head).chain(input),
        ended: false,
    };
    let mut sink = Counted {
        inner: out,
        bytes: 0,
        failed: false,
    };
    let result = match compression {
        None => io::copy(&mut source, &mut sink).map(drop),
        Some(Compression::Gzip) => {
            io::copy(&mut MultiGzDecoder::new(&mut source), &mut sink).map(drop)
        }
        Some(Compression::Zstd) => unzstd(&mut BufReader::new(&mut source), &mut sink),
    };
    // A failed write is the reader gone (it stopped early): nothing to report.
    let reader_gone = sink.failed || source.inner.get_ref().1.reader_gone;
    let error = match result {
        Err(e) if !reader_gone => Some(StreamError {
            compression,
            cut: source.ended || e.kind() == io::ErrorKind::UnexpectedEof,
            source: e,
        }),
        _ => None,
    };
    let _ = done.send(Fed {
        bytes: sink.bytes,
        error,
    });
    drop(sink);
}

/// Every zstd frame of `source` in turn, skippable frames skipped, each checked against its
/// checksum when it has one.
fn unzstd(source: &mut impl BufRead, out: &mut impl Write) -> io::Result<()> {
    let damaged = |e: FrameDecoderError| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut decoder = FrameDecoder::new();
    while !source.fill_buf()?.is_empty() {
        let mut frame = match StreamingDecoder::new_with_decoder(&mut *source, &mut decoder) {
            Ok(frame) => frame,
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                let length = u64::from(length);
                if io::copy(&mut source.take(length), &mut io::sink())? < length {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                continue;
            }
            Err(e) => return Err(damaged(e)),
        };
        io::copy(&mut frame, out)?;
        if let (Some(stored), Some(computed)) = (
            decoder.get_checksum_from_data(),
            decoder.get_calculated_checksum(),
        ) {
            if stored != computed {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "checksum mismatch",
                ));
            }
        }
    }
    Ok(())
}

/// The feeder's input, read once it has bytes (or has ended), and given up as soon as the pipe's
/// reader has gone.
struct Watched {
    input: File,
    /// The pipe's write end, which the feeder holds for as long as this lives.
    pipe: RawFd,
    reader_gone: bool,
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut fds = [
            libc::pollfd {
                fd: self.input.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            // A pipe's write end polls POLLERR once no reader is left.
            libc::pollfd {
                fd: self.pipe,
                events: 0,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: `fds` holds two initialised pollfd and poll is told so; both descriptors
            // are open (the input is ours, the write end is held by the feeder meanwhile).
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents != 0 {
                self.reader_gone = true;
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            if fds[0].revents != 0 {
                return self.input.read(buf);
            }
        }
    }
}

/// A reader that notes when its input has ended.
struct Tracked<R> {
    inner: R,
    ended: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ended |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

/// A writer that counts what it wrote and notes whether writing failed.
struct Counted<W> {
    inner: W,
    bytes: u64,
    failed: bool,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|_| self.failed = true)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    /// A pipe's read end that gives `bytes`, then its end (a thread writes them).
    fn input(bytes: &[u8]) -> File {
        let (reader, mut writer) = io::pipe().expect("pipe");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || writer.write_all(&bytes));
        File::from(OwnedFd::from(reader))
    }

    /// Feeds `bytes` as an input whose first bytes were read to tell the compression, and
    /// reads the pipe to its end.
    fn through(bytes: &[u8]) -> (Vec<u8>, Fed) {
        let split = bytes.len().min(Compression::MAGIC_LEN);
        let (head, rest) = bytes.split_at(split);
        let compression = Compression::of(head);
        let (feeder, fd) = Feeder::start(head.to_vec(), input(rest), compression).expect("started");
        let mut out = Vec::new();
        std::fs::File::from(fd)
            .read_to_end(&mut out)
            .expect("pipe read");
        let fed = feeder.ended().expect("said before the pipe closed");
        (out, fed)
    }

    fn data() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn plain_gzip_and_zstd_come_out_whole() {
        let data = data();
        for (what, bytes) in [
            ("plain", data.clone()),
            ("gzip", gzip(&data)),
            ("zstd", zstd(&data)),
        ] {
            let (out, fed) = through(&bytes);
            assert!(fed.error.is_none(), "{what}: {:?}", fed.error);
            assert_eq!(fed.bytes, data.len() as u64, "{what}");
            assert!(out == data, "{what}: not the same bytes");
        }
    }

    #[test]
    fn concatenated_members_and_frames_come_out_whole() {
        let data = data();
        let (a, b) = data.split_at(12_345);
        for (what, bytes) in [
            ("gzip", [gzip(a), gzip(b)].concat()),
            // A skippable frame between two frames.
            (
                "zstd",
                [
                    zstd(a),
                    vec![0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3],
                    zstd(b),
                ]
                .concat(),
            ),
        ] {
            let (out, fed) = through(&bytes);
            assert!(fed.error.is_none(), "{what}: {:?}", fed.error);
            assert!(out == data, "{what}: not the same bytes");
        }
    }

    #[test]
    fn a_cut_or_damaged_stream_says_so_after_what_it_could_give() {
        let data = data();
        for (c, bytes) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Zstd, zstd(&data)),
        ] {
            let (out, fed) = through(&bytes[..bytes.len() / 2]);
            let e = fed.error.expect("cut");
            assert_eq!(e.to_string(), format!("the {c} stream ends early"));
            assert!(!out.is_empty() && data.starts_with(&out), "{c}: a prefix");

            let mut damaged = bytes.clone();
            let mid = damaged.len() / 2;
            for b in &mut damaged[mid..mid + 64] {
                *b ^= 0x5a;
            }
            let (out, fed) = through(&damaged);
            let e = fed.error.expect("damaged");
            assert!(
                e.to_string()
                    .starts_with(&format!("the {c} stream is damaged: ")),
                "{e}"
            );
            assert!(out.len() < data.len(), "{c}");
        }
    }

    #[test]
    fn a_reader_that_stops_early_ends_the_thread() {
        let bytes = gzip(&data());
        let (feeder, fd) = Feeder::start(
            bytes[..4].to_vec(),
            input(&bytes[4..]),
            Some(Compression::Gzip),
        )
        .expect("started");
        let mut first = [0u8; 10];
        let mut pipe = std::fs::File::from(fd);
        pipe.read_exact(&mut first).expect("some bytes");
        drop(pipe);
        // Joins: the thread's write fails once the read end is gone.
        let fed = feeder.finish().expect("said");
        assert!(fed.error.is_none(), "{:?}", fed.error);
        assert!(fed.bytes < data().len() as u64);
    }

    #[test]
    fn a_silent_input_does_not_hold_the_thread_once_the_reader_is_gone() {
        // An input that never says anything, nor ends (its write end stays open).
        let (reader, writer) = io::pipe().expect("pipe");
        let (feeder, fd) = Feeder::start(
            b"\xd4\xc3\xb2\xa1".to_vec(),
            File::from(OwnedFd::from(reader)),
            None,
        )
        .expect("started");
        let mut pipe = File::from(fd);
        let mut head = [0u8; 4];
        pipe.read_exact(&mut head).expect("the head");
        drop(pipe);
        let fed = feeder.finish().expect("said");
        assert!(fed.error.is_none(), "{:?}", fed.error);
        assert_eq!(fed.bytes, 4);
        drop(writer);
    }
}
