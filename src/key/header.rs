//! Credentials as keys: an API key in a header ([`Header`]) or in the
//! query string ([`Query`]).
//!
//! Both hash what they find ([`Key::secret`]): the raw credential never
//! becomes a key, so it cannot reach logs, metrics, headers or the key
//! names of a shared store. Both answer `401` problem+json when it is
//! missing (the default [`OnMissing::Reject`]).

use std::borrow::Cow;

use http::header::HeaderName;
use http::request::Parts;
use http::StatusCode;

use super::{Extracted, Key, KeyExtractor, OnMissing};
use crate::problem::Problem;

/// The longest credential accepted, in bytes; longer ones are invalid (a
/// real API key is well under this, and a huge value is rejected without
/// being hashed).
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// Keys by an API key sent in a header, e.g. `X-Api-Key`.
///
/// - absent, empty, longer than [`MAX_CREDENTIAL_LEN`], or sent twice:
///   [`Extracted::Missing`] with a `401` problem naming the header, which
///   is the answer unless [`Header::on_missing`] says to skip, or
///   `.or(..)` falls back to another extractor;
/// - any bytes are accepted (non-UTF-8 included) and hashed with
///   [`Key::secret`].
///
/// ```
/// use http::HeaderName;
/// use tollgate::key::{ClientIp, Header, KeyExtractorExt};
///
/// // Per API key; requests without one are limited per client IP instead.
/// let key = Header::new(HeaderName::from_static("x-api-key")).or(ClientIp::new());
/// ```
#[derive(Debug, Clone)]
pub struct Header {
    name: HeaderName,
    on_missing: OnMissing,
}

impl Header {
    /// Keys by the value of header `name`.
    pub fn new(name: HeaderName) -> Self {
        Header {
            name,
            on_missing: OnMissing::Reject,
        }
    }

    /// What a request without a usable key gets (default: 401).
    pub fn on_missing(mut self, on_missing: OnMissing) -> Self {
        self.on_missing = on_missing;
        self
    }

    fn missing(&self, why: &'static str) -> Extracted {
        Extracted::Missing(
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "Missing or invalid API key",
                format!("{why}: send your API key in the {} header.", self.name),
            )
            .with_type("about:blank"),
        )
    }
}

impl KeyExtractor for Header {
    fn extract(&self, parts: &Parts) -> Extracted {
        let mut values = parts.headers.get_all(&self.name).iter();
        let Some(value) = values.next() else {
            return self.missing("no API key");
        };
        if values.next().is_some() {
            return self.missing("the API key header was sent more than once");
        }
        let bytes = value.as_bytes();
        if bytes.is_empty() {
            return self.missing("the API key is empty");
        }
        if bytes.len() > MAX_CREDENTIAL_LEN {
            return self.missing("the API key is too long");
        }
        Extracted::Key(Key::secret(bytes))
    }

    fn on_missing(&self) -> OnMissing {
        self.on_missing
    }
}

/// Keys by an API key sent as a query parameter, e.g. `?api_key=…`.
///
/// The value is percent-decoded (`form_urlencoded`) and hashed with
/// [`Key::secret`]. Absent, empty, too long or given twice: a `401`
/// problem, as [`Header`]. Prefer a header: query strings end up in access
/// logs and browser histories.
///
/// ```
/// use tollgate::key::Query;
///
/// let key = Query::new("api_key");
/// ```
#[derive(Debug, Clone)]
pub struct Query {
    name: Cow<'static, str>,
    on_missing: OnMissing,
}

impl Query {
    /// Keys by query parameter `name`.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Query {
            name: name.into(),
            on_missing: OnMissing::Reject,
        }
    }

    /// What a request without a usable key gets (default: 401).
    pub fn on_missing(mut self, on_missing: OnMissing) -> Self {
        self.on_missing = on_missing;
        self
    }

    fn missing(&self, why: &'static str) -> Extracted {
        Extracted::Missing(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Missing or invalid API key",
            format!(
                "{why}: send your API key as the {} query parameter.",
                self.name
            ),
        ))
    }
}

impl KeyExtractor for Query {
    fn extract(&self, parts: &Parts) -> Extracted {
        let Some(query) = parts.uri.query() else {
            return self.missing("no API key");
        };
        let mut found = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name != self.name {
                continue;
            }
            if found.is_some() {
                return self.missing("the API key parameter was given more than once");
            }
            found = Some(value);
        }
        match found {
            None => self.missing("no API key"),
            Some(v) if v.is_empty() => self.missing("the API key is empty"),
            Some(v) if v.len() > MAX_CREDENTIAL_LEN => self.missing("the API key is too long"),
            Some(v) => Extracted::Key(Key::secret(v.as_bytes())),
        }
    }

    fn on_missing(&self) -> OnMissing {
        self.on_missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &[u8])]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (n, v) in headers {
            b = b.header(*n, http::HeaderValue::from_bytes(v).unwrap());
        }
        b.body(()).unwrap().into_parts().0
    }

    fn key(e: Extracted) -> Key {
        match e {
            Extracted::Key(k) => k,
            other => panic!("expected a key, got {other:?}"),
        }
    }

    fn status(e: Extracted) -> StatusCode {
        match e {
            Extracted::Missing(p) => p.status(),
            other => panic!("expected missing, got {other:?}"),
        }
    }

    const API: HeaderName = HeaderName::from_static("x-api-key");

    #[test]
    fn the_same_api_key_is_the_same_key_and_never_the_raw_bytes() {
        let h = Header::new(API);
        let a = key(h.extract(&parts("/", &[("x-api-key", b"sk_live_123")])));
        let b = key(h.extract(&parts("/", &[("x-api-key", b"sk_live_123")])));
        let c = key(h.extract(&parts("/", &[("x-api-key", b"sk_live_124")])));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(!a.as_bytes().windows(11).any(|w| w == b"sk_live_123"));
    }

    #[test]
    fn missing_empty_duplicated_or_huge_api_keys_are_401() {
        let h = Header::new(API);
        assert_eq!(
            status(h.extract(&parts("/", &[]))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(h.extract(&parts("/", &[("x-api-key", b"")]))),
            StatusCode::UNAUTHORIZED
        );
        let twice = parts("/", &[("x-api-key", b"a"), ("x-api-key", b"b")]);
        assert_eq!(status(h.extract(&twice)), StatusCode::UNAUTHORIZED);
        let huge = vec![b'k'; 60_000];
        assert_eq!(
            status(h.extract(&parts("/", &[("x-api-key", &huge)]))),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn non_utf8_api_keys_are_just_bytes() {
        let h = Header::new(API);
        let k = key(h.extract(&parts("/", &[("x-api-key", &[0xff, 0xfe, 0x80])])));
        assert_eq!(k.as_bytes().len(), 17);
    }

    #[test]
    fn query_keys_are_percent_decoded_and_hashed() {
        let q = Query::new("api_key");
        let a = key(q.extract(&parts("/items?x=1&api_key=a%2Bb", &[])));
        let b = key(q.extract(&parts("/?api_key=a%2Bb", &[])));
        assert_eq!(a, b);
        assert_eq!(a, Key::secret(b"a+b"));
        assert_eq!(
            status(q.extract(&parts("/?api_key=", &[]))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(q.extract(&parts("/?other=1", &[]))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(q.extract(&parts("/", &[]))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(q.extract(&parts("/?api_key=a&api_key=b", &[]))),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn the_problem_never_echoes_the_credential() {
        let h = Header::new(API);
        let huge = vec![b'z'; 5000];
        if let Extracted::Missing(p) = h.extract(&parts("/", &[("x-api-key", &huge)])) {
            assert!(!p.to_json().contains("zzzz"));
        }
    }
}
