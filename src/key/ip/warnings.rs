//! [`ClientIp`]'s misconfiguration warnings: each logged at most once per
//! extractor (clones share them), at `warn`, with the fix; never per
//! request. The list is in [`ClientIp`]'s docs.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;

use http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;

use super::{ClientIp, FORWARDED_NAME, X_FORWARDED_FOR, X_REAL_IP};

/// After this many requests, all from one loopback or private peer that
/// is not a trusted proxy, [`ClientIp`] warns that a proxy is probably in
/// front and every client shares one bucket.
const SAME_PEER_WARN_AFTER: u32 = 100;

/// The headers looked for when a trusted proxy did not send the configured
/// one.
static FORWARDING_HEADERS: [&HeaderName; 3] = [&X_FORWARDED_FOR, &FORWARDED_NAME, &X_REAL_IP];

/// The once-only warnings of one extractor.
#[derive(Default)]
pub(super) struct Alerts {
    /// Read by the tests.
    pub(super) no_peer: AtomicBool,
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

impl ClientIp {
    /// A trusted range of `0.0.0.0/0` or `::/0`: every client can choose
    /// its own key.
    pub(super) fn warn_trusts_every_peer(&self, net: IpNet) {
        if !self.alerts.trust_all.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                range = %net,
                "tollgate: ClientIp trusts {net}, i.e. every peer, so any client can choose \
                 its own rate-limit key by sending a forwarding header. Trust only your \
                 proxies: ClientIp::trusting([\"10.0.0.0/8\".parse()?]) with their addresses \
                 or ranges, or .trust_loopback() / .trust_private()."
            );
        }
    }

    /// A request without a peer address: the server was started without
    /// connect info.
    pub(super) fn warn_no_peer(&self) {
        if !self.alerts.no_peer.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "tollgate: request has no peer address; serve the app with \
                 `axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())` \
                 (or insert a SocketAddr extension in hyper). Answering 500 until fixed."
            );
        }
    }

    /// Warnings about a request from a peer that is not trusted.
    pub(super) fn watch_untrusted(&self, headers: &HeaderMap, peer: IpAddr) {
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
    pub(super) fn saw_trusted_peer(&self) {
        let done = &self.alerts.same_peer.done;
        if !done.load(Ordering::Relaxed) {
            done.store(true, Ordering::Relaxed);
        }
    }

    /// A trusted proxy sent no configured header: warn if it sent another
    /// forwarding header instead.
    pub(super) fn warn_other_header(&self, headers: &HeaderMap, peer: IpAddr) {
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

/// Loopback, RFC 1918 private or IPv6 unique local: where a proxy in
/// front of the app usually connects from.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local(),
    }
}
