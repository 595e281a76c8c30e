//! The monitor: the one owner of the connection table. Every source feeds it through one message
//! type ([`SourceMsg`]); every sink (the screen, headless text, and those to come) reads it.
//!
//! It keeps the table's clock, re-reads the host's listening sockets on live interfaces, and
//! accounts for what was lost on the way (packets a full channel or the capture dropped, what
//! the kernel could not keep). [`drive`] is the loop that joins a source, the monitor, a sink,
//! keys, the refresh tick and signals.

mod drive;
pub mod locals;

pub use drive::{drive, Flow, Sink};

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::error::Error;
use crate::flow::{FlowUpdate, Timestamp};
use crate::output::WallClock;
use crate::source::kernel::KernelStats;
use crate::source::sockets::read_listening;
use crate::source::{SourceKind, SourceLabel, SourceMsg};
use crate::table::ConnectionTable;

/// How often, in capture time, a capture read whole forgets what has timed out.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// How far a packet may be older than one before it without the capture being out of time
/// order: a capture on several queues or CPUs (`-i any`, a multi-queue card) stamps packets in
/// parallel and writes them a little out of order, which changes nothing shown.
const REORDER_TOLERANCE: Duration = Duration::from_millis(10);

/// How often a live monitor re-reads its host's connected sockets, while they are wanted.
const LOCALS_REFRESH: Duration = Duration::from_secs(2);

/// How far the wall clock may move from the records' mapping before the records follow it.
const WALL_STEP: Duration = Duration::from_millis(100);

/// How often a live monitor re-reads the host's listening sockets.
const LISTENING_REFRESH: Duration = Duration::from_secs(10);

/// The table's clock: where "now" is for the table.
#[derive(Clone, Copy, Debug)]
enum Clock {
    /// A capture read whole, or one whose replay is over: time is that of the newest packet.
    Packets,
    /// `at` on the table's clock was the instant `wall`; time runs `speed` times the wall clock
    /// (live: 1; a replayed capture: what `--replay` asked).
    Running {
        at: Timestamp,
        wall: Instant,
        speed: f64,
    },
}

/// Packets older than one before them (beyond [`REORDER_TOLERANCE`]): a capture whose time
/// goes back (merged from several interfaces unsorted, or taken while the clock stepped back).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutOfOrder {
    /// How many packets were older than the newest one before them.
    pub packets: u64,
    /// By how much, at most.
    pub most: Duration,
}

/// The table and what is known about how it was filled.
pub struct Monitor {
    pub table: ConnectionTable,
    /// What the source is, as the status line names it.
    pub label: SourceLabel,
    kind: SourceKind,
    clock: Clock,
    /// Maps the table's clock to the wall clock, for records.
    wall: WallClock,
    /// The table's time, as of the last packet or tick (never goes back).
    pub now: Timestamp,
    /// Capture time at which a capture read whole next forgets what has timed out.
    next_expiry: Timestamp,
    /// When the listening sockets were last read (live only).
    listening_read: Option<Instant>,
    /// The source has ended (a capture read to its end); the table stays as it is.
    pub ended: bool,
    /// A problem to show beside the table (a fallback, a capture cut short).
    pub notice: Option<String>,
    /// Where the processes of connections come from (live only), as the help view says it.
    pub processes: Option<String>,
    /// What the process holds and how it is confined, for the help view.
    pub privileges: Option<Vec<String>>,
    /// An error to report once the sinks are done (a capture cut short).
    pub pending_error: Option<Error>,
    /// Packets the source had to drop (a full channel, the capture's own drops).
    pub dropped: u64,
    /// What the kernel could not keep (kernel path only).
    pub kernel: Option<KernelStats>,
    /// How long each kernel poll took, since the sinks were last told.
    poll_times: Vec<Duration>,
    /// The newest packet's time so far.
    newest_packet: Timestamp,
    /// Packets that came after a newer one.
    pub out_of_order: OutOfOrder,
    /// The instant refreshes count from, when the source polls on that grid (the kernel path);
    /// else the loop's start.
    pub refresh_origin: Option<std::time::Instant>,
    /// This host's sockets (live only, while wanted).
    pub locals: locals::Locals,
    /// Records are written that carry what the local sockets tell (RTT, retransmissions and
    /// the process of this host's connections).
    pub locals_for_records: bool,
    /// The flow log's records that could not be written, as its sink counts them.
    pub flow_log_lost: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// Asks the kernel's poller for a last poll (see `Started::last_poll`), as tcptrack ends.
    pub last_poll: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// What the IPFIX exporter sent and lost, as it counts them.
    pub ipfix: Option<std::sync::Arc<crate::ipfix::Counts>>,
    /// Live, records follow the wall clock when it steps (off in tests whose clock is tokio's
    /// paused one, which the wall clock does not follow).
    pub follow_wall_clock: bool,
    /// The screen shows it now (it says so as it draws).
    pub locals_on_screen: std::cell::Cell<bool>,
    /// When the local sockets were last read.
    locals_read: Option<Instant>,
}

impl Monitor {
    /// The flow log's records that could not be written so far (0 without a flow log).
    #[must_use]
    pub fn flow_log_lost(&self) -> u64 {
        self.flow_log_lost
            .as_ref()
            .map_or(0, |n| n.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// IPFIX records sent and lost so far (0 and 0 without `--ipfix`).
    #[must_use]
    pub fn ipfix_records(&self) -> (u64, u64) {
        self.ipfix.as_deref().map_or((0, 0), crate::ipfix::totals)
    }

    /// A monitor of `kind`'s source, its table made with `table`.
    #[must_use]
    pub fn new(table: ConnectionTable, label: SourceLabel, kind: SourceKind) -> Self {
        let mut m = Self {
            table,
            label,
            kind,
            clock: Clock::Packets,
            wall: WallClock::CAPTURE,
            now: Duration::ZERO,
            next_expiry: Duration::ZERO,
            listening_read: None,
            ended: false,
            notice: None,
            processes: None,
            privileges: None,
            pending_error: None,
            dropped: 0,
            kernel: None,
            poll_times: Vec::new(),
            newest_packet: Duration::ZERO,
            out_of_order: OutOfOrder::default(),
            refresh_origin: None,
            locals: locals::Locals::default(),
            locals_for_records: false,
            flow_log_lost: None,
            ipfix: None,
            last_poll: None,
            follow_wall_clock: true,
            locals_on_screen: std::cell::Cell::new(false),
            locals_read: None,
        };
        m.refresh_listening();
        m
    }

    /// What the source is.
    #[must_use]
    pub const fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Maps the table's clock to the wall clock.
    #[must_use]
    pub const fn wall_clock(&self) -> WallClock {
        self.wall
    }

    /// The table's time on the clock, or `None` while time is that of the packets.
    fn clock_now(&self) -> Option<Timestamp> {
        match self.clock {
            Clock::Packets => None,
            Clock::Running { at, wall, speed } => Some(at + wall.elapsed().mul_f64(speed)),
        }
    }

    /// Takes in one message of the source. Returns what the loop should do next: go on, or
    /// (the source failed) stop with the error.
    ///
    /// # Errors
    /// The live source broke (the interface went away, the kernel's maps cannot be read).
    pub fn handle(&mut self, msg: SourceMsg) -> Result<(), Error> {
        match msg {
            SourceMsg::Clock { at, wall, speed } => {
                let wall = Instant::from_std(wall);
                self.clock = Clock::Running { at, wall, speed };
                if self.kind == SourceKind::Live {
                    let since = wall.elapsed();
                    self.wall = WallClock::new(at, SystemTime::now() - since);
                }
            }
            SourceMsg::Batch(batch) => {
                for u in &batch {
                    self.apply(u);
                }
            }
            SourceMsg::Dropped(n) => self.dropped += n,
            SourceMsg::Kernel(poll) => {
                self.table.apply_poll(&poll);
                if !poll.opened.is_empty() {
                    let look = self.locals_for_records || self.locals_on_screen.get();
                    self.locals.opened(&poll.opened, look);
                    // Those of connections gone go: at most what the table lists (twice: both
                    // ends can be this host's), and what opened in the last seconds.
                    if self.locals.opened_len() > 2 * self.table.len() + 1024 {
                        self.keep_opened();
                    }
                }
            }
            SourceMsg::KernelStats(s) => {
                self.kernel = Some(s);
                self.poll_times.push(s.poll_time);
            }
            SourceMsg::LastPoll => {}
            SourceMsg::End(err) => {
                if self.kind == SourceKind::Live {
                    return err.map_or(Ok(()), Err);
                }
                // The capture is over: time stands at the last packet.
                if let Some(now) = self.clock_now() {
                    self.now = self.now.max(now);
                    self.table.expire(self.now);
                }
                self.clock = Clock::Packets;
                self.ended = true;
                self.notice = err
                    .as_ref()
                    .map(ToString::to_string)
                    .or_else(|| self.out_of_order_warning());
                self.pending_error = err;
            }
        }
        Ok(())
    }

    /// Takes in one update of the source (a packet, or a batch of one direction's packets):
    /// what a [`SourceMsg::Batch`] holds, one by one. A capture read whole hands its packets
    /// over so, without batches.
    pub fn apply(&mut self, u: &FlowUpdate) {
        self.note_order(u.ts);
        self.table.apply(u);
        if matches!(self.clock, Clock::Packets) {
            self.now = self.now.max(u.ts);
            if self.now >= self.next_expiry {
                self.table.expire(self.now);
                self.next_expiry = self.now + EXPIRE_EVERY;
            }
        }
    }

    /// Counts a packet at `ts` that is older than the newest one before it (beyond the
    /// tolerance).
    fn note_order(&mut self, ts: Timestamp) {
        if ts >= self.newest_packet {
            self.newest_packet = ts;
        } else if self.newest_packet - ts > REORDER_TOLERANCE {
            let o = &mut self.out_of_order;
            o.packets += 1;
            o.most = o.most.max(self.newest_packet - ts);
        }
    }

    /// How long each kernel poll took since the last call.
    pub fn take_poll_times(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.poll_times)
    }

    /// One line for a capture whose time went back (the table still has each connection from
    /// its earliest to its latest packet, and its time is the newest packet's).
    #[must_use]
    pub fn out_of_order_warning(&self) -> Option<String> {
        let o = self.out_of_order;
        let packets = match o.packets {
            0 => return None,
            1 => "1 packet goes".to_owned(),
            n => format!("{n} packets go"),
        };
        Some(format!(
            "warning: the capture is out of time order: {packets} back in time, by up to {:.3} s; \
             each connection's first and last seen are its earliest and latest packet",
            o.most.as_secs_f64()
        ))
    }

    /// Moves the clock to now; the table forgets what has timed out, unless `hold` (a paused
    /// screen: nothing leaves the table then). Live, re-reads the listening sockets when due.
    pub fn tick(&mut self, hold: bool) {
        if let Some(now) = self.clock_now() {
            self.advance_to(now, hold);
            if self.kind == SourceKind::Live && self.follow_wall_clock {
                // Records follow the wall clock, also when it steps (NTP, an operator): times
                // within the table run on the monotonic clock, and map to the wall clock as it
                // reads now once it has moved away from the mapping (a connection's times stay
                // the same from one record to the next otherwise).
                let wall = SystemTime::now();
                if self.wall.off_by(now, wall) > WALL_STEP {
                    self.wall = WallClock::new(now, wall);
                }
            }
        }
        if self
            .listening_read
            .is_some_and(|t| t.elapsed() >= LISTENING_REFRESH)
        {
            self.refresh_listening();
        }
        let due = self
            .locals_read
            .is_none_or(|t| t.elapsed() >= LOCALS_REFRESH);
        let wanted = self.locals_for_records || self.locals_on_screen.get();
        if self.kind == SourceKind::Live && wanted && due {
            self.locals_read = Some(Instant::now());
            self.locals.refresh();
            self.keep_opened();
            let table = &self.table;
            self.locals
                .keep_gone(|a, b| table.get(&crate::flow::FlowKey::new(a, b).0).is_some());
        }
    }

    /// Forgets the sockets the kernel's probes named whose connection left the table.
    fn keep_opened(&mut self) {
        let table = &self.table;
        self.locals
            .keep_opened(|a, b| table.get(&crate::flow::FlowKey::new(a, b).0).is_some());
    }

    /// Moves the table's time to `now` (never back); the table forgets what has timed out,
    /// unless `hold`.
    pub fn advance_to(&mut self, now: Timestamp, hold: bool) {
        self.now = self.now.max(now);
        if !hold {
            self.table.expire(self.now);
        }
    }

    /// Gives the table the host's listening sockets (live only), if they can be read: they only
    /// sharpen the client/server guess for connections picked up mid-stream.
    fn refresh_listening(&mut self) {
        if self.kind != SourceKind::Live {
            return;
        }
        self.listening_read = Some(Instant::now());
        if let Ok(l) = read_listening() {
            self.table.set_listening(l);
        }
    }
}

#[cfg(test)]
mod tests;
