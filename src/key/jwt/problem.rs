//! [`Invalid`]: why a request has no usable token, and the `401`
//! problem+json (with its `WWW-Authenticate` challenge) each reason gets.

use std::borrow::Cow;

use http::StatusCode;
use jsonwebtoken::errors::ErrorKind;

use crate::problem::Problem;

/// Why a request has no usable token. Each maps to a fixed 401 problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Invalid {
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
    pub(super) fn from_jwt(kind: &ErrorKind) -> Self {
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

    pub(super) fn problem(self, claim: &str) -> Problem {
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
