//! A real Prometheus server (Debian's `prometheus`) in a test host's namespace, scraping
//! tcptrack there every second, and HTTP GETs made from inside a namespace. The server and its
//! storage go when dropped, also when a test fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::netns::{wait_until, Background, HostPair};

/// Prints the body of the URL it is given (exit 1, and the reason on stderr, when it cannot).
const GET: &str = r"
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    sys.stderr.write(str(e))
    sys.exit(1)
";

/// The body of `url`, fetched from inside namespace `ns`; `None` when there is no answer.
#[must_use]
pub fn http_get(ns: &str, url: &str) -> Option<String> {
    let out = HostPair::cmd(ns, "python3")
        .args(["-c", GET, url])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of the sample `name` (without labels) in the text of a scrape, read as a `T` (a
/// counter as `u64`, exactly); `None` when the scrape has no such sample.
#[must_use]
pub fn sample<T: std::str::FromStr>(text: &str, name: &str) -> Option<T> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// Where Prometheus listens in its namespace.
const LISTEN: &str = "127.0.0.1:9090";

/// A Prometheus server in a namespace, its configuration and storage in a directory of its own.
pub struct Prometheus {
    ns: String,
    /// Killed (and reaped) when dropped, before its directory goes (fields drop in order).
    #[expect(
        dead_code,
        reason = "held for its Drop: the server lives as long as this"
    )]
    server: Background,
    dir: tempfile::TempDir,
}

/// One series of an instant vector: its labels and its value.
pub type Sample = (BTreeMap<String, String>, f64);

impl Prometheus {
    /// Starts Prometheus in `ns`, scraping `target` (`ADDR:PORT`, `/metrics`) every second, and
    /// waits until it is ready.
    ///
    /// # Panics
    /// Prometheus is not installed or not ready within 60 s.
    #[must_use]
    pub fn start(ns: &str, target: &str) -> Self {
        Self::start_jobs(
            ns,
            &format!(
                "  - job_name: tcptrack\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
    }

    /// Starts Prometheus in `ns` with `jobs` (the `scrape_configs` list, in YAML), scraping
    /// every second, and waits until it is ready.
    ///
    /// # Panics
    /// Prometheus is not installed or not ready within 60 s.
    #[must_use]
    pub fn start_jobs(ns: &str, jobs: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n{jobs}"
            ),
        )
        .expect("write the configuration");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let mut cmd = HostPair::cmd(ns, "prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={LISTEN}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut server = Background(cmd.spawn().expect("start prometheus (Debian's package)"));
        let log = dir.path().join("prometheus.log");
        wait_until("Prometheus to be ready", Duration::from_secs(60), || {
            let exited = server.0.try_wait().ok().flatten();
            assert!(
                exited.is_none(),
                "prometheus exited ({exited:?}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            http_get(ns, &format!("http://{LISTEN}/-/ready")).is_some()
        });
        Self {
            ns: ns.to_owned(),
            server,
            dir,
        }
    }

    /// What Prometheus logged (warnings and errors).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The instant vector `expr` evaluates to now, through the HTTP API; `None` when Prometheus
    /// does not answer or the query fails.
    #[must_use]
    pub fn query(&self, expr: &str) -> Option<Vec<Sample>> {
        let url = format!("http://{LISTEN}/api/v1/query?query={}", encode(expr));
        let body = http_get(&self.ns, &url)?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v.get("data")?.get("result")?.as_array()?;
        result
            .iter()
            .map(|s| {
                let labels = s
                    .get("metric")?
                    .as_object()?
                    .iter()
                    .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect::<Option<BTreeMap<_, _>>>()?;
                let value = s.get("value")?.get(1)?.as_str()?.parse().ok()?;
                Some((labels, value))
            })
            .collect()
    }

    /// The value of `expr` when it is one series.
    #[must_use]
    pub fn value(&self, expr: &str) -> Option<f64> {
        match self.query(expr)?.as_slice() {
            [(_, v)] => Some(*v),
            _ => None,
        }
    }

    /// Its directory (configuration, storage, log).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `s` percent-encoded for a URL's query.
fn encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
