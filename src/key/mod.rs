//! Who is being limited: the [`Key`] of a request and the
//! [`KeyExtractor`]s that find it.
//!
//! An extractor looks at the request head ([`http::request::Parts`]) and
//! answers with a key, "skip limiting", or a rejection with a documented
//! status. The default, [`ClientIp`], keys by the peer address.

mod combine;
mod global;
mod header;
mod ip;
#[cfg(feature = "jwt")]
mod jwt;
mod user;

use std::fmt;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;
use siphasher::sip::SipHasher13;

pub use combine::{KeyExtractorExt, Or};
pub use global::{from_fn, FromFn, Global};
pub use header::{Header, Query, MAX_CREDENTIAL_LEN};
pub(crate) use ip::canonical_net;
pub use ip::{ClientIp, ClientIpHeader};
#[cfg(feature = "jwt")]
pub use jwt::{Bearer, JwtAlgorithm, JwtError};
pub use user::{MatchedRoute, RequestMethod, User};

use crate::problem::Problem;

/// Keys longer than this are replaced by a 128-bit hash of their bytes, so
/// a 60 KB header value never becomes a 60 KB key.
pub const MAX_KEY_LEN: usize = 128;

const INLINE: usize = 38;

/// A key: the bytes that identify who is limited (an address, a user id, an
/// API key…).
///
/// Cheap to clone; short keys (up to 38 bytes, which covers every IP
/// address) are stored inline without allocating. `Debug` and `Display`
/// print a short hash, never the bytes, so keys can be logged without
/// leaking API keys or tokens.
///
/// ```
/// use tollgate::key::Key;
///
/// let k = Key::from("user-42");
/// assert_eq!(k.as_bytes(), b"user-42");
/// assert!(!format!("{k:?}").contains("user-42"));
///
/// let long = Key::from("x".repeat(60_000));
/// assert!(long.as_bytes().len() <= 32);
/// ```
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<[u8]>),
}

impl Key {
    /// A key of these bytes (hashed when longer than [`MAX_KEY_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..bytes.len()].copy_from_slice(bytes);
            return Key(Repr::Inline {
                len: bytes.len() as u8,
                bytes: buf,
            });
        }
        if bytes.len() <= MAX_KEY_LEN {
            return Key(Repr::Shared(Arc::from(bytes)));
        }
        // Long values: a tagged 128-bit hash. The tag byte cannot start a
        // UTF-8 string, so a hashed key never equals a short raw one.
        let (a, b) = sip128(bytes);
        let mut buf = [0u8; 17];
        buf[0] = 0xff;
        buf[1..9].copy_from_slice(&a.to_le_bytes());
        buf[9..].copy_from_slice(&b.to_le_bytes());
        Self::from_bytes(&buf)
    }

    /// A key for a credential (an API key, a token's claim you would rather
    /// not store): a tagged 128-bit SipHash of the bytes, never the bytes,
    /// so the credential cannot reach logs, headers or a shared store's key
    /// names. The hash is the same on every server (fixed SipHash keys), so
    /// a fleet sharing Redis agrees on it; it hides a credential from
    /// someone reading a dump, not from someone who can guess it.
    pub fn secret(bytes: &[u8]) -> Self {
        let (a, b) = sip128(bytes);
        let mut buf = [0u8; 17];
        buf[0] = 0xfd;
        buf[1..9].copy_from_slice(&a.to_le_bytes());
        buf[9..].copy_from_slice(&b.to_le_bytes());
        Self::from_bytes(&buf)
    }

    /// A key for an IP address: 4 or 16 bytes behind a tag, so the IPv4
    /// and IPv6 spaces never collide.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let mut buf = [0u8; 5];
                buf[0] = 4;
                buf[1..].copy_from_slice(&v4.octets());
                Self::from_bytes(&buf)
            }
            IpAddr::V6(v6) => {
                let mut buf = [0u8; 17];
                buf[0] = 6;
                buf[1..].copy_from_slice(&v6.octets());
                Self::from_bytes(&buf)
            }
        }
    }

    /// The address a key made by [`Key::from_ip`] holds (or any key of
    /// the same bytes: a tag byte 4 and four bytes, or 6 and sixteen).
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use tollgate::key::Key;
    ///
    /// let ip: IpAddr = "192.0.2.7".parse().unwrap();
    /// assert_eq!(Key::from_ip(ip).as_ip(), Some(ip));
    /// assert_eq!(Key::from("alice").as_ip(), None);
    /// assert_eq!(Key::secret(b"api-key").as_ip(), None);
    /// ```
    pub fn as_ip(&self) -> Option<IpAddr> {
        match self.as_bytes() {
            [4, rest @ ..] => <[u8; 4]>::try_from(rest).ok().map(IpAddr::from),
            [6, rest @ ..] => <[u8; 16]>::try_from(rest).ok().map(IpAddr::from),
            _ => None,
        }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(b) => b,
        }
    }

    /// A hash of the bytes that is the same in every process (SipHash-1-3
    /// with fixed keys): used to stagger windows per key and to name the key
    /// in logs. Not a secret: never use it to hide a credential from
    /// someone who can guess it.
    pub fn stable_hash(&self) -> u64 {
        let mut h = SipHasher13::new_with_keys(0x746f_6c6c_6761_7465, 0x6b65_795f_6861_7368);
        h.write(self.as_bytes());
        h.finish()
    }

    /// Combines keys into one composite key (length-prefixed so that
    /// `("ab","c")` and `("a","bc")` differ).
    pub fn compose(parts: &[&Key]) -> Key {
        let mut buf = Vec::with_capacity(parts.iter().map(|k| k.as_bytes().len() + 2).sum());
        for p in parts {
            let b = p.as_bytes();
            buf.extend_from_slice(&(b.len() as u16).to_le_bytes());
            buf.extend_from_slice(b);
        }
        Key::from_bytes(&buf)
    }
}

fn sip128(bytes: &[u8]) -> (u64, u64) {
    use siphasher::sip128::{Hasher128, SipHasher13 as Sip128};
    let mut h = Sip128::new_with_keys(0x6c6f_6e67_5f6b_6579, 0x746f_6c6c_6761_7465);
    h.write(bytes);
    let out = h.finish128();
    (out.h1, out.h2)
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// Prints `k:` and 16 hex digits of [`Key::stable_hash`].
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k:{:016x}", self.stable_hash())
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::from_bytes(s.as_bytes())
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Key::from_bytes(s.as_bytes())
    }
}

impl From<&[u8]> for Key {
    fn from(b: &[u8]) -> Self {
        Key::from_bytes(b)
    }
}

impl From<IpAddr> for Key {
    fn from(ip: IpAddr) -> Self {
        Key::from_ip(ip)
    }
}

impl From<u64> for Key {
    fn from(n: u64) -> Self {
        Key::from_bytes(&n.to_be_bytes())
    }
}

/// What an extractor found.
#[derive(Debug, Clone)]
pub enum Extracted {
    /// Limit under this key.
    Key(Key),
    /// Nothing usable to key on: the header is absent, the token invalid,
    /// the peer address unknown. A fallback (`a.or(b)`) tries the next
    /// extractor; otherwise the extractor's [`OnMissing`] decides, and the
    /// problem is the answer when it says [`OnMissing::Reject`].
    Missing(Problem),
    /// Do not limit this request.
    Skip,
    /// Answer with this problem at once, without any fallback (e.g. 400
    /// for a single-value forwarding header sent twice).
    Reject(Problem),
}

/// What a request without a usable key gets, per extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnMissing {
    /// Answer with the extractor's problem (401 for credentials, 500 for a
    /// missing peer address). The default.
    #[default]
    Reject,
    /// Let the request through without limiting it.
    Skip,
}

/// Finds the [`Key`] of a request.
///
/// Implemented by [`ClientIp`], [`Global`], closures through [`from_fn`],
/// and your own types:
///
/// ```
/// use http::request::Parts;
/// use tollgate::key::{Extracted, Key, KeyExtractor};
///
/// #[derive(Clone)]
/// struct Tenant;
///
/// impl KeyExtractor for Tenant {
///     fn extract(&self, parts: &Parts) -> Extracted {
///         match parts.headers.get("x-tenant") {
///             Some(v) => Extracted::Key(Key::from_bytes(v.as_bytes())),
///             None => Extracted::Skip,
///         }
///     }
/// }
/// ```
pub trait KeyExtractor: Clone + Send + Sync + 'static {
    /// Looks at the request head.
    fn extract(&self, parts: &Parts) -> Extracted;

    /// What happens when [`extract`](Self::extract) finds nothing usable
    /// ([`Extracted::Missing`]) and no fallback is left.
    fn on_missing(&self) -> OnMissing {
        OnMissing::Reject
    }
}
