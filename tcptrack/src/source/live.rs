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
/// clock it sends first), and sends batches into `tx`; batches that find the channel full are
/// dropped and counted.
pub fn spawn_reader(
    mut cap: Capture<Active>,
    link: LinkType,
    interface: String,
    tx: tokio::sync::mpsc::Sender<super::SourceMsg>,
) -> std::thread::JoinHandle<()> {
    use super::{SourceMsg, BATCH_AGE, BATCH_MAX};
    use tokio::sync::mpsc::error::TrySendError;
    let start = Instant::now();
    let clock = SourceMsg::Clock {
        at: Duration::ZERO,
        wall: start,
        speed: 1.0,
    };
    std::thread::spawn(move || {
        if tx.blocking_send(clock).is_err() {
            return;
        }
        let mut batch = Vec::with_capacity(BATCH_MAX);
        let mut sent_at = Instant::now();
        let mut dropped: u64 = 0;
        let mut pcap_dropped: u64 = 0;
        loop {
            match cap.next_packet() {
                Ok(p) => {
                    if let Some(u) = decode(link, p.data, p.header.len, start.elapsed()) {
                        batch.push(u);
                    }
                }
                Err(pcap::Error::TimeoutExpired) => {}
                Err(e) => {
                    let _ = tx.blocking_send(SourceMsg::End(Some(Error::capture(interface, e))));
                    return;
                }
            }
            if batch.len() >= BATCH_MAX || (!batch.is_empty() && sent_at.elapsed() >= BATCH_AGE) {
                sent_at = Instant::now();
                let n = batch.len() as u64;
                match tx.try_send(SourceMsg::Batch(std::mem::take(&mut batch))) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => dropped += n,
                    Err(TrySendError::Closed(_)) => return,
                }
                let kernel = cap
                    .stats()
                    .map_or(0, |s| u64::from(s.dropped) + u64::from(s.if_dropped));
                let lost = dropped + kernel.saturating_sub(pcap_dropped);
                if lost > 0 && tx.try_send(SourceMsg::Dropped(lost)).is_ok() {
                    dropped = 0;
                    pcap_dropped = kernel;
                }
            }
        }
    })
}
