//! [`JwtError`]: why a [`Bearer`](super::Bearer) cannot be built.

use std::path::PathBuf;

use super::JwtAlgorithm;

/// Why a [`Bearer`](super::Bearer) could not be built. Every key and setting is checked
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
