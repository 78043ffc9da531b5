//! Responses tollgate writes itself: RFC 9457 problem details for 429 (and
//! for 401/403/500 rejections), and the information a custom rejection
//! handler receives.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use smallvec::SmallVec;

use crate::algorithm::Decision;
use crate::policy::Policy;
use crate::time::Nanos;

/// The problem type of a 429, registered by the rate-limit headers draft.
pub const QUOTA_EXCEEDED_TYPE: &str =
    "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// The content type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: `type`, `title`, `status`, `detail`, and for a 429
/// the `violated-policies` extension member.
///
/// ```
/// use http::StatusCode;
/// use tollgate::response::Problem;
///
/// let p = Problem::new(StatusCode::UNAUTHORIZED, "Missing API key", "Send X-Api-Key.");
/// let json = p.to_json();
/// assert!(json.contains(r#""status":401"#));
/// let res = p.to_response();
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    type_uri: Cow<'static, str>,
    title: Cow<'static, str>,
    detail: Cow<'static, str>,
    /// `violated-policies` and extra headers: rare, so boxed to keep the
    /// problem (and results carrying it) small.
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Extra {
    violated: Vec<String>,
    headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of type `about:blank`.
    pub fn new(
        status: StatusCode,
        title: impl Into<Cow<'static, str>>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Problem {
            status,
            type_uri: Cow::Borrowed("about:blank"),
            title: title.into(),
            detail: detail.into(),
            extra: None,
        }
    }

    /// Adds a header to the response (e.g. `WWW-Authenticate` on a 401).
    pub fn with_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.extra
            .get_or_insert_with(Box::default)
            .headers
            .push((name, value));
        self
    }

    /// Sets the `type` URI.
    pub fn with_type(mut self, type_uri: impl Into<Cow<'static, str>>) -> Self {
        self.type_uri = type_uri.into();
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `type` URI.
    pub fn type_uri(&self) -> &str {
        &self.type_uri
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The policies named in `violated-policies` (429 only).
    pub fn violated_policies(&self) -> &[String] {
        self.extra.as_ref().map_or(&[], |e| &e.violated)
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(160 + self.detail.len());
        out.push_str("{\"type\":");
        push_json_str(&mut out, &self.type_uri);
        out.push_str(",\"title\":");
        push_json_str(&mut out, &self.title);
        let _ = write!(out, ",\"status\":{}", self.status.as_u16());
        out.push_str(",\"detail\":");
        push_json_str(&mut out, &self.detail);
        let violated = self.violated_policies();
        if !violated.is_empty() {
            out.push_str(",\"violated-policies\":[");
            for (i, name) in violated.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(&mut out, name);
            }
            out.push(']');
        }
        out.push('}');
        out
    }

    /// A response with this status and the JSON body.
    pub fn to_response(&self) -> http::Response<Bytes> {
        let mut res = http::Response::new(Bytes::from(self.to_json()));
        *res.status_mut() = self.status;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.extra.iter().flat_map(|e| &e.headers) {
            res.headers_mut().append(name.clone(), value.clone());
        }
        res
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// What a rejection handler is told about a denied request.
///
/// ```
/// use bytes::Bytes;
/// use tollgate::{response::RateLimited, Quota, RateLimitLayer};
///
/// let layer = RateLimitLayer::builder()
///     .quota(Quota::per_minute(5))
///     .on_rejected(|denied: &RateLimited| {
///         let secs = denied.retry_after().map_or(60, |d| d.as_secs());
///         http::Response::builder()
///             .status(429)
///             .body(Bytes::from(format!("slow down, try again in {secs}s")))
///             .unwrap()
///     })
///     .build()
///     .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct RateLimited {
    pub(crate) violated: SmallVec<[(Arc<Policy>, Decision); 1]>,
    pub(crate) retry_after: Option<Nanos>,
}

impl RateLimited {
    /// The names of the policies that denied the request.
    pub fn violated_policies(&self) -> impl Iterator<Item = &str> {
        self.violated.iter().map(|(p, _)| p.name())
    }

    /// The decisions of the denying policies.
    pub fn decisions(&self) -> impl Iterator<Item = (&Policy, &Decision)> {
        self.violated.iter().map(|(p, d)| (&**p, d))
    }

    /// How long until the request would be admitted (exact; the
    /// `Retry-After` header rounds it up). `None` when its cost exceeds a
    /// whole quota, so no wait helps.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after.map(Duration::from)
    }

    /// The default problem details for this denial.
    pub fn problem(&self) -> Problem {
        let mut detail = String::from("Quota exceeded for ");
        for (i, (p, _)) in self.violated.iter().enumerate() {
            if i > 0 {
                detail.push_str(", ");
            }
            let _ = write!(detail, "policy \"{}\" ({})", p.name(), p.quota());
        }
        match self.retry_after {
            Some(r) => {
                let _ = write!(detail, ". Retry in {} s.", r.as_secs_ceil());
            }
            None => detail
                .push_str(". This request costs more than the whole quota and cannot be admitted."),
        }
        Problem {
            status: StatusCode::TOO_MANY_REQUESTS,
            type_uri: Cow::Borrowed(QUOTA_EXCEEDED_TYPE),
            title: Cow::Borrowed("Too Many Requests"),
            detail: Cow::Owned(detail),
            extra: Some(Box::new(Extra {
                violated: self
                    .violated
                    .iter()
                    .map(|(p, _)| p.name().to_owned())
                    .collect(),
                headers: Vec::new(),
            })),
        }
    }
}

/// A user's rejection handler.
pub(crate) type OnRejected = Arc<dyn Fn(&RateLimited) -> http::Response<Bytes> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_quotes_controls_and_backslashes() {
        let p = Problem::new(StatusCode::BAD_REQUEST, "a \"b\"", "c\\d\n\u{1}");
        assert_eq!(
            p.to_json(),
            r#"{"type":"about:blank","title":"a \"b\"","status":400,"detail":"c\\d\n\u0001"}"#
        );
    }

    #[test]
    fn quota_exceeded_problem_names_the_violated_policies() {
        let policy = Arc::new(Policy::new("login", crate::Quota::per_minute(5)));
        let d = Decision::deny(5, 0, Nanos::from_secs(60), Some(Nanos::from_millis(11_500)));
        let mut violated = SmallVec::new();
        violated.push((policy, d));
        let denied = RateLimited {
            violated,
            retry_after: Some(Nanos::from_millis(11_500)),
        };
        let p = denied.problem();
        assert_eq!(p.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(p.type_uri(), QUOTA_EXCEEDED_TYPE);
        let json = p.to_json();
        assert!(json.contains(r#""violated-policies":["login"]"#), "{json}");
        assert!(json.contains("Retry in 12 s"), "{json}");
    }
}
