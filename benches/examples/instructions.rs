//! A fixed amount of work to count instructions on (callgrind), so that a
//! small change to the hot path shows where criterion's ±10 % cannot (and
//! where this VM's drift makes wall-clock peers disagree between runs).
//!
//! `instructions MODE N` sends N requests through an axum router (routes
//! built once, as served), every limiter at a quota the run never exhausts.
//! Modes: `bare` (no layer), the reference layers of `benches/http.rs`
//! (`noop`, `body_mapping`, `five_headers`), `http` (tollgate's
//! `RateLimitLayer::new`), `http_none` and `http_legacy` (the same with
//! `HeaderStyle::None` and `Legacy`), `tower_governor` and
//! `tower_governor_headers` (its default layer, and with `.use_headers()`),
//! `metrics_off` and `http_none_metrics_off` (`RateLimitLayer::new`, and
//! with `HeaderStyle::None`, with `.metrics(false)`; `http` has
//! the `metrics` feature on and no recorder) and `metrics_prometheus` (the
//! same with the Prometheus recorder installed).
//! Each mode prefixed with `deny_` limits to one request per hour and spends
//! it first, so that every counted request is answered 429.
//! `instructions check N` makes N `Limiter::check`s of one key,
//! `instructions backend N KEYS` makes N `MemoryBackend::acquire`s over
//! KEYS client addresses (GCRA, every one allowed), the bare check of
//! `benches/algorithms.rs`.
//!
//! Per request: the difference between two counts (say N = 2,000 and
//! 6,000) over the difference in N, so set-up cancels out, each count
//! without the calibration of quanta's clock (the inclusive count of
//! `once_cell::imp::OnceCell<T>::initialize`), which varies from run to
//! run. `scripts/instructions.sh MODE...` does all of it.
//!
//! ```text
//! cargo build --release -p tollgate-benches --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/instructions http 2000
//! callgrind_annotate --inclusive=yes cg.out | grep -m1 'OnceCell<T>::initialize '
//! ```
//!
//! It uses only `RateLimitLayer`, `HeaderStyle`, `Quota` and `Limiter`, so
//! the same file builds against older versions of tollgate for a
//! before/after count.
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use tollgate::{Limiter, Quota, RateLimitLayer};
use tower::{Service, ServiceExt};

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        match what.as_str() {
            "check" => {
                let limiter = Limiter::new(Quota::per_second(1_000_000_000)).unwrap();
                for _ in 0..n {
                    let d = limiter.check("192.0.2.1", 1).await.unwrap();
                    std::hint::black_box(d);
                }
            }
            mode if HTTP_MODES.contains(&mode.trim_start_matches("deny_")) => {
                // The deny modes spend their one request first: every
                // counted request is then a 429.
                let deny = mode.starts_with("deny_");
                let Some(router) = router(mode, deny) else {
                    unreachable!("checked by the guard")
                };
                let mut svc = router.with_state::<()>(());
                let peer: SocketAddr = "192.0.2.1:1000".parse().unwrap();
                for _ in 0..n + u64::from(deny) {
                    let mut req = Request::get("/").body(Body::empty()).unwrap();
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let res = ServiceExt::<Request<Body>>::ready(&mut svc)
                        .await
                        .unwrap()
                        .call(req)
                        .await
                        .unwrap();
                    std::hint::black_box(res);
                }
            }
            "backend" => {
                use std::sync::Arc;
                use tollgate::backend::{Acquire, Backend, MemoryBackend};
                use tollgate::key::Key;
                use tollgate::policy::{LimitSet, Policy};
                let keys: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
                let quota = Quota::new(u64::from(u32::MAX), std::time::Duration::from_secs(1));
                let policy = Arc::new(Policy::new("bench", quota));
                let backend = MemoryBackend::builder().max_keys(2_000_000).build();
                let mut allowed = 0u64;
                for i in 0..n {
                    let ip = std::net::Ipv4Addr::from(0x0a00_0000 + (i as u32 % keys));
                    let set = LimitSet::single(policy.clone(), Key::from_ip(ip.into()), 1);
                    if let Acquire::Ready(Ok(outcome)) = backend.acquire(&set) {
                        allowed += u64::from(outcome.allowed());
                    }
                }
                assert_eq!(allowed, n, "every check is allowed");
            }
            _ => eprintln!(
                "usage: instructions MODE N | backend N KEYS (see the file's documentation)"
            ),
        }
    });
}

/// The modes that send requests through a router.
const HTTP_MODES: &[&str] = &[
    "bare",
    "noop",
    "body_mapping",
    "five_headers",
    "http",
    "http_none",
    "http_legacy",
    "http_none_metrics_off",
    "metrics_off",
    "metrics_prometheus",
    "tower_governor",
    "tower_governor_headers",
];

/// The router of an HTTP mode, every limiter at a quota the run never
/// exhausts, or with `deny` at one request per hour; `None` for a mode
/// that is not one. The reference layers are those of `benches/http.rs`.
fn router(mode: &str, deny: bool) -> Option<Router> {
    use std::time::Duration;
    use tollgate::headers::HeaderStyle;

    let mode = mode.strip_prefix("deny_").unwrap_or(mode);
    let app = Router::new().route("/", get(|| async { "ok" }));
    let (quota, period, burst) = if deny {
        (Quota::per_hour(1), Duration::from_secs(3600), 1)
    } else {
        (
            Quota::per_second(1_000_000_000),
            Duration::from_nanos(1),
            1_000_000_000,
        )
    };
    let styled = |style| {
        RateLimitLayer::builder()
            .quota(quota)
            .headers(style)
            .build()
            .unwrap()
    };
    let governor = || {
        let mut builder = tower_governor::governor::GovernorConfigBuilder::default();
        builder.period(period).burst_size(burst);
        builder
    };
    // `use_headers` returns a builder of another type (its middleware):
    // its result is the one to finish.
    let with_headers = governor().use_headers().finish().unwrap();
    let without = governor().finish().unwrap();
    Some(match mode {
        "bare" => app,
        "noop" => app.layer(tower::util::MapRequestLayer::new(|req: Request<Body>| req)),
        "body_mapping" => app.layer(tower::util::MapResponseLayer::new(
            |res: http::Response<Body>| res.map(|body| body.map_err(axum::Error::new)),
        )),
        "five_headers" => app.layer(tower::util::MapResponseLayer::new(
            |mut res: http::Response<Body>| {
                use tollgate::headers::{
                    RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING,
                    X_RATELIMIT_RESET,
                };
                let headers = res.headers_mut();
                headers.reserve(5);
                let value = http::HeaderValue::from_static;
                headers.insert(&X_RATELIMIT_LIMIT, value("100"));
                headers.insert(&X_RATELIMIT_REMAINING, value("99"));
                headers.insert(&X_RATELIMIT_RESET, value("1"));
                headers.insert(&RATELIMIT_POLICY, value("\"default\";q=100;w=60"));
                headers.insert(&RATELIMIT, value("\"default\";r=99;t=1"));
                res
            },
        )),
        "http" => app.layer(RateLimitLayer::new(quota)),
        "http_none" => app.layer(styled(HeaderStyle::None)),
        "http_legacy" => app.layer(styled(HeaderStyle::Legacy)),
        "http_none_metrics_off" => app.layer(
            RateLimitLayer::builder()
                .quota(quota)
                .headers(HeaderStyle::None)
                .metrics(false)
                .build()
                .unwrap(),
        ),
        "metrics_off" => app.layer(
            RateLimitLayer::builder()
                .quota(quota)
                .metrics(false)
                .build()
                .unwrap(),
        ),
        "metrics_prometheus" => {
            // Installed before the layer's first request: its counters
            // are the exporter's.
            let _handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .unwrap();
            app.layer(RateLimitLayer::new(quota))
        }
        "tower_governor" => app.layer(tower_governor::GovernorLayer::new(without)),
        "tower_governor_headers" => app.layer(tower_governor::GovernorLayer::new(with_headers)),
        _ => return None,
    })
}
