//! `--web-config FILE`: the web configuration file of the Prometheus exporters
//! (exporter-toolkit's, which node_exporter's `--web.config.file` reads): TLS
//! (`tls_server_config`), basic authentication with bcrypt hashes (`basic_auth_users`) and extra
//! response headers (`http_server_config.headers`). Read and checked once, at start: a bad
//! file is a usage error. Relative paths in it are relative to its folder, as exporter-toolkit
//! takes them.
//!
//! What tcptrack does not do is refused by name, never ignored: `cipher_suites`,
//! `curve_preferences` and `client_allowed_sans` (rustls chooses its suites and curves),
//! `RequestClientCert` and `RequireAnyClientCert` (a client certificate is verified against
//! `client_ca_file` or not asked for). `http2` is accepted and the endpoint stays HTTP/1.1.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// The file, as exporter-toolkit lays it out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
    cipher_suites: Option<serde::de::IgnoredAny>,
    curve_preferences: Option<serde::de::IgnoredAny>,
    client_allowed_sans: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// Accepted; the endpoint stays HTTP/1.1.
    #[serde(rename = "http2")]
    _http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The endpoint's web configuration, checked.
#[derive(Clone, Default)]
pub struct Web {
    /// Serve TLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Ask for a user and password (`None`: anyone may scrape).
    pub users: Option<Arc<Users>>,
    /// Headers added to every answer.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.as_ref().map(|u| u.hashes.len()))
            .field("headers", &self.headers)
            .finish()
    }
}

impl Web {
    /// Reads and checks the file at `path`.
    ///
    /// # Errors
    /// Why it cannot be used, in one line (the caller names the file).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let file: File = serde_yaml_ng::from_str(&text).map_err(|e| one_line(&e.to_string()))?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let tls = file
            .tls_server_config
            .map(|t| tls(&t, dir).map(Arc::new))
            .transpose()?;
        let users = file
            .basic_auth_users
            .map(|u| Users::new(u).map(Arc::new))
            .transpose()?;
        let headers = file
            .http_server_config
            .and_then(|h| h.headers)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let name = HeaderName::try_from(k.as_str())
                    .map_err(|_| format!("http_server_config: bad header name {k:?}"))?;
                let value = HeaderValue::try_from(v.as_str())
                    .map_err(|_| format!("http_server_config: bad value for header {k}"))?;
                Ok((name, value))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            tls,
            users,
            headers,
        })
    }
}

/// serde_yaml's message on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A TLS version as exporter-toolkit names it.
fn version(name: &str) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match name {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!("{name} is not supported (TLS12 and TLS13 are)")),
        _ => Err(format!("unknown TLS version {name:?} (TLS12 or TLS13)")),
    }
}

/// The server's TLS configuration from `t`, its paths relative to `dir`.
fn tls(t: &TlsFile, dir: &Path) -> Result<rustls::ServerConfig, String> {
    for (set, name) in [
        (t.cipher_suites.is_some(), "cipher_suites"),
        (t.curve_preferences.is_some(), "curve_preferences"),
        (t.client_allowed_sans.is_some(), "client_allowed_sans"),
    ] {
        if set {
            return Err(format!(
                "tls_server_config: {name} is not supported (rustls chooses)"
            ));
        }
    }
    let path = |p: &Option<PathBuf>, what: &str| {
        p.as_ref()
            .map(|p| dir.join(p))
            .ok_or_else(|| format!("tls_server_config: {what} is missing"))
    };
    let (cert_file, key_file) = (
        path(&t.cert_file, "cert_file")?,
        path(&t.key_file, "key_file")?,
    );
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(Iterator::collect)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    let min = version(t.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = version(t.max_version.as_deref().unwrap_or("TLS13"))?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| {
                let n = u16::from(v.version);
                (u16::from(min.version)..=u16::from(max.version)).contains(&n)
            })
            .collect();
    if versions.is_empty() {
        return Err("tls_server_config: min_version is above max_version".to_owned());
    }
    #[expect(
        deprecated,
        reason = "ring has no post-quantum key exchange; aws-lc-rs, which has, needs a C build \
                  the fuzz targets' sanitizers would have to take too"
    )]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;
    let builder = match client_verifier(t, dir, &provider)? {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} and {}: {e}", cert_file.display(), key_file.display()))?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What verifies client certificates, as `client_auth_type` says (`None`: none asked for).
fn client_verifier(
    t: &TlsFile,
    dir: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, String> {
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    match auth {
        "NoClientCert" => return Ok(None),
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {}
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(format!(
                "tls_server_config: client_auth_type {auth} is not supported \
                 (VerifyClientCertIfGiven and RequireAndVerifyClientCert are)"
            ))
        }
        other => {
            return Err(format!(
                "tls_server_config: unknown client_auth_type {other:?}"
            ))
        }
    }
    let ca = t
        .client_ca_file
        .as_ref()
        .map(|p| dir.join(p))
        .ok_or_else(|| format!("tls_server_config: client_ca_file is missing (for {auth})"))?;
    let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", ca.display());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca).map_err(|e| bad(&e))? {
        roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(provider),
    );
    let v = if auth == "VerifyClientCertIfGiven" {
        v.allow_unauthenticated()
    } else {
        v
    };
    v.build().map(Some).map_err(|e| bad(&e))
}

/// The users who may scrape, with their bcrypt hashes, and the passwords that passed (a bcrypt
/// check takes tens of milliseconds on purpose: a scraper asks every few seconds).
pub struct Users {
    hashes: HashMap<String, String>,
    /// By user: the SHA-256 of user and password of the last check that passed. Only passes
    /// are kept, one a user: wrong passwords cannot push a scraper's out.
    passed: Mutex<HashMap<String, [u8; 32]>>,
    /// One bcrypt check at a time, its permit held by the check itself (a request that goes
    /// away does not let another start beside it).
    one: Arc<tokio::sync::Semaphore>,
    /// A hash of the users' highest cost, checked for a user that does not exist: an unknown
    /// user takes as long as a known one with a wrong password.
    unknown: String,
}

impl Users {
    fn new(users: BTreeMap<String, String>) -> Result<Self, String> {
        let mut cost = bcrypt::DEFAULT_COST;
        for (user, hash) in &users {
            let parts = hash
                .parse::<bcrypt::HashParts>()
                .map_err(|_| format!("basic_auth_users: the hash of {user} is not bcrypt"))?;
            cost = cost.max(parts.get_cost());
        }
        let unknown = bcrypt::hash("no such user", cost).map_err(|e| e.to_string())?;
        Ok(Self {
            hashes: users.into_iter().collect(),
            passed: Mutex::new(HashMap::new()),
            one: Arc::new(tokio::sync::Semaphore::new(1)),
            unknown,
        })
    }

    /// Whether `authorization` (the header's value) names a user with the right password. A
    /// pair not seen to pass before is checked on a blocking thread, one at a time.
    pub async fn allow(self: Arc<Self>, authorization: Option<HeaderValue>) -> bool {
        let Some((user, password)) = authorization.as_ref().and_then(basic) else {
            return false;
        };
        let key = digest(&user, &password);
        if self.lock().get(&user) == Some(&key) {
            return true;
        }
        let Ok(permit) = Arc::clone(&self.one).acquire_owned().await else {
            return false;
        };
        let me = Arc::clone(&self);
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let known = me.hashes.get(&user);
            let ok = bcrypt::verify(&password, known.unwrap_or(&me.unknown)).unwrap_or(false)
                && known.is_some();
            if ok {
                me.lock().insert(user, key);
            }
            ok
        })
        .await
        .unwrap_or(false);
        ok
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, [u8; 32]>> {
        self.passed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The user and password of a `Basic` authorization.
fn basic(value: &HeaderValue) -> Option<(String, String)> {
    let b64 = value.to_str().ok()?.strip_prefix("Basic ")?.trim();
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// SHA-256 of `user`, a NUL and `password`.
fn digest(user: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(user.as_bytes());
    ctx.update(&[0]);
    ctx.update(password.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Web, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("web.yml");
        std::fs::write(&p, text).expect("write");
        Web::load(&p)
    }

    #[test]
    fn what_is_not_done_is_refused_by_name() {
        let e = |t: &str| load(t).expect_err(t);
        assert!(e("nonsense: 1\n").contains("unknown field `nonsense`"));
        assert_eq!(
            e("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
            "tls_server_config: cipher_suites is not supported (rustls chooses)"
        );
        assert_eq!(
            e("tls_server_config:\n  key_file: k.pem\n"),
            "tls_server_config: cert_file is missing"
        );
        assert_eq!(
            e("basic_auth_users:\n  alice: secret\n"),
            "basic_auth_users: the hash of alice is not bcrypt"
        );
        assert_eq!(
            e("http_server_config:\n  headers:\n    'bad name': x\n"),
            "http_server_config: bad header name \"bad name\""
        );
        // An empty file asks for nothing.
        let w = load("").expect("empty");
        assert!(w.tls.is_none() && w.users.is_none() && w.headers.is_empty());
    }

    /// `htpasswd -nbB -C 10 alice secret`.
    const ALICE: &str = "$2y$10$ilYCNDPcp9ikYtBdTmA1a.B2xzf05x5tgjfi2CVWIgt1t8Ob6fRUe";

    #[tokio::test]
    async fn a_password_is_checked_against_its_bcrypt_hash() {
        let w = load(&format!(
            "basic_auth_users:\n  alice: '{ALICE}'\nhttp_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n"
        ))
        .expect("valid");
        let users = w.users.expect("users");
        let header = |user: &str, pass: &str| {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            Some(HeaderValue::try_from(format!("Basic {b}")).expect("header"))
        };
        assert!(Arc::clone(&users).allow(header("alice", "secret")).await);
        // Again, from what was kept.
        assert!(Arc::clone(&users).allow(header("alice", "secret")).await);
        assert!(!Arc::clone(&users).allow(header("alice", "wrong")).await);
        // An unknown user, with the password of the hash it is compared against.
        assert!(
            !Arc::clone(&users)
                .allow(header("bob", "no such user"))
                .await
        );
        assert!(!Arc::clone(&users).allow(header("bob", "secret")).await);
        // Still passes after the wrong ones.
        assert!(Arc::clone(&users).allow(header("alice", "secret")).await);
        assert!(!Arc::clone(&users).allow(None).await);
        assert!(
            !Arc::clone(&users)
                .allow(Some(HeaderValue::from_static("Bearer x")))
                .await
        );
        assert_eq!(w.headers.len(), 1);
    }
}
