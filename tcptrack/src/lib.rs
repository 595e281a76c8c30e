//! tcptrack: a top-like monitor of TCP connections.
//!
//! Data flows one way: sources ([`source`]) turn packets or kernel counters into
//! [`FlowUpdate`](flow::FlowUpdate)s; the [`ConnectionTable`](table::ConnectionTable) keeps
//! connections, their states, counters and speeds; outputs ([`output`]) write what it holds.

pub mod app;
pub mod caps;
pub mod cli;
pub mod decode;
pub mod docs;
pub mod ebpf;
pub mod error;
pub mod filter;
pub mod flow;
pub mod flowlog;
pub mod format;
pub mod headless;
pub mod ipfix;
pub mod listening;
pub mod metrics;
pub mod monitor;
pub mod output;
pub mod privilege;
pub mod rate;
pub mod sandbox;
pub mod source;
pub mod table;
pub mod tui;
pub mod view;

/// What the unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    /// A xorshift generator: the same numbers from the same seed, on every machine.
    pub struct XorShift(pub u64);

    impl XorShift {
        pub const fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }
}
