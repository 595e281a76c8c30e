//! The whole loop (source batches, keys, ticks) driven on ratatui's `TestBackend`, on tokio's
//! paused clock: every frame the screen drew is kept and checked.

use std::time::Duration;

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use tokio::sync::mpsc;

use super::{drive, Flow, Monitor, Sink};
use crate::cli::OutputFormat;
use crate::error::Error;
use crate::flow::{FlowUpdate, TcpFlags};
use crate::headless::Headless;
use crate::source::{SourceKind, SourceLabel, SourceMsg};
use crate::table::{ConnectionTable, TableConfig};
use crate::tui::Screen;

/// Signals go to the whole process: the loops of these tests run one at a time, so that one's
/// signal does not stop another.
static ONE_LOOP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const RST: u8 = TcpFlags::RST;

fn pkt(src: &str, dst: &str, ms: u64, flags: u8, seq: u32, ack: u32, len: u32) -> FlowUpdate {
    FlowUpdate::test_packet(src, dst, ms, flags, seq, ack, len)
}

/// The screen, keeping every frame it draws (with the loop's time when it was drawn).
struct Frames {
    screen: Screen<TestBackend>,
    frames: Vec<(Duration, String)>,
    start: tokio::time::Instant,
}

impl Frames {
    fn keep(&mut self) {
        let text = self.screen.terminal.backend().to_string();
        self.frames.push((self.start.elapsed(), text));
    }
}

impl Sink for Frames {
    fn holds(&self) -> bool {
        self.screen.holds()
    }
    fn refresh(&mut self, m: &Monitor) -> Result<(), Error> {
        self.screen.refresh(m)?;
        self.keep();
        Ok(())
    }
    fn ended(&mut self, m: &Monitor) -> Result<Flow, Error> {
        let flow = self.screen.ended(m)?;
        self.keep();
        Ok(flow)
    }
    fn input(&mut self, m: &Monitor, event: Event) -> Result<Flow, Error> {
        let flow = self.screen.input(m, event)?;
        self.keep();
        Ok(flow)
    }
}

/// The source's clock: time 0 at `start`, at the wall clock's pace.
async fn start_clock(start: tokio::time::Instant, source_tx: &mpsc::Sender<SourceMsg>) {
    let clock = SourceMsg::Clock {
        at: Duration::ZERO,
        wall: start.into_std(),
        speed: 1.0,
    };
    source_tx.send(clock).await.expect("send");
}

/// A handshake from client `c` to server `s` at 0-2 ms.
fn handshake(c: &str, s: &str) -> Vec<FlowUpdate> {
    vec![
        pkt(c, s, 0, SYN, 0, 0, 0),
        pkt(s, c, 1, SYN | ACK, 0, 1, 0),
        pkt(c, s, 2, ACK, 1, 1, 0),
    ]
}

fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

/// What the test's source and user do: at 0 s the clock and a batch (a connection that stays,
/// ESTABLISHED, and one reset at 0.2 s), then `p` at 1.5 s, `p` at 3.5 s, `q` at 4.5 s. Returns
/// the source's sender, kept open until the loop ends.
async fn feed(
    start: tokio::time::Instant,
    source_tx: mpsc::Sender<SourceMsg>,
    key_tx: mpsc::Sender<Event>,
) -> mpsc::Sender<SourceMsg> {
    let (c, s, r) = ("198.18.0.1:40000", "198.18.0.2:80", "198.18.0.1:40001");
    start_clock(start, &source_tx).await;
    let mut batch = handshake(c, s);
    batch.extend([
        pkt(c, s, 100, ACK, 1, 1, 1_000),
        pkt(r, s, 150, SYN, 0, 0, 0),
        pkt(s, r, 200, RST | ACK, 0, 1, 0),
    ]);
    source_tx.send(SourceMsg::Batch(batch)).await.expect("send");
    for (at_ms, k) in [(1_500, 'p'), (3_500, 'p'), (4_500, 'q')] {
        tokio::time::sleep_until(start + Duration::from_millis(at_ms)).await;
        key_tx.send(key(k)).await.expect("send");
    }
    source_tx
}

/// A connection that stays (ESTABLISHED) and one reset at 0.2 s (gone 2 s later, when nothing
/// holds it); `p` at 1.5 s pauses, so the reset one stays listed; `p` at 3.5 s lets it go at
/// the next tick; `q` at 4.5 s ends the loop.
#[tokio::test(start_paused = true)]
async fn the_loop_applies_batches_ticks_the_clock_and_reacts_to_keys() {
    let _one = ONE_LOOP.lock().await;
    let (source_tx, source_rx) = mpsc::channel(16);
    let (key_tx, key_rx) = mpsc::channel(16);
    let cfg = TableConfig {
        closed_linger: Duration::from_secs(2),
        ..TableConfig::default()
    };
    let mut m = Monitor::new(
        ConnectionTable::new(cfg),
        SourceLabel::Replay("test.pcap".into()),
        SourceKind::Replay,
    );
    let start = tokio::time::Instant::now();
    let feeder = tokio::spawn(feed(start, source_tx, key_tx));
    let mut sink = Frames {
        screen: Screen::new(Terminal::new(TestBackend::new(100, 8)).expect("terminal")),
        frames: Vec::new(),
        start,
    };
    drive(
        &mut m,
        source_rx,
        Some(key_rx),
        &mut sink,
        Duration::from_secs(1),
    )
    .await
    .expect("the loop");
    drop(feeder.await);

    let at = |secs: u64| -> &str {
        let t = Duration::from_secs(secs);
        &sink
            .frames
            .iter()
            .find(|(when, _)| *when == t)
            .unwrap_or_else(|| panic!("no frame at {t:?}: {:#?}", sink.frames))
            .1
    };
    // Ticks at 1, 2, 3, 4 s; keys drew at 1.5, 3.5, 4.5 s (the last one quit, drawing nothing).
    let times: Vec<Duration> = sink.frames.iter().map(|f| f.0).collect();
    let ms = Duration::from_millis;
    assert_eq!(
        times,
        [
            ms(1_000),
            ms(1_500),
            ms(2_000),
            ms(3_000),
            ms(3_500),
            ms(4_000),
            ms(4_500)
        ]
    );
    assert!(
        at(1).contains("ESTABLISHED") && at(1).contains("RESET"),
        "{}",
        at(1)
    );
    assert!(at(1).contains("Unpaused"), "{}", at(1));
    // Paused at 1.5 s: the reset connection is 2.8 s old at 3 s, still listed.
    assert!(
        at(3).contains("RESET") && at(3).contains("Paused"),
        "{}",
        at(3)
    );
    // Unpaused at 3.5 s: gone at the next tick; the established one stays.
    assert!(!at(4).contains("RESET"), "{}", at(4));
    assert!(at(4).contains("ESTABLISHED"), "{}", at(4));
    assert_eq!(m.table.len(), 1);
    // The table's time is that of the last tick.
    assert_eq!(m.now, Duration::from_secs(4));
}

/// A live source that sends its clock and a handshake at 0 s, then raises `signal` at 2.5 s.
/// Until `done`, it keeps the runtime busy, so that tokio's paused clock stays at 2.5 s while
/// the loop takes the signal.
async fn signal_at(
    signal: libc::c_int,
    start: tokio::time::Instant,
    source_tx: mpsc::Sender<SourceMsg>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> mpsc::Sender<SourceMsg> {
    let (c, s) = ("198.18.0.1:40000", "198.18.0.2:80");
    start_clock(start, &source_tx).await;
    let batch = handshake(c, s);
    source_tx.send(SourceMsg::Batch(batch)).await.expect("send");
    tokio::time::sleep_until(start + Duration::from_millis(2_500)).await;
    // SAFETY: raise(3) takes no pointer; the loop has a handler for the signal (tokio's).
    unsafe { libc::raise(signal) };
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    source_tx
}

/// Headless live output, stopped by SIGINT or SIGTERM at 2.5 s: the refreshes at 1 s and 2 s,
/// then the interval the signal ended, taken at 2.5 s.
#[tokio::test(start_paused = true)]
async fn a_signal_has_live_headless_output_write_the_last_interval() {
    let _one = ONE_LOOP.lock().await;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let (source_tx, source_rx) = mpsc::channel(16);
        let mut m = Monitor::new(
            ConnectionTable::new(TableConfig::default()),
            SourceLabel::Live("test".into()),
            SourceKind::Live,
        );
        // Paused, tokio's clock is not the wall clock.
        m.follow_wall_clock = false;
        let start = tokio::time::Instant::now();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let feeder = tokio::spawn(signal_at(signal, start, source_tx, done.clone()));
        let mut out = Vec::new();
        let mut sink = Headless::new(OutputFormat::Json, &mut out);
        drive(&mut m, source_rx, None, &mut sink, Duration::from_secs(1))
            .await
            .expect("the loop ends well on a signal");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(feeder.await);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(2_500),
            "signal {signal}"
        );
        let text = String::from_utf8(out).expect("UTF-8");
        let times: Vec<std::time::SystemTime> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
                let t = v["time"].as_str().expect("time");
                humantime::parse_rfc3339(t).expect("RFC 3339")
            })
            .collect();
        assert_eq!(times.len(), 3, "signal {signal}: {text}");
        let since_first: Vec<Duration> = times
            .iter()
            .map(|t| t.duration_since(times[0]).expect("in order"))
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(
            since_first,
            [ms(0), ms(1_000), ms(1_500)],
            "signal {signal}"
        );
        assert_eq!(m.now, ms(2_500));
    }
}

/// A live source for the flow log's loop: its clock and, at 0 s, a connection that stays and
/// one reset at 0.2 s (forgotten at the 3 s tick, -r 2); at 3.5 s `log` is moved to `rotated`
/// and SIGHUP raised; at 4.5 s SIGINT. Until `done`, it keeps the runtime busy (see
/// [`signal_at`]).
async fn rotate_then_stop(
    start: tokio::time::Instant,
    source_tx: mpsc::Sender<SourceMsg>,
    files: (std::path::PathBuf, std::path::PathBuf),
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> mpsc::Sender<SourceMsg> {
    let (c, s, r) = ("198.18.0.1:40000", "198.18.0.2:80", "198.18.0.1:40001");
    start_clock(start, &source_tx).await;
    let mut batch = handshake(c, s);
    batch.extend([
        pkt(r, s, 150, SYN, 0, 0, 0),
        pkt(s, r, 200, RST | ACK, 0, 1, 0),
    ]);
    source_tx.send(SourceMsg::Batch(batch)).await.expect("send");
    tokio::time::sleep_until(start + Duration::from_millis(3_500)).await;
    std::fs::rename(&files.0, &files.1).expect("rotate");
    // SAFETY: raise(3) takes no pointer; the loop has a handler for the signal (tokio's).
    unsafe { libc::raise(libc::SIGHUP) };
    tokio::time::sleep_until(start + Duration::from_millis(4_500)).await;
    // SAFETY: as above.
    unsafe { libc::raise(libc::SIGINT) };
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    source_tx
}

/// The flow log beside headless output: the reset connection's record when it is forgotten,
/// SIGHUP reopens the log (the loop goes on), SIGINT ends it with the record of the one still
/// open. Without a flow log, SIGHUP stops the loop as before.
#[tokio::test(start_paused = true)]
async fn the_flow_log_beside_headless_output_reopens_on_sighup() {
    let _one = ONE_LOOP.lock().await;
    let dir = std::env::temp_dir().join(format!("tcptrack-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (log, rotated) = (dir.join("flows.jsonl"), dir.join("flows.jsonl.1"));
    let (source_tx, source_rx) = mpsc::channel(16);
    let cfg = TableConfig {
        report_ended: true,
        ..TableConfig::default()
    };
    let mut m = Monitor::new(
        ConnectionTable::new(cfg),
        SourceLabel::Live("test".into()),
        SourceKind::Live,
    );
    let start = tokio::time::Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let files = (log.clone(), rotated.clone());
    let feeder = tokio::spawn(rotate_then_stop(start, source_tx, files, done.clone()));
    let target = crate::cli::FlowLogTarget::File(log.clone());
    let flow_log = crate::flowlog::FlowLog::open(&target).expect("open");
    let mut out = Vec::new();
    let mut sink = (Headless::new(OutputFormat::None, &mut out), Some(flow_log));
    let result = drive(&mut m, source_rx, None, &mut sink, Duration::from_secs(1)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(feeder.await);
    result.expect("the loop");
    assert_eq!(start.elapsed(), Duration::from_millis(4_500));
    assert!(out.is_empty(), "--output none writes nothing");
    let hows = |p: &std::path::Path| -> Vec<(String, String)> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (s("client"), s("how"))
            })
            .collect()
    };
    let row = |c: &str, h: &str| (c.to_owned(), h.to_owned());
    assert_eq!(hows(&rotated), [row("198.18.0.1:40001", "reset")]);
    assert_eq!(hows(&log), [row("198.18.0.1:40000", "open_at_exit")]);
    let _ = std::fs::remove_dir_all(&dir);

    // No flow log: SIGHUP ends the loop.
    let (source_tx, source_rx) = mpsc::channel(16);
    let mut m = Monitor::new(
        ConnectionTable::new(TableConfig::default()),
        SourceLabel::Live("test".into()),
        SourceKind::Live,
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = tokio::spawn(signal_at(libc::SIGHUP, start, source_tx, done.clone()));
    let mut sink = Headless::new(OutputFormat::None, Vec::new());
    let result = drive(&mut m, source_rx, None, &mut sink, Duration::from_secs(1)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(feeder.await);
    result.expect("the loop");
}
