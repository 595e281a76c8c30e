//! A load of real TCP connections from host b to host a: a listener in a that never accepts
//! (the server sides wait, established, in its queues) and holder processes in b, each with up
//! to [`PER_HOLDER`] client sockets, idle or sending 100 bytes a second on each.

use std::io::Read as _;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tcptrack_tests::netns::{wait_until, Background, HostPair, A4};

use super::super::super::measure::{wait_for, READY};
use super::super::super::Load;
use super::super::sysctl;

/// Listens on host a's address at the ports given, never accepting.
const LISTENER: &str = include_str!("listener.py");
/// Opens and holds the client sockets, then sleeps or sends.
const HOLDER: &str = include_str!("holder.py");
/// Connections one holder keeps open: a process may have at most 20,000 open files here.
const PER_HOLDER: u32 = 15_000;
/// The listening port of the first holder's connections; each holder has a port of its own.
const FIRST_PORT: u16 = 5001;
/// How long all the connections of a load may take to be established.
const CONNECTING: Duration = Duration::from_secs(120);

/// The connections of a load, held open until drop (the holders are killed first, then the
/// listener; the namespaces are the caller's).
pub struct Held {
    holders: Vec<Background>,
    _listener: Background,
}

impl Held {
    /// Opens `load`'s connections between `hosts`, and waits until all are established.
    pub fn open(hosts: &HostPair, load: Load) -> Result<Self> {
        sysctl(
            &hosts.a,
            &[
                "net.core.somaxconn=65535",
                "net.ipv4.tcp_max_syn_backlog=65535",
            ],
        )?;
        sysctl(&hosts.b, &["net.ipv4.ip_local_port_range=1024 65535"])?;
        let shares = shares(load.connections);
        let ports: Vec<u16> = (FIRST_PORT..).take(shares.len()).collect();
        let mut listener = HostPair::cmd(&hosts.a, "python3");
        listener
            .args(["-c", LISTENER, A4])
            .args(ports.iter().map(u16::to_string));
        let listener = Background::spawn(listener);
        wait_until("the listeners of host a", READY, || {
            ports.iter().all(|&p| HostPair::listening(&hosts.a, p))
        });
        let mode = if load.active { "active" } else { "idle" };
        let holders = shares
            .iter()
            .zip(&ports)
            .map(|(count, port)| {
                let mut holder = HostPair::cmd(&hosts.b, "python3");
                holder.args([
                    "-c",
                    HOLDER,
                    A4,
                    &port.to_string(),
                    &count.to_string(),
                    mode,
                ]);
                Background::spawn(holder)
            })
            .collect();
        // From here on, drop kills them.
        let mut held = Self {
            holders,
            _listener: listener,
        };
        let n = load.connections;
        wait_for(
            &format!("{n} connections established in host b"),
            CONNECTING,
            Duration::from_millis(250),
            || {
                held.check()?;
                Ok((established(&hosts.b)? >= n).then_some(()))
            },
        )?;
        Ok(held)
    }

    /// Fails if a holder has ended (its connections with it), with what it said.
    pub fn check(&mut self) -> Result<()> {
        for holder in &mut self.holders {
            if let Some(status) = holder.0.try_wait().context("wait for a holder")? {
                let mut said = String::new();
                if let Some(mut err) = holder.0.stderr.take() {
                    let _ = err.read_to_string(&mut said);
                }
                bail!("a connection holder ended ({status}): {}", said.trim());
            }
        }
        Ok(())
    }
}

/// `connections` split between as few holders as can hold them, evenly.
fn shares(connections: u32) -> Vec<u32> {
    let holders = connections.div_ceil(PER_HOLDER).max(1);
    let (each, more) = (connections / holders, connections % holders);
    (0..holders).map(|i| each + u32::from(i < more)).collect()
}

/// Established TCP connections in namespace `ns`.
fn established(ns: &str) -> Result<u32> {
    let out = HostPair::cmd(ns, "ss")
        .args(["-Htn", "state", "established"])
        .output()
        .context("run ss")?;
    let lines = out.stdout.iter().filter(|&&c| c == b'\n').count();
    u32::try_from(lines).context("connection count")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_share_evenly_within_their_limit() {
        assert_eq!(shares(1_000), [1_000]);
        assert_eq!(shares(15_000), [15_000]);
        assert_eq!(shares(15_001), [7_501, 7_500]);
        assert_eq!(shares(60_000), [15_000; 4]);
        assert_eq!(shares(60_001), [12_001, 12_000, 12_000, 12_000, 12_000]);
    }
}
