//! This host's own TCP sockets, as its kernel keeps them: the round-trip time and
//! retransmissions of the local end (what `ss -ti` shows), and the process that holds it (what
//! `ss -tp` shows). Read on a live interface only, and only while something shows or writes them
//! (their reading costs what the host's sockets cost, not what the traffic does).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use crate::source::process::{owners, Owner};
use crate::source::sockets::{read_connected, LocalSocket};
use crate::table::Connection;

/// What the kernel says of one local socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// The local end's address.
    pub addr: SocketAddr,
    /// Smoothed round-trip time of the local end (µs).
    pub rtt_us: u32,
    /// Segments the local end sent again.
    pub retransmits: u32,
    pub inode: u32,
    /// The process that holds it, once looked up.
    pub owner: Option<Owner>,
}

/// The local sockets by connection, and the owners already found by inode.
#[derive(Debug, Default)]
pub struct Locals {
    /// By (local end, remote end).
    by_ends: HashMap<(SocketAddr, SocketAddr), Local>,
    /// Those of the read before that were gone at the last read: a closed connection stays
    /// listed a little after its socket is gone (`-r`), and its record is written then.
    gone: HashMap<(SocketAddr, SocketAddr), Local>,
    owners: HashMap<u32, Owner>,
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
            let found = owners(proc, &|i| unknown.contains(&i));
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
                    retransmits: s.retransmits,
                    inode: s.inode,
                    owner: self.owners.get(&s.inode).cloned(),
                };
                (ends, local)
            })
            .collect();
        self.gone = before
            .into_iter()
            .filter(|(ends, _)| !self.by_ends.contains_key(ends))
            .collect();
    }

    /// The local socket of connection `c`, if it is one of this host's. A connection between
    /// two sockets of this host has two; the client's is given.
    #[must_use]
    pub fn of(&self, c: &Connection) -> Option<&Local> {
        let (client, server) = (c.client(), c.server());
        [&self.by_ends, &self.gone].into_iter().find_map(|m| {
            m.get(&(client, server))
                .or_else(|| m.get(&(server, client)))
        })
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
