//! [`ClientIp`]: the client's address, from the connection.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::request::Parts;
use http::StatusCode;

use super::{Extracted, Key, KeyExtractor};
use crate::response::Problem;

/// Keys by the client's IP address, read from the connection: axum's
/// `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`), or a plain
/// `SocketAddr` request extension put there by a hyper server.
///
/// - IPv4-mapped IPv6 (`::ffff:192.0.2.1`) is keyed as the IPv4 address.
/// - IPv6 is keyed by its /64 prefix by default (one subscriber gets a
///   whole /64 and could otherwise rotate through 2^64 keys); change it with
///   [`ClientIp::ipv6_prefix`].
/// - **No peer address** (the app was served without connect info): the
///   request is answered `500 Internal Server Error` with a problem+json
///   body naming the fix, and one `warn` is logged per extractor. It is
///   never a panic and never a silently shared bucket.
///
/// ```
/// use tollgate::key::ClientIp;
///
/// let by_ip = ClientIp::new().ipv6_prefix(56);
/// ```
#[derive(Debug, Clone)]
pub struct ClientIp {
    ipv6_prefix: u8,
    warned_no_peer: Arc<AtomicBool>,
}

impl Default for ClientIp {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientIp {
    /// The peer address, IPv6 grouped by /64.
    pub fn new() -> Self {
        ClientIp {
            ipv6_prefix: 64,
            warned_no_peer: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Groups IPv6 addresses by this prefix length, clamped to 48..=128
    /// (128 keys every address on its own).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.clamp(48, 128);
        self
    }

    /// The key for an address: IPv4-mapped collapsed, IPv6 masked.
    pub fn key_for(&self, ip: IpAddr) -> Key {
        Key::from_ip(normalize(ip, self.ipv6_prefix))
    }

    fn no_peer(&self) -> Extracted {
        if !self.warned_no_peer.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "tollgate: request has no peer address; serve the app with \
                 `axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())` \
                 (or insert a SocketAddr extension in hyper). Answering 500 until fixed."
            );
        }
        Extracted::Missing(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Client address unavailable",
            "The rate limiter keys requests by client IP but the server was started without connection info. \
             Serve the app with into_make_service_with_connect_info::<SocketAddr>().",
        ))
    }
}

/// The peer address of a request, if the server recorded one.
pub(crate) fn peer_addr(parts: &Parts) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(ci) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(ci.0);
    }
    parts.extensions.get::<SocketAddr>().copied()
}

/// IPv4-mapped IPv6 to IPv4; IPv6 masked to `prefix` bits.
pub(crate) fn normalize(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u128::from(v6);
            let masked = match prefix {
                0 => 0,
                p if p >= 128 => bits,
                p => bits & (u128::MAX << (128 - u32::from(p))),
            };
            IpAddr::V6(Ipv6Addr::from(masked))
        }
    }
}

impl KeyExtractor for ClientIp {
    fn extract(&self, parts: &Parts) -> Extracted {
        match peer_addr(parts) {
            Some(addr) => Extracted::Key(self.key_for(addr.ip())),
            None => self.no_peer(),
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert!(c.warned_no_peer.load(Ordering::Relaxed));
    }

    #[test]
    fn socket_addr_extension_is_the_peer() {
        let addr: SocketAddr = "203.0.113.9:4444".parse().unwrap();
        match ClientIp::new().extract(&parts_with(Some(addr))) {
            Extracted::Key(k) => assert_eq!(k, Key::from_ip(addr.ip())),
            other => panic!("{other:?}"),
        }
    }
}
