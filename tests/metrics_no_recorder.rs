//! With the `metrics` feature on and no recorder installed, nothing breaks
//! and nothing is allocated per request: the same requests allocate exactly
//! as much with metrics on as with them off (counted by this binary's
//! global allocator). No recorder is ever installed in this binary.
#![cfg(feature = "metrics")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{Request, Response, StatusCode};
use tower::{service_fn, Service, ServiceExt};

use tollgate::{Quota, RateLimitLayer};
use tower_layer::Layer;

/// Counts every allocation of the process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is only an atomic increment.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `n` requests through a layer (metrics on or off)
/// around a service that answers at once, after two warm-up requests.
async fn allocations(metrics: bool, n: u32, denied: bool) -> u64 {
    let layer = RateLimitLayer::builder()
        // Names of one length: the 429's text grows alike.
        .name(if metrics { "metered" } else { "quieted" })
        .quota(if denied {
            Quota::per_hour(1)
        } else {
            Quota::per_second(1_000_000)
        })
        .metrics(metrics)
        // A client is labelled once per top-keys slice (a fifth of the
        // span): with a span of 30 days no slice begins during the test.
        .top_keys(64, Duration::from_secs(30 * 86_400))
        .build()
        .expect("a layer");
    let inner = service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    });
    let mut service = layer.layer(inner);
    let peer: SocketAddr = "198.51.100.1:4000".parse().expect("an address");
    let request = || {
        let mut req = Request::new(());
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    };
    // Warm-up: the first pass and (when denied) the first denial, which
    // registers the counters and labels the client in the top keys once.
    for _ in 0..2 {
        let warm = service.ready().await.expect("ready").call(request()).await;
        assert!(warm.is_ok());
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        let res = service.ready().await.expect("ready").call(request()).await;
        let expected = if denied {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::OK
        };
        assert_eq!(res.expect("answered").status(), expected);
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_recorder_metrics_allocate_nothing_per_request() {
    for denied in [false, true] {
        let off = allocations(false, 200, denied).await;
        let on = allocations(true, 200, denied).await;
        assert_eq!(
            on, off,
            "allocations for 200 requests (denied: {denied}): metrics on {on}, off {off}"
        );
    }
}
