//! Which process holds a socket, as `ss -p` finds it: the socket's inode among the links of
//! every `/proc/PID/fd`. Its command is `/proc/PID/comm`, its cgroup the unified hierarchy's
//! line of `/proc/PID/cgroup`. Processes that end while they are read are passed over.

use std::collections::{HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;

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

/// The owners of the sockets whose inodes are `inodes`, looked up under `proc`: by the helper
/// process when tcptrack started one (confined, it cannot read other processes' `/proc/PID/fd`
/// itself), else here.
#[must_use]
pub fn owners_of(proc: &Path, inodes: &HashSet<u32>) -> HashMap<u32, Owner> {
    let mut helper = HELPER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(stream) = helper.as_mut() else {
        return owners(proc, &|i| inodes.contains(&i));
    };
    match ask(stream, inodes) {
        Ok(found) => found,
        // The helper is gone: no more names from /proc (what the kernel names still is).
        Err(_) => {
            *helper = None;
            HashMap::new()
        }
    }
}

/// The helper's end, in the main process.
static HELPER: Mutex<Option<UnixStream>> = Mutex::new(None);

/// The most inodes one request may carry (the helper refuses more).
const MAX_ASKED: usize = 1 << 22;

/// Starts the helper: a child process that runs `lower` (which keeps only what reading other
/// users' `/proc/PID/fd` needs, and sets no-new-privileges), then answers lookups from this
/// process until it ends. It is started before this process confines itself, and stays
/// outside that confinement (Landlock lets a confined process read no other process's
/// `/proc/PID/fd`). Call it on the only thread.
///
/// # Errors
/// The socket pair or the fork failed.
pub fn start_helper(lower: &dyn Fn() -> std::io::Result<()>) -> std::io::Result<()> {
    let (main, child) = UnixStream::pair()?;
    // SAFETY: fork on the only thread there is: the child may run any code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        drop(main);
        let code = i32::from(serve(child, lower).is_err());
        // SAFETY: _exit ends the child at once, without the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(child);
    // The helper says it is ready once it has lowered itself; if it could not, it has ended.
    let mut main = main;
    let mut ready = [0u8; 1];
    let said = main.read_exact(&mut ready);
    if said.is_err() || ready != READY {
        // SAFETY: waits for the child we forked, which has ended or is ending.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        return Err(std::io::Error::other("it could not give up its privileges"));
    }
    *HELPER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(main);
    Ok(())
}

/// What the helper sends once it has lowered itself.
const READY: [u8; 1] = *b"R";

/// The largest answer read from the helper (about 50 bytes an owner).
const MAX_ANSWER: usize = 1 << 26;

/// The helper's life: `lower`, then answer each request on `s` until it closes.
fn serve(mut s: UnixStream, lower: &dyn Fn() -> std::io::Result<()>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let own = s.as_raw_fd();
    // Nothing of the main process's but the standard streams and the socket.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && fd != own)
        .collect();
    // SAFETY: prctl with integer arguments and a NUL-terminated name; close of descriptors this
    // child holds and will not use (the directory's own is already closed: EBADF, ignored).
    unsafe {
        for fd in fds {
            libc::close(fd);
        }
        libc::prctl(libc::PR_SET_NAME, c"tcptrack-procs".as_ptr(), 0, 0, 0);
        // Signals to tcptrack's process group (Ctrl-C, a hang-up, a stop) are tcptrack's: the
        // helper ends when its socket closes, and answers until then (the records written at
        // exit still name processes).
        for sig in [
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGQUIT,
            libc::SIGTSTP,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let parent = std::os::unix::process::parent_id();
    lower()?;
    // SAFETY: prctl with integer arguments; set after the user switch, which clears it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if std::os::unix::process::parent_id() != parent {
        return Ok(());
    }
    s.write_all(&READY)?;
    loop {
        let mut n = [0u8; 4];
        match s.read_exact(&mut n) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            r => r?,
        }
        let n = usize::try_from(u32::from_le_bytes(n)).unwrap_or(usize::MAX);
        if n > MAX_ASKED {
            return Err(std::io::Error::other("too many inodes asked"));
        }
        let mut bytes = vec![0u8; n * 4];
        s.read_exact(&mut bytes)?;
        let asked: HashSet<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let found = owners(Path::new("/proc"), &|i| asked.contains(&i));
        s.write_all(&encode(&found))?;
    }
}

/// Asks the helper on `s` for the owners of `inodes`.
fn ask(s: &mut UnixStream, inodes: &HashSet<u32>) -> std::io::Result<HashMap<u32, Owner>> {
    let n = u32::try_from(inodes.len()).map_err(std::io::Error::other)?;
    let mut req = Vec::with_capacity(4 + inodes.len() * 4);
    req.extend_from_slice(&n.to_le_bytes());
    for i in inodes {
        req.extend_from_slice(&i.to_le_bytes());
    }
    s.write_all(&req)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = usize::try_from(u32::from_le_bytes(len)).map_err(std::io::Error::other)?;
    if len > MAX_ANSWER {
        return Err(std::io::Error::other("an answer too long from the helper"));
    }
    let mut reply = vec![0u8; len];
    s.read_exact(&mut reply)?;
    decode(&reply).ok_or_else(|| std::io::Error::other("a bad answer from the helper"))
}

/// A reply: its length (u32), then per owner the inode and pid (u32 each), the command and the
/// cgroup (u32 length, `u32::MAX` for none, then the bytes).
fn encode(found: &HashMap<u32, Owner>) -> Vec<u8> {
    let mut body = Vec::new();
    let text = |b: &mut Vec<u8>, s: Option<&str>| match s {
        Some(s) => {
            b.extend_from_slice(&u32::try_from(s.len()).unwrap_or(0).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        None => b.extend_from_slice(&u32::MAX.to_le_bytes()),
    };
    for (inode, o) in found {
        body.extend_from_slice(&inode.to_le_bytes());
        body.extend_from_slice(&o.pid.to_le_bytes());
        text(&mut body, Some(&o.command));
        text(&mut body, o.cgroup.as_deref());
    }
    let mut out = u32::try_from(body.len())
        .unwrap_or(0)
        .to_le_bytes()
        .to_vec();
    out.extend(body);
    out
}

/// The owners of a reply's body; `None` when it is malformed.
fn decode(mut b: &[u8]) -> Option<HashMap<u32, Owner>> {
    fn u32_of(b: &mut &[u8]) -> Option<u32> {
        let (head, rest) = b.split_first_chunk::<4>()?;
        *b = rest;
        Some(u32::from_le_bytes(*head))
    }
    fn text_of(b: &mut &[u8]) -> Option<Option<String>> {
        let n = u32_of(b)?;
        if n == u32::MAX {
            return Some(None);
        }
        let n = usize::try_from(n).ok()?;
        let s = String::from_utf8_lossy(b.get(..n)?).into_owned();
        *b = &b[n..];
        Some(Some(s))
    }
    let mut out = HashMap::new();
    while !b.is_empty() {
        let inode = u32_of(&mut b)?;
        let pid = u32_of(&mut b)?;
        let command = text_of(&mut b)??;
        let cgroup = text_of(&mut b)?;
        out.insert(
            inode,
            Owner {
                pid,
                command,
                cgroup,
            },
        );
    }
    Some(out)
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
    fn a_reply_of_the_helper_reads_back_as_written() {
        let mut found = HashMap::new();
        found.insert(
            7,
            Owner {
                pid: 42,
                command: "nginx".into(),
                cgroup: Some("/system.slice/nginx.service".into()),
            },
        );
        found.insert(
            9,
            Owner {
                pid: 43,
                command: String::new(),
                cgroup: None,
            },
        );
        let bytes = encode(&found);
        assert_eq!(
            bytes[..4],
            u32::try_from(bytes.len() - 4).expect("small").to_le_bytes()
        );
        assert_eq!(decode(&bytes[4..]).as_ref(), Some(&found));
        // Cut anywhere, it is refused, or read as the owners before the cut: never misread.
        for cut in 4..bytes.len() {
            if let Some(part) = decode(&bytes[4..cut]) {
                assert!(part.len() < 2, "cut at {cut}");
                assert!(
                    part.iter().all(|(i, o)| found.get(i) == Some(o)),
                    "cut at {cut}"
                );
            }
        }
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
