//! The loads of the live kernel cost, made in this process: its sockets are opened by threads
//! that moved into a test host's network namespace (a socket stays in the namespace it was
//! made in, whichever thread uses it afterwards).
//!
//! - [`Established`]: connections from host a to host b held open, each sending 64-byte
//!   segments (`TCP_NODELAY`, and `TCP_NOTSENT_LOWAT` 1 so that a write is taken only when
//!   nothing is left unsent: no two writes go out in one segment), host b reading and
//!   discarding.
//! - [`Churn`]: connections from host a to host b opened, sent 64 bytes and reset (`SO_LINGER`
//!   0, then close) as fast as a few threads can.
//!
//! Both stop, and their threads end, on drop.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tcptrack_tests::netns::B4;

/// What every segment of the loads carries.
pub const SEGMENT: usize = 64;
const PAYLOAD: [u8; SEGMENT] = [0x5a; SEGMENT];
/// Threads that write on the established connections, and threads that read them.
const SENDERS: usize = 2;
const READERS: usize = 2;
/// Threads that open and reset connections.
const CHURNERS: usize = 3;
/// Connections host b's acceptor keeps before closing the oldest (by then long reset).
const KEPT: usize = 256;
/// How long a thread with nothing to do waits on its sockets before it looks at the stop flag.
const IDLE: Duration = Duration::from_millis(10);

/// Moves this thread into network namespace `ns` (made by `ip netns add`).
fn enter(ns: &str) -> Result<()> {
    let file =
        File::open(format!("/run/netns/{ns}")).with_context(|| format!("open namespace {ns}"))?;
    // SAFETY: setns(2) on a namespace descriptor we hold open; it moves this thread only.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns into {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// `f`'s result, run on a thread of its own in namespace `ns`.
fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| bail!("a thread in namespace {ns} panicked"))
    })
}

/// Sets an `int` socket option.
fn set_int(fd: RawFd, level: i32, name: i32, value: i32) -> Result<()> {
    // SAFETY: setsockopt with a pointer to a live int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            socklen(size_of::<i32>()),
        )
    };
    if r != 0 {
        bail!(
            "setsockopt({level}, {name}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn socklen(n: usize) -> libc::socklen_t {
    libc::socklen_t::try_from(n).unwrap_or(libc::socklen_t::MAX)
}

/// `SO_LINGER` with a zero timeout: the close that follows resets the connection.
fn linger_zero(s: &TcpStream) -> Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a pointer to a live linger and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const l).cast(),
            socklen(size_of::<libc::linger>()),
        )
    };
    if r != 0 {
        bail!("SO_LINGER: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// A listener on host b's address (a port the kernel picks), its accept queue `backlog` long,
/// made in namespace `ns`.
fn listen(ns: &str, backlog: i32) -> Result<TcpListener> {
    in_namespace(ns, || {
        let b4: Ipv4Addr = B4.parse().context("B4")?;
        let l = TcpListener::bind((b4, 0)).context("listen on host b")?;
        // SAFETY: listen(2) again on our bound socket: only its queue's length changes.
        if unsafe { libc::listen(l.as_raw_fd(), backlog) } != 0 {
            bail!("listen: {}", std::io::Error::last_os_error());
        }
        Ok(l)
    })
}

/// Waits up to [`IDLE`] until one of `fds` can take `events`.
fn wait(fds: &[RawFd], events: i16) {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let n = libc::nfds_t::try_from(polled.len()).unwrap_or(libc::nfds_t::MAX);
    let ms = i32::try_from(IDLE.as_millis()).unwrap_or(10);
    // SAFETY: poll(2) on our own array of pollfd, `n` long.
    unsafe { libc::poll(polled.as_mut_ptr(), n, ms) };
}

/// The stop flag and the threads of a load, told to stop and joined on drop.
struct Threads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Result<()>>>,
}

impl Threads {
    fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            handles: Vec::new(),
        }
    }

    /// Starts `f` (named `name`) with the stop flag.
    fn spawn(
        &mut self,
        name: &str,
        f: impl FnOnce(&AtomicBool) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let stop = Arc::clone(&self.stop);
        let h = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || f(&stop))
            .context("start a load thread")?;
        self.handles.push(h);
        Ok(())
    }

    /// Fails with the first error of a thread that has ended, if one has.
    fn check(&mut self) -> Result<()> {
        if let Some(i) = self.handles.iter().position(JoinHandle::is_finished) {
            let h = self.handles.swap_remove(i);
            match h.join() {
                Ok(Ok(())) => bail!("a load thread ended before it was told to"),
                Ok(Err(e)) => return Err(e.context("a load thread failed")),
                Err(_) => bail!("a load thread panicked"),
            }
        }
        Ok(())
    }

    /// Stops every thread and waits for them; the first error of one.
    fn finish(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut first = Ok(());
        for h in self.handles.drain(..) {
            let r = h.join().unwrap_or_else(|_| bail!("a load thread panicked"));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// `connections` connections from host a (namespace `a`) to host b (namespace `b`), each
/// sending 64-byte segments, until drop.
pub struct Established {
    threads: Threads,
    received: Arc<AtomicU64>,
}

impl Established {
    /// Opens the connections and starts sending.
    pub fn start(a: &str, b: &str, connections: usize) -> Result<Self> {
        let listener = listen(b, 1024)?;
        let to: SocketAddr = listener.local_addr().context("listener's address")?;
        let clients = in_namespace(a, || {
            (0..connections)
                .map(|_| {
                    let s = TcpStream::connect(to).context("connect to host b")?;
                    s.set_nodelay(true)?;
                    set_int(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, 1)?;
                    Ok(s)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let servers = (0..connections)
            .map(|_| Ok(listener.accept().context("accept on host b")?.0))
            .collect::<Result<Vec<_>>>()?;
        let received = Arc::new(AtomicU64::new(0));
        let mut threads = Threads::new();
        for (i, share) in deal(clients, SENDERS).into_iter().enumerate() {
            threads.spawn(&format!("send-{i}"), move |stop| send(&share, stop))?;
        }
        for (i, share) in deal(servers, READERS).into_iter().enumerate() {
            let count = Arc::clone(&received);
            threads.spawn(&format!("read-{i}"), move |stop| read(&share, stop, &count))?;
        }
        Ok(Self { threads, received })
    }

    /// Bytes host b has read so far; fails if a thread has failed.
    pub fn received(&mut self) -> Result<u64> {
        self.threads.check()?;
        Ok(self.received.load(Ordering::Relaxed))
    }

    /// Stops, and says how the threads ended.
    pub fn stop(mut self) -> Result<()> {
        self.threads.finish()
    }
}

/// `items` dealt into `n` shares.
fn deal<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let mut shares: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        if let Some(s) = shares.get_mut(i % n) {
            s.push(item);
        }
    }
    shares
}

/// Writes 64 bytes on each socket that takes them, in turn, until `stop`.
fn send(socks: &[TcpStream], stop: &AtomicBool) -> Result<()> {
    for s in socks {
        s.set_nonblocking(true)?;
    }
    let fds: Vec<RawFd> = socks.iter().map(AsRawFd::as_raw_fd).collect();
    while !stop.load(Ordering::Relaxed) {
        let mut sent = false;
        for mut s in socks {
            match s.write(&PAYLOAD) {
                Ok(_) => sent = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The readers' ends close as the load stops.
                Err(_) if stop.load(Ordering::Relaxed) => break,
                Err(e) => return Err(e).context("write on an established connection"),
            }
        }
        if !sent {
            wait(&fds, libc::POLLOUT);
        }
    }
    Ok(())
}

/// Reads what each socket has, in turn, adding the bytes to `count`, until `stop`.
fn read(socks: &[TcpStream], stop: &AtomicBool, count: &AtomicU64) -> Result<()> {
    for s in socks {
        s.set_nonblocking(true)?;
    }
    let fds: Vec<RawFd> = socks.iter().map(AsRawFd::as_raw_fd).collect();
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        let mut got = 0;
        for mut s in socks {
            match s.read(&mut buf) {
                // The senders' ends close as the load stops.
                Ok(0) | Err(_) if stop.load(Ordering::Relaxed) => break,
                Ok(0) => bail!("host a closed an established connection"),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).context("read on an established connection"),
            }
        }
        if got == 0 {
            wait(&fds, libc::POLLIN);
        } else {
            count.fetch_add(u64::try_from(got).unwrap_or(0), Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Connections from host a (namespace `a`) to host b (namespace `b`) opened, sent 64 bytes
/// and reset, by a few threads, until drop; host b accepts them and closes them later.
pub struct Churn {
    threads: Threads,
    made: Arc<AtomicU64>,
}

impl Churn {
    pub fn start(a: &str, b: &str) -> Result<Self> {
        let listener = listen(b, 4096)?;
        let to: SocketAddr = listener.local_addr().context("listener's address")?;
        listener.set_nonblocking(true)?;
        let made = Arc::new(AtomicU64::new(0));
        let mut threads = Threads::new();
        threads.spawn("accept", move |stop| accept(&listener, stop))?;
        for i in 0..CHURNERS {
            let (a, made) = (a.to_owned(), Arc::clone(&made));
            threads.spawn(&format!("churn-{i}"), move |stop| {
                enter(&a)?;
                churn(to, stop, &made)
            })?;
        }
        Ok(Self { threads, made })
    }

    /// Connections made so far; fails if a thread has failed.
    pub fn made(&mut self) -> Result<u64> {
        self.threads.check()?;
        Ok(self.made.load(Ordering::Relaxed))
    }

    /// Stops, and says how the threads ended.
    pub fn stop(mut self) -> Result<()> {
        self.threads.finish()
    }
}

/// Accepts every connection, keeping the last [`KEPT`] open (closing them at once would have
/// host b close some before host a resets them), until `stop`.
fn accept(listener: &TcpListener, stop: &AtomicBool) -> Result<()> {
    let mut kept = VecDeque::with_capacity(KEPT + 1);
    let fd = [listener.as_raw_fd()];
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                kept.push_back(s);
                if kept.len() > KEPT {
                    kept.pop_front();
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => wait(&fd, libc::POLLIN),
            // A connection reset before it was accepted.
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
            Err(e) => return Err(e).context("accept on host b"),
        }
    }
    Ok(())
}

/// Connects to `to`, sends 64 bytes and resets, over and over, counting into `made`, until
/// `stop`.
fn churn(to: SocketAddr, stop: &AtomicBool, made: &AtomicU64) -> Result<()> {
    let mut failed = 0u32;
    while !stop.load(Ordering::Relaxed) {
        // Nothing is in flight before the one write: Nagle does not hold it back.
        let attempt = TcpStream::connect(to).and_then(|mut s| {
            s.write_all(&PAYLOAD)?;
            Ok(s)
        });
        match attempt {
            Ok(s) => {
                linger_zero(&s)?;
                drop(s);
                made.fetch_add(1, Ordering::Relaxed);
                failed = 0;
            }
            // A refused attempt now and then (a full queue, a port still in use) is part of a
            // churn; only a run of them is a failure.
            Err(e) => {
                failed += 1;
                if failed >= 1000 {
                    return Err(e).context("1,000 connections in a row to host b failed");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::deal;

    #[test]
    fn shares_are_dealt_evenly() {
        assert_eq!(deal((0..5).collect(), 2), [vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(deal(vec![7], 3), [vec![7], vec![], vec![]]);
    }
}
