//! Attaching the programs to interfaces, the way this kernel allows: tcx links from 6.6, TC
//! filters through netlink (a `clsact` qdisc, direct action) before; XDP through aya's link.
//!
//! tcx links go away with the process, even on SIGKILL. Netlink filters do not: tcptrack takes
//! its own off on every exit it sees, and writes down each one it adds (interface, hook,
//! priority, handle) in a file named after its process and network namespace, so that the next
//! start finds and removes what a process that died without a word left behind, never those
//! of a tcptrack still running.

use std::io::Write as _;
use std::path::PathBuf;

use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::xdp::XdpLink;
use aya::programs::{LinkOrder, ProgramError, TcAttachType, XdpMode};
use aya::util::KernelVersion;

use super::{Kernel, KernelError};

/// What the running kernel offers the kernel path, by its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// tcx links (6.6): else TC filters through netlink.
    pub tcx: bool,
    /// `bpf_xdp_load_bytes` (5.18): the XDP program reads headers with it.
    pub xdp_load_bytes: bool,
}

impl Features {
    /// What a kernel of `version` offers.
    #[must_use]
    pub fn of(version: KernelVersion) -> Self {
        let at_least = |major, minor| version >= KernelVersion::new(major, minor, 0);
        Self {
            tcx: at_least(6, 6),
            xdp_load_bytes: at_least(5, 18),
        }
    }

    /// What the running kernel offers (everything, when its version cannot be read: the
    /// attempt then tells). `TCPTRACK_TC_HOOK=netlink` in the environment hooks TC through
    /// netlink where tcx exists too: the tests exercise that path on any kernel with it.
    #[must_use]
    pub fn of_this_kernel() -> Self {
        let mut f =
            KernelVersion::current().map_or(Self::of(KernelVersion::new(255, 0, 0)), Self::of);
        if std::env::var_os("TCPTRACK_TC_HOOK").is_some_and(|v| v == "netlink") {
            f.tcx = false;
        }
        f
    }
}

/// How the TC programs are hooked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcHook {
    Tcx,
    Netlink,
}

/// The links that count one interface's packets; dropping it (or [`Kernel::detach`]) takes
/// them off.
#[derive(Debug)]
pub struct Attachment {
    /// The interface's name when it was attached.
    pub interface: String,
    /// Its index: names can be reused, indexes are not while it exists.
    pub index: u32,
    tc: Vec<SchedClassifierLink>,
    xdp: Option<XdpLink>,
}

/// The index of interface `name` in this network namespace, if there is one.
#[must_use]
pub fn interface_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// Whether an interface with `index` still exists in this network namespace.
#[must_use]
pub fn interface_exists(index: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into the buffer we own.
    !unsafe { libc::if_indextoname(index, name.as_mut_ptr()) }.is_null()
}

/// The folder of the netlink filters' records (of the user tcptrack was started as).
#[must_use]
pub fn records_dir() -> PathBuf {
    records().0
}

/// The folder of the netlink filters' records, and this process's record in it: found once,
/// so that it stays the same after tcptrack switches users.
fn records() -> (PathBuf, PathBuf) {
    static RECORDS: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    RECORDS.get_or_init(find_records).clone()
}

fn find_records() -> (PathBuf, PathBuf) {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let user = PathBuf::from(format!("/run/user/{uid}"));
    let base = if user.is_dir() {
        user
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("tcptrack-{uid}"));
    let netns = std::fs::read_link("/proc/self/ns/net")
        .map(|l| {
            l.to_string_lossy()
                .replace(|c: char| !c.is_ascii_digit(), "")
        })
        .unwrap_or_default();
    let mine = dir.join(format!("{netns}-{}", std::process::id()));
    (dir, mine)
}

fn hook_name(hook: TcAttachType) -> &'static str {
    match hook {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    }
}

/// Removes the netlink filters that tcptrack processes of this network namespace left behind
/// when they died without a word (SIGKILL), as their records say.
pub fn remove_leftovers() {
    let (dir, mine) = records();
    let Some(prefix) = mine
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once('-'))
        .map(|(ns, _)| format!("{ns}-"))
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if alive {
            continue;
        }
        for line in std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .lines()
        {
            let f: Vec<&str> = line.split(' ').collect();
            let [interface, hook, priority, handle] = f[..] else {
                continue;
            };
            let hook = if hook == "ingress" {
                TcAttachType::Ingress
            } else {
                TcAttachType::Egress
            };
            let (Ok(priority), Ok(handle)) = (priority.parse(), handle.parse::<u32>()) else {
                continue;
            };
            // Dropping the link takes the filter off.
            drop(SchedClassifierLink::attached(
                interface,
                hook,
                priority,
                TcHandle::from(handle),
                None,
            ));
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

/// Writes down a netlink filter this process added.
fn record(interface: &str, link: &SchedClassifierLink) {
    let (dir, mine) = records();
    let (Ok(hook), Ok(priority), Ok(handle)) = (link.attach_type(), link.priority(), link.handle())
    else {
        return;
    };
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(mine)
    {
        let handle = u32::from(handle);
        let _ = writeln!(f, "{interface} {} {priority} {handle}", hook_name(hook));
    }
}

/// Forgets this process's records: its filters are off.
pub fn forget_records() {
    let _ = std::fs::remove_file(records().1);
}

impl Kernel {
    /// Counts the packets of `interface`: TC on egress, and on ingress TC, or XDP with `xdp`.
    ///
    /// # Errors
    /// The interface does not exist, or the kernel refused the attachment.
    pub fn attach(&mut self, interface: &str, xdp: bool) -> Result<Attachment, KernelError> {
        let at = |source| KernelError::Attach {
            interface: interface.to_owned(),
            source,
        };
        let index = interface_index(interface).ok_or_else(|| {
            at(ProgramError::UnknownInterface {
                name: interface.to_owned(),
            })
        })?;
        let mut a = Attachment {
            interface: interface.to_owned(),
            index,
            tc: Vec::new(),
            xdp: None,
        };
        if self.hook == TcHook::Netlink {
            // Already there is as good: one clsact serves every filter.
            let _ = aya::programs::tc::qdisc_add_clsact(interface);
        }
        let mut hooks = vec![TcAttachType::Egress];
        if xdp {
            let xdp = self.xdp()?;
            let id = xdp.attach(interface, XdpMode::default()).map_err(at)?;
            a.xdp = Some(xdp.take_link(id).map_err(at)?);
        } else {
            hooks.push(TcAttachType::Ingress);
        }
        let hook = self.hook;
        for h in hooks {
            let options = match hook {
                TcHook::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
                TcHook::Netlink => TcAttachOptions::Netlink(NlOptions::default()),
            };
            let tc = self.tc()?;
            // On an error, `a` drops: what was attached of it goes.
            let id = tc.attach_with_options(interface, h, options).map_err(at)?;
            let link = tc.take_link(id).map_err(at)?;
            if hook == TcHook::Netlink {
                record(interface, &link);
            }
            a.tc.push(link);
        }
        Ok(a)
    }

    /// Takes `a`'s links off (those the kernel has not already dropped with their interface).
    pub fn detach(&mut self, a: Attachment) {
        drop(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_the_kernel_version() {
        let v = |major, minor| Features::of(KernelVersion::new(major, minor, 0));
        assert_eq!(
            v(5, 10),
            Features {
                tcx: false,
                xdp_load_bytes: false
            }
        );
        assert_eq!(
            v(6, 1),
            Features {
                tcx: false,
                xdp_load_bytes: true
            }
        );
        assert!(v(6, 6).tcx && v(6, 18).tcx && !v(6, 5).tcx);
    }
}
