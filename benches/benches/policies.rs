//! The cost of policy resolution on the HTTP path: how much a route table
//! of 1, 10 and 1,000 routes, and an allow list of 100,000 CIDR ranges,
//! add to a request over the same layer with only a default policy.
//!
//! What is measured: one request through an axum `Router` (a fallback
//! handler answering `"hello"`, so every path is served alike) driven with
//! `tower::ServiceExt::oneshot`, on a current-thread runtime, peer address
//! in `ConnectInfo`, the whole body read, the router turned into routes
//! once with `Router::with_state(())` as `into_make_service*` does (not
//! rebuilt per request, which served apps never pay); the layer emits no headers
//! (`HeaderStyle::None`), so header writing (which grows with the number of
//! levels a request hits) does not hide the lookup. Every quota is 1e9 per
//! second: nothing is ever denied.
//!
//! - `default_only`: the default policy alone (the layer's fast path);
//! - `routes_1`, `routes_10`, `routes_1000`: the default plus that many
//!   `GET /r{i}/items/{id}` routes and a `/r{i}/*` group for every tenth;
//!   the request hits `/r{n/2}/items/7`, so it is checked against the
//!   default, the group (when there is one) and the route;
//! - `routes_1000_miss`: the same table, a path no route covers (only the
//!   default applies): the lookup alone;
//! - `routes_1000_allow_list_100k`: the 1,000-route table behind an allow
//!   list of 100,000 ranges that does not hold the client (a miss: the
//!   request is still limited).
//!
//! The resolution cost of a table is its figure minus `default_only`
//! (quoted in the README with the command).
//!
//! Run: `cargo bench -p tollgate-benches --bench policies -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::runtime::Runtime;
use tower::ServiceExt;

use tollgate::policy::Rule;
use tollgate::{headers::HeaderStyle, settings::AccessList, Quota, RateLimitLayer};

fn quota() -> Quota {
    Quota::new(1_000_000_000, Duration::from_secs(1))
}

fn app() -> Router {
    Router::new().fallback(|| async { "hello" })
}

fn table(routes: usize, access: Option<AccessList>) -> Router {
    let mut builder = RateLimitLayer::builder()
        .quota(quota())
        .headers(HeaderStyle::None);
    for i in 0..routes {
        builder = builder.route(
            &format!("GET /r{i}/items/{{id}}"),
            Rule::new(format!("r{i}"), quota()),
        );
        if i % 10 == 0 {
            builder = builder.group(&format!("/r{i}/*"), Rule::new(format!("g{i}"), quota()));
        }
    }
    if let Some(access) = access {
        builder = builder.access(access);
    }
    app().layer(builder.build().expect("a valid layer"))
}

fn allow_list(n: u32) -> AccessList {
    AccessList::new().allowing((0..n).filter_map(|i| {
        let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8));
        ipnet::Ipv4Net::new(addr, 24).ok().map(ipnet::IpNet::V4)
    }))
}

async fn call(router: &Router, path: &str) -> StatusCode {
    let mut request = Request::builder()
        .uri(path)
        .body(Body::empty())
        .expect("a request");
    let peer: SocketAddr = "192.0.2.1:40000".parse().expect("an address");
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let body = response.into_body().collect().await;
    black_box(body.map(|b| b.to_bytes()).ok());
    status
}

fn bench(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    id: &str,
    router: &Router,
    path: &'static str,
) {
    // What `into_make_service*` does before serving: routes built once.
    let router = &router.clone().with_state(());
    assert_eq!(rt.block_on(call(router, path)), StatusCode::OK, "{id}");
    group.bench_function(id, |b| b.to_async(rt).iter(|| call(router, path)));
}

fn resolution(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("policy_resolution");
    bench(&mut group, &rt, "bare", &app(), "/r0/items/7");
    bench(
        &mut group,
        &rt,
        "default_only",
        &table(0, None),
        "/r0/items/7",
    );
    bench(&mut group, &rt, "routes_1", &table(1, None), "/r0/items/7");
    bench(
        &mut group,
        &rt,
        "routes_10",
        &table(10, None),
        "/r5/items/7",
    );
    let big = table(1000, None);
    bench(&mut group, &rt, "routes_1000", &big, "/r500/items/7");
    bench(&mut group, &rt, "routes_1000_miss", &big, "/elsewhere/7");
    let guarded = table(1000, Some(allow_list(100_000)));
    bench(
        &mut group,
        &rt,
        "routes_1000_allow_list_100k",
        &guarded,
        "/r500/items/7",
    );
    group.finish();
}

criterion_group!(benches, resolution);
criterion_main!(benches);
