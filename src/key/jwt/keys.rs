//! Loading verification keys: [`Bearer`]'s constructors from an HMAC
//! secret, a PEM public key or a JWKS, each key tied to the algorithms its
//! type can verify.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::algorithm::{Family, HMAC_ALGS, RSA_ALGS};
use super::{Bearer, JwtAlgorithm, JwtError};

/// One verification key, tied to the algorithms its type allows.
#[derive(Clone)]
pub(super) struct VerifyKey {
    pub(super) kid: Option<String>,
    pub(super) family: Family,
    /// What this key can verify (its family, narrowed by curve and by a
    /// JWK's own `alg`).
    pub(super) usable: Vec<JwtAlgorithm>,
    /// `usable` ∩ the allow-list.
    pub(super) enabled: Vec<JwtAlgorithm>,
    pub(super) decoding: DecodingKey,
    pub(super) validation: Validation,
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

    pub(super) fn accepts(&self, alg: JwtAlgorithm) -> bool {
        self.enabled.contains(&alg)
    }
}

impl Bearer {
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
}
