//! Every algorithm through the layer on a paused clock: the quota is
//! admitted, the next request is a 429 whose `Retry-After` is honest, and
//! waiting exactly that long is enough.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;

use tollgate::{Algorithm, Quota, RateLimitLayer};

const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::Gcra,
    Algorithm::TokenBucket,
    Algorithm::LeakyBucket,
    Algorithm::FixedWindow,
    Algorithm::FixedWindowStaggered,
    Algorithm::SlidingWindow,
    Algorithm::SlidingWindowLog,
];

fn req() -> Request<Body> {
    let mut r = Request::get("/").body(Body::empty()).unwrap();
    r.extensions_mut().insert(ConnectInfo(
        "192.0.2.10:1234".parse::<SocketAddr>().unwrap(),
    ));
    r
}

#[tokio::test(start_paused = true)]
async fn each_algorithm_admits_its_quota_then_honours_retry_after() {
    for algorithm in ALGORITHMS {
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_minute(3))
            .algorithm(algorithm)
            .build()
            .unwrap();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer);
        let mut admitted = 0;
        let mut denial = None;
        for _ in 0..4 {
            let res = app.clone().oneshot(req()).await.unwrap();
            match res.status() {
                StatusCode::OK => admitted += 1,
                StatusCode::TOO_MANY_REQUESTS => denial = Some(res),
                other => panic!("{algorithm:?}: unexpected {other}"),
            }
        }
        // A window may close between requests only if the clock moved; it
        // is paused, so the fourth is always the one denied.
        assert_eq!(admitted, 3, "{algorithm:?}");
        let denial = denial.unwrap_or_else(|| panic!("{algorithm:?}: no 429"));
        let retry: u64 = denial.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=60).contains(&retry),
            "{algorithm:?}: Retry-After {retry}"
        );
        tokio::time::advance(Duration::from_secs(retry)).await;
        let res = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{algorithm:?}: still denied after Retry-After {retry}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn bucket_algorithms_refill_one_request_per_interval() {
    for algorithm in [
        Algorithm::Gcra,
        Algorithm::TokenBucket,
        Algorithm::LeakyBucket,
    ] {
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_second(10))
            .algorithm(algorithm)
            .build()
            .unwrap();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer);
        let mut admitted = 0;
        // 20 attempts at once, then one attempt every 50 ms for a second.
        for _ in 0..20 {
            admitted +=
                usize::from(app.clone().oneshot(req()).await.unwrap().status() == StatusCode::OK);
        }
        assert_eq!(admitted, 10, "{algorithm:?}");
        for _ in 0..19 {
            tokio::time::advance(Duration::from_millis(50)).await;
            admitted +=
                usize::from(app.clone().oneshot(req()).await.unwrap().status() == StatusCode::OK);
        }
        // 10 at once, then one at 100, 200, ... 900 ms.
        assert_eq!(admitted, 19, "{algorithm:?}");
    }
}
