//! The Redis backend against a real `redis-server`: a fleet shares one
//! limit exactly, keys carry TTLs under their prefix, peek and reset, the
//! timeout holds when Redis is slow or dead, recovery after a restart, one
//! `EVALSHA` per set.
#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use redis::Commands;
use tower::ServiceExt;

use tollgate::backend::{Backend, BackendError, RedisBackend, RedisConnectError};
use tollgate::key::Key;
use tollgate::{
    policy::{LimitSet, Policy},
    Algorithm, Quota, RateLimitLayer,
};

use support::{every_algorithm, single, slow_quota};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_servers_on_one_redis_admit_exactly_the_limit_in_total() {
    let server = redis_or_skip!();
    let a = server.backend().await;
    let b = server.backend().await;
    for algorithm in every_algorithm() {
        let policy = Arc::new(
            Policy::new(format!("fleet-{}", algorithm.name()), slow_quota(50))
                .with_algorithm(algorithm),
        );
        let mut tasks = Vec::new();
        for i in 0..300 {
            let backend = if i % 2 == 0 { a.clone() } else { b.clone() };
            let set = single(&policy, "shared-client");
            tasks.push(tokio::spawn(async move {
                backend.acquire(&set).await.map(|o| o.allowed())
            }));
        }
        let mut admitted = 0;
        for t in tasks {
            if t.await.expect("task").expect("redis call") {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 50, "{}", algorithm.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_layers_on_one_redis_admit_exactly_the_limit_across_many_clients() {
    let server = redis_or_skip!();
    let app = |backend: RedisBackend| {
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_hour(40))
            .algorithm(Algorithm::SlidingWindowLog)
            .backend(backend)
            .build()
            .expect("layer");
        Router::new()
            .route("/", get(|| async { "hello" }))
            .layer(layer)
    };
    let apps = [app(server.backend().await), app(server.backend().await)];
    let mut tasks = Vec::new();
    for i in 0..400usize {
        let app = apps[i % 2].clone();
        // Four clients, a hundred requests each, spread over both apps.
        let addr: SocketAddr = format!("198.51.100.{}:4000", i % 4).parse().expect("addr");
        tasks.push(tokio::spawn(async move {
            let mut req = Request::get("/").body(Body::empty()).expect("request");
            req.extensions_mut().insert(ConnectInfo(addr));
            app.oneshot(req).await.map(|r| r.status())
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.expect("task").expect("infallible") {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (4 * 40, 400 - 4 * 40));
}

#[tokio::test]
async fn keys_carry_a_ttl_and_the_custom_prefix_and_never_the_key_bytes() {
    let server = redis_or_skip!();
    let backend = RedisBackend::builder(&server.url())
        .prefix("custom-app:")
        .ttl_margin(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect");
    let mut conn = server.client();
    for algorithm in every_algorithm() {
        let policy = Arc::new(
            Policy::new(format!("ttl-{}", algorithm.name()), Quota::per_second(10))
                .with_algorithm(algorithm),
        );
        let key = Key::from("secret-token-123");
        let set = LimitSet::single(policy.clone(), key.clone(), 1);
        let outcome = backend.acquire(&set).await.expect("redis call");
        assert!(outcome.allowed());
        let name = backend.key_name(&policy, &key);
        assert!(
            name.starts_with(&format!("custom-app:ttl-{}:{{", algorithm.name())),
            "{name}"
        );
        let pttl: i64 = conn.pttl(&name).expect("PTTL");
        // reset_after rounded up to the millisecond, plus the margin.
        let reset_ms = outcome.decisions()[0]
            .reset_after
            .as_u64()
            .div_ceil(1_000_000) as i64;
        assert!(
            pttl > 0 && pttl <= reset_ms + 500 && pttl > reset_ms + 500 - 200,
            "{}: PTTL {pttl} ms, reset {reset_ms} ms",
            algorithm.name()
        );
    }
    let names: Vec<String> = conn.keys("*").expect("KEYS");
    assert_eq!(names.len(), every_algorithm().len());
    for name in names {
        assert!(name.starts_with("custom-app:"), "{name}");
        assert!(!name.contains("secret"), "{name}");
    }
}

#[tokio::test]
async fn keys_expire_once_their_state_is_fresh_again() {
    let server = redis_or_skip!();
    let backend = RedisBackend::builder(&server.url())
        .ttl_margin(Duration::ZERO)
        .connect()
        .await
        .expect("connect");
    let policy = Arc::new(Policy::new("expiring", Quota::per_second(20)));
    let set = single(&policy, "c");
    assert!(backend.acquire(&set).await.expect("call").allowed());
    let mut conn = server.client();
    let name = backend.key_name(&policy, &Key::from("c"));
    let pttl: i64 = conn.pttl(&name).expect("PTTL");
    assert!(pttl > 0 && pttl <= 50, "PTTL {pttl}");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let exists: bool = conn.exists(&name).expect("EXISTS");
    assert!(!exists, "the key outlived its state");
}

#[tokio::test]
async fn peek_counts_nothing_and_writes_nothing() {
    let server = redis_or_skip!();
    let backend = server.backend().await;
    let mut conn = server.client();
    for algorithm in every_algorithm() {
        let policy = Arc::new(
            Policy::new(format!("peek-{}", algorithm.name()), slow_quota(3))
                .with_algorithm(algorithm),
        );
        let set = single(&policy, "p");
        let name = backend.key_name(&policy, &Key::from("p"));
        for _ in 0..5 {
            let o = backend.peek(&set).await.expect("peek");
            assert!(o.allowed());
            assert_eq!(o.decisions()[0].remaining, 3, "{}", algorithm.name());
        }
        let exists: bool = conn.exists(&name).expect("EXISTS");
        assert!(!exists, "{}: peek wrote a key", algorithm.name());
        backend.acquire(&set).await.expect("acquire");
        for _ in 0..3 {
            let o = backend.peek(&set).await.expect("peek");
            assert_eq!(o.decisions()[0].remaining, 2, "{}", algorithm.name());
        }
        let o = backend.acquire(&set).await.expect("acquire");
        assert_eq!(o.decisions()[0].remaining, 1, "{}", algorithm.name());
    }
}

#[tokio::test]
async fn reset_forgets_the_sets_keys() {
    let server = redis_or_skip!();
    let backend = server.backend().await;
    let mut conn = server.client();
    for algorithm in every_algorithm() {
        let policy = Arc::new(
            Policy::new(format!("reset-{}", algorithm.name()), slow_quota(2))
                .with_algorithm(algorithm),
        );
        let set = single(&policy, "r");
        assert!(backend.acquire(&set).await.expect("call").allowed());
        assert!(backend.acquire(&set).await.expect("call").allowed());
        assert!(!backend.acquire(&set).await.expect("call").allowed());
        let fresh = backend.reset(&set).await.expect("reset");
        assert!(fresh.allowed());
        assert_eq!(fresh.decisions()[0].remaining, 2, "{}", algorithm.name());
        let exists: bool = conn
            .exists(backend.key_name(&policy, &Key::from("r")))
            .expect("EXISTS");
        assert!(!exists, "{}", algorithm.name());
        assert!(backend.acquire(&set).await.expect("call").allowed());
    }
}

#[tokio::test]
async fn a_denied_set_consumes_nothing_from_its_other_limits() {
    let server = redis_or_skip!();
    let backend = server.backend().await;
    let tight = Arc::new(Policy::new("tight", slow_quota(1)));
    let loose =
        Arc::new(Policy::new("loose", slow_quota(10)).with_algorithm(Algorithm::FixedWindow));
    let mut set = LimitSet::new();
    set.push(loose.clone(), Key::from("k"), 1);
    set.push(tight.clone(), Key::from("k"), 1);
    assert!(backend.acquire(&set).await.expect("call").allowed());
    for _ in 0..5 {
        let o = backend.acquire(&set).await.expect("call");
        assert!(!o.allowed());
        assert_eq!(o.decisions()[0].remaining, 8);
    }
    let o = backend.peek(&single(&loose, "k")).await.expect("peek");
    assert_eq!(o.decisions()[0].remaining, 9);
}

#[tokio::test]
async fn a_slowed_redis_answers_timeout_within_the_timeout() {
    let server = redis_or_skip!();
    let backend = server.backend().await;
    assert_eq!(backend.timeout(), Duration::from_millis(250));
    let policy = Arc::new(Policy::new("slow", Quota::per_second(100)));
    let set = single(&policy, "s");
    backend.acquire(&set).await.expect("warm-up call");
    let sleeper = server.hang(1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let result = backend.acquire(&set).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(BackendError::Timeout(d)) if d == Duration::from_millis(250)),
        "{result:?}"
    );
    // Bounded by the 250 ms timeout, not by the 1 s sleep (with slack for a
    // loaded CI machine).
    assert!(took < Duration::from_millis(900), "waited {took:?}");
    sleeper.join().expect("sleeper");
    // Once Redis is awake the same connection serves again.
    let result = backend.acquire(&set).await;
    assert!(result.expect("after the sleep").allowed());
}

#[tokio::test]
async fn a_killed_redis_fails_within_the_timeout_and_a_restarted_one_is_used_again() {
    let mut server = redis_or_skip!();
    let backend = server
        .backend_timing_out_after(Duration::from_millis(200))
        .await;
    let policy = Arc::new(Policy::new("restart", slow_quota(1000)));
    let set = single(&policy, "client-key-bytes");
    assert!(backend.acquire(&set).await.expect("call").allowed());

    server.kill();
    for _ in 0..5 {
        let started = Instant::now();
        let result = backend.acquire(&set).await;
        let took = started.elapsed();
        assert!(result.is_err(), "{result:?}");
        assert!(took < Duration::from_millis(900), "waited {took:?}");
        if let Err(e) = &result {
            assert!(!e.to_string().contains("client-key-bytes"), "{e}");
        }
    }

    // A fresh server (no script loaded, no state) on the same port: the
    // same backend reconnects and reloads the script on NOSCRIPT.
    server.restart();
    let outcome =
        support::retry_until_ok("no recovery after a restart", || backend.acquire(&set)).await;
    assert!(outcome.allowed());
    assert_eq!(outcome.decisions()[0].remaining, 999, "state starts over");
}

#[tokio::test]
async fn one_evalsha_per_set_and_the_script_is_loaded_once() {
    let server = redis_or_skip!();
    let backend = server.backend().await;
    let per_second = Arc::new(Policy::new("stats-second", Quota::per_second(1000)));
    let per_day = Arc::new(Policy::new("stats-day", Quota::per_day(1000)));
    for i in 0..25 {
        let mut set = LimitSet::new();
        set.push(per_second.clone(), Key::from(format!("c{}", i % 3)), 1);
        set.push(per_day.clone(), Key::from(format!("c{}", i % 3)), 1);
        assert!(backend.acquire(&set).await.expect("call").allowed());
    }
    for _ in 0..5 {
        backend.peek(&single(&per_day, "c0")).await.expect("peek");
    }
    let info = server.command_stats();
    let calls = |command: &str| support::command_calls(&info, command);
    assert_eq!(calls("evalsha"), Some(30), "{info}");
    // Loaded once, at connect: SCRIPT LOAD (Redis 7 names it script|load).
    let loads = calls("script|load").or_else(|| calls("script"));
    assert_eq!(loads, Some(1), "{info}");
    assert_eq!(calls("eval"), None, "{info}");
}

#[tokio::test]
async fn connect_reports_a_bad_url_and_an_absent_server_without_hanging() {
    let err = RedisBackend::connect("http://not-redis/")
        .await
        .expect_err("a bad scheme");
    assert!(matches!(err, RedisConnectError::InvalidUrl(_)), "{err}");

    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let started = Instant::now();
    let err = RedisBackend::builder(&format!("redis://127.0.0.1:{port}/"))
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(
            err,
            RedisConnectError::Unreachable(_) | RedisConnectError::Timeout(_)
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_lazy_backend_starts_without_redis_and_serves_once_it_is_up() {
    let mut server = redis_or_skip!();
    server.kill();
    let backend = RedisBackend::builder(&server.url())
        .timeout(Duration::from_millis(200))
        .connect_lazy()
        .expect("lazy backend");
    let policy = Arc::new(Policy::new("lazy", slow_quota(5)));
    let set = single(&policy, "k");
    let started = Instant::now();
    assert!(backend.acquire(&set).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(900));
    server.restart();
    let outcome = support::retry_until_ok("never connected", || backend.acquire(&set)).await;
    assert!(outcome.allowed());
}

#[tokio::test]
async fn absorb_counts_over_the_limit_and_keeps_the_key_alive() {
    let server = redis_or_skip!();
    let backend = server.backend().await;
    let mut conn = server.client();
    for algorithm in every_algorithm() {
        let policy = Arc::new(
            Policy::new(format!("absorb-{}", algorithm.name()), slow_quota(2))
                .with_algorithm(algorithm),
        );
        let set = LimitSet::single(policy.clone(), Key::from("a"), 3);
        let o = backend.absorb(&set).await.expect("absorb");
        assert!(
            !o.allowed(),
            "{}: 3 units do not fit in 2",
            algorithm.name()
        );
        assert_eq!(o.decisions()[0].remaining, 0, "{}", algorithm.name());
        let next = backend
            .acquire(&single(&policy, "a"))
            .await
            .expect("acquire");
        assert!(!next.allowed(), "{}", algorithm.name());
        let pttl: i64 = conn
            .pttl(backend.key_name(&policy, &Key::from("a")))
            .expect("PTTL");
        assert!(pttl > 0, "{}: PTTL {pttl}", algorithm.name());
    }
}

#[tokio::test]
async fn a_failover_chain_writes_an_outage_back_into_a_restarted_redis() {
    use tollgate::backend::{CircuitBreaker, Failover, MemoryBackend};

    let mut server = redis_or_skip!();
    let redis = server
        .backend_timing_out_after(Duration::from_millis(200))
        .await;
    let chain = Failover::builder(redis.clone(), MemoryBackend::new())
        .breaker(
            CircuitBreaker::builder()
                .failure_threshold(1)
                .backoff(Duration::from_millis(50), Duration::from_millis(200))
                .build(),
        )
        .build();
    let policy = Arc::new(Policy::new("outage", slow_quota(10)));
    let set = single(&policy, "client");

    server.kill();
    for i in 0..6 {
        let o = chain.acquire(&set).await.expect("the fallback answers");
        assert!(o.allowed(), "request {i} during the outage");
    }

    // Redis comes back empty; the chain probes it, then writes the six
    // units admitted locally into it (in the background).
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = 0;
    while !chain.health().status.is_healthy() {
        assert!(
            Instant::now() < deadline,
            "never healthy: {}",
            chain.health()
        );
        let _ = chain.acquire(&set).await;
        after += 1;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // At most `after` requests reached Redis (at least the probe): without
    // the write-back, at least 10 - after would remain.
    assert!(after <= 6, "{after} requests to recover: inconclusive");
    loop {
        let remaining = redis.peek(&set).await.map(|o| o.decisions()[0].remaining);
        if let Ok(r) = remaining {
            if r + 6 < 10 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "never written back: {remaining:?}, {}",
            chain.health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn acquire_reports_the_server_instant_and_a_refund_there_gives_the_quota_back() {
    let server = redis_or_skip!();
    let backend = server.backend().await;
    let mut conn = server.client();
    for algorithm in every_algorithm() {
        let name = algorithm.name();
        let policy = Arc::new(
            Policy::new(format!("refund-{name}"), slow_quota(2)).with_algorithm(algorithm),
        );
        let set = single(&policy, "r");
        let first = backend.acquire(&set).await.expect("acquire");
        assert!(first.allowed(), "{name}");
        let at = first.at().expect("the server instant");
        // The instant is the server's TIME: close to this machine's clock.
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64;
        assert!(
            at.as_u64().abs_diff(wall) < 60_000_000_000,
            "{name}: {at:?}"
        );
        let second = backend.acquire(&set).await.expect("acquire");
        assert!(second.allowed(), "{name}");
        assert!(
            !backend.acquire(&set).await.expect("acquire").allowed(),
            "{name}"
        );
        let key = backend.key_name(&policy, &Key::from("r"));
        let ttl_before: i64 = conn.pttl(&key).expect("PTTL");
        // Give the second request back: exactly one more passes.
        let back = backend
            .refund(&set, second.at().expect("instant"))
            .await
            .expect("refund");
        assert_eq!(back.at(), second.at(), "{name}");
        assert_eq!(back.decisions()[0].remaining, 1, "{name}");
        let ttl_after: i64 = conn.pttl(&key).expect("PTTL");
        assert!(
            ttl_after > 0 && ttl_after <= ttl_before,
            "{name}: {ttl_before} -> {ttl_after}"
        );
        assert!(
            backend.acquire(&set).await.expect("acquire").allowed(),
            "{name}"
        );
        assert!(
            !backend.acquire(&set).await.expect("acquire").allowed(),
            "{name}"
        );
        // A refund of an absent key creates nothing.
        let absent = single(&policy, "never-seen");
        let out = backend.refund_at(&absent, at).await.expect("refund");
        assert_eq!(out.decisions()[0].remaining, 2, "{name}");
        let exists: bool = conn
            .exists(backend.key_name(&policy, &Key::from("never-seen")))
            .expect("EXISTS");
        assert!(!exists, "{name}");
    }
}

#[tokio::test]
async fn a_refund_is_one_evalsha_and_matches_the_memory_backend() {
    use tollgate::backend::MemoryBackend;
    let server = redis_or_skip!();
    let redis = server.backend().await;
    let memory = MemoryBackend::new();
    let t = tollgate::time::Nanos::from_secs(1_700_000_040);
    let mut set = LimitSet::new();
    for algorithm in every_algorithm() {
        let p = Arc::new(
            Policy::new(
                format!("refund-many-{}", algorithm.name()),
                Quota::per_second(3),
            )
            .with_algorithm(algorithm),
        );
        set.push(p, Key::from("m"), 1);
    }
    for _ in 0..2 {
        let r = redis.acquire_at(&set, t).await.expect("acquire");
        assert_eq!(r, memory.acquire_at(&set, t));
        assert_eq!(r.at(), Some(t));
    }
    let before = server.command_stats();
    let r = redis.refund_at(&set, t).await.expect("refund");
    let after = server.command_stats();
    assert_eq!(r, memory.refund_at(&set, t));
    assert_eq!(r.at(), Some(t));
    assert!(r.decisions().iter().all(|d| d.remaining == 2), "{r:?}");
    let evalsha = |info: &str| support::command_calls(info, "evalsha").unwrap_or(0);
    assert_eq!(evalsha(&after), evalsha(&before) + 1);
}
