//! The metrics endpoint behind TLS and a password (`--web-config`, in the exporter-toolkit
//! format): Debian's Prometheus scrapes it over TLS with a password; a wrong password gets 401;
//! plain HTTP to the TLS port fails; client certificates are verified when asked for; a bad file
//! is a usage error in one line. Certificates are made on the spot (openssl), the hash by
//! `htpasswd -B` (apache2-utils).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tcptrack_tests::netns::{wait_until, Background, HostPair, B4};
use tcptrack_tests::prometheus::Prometheus;
use tcptrack_tests::tcptrack_bin;

/// Fetches a URL over HTTPS (or HTTP) and prints the status (`failed NAME` when there is
/// none), then the body. Arguments: URL, CA file, user and password (`-`: none), client
/// certificate and key (`-`: none).
const FETCH: &str = r"
import sys, ssl, base64, urllib.request, urllib.error
url, ca, user, pw, cert, key = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
if cert != '-':
    ctx.load_cert_chain(cert, key)
req = urllib.request.Request(url)
if user != '-':
    req.add_header('Authorization', 'Basic ' + base64.b64encode(f'{user}:{pw}'.encode()).decode())
try:
    with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
        print(r.status)
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
    print(e.headers.get('WWW-Authenticate'))
except Exception as e:
    print('failed', type(e).__name__)
";

/// Where tcptrack serves its metrics, in host a.
const ADDR: &str = "127.0.0.1:9466";

/// The password of user alice.
const PASSWORD: &str = "correct horse";

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate it signed, in the
/// current folder (`ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key`).
const CERTIFICATES: &str = r#"set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=tcptrack test CA"
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
for n in server client; do
    openssl req $ec -keyout $n.key -out $n.csr -subj "/CN=$n"
    openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $n.pem \
        -days 2 -extfile $n.ext
done
"#;

/// [`CERTIFICATES`] in `dir`.
fn certificates(dir: &Path) {
    let out = Command::new("sh")
        .args(["-c", CERTIFICATES])
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "openssl (Debian's package): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// alice's bcrypt hash, as `htpasswd -B` makes it.
fn hash() -> String {
    let out = Command::new("htpasswd")
        .args(["-nbB", "-C", "10", "alice", PASSWORD])
        .output()
        .expect("htpasswd (apache2-utils)");
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    line.strip_prefix("alice:").expect("user:hash").to_owned()
}

/// A folder anyone can read, with the certificates and `web.yml` holding `config` (paths in it
/// relative to the folder, as exporter-toolkit takes them).
fn web_folder(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path());
    let web = dir.path().join("web.yml");
    std::fs::write(&web, config).expect("web.yml");
    (dir, web)
}

/// tcptrack on host a's interface (libpcap), serving metrics at [`ADDR`] as `web` says.
fn tcptrack(hosts: &HostPair, web: &Path) -> Background {
    let mut c = HostPair::cmd(&hosts.a, &tcptrack_bin().display().to_string());
    c.args([
        "--libpcap",
        "-i",
        &hosts.a_if,
        "--output",
        "none",
        "--metrics",
        ADDR,
    ])
    .arg("--web-config")
    .arg(web)
    .stderr(std::process::Stdio::null());
    let t = Background::spawn(c);
    wait_until("tcptrack to listen", Duration::from_secs(20), || {
        HostPair::listening(&hosts.a, 9466)
    });
    t
}

/// [`FETCH`] from host a: the status line, then the body.
fn fetch(hosts: &HostPair, url: &str, dir: &Path, user: Option<&str>, client: bool) -> String {
    let (user, pw) = user.map_or(("-", "-"), |p| ("alice", p));
    let (cert, key) = if client {
        (dir.join("client.pem"), dir.join("client.key"))
    } else {
        (PathBuf::from("-"), PathBuf::from("-"))
    };
    let out = HostPair::cmd(&hosts.a, "python3")
        .args(["-c", FETCH, url])
        .arg(dir.join("ca.pem"))
        .args([user, pw])
        .arg(cert)
        .arg(key)
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn prometheus_scrapes_over_tls_with_a_password() {
    let hosts = HostPair::new();
    let (dir, web) = web_folder(&format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS12\n\
         basic_auth_users:\n  alice: '{}'\n",
        hash()
    ));
    let _tcptrack = tcptrack(&hosts, &web);
    let url = format!("https://{ADDR}/metrics");
    let ok = fetch(&hosts, &url, dir.path(), Some(PASSWORD), false);
    assert!(ok.starts_with("200\n"), "{ok}");
    assert!(ok.contains("tcptrack_connections_opened_total 0"), "{ok}");
    for (user, what) in [(Some("wrong"), "a wrong password"), (None, "no password")] {
        let refused = fetch(&hosts, &url, dir.path(), user, false);
        assert_eq!(refused, "401\nBasic realm=\"tcptrack\"\n", "{what}");
    }
    let plain = fetch(
        &hosts,
        &format!("http://{ADDR}/metrics"),
        dir.path(),
        Some(PASSWORD),
        false,
    );
    assert!(
        plain.starts_with("failed "),
        "plain HTTP to the TLS port: {plain}"
    );
    // Prometheus, with the password and with a wrong one.
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n\
             \x20   basic_auth:\n      username: alice\n      password: '{password}'\n\
             \x20   static_configs:\n      - targets: ['{ADDR}']\n",
            dir.path().join("ca.pem").display()
        )
    };
    let prometheus = Prometheus::start_jobs(
        &hosts.a,
        &(job("tcptrack", PASSWORD) + &job("wrong", "not it")),
    );
    assert_eq!(
        hosts.transfer(B4, 5970, 1_000, 2_000, false),
        (2_000, 1_000)
    );
    wait_until(
        "Prometheus to scrape the connection",
        Duration::from_secs(30),
        || prometheus.value("tcptrack_connections_opened_total{job=\"tcptrack\"}") == Some(1.0),
    );
    wait_until(
        "the wrong password's scrapes to be counted",
        Duration::from_secs(30),
        || prometheus.value("up{job=\"wrong\"}") == Some(0.0),
    );
    assert_eq!(
        prometheus.value("up{job=\"tcptrack\"}"),
        Some(1.0),
        "{}",
        prometheus.log()
    );
}

#[test]
fn client_certificates_are_verified_when_asked_for() {
    let hosts = HostPair::new();
    let (dir, web) = web_folder(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
         \x20 client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    );
    let _tcptrack = tcptrack(&hosts, &web);
    let url = format!("https://{ADDR}/metrics");
    let with = fetch(&hosts, &url, dir.path(), None, true);
    assert!(with.starts_with("200\n"), "{with}");
    let without = fetch(&hosts, &url, dir.path(), None, false);
    assert!(
        without.starts_with("failed "),
        "no client certificate: {without}"
    );
}

#[test]
fn a_bad_web_config_is_a_usage_error_in_one_line() {
    let (dir, _) = web_folder("");
    let cases = [
        ("nonsense: 1\n", "unknown field `nonsense`"),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: missing.key\n",
            "missing.key: ",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: client.key\n",
            "server.pem and ",
        ),
        ("basic_auth_users:\n  alice: plain\n", "the hash of alice is not bcrypt"),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS11\n",
            "TLS11 is not supported",
        ),
    ];
    let web = dir.path().join("bad.yml");
    for (config, why) in cases {
        std::fs::write(&web, config).expect("bad.yml");
        let out = Command::new(tcptrack_bin())
            .args([
                "-i",
                "lo",
                "--output",
                "none",
                "--metrics",
                "127.0.0.1:0",
                "--web-config",
            ])
            .arg(&web)
            .output()
            .expect("run tcptrack");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}: {err}");
        let prefix = format!("tcptrack: --web-config {}: ", web.display());
        assert!(
            err.starts_with(&prefix) && err.contains(why),
            "{config}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{config}: {err}");
    }
}
