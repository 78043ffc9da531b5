//! [`SettingsStore`]: small maps of settings shared by every server on one
//! backend (per-key overrides, allow/deny lists).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// The future of a [`SettingsStore`] call.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a [`SettingsStore`] call failed. Nothing is known to have been
/// written; the local copy is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer within its timeout.
    #[error("settings store timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The store is unreachable, failed, or answered something malformed.
    #[error("settings store unavailable: {0}")]
    Unavailable(String),
}

/// Named maps of string fields to string values, each with a version that
/// changes on every write, kept where every server of a fleet can read
/// them (for Redis: one hash and one counter per map).
///
/// The layer keeps a copy of each map in memory for the request path and
/// reloads it when the version moves; requests never wait on the store.
/// Writes go to the store first, then to the local copy, so a write that
/// failed is reported and changes nothing.
pub trait SettingsStore: Send + Sync + fmt::Debug {
    /// Every field of `map` with its value, and the map's version, read
    /// atomically together.
    fn load<'a>(&'a self, map: &'a str) -> StoreFuture<'a, (u64, Vec<(String, String)>)>;

    /// The version of `map`: `0` for a map never written, then changed by
    /// every write.
    fn version<'a>(&'a self, map: &'a str) -> StoreFuture<'a, u64>;

    /// Sets `field` of `map` to `value` and moves the version, atomically.
    fn put<'a>(&'a self, map: &'a str, field: &'a str, value: &'a str) -> StoreFuture<'a, ()>;

    /// Removes `field` from `map` (nothing if absent) and moves the
    /// version, atomically.
    fn remove<'a>(&'a self, map: &'a str, field: &'a str) -> StoreFuture<'a, ()>;
}
