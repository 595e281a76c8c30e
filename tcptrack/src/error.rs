//! tcptrack's errors, each one clear line for a person, each with its exit status. Each keeps
//! what caused it as its `source`.

use std::path::PathBuf;

use crate::caps::{self, Capability};
use crate::ebpf::KernelError;
use crate::source::stream::StreamError;

/// A capture's name for a person: its path, or `standard input` for `-`.
fn capture_name(path: &std::path::Path) -> std::borrow::Cow<'_, str> {
    if path.as_os_str() == "-" {
        "standard input".into()
    } else {
        path.to_string_lossy()
    }
}

/// What libpcap said, without the crate's wrapping.
fn pcap_reason(e: &pcap::Error) -> String {
    match e {
        pcap::Error::PcapError(msg) => msg.clone(),
        other => other.to_string(),
    }
}

/// What the file system said, in a few words.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "no such file".to_owned(),
        ErrorKind::PermissionDenied => "permission denied".to_owned(),
        ErrorKind::IsADirectory => "a directory, not a file".to_owned(),
        _ => e.to_string(),
    }
}

impl Error {
    /// A live capture on `interface` failed, for `source`.
    pub fn capture(interface: impl Into<String>, source: impl Into<CaptureError>) -> Self {
        Self::Capture {
            interface: interface.into(),
            source: Box::new(source.into()),
        }
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    /// Giving up privileges after setup failed: tcptrack does not run with more than it said.
    #[error("{0}")]
    Privileges(String),
    /// The file system's reason a capture cannot be read (no such file, a directory).
    #[error("cannot read capture {}: {}", capture_name(.path), io_reason(.source))]
    CaptureFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An empty file, an empty standard input, or a compressed capture of nothing.
    #[error("{} is empty, not a capture", capture_name(.path))]
    EmptyCapture { path: PathBuf },
    #[error("{}: unsupported link type {name} ({dlt}); tcptrack reads Ethernet, Linux cooked (v1, v2), raw IP and BSD loopback", capture_name(.path))]
    UnsupportedLinkType {
        path: PathBuf,
        name: String,
        dlt: i32,
    },
    #[error("bad filter expression `{expr}`: {}", pcap_reason(.source))]
    Filter {
        expr: String,
        #[source]
        source: pcap::Error,
    },
    #[error("{}: capture cut short after {packets} packets ({cut}); reported what came before the cut", capture_name(.path))]
    Truncated {
        path: PathBuf,
        packets: u64,
        #[source]
        cut: CaptureCut,
    },
    #[error("cannot read capture {}: {cut}", capture_name(.path))]
    NotACapture {
        path: PathBuf,
        #[source]
        cut: CaptureCut,
    },
    #[error("cannot capture on {interface}: {source}")]
    Capture {
        interface: String,
        #[source]
        source: Box<CaptureError>,
    },
    #[error("no interface to capture on: {} (name one with -i)", .source.as_ref().map_or_else(|| "libpcap found none".to_owned(), pcap_reason))]
    NoDefaultInterface {
        #[source]
        source: Option<pcap::Error>,
    },
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot serve metrics on {addr}: {}", io_reason(.source))]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot export IPFIX to {collector}: {}", io_reason(.source))]
    Ipfix {
        collector: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the flow log {}: {}", .path.display(), io_reason(.source))]
    FlowLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use the terminal: {0}")]
    Terminal(#[source] std::io::Error),
    #[error("cannot handle signals: {0}")]
    Signal(#[source] std::io::Error),
    #[error("cannot start the event loop: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Where a capture stops making sense.
#[derive(Debug, thiserror::Error)]
pub enum CaptureCut {
    #[error("the file ends inside its header")]
    Header,
    #[error("the file ends inside a record")]
    Record,
    #[error("{0}")]
    Damaged(#[from] crate::source::savefile::Damage),
    #[error("{}", io_reason(.0))]
    Io(std::io::Error),
    /// The compressed stream (or standard input) it was read from.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Why a live capture failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}", pcap_reason(.0))]
    Libpcap(#[from] pcap::Error),
    #[error("unsupported link type {0}")]
    LinkType(String),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("{}", privilege(.kernel_path))]
    Privilege {
        /// What the kernel path lacked (CAP_NET_RAW among them for promiscuous mode).
        kernel_path: Vec<Capability>,
    },
    #[error("{libpcap}; the kernel path failed too: {kernel}")]
    Both {
        libpcap: Box<CaptureError>,
        kernel: KernelError,
    },
}

/// The missing capabilities, said once: libpcap always needs CAP_NET_RAW.
fn privilege(kernel_path: &[Capability]) -> String {
    if kernel_path == [Capability::NetRaw] {
        return "needs CAP_NET_RAW for promiscuous mode (-p does without it on the kernel path)"
            .to_owned();
    }
    format!(
        "needs {} for the kernel path, or CAP_NET_RAW for libpcap",
        caps::list(kernel_path)
    )
}

impl Error {
    /// The process exit status for this error (documented in `--help`).
    #[must_use]
    pub const fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) | Self::Filter { .. } => 2,
            Self::Truncated { .. } => 3,
            _ => 1,
        }
    }

    /// Whether the output's reader went away (`tcptrack ... | head -1`): not an error to report.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
