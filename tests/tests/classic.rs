//! Side by side with the classic tcptrack (Debian's `/usr/bin/tcptrack` 1.4.3) on one capture,
//! fed to both at the capture's pace: the same connections, the same states, the same speed
//! formatting, where the classic is right (SPEC.md says where ours deliberately differs).
//!
//! The classic exits at the end of a file it reads with `-T`, and times everything with the wall
//! clock, so it reads a FIFO that this test writes the capture into, packet by packet, at the
//! capture's timestamps, and holds open until the comparison is done. Ours plays the same file
//! with `--replay`, in a terminal of the same size.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tcptrack_tests::netns::wait_until;
use tcptrack_tests::tmux::Tmux;
use tcptrack_tests::{tcptrack_bin, Capture, CaptureSpec, Format, Link, Packet, Session, Side};

const CLASSIC: &str = "/usr/bin/tcptrack";
const WIDTH: u16 = 160;
const HEIGHT: u16 = 20;

/// The data connection's rate in its data phase: 20 packets of 1 KiB a second.
const RATE_KIB_WHOLE: u64 = 20;
const RATE_KIB: f64 = RATE_KIB_WHOLE as f64;

/// IPv4 connections of the capture, as (client, server, state) both tools must show.
const IPV4: [(&str, &str, &str); 5] = [
    ("198.18.0.1:40000", "198.18.0.2:80", "CLOSED"),
    ("198.18.0.1:40001", "198.18.0.2:8080", "RESET"),
    // Picked up mid-stream, first packet from the lower port: the lower port is the server.
    ("198.18.0.4:45000", "198.18.0.3:5432", "ESTABLISHED"),
    ("198.18.0.1:40003", "198.18.0.5:443", "ESTABLISHED"),
    ("198.18.0.1:40002", "198.18.0.2:22", "SYN_SENT"),
];
/// The data connection (ESTABLISHED, steady data in the capture's last two seconds).
const BUSY: (&str, &str) = ("198.18.0.1:40003", "198.18.0.5:443");

/// The capture, starting at `base` (a whole second): every connection by 0.4 s, the data
/// connection's data from 1 s to 3 s, the SYN at 3.1 s. Packets in time order.
fn packets(base: Duration) -> Vec<Packet> {
    let ms = |n: u64| base + Duration::from_millis(n);
    let mut closed = Session::new(IPV4[0].0, IPV4[0].1);
    closed
        .at(ms(0))
        .handshake()
        .data(Side::Client, 300)
        .data(Side::Server, 1200)
        .close(Side::Client);
    let mut reset = Session::new(IPV4[1].0, IPV4[1].1);
    reset
        .at(ms(100))
        .handshake()
        .data(Side::Client, 200)
        .rst(Side::Server);
    let mut v6 = Session::new("[fd00::1]:50000", "[fd00::2]:443");
    v6.at(ms(200))
        .handshake()
        .data(Side::Client, 100)
        .data(Side::Server, 700);
    let mut midstream = Session::new(IPV4[2].0, IPV4[2].1);
    midstream
        .at(ms(300))
        .data(Side::Server, 400)
        .data(Side::Client, 50)
        .data(Side::Server, 400);
    let mut busy = Session::new(BUSY.0, BUSY.1);
    busy.at(ms(400)).handshake().data(Side::Client, 120);
    busy.at(ms(1000)).step(Duration::from_millis(50));
    for _ in 0..2 * RATE_KIB_WHOLE {
        busy.data(Side::Server, 1024);
    }
    let mut opening = Session::new(IPV4[4].0, IPV4[4].1);
    opening.at(ms(3100)).syn();
    let mut all: Vec<Packet> = [&closed, &reset, &v6, &midstream, &busy, &opening]
        .iter()
        .flat_map(|s| s.packets(Link::Ethernet))
        .collect();
    all.sort_by_key(|p| p.ts);
    all
}

/// A FIFO in a temporary folder (both removed when the folder is dropped).
fn fifo(dir: &Path) -> PathBuf {
    let path = dir.join("capture.fifo");
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
    path
}

/// Opens the FIFO for writing once its reader (the classic) has opened it, within a deadline.
fn open_writer(path: &Path) -> File {
    let mut file = None;
    wait_until(
        "the classic tcptrack to open its FIFO",
        Duration::from_secs(20),
        || {
            // Non-blocking, a writer's open fails (ENXIO) while there is no reader.
            file = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .ok();
            file.is_some()
        },
    );
    let file = file.expect("opened");
    // Back to blocking writes.
    let fd = std::os::unix::io::AsRawFd::as_raw_fd(&file);
    // SAFETY: `fd` is an open descriptor owned by `file`.
    let ok = unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
    assert_eq!(ok, 0, "fcntl: {}", std::io::Error::last_os_error());
    file
}

/// Writes the capture into `out`: its header at once, then each packet's record when its
/// timestamp comes, counted from `start`. Returns `out`, still open.
fn feed(mut out: File, capture: &Capture, packets: &[Packet], start: Instant) -> File {
    let first = packets.first().expect("packets").ts;
    out.write_all(&capture.bytes[..capture.records[0].start])
        .expect("write the pcap header");
    for (p, r) in packets.iter().zip(&capture.records) {
        let due = start + (p.ts - first);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        out.write_all(&capture.bytes[r.clone()])
            .expect("write a packet");
        out.flush().expect("flush");
    }
    out
}

/// One connection row of a screen.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    client: SocketAddr,
    server: SocketAddr,
    state: String,
    idle: String,
    speed: String,
}

/// The connection rows of a screen: the lines after the header that start with a space, up to
/// the TOTAL row. A row is `client server state idle [*] N unit`; a row too long for the line
/// (the classic's uncompressed IPv6) has its server alone on the next line.
fn rows(screen: &str) -> Vec<Row> {
    let addr = |s: &str| s.parse::<SocketAddr>().ok();
    let mut out: Vec<Row> = Vec::new();
    let mut wrapped: Option<Row> = None;
    for line in screen.lines().skip(1) {
        if line.trim_start().starts_with("TOTAL") {
            break;
        }
        if !line.starts_with(' ') {
            continue;
        }
        let mut w: Vec<&str> = line.split_whitespace().collect();
        // The activity mark between Idle and Speed.
        if w.len() >= 5 && w[w.len() - 3] == "*" {
            w.remove(w.len() - 3);
        }
        let row = |client, server, state: &str, idle: &str, n, unit| Row {
            client,
            server,
            state: state.to_owned(),
            idle: idle.to_owned(),
            speed: format!("{n} {unit}"),
        };
        match w[..] {
            [client, server, state, idle, n, unit] => {
                if let (Some(c), Some(s)) = (addr(client), addr(server)) {
                    out.push(row(c, s, state, idle, n, unit));
                }
            }
            [client, state, idle, n, unit] => {
                if let Some(c) = addr(client) {
                    // The server is on the next line; the placeholder is replaced there.
                    wrapped = Some(row(c, c, state, idle, n, unit));
                }
            }
            [server] => {
                if let (Some(mut r), Some(s)) = (wrapped.take(), addr(server)) {
                    r.server = s;
                    out.push(r);
                }
            }
            _ => {}
        }
    }
    out
}

fn endpoints(client: &str, server: &str) -> (SocketAddr, SocketAddr) {
    (
        client.parse().expect("client address"),
        server.parse().expect("server address"),
    )
}

fn row(rows: &[Row], (client, server): (SocketAddr, SocketAddr)) -> Option<&Row> {
    rows.iter()
        .find(|r| r.client == client && r.server == server)
}

/// `N B/s`, `N KB/s` or `N MB/s`: (N, unit). The classic writes whole units (`20 KB/s`), ours
/// three significant digits (`20.0 KB/s`): `^\d+(\.\d+)? (B|KB|MB)/s$`.
fn speed(s: &str) -> Option<(f64, &str)> {
    let (n, unit) = s.split_once(' ')?;
    let (whole, frac) = n.split_once('.').unwrap_or((n, "0"));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let known = ["B/s", "KB/s", "MB/s"].contains(&unit);
    (digits(whole) && digits(frac) && known).then(|| (n.parse().expect("a number"), unit))
}

/// `Ns`, `Nm` or `Nh`.
fn idle_ok(s: &str) -> bool {
    s.len() >= 2
        && s[..s.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && ["s", "m", "h"].contains(&&s[s.len() - 1..])
}

/// The KB/s value of the data connection on `screen`, if it shows one.
fn busy_kbs(screen: &str) -> Option<f64> {
    let rows = rows(screen);
    let r = row(&rows, endpoints(BUSY.0, BUSY.1))?;
    match speed(&r.speed)? {
        (n, "KB/s") => Some(n),
        _ => None,
    }
}

/// What both screens must have, each on its own: the header's columns in order, rows whose Idle
/// and Speed are formatted as the classic formats them, a TOTAL row with a speed, and the status
/// `Connections 1-N of N`.
#[track_caller]
fn assert_layout(who: &str, screen: &str, n: usize) {
    let header = screen.lines().next().unwrap_or_default();
    let mut at = 0;
    for col in ["Client", "Server", "State", "Idle", "Speed"] {
        let i = header[at..].find(col).unwrap_or_else(|| {
            panic!("{who}: no `{col}` after column {at} in the header:\n{screen}")
        });
        at += i + col.len();
    }
    for r in rows(screen) {
        assert!(
            speed(&r.speed).is_some(),
            "{who}: speed of {r:?}:\n{screen}"
        );
        assert!(idle_ok(&r.idle), "{who}: idle of {r:?}:\n{screen}");
    }
    let total = screen
        .lines()
        .find(|l| l.trim_start().starts_with("TOTAL"))
        .unwrap_or_else(|| panic!("{who}: no TOTAL row:\n{screen}"));
    let w: Vec<&str> = total.split_whitespace().collect();
    assert!(
        w.len() == 3 && speed(&w[1..].join(" ")).is_some(),
        "{who}: TOTAL row `{total}`:\n{screen}"
    );
    assert!(
        screen.contains(&format!("Connections 1-{n} of {n}")),
        "{who}: no `Connections 1-{n} of {n}`:\n{screen}"
    );
}

/// The screens of both tools, sampled together.
struct Sample {
    at: Duration,
    classic: String,
    ours: String,
}

/// Both screens, sampled until the capture is all written, ours marks the end of the capture,
/// and the classic lists every connection of `expected`.
fn sample(
    classic: &Tmux,
    ours: &Tmux,
    feeder: &std::thread::JoinHandle<std::fs::File>,
    start: Instant,
    expected: &[(SocketAddr, SocketAddr)],
) -> Vec<Sample> {
    let pairs = |screen: &str| {
        let mut p: Vec<_> = rows(screen).iter().map(|r| (r.client, r.server)).collect();
        p.sort();
        p
    };
    let mut samples: Vec<Sample> = Vec::new();
    let sampled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            "the capture fed, ours at its end, the classic showing every connection",
            Duration::from_secs(30),
            || {
                let done = feeder.is_finished();
                let s = Sample {
                    at: start.elapsed(),
                    classic: classic.screen(),
                    ours: ours.screen(),
                };
                let end =
                    done && s.ours.contains("end of capture") && pairs(&s.classic) == expected;
                samples.push(s);
                end
            },
        );
    }));
    let last = samples.last().expect("a sample");
    assert!(
        sampled.is_ok(),
        "after {:?}; the classic:\n{}\nours:\n{}",
        last.at,
        last.classic,
        last.ours
    );
    samples
}

#[test]
fn same_capture_same_connections_states_and_speeds_as_the_classic() {
    assert!(
        Path::new(CLASSIC).is_file(),
        "{CLASSIC} not found: `apt-get install -y tcptrack` (Debian's classic tcptrack)"
    );
    // Timestamps near the wall clock, which the classic times everything with.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let base = Duration::from_secs(now.as_secs() + 1);
    let packets = packets(base);
    let capture = CaptureSpec::new(Format::Pcap, Link::Ethernet.linktype()).write(&packets);
    let file = capture.file();
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = fifo(dir.path());

    // -r 600: the classic removes CLOSED and RESET rows -r seconds of wall time after their last
    // packet; the comparison must see them.
    let classic = Tmux::start(
        &format!("{CLASSIC} -r 600 -T {}", fifo.display()),
        WIDTH,
        HEIGHT,
    );
    let writer = open_writer(&fifo);
    let ours = Tmux::start(
        &format!(
            "{} -r 600 -T {} --replay",
            tcptrack_bin().display(),
            file.path().display()
        ),
        WIDTH,
        HEIGHT,
    );
    let start = Instant::now();
    let feeder = {
        let capture = capture.clone();
        let packets = packets.clone();
        std::thread::spawn(move || feed(writer, &capture, &packets, start))
    };

    let mut expected: Vec<(SocketAddr, SocketAddr)> =
        IPV4.iter().map(|&(c, s, _)| endpoints(c, s)).collect();
    let v6 = endpoints("[fd00::1]:50000", "[fd00::2]:443");
    expected.push(v6);
    expected.sort();
    let samples = sample(&classic, &ours, &feeder, start, &expected);
    let last = samples.last().expect("a sample");
    let _writer = feeder.join().expect("feeder thread");
    let (c, o) = (&last.classic, &last.ours);
    let pairs = |screen: &str| {
        let mut p: Vec<_> = rows(screen).iter().map(|r| (r.client, r.server)).collect();
        p.sort();
        p
    };
    let shown = format!("the classic:\n{c}\nours:\n{o}");

    // The same connections, IPv6 included (the classic prints it uncompressed and wraps it).
    assert_eq!(pairs(o), expected, "{shown}");
    assert_layout("the classic", c, expected.len());
    assert_layout("ours", o, expected.len());

    // The same states for IPv4: the ones the capture leads to (the classic's IPv6 never
    // leaves CLOSING once closed; this one stays open, but its state is not compared).
    let (c_rows, o_rows) = (rows(c), rows(o));
    for &(client, server, state) in &IPV4 {
        let key = endpoints(client, server);
        let cr = row(&c_rows, key).expect("the classic's row");
        let or = row(&o_rows, key).expect("our row");
        assert_eq!(
            (cr.state.as_str(), or.state.as_str()),
            (state, state),
            "{client} -> {server}: (classic, ours)\n{shown}"
        );
    }

    // The data connection's speed while data flowed: KB/s on both, within a factor of 2 of
    // the rate generated. The classic measures over wall-clock seconds, so its peak is taken;
    // ours on screen at the end is the capture's last completed second, exactly the rate.
    let peak = |kbs: Vec<f64>| kbs.into_iter().max_by(f64::total_cmp);
    let classic_peak = peak(
        samples
            .iter()
            .filter_map(|s| busy_kbs(&s.classic))
            .collect(),
    );
    let ours_peak = peak(samples.iter().filter_map(|s| busy_kbs(&s.ours)).collect());
    for (who, p) in [("the classic", classic_peak), ("ours", ours_peak)] {
        let p = p.unwrap_or_else(|| panic!("{who} never showed KB/s for the data connection"));
        assert!(
            (RATE_KIB / 2.0..=RATE_KIB * 2.0).contains(&p),
            "{who}: peak {p} KB/s for {RATE_KIB} KiB/s generated"
        );
    }
    let busy = row(&o_rows, endpoints(BUSY.0, BUSY.1)).expect("our data connection");
    assert_eq!(busy.speed, format!("{RATE_KIB:.1} KB/s"), "{shown}");
}
