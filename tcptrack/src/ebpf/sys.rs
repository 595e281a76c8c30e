//! bpf(2) where aya 0.14 has no API: the call itself (the batch operations use it too), and
//! the two commands the translated filter needs: loading a program from instructions made at
//! run time, and putting a program into a program array.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cbpf::{Hook, Insn};

/// `enum bpf_cmd` values.
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
/// `enum bpf_prog_type` values.
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`'s `BPF_XDP`: what aya loads XDP programs with (a program array
/// takes only programs alike).
const BPF_XDP: u32 = 37;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_MAP_*_ELEM` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// bpf(2): command `cmd` with `attr`.
///
/// # Safety
/// `attr` is the command's part of `union bpf_attr`, its pointers at live buffers of the sizes
/// it gives (the kernel reads and writes them).
pub(super) unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: as the caller promised.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A program the kernel refused: its error, and the verifier's log.
#[derive(Debug)]
pub struct Refused {
    pub error: io::Error,
    pub log: String,
}

/// Loads `insns` as a program of `hook` named `name`. A refusal is tried once more with the
/// verifier's log, which the error then carries.
///
/// # Errors
/// The kernel refused the program.
pub fn load_program(hook: Hook, name: &str, insns: &[Insn]) -> Result<OwnedFd, Refused> {
    let license = c"Dual MIT/GPL";
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let mut attr = ProgLoadAttr {
        prog_type: match hook {
            Hook::Tc => BPF_PROG_TYPE_SCHED_CLS,
            Hook::Xdp => BPF_PROG_TYPE_XDP,
        },
        insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name,
        expected_attach_type: match hook {
            Hook::Tc => 0,
            Hook::Xdp => BPF_XDP,
        },
        ..ProgLoadAttr::default()
    };
    // SAFETY: the load attribute points at `insns` and the license, alive for the call.
    let error = match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        // SAFETY: a new descriptor the kernel handed over, owned by no one else.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) }),
        Err(e) => e,
    };
    let mut log = vec![0u8; 1 << 20];
    attr.log_level = 1;
    attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
    attr.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: as above, and at `log`, of `log_size` bytes.
    if let Ok(fd) = unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        // Accepted the second time (a transient failure): use it.
        // SAFETY: as above.
        return Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) });
    }
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    Err(Refused {
        error,
        log: String::from_utf8_lossy(&log[..end]).into_owned(),
    })
}

/// Puts the program `program` into slot `index` of the program array `map`.
///
/// # Errors
/// The kernel refused (a program of another type than the array's, say).
pub fn set_program(map: BorrowedFd<'_>, index: u32, program: BorrowedFd<'_>) -> io::Result<()> {
    let value: u32 = program.as_raw_fd().cast_unsigned();
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd().cast_unsigned(),
        key: std::ptr::from_ref(&index) as u64,
        value: std::ptr::from_ref(&value) as u64,
        ..MapElemAttr::default()
    };
    // SAFETY: the attribute points at `index` and `value`, alive for the call.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
}
