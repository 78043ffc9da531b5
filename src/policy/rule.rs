//! [`Rule`]: a named policy as configured (quota, algorithm, its own key,
//! cost, tiers, schedule, what counts), before a request resolves it to one
//! concrete [`Policy`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::request::Parts;

use super::tiers::Tiers;
#[cfg(feature = "schedule")]
use super::Schedule;
use super::{Policy, PolicyError};
use crate::key::{Extracted, KeyExtractor, OnMissing};
use crate::quota::Quota;
use crate::time::Clock;
use crate::Algorithm;

/// A named policy as configured: what one level of the route table (the
/// default, a group, a route) or one handler limits.
///
/// Beyond a [`Policy`]'s name, quota and algorithm, a rule may have:
///
/// - its **own key** ([`Rule::key`]), e.g. a login route keyed by user name
///   while the rest is keyed by IP; otherwise the layer's key;
/// - a **cost** per request, fixed or computed from the request
///   ([`Cost::ContentLength`] limits bytes, not requests);
/// - **tiers** ([`Tiers`]): a quota per plan (`free`, `pro`, …);
/// - a **schedule** (feature `schedule`): a quota by time of day and day
///   of week;
/// - **what counts** ([`Rule::count_only`]): a predicate on the response;
///   requests it rejects are refunded after the response;
/// - **shadow mode**: decided and reported, never blocking.
///
/// A tier, a schedule or a per-key override changes a rule's quota, never
/// its name, so the counters carry over when a client changes plan or the
/// schedule turns.
///
/// ```
/// use http::StatusCode;
/// use tollgate::policy::{Cost, Rule};
/// use tollgate::{Algorithm, Quota};
///
/// // Five failed logins a minute: successful ones are given back.
/// let login = Rule::new("login", Quota::per_minute(5))
///     .algorithm(Algorithm::SlidingWindow)
///     .count_only(|res| res.status == StatusCode::UNAUTHORIZED);
///
/// // Uploads: 10 MB a minute, counted in bytes from Content-Length.
/// let upload = Rule::new("upload", Quota::per_minute(10_000_000))
///     .cost(Cost::content_length());
/// # let _ = (login, upload);
/// ```
#[derive(Clone)]
pub struct Rule {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) quota: Quota,
    pub(crate) algorithm: Option<Algorithm>,
    pub(crate) cost: Cost,
    pub(crate) shadow: bool,
    pub(crate) key: Option<Arc<dyn DynExtractor>>,
    pub(crate) tiers: Option<Tiers>,
    #[cfg(feature = "schedule")]
    pub(crate) schedule: Option<Schedule>,
    pub(crate) count_only: Option<ResponseCounts>,
}

/// A predicate on the response head: `true` when the request counts.
pub(crate) type ResponseCounts = Arc<dyn Fn(&http::response::Parts) -> bool + Send + Sync>;

impl Rule {
    /// A rule named `name` (see [`Policy`] for the allowed characters) with
    /// `quota`, the layer's algorithm and a cost of 1.
    pub fn new(name: impl Into<Arc<str>>, quota: Quota) -> Self {
        Rule {
            name: Some(name.into()),
            ..Rule::from(quota)
        }
    }

    /// Sets the algorithm (default: the layer's).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// Sets the cost of a request: a number (`.cost(5)`) or a [`Cost`].
    pub fn cost(mut self, cost: impl Into<Cost>) -> Self {
        self.cost = cost.into();
        self
    }

    /// Shadow mode for this rule only: its denials are reported (a
    /// `tracing` event at `info`, target `tollgate::shadow`) but never
    /// block, and they consume nothing at the other levels' expense: a
    /// request the shadow rule would deny still passes and is counted by
    /// the enforcing levels. The level stays out of the rate-limit headers
    /// (a client that honours them must not back off from a limit that is
    /// not enforced) unless the layer sets
    /// [`shadow_headers(true)`](crate::RateLimitLayerBuilder::shadow_headers).
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Keys this rule by its own extractor instead of the layer's. If it
    /// finds no key, its [`OnMissing`] decides: `Reject` answers the
    /// request with the extractor's problem, `Skip` leaves this rule out
    /// (the other levels still apply).
    pub fn key<K: KeyExtractor>(mut self, extractor: K) -> Self {
        self.key = Some(Arc::new(extractor));
        self
    }

    /// Quotas per tier (plan); requests whose tier is not listed, or that
    /// have none, get this rule's own quota.
    pub fn tiers(mut self, tiers: Tiers) -> Self {
        self.tiers = Some(tiers);
        self
    }

    /// A quota by time of day and day of week (feature `schedule`); the
    /// schedule's default quota replaces this rule's. A tier, when the
    /// request has one, wins over the schedule.
    #[cfg(feature = "schedule")]
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        if let Some(default) = schedule.quotas().first() {
            self.quota = *default;
        }
        self.schedule = Some(schedule);
        self
    }

    /// Counts a request only when `counts` says so of its response;
    /// otherwise the request's cost is refunded once the response head is
    /// ready (for example: count only failed logins, or only successes).
    ///
    /// The check still happens before the request: a client over the
    /// limit is denied whatever its request would have answered. The
    /// rate-limit headers on a refunded response show the state before the
    /// refund. With the Redis backend the refund is one more round trip,
    /// made in the background.
    pub fn count_only<F>(mut self, counts: F) -> Self
    where
        F: Fn(&http::response::Parts) -> bool + Send + Sync + 'static,
    {
        self.count_only = Some(Arc::new(counts));
        self
    }

    /// The name, if set (a rule made from a bare [`Quota`] is named after
    /// the route pattern it is given to).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The base quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }
}

impl From<Quota> for Rule {
    /// A rule without a name: the builder names it after its pattern.
    fn from(quota: Quota) -> Self {
        Rule {
            name: None,
            quota,
            algorithm: None,
            cost: Cost::Fixed(1),
            shadow: false,
            key: None,
            tiers: None,
            #[cfg(feature = "schedule")]
            schedule: None,
            count_only: None,
        }
    }
}

impl From<Policy> for Rule {
    fn from(policy: Policy) -> Self {
        Rule {
            name: Some(policy.name.clone()),
            algorithm: Some(policy.algorithm()),
            cost: Cost::Fixed(policy.cost()),
            shadow: policy.is_shadow(),
            ..Rule::from(*policy.quota())
        }
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Rule");
        d.field("name", &self.name)
            .field("quota", &self.quota)
            .field("algorithm", &self.algorithm)
            .field("cost", &self.cost)
            .field("shadow", &self.shadow)
            .field("own_key", &self.key.is_some())
            .field("tiers", &self.tiers);
        #[cfg(feature = "schedule")]
        d.field("schedule", &self.schedule);
        d.field("count_only", &self.count_only.is_some()).finish()
    }
}

/// What one request costs under a rule.
///
/// ```
/// use tollgate::policy::Cost;
///
/// let fixed: Cost = 3.into();
/// let bytes = Cost::content_length();            // Content-Length, 1 if absent
/// let bytes = Cost::content_length_or(1_000_000); // a chunked upload pays 1 MB
/// let by_fn = Cost::from_fn(|parts| if parts.method == http::Method::POST { 5 } else { 1 });
/// # let _ = (fixed, bytes, by_fn);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Cost {
    /// The same for every request.
    Fixed(u64),
    /// The request's `Content-Length` in bytes (the quota then counts
    /// bytes, and `RateLimit-Policy` says `qu="content-bytes"`). A request
    /// without a valid `Content-Length` (chunked, malformed, non-UTF-8)
    /// costs `missing`: the limiter cannot know its size before reading
    /// the body, so choose what such a request should pay, or cap bodies
    /// with a body-limit layer.
    ContentLength {
        /// The cost of a request without a usable `Content-Length`.
        missing: u64,
    },
    /// Computed from the request head.
    FromFn(Arc<dyn Fn(&Parts) -> u64 + Send + Sync>),
}

impl Cost {
    /// [`Cost::ContentLength`], a request without a length costing 1.
    pub fn content_length() -> Self {
        Cost::ContentLength { missing: 1 }
    }

    /// [`Cost::ContentLength`], a request without a length costing
    /// `missing`.
    pub fn content_length_or(missing: u64) -> Self {
        Cost::ContentLength { missing }
    }

    /// A cost computed by `f` from the request head.
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&Parts) -> u64 + Send + Sync + 'static,
    {
        Cost::FromFn(Arc::new(f))
    }

    /// The cost of this request.
    pub fn of(&self, parts: &Parts) -> u64 {
        match self {
            Cost::Fixed(n) => *n,
            Cost::ContentLength { missing } => parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(*missing),
            Cost::FromFn(f) => f(parts),
        }
    }

    /// The cost a policy reports when it is not computed per request.
    pub(crate) fn nominal(&self) -> u64 {
        match self {
            Cost::Fixed(n) => *n,
            _ => 1,
        }
    }

    /// The quota unit this cost counts in, for `RateLimit-Policy`'s `qu`.
    pub(crate) fn unit(&self) -> Option<&'static str> {
        matches!(self, Cost::ContentLength { .. }).then_some("content-bytes")
    }
}

impl From<u64> for Cost {
    fn from(n: u64) -> Self {
        Cost::Fixed(n)
    }
}

impl fmt::Debug for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cost::Fixed(n) => f.debug_tuple("Fixed").field(n).finish(),
            Cost::ContentLength { missing } => f
                .debug_struct("ContentLength")
                .field("missing", missing)
                .finish(),
            Cost::FromFn(_) => f.write_str("FromFn(..)"),
        }
    }
}

/// [`KeyExtractor`] without `Clone`, so rules can hold any extractor.
pub(crate) trait DynExtractor: Send + Sync + 'static {
    fn extract(&self, parts: &Parts) -> Extracted;
    fn on_missing(&self) -> OnMissing;
}

impl<K: KeyExtractor> DynExtractor for K {
    fn extract(&self, parts: &Parts) -> Extracted {
        KeyExtractor::extract(self, parts)
    }

    fn on_missing(&self) -> OnMissing {
        KeyExtractor::on_missing(self)
    }
}

/// Tier name → its policy, `None` for an unlimited tier.
pub(crate) type TierPolicies = HashMap<Arc<str>, Option<Arc<Policy>>>;

/// A rule made ready for requests: one [`Policy`] per quota it can yield,
/// built once.
pub(crate) struct Level {
    /// The rule's own quota.
    pub(crate) base: Arc<Policy>,
    pub(crate) key: Option<Arc<dyn DynExtractor>>,
    pub(crate) cost: Cost,
    pub(crate) count_only: Option<ResponseCounts>,
    pub(crate) tiers: Option<(Tiers, TierPolicies)>,
    #[cfg(feature = "schedule")]
    pub(crate) schedule: Option<(Schedule, Vec<Arc<Policy>>)>,
}

impl fmt::Debug for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Level")
            .field("policy", &self.base)
            .finish_non_exhaustive()
    }
}

impl Level {
    /// Compiles `rule`, named `fallback_name` if it has no name, with
    /// `algorithm` unless it has its own. Nothing is validated here: see
    /// [`Level::validate`].
    pub(crate) fn compile(rule: Rule, fallback_name: &str, algorithm: Algorithm) -> Level {
        let name: Arc<str> = rule
            .name
            .clone()
            .unwrap_or_else(|| policy_name_for(fallback_name).into());
        let algorithm = rule.algorithm.unwrap_or(algorithm);
        let unit = rule.cost.unit();
        let base = Policy::new(name, rule.quota)
            .with_algorithm(algorithm)
            .with_cost(rule.cost.nominal())
            .with_shadow(rule.shadow)
            .with_unit(unit);
        let make = |quota: Quota| Arc::new(base.with_quota(quota));
        let tiers = rule.tiers.map(|tiers| {
            let map = tiers
                .entries()
                .map(|(tier, quota)| (tier.clone(), quota.map(&make)))
                .collect();
            (tiers, map)
        });
        #[cfg(feature = "schedule")]
        let schedule = rule.schedule.map(|schedule| {
            let policies = schedule.quotas().iter().map(|q| make(*q)).collect();
            (schedule, policies)
        });
        Level {
            base: Arc::new(base),
            key: rule.key,
            cost: rule.cost,
            count_only: rule.count_only,
            tiers,
            #[cfg(feature = "schedule")]
            schedule,
        }
    }

    /// Checks every policy the level can yield.
    pub(crate) fn validate(&self) -> Result<(), PolicyError> {
        self.base.validate()?;
        if let Some((_, map)) = &self.tiers {
            for policy in map.values().flatten() {
                policy.validate()?;
            }
        }
        #[cfg(feature = "schedule")]
        if let Some((_, policies)) = &self.schedule {
            for policy in policies {
                policy.validate()?;
            }
        }
        Ok(())
    }

    /// The policy for this request before any per-key override: its tier's,
    /// else the schedule's, else the base. `None`: an unlimited tier.
    /// A schedule reads `clock` (only then: the plain path reads no time).
    pub(crate) fn policy_for(&self, parts: &Parts, clock: &dyn Clock) -> Option<&Arc<Policy>> {
        #[cfg(not(feature = "schedule"))]
        let _ = clock;
        if let Some((tiers, map)) = &self.tiers {
            if let Some(found) = tiers.resolve(parts, map) {
                return found.as_ref();
            }
        }
        #[cfg(feature = "schedule")]
        if let Some((schedule, policies)) = &self.schedule {
            // The layer's clock is anchored to the wall clock (Unix
            // nanoseconds); one outside jiff's range (after the year 9999)
            // gets the default quota.
            let now = i128::from(clock.now().as_u64());
            let index =
                jiff::Timestamp::from_nanosecond(now).map_or(0, |at| schedule.cached_index_at(at));
            return policies.get(index).or(Some(&self.base));
        }
        Some(&self.base)
    }

    /// Whether the level needs the request to pick its policy.
    pub(crate) fn is_plain(&self) -> bool {
        #[cfg(feature = "schedule")]
        if self.schedule.is_some() {
            return false;
        }
        self.tiers.is_none()
            && self.key.is_none()
            && self.count_only.is_none()
            && matches!(self.cost, Cost::Fixed(_))
    }
}

/// A policy name from a route pattern: characters a name cannot hold
/// (`{`, `}`, `*`, spaces) become `_`.
pub(crate) fn policy_name_for(pattern: &str) -> String {
    let name: String = pattern
        .trim()
        .chars()
        .map(|c| {
            if u8::try_from(c).is_ok_and(super::is_name_byte) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "route".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &[u8])]) -> Parts {
        let mut req = http::Request::builder().uri("/upload");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| http::Request::new(()).into_parts().0)
    }

    #[test]
    fn content_length_cost_reads_the_header_and_charges_missing_otherwise() {
        let cost = Cost::content_length_or(7);
        assert_eq!(cost.of(&parts(&[("content-length", b"1234")])), 1234);
        assert_eq!(cost.of(&parts(&[])), 7, "absent");
        assert_eq!(cost.of(&parts(&[("content-length", b"-5")])), 7, "negative");
        assert_eq!(
            cost.of(&parts(&[("content-length", b"1e9")])),
            7,
            "malformed"
        );
        assert_eq!(
            cost.of(&parts(&[("content-length", b"\xff\xfe")])),
            7,
            "non-UTF-8"
        );
        assert_eq!(
            cost.of(&parts(&[("content-length", b"99999999999999999999999")])),
            7,
            "overflowing"
        );
    }

    #[test]
    fn pattern_names_keep_only_header_safe_characters() {
        assert_eq!(policy_name_for("GET /users/{id}"), "GET_/users/_id_");
        assert_eq!(policy_name_for("/api/*"), "/api/_");
        assert_eq!(policy_name_for(""), "route");
    }
}
