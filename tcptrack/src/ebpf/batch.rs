//! Batch operations on per-CPU hash maps through bpf(2): aya 0.14 has none. One small safe
//! function each, over the map's file descriptor.
//!
//! `BPF_MAP_LOOKUP_AND_DELETE_BATCH` and `BPF_MAP_UPDATE_BATCH` exist for per-CPU hashes from
//! kernel 5.6; before that, or where the kernel refuses them, the callers go key by key.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;

/// `enum bpf_cmd` values.
const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The kernel's "operation not supported" for a map type (not in libc: it is the kernel's own).
const ENOTSUPP: i32 = 524;

/// Entries asked for per call.
const CHUNK: usize = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Runs one batch command; returns the count the kernel wrote back, and its error if any.
fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> (usize, Option<io::Error>) {
    // SAFETY: a batch attribute whose pointers the callers made point at buffers of `count`
    // keys and `count` per-CPU values; the kernel writes `count` (and `out_batch`) back.
    let err = unsafe { super::sys::bpf(cmd, attr) }.err();
    (attr.count as usize, err)
}

/// Whether an error says the kernel has no such batch operation for this map.
#[must_use]
pub fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS | ENOTSUPP)
    )
}

/// Values of per-CPU maps are laid out per CPU, each rounded up to 8 bytes: `V` must be a
/// multiple of 8 already, so that a `Vec<V>` is that layout.
const fn check_value<V>() {
    assert!(std::mem::size_of::<V>().is_multiple_of(8));
}

/// The keys and values one batch call fills, kept from one drain to the next: made anew, they
/// were most of an idle poll's cost (a megabyte zeroed, its pages faulted in and given back).
#[derive(Debug, Default)]
pub struct Buffers<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
}

impl<K: Pod + Default, V: Pod + Default> Buffers<K, V> {
    /// Room for `chunk` keys and their values on `cpus` CPUs (made once, kept).
    fn room(&mut self, chunk: usize, cpus: usize) -> (&mut [K], &mut [V]) {
        if self.keys.len() < chunk {
            self.keys.resize(chunk, K::default());
        }
        if self.values.len() < chunk * cpus {
            self.values.resize(chunk * cpus, V::default());
        }
        (&mut self.keys[..chunk], &mut self.values[..chunk * cpus])
    }
}

/// Takes every entry out of the per-CPU hash map `map` (keys `K`, values `V` on each of `cpus`
/// CPUs), appending `(key, per-CPU values)` to `out`, through `buffers`. `K` and `V` must be
/// the map's own key and value types (`Pod`: any bytes the kernel writes are a valid value).
///
/// # Errors
/// The kernel refused (see [`unsupported`]: the caller then goes key by key), or another
/// system error. Entries already taken are in `out`.
pub fn take_all<K: Pod + Default, V: Pod + Default>(
    map: BorrowedFd<'_>,
    cpus: usize,
    buffers: &mut Buffers<K, V>,
    out: &mut Vec<(K, Vec<V>)>,
) -> io::Result<()> {
    const { check_value::<V>() };
    let mut chunk = CHUNK;
    let mut token: u32 = 0;
    let mut next: u32 = 0;
    let mut first = true;
    loop {
        // Only the first `n` entries the kernel says it wrote are read back.
        let (keys, values) = buffers.room(chunk, cpus);
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_ref(&token) as u64
            },
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(chunk).unwrap_or(u32::MAX),
            map_fd: u32::try_from(map.as_raw_fd()).unwrap_or(u32::MAX),
            ..BatchAttr::default()
        };
        let (n, err) = call(BPF_MAP_LOOKUP_AND_DELETE_BATCH, &mut attr);
        let n = n.min(chunk);
        out.extend(
            keys.iter()
                .take(n)
                .zip(values.chunks_exact(cpus))
                .map(|(k, v)| (*k, v.to_vec())),
        );
        match err {
            None => {}
            // The end of the map.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            // A bucket holds more entries than asked for: ask for more.
            Some(e) if e.raw_os_error() == Some(libc::ENOSPC) && n == 0 && chunk < 1 << 20 => {
                chunk *= 4;
                continue;
            }
            Some(e) => return Err(e),
        }
        token = next;
        first = false;
    }
}

/// Puts `keys` into the per-CPU hash map `map`, each with the value `V::default()` on every one
/// of `cpus` CPUs (replacing what is there).
///
/// # Errors
/// The kernel refused (see [`unsupported`]), the map is full, or another system error.
pub fn put_zeroed<K: Pod, V: Pod + Default>(
    map: BorrowedFd<'_>,
    cpus: usize,
    keys: &[K],
) -> io::Result<()> {
    const { check_value::<V>() };
    for part in keys.chunks(CHUNK) {
        let values = vec![V::default(); part.len() * cpus];
        let mut attr = BatchAttr {
            keys: part.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: u32::try_from(part.len()).unwrap_or(u32::MAX),
            map_fd: u32::try_from(map.as_raw_fd()).unwrap_or(u32::MAX),
            ..BatchAttr::default()
        };
        if let (_, Some(e)) = call(BPF_MAP_UPDATE_BATCH, &mut attr) {
            return Err(e);
        }
    }
    Ok(())
}
