//! [`Tiers`]: a quota per plan, the plan found in the request.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;

use super::Policy;
use crate::key::{Extracted, KeyExtractor};
use crate::quota::Quota;

type Resolve = Arc<dyn Fn(&Parts, &mut dyn FnMut(&str)) + Send + Sync>;

/// Quotas per tier (`free`, `pro`, …) and how a request's tier is found:
/// a closure, a value your auth middleware put in the request extensions,
/// or any [`KeyExtractor`] (a JWT claim with `key::Bearer`).
///
/// A request whose tier is unknown, or not listed, gets the rule's own
/// quota; a tier listed as [`unlimited`](Tiers::unlimited) is not limited
/// by this rule at all.
///
/// ```
/// use tollgate::policy::{Rule, Tiers};
/// use tollgate::Quota;
///
/// #[derive(Clone)]
/// struct Plan(&'static str); // inserted by the app's auth middleware
///
/// let api = Rule::new("api", Quota::per_minute(10)) // anonymous / unknown plan
///     .tiers(
///         Tiers::from_extension(|plan: &Plan| plan.0)
///             .tier("free", Quota::per_minute(60))
///             .tier("pro", Quota::per_minute(1_000))
///             .unlimited("internal"),
///     );
/// # let _ = api;
/// ```
#[derive(Clone)]
pub struct Tiers {
    resolve: Resolve,
    entries: Vec<(Arc<str>, Option<Quota>)>,
}

impl Tiers {
    /// Tiers found by `f` from the request head (`None`: no tier).
    pub fn from_fn<F, S>(f: F) -> Self
    where
        F: Fn(&Parts) -> Option<S> + Send + Sync + 'static,
        S: AsRef<str>,
    {
        Tiers::with(Arc::new(
            move |parts: &Parts, found: &mut dyn FnMut(&str)| {
                if let Some(tier) = f(parts) {
                    found(tier.as_ref());
                }
            },
        ))
    }

    /// Tiers read from a value of type `T` in the request extensions,
    /// mapped to the tier name by `f`. No `T`: no tier.
    pub fn from_extension<T, F, S>(f: F) -> Self
    where
        T: Send + Sync + 'static,
        F: Fn(&T) -> S + Send + Sync + 'static,
        S: AsRef<str>,
    {
        Tiers::with(Arc::new(
            move |parts: &Parts, found: &mut dyn FnMut(&str)| {
                if let Some(value) = parts.extensions.get::<T>() {
                    found(f(value).as_ref());
                }
            },
        ))
    }

    /// Tiers named by what `extractor` finds, read as UTF-8: for example a
    /// JWT's `plan` claim with `key::Bearer` (feature `jwt`). Anything but a
    /// key (missing, rejected, skipped, not UTF-8) means no tier: the rule
    /// then applies its own quota, and the layer's key decides whether the
    /// request is answered. `key::Header` and `key::Query` hash what they
    /// find (credentials), so they cannot name a tier: use
    /// [`Tiers::from_fn`] to read a plain header.
    pub fn from_key<K: KeyExtractor>(extractor: K) -> Self {
        Tiers::with(Arc::new(
            move |parts: &Parts, found: &mut dyn FnMut(&str)| {
                if let Extracted::Key(key) = extractor.extract(parts) {
                    if let Ok(tier) = std::str::from_utf8(key.as_bytes()) {
                        found(tier);
                    }
                }
            },
        ))
    }

    fn with(resolve: Resolve) -> Self {
        Tiers {
            resolve,
            entries: Vec::new(),
        }
    }

    /// The quota of tier `name` (a later entry for the same name wins).
    pub fn tier(mut self, name: impl Into<Arc<str>>, quota: Quota) -> Self {
        self.entries.push((name.into(), Some(quota)));
        self
    }

    /// Tier `name` is not limited by this rule.
    pub fn unlimited(mut self, name: impl Into<Arc<str>>) -> Self {
        self.entries.push((name.into(), None));
        self
    }

    /// The tiers, in the order given; `None` is unlimited.
    pub fn entries(&self) -> impl Iterator<Item = (&Arc<str>, &Option<Quota>)> {
        self.entries.iter().map(|(n, q)| (n, q))
    }

    /// The listed tier of this request: `None` when it has no tier or one
    /// not listed; `Some(None)` for an unlimited tier.
    pub(crate) fn resolve<'m>(
        &self,
        parts: &Parts,
        map: &'m super::rule::TierPolicies,
    ) -> Option<&'m Option<Arc<Policy>>> {
        let mut out = None;
        (self.resolve)(parts, &mut |tier: &str| out = map.get(tier));
        out
    }
}

impl fmt::Debug for Tiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(n, q)| (n, q)))
            .finish()
    }
}
