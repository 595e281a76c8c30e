//! The capabilities the live paths need, and which of them this process holds: so that a
//! missing one is named before anything is tried, never guessed from an error's text.

use std::fmt;

/// A Linux capability tcptrack may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Attaching TC and XDP programs; the kernel path.
    NetAdmin,
    /// Packet sockets: libpcap, and promiscuous mode on the kernel path.
    NetRaw,
    /// Holds what CAP_BPF and CAP_PERFMON grant, on kernels that know them (5.8 on) and before.
    SysAdmin,
    /// Performance monitoring: the kernel programs' pointer arithmetic and helpers.
    Perfmon,
    /// Maps and programs; the kernel path.
    Bpf,
    /// Reading other users' `/proc/PID/fd` links: which process holds a socket.
    SysPtrace,
    /// Listing other users' `/proc/PID/fd` folders.
    DacReadSearch,
}

impl Capability {
    /// Its number in the kernel's capability sets.
    const fn number(self) -> u32 {
        match self {
            Self::NetAdmin => 12,
            Self::NetRaw => 13,
            Self::SysAdmin => 21,
            Self::Perfmon => 38,
            Self::Bpf => 39,
            Self::SysPtrace => 19,
            Self::DacReadSearch => 2,
        }
    }

    /// Its bit in a capability set.
    const fn bit(self) -> u64 {
        1 << self.number()
    }

    /// The name `setcap` and `capsh` use, upper case.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NetAdmin => "CAP_NET_ADMIN",
            Self::NetRaw => "CAP_NET_RAW",
            Self::SysAdmin => "CAP_SYS_ADMIN",
            Self::Perfmon => "CAP_PERFMON",
            Self::Bpf => "CAP_BPF",
            Self::SysPtrace => "CAP_SYS_PTRACE",
            Self::DacReadSearch => "CAP_DAC_READ_SEARCH",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the kernel path needs (and CAP_NET_RAW too for promiscuous mode).
pub const KERNEL_PATH: [Capability; 3] =
    [Capability::Bpf, Capability::Perfmon, Capability::NetAdmin];

/// Capabilities as a list for people: `CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN`.
#[must_use]
pub fn list(caps: &[Capability]) -> String {
    let names: Vec<&str> = caps.iter().map(|c| c.name()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The effective capabilities of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held(u64);

impl Held {
    /// Every capability (what a process is assumed to hold when its set cannot be read: the
    /// attempt then tells).
    pub const ALL: Self = Self(u64::MAX);

    /// This process's effective set, from `/proc/self/status`.
    #[must_use]
    pub fn this_process() -> Self {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| Self::parse(&s))
            .unwrap_or(Self::ALL)
    }

    /// The `CapEff` line of a `/proc/PID/status` text.
    #[must_use]
    pub fn parse(status: &str) -> Option<Self> {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))?
            .trim();
        u64::from_str_radix(hex, 16).ok().map(Self)
    }

    /// Whether `c` is held (CAP_SYS_ADMIN grants what CAP_BPF and CAP_PERFMON do).
    #[must_use]
    pub const fn has(self, c: Capability) -> bool {
        self.bit(c)
            || (matches!(c, Capability::Bpf | Capability::Perfmon)
                && self.bit(Capability::SysAdmin))
    }

    const fn bit(self, c: Capability) -> bool {
        self.0 & c.bit() != 0
    }

    /// Those of `needed` that are not held, in the order given.
    #[must_use]
    pub fn missing(self, needed: &[Capability]) -> Vec<Capability> {
        needed.iter().copied().filter(|&c| !self.has(c)).collect()
    }
}

/// A thread's capability sets, as `capget(2)` reads them: one bit per capability number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

impl Sets {
    /// Only the capabilities of `caps`, effective and permitted; none inheritable.
    #[must_use]
    pub fn only(caps: &[Capability]) -> Self {
        let bits = caps.iter().fold(0, |m, c| m | c.bit());
        Self {
            effective: bits,
            permitted: bits,
            inheritable: 0,
        }
    }

    /// These sets without `caps` in the effective set (they stay permitted: they can be raised
    /// again).
    #[must_use]
    pub fn lowered(self, caps: &[Capability]) -> Self {
        let bits = caps.iter().fold(0, |m, c| m | c.bit());
        Self {
            effective: self.effective & !bits,
            ..self
        }
    }

    /// Whether `c` is in the permitted set.
    #[must_use]
    pub const fn permits(self, c: Capability) -> bool {
        self.permitted & c.bit() != 0
    }
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two 32-bit halves.
const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Half {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's capability sets.
///
/// # Errors
/// `capget(2)` failed.
pub fn get() -> std::io::Result<Sets> {
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Half::default(); 2];
    // SAFETY: capget reads the header and writes two halves into the array we own.
    let r = unsafe { libc::syscall(libc::SYS_capget, &raw mut h, d.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let join = |f: fn(&Half) -> u32| u64::from(f(&d[0])) | u64::from(f(&d[1])) << 32;
    Ok(Sets {
        effective: join(|h| h.effective),
        permitted: join(|h| h.permitted),
        inheritable: join(|h| h.inheritable),
    })
}

/// Sets the calling thread's capability sets (only lowering, unless raising what is permitted).
///
/// # Errors
/// `capset(2)` refused.
pub fn set(s: Sets) -> std::io::Result<()> {
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    // The halves: the low 32 bits, then the high.
    let half = |shift: u32| {
        let part = |v: u64| u32::try_from((v >> shift) & 0xffff_ffff).unwrap_or(u32::MAX);
        Half {
            effective: part(s.effective),
            permitted: part(s.permitted),
            inheritable: part(s.inheritable),
        }
    };
    let d = [half(0), half(32)];
    // SAFETY: capset reads the header and the two halves we own.
    let r = unsafe { libc::syscall(libc::SYS_capset, &raw mut h, d.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_set_is_read_from_proc_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000000c000003000\nCapEff:\t000000c000003000\n";
        let held = Held::parse(status).expect("CapEff");
        assert!(held.has(Capability::NetAdmin) && held.has(Capability::NetRaw));
        assert!(held.has(Capability::Bpf) && held.has(Capability::Perfmon));
        assert!(!held.has(Capability::SysAdmin));
        assert_eq!(held.missing(&KERNEL_PATH), []);
        assert_eq!(Held::parse("Name:\tx\n"), None);
    }

    #[test]
    fn sys_admin_stands_for_bpf_and_perfmon() {
        // CAP_SYS_ADMIN (21) and CAP_NET_ADMIN (12) only.
        let held = Held(1 << 21 | 1 << 12);
        assert_eq!(held.missing(&KERNEL_PATH), []);
        assert_eq!(held.missing(&[Capability::NetRaw]), [Capability::NetRaw]);
        let none = Held(0);
        assert_eq!(
            none.missing(&KERNEL_PATH),
            [Capability::Bpf, Capability::Perfmon, Capability::NetAdmin]
        );
        assert_eq!(
            list(&none.missing(&KERNEL_PATH)),
            "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN"
        );
        assert_eq!(list(&[Capability::NetRaw]), "CAP_NET_RAW");
    }
}
