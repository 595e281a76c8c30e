//! A scraper of tcptrack's `--metrics` endpoint, as Prometheus would be: one plain HTTP GET of
//! `/metrics` a second, from a thread of its own inside the monitor's network namespace (on
//! its loopback, so that the monitor's interface does not see the scrapes).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};

/// Where the monitor serves its metrics, in its namespace.
pub const METRICS: &str = "127.0.0.1:9100";

/// How often it scrapes.
const EVERY: Duration = Duration::from_secs(1);

/// What the scrapes gave.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scraped {
    /// Whole answers (status 200, ending with `# EOF`).
    pub scrapes: u32,
    /// The size of the last answer's body.
    pub bytes: u64,
}

/// Scraping, until [`Scraper::stop`].
pub struct Scraper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Scraped>>,
}

impl Scraper {
    /// Starts scraping [`METRICS`] in network namespace `ns` (named by `ip netns`) every
    /// second, the first at once.
    pub fn start(ns: &str) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = spawn_in_netns(ns, move || {
            let mut got = Scraped::default();
            let mut next = Instant::now();
            while !stopping.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    got.bytes = scrape().context("scrape /metrics")?;
                    got.scrapes += 1;
                    next += EVERY;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(got)
        })?;
        Ok(Self { stop, thread })
    }

    /// Stops, and says what the scrapes gave.
    pub fn stop(self) -> Result<Scraped> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the scraper panicked"))?
    }
}

/// The connections listed, by one scrape of [`METRICS`] in network namespace `ns`: the sum of
/// the `tcptrack_connections` gauge over its states.
pub fn listed_in(ns: &str) -> Result<u32> {
    in_netns(ns, || listed(&get().context("scrape /metrics")?))
}

/// `f` run on a thread of its own in network namespace `ns` (named by `ip netns`): what it
/// gave.
///
/// # Errors
/// The namespace cannot be entered, or `f` fails.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    spawn_in_netns(ns, f)?
        .join()
        .map_err(|_| anyhow!("a thread in {ns} panicked"))?
}

/// `f` started on a thread of its own in network namespace `ns`.
///
/// # Errors
/// The namespace's file cannot be opened.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<JoinHandle<Result<T>>> {
    let path = format!("/var/run/netns/{ns}");
    let netns = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
    Ok(std::thread::spawn(move || {
        // SAFETY: setns(2) on a descriptor we own, for this thread alone (a network namespace
        // is per thread).
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        f()
    }))
}

/// The sum of the `tcptrack_connections{state=...}` lines of a scrape's `body`.
fn listed(body: &str) -> Result<u32> {
    let mut sum = 0u32;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("tcptrack_connections{state=") {
            let (_, n) = rest
                .rsplit_once(' ')
                .context("a gauge line without a value")?;
            sum += n
                .parse::<u32>()
                .with_context(|| format!("the value of {line}"))?;
        }
    }
    Ok(sum)
}

/// One GET of `/metrics`: the size of its body.
fn scrape() -> Result<u64> {
    Ok(u64::try_from(get()?.len())?)
}

/// One GET of `/metrics`: its body.
///
/// # Errors
/// No whole answer with status 200.
pub fn get() -> Result<String> {
    let mut s = TcpStream::connect(METRICS)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: tcptrack\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP answer: {text}");
    };
    if !head.starts_with("HTTP/1.1 200") || !body.ends_with("# EOF\n") {
        bail!("not a whole answer: {head}");
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_sums_the_connections_gauge_over_its_states() {
        let body = "# TYPE tcptrack_connections gauge\ntcptrack_connections{state=\"ESTABLISHED\"} 59998\ntcptrack_connections{state=\"SYN_SENT\"} 2\ntcptrack_connections_opened_total 60001\n# EOF\n";
        assert_eq!(listed(body).ok(), Some(60_000));
        assert!(listed("tcptrack_connections{state=\"CLOSED\"} x\n").is_err());
    }
}
