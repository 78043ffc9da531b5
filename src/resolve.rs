//! From a request to its [`LimitSet`]: the route table's levels, each
//! keyed, priced and turned into one concrete policy.

use std::borrow::Cow;
use std::sync::Arc;

use http::request::Parts;
use smallvec::SmallVec;

use crate::key::{Extracted, Key, KeyExtractor, OnMissing};
use crate::policy::{Level, LimitSet, Policy, ResponseCounts, RouteTable};
use crate::problem::Problem;
use crate::settings::{Access, AccessList, Overrides};
use crate::time::SharedClock;

/// Which limits of a set count only some responses: `(index in the set,
/// predicate)`. Empty (no allocation) unless a rule has `count_only`.
pub(crate) type Settlements = SmallVec<[(usize, ResponseCounts); 1]>;

/// What a request resolves to.
pub(crate) enum Resolution {
    /// Check these limits.
    Limit(LimitSet, Settlements),
    /// Pass it on unlimited (exempt route, skipped key, allowed key,
    /// unlimited tier, no level applies).
    Unlimited,
    /// Answer with this problem (a rejected or missing key).
    Answer(Problem),
    /// Answer 403: the address or the key is on the deny list.
    Forbidden,
    /// A rejected key, counted against the layer's limit on rejected keys
    /// ([`RateLimitLayerBuilder::rejected_keys`](crate::RateLimitLayerBuilder::rejected_keys)):
    /// check this set, then answer the problem, or 429 once over it.
    Refuse(LimitSet, Box<Problem>),
}

/// What [`Resolver::simple`] finds.
pub(crate) enum Simple<'a> {
    /// Check this key against this policy.
    Keyed(Key, Cow<'a, Arc<Policy>>),
    /// A request without a key: what it resolves to.
    Resolved(Resolution),
}

/// Every level a layer knows, the table that picks them, and the
/// overrides.
pub(crate) struct Resolver {
    /// The default rule, applied to every request that is not exempt.
    pub(crate) default: Option<Level>,
    /// Group and route levels, as the table refers to them.
    pub(crate) levels: Vec<Level>,
    pub(crate) table: RouteTable,
    pub(crate) overrides: Overrides,
    /// Only a plain default level: the request path skips the table.
    pub(crate) simple: bool,
    /// Counts requests whose key is rejected, keyed by its own key (the
    /// client IP unless the rule gave one).
    pub(crate) rejected: Option<Level>,
    /// What schedules read (and overrides, through their own copy).
    clock: SharedClock,
}

/// The layer's key, extracted at most once per request.
enum LayerKey {
    NotYet,
    Found(Key),
    /// Skipped, or missing with `OnMissing::Skip`: its levels are left out.
    Absent,
}

impl Resolver {
    pub(crate) fn new(
        default: Option<Level>,
        levels: Vec<Level>,
        table: RouteTable,
        rejected: Option<Level>,
        clock: SharedClock,
    ) -> Self {
        let mut catalog = std::collections::HashMap::new();
        for level in default.iter().chain(levels.iter()) {
            // The first level of a name wins (levels of one name share
            // counters).
            catalog
                .entry(level.base.shared_name().clone())
                .or_insert_with(|| level.base.clone());
        }
        let default_name = default
            .as_ref()
            .or(levels.first())
            .map_or_else(|| Arc::from("default"), |l| l.base.shared_name().clone());
        let simple =
            table.is_empty() && levels.is_empty() && default.as_ref().is_some_and(Level::is_plain);
        Resolver {
            default,
            levels,
            table,
            overrides: Overrides::new(catalog, default_name, clock.clone()),
            clock,
            simple,
            rejected,
        }
    }

    /// What a request whose key was rejected with `problem` resolves to:
    /// the problem itself, or with a limit on rejected keys, that limit's
    /// check first.
    fn rejection(&self, problem: Problem, parts: &Parts) -> Resolution {
        let Some(level) = &self.rejected else {
            return Resolution::Answer(problem);
        };
        let Some(extractor) = &level.key else {
            return Resolution::Answer(problem);
        };
        // No client address either: nothing to count under.
        let Ok(Some(key)) = key_of(&**extractor, parts) else {
            return Resolution::Answer(problem);
        };
        let Some(policy) = level.policy_for(parts, &*self.clock) else {
            return Resolution::Answer(problem);
        };
        let set = LimitSet::single(policy.clone(), key, level.cost.of(parts));
        Resolution::Refuse(set, Box::new(problem))
    }

    /// What schedules and overrides read the time from.
    #[cfg(feature = "metrics")]
    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The default level's policy, if the layer has one.
    pub(crate) fn default_policy(&self) -> Option<&Arc<Policy>> {
        self.default.as_ref().map(|l| &l.base)
    }

    /// The common case without a set: with only a plain default level
    /// keyed by the layer (`simple`) and no key lists, the request's key
    /// and its policy (an override's, else the level's, borrowed).
    pub(crate) fn simple<K: KeyExtractor>(&self, extractor: &K, parts: &Parts) -> Simple<'_> {
        let Some(level) = &self.default else {
            return Simple::Resolved(Resolution::Unlimited);
        };
        match listed_key(extractor, None, parts) {
            Ok(Some(key)) => {
                let policy = match self.overrides.lookup(level.base.id(), &key) {
                    Some(policy) => Cow::Owned(policy),
                    None => Cow::Borrowed(&level.base),
                };
                Simple::Keyed(key, policy)
            }
            Ok(None) => Simple::Resolved(Resolution::Unlimited),
            Err(settled) => Simple::Resolved(self.settled(settled, parts)),
        }
    }

    /// Resolves `parts`: keys (the layer's `extractor` for levels without
    /// their own), the key lists of `access`, then one limit per level.
    pub(crate) fn resolve<K: KeyExtractor>(
        &self,
        extractor: &K,
        access: Option<&AccessList>,
        parts: &Parts,
    ) -> Resolution {
        let access = access.filter(|a| a.has_keys());
        if self.simple {
            // The common case: one plain level keyed by the layer.
            let Some(level) = &self.default else {
                return Resolution::Unlimited;
            };
            let key = match listed_key(extractor, access, parts) {
                Ok(Some(key)) => key,
                Ok(None) => return Resolution::Unlimited,
                Err(settled) => return self.settled(settled, parts),
            };
            let policy = self
                .overrides
                .lookup(level.base.id(), &key)
                .unwrap_or_else(|| level.base.clone());
            let cost = policy.cost();
            return Resolution::Limit(LimitSet::single(policy, key, cost), Settlements::new());
        }
        let matched = self.table.lookup(&parts.method, parts.uri.path());
        if matched.exempt {
            return Resolution::Unlimited;
        }
        let levels = self
            .default
            .iter()
            .chain(matched.groups.iter().filter_map(|&i| self.levels.get(i)))
            .chain(matched.route.and_then(|i| self.levels.get(i)));
        let mut set = LimitSet::new();
        let mut counts_only = Settlements::new();
        let mut shared_key = LayerKey::NotYet;
        for level in levels {
            let key = match &level.key {
                // An allowed key passes this level unlimited, not the request.
                Some(own) => match listed_key(&**own, access, parts) {
                    Ok(Some(key)) => key,
                    Ok(None) | Err(Settled::Unlimited) => continue,
                    Err(settled) => return self.settled(settled, parts),
                },
                None => {
                    if let LayerKey::NotYet = shared_key {
                        shared_key = match listed_key(extractor, access, parts) {
                            Ok(Some(key)) => LayerKey::Found(key),
                            Ok(None) => LayerKey::Absent,
                            Err(settled) => return self.settled(settled, parts),
                        };
                    }
                    match &shared_key {
                        LayerKey::Found(key) => key.clone(),
                        _ => continue,
                    }
                }
            };
            let policy = match self.overrides.lookup(level.base.id(), &key) {
                Some(policy) => policy,
                None => match level.policy_for(parts, &*self.clock) {
                    Some(policy) => policy.clone(),
                    None => continue, // an unlimited tier
                },
            };
            if let Some(counts) = &level.count_only {
                counts_only.push((set.len(), counts.clone()));
            }
            let cost = level.cost.of(parts);
            set.push(policy, key, cost);
        }
        if set.is_empty() {
            Resolution::Unlimited
        } else {
            Resolution::Limit(set, counts_only)
        }
    }
}

/// An extractor's key, checked against the key lists: `Ok(None)` when its
/// levels are left out; `Err` when it settles them (a key problem or a
/// denied key answers the request, an allowed key passes them unlimited).
fn listed_key<E: crate::policy::DynExtractor + ?Sized>(
    extractor: &E,
    access: Option<&AccessList>,
    parts: &Parts,
) -> Result<Option<Key>, Settled> {
    match key_of(extractor, parts) {
        Ok(Some(key)) => match listed(access, &key) {
            Access::Deny => Err(Settled::Forbidden),
            Access::Allow => Err(Settled::Unlimited),
            Access::Limit => Ok(Some(key)),
        },
        Ok(None) => Ok(None),
        Err(problem) => Err(Settled::Rejected(problem)),
    }
}

/// A request settled by its key before any limit.
enum Settled {
    /// The extractor rejected the request (a missing or invalid
    /// credential).
    Rejected(Problem),
    /// The key is on the deny list.
    Forbidden,
    /// The key is on the allow list.
    Unlimited,
}

impl Resolver {
    fn settled(&self, settled: Settled, parts: &Parts) -> Resolution {
        match settled {
            Settled::Rejected(problem) => self.rejection(problem, parts),
            Settled::Forbidden => Resolution::Forbidden,
            Settled::Unlimited => Resolution::Unlimited,
        }
    }
}

/// What the key lists (if any) say of `key`.
fn listed(access: Option<&AccessList>, key: &Key) -> Access {
    access.map_or(Access::Limit, |a| a.check_key(key))
}

/// An extractor's key: `Ok(None)` when it skips (or misses with
/// `OnMissing::Skip`), `Err` with the problem that answers the request.
fn key_of<E: crate::policy::DynExtractor + ?Sized>(
    extractor: &E,
    parts: &Parts,
) -> Result<Option<Key>, Problem> {
    match extractor.extract(parts) {
        Extracted::Key(key) => Ok(Some(key)),
        Extracted::Skip => Ok(None),
        Extracted::Missing(_) if extractor.on_missing() == OnMissing::Skip => Ok(None),
        Extracted::Reject(problem) | Extracted::Missing(problem) => {
            tracing::debug!(
                status = problem.status().as_u16(),
                title = problem.title(),
                "tollgate: request rejected by key extraction"
            );
            Err(problem)
        }
    }
}
