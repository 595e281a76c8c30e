//! Where packets come from. Sources are the only code that touches libpcap, the kernel or the
//! network; what they see leaves them as [`FlowUpdate`](crate::flow::FlowUpdate)s.

pub mod file;
pub mod kernel;
pub mod live;
pub mod sockets;

use std::time::Instant;

use crate::error::Error;
use crate::flow::{FlowUpdate, Timestamp};

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
    Kernel(kernel::KernelPoll),
    /// What the kernel could not keep, as of the last poll.
    KernelStats(kernel::KernelStats),
    /// The source is done: the end of a file, or an error.
    End(Option<Error>),
}

/// Most updates in one batch; a batch also goes out when it is this old.
pub const BATCH_MAX: usize = 512;
/// How long a partial batch may wait before it is sent.
pub const BATCH_AGE: std::time::Duration = std::time::Duration::from_millis(20);

/// A live source, chosen.
pub enum Live {
    /// The kernel counts; `poller` reads it.
    Kernel {
        poller: Box<kernel::Poller>,
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
    /// How the status line names it.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Kernel { interfaces, .. } => format!("kernel on {}", interfaces.join(",")),
            Self::Libpcap { interface, .. } => format!("libpcap on {interface}"),
        }
    }
}

/// Opens the live source `cfg` asks for: the kernel path unless `--libpcap` or a filter
/// expression asks for libpcap, or the kernel path cannot be had. The second value says why
/// libpcap was chosen over the kernel, if it was.
///
/// # Errors
/// Neither path can capture on the interface (the error names why), or the filter is bad.
pub fn open_live(cfg: &crate::cli::Config) -> Result<(Live, Option<String>), Error> {
    let interface = live::interface_name(&cfg.source)?;
    // `kernel_error`: why the kernel path failed, if it was tried.
    let libpcap = |notice: Option<String>,
                   kernel_error: Option<String>|
     -> Result<(Live, Option<String>), Error> {
        let (cap, link) = live::open(&interface, cfg).map_err(|e| match e {
            Error::Capture { interface, reason } => {
                let mut reason = match &kernel_error {
                    Some(why) => format!("{reason}; the kernel path failed too: {why}"),
                    None => reason,
                };
                if reason.contains("not permitted") || reason.contains("denied") {
                    reason.push_str(
                        " (capturing needs root: CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON for the \
                         kernel path, CAP_NET_RAW for libpcap)",
                    );
                }
                Error::Capture { interface, reason }
            }
            e => e,
        })?;
        Ok((
            Live::Libpcap {
                cap,
                link,
                interface: interface.clone(),
            },
            notice,
        ))
    };
    if cfg.libpcap {
        return libpcap(None, None);
    }
    // The kernel decides the filters of its subset; libpcap the others. Syntax is checked by
    // libpcap either way, so that errors read the same.
    let program = match &cfg.filter {
        None => Vec::new(),
        Some(expr) => {
            check_filter(expr)?;
            match crate::filter::compile(expr) {
                Some(p) => p,
                None => {
                    return libpcap(
                        Some(
                            "the filter is outside what the kernel decides: libpcap applies it"
                                .into(),
                        ),
                        None,
                    )
                }
            }
        }
    };
    match open_kernel(&interface, cfg, &program) {
        Ok(live) => Ok((live, None)),
        Err(why) => libpcap(
            Some(format!("kernel path unavailable ({why}), using libpcap")),
            Some(why),
        ),
    }
}

/// Checks a filter's syntax with libpcap (as tcpdump would on an Ethernet link).
fn check_filter(expr: &str) -> Result<(), Error> {
    let bad = |reason: String| Error::Filter {
        expr: expr.to_owned(),
        reason,
    };
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| bad(e.to_string()))?;
    dead.compile(expr, true).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

fn open_kernel(
    interface: &str,
    cfg: &crate::cli::Config,
    filter: &[tcptrack_common::FilterInsn],
) -> Result<Live, String> {
    let interfaces = if interface == "any" {
        kernel::interfaces_up()
    } else {
        vec![interface.to_owned()]
    };
    if interfaces.is_empty() {
        return Err("no interface is up".into());
    }
    let mut k = crate::ebpf::Kernel::load(cfg.max_connections, !filter.is_empty())
        .map_err(|e| e.to_string())?;
    k.set_filter(filter).map_err(|e| e.to_string())?;
    for i in &interfaces {
        k.attach(i, cfg.xdp).map_err(|e| e.to_string())?;
    }
    let mut promiscuous = Vec::new();
    if cfg.promiscuous && interface != "any" {
        for i in &interfaces {
            promiscuous.push(
                kernel::Promiscuous::enable(i)
                    .map_err(|e| format!("promiscuous mode on {i}: {e}"))?,
            );
        }
    }
    let poller = Box::new(kernel::Poller::new(k).map_err(|e| e.to_string())?);
    Ok(Live::Kernel {
        poller,
        interfaces,
        promiscuous,
    })
}

/// Polls the kernel at every `interval` on a thread of its own, sending each poll into `tx`.
pub fn spawn_kernel_poller(
    mut poller: Box<kernel::Poller>,
    interval: std::time::Duration,
    tx: tokio::sync::mpsc::Sender<SourceMsg>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || loop {
        std::thread::sleep(interval);
        let msg = match poller.poll() {
            Ok(p) => SourceMsg::Kernel(p),
            Err(e) => SourceMsg::End(Some(Error::Capture {
                interface: "the kernel".into(),
                reason: e.to_string(),
            })),
        };
        let end = matches!(msg, SourceMsg::End(_));
        if tx.blocking_send(msg).is_err() || end {
            return;
        }
        if tx
            .blocking_send(SourceMsg::KernelStats(poller.stats()))
            .is_err()
        {
            return;
        }
    })
}

/// How often a live source re-reads the host's listening sockets.
pub const LISTENING_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// Gives `table` the host's listening sockets, if they can be read (they only sharpen the
/// client/server guess for connections picked up mid-stream).
pub fn refresh_listening(table: &mut crate::table::ConnectionTable) {
    if let Ok(l) = sockets::ListeningSockets::read() {
        table.set_listening(l);
    }
}
