//! Where packets come from. Sources are the only code that touches libpcap, the kernel or the
//! network; what they see leaves them as [`FlowUpdate`](crate::flow::FlowUpdate)s.

pub mod file;
pub mod kernel;
pub mod live;
pub mod process;
pub mod savefile;
pub mod sockets;
pub mod stream;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::{Receiver, Sender};

use crate::caps::{self, Capability, Held};
use crate::cli::{Config, Source};
use crate::ebpf::KernelError;
use crate::error::{CaptureError, Error};
use crate::flow::{FlowUpdate, Timestamp};
use crate::privilege::{drop_privileges, Needs, Plan};

/// What a source thread hands the main loop.
#[derive(Debug)]
pub enum SourceMsg {
    /// The source's clock: `at` on the table's clock was the instant `wall`, and the clock runs
    /// `speed` times as fast as the wall clock (a replayed capture; 1 live).
    Clock {
        at: Timestamp,
        wall: Instant,
        speed: f64,
    },
    /// Updates, in the order seen.
    Batch(Vec<FlowUpdate>),
    /// Packets lost before they reached the table (a full channel, or the capture's own drops).
    Dropped(u64),
    /// One poll of the kernel's maps.
    Kernel(crate::flow::Polled),
    /// What the kernel could not keep, as of the last poll.
    KernelStats(kernel::KernelStats),
    /// The kernel's last poll, asked for as tcptrack ends (see [`Started::last_poll`]), came
    /// before this: nothing follows.
    LastPoll,
    /// The source is done: the end of a file, or an error.
    End(Option<Error>),
}

/// Most updates in one batch; a batch also goes out when it is this old.
pub const BATCH_MAX: usize = 512;
/// How long a partial batch may wait before it is sent.
pub const BATCH_AGE: std::time::Duration = std::time::Duration::from_millis(20);

/// What kind of source feeds the table: it decides the table's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A capture file read whole: time is that of its packets.
    Capture,
    /// A capture file played at its recorded pace.
    Replay,
    /// A live interface (the kernel or libpcap).
    Live,
}

/// The one line that says which path a live capture took and, for libpcap, why:
/// `kernel on eth0`, `libpcap on eth0: the kernel path needs CAP_BPF`.
#[must_use]
pub fn path_line(label: &SourceLabel, fallback: Option<&Fallback>) -> String {
    let label = match label {
        SourceLabel::File(f) => format!("file {f}"),
        SourceLabel::Replay(f) => format!("replay of {f}"),
        SourceLabel::Live(l) => l.clone(),
    };
    match fallback {
        Some(why) => format!("{label}: {why}"),
        None => label,
    }
}

/// Where the connections come from, as the status line names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceLabel {
    /// A capture file, read whole.
    File(String),
    /// A capture file played at its pace.
    Replay(String),
    /// A live interface (the kernel or libpcap, as [`Live::label`] says).
    Live(String),
}

/// Source messages a live source or a replay may queue for the monitor; beyond this a live
/// source drops (and counts), a replay waits.
pub const SOURCE_QUEUE: usize = 256;

/// How a started source reaches the monitor.
pub enum Feed {
    /// Its thread sends into this channel.
    Channel(Receiver<SourceMsg>),
    /// A capture file read whole, by the caller (see [`file::CaptureFile::read_all`]).
    Inline(Box<file::CaptureFile>),
}

/// A source, started.
pub struct Started {
    pub kind: SourceKind,
    pub label: SourceLabel,
    /// The interface as named (`any` included), or the capture file's name.
    pub interface: String,
    /// Why the live path is not the kernel's, when it is not.
    pub fallback: Option<Fallback>,
    /// Promiscuous mode, held for as long as this lives (kernel path, `-p` not given).
    pub promiscuous: Vec<kernel::Promiscuous>,
    /// The kernel poller's thread: it ends at its next poll once the channel is gone, taking
    /// its programs off (netlink filters outlive a process that does not).
    poller: Option<std::thread::JoinHandle<()>>,
    /// The instant the refreshes count from, when the source polls on a grid of its own (the
    /// kernel path polls just before each refresh: what is shown is as of the refresh).
    pub refresh_origin: Option<Instant>,
    /// Where the processes of connections come from (live only).
    pub processes: Option<String>,
    /// What was given up once the source was open.
    pub dropped: Option<crate::privilege::Dropped>,
    /// Set, the kernel poller polls once more at once, sends [`SourceMsg::LastPoll`] after it,
    /// and ends: what the kernel counted until tcptrack stops is in its last records.
    pub last_poll: Option<Arc<AtomicBool>>,
    /// The bytes before the IP header in the frames it counts (the kernel's: Ethernet), so that
    /// frame bytes less these per packet are IP bytes (flow records count those).
    pub link_header: usize,
}

impl Started {
    /// A source of `kind`, named `label`, the rest filled in by its opener.
    fn new(
        kind: SourceKind,
        label: SourceLabel,
        fallback: Option<Fallback>,
        promiscuous: Vec<kernel::Promiscuous>,
    ) -> Self {
        Self {
            kind,
            interface: match &label {
                SourceLabel::File(f) | SourceLabel::Replay(f) => f.clone(),
                SourceLabel::Live(_) => String::new(),
            },
            label,
            fallback,
            promiscuous,
            poller: None,
            refresh_origin: None,
            processes: None,
            dropped: None,
            last_poll: None,
            link_header: crate::decode::LinkType::Ethernet.header_len(),
        }
    }

    /// The verifier's log, when the kernel refused the programs and libpcap took over.
    #[must_use]
    pub fn verifier_log(&self) -> Option<String> {
        match &self.fallback {
            Some(Fallback::Kernel(e)) => e.verifier_log(),
            _ => None,
        }
    }

    /// Lets the source go (`feed` is its channel) when tcptrack cannot go on, waiting for
    /// what it attached to be taken off; returns `e`, the reason.
    #[must_use]
    pub fn stop(self, feed: Feed, e: Error) -> Error {
        drop(feed);
        self.finish();
        e
    }

    /// Waits, once the monitor has let go of the channel, for the source's thread to have taken
    /// off what it attached.
    pub fn finish(mut self) {
        if let Some(t) = self.poller.take() {
            let _ = t.join();
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Opens the source `cfg` names and starts the thread that feeds the returned channel from it:
/// a capture file read whole, or replayed at `replay` times its pace, or a live interface through
/// the kernel or libpcap (see [`open_live`]). Everything that can fail before the first packet
/// (opening, the filter, the kernel's refusal) fails here. Once the source is open, and before
/// its thread starts, privileges are given up as `plan` says.
///
/// # Errors
/// The file or interface cannot be opened, the filter is bad, or privileges could not be
/// given up.
pub fn start(cfg: &Config, replay: Option<f64>, plan: &Plan) -> Result<(Started, Feed), Error> {
    let (tx, rx) = tokio::sync::mpsc::channel(SOURCE_QUEUE);
    let channel = Feed::Channel(rx);
    match &cfg.source {
        Source::File(path) => {
            let f = open_file(cfg, path, replay, plan, tx, channel)?;
            let mut s = Started::new(f.kind, f.label, None, Vec::new());
            s.dropped = f.dropped;
            s.link_header = f
                .link
                .map_or(s.link_header, crate::decode::LinkType::header_len);
            Ok((s, f.feed))
        }
        Source::Interface(_) | Source::DefaultInterface => {
            Ok((start_live(cfg, plan, tx)?, channel))
        }
    }
}

/// Opens the live source `cfg` names, gives up privileges as `plan` says, and starts its
/// thread, sending into `tx`.
fn start_live(cfg: &Config, plan: &Plan, tx: Sender<SourceMsg>) -> Result<Started, Error> {
    // The default interface is looked up once: the one opened is the one named.
    let name = live::interface_name(&cfg.source)?;
    let (live, fallback) = open_live(cfg, &name)?;
    let dropped = Some(drop_privileges(plan, &live.needs(&name))?);
    let label = SourceLabel::Live(live.label(&cfg.source));
    let mut processes = "from /proc, as ss -p finds them".to_owned();
    let link_header = match &live {
        Live::Libpcap { link, .. } => link.header_len(),
        Live::Kernel { .. } => crate::decode::LinkType::Ethernet.header_len(),
    };
    let (promiscuous, thread) = match live {
        Live::Kernel {
            poller,
            promiscuous,
            ..
        } => {
            processes = match poller.openers_refused() {
                None => "from the kernel as each socket connects or is accepted (any \
                         namespace); sockets older than tcptrack from /proc"
                    .to_owned(),
                Some(why) => format!("from /proc, as ss -p finds them ({why})"),
            };
            let origin = Instant::now();
            let last = Arc::new(AtomicBool::new(false));
            let grid = (origin, cfg.interval);
            let t = spawn_kernel_poller(poller, name.clone(), grid, Arc::clone(&last), tx);
            (promiscuous, Some((t, origin, last)))
        }
        Live::Libpcap {
            cap,
            link,
            interface,
        } => {
            live::spawn_reader(cap, link, interface, tx);
            (Vec::new(), None)
        }
    };
    let mut live = Started::new(SourceKind::Live, label, fallback, promiscuous);
    if let Some((t, origin, last)) = thread {
        live.poller = Some(t);
        live.refresh_origin = Some(origin);
        live.last_poll = Some(last);
    }
    live.interface = name;
    live.processes = Some(processes);
    live.dropped = dropped;
    live.link_header = link_header;
    Ok(live)
}

/// A capture file, opened.
struct OpenedFile {
    kind: SourceKind,
    label: SourceLabel,
    feed: Feed,
    dropped: Option<crate::privilege::Dropped>,
    link: Option<crate::decode::LinkType>,
}

/// Opens the capture file `path` (read whole, or replayed at `replay` times its pace into `tx`,
/// whose receiving end is `channel`), giving up privileges once it is open: a capture file
/// needs nothing more, and a compressed one's feeder thread starts after.
fn open_file(
    cfg: &Config,
    path: &Path,
    replay: Option<f64>,
    plan: &Plan,
    tx: Sender<SourceMsg>,
    channel: Feed,
) -> Result<OpenedFile, Error> {
    let mut dropped = None;
    let mut lower = || {
        dropped = Some(drop_privileges(plan, &Needs::default())?);
        Ok(())
    };
    let file = file::CaptureFile::open_then(path, cfg.filter.as_deref(), &mut lower)?;
    let name = file_name(path);
    let link = file.link();
    let (kind, label, feed) = match replay {
        None => (
            SourceKind::Capture,
            SourceLabel::File(name),
            Feed::Inline(Box::new(file)),
        ),
        Some(speed) => {
            file::spawn_replay(file, speed, tx);
            (SourceKind::Replay, SourceLabel::Replay(name), channel)
        }
    };
    Ok(OpenedFile {
        kind,
        label,
        feed,
        dropped,
        link,
    })
}

/// A live source, chosen.
pub enum Live {
    /// The kernel counts; `poller` reads it.
    Kernel {
        poller: Box<kernel::Poller>,
        /// How its TC programs are hooked.
        hook: crate::ebpf::TcHook,
        interfaces: Vec<String>,
        /// Held for the life of the capture (`-p` not given).
        promiscuous: Vec<kernel::Promiscuous>,
    },
    /// libpcap captures.
    Libpcap {
        cap: pcap::Capture<pcap::Active>,
        link: crate::decode::LinkType,
        interface: String,
    },
}

impl Live {
    /// What it still does once open, opened on `interface`: for the privilege drop.
    #[must_use]
    pub fn needs(&self, interface: &str) -> Needs<'_> {
        match self {
            Self::Kernel { poller, hook, .. } => Needs {
                follow: interface == "any",
                netlink: *hook == crate::ebpf::TcHook::Netlink,
                maps: Some(poller.as_ref()),
            },
            Self::Libpcap { .. } => Needs::default(),
        }
    }

    /// How the status line names it, opened for `source`: `kernel on eth0`, `libpcap on eth0`,
    /// with `(the default interface)` after the name when the user named none.
    #[must_use]
    pub fn label(&self, source: &Source) -> String {
        match self {
            Self::Kernel {
                interfaces, hook, ..
            } => {
                let how = match hook {
                    crate::ebpf::TcHook::Tcx => "",
                    crate::ebpf::TcHook::Netlink => " (TC through netlink)",
                };
                let on = interface_label(&interfaces.join(","), source);
                format!("kernel on {on}{how}")
            }
            Self::Libpcap { interface, .. } => {
                format!("libpcap on {}", interface_label(interface, source))
            }
        }
    }
}

/// `name`, the interface `source` was opened on, as the user is told it: followed by `(the
/// default interface)` when the user named none (no `-i`), so that it is clear which was picked.
fn interface_label(name: &str, source: &Source) -> String {
    match source {
        Source::DefaultInterface => format!("{name} (the default interface)"),
        Source::Interface(_) | Source::File(_) => name.to_owned(),
    }
}

/// Why the live path is libpcap's rather than the kernel's.
#[derive(Debug, thiserror::Error)]
pub enum Fallback {
    #[error("as --libpcap asked")]
    UserAsked,
    #[error("the kernel path needs {}", caps::list(.0))]
    MissingCapabilities(Vec<Capability>),
    #[error(
        "the interface carries bare IP packets (link type {0}, a tun or IP tunnel), and the \
         kernel path reads Ethernet frames only"
    )]
    NotEthernet(u16),
    #[error("the kernel path is unavailable: {0}")]
    Kernel(#[source] KernelError),
}

/// The ARPHRD type of `interface` (`/sys/class/net/NAME/type`) when it is neither Ethernet nor
/// loopback (whose frames carry an Ethernet header too): the kernel path's parser reads Ethernet
/// frames, and an IP device's (tun, WireGuard, GRE...) would be read as garbage.
fn not_ethernet(interface: &str) -> Option<u16> {
    const ARPHRD_ETHER: u16 = 1;
    const ARPHRD_LOOPBACK: u16 = 772;
    if interface == "any" || interface.contains('/') {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/type")).ok()?;
    let kind: u16 = text.trim().parse().ok()?;
    (kind != ARPHRD_ETHER && kind != ARPHRD_LOOPBACK).then_some(kind)
}

/// Opens the live source `cfg` asks for on `interface` (the one it names, or the default one):
/// the kernel path unless `--libpcap` or a filter expression asks for libpcap, or the kernel
/// path cannot be had. The second value says why libpcap was chosen over the kernel, if it was.
///
/// # Errors
/// Neither path can capture on the interface (the error names why), or the filter is bad.
pub fn open_live(cfg: &Config, interface: &str) -> Result<(Live, Option<Fallback>), Error> {
    let interface = interface.to_owned();
    let held = Held::this_process();
    let libpcap = |why: Fallback| -> Result<(Live, Option<Fallback>), Error> {
        let (cap, link) = match live::open(&interface, cfg) {
            Ok(opened) => opened,
            Err(Error::Capture { interface, source }) => {
                let source = match (*source, why) {
                    (CaptureError::Libpcap(_), Fallback::MissingCapabilities(kernel_path))
                        if !held.has(Capability::NetRaw) =>
                    {
                        CaptureError::Privilege { kernel_path }
                    }
                    (CaptureError::Libpcap(_), _) if !held.has(Capability::NetRaw) => {
                        CaptureError::Privilege {
                            kernel_path: vec![Capability::NetRaw],
                        }
                    }
                    (libpcap, Fallback::Kernel(kernel)) => CaptureError::Both {
                        libpcap: Box::new(libpcap),
                        kernel,
                    },
                    (source, _) => source,
                };
                return Err(Error::capture(interface, source));
            }
            Err(e) => return Err(e),
        };
        let live = Live::Libpcap {
            cap,
            link,
            interface: interface.clone(),
        };
        Ok((live, Some(why)))
    };
    if cfg.libpcap {
        return libpcap(Fallback::UserAsked);
    }
    // libpcap compiles the filter (a bad one is a usage error, before anything is attached);
    // the kernel runs what it compiled.
    let program = match &cfg.filter {
        None => None,
        Some(expr) => Some(check_filter(expr)?),
    };
    let mut needed = caps::KERNEL_PATH.to_vec();
    if cfg.promiscuous && interface != "any" {
        needed.push(Capability::NetRaw);
    }
    let missing = held.missing(&needed);
    if !missing.is_empty() {
        return libpcap(Fallback::MissingCapabilities(missing));
    }
    if let Some(kind) = not_ethernet(&interface) {
        return libpcap(Fallback::NotEthernet(kind));
    }
    match open_kernel(&interface, cfg, program.as_deref()) {
        Ok(live) => Ok((live, None)),
        Err(e) => libpcap(Fallback::Kernel(e)),
    }
}

/// Compiles a filter with libpcap for the kernel path's frames (Ethernet, as tcpdump would
/// on such a link).
fn check_filter(expr: &str) -> Result<Vec<crate::ebpf::cbpf::Cbpf>, Error> {
    crate::filter::compile(expr, pcap::Linktype::ETHERNET).map_err(|source| Error::Filter {
        expr: expr.to_owned(),
        source,
    })
}

fn open_kernel(
    interface: &str,
    cfg: &Config,
    filter: Option<&[crate::ebpf::cbpf::Cbpf]>,
) -> Result<Live, KernelError> {
    let interfaces = if interface == "any" {
        kernel::interfaces_up()
    } else {
        vec![interface.to_owned()]
    };
    if interfaces.is_empty() {
        return Err(KernelError::NoInterfaceUp);
    }
    let mut k = crate::ebpf::Kernel::load(cfg.max_connections, filter.is_some(), cfg.xdp)?;
    if let Some(filter) = filter {
        k.set_filter(filter)?;
    }
    let mut attached = Vec::new();
    for i in &interfaces {
        attached.push(k.attach(i, cfg.xdp)?);
    }
    let mut promiscuous = Vec::new();
    if cfg.promiscuous && interface != "any" {
        for i in &interfaces {
            promiscuous.push(kernel::Promiscuous::enable(i).map_err(|source| {
                KernelError::Promiscuous {
                    interface: i.clone(),
                    source,
                }
            })?);
        }
    }
    let followed = if interface == "any" {
        kernel::Interfaces::Any {
            attached,
            xdp: cfg.xdp,
            refused: Vec::new(),
        }
    } else {
        kernel::Interfaces::Named(attached)
    };
    let hook = k.hook();
    let poller = Box::new(kernel::Poller::new(k, followed)?);
    Ok(Live::Kernel {
        poller,
        hook,
        // `any` follows the interfaces that come and go: it is named as asked.
        interfaces: if interface == "any" {
            vec![interface.to_owned()]
        } else {
            interfaces
        },
        promiscuous,
    })
}

/// How often the kernel poller reads the event ring and looks whether tcptrack is ending,
/// between two polls: the programs wake it only when the ring may have filled an eighth of it
/// (see `tcptrack_common::events_wakeup_every`).
const STOP_CHECK: std::time::Duration =
    std::time::Duration::from_millis(tcptrack_common::EVENTS_READ_EVERY_MS);

/// How long before each refresh the kernel path polls (at most a quarter of the interval): room
/// for the flip's grace, the drain and the hand-over.
const POLL_LEAD: std::time::Duration = std::time::Duration::from_millis(20);

/// Polls the kernel at every `interval` on a thread of its own, sending each poll into `tx`
/// (first, the clock: the kernel's monotonic time, the packets' time), and reads its events as
/// they arrive in between. Once `last` is set, polls at once a last time and ends.
fn spawn_kernel_poller(
    mut poller: Box<kernel::Poller>,
    interface: String,
    (origin, interval): (Instant, std::time::Duration),
    last: Arc<AtomicBool>,
    tx: Sender<SourceMsg>,
) -> std::thread::JoinHandle<()> {
    let clock = SourceMsg::Clock {
        at: kernel::monotonic_now(),
        wall: Instant::now(),
        speed: 1.0,
    };
    std::thread::spawn(move || {
        if tx.blocking_send(clock).is_err() {
            return;
        }
        // Polls on the refreshes' grid, just before each: a refresh shows what the kernel
        // counted until a moment before it, not until up to an interval before.
        let lead = POLL_LEAD.min(interval / 4);
        let mut due = origin + interval - lead;
        loop {
            while let Some(left) = due.checked_duration_since(Instant::now()) {
                // The monitor gone (tcptrack is ending): take the programs off now.
                if tx.is_closed() {
                    return;
                }
                if last.load(Ordering::Relaxed) {
                    break;
                }
                poller.wait_events(left.min(STOP_CHECK));
            }
            let final_poll = last.load(Ordering::Relaxed);
            due += interval;
            let started = Instant::now();
            let msg = match poller.poll() {
                Ok(p) => SourceMsg::Kernel(p),
                Err(e) => SourceMsg::End(Some(Error::capture(&interface, e))),
            };
            let end = matches!(msg, SourceMsg::End(_));
            if tx.blocking_send(msg).is_err() || end {
                return;
            }
            let stats = kernel::KernelStats {
                poll_time: started.elapsed(),
                ..poller.stats()
            };
            if tx.blocking_send(SourceMsg::KernelStats(stats)).is_err() || final_poll {
                let _ = tx.blocking_send(SourceMsg::LastPoll);
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_the_user_did_not_name_is_said_to_be_the_default() {
        let default = interface_label("eth0", &Source::DefaultInterface);
        assert_eq!(default, "eth0 (the default interface)");
        let named = interface_label("eth0", &Source::Interface("eth0".into()));
        assert_eq!(named, "eth0");
        // The stderr line headless says what the status line says.
        let label = SourceLabel::Live(format!("libpcap on {default}"));
        assert_eq!(
            path_line(&label, Some(&Fallback::UserAsked)),
            "libpcap on eth0 (the default interface): as --libpcap asked"
        );
    }
}
