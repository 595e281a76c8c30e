//! A connection's key: its two endpoints in canonical order, so that both directions share one
//! (`ConnKey`: endpoint 0 is the lower, comparing address bytes, then port), built as five
//! 64-bit words rather than byte by byte.

use tcptrack_common::{cache_slot, ConnKey};

use crate::parse::Headers;

/// A `ConnKey`, as the words it is made of (this crate builds for little-endian BPF only: the
/// word holding the ports has port 0 in its low 16 bits, as `ConnKey` lays them out).
#[repr(C)]
pub struct Key {
    words: [u64; 5],
}

const _: () = assert!(core::mem::size_of::<Key>() == core::mem::size_of::<ConnKey>());

impl Key {
    pub const fn words(&self) -> &[u64; 5] {
        &self.words
    }

    /// Its first slot in a cache region of `slots` (see `tcptrack_common::cache_slot`).
    #[inline(always)]
    pub const fn slot(&self, slots: u32) -> u32 {
        cache_slot(&self.words, slots)
    }

    pub const fn conn(&self) -> &ConnKey {
        // SAFETY: same size; `Key`'s alignment (8) is at least `ConnKey`'s (2); every byte
        // initialized, and every bit pattern is a valid `ConnKey`.
        unsafe { &*(&raw const self.words).cast::<ConnKey>() }
    }
}

/// The packet's key, and its direction: 0 from endpoint 0, 1 from endpoint 1.
#[inline(always)]
pub fn key(h: &Headers) -> (Key, u8) {
    // Addresses compare as big-endian numbers, their first half first.
    let from_lower = (u64::from_be(h.src[0]), u64::from_be(h.src[1]), h.sport)
        <= (u64::from_be(h.dst[0]), u64::from_be(h.dst[1]), h.dport);
    let (lo, lo_port, hi, hi_port) = if from_lower {
        (h.src, h.sport, h.dst, h.dport)
    } else {
        (h.dst, h.dport, h.src, h.sport)
    };
    let tail = u64::from(lo_port) | u64::from(hi_port) << 16 | u64::from(h.family) << 32;
    (
        Key {
            words: [lo[0], lo[1], hi[0], hi[1], tail],
        },
        u8::from(!from_lower),
    )
}
