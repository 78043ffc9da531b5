//! Policies: a named quota with its algorithm and cost, the [`Rule`]s and
//! route levels they come from, and the [`LimitSet`] a request resolves to.
//!
//! A layer resolves each request to a [`LimitSet`]: the default rule, the
//! groups whose prefix the path falls under (outermost first) and the most
//! specific route, each a [`Rule`] turned into one concrete [`Policy`] by
//! the request's tier, the schedule and any per-key override
//! ([`Overrides`](crate::settings::Overrides)). Allow and deny lists
//! ([`AccessList`](crate::settings::AccessList)) are checked before any of
//! it.

mod routes;
mod rule;
#[cfg(feature = "schedule")]
mod schedule;
mod tiers;

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::headers::{HeaderItem, PolicyHeader};
use crate::key::Key;
use crate::quota::{Quota, QuotaError};
use crate::{Algorithm, AlgorithmError, Decision};

pub use routes::PatternError;
pub(crate) use routes::{Pattern, RouteTable};
#[cfg(feature = "config")]
pub(crate) use rule::policy_name_for;
pub use rule::{Cost, Rule};
pub(crate) use rule::{DynExtractor, Level, ResponseCounts};
#[cfg(feature = "schedule")]
pub use schedule::{Schedule, ScheduleError, MAX_SCHEDULE_WINDOWS};
pub use tiers::Tiers;

/// A named limit: quota, algorithm and the cost of one request.
///
/// The name appears in `RateLimit-Policy`, in `violated-policies` of a 429
/// body, in logs and in metrics, and separates the counters of two
/// policies that see the same key.
///
/// ```
/// use tollgate::{Algorithm, Quota, policy::Policy};
///
/// let p = Policy::new("login", Quota::per_minute(5)).with_algorithm(Algorithm::SlidingWindowLog);
/// assert_eq!(p.name(), "login");
/// assert!(p.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct Policy {
    name: Arc<str>,
    /// A stable hash of the name: what separates two policies' counters.
    id: u64,
    quota: Quota,
    algorithm: Algorithm,
    cost: u64,
    shadow: bool,
    /// The quota unit (`qu`) when not requests.
    unit: Option<&'static str>,
    /// What the policy says in the headers, formatted once.
    header: PolicyHeader,
}

/// Whether a policy name may hold byte `b` (checked by
/// [`Policy::validate`], kept by names made from route patterns).
pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.:/".contains(&b)
}

impl Policy {
    /// A policy named `name` with `quota`, GCRA and a cost of 1.
    pub fn new(name: impl Into<Arc<str>>, quota: Quota) -> Self {
        let name = name.into();
        Policy {
            id: Key::from_bytes(name.as_bytes()).stable_hash(),
            header: PolicyHeader::new(name.clone(), quota.limit(), quota.period(), None),
            name,
            quota,
            algorithm: Algorithm::Gcra,
            cost: 1,
            shadow: false,
            unit: None,
        }
    }

    /// Formats the header values again after a change of quota or unit.
    fn with_header(mut self) -> Self {
        self.header = PolicyHeader::new(
            self.name.clone(),
            self.quota.limit(),
            self.quota.period(),
            self.unit,
        );
        self
    }

    /// The same policy (name, counters, algorithm, cost) with another
    /// quota: what a tier, a schedule or a per-key override yields.
    pub fn with_quota(&self, quota: Quota) -> Self {
        Policy {
            quota,
            ..self.clone()
        }
        .with_header()
    }

    /// The unit the quota counts in when it is not requests, for
    /// `RateLimit-Policy`'s `qu` parameter (`"content-bytes"` for a cost
    /// from `Content-Length`).
    pub fn with_unit(mut self, unit: Option<&'static str>) -> Self {
        self.unit = unit;
        self.with_header()
    }

    /// Sets the algorithm.
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Sets how many units one request takes (default 1).
    pub fn with_cost(mut self, cost: u64) -> Self {
        self.cost = cost;
        self
    }

    /// Shadow mode for this policy: decisions are computed, counted and
    /// reported, but a denial never blocks.
    pub fn with_shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared (no copy of the string).
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// A stable 64-bit hash of the name; policies with the same name share
    /// counters in a backend.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The cost of one request.
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// Whether the policy only reports.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// What the policy says in the rate-limit headers (for
    /// [`headers::write_headers`](crate::headers::write_headers)).
    pub fn header(&self) -> &PolicyHeader {
        &self.header
    }

    /// Checks the quota, the algorithm's constraints and the name.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.name.is_empty() || !self.name.bytes().all(is_name_byte) {
            return Err(PolicyError::BadName(self.name.to_string()));
        }
        self.quota.validate().map_err(|source| PolicyError::Quota {
            policy: self.name.to_string(),
            source,
        })?;
        self.algorithm
            .validate(&self.quota)
            .map_err(|source| PolicyError::Algorithm {
                policy: self.name.to_string(),
                source,
            })?;
        Ok(())
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .field("algorithm", &self.algorithm)
            .field("cost", &self.cost)
            .field("shadow", &self.shadow)
            .finish()
    }
}

/// Why a policy cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Names go into headers and metric labels.
    #[error("policy name {0:?} must be non-empty ASCII letters, digits or - _ . : /")]
    BadName(String),
    /// The quota is invalid.
    #[error("policy {policy:?}: {source}")]
    Quota {
        /// The policy.
        policy: String,
        /// What is wrong with its quota.
        source: QuotaError,
    },
    /// The algorithm cannot enforce the quota.
    #[error("policy {policy:?}: {source}")]
    Algorithm {
        /// The policy.
        policy: String,
        /// What is wrong.
        source: AlgorithmError,
    },
}

/// One limit to check: a policy applied to a key, at a cost.
#[derive(Debug, Clone)]
pub struct Limit {
    /// The policy.
    pub policy: Arc<Policy>,
    /// Who is limited.
    pub key: Key,
    /// How many units this request takes under this policy.
    pub cost: u64,
}

/// The limits a request is checked against, all at once and
/// all-or-nothing: if any denies, none is consumed.
///
/// ```
/// use std::sync::Arc;
/// use tollgate::{Quota, key::Key, policy::{LimitSet, Policy}};
///
/// let policy = Arc::new(Policy::new("default", Quota::per_second(10)));
/// let set = LimitSet::single(policy, Key::from("client-1"), 1);
/// assert_eq!(set.len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct LimitSet {
    limits: SmallVec<[Limit; 2]>,
}

impl LimitSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of one limit.
    pub fn single(policy: Arc<Policy>, key: Key, cost: u64) -> Self {
        let mut limits = SmallVec::new();
        limits.push(Limit { policy, key, cost });
        LimitSet { limits }
    }

    /// Adds a limit.
    pub fn push(&mut self, policy: Arc<Policy>, key: Key, cost: u64) {
        self.limits.push(Limit { policy, key, cost });
    }

    /// The limits, in order.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The policies, in order, without their keys.
    pub fn into_policies(self) -> SmallVec<[Arc<Policy>; 2]> {
        let mut out = SmallVec::new();
        for limit in self.limits {
            out.push(limit.policy);
        }
        out
    }

    /// Takes the limits out, by value (draining moves only the limits, not
    /// the whole set as `into_iter` would).
    pub(crate) fn drain_limits(&mut self) -> impl Iterator<Item = Limit> + '_ {
        self.limits.drain(..)
    }

    /// How many limits.
    pub fn len(&self) -> usize {
        self.limits.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }
}

impl HeaderItem for (Arc<Policy>, Decision) {
    fn header(&self) -> &PolicyHeader {
        &self.0.header
    }
    fn decision(&self) -> &Decision {
        &self.1
    }
}
