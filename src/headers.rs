//! Decisions → rate-limit response headers.
//!
//! - legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
//!   (delay seconds by default, epoch seconds with [`ResetFormat::EpochSeconds`]),
//!   speaking for the limit closest to denying;
//! - IETF `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers
//!   -08 … -11), one item per policy;
//! - on a 429: `Retry-After` (delay seconds, rounded up), `Cache-Control: no-store`.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, RETRY_AFTER};
use http::HeaderMap;

use crate::time::Nanos;
use crate::Decision;

/// `X-RateLimit-Limit`.
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`.
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
/// `RateLimit` (IETF draft -07 and later).
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy` (IETF draft -04 and later).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit-Limit` (IETF drafts -00 … -06).
pub static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining` (IETF drafts -00 … -06).
pub static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset` (IETF drafts -00 … -06).
pub static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Which rate-limit headers responses carry.
///
/// ```
/// use tollgate::{Quota, RateLimitLayer, headers::HeaderStyle};
///
/// let layer = RateLimitLayer::builder()
///     .quota(Quota::per_minute(60))
///     .headers(HeaderStyle::Ietf)
///     .build()
///     .unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `X-RateLimit-*` and IETF `RateLimit` / `RateLimit-Policy` (default).
    #[default]
    Both,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` only.
    Legacy,
    /// IETF `RateLimit` / `RateLimit-Policy` (drafts -08 … -11) only.
    Ietf,
    /// IETF draft-6 form: `RateLimit-Limit`, `RateLimit-Remaining`,
    /// `RateLimit-Reset` and `RateLimit-Policy: 100;w=60` (migration aid).
    Draft6,
    /// IETF draft-7 form: `RateLimit: limit=100, remaining=42, reset=17` and
    /// `RateLimit-Policy: 100;w=60` (migration aid).
    Draft7,
    /// No rate-limit headers (a 429 still carries `Retry-After`).
    None,
}

impl std::str::FromStr for HeaderStyle {
    type Err = UnknownHeaderStyle;

    /// The style's lower-case name: `both`, `legacy`, `ietf`, `draft6`,
    /// `draft7` or `none` (what an environment variable or a configuration
    /// file would hold).
    ///
    /// ```
    /// use tollgate::headers::HeaderStyle;
    ///
    /// assert_eq!("legacy".parse(), Ok(HeaderStyle::Legacy));
    /// let error = "x-ratelimit".parse::<HeaderStyle>().unwrap_err();
    /// assert!(error.to_string().contains("both, legacy, ietf, draft6, draft7 or none"));
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "both" => HeaderStyle::Both,
            "legacy" => HeaderStyle::Legacy,
            "ietf" => HeaderStyle::Ietf,
            "draft6" => HeaderStyle::Draft6,
            "draft7" => HeaderStyle::Draft7,
            "none" => HeaderStyle::None,
            other => return Err(UnknownHeaderStyle(other.into())),
        })
    }
}

/// A name that is not a [`HeaderStyle`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown header style {0:?}: expected both, legacy, ietf, draft6, draft7 or none")]
pub struct UnknownHeaderStyle(String);

/// How `X-RateLimit-Reset` is written. IETF headers always use delay
/// seconds, as the draft requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ResetFormat {
    /// Seconds until the quota is fully back, rounded up (default; as
    /// express-rate-limit).
    #[default]
    DelaySeconds,
    /// The Unix time in seconds at which the quota is fully back, rounded up
    /// (as GitHub's API). Read from the wall clock when the header is
    /// written; decisions never use it.
    EpochSeconds,
}

/// Header settings, fixed at `build()`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeaderConfig {
    pub(crate) style: HeaderStyle,
    pub(crate) reset: ResetFormat,
}

/// What one policy says in the rate-limit headers: its name, limit and
/// window, with the values that never change per request formatted once,
/// when the policy is made ([`Policy::header`](crate::policy::Policy::header)).
///
/// ```
/// use std::time::Duration;
/// use tollgate::headers::PolicyHeader;
///
/// let h = PolicyHeader::new("search".into(), 10, Duration::from_secs(60), None);
/// assert_eq!(h.ietf_item(), "\"search\";q=10;w=60");
/// ```
#[derive(Clone)]
pub struct PolicyHeader {
    name: Arc<str>,
    limit: u64,
    /// The window in whole seconds, rounded up, at least 1 (the drafts'
    /// `w` is an integer).
    window_secs: u64,
    /// `"name";q=..;w=..`: the policy's item in `RateLimit-Policy`.
    ietf_item: Arc<str>,
    /// `ietf_item` as a header value: a single-policy `RateLimit-Policy`
    /// (`None` if the name cannot be one, which `Policy::validate` rejects).
    ietf_value: Option<HeaderValue>,
    /// The limit as a header value (`X-RateLimit-Limit`), made once: for
    /// the usual limits, a value over static bytes, so that cloning it
    /// touches no reference count shared between threads.
    limit_value: HeaderValue,
}

impl PolicyHeader {
    /// The header values of a policy `name` admitting `limit` units per
    /// `window`, counted in `unit` (`RateLimit-Policy`'s `qu`) when not
    /// requests.
    pub fn new(name: Arc<str>, limit: u64, window: Duration, unit: Option<&'static str>) -> Self {
        let window_secs = Nanos::from(window).as_secs_ceil().max(1);
        let ietf_item: Arc<str> = match unit {
            Some(unit) => format!("\"{name}\";q={limit};qu=\"{unit}\";w={window_secs}"),
            None => format!("\"{name}\";q={limit};w={window_secs}"),
        }
        .into();
        PolicyHeader {
            ietf_value: HeaderValue::from_str(&ietf_item).ok(),
            limit_value: number(limit),
            ietf_item,
            name,
            limit,
            window_secs,
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy's item in `RateLimit-Policy`, e.g. `"default";q=100;w=60`.
    pub fn ietf_item(&self) -> &str {
        &self.ietf_item
    }
}

impl fmt::Debug for PolicyHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PolicyHeader")
            .field(&self.ietf_item)
            .finish()
    }
}

/// A policy's header values with its decision, as the caller holds them:
/// borrowed (the public [`write_headers`]) or owned (a check's items,
/// written from where they are kept rather than collected into a borrowed
/// copy).
pub(crate) trait HeaderItem {
    fn header(&self) -> &PolicyHeader;
    fn decision(&self) -> &Decision;
}

impl HeaderItem for (&PolicyHeader, &Decision) {
    fn header(&self) -> &PolicyHeader {
        self.0
    }
    fn decision(&self) -> &Decision {
        self.1
    }
}

/// The decision that speaks for `X-RateLimit-*`: on a denial the denying
/// limit with the longest wait; otherwise the one with the fewest remaining
/// (ties: the later reset).
pub(crate) fn speaking<T: HeaderItem>(items: &[T]) -> Option<(&PolicyHeader, &Decision)> {
    let denied = items.iter().any(|i| !i.decision().allowed);
    items
        .iter()
        .map(|i| (i.header(), i.decision()))
        .filter(|(_, d)| !denied || !d.allowed)
        .max_by(|(_, a), (_, b)| {
            if denied {
                // `None` (never admissible) waits longest.
                let wait = |d: &Decision| d.retry_after.unwrap_or(Nanos::MAX);
                wait(a).cmp(&wait(b))
            } else {
                b.remaining
                    .cmp(&a.remaining)
                    .then(a.reset_after.cmp(&b.reset_after))
            }
        })
}

/// Writes the rate-limit headers for `items` (each policy with its
/// decision) into `headers`, as the layer does: for responses you build
/// yourself around a [`Limiter`](crate::Limiter), and for tests.
/// `denied` marks a 429: the denying limits' remaining is written as 0 and
/// `Retry-After` and `Cache-Control: no-store` are added.
///
/// ```
/// use http::HeaderMap;
/// use tollgate::{Limiter, Quota, headers, headers::{HeaderStyle, ResetFormat}, policy::Policy};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = Limiter::new(Quota::per_minute(10)).unwrap();
/// let d = limiter.check("k", 1).await.unwrap();
/// let mut h = HeaderMap::new();
/// headers::write_headers(&mut h, HeaderStyle::Both, ResetFormat::DelaySeconds, &[(limiter.policy().header(), &d)], !d.allowed);
/// assert_eq!(h["x-ratelimit-remaining"], "9");
/// assert_eq!(h["ratelimit"], "\"default\";r=9;t=6");
/// # }
/// ```
pub fn write_headers(
    headers: &mut HeaderMap,
    style: HeaderStyle,
    reset: ResetFormat,
    items: &[(&PolicyHeader, &Decision)],
    denied: bool,
) {
    write(headers, HeaderConfig { style, reset }, items, denied);
    if denied {
        write_denial(headers, retry_after(items.iter().map(|(_, d)| *d)));
    }
}

/// Writes the headers of `style` for `items` into `headers`. `denied` says
/// the response is a 429: remaining is then written as 0 for the denying
/// limits. The 429's own headers are [`write_denial`]'s, with the wait the
/// caller decided (the engine's, from the enforced levels only).
pub(crate) fn write<T: HeaderItem>(
    headers: &mut HeaderMap,
    config: HeaderConfig,
    items: &[T],
    denied: bool,
) {
    let Some((policy, decision)) = speaking(items) else {
        return;
    };
    let remaining = |d: &Decision| if d.allowed { d.remaining } else { 0 };
    // At most one growth of the map instead of one per insert, and none
    // when what is added fits (a growth reallocates and rehashes).
    let adding = match config.style {
        HeaderStyle::Both => 5,
        HeaderStyle::Legacy => 3,
        HeaderStyle::Draft6 => 4,
        HeaderStyle::Ietf | HeaderStyle::Draft7 => 2,
        HeaderStyle::None => 0,
    } + if denied { 2 } else { 0 };
    if adding > 0 {
        // One slot more than this adds: axum's router adds `content-length`
        // after every layer, and on the usual small response (one or two
        // headers) that one more would grow the map again, copying every
        // entry; growing here, before the inserts, copies one or two.
        // A map near its maximum size gets what still fits (see `put`).
        let _ = headers.try_reserve(adding + 1);
    }
    match config.style {
        HeaderStyle::Both | HeaderStyle::Legacy => {
            put(
                headers,
                X_RATELIMIT_LIMIT.clone(),
                policy.limit_value.clone(),
            );
            put(
                headers,
                X_RATELIMIT_REMAINING.clone(),
                number(remaining(decision)),
            );
            let reset = decision.reset_after.as_secs_ceil();
            let reset = match config.reset {
                ResetFormat::DelaySeconds => reset,
                ResetFormat::EpochSeconds => epoch_secs_ceil(decision.reset_after),
            };
            put(headers, X_RATELIMIT_RESET.clone(), number(reset));
        }
        _ => {}
    }
    match config.style {
        HeaderStyle::Both | HeaderStyle::Ietf => {
            let policy_value = match (items.len(), policy.ietf_value.as_ref()) {
                (1, Some(v)) => Some(v.clone()),
                _ => HeaderValue::try_from(join(items.iter().map(|i| i.header().ietf_item()))).ok(),
            };
            if let Some(v) = policy_value {
                put(headers, RATELIMIT_POLICY.clone(), v);
            }
            let items = items.iter().map(|i| {
                let d = i.decision();
                (
                    i.header().name(),
                    remaining(d),
                    d.reset_after.as_secs_ceil(),
                )
            });
            if let Some(v) = ratelimit_value(items) {
                put(headers, RATELIMIT.clone(), v);
            }
        }
        HeaderStyle::Draft6 => {
            put(headers, RATELIMIT_LIMIT.clone(), policy.limit_value.clone());
            put(
                headers,
                RATELIMIT_REMAINING.clone(),
                number(remaining(decision)),
            );
            put(
                headers,
                RATELIMIT_RESET.clone(),
                number(decision.reset_after.as_secs_ceil()),
            );
            if let Ok(v) = HeaderValue::from_str(&old_policy(policy)) {
                put(headers, RATELIMIT_POLICY.clone(), v);
            }
        }
        HeaderStyle::Draft7 => {
            let value = format!(
                "limit={}, remaining={}, reset={}",
                policy.limit,
                remaining(decision),
                decision.reset_after.as_secs_ceil()
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                put(headers, RATELIMIT.clone(), v);
            }
            if let Ok(v) = HeaderValue::from_str(&old_policy(policy)) {
                put(headers, RATELIMIT_POLICY.clone(), v);
            }
        }
        _ => {}
    }
}

/// Inserts `value` under `name`, replacing any value of that name. A map
/// already at `HeaderMap`'s maximum size (32,768 entries) is left as it is:
/// a response that full loses its rate-limit headers rather than panicking
/// (`HeaderMap::insert` would).
fn put(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    if headers.try_insert(name, value).is_err() {
        tracing::debug!("tollgate: response header map full; rate-limit header left out");
    }
}

/// How many small numbers are kept as ready header values.
const SMALL_NUMBERS: usize = 4096;

/// A header value for `n`: for the small numbers headers carry almost
/// always, a clone of a value over static bytes (no allocation, no atomic
/// reference count shared between threads).
pub(crate) fn number(n: u64) -> HeaderValue {
    static DIGITS: OnceLock<String> = OnceLock::new();
    static SMALL: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let Some(i) = usize::try_from(n).ok().filter(|i| *i < SMALL_NUMBERS) else {
        return formatted(n);
    };
    let table = SMALL.get_or_init(|| {
        let digits: &'static str =
            DIGITS.get_or_init(|| (0..SMALL_NUMBERS).map(|i| i.to_string()).collect());
        let mut start = 0;
        (0..SMALL_NUMBERS)
            .map(|i| {
                let end = start + i.to_string().len();
                let bytes = Bytes::from_static(&digits.as_bytes()[start..end]);
                start = end;
                HeaderValue::from_maybe_shared(bytes)
                    .unwrap_or_else(|_| HeaderValue::from(i as u64))
            })
            .collect()
    });
    table.get(i).cloned().unwrap_or_else(|| formatted(n))
}

/// A header value for `n`, formatted: one allocation of exactly its digits
/// (`HeaderValue::from(u64)` grows a `BytesMut` and converts it, about
/// twice the work).
fn formatted(n: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    HeaderValue::from_bytes(digits.format(n).as_bytes()).unwrap_or_else(|_| HeaderValue::from(n))
}

/// The `RateLimit` value for `(name, remaining, reset)` items:
/// `"name";r=R;t=T`, comma-separated. Written by hand into a buffer of
/// exactly its length (`format!` costs more than the rest of `write`
/// together), which becomes the value without another copy.
fn ratelimit_value<'a>(
    items: impl Iterator<Item = (&'a str, u64, u64)> + Clone,
) -> Option<HeaderValue> {
    let digits = |n: u64| n.checked_ilog10().map_or(1, |l| l as usize + 1);
    let len = items
        .clone()
        .map(|(name, r, t)| ", \"".len() + name.len() + "\";r=;t=".len() + digits(r) + digits(t))
        .sum::<usize>()
        .saturating_sub(", ".len());
    let mut value = Vec::with_capacity(len);
    for (i, (name, r, t)) in items.enumerate() {
        if i > 0 {
            value.extend_from_slice(b", ");
        }
        value.push(b'"');
        value.extend_from_slice(name.as_bytes());
        value.extend_from_slice(b"\";r=");
        value.extend_from_slice(itoa::Buffer::new().format(r).as_bytes());
        value.extend_from_slice(b";t=");
        value.extend_from_slice(itoa::Buffer::new().format(t).as_bytes());
    }
    HeaderValue::from_maybe_shared(Bytes::from(value)).ok()
}

/// A 429's `Retry-After` (when a wait helps: `wait`, rounded up) and
/// `Cache-Control: no-store`.
pub(crate) fn write_denial(headers: &mut HeaderMap, wait: Option<Nanos>) {
    if let Some(wait) = wait {
        put(headers, RETRY_AFTER, number(wait.as_secs_ceil()));
    }
    put(headers, CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The wait before a denied request could pass: the longest wait of the
/// denying limits; `None` if one can never admit it.
pub(crate) fn retry_after<'a>(decisions: impl Iterator<Item = &'a Decision>) -> Option<Nanos> {
    let mut wait = Nanos::ZERO;
    for d in decisions.filter(|d| !d.allowed) {
        wait = wait.max(d.retry_after?);
    }
    Some(wait)
}

fn join<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, p) in parts.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(p);
    }
    out
}

/// The pre-08 policy form: `100;w=60`.
fn old_policy(policy: &PolicyHeader) -> String {
    format!("{};w={}", policy.limit, policy.window_secs)
}

fn epoch_secs_ceil(after: Nanos) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(Nanos::from)
        .unwrap_or(Nanos::ZERO);
    now.saturating_add(after).as_secs_ceil()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 429's headers, as the layer writes them: the rate-limit headers,
    /// then `Retry-After` from the items' wait.
    fn write_denied(h: &mut HeaderMap, config: HeaderConfig, items: &[(&PolicyHeader, &Decision)]) {
        write(h, config, items, true);
        write_denial(h, retry_after(items.iter().map(|(_, d)| *d)));
    }

    fn decision(allowed: bool, remaining: u64, reset_ms: u64, retry_ms: Option<u64>) -> Decision {
        if allowed {
            Decision::allow(10, remaining, Nanos::from_millis(reset_ms))
        } else {
            Decision::deny(
                10,
                remaining,
                Nanos::from_millis(reset_ms),
                retry_ms.map(Nanos::from_millis),
            )
        }
    }

    #[test]
    fn a_header_map_at_its_maximum_size_is_left_alone_not_a_panic() {
        let mut h = HeaderMap::new();
        for i in 0.. {
            let name = HeaderName::from_bytes(format!("h{i}").as_bytes()).unwrap();
            if h.try_insert(name, HeaderValue::from_static("x")).is_err() {
                break;
            }
        }
        let full = h.len();
        let p = PolicyHeader::new("default".into(), 10, Duration::from_secs(60), None);
        let d = decision(false, 0, 6_000, Some(6_000));
        for style in [HeaderStyle::Both, HeaderStyle::Draft6, HeaderStyle::Draft7] {
            let config = HeaderConfig {
                style,
                ..HeaderConfig::default()
            };
            write_denied(&mut h, config, &[(&p, &d)]);
            assert_eq!(h.len(), full, "{style:?}");
        }
        // A map with room for some gets those.
        let mut roomy = HeaderMap::new();
        write_denied(&mut roomy, HeaderConfig::default(), &[(&p, &d)]);
        assert_eq!(roomy.len(), 7);
    }

    #[test]
    fn both_styles_on_an_allowed_response() {
        let p = PolicyHeader::new("default".into(), 10, Duration::from_secs(60), None);
        let d = decision(true, 7, 17_200, None);
        let mut h = HeaderMap::new();
        write(&mut h, HeaderConfig::default(), &[(&p, &d)], false);
        assert_eq!(h["x-ratelimit-limit"], "10");
        assert_eq!(h["x-ratelimit-remaining"], "7");
        assert_eq!(h["x-ratelimit-reset"], "18");
        assert_eq!(h["ratelimit-policy"], "\"default\";q=10;w=60");
        assert_eq!(h["ratelimit"], "\"default\";r=7;t=18");
        assert!(h.get("retry-after").is_none());
    }

    #[test]
    fn a_denial_rounds_retry_after_up_and_forbids_caching() {
        let p = PolicyHeader::new("default".into(), 10, Duration::from_secs(60), None);
        let d = decision(false, 0, 60_000, Some(5_001));
        let mut h = HeaderMap::new();
        write_denied(&mut h, HeaderConfig::default(), &[(&p, &d)]);
        assert_eq!(h["retry-after"], "6");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-ratelimit-remaining"], "0");
    }

    #[test]
    fn legacy_headers_speak_for_the_limit_closest_to_denying() {
        let a = PolicyHeader::new("minute".into(), 10, Duration::from_secs(60), None);
        let b = PolicyHeader::new("day".into(), 100, Duration::from_secs(86_400), None);
        let da = decision(true, 7, 1_000, None);
        let db = decision(true, 2, 80_000_000, None);
        let mut h = HeaderMap::new();
        write(
            &mut h,
            HeaderConfig::default(),
            &[(&a, &da), (&b, &db)],
            false,
        );
        assert_eq!(h["x-ratelimit-limit"], "100");
        assert_eq!(h["x-ratelimit-remaining"], "2");
        assert_eq!(
            h["ratelimit-policy"],
            "\"minute\";q=10;w=60, \"day\";q=100;w=86400"
        );
        assert_eq!(h["ratelimit"], "\"minute\";r=7;t=1, \"day\";r=2;t=80000");
    }

    #[test]
    fn draft6_and_draft7_forms() {
        let p = PolicyHeader::new("default".into(), 100, Duration::from_secs(60), None);
        let d = decision(true, 42, 16_500, None);
        let mut h = HeaderMap::new();
        let cfg = |style| HeaderConfig {
            style,
            reset: ResetFormat::DelaySeconds,
        };
        write(&mut h, cfg(HeaderStyle::Draft6), &[(&p, &d)], false);
        assert_eq!(h["ratelimit-limit"], "100");
        assert_eq!(h["ratelimit-remaining"], "42");
        assert_eq!(h["ratelimit-reset"], "17");
        assert_eq!(h["ratelimit-policy"], "100;w=60");
        let mut h = HeaderMap::new();
        write(&mut h, cfg(HeaderStyle::Draft7), &[(&p, &d)], false);
        assert_eq!(h["ratelimit"], "limit=100, remaining=42, reset=17");
        assert!(h.get("x-ratelimit-limit").is_none());
    }

    #[test]
    fn none_style_writes_only_retry_after_on_a_denial() {
        let p = PolicyHeader::new("default".into(), 10, Duration::from_secs(60), None);
        let d = decision(false, 0, 60_000, Some(1));
        let mut h = HeaderMap::new();
        let cfg = HeaderConfig {
            style: HeaderStyle::None,
            reset: ResetFormat::DelaySeconds,
        };
        write_denied(&mut h, cfg, &[(&p, &d)]);
        assert_eq!(h.len(), 2);
        assert_eq!(h["retry-after"], "1");
    }

    #[test]
    fn epoch_reset_is_an_absolute_time() {
        let p = PolicyHeader::new("default".into(), 10, Duration::from_secs(60), None);
        let d = decision(true, 9, 6_000, None);
        let mut h = HeaderMap::new();
        let cfg = HeaderConfig {
            style: HeaderStyle::Legacy,
            reset: ResetFormat::EpochSeconds,
        };
        write(&mut h, cfg, &[(&p, &d)], false);
        let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!((now + 5..=now + 8).contains(&reset), "{reset} vs {now}");
    }

    #[test]
    fn small_and_large_numbers_render_the_same() {
        for n in [0, 1, 9, 10, 99, 100, 4095, 4096, 1_000_000, u64::MAX] {
            assert_eq!(number(n), HeaderValue::from(n), "{n}");
        }
    }

    #[test]
    fn ratelimit_values_are_exact_for_any_digits_and_items() {
        let one = |r, t| ratelimit_value([("default", r, t)].into_iter());
        assert_eq!(one(0, 0).unwrap(), "\"default\";r=0;t=0");
        assert_eq!(one(9, 10).unwrap(), "\"default\";r=9;t=10");
        assert_eq!(
            one(u64::MAX, 999_999_999).unwrap(),
            "\"default\";r=18446744073709551615;t=999999999"
        );
        let two = ratelimit_value([("a", 1_000, 1), ("per-day", 99_999, 86_400)].into_iter());
        assert_eq!(
            two.unwrap(),
            "\"a\";r=1000;t=1, \"per-day\";r=99999;t=86400"
        );
    }

    #[test]
    fn a_never_admissible_request_gets_no_retry_after() {
        let d = decision(false, 3, 1_000, None);
        assert_eq!(retry_after([d].iter()), None);
    }
}
