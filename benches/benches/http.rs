//! The cost of rate limiting on the HTTP path: tollgate's layer against
//! tower_governor and axum-governor on the same axum app.
//!
//! What is measured: one request through an axum `Router` (`GET /` answering
//! `"hello"`), driven with `tower::ServiceExt::oneshot` on a clone of the
//! router, on a current-thread tokio runtime, with the peer address put into
//! the request extensions as `ConnectInfo<SocketAddr>`. The router is served
//! as `into_make_service_with_connect_info` serves it: turned into routes
//! once with `Router::with_state(())`. Called without that, axum rebuilds a
//! handler's route on every request, layers included (boxed clones of the
//! handler and of each layer, each layer's `Layer::layer`, a boxed
//! service), a cost no served app pays. Each iteration builds the request, calls the service and reads the
//! whole response body. No sockets: this is the middleware's cost, not the
//! network's.
//!
//! Groups (peers side by side, so ratios come from one run):
//! - `allow_path`: the bare router, then the router with each limiter set to
//!   a quota the run never exhausts (1e9 per second, burst 1e9). The added
//!   cost of a limiter is its figure minus `bare`. tollgate emits both header
//!   sets by default (`X-RateLimit-*` and IETF `RateLimit`/`RateLimit-Policy`);
//!   tower_governor adds no header on an allowed request unless
//!   `.use_headers()` (then `x-ratelimit-limit`/`-remaining`), so it is
//!   measured both ways; axum-governor always adds both header sets.
//!   tollgate is also measured with `HeaderStyle::Legacy` (`X-RateLimit-*`
//!   only, like tower_governor's `.use_headers()`) and `HeaderStyle::None`
//!   (like tower_governor's default), to compare like with like.
//!   Two reference layers that limit nothing give the floors: `noop_layer`
//!   (what axum charges any layer), `body_mapping_layer` (a layer that
//!   only changes the body's type, which axum then boxes, as it boxes
//!   tollgate's `ResponseBody`) and `five_static_headers` (a layer that
//!   only inserts the five headers of `HeaderStyle::Both` with constant
//!   values: the least any limiter emitting both header sets can cost).
//! - `deny_path`: each limiter at one request per hour, its one request
//!   spent before measuring, so every measured request is answered 429:
//!   the cost of one rejection (tollgate answers problem+json).
//!   Caveat: tower_governor and axum-governor build a new quanta clock on
//!   every rejection (`DefaultClock::default()`, axum-governor twice), and
//!   quanta's constructor runs CPUID to detect the TSC. On bare metal that
//!   is a few hundred cycles; in a virtual machine CPUID traps to the
//!   hypervisor (about 15 µs each on the machine these benches were written
//!   on), which then dominates their figures.
//!
//! Allow and deny limiters are separate instances with separate client
//! addresses, so an allow-path limiter never denies. The status of every
//! measured response is checked; a surprise is reported on stderr.
//!
//! - `metrics_cost`: tollgate with the `metrics` feature off at runtime
//!   (`.metrics(false)`), on without a recorder, and on with the Prometheus
//!   recorder installed (last: the recorder is global).
//!
//! Run: `cargo bench -p tollgate-benches --bench http -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// The quota of the allow path, as requests per second (burst the same).
const ALLOW_PER_SECOND: u32 = 1_000_000_000;

/// The client of the allow path.
const ALLOW_PEER: &str = "10.0.0.1:40000";
/// The client of the deny path.
const DENY_PEER: &str = "10.0.0.2:40000";

fn peer(addr: &str) -> SocketAddr {
    addr.parse().expect("a socket address")
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("not zero")
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// One request: build it, call a clone of the router, read the body.
async fn call(router: &Router, peer: SocketAddr) -> StatusCode {
    let mut request = Request::builder()
        .uri("/")
        .body(Body::empty())
        .expect("a request");
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body is readable")
        .to_bytes();
    black_box(body);
    status
}

/// Benchmarks `router` for `peer` in `group` as `id`, after checking (and,
/// for the deny path, causing) the status every measured call must get.
fn bench_router(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    id: &str,
    router: &Router,
    peer: SocketAddr,
    expected: StatusCode,
) {
    // What `into_make_service*` does before serving: routes built once.
    let router = &router.clone().with_state(());
    if expected == StatusCode::TOO_MANY_REQUESTS {
        let first = rt.block_on(call(router, peer));
        assert_eq!(first, StatusCode::OK, "{id}: the warm-up request");
    }
    let status = rt.block_on(call(router, peer));
    assert_eq!(status, expected, "{id}: status before measuring");

    let unexpected = AtomicU64::new(0);
    group.bench_function(id, |b| {
        b.to_async(rt).iter(|| async {
            if call(router, peer).await != expected {
                unexpected.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    let unexpected = unexpected.into_inner();
    if unexpected > 0 {
        eprintln!("WARNING {id}: {unexpected} responses were not {expected}");
    }
}

/// A layer that does nothing: what axum charges any layer (it boxes the
/// layered service's future).
fn noop_layer() -> Router {
    app().layer(tower::util::MapRequestLayer::new(|req: Request<Body>| req))
}

/// A layer that only changes the response body's type (as any limiter
/// that can answer with its own body must): axum then boxes the body.
fn body_mapping_layer() -> Router {
    app().layer(tower::util::MapResponseLayer::new(
        |res: http::Response<Body>| res.map(|body| body.map_err(axum::Error::new)),
    ))
}

/// A layer that only writes the five headers of `HeaderStyle::Both`, with
/// constant values (no formatting, no allocation, no rate limiting): the
/// floor for any limiter that emits both header sets through `HeaderMap`.
fn five_static_headers() -> Router {
    use tollgate::headers::{
        RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
    };
    app().layer(tower::util::MapResponseLayer::new(
        |mut res: http::Response<Body>| {
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
    ))
}

/// tollgate with every default but the quota.
fn tollgate(quota: tollgate::Quota) -> Router {
    app().layer(tollgate::RateLimitLayer::new(quota))
}

/// tollgate with another header style (to compare like with like).
fn tollgate_styled(quota: tollgate::Quota, style: tollgate::headers::HeaderStyle) -> Router {
    let layer = tollgate::RateLimitLayer::builder()
        .quota(quota)
        .headers(style)
        .build()
        .expect("a valid tollgate layer");
    app().layer(layer)
}

/// tower_governor keyed by peer IP, one token every `period`, `burst`
/// at once, without `.use_headers()`.
fn tower_governor_plain(period: Duration, burst: u32) -> Router {
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .period(period)
        .burst_size(burst)
        .finish()
        .expect("a valid tower_governor config");
    app().layer(tower_governor::GovernorLayer::new(config))
}

/// tower_governor as above, with `.use_headers()`.
fn tower_governor_headers(period: Duration, burst: u32) -> Router {
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .period(period)
        .burst_size(burst)
        .use_headers()
        .finish()
        .expect("a valid tower_governor config");
    app().layer(tower_governor::GovernorLayer::new(config))
}

/// axum-governor keyed by peer IP with `quota`, every other default. Built
/// inside the runtime: its layer spawns its garbage-collection task there.
fn axum_governor(rt: &Runtime, quota: axum_governor::Quota) -> Router {
    let config = axum_governor::GovernorConfigBuilder::default()
        .with_extractor(axum_governor::extractor::PeerIp::default())
        .expect_connect_info()
        .quota_default(quota)
        .finish()
        .expect("a valid axum-governor config");
    let layer = rt.block_on(async { axum_governor::GovernorLayer::new(config) });
    app().layer(layer)
}

fn allow_path(c: &mut Criterion) {
    let rt = runtime();
    let peer = peer(ALLOW_PEER);
    let ok = StatusCode::OK;
    let burst = ALLOW_PER_SECOND;
    let period = Duration::from_secs(1) / ALLOW_PER_SECOND;
    let mut group = c.benchmark_group("allow_path");

    bench_router(&mut group, &rt, "bare", &app(), peer, ok);
    bench_router(&mut group, &rt, "noop_layer", &noop_layer(), peer, ok);
    let router = body_mapping_layer();
    bench_router(&mut group, &rt, "body_mapping_layer", &router, peer, ok);
    let router = five_static_headers();
    bench_router(&mut group, &rt, "five_static_headers", &router, peer, ok);
    let quota = tollgate::Quota::new(u64::from(ALLOW_PER_SECOND), Duration::from_secs(1));
    bench_router(&mut group, &rt, "tollgate", &tollgate(quota), peer, ok);
    let router = tollgate_styled(quota, tollgate::headers::HeaderStyle::Legacy);
    bench_router(
        &mut group,
        &rt,
        "tollgate_legacy_headers",
        &router,
        peer,
        ok,
    );
    let router = tollgate_styled(quota, tollgate::headers::HeaderStyle::None);
    bench_router(&mut group, &rt, "tollgate_no_headers", &router, peer, ok);
    let router = tower_governor_plain(period, burst);
    bench_router(&mut group, &rt, "tower_governor", &router, peer, ok);
    let router = tower_governor_headers(period, burst);
    bench_router(&mut group, &rt, "tower_governor_headers", &router, peer, ok);
    let quota = axum_governor::Quota::requests_per_second(nonzero(ALLOW_PER_SECOND));
    let router = axum_governor(&rt, quota);
    bench_router(&mut group, &rt, "axum_governor", &router, peer, ok);
    group.finish();
}

fn deny_path(c: &mut Criterion) {
    let rt = runtime();
    let peer = peer(DENY_PEER);
    let denied = StatusCode::TOO_MANY_REQUESTS;
    let hour = Duration::from_secs(3600);
    let mut group = c.benchmark_group("deny_path");

    let router = tollgate(tollgate::Quota::per_hour(1));
    bench_router(&mut group, &rt, "tollgate", &router, peer, denied);
    let router = tower_governor_plain(hour, 1);
    bench_router(&mut group, &rt, "tower_governor", &router, peer, denied);
    let router = tower_governor_headers(hour, 1);
    bench_router(
        &mut group,
        &rt,
        "tower_governor_headers",
        &router,
        peer,
        denied,
    );
    let quota = axum_governor::Quota::requests_per_hour(nonzero(1));
    let router = axum_governor(&rt, quota);
    bench_router(&mut group, &rt, "axum_governor", &router, peer, denied);
    group.finish();
}

/// The cost of the `metrics` feature on the allow path, in one run: the
/// layer with metrics off, on with no recorder (its counters registered
/// before the recorder is installed, so they stay no-ops), and on with
/// the Prometheus recorder installed. Runs last: the recorder it installs
/// is global.
fn metrics_cost(c: &mut Criterion) {
    let rt = runtime();
    let peer = peer(ALLOW_PEER);
    let ok = StatusCode::OK;
    let quota = tollgate::Quota::new(u64::from(ALLOW_PER_SECOND), Duration::from_secs(1));
    let with_metrics = |enabled: bool| {
        let layer = tollgate::RateLimitLayer::builder()
            .quota(quota)
            .metrics(enabled)
            .build()
            .expect("a valid tollgate layer");
        app().layer(layer)
    };
    let off = with_metrics(false);
    // Its first request, before any recorder: counters that count nowhere.
    let no_recorder = with_metrics(true);
    rt.block_on(call(&no_recorder.clone().with_state(()), peer));
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this bench");
    let prometheus = with_metrics(true);
    let mut group = c.benchmark_group("metrics_cost");
    bench_router(&mut group, &rt, "bare", &app(), peer, ok);
    bench_router(&mut group, &rt, "tollgate_metrics_off", &off, peer, ok);
    bench_router(
        &mut group,
        &rt,
        "tollgate_no_recorder",
        &no_recorder,
        peer,
        ok,
    );
    bench_router(
        &mut group,
        &rt,
        "tollgate_prometheus",
        &prometheus,
        peer,
        ok,
    );
    group.finish();
    assert!(
        handle.render().contains("tollgate_decisions_total"),
        "the Prometheus recorder counted the measured requests"
    );
}

criterion_group!(benches, allow_path, deny_path, metrics_cost);
criterion_main!(benches);
