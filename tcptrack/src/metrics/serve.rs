//! The HTTP endpoint: `GET /metrics` answers with the registry in the OpenMetrics text format;
//! anything else is a 404. HTTP/1.1 (hyper) on the monitor's own runtime.
//!
//! Nobody can keep a scraper out by holding connections: every connection is accepted, at most
//! [`Limits::open`] stay open, and one past that closes the oldest that has not sent a request
//! (or, when all have, the oldest). A request's head must come whole within
//! [`Limits::head_timeout`] and fit in [`Limits::head_bytes`] (larger: 431, and the connection
//! closes), so a connection costs a bounded buffer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::task::AbortHandle;

use super::web::Web;
use crate::error::Error;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What one connection, and all of them, may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub open: usize,
    /// How long a request's head may take to come whole (from the connection's start, or from
    /// the last answer on a kept-alive one).
    pub head_timeout: Duration,
    /// The largest request head read; hyper's smallest buffer is 8 KiB.
    pub head_bytes: usize,
}

impl Limits {
    /// The endpoint's limits (README, "Many hosts"): a scrape's head is a few hundred bytes and
    /// comes at once.
    pub const DEFAULT: Self = Self {
        open: 64,
        head_timeout: Duration::from_secs(5),
        head_bytes: 16 * 1024,
    };
}

/// Listens on `addr`, before anything else starts, so that a taken address fails at once.
///
/// # Errors
/// The address cannot be bound (taken, not local, no privilege).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    let fail = |source| Error::Metrics { addr, source };
    let l = std::net::TcpListener::bind(addr).map_err(fail)?;
    l.set_nonblocking(true).map_err(fail)?;
    Ok(l)
}

/// Answers scrapes on `listener` with `registry` within [`Limits::DEFAULT`], until the runtime
/// goes. Must be spawned on a tokio runtime.
///
/// # Errors
/// The listener cannot be handed to the runtime.
pub fn serve(
    listener: std::net::TcpListener,
    registry: Registry,
    web: Web,
) -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    serve_within(listener, registry, Limits::DEFAULT, web)
}

/// A connection being served: whether it has sent a request yet, and its task.
struct Open {
    asked: Arc<AtomicBool>,
    task: AbortHandle,
}

/// [`serve`] within `limits`.
///
/// # Errors
/// The listener cannot be handed to the runtime.
pub fn serve_within(
    listener: std::net::TcpListener,
    registry: Registry,
    limits: Limits,
    web: Web,
) -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let registry = Arc::new(registry);
    let web = Arc::new(web);
    Ok(async move {
        let mut open: VecDeque<Open> = VecDeque::with_capacity(limits.open);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: try again a little later.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            open.retain(|c| !c.task.is_finished());
            if open.len() >= limits.open {
                let quiet = open.iter().position(|c| !c.asked.load(Ordering::Relaxed));
                if let Some(c) = open.remove(quiet.unwrap_or(0)) {
                    c.task.abort();
                }
            }
            let asked = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(connection(
                stream,
                Arc::clone(&registry),
                Arc::clone(&asked),
                limits,
                Arc::clone(&web),
            ));
            open.push_back(Open {
                asked,
                task: task.abort_handle(),
            });
        }
    })
}

/// Serves one connection until it closes, times out or is aborted; `asked` once a request's
/// head has come. Over TLS when `web` says, the handshake within the head's time.
async fn connection(
    stream: tokio::net::TcpStream,
    registry: Arc<Registry>,
    asked: Arc<AtomicBool>,
    limits: Limits,
    web: Arc<Web>,
) {
    let Some(tls) = web.tls.clone() else {
        return http(TokioIo::new(stream), registry, asked, limits, web).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    // A handshake that fails or does not end in time is no error of ours either.
    if let Ok(Ok(stream)) = tokio::time::timeout(limits.head_timeout, acceptor.accept(stream)).await
    {
        http(TokioIo::new(stream), registry, asked, limits, web).await;
    }
}

/// HTTP/1.1 on `io` until it closes or times out.
async fn http<I>(
    io: I,
    registry: Arc<Registry>,
    asked: Arc<AtomicBool>,
    limits: Limits,
    web: Arc<Web>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        asked.store(true, Ordering::Relaxed);
        let registry = Arc::clone(&registry);
        let web = Arc::clone(&web);
        async move {
            let allowed = match &web.users {
                None => true,
                Some(users) => {
                    let auth = req.headers().get(AUTHORIZATION).cloned();
                    Arc::clone(users).allow(auth).await
                }
            };
            let mut r = if allowed {
                answer(&req, &registry)
            } else {
                unauthorized()
            };
            for (k, v) in &web.headers {
                r.headers_mut().insert(k.clone(), v.clone());
            }
            Ok::<_, Infallible>(r)
        }
    });
    // A scraper that goes away mid-answer, or a head too slow or too large, is no error of
    // ours.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.head_bytes)
        .serve_connection(io, service)
        .await;
}

/// 401, asking for a user and password.
fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"Unauthorized\n")));
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"tcptrack\""),
    );
    r
}

/// The answer to one request.
fn answer(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let plain = |status, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "tcptrack serves /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        );
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    r
}
