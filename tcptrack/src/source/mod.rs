//! Where packets come from. Sources are the only code that touches libpcap, the kernel or the
//! network; what they see leaves them as [`FlowUpdate`](crate::flow::FlowUpdate)s.

pub mod file;
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
    /// The source is done: the end of a file, or an error.
    End(Option<Error>),
}

/// Most updates in one batch; a batch also goes out when it is this old.
pub const BATCH_MAX: usize = 512;
/// How long a partial batch may wait before it is sent.
pub const BATCH_AGE: std::time::Duration = std::time::Duration::from_millis(20);
