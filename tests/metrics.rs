//! What the layer counts through the `metrics` facade, read back from a
//! real Prometheus recorder (`metrics-exporter-prometheus`, installed once
//! for this test binary): decisions per policy and outcome, near-limit,
//! requests settled before any limit, key rejections, the sampled gauges,
//! label escaping. Each test uses its own policy names, so the tests of
//! this binary can share the recorder.
#![cfg(feature = "metrics")]

mod common;
#[cfg(feature = "redis")]
mod support;

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{HeaderName, Request, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::ServiceExt;

use tollgate::backend::Backend;
use tollgate::settings::AccessList;
use tollgate::{key, FailMode, Quota, RateLimitLayer};

use common::Down;

/// The recorder of this binary.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of this test binary")
    })
}

/// The value of the series `name{labels}` in the rendered text (labels in
/// the exporter's order: as registered), or `None`.
fn value(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = prometheus().render();
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (series, value) = rest.rsplit_once(' ')?;
        let wanted = labels
            .iter()
            .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")));
        let same_count = series.matches("=\"").count() == labels.len();
        (wanted && same_count && (series.is_empty() || series.starts_with('{')))
            .then(|| value.parse().ok())
            .flatten()
    })
}

fn counted(policy: &str, outcome: &str) -> f64 {
    value(
        "tollgate_decisions_total",
        &[("policy", policy), ("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

fn app(layer: RateLimitLayer<impl key::KeyExtractor, impl Backend>) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/health", get(|| async { "ok" }))
        .layer(layer)
}

/// A GET of `path` from `ip`.
fn from(ip: &str, path: &str) -> Request<Body> {
    common::req("GET", path, ip)
}

async fn status(app: &Router, req: Request<Body>) -> StatusCode {
    match app.clone().oneshot(req).await {
        Ok(res) => res.status(),
        Err(never) => match never {},
    }
}

#[tokio::test]
async fn allowed_and_denied_requests_are_counted_per_policy() {
    prometheus();
    let layer = RateLimitLayer::builder()
        .name("counted-alpha")
        .quota(Quota::per_minute(3))
        .build()
        .expect("a layer");
    let app = app(layer);
    for _ in 0..5 {
        status(&app, from("198.51.100.1", "/")).await;
    }
    assert_eq!(counted("counted-alpha", "allowed"), 3.0);
    assert_eq!(counted("counted-alpha", "denied"), 2.0);
    // 1/3, 2/3 and 3/3 used: only the third is at or over 0.8.
    let near = value("tollgate_near_limit_total", &[("policy", "counted-alpha")]);
    assert_eq!(near, Some(1.0));
}

#[tokio::test]
async fn the_near_limit_share_is_configurable_and_checked() {
    prometheus();
    let layer = RateLimitLayer::builder()
        .name("counted-near")
        .quota(Quota::per_minute(4))
        .near_limit_ratio(0.5)
        .build()
        .expect("a layer");
    let app = app(layer);
    for _ in 0..4 {
        status(&app, from("198.51.100.2", "/")).await;
    }
    // 2/4, 3/4 and 4/4 are at or over half.
    let near = value("tollgate_near_limit_total", &[("policy", "counted-near")]);
    assert_eq!(near, Some(3.0));

    for ratio in [0.0, -0.5, 1.5, f64::NAN] {
        let error = RateLimitLayer::builder()
            .quota(Quota::per_minute(4))
            .near_limit_ratio(ratio)
            .build()
            .expect_err("not a share of the limit");
        assert!(error.to_string().contains("near_limit_ratio"), "{error}");
    }
}

#[tokio::test]
async fn requests_settled_before_any_limit_are_counted_under_the_default_policy() {
    prometheus();
    let deny: ipnet::IpNet = "192.0.2.0/24".parse().expect("a network");
    let layer = RateLimitLayer::builder()
        .name("counted-settled")
        .quota(Quota::per_minute(100))
        .exempt("/health")
        .access(AccessList::new().denying([deny]))
        .build()
        .expect("a layer");
    let app = app(layer);
    assert_eq!(
        status(&app, from("198.51.100.3", "/health")).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, from("192.0.2.9", "/")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&app, from("198.51.100.3", "/")).await,
        StatusCode::OK
    );
    assert_eq!(counted("counted-settled", "unlimited"), 1.0);
    assert_eq!(counted("counted-settled", "forbidden"), 1.0);
    assert_eq!(counted("counted-settled", "allowed"), 1.0);
}

#[tokio::test]
async fn rejected_keys_are_counted_by_status() {
    prometheus();
    let layer = RateLimitLayer::builder()
        .name("counted-keys")
        .key(key::Header::new(HeaderName::from_static("x-api-key")))
        .quota(Quota::per_minute(100))
        .build()
        .expect("a layer");
    let app = app(layer);
    let answer = status(&app, from("198.51.100.4", "/")).await;
    assert_eq!(answer, StatusCode::UNAUTHORIZED);
    assert_eq!(counted("counted-keys", "key_rejected"), 1.0);
    let by_status = value(
        "tollgate_key_rejections_total",
        &[("policy", "counted-keys"), ("status", "401")],
    );
    assert_eq!(by_status, Some(1.0));
}

#[tokio::test]
async fn shadow_mode_counts_what_it_would_have_denied() {
    prometheus();
    let layer = RateLimitLayer::builder()
        .name("counted-shadow")
        .quota(Quota::per_minute(1))
        .shadow(true)
        .build()
        .expect("a layer");
    let app = app(layer);
    for _ in 0..3 {
        assert_eq!(
            status(&app, from("198.51.100.5", "/")).await,
            StatusCode::OK
        );
    }
    assert_eq!(counted("counted-shadow", "allowed"), 1.0);
    assert_eq!(counted("counted-shadow", "shadow_denied"), 2.0);
    assert_eq!(counted("counted-shadow", "denied"), 0.0);
}

#[tokio::test]
async fn a_failing_backend_is_counted_by_fail_mode_and_error_kind() {
    prometheus();
    for (name, mode, answer, outcome) in [
        ("counted-open", FailMode::Open, StatusCode::OK, "fail_open"),
        (
            "counted-closed",
            FailMode::Closed,
            StatusCode::SERVICE_UNAVAILABLE,
            "fail_closed",
        ),
    ] {
        let layer = RateLimitLayer::builder()
            .name(name)
            .quota(Quota::per_minute(10))
            .backend(Down)
            .fail_mode(mode)
            .build()
            .expect("a layer");
        let app = app(layer);
        assert_eq!(status(&app, from("198.51.100.6", "/")).await, answer);
        assert_eq!(status(&app, from("198.51.100.6", "/")).await, answer);
        assert_eq!(counted(name, outcome), 2.0, "{name}");
    }
    let errors = value(
        "tollgate_backend_errors_total",
        &[
            ("layer", "counted-open"),
            ("backend", "down"),
            ("kind", "connection"),
        ],
    );
    assert_eq!(errors, Some(2.0));
}

/// Policy names are checked at build (letters, digits, `- _ . : /`), so
/// every one is a valid label value; the exporter escapes what it must.
#[tokio::test]
async fn policy_names_with_punctuation_are_label_values_as_they_are() {
    prometheus();
    let layer = RateLimitLayer::builder()
        .name("counted/v1:login.post_2-x")
        .quota(Quota::per_minute(5))
        .build()
        .expect("a layer");
    let app = app(layer);
    status(&app, from("198.51.100.7", "/")).await;
    assert_eq!(counted("counted/v1:login.post_2-x", "allowed"), 1.0);
}

#[tokio::test]
async fn the_gauges_are_sampled_in_the_background() {
    prometheus();
    let backend = tollgate::backend::MemoryBackend::builder()
        .max_keys(5_000)
        .build();
    let layer = RateLimitLayer::builder()
        .name("counted-gauges")
        .quota(Quota::per_minute(10))
        .backend(backend)
        .metrics_interval(Duration::from_millis(20))
        .build()
        .expect("a layer");
    let app = app(layer);
    for i in 0..7 {
        status(&app, from(&format!("203.0.113.{i}"), "/")).await;
    }
    // The sampler reads the table within an interval or two.
    let labels = [("layer", "counted-gauges"), ("backend", "memory")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let max = value("tollgate_memory_max_keys", &labels);
        let keys = value("tollgate_memory_keys", &labels);
        if max == Some(5_000.0) && keys == Some(7.0) {
            break;
        }
        let text = prometheus().render();
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sample of the table within 5 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn the_readme_lists_every_metric_with_its_labels() {
    let readme = include_str!("../README.md");
    for metric in tollgate::metrics::names::ALL {
        let labels: Vec<String> = metric.labels.iter().map(|l| format!("`{l}`")).collect();
        let row = format!("| `{}` |", metric.name);
        let line = readme
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("README.md has no row for {}", metric.name));
        assert!(
            line.contains(&labels.join(", ")),
            "README.md's row for {} should list the labels {labels:?}: {line}",
            metric.name
        );
    }
}

#[tokio::test]
async fn the_most_denied_clients_are_listed_by_address_and_hash() {
    prometheus();
    let layer = RateLimitLayer::builder()
        .name("counted-top")
        .quota(Quota::per_minute(1))
        .metrics_interval(Duration::from_millis(20))
        .build()
        .expect("a layer");
    let app = app(layer.clone());
    // 192.0.2.1 is denied 5 times, .2 three times, .3 once, .4 never.
    for (ip, requests) in [
        ("192.0.2.1", 6),
        ("192.0.2.2", 4),
        ("192.0.2.3", 2),
        ("192.0.2.4", 1),
    ] {
        for _ in 0..requests {
            status(&app, from(ip, "/")).await;
        }
    }
    let top = layer.top_keys("counted-top", 10);
    let seen: Vec<(Option<&str>, u64)> =
        top.iter().map(|k| (k.label.as_deref(), k.count)).collect();
    assert_eq!(
        seen,
        [
            (Some("192.0.2.1"), 5),
            (Some("192.0.2.2"), 3),
            (Some("192.0.2.3"), 1)
        ]
    );
    let hash = tollgate::key::Key::from_ip("192.0.2.1".parse().expect("an address")).stable_hash();
    assert_eq!(top[0].hash, hash, "the same hash as the logs' k:…");
    assert!(top.iter().all(|k| k.error == 0), "exact below the capacity");
    assert!(layer.top_keys("no-such-policy", 10).is_empty());

    // The gauge ranks them without naming them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while value(
        "tollgate_top_keys_denied",
        &[("policy", "counted-top"), ("rank", "2")],
    ) != Some(3.0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sample of the top keys within 5 s:\n{}",
            prometheus().render()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn keys_that_may_be_credentials_are_never_labelled() {
    prometheus();
    let layer = RateLimitLayer::builder()
        .name("counted-secret")
        .key(key::Header::new(HeaderName::from_static("x-api-key")))
        .quota(Quota::per_minute(1))
        .build()
        .expect("a layer");
    let app = app(layer.clone());
    for _ in 0..3 {
        let mut req = from("198.51.100.8", "/");
        req.headers_mut()
            .insert("x-api-key", http::HeaderValue::from_static("sk-live-123"));
        status(&app, req).await;
    }
    let top = layer.top_keys("counted-secret", 10);
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].count, 2);
    assert_eq!(top[0].label, None, "an API key is not shown");
}

/// A real Redis: its calls are timed per operation and its median latency
/// shows in the health; once it is killed, connection errors are counted by
/// kind and the health says it fails.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_networked_backend_is_timed_and_its_errors_counted_by_kind() {
    prometheus();
    let Some(mut redis) = support::RedisServer::start() else {
        return;
    };
    let backend = redis
        .backend_timing_out_after(Duration::from_millis(500))
        .await;
    let layer = RateLimitLayer::builder()
        .name("counted-redis")
        .quota(Quota::per_minute(100))
        .backend(backend)
        .build()
        .expect("a layer");
    let app = app(layer.clone());
    for _ in 0..3 {
        assert_eq!(
            status(&app, from("198.51.100.9", "/")).await,
            StatusCode::OK
        );
    }
    let timed = value(
        "tollgate_backend_duration_seconds_count",
        &[
            ("layer", "counted-redis"),
            ("backend", "redis"),
            ("operation", "acquire"),
        ],
    );
    assert_eq!(timed, Some(3.0), "{}", prometheus().render());
    let health = layer.health();
    assert_eq!(health.backends[0].kind, "redis");
    assert!(health.backends[0].p50_latency.is_some());

    redis.kill();
    assert_eq!(
        status(&app, from("198.51.100.9", "/")).await,
        StatusCode::OK,
        "fail open"
    );
    let text = prometheus().render();
    let failed: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("tollgate_backend_errors_total{")
                && l.contains(r#"layer="counted-redis""#)
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(failed, 1.0, "{text}");
    assert!(
        text.contains(r#"layer="counted-redis",backend="redis",kind="connection""#)
            || text.contains(r#"layer="counted-redis",backend="redis",kind="timeout""#),
        "a dead server is a connection error or a timeout:\n{text}"
    );
    assert_eq!(counted("counted-redis", "fail_open"), 1.0);
    assert_eq!(layer.health().status(), tollgate::health::Status::Failing);
}
