//! Where counters live: the [`Backend`] trait and its implementations.
//!
//! A backend checks a whole [`LimitSet`] in one call, all-or-nothing: if any
//! enforcing limit denies, nothing is consumed. The in-memory backend
//! answers synchronously ([`Acquire::Ready`]) so the layer never boxes or
//! awaits on that path; a networked backend returns its future
//! ([`Acquire::Pending`]).

mod blocked;
mod boxed;
mod circuit;
mod failover;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod status;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use smallvec::SmallVec;

#[cfg(feature = "redis")]
pub use self::redis::{
    RedisBackend, RedisBackendBuilder, RedisConnectError, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT, DEFAULT_TTL_MARGIN,
};
pub use blocked::{BlockedCache, DEFAULT_BLOCKED_CAPACITY};
pub use boxed::{BoxAcquireFuture, BoxBackend};
pub use circuit::{BackendHealth, CircuitBreaker, CircuitBreakerBuilder, CircuitState, Permit};
pub use failover::{Failover, FailoverBuilder, FailoverFuture, Health, HealthStatus};
pub use memory::{MemoryBackend, MemoryBackendBuilder, DEFAULT_MAX_KEYS};
pub use status::{BackendStatus, BlockedStatus, MemoryStatus};

use std::sync::Arc;

use crate::key::Key;
use crate::policy::{LimitSet, Policy};
use crate::time::Nanos;
use crate::Decision;

use crate::settings::{SettingsStore, StoreError};

/// The answer for a whole [`LimitSet`].
///
/// Two outcomes are equal when their decisions and verdict are; the
/// instant of the decision ([`Outcome::at`]) is not compared.
#[derive(Debug, Clone)]
pub struct Outcome {
    decisions: SmallVec<[Decision; 2]>,
    allowed: bool,
    at: Option<Nanos>,
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        self.allowed == other.allowed && self.decisions == other.decisions
    }
}

impl Eq for Outcome {}

impl Outcome {
    /// An outcome from one decision per limit, in the set's order, and
    /// whether the set as a whole passed.
    pub fn new(decisions: SmallVec<[Decision; 2]>, allowed: bool) -> Self {
        Outcome {
            decisions,
            allowed,
            at: None,
        }
    }

    /// The outcome of a one-limit set.
    #[inline]
    pub(crate) fn one(decision: Decision, allowed: bool) -> Self {
        let mut decisions = SmallVec::new();
        decisions.push(decision);
        Self::new(decisions, allowed)
    }

    /// The same outcome, decided at `at` on the backend's clock.
    pub fn decided_at(mut self, at: Nanos) -> Self {
        self.at = Some(at);
        self
    }

    /// The instant of the decision on the backend's own clock (the memory
    /// backend's monotonic clock, the Redis server's `TIME`), when the
    /// backend reports it: what [`Backend::refund`] needs to undo exactly
    /// this acquire.
    pub fn at(&self) -> Option<Nanos> {
        self.at
    }

    /// Whether the request may pass (every enforcing limit allowed it).
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// One decision per limit, in the order of the set.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The same outcome `elapsed` later, with nothing counted meanwhile:
    /// waits and resets shortened (a remembered denial, re-served).
    pub(crate) fn age(&mut self, elapsed: crate::time::Nanos) {
        for d in &mut self.decisions {
            d.reset_after = d.reset_after.saturating_sub(elapsed);
            d.retry_after = d.retry_after.map(|r| r.saturating_sub(elapsed));
        }
    }
}

/// Why a backend could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend did not answer within its timeout.
    #[error("rate-limit backend timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The backend is unreachable or failed (for a reason none of the
    /// other variants names).
    #[error("rate-limit backend unavailable: {0}")]
    Unavailable(String),
    /// The connection to the backend failed, was refused or dropped.
    #[error("rate-limit backend connection failed: {0}")]
    Connection(String),
    /// The backend ran the check's script and it failed.
    #[error("rate-limit backend script failed: {0}")]
    Script(String),
    /// A clustered backend could not route the call (slots moving, a
    /// cluster down).
    #[error("rate-limit backend cluster error: {0}")]
    Cluster(String),
}

impl BackendError {
    /// What kind of failure this is (the `kind` label of
    /// `tollgate_backend_errors_total`).
    ///
    /// ```
    /// use tollgate::backend::{BackendError, ErrorKind};
    /// let error = BackendError::Connection("refused".into());
    /// assert_eq!(error.kind(), ErrorKind::Connection);
    /// assert_eq!(error.kind().as_str(), "connection");
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackendError::Timeout(_) => ErrorKind::Timeout,
            BackendError::Unavailable(_) => ErrorKind::Other,
            BackendError::Connection(_) => ErrorKind::Connection,
            BackendError::Script(_) => ErrorKind::Script,
            BackendError::Cluster(_) => ErrorKind::Cluster,
        }
    }
}

/// The kind of a [`BackendError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No answer within the timeout.
    Timeout,
    /// The connection failed, was refused or dropped.
    Connection,
    /// The backend's script failed.
    Script,
    /// A cluster could not route the call.
    Cluster,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// `"timeout"`, `"connection"`, `"script"`, `"cluster"` or `"other"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::Script => "script",
            ErrorKind::Cluster => "cluster",
            ErrorKind::Other => "other",
        }
    }
}

impl From<BackendError> for StoreError {
    fn from(error: BackendError) -> Self {
        match error {
            BackendError::Timeout(after) => StoreError::Timeout(after),
            BackendError::Unavailable(why) => StoreError::Unavailable(why),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// A backend's answer: ready now (memory), or a future (network).
///
/// `.await` it with any backend (it is [`IntoFuture`]), as
/// `limiter.check(..).await` does; the layer matches on it instead, so
/// that the memory path is a direct call with nothing to poll. Networked
/// backends return a boxed (so `Unpin`) future.
///
/// ```
/// use std::sync::Arc;
/// use tollgate::backend::{Acquire, Backend, MemoryBackend};
/// use tollgate::{Quota, key::Key, policy::{LimitSet, Policy}};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let backend = MemoryBackend::new();
/// let set = LimitSet::single(Arc::new(Policy::new("p", Quota::per_second(1))), Key::from("k"), 1);
/// match backend.acquire(&set) {
///     Acquire::Ready(result) => assert!(result.unwrap().allowed()),
///     Acquire::Pending(_) => unreachable!("memory answers at once"),
/// }
/// assert!(!backend.acquire(&set).await.unwrap().allowed());
/// # }
/// ```
#[derive(Debug)]
pub enum Acquire<F> {
    /// Answered synchronously.
    Ready(Result<Outcome, BackendError>),
    /// Still to be awaited.
    Pending(F),
}

impl<F> Acquire<F> {
    /// A ready answer.
    pub fn ready(result: Result<Outcome, BackendError>) -> Self {
        Acquire::Ready(result)
    }

    /// A pending answer.
    pub fn pending(future: F) -> Self {
        Acquire::Pending(future)
    }

    /// The same answer with the pending future mapped by `f` (boxed, or
    /// wrapped in a combinator's own future).
    pub fn map_pending<G>(self, f: impl FnOnce(F) -> G) -> Acquire<G> {
        match self {
            Acquire::Ready(result) => Acquire::Ready(result),
            Acquire::Pending(future) => Acquire::Pending(f(future)),
        }
    }

    /// The answer if it is ready, else the future to await.
    pub(crate) fn into_state(self) -> Result<Result<Outcome, BackendError>, F> {
        match self {
            Acquire::Ready(result) => Ok(result),
            Acquire::Pending(future) => Err(future),
        }
    }
}

impl<F> IntoFuture for Acquire<F>
where
    F: Future<Output = Result<Outcome, BackendError>> + Unpin,
{
    type Output = Result<Outcome, BackendError>;
    type IntoFuture = AcquireFuture<F>;

    fn into_future(self) -> AcquireFuture<F> {
        AcquireFuture {
            state: match self {
                Acquire::Ready(result) => Answer::Ready(Some(result)),
                Acquire::Pending(future) => Answer::Pending(future),
            },
        }
    }
}

/// The future of an awaited [`Acquire`].
#[derive(Debug)]
pub struct AcquireFuture<F> {
    state: Answer<F>,
}

#[derive(Debug)]
enum Answer<F> {
    /// The ready answer, until it is taken by the first poll.
    Ready(Option<Result<Outcome, BackendError>>),
    Pending(F),
}

impl<F> Future for AcquireFuture<F>
where
    F: Future<Output = Result<Outcome, BackendError>> + Unpin,
{
    type Output = Result<Outcome, BackendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            Answer::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(BackendError::Unavailable(
                    "tollgate: AcquireFuture polled after completion".into(),
                ))
            })),
            Answer::Pending(future) => Pin::new(future).poll(cx),
        }
    }
}

/// Stores rate-limit state and checks [`LimitSet`]s against it.
///
/// Contract, checked by the conformance table in `tests/conformance/`:
/// decisions are those of the [`Algorithm`](crate::Algorithm) on
/// the backend's own clock; a set is all-or-nothing; `peek` consumes
/// nothing; `reset` forgets the set's keys.
pub trait Backend: Clone + Send + Sync + 'static {
    /// The future of a networked answer ([`std::future::Ready`] for
    /// backends that always answer synchronously).
    type Future: Future<Output = Result<Outcome, BackendError>> + Send + Unpin + 'static;

    /// Checks and, if every enforcing limit allows, counts the request.
    fn acquire(&self, set: &LimitSet) -> Acquire<Self::Future>;

    /// The decisions `acquire` would give, without counting anything;
    /// `remaining` is what is available now.
    fn peek(&self, set: &LimitSet) -> Acquire<Self::Future>;

    /// Forgets the state of the set's keys (they get their full quota) and
    /// returns the fresh decisions.
    fn reset(&self, set: &LimitSet) -> Acquire<Self::Future>;

    /// Counts the set's units **even over the limit**: how consumption
    /// admitted elsewhere is written back, e.g. what a [`Failover`]'s
    /// fallback admitted while this backend was down, so that a client does
    /// not get a fresh quota from the outage.
    ///
    /// The contract, which every implementation must follow exactly:
    ///
    /// - **Every limit is counted, independently.** Not all-or-nothing: a
    ///   limit over its quota does not stop the others from being counted;
    ///   shadow policies are counted too. A limit's `cost` is the number of
    ///   units to count; a cost of zero changes nothing. The same key twice
    ///   in a set is counted twice, in order.
    /// - **At the backend's own clock** (for Redis, the server's `TIME`), as
    ///   if the units were consumed now. Each limit's new state is
    ///   the forced count of [`Algorithm`](crate::Algorithm#counting-over-the-limit) of its stored state
    ///   (see its table: e.g. GCRA `TAT' = max(TAT, now) + cost·T`, a fixed
    ///   window's count `+ cost`), so a key may end up past its limit and
    ///   repays the excess the way the algorithm repays any consumption;
    ///   idle expiry (TTLs) must follow the new `reset_after`.
    /// - **The answer**: one decision per limit, in the set's order, as
    ///   returned by the forced count (`allowed` says whether the units
    ///   fitted within the limit; `remaining`, `reset_after` and
    ///   `retry_after` describe the key after the write); the outcome is
    ///   allowed when every non-shadow limit's units fitted. The units are
    ///   counted either way.
    /// - **Errors** mean nothing is known to have been counted; a caller
    ///   may retry the whole set (a retry after a partial write can count
    ///   twice: callers keep sets small).
    ///
    /// The default implementation answers
    /// [`BackendError::Unavailable`]: a backend that cannot count over the
    /// limit says so rather than approximating (with [`Failover`], the
    /// local consumption is then kept and logged, not written back).
    fn absorb(&self, set: &LimitSet) -> Acquire<Self::Future> {
        let _ = set;
        Acquire::ready(Err(BackendError::Unavailable(
            "this backend does not implement Backend::absorb (counting over the limit)".into(),
        )))
    }

    /// Gives back what an [`acquire`](Backend::acquire) of `set` admitted at
    /// `at` (its [`Outcome::at`]): how a policy that counts only some
    /// responses (say, failed logins) undoes the others after the response.
    ///
    /// The contract:
    ///
    /// - Each limit's state becomes
    ///   the refund of [`Algorithm`](crate::Algorithm#refunds) of its stored state:
    ///   the units are taken back as well as the algorithm can (a GCRA's
    ///   `TAT − cost·T`, a window's count `− cost` while that window is still
    ///   the stored one, the log entry of instant `at`), saturating, never
    ///   below a fresh key. What has since expired or rolled over is not
    ///   refunded twice.
    /// - Independent per limit, not all-or-nothing; a cost of zero changes
    ///   nothing; a key with no stored state stays without one (a refund
    ///   never creates a key). The answer is the decisions a peek **at
    ///   `at`** gives afterwards (deterministic, so that backends can be
    ///   compared; for a refund long after its acquire it describes `at`,
    ///   not now), decided at `at`.
    /// - Errors mean nothing is known to have been refunded (a lost refund
    ///   only makes the limiter stricter).
    ///
    /// The default implementation answers [`BackendError::Unavailable`].
    fn refund(&self, set: &LimitSet, at: Nanos) -> Acquire<Self::Future> {
        let _ = (set, at);
        Acquire::ready(Err(BackendError::Unavailable(
            "this backend does not implement Backend::refund".into(),
        )))
    }

    /// [`acquire`](Backend::acquire) of the one-limit set `(policy, key,
    /// cost)` answered at once, on borrowed values, by a backend that
    /// decides synchronously: the policy's own decision (a shadow policy's
    /// denial is reported as a denial, as in [`Outcome::decisions`]), the
    /// units counted only when it allows. `None`, the default, means "ask
    /// through `acquire`": the engine then builds the set.
    ///
    /// It spares the request path of the common case (one limit, in
    /// memory) the set and the outcome; a backend that implements it must
    /// decide exactly as `acquire` would.
    fn acquire_now(&self, policy: &Policy, key: &Key, cost: u64) -> Option<Decision> {
        let _ = (policy, key, cost);
        None
    }

    /// What this backend is, in one word: the `backend` label of the
    /// metrics and the name in health reports (`"memory"`, `"redis"`…;
    /// `"custom"` by default).
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Its state now, for health checks and sampled metrics. The default
    /// says only its [`kind`](Backend::kind).
    fn status(&self) -> BackendStatus {
        BackendStatus::new(self.kind())
    }

    /// Where settings that every server must see alike live: per-key
    /// overrides and allow/deny lists. `None` (the default, and the memory
    /// backend's answer) keeps them in this process; the Redis backend
    /// shares them through the server, so a fleet on one Redis agrees.
    fn store(&self) -> Option<Arc<dyn SettingsStore>> {
        None
    }
}
