//! [`BoxBackend`]: any backend behind one type, for setups chosen at run
//! time (a configuration file that says "redis" or "memory"), where the
//! layer's backend type cannot be written in the program.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Acquire, Backend, BackendError, BackendStatus, Outcome, SettingsStore};
use crate::key::Key;
use crate::policy::{LimitSet, Policy};
use crate::time::Nanos;
use crate::Decision;

/// The future of a boxed backend's networked answer.
pub type BoxAcquireFuture = Pin<Box<dyn Future<Output = Result<Outcome, BackendError>> + Send>>;

/// Any [`Backend`], boxed: the type of a backend chosen at run time.
///
/// A ready answer (the memory backend's) stays unboxed, so the in-memory
/// path costs one indirect call more, no allocation; a networked answer's
/// future is boxed once per call. Cloning is one `Arc` clone; clones share
/// the backend (its counters).
///
/// ```
/// use tollgate::backend::{Backend, BoxBackend, MemoryBackend};
/// use tollgate::{Quota, RateLimitLayer};
///
/// // Chosen at run time: `BoxBackend::new(RedisBackend::connect(&url).await?)`
/// // when a Redis URL is configured, the memory backend otherwise.
/// let backend = BoxBackend::new(MemoryBackend::new());
/// assert_eq!(backend.kind(), "memory");
/// let layer = RateLimitLayer::builder()
///     .quota(Quota::per_second(10))
///     .backend(backend)
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct BoxBackend {
    inner: Arc<dyn DynBackend>,
}

impl BoxBackend {
    /// `backend`, boxed.
    pub fn new<B: Backend>(backend: B) -> Self {
        BoxBackend {
            inner: Arc::new(backend),
        }
    }
}

impl fmt::Debug for BoxBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxBackend")
            .field("kind", &self.inner.kind())
            .finish_non_exhaustive()
    }
}

/// [`Backend`] in object-safe form: its futures boxed.
trait DynBackend: Send + Sync {
    fn acquire(&self, set: &LimitSet) -> Acquire<BoxAcquireFuture>;
    fn peek(&self, set: &LimitSet) -> Acquire<BoxAcquireFuture>;
    fn reset(&self, set: &LimitSet) -> Acquire<BoxAcquireFuture>;
    fn absorb(&self, set: &LimitSet) -> Acquire<BoxAcquireFuture>;
    fn refund(&self, set: &LimitSet, at: Nanos) -> Acquire<BoxAcquireFuture>;
    fn acquire_now(&self, policy: &Policy, key: &Key, cost: u64) -> Option<Decision>;
    fn store(&self) -> Option<Arc<dyn SettingsStore>>;
    fn kind(&self) -> &'static str;
    fn status(&self) -> BackendStatus;
}

fn boxed<F>(acquire: Acquire<F>) -> Acquire<BoxAcquireFuture>
where
    F: Future<Output = Result<Outcome, BackendError>> + Send + 'static,
{
    acquire.map_pending(|future| -> BoxAcquireFuture { Box::pin(future) })
}

impl<B: Backend> DynBackend for B {
    fn acquire(&self, set: &LimitSet) -> Acquire<BoxAcquireFuture> {
        boxed(Backend::acquire(self, set))
    }

    fn peek(&self, set: &LimitSet) -> Acquire<BoxAcquireFuture> {
        boxed(Backend::peek(self, set))
    }

    fn reset(&self, set: &LimitSet) -> Acquire<BoxAcquireFuture> {
        boxed(Backend::reset(self, set))
    }

    fn absorb(&self, set: &LimitSet) -> Acquire<BoxAcquireFuture> {
        boxed(Backend::absorb(self, set))
    }

    fn refund(&self, set: &LimitSet, at: Nanos) -> Acquire<BoxAcquireFuture> {
        boxed(Backend::refund(self, set, at))
    }

    fn acquire_now(&self, policy: &Policy, key: &Key, cost: u64) -> Option<Decision> {
        Backend::acquire_now(self, policy, key, cost)
    }

    fn store(&self) -> Option<Arc<dyn SettingsStore>> {
        Backend::store(self)
    }

    fn kind(&self) -> &'static str {
        Backend::kind(self)
    }

    fn status(&self) -> BackendStatus {
        Backend::status(self)
    }
}

impl Backend for BoxBackend {
    type Future = BoxAcquireFuture;

    fn acquire(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.inner.acquire(set)
    }

    fn peek(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.inner.peek(set)
    }

    fn reset(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.inner.reset(set)
    }

    fn absorb(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.inner.absorb(set)
    }

    fn refund(&self, set: &LimitSet, at: Nanos) -> Acquire<Self::Future> {
        self.inner.refund(set, at)
    }

    fn acquire_now(&self, policy: &Policy, key: &Key, cost: u64) -> Option<Decision> {
        self.inner.acquire_now(policy, key, cost)
    }

    fn store(&self) -> Option<Arc<dyn SettingsStore>> {
        self.inner.store()
    }

    /// The boxed backend's kind.
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    /// The boxed backend's status.
    fn status(&self) -> BackendStatus {
        self.inner.status()
    }
}
