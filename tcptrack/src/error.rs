//! tcptrack's errors, each one clear line for a person, each with its exit status.

use std::path::PathBuf;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read capture {path}: {reason}")]
    OpenCapture { path: PathBuf, reason: String },
    #[error("{path}: unsupported link type {name} ({dlt}); tcptrack reads Ethernet, Linux cooked (v1, v2), raw IP and BSD loopback")]
    UnsupportedLinkType {
        path: PathBuf,
        name: String,
        dlt: i32,
    },
    #[error("bad filter expression `{expr}`: {reason}")]
    Filter { expr: String, reason: String },
    #[error("{path}: capture cut short after {packets} packets ({reason}); reported what came before the cut")]
    Truncated {
        path: PathBuf,
        packets: u64,
        reason: String,
    },
    #[error("cannot capture on {interface}: {reason}")]
    Capture { interface: String, reason: String },
    #[error("no interface to capture on: {0} (name one with -i)")]
    NoDefaultInterface(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot use the terminal: {0}")]
    Terminal(#[source] std::io::Error),
    #[error("cannot handle signals: {0}")]
    Signal(#[source] std::io::Error),
    #[error("cannot start the event loop: {0}")]
    Runtime(#[source] std::io::Error),
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
}
