//! A fixed amount of work to count instructions on (callgrind), so that a
//! small change to the hot path shows where criterion's ±10 % cannot:
//! `instructions http N` sends N requests through an axum router with
//! `RateLimitLayer::new` (routes built once, as served), `http_none` and
//! `http_legacy` the same with `HeaderStyle::None` and `Legacy`,
//! `tower_governor` with tower_governor's default layer, `instructions bare
//! N` the same router without the layer, `instructions check N` makes N
//! `Limiter::check`s of one key, `instructions backend N KEYS` makes N
//! `MemoryBackend::acquire`s over KEYS client addresses (GCRA, every one
//! allowed), the bare check of `benches/algorithms.rs`. Per request: the difference between two
//! counts (say N = 2,000 and 6,000) over the difference in N, so set-up
//! cancels out.
//!
//! ```text
//! cargo build --release -p tollgate-benches --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/instructions http 2000
//! ```
//!
//! It uses only `RateLimitLayer`, `Quota` and `Limiter`, so the same file
//! builds against older versions of tollgate for a before/after count.
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::Request;
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
            "http" | "bare" | "http_none" | "http_legacy" | "tower_governor" => {
                let router = Router::new().route("/", get(|| async { "ok" }));
                let quota = Quota::per_second(1_000_000_000);
                let styled = |style| {
                    RateLimitLayer::builder()
                        .quota(quota)
                        .headers(style)
                        .build()
                        .unwrap()
                };
                let router = match what.as_str() {
                    "http" => router.layer(RateLimitLayer::new(quota)),
                    "http_none" => router.layer(styled(tollgate::headers::HeaderStyle::None)),
                    "http_legacy" => router.layer(styled(tollgate::headers::HeaderStyle::Legacy)),
                    "tower_governor" => {
                        let config = tower_governor::governor::GovernorConfigBuilder::default()
                            .period(std::time::Duration::from_nanos(1))
                            .burst_size(1_000_000_000)
                            .finish()
                            .unwrap();
                        router.layer(tower_governor::GovernorLayer::new(config))
                    }
                    _ => router,
                };
                let mut svc = router.with_state::<()>(());
                let peer: SocketAddr = "192.0.2.1:1000".parse().unwrap();
                for _ in 0..n {
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
            _ => eprintln!("usage: instructions http|bare|check N | backend N KEYS"),
        }
    });
}
