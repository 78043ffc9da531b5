//! Keeping a local copy of a shared settings map (overrides, access lists)
//! in step with a backend's [`SettingsStore`].
//!
//! The request path reads only the local copy. Writes go to the store
//! first, then to the copy; other servers see them when they next compare
//! versions (every [`sync_interval`](crate::RateLimitLayerBuilder::sync_interval)),
//! or at once after [`RateLimitLayer::sync`](crate::RateLimitLayer::sync).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::store::{SettingsStore, StoreError};

/// A store and the version of the map last loaded from it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) store: Arc<dyn SettingsStore>,
    loaded: AtomicU64,
    /// What the copy held when attached (entries given to builder forms),
    /// written to the store by the first refresh.
    seed: Mutex<Option<Vec<(String, String)>>>,
}

/// A local copy of one shared map.
pub(crate) trait Mirror: Send + Sync {
    /// The map's name in the store.
    fn map(&self) -> &'static str;
    /// Where the copy is attached, if anywhere.
    fn link(&self) -> &OnceLock<Link>;
    /// Replaces the copy with the store's entries.
    fn replace(&self, entries: Vec<(String, String)>);
    /// The copy's entries, as the store would hold them.
    fn snapshot(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// Attaches `mirror` to `store` (once: a copy already attached keeps its
/// store, and a second layer built on the same list is told so).
pub(crate) fn attach(mirror: &dyn Mirror, store: Arc<dyn SettingsStore>) {
    let link = Link {
        store,
        loaded: AtomicU64::new(u64::MAX),
        seed: Mutex::new(Some(mirror.snapshot())),
    };
    if mirror.link().set(link).is_err() {
        tracing::debug!(
            map = mirror.map(),
            "tollgate: settings already shared through a store; keeping the first"
        );
    }
}

/// Reloads the copy if the store's version moved; `true` if it did.
pub(crate) async fn refresh(mirror: &dyn Mirror) -> Result<bool, StoreError> {
    let Some(link) = mirror.link().get() else {
        return Ok(false);
    };
    let seed = link
        .seed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(seed) = seed {
        for (i, (field, value)) in seed.iter().enumerate() {
            if let Err(error) = link.store.put(mirror.map(), field, value).await {
                // Put back what is left, to try again at the next refresh.
                *link.seed.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(seed[i..].to_vec());
                return Err(error);
            }
        }
    }
    let version = link.store.version(mirror.map()).await?;
    if version == link.loaded.load(Ordering::Acquire) {
        return Ok(false);
    }
    let (version, entries) = link.store.load(mirror.map()).await?;
    mirror.replace(entries);
    link.loaded.store(version, Ordering::Release);
    Ok(true)
}

/// Writes `field = value` (or removes `field` when `value` is `None`) to
/// the store, if the copy is attached to one.
pub(crate) async fn write(
    mirror: &dyn Mirror,
    field: &str,
    value: Option<&str>,
) -> Result<(), StoreError> {
    let Some(link) = mirror.link().get() else {
        return Ok(());
    };
    match value {
        Some(value) => link.store.put(mirror.map(), field, value).await,
        None => link.store.remove(mirror.map(), field).await,
    }
}

/// Lower-case hex of `bytes`: how keys (arbitrary bytes) are written into
/// a store's string fields.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// The bytes of a [`hex`] string; `None` if it is not one.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_any_bytes_and_rejects_junk() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(""), Some(vec![]));
    }
}
