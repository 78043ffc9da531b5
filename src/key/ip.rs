//! [`ClientIp`]: the client's address, from the connection or, behind
//! trusted proxies, from the forwarding header they write.

mod forwarded;
mod warnings;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, FORWARDED};
use http::request::Parts;
use http::StatusCode;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use self::forwarded::{Single, Syntax};
use self::warnings::Alerts;
use super::{Extracted, Key, KeyExtractor};
use crate::problem::Problem;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static FORWARDED_NAME: HeaderName = FORWARDED;
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Which header a trusted proxy puts the client's address in.
///
/// Set it with [`ClientIp::header`]. Only one header is ever read: a
/// header your proxy does not write arrives exactly as the client sent it,
/// so reading "`Forwarded` if present, else `X-Forwarded-For`" would let
/// any client pick its key behind a proxy that only writes
/// `X-Forwarded-For` (and the other way round).
///
/// | Variant | Kind | Written by |
/// |---|---|---|
/// | [`XForwardedFor`](Self::XForwardedFor) (default) | list | nginx (`$proxy_add_x_forwarded_for`), HAProxy (`option forwardfor`), AWS ALB, Envoy, Traefik, Caddy, Heroku, Fly.io, Cloudflare |
/// | [`Forwarded`](Self::Forwarded) | list | proxies set up for RFC 7239, e.g. HAProxy 2.8+ `option forwarded` |
/// | [`XRealIp`](Self::XRealIp) | single | nginx `proxy_set_header X-Real-IP $remote_addr` |
/// | [`CfConnectingIp`](Self::CfConnectingIp) | single | Cloudflare |
/// | [`TrueClientIp`](Self::TrueClientIp) | single | Akamai, Cloudflare Enterprise |
/// | [`FlyClientIp`](Self::FlyClientIp) | single | Fly.io |
/// | [`SingleValue`](Self::SingleValue) | single | any header holding one address |
///
/// A list header is walked from the right (see [`ClientIp`]); a
/// single-value header is taken as it is, so it is only safe when the
/// trusted proxy **replaces** any value the client sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`: every proxy appends the
    /// address it received the request from. The default.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::17]:4711"`.
    Forwarded,
    /// `X-Real-IP: 203.0.113.7`.
    XRealIp,
    /// `CF-Connecting-IP: 203.0.113.7` (Cloudflare).
    CfConnectingIp,
    /// `True-Client-IP: 203.0.113.7` (Akamai, Cloudflare Enterprise).
    TrueClientIp,
    /// `Fly-Client-IP: 203.0.113.7` (Fly.io).
    FlyClientIp,
    /// Another header holding one address.
    SingleValue(HeaderName),
}

impl ClientIpHeader {
    /// The header's name.
    ///
    /// ```
    /// use tollgate::key::ClientIpHeader;
    ///
    /// assert_eq!(ClientIpHeader::CfConnectingIp.name(), "cf-connecting-ip");
    /// ```
    pub fn name(&self) -> HeaderName {
        match self {
            ClientIpHeader::XForwardedFor => X_FORWARDED_FOR.clone(),
            ClientIpHeader::Forwarded => FORWARDED,
            ClientIpHeader::XRealIp => X_REAL_IP.clone(),
            ClientIpHeader::CfConnectingIp => HeaderName::from_static("cf-connecting-ip"),
            ClientIpHeader::TrueClientIp => HeaderName::from_static("true-client-ip"),
            ClientIpHeader::FlyClientIp => HeaderName::from_static("fly-client-ip"),
            ClientIpHeader::SingleValue(name) => name.clone(),
        }
    }

    /// Whether the header is a list walked from the right
    /// (`X-Forwarded-For`, `Forwarded`) rather than a single address.
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            ClientIpHeader::XForwardedFor | ClientIpHeader::Forwarded
        )
    }

    /// A named variant for a well-known header given by name.
    fn known(self) -> Self {
        let ClientIpHeader::SingleValue(name) = &self else {
            return self;
        };
        match name.as_str() {
            "x-forwarded-for" => ClientIpHeader::XForwardedFor,
            "forwarded" => ClientIpHeader::Forwarded,
            "x-real-ip" => ClientIpHeader::XRealIp,
            "cf-connecting-ip" => ClientIpHeader::CfConnectingIp,
            "true-client-ip" => ClientIpHeader::TrueClientIp,
            "fly-client-ip" => ClientIpHeader::FlyClientIp,
            _ => self,
        }
    }

    fn syntax(&self) -> Option<Syntax> {
        match self {
            ClientIpHeader::XForwardedFor => Some(Syntax::XForwardedFor),
            ClientIpHeader::Forwarded => Some(Syntax::Forwarded),
            _ => None,
        }
    }
}

/// Keys by the client's IP address.
///
/// # Without a proxy: [`ClientIp::new`]
///
/// The key is the peer address of the connection, the one address a
/// client cannot forge: axum's `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`), or a plain
/// `SocketAddr` request extension put there by a hyper server. Forwarding
/// headers are ignored. This is what `RateLimitLayer::new` uses.
///
/// # Behind a reverse proxy: [`ClientIp::trusting`]
///
/// Behind nginx, a load balancer or a CDN every connection comes from the
/// proxy, so the peer address is the proxy's and all clients would share
/// one bucket. Name the proxies' addresses and the client is read from the
/// header they write ([`ClientIpHeader`], `X-Forwarded-For` by default),
/// **only when the peer is one of them**: a request from any other peer is
/// keyed by its peer address, whatever headers it carries.
///
/// `X-Forwarded-For` and `Forwarded` are lists to which every proxy
/// appends the address it received the request from, so the left end is
/// whatever the client sent. The list (several header lines are one list,
/// in order) is walked **from the right**, skipping addresses inside the
/// trusted ranges; the first address that is not trusted is the client.
/// A client that sends `X-Forwarded-For: 1.2.3.4` arrives as
/// `1.2.3.4, <its real address>` and is keyed by its real address.
///
/// Where the walk cannot find an untrusted address, the key is the last
/// trusted address it reached — the leftmost trusted entry, or the peer
/// when it reached none:
///
/// - every entry is trusted (a client inside your own network): the
///   leftmost entry;
/// - an entry is not an address (garbage, non-UTF-8, longer than 64
///   bytes — 512 for a `Forwarded` element —, `unknown` or an obfuscated
///   `_name` in `Forwarded`, a `Forwarded` element without exactly one
///   `for`): the trusted address right of it. Nothing left of an
///   unreadable entry is believed. Empty entries (`a,,b`) are skipped;
/// - 64 entries (empty ones included) examined without finding the
///   client: the walk stops there, so a 10,000-entry header costs no more
///   than a 64-entry one.
///
/// Ports (`1.2.3.4:80`, `[2001:db8::1]:443`) and surrounding whitespace
/// are accepted; quoted values, `for` in any case and several elements per
/// line are understood in `Forwarded`.
///
/// **Trusted means believed**: anything inside a trusted range can claim
/// any client address. Trust the proxies' addresses (or the private ranges
/// only proxies can reach you from), never the clients'. Some load
/// balancers append their own address after the client's (Google Cloud's
/// external Application Load Balancer does): trust that address too.
///
/// # Single-value headers
///
/// `X-Real-IP`, `CF-Connecting-IP`, `True-Client-IP`, `Fly-Client-IP` or a
/// header you name are read only when chosen with [`ClientIp::header`] or
/// [`ClientIp::single_value_header`], and only from a trusted peer. From a
/// trusted peer:
///
/// - one valid address (a port is allowed): the client;
/// - the header twice, or one value holding a comma-separated list (a
///   proxy appended to the client's value instead of replacing it):
///   [`Extracted::Reject`] with `400 Bad Request` problem+json;
/// - absent or unparseable: the peer (the trusted proxy) is the key.
///
/// # Addresses and keys
///
/// - IPv4-mapped IPv6 (`::ffff:192.0.2.1`), as a peer or in a header, is
///   the IPv4 address, both for trust and for the key.
/// - IPv6 is keyed by its /64 prefix by default (one subscriber gets a
///   whole /64 and could otherwise rotate through 2^64 keys); change it
///   with [`ClientIp::ipv6_prefix`].
/// - **No peer address** (the app was served without connect info): the
///   request gets [`Extracted::Missing`] with a `500 Internal Server Error`
///   problem naming the fix. It is never a panic and never a silently
///   shared bucket.
///
/// # Misconfiguration warnings
///
/// Each is logged at most once per extractor (clones share them), at
/// `warn`, with the fix; never per request:
///
/// - no peer address;
/// - `X-Forwarded-For`, `Forwarded` or the configured single-value header
///   from a peer that is not trusted, when no proxy is trusted at all or
///   the peer is a loopback or private address (a proxy missing from the
///   list);
/// - the first 100 requests all from one loopback or private peer that is
///   not trusted (a proxy in front: every client shares its bucket);
/// - a trusted proxy sending another forwarding header (`X-Forwarded-For`,
///   `Forwarded`, `X-Real-IP`) but not the one configured;
/// - a trusted range of `0.0.0.0/0` or `::/0` (when it is configured).
///
/// # Cost
///
/// Nothing is allocated, whether or not a header is walked; at most 64
/// entries of bounded length are parsed, so about 4 KB of
/// `X-Forwarded-For` (32 KB of `Forwarded`) at worst.
///
/// ```
/// use tollgate::key::ClientIp;
///
/// let by_ip = ClientIp::new().ipv6_prefix(56);
/// ```
#[derive(Clone)]
pub struct ClientIp {
    ipv6_prefix: u8,
    trusted: Arc<[IpNet]>,
    header: ClientIpHeader,
    header_name: HeaderName,
    alerts: Arc<Alerts>,
}

impl fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIp")
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("trusted", &self.trusted)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Default for ClientIp {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientIp {
    /// The peer address, IPv6 grouped by /64; no proxy trusted, so no
    /// header is read.
    pub fn new() -> Self {
        ClientIp {
            ipv6_prefix: 64,
            trusted: Arc::from(Vec::new()),
            header: ClientIpHeader::XForwardedFor,
            header_name: ClientIpHeader::XForwardedFor.name(),
            alerts: Arc::default(),
        }
    }

    /// Trusts the proxies in these ranges: from a peer inside one, the
    /// client is read from `X-Forwarded-For` (or the header chosen with
    /// [`header`](Self::header)), walking from the right past trusted
    /// addresses. See the [type docs](Self) for the exact rules.
    ///
    /// A single proxy is a `/32` (IPv4) or `/128` (IPv6) range. Trusting
    /// `0.0.0.0/0` or `::/0` lets every client choose its own key and logs
    /// a warning.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tollgate::key::{ClientIp, Extracted, KeyExtractor};
    /// use tollgate::{Quota, RateLimitLayer};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let by_client = ClientIp::trusting(["10.0.0.0/8".parse()?]);
    ///
    /// // nginx at 10.0.0.5 forwards a client that claimed to be 1.2.3.4
    /// let mut req = http::Request::get("/")
    ///     .header("x-forwarded-for", "1.2.3.4, 203.0.113.7")
    ///     .body(())?;
    /// req.extensions_mut().insert("10.0.0.5:41234".parse::<SocketAddr>()?);
    /// let (parts, ()) = req.into_parts();
    /// let Extracted::Key(key) = by_client.extract(&parts) else { unreachable!() };
    /// assert_eq!(key, by_client.key_for("203.0.113.7".parse()?));
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .key(by_client)
    ///     .quota(Quota::per_minute(100))
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn trusting(ranges: impl IntoIterator<Item = IpNet>) -> Self {
        Self::new().trust(ranges)
    }

    /// Adds trusted proxy ranges (see [`trusting`](Self::trusting)).
    ///
    /// IPv4-mapped IPv6 ranges (`::ffff:10.0.0.0/104`) are stored as the
    /// IPv4 range they map.
    pub fn trust(mut self, ranges: impl IntoIterator<Item = IpNet>) -> Self {
        let mut all = self.trusted.to_vec();
        for net in ranges {
            let net = canonical_net(net);
            if net.prefix_len() == 0 {
                self.warn_trusts_every_peer(net);
            }
            if !all.contains(&net) {
                all.push(net);
            }
        }
        self.trusted = Arc::from(all);
        self
    }

    /// Trusts a proxy on the same host: `127.0.0.0/8` and `::1`.
    ///
    /// ```
    /// use tollgate::key::ClientIp;
    ///
    /// // nginx on the same machine
    /// let by_client = ClientIp::new().trust_loopback();
    /// ```
    pub fn trust_loopback(self) -> Self {
        self.trust([
            IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
            IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
        ])
    }

    /// Trusts every private address: `10.0.0.0/8`, `172.16.0.0/12`,
    /// `192.168.0.0/16` and IPv6 unique local `fc00::/7`: a load balancer
    /// or ingress inside your own network (Docker, Kubernetes, a cloud
    /// VPC). Anything in those ranges is believed, so use it only when
    /// clients cannot reach the app from them.
    ///
    /// ```
    /// use tollgate::key::ClientIp;
    ///
    /// let by_client = ClientIp::new().trust_private().trust_loopback();
    /// ```
    pub fn trust_private(self) -> Self {
        self.trust([
            IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8)),
            IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12)),
            IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16)),
            IpNet::V6(Ipv6Net::new_assert(
                Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
                7,
            )),
        ])
    }

    /// Reads the client from this header (default
    /// [`ClientIpHeader::XForwardedFor`]); it has no effect until a proxy
    /// is trusted. A [`SingleValue`](ClientIpHeader::SingleValue) naming a
    /// header that has its own variant is that variant, so
    /// `x-forwarded-for` given by name is still walked as a list.
    ///
    /// ```
    /// use tollgate::key::{ClientIp, ClientIpHeader};
    ///
    /// # fn main() -> Result<(), ipnet::AddrParseError> {
    /// // behind Cloudflare only (its ranges: https://www.cloudflare.com/ips/)
    /// let by_client = ClientIp::trusting(["173.245.48.0/20".parse()?])
    ///     .header(ClientIpHeader::CfConnectingIp);
    /// # Ok(())
    /// # }
    /// ```
    pub fn header(mut self, header: ClientIpHeader) -> Self {
        let header = header.known();
        self.header_name = header.name();
        self.header = header;
        self
    }

    /// Reads the client from a single-value header with this name:
    /// shorthand for `.header(ClientIpHeader::SingleValue(name))`.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tollgate::key::ClientIp;
    ///
    /// let by_client = ClientIp::new()
    ///     .trust_loopback()
    ///     .single_value_header(HeaderName::from_static("x-client-ip"));
    /// ```
    pub fn single_value_header(self, name: HeaderName) -> Self {
        self.header(ClientIpHeader::SingleValue(name))
    }

    /// Groups IPv6 addresses by this prefix length, clamped to 48..=128
    /// (128 keys every address on its own).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.clamp(48, 128);
        self
    }

    /// The trusted proxy ranges.
    pub fn trusted(&self) -> &[IpNet] {
        &self.trusted
    }

    /// The header read from trusted proxies.
    pub fn forwarding_header(&self) -> &ClientIpHeader {
        &self.header
    }

    /// Whether `ip` is inside a trusted range (IPv4-mapped IPv6 is checked
    /// as IPv4).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The key for an address: IPv4-mapped collapsed, IPv6 masked.
    pub fn key_for(&self, ip: IpAddr) -> Key {
        Key::from_ip(normalize(ip, self.ipv6_prefix))
    }

    /// The client address of a request from a trusted `peer`; `None` for a
    /// duplicated single-value header.
    fn client_behind(&self, headers: &HeaderMap, peer: IpAddr) -> Option<IpAddr> {
        if let Some(syntax) = self.header.syntax() {
            return Some(match forwarded::hops(headers, &self.header_name, syntax) {
                Some(hops) => forwarded::walk(hops, peer, |ip| self.is_trusted(ip)),
                None => {
                    self.warn_other_header(headers, peer);
                    peer
                }
            });
        }
        let mut values = headers.get_all(&self.header_name).iter();
        let Some(value) = values.next() else {
            self.warn_other_header(headers, peer);
            return Some(peer);
        };
        if values.next().is_some() {
            return None;
        }
        match forwarded::single(value.as_bytes()) {
            Single::Addr(ip) => Some(ip.to_canonical()),
            Single::List => None,
            Single::Invalid => Some(peer),
        }
    }

    fn duplicate(&self) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "Ambiguous client address",
            format!(
                "The request carries more than one {} value; the proxy in front of this \
                 service must set this header exactly once.",
                self.header_name
            ),
        )
    }

    fn no_peer(&self) -> Extracted {
        self.warn_no_peer();
        Extracted::Missing(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Client address unavailable",
            "The rate limiter keys requests by client IP but the server was started without connection info. \
             Serve the app with into_make_service_with_connect_info::<SocketAddr>().",
        ))
    }
}

/// IPv4-mapped IPv6 ranges as the IPv4 range they map; host bits cleared:
/// the form client addresses are compared in (trusted proxies, access
/// lists).
pub(crate) fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (
            v6.network().to_ipv4_mapped(),
            v6.prefix_len().checked_sub(96),
        ) {
            if let Ok(v4net) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4net.trunc());
            }
        }
    }
    net.trunc()
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

impl ClientIp {
    /// The client's address as [`extract`](KeyExtractor::extract) resolves
    /// it (trusted proxies walked, IPv4-mapped collapsed, not masked), for
    /// allow and deny lists; `None` without a peer address or when a
    /// single-value header is duplicated. Of `extract`'s once-only
    /// warnings it can log only one: a trusted proxy that sent another
    /// forwarding header than the configured one.
    pub fn client_addr(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = peer_addr(parts)?.ip().to_canonical();
        if self.is_trusted(peer) {
            self.client_behind(&parts.headers, peer)
        } else {
            Some(peer)
        }
    }
}

impl KeyExtractor for ClientIp {
    /// The client's key: see the [type docs](ClientIp) for how it is
    /// found. [`Extracted::Missing`] (500) without a peer address,
    /// [`Extracted::Reject`] (400) for a duplicated single-value header
    /// from a trusted proxy, otherwise [`Extracted::Key`].
    fn extract(&self, parts: &Parts) -> Extracted {
        let Some(peer) = peer_addr(parts) else {
            return self.no_peer();
        };
        let peer = peer.ip().to_canonical();
        let client = if self.is_trusted(peer) {
            self.saw_trusted_peer();
            match self.client_behind(&parts.headers, peer) {
                Some(ip) => ip,
                None => return Extracted::Reject(self.duplicate()),
            }
        } else {
            self.watch_untrusted(&parts.headers, peer);
            peer
        };
        Extracted::Key(self.key_for(client))
    }
}

#[cfg(test)]
mod tests;
