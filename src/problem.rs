//! Answers tollgate writes itself: RFC 9457 problem details for a 429 and
//! for the 401, 403 and 503 rejections.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;

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
/// use tollgate::problem::Problem;
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

    /// A 429 of the quota-exceeded type naming `violated` policies in
    /// `violated-policies`.
    pub(crate) fn quota_exceeded(detail: String, violated: Vec<String>) -> Self {
        Problem {
            status: StatusCode::TOO_MANY_REQUESTS,
            type_uri: Cow::Borrowed(QUOTA_EXCEEDED_TYPE),
            title: Cow::Borrowed("Too Many Requests"),
            detail: Cow::Owned(detail),
            extra: Some(Box::new(Extra {
                violated,
                headers: Vec::new(),
            })),
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

/// Whether any byte of `bytes` must be escaped in a JSON string. Most
/// text needs none: checked 16 bytes at a time without branches, which
/// the compiler turns into vector compares.
fn needs_escape(bytes: &[u8]) -> bool {
    let escaped = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |any, &b| any | escaped(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| escaped(b))
}

/// Appends `s` as a JSON string literal, copying whole what needs no
/// escape (pushed a character at a time, a 429's body took 4,800
/// instructions).
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on char boundaries.
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

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
    fn json_keeps_non_ascii_text_and_escapes_around_it() {
        let p = Problem::new(StatusCode::BAD_REQUEST, "é\"ü", "\u{1f}日本\r\t\\");
        assert_eq!(
            p.to_json(),
            r#"{"type":"about:blank","title":"é\"ü","status":400,"detail":"\u001f日本\r\t\\"}"#
        );
    }

    proptest::proptest! {
        /// Any title and detail read back unchanged by a JSON parser.
        #[test]
        fn json_reads_back_any_text(title in ".*", detail in "\\PC*|[\\x00-\\x7f]*") {
            let p = Problem::new(StatusCode::BAD_REQUEST, title.clone(), detail.clone());
            let json: serde_json::Value = serde_json::from_str(&p.to_json())
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(json["title"].as_str(), Some(title.as_str()));
            proptest::prop_assert_eq!(json["detail"].as_str(), Some(detail.as_str()));
        }
    }
}
