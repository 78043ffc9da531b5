//! Unit tests of [`ClientIp`](super::ClientIp) and
//! [`ClientIpHeader`](super::ClientIpHeader).

use std::sync::atomic::Ordering;

use super::*;

fn parts_with(addr: Option<SocketAddr>) -> Parts {
    let mut req = http::Request::new(());
    if let Some(a) = addr {
        req.extensions_mut().insert(a);
    }
    req.into_parts().0
}

#[test]
fn ipv4_mapped_ipv6_is_keyed_as_ipv4() {
    let c = ClientIp::new();
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(c.key_for(mapped), c.key_for(v4));
}

#[test]
fn ipv6_addresses_in_one_64_share_a_key() {
    let c = ClientIp::new();
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(c.key_for(a), c.key_for(b));
    assert_ne!(c.key_for(a), c.key_for(other));
    let exact = ClientIp::new().ipv6_prefix(128);
    assert_ne!(exact.key_for(a), exact.key_for(b));
}

#[test]
fn prefix_is_clamped_to_48_through_128() {
    assert_eq!(ClientIp::new().ipv6_prefix(0).ipv6_prefix, 48);
    assert_eq!(ClientIp::new().ipv6_prefix(200).ipv6_prefix, 128);
}

#[test]
fn missing_peer_address_is_a_500_problem_not_a_shared_key() {
    let c = ClientIp::new();
    match c.extract(&parts_with(None)) {
        Extracted::Missing(p) => assert_eq!(p.status(), StatusCode::INTERNAL_SERVER_ERROR),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(c.alerts.no_peer.load(Ordering::Relaxed));
}

#[test]
fn socket_addr_extension_is_the_peer() {
    let addr: SocketAddr = "203.0.113.9:4444".parse().unwrap();
    match ClientIp::new().extract(&parts_with(Some(addr))) {
        Extracted::Key(k) => assert_eq!(k, Key::from_ip(addr.ip())),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mapped_trusted_ranges_are_stored_as_ipv4() {
    let c = ClientIp::trusting(["::ffff:10.0.0.0/104".parse().unwrap()]);
    assert_eq!(c.trusted(), ["10.0.0.0/8".parse::<IpNet>().unwrap()]);
    assert!(c.is_trusted("::ffff:10.1.2.3".parse().unwrap()));
    assert!(c.is_trusted("10.1.2.3".parse().unwrap()));
}

#[test]
fn trusted_ranges_lose_host_bits_and_duplicates() {
    let c = ClientIp::trusting(["10.1.2.3/8".parse().unwrap()]).trust_private();
    assert_eq!(c.trusted().len(), 4);
    assert_eq!(c.trusted()[0], "10.0.0.0/8".parse::<IpNet>().unwrap());
}

#[test]
fn loopback_and_private_helpers_cover_their_ranges() {
    let c = ClientIp::new().trust_loopback().trust_private();
    for ip in [
        "127.0.0.1",
        "::1",
        "10.9.8.7",
        "172.31.0.1",
        "192.168.1.1",
        "fd00::1",
    ] {
        assert!(c.is_trusted(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["172.32.0.1", "8.8.8.8", "2001:db8::1", "::2"] {
        assert!(!c.is_trusted(ip.parse().unwrap()), "{ip}");
    }
}

#[test]
fn each_header_variant_has_its_lowercase_name() {
    assert_eq!(ClientIpHeader::default().name(), "x-forwarded-for");
    assert_eq!(ClientIpHeader::Forwarded.name(), "forwarded");
    assert_eq!(ClientIpHeader::XRealIp.name(), "x-real-ip");
    assert_eq!(ClientIpHeader::TrueClientIp.name(), "true-client-ip");
    assert_eq!(ClientIpHeader::FlyClientIp.name(), "fly-client-ip");
    assert!(ClientIpHeader::Forwarded.is_list());
    assert!(!ClientIpHeader::XRealIp.is_list());
}

#[test]
fn well_known_headers_given_by_name_are_their_variant() {
    let by_name = |n: &'static str| {
        ClientIp::new()
            .single_value_header(HeaderName::from_static(n))
            .forwarding_header()
            .clone()
    };
    assert_eq!(by_name("x-forwarded-for"), ClientIpHeader::XForwardedFor);
    assert_eq!(by_name("forwarded"), ClientIpHeader::Forwarded);
    assert_eq!(by_name("x-real-ip"), ClientIpHeader::XRealIp);
    let custom = HeaderName::from_static("x-client-ip");
    assert_eq!(by_name("x-client-ip"), ClientIpHeader::SingleValue(custom));
}
