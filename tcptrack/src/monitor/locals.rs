//! This host's own TCP sockets, as its kernel keeps them: the round-trip time and
//! retransmissions of the local end (what `ss -ti` shows), and the process that holds it (what
//! `ss -tp` shows). Read on a live interface only, and only while something shows or writes them
//! (their reading costs what the host's sockets cost, not what the traffic does).
//!
//! The process comes from the kernel where it can: on the kernel path, probes on `tcp_connect`
//! and `inet_csk_accept` name the process of each socket as it connects or is accepted, in any
//! network namespace of the host (a container's too), short-lived ones included. Otherwise, and
//! for sockets older than tcptrack, from `/proc` as `ss -p` finds it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::flow::Opened;
use crate::source::process::{owners_of, read_owner, Owner};
use crate::source::sockets::{read_connected, LocalSocket};
use crate::table::Connection;

/// How long a socket the probes named is kept whatever the table says (its first packets may
/// not have been polled yet).
const OPENED_GRACE: Duration = Duration::from_secs(10);

/// What the kernel says of one local socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// The local end's address.
    pub addr: SocketAddr,
    /// Smoothed round-trip time of the local end (µs; 0: unknown).
    pub rtt_us: u32,
    /// Segments the local end sent again (unknown for a socket only the probes saw).
    pub retransmits: Option<u32>,
    pub inode: u32,
    /// The process that holds it, once looked up.
    pub owner: Option<Owner>,
}

/// The local sockets by connection, and the owners already found by inode.
#[derive(Debug, Default)]
pub struct Locals {
    /// By (local end, remote end).
    by_ends: HashMap<(SocketAddr, SocketAddr), Local>,
    /// Sockets gone since (a closed connection's, in TIME_WAIT or closed: the reads leave them
    /// out), as last read, while their connection is listed (see [`Locals::keep_gone`]): a
    /// closed connection stays listed after its socket is gone (`-r`), and what was measured of
    /// it stays with it, in its records and on the screen, until it is forgotten.
    gone: HashMap<(SocketAddr, SocketAddr), Local>,
    owners: HashMap<u32, Owner>,
    /// The sockets the kernel's probes saw open, by (local end, remote end), and when.
    opened: HashMap<(SocketAddr, SocketAddr), (Local, Instant)>,
}

impl Locals {
    /// Reads the sockets again; looks up the owners of those not seen before. Keeps what it had
    /// when sock_diag cannot be read.
    pub fn refresh(&mut self) {
        let Ok(sockets) = read_connected() else {
            return;
        };
        self.take(sockets, Path::new("/proc"));
    }

    /// Takes in `sockets`, owners looked up under `proc`.
    fn take(&mut self, sockets: Vec<LocalSocket>, proc: &Path) {
        // Only this namespace's sockets whose owner is not known yet are looked up.
        let unknown: std::collections::HashSet<u32> = sockets
            .iter()
            .map(|s| s.inode)
            .filter(|i| !self.owners.contains_key(i))
            .collect();
        if !unknown.is_empty() {
            let found = owners_of(proc, &unknown);
            self.owners.extend(found);
        }
        // Forget the owners of sockets that are gone.
        let live: std::collections::HashSet<u32> = sockets.iter().map(|s| s.inode).collect();
        self.owners.retain(|i, _| live.contains(i));
        let before = std::mem::take(&mut self.by_ends);
        self.by_ends = sockets
            .into_iter()
            .map(|s| {
                let ends = (s.local, s.remote);
                let local = Local {
                    addr: s.local,
                    rtt_us: s.rtt_us,
                    retransmits: Some(s.retransmits),
                    inode: s.inode,
                    // The process that opened it, as the kernel saw it; else the one holding it.
                    owner: self
                        .opened
                        .get(&ends)
                        .and_then(|(l, _)| l.owner.clone())
                        .or_else(|| self.owners.get(&s.inode).cloned()),
                };
                (ends, local)
            })
            .collect();
        // A socket back on the same ends (a new connection) is not gone; those gone since the
        // last read join those gone before.
        let by_ends = &self.by_ends;
        self.gone.retain(|ends, _| !by_ends.contains_key(ends));
        self.gone.extend(
            before
                .into_iter()
                .filter(|(ends, _)| !by_ends.contains_key(ends)),
        );
    }

    /// Forgets the sockets gone whose connection `listed` says is no longer listed.
    pub fn keep_gone(&mut self, listed: impl Fn(SocketAddr, SocketAddr) -> bool) {
        self.gone.retain(|&(a, b), _| listed(a, b));
    }

    /// How many sockets gone are kept for their connections.
    #[must_use]
    pub fn gone_len(&self) -> usize {
        self.gone.len()
    }

    /// Takes in the sockets the kernel's probes saw connect or be accepted. With `look`, their
    /// process's command and cgroup are read from `/proc` at once (while it is likely there);
    /// else the command is the kernel's (the thread's name) and the cgroup unknown.
    pub fn opened(&mut self, opened: &[Opened], look: bool) {
        let now = Instant::now();
        for o in opened {
            let kernel = Owner {
                pid: o.pid,
                command: o.command.clone(),
                cgroup: None,
            };
            let owner = if look {
                read_owner(Path::new("/proc"), o.pid).unwrap_or(kernel)
            } else {
                kernel
            };
            let ends = (o.local, o.remote);
            if let Some(l) = self.by_ends.get_mut(&ends) {
                l.owner = Some(owner.clone());
            }
            let local = Local {
                addr: o.local,
                rtt_us: 0,
                retransmits: None,
                inode: 0,
                owner: Some(owner),
            };
            self.opened.insert(ends, (local, now));
        }
    }

    /// How many sockets the probes named are kept.
    #[must_use]
    pub fn opened_len(&self) -> usize {
        self.opened.len()
    }

    /// Forgets the sockets the probes named whose connection `listed` says is gone, once their
    /// grace is over.
    pub fn keep_opened(&mut self, listed: impl Fn(SocketAddr, SocketAddr) -> bool) {
        self.opened
            .retain(|&(a, b), (_, at)| at.elapsed() < OPENED_GRACE || listed(a, b));
    }

    /// The local socket of connection `c`, if it is one of this host's (in this namespace, or
    /// one the kernel's programs saw open anywhere on the host). Where both ends are, the one
    /// this host serves from when its server is local, else the client's.
    #[must_use]
    pub fn of(&self, c: &Connection) -> Option<&Local> {
        let (client, server) = (c.client(), c.server());
        let ends = if c.local_server() {
            [(server, client), (client, server)]
        } else {
            [(client, server), (server, client)]
        };
        [&self.by_ends, &self.gone]
            .into_iter()
            .find_map(|m| ends.iter().find_map(|e| m.get(e)))
            .or_else(|| ends.iter().find_map(|e| self.opened.get(e).map(|(l, _)| l)))
    }

    /// How many sockets are known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_ends.len()
    }

    /// Whether none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_ends.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowKey, FlowUpdate, TcpFlags};
    use crate::listening::ListeningSockets;
    use crate::table::{ConnectionTable, TableConfig};

    const CLIENT: &str = "198.18.0.1:40000";
    const SERVER: &str = "198.18.0.2:80";

    /// A table with the handshake of CLIENT to SERVER; SERVER's address this host's when
    /// `server_local`.
    fn table(server_local: bool) -> ConnectionTable {
        let mut t = ConnectionTable::new(TableConfig::default());
        let ip = |s: &str| s.parse::<SocketAddr>().expect("address").ip();
        let local = if server_local { ip(SERVER) } else { ip(CLIENT) };
        t.set_listening(ListeningSockets::new([], [local]));
        t.apply(&FlowUpdate::test_packet(
            CLIENT,
            SERVER,
            0,
            TcpFlags::SYN,
            0,
            0,
            0,
        ));
        t
    }

    fn opened(local: &str, remote: &str, pid: u32) -> Opened {
        Opened {
            local: local.parse().expect("address"),
            remote: remote.parse().expect("address"),
            pid,
            command: format!("p{pid}"),
        }
    }

    #[test]
    fn a_connection_takes_its_local_server_s_opener_else_its_client_s() {
        let mut l = Locals::default();
        // Both ends opened on this host (two namespaces): 1 connected, 2 accepted.
        l.opened(
            &[opened(CLIENT, SERVER, 1), opened(SERVER, CLIENT, 2)],
            false,
        );
        let key = FlowKey::new(CLIENT.parse().expect("a"), SERVER.parse().expect("b")).0;
        for (server_local, pid) in [(true, 2), (false, 1)] {
            let t = table(server_local);
            let c = t.get(&key).expect("listed");
            assert_eq!(c.local_server(), server_local);
            let owner = l.of(c).and_then(|x| x.owner.as_ref()).expect("an owner");
            assert_eq!(
                (owner.pid, owner.command.as_str()),
                (pid, &*format!("p{pid}"))
            );
            // The probes know nothing of how it goes since.
            assert_eq!(l.of(c).and_then(|x| x.retransmits), None);
        }
    }

    fn socket(local: &str, remote: &str, rtt_us: u32, retransmits: u32) -> LocalSocket {
        LocalSocket {
            local: local.parse().expect("address"),
            remote: remote.parse().expect("address"),
            rtt_us,
            retransmits,
            inode: 0,
        }
    }

    #[test]
    fn what_a_socket_told_stays_with_its_connection_after_it_is_gone() {
        let mut l = Locals::default();
        let proc = Path::new("/nonexistent");
        let key = FlowKey::new(CLIENT.parse().expect("a"), SERVER.parse().expect("b")).0;
        let t = table(false);
        let c = t.get(&key).expect("listed");
        let told = |l: &Locals| l.of(c).map(|x| (x.rtt_us, x.retransmits));
        l.take(vec![socket(CLIENT, SERVER, 52_052, 67)], proc);
        assert_eq!(told(&l), Some((52_052, Some(67))));
        // Gone (TIME_WAIT is not read), read after read: what it told stays.
        for _ in 0..5 {
            l.take(Vec::new(), proc);
            l.keep_gone(|_, _| true);
            assert_eq!(told(&l), Some((52_052, Some(67))));
        }
        // A new socket on the same ends is read instead, and is not gone.
        l.take(vec![socket(CLIENT, SERVER, 100, 0)], proc);
        assert_eq!((told(&l), l.gone_len()), (Some((100, Some(0))), 0));
        // Once its connection is forgotten, so is it.
        l.take(Vec::new(), proc);
        assert_eq!(l.gone_len(), 1);
        l.keep_gone(|_, _| false);
        assert_eq!((told(&l), l.gone_len()), (None, 0));
    }

    #[test]
    fn openers_of_connections_gone_are_forgotten_after_their_grace() {
        let mut l = Locals::default();
        l.opened(&[opened(CLIENT, SERVER, 1)], false);
        l.keep_opened(|_, _| false);
        assert_eq!(l.opened_len(), 1, "kept in its grace");
        for (_, at) in l.opened.values_mut() {
            *at -= OPENED_GRACE;
        }
        l.keep_opened(|_, _| true);
        assert_eq!(l.opened_len(), 1, "its connection is listed");
        l.keep_opened(|_, _| false);
        assert_eq!(l.opened_len(), 0);
    }
}
