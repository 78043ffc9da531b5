//! Helpers shared by the HTTP tests: requests from a client address through
//! a `Router`, response headers as text, and a `tracing` subscriber that
//! captures what the layer logs.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http::{Request, Response};
use tower::ServiceExt;
use tracing_subscriber::fmt::format::FmtSpan;

/// A `method` request for `path` from `ip` (port 1000), with the peer
/// address where `into_make_service_with_connect_info` puts it.
pub fn req(method: &str, path: &str, ip: &str) -> Request<Body> {
    let mut r = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    r.extensions_mut().insert(ConnectInfo(
        format!("{ip}:1000").parse::<SocketAddr>().unwrap(),
    ));
    r
}

/// `r` through a clone of `app`.
pub async fn send(app: &Router, r: Request<Body>) -> Response<Body> {
    app.clone().oneshot(r).await.unwrap()
}

/// The value of header `name` as text; empty when absent.
pub fn header(res: &Response<Body>, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// What a captured subscriber wrote.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// How many times `needle` was written.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A subscriber for this thread with `filter` (e.g. `"tollgate=debug"`),
/// writing plain text into the returned [`Captured`] until the guard drops.
pub fn capture(filter: &str) -> (Captured, tracing::subscriber::DefaultGuard) {
    capture_spans(filter, FmtSpan::NONE)
}

/// [`capture`], also writing the span events of `spans` (e.g.
/// `FmtSpan::CLOSE`, which shows the fields a span recorded).
pub fn capture_spans(
    filter: &str,
    spans: FmtSpan,
) -> (Captured, tracing::subscriber::DefaultGuard) {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(spans)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (out, tracing::subscriber::set_default(subscriber))
}

/// A backend that is down: every call fails with a connection error (a
/// fault injected in process; `tests/redis_faults.rs` kills real servers).
#[derive(Clone)]
pub struct Down;

impl tollgate::backend::Backend for Down {
    type Future =
        std::future::Ready<Result<tollgate::backend::Outcome, tollgate::backend::BackendError>>;

    fn acquire(&self, _: &tollgate::policy::LimitSet) -> tollgate::backend::Acquire<Self::Future> {
        tollgate::backend::Acquire::ready(Err(tollgate::backend::BackendError::Connection(
            "refused".into(),
        )))
    }

    fn peek(&self, set: &tollgate::policy::LimitSet) -> tollgate::backend::Acquire<Self::Future> {
        self.acquire(set)
    }

    fn reset(&self, set: &tollgate::policy::LimitSet) -> tollgate::backend::Acquire<Self::Future> {
        self.acquire(set)
    }

    fn kind(&self) -> &'static str {
        "down"
    }
}
