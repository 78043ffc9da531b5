//! Policies through a real `Router`: the route table's stacked levels
//! (all-or-nothing), exemptions, tiers, per-key overrides, costs from the
//! request, refunds by response, per-policy shadow mode, per-rule keys.

mod common;

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use tollgate::key::{self, Key};
use tollgate::policy::{Cost, Rule, Tiers};
use tollgate::{Quota, RateLimitLayer};

use common::{header, req, send};

fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { "home" }))
        .route("/health", get(|| async { "ok" }))
        .route("/api/items", get(|| async { "items" }))
        .route(
            "/api/search",
            get(|| async { "results" }).post(|| async { "posted" }),
        )
        .route("/beta", get(|| async { "beta" }))
        .route("/upload", post(|| async { "stored" }))
        .route(
            "/login",
            post(|req: Request<Body>| async move {
                let ok = req
                    .headers()
                    .get("x-password")
                    .is_some_and(|v| v == "right");
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        )
}

/// global 5/h everywhere but /health, api 3/h under /api, search 2/h on
/// GET /api/search, beta 1/h on GET /beta in shadow mode. Hours, so no
/// refill happens during a test.
fn stacked() -> RateLimitLayer {
    RateLimitLayer::builder()
        .quota(Quota::per_hour(5))
        .name("global")
        .group("/api/*", Rule::new("api", Quota::per_hour(3)))
        .route("GET /api/search", Rule::new("search", Quota::per_hour(2)))
        .route(
            "GET /beta",
            Rule::new("beta", Quota::per_hour(1)).shadow(true),
        )
        .exempt("/health")
        .build()
        .unwrap()
}

async fn problem(res: Response<Body>) -> serde_json::Value {
    let body = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn a_request_is_checked_against_every_level_and_the_response_names_them_all() {
    let app = routes().layer(stacked());
    let res = send(&app, req("GET", "/api/search", "192.0.2.1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let policy = header(&res, "ratelimit-policy");
    for item in [
        "\"global\";q=5;w=3600",
        "\"api\";q=3;w=3600",
        "\"search\";q=2;w=3600",
    ] {
        assert!(policy.contains(item), "{policy}");
    }
    // X-RateLimit-* speak for the level closest to denying: search.
    assert_eq!(header(&res, "x-ratelimit-limit"), "2");
    assert_eq!(header(&res, "x-ratelimit-remaining"), "1");

    let res = send(&app, req("GET", "/", "192.0.2.1")).await;
    assert_eq!(header(&res, "ratelimit-policy"), "\"global\";q=5;w=3600");
}

#[tokio::test]
async fn a_request_denied_by_one_level_consumes_nothing_at_any_level() {
    let app = routes().layer(stacked());
    for _ in 0..2 {
        let res = send(&app, req("GET", "/api/search", "192.0.2.2")).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    for _ in 0..3 {
        let res = send(&app, req("GET", "/api/search", "192.0.2.2")).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(header(&res, "ratelimit-policy").contains("\"api\""));
        let body = problem(res).await;
        assert_eq!(body["violated-policies"], serde_json::json!(["search"]));
    }
    // The three denials took nothing from api (3 - 2 = 1 left) or global.
    let res = send(&app, req("GET", "/api/items", "192.0.2.2")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-remaining"), "0", "api: 1 - 1");
    let res = send(&app, req("GET", "/api/items", "192.0.2.2")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        problem(res).await["violated-policies"],
        serde_json::json!(["api"])
    );
    // global had 5, used 3: two more outside /api.
    for expected in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let res = send(&app, req("GET", "/", "192.0.2.2")).await;
        assert_eq!(res.status(), expected);
    }
}

#[tokio::test]
async fn a_429_lists_every_level_that_denied() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .name("global")
        .group("/api", Rule::new("api", Quota::per_hour(1)))
        .build()
        .unwrap();
    let app = routes().layer(layer);
    assert_eq!(
        send(&app, req("GET", "/api/items", "192.0.2.3"))
            .await
            .status(),
        StatusCode::OK
    );
    let res = send(&app, req("GET", "/api/items", "192.0.2.3")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = problem(res).await;
    assert_eq!(
        body["violated-policies"],
        serde_json::json!(["global", "api"])
    );
}

#[tokio::test]
async fn exempt_routes_are_never_limited_and_methods_select_routes() {
    let app = routes().layer(stacked());
    for _ in 0..5 {
        send(&app, req("GET", "/", "192.0.2.4")).await;
    }
    assert_eq!(
        send(&app, req("GET", "/", "192.0.2.4")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..20 {
        let res = send(&app, req("GET", "/health", "192.0.2.4")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(!res.headers().contains_key("ratelimit-policy"));
    }
    // POST /api/search is not the GET route: only global and api apply.
    let app = routes().layer(stacked());
    let res = send(&app, req("POST", "/api/search", "192.0.2.5")).await;
    assert_eq!(
        header(&res, "ratelimit-policy"),
        "\"global\";q=5;w=3600, \"api\";q=3;w=3600"
    );
    // HEAD is covered by a GET route, as in axum.
    let res = send(&app, req("HEAD", "/api/search", "192.0.2.5")).await;
    assert!(header(&res, "ratelimit-policy").contains("\"search\""));
}

#[tokio::test]
async fn a_shadow_level_reports_but_never_blocks_nor_speaks_in_the_headers() {
    let app = routes().layer(stacked());
    for remaining in ["4", "3", "2"] {
        let res = send(&app, req("GET", "/beta", "192.0.2.6")).await;
        assert_eq!(res.status(), StatusCode::OK, "beta is shadow");
        // Only the enforced level speaks: a client that honours the
        // headers must not back off from a limit that is not enforced.
        assert_eq!(header(&res, "ratelimit-policy"), "\"global\";q=5;w=3600");
        assert_eq!(header(&res, "x-ratelimit-remaining"), remaining);
        assert!(!header(&res, "ratelimit").contains("beta"));
    }
    // The enforcing level still counted all three.
    for expected in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        assert_eq!(
            send(&app, req("GET", "/", "192.0.2.6")).await.status(),
            expected
        );
    }
}

#[tokio::test]
async fn shadow_headers_show_a_shadow_level_in_the_headers() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(5))
        .name("global")
        .route(
            "GET /beta",
            Rule::new("beta", Quota::per_hour(1)).shadow(true),
        )
        .shadow_headers(true)
        .build()
        .unwrap();
    let app = routes().layer(layer);
    send(&app, req("GET", "/beta", "192.0.2.16")).await;
    let res = send(&app, req("GET", "/beta", "192.0.2.16")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        header(&res, "ratelimit").contains("\"beta\";r=0"),
        "{:?}",
        res.headers()
    );
}

#[tokio::test]
async fn a_429_waits_for_the_enforced_levels_even_when_shadow_levels_are_shown() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .name("minute")
        .route(
            "GET /beta",
            Rule::new("beta", Quota::per_day(1)).shadow(true),
        )
        .shadow_headers(true)
        .build()
        .unwrap();
    let app = routes().layer(layer);
    send(&app, req("GET", "/beta", "192.0.2.17")).await;
    let res = send(&app, req("GET", "/beta", "192.0.2.17")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&res, "ratelimit").contains("\"beta\""), "shown");
    // The minute's wait, not the shadow day's.
    let wait: u64 = header(&res, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

#[derive(Clone)]
struct Plan(&'static str);

fn with_plan(mut r: Request<Body>, plan: &'static str) -> Request<Body> {
    r.extensions_mut().insert(Plan(plan));
    r
}

#[tokio::test]
async fn tiers_give_each_plan_its_quota_and_unknown_plans_the_base() {
    let layer = RateLimitLayer::builder()
        .policy(
            Rule::new("api", Quota::per_hour(1)).tiers(
                Tiers::from_extension(|p: &Plan| p.0)
                    .tier("free", Quota::per_hour(2))
                    .tier("pro", Quota::per_hour(4))
                    .unlimited("internal"),
            ),
        )
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let admitted = |plan: Option<&'static str>, ip: &'static str| {
        let app = app.clone();
        async move {
            let mut n = 0;
            for _ in 0..10 {
                let r = req("GET", "/", ip);
                let r = match plan {
                    Some(p) => with_plan(r, p),
                    None => r,
                };
                if send(&app, r).await.status() == StatusCode::OK {
                    n += 1;
                }
            }
            n
        }
    };
    assert_eq!(
        admitted(None, "192.0.2.10").await,
        1,
        "no plan: the base quota"
    );
    assert_eq!(admitted(Some("free"), "192.0.2.11").await, 2);
    assert_eq!(admitted(Some("pro"), "192.0.2.12").await, 4);
    assert_eq!(
        admitted(Some("gold"), "192.0.2.13").await,
        1,
        "unlisted: the base"
    );
    assert_eq!(admitted(Some("internal"), "192.0.2.14").await, 10);
    let res = send(&app, with_plan(req("GET", "/", "192.0.2.15"), "pro")).await;
    assert_eq!(
        header(&res, "ratelimit-policy"),
        "\"api\";q=4;w=3600",
        "same name, tier's quota"
    );
}

#[tokio::test]
async fn a_tier_can_come_from_a_closure_over_the_request() {
    let layer = RateLimitLayer::builder()
        .key(key::Global)
        .policy(
            Rule::new("api", Quota::per_hour(1)).tiers(
                Tiers::from_fn(|parts| {
                    parts
                        .headers
                        .get("x-plan")?
                        .to_str()
                        .ok()
                        .map(str::to_owned)
                })
                .tier("pro", Quota::per_hour(3)),
            ),
        )
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let mut r = Request::get("/").body(Body::empty()).unwrap();
    r.headers_mut().insert("x-plan", "pro".parse().unwrap());
    let res = send(&app, r).await;
    assert_eq!(header(&res, "x-ratelimit-limit"), "3");
    // A non-UTF-8 plan header is no plan.
    let mut r = Request::get("/").body(Body::empty()).unwrap();
    r.headers_mut()
        .insert("x-plan", http::HeaderValue::from_bytes(b"\xffpro").unwrap());
    let res = send(&app, r).await;
    assert_eq!(header(&res, "x-ratelimit-limit"), "1");
}

#[tokio::test]
async fn overrides_change_one_keys_quota_until_cleared_or_expired() {
    let layer = stacked();
    let app = routes().layer(layer.clone());
    let vip = Key::from_ip("192.0.2.20".parse().unwrap());
    layer
        .overrides()
        .set(vip.clone(), Quota::per_hour(8), None)
        .await
        .unwrap();
    let mut ok = 0;
    for _ in 0..12 {
        if send(&app, req("GET", "/", "192.0.2.20")).await.status() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 8, "the override's quota, not global's 5");
    // Another client keeps the default.
    let res = send(&app, req("GET", "/", "192.0.2.21")).await;
    assert_eq!(header(&res, "x-ratelimit-limit"), "5");

    // Per policy: search for this client only.
    let other = Key::from_ip("192.0.2.22".parse().unwrap());
    layer
        .overrides()
        .set_for("search", other.clone(), Quota::per_hour(3), None)
        .await
        .unwrap();
    let res = send(&app, req("GET", "/api/search", "192.0.2.22")).await;
    assert!(header(&res, "ratelimit-policy").contains("\"search\";q=3;w=3600"));

    // Cleared: back to the policy's quota (counters kept: 8 used > 5).
    assert!(layer.overrides().clear(&vip).await.unwrap());
    let res = send(&app, req("GET", "/", "192.0.2.20")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "x-ratelimit-limit"), "5");

    // Expired: ignored at once.
    let gone = Key::from_ip("192.0.2.23".parse().unwrap());
    let past = SystemTime::now() - Duration::from_secs(1);
    layer
        .overrides()
        .set(gone.clone(), Quota::per_hour(100), past)
        .await
        .unwrap();
    let res = send(&app, req("GET", "/", "192.0.2.23")).await;
    assert_eq!(header(&res, "x-ratelimit-limit"), "5");
    assert!(layer.overrides().get(&gone).is_none());
}

#[tokio::test]
async fn cost_from_content_length_counts_bytes_and_says_so() {
    let layer = RateLimitLayer::builder()
        .policy(Rule::new("bytes", Quota::per_hour(1_000)).cost(Cost::content_length_or(500)))
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let upload = |len: &'static [u8]| {
        let mut r = req("POST", "/upload", "192.0.2.30");
        r.headers_mut().insert(
            "content-length",
            http::HeaderValue::from_bytes(len).unwrap(),
        );
        r
    };
    let res = send(&app, upload(b"400")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, "ratelimit-policy"),
        "\"bytes\";q=1000;qu=\"content-bytes\";w=3600"
    );
    assert_eq!(header(&res, "x-ratelimit-remaining"), "600");
    // Malformed (and absent) lengths pay the configured 500.
    let res = send(&app, upload(b"12abc")).await;
    assert_eq!(header(&res, "x-ratelimit-remaining"), "100");
    let res = send(&app, upload(b"101")).await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "101 bytes > 100 left"
    );
    let res = send(&app, upload(b"100")).await;
    assert_eq!(res.status(), StatusCode::OK);
    // A request without a length (another client) pays 500 too.
    let res = send(&app, req("POST", "/upload", "192.0.2.31")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-remaining"), "500");
}

/// Two logins an hour, counting only the failed ones.
fn failed_logins_only() -> Rule {
    Rule::new("login", Quota::per_hour(2)).count_only(|res| res.status == StatusCode::UNAUTHORIZED)
}

/// A `POST /login` from `ip` with this password (`routes` answers 401 to
/// any other than "right").
fn login(ip: &str, password: &'static str) -> Request<Body> {
    let mut r = req("POST", "/login", ip);
    r.headers_mut()
        .insert("x-password", http::HeaderValue::from_static(password));
    r
}

#[tokio::test]
async fn count_only_still_refunds_when_no_headers_are_shown() {
    // HeaderStyle::None gathers nothing to show, but what counts only some
    // responses must still be settled.
    let layer = RateLimitLayer::builder()
        .headers(tollgate::headers::HeaderStyle::None)
        .route("POST /login", failed_logins_only())
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let login = |password| login("192.0.2.41", password);
    for _ in 0..5 {
        let res = send(&app, login("right")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("x-ratelimit-remaining").is_none());
    }
    for _ in 0..2 {
        let res = send(&app, login("wrong")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        send(&app, login("right")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn count_only_refunds_the_responses_that_do_not_count() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(100))
        .name("global")
        .route("POST /login", failed_logins_only())
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let login = |password| login("192.0.2.40", password);
    // Successful logins never use the quota up.
    for _ in 0..5 {
        assert_eq!(send(&app, login("right")).await.status(), StatusCode::OK);
    }
    // Failures do: two, then the limit.
    assert_eq!(
        send(&app, login("wrong")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, login("wrong")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let res = send(&app, login("right")).await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even a right password"
    );
    // global counted everything (refunds are per level).
    let res = send(&app, req("GET", "/", "192.0.2.40")).await;
    assert_eq!(
        header(&res, "x-ratelimit-remaining"),
        "92",
        "100 - 7 passed - this one"
    );
}

#[tokio::test]
async fn a_rule_can_have_its_own_key() {
    // The login route is keyed by the user name in a header, the rest by IP.
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(100))
        .name("global")
        .route(
            "POST /login",
            Rule::new("login", Quota::per_hour(1))
                .key(key::Header::new(http::HeaderName::from_static("x-user"))),
        )
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let login = |user: &'static str, ip: &'static str| {
        let mut r = req("POST", "/login", ip);
        r.headers_mut().insert("x-user", user.parse().unwrap());
        r.headers_mut()
            .insert("x-password", "right".parse().unwrap());
        r
    };
    assert_eq!(
        send(&app, login("ann", "192.0.2.50")).await.status(),
        StatusCode::OK
    );
    // Ann from another address is still Ann.
    assert_eq!(
        send(&app, login("ann", "192.0.2.51")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&app, login("bob", "192.0.2.50")).await.status(),
        StatusCode::OK
    );
    // No user header: the rule's extractor rejects (401), as documented.
    let res = send(&app, req("POST", "/login", "192.0.2.52")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_skipped_rule_key_leaves_only_that_level_out() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(2))
        .name("global")
        .route(
            "/api/*",
            Rule::new("tenant", Quota::per_hour(1)).key(
                key::Header::new(http::HeaderName::from_static("x-tenant"))
                    .on_missing(key::OnMissing::Skip),
            ),
        )
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let res = send(&app, req("GET", "/api/items", "192.0.2.60")).await;
    assert_eq!(header(&res, "ratelimit-policy"), "\"global\";q=2;w=3600");
    // With the header the rule's level applies again, beside the global one.
    let mut with_tenant = req("GET", "/api/items", "192.0.2.61");
    with_tenant
        .headers_mut()
        .insert("x-tenant", http::HeaderValue::from_static("acme"));
    let res = send(&app, with_tenant).await;
    assert_eq!(
        header(&res, "ratelimit-policy"),
        "\"global\";q=2;w=3600, \"tenant\";q=1;w=3600"
    );
}

#[test]
fn bad_patterns_and_quotas_fail_the_build_naming_the_culprit() {
    let e = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .route("api/search", Quota::per_hour(1))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("\"api/search\""), "{e}");
    let e = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .group("/api/*", Rule::new("api", Quota::per_hour(0)))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("\"api\""), "{e}");
    let e = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .policy(
            Rule::new("api", Quota::per_hour(1))
                .tiers(Tiers::from_fn(|_| None::<&str>).tier("pro", Quota::per_hour(0))),
        )
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("\"api\""), "{e}");
    // Routes alone are enough: no default level.
    let layer = RateLimitLayer::builder()
        .route("/x", Quota::per_hour(1))
        .build()
        .unwrap();
    assert!(layer.policy().is_none());
}

#[tokio::test]
async fn a_route_given_a_bare_quota_is_named_after_its_pattern() {
    let layer = RateLimitLayer::builder()
        .route("GET /api/search", Quota::per_hour(2))
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let res = send(&app, req("GET", "/api/search", "192.0.2.70")).await;
    assert_eq!(
        header(&res, "ratelimit-policy"),
        "\"GET_/api/search\";q=2;w=3600"
    );
    // Paths no level covers pass without headers.
    let res = send(&app, req("GET", "/", "192.0.2.70")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers().contains_key("ratelimit-policy"));
}

mod per_handler {
    use std::sync::LazyLock;

    use tollgate::backend::MemoryBackend;
    use tollgate::extract::{HandlerLimit, Limited};
    use tollgate::key::ClientIp;

    use super::*;

    static LOGIN: LazyLock<RateLimitLayer> = LazyLock::new(|| {
        RateLimitLayer::builder()
            .policy(Rule::new("login", Quota::per_hour(2)))
            .build()
            .unwrap()
    });

    struct Login;

    impl HandlerLimit for Login {
        type Key = ClientIp;
        type Backend = MemoryBackend;
        fn layer() -> &'static RateLimitLayer {
            &LOGIN
        }
    }

    async fn login(limited: Limited<Login>) -> (Limited<Login>, &'static str) {
        (limited, "welcome")
    }

    #[tokio::test]
    async fn an_extractor_limits_its_handler_only_and_adds_the_headers() {
        let app = Router::new()
            .route("/login", post(login))
            .route("/", get(|| async { "home" }));
        let res = send(&app, req("POST", "/login", "192.0.2.80")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit-policy"), "\"login\";q=2;w=3600");
        assert_eq!(header(&res, "x-ratelimit-remaining"), "1");
        assert_eq!(
            send(&app, req("POST", "/login", "192.0.2.80"))
                .await
                .status(),
            StatusCode::OK
        );
        let res = send(&app, req("POST", "/login", "192.0.2.80")).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(res.headers().contains_key("retry-after"));
        assert_eq!(
            problem(res).await["violated-policies"],
            serde_json::json!(["login"])
        );
        // Other handlers and other clients are untouched.
        assert_eq!(
            send(&app, req("GET", "/", "192.0.2.80")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            send(&app, req("POST", "/login", "192.0.2.81"))
                .await
                .status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn an_extractor_without_a_peer_address_answers_the_documented_500() {
        let app = Router::new().route("/login", post(login));
        let res = send(&app, Request::post("/login").body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn route_layer_limits_one_route_with_refunds() {
        let layer = RateLimitLayer::builder()
            .policy(
                Rule::new("login", Quota::per_hour(1))
                    .count_only(|res| res.status == StatusCode::UNAUTHORIZED),
            )
            .build()
            .unwrap();
        let app = routes().route_layer(layer);
        let login = |password| super::login("192.0.2.82", password);
        assert_eq!(send(&app, login("right")).await.status(), StatusCode::OK);
        assert_eq!(send(&app, login("right")).await.status(), StatusCode::OK);
        assert_eq!(
            send(&app, login("wrong")).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(&app, login("right")).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}

#[cfg(feature = "schedule")]
#[tokio::test]
async fn a_scheduled_rule_applies_the_quota_of_the_current_window() {
    use tollgate::policy::Schedule;
    // A window covering the whole week: its quota applies whenever the
    // test runs; the windows themselves are tested at DST transitions in
    // the schedule module.
    let schedule = Schedule::new("Europe/Paris", Quota::per_hour(1))
        .unwrap()
        .daily("00:00", "24:00", Quota::per_hour(3))
        .unwrap();
    let layer = RateLimitLayer::builder()
        .policy(Rule::new("office", Quota::per_hour(1)).schedule(schedule))
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let res = send(&app, req("GET", "/", "192.0.2.90")).await;
    assert_eq!(header(&res, "ratelimit-policy"), "\"office\";q=3;w=3600");
}

#[cfg(feature = "schedule")]
#[tokio::test]
async fn a_schedule_follows_the_layer_clock_across_its_windows() {
    use tollgate::policy::Schedule;
    use tollgate::time::{ManualClock, Nanos};
    // Monday 2026-11-30, 08:59:59 in Paris (UTC+1): the office window
    // opens at 09:00.
    let clock = ManualClock::starting_at(Nanos::from_secs(1_796_025_599));
    let schedule = Schedule::new("Europe/Paris", Quota::per_hour(1))
        .unwrap()
        .weekdays("09:00", "18:00", Quota::per_hour(3))
        .unwrap();
    let layer = RateLimitLayer::builder()
        .policy(Rule::new("office", Quota::per_hour(1)).schedule(schedule))
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let policy = |res: &Response<Body>| header(res, "ratelimit-policy");
    let res = send(&app, req("GET", "/", "192.0.2.91")).await;
    assert_eq!(policy(&res), "\"office\";q=1;w=3600", "before the window");
    clock.advance(std::time::Duration::from_secs(1));
    let res = send(&app, req("GET", "/", "192.0.2.91")).await;
    assert_eq!(policy(&res), "\"office\";q=3;w=3600", "at 09:00");
    clock.advance(std::time::Duration::from_secs(9 * 3600));
    let res = send(&app, req("GET", "/", "192.0.2.91")).await;
    assert_eq!(policy(&res), "\"office\";q=1;w=3600", "at 18:00, closed");
}

mod concurrency {
    use proptest::prelude::*;

    use super::*;

    /// Which levels a path is checked against: global, api, search.
    fn levels(path: &str) -> [bool; 3] {
        match path {
            "/api/search" => [true, true, true],
            "/api/items" => [true, true, false],
            _ => [true, false, false],
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Many clients' requests at once, in any mix of paths: what is
        /// admitted never exceeds any level's quota, and a level is used
        /// up only by requests that passed every level.
        #[test]
        fn stacked_levels_never_admit_more_than_any_quota_under_concurrency(
            paths in proptest::collection::vec(0..3usize, 1..80),
            tasks in 2..8usize,
        ) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            let admitted = runtime.block_on(async {
                let layer = RateLimitLayer::builder()
                    .quota(Quota::per_hour(20))
                    .name("global")
                    .group("/api/*", Rule::new("api", Quota::per_hour(10)))
                    .route("GET /api/search", Rule::new("search", Quota::per_hour(4)))
                    .build()
                    .unwrap();
                let app = routes().layer(layer);
                let paths: Vec<&'static str> = paths
                    .iter()
                    .map(|&i| ["/", "/api/items", "/api/search"][i])
                    .collect();
                let chunk = paths.len().div_ceil(tasks);
                let mut handles = Vec::new();
                for part in paths.chunks(chunk).map(<[_]>::to_vec) {
                    let app = app.clone();
                    handles.push(tokio::spawn(async move {
                        let mut ok = Vec::new();
                        for path in part {
                            let res = send(&app, req("GET", path, "192.0.2.99")).await;
                            if res.status() == StatusCode::OK {
                                ok.push(path);
                            }
                        }
                        ok
                    }));
                }
                let mut admitted = Vec::new();
                for h in handles {
                    admitted.extend(h.await.unwrap());
                }
                // What is left, level by level, after the storm.
                let res = send(&app, req("GET", "/api/search", "192.0.2.99")).await;
                let left = (res.status() == StatusCode::OK).then(|| header(&res, "ratelimit"));
                (admitted, left)
            });
            let (admitted, left) = admitted;
            let mut used = [0u64; 3];
            for path in &admitted {
                for (i, hit) in levels(path).iter().enumerate() {
                    used[i] += u64::from(*hit);
                }
            }
            prop_assert!(used[0] <= 20, "global admitted {}", used[0]);
            prop_assert!(used[1] <= 10, "api admitted {}", used[1]);
            prop_assert!(used[2] <= 4, "search admitted {}", used[2]);
            // Each level consumed exactly what was admitted through it, and
            // the final request: denials consumed nothing anywhere.
            if let Some(left) = left {
                let expected = format!(
                    "\"global\";r={}, \"api\";r={}, \"search\";r={}",
                    20 - used[0] - 1,
                    10 - used[1] - 1,
                    4 - used[2] - 1
                );
                let remaining: Vec<&str> = left.split(", ").map(|i| i.split(";t=").next().unwrap_or("")).collect();
                prop_assert_eq!(remaining.join(", "), expected);
            }
            // Nothing denied was consumed: if a level is short of its quota,
            // every request that only it could have denied passed.
            let wanted = |level: usize| paths
                .iter()
                .filter(|&&i| levels(["/", "/api/items", "/api/search"][i])[level])
                .count() as u64;
            if wanted(0) <= 20 && wanted(1) <= 10 && wanted(2) <= 4 {
                prop_assert_eq!(admitted.len(), paths.len(), "nothing over any quota: all pass");
            }
        }
    }
}
