//! [`Bearer`]: keys on a claim of a verified JSON Web Token from
//! `Authorization: Bearer <token>` (feature `jwt`).
//!
//! This file holds the extractor and its settings; the rest is one file
//! per concern: `algorithm` (the JWS algorithms and key families),
//! `error` (build errors), `keys` (the constructors: secret, PEM, JWKS),
//! `verify` (header to verified claim) and `problem` (why a token is
//! refused, as a `401`).

mod algorithm;
mod error;
mod keys;
mod problem;
mod verify;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use jsonwebtoken::Validation;

pub use self::algorithm::JwtAlgorithm;
pub use self::error::JwtError;
use self::keys::VerifyKey;
use super::{Extracted, Key, KeyExtractor, OnMissing};
use crate::problem::Problem;

/// Keys requests by a claim (`sub` by default) of a verified JSON Web
/// Token sent as `Authorization: Bearer <token>` (feature `jwt`).
///
/// A token is accepted when
///
/// - the header is a single `Authorization: Bearer <token>` (the scheme in
///   any case) and the token is at most
///   [`max_token_len`](Bearer::max_token_len) bytes (8 KiB by default);
/// - its `alg` is in the allow-list (see [`algorithms`](Bearer::algorithms))
///   and the key can verify it: **a key is tied to its type**, so an HMAC
///   secret only verifies HS*, an RSA key only RS*/PS*, an EC key only the
///   ES* of its curve, an Ed25519 key only EdDSA. `alg: none` is never
///   accepted, and an RSA public key can never be misused as an HMAC secret;
/// - the signature verifies;
/// - `exp` is present (unless [`require_exp(false)`](Bearer::require_exp))
///   and not past, `nbf` (when present) is not in the future, both with a
///   [`leeway`](Bearer::leeway) of 30 s by default;
/// - `iss` and `aud` match when [`issuer`](Bearer::issuer) and
///   [`audience`](Bearer::audience) are set (the claim is then required). A
///   token that names an audience is rejected unless [`audience`](Bearer::audience)
///   accepts one of its values (RFC 7519 §4.1.3);
/// - the keyed [`claim`](Bearer::claim) is a non-empty string or a number
///   (the string `"42"` and the number `42` are the same key). Long values
///   are hashed (see [`Key::from_bytes`]).
///
/// **Anything else** — no header, another scheme, a malformed, oversized,
/// expired, not yet valid, unsigned or wrongly signed token, a wrong issuer
/// or audience, a missing claim — is [`Extracted::Missing`] with a `401`
/// problem+json that says what was wrong in general terms ("Expired
/// token", "Invalid signature"…) and never echoes the token. With the
/// default [`OnMissing::Reject`] the request is answered with that `401`;
/// with [`on_missing(OnMissing::Skip)`](Bearer::on_missing) it goes through
/// **unlimited** — that includes requests with a forged token, so only skip
/// when the route enforces authentication elsewhere. To limit requests
/// without a valid token by address instead, fall back:
/// `Bearer::hs256(secret)?.or(ClientIp::new())`.
///
/// The token is never logged; [`Key`]'s `Debug` shows a hash of the claim.
/// Time checks use the system clock, as token times are wall-clock times.
///
/// ```
/// use tollgate::key::{Bearer, KeyExtractor};
/// use tollgate::{Quota, RateLimitLayer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let secret = "an example secret of at least 32 bytes!";
/// let by_user = Bearer::hs256(secret)?               // HS256 only
///     .issuer("https://auth.example.com")             // iss must match
///     .audience("my-api");                            // aud must match
///
/// let layer = RateLimitLayer::builder()
///     .key(by_user.clone())
///     .quota(Quota::per_minute(60))
///     .build()?;
///
/// // No token: a 401 problem+json.
/// let (parts, _) = http::Request::get("/me").body(())?.into_parts();
/// let tollgate::key::Extracted::Missing(problem) = by_user.extract(&parts) else {
///     unreachable!()
/// };
/// assert_eq!(problem.status(), 401);
/// assert_eq!(problem.title(), "Missing bearer token");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Bearer {
    inner: Arc<Inner>,
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("Bearer")
            .field("claim", &i.claim)
            .field("algorithms", &i.allowed)
            .field("keys", &i.keys.len())
            .field("leeway_secs", &i.leeway)
            .field("require_exp", &i.require_exp)
            .field("issuers", &i.issuers)
            .field("audiences", &i.audiences)
            .field("on_missing", &i.on_missing)
            .field("max_token_len", &i.max_token_len)
            .finish_non_exhaustive()
    }
}

impl Bearer {
    /// The leeway on `exp` and `nbf` unless [`leeway`](Self::leeway) is
    /// called.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

    /// The largest leeway [`leeway`](Self::leeway) accepts (one day).
    pub const MAX_LEEWAY: Duration = Duration::from_secs(86_400);

    /// The longest token accepted unless
    /// [`max_token_len`](Self::max_token_len) is called: 8 KiB.
    pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

    fn with_keys(keys: Vec<VerifyKey>, by_kid: bool, allowed: Vec<JwtAlgorithm>) -> Self {
        let mut inner = Inner {
            keys,
            by_kid,
            allowed,
            claim: "sub".to_owned(),
            leeway: Self::DEFAULT_LEEWAY.as_secs(),
            require_exp: true,
            issuers: Vec::new(),
            audiences: Vec::new(),
            on_missing: OnMissing::Reject,
            max_token_len: Self::DEFAULT_MAX_TOKEN_LEN,
        };
        inner.sync();
        Bearer {
            inner: Arc::new(inner),
        }
    }

    /// Replaces the algorithm allow-list. A token whose header `alg` is not
    /// in it is rejected before any key is used.
    ///
    /// Each algorithm must be one the key (or some key of the JWKS) can
    /// verify, so `Bearer::rsa_pem(pem)?.algorithms([JwtAlgorithm::HS256])`
    /// is an error, not a key confusion waiting to happen. An empty list is
    /// an error; duplicates are ignored.
    pub fn algorithms(
        mut self,
        algorithms: impl IntoIterator<Item = JwtAlgorithm>,
    ) -> Result<Self, JwtError> {
        let mut list = Vec::new();
        for a in algorithms {
            if !list.contains(&a) {
                list.push(a);
            }
        }
        if list.is_empty() {
            return Err(JwtError::NoAlgorithms);
        }
        for &a in &list {
            if !self.inner.keys.iter().any(|k| k.usable.contains(&a)) {
                let key = match (&self.inner.keys[..], self.inner.by_kid) {
                    ([only], false) => only.family.describe(),
                    _ => "any usable key of the JWKS",
                };
                return Err(JwtError::AlgorithmNotForKey { algorithm: a, key });
            }
        }
        self.update(|i| i.allowed = list);
        Ok(self)
    }

    /// Keys on this claim instead of `sub`. The claim must be a non-empty
    /// string or a number; anything else (absent, `null`, a boolean, an
    /// array, an object) makes the token unusable (`401`).
    ///
    /// A name starting with `/` is a JSON Pointer (RFC 6901) into the
    /// claims, for nested claims: `"/org/id"`.
    ///
    /// ```
    /// use tollgate::key::Bearer;
    ///
    /// # fn main() -> Result<(), tollgate::key::JwtError> {
    /// let by_tenant = Bearer::hs256("an example secret of at least 32 bytes!")?.claim("tenant");
    /// # Ok(())
    /// # }
    /// ```
    pub fn claim(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.update(|i| i.claim = name);
        self
    }

    /// The clock skew tolerated on `exp` and `nbf`, in whole seconds
    /// (rounded down), at most [`MAX_LEEWAY`](Self::MAX_LEEWAY). Default:
    /// [`DEFAULT_LEEWAY`](Self::DEFAULT_LEEWAY) (30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        let secs = leeway.min(Self::MAX_LEEWAY).as_secs();
        self.update(|i| i.leeway = secs);
        self
    }

    /// Whether a token without `exp` is rejected (the default: `true`). An
    /// `exp` that is present is always checked.
    pub fn require_exp(mut self, required: bool) -> Self {
        self.update(|i| i.require_exp = required);
        self
    }

    /// Accepts tokens issued by `issuer` (the `iss` claim); call it again
    /// to accept several issuers. Once set, a token without `iss` is
    /// rejected.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.update(|i| i.issuers.push(issuer));
        self
    }

    /// Accepts tokens meant for `audience` (one of the `aud` values); call
    /// it again to accept several. Once set, a token without `aud` is
    /// rejected. Without it, a token that has an `aud` is rejected.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        let audience = audience.into();
        self.update(|i| i.audiences.push(audience));
        self
    }

    /// What a request without a valid token gets: [`OnMissing::Reject`]
    /// (the default) answers `401` problem+json; [`OnMissing::Skip`] lets it
    /// through without limiting it — including requests carrying a forged
    /// or expired token.
    pub fn on_missing(mut self, on_missing: OnMissing) -> Self {
        self.update(|i| i.on_missing = on_missing);
        self
    }

    /// Rejects tokens longer than this many bytes (default
    /// [`DEFAULT_MAX_TOKEN_LEN`](Self::DEFAULT_MAX_TOKEN_LEN), 8 KiB), before
    /// decoding anything, so that a huge header is cheap to refuse.
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        self.update(|i| i.max_token_len = bytes);
        self
    }

    /// The key for a bare token (without `Bearer `), checked exactly as in
    /// a request: for tokens that arrive elsewhere (a WebSocket message, a
    /// gRPC metadata value) and [`Limiter`](crate::Limiter).
    ///
    /// The error is the `401` problem a request would get.
    pub fn key_for(&self, token: &str) -> Result<Key, Problem> {
        self.verify(token.as_bytes())
            .map_err(|invalid| invalid.problem(&self.inner.claim))
    }

    fn update(&mut self, f: impl FnOnce(&mut Inner)) {
        let inner = Arc::make_mut(&mut self.inner);
        f(inner);
        inner.sync();
    }
}

impl KeyExtractor for Bearer {
    fn extract(&self, parts: &Parts) -> Extracted {
        match self.verify_request(parts) {
            Ok(key) => Extracted::Key(key),
            Err(invalid) => Extracted::Missing(invalid.problem(&self.inner.claim)),
        }
    }

    fn on_missing(&self) -> OnMissing {
        self.inner.on_missing
    }
}

/// The keys and settings of a [`Bearer`], shared by its clones.
#[derive(Clone)]
struct Inner {
    keys: Vec<VerifyKey>,
    /// A JWKS: keys are chosen by the token's `kid`. Otherwise there is one
    /// key and `kid` is ignored.
    by_kid: bool,
    allowed: Vec<JwtAlgorithm>,
    claim: String,
    leeway: u64,
    require_exp: bool,
    issuers: Vec<String>,
    audiences: Vec<String>,
    on_missing: OnMissing,
    max_token_len: usize,
}

impl Inner {
    /// Rebuilds each key's `Validation` from the shared settings.
    fn sync(&mut self) {
        let mut required = vec![];
        if self.require_exp {
            required.push("exp");
        }
        if !self.issuers.is_empty() {
            required.push("iss");
        }
        if !self.audiences.is_empty() {
            required.push("aud");
        }
        for key in &mut self.keys {
            key.enabled = key
                .usable
                .iter()
                .copied()
                .filter(|a| self.allowed.contains(a))
                .collect();
            let mut v = Validation::new(jsonwebtoken::Algorithm::HS256);
            v.algorithms = key.enabled.iter().map(|a| a.to_jsonwebtoken()).collect();
            v.leeway = self.leeway;
            v.validate_exp = true;
            v.validate_nbf = true;
            v.validate_aud = true;
            v.set_required_spec_claims(&required);
            v.iss = None;
            v.aud = None;
            if !self.issuers.is_empty() {
                v.set_issuer(&self.issuers);
            }
            if !self.audiences.is_empty() {
                v.set_audience(&self.audiences);
            }
            key.validation = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let b = Bearer::hs256("a very secret secret of more than 32 bytes").unwrap();
        let s = format!("{b:?}");
        assert!(!s.contains("very secret"), "{s}");
    }
}
