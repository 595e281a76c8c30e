//! The exporting process: a thread of its own that turns records into IPFIX messages and sends
//! them to the collector, over UDP or TCP. The monitor hands records over through a bounded
//! queue and never waits: what does not fit, or what the collector does not take (UDP refused,
//! TCP refused, reset or stalled past a timeout), is counted as lost, never retried.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::encode::{self, Record};

/// How records reach the collector (`--ipfix-transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Batches of records waiting for the thread; beyond, records are lost.
const QUEUE_BATCHES: usize = 256;
/// The most records in one batch: a larger one is cut (the queue then holds at most
/// `QUEUE_BATCHES * BATCH_RECORDS` records).
pub const BATCH_RECORDS: usize = 1024;
/// The most bytes in one message: under a 1,500-byte path MTU over UDP (IPv6 and its UDP
/// header included); larger over TCP, fewer headers.
const UDP_MESSAGE: usize = 1_400;
const TCP_MESSAGE: usize = 16_384;
/// Over UDP, the templates go again in a message at least this often, and every
/// `TEMPLATE_MESSAGES` messages: a collector started (or restarted) after tcptrack learns them
/// soon.
const TEMPLATE_EVERY: Duration = Duration::from_secs(30);
const TEMPLATE_MESSAGES: u32 = 20;
/// Over UDP, at most `PACE_MESSAGES` messages every `PACE_EVERY`: a burst (thousands of
/// connections ending at once, a capture file's records at its end) would otherwise overflow
/// the collector's socket buffer, where datagrams are lost unseen. About 16,000 messages,
/// 140,000 records, a second.
const PACE_MESSAGES: u32 = 16;
const PACE_EVERY: Duration = Duration::from_millis(1);
/// How long a TCP connection attempt, or one message's write, may take.
const TCP_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits between TCP connection attempts: doubled at each failure (to connect, or to write a
/// message), from the first to the last, back to the first once a message went.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MOST: Duration = Duration::from_secs(30);

/// What the exporter did, as metrics and the status line read it.
#[derive(Debug, Default)]
pub struct Counts {
    /// Records the collector was sent.
    pub sent: AtomicU64,
    /// Records lost: a full queue, a collector away.
    pub lost: AtomicU64,
    /// Whether the first loss was said on stderr.
    said: AtomicBool,
}

impl Counts {
    /// Counts `n` records lost for `why`, said on stderr the first time (when `say`).
    fn lose(&self, n: usize, why: &dyn std::fmt::Display, say: bool) {
        self.lost.fetch_add(n as u64, Ordering::Relaxed);
        if say && n > 0 && !self.said.swap(true, Ordering::Relaxed) {
            eprintln!(
                "tcptrack: IPFIX: {why}; counting goes on, the records not sent are counted \
                 (tcptrack_ipfix_records_lost_total)"
            );
        }
    }
}

/// What the exporter sends with, and where.
#[derive(Clone, Debug)]
pub struct Options {
    pub collector: SocketAddr,
    pub transport: Transport,
    pub standard_only: bool,
    /// The messages' observation domain.
    pub domain: u32,
    /// Say the first loss on stderr (not under the screen: its status line says it).
    pub say: bool,
}

/// The monitor's end of the exporter.
pub struct Sender {
    tx: Option<SyncSender<Vec<Record>>>,
    counts: Arc<Counts>,
    say: bool,
    /// Told when the thread is done.
    done: Receiver<()>,
}

impl Sender {
    /// Starts the exporting thread. Over UDP its socket is made here (a failure is an error);
    /// over TCP the thread connects, and connects again, by itself.
    ///
    /// # Errors
    /// The UDP socket cannot be made or connected, or the thread cannot start.
    pub fn start(opts: Options) -> std::io::Result<Self> {
        let udp = match opts.transport {
            Transport::Udp => {
                let any: SocketAddr = if opts.collector.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(any)?;
                s.connect(opts.collector)?;
                Some(s)
            }
            Transport::Tcp => None,
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Record>>(QUEUE_BATCHES);
        let (done_tx, done) = std::sync::mpsc::channel();
        let counts = Arc::new(Counts::default());
        let say = opts.say;
        let mut link = Link::new(opts, udp, Arc::clone(&counts));
        std::thread::Builder::new()
            .name("tcptrack-ipfix".into())
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    link.export(&batch);
                }
                let _ = done_tx.send(());
            })?;
        Ok(Self {
            tx: Some(tx),
            counts,
            say,
            done,
        })
    }

    /// What it did so far.
    #[must_use]
    pub fn counts(&self) -> Arc<Counts> {
        Arc::clone(&self.counts)
    }

    /// Hands `records` over; what the queue cannot take is lost, counted, never waited for.
    pub fn send(&self, records: Vec<Record>) {
        self.hand_over(records, false);
    }

    /// Hands `records` over, waiting for room in the queue: for a capture file, where there is
    /// no counting to keep up with and every record can go.
    pub fn send_waiting(&self, records: Vec<Record>) {
        self.hand_over(records, true);
    }

    /// Hands `records` over in batches, waiting for room when `wait`; what is not taken is
    /// counted as lost.
    fn hand_over(&self, mut records: Vec<Record>, wait: bool) {
        let Some(tx) = &self.tx else {
            return;
        };
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(BATCH_RECORDS));
            let refused = if wait {
                tx.send(records)
                    .map_err(|e| (e.0, "the exporter has stopped"))
            } else {
                tx.try_send(records).map_err(|e| match e {
                    TrySendError::Full(r) => (r, "the exporter's queue is full"),
                    TrySendError::Disconnected(r) => (r, "the exporter has stopped"),
                })
            };
            if let Err((lost, why)) = refused {
                self.counts.lose(lost.len() + rest.len(), &why, self.say);
                return;
            }
            records = rest;
        }
    }

    /// Lets the thread send what it holds, waiting at most `wait` for it (a stalled collector
    /// does not hold tcptrack's exit back). Returns whether it was done in time.
    pub fn close(&mut self, wait: Duration) -> bool {
        self.tx.take().is_none() || self.done.recv_timeout(wait).is_ok()
    }
}

/// Writes all of `buf` into `stream` by `deadline` (a collector that reads slowly cannot hold
/// one message longer), or fails.
fn write_within(stream: &mut TcpStream, buf: &[u8], deadline: Instant) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(std::io::ErrorKind::TimedOut)?;
        stream.set_write_timeout(Some(left))?;
        match stream.write(&buf[done..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The thread's end: the socket, the stream's sequence number, when templates went last.
struct Link {
    opts: Options,
    udp: Option<UdpSocket>,
    tcp: Option<TcpStream>,
    /// When to try connecting again (TCP), and the wait after the next failure.
    retry_at: Instant,
    retry_wait: Duration,
    /// Why the last attempt failed.
    refused: String,
    /// Data records sent in this stream (modulo 2^32): the next message's sequence number.
    sequence: u32,
    /// Templates go in the next message; when they last went, messages since.
    template_due: bool,
    /// The message in `buf` holds them.
    templates_in_message: bool,
    template_at: Instant,
    messages: u32,
    counts: Arc<Counts>,
    buf: Vec<u8>,
    /// The current pacing window: when it began, messages sent in it.
    window_at: Instant,
    window_messages: u32,
}

impl Link {
    fn new(opts: Options, udp: Option<UdpSocket>, counts: Arc<Counts>) -> Self {
        Self {
            opts,
            udp,
            tcp: None,
            retry_at: Instant::now(),
            retry_wait: RETRY_FIRST,
            refused: String::new(),
            sequence: 0,
            template_due: true,
            templates_in_message: false,
            template_at: Instant::now(),
            messages: 0,
            counts,
            buf: Vec::with_capacity(TCP_MESSAGE),
            window_at: Instant::now(),
            window_messages: 0,
        }
    }

    fn max_message(&self) -> usize {
        match self.opts.transport {
            Transport::Udp => UDP_MESSAGE,
            Transport::Tcp => TCP_MESSAGE,
        }
    }

    /// Sends `records`, as many messages as they take.
    fn export(&mut self, records: &[Record]) {
        if self.opts.transport == Transport::Tcp {
            if let Err(why) = self.connect() {
                self.counts.lose(records.len(), &why, self.opts.say);
                return;
            }
        }
        let mut rest = records;
        while !rest.is_empty() {
            let taken = self.message(rest);
            let (sent, left) = rest.split_at(taken);
            let had_templates = self.templates_in_message;
            match self.write() {
                Ok(()) => {
                    self.retry_wait = RETRY_FIRST;
                    // Modulo 2^32, as RFC 7011 counts.
                    self.sequence = self
                        .sequence
                        .wrapping_add(u32::try_from(taken).unwrap_or(0));
                    self.counts.sent.fetch_add(taken as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    let why = format!("sending to {}: {e}", self.opts.collector);
                    if self.opts.transport == Transport::Tcp {
                        // The stream may hold half a message: it is given up, and what is left
                        // of this batch with it; a new one is tried after the wait, not at
                        // once (a collector that stalled would take every batch's time).
                        self.tcp = None;
                        self.retry_at = Instant::now() + self.retry_wait;
                        self.retry_wait = (self.retry_wait * 2).min(RETRY_MOST);
                        self.refused = why.clone();
                        self.counts.lose(rest.len(), &why, self.opts.say);
                        return;
                    }
                    // The templates go again in the next message if this one had them.
                    self.template_due |= had_templates;
                    self.counts.lose(sent.len(), &why, self.opts.say);
                }
            }
            rest = left;
        }
    }

    /// Builds one message in `buf` from the front of `records`: the templates when due, then
    /// data sets, one per run of records of one template. Returns how many records it holds.
    fn message(&mut self, records: &[Record]) -> usize {
        let max = self.max_message();
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        encode::begin(&mut self.buf, secs, self.sequence, self.opts.domain);
        self.templates_in_message = false;
        let udp = self.opts.transport == Transport::Udp;
        if self.template_due
            || (udp
                && (self.template_at.elapsed() >= TEMPLATE_EVERY
                    || self.messages >= TEMPLATE_MESSAGES))
        {
            encode::template_set(&mut self.buf, self.opts.standard_only);
            self.templates_in_message = true;
            self.template_due = false;
            self.template_at = Instant::now();
            self.messages = 0;
        }
        self.messages += 1;
        let mut set: Option<(u16, usize)> = None;
        let mut taken = 0;
        for r in records {
            if self.buf.len() + encode::RECORD_MAX + 4 > max {
                break;
            }
            let template = encode::template_of(r);
            match set {
                Some((t, _)) if t == template => {}
                _ => {
                    if let Some((_, start)) = set {
                        encode::set_length(&mut self.buf, start);
                    }
                    set = Some((template, encode::begin_set(&mut self.buf, template)));
                }
            }
            encode::record(&mut self.buf, r, self.opts.standard_only);
            taken += 1;
        }
        if let Some((_, start)) = set {
            encode::set_length(&mut self.buf, start);
        }
        encode::finish(&mut self.buf);
        taken
    }

    /// Sends the message in `buf`.
    fn write(&mut self) -> std::io::Result<()> {
        match (&self.udp, &mut self.tcp) {
            (Some(udp), _) => {
                if self.window_messages >= PACE_MESSAGES {
                    let since = self.window_at.elapsed();
                    if since < PACE_EVERY {
                        std::thread::sleep(PACE_EVERY - since);
                    }
                    self.window_at = Instant::now();
                    self.window_messages = 0;
                }
                self.window_messages += 1;
                udp.send(&self.buf).map(|_| ())
            }
            (None, Some(tcp)) => write_within(tcp, &self.buf, Instant::now() + TCP_TIMEOUT),
            (None, None) => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// Over TCP: connected, or connected now (not before the wait after a failure is over);
    /// else why not.
    fn connect(&mut self) -> Result<(), String> {
        if self.tcp.is_some() {
            return Ok(());
        }
        if Instant::now() < self.retry_at {
            return Err(self.refused.clone());
        }
        let stream = TcpStream::connect_timeout(&self.opts.collector, TCP_TIMEOUT).and_then(|s| {
            s.set_nodelay(true)?;
            Ok(s)
        });
        match stream {
            Ok(s) => {
                self.tcp = Some(s);
                // A new stream: its own sequence numbers, the templates first.
                self.sequence = 0;
                self.template_due = true;
                Ok(())
            }
            Err(e) => {
                self.retry_at = Instant::now() + self.retry_wait;
                self.retry_wait = (self.retry_wait * 2).min(RETRY_MOST);
                self.refused = format!("connecting to {}: {e}", self.opts.collector);
                Err(self.refused.clone())
            }
        }
    }
}
