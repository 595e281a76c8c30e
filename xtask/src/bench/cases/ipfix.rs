//! IPFIX export's cost: tcptrack on the capture of many connections, with and without
//! `--ipfix` to a UDP collector of this process's on 127.0.0.1, in alternating rounds. The
//! collector counts the records it gets, so that a round that lost some is seen.

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::super::measure::run_to_end;
use super::super::report::IpfixExport;
use super::super::Bench;
use crate::step;

/// Rounds of each (at least 5, alternating).
const ROUNDS: usize = 5;

/// The data records in one IPFIX message: its data sets' lengths, in records of a connection
/// without a process (what `-T` sends: 84 bytes for IPv4, 108 for IPv6).
fn records_in(msg: &[u8]) -> u64 {
    let mut at = 16;
    let mut n = 0;
    while at + 4 <= msg.len() {
        let id = u16::from_be_bytes([msg[at], msg[at + 1]]);
        let len = usize::from(u16::from_be_bytes([msg[at + 2], msg[at + 3]]));
        if len < 4 {
            break;
        }
        let size = match id {
            3804 => 84,
            3806 => 108,
            _ => 0,
        };
        n += (len - 4).checked_div(size).unwrap_or(0) as u64;
        at += len;
    }
    n
}

/// A collector: counts records and messages until told to stop.
struct Collector {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Collector {
    fn start() -> Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").context("bind the collector")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let port = socket.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut records, mut messages) = (0, 0);
            let mut buf = vec![0u8; 65_536];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        records += records_in(&buf[..n]);
                        messages += 1;
                    }
                    Err(_) if stopping.load(Ordering::Relaxed) => return (records, messages),
                    Err(_) => {}
                }
            }
        });
        Ok(Self { port, stop, thread })
    }

    /// Stops once nothing came for 100 ms; returns records and messages.
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

fn cpu_s(b: &Bench, ipfix: Option<u16>) -> Result<f64> {
    let many = &b.captures()?.many;
    let mut cmd = Command::new(&b.ours);
    cmd.arg("-T").arg(&many.path).args(["--output", "none"]);
    if let Some(port) = ipfix {
        cmd.args(["--ipfix", &format!("127.0.0.1:{port}")]);
    }
    Ok(run_to_end(&mut cmd)?.cpu.as_secs_f64())
}

pub fn measure(b: &Bench) -> Result<IpfixExport> {
    let connections = b.captures()?.many.connections;
    step(&format!(
        "IPFIX export: -T on {connections} connections with and without --ipfix, {ROUNDS} rounds"
    ));
    let mut out = IpfixExport {
        connections,
        without_cpu_s: Vec::new(),
        with_cpu_s: Vec::new(),
        extra_cpu_s: 0.0,
        records_received: Vec::new(),
        messages_received: Vec::new(),
    };
    for _ in 0..ROUNDS {
        out.without_cpu_s.push(cpu_s(b, None)?);
        let collector = Collector::start()?;
        out.with_cpu_s.push(cpu_s(b, Some(collector.port))?);
        let (records, messages) = collector.finish();
        if records != connections {
            bail!("the collector got {records} records of {connections}");
        }
        out.records_received.push(records);
        out.messages_received.push(messages);
    }
    let mut diffs: Vec<f64> = out
        .with_cpu_s
        .iter()
        .zip(&out.without_cpu_s)
        .map(|(w, o)| w - o)
        .collect();
    diffs.sort_by(f64::total_cmp);
    out.extra_cpu_s = diffs[diffs.len() / 2];
    Ok(out)
}
