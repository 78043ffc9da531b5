//! [`JwtAlgorithm`], and the key [`Family`] that fixes which algorithms a
//! key may verify.

use std::fmt;
use std::str::FromStr;

use super::JwtError;

/// A JWS signing algorithm that [`Bearer`](super::Bearer) can verify.
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

pub(super) const HMAC_ALGS: &[JwtAlgorithm] = &[
    JwtAlgorithm::HS256,
    JwtAlgorithm::HS384,
    JwtAlgorithm::HS512,
];
pub(super) const RSA_ALGS: &[JwtAlgorithm] = &[
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

    pub(super) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub(super) fn family(self) -> Family {
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

    pub(super) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
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
pub(super) enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Family {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Family::Hmac => "an HMAC secret (HS256, HS384, HS512)",
            Family::Rsa => "an RSA key (RS256, RS384, RS512, PS256, PS384, PS512)",
            Family::Ec => "this EC key (ES256 for a P-256 key, ES384 for a P-384 key)",
            Family::Ed => "an Ed25519 key (EdDSA)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
