//! Live capture through the kernel: the programs count, the [`Poller`] drains their maps at the
//! refresh interval and reads their events as they come, and turns both into the same
//! `FlowUpdate`s the libpcap path makes, for the same connection table.

mod poller;

pub use poller::{Interfaces, KernelStats, Poller};

use std::time::Duration;

use crate::flow::Timestamp;

/// The monotonic clock the kernel stamps events with (`bpf_ktime_get_ns`), and the packets'
/// tick counts are read as (see [`crate::ebpf::clocks`]), now.
#[must_use]
pub fn monotonic_now() -> Timestamp {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Holds an interface in promiscuous mode while it lives, through a packet socket's
/// membership: the kernel drops the membership when the socket closes, however the process
/// ends (even by SIGKILL), so the interface is always restored.
pub struct Promiscuous {
    fd: std::os::fd::OwnedFd,
}

impl Promiscuous {
    /// Puts `interface` into promiscuous mode.
    ///
    /// # Errors
    /// No such interface, or no privilege (CAP_NET_RAW).
    pub fn enable(interface: &str) -> std::io::Result<Self> {
        use std::os::fd::FromRawFd as _;
        let name = std::ffi::CString::new(interface).map_err(std::io::Error::other)?;
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Protocol 0: the socket receives no packets; it exists only for its membership.
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just opened and own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let mreq = libc::packet_mreq {
            mr_ifindex: i32::try_from(index).map_err(std::io::Error::other)?,
            mr_type: u16::try_from(libc::PACKET_MR_PROMISC).map_err(std::io::Error::other)?,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // SAFETY: setsockopt with a valid packet_mreq and its size.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&raw const mreq).cast(),
                u32::try_from(std::mem::size_of::<libc::packet_mreq>())
                    .map_err(std::io::Error::other)?,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { fd })
    }
}

impl std::fmt::Debug for Promiscuous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promiscuous").field("fd", &self.fd).finish()
    }
}

/// The interfaces `-i any` means: every interface that is up, loopback included.
#[must_use]
pub fn interfaces_up() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path().join("flags"))
                .ok()
                .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
                .is_some_and(|flags| flags & 1 != 0) // IFF_UP
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
