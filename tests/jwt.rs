//! `key::Bearer`: real tokens signed in the test with `jsonwebtoken`,
//! verified through the extractor and through a real axum `Router`.
//!
//! The PEM keys under `tests/fixtures/jwt/` are test-only (see the README
//! there).
#![cfg(feature = "jwt")]

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;

use tollgate::key::{Bearer, Extracted, JwtAlgorithm, JwtError, Key, KeyExtractor, OnMissing};
use tollgate::{Quota, RateLimitLayer};

const SECRET: &str = "test-only secret, 32 bytes or more, never reuse";

const RSA_PRIVATE: &str = include_str!("fixtures/jwt/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/jwt/rsa_public.pem");
const RSA2_PRIVATE: &str = include_str!("fixtures/jwt/rsa2_private.pem");
const EC_PRIVATE: &str = include_str!("fixtures/jwt/ec_private.pem");
const EC_PUBLIC: &str = include_str!("fixtures/jwt/ec_public.pem");
const ED_PRIVATE: &str = include_str!("fixtures/jwt/ed25519_private.pem");
const ED_PUBLIC: &str = include_str!("fixtures/jwt/ed25519_public.pem");
const JWKS: &str = include_str!("fixtures/jwt/jwks.json");

fn now() -> u64 {
    get_current_timestamp()
}

/// Claims with `sub` and an `exp` an hour away, merged with `extra`.
fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({ "sub": sub, "exp": now() + 3600 });
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        claims,
    )
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

fn parts(authorization: Option<&[u8]>) -> http::request::Parts {
    let mut req = Request::get("/").body(()).unwrap();
    if let Some(v) = authorization {
        req.headers_mut()
            .insert("authorization", HeaderValue::from_bytes(v).unwrap());
    }
    req.into_parts().0
}

fn bearer_parts(token: &str) -> http::request::Parts {
    parts(Some(format!("Bearer {token}").as_bytes()))
}

#[track_caller]
fn key_of(bearer: &Bearer, token: &str) -> Key {
    match bearer.extract(&bearer_parts(token)) {
        Extracted::Key(k) => k,
        Extracted::Missing(p) => panic!("rejected: {} ({})", p.title(), p.detail()),
        other => panic!("unexpected {other:?}"),
    }
}

/// The 401 problem title for this request head; checks the problem never
/// quotes `secret_text`.
#[track_caller]
fn rejected(bearer: &Bearer, parts: &http::request::Parts, secret_text: &str) -> String {
    match bearer.extract(parts) {
        Extracted::Missing(p) => {
            assert_eq!(p.status(), StatusCode::UNAUTHORIZED);
            let json = p.to_json();
            if !secret_text.is_empty() {
                assert!(
                    !json.contains(secret_text),
                    "the problem echoes the token: {json}"
                );
            }
            p.title().to_owned()
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[track_caller]
fn rejected_token(bearer: &Bearer, token: &str) -> String {
    rejected(bearer, &bearer_parts(token), token)
}

fn app(bearer: Bearer, quota: Quota) -> Router {
    Router::new().route("/", get(|| async { "hello" })).layer(
        RateLimitLayer::builder()
            .key(bearer)
            .quota(quota)
            .build()
            .unwrap(),
    )
}

fn request(authorization: Option<&[u8]>) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    if let Some(v) = authorization {
        req.headers_mut()
            .insert("authorization", HeaderValue::from_bytes(v).unwrap());
    }
    req
}

fn with_token(token: &str) -> Request<Body> {
    request(Some(format!("Bearer {token}").as_bytes()))
}

async fn status(app: &Router, req: Request<Body>) -> StatusCode {
    app.clone().oneshot(req).await.unwrap().status()
}

/// Sends `req`, expects a 401 problem+json whose body does not contain
/// `secret_text`; returns the body.
async fn problem_401(app: &Router, req: Request<Body>, secret_text: &[u8]) -> Value {
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    if !secret_text.is_empty() {
        assert!(
            !body.windows(secret_text.len()).any(|w| w == secret_text),
            "the body echoes the token"
        );
    }
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 401);
    json
}

// ---------------------------------------------------------------- valid

#[tokio::test]
async fn hs256_tokens_with_the_same_sub_share_a_bucket_and_the_third_request_is_429() {
    let app = app(Bearer::hs256(SECRET).unwrap(), Quota::per_minute(2));
    // Two different tokens (different jti) for the same subject.
    let first = hs256(&claims("alice", json!({ "jti": "1" })));
    let second = hs256(&claims("alice", json!({ "jti": "2" })));
    assert_ne!(first, second);

    assert_eq!(status(&app, with_token(&first)).await, StatusCode::OK);
    assert_eq!(status(&app, with_token(&second)).await, StatusCode::OK);
    let res = app.clone().oneshot(with_token(&first)).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains(&first));

    // Another subject has its own bucket.
    let bob = hs256(&claims("bob", json!({})));
    assert_eq!(status(&app, with_token(&bob)).await, StatusCode::OK);
}

#[test]
fn hs256_token_is_keyed_by_its_sub() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let key = key_of(&bearer, &hs256(&claims("user-42", json!({}))));
    assert_eq!(key, Key::from("user-42"));
    assert!(!format!("{key:?}").contains("user-42"));
}

#[test]
fn scheme_is_case_insensitive() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let token = hs256(&claims("u", json!({})));
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let p = parts(Some(format!("{scheme} {token}").as_bytes()));
        assert!(matches!(bearer.extract(&p), Extracted::Key(_)), "{scheme}");
    }
}

#[test]
fn hs384_and_hs512_are_accepted_only_once_allowed() {
    let secret = EncodingKey::from_secret(SECRET.as_bytes());
    let t384 = sign(Algorithm::HS384, &secret, None, &claims("u", json!({})));
    let t512 = sign(Algorithm::HS512, &secret, None, &claims("u", json!({})));
    let default = Bearer::hs256(SECRET).unwrap();
    assert_eq!(rejected_token(&default, &t384), "Algorithm not allowed");
    let wide = default
        .algorithms([JwtAlgorithm::HS384, JwtAlgorithm::HS512])
        .unwrap();
    key_of(&wide, &t384);
    key_of(&wide, &t512);
    let t256 = hs256(&claims("u", json!({})));
    assert_eq!(rejected_token(&wide, &t256), "Algorithm not allowed");
}

#[tokio::test]
async fn rs256_token_verified_with_an_rsa_public_pem_passes_the_layer() {
    let app = app(Bearer::rsa_pem(RSA_PUBLIC).unwrap(), Quota::per_minute(1));
    let token = sign(
        Algorithm::RS256,
        &rsa_key(),
        None,
        &claims("carol", json!({})),
    );
    assert_eq!(status(&app, with_token(&token)).await, StatusCode::OK);
    assert_eq!(
        status(&app, with_token(&token)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[test]
fn ps256_is_accepted_with_an_rsa_key_once_allowed() {
    let token = sign(Algorithm::PS256, &rsa_key(), None, &claims("u", json!({})));
    let default = Bearer::rsa_pem(RSA_PUBLIC).unwrap();
    assert_eq!(rejected_token(&default, &token), "Algorithm not allowed");
    let pss = default
        .algorithms([JwtAlgorithm::RS256, JwtAlgorithm::PS256])
        .unwrap();
    assert_eq!(key_of(&pss, &token), Key::from("u"));
}

#[test]
fn es256_token_verified_with_an_ec_public_pem() {
    let bearer = Bearer::ec_pem(EC_PUBLIC).unwrap();
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::ES256, &key, None, &claims("dave", json!({})));
    assert_eq!(key_of(&bearer, &token), Key::from("dave"));
    // A P-256 key cannot verify ES384.
    assert!(matches!(
        bearer.algorithms([JwtAlgorithm::ES384]),
        Err(JwtError::AlgorithmNotForKey { .. })
    ));
}

#[test]
fn eddsa_token_verified_with_an_ed25519_public_pem() {
    let bearer = Bearer::ed_pem(ED_PUBLIC).unwrap();
    let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::EdDSA, &key, None, &claims("erin", json!({})));
    assert_eq!(key_of(&bearer, &token), Key::from("erin"));
}

#[test]
fn key_for_checks_a_bare_token_like_a_request() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let token = hs256(&claims("frank", json!({})));
    assert_eq!(bearer.key_for(&token).unwrap(), Key::from("frank"));
    let expired = hs256(&json!({ "sub": "frank", "exp": now() - 3600 }));
    assert_eq!(
        bearer.key_for(&expired).unwrap_err().title(),
        "Expired token"
    );
}

// ---------------------------------------------------------------- time

#[test]
fn expired_token_is_rejected() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let token = hs256(&json!({ "sub": "u", "exp": now() - 3600 }));
    assert_eq!(rejected_token(&bearer, &token), "Expired token");
}

#[test]
fn token_not_yet_valid_is_rejected() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let token = hs256(&claims("u", json!({ "nbf": now() + 3600 })));
    assert_eq!(rejected_token(&bearer, &token), "Token not yet valid");
}

#[test]
fn default_leeway_of_30_seconds_is_honoured_on_exp_and_nbf() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let just_expired = hs256(&json!({ "sub": "u", "exp": now() - 10 }));
    let almost_valid = hs256(&claims("u", json!({ "nbf": now() + 10 })));
    key_of(&bearer, &just_expired);
    key_of(&bearer, &almost_valid);
    let long_expired = hs256(&json!({ "sub": "u", "exp": now() - 90 }));
    assert_eq!(rejected_token(&bearer, &long_expired), "Expired token");
}

#[test]
fn leeway_is_configurable() {
    let strict = Bearer::hs256(SECRET).unwrap().leeway(Duration::ZERO);
    let just_expired = hs256(&json!({ "sub": "u", "exp": now() - 10 }));
    assert_eq!(rejected_token(&strict, &just_expired), "Expired token");
    let almost_valid = hs256(&claims("u", json!({ "nbf": now() + 10 })));
    assert_eq!(
        rejected_token(&strict, &almost_valid),
        "Token not yet valid"
    );

    let lenient = Bearer::hs256(SECRET)
        .unwrap()
        .leeway(Duration::from_secs(300));
    let expired_2_min = hs256(&json!({ "sub": "u", "exp": now() - 120 }));
    key_of(&lenient, &expired_2_min);
}

#[test]
fn exp_is_required_by_default_and_can_be_made_optional() {
    let no_exp = hs256(&json!({ "sub": "u" }));
    let bearer = Bearer::hs256(SECRET).unwrap();
    assert_eq!(rejected_token(&bearer, &no_exp), "Missing expiry");
    let optional = bearer.require_exp(false);
    key_of(&optional, &no_exp);
    // A present exp is still checked.
    let expired = hs256(&json!({ "sub": "u", "exp": now() - 3600 }));
    assert_eq!(rejected_token(&optional, &expired), "Expired token");
}

#[test]
fn non_numeric_exp_is_rejected() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let token = hs256(&json!({ "sub": "u", "exp": "tomorrow" }));
    assert_eq!(rejected_token(&bearer, &token), "Missing expiry");
    let optional = bearer.require_exp(false);
    assert_eq!(rejected_token(&optional, &token), "Malformed token");
    let bad_nbf = hs256(&claims("u", json!({ "nbf": "yesterday" })));
    assert_eq!(rejected_token(&optional, &bad_nbf), "Malformed token");
}

// ---------------------------------------------------------------- iss, aud

#[test]
fn wrong_or_missing_issuer_is_rejected() {
    let bearer = Bearer::hs256(SECRET)
        .unwrap()
        .issuer("https://auth.example.com")
        .issuer("https://auth2.example.com");
    let good = hs256(&claims("u", json!({ "iss": "https://auth2.example.com" })));
    key_of(&bearer, &good);
    let wrong = hs256(&claims("u", json!({ "iss": "https://evil.example.com" })));
    assert_eq!(rejected_token(&bearer, &wrong), "Wrong issuer");
    let missing = hs256(&claims("u", json!({})));
    assert_eq!(rejected_token(&bearer, &missing), "Wrong issuer");
}

#[test]
fn wrong_or_missing_audience_is_rejected() {
    let bearer = Bearer::hs256(SECRET).unwrap().audience("my-api");
    let good = hs256(&claims("u", json!({ "aud": ["other-api", "my-api"] })));
    key_of(&bearer, &good);
    let wrong = hs256(&claims("u", json!({ "aud": "other-api" })));
    assert_eq!(rejected_token(&bearer, &wrong), "Wrong audience");
    let missing = hs256(&claims("u", json!({})));
    assert_eq!(rejected_token(&bearer, &missing), "Wrong audience");
}

#[test]
fn token_naming_an_audience_is_rejected_when_none_is_configured() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let token = hs256(&claims("u", json!({ "aud": "some-other-api" })));
    assert_eq!(rejected_token(&bearer, &token), "Wrong audience");
}

// ---------------------------------------------------------------- forgery

#[tokio::test]
async fn alg_none_token_is_rejected_with_401() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    // A genuine token's claims under a hand-made unsigned header.
    let genuine = hs256(&claims("mallory", json!({})));
    let payload = genuine.split('.').nth(1).unwrap();
    // base64url of {"alg":"none","typ":"JWT"}
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    for token in [
        format!("{none_header}.{payload}."),
        // "None" and "NONE" spellings too
        format!("eyJhbGciOiJOb25lIiwidHlwIjoiSldUIn0.{payload}."),
        format!("eyJhbGciOiJOT05FIiwidHlwIjoiSldUIn0.{payload}."),
        // and with the original signature kept
        format!(
            "{none_header}.{payload}.{}",
            genuine.split('.').nth(2).unwrap()
        ),
    ] {
        assert_eq!(
            rejected_token(&bearer, &token),
            "Algorithm not allowed",
            "{token}"
        );
    }
    let app = app(bearer, Quota::per_minute(10));
    let token = format!("{none_header}.{payload}.");
    let body = problem_401(&app, with_token(&token), token.as_bytes()).await;
    assert_eq!(body["title"], "Algorithm not allowed");
}

#[test]
fn algorithm_confusion_hs256_signed_with_the_rsa_public_key_is_rejected() {
    // The classic attack: the public PEM (known to everybody) as an HMAC
    // secret, hoping the verifier feeds its RSA key to HMAC.
    let forger = EncodingKey::from_secret(RSA_PUBLIC.as_bytes());
    let token = sign(
        Algorithm::HS256,
        &forger,
        None,
        &claims("mallory", json!({})),
    );
    let bearer = Bearer::rsa_pem(RSA_PUBLIC).unwrap();
    assert_eq!(rejected_token(&bearer, &token), "Algorithm not allowed");
    // Even with every RSA algorithm allowed.
    let all_rsa = bearer
        .algorithms([
            JwtAlgorithm::RS256,
            JwtAlgorithm::RS384,
            JwtAlgorithm::RS512,
            JwtAlgorithm::PS256,
            JwtAlgorithm::PS384,
            JwtAlgorithm::PS512,
        ])
        .unwrap();
    assert_eq!(rejected_token(&all_rsa, &token), "Algorithm not allowed");
    // And an RSA key cannot be configured to accept HS256 at all.
    assert!(matches!(
        Bearer::rsa_pem(RSA_PUBLIC)
            .unwrap()
            .algorithms([JwtAlgorithm::RS256, JwtAlgorithm::HS256]),
        Err(JwtError::AlgorithmNotForKey {
            algorithm: JwtAlgorithm::HS256,
            ..
        })
    ));
}

#[test]
fn algorithm_confusion_in_a_jwks_is_rejected() {
    // HS256 signed with the RSA key's public PEM, naming the RSA key's kid.
    let forger = EncodingKey::from_secret(RSA_PUBLIC.as_bytes());
    let token = sign(
        Algorithm::HS256,
        &forger,
        Some("rsa-1"),
        &claims("m", json!({})),
    );
    let bearer = Bearer::jwks(JWKS).unwrap();
    assert_eq!(rejected_token(&bearer, &token), "Algorithm not allowed");
}

#[test]
fn token_of_another_key_family_is_rejected() {
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::ES256, &ec, None, &claims("u", json!({})));
    let bearer = Bearer::rsa_pem(RSA_PUBLIC).unwrap();
    assert_eq!(rejected_token(&bearer, &token), "Algorithm not allowed");
}

#[test]
fn wrong_secret_is_an_invalid_signature() {
    let other = EncodingKey::from_secret(b"another test-only secret of 32+ bytes!!");
    let token = sign(Algorithm::HS256, &other, None, &claims("u", json!({})));
    let bearer = Bearer::hs256(SECRET).unwrap();
    assert_eq!(rejected_token(&bearer, &token), "Invalid signature");
}

#[test]
fn tampered_claims_are_an_invalid_signature() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let genuine = hs256(&claims("alice", json!({})));
    let forged_claims = hs256(&claims("root", json!({})));
    let mut parts: Vec<&str> = genuine.split('.').collect();
    parts[1] = forged_claims.split('.').nth(1).unwrap();
    let token = parts.join(".");
    assert_eq!(rejected_token(&bearer, &token), "Invalid signature");
}

#[test]
fn rs256_token_signed_by_another_rsa_key_is_an_invalid_signature() {
    let other = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::RS256, &other, None, &claims("u", json!({})));
    let bearer = Bearer::rsa_pem(RSA_PUBLIC).unwrap();
    assert_eq!(rejected_token(&bearer, &token), "Invalid signature");
}

#[test]
fn critical_header_extensions_are_rejected() {
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp-ext".to_owned()]);
    let token = encode(
        &header,
        &claims("u", json!({})),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let bearer = Bearer::hs256(SECRET).unwrap();
    assert_eq!(rejected_token(&bearer, &token), "Unsupported token");
}

// ---------------------------------------------------------------- bad input

#[tokio::test]
async fn missing_header_is_401_problem_json() {
    let app = app(Bearer::hs256(SECRET).unwrap(), Quota::per_minute(10));
    let body = problem_401(&app, request(None), b"").await;
    assert_eq!(body["title"], "Missing bearer token");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
}

#[tokio::test]
async fn basic_scheme_is_401_and_the_credentials_are_not_echoed() {
    let app = app(Bearer::hs256(SECRET).unwrap(), Quota::per_minute(10));
    let body = problem_401(
        &app,
        request(Some(b"Basic dXNlcjpodW50ZXIy")),
        b"dXNlcjpodW50ZXIy",
    )
    .await;
    assert_eq!(body["title"], "Missing bearer token");
}

#[tokio::test]
async fn garbage_tokens_are_401_and_never_echoed() {
    let app = app(Bearer::hs256(SECRET).unwrap(), Quota::per_minute(100));
    let genuine = hs256(&claims("u", json!({})));
    let four_parts = format!("{genuine}.eyJ4IjoxfQ");
    let cases: &[(&str, &str)] = &[
        ("not-a-jwt-at-all", "Malformed token"),
        ("a.b", "Malformed token"),
        ("a.b.c", "Malformed token"),
        ("eyJhbGciOiJIUzI1NiJ9.%%%.abc", "Malformed token"),
        ("Zm9vYmFy.Zm9vYmFy.Zm9vYmFy", "Malformed token"),
        (four_parts.as_str(), "Malformed token"),
        // A JSON header that is not an object with a string alg.
        ("WzFd.e30.c2ln", "Malformed token"),
        // An unknown algorithm name.
        ("eyJhbGciOiJYWTEyMyJ9.e30.c2ln", "Algorithm not allowed"),
    ];
    for (token, title) in cases {
        let body = problem_401(&app, with_token(token), token.as_bytes()).await;
        assert_eq!(body["title"], *title, "{token}");
    }
    let body = problem_401(&app, request(Some(b"Bearer")), b"").await;
    assert_eq!(body["title"], "Missing bearer token");
}

#[tokio::test]
async fn non_utf8_header_is_401_not_a_panic() {
    let app = app(Bearer::hs256(SECRET).unwrap(), Quota::per_minute(10));
    let body = problem_401(
        &app,
        request(Some(b"Bearer \xff\xfe\x80abc.def.ghi")),
        b"abc.def",
    )
    .await;
    assert_eq!(body["title"], "Malformed token");
    let body = problem_401(&app, request(Some(b"B\xe9arer abc")), b"").await;
    assert_eq!(body["title"], "Missing bearer token");
}

#[tokio::test]
async fn a_100_kb_token_is_refused_as_too_large_without_echo() {
    let app = app(Bearer::hs256(SECRET).unwrap(), Quota::per_minute(10));
    let huge = format!("eyJhbGciOiJIUzI1NiJ9.{}.sig", "A".repeat(100 * 1024));
    let body = problem_401(&app, with_token(&huge), &huge.as_bytes()[..64]).await;
    assert_eq!(body["title"], "Token too large");
    assert!(body.to_string().len() < 1024);
}

#[test]
fn max_token_len_is_configurable() {
    let token = hs256(&claims("u", json!({})));
    let tight = Bearer::hs256(SECRET)
        .unwrap()
        .max_token_len(token.len() - 1);
    assert_eq!(rejected_token(&tight, &token), "Token too large");
    let exact = Bearer::hs256(SECRET).unwrap().max_token_len(token.len());
    key_of(&exact, &token);
}

#[test]
fn two_authorization_headers_are_rejected() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let token = hs256(&claims("u", json!({})));
    let mut req = Request::get("/").body(()).unwrap();
    let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    req.headers_mut().append("authorization", value.clone());
    req.headers_mut().append("authorization", value);
    let (p, _) = req.into_parts();
    assert_eq!(
        rejected(&bearer, &p, &token),
        "Malformed authorization header"
    );
}

// ---------------------------------------------------------------- JWKS

#[test]
fn jwks_selects_the_key_by_kid() {
    let bearer = Bearer::jwks_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/jwks.json"
    ))
    .unwrap();
    let rsa1 = rsa_key();
    let rsa2 = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap();

    let t1 = sign(
        Algorithm::RS256,
        &rsa1,
        Some("rsa-1"),
        &claims("one", json!({})),
    );
    let t2 = sign(
        Algorithm::RS256,
        &rsa2,
        Some("rsa-2"),
        &claims("two", json!({})),
    );
    assert_eq!(key_of(&bearer, &t1), Key::from("one"));
    assert_eq!(key_of(&bearer, &t2), Key::from("two"));

    // The kid picks the key: signed by rsa-2, claiming rsa-1.
    let swapped = sign(
        Algorithm::RS256,
        &rsa2,
        Some("rsa-1"),
        &claims("u", json!({})),
    );
    assert_eq!(rejected_token(&bearer, &swapped), "Invalid signature");
    // An unknown kid, and no kid while several keys could verify RS256.
    let unknown = sign(
        Algorithm::RS256,
        &rsa1,
        Some("rsa-9"),
        &claims("u", json!({})),
    );
    assert_eq!(rejected_token(&bearer, &unknown), "Unknown signing key");
    let no_kid = sign(Algorithm::RS256, &rsa1, None, &claims("u", json!({})));
    assert_eq!(rejected_token(&bearer, &no_kid), "Unknown signing key");
}

#[test]
fn jwks_keys_of_different_types_each_verify_their_own_algorithm() {
    let bearer = Bearer::jwks(JWKS).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let token = sign(
        Algorithm::ES256,
        &ec,
        Some("ec-1"),
        &claims("ec-user", json!({})),
    );
    assert_eq!(key_of(&bearer, &token), Key::from("ec-user"));
    // The only ES256 key: a token without kid finds it.
    let no_kid = sign(Algorithm::ES256, &ec, None, &claims("ec-user", json!({})));
    assert_eq!(key_of(&bearer, &no_kid), Key::from("ec-user"));
    // An EC kid with an RSA algorithm finds no key.
    let crossed = sign(
        Algorithm::RS256,
        &rsa_key(),
        Some("ec-1"),
        &claims("u", json!({})),
    );
    assert_eq!(rejected_token(&bearer, &crossed), "Unknown signing key");
}

#[test]
fn jwks_key_with_a_declared_alg_accepts_only_that_alg() {
    // rsa-1 declares RS256; rsa-2 declares none and accepts PS256 once
    // allowed.
    let bearer = Bearer::jwks(JWKS)
        .unwrap()
        .algorithms([JwtAlgorithm::RS256, JwtAlgorithm::PS256])
        .unwrap();
    let ps_on_1 = sign(
        Algorithm::PS256,
        &rsa_key(),
        Some("rsa-1"),
        &claims("u", json!({})),
    );
    assert_eq!(rejected_token(&bearer, &ps_on_1), "Unknown signing key");
    let rsa2 = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap();
    let ps_on_2 = sign(
        Algorithm::PS256,
        &rsa2,
        Some("rsa-2"),
        &claims("u", json!({})),
    );
    key_of(&bearer, &ps_on_2);
}

// ---------------------------------------------------------------- claims

#[tokio::test]
async fn keyed_by_a_tenant_claim_users_of_one_tenant_share_a_bucket() {
    let app = app(
        Bearer::hs256(SECRET).unwrap().claim("tenant"),
        Quota::per_minute(2),
    );
    let a1 = hs256(&claims("alice", json!({ "tenant": "acme" })));
    let a2 = hs256(&claims("bob", json!({ "tenant": "acme" })));
    let b1 = hs256(&claims("carol", json!({ "tenant": "globex" })));
    assert_eq!(status(&app, with_token(&a1)).await, StatusCode::OK);
    assert_eq!(status(&app, with_token(&a2)).await, StatusCode::OK);
    assert_eq!(
        status(&app, with_token(&a1)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&app, with_token(&b1)).await, StatusCode::OK);
}

#[test]
fn numeric_claims_are_keys() {
    let bearer = Bearer::hs256(SECRET).unwrap().claim("org_id");
    let token = hs256(&claims("u", json!({ "org_id": 1234 })));
    assert_eq!(key_of(&bearer, &token), Key::from("1234"));
    let by_sub = Bearer::hs256(SECRET).unwrap();
    let numeric_sub = hs256(&json!({ "sub": 77, "exp": now() + 60 }));
    assert_eq!(key_of(&by_sub, &numeric_sub), Key::from("77"));
}

#[test]
fn nested_claims_are_reached_with_a_json_pointer() {
    let bearer = Bearer::hs256(SECRET).unwrap().claim("/org/id");
    let token = hs256(&claims("u", json!({ "org": { "id": "org-9" } })));
    assert_eq!(key_of(&bearer, &token), Key::from("org-9"));
}

#[test]
fn missing_empty_or_non_scalar_claims_are_rejected() {
    let bearer = Bearer::hs256(SECRET).unwrap().claim("tenant");
    for tenant in [
        None,
        Some(json!("")),
        Some(json!(null)),
        Some(json!(true)),
        Some(json!(["a", "b"])),
        Some(json!({ "id": "a" })),
    ] {
        let extra = match &tenant {
            Some(v) => json!({ "tenant": v }),
            None => json!({}),
        };
        let token = hs256(&claims("u", extra));
        assert_eq!(
            rejected_token(&bearer, &token),
            "Missing claim",
            "{tenant:?}"
        );
    }
}

#[test]
fn long_claim_values_become_bounded_keys() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    let long = "x".repeat(4000);
    let key = key_of(&bearer, &hs256(&claims(&long, json!({}))));
    assert!(key.as_bytes().len() <= 32);
}

// ---------------------------------------------------------------- on_missing

#[tokio::test]
async fn on_missing_skip_lets_unauthenticated_requests_through_unlimited() {
    let bearer = Bearer::hs256(SECRET).unwrap().on_missing(OnMissing::Skip);
    assert_eq!(KeyExtractor::on_missing(&bearer), OnMissing::Skip);
    let app = app(bearer, Quota::per_minute(1));
    for _ in 0..5 {
        let res = app.clone().oneshot(request(None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("x-ratelimit-limit").is_none());
    }
    // A valid token is still limited.
    let token = hs256(&claims("u", json!({})));
    assert_eq!(status(&app, with_token(&token)).await, StatusCode::OK);
    assert_eq!(
        status(&app, with_token(&token)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[test]
fn default_on_missing_is_reject() {
    let bearer = Bearer::hs256(SECRET).unwrap();
    assert_eq!(KeyExtractor::on_missing(&bearer), OnMissing::Reject);
}

// ---------------------------------------------------------------- construction

#[test]
fn construction_errors_are_typed_not_panics() {
    assert!(matches!(Bearer::hs256(""), Err(JwtError::EmptySecret)));
    assert!(matches!(
        Bearer::rsa_pem("not a pem"),
        Err(JwtError::Pem { .. })
    ));
    assert!(matches!(
        Bearer::rsa_pem(EC_PUBLIC),
        Err(JwtError::Pem { .. })
    ));
    assert!(matches!(
        Bearer::ec_pem(RSA_PUBLIC),
        Err(JwtError::Pem { .. })
    ));
    assert!(matches!(
        Bearer::ed_pem(EC_PUBLIC),
        Err(JwtError::Pem { .. })
    ));
    assert!(matches!(
        Bearer::rsa_pem(RSA_PRIVATE),
        Err(JwtError::PrivateKey)
    ));
    assert!(matches!(
        Bearer::ec_pem(EC_PRIVATE),
        Err(JwtError::PrivateKey)
    ));
    assert!(matches!(Bearer::jwks("{"), Err(JwtError::Jwks(_))));
    assert!(matches!(
        Bearer::jwks(r#"{"nokeys":[]}"#),
        Err(JwtError::Jwks(_))
    ));
    assert!(matches!(
        Bearer::jwks(r#"{"keys":[]}"#),
        Err(JwtError::NoUsableKey { .. })
    ));
    assert!(matches!(
        Bearer::jwks_file("/nonexistent/jwks.json"),
        Err(JwtError::Io { .. })
    ));
    assert!(matches!(
        Bearer::hs256(SECRET).unwrap().algorithms([]),
        Err(JwtError::NoAlgorithms)
    ));
    assert!(matches!(
        Bearer::hs256(SECRET)
            .unwrap()
            .algorithms([JwtAlgorithm::RS256]),
        Err(JwtError::AlgorithmNotForKey { .. })
    ));
    assert!(matches!(
        "none".parse::<JwtAlgorithm>(),
        Err(JwtError::UnknownAlgorithm(_))
    ));
    // Errors say what to do.
    let msg = Bearer::rsa_pem(RSA_PRIVATE).unwrap_err().to_string();
    assert!(msg.contains("-pubout"), "{msg}");
}

#[tokio::test]
async fn a_401_carries_the_bearer_challenge_of_rfc_6750() {
    let app = app(
        Bearer::hs256(SECRET.as_bytes()).unwrap(),
        Quota::per_minute(5),
    );
    let res = app.clone().oneshot(request(None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let expired = hs256(&claims("alice", serde_json::json!({ "exp": now() - 3600 })));
    let res = app.clone().oneshot(with_token(&expired)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
}

/// A tier from a verified claim: the token's `plan` picks the quota; a
/// forged token has no tier (the base quota), never the tier it claims.
#[tokio::test]
async fn a_jwt_claim_can_pick_the_tier() {
    use tollgate::policy::{Rule, Tiers};
    let plan = Bearer::hs256(SECRET).unwrap().claim("plan");
    let layer = RateLimitLayer::builder()
        .key(Bearer::hs256(SECRET).unwrap())
        .policy(
            Rule::new("api", Quota::per_hour(1))
                .tiers(Tiers::from_key(plan).tier("pro", Quota::per_hour(3))),
        )
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    let limit = |res: &http::Response<Body>| {
        res.headers()
            .get("x-ratelimit-limit")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let pro = hs256(&claims("ann", json!({ "plan": "pro" })));
    let res = app.clone().oneshot(with_token(&pro)).await.unwrap();
    assert_eq!(limit(&res).as_deref(), Some("3"));
    let free = hs256(&claims("bob", json!({ "plan": "free" })));
    let res = app.clone().oneshot(with_token(&free)).await.unwrap();
    assert_eq!(limit(&res).as_deref(), Some("1"), "unlisted tier: the base");
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret, also 32 bytes long!"),
        None,
        &claims("eve", json!({ "plan": "pro" })),
    );
    let res = app.clone().oneshot(with_token(&forged)).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the layer's key rejects it"
    );
}
