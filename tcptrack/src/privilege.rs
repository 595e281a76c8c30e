//! What tcptrack gives up once its source is open (programs attached, capture opened) and
//! before any thread starts (capability sets are each thread's own; threads started later
//! inherit the first thread's): every capability the run will not use again, from every set,
//! the bounding set included; root, for the user `-Z` names or, under sudo, the user who ran
//! it; and the right to gain any of it back (`PR_SET_NO_NEW_PRIVS`). Then it confines itself
//! ([`crate::sandbox`]).
//!
//! What a run still uses:
//! - reading and writing the kernel's maps (kernel path): `CAP_BPF` where this kernel asks for
//!   it (before 6.5, with unprivileged BPF disabled), found by trying a read without it;
//! - attaching to interfaces that come up later (`-i any` on the kernel path): `CAP_BPF` and
//!   `CAP_NET_ADMIN`;
//! - taking netlink TC filters off at exit (kernels before 6.6): `CAP_NET_ADMIN`;
//! - naming the processes of other users' sockets from `/proc/PID/fd`, as `ss -p` does:
//!   `CAP_SYS_PTRACE` and `CAP_DAC_READ_SEARCH`, when the run shows or writes processes and
//!   the process held them.

use std::ffi::{CStr, CString};
use std::io;

use crate::caps::{self, Capability, Sets};
use crate::error::Error;

/// Who tcptrack runs as after setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// As the password database names it, or the number when it has no entry.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// `-Z USER`: a name from the password database, or a user number.
    ///
    /// # Errors
    /// No such user.
    pub fn lookup(spec: &str) -> Result<Self, Error> {
        let by_name = CString::new(spec)
            .ok()
            // SAFETY: getpwnam reads a NUL-terminated name; its result is read at once, on the
            // only thread there is while options are read.
            .and_then(|c| unsafe { from_passwd(libc::getpwnam(c.as_ptr())) });
        // A number without an entry is taken as it is, its group the same number (as
        // `setpriv --reuid` would).
        let by_number = |uid: u32| {
            Self::by_uid(uid).unwrap_or(Self {
                name: uid.to_string(),
                uid,
                gid: uid,
            })
        };
        by_name
            .or_else(|| spec.parse().ok().map(by_number))
            .ok_or_else(|| Error::Usage(format!("-Z {spec}: no such user")))
    }

    /// The user whose number is `uid`, from the password database.
    fn by_uid(uid: u32) -> Option<Self> {
        // SAFETY: as in `lookup`.
        unsafe { from_passwd(libc::getpwuid(uid)) }
    }

    /// The user sudo was run by (`SUDO_UID`, `SUDO_GID`), when this process is root.
    #[must_use]
    pub fn from_sudo() -> Option<Self> {
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } != 0 {
            return None;
        }
        let var = |n| std::env::var(n).ok()?.parse::<u32>().ok();
        let uid = var("SUDO_UID").filter(|&u| u != 0)?;
        let gid = var("SUDO_GID")?;
        let name = Self::by_uid(uid).map_or_else(|| uid.to_string(), |u| u.name);
        Some(Self { name, uid, gid })
    }
}

/// The entry getpwnam or getpwuid returned.
///
/// # Safety
/// `p` is null or points to a valid `passwd` that is not overwritten while this reads it.
unsafe fn from_passwd(p: *const libc::passwd) -> Option<User> {
    // SAFETY: the caller's promise.
    let p = unsafe { p.as_ref() }?;
    // SAFETY: pw_name is a NUL-terminated string in the entry.
    let name = unsafe { CStr::from_ptr(p.pw_name) };
    Some(User {
        name: name.to_string_lossy().into_owned(),
        uid: p.pw_uid,
        gid: p.pw_gid,
    })
}

/// What the run asks of the privilege drop: set from the options before the source opens.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Switch to this user (from `-Z`, or sudo's); none stays who it is.
    pub user: Option<User>,
    /// The run shows or writes processes (the screen, records): keep what other users'
    /// `/proc/PID/fd` need, when held.
    pub processes: bool,
    /// Confine with Landlock (not with `--no-sandbox`).
    pub sandbox: crate::sandbox::Rules,
}

impl Plan {
    /// Refuses, before anything is opened, a switch this process cannot make.
    ///
    /// # Errors
    /// `-Z` names another user and tcptrack was not started as root.
    pub fn check(&self) -> Result<(), Error> {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        match &self.user {
            Some(u) if u.uid != uid && uid != 0 => Err(Error::Usage(format!(
                "-Z {}: only root can switch users",
                u.name
            ))),
            _ => Ok(()),
        }
    }
}

/// What the source will still do once open.
#[derive(Default)]
pub struct Needs<'a> {
    /// Attach to interfaces that come up later (`-i any` on the kernel path).
    pub follow: bool,
    /// Take netlink TC filters off at exit.
    pub netlink: bool,
    /// Reads the kernel's maps: tried without `CAP_BPF`.
    pub maps: Option<&'a dyn Attempt>,
}

/// Something the run does after setup, tried once with fewer capabilities.
pub trait Attempt {
    /// Whether it worked.
    fn works(&self) -> bool;
}

/// What was given up, for the help view and `--verbose`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The capabilities kept, each with why.
    pub kept: Vec<(Capability, &'static str)>,
    /// Those a helper process holds instead (to name other users' processes).
    pub helper: Vec<Capability>,
    /// The user switched to.
    pub user: Option<String>,
    /// How the process is confined.
    pub confined: crate::sandbox::Confined,
    /// Whether the seccomp filter refuses what tcptrack never calls.
    pub seccomp: bool,
}

impl Dropped {
    /// The help view's lines: what the process holds now, and how it is confined.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        let mut held = if self.kept.is_empty() {
            "no capabilities".to_owned()
        } else {
            let mut by_why: Vec<(&str, Vec<Capability>)> = Vec::new();
            for &(c, why) in &self.kept {
                match by_why.iter_mut().find(|(w, _)| *w == why) {
                    Some((_, v)) => v.push(c),
                    None => by_why.push((why, vec![c])),
                }
            }
            let parts: Vec<String> = by_why
                .iter()
                .map(|(why, v)| format!("{} ({why})", caps::list(v)))
                .collect();
            format!("kept {}", parts.join("; "))
        };
        if !self.helper.is_empty() {
            held.push_str(&format!(
                "; a helper process keeps {} to name other users' processes",
                caps::list(&self.helper)
            ));
        }
        if let Some(u) = &self.user {
            held.push_str(&format!("; runs as {u}"));
        }
        held.push_str("; no new privileges");
        let seccomp = if self.seccomp {
            "; seccomp refuses exec, ptrace, mounts, modules and other calls tcptrack never makes"
        } else {
            ""
        };
        vec![
            format!("Privileges: {held}"),
            format!("Confinement: {}{seccomp}", self.confined),
        ]
    }
}

/// Gives up what the run will not use (see the module's text), then confines the process.
/// Call it on the only thread there is.
///
/// # Errors
/// The kernel refused to lower the sets, switch users or confine.
pub fn drop_privileges(plan: &Plan, needs: &Needs<'_>) -> Result<Dropped, Error> {
    let fail = |what: &str, e: io::Error| Error::Privileges(format!("{what}: {e}"));
    // Sets and confinement are each thread's: a thread started before would keep everything.
    if let Some(n) = threads().filter(|&n| n != 1) {
        return Err(Error::Privileges(format!(
            "cannot give up privileges: {n} threads run already (a bug of tcptrack's)"
        )));
    }
    // A process that cannot read its own sets holds nothing to give up.
    let held = caps::get().map_err(|e| fail("cannot read the capabilities", e))?;
    let mut kept = keep(held, plan, needs)?;
    // SAFETY: getuid cannot fail.
    let switch = plan
        .user
        .as_ref()
        .filter(|u| u.uid != unsafe { libc::getuid() });
    // As another user, this process could not remove its record of netlink filters at exit,
    // and a record left behind would have a later start take off filters that are another's
    // by then: it goes now (only a SIGKILL then leaves the filters behind).
    if switch.is_some() && needs.netlink {
        crate::ebpf::forget_records();
    }
    // Confined, this process could not read other processes' `/proc/PID/fd` (Landlock allows
    // no ptrace access out of its domain): a helper outside the confinement does, holding only
    // what that needs.
    let mut helper = Vec::new();
    if !plan.sandbox.off {
        helper = kept
            .iter()
            .map(|&(c, _)| c)
            .filter(|c| NAMES.contains(c))
            .collect();
        kept.retain(|(c, _)| !NAMES.contains(c));
    }
    if !helper.is_empty() {
        let lower = || {
            lower_to(&helper, switch)?;
            crate::sandbox::seccomp(false)
        };
        crate::source::process::start_helper(&lower)
            .map_err(|e| fail("cannot start the helper that names processes", e))?;
    }
    let only: Vec<Capability> = kept.iter().map(|&(c, _)| c).collect();
    lower_to(&only, switch).map_err(|e| fail("cannot give up privileges", e))?;
    // The netlink records' folder only where filters are hooked through netlink.
    let mut rules = plan.sandbox.clone();
    if !needs.netlink {
        rules.records = None;
    }
    let confined = crate::sandbox::confine(&rules)
        .map_err(|e| Error::Privileges(format!("cannot confine tcptrack: {e}")))?;
    let seccomp = !plan.sandbox.off;
    if seccomp {
        // New BPF programs and maps only where the kernel path reads its own.
        crate::sandbox::seccomp(needs.maps.is_some())
            .map_err(|e| fail("cannot install the seccomp filter", e))?;
    }
    Ok(Dropped {
        kept,
        helper,
        user: switch.map(|u| u.name.clone()),
        confined,
        seccomp,
    })
}

/// How many threads this process has (`/proc/self/status`), when it can be read.
fn threads() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// What other users' `/proc/PID/fd` need to be read.
const NAMES: [Capability; 2] = [Capability::SysPtrace, Capability::DacReadSearch];

/// Lowers this process to `keep`, in every set, as `user` when given, with no new privileges.
fn lower_to(keep: &[Capability], user: Option<&User>) -> io::Result<()> {
    drop_bounding(keep);
    if let Some(u) = user {
        switch_user(u)?;
    }
    caps::set(Sets::only(keep))?;
    // SAFETY: prctl with integer arguments only.
    unsafe {
        // Nothing tcptrack runs could use an ambient capability; none was ever raised.
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The capabilities of `held` that the run still uses, with why.
fn keep(
    held: Sets,
    plan: &Plan,
    needs: &Needs<'_>,
) -> Result<Vec<(Capability, &'static str)>, Error> {
    let mut kept = Vec::new();
    let mut add = |c: Capability, why| {
        if held.permits(c) && !kept.iter().any(|&(k, _)| k == c) {
            kept.push((c, why));
        }
    };
    // CAP_SYS_ADMIN stands for CAP_BPF where only it is held.
    let bpf = if held.permits(Capability::Bpf) {
        Capability::Bpf
    } else {
        Capability::SysAdmin
    };
    if needs.follow {
        add(bpf, "attaching to interfaces that come up");
        add(Capability::NetAdmin, "attaching to interfaces that come up");
    }
    if needs.netlink {
        add(Capability::NetAdmin, "taking netlink filters off at exit");
    }
    if let Some(read) = needs.maps {
        if !works_without(held, &[Capability::Bpf, Capability::SysAdmin], read)? {
            add(bpf, "reading the kernel's maps");
        }
    }
    if plan.processes {
        for c in NAMES {
            add(c, "other users' processes");
        }
    }
    Ok(kept)
}

/// Whether `f` works with `caps` out of the effective set (put back after).
fn works_without(held: Sets, caps: &[Capability], f: &dyn Attempt) -> Result<bool, Error> {
    let fail = |e: io::Error| Error::Privileges(format!("cannot lower the capabilities: {e}"));
    caps::set(held.lowered(caps)).map_err(fail)?;
    let worked = f.works();
    caps::set(held).map_err(fail)?;
    Ok(worked)
}

/// Takes every capability but `keep` out of the bounding set, when this process may (it
/// needs `CAP_SETPCAP`; a process without it never gains more at exec anyway, no new
/// privileges being set).
fn drop_bounding(keep: &[Capability]) {
    let last: i32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let kept = Sets::only(keep).permitted;
    for cap in 0..=last {
        if kept & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        }
    }
}

/// Switches every id to `u`'s, keeping the permitted set (the effective one is then empty;
/// the caller sets both).
fn switch_user(u: &User) -> io::Result<()> {
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    let name = CString::new(u.name.as_str()).map_err(io::Error::other)?;
    // SAFETY: plain calls with a NUL-terminated name and integers.
    unsafe {
        // The user's own groups, or only its group when it has no entry.
        if check(libc::initgroups(name.as_ptr(), u.gid)).is_err() {
            check(libc::setgroups(1, &raw const u.gid))?;
        }
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
        check(libc::setresgid(u.gid, u.gid, u.gid))?;
        check(libc::setresuid(u.uid, u.uid, u.uid))?;
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_view_names_what_is_kept_and_why() {
        let d = Dropped {
            kept: vec![
                (Capability::Bpf, "reading the kernel's maps"),
                (Capability::SysPtrace, "other users' processes"),
                (Capability::DacReadSearch, "other users' processes"),
            ],
            helper: Vec::new(),
            user: Some("alice".into()),
            confined: crate::sandbox::Confined::Off,
            seccomp: false,
        };
        assert_eq!(
            d.lines()[0],
            "Privileges: kept CAP_BPF (reading the kernel's maps); CAP_SYS_PTRACE and \
             CAP_DAC_READ_SEARCH (other users' processes); runs as alice; no new privileges"
        );
        let none = Dropped {
            kept: Vec::new(),
            helper: Vec::new(),
            user: None,
            confined: crate::sandbox::Confined::Off,
            seccomp: false,
        };
        assert_eq!(
            none.lines()[0],
            "Privileges: no capabilities; no new privileges"
        );
        let helped = Dropped {
            helper: NAMES.to_vec(),
            ..none
        };
        assert_eq!(
            helped.lines()[0],
            "Privileges: no capabilities; a helper process keeps CAP_SYS_PTRACE and \
             CAP_DAC_READ_SEARCH to name other users' processes; no new privileges"
        );
    }

    #[test]
    fn users_are_found_by_name_and_number() {
        let root = User::lookup("root").expect("root");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(User::lookup("0").expect("uid 0").name, "root");
        let numbered = User::lookup("4000123").expect("a number without an entry");
        assert_eq!(
            (numbered.name.as_str(), numbered.uid, numbered.gid),
            ("4000123", 4_000_123, 4_000_123)
        );
        let e = User::lookup("no-such-user-here").expect_err("no such user");
        assert_eq!(e.to_string(), "-Z no-such-user-here: no such user");
    }
}
