//! Where packets come from. Sources are the only code that touches libpcap, the kernel or the
//! network; what they see leaves them as [`FlowUpdate`](crate::flow::FlowUpdate)s.

pub mod file;
pub mod live;
