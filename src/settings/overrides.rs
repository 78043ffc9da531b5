//! [`Overrides`]: per-key quotas set and cleared at runtime.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::store::StoreError;
use super::sync::{self, Link, Mirror};
use crate::key::Key;
use crate::policy::{Policy, PolicyError};
use crate::quota::Quota;
use crate::time::{since_epoch, SharedClock};

/// Why an override could not be set or cleared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OverrideError {
    /// The layer has no policy of this name.
    #[error("no policy named {0:?} in this layer")]
    UnknownPolicy(String),
    /// The quota cannot be enforced by the policy's algorithm.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The shared store did not take the change; nothing changed.
    #[error("the override could not be stored: {0}")]
    Store(#[from] StoreError),
}

#[derive(Clone)]
struct Entry {
    policy: Arc<Policy>,
    expires_at: Option<SystemTime>,
}

struct Inner {
    /// Policy name → the layer's policy of that name (algorithm, cost,
    /// shadow), whose quota an override replaces.
    catalog: HashMap<Arc<str>, Arc<Policy>>,
    default: Arc<str>,
    /// What expiry is measured against: the layer's clock, anchored to the
    /// wall clock by default.
    clock: SharedClock,
    entries: RwLock<HashMap<(u64, Key), Entry>>,
    /// `entries.len()`, read without the lock on the request path.
    count: AtomicUsize,
    link: OnceLock<Link>,
}

/// Per-key quotas that replace a policy's for one key, set and cleared at
/// runtime, permanent or until an instant: a customer who bought more, an
/// abuser to slow down. Get it from
/// [`RateLimitLayer::overrides`](crate::RateLimitLayer::overrides).
///
/// An override changes the quota only: the key keeps its counters, the
/// policy its name, algorithm and cost. It wins over tiers and schedules.
///
/// With a backend that shares settings (Redis), an override is written to
/// the server and every layer on it picks it up within its
/// [`sync_interval`](crate::RateLimitLayerBuilder::sync_interval) (or at
/// once after [`RateLimitLayer::sync`](crate::RateLimitLayer::sync)); with
/// the memory backend it lives in this process. An expiry is a wall-clock
/// instant, compared with the layer's clock
/// ([`RateLimitLayerBuilder::clock`](crate::RateLimitLayerBuilder::clock):
/// by default the wall clock at start-up advanced monotonically, so a
/// server whose wall clock jumps keeps its overrides' lifetimes); an
/// expired override is ignored at once and stays in a shared store until
/// it is set again or cleared.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tollgate::key::Key;
/// use tollgate::{Quota, RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = RateLimitLayer::builder()
///     .key(tollgate::key::Header::new(http::HeaderName::from_static("x-api-key")))
///     .quota(Quota::per_minute(60))
///     .build()?;
/// let key = Key::secret(b"customer-7-api-key"); // what Header extracts
/// let in_a_day = SystemTime::now() + Duration::from_secs(86_400);
/// layer.overrides().set(key.clone(), Quota::per_minute(600), in_a_day).await?;
/// assert_eq!(layer.overrides().get(&key), Some(Quota::per_minute(600)));
/// layer.overrides().clear(&key).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Overrides {
    inner: Arc<Inner>,
}

impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overrides")
            .field("len", &self.len())
            .field("shared", &self.inner.link.get().is_some())
            .finish()
    }
}

impl Overrides {
    /// Overrides for the policies of `catalog`; [`Overrides::set`] applies
    /// to the one named `default`.
    pub(crate) fn new(
        catalog: HashMap<Arc<str>, Arc<Policy>>,
        default: Arc<str>,
        clock: SharedClock,
    ) -> Self {
        Overrides {
            inner: Arc::new(Inner {
                catalog,
                default,
                clock,
                entries: RwLock::new(HashMap::new()),
                count: AtomicUsize::new(0),
                link: OnceLock::new(),
            }),
        }
    }

    /// Sets `key`'s quota under the layer's default policy, until
    /// `expires_at` (`None`: until cleared).
    pub async fn set(
        &self,
        key: impl Into<Key>,
        quota: Quota,
        expires_at: impl Into<Option<SystemTime>>,
    ) -> Result<(), OverrideError> {
        let default = self.inner.default.clone();
        self.set_for(&default, key, quota, expires_at).await
    }

    /// Sets `key`'s quota under the policy named `policy`.
    pub async fn set_for(
        &self,
        policy: &str,
        key: impl Into<Key>,
        quota: Quota,
        expires_at: impl Into<Option<SystemTime>>,
    ) -> Result<(), OverrideError> {
        let key = key.into();
        let expires_at = expires_at.into();
        let entry = self.entry(policy, quota, expires_at)?;
        let value = encode_value(&quota, expires_at);
        sync::write(self, &field(policy, &key), Some(&value)).await?;
        self.edit(|map| map.insert((entry.policy.id(), key), entry));
        Ok(())
    }

    /// Removes `key`'s override under the default policy; `true` if there
    /// was one here.
    pub async fn clear(&self, key: &Key) -> Result<bool, OverrideError> {
        let default = self.inner.default.clone();
        self.clear_for(&default, key).await
    }

    /// Removes `key`'s override under `policy`; `true` if there was one
    /// here.
    pub async fn clear_for(&self, policy: &str, key: &Key) -> Result<bool, OverrideError> {
        let base = self.base(policy)?;
        sync::write(self, &field(policy, key), None).await?;
        let removed = self.edit(|map| map.remove(&(base.id(), key.clone())));
        Ok(removed.is_some())
    }

    /// `key`'s overriding quota under the default policy, if one is in
    /// force now.
    pub fn get(&self, key: &Key) -> Option<Quota> {
        self.get_for(&self.inner.default, key)
    }

    /// `key`'s overriding quota under `policy`, if one is in force now.
    pub fn get_for(&self, policy: &str, key: &Key) -> Option<Quota> {
        let base = self.inner.catalog.get(policy)?;
        self.lookup(base.id(), key).map(|p| *p.quota())
    }

    /// How many overrides are held (expired ones included until removed).
    pub fn len(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The overriding policy for `key` under the policy `policy_id`: the
    /// request path, one atomic load when there are none.
    pub(crate) fn lookup(&self, policy_id: u64, key: &Key) -> Option<Arc<Policy>> {
        if self.inner.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let entries = self
            .inner
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(&(policy_id, key.clone()))?;
        if let Some(at) = entry.expires_at {
            if since_epoch(at) <= self.inner.clock.now() {
                return None;
            }
        }
        Some(entry.policy.clone())
    }

    fn base(&self, policy: &str) -> Result<&Arc<Policy>, OverrideError> {
        self.inner
            .catalog
            .get(policy)
            .ok_or_else(|| OverrideError::UnknownPolicy(policy.to_owned()))
    }

    fn entry(
        &self,
        policy: &str,
        quota: Quota,
        expires_at: Option<SystemTime>,
    ) -> Result<Entry, OverrideError> {
        let policy = self.base(policy)?.with_quota(quota);
        policy.validate()?;
        Ok(Entry {
            policy: Arc::new(policy),
            expires_at,
        })
    }

    /// Changes the entries under one write lock, keeping `count` in step.
    fn edit<R>(&self, change: impl FnOnce(&mut HashMap<(u64, Key), Entry>) -> R) -> R {
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let out = change(&mut entries);
        self.inner.count.store(entries.len(), Ordering::Relaxed);
        out
    }
}

impl Mirror for Overrides {
    fn map(&self) -> &'static str {
        "overrides"
    }

    fn link(&self) -> &OnceLock<Link> {
        &self.inner.link
    }

    fn replace(&self, entries: Vec<(String, String)>) {
        let mut map = HashMap::with_capacity(entries.len());
        for (field, value) in entries {
            match self.decode(&field, &value) {
                Some((id, key, entry)) => {
                    map.insert((id, key), entry);
                }
                None => tracing::debug!(
                    field,
                    "tollgate: ignoring a shared override this layer cannot use (unknown policy or bad format)"
                ),
            }
        }
        self.edit(|entries| *entries = map);
    }
}

impl Overrides {
    fn decode(&self, field: &str, value: &str) -> Option<(u64, Key, Entry)> {
        let (policy, key) = field.split_once(' ')?;
        let key = Key::from_bytes(&sync::unhex(key)?);
        let mut parts = value.split(' ');
        let limit = parts.next()?.parse().ok()?;
        let period = Duration::from_nanos(parts.next()?.parse().ok()?);
        let burst = match parts.next()? {
            "-" => None,
            b => Some(b.parse::<u64>().ok()?),
        };
        let expires_at = match parts.next()? {
            "-" => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms.parse().ok()?)),
        };
        let mut quota = Quota::new(limit, period);
        if let Some(burst) = burst {
            quota = quota.with_burst(burst);
        }
        let entry = self.entry(policy, quota, expires_at).ok()?;
        Some((entry.policy.id(), key, entry))
    }
}

/// `"<policy> <hex key>"`: policy names hold no space.
fn field(policy: &str, key: &Key) -> String {
    format!("{policy} {}", sync::hex(key.as_bytes()))
}

/// `"<limit> <period ns> <burst> <expiry ms since the epoch or ->"`.
fn encode_value(quota: &Quota, expires_at: Option<SystemTime>) -> String {
    let expires = match expires_at {
        Some(at) => at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .to_string(),
        None => "-".to_owned(),
    };
    let burst = if quota.has_explicit_burst() {
        quota.burst().to_string()
    } else {
        "-".to_owned()
    };
    format!(
        "{} {} {burst} {expires}",
        quota.limit(),
        quota.period().as_nanos(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides_on(clock: SharedClock) -> Overrides {
        let p = Arc::new(Policy::new("default", Quota::per_second(10)));
        let mut catalog = HashMap::new();
        catalog.insert(Arc::from("default"), p);
        Overrides::new(catalog, "default".into(), clock)
    }

    fn overrides() -> Overrides {
        overrides_on(crate::time::default_clock())
    }

    #[tokio::test]
    async fn an_override_expires_when_the_layer_clock_reaches_its_instant() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = crate::time::ManualClock::starting_at(since_epoch(start));
        let o = overrides_on(Arc::new(clock.clone()));
        let key = Key::from("k");
        o.set(
            key.clone(),
            Quota::per_second(100),
            start + Duration::from_secs(60),
        )
        .await
        .unwrap();
        clock.advance(Duration::from_secs(59));
        assert_eq!(o.get(&key), Some(Quota::per_second(100)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(o.get(&key), None, "expired at its instant");
    }

    #[tokio::test]
    async fn an_override_replaces_the_quota_until_it_expires() {
        let o = overrides();
        let key = Key::from("k");
        o.set(key.clone(), Quota::per_second(100), None)
            .await
            .unwrap();
        assert_eq!(o.get(&key), Some(Quota::per_second(100)));
        let past = SystemTime::now() - Duration::from_secs(1);
        o.set(key.clone(), Quota::per_second(100), past)
            .await
            .unwrap();
        assert_eq!(o.get(&key), None, "expired");
        assert!(o.clear(&key).await.unwrap());
        assert!(o.is_empty());
    }

    #[tokio::test]
    async fn unknown_policies_and_bad_quotas_are_errors() {
        let o = overrides();
        let e = o.set_for("nope", "k", Quota::per_second(1), None).await;
        assert!(matches!(e, Err(OverrideError::UnknownPolicy(_))));
        let e = o.set("k", Quota::per_second(0), None).await;
        assert!(matches!(e, Err(OverrideError::Policy(_))));
        assert!(o.is_empty());
    }

    #[test]
    fn the_store_format_round_trips_and_junk_is_ignored() {
        let o = overrides();
        let key = Key::from(&b"\xff\x00bytes"[..]);
        let at = UNIX_EPOCH + Duration::from_millis(4_102_444_800_000);
        let q = Quota::per_minute(7).with_burst(3);
        o.replace(vec![
            (field("default", &key), encode_value(&q, Some(at))),
            ("default zz".into(), encode_value(&q, None)),
            ("other 00".into(), encode_value(&q, None)),
            (field("default", &Key::from("x")), "1 2".into()),
        ]);
        assert_eq!(o.len(), 1);
        assert_eq!(o.get(&key), Some(q));
    }
}
