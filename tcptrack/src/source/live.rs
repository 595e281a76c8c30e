//! Live capture through libpcap: the path for hosts and filters the kernel side cannot serve.

use std::time::{Duration, Instant};

use pcap::{Active, Capture, Device};

use crate::cli::{Config, Source};
use crate::decode::{decode, LinkType};
use crate::error::{CaptureError, Error};

/// Enough of each frame for the link, IP (with options or extension headers) and TCP headers.
const SNAPLEN: i32 = 256;
/// How long libpcap waits for packets before handing control back.
const READ_TIMEOUT_MS: i32 = 50;

/// The interface a source names, or the one libpcap picks by default.
///
/// # Errors
/// No interface was named and libpcap knows of none.
pub fn interface_name(source: &Source) -> Result<String, Error> {
    match source {
        Source::Interface(i) => Ok(i.clone()),
        Source::DefaultInterface | Source::File(_) => match Device::lookup() {
            Ok(Some(d)) => Ok(d.name),
            Ok(None) => Err(Error::NoDefaultInterface { source: None }),
            Err(e) => Err(Error::NoDefaultInterface { source: Some(e) }),
        },
    }
}

/// Opens `interface` for live capture with the configured promiscuity and filter.
///
/// # Errors
/// The interface cannot be opened (no such interface, no privilege), or the filter is bad.
pub fn open(interface: &str, cfg: &Config) -> Result<(Capture<Active>, LinkType), Error> {
    let capture_err = |source: pcap::Error| Error::capture(interface, source);
    let mut cap = Capture::from_device(interface)
        .map_err(capture_err)?
        .promisc(cfg.promiscuous)
        .snaplen(SNAPLEN)
        .timeout(READ_TIMEOUT_MS)
        .immediate_mode(true)
        .open()
        .map_err(capture_err)?;
    let dlt = cap.get_datalink();
    let link = LinkType::from_dlt(dlt.0).ok_or_else(|| {
        Error::capture(
            interface,
            CaptureError::LinkType(dlt.get_name().unwrap_or_default()),
        )
    })?;
    if let Some(expr) = &cfg.filter {
        cap.filter(expr, true).map_err(|source| Error::Filter {
            expr: expr.clone(),
            source,
        })?;
    }
    Ok((cap, link))
}

/// Captures on a thread of its own, stamping each packet with the time since it started (the
/// clock it sends first), as the kernel stamped the packet (never later than when it is read:
/// the wall clock may have stepped), and sends batches into `tx`: everything libpcap holds as soon as it is
/// read (the capture is non-blocking and the thread waits on its descriptor), so that every
/// packet reaches the table within one wake-up of its arrival, not when a later one comes. A
/// batch that finds the channel full is dropped and counted.
pub fn spawn_reader(
    cap: Capture<Active>,
    link: LinkType,
    interface: String,
    tx: tokio::sync::mpsc::Sender<super::SourceMsg>,
) -> std::thread::JoinHandle<()> {
    use super::{SourceMsg, BATCH_MAX};
    use std::os::fd::AsRawFd as _;
    let start = Instant::now();
    let start_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let clock = SourceMsg::Clock {
        at: Duration::ZERO,
        wall: start,
        speed: 1.0,
    };
    std::thread::spawn(move || {
        let end = |e| {
            let _ = tx.blocking_send(SourceMsg::End(Some(Error::capture(&interface, e))));
        };
        let mut cap = match cap.setnonblock() {
            Ok(c) => c,
            Err(e) => return end(e),
        };
        if tx.blocking_send(clock).is_err() {
            return;
        }
        let mut losses = Losses::default();
        let mut batch = Vec::with_capacity(BATCH_MAX);
        loop {
            // Everything libpcap holds now.
            loop {
                match cap.next_packet() {
                    Ok(p) => {
                        let read = start.elapsed();
                        let ts = stamped(p.header.ts)
                            .checked_sub(start_wall)
                            .map_or(read, |t| t.min(read));
                        if let Some(u) = decode(link, p.data, p.header.len, ts) {
                            batch.push(u);
                        }
                        if batch.len() >= BATCH_MAX && !losses.send(&tx, &mut batch) {
                            return;
                        }
                    }
                    // Non-blocking: nothing more for now.
                    Err(pcap::Error::TimeoutExpired) => break,
                    Err(e) => return end(e),
                }
            }
            if !batch.is_empty() && !losses.send(&tx, &mut batch) {
                return;
            }
            losses.report(&mut cap, &tx);
            if tx.is_closed() {
                return;
            }
            let mut fds = libc::pollfd {
                fd: cap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one pollfd we own; it only reads and writes that struct.
            unsafe { libc::poll(&raw mut fds, 1, READ_TIMEOUT_MS) };
        }
    })
}

/// What the libpcap path lost on the way: batches a full channel refused, and libpcap's own
/// drops, reported to the monitor as they grow.
#[derive(Default)]
struct Losses {
    /// Packets of refused batches not reported yet.
    refused: u64,
    /// libpcap's drops as last reported.
    pcap: u64,
}

impl Losses {
    /// Hands `batch` over; false when the monitor is gone.
    fn send(
        &mut self,
        tx: &tokio::sync::mpsc::Sender<super::SourceMsg>,
        batch: &mut Vec<crate::flow::FlowUpdate>,
    ) -> bool {
        use tokio::sync::mpsc::error::TrySendError;
        let n = batch.len() as u64;
        let full = std::mem::replace(batch, Vec::with_capacity(super::BATCH_MAX));
        match tx.try_send(super::SourceMsg::Batch(full)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.refused += n;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Tells the monitor what was lost since the last report, if anything.
    fn report(
        &mut self,
        cap: &mut Capture<Active>,
        tx: &tokio::sync::mpsc::Sender<super::SourceMsg>,
    ) {
        let pcap = cap
            .stats()
            .map_or(0, |s| u64::from(s.dropped) + u64::from(s.if_dropped));
        let lost = self.refused + pcap.saturating_sub(self.pcap);
        if lost > 0 && tx.try_send(super::SourceMsg::Dropped(lost)).is_ok() {
            self.refused = 0;
            self.pcap = pcap;
        }
    }
}

/// A packet header's time since the epoch (microseconds, as the live capture is opened).
fn stamped(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0).min(999_999);
    Duration::new(secs, micros * 1000)
}
