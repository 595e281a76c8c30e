//! The contract between tcptrack's kernel programs and its userspace.
//!
//! Everything here is `#[repr(C)]`, made of fixed-width integers with explicit padding, so that
//! the kernel and userspace agree on every byte. Rich Rust types live on the userspace side and
//! are made from these in one conversion there.
#![no_std]

/// Name of the kernel program attached to TC ingress and egress.
pub const PROGRAM_TC: &str = "tcptrack_tc";

/// Name of the map counting packets the kernel program has seen (one `u64` per CPU, index 0).
pub const MAP_PACKETS_SEEN: &str = "PACKETS_SEEN";

/// Per-CPU counters kept by the kernel program, indexes into [`MAP_PACKETS_SEEN`].
pub mod counter {
    /// Every packet the program ran on.
    pub const PACKETS: u32 = 0;
    /// Packets that were TCP over IPv4 or IPv6.
    pub const TCP: u32 = 1;
    /// Number of slots in the counter map.
    pub const SLOTS: u32 = 2;
}
