//! [`Bearer`]: keys on a claim of a verified JSON Web Token from
//! `Authorization: Bearer <token>` (feature `jwt`).

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::StatusCode;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::{Extracted, Key, KeyExtractor, OnMissing};
use crate::response::Problem;

/// A JWS signing algorithm that [`Bearer`] can verify.
///
/// There is no `none`: an unsigned token is never accepted, whatever the
/// configuration.
///
/// ```
/// use tollgate::key::JwtAlgorithm;
///
/// assert_eq!("RS256".parse::<JwtAlgorithm>().unwrap(), JwtAlgorithm::RS256);
/// assert!("none".parse::<JwtAlgorithm>().is_err());
/// ```
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 (shared secret).
    HS256,
    /// HMAC with SHA-384 (shared secret).
    HS384,
    /// HMAC with SHA-512 (shared secret).
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

const HMAC_ALGS: &[JwtAlgorithm] = &[
    JwtAlgorithm::HS256,
    JwtAlgorithm::HS384,
    JwtAlgorithm::HS512,
];
const RSA_ALGS: &[JwtAlgorithm] = &[
    JwtAlgorithm::RS256,
    JwtAlgorithm::RS384,
    JwtAlgorithm::RS512,
    JwtAlgorithm::PS256,
    JwtAlgorithm::PS384,
    JwtAlgorithm::PS512,
];

impl JwtAlgorithm {
    /// Every algorithm, in the order of the enum.
    pub const ALL: [JwtAlgorithm; 12] = [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
        JwtAlgorithm::RS256,
        JwtAlgorithm::RS384,
        JwtAlgorithm::RS512,
        JwtAlgorithm::PS256,
        JwtAlgorithm::PS384,
        JwtAlgorithm::PS512,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ];

    /// The name used in a token's `alg` header (`"HS256"`, `"EdDSA"`…).
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::HS384 => "HS384",
            JwtAlgorithm::HS512 => "HS512",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::RS384 => "RS384",
            JwtAlgorithm::RS512 => "RS512",
            JwtAlgorithm::PS256 => "PS256",
            JwtAlgorithm::PS384 => "PS384",
            JwtAlgorithm::PS512 => "PS512",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::ES384 => "ES384",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    fn family(self) -> Family {
        match self {
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => Family::Hmac,
            JwtAlgorithm::RS256
            | JwtAlgorithm::RS384
            | JwtAlgorithm::RS512
            | JwtAlgorithm::PS256
            | JwtAlgorithm::PS384
            | JwtAlgorithm::PS512 => Family::Rsa,
            JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => Family::Ec,
            JwtAlgorithm::EdDSA => Family::Ed,
        }
    }

    fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            JwtAlgorithm::HS256 => A::HS256,
            JwtAlgorithm::HS384 => A::HS384,
            JwtAlgorithm::HS512 => A::HS512,
            JwtAlgorithm::RS256 => A::RS256,
            JwtAlgorithm::RS384 => A::RS384,
            JwtAlgorithm::RS512 => A::RS512,
            JwtAlgorithm::PS256 => A::PS256,
            JwtAlgorithm::PS384 => A::PS384,
            JwtAlgorithm::PS512 => A::PS512,
            JwtAlgorithm::ES256 => A::ES256,
            JwtAlgorithm::ES384 => A::ES384,
            JwtAlgorithm::EdDSA => A::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwtAlgorithm {
    type Err = JwtError;

    /// Parses the exact (case-sensitive) JWS name; `none` is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| JwtError::UnknownAlgorithm(s.to_owned()))
    }
}

/// What a verification key is, which fixes the algorithms it may verify:
/// an HMAC secret never verifies an RS/ES/EdDSA token and an RSA key never
/// verifies an HS token (no algorithm confusion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Family {
    fn describe(self) -> &'static str {
        match self {
            Family::Hmac => "an HMAC secret (HS256, HS384, HS512)",
            Family::Rsa => "an RSA key (RS256, RS384, RS512, PS256, PS384, PS512)",
            Family::Ec => "this EC key (ES256 for a P-256 key, ES384 for a P-384 key)",
            Family::Ed => "an Ed25519 key (EdDSA)",
        }
    }
}

/// Why a [`Bearer`] could not be built. Every key and setting is checked
/// when the extractor is built, so that a bad key is an error at start-up,
/// never a failure on each request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The HMAC secret is empty.
    #[error("the HMAC secret is empty: use a random secret of at least 32 bytes")]
    EmptySecret,
    /// The PEM text could not be read as the expected kind of public key.
    #[error("not a valid {expected} PEM: {reason}")]
    Pem {
        /// The kind of key the constructor expects.
        expected: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A private key was given where a public key is needed.
    #[error(
        "the PEM holds a private key; pass the public key instead \
         (`openssl pkey -in private.pem -pubout -out public.pem`)"
    )]
    PrivateKey,
    /// The JWKS document is not a JSON object with a `keys` array.
    #[error("not a valid JWKS (a JSON object with a \"keys\" array): {0}")]
    Jwks(String),
    /// No key of the JWKS can verify signatures.
    #[error("the JWKS has no key usable for verifying signatures ({skipped})")]
    NoUsableKey {
        /// Why each key was skipped.
        skipped: String,
    },
    /// The JWKS file could not be read.
    #[error("cannot read the JWKS file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An algorithm name is not one of the supported JWS algorithms.
    #[error(
        "unknown JWT algorithm {0:?}; accepted: HS256, HS384, HS512, RS256, RS384, RS512, \
         PS256, PS384, PS512, ES256, ES384, EdDSA (never \"none\")"
    )]
    UnknownAlgorithm(String),
    /// The algorithm allow-list is empty.
    #[error("the algorithm allow-list is empty: allow at least one algorithm")]
    NoAlgorithms,
    /// An allowed algorithm cannot be verified with the configured key(s).
    #[error("{algorithm} cannot be verified with {key}")]
    AlgorithmNotForKey {
        /// The algorithm.
        algorithm: JwtAlgorithm,
        /// What the key is, and the algorithms it can verify.
        key: &'static str,
    },
}

/// One verification key, tied to the algorithms its type allows.
#[derive(Clone)]
struct VerifyKey {
    kid: Option<String>,
    family: Family,
    /// What this key can verify (its family, narrowed by curve and by a
    /// JWK's own `alg`).
    usable: Vec<JwtAlgorithm>,
    /// `usable` ∩ the allow-list.
    enabled: Vec<JwtAlgorithm>,
    decoding: DecodingKey,
    validation: Validation,
}

impl VerifyKey {
    fn new(
        kid: Option<String>,
        family: Family,
        usable: Vec<JwtAlgorithm>,
        decoding: DecodingKey,
    ) -> Self {
        debug_assert!(usable.iter().all(|a| a.family() == family));
        VerifyKey {
            kid,
            family,
            usable,
            enabled: Vec::new(),
            decoding,
            validation: Validation::default(),
        }
    }

    fn accepts(&self, alg: JwtAlgorithm) -> bool {
        self.enabled.contains(&alg)
    }
}

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

    /// Verifies HMAC tokens with this shared secret; the allow-list is
    /// `[HS256]` (widen it to HS384/HS512 with
    /// [`algorithms`](Self::algorithms)). The secret is used as raw bytes.
    ///
    /// An empty secret is an error. A secret shorter than 32 bytes is
    /// accepted with a `warn` (RFC 7518 §3.2 asks for at least the hash
    /// size): such a secret can be brute-forced from any token.
    ///
    /// ```
    /// use tollgate::key::Bearer;
    ///
    /// # fn main() -> Result<(), tollgate::key::JwtError> {
    /// let secret = std::env::var("JWT_SECRET")
    ///     .unwrap_or_else(|_| "an example secret of at least 32 bytes!".into());
    /// let by_sub = Bearer::hs256(secret)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, JwtError> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(JwtError::EmptySecret);
        }
        if secret.len() < 32 {
            tracing::warn!(
                secret_len = secret.len(),
                "tollgate: the JWT HMAC secret is shorter than 32 bytes; use a random secret \
                 of at least 32 bytes (RFC 7518 §3.2)"
            );
        }
        let key = VerifyKey::new(
            None,
            Family::Hmac,
            HMAC_ALGS.to_vec(),
            DecodingKey::from_secret(secret),
        );
        Ok(Self::with_keys(vec![key], false, vec![JwtAlgorithm::HS256]))
    }

    /// Verifies RSA tokens with this public key (PEM: `PUBLIC KEY`,
    /// `RSA PUBLIC KEY` or `CERTIFICATE`); the allow-list is `[RS256]`
    /// (widen it to RS384/RS512/PS256/PS384/PS512 with
    /// [`algorithms`](Self::algorithms)). A private key is an error.
    ///
    /// ```
    /// use tollgate::key::{Bearer, JwtAlgorithm};
    ///
    /// # fn main() -> Result<(), tollgate::key::JwtError> {
    /// # let pem = include_str!("../../../tests/fixtures/jwt/rsa_public.pem");
    /// // let pem = std::fs::read("keys/jwt-public.pem")?;
    /// let by_sub = Bearer::rsa_pem(pem)?
    ///     .algorithms([JwtAlgorithm::RS256, JwtAlgorithm::PS256])?;
    /// // An RSA key never verifies an HMAC token:
    /// assert!(Bearer::rsa_pem(pem)?.algorithms([JwtAlgorithm::HS256]).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn rsa_pem(pem: impl AsRef<[u8]>) -> Result<Self, JwtError> {
        const EXPECTED: &str = "RSA public key";
        let pem = pem.as_ref();
        check_public_pem(pem)?;
        let decoding = DecodingKey::from_rsa_pem(pem).map_err(|e| pem_error(EXPECTED, &e))?;
        let key = VerifyKey::new(None, Family::Rsa, RSA_ALGS.to_vec(), decoding);
        Ok(Self::with_keys(vec![key], false, vec![JwtAlgorithm::RS256]))
    }

    /// Verifies ECDSA tokens with this public key (PEM: `PUBLIC KEY` or
    /// `CERTIFICATE`). The curve fixes the algorithm and the allow-list:
    /// `[ES256]` for a P-256 key, `[ES384]` for a P-384 key; other curves
    /// are an error.
    ///
    /// ```
    /// use tollgate::key::Bearer;
    ///
    /// # fn main() -> Result<(), tollgate::key::JwtError> {
    /// # let pem = include_str!("../../../tests/fixtures/jwt/ec_public.pem");
    /// // let pem = std::fs::read("keys/jwt-es256-public.pem")?;
    /// let by_sub = Bearer::ec_pem(pem)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn ec_pem(pem: impl AsRef<[u8]>) -> Result<Self, JwtError> {
        const EXPECTED: &str = "EC (P-256 or P-384) public key";
        let pem = pem.as_ref();
        check_public_pem(pem)?;
        let decoding = DecodingKey::from_ec_pem(pem).map_err(|e| pem_error(EXPECTED, &e))?;
        let alg = ec_algorithm(&decoding).ok_or_else(|| JwtError::Pem {
            expected: EXPECTED,
            reason: "not a point on P-256 or P-384".to_owned(),
        })?;
        let key = VerifyKey::new(None, Family::Ec, vec![alg], decoding);
        Ok(Self::with_keys(vec![key], false, vec![alg]))
    }

    /// Verifies EdDSA (Ed25519) tokens with this public key (PEM:
    /// `PUBLIC KEY` or `CERTIFICATE`); the allow-list is `[EdDSA]`.
    ///
    /// ```
    /// use tollgate::key::Bearer;
    ///
    /// # fn main() -> Result<(), tollgate::key::JwtError> {
    /// # let pem = include_str!("../../../tests/fixtures/jwt/ed25519_public.pem");
    /// // let pem = std::fs::read("keys/jwt-ed25519-public.pem")?;
    /// let by_sub = Bearer::ed_pem(pem)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn ed_pem(pem: impl AsRef<[u8]>) -> Result<Self, JwtError> {
        const EXPECTED: &str = "Ed25519 public key";
        let pem = pem.as_ref();
        check_public_pem(pem)?;
        let decoding = DecodingKey::from_ed_pem(pem).map_err(|e| pem_error(EXPECTED, &e))?;
        if !ed_key_ok(&decoding) {
            return Err(JwtError::Pem {
                expected: EXPECTED,
                reason: "not a 32-byte Ed25519 public key".to_owned(),
            });
        }
        let key = VerifyKey::new(None, Family::Ed, vec![JwtAlgorithm::EdDSA], decoding);
        Ok(Self::with_keys(vec![key], false, vec![JwtAlgorithm::EdDSA]))
    }

    /// Verifies tokens with the keys of a JSON Web Key Set (`{"keys":
    /// [...]}`, RFC 7517), choosing the key by the token's `kid`.
    ///
    /// - A token with a `kid` uses the key with that `kid`; a token without
    ///   one is accepted only when exactly one key can verify its `alg`.
    /// - Each key verifies only what its type allows (`RSA`: RS*/PS*; `EC`:
    ///   ES256 on P-256, ES384 on P-384; `OKP` Ed25519: EdDSA; `oct`: HS*),
    ///   narrowed to its own `alg` when it has one.
    /// - Keys that cannot verify signatures are skipped, with one `warn`:
    ///   `"use": "enc"`, `key_ops` without `verify`, an encryption `alg`,
    ///   an unsupported curve (P-521) or key type. No usable key at all is
    ///   an error.
    /// - The allow-list is each key's own `alg`, or for a key without one:
    ///   RS256, the ES* of its curve, EdDSA, HS256. Change it with
    ///   [`algorithms`](Self::algorithms).
    ///
    /// The set is read once; it is not refreshed.
    ///
    /// ```
    /// use tollgate::key::Bearer;
    ///
    /// # fn main() -> Result<(), tollgate::key::JwtError> {
    /// # let json = include_str!("../../../tests/fixtures/jwt/jwks.json");
    /// // let json = reqwest::blocking::get("https://auth.example.com/.well-known/jwks.json")?.bytes()?;
    /// let by_sub = Bearer::jwks(json)?
    ///     .issuer("https://auth.example.com");
    /// # Ok(())
    /// # }
    /// ```
    pub fn jwks(json: impl AsRef<[u8]>) -> Result<Self, JwtError> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<Value>,
        }
        let set: RawSet =
            serde_json::from_slice(json.as_ref()).map_err(|e| JwtError::Jwks(e.to_string()))?;
        let mut keys = Vec::with_capacity(set.keys.len());
        let mut allowed = Vec::new();
        let mut skipped = Vec::new();
        for (i, raw) in set.keys.into_iter().enumerate() {
            let kid = raw.get("kid").and_then(Value::as_str).map(str::to_owned);
            let name = match &kid {
                Some(kid) => format!("kid {kid:?}"),
                None => format!("key #{i}"),
            };
            let parsed = serde_json::from_value::<Jwk>(raw)
                .map_err(|_| "unsupported key type or malformed key".to_owned())
                .and_then(|jwk| key_from_jwk(&jwk));
            match parsed {
                Ok((key, default)) => {
                    if !allowed.contains(&default) {
                        allowed.push(default);
                    }
                    keys.push(key);
                }
                Err(reason) => skipped.push(format!("{name}: {reason}")),
            }
        }
        let skipped = skipped.join("; ");
        if keys.is_empty() {
            return Err(JwtError::NoUsableKey {
                skipped: if skipped.is_empty() {
                    "the set is empty".to_owned()
                } else {
                    skipped
                },
            });
        }
        if !skipped.is_empty() {
            tracing::warn!(
                skipped = %skipped,
                "tollgate: some JWKS keys cannot verify signatures and are ignored"
            );
        }
        Ok(Self::with_keys(keys, true, allowed))
    }

    /// [`jwks`](Self::jwks) read from a file, once.
    ///
    /// ```no_run
    /// use tollgate::key::Bearer;
    ///
    /// # fn main() -> Result<(), tollgate::key::JwtError> {
    /// let by_sub = Bearer::jwks_file("/etc/myapp/jwks.json")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn jwks_file(path: impl AsRef<Path>) -> Result<Self, JwtError> {
        let path = path.as_ref();
        let json = std::fs::read(path).map_err(|source| JwtError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::jwks(json)
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

    fn verify_request(&self, parts: &Parts) -> Result<Key, Invalid> {
        let mut values = parts.headers.get_all(AUTHORIZATION).iter();
        let value = values.next().ok_or(Invalid::NoHeader)?;
        if values.next().is_some() {
            return Err(Invalid::SeveralHeaders);
        }
        let bytes = value.as_bytes();
        // Cheap refusal of huge headers before looking at them.
        if bytes.len() > self.inner.max_token_len.saturating_add(64) {
            return Err(Invalid::TooLarge);
        }
        let token = bearer_token(bytes)?;
        self.verify(token)
    }

    fn verify(&self, token: &[u8]) -> Result<Key, Invalid> {
        let inner = &*self.inner;
        if token.is_empty() {
            return Err(Invalid::NoToken);
        }
        if token.len() > inner.max_token_len {
            return Err(Invalid::TooLarge);
        }
        // A JWS in compact form: three base64url parts. This also turns
        // away non-ASCII bytes, whitespace and padding.
        let mut dots = 0;
        for &b in token {
            match b {
                b'.' => dots += 1,
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
                _ => return Err(Invalid::Malformed),
            }
        }
        if dots != 2 {
            return Err(Invalid::Malformed);
        }
        let header_end = token.iter().position(|&b| b == b'.').unwrap_or(0);
        let header_json = b64url_decode(&token[..header_end]).ok_or(Invalid::Malformed)?;
        let header: RawHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| Invalid::Malformed)?;
        let alg = JwtAlgorithm::from_name(&header.alg)
            .filter(|a| inner.allowed.contains(a))
            .ok_or(Invalid::AlgorithmNotAllowed)?;
        if header.crit.is_some() {
            return Err(Invalid::Critical);
        }
        let key = self.select(alg, header.kid.as_deref())?;
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &key.validation)
            .map_err(|e| Invalid::from_jwt(e.kind()))?;
        let value = if inner.claim.starts_with('/') {
            data.claims.pointer(&inner.claim)
        } else {
            data.claims.get(&inner.claim)
        };
        match value {
            Some(Value::String(s)) if !s.is_empty() => Ok(Key::from_bytes(s.as_bytes())),
            Some(Value::Number(n)) => Ok(Key::from_bytes(n.to_string().as_bytes())),
            _ => Err(Invalid::Claim),
        }
    }

    fn select(&self, alg: JwtAlgorithm, kid: Option<&str>) -> Result<&VerifyKey, Invalid> {
        let keys = &self.inner.keys;
        if !self.inner.by_kid {
            return keys
                .first()
                .filter(|k| k.accepts(alg))
                .ok_or(Invalid::AlgorithmNotAllowed);
        }
        match kid {
            Some(kid) => keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.accepts(alg))
                .ok_or(Invalid::UnknownKey),
            None => {
                let mut candidates = keys.iter().filter(|k| k.accepts(alg));
                match (candidates.next(), candidates.next()) {
                    (Some(k), None) => Ok(k),
                    _ => Err(Invalid::UnknownKey),
                }
            }
        }
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

/// The fields of a JOSE header that are looked at before verification.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Why a request has no usable token. Each maps to a fixed 401 problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invalid {
    NoHeader,
    SeveralHeaders,
    NotBearer,
    NoToken,
    TooLarge,
    Malformed,
    BadTimeClaim,
    AlgorithmNotAllowed,
    Critical,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    NoExpiry,
    WrongIssuer,
    WrongAudience,
    Claim,
    Other,
}

impl Invalid {
    fn from_jwt(kind: &ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidSignature => Invalid::BadSignature,
            ErrorKind::ExpiredSignature => Invalid::Expired,
            ErrorKind::ImmatureSignature => Invalid::NotYetValid,
            ErrorKind::InvalidIssuer => Invalid::WrongIssuer,
            ErrorKind::InvalidAudience => Invalid::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
                "exp" => Invalid::NoExpiry,
                "iss" => Invalid::WrongIssuer,
                "aud" => Invalid::WrongAudience,
                _ => Invalid::Other,
            },
            ErrorKind::InvalidClaimFormat(_) => Invalid::BadTimeClaim,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::MissingAlgorithm => Invalid::AlgorithmNotAllowed,
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => Invalid::Malformed,
            _ => Invalid::Other,
        }
    }

    fn problem(self, claim: &str) -> Problem {
        let (title, detail): (&'static str, Cow<'static, str>) = match self {
            Invalid::NoHeader => (
                "Missing bearer token",
                "Send the token as `Authorization: Bearer <token>`.".into(),
            ),
            Invalid::SeveralHeaders => (
                "Malformed authorization header",
                "The request has more than one Authorization header.".into(),
            ),
            Invalid::NotBearer => (
                "Missing bearer token",
                "The Authorization header does not use the Bearer scheme; send \
                 `Authorization: Bearer <token>`."
                    .into(),
            ),
            Invalid::NoToken => (
                "Missing bearer token",
                "The Authorization header names the Bearer scheme but carries no token.".into(),
            ),
            Invalid::TooLarge => (
                "Token too large",
                "The bearer token is longer than this API accepts.".into(),
            ),
            Invalid::Malformed => (
                "Malformed token",
                "The bearer token is not a well-formed signed JWT (three base64url parts: \
                 header, claims, signature)."
                    .into(),
            ),
            Invalid::BadTimeClaim => (
                "Malformed token",
                "A time claim of the token (exp or nbf) is not a number of seconds.".into(),
            ),
            Invalid::AlgorithmNotAllowed => (
                "Algorithm not allowed",
                "The token's signing algorithm (alg) is not one this API accepts; unsigned \
                 tokens (alg none) are never accepted."
                    .into(),
            ),
            Invalid::Critical => (
                "Unsupported token",
                "The token header lists critical extensions (crit) that this API does not \
                 understand."
                    .into(),
            ),
            Invalid::UnknownKey => (
                "Unknown signing key",
                "No verification key matches the token's key id (kid) and algorithm.".into(),
            ),
            Invalid::BadSignature => (
                "Invalid signature",
                "The token's signature does not verify.".into(),
            ),
            Invalid::Expired => ("Expired token", "The token has expired (exp).".into()),
            Invalid::NotYetValid => (
                "Token not yet valid",
                "The token is not valid yet (nbf).".into(),
            ),
            Invalid::NoExpiry => (
                "Missing expiry",
                "The token has no valid expiry time (exp, in seconds); this API requires one."
                    .into(),
            ),
            Invalid::WrongIssuer => (
                "Wrong issuer",
                "The token's issuer (iss) is missing or not one this API accepts.".into(),
            ),
            Invalid::WrongAudience => (
                "Wrong audience",
                "The token's audience (aud) is missing or not one this API accepts.".into(),
            ),
            Invalid::Claim => (
                "Missing claim",
                format!(
                    "The token has no non-empty string or number claim {claim:?} to key rate \
                     limits on."
                )
                .into(),
            ),
            Invalid::Other => (
                "Invalid token",
                "The bearer token could not be verified.".into(),
            ),
        };
        // RFC 6750 §3: a bare challenge when no token came, `invalid_token`
        // when one did.
        let challenge = match self {
            Invalid::NoHeader | Invalid::NotBearer | Invalid::NoToken => "Bearer",
            _ => "Bearer error=\"invalid_token\"",
        };
        Problem::new(StatusCode::UNAUTHORIZED, title, detail).with_header(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(challenge),
        )
    }
}

/// The token of `Bearer <token>` (scheme in any case, one or more spaces).
fn bearer_token(value: &[u8]) -> Result<&[u8], Invalid> {
    let value = value.trim_ascii();
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Invalid::NotBearer);
    }
    let token = rest.trim_ascii_start();
    if token.is_empty() {
        return Err(Invalid::NoToken);
    }
    Ok(token)
}

/// Decodes unpadded, canonical base64url (RFC 7515 §2).
fn b64url_decode(input: &[u8]) -> Option<Vec<u8>> {
    if input.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, as in any canonical encoding.
    (acc == 0).then_some(out)
}

/// Refuses a private key where a public key is expected: it would parse,
/// then fail every verification.
fn check_public_pem(pem: &[u8]) -> Result<(), JwtError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let Some(start) = pem.windows(BEGIN.len()).position(|w| w == BEGIN) else {
        return Ok(()); // not PEM at all: the parser says so
    };
    let label = &pem[start + BEGIN.len()..];
    let label = &label[..label.iter().position(|&b| b == b'-').unwrap_or(label.len())];
    if label.windows(7).any(|w| w == b"PRIVATE") {
        return Err(JwtError::PrivateKey);
    }
    Ok(())
}

fn pem_error(expected: &'static str, e: &jsonwebtoken::errors::Error) -> JwtError {
    let reason = match e.kind() {
        ErrorKind::InvalidKeyFormat => "not a PEM public key of this type".to_owned(),
        _ => e.to_string(),
    };
    JwtError::Pem { expected, reason }
}

/// Whether `key` can verify `alg`: builds the verifier (which parses an EC
/// or Ed key) over an empty signature.
fn verifies(key: &DecodingKey, alg: JwtAlgorithm) -> bool {
    jsonwebtoken::crypto::verify("", b"", key, alg.to_jsonwebtoken()).is_ok()
}

/// ES256 for a P-256 key, ES384 for a P-384 key.
fn ec_algorithm(key: &DecodingKey) -> Option<JwtAlgorithm> {
    [JwtAlgorithm::ES256, JwtAlgorithm::ES384]
        .into_iter()
        .find(|&alg| verifies(key, alg))
}

/// An Ed25519 key is exactly 32 bytes (checked before building a
/// verifier, which would slice it).
fn ed_key_ok(key: &DecodingKey) -> bool {
    matches!(key.kind(), DecodingKeyKind::SecretOrDer(b) if b.len() == 32)
        && verifies(key, JwtAlgorithm::EdDSA)
}

/// A verification key from a JWK, with its default algorithm; or why the
/// key cannot be used.
fn key_from_jwk(jwk: &Jwk) -> Result<(VerifyKey, JwtAlgorithm), String> {
    let common = &jwk.common;
    match &common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("not a signing key (\"use\" is not \"sig\")".to_owned()),
    }
    if let Some(ops) = &common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return Err("\"key_ops\" does not include \"verify\"".to_owned());
        }
    }
    let declared = match common.key_algorithm {
        None => None,
        Some(alg) => Some(
            JwtAlgorithm::from_name(&alg.to_string())
                .ok_or_else(|| format!("\"alg\" {alg} is not a supported signing algorithm"))?,
        ),
    };
    let bad = |what: &str| format!("invalid {what} key");
    let (family, usable, decoding) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let key = DecodingKey::from_rsa_components(&p.n, &p.e).map_err(|_| bad("RSA"))?;
            match key.kind() {
                DecodingKeyKind::RsaModulusExponent { n, e } if !n.is_empty() && !e.is_empty() => {}
                _ => return Err(bad("RSA")),
            }
            (Family::Rsa, RSA_ALGS.to_vec(), key)
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let alg = match p.curve {
                EllipticCurve::P256 => JwtAlgorithm::ES256,
                EllipticCurve::P384 => JwtAlgorithm::ES384,
                _ => return Err("unsupported curve (only P-256 and P-384)".to_owned()),
            };
            let key = DecodingKey::from_ec_components(&p.x, &p.y).map_err(|_| bad("EC"))?;
            if !verifies(&key, alg) {
                return Err(bad("EC"));
            }
            (Family::Ec, vec![alg], key)
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err("unsupported OKP curve (only Ed25519)".to_owned());
            }
            let key = DecodingKey::from_ed_components(&p.x).map_err(|_| bad("Ed25519"))?;
            if !ed_key_ok(&key) {
                return Err(bad("Ed25519"));
            }
            (Family::Ed, vec![JwtAlgorithm::EdDSA], key)
        }
        AlgorithmParameters::OctetKey(_) => {
            let key = DecodingKey::from_jwk(jwk).map_err(|_| bad("oct"))?;
            match key.try_get_hmac_secret() {
                Ok(secret) if !secret.is_empty() => {}
                _ => return Err(bad("oct")),
            }
            (Family::Hmac, HMAC_ALGS.to_vec(), key)
        }
    };
    let (usable, default) = match declared {
        Some(alg) if usable.contains(&alg) => (vec![alg], alg),
        Some(alg) => return Err(format!("\"alg\" {alg} does not fit the key type")),
        None => {
            let default = usable.first().copied().ok_or_else(|| bad("JWK"))?;
            (usable, default)
        }
    };
    Ok((
        VerifyKey::new(common.key_id.clone(), family, usable, decoding),
        default,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decodes_canonical_unpadded_input_only() {
        assert_eq!(b64url_decode(b"").unwrap(), b"");
        assert_eq!(b64url_decode(b"Zg").unwrap(), b"f");
        assert_eq!(b64url_decode(b"Zm8").unwrap(), b"fo");
        assert_eq!(b64url_decode(b"Zm9v").unwrap(), b"foo");
        assert_eq!(b64url_decode(b"-_8").unwrap(), [0xfb, 0xff]);
        assert!(b64url_decode(b"Z").is_none(), "a lone sextet");
        assert!(b64url_decode(b"Zh").is_none(), "non-zero trailing bits");
        assert!(b64url_decode(b"Zg==").is_none(), "padding");
        assert!(b64url_decode(b"Z+8/").is_none(), "standard alphabet");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer_token(b"Bearer abc").unwrap(), b"abc");
        assert_eq!(bearer_token(b"bEaReR   abc ").unwrap(), b"abc");
        assert_eq!(bearer_token(b"Bearer"), Err(Invalid::NoToken));
        assert_eq!(bearer_token(b"Bearer   "), Err(Invalid::NoToken));
        assert_eq!(bearer_token(b"Basic dXNlcjpwYXNz"), Err(Invalid::NotBearer));
        assert_eq!(bearer_token(b"Bearerabc"), Err(Invalid::NotBearer));
        assert_eq!(bearer_token(b""), Err(Invalid::NotBearer));
    }

    #[test]
    fn private_key_pem_is_refused() {
        let pem = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(check_public_pem(pem), Err(JwtError::PrivateKey)));
        let pem = b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(check_public_pem(pem), Err(JwtError::PrivateKey)));
        let pem = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(check_public_pem(pem).is_ok());
    }

    #[test]
    fn short_ed25519_jwk_is_skipped_not_a_panic_later() {
        // 16 bytes of x: the verifier would slice 32.
        let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"short","x":"AAAAAAAAAAAAAAAAAAAAAA"}]}"#;
        let err = Bearer::jwks(jwks).unwrap_err();
        assert!(matches!(err, JwtError::NoUsableKey { .. }), "{err}");
        assert!(err.to_string().contains("short"), "{err}");
    }

    #[test]
    fn jwks_skips_unknown_key_types_and_encryption_keys() {
        let jwks = r#"{"keys":[
            {"kty":"XYZ","kid":"alien"},
            {"kty":"oct","kid":"enc","use":"enc","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"},
            {"kty":"oct","kid":"ok","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}
        ]}"#;
        let bearer = Bearer::jwks(jwks).unwrap();
        assert_eq!(bearer.inner.keys.len(), 1);
        assert_eq!(bearer.inner.keys[0].kid.as_deref(), Some("ok"));
        assert_eq!(bearer.inner.allowed, [JwtAlgorithm::HS256]);
    }

    #[test]
    fn jwk_alg_must_fit_the_key_type() {
        let jwks = r#"{"keys":[{"kty":"oct","kid":"x","alg":"RS256","k":"c2VjcmV0"}]}"#;
        let err = Bearer::jwks(jwks).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn every_algorithm_name_round_trips_and_none_does_not_exist() {
        for a in JwtAlgorithm::ALL {
            assert_eq!(a.as_str().parse::<JwtAlgorithm>().unwrap(), a);
            assert_eq!(a.to_jsonwebtoken().family(), {
                use jsonwebtoken::AlgorithmFamily as F;
                match a.family() {
                    Family::Hmac => F::Hmac,
                    Family::Rsa => F::Rsa,
                    Family::Ec => F::Ec,
                    Family::Ed => F::Ed,
                }
            });
        }
        for bad in ["none", "None", "NONE", "hs256", ""] {
            assert!(bad.parse::<JwtAlgorithm>().is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let b = Bearer::hs256("a very secret secret of more than 32 bytes").unwrap();
        let s = format!("{b:?}");
        assert!(!s.contains("very secret"), "{s}");
    }
}
