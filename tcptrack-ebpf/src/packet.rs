//! Reading a packet's headers, whichever hook it came through.
//!
//! Headers are read in place (direct packet access: a bounds check against the end of the
//! linear data, then a load), which costs a few instructions where a helper call costs tens of
//! nanoseconds. In TC, headers beyond the linear part (rare: the stack pulls headers into it)
//! are read with `bpf_skb_load_bytes` instead: see [`crate::count::tc`].

use aya_ebpf::programs::{TcContext, XdpContext};

/// The furthest offset a header is looked for at: more than the parser can reach (three VLAN
/// tags, an IPv6 header and six extension headers of 2,048 bytes each), so it changes nothing
/// it reads. It is read from a constant the verifier knows (frozen, read-only) but the compiler
/// cannot see through: older verifiers (5.10) lose an offset's bounds through a shift by a
/// register, which the compiler makes of the extension headers' lengths, and 6.1 through other
/// arithmetic the compiler chooses: every read in place compares its offset with it first.
#[unsafe(no_mangle)]
static MAX_HEADER_OFFSET: u32 = 16_384;

/// A packet whose headers can be read.
pub trait Packet {
    /// `T` at `offset` bytes into the packet, or `None` past what can be read.
    fn load<T: Copy>(&self, offset: usize) -> Option<T>;
    /// Bytes of the packet (for TC, of the whole GSO super-packet).
    fn len(&self) -> usize;
    /// Wire packets this packet stands for (GSO segments in TC; 1 in XDP).
    fn segments(&self) -> u32;
}

/// A packet's linear data, read in place.
pub struct Frame {
    data: usize,
    end: usize,
    len: usize,
    segments: u32,
}

impl Frame {
    pub fn tc(ctx: &TcContext) -> Self {
        // SAFETY: the context pointer the kernel handed this program.
        let segs = unsafe { (*ctx.skb.skb).gso_segs };
        Self {
            data: ctx.data(),
            end: ctx.data_end(),
            len: ctx.len() as usize,
            segments: segs.max(1),
        }
    }

    pub fn xdp(ctx: &XdpContext) -> Self {
        let (data, end) = (ctx.data(), ctx.data_end());
        Self {
            data,
            end,
            len: end - data,
            segments: 1,
        }
    }

    /// Whether the packet has bytes beyond its linear data (TC: paged data).
    pub const fn is_partial(&self) -> bool {
        self.end - self.data < self.len
    }
}

impl Packet for Frame {
    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        // SAFETY: a read of a constant; volatile, so that the comparison stays.
        let max = unsafe { core::ptr::read_volatile(&raw const MAX_HEADER_OFFSET) };
        if offset > max as usize {
            return None;
        }
        let at = self.data + offset;
        if at + core::mem::size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: `at..at + size_of::<T>()` lies within the packet's linear data (checked
        // above, as the verifier checks it). BPF loads need no alignment on the architectures
        // that run these programs (the verifier asks for it only with strict alignment).
        Some(unsafe { (at as *const T).read() })
    }
    fn len(&self) -> usize {
        self.len
    }
    fn segments(&self) -> u32 {
        self.segments
    }
}

/// A TC packet read with `bpf_skb_load_bytes`, which reaches paged data too.
pub struct Copied<'a>(pub &'a TcContext, pub u32);

impl Packet for Copied<'_> {
    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        TcContext::load(self.0, offset).ok()
    }
    fn len(&self) -> usize {
        self.0.len() as usize
    }
    fn segments(&self) -> u32 {
        self.1
    }
}
