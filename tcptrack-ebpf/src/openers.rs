//! Who opens each connection: programs on `tcp_connect` and the return of `inet_csk_accept`
//! send the socket's tuple and the current process to userspace (`OPENERS`). Loaded where the
//! kernel can attach tracing programs; without them, userspace looks processes up in /proc.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use tcptrack_common::{sock, OpenerEvent};

use crate::maps::OPENERS;

/// `T` at `offset` bytes into the kernel object at `base`.
fn kernel_read<T>(base: *const u8, offset: usize) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address itself and fails (an error, never a
    // fault) where nothing can be read; the result is a plain copy.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset).cast::<T>()).ok() }
}

/// Sends the socket `sk` (a `struct sock *`) and the current process to userspace.
fn opened(sk: *const u8) -> Option<()> {
    if sk.is_null() {
        return None;
    }
    let family: u16 = kernel_read(sk, sock::FAMILY)?;
    let (mut local, mut remote) = ([0u8; 16], [0u8; 16]);
    match family {
        sock::AF_INET => {
            local[..4].copy_from_slice(&kernel_read::<[u8; 4]>(sk, sock::RCV_SADDR)?);
            remote[..4].copy_from_slice(&kernel_read::<[u8; 4]>(sk, sock::DADDR)?);
        }
        sock::AF_INET6 => {
            local = kernel_read(sk, sock::V6_RCV_SADDR)?;
            remote = kernel_read(sk, sock::V6_DADDR)?;
        }
        _ => return None,
    }
    let event = OpenerEvent {
        local,
        remote,
        local_port: kernel_read(sk, sock::NUM)?,
        remote_port: u16::from_be(kernel_read(sk, sock::DPORT)?),
        family,
        _pad: 0,
        // The thread group's id: the high half.
        pid: u32::try_from(bpf_get_current_pid_tgid() >> 32).unwrap_or(0),
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        _pad2: 0,
    };
    let mut entry = OPENERS.reserve::<OpenerEvent>(0)?;
    entry.write(event);
    entry.submit(0);
    Some(())
}

/// `tcp_connect(struct sock *sk)`: the socket has its ports and addresses by then, and the
/// process connecting is the current one.
#[fentry(function = "tcp_connect")]
pub fn tcptrack_connect(ctx: FEntryContext) -> u32 {
    let _ = opened(ctx.arg::<*const u8>(0));
    0
}

/// `inet_csk_accept` returns the accepted socket, in the process accepting it: after its four
/// arguments until Linux 6.10 (`sk, flags, err, kern`), after two since (`sk, arg`). Userspace
/// loads the one the kernel takes (the verifier refuses the fifth argument of a function of
/// two).
#[fexit(function = "inet_csk_accept")]
pub fn tcptrack_accept4(ctx: FExitContext) -> u32 {
    let _ = opened(ctx.arg::<*const u8>(4));
    0
}

#[fexit(function = "inet_csk_accept")]
pub fn tcptrack_accept2(ctx: FExitContext) -> u32 {
    let _ = opened(ctx.arg::<*const u8>(2));
    0
}
