//! Settings every server of a fleet must see alike, changed at runtime:
//! per-key quota [`Overrides`] and allow/deny [`AccessList`]s, and the
//! [`SettingsStore`] that shares them.
//!
//! The request path reads only an in-process copy. With a backend that
//! shares settings (Redis, through
//! [`Backend::store`](crate::backend::Backend::store)), writes go to the
//! store first and every layer reloads its copy when the store's version
//! moves ([`RateLimitLayer::sync`](crate::RateLimitLayer::sync), or every
//! [`sync_interval`](crate::RateLimitLayerBuilder::sync_interval)); with the
//! memory backend they stay in this process.

mod access;
mod overrides;
mod store;
pub(crate) mod sync;

pub(crate) use access::forbidden;
pub use access::{Access, AccessList};
pub use overrides::{OverrideError, Overrides};
pub use store::{SettingsStore, StoreError, StoreFuture};
