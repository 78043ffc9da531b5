//! The layer through a real axum `Router` (`oneshot`), a bare tower/hyper
//! service, and a real listener with a real HTTP client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};

use tollgate::key::{self, Key};
use tollgate::{
    headers::{HeaderStyle, ResetFormat},
    Algorithm, ConfigError, Quota, QuotaError, RateLimitLayer,
};

fn app(
    layer: RateLimitLayer<impl tollgate::key::KeyExtractor, tollgate::backend::MemoryBackend>,
) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/items/{id}", get(|| async { "item" }))
        .layer(layer)
}

fn from(ip: &str) -> Request<Body> {
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

fn from_v6(ip: &str) -> Request<Body> {
    let addr: SocketAddr = format!("[{ip}]:40000").parse().unwrap();
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn body_json(res: Response<Body>) -> serde_json::Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(start_paused = true)]
async fn denies_the_sixth_request_in_a_minute_with_headers_and_problem_json() {
    let app = app(RateLimitLayer::new(Quota::per_minute(5)));
    for i in 0..5 {
        let res = app.clone().oneshot(from("203.0.113.7")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
        let h = res.headers();
        assert_eq!(h["x-ratelimit-limit"], "5");
        assert_eq!(h["x-ratelimit-remaining"], (4 - i).to_string().as_str());
        assert_eq!(h["ratelimit-policy"], "\"default\";q=5;w=60");
        assert_eq!(
            h["ratelimit"],
            format!("\"default\";r={};t={}", 4 - i, 12 * (i + 1)).as_str()
        );
    }
    let res = app.clone().oneshot(from("203.0.113.7")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(h["retry-after"], "12");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(h["x-ratelimit-reset"], "60");
    let body = body_json(res).await;
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(body["title"], "Too Many Requests");
    assert_eq!(body["status"], 429);
    assert_eq!(body["violated-policies"], serde_json::json!(["default"]));
    assert!(body["detail"].as_str().unwrap().contains("Retry in 12 s"));

    // Another client is not affected; the first is admitted again after 12 s.
    assert_eq!(
        app.clone()
            .oneshot(from("203.0.113.8"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(
        app.clone()
            .oneshot(from("203.0.113.7"))
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        app.clone()
            .oneshot(from("203.0.113.7"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_rounded_up_never_down() {
    // 10/s: the 11th request waits 100 ms, which is "1", not "0".
    let app = app(RateLimitLayer::new(Quota::per_second(10)));
    for _ in 0..10 {
        app.clone().oneshot(from("198.51.100.1")).await.unwrap();
    }
    let res = app.clone().oneshot(from("198.51.100.1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
}

#[tokio::test]
async fn no_peer_address_is_a_500_naming_the_fix_not_a_panic() {
    let app = app(RateLimitLayer::new(Quota::per_minute(5)));
    for _ in 0..3 {
        let req = Request::get("/").body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let body = body_json(res).await;
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("into_make_service_with_connect_info"));
    }
}

#[tokio::test]
async fn ipv6_clients_in_one_64_share_a_bucket_and_mapped_ipv4_is_ipv4() {
    let app = app(RateLimitLayer::new(Quota::per_minute(2)));
    assert_eq!(
        app.clone()
            .oneshot(from_v6("2001:db8:0:1::1"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone()
            .oneshot(from_v6("2001:db8:0:1:ffff::2"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let third = app
        .clone()
        .oneshot(from_v6("2001:db8:0:1:dead:beef::3"))
        .await
        .unwrap();
    assert_eq!(
        third.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "rotating inside a /64 must not escape"
    );
    assert_eq!(
        app.clone()
            .oneshot(from_v6("2001:db8:0:2::1"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    assert_eq!(
        app.clone()
            .oneshot(from("192.0.2.50"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone()
            .oneshot(from_v6("::ffff:192.0.2.50"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone()
            .oneshot(from("192.0.2.50"))
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn header_style_switches() {
    let cases: [(HeaderStyle, &[&str], &[&str]); 5] = [
        (
            HeaderStyle::Legacy,
            &["x-ratelimit-limit"],
            &["ratelimit", "ratelimit-policy"],
        ),
        (
            HeaderStyle::Ietf,
            &["ratelimit", "ratelimit-policy"],
            &["x-ratelimit-limit"],
        ),
        (
            HeaderStyle::Draft6,
            &["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"],
            &["x-ratelimit-limit"],
        ),
        (
            HeaderStyle::Draft7,
            &["ratelimit", "ratelimit-policy"],
            &["ratelimit-limit"],
        ),
        (
            HeaderStyle::None,
            &[],
            &["x-ratelimit-limit", "ratelimit", "ratelimit-policy"],
        ),
    ];
    for (style, present, absent) in cases {
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_minute(5))
            .headers(style)
            .build()
            .unwrap();
        let res = app(layer).oneshot(from("192.0.2.1")).await.unwrap();
        for h in present {
            assert!(res.headers().contains_key(*h), "{style:?} lacks {h}");
        }
        for h in absent {
            assert!(!res.headers().contains_key(*h), "{style:?} has {h}");
        }
    }
}

#[tokio::test]
async fn epoch_reset_format_writes_a_unix_time() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(5))
        .reset_format(ResetFormat::EpochSeconds)
        .build()
        .unwrap();
    let res = app(layer).oneshot(from("192.0.2.1")).await.unwrap();
    let reset: u64 = res.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > 1_700_000_000, "{reset}");
    // IETF `t` stays a delay.
    assert_eq!(res.headers()["ratelimit"], "\"default\";r=4;t=12");
}

#[tokio::test]
async fn shadow_mode_never_blocks_and_adds_no_headers_by_default() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .shadow(true)
        .build()
        .unwrap();
    let app = app(layer);
    for _ in 0..5 {
        let res = app.clone().oneshot(from("192.0.2.9")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(!res.headers().contains_key("x-ratelimit-limit"));
    }
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .shadow(true)
        .shadow_headers(true)
        .build()
        .unwrap();
    let app = self::app(layer);
    app.clone().oneshot(from("192.0.2.9")).await.unwrap();
    let res = app.clone().oneshot(from("192.0.2.9")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
}

#[tokio::test]
async fn a_custom_rejection_keeps_retry_after_and_the_headers() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .on_rejected(|denied| {
            let names: Vec<&str> = denied.violated_policies().collect();
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header("content-type", "text/plain")
                .body(Bytes::from(format!("busy: {}", names.join(","))))
                .unwrap()
        })
        .build()
        .unwrap();
    let app = app(layer);
    app.clone().oneshot(from("192.0.2.2")).await.unwrap();
    let res = app.clone().oneshot(from("192.0.2.2")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "60");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"busy: default");
}

/// A response whose header map holds as many entries as `HeaderMap` allows.
fn with_a_full_header_map<B>(mut res: Response<B>) -> Response<B> {
    for i in 0.. {
        let name = http::HeaderName::from_bytes(format!("h{i}").as_bytes()).unwrap();
        if res
            .headers_mut()
            .try_insert(name, HeaderValue::from_static("x"))
            .is_err()
        {
            break;
        }
    }
    res
}

/// A response whose header map is full leaves the layer without the
/// rate-limit headers (which no longer fit) instead of panicking. Through a
/// bare tower service: axum itself panics on such a response when it adds
/// `content-length`.
#[tokio::test]
async fn a_response_with_a_full_header_map_passes_without_rate_limit_headers() {
    use tower::Layer;
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .on_rejected(|_| with_a_full_header_map(Response::new(Bytes::from_static(b"busy"))))
        .build()
        .unwrap();
    let inner = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(with_a_full_header_map(Response::new(Body::from("hello"))))
    });
    let svc = layer.layer(inner);
    let res = svc.clone().oneshot(from("192.0.2.9")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("x-ratelimit-limit").is_none());
    let res = svc.clone().oneshot(from("192.0.2.9")).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the custom rejection's status"
    );
    assert!(res.headers().get("retry-after").is_none());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"busy");
}

#[test]
fn a_zero_quota_is_a_configuration_error_at_build() {
    let err = RateLimitLayer::builder()
        .quota(Quota::per_second(0))
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Policy(tollgate::policy::PolicyError::Quota {
            source: QuotaError::ZeroLimit,
            ..
        })
    ));
    assert!(err.to_string().contains("zero"), "{err}");
    let err = RateLimitLayer::builder().build().unwrap_err();
    assert_eq!(err, ConfigError::MissingQuota);
    let err = RateLimitLayer::builder()
        .quota(Quota::per_second(10).with_burst(20))
        .algorithm(Algorithm::FixedWindow)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no burst"), "{err}");
}

#[test]
fn an_absurd_quota_given_to_new_panics_at_construction_with_the_error() {
    let panic = std::panic::catch_unwind(|| {
        RateLimitLayer::new(Quota::new(1, Duration::from_secs(10 * 365 * 86_400)))
    })
    .expect_err("an unenforceable quota cannot make a layer");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("366 days"), "{message}");
    // The builder reports the same error instead.
    let built = RateLimitLayer::builder()
        .quota(Quota::new(1, Duration::from_secs(10 * 365 * 86_400)))
        .build();
    assert!(built.is_err());
}

#[tokio::test]
async fn route_layer_limits_only_matched_routes() {
    let app = Router::new()
        .route("/limited", get(|| async { "x" }))
        .route_layer(RateLimitLayer::new(Quota::per_minute(1)));
    let req = |path: &str| {
        let mut r = Request::get(path).body(Body::empty()).unwrap();
        r.extensions_mut()
            .insert(ConnectInfo("192.0.2.4:1".parse::<SocketAddr>().unwrap()));
        r
    };
    assert_eq!(
        app.clone().oneshot(req("/limited")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone().oneshot(req("/limited")).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Unmatched paths are 404, not counted and not limited.
    for _ in 0..3 {
        assert_eq!(
            app.clone().oneshot(req("/nope")).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn huge_and_non_utf8_header_values_take_the_documented_path() {
    // A closure extractor keyed on a header: a 60 KB value becomes a short
    // hashed key; a non-UTF-8 value is just bytes; a missing one skips.
    let layer = RateLimitLayer::builder()
        .key(key::from_fn(|parts: &http::request::Parts| {
            parts
                .headers
                .get("x-api-key")
                .map(|v| Key::from_bytes(v.as_bytes()))
        }))
        .quota(Quota::per_minute(1))
        .build()
        .unwrap();
    let app = app(layer);
    let with = |value: HeaderValue| {
        let mut r = Request::get("/").body(Body::empty()).unwrap();
        r.headers_mut().insert("x-api-key", value);
        r
    };
    let huge = HeaderValue::from_bytes("k".repeat(60_000).as_bytes()).unwrap();
    assert_eq!(
        app.clone()
            .oneshot(with(huge.clone()))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone().oneshot(with(huge)).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let binary = HeaderValue::from_bytes(&[0xff, 0xfe, b'a', 0x80]).unwrap();
    assert_eq!(
        app.clone()
            .oneshot(with(binary.clone()))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone().oneshot(with(binary)).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        let res = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "no key: skipped");
        assert!(!res.headers().contains_key("x-ratelimit-limit"));
    }
}

#[tokio::test]
async fn the_default_extractor_ignores_garbage_headers() {
    let app = app(RateLimitLayer::new(Quota::per_minute(2)));
    let mut req = from("192.0.2.77");
    req.headers_mut().insert(
        "x-forwarded-for",
        HeaderValue::from_bytes(&[0xff, b',', b'1']).unwrap(),
    );
    req.headers_mut().insert(
        "forwarded",
        HeaderValue::from_bytes("for=".repeat(10_000).as_bytes()).unwrap(),
    );
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn a_queueing_leaky_bucket_delays_the_excess_instead_of_rejecting() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(2))
        .algorithm(Algorithm::LeakyBucketQueue {
            max_delay: Duration::from_secs(1),
        })
        .build()
        .unwrap();
    let app = app(layer);
    let start = tokio::time::Instant::now();
    let mut handles = Vec::new();
    for _ in 0..5 {
        let app = app.clone();
        handles.push(tokio::spawn(async move {
            let res = app.oneshot(from("192.0.2.5")).await.unwrap();
            (res.status(), start.elapsed())
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    let denied: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].1, Duration::ZERO, "a denial is answered at once");
    let mut waits: Vec<u128> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, t)| t.as_millis())
        .collect();
    waits.sort_unstable();
    // Two at once, then one every 500 ms: held, not rejected.
    assert_eq!(waits, [0, 0, 500, 1000]);
}

/// A service that is not ready until told, counting its calls.
#[derive(Clone)]
struct Gate {
    ready: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Service<Request<Full<Bytes>>> for Gate {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready.load(Ordering::SeqCst) > 0 {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"raw")))))
    }
}

#[tokio::test]
async fn wraps_a_bare_tower_service_with_its_own_body_type_and_forwards_poll_ready() {
    let gate = Gate {
        ready: Arc::new(AtomicUsize::new(0)),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let layer = RateLimitLayer::new(Quota::per_minute(1));
    let mut svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(gate.clone());
    let waker = futures_noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(
        svc.poll_ready(&mut cx).is_pending(),
        "readiness is the inner service's"
    );
    gate.ready.store(1, Ordering::SeqCst);

    let req = || {
        let mut r = Request::new(Full::new(Bytes::new()));
        r.extensions_mut()
            .insert("192.0.2.6:9".parse::<SocketAddr>().unwrap());
        r
    };
    let res = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "raw");
    let mut clone = svc.clone();
    let res = clone.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        gate.calls.load(Ordering::SeqCst),
        1,
        "a denied request never reaches the service"
    );
}

fn futures_noop_waker() -> std::task::Waker {
    std::task::Waker::noop().clone()
}

#[tokio::test]
async fn a_real_listener_and_client_see_the_sixth_request_denied() {
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(Quota::per_minute(5)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let req = Request::get(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = client.request(req).await.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(res.headers()["retry-after"], "12");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["status"], 429);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    server.abort();
}

#[test]
fn the_layer_and_its_service_are_clone_send_and_sync() {
    fn assert_clone_send_sync<T: Clone + Send + Sync + 'static>() {}
    assert_clone_send_sync::<RateLimitLayer>();
    assert_clone_send_sync::<
        tollgate::RateLimit<Router, tollgate::key::ClientIp, tollgate::backend::MemoryBackend>,
    >();
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_never_holds_a_queued_request_back() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .algorithm(Algorithm::LeakyBucketQueue {
            max_delay: Duration::from_secs(5),
        })
        .shadow(true)
        .shadow_headers(true)
        .build()
        .unwrap();
    let app = app(layer);
    let start = tokio::time::Instant::now();
    for _ in 0..4 {
        let res = app.clone().oneshot(from("192.0.2.11")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
}
