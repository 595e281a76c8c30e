//! Confinement after setup, with Landlock (kernel 5.13 on), at the best ABI this kernel offers:
//! files are read only under `/proc`, `/sys` and `/etc` (and the capture file), the terminal
//! (`/dev/tty`) is read and written, and files are written only in the flow log's folder
//! (and, on kernels before 6.6, the folder of the netlink filters' records, where tcptrack
//! removes its own at exit). From ABI 4 (6.7) TCP binds only the metrics port and connects nowhere; from ABI 6
//! (6.12) no signal reaches a process outside, nor an abstract Unix socket. Rights a kernel
//! does not know are left out, said as "partly" in the help view.

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
                        Some(p) => write!(f, "; binds only TCP port {p}, connects nowhere")?,
                        None => f.write_str("; binds and connects nowhere")?,
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
/// The kernel refused a ruleset it offers (a folder to write in that cannot be opened).
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
        },
    })
}
