//! Nanoseconds per key extraction, for each extractor, on a request head
//! built once (what the layer hands an extractor): the peer address, a
//! trusted proxy's `X-Forwarded-For` of 1 and 10 hops, `Forwarded`, a
//! single-value header, an API key in a header and in the query, a user
//! from the extensions, the method, a composite, a fallback, and (with
//! `--features jwt`) a verified HS256 bearer token.
//!
//! Also: an allow/deny list lookup among 100 and 100,000 IP ranges.
//!
//! Run: `cargo bench -p tollgate-benches --bench keys --all-features -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use http::request::Parts;
use http::{HeaderName, Request};
use tollgate::key::{
    ClientIp, ClientIpHeader, Extracted, Header, KeyExtractor, KeyExtractorExt, Query,
    RequestMethod, User,
};

fn head(uri: &str, peer: &str, headers: &[(&str, String)]) -> Parts {
    let mut b = Request::get(uri);
    for (n, v) in headers {
        b = b.header(*n, v.as_str());
    }
    let mut parts = match b.body(()) {
        Ok(r) => r.into_parts().0,
        Err(e) => panic!("bench request: {e}"),
    };
    let peer: SocketAddr = peer.parse().unwrap_or_else(|e| panic!("{peer}: {e}"));
    parts.extensions.insert(peer);
    parts
}

#[derive(Clone)]
struct CurrentUser(u64);

fn bench_one<K: KeyExtractor>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    key: &K,
    parts: &Parts,
) {
    assert!(
        matches!(key.extract(parts), Extracted::Key(_)),
        "{name} finds no key"
    );
    c.bench_function(name, |b| {
        b.iter(|| black_box(key.extract(black_box(parts))))
    });
}

fn extractors(c: &mut Criterion) {
    let mut g = c.benchmark_group("extract");
    let proxy = "10.0.0.1:443";
    let trusted = || ClientIp::trusting(["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))]);

    bench_one(
        &mut g,
        "client_ip_peer",
        &ClientIp::new(),
        &head("/", "203.0.113.5:5000", &[]),
    );
    let one_hop = head("/", proxy, &[("x-forwarded-for", "198.51.100.7".into())]);
    bench_one(&mut g, "client_ip_xff_1_hop", &trusted(), &one_hop);
    // Ten entries: the client, then nine trusted proxies to walk past.
    let hops: Vec<String> = std::iter::once("198.51.100.7".to_owned())
        .chain((1..10).map(|i| format!("10.0.0.{i}")))
        .collect();
    let ten_hops = head("/", proxy, &[("x-forwarded-for", hops.join(", "))]);
    bench_one(&mut g, "client_ip_xff_10_hops", &trusted(), &ten_hops);
    let fwd = head(
        "/",
        proxy,
        &[(
            "forwarded",
            "for=198.51.100.7;proto=https, for=\"[2001:db8::1]:4711\"".into(),
        )],
    );
    bench_one(
        &mut g,
        "client_ip_forwarded",
        &trusted().header(ClientIpHeader::Forwarded),
        &fwd,
    );
    let cf = head("/", proxy, &[("cf-connecting-ip", "198.51.100.7".into())]);
    bench_one(
        &mut g,
        "client_ip_cf_connecting_ip",
        &trusted().header(ClientIpHeader::CfConnectingIp),
        &cf,
    );

    let api = Header::new(HeaderName::from_static("x-api-key"));
    let with_key = head(
        "/",
        proxy,
        &[("x-api-key", "sk_live_0123456789abcdef0123456789".into())],
    );
    bench_one(&mut g, "header_api_key", &api, &with_key);
    bench_one(
        &mut g,
        "query_api_key",
        &Query::new("api_key"),
        &head("/items?page=2&api_key=sk_live_0123456789abcdef", proxy, &[]),
    );
    let mut signed_in = head("/", proxy, &[]);
    signed_in.extensions.insert(CurrentUser(42));
    bench_one(
        &mut g,
        "user_extension",
        &User::new(|u: &CurrentUser| u.0),
        &signed_in,
    );
    bench_one(&mut g, "method", &RequestMethod, &with_key);
    bench_one(
        &mut g,
        "composite_ip_method",
        &(ClientIp::new(), RequestMethod),
        &with_key,
    );
    bench_one(
        &mut g,
        "fallback_header_missing_to_ip",
        &api.clone().or(ClientIp::new()),
        &head("/", proxy, &[]),
    );

    #[cfg(feature = "jwt")]
    {
        use jsonwebtoken::{encode, EncodingKey, Header as JwtHeader};
        let secret = b"bench-only secret, 32 bytes or more, never reuse";
        let exp = jsonwebtoken::get_current_timestamp() + 3600;
        let claims = serde_json::json!({ "sub": "user-42", "exp": exp });
        let token = encode(
            &JwtHeader::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let bearer = tollgate::key::Bearer::hs256(secret).unwrap_or_else(|e| panic!("{e}"));
        let with_token = head("/", proxy, &[("authorization", format!("Bearer {token}"))]);
        bench_one(&mut g, "jwt_hs256_sub", &bearer, &with_token);
    }
    g.finish();
}

/// Allow/deny lists: one lookup among 100 and among 100,000 ranges.
fn access_lists(c: &mut Criterion) {
    let mut g = c.benchmark_group("access_list");
    for n in [100u32, 100_000] {
        let list = tollgate::settings::AccessList::new().denying((0..n).filter_map(|i| {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8));
            ipnet::Ipv4Net::new(addr, 24).ok().map(ipnet::IpNet::V4)
        }));
        let hit: std::net::IpAddr =
            std::net::Ipv4Addr::from(0x0a00_0000 | ((n / 2) << 8) | 7).into();
        let miss: std::net::IpAddr = "192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}"));
        g.bench_function(format!("{n}_ranges_hit"), |b| {
            b.iter(|| black_box(list.check_ip(black_box(hit))))
        });
        g.bench_function(format!("{n}_ranges_miss"), |b| {
            b.iter(|| black_box(list.check_ip(black_box(miss))))
        });
    }
    g.finish();
}

criterion_group!(benches, extractors, access_lists);
criterion_main!(benches);
