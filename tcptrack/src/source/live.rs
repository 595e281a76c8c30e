//! Live capture through libpcap: the path for hosts and filters the kernel side cannot serve.

use std::io::Write;
use std::time::{Instant, SystemTime};

use pcap::{Active, Capture, Device};

use crate::cli::{Config, OutputFormat, Source};
use crate::decode::{decode, LinkType};
use crate::error::Error;
use crate::output::{self, ConnectionRecord, WallClock};
use crate::table::ConnectionTable;

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
            Ok(None) => Err(Error::NoDefaultInterface(
                "libpcap found no interface".into(),
            )),
            Err(e) => Err(Error::NoDefaultInterface(e.to_string())),
        },
    }
}

/// Opens `interface` for live capture with the configured promiscuity and filter.
///
/// # Errors
/// The interface cannot be opened (no such interface, no privilege), or the filter is bad.
pub fn open(interface: &str, cfg: &Config) -> Result<(Capture<Active>, LinkType), Error> {
    let capture_err = |e: pcap::Error| Error::Capture {
        interface: interface.to_owned(),
        reason: e.to_string(),
    };
    let mut cap = Capture::from_device(interface)
        .map_err(capture_err)?
        .promisc(cfg.promiscuous)
        .snaplen(SNAPLEN)
        .timeout(READ_TIMEOUT_MS)
        .immediate_mode(true)
        .open()
        .map_err(capture_err)?;
    let dlt = cap.get_datalink();
    let link = LinkType::from_dlt(dlt.0).ok_or_else(|| Error::Capture {
        interface: interface.to_owned(),
        reason: format!(
            "unsupported link type {}",
            dlt.get_name().unwrap_or_default()
        ),
    })?;
    if let Some(expr) = &cfg.filter {
        cap.filter(expr, true).map_err(|e| Error::Filter {
            expr: expr.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok((cap, link))
}

/// Captures live (kernel or libpcap, see [`super::open_live`]) and writes the table at every
/// interval, until the process is stopped.
///
/// # Errors
/// The capture cannot be opened or fails, or output cannot be written.
pub fn run_headless(cfg: &Config, out: &mut impl Write) -> Result<(), Error> {
    let (live, notice) = super::open_live(cfg)?;
    if let Some(n) = notice {
        eprintln!("tcptrack: {n}");
    }
    let rate = cfg.table.rate;
    let format = cfg.output.unwrap_or(OutputFormat::Table);
    let mut table = ConnectionTable::new(cfg.table.clone());
    let mut listening_read = Instant::now();
    super::refresh_listening(&mut table);
    let mut write = |table: &mut ConnectionTable, now, clock| -> Result<(), Error> {
        if listening_read.elapsed() >= super::LISTENING_REFRESH {
            super::refresh_listening(table);
            listening_read = Instant::now();
        }
        table.expire(now);
        let mut conns: Vec<_> = table.connections().collect();
        conns.sort_by_key(|c| c.id());
        let records = conns
            .into_iter()
            .map(|c| ConnectionRecord::new(c, rate, now, clock));
        output::write(format, records, out)?;
        Ok(())
    };
    match live {
        super::Live::Kernel { mut poller, .. } => {
            let clock = WallClock::new(super::kernel::monotonic_now(), SystemTime::now());
            let mut reported = (0, 0);
            loop {
                std::thread::sleep(cfg.interval);
                let poll = poller.poll().map_err(|e| Error::Capture {
                    interface: "the kernel".into(),
                    reason: e.to_string(),
                })?;
                super::kernel::apply_poll(&mut table, &poll);
                write(&mut table, super::kernel::monotonic_now(), clock)?;
                // Losses are never silent: one line on stderr whenever they grow.
                let stats = poller.stats();
                if (stats.evicted, stats.events_lost) != reported {
                    reported = (stats.evicted, stats.events_lost);
                    eprintln!(
                        "tcptrack: kernel losses so far: {} connections evicted from the full flow map (see --max-connections), {} control events",
                        stats.evicted, stats.events_lost
                    );
                }
            }
        }
        super::Live::Libpcap {
            mut cap,
            link,
            interface,
        } => {
            let start = Instant::now();
            let clock = WallClock::new(start.elapsed(), SystemTime::now());
            let mut next_tick = cfg.interval;
            loop {
                match cap.next_packet() {
                    Ok(p) => {
                        if let Some(u) = decode(link, p.data, p.header.len, start.elapsed()) {
                            table.apply(&u);
                        }
                    }
                    Err(pcap::Error::TimeoutExpired) => {}
                    Err(e) => {
                        return Err(Error::Capture {
                            interface,
                            reason: e.to_string(),
                        })
                    }
                }
                let now = start.elapsed();
                if now >= next_tick {
                    write(&mut table, now, clock)?;
                    while next_tick <= now {
                        next_tick += cfg.interval;
                    }
                }
            }
        }
    }
}

/// Captures on a thread of its own, stamping each packet with the time since `start`, and sends
/// batches into `tx`; batches that find the channel full are dropped and counted.
pub fn spawn_reader(
    mut cap: Capture<Active>,
    link: LinkType,
    interface: String,
    start: Instant,
    tx: tokio::sync::mpsc::Sender<super::SourceMsg>,
) -> std::thread::JoinHandle<()> {
    use super::{SourceMsg, BATCH_AGE, BATCH_MAX};
    use tokio::sync::mpsc::error::TrySendError;
    std::thread::spawn(move || {
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
                    let _ = tx.blocking_send(SourceMsg::End(Some(Error::Capture {
                        interface,
                        reason: e.to_string(),
                    })));
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
