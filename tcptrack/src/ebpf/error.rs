//! What can go wrong on the kernel path, each in one line.

use super::cbpf::{Hook, TranslateError};
use aya::maps::MapError;
use aya::programs::ProgramError;

/// What went wrong on the kernel path. Each says it in one line; a verifier's log is kept in
/// the error ([`KernelError::verifier_log`]), never in its message.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("this tcptrack was built without its kernel programs (the `ebpf` feature)")]
    NotBuilt,
    #[error("cannot load the eBPF object: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("the kernel refused the {program} program ({})", short(.source))]
    Refused {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("cannot attach to {interface}: {}", short(.source))]
    Attach {
        interface: String,
        #[source]
        source: ProgramError,
    },
    #[error("the {map} map: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("no BTF of the kernel: {0}")]
    Btf(String),
    #[error("this kernel lacks {0}")]
    Lacks(&'static str),
    #[error("no interface is up")]
    NoInterfaceUp,
    #[error("the interface went away ({0})")]
    InterfaceGone(String),
    #[error("cannot count the CPUs: {0}")]
    Cpus(#[source] std::io::Error),
    #[error("cannot read the kernel's clocks: {0}")]
    Clocks(#[source] std::io::Error),
    #[error("cannot map the flow cache into memory: {0}")]
    Cache(#[source] std::io::Error),
    #[error("cannot drain a flow map: {0}")]
    Batch(#[source] std::io::Error),
    #[error("promiscuous mode on {interface}: {source}")]
    Promiscuous {
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the filter cannot run in the kernel: {0}")]
    Filter(#[source] TranslateError),
    #[error("the kernel refused the filter's {hook} program ({source})")]
    FilterRefused {
        hook: Hook,
        #[source]
        source: std::io::Error,
        log: String,
    },
    #[error("cannot chain the filter's {hook} program: {source}")]
    Slot {
        hook: Hook,
        #[source]
        source: std::io::Error,
    },
}

/// A program error in one line: a load error's system error without the verifier's log.
fn short(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError { io_error, .. } => io_error.to_string(),
        other => other.to_string(),
    }
}

impl KernelError {
    /// The verifier's log, for a program the kernel refused.
    #[must_use]
    pub fn verifier_log(&self) -> Option<String> {
        match self {
            Self::Refused {
                source: ProgramError::LoadError { verifier_log, .. },
                ..
            } => Some(verifier_log.to_string()),
            Self::FilterRefused { log, .. } => Some(log.clone()),
            _ => None,
        }
    }
}
