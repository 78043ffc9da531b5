//! Verification: from the `Authorization` header to the keyed claim of a
//! token whose algorithm, key, signature and claims all check out.

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::request::Parts;
use serde::Deserialize;
use serde_json::Value;

use super::keys::VerifyKey;
use super::problem::Invalid;
use super::{Bearer, JwtAlgorithm};
use crate::key::Key;

/// Unpadded, canonical base64url (RFC 7515 §2): padding and non-zero
/// trailing bits are refused, so one token has one spelling.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

impl Bearer {
    pub(super) fn verify_request(&self, parts: &Parts) -> Result<Key, Invalid> {
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

    pub(super) fn verify(&self, token: &[u8]) -> Result<Key, Invalid> {
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
        let header_json = BASE64URL
            .decode(&token[..header_end])
            .map_err(|_| Invalid::Malformed)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decodes_canonical_unpadded_input_only() {
        let b64url_decode = |input: &[u8]| BASE64URL.decode(input).ok();
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
}
