//! Confinement after setup, with Landlock (kernel 5.13 on), at the best ABI this kernel offers:
//! files are read only under `/proc`, `/sys` and `/etc` (and the capture file), the terminal
//! (`/dev/tty`) is read and written, and files are written only in the flow log's folder
//! (and, on kernels before 6.6, the folder of the netlink filters' records, where tcptrack
//! removes its own at exit). From ABI 4 (6.7) TCP binds only the metrics port and connects nowhere; from ABI 6
//! (6.12) no signal reaches a process outside, nor an abstract Unix socket. Rights a kernel
//! does not know are left out, said as "partly" in the help view. Then a seccomp filter
//! refuses the system calls tcptrack never makes ([`DENIED`]).

use std::fmt;
use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, LandlockStatus, NetPort, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI,
};

/// The newest ABI whose rights tcptrack asks for: newer kernels enforce these, older ones what
/// they know of them.
const ABI_USED: ABI = ABI::V6;

/// What the confinement allows beside reading `/proc`, `/sys`, `/etc` and the terminal.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// `--no-sandbox`: no confinement at all.
    pub off: bool,
    /// Files read after setup (the capture file).
    pub read: Vec<PathBuf>,
    /// Folders written in (the flow log's).
    pub write: Vec<PathBuf>,
    /// The folder of the netlink filters' records, where files are also removed (the kernel
    /// path; it exists once a netlink filter was recorded).
    pub records: Option<PathBuf>,
    /// The TCP port bound (the metrics endpoint's).
    pub bind: Option<u16>,
    /// The TCP port connected to (an IPFIX collector's, over TCP).
    pub connect: Option<u16>,
}

/// How the process is confined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Confined {
    /// `--no-sandbox`.
    Off,
    /// The kernel has no Landlock, or it is not enabled.
    Unavailable(&'static str),
    /// A Landlock ruleset at this ABI; `partly` when some asked-for rights were unknown to it.
    Landlock {
        abi: i32,
        partly: bool,
        write: Vec<PathBuf>,
        bind: Option<u16>,
        connect: Option<u16>,
    },
}

impl fmt::Display for Confined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("none (--no-sandbox)"),
            Self::Unavailable(why) => write!(f, "none: {why}"),
            Self::Landlock {
                abi,
                partly,
                write,
                bind,
                connect,
            } => {
                let how = if *partly { "partly, " } else { "" };
                write!(
                    f,
                    "Landlock ({how}ABI {abi}): reads /proc, /sys, /etc; writes "
                )?;
                if write.is_empty() {
                    f.write_str("nothing")?;
                } else {
                    let w: Vec<String> = write.iter().map(|p| p.display().to_string()).collect();
                    write!(f, "only in {}", w.join(", "))?;
                }
                if *abi >= 4 {
                    match bind {
                        Some(p) => write!(f, "; binds only TCP port {p}")?,
                        None => f.write_str("; binds nowhere")?,
                    }
                    match connect {
                        Some(p) => write!(f, ", connects only to TCP port {p}")?,
                        None => f.write_str(", connects nowhere")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// Confines this thread (and the threads it starts after) as `rules` say.
///
/// # Errors
/// The kernel refused a ruleset it offers, or a rule (paths that cannot be opened are left
/// out).
pub fn confine(rules: &Rules) -> Result<Confined, RulesetError> {
    if rules.off {
        return Ok(Confined::Off);
    }
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let write = read | AccessFs::WriteFile | AccessFs::MakeReg | AccessFs::Truncate;
    let terminal = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev;
    let mut readable: Vec<&Path> = vec![Path::new("/proc"), Path::new("/sys"), Path::new("/etc")];
    // A pipe (`-T -`, `/dev/stdin`) cannot be in a ruleset; it is open already anyway.
    readable.extend(
        rules
            .read
            .iter()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
            .map(PathBuf::as_path),
    );
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI_USED))?
        .handle_access(AccessNet::from_all(ABI_USED))?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?
        .add_rules(path_beneath_rules(readable, read))?
        .add_rules(path_beneath_rules(["/dev/tty"], terminal))?
        .add_rules(path_beneath_rules(&rules.write, write))?;
    let mut written = rules.write.clone();
    if let Some(records) = rules.records.as_ref().filter(|r| r.is_dir()) {
        ruleset = ruleset.add_rules(path_beneath_rules([records], write | AccessFs::RemoveFile))?;
        written.push(records.clone());
    }
    if let Some(port) = rules.bind {
        ruleset = ruleset.add_rule(NetPort::new(port, AccessNet::BindTcp))?;
    }
    if let Some(port) = rules.connect {
        ruleset = ruleset.add_rule(NetPort::new(port, AccessNet::ConnectTcp))?;
    }
    let status = ruleset.restrict_self()?;
    Ok(match status.landlock {
        LandlockStatus::NotEnabled => Confined::Unavailable("Landlock is not enabled at boot"),
        LandlockStatus::NotImplemented => {
            Confined::Unavailable("this kernel has no Landlock (5.13 on)")
        }
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => Confined::Landlock {
            abi: kernel_abi.unwrap_or(effective_abi as i32),
            partly: status.ruleset != RulesetStatus::FullyEnforced,
            write: written,
            bind: rules.bind,
            connect: rules.connect,
        },
    })
}

/// System calls tcptrack never makes once set up, refused (`EPERM`) by the seccomp filter (and
/// `clone` with new namespaces):
/// running programs, debugging or reading other processes, namespaces and mounts, modules and
/// the kernel's own state, the clock, users and groups, keys, io_uring and userfaultfd (both
/// ways around other filters), and new BPF programs or maps where the run has no kernel path.
const DENIED: &[libc::c_long] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_setns,
    libc::SYS_unshare,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_mknodat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mknod,
    libc::SYS_personality,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setgroups,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_perf_event_open,
];

/// This architecture, as seccomp names it (`AUDIT_ARCH_*`).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// clone's flags that make new namespaces (`CLONE_NEWNS`, `CLONE_NEWCGROUP`, `CLONE_NEWUTS`,
/// `CLONE_NEWIPC`, `CLONE_NEWUSER`, `CLONE_NEWPID`, `CLONE_NEWNET`, `CLONE_NEWTIME`).
const NEW_NAMESPACES: u32 = 0x0002_0000
    | 0x0200_0000
    | 0x0400_0000
    | 0x0800_0000
    | 0x1000_0000
    | 0x2000_0000
    | 0x4000_0000
    | 0x80;

/// System call numbers from here on are another ABI's (x32 on x86_64).
const X32: u32 = 0x4000_0000;

/// The seccomp filter: calls of another architecture or ABI, `clone` making namespaces, and
/// [`DENIED`] (and `bpf` unless `bpf`), get `EPERM`; `clone3` gets `ENOSYS` (glibc then uses
/// `clone`); everything else is allowed.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn filter(bpf: bool) -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: u16::try_from(code).unwrap_or(0),
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        jt,
        jf,
        ..stmt(code, k)
    };
    let deny = stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | 1);
    let eq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let mut denied: Vec<u32> = DENIED
        .iter()
        .filter_map(|&n| u32::try_from(n).ok())
        .collect();
    if !bpf {
        denied.extend(u32::try_from(libc::SYS_bpf).ok());
    }
    let clone = u32::try_from(libc::SYS_clone).unwrap_or(u32::MAX);
    let clone3 = u32::try_from(libc::SYS_clone3).unwrap_or(u32::MAX);
    let mut p = vec![
        // seccomp_data: nr at 0, arch at 4, the first argument's low half at 16.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jump(eq, AUDIT_ARCH, 1, 0),
        deny,
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jump(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, X32, 0, 1),
        deny,
        // clone3's flags are out of the filter's reach: "not here", and glibc falls back to
        // clone, whose flags are checked.
        jump(eq, clone3, 0, 1),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | 38),
        jump(eq, clone, 0, 4),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 16),
        jump(
            libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
            NEW_NAMESPACES,
            0,
            1,
        ),
        deny,
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    for nr in denied {
        p.push(jump(eq, nr, 0, 1));
        p.push(deny);
    }
    p.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    p
}

/// Installs the seccomp filter on this thread (the threads it starts after inherit it), with
/// `bpf` allowed or not. Needs no-new-privileges set before.
///
/// # Errors
/// The kernel refused the filter.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn seccomp(bpf: bool) -> std::io::Result<()> {
    let mut p = filter(bpf);
    let prog = libc::sock_fprog {
        len: u16::try_from(p.len()).map_err(std::io::Error::other)?,
        filter: p.as_mut_ptr(),
    };
    // SAFETY: prctl reads the program we own, which outlives the call (the kernel copies it).
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &raw const prog,
            0,
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// No filter where the system call numbers are not known here.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn seccomp(_bpf: bool) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test run again by itself, in a process of its own (the filter is for good): with the
    /// filter, exec, bpf and clone with a new namespace are refused with EPERM, a thread still
    /// starts, an ordinary call works.
    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn the_filter_refuses_exec_bpf_and_namespaces_and_allows_the_rest() {
        const NAME: &str =
            "sandbox::tests::the_filter_refuses_exec_bpf_and_namespaces_and_allows_the_rest";
        if std::env::var_os("TCPTRACK_SECCOMP_CHILD").is_none() {
            let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
                .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
                .env("TCPTRACK_SECCOMP_CHILD", "1")
                .output()
                .expect("run the test again");
            assert!(
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let errno = || std::io::Error::last_os_error().raw_os_error();
        // SAFETY: prctl with integers.
        let nnp = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        assert_eq!(nnp, 0);
        seccomp(false).expect("the filter");
        // Were it run, false would end this process with 1.
        let argv = [c"/bin/false".as_ptr(), std::ptr::null()];
        // SAFETY: a NUL-terminated path and argument list.
        let r = unsafe { libc::execve(argv[0], argv.as_ptr(), std::ptr::null()) };
        assert_eq!((r, errno()), (-1, Some(libc::EPERM)), "execve");
        // SAFETY: bpf with a null attribute: refused before it is read.
        let r = unsafe { libc::syscall(libc::SYS_bpf, 0, 0, 0) };
        assert_eq!((r, errno()), (-1, Some(libc::EPERM)), "bpf");
        // SAFETY: clone with a new user namespace: refused before it runs.
        let r = unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::CLONE_NEWUSER | libc::SIGCHLD,
                0,
                0,
                0,
                0,
            )
        };
        assert_eq!((r, errno()), (-1, Some(libc::EPERM)), "clone");
        assert_eq!(std::thread::spawn(|| 7).join().ok(), Some(7), "a thread");
        // SAFETY: getpid cannot fail.
        assert!(unsafe { libc::getpid() } > 0);
    }
}
