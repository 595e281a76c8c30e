//! Helpers for tcptrack's end-to-end tests: TCP sessions with correct sequence bookkeeping
//! ([`session`]), every link layer tcptrack reads ([`link`]), capture files in every format
//! ([`capture`]), and running the built binary on them ([`run`]), with the counts a test expects
//! computed from the frames it generated ([`expect`]).

pub mod capture;
pub mod expect;
pub mod link;
pub mod run;
pub mod session;

pub use capture::{Capture, CaptureSpec, Format, Packet};
pub use expect::{assert_counts, rfc3339, Expected, Tally};
pub use link::Link;
pub use run::{json_records, tcptrack, Output, Record};
pub use session::{Flags, Segment, Session, Side};
