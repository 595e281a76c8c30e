//! Which process holds a socket, as `ss -p` finds it: the socket's inode among the links of
//! every `/proc/PID/fd`. Its command is `/proc/PID/comm`, its cgroup the unified hierarchy's
//! line of `/proc/PID/cgroup`. Processes that end while they are read are passed over.

use std::collections::HashMap;
use std::path::Path;

/// The process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// The command's name, as `ss -p` shows it.
    pub command: String,
    /// Its cgroup (v2 path), when it has one.
    pub cgroup: Option<String>,
}

/// The owners of the sockets whose inodes `wanted` says, looked up under `proc` (`/proc`).
/// A socket several processes share is the lowest pid's.
#[must_use]
pub fn owners(proc: &Path, wanted: &dyn Fn(u32) -> bool) -> HashMap<u32, Owner> {
    let mut found: HashMap<u32, Owner> = HashMap::new();
    let Ok(dir) = std::fs::read_dir(proc) else {
        return found;
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let base = proc.join(pid.to_string());
        let Ok(fds) = std::fs::read_dir(base.join("fd")) else {
            continue;
        };
        let mut owner: Option<Owner> = None;
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(&link) else {
                continue;
            };
            if !wanted(inode) || found.contains_key(&inode) {
                continue;
            }
            let o = owner.get_or_insert_with(|| Owner {
                pid,
                command: std::fs::read_to_string(base.join("comm"))
                    .map(|c| c.trim_end().to_owned())
                    .unwrap_or_default(),
                cgroup: std::fs::read_to_string(base.join("cgroup"))
                    .ok()
                    .and_then(|c| unified_cgroup(&c)),
            });
            found.insert(inode, o.clone());
        }
    }
    found
}

/// Process `pid` as `/proc` (under `proc`) tells it: its command and cgroup; `None` once it
/// has ended.
#[must_use]
pub fn read_owner(proc: &Path, pid: u32) -> Option<Owner> {
    let base = proc.join(pid.to_string());
    Some(Owner {
        pid,
        command: std::fs::read_to_string(base.join("comm"))
            .ok()?
            .trim_end()
            .to_owned(),
        cgroup: std::fs::read_to_string(base.join("cgroup"))
            .ok()
            .and_then(|c| unified_cgroup(&c)),
    })
}

/// The inode of a `socket:[N]` link.
fn socket_inode(link: &Path) -> Option<u32> {
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The path of the unified (v2) hierarchy in a `/proc/PID/cgroup`: its `0::PATH` line.
fn unified_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_holds_its_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("readlink");
        let inode = socket_inode(&link).expect("a socket");
        let found = owners(Path::new("/proc"), &|i| i == inode);
        let o = found.get(&inode).expect("found");
        assert_eq!(o.pid, std::process::id());
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        assert_eq!(o.command, comm.trim_end());
        // Only what was asked for.
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn links_and_cgroup_lines_are_read_as_the_kernel_writes_them() {
        assert_eq!(socket_inode(Path::new("socket:[12345]")), Some(12_345));
        assert_eq!(socket_inode(Path::new("pipe:[12345]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
        assert_eq!(
            unified_cgroup("1:name=systemd:/x\n0::/system.slice/web.service\n").as_deref(),
            Some("/system.slice/web.service")
        );
        assert_eq!(unified_cgroup("1:cpu:/\n"), None);
    }
}
