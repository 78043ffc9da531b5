//! [`ClientIp`]: the client's address, from the connection or, behind
//! trusted proxies, from the forwarding header they write.

mod forwarded;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use http::header::{HeaderMap, HeaderName, FORWARDED};
use http::request::Parts;
use http::StatusCode;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use self::forwarded::{Single, Syntax};
use super::{Extracted, Key, KeyExtractor};
use crate::problem::Problem;

/// After this many requests, all from one loopback or private peer that
/// is not a trusted proxy, [`ClientIp`] warns that a proxy is probably in
/// front and every client shares one bucket.
const SAME_PEER_WARN_AFTER: u32 = 100;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static FORWARDED_NAME: HeaderName = FORWARDED;
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The headers looked for when a trusted proxy did not send the configured
/// one.
static FORWARDING_HEADERS: [&HeaderName; 3] = [&X_FORWARDED_FOR, &FORWARDED_NAME, &X_REAL_IP];

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

/// The once-only warnings of one extractor.
#[derive(Default)]
struct Alerts {
    no_peer: AtomicBool,
    trust_all: AtomicBool,
    untrusted_header: AtomicBool,
    other_header: AtomicBool,
    same_peer: SamePeer,
}

/// Watches for every request coming from one loopback or private peer.
#[derive(Default)]
struct SamePeer {
    /// Set once a request proves otherwise (or after the warning).
    done: AtomicBool,
    first: OnceLock<IpAddr>,
    count: AtomicU32,
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
            if net.prefix_len() == 0 && !self.alerts.trust_all.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    range = %net,
                    "tollgate: ClientIp trusts {net}, i.e. every peer, so any client can choose \
                     its own rate-limit key by sending a forwarding header. Trust only your \
                     proxies: ClientIp::trusting([\"10.0.0.0/8\".parse()?]) with their addresses \
                     or ranges, or .trust_loopback() / .trust_private()."
                );
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
        if !self.alerts.no_peer.swap(true, Ordering::Relaxed) {
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

    /// Warnings about a request from a peer that is not trusted.
    fn watch_untrusted(&self, headers: &HeaderMap, peer: IpAddr) {
        self.watch_same_peer(peer);
        if self.alerts.untrusted_header.load(Ordering::Relaxed) {
            return;
        }
        let trusts_none = self.trusted.is_empty();
        if !trusts_none && !is_local(peer) {
            // A client talking to the app directly past the proxies:
            // whatever it sends is its own business.
            return;
        }
        let Some(name) = self.forwarding_header_in(headers) else {
            return;
        };
        if self.alerts.untrusted_header.swap(true, Ordering::Relaxed) {
            return;
        }
        if trusts_none {
            tracing::warn!(
                header = name,
                %peer,
                "tollgate: a request from {peer} carried `{name}`, but ClientIp trusts no proxy, so \
                 the header is ignored and requests are keyed by their peer address. If the app \
                 runs behind a reverse proxy, all its clients share one bucket: trust the proxy \
                 with ClientIp::trusting([\"<proxy address>/32\".parse()?]) (or .trust_loopback() \
                 / .trust_private()). If there is no proxy, a client sent the header and this \
                 can be ignored."
            );
        } else {
            let host = IpNet::from(peer);
            tracing::warn!(
                header = name,
                %peer,
                "tollgate: a request from {peer}, a local address outside the trusted proxy \
                 ranges, carried `{name}`; the header is ignored and the request is keyed by \
                 {peer}. If {peer} is a proxy, add it: ClientIp::trusting([..., \
                 \"{host}\".parse()?])."
            );
        }
    }

    /// The first forwarding header present, if any: `X-Forwarded-For`,
    /// `Forwarded`, or the configured single-value header. Two or three
    /// lookups, on the path of every request from an untrusted peer until
    /// the warning fires, so kept to those.
    fn forwarding_header_in(&self, headers: &HeaderMap) -> Option<&str> {
        if headers.is_empty() {
            return None;
        }
        [&X_FORWARDED_FOR, &FORWARDED_NAME]
            .into_iter()
            .chain((!self.header.is_list()).then_some(&self.header_name))
            .find(|name| headers.contains_key(*name))
            .map(HeaderName::as_str)
    }

    /// Watches for every request arriving from one local peer that is not
    /// trusted: a proxy in front, so all clients share one bucket.
    fn watch_same_peer(&self, peer: IpAddr) {
        let w = &self.alerts.same_peer;
        if w.done.load(Ordering::Relaxed) {
            return;
        }
        if !is_local(peer) || *w.first.get_or_init(|| peer) != peer {
            w.done.store(true, Ordering::Relaxed);
            return;
        }
        let seen = w.count.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if seen >= SAME_PEER_WARN_AFTER && !w.done.swap(true, Ordering::Relaxed) {
            let host = IpNet::from(peer);
            tracing::warn!(
                %peer,
                "tollgate: the first {SAME_PEER_WARN_AFTER} requests all came from {peer}, a \
                 loopback or private address that ClientIp does not trust, so they all share \
                 one rate-limit bucket. If a reverse proxy (nginx, a load balancer, an ingress) \
                 is in front of the app, trust it so that clients are keyed by the address it \
                 forwards: ClientIp::trusting([\"{host}\".parse()?]) (or .trust_loopback() / \
                 .trust_private()). If these are health checks or local tests, ignore this."
            );
        }
    }

    /// A request from a trusted peer proves the setup is not "one peer,
    /// nobody trusted".
    fn saw_trusted_peer(&self) {
        let done = &self.alerts.same_peer.done;
        if !done.load(Ordering::Relaxed) {
            done.store(true, Ordering::Relaxed);
        }
    }

    /// A trusted proxy sent no configured header: warn if it sent another
    /// forwarding header instead.
    fn warn_other_header(&self, headers: &HeaderMap, peer: IpAddr) {
        if self.alerts.other_header.load(Ordering::Relaxed) {
            return;
        }
        let Some(other) = FORWARDING_HEADERS
            .into_iter()
            .find(|n| **n != self.header_name && headers.contains_key(*n))
        else {
            return;
        };
        if !self.alerts.other_header.swap(true, Ordering::Relaxed) {
            let configured = &self.header_name;
            let other = other.as_str();
            let variant = match other {
                "forwarded" => "Forwarded",
                "x-real-ip" => "XRealIp",
                _ => "XForwardedFor",
            };
            tracing::warn!(
                header = other,
                %peer,
                "tollgate: trusted proxy {peer} sent `{other}` but no `{configured}`, which is \
                 the header ClientIp reads, so its requests are keyed by the proxy's address \
                 and share one bucket. Read the header your proxy writes: \
                 .header(ClientIpHeader::{variant})."
            );
        }
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

/// Loopback, RFC 1918 private or IPv6 unique local: where a proxy in
/// front of the app usually connects from.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local(),
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
}
