//! `ClientIp` against spoofing: every forwarding header, from trusted and
//! untrusted peers, with prepended fake addresses, IPv6 rotation, IPv4-mapped
//! forms, garbage, non-UTF-8 and huge values; the warnings it logs once;
//! and a limit through a real axum `Router`.

mod common;

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use ipnet::IpNet;
use tower::ServiceExt;

use tollgate::key::{ClientIp, ClientIpHeader, Extracted, Key, KeyExtractor};
use tollgate::{Quota, RateLimitLayer};

use common::Captured;

// ---------------------------------------------------------------- helpers

/// A request head from `peer` (a `SocketAddr` extension, as hyper puts it)
/// with these header lines, in order.
fn from(peer: &str, headers: &[(&str, &str)]) -> Parts {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    from_bytes(peer, &raw)
}

fn from_bytes(peer: &str, headers: &[(&str, &[u8])]) -> Parts {
    let mut req = Request::new(());
    for (name, value) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req.into_parts().0
}

fn key(extractor: &ClientIp, parts: &Parts) -> Key {
    match extractor.extract(parts) {
        Extracted::Key(k) => k,
        other => panic!("expected a key, got {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Asserts that `parts` is keyed as the address `expected`.
#[track_caller]
fn assert_keyed_as(extractor: &ClientIp, parts: &Parts, expected: &str) {
    assert_eq!(
        key(extractor, parts),
        extractor.key_for(ip(expected)),
        "expected the key of {expected}"
    );
}

#[track_caller]
fn assert_rejected_400(extractor: &ClientIp, parts: &Parts) {
    match extractor.extract(parts) {
        Extracted::Reject(p) => {
            assert_eq!(p.status(), StatusCode::BAD_REQUEST);
            assert_eq!(p.title(), "Ambiguous client address");
        }
        other => panic!("expected a 400 rejection, got {other:?}"),
    }
}

/// Behind nginx (or a load balancer) at 10.0.0.0/8.
fn behind_proxy() -> ClientIp {
    ClientIp::trusting([net("10.0.0.0/8")])
}

const PROXY: &str = "10.0.0.5:41000";
const CLIENT: &str = "203.0.113.7";

/// The single-value headers and their names.
fn single_value_headers() -> Vec<(ClientIpHeader, &'static str)> {
    vec![
        (ClientIpHeader::XRealIp, "x-real-ip"),
        (ClientIpHeader::CfConnectingIp, "cf-connecting-ip"),
        (ClientIpHeader::TrueClientIp, "true-client-ip"),
        (ClientIpHeader::FlyClientIp, "fly-client-ip"),
        (
            ClientIpHeader::SingleValue(HeaderName::from_static("x-client-ip")),
            "x-client-ip",
        ),
    ]
}

/// Every header configuration with a request carrying `value` in it.
fn every_header(value: &str) -> Vec<(ClientIp, (&'static str, String))> {
    let mut all = vec![
        (behind_proxy(), ("x-forwarded-for", value.to_owned())),
        (
            behind_proxy().header(ClientIpHeader::Forwarded),
            ("forwarded", format!("for={value}")),
        ),
    ];
    for (header, name) in single_value_headers() {
        all.push((behind_proxy().header(header), (name, value.to_owned())));
    }
    all
}

// ------------------------------------------------- peers and trust

#[test]
fn without_trusted_proxies_the_peer_is_the_key_whatever_the_headers() {
    let c = ClientIp::new();
    let parts = from(
        "198.51.100.20:5000",
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("cf-connecting-ip", "1.2.3.4"),
            ("true-client-ip", "1.2.3.4"),
            ("fly-client-ip", "1.2.3.4"),
        ],
    );
    assert_keyed_as(&c, &parts, "198.51.100.20");
    for (header, _) in single_value_headers() {
        assert_keyed_as(&ClientIp::new().header(header), &parts, "198.51.100.20");
    }
}

#[test]
fn every_header_from_an_untrusted_peer_is_ignored() {
    for (c, (name, value)) in every_header("1.2.3.4") {
        let parts = from("198.51.100.20:5000", &[(name, &value)]);
        assert_keyed_as(&c, &parts, "198.51.100.20");
    }
}

#[test]
fn every_header_from_a_trusted_peer_names_the_client() {
    for (c, (name, value)) in every_header(CLIENT) {
        let parts = from(PROXY, &[(name, &value)]);
        assert_keyed_as(&c, &parts, CLIENT);
    }
}

#[test]
fn a_trusted_peer_without_the_header_is_keyed_by_itself() {
    for (c, _) in every_header(CLIENT) {
        assert_keyed_as(&c, &from(PROXY, &[]), "10.0.0.5");
    }
}

#[test]
fn a_duplicated_single_value_header_from_an_untrusted_peer_is_ignored_not_rejected() {
    for (header, name) in single_value_headers() {
        let c = behind_proxy().header(header);
        let parts = from(
            "198.51.100.20:5000",
            &[(name, "1.1.1.1"), (name, "2.2.2.2")],
        );
        assert_keyed_as(&c, &parts, "198.51.100.20");
    }
}

// ------------------------------------------------- X-Forwarded-For

#[test]
fn a_client_prepending_a_fake_address_is_keyed_by_its_real_one() {
    // The client sends `X-Forwarded-For: 1.2.3.4`; nginx appends the
    // address it saw.
    let c = behind_proxy();
    let parts = from(PROXY, &[("x-forwarded-for", "1.2.3.4, 203.0.113.7")]);
    assert_keyed_as(&c, &parts, CLIENT);
    // Rotating the fake does not rotate the key.
    for fake in ["5.6.7.8", "9.9.9.9, 8.8.8.8", "10.0.0.1", "::1"] {
        let value = format!("{fake}, {CLIENT}");
        assert_keyed_as(&c, &from(PROXY, &[("x-forwarded-for", &value)]), CLIENT);
    }
}

#[test]
fn trusted_hops_are_skipped_from_the_right() {
    let c = behind_proxy();
    let parts = from(
        PROXY,
        &[(
            "x-forwarded-for",
            "1.2.3.4, 203.0.113.7, 10.1.1.1, 10.2.2.2",
        )],
    );
    assert_keyed_as(&c, &parts, CLIENT);
}

#[test]
fn several_x_forwarded_for_lines_are_one_list_in_order() {
    let c = behind_proxy();
    let parts = from(
        PROXY,
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.7, 10.1.1.1"),
        ],
    );
    assert_keyed_as(&c, &parts, CLIENT);
    // The last line holds the last hops.
    let reversed = from(
        PROXY,
        &[
            ("x-forwarded-for", "203.0.113.7, 10.1.1.1"),
            ("x-forwarded-for", "1.2.3.4"),
        ],
    );
    assert_keyed_as(&c, &reversed, "1.2.3.4");
}

#[test]
fn x_forwarded_for_entries_may_carry_ports_and_whitespace() {
    let c = behind_proxy();
    for value in [
        "203.0.113.7:443",
        " \t203.0.113.7 ",
        "1.2.3.4 ,203.0.113.7:80 , 10.0.0.9:1234",
        "[2001:db8::1]:443, 203.0.113.7",
    ] {
        assert_keyed_as(&c, &from(PROXY, &[("x-forwarded-for", value)]), CLIENT);
    }
    assert_keyed_as(
        &c,
        &from(PROXY, &[("x-forwarded-for", "[2001:db8::1]:443")]),
        "2001:db8::1",
    );
    assert_keyed_as(
        &c,
        &from(PROXY, &[("x-forwarded-for", "2001:db8::1")]),
        "2001:db8::1",
    );
}

#[test]
fn empty_x_forwarded_for_entries_are_skipped() {
    let c = behind_proxy();
    let parts = from(
        PROXY,
        &[
            ("x-forwarded-for", "1.2.3.4, 203.0.113.7,, 10.0.0.9,"),
            ("x-forwarded-for", ""),
        ],
    );
    assert_keyed_as(&c, &parts, CLIENT);
}

#[test]
fn garbage_stops_the_walk_at_the_last_trusted_hop_never_left_of_it() {
    let c = behind_proxy();
    for garbage in [
        "garbage",
        "unknown",
        "1.2.3.4:http",
        "999.1.1.1",
        "\"1.2.3.4\"",
        "fe80::1%eth0",
    ] {
        // Right of the garbage: a trusted hop, which becomes the key.
        let value = format!("{CLIENT}, {garbage}, 10.0.0.9");
        assert_keyed_as(&c, &from(PROXY, &[("x-forwarded-for", &value)]), "10.0.0.9");
        // Garbage rightmost: the peer.
        let value = format!("{CLIENT}, {garbage}");
        assert_keyed_as(&c, &from(PROXY, &[("x-forwarded-for", &value)]), "10.0.0.5");
    }
    // Garbage left of the client does not matter.
    let parts = from(PROXY, &[("x-forwarded-for", "garbage, 203.0.113.7")]);
    assert_keyed_as(&c, &parts, CLIENT);
}

#[test]
fn non_utf8_values_are_garbage_and_never_panic() {
    let c = behind_proxy();
    let parts = from_bytes(
        PROXY,
        &[("x-forwarded-for", &b"203.0.113.7, \xff\xfe\x80"[..])],
    );
    assert_keyed_as(&c, &parts, "10.0.0.5");
    let parts = from_bytes(PROXY, &[("x-forwarded-for", &b"\xff\xfe, 203.0.113.7"[..])]);
    assert_keyed_as(&c, &parts, CLIENT);
    let parts = from_bytes(PROXY, &[("x-forwarded-for", &b"203.0.113.7\xff"[..])]);
    assert_keyed_as(&c, &parts, "10.0.0.5");
    let parts = from_bytes(
        PROXY,
        &[("forwarded", &b"for=\"\xff\xff\", for=203.0.113.7"[..])],
    );
    assert_keyed_as(&c.clone().header(ClientIpHeader::Forwarded), &parts, CLIENT);
    for (header, name) in single_value_headers() {
        let parts = from_bytes(PROXY, &[(name, &b"\xc3\xa9\xff"[..])]);
        assert_keyed_as(&behind_proxy().header(header), &parts, "10.0.0.5");
    }
}

#[test]
fn when_every_entry_is_trusted_the_leftmost_is_the_client() {
    // An internal client inside the trusted range, through two proxies.
    let c = behind_proxy();
    let parts = from(PROXY, &[("x-forwarded-for", "10.7.7.7, 10.0.0.9")]);
    assert_keyed_as(&c, &parts, "10.7.7.7");
}

#[test]
fn a_10000_entry_x_forwarded_for_is_cheap_and_still_keyed_by_the_real_client() {
    let c = behind_proxy();
    // 10,000 fake entries sent by the client, then the address nginx saw.
    let mut value: String = (0..10_000)
        .map(|i| format!("198.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255))
        .collect::<Vec<_>>()
        .join(", ");
    value.push_str(", 203.0.113.7");
    assert_keyed_as(&c, &from(PROXY, &[("x-forwarded-for", &value)]), CLIENT);

    // 10,000 trusted entries: the walk gives up after 64 of them and keys
    // by the 64th from the right, never by an entry beyond.
    let all_trusted: Vec<String> = (0..10_000)
        .map(|i| format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255))
        .collect();
    let mut value = String::from("1.2.3.4, ");
    value.push_str(&all_trusted.join(", "));
    let expected = &all_trusted[10_000 - 64];
    assert_keyed_as(&c, &from(PROXY, &[("x-forwarded-for", &value)]), expected);

    // 10,000 header lines cost the same.
    let lines: Vec<(&str, &str)> = all_trusted
        .iter()
        .map(|v| ("x-forwarded-for", v.as_str()))
        .collect();
    assert_keyed_as(&c, &from(PROXY, &lines), expected);
}

#[test]
fn huge_values_never_panic_and_are_not_addresses() {
    let huge = "1".repeat(60_000);
    let with_commas = ",".repeat(60_000);
    for value in [&huge, &with_commas] {
        for (c, (name, v)) in every_header(value) {
            let parts = from(PROXY, &[(name, &v)]);
            match c.extract(&parts) {
                Extracted::Key(k) => assert_eq!(k, c.key_for(ip("10.0.0.5"))),
                // A comma list in a single-value header is a duplicate.
                Extracted::Reject(p) => assert_eq!(p.status(), StatusCode::BAD_REQUEST),
                other => panic!("{other:?}"),
            }
        }
    }
}

// ------------------------------------------------- IPv6 and IPv4-mapped

#[test]
fn ipv6_clients_rotating_inside_a_64_through_x_forwarded_for_share_one_key() {
    let c = behind_proxy();
    let k = |addr: &str| {
        let value = format!("1.2.3.4, {addr}");
        key(&c, &from(PROXY, &[("x-forwarded-for", &value)]))
    };
    let first = k("2001:db8:1:2::1");
    for addr in [
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff:ffff:ffff:ffff",
        "[2001:db8:1:2:dead:beef::1]:8080",
        "2001:db8:1:2:1234:5678:9abc:def0",
    ] {
        assert_eq!(k(addr), first, "{addr}");
    }
    assert_ne!(k("2001:db8:1:3::1"), first);
    // Keyed per address when asked to.
    let exact = behind_proxy().ipv6_prefix(128);
    let parts = |a: &str| from(PROXY, &[("x-forwarded-for", a)]);
    assert_ne!(
        key(&exact, &parts("2001:db8:1:2::1")),
        key(&exact, &parts("2001:db8:1:2::2"))
    );
}

#[test]
fn ipv6_rotation_inside_a_64_through_forwarded_shares_one_key() {
    let c = behind_proxy().header(ClientIpHeader::Forwarded);
    let a = from(PROXY, &[("forwarded", "for=\"[2001:db8:1:2::1]:4711\"")]);
    let b = from(PROXY, &[("forwarded", "for=\"[2001:db8:1:2:ab::9]\"")]);
    assert_eq!(key(&c, &a), key(&c, &b));
}

#[test]
fn ipv4_mapped_forms_are_ipv4_for_trust_and_for_keys() {
    let c = behind_proxy();
    // A dual-stack listener reports the proxy as ::ffff:10.0.0.5.
    let mapped_peer = "[::ffff:10.0.0.5]:41000";
    for value in [
        "::ffff:203.0.113.7",
        "[::ffff:203.0.113.7]:80",
        "203.0.113.7, ::ffff:10.0.0.9",
    ] {
        let parts = from(mapped_peer, &[("x-forwarded-for", value)]);
        assert_keyed_as(&c, &parts, CLIENT);
    }
    // A mapped untrusted peer is keyed as its IPv4 address.
    let direct = from(
        "[::ffff:203.0.113.7]:5000",
        &[("x-forwarded-for", "1.2.3.4")],
    );
    assert_eq!(key(&c, &direct), key(&c, &from("203.0.113.7:5000", &[])));
    // Trusting a mapped range trusts the IPv4 peers.
    let mapped_trust = ClientIp::trusting([net("::ffff:10.0.0.0/104")]);
    assert_keyed_as(
        &mapped_trust,
        &from(PROXY, &[("x-forwarded-for", CLIENT)]),
        CLIENT,
    );
    // Single-value headers too.
    let real = behind_proxy().header(ClientIpHeader::XRealIp);
    let parts = from(mapped_peer, &[("x-real-ip", "::ffff:203.0.113.7")]);
    assert_eq!(key(&real, &parts), key(&real, &from("203.0.113.7:1", &[])));
}

#[test]
fn ipv6_proxies_are_trusted_by_their_range() {
    let c = ClientIp::trusting([net("fd00::/8")]);
    let parts = from(
        "[fd00::1]:443",
        &[("x-forwarded-for", "1.2.3.4, 2001:db8:9::5, fd00::2")],
    );
    assert_keyed_as(&c, &parts, "2001:db8:9::5");
}

// ------------------------------------------------- Forwarded (RFC 7239)

#[test]
fn forwarded_is_walked_from_the_right_quoted_or_not_in_any_case() {
    let c = behind_proxy().header(ClientIpHeader::Forwarded);
    for (lines, expected) in [
        (
            &["for=192.0.2.60;proto=http;by=203.0.113.43"][..],
            "192.0.2.60",
        ),
        (&["for=\"[2001:db8:cafe::17]:4711\""], "2001:db8:cafe::17"),
        (&["For=\"192.0.2.60:8080\""], "192.0.2.60"),
        (&["for=1.2.3.4, FOR=192.0.2.60;proto=https"], "192.0.2.60"),
        (
            &["for=1.2.3.4, for=192.0.2.60", "for=10.0.0.9;by=10.0.0.5"],
            "192.0.2.60",
        ),
        (
            &[
                "for=1.2.3.4",
                "proto=https;for=192.0.2.60;host=\"example.com\"",
            ],
            "192.0.2.60",
        ),
        (&["for=\"1.2.3.4;x,y\", for=192.0.2.60"], "192.0.2.60"),
    ] {
        let headers: Vec<(&str, &str)> = lines.iter().map(|l| ("forwarded", *l)).collect();
        assert_keyed_as(&c, &from(PROXY, &headers), expected);
    }
}

#[test]
fn forwarded_unknown_and_obfuscated_nodes_are_not_addresses() {
    let c = behind_proxy().header(ClientIpHeader::Forwarded);
    for hidden in [
        "unknown",
        "UNKNOWN",
        "_hidden",
        "\"_SEVKISEK\"",
        "\"unknown:80\"",
    ] {
        // Directly right of the proxy: the proxy is the key.
        let value = format!("for={CLIENT}, for={hidden}");
        assert_keyed_as(&c, &from(PROXY, &[("forwarded", &value)]), "10.0.0.5");
        // Behind another trusted hop: that hop is the key.
        let value = format!("for={CLIENT}, for={hidden}, for=10.0.0.9");
        assert_keyed_as(&c, &from(PROXY, &[("forwarded", &value)]), "10.0.0.9");
    }
    // Left of the client they do not matter.
    let parts = from(
        PROXY,
        &[("forwarded", "for=_hidden, for=unknown, for=203.0.113.7")],
    );
    assert_keyed_as(&c, &parts, CLIENT);
    // An obfuscated port is still an address.
    let parts = from(PROXY, &[("forwarded", "for=\"203.0.113.7:_abc\"")]);
    assert_keyed_as(&c, &parts, CLIENT);
}

#[test]
fn malformed_forwarded_elements_stop_the_walk() {
    let c = behind_proxy().header(ClientIpHeader::Forwarded);
    for bad in [
        "proto=https",
        "for=1.1.1.1;for=2.2.2.2",
        "for",
        "for=",
        "for=\"[2001:db8::1\"",
        "for=\"1.2.3.4",
        "for=1.2.3.4:port",
    ] {
        let value = format!("for=1.2.3.4, {bad}");
        assert_keyed_as(&c, &from(PROXY, &[("forwarded", &value)]), "10.0.0.5");
    }
    // A client's unterminated quote does not swallow the proxy's element.
    let parts = from(PROXY, &[("forwarded", "for=\"1.2.3.4, for=203.0.113.7")]);
    assert_keyed_as(&c, &parts, CLIENT);
}

#[test]
fn a_client_prepending_a_fake_forwarded_element_is_keyed_by_its_real_address() {
    let c = behind_proxy().header(ClientIpHeader::Forwarded);
    let parts = from(PROXY, &[("forwarded", "for=1.2.3.4, for=203.0.113.7")]);
    assert_keyed_as(&c, &parts, CLIENT);
    // ...even in a line of its own.
    let parts = from(
        PROXY,
        &[
            ("forwarded", "for=1.2.3.4"),
            ("forwarded", "for=203.0.113.7"),
        ],
    );
    assert_keyed_as(&c, &parts, CLIENT);
}

// ------------------------------------------------- which header is read

#[test]
fn only_the_chosen_list_header_is_read() {
    // nginx appends to X-Forwarded-For; the client's own `Forwarded`
    // passes through untouched and must not be believed.
    let xff = behind_proxy();
    let parts = from(
        PROXY,
        &[
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "203.0.113.7"),
        ],
    );
    assert_keyed_as(&xff, &parts, CLIENT);
    // And the other way round.
    let fwd = behind_proxy().header(ClientIpHeader::Forwarded);
    let parts = from(
        PROXY,
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=203.0.113.7"),
        ],
    );
    assert_keyed_as(&fwd, &parts, CLIENT);
}

#[test]
fn single_value_headers_are_read_only_when_chosen() {
    let c = behind_proxy();
    let parts = from(
        PROXY,
        &[
            ("x-real-ip", "1.2.3.4"),
            ("cf-connecting-ip", "1.2.3.4"),
            ("true-client-ip", "1.2.3.4"),
            ("fly-client-ip", "1.2.3.4"),
        ],
    );
    assert_keyed_as(&c, &parts, "10.0.0.5");
}

#[test]
fn a_chosen_single_value_header_ignores_x_forwarded_for() {
    for (header, name) in single_value_headers() {
        let c = behind_proxy().header(header);
        let parts = from(
            PROXY,
            &[(name, "203.0.113.7:5555"), ("x-forwarded-for", "1.2.3.4")],
        );
        assert_keyed_as(&c, &parts, CLIENT);
    }
}

// ------------------------------------------------- single-value headers

#[test]
fn a_single_value_header_sent_twice_is_a_400() {
    for (header, name) in single_value_headers() {
        let c = behind_proxy().header(header);
        assert_rejected_400(&c, &from(PROXY, &[(name, "1.2.3.4"), (name, CLIENT)]));
        // The same address twice is still ambiguous.
        assert_rejected_400(&c, &from(PROXY, &[(name, CLIENT), (name, CLIENT)]));
        // One line holding a list: a proxy appended instead of replacing.
        assert_rejected_400(&c, &from(PROXY, &[(name, "1.2.3.4, 203.0.113.7")]));
    }
}

#[test]
fn the_400_problem_names_the_header_and_the_fix() {
    let c = behind_proxy().header(ClientIpHeader::CfConnectingIp);
    let parts = from(
        PROXY,
        &[
            ("cf-connecting-ip", "1.1.1.1"),
            ("cf-connecting-ip", "2.2.2.2"),
        ],
    );
    let Extracted::Reject(p) = c.extract(&parts) else {
        panic!("expected a rejection")
    };
    assert!(p.detail().contains("cf-connecting-ip"), "{}", p.detail());
    assert!(!p.detail().contains("1.1.1.1"), "{}", p.detail());
}

#[test]
fn an_unparseable_single_value_header_falls_back_to_the_peer() {
    for (header, name) in single_value_headers() {
        let c = behind_proxy().header(header);
        for garbage in [
            "",
            "nope",
            "unknown",
            "1.2.3.4.5",
            "[::1",
            "1.2.3.4:99999999",
        ] {
            assert_keyed_as(&c, &from(PROXY, &[(name, garbage)]), "10.0.0.5");
        }
    }
}

#[test]
fn single_value_headers_accept_a_port_and_ipv6() {
    let c = behind_proxy().header(ClientIpHeader::XRealIp);
    assert_keyed_as(
        &c,
        &from(PROXY, &[("x-real-ip", " 203.0.113.7:80 ")]),
        CLIENT,
    );
    assert_keyed_as(
        &c,
        &from(PROXY, &[("x-real-ip", "[2001:db8::7]:80")]),
        "2001:db8::7",
    );
}

#[test]
fn a_connect_info_extension_is_the_peer() {
    let c = behind_proxy();
    let mut req = Request::new(());
    req.headers_mut().insert(
        "x-forwarded-for",
        HeaderValue::from_static("1.2.3.4, 203.0.113.7"),
    );
    req.extensions_mut()
        .insert(ConnectInfo(PROXY.parse::<SocketAddr>().unwrap()));
    assert_keyed_as(&c, &req.into_parts().0, CLIENT);
}

#[test]
fn without_a_peer_address_the_answer_is_a_500_even_with_headers() {
    let c = behind_proxy();
    let mut req = Request::new(());
    req.headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_static(CLIENT));
    match c.extract(&req.into_parts().0) {
        Extracted::Missing(p) => assert_eq!(p.status(), StatusCode::INTERNAL_SERVER_ERROR),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------- through a Router

fn app(extractor: ClientIp, per_minute: u64) -> Router {
    let layer = RateLimitLayer::builder()
        .key(extractor)
        .quota(Quota::per_minute(per_minute))
        .build()
        .unwrap();
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
}

fn http_from(peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::get("/");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.extension(ConnectInfo(peer.parse::<SocketAddr>().unwrap()))
        .body(Body::empty())
        .unwrap()
}

async fn status(app: &Router, req: Request<Body>) -> StatusCode {
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test(start_paused = true)]
async fn through_a_router_a_client_rotating_fake_addresses_is_limited_by_its_real_one() {
    let app = app(ClientIp::trusting([net("10.0.0.0/8")]), 2);
    let spoofing = |fake: &str| {
        let value = format!("{fake}, {CLIENT}");
        http_from(PROXY, &[("x-forwarded-for", &value)])
    };
    assert_eq!(status(&app, spoofing("1.1.1.1")).await, StatusCode::OK);
    assert_eq!(status(&app, spoofing("2.2.2.2")).await, StatusCode::OK);
    assert_eq!(
        status(&app, spoofing("3.3.3.3")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own bucket.
    let other = http_from(PROXY, &[("x-forwarded-for", "198.51.100.9")]);
    assert_eq!(status(&app, other).await, StatusCode::OK);
    // A client talking to the app directly cannot borrow someone else's
    // address (nor escape its own bucket) with the header.
    for _ in 0..2 {
        let direct = http_from("198.51.100.77:1", &[("x-forwarded-for", CLIENT)]);
        assert_eq!(status(&app, direct).await, StatusCode::OK);
    }
    let direct = http_from("198.51.100.77:1", &[("x-forwarded-for", "4.4.4.4")]);
    assert_eq!(status(&app, direct).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn through_a_router_ipv6_rotation_inside_a_64_is_one_bucket() {
    let app = app(ClientIp::trusting([net("10.0.0.0/8")]), 1);
    let ok = http_from(PROXY, &[("x-forwarded-for", "2001:db8:5:6::1")]);
    assert_eq!(status(&app, ok).await, StatusCode::OK);
    let rotated = http_from(PROXY, &[("x-forwarded-for", "2001:db8:5:6:abcd::42")]);
    assert_eq!(status(&app, rotated).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn through_a_router_a_duplicated_single_value_header_is_a_400_problem() {
    let app = app(
        ClientIp::trusting([net("10.0.0.0/8")]).header(ClientIpHeader::XRealIp),
        5,
    );
    let res = app
        .clone()
        .oneshot(http_from(
            PROXY,
            &[("x-real-ip", "1.2.3.4"), ("x-real-ip", CLIENT)],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 400);
    assert_eq!(json["title"], "Ambiguous client address");
}

// ------------------------------------------------- warnings, once each

/// What `tollgate` logs at `warn` and above, for this thread.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    common::capture("tollgate=warn")
}

const UNTRUSTED_HEADER: &str = "but ClientIp trusts no proxy";
const SAME_PEER: &str = "requests all came from";
const TRUST_ALL: &str = "i.e. every peer";
const OTHER_HEADER: &str = "which is the header ClientIp reads";
const LOCAL_UNTRUSTED: &str = "a local address outside the trusted proxy ranges";

#[test]
fn forwarded_headers_without_a_trusted_proxy_warn_once_with_the_fix() {
    let (out, _guard) = capture();
    let c = ClientIp::new();
    for i in 0..10 {
        let peer = format!("198.51.100.{i}:5000");
        key(&c, &from(&peer, &[("x-forwarded-for", "1.2.3.4")]));
        key(&c, &from(&peer, &[("forwarded", "for=1.2.3.4")]));
    }
    assert_eq!(out.count(UNTRUSTED_HEADER), 1, "{}", out.text());
    assert!(out.text().contains("ClientIp::trusting"), "{}", out.text());
    assert!(out.text().contains("WARN"), "{}", out.text());
    // Clones share the warning.
    key(
        &c.clone(),
        &from("198.51.100.1:1", &[("x-forwarded-for", "1.2.3.4")]),
    );
    assert_eq!(out.count(UNTRUSTED_HEADER), 1);
    // A single-value header chosen without trusting any proxy.
    let cf = ClientIp::new().header(ClientIpHeader::CfConnectingIp);
    for _ in 0..3 {
        let parts = from("198.51.100.1:1", &[("cf-connecting-ip", "1.2.3.4")]);
        assert_keyed_as(&cf, &parts, "198.51.100.1");
    }
    assert_eq!(out.count(UNTRUSTED_HEADER), 2, "{}", out.text());
    assert!(
        out.text().contains("carried `cf-connecting-ip`"),
        "{}",
        out.text()
    );
}

#[test]
fn forwarded_headers_from_a_public_untrusted_peer_do_not_warn_when_proxies_are_trusted() {
    let (out, _guard) = capture();
    let c = behind_proxy();
    for _ in 0..5 {
        key(
            &c,
            &from("198.51.100.1:5000", &[("x-forwarded-for", "1.2.3.4")]),
        );
    }
    assert_eq!(out.text(), "");
}

#[test]
fn forwarded_headers_from_a_local_peer_outside_the_trusted_ranges_warn_once() {
    let (out, _guard) = capture();
    let c = behind_proxy();
    for _ in 0..5 {
        let parts = from("192.168.1.2:5000", &[("x-forwarded-for", "1.2.3.4")]);
        assert_keyed_as(&c, &parts, "192.168.1.2");
    }
    assert_eq!(out.count(LOCAL_UNTRUSTED), 1, "{}", out.text());
    assert!(out.text().contains("192.168.1.2/32"), "{}", out.text());
}

#[test]
fn every_request_from_one_loopback_peer_warns_once_after_100() {
    let (out, _guard) = capture();
    let c = ClientIp::new();
    for _ in 0..99 {
        key(&c, &from("127.0.0.1:5000", &[]));
    }
    assert_eq!(out.count(SAME_PEER), 0, "{}", out.text());
    for _ in 0..1000 {
        key(&c, &from("127.0.0.1:5000", &[]));
    }
    assert_eq!(out.count(SAME_PEER), 1, "{}", out.text());
    assert!(out.text().contains("trust_loopback"), "{}", out.text());
}

#[test]
fn every_request_from_one_private_ipv6_peer_warns_once() {
    let (out, _guard) = capture();
    let c = ClientIp::new();
    for _ in 0..200 {
        key(&c, &from("[fd00::7]:5000", &[]));
    }
    assert_eq!(out.count(SAME_PEER), 1, "{}", out.text());
}

#[test]
fn varied_or_public_peers_never_warn_about_one_shared_peer() {
    let (out, _guard) = capture();
    let varied = ClientIp::new();
    key(&varied, &from("127.0.0.1:5000", &[]));
    key(&varied, &from("10.0.0.1:5000", &[]));
    for _ in 0..200 {
        key(&varied, &from("127.0.0.1:5000", &[]));
    }
    let public = ClientIp::new();
    for _ in 0..200 {
        key(&public, &from("203.0.113.7:5000", &[]));
    }
    // Through a trusted proxy all requests share a peer, correctly.
    let trusted = ClientIp::new().trust_loopback();
    for _ in 0..200 {
        key(
            &trusted,
            &from("127.0.0.1:5000", &[("x-forwarded-for", CLIENT)]),
        );
    }
    assert_eq!(out.text(), "");
}

#[test]
fn trusting_every_address_warns_once_at_construction() {
    let (out, _guard) = capture();
    let c = ClientIp::trusting([net("0.0.0.0/0"), net("::/0")]);
    assert_eq!(out.count(TRUST_ALL), 1, "{}", out.text());
    for _ in 0..5 {
        key(&c, &from(PROXY, &[("x-forwarded-for", CLIENT)]));
    }
    assert_eq!(out.count(TRUST_ALL), 1);
    let _v6 = ClientIp::trusting([net("::/0")]);
    let _mapped = ClientIp::trusting([net("::ffff:0.0.0.0/96")]);
    assert_eq!(out.count(TRUST_ALL), 3, "{}", out.text());
    let _fine = ClientIp::trusting([net("10.0.0.0/8")]).trust_private();
    assert_eq!(out.count(TRUST_ALL), 3);
}

#[test]
fn a_trusted_proxy_sending_another_header_than_the_one_read_warns_once() {
    let (out, _guard) = capture();
    let c = behind_proxy();
    for _ in 0..5 {
        let parts = from(PROXY, &[("forwarded", "for=203.0.113.7")]);
        assert_keyed_as(&c, &parts, "10.0.0.5");
    }
    assert_eq!(out.count(OTHER_HEADER), 1, "{}", out.text());
    assert!(
        out.text().contains("ClientIpHeader::Forwarded"),
        "{}",
        out.text()
    );
    // A single-value header configured, X-Forwarded-For sent.
    let real = behind_proxy().header(ClientIpHeader::XRealIp);
    for _ in 0..5 {
        key(&real, &from(PROXY, &[("x-forwarded-for", CLIENT)]));
    }
    assert_eq!(out.count(OTHER_HEADER), 2, "{}", out.text());
}

#[test]
fn a_well_configured_extractor_logs_nothing() {
    let (out, _guard) = capture();
    let c = behind_proxy();
    for i in 0..300 {
        let value = format!("1.2.3.4, 203.0.113.{}", i % 250);
        key(&c, &from(PROXY, &[("x-forwarded-for", &value)]));
        key(&c, &from("198.51.100.3:1", &[]));
    }
    assert_eq!(out.text(), "");
}

// ------------------------------------------------- cost

/// Counts the allocations made by the current thread.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(|n| n.get());
    f();
    ALLOCATIONS.with(|n| n.get()) - before
}

#[test]
fn extracting_allocates_nothing_with_or_without_forwarding_headers() {
    let ten_hops = "1.2.3.4, 203.0.113.7, 10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, \
                    10.0.0.5, 10.0.0.6, 10.0.0.7, 10.0.0.8";
    let cases = [
        (ClientIp::new(), from("203.0.113.7:1", &[])),
        (
            behind_proxy(),
            from("198.51.100.1:1", &[("x-forwarded-for", "1.2.3.4")]),
        ),
        (
            behind_proxy(),
            from(PROXY, &[("x-forwarded-for", ten_hops)]),
        ),
        (
            behind_proxy().header(ClientIpHeader::Forwarded),
            from(
                PROXY,
                &[(
                    "forwarded",
                    "for=1.2.3.4, for=\"[2001:db8::1]:80\";proto=https, for=10.0.0.9",
                )],
            ),
        ),
        (
            behind_proxy().header(ClientIpHeader::CfConnectingIp),
            from(PROXY, &[("cf-connecting-ip", CLIENT)]),
        ),
    ];
    for (c, parts) in &cases {
        let _warm = c.extract(parts);
        let n = allocations_during(|| {
            for _ in 0..100 {
                std::hint::black_box(c.extract(std::hint::black_box(parts)));
            }
        });
        assert_eq!(n, 0, "{c:?}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_one_liner_behind_a_local_proxy_warns_once_through_a_router() {
    let (out, _guard) = capture();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(Quota::per_second(1_000)));
    for i in 0..150 {
        let value = format!("203.0.113.{}", i % 200);
        let req = http_from("127.0.0.1:40000", &[("x-forwarded-for", &value)]);
        assert_eq!(status(&app, req).await, StatusCode::OK);
    }
    assert_eq!(out.count(UNTRUSTED_HEADER), 1, "{}", out.text());
    assert_eq!(out.count(SAME_PEER), 1, "{}", out.text());
    assert_eq!(out.text().matches("WARN").count(), 2, "{}", out.text());
}
