//! The HTTP endpoint: `GET /metrics` answers with the registry in the OpenMetrics text format;
//! anything else is a 404. HTTP/1.1 (hyper) on the monitor's own runtime, a few scrapers at a
//! time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

use crate::error::Error;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Scrapers served at once; more wait for their turn.
const AT_ONCE: usize = 8;

/// How long a scraper may take to send its request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Answers scrapes on `listener` with `registry`, until the runtime goes. Must be spawned on a
/// tokio runtime.
///
/// # Errors
/// The listener cannot be handed to the runtime.
pub fn serve(
    listener: std::net::TcpListener,
    registry: Registry,
) -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let registry = Arc::new(registry);
    let slots = Arc::new(Semaphore::new(AT_ONCE));
    Ok(async move {
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: try again a little later.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let registry = Arc::clone(&registry);
                    async move { Ok::<_, Infallible>(answer(&req, &registry)) }
                });
                // A scraper that goes away mid-answer is no error of ours.
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(slot);
            });
        }
    })
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
