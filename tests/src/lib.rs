//! Helpers for tcptrack's end-to-end tests: TCP sessions with correct sequence bookkeeping
//! ([`session`]), every link layer tcptrack reads ([`link`]), capture files in every format
//! ([`capture`]), and running the built binary on them ([`run`]), with the counts a test expects
//! computed from the frames it generated ([`expect`]).

pub mod capture;
pub mod expect;
pub mod link;
pub mod live;
pub mod netns;
pub mod on_capture;
#[cfg(feature = "kernel")]
pub mod probe;
pub mod prometheus;
pub mod run;
pub mod session;
pub mod tmux;

pub use capture::{temp_file, Capture, CaptureSpec, Format, Packet};
pub use expect::{assert_counts, rfc3339, Expected, Tally};
pub use link::Link;
pub use run::{
    flow_records, json_of, json_records, tcptrack, tcptrack_bin, tcptrack_with_input, FlowRecord,
    Output, Record,
};
pub use session::{expected_of, Flags, Segment, Session, Side, EPOCH_BASE};
