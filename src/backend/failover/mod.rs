//! [`Failover`]: a primary backend behind a circuit breaker, and a fallback
//! that answers when it cannot, with the outage written back afterwards.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use super::circuit::{BackendHealth, CircuitBreaker, CircuitState, Permit, Tracker};
use super::{Acquire, Backend, BackendError, Outcome, SettingsStore};
use crate::key::Key;
use crate::policy::{Limit, LimitSet, Policy};
use crate::time::Nanos;

/// The default per-call timeout of the primary.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The default bound on keys recorded for reconciliation.
const DEFAULT_MAX_RECONCILE_KEYS: usize = 100_000;

/// Limits written back per [`Backend::absorb`] call.
const RECONCILE_BATCH: usize = 32;

/// Rounds of write-back per recovery (consumption recorded while one round
/// runs is written by the next).
const RECONCILE_ROUNDS: usize = 3;

/// At and above this many keys the record is split into shards.
const SHARDED_FROM: usize = 4096;
const LEDGER_SHARDS: usize = 16;

/// A primary backend (Redis, say) behind a [`CircuitBreaker`] and a
/// per-call timeout, with a fallback (the in-memory backend) that answers
/// whenever the primary cannot: the fail mode "local".
///
/// **The three fail modes.** When a backend errs or times out, a
/// [`RateLimitLayer`](crate::RateLimitLayer) applies its
/// [`FailMode`](crate::FailMode): *open* (let the request through) or
/// *closed* (answer 503). The third mode, *local*, is this type: the layer
/// is given `Failover::new(primary, MemoryBackend::new())` as its backend
/// and never sees an error from it, because the fallback answers (limits
/// are then enforced per server instead of fleet-wide). Only if the
/// fallback fails too does the layer's fail mode apply.
///
/// **A call**, for [`acquire`](Backend::acquire), [`peek`](Backend::peek),
/// [`reset`](Backend::reset) and [`absorb`](Backend::absorb) alike:
///
/// 1. If the breaker is open, the primary is not called: the fallback
///    answers at once.
/// 2. Otherwise the primary is called; an error, or no answer within the
///    timeout (default 1 s; `Duration::ZERO` relies on the primary's own),
///    counts as a failure on the breaker and the fallback answers. No
///    request waits on the primary longer than the timeout.
/// 3. A success is returned as is. When the primary is healthy the fallback
///    is not touched at all (with a [`MemoryBackend`](super::MemoryBackend)
///    fallback, no memory lookup is made).
///
/// **Reconciliation.** Units the fallback admits are recorded per (policy,
/// key). On the first successful primary call after that (normally the probe
/// that closes the breaker), a background task on the tokio runtime writes
/// them into the primary with [`Backend::absorb`], so a client that used its
/// quota on the fallback during the outage is still limited afterwards. The
/// request that succeeded is never delayed by it. Details:
///
/// - A key's write-back is capped at what the fallback still counts for it
///   at that moment (its capacity minus its `remaining`, so rounded up to
///   whole units): consumption that has already expired locally is not
///   charged again, and a long outage does not turn into a long lockout.
/// - The record is bounded (default 100 000 keys,
///   [`FailoverBuilder::max_reconcile_keys`]): when full, the key updated
///   least recently is dropped, counted in
///   [`Health::dropped_reconciliation`] and logged once per outage.
/// - A write-back that fails is kept and tried again on a later success.
///   Requests that reach the primary before the write-back lands (at least
///   the probe) see its state from before the outage.
/// - A [`reset`](Backend::reset) forgets the recorded units of its keys.
///   During an outage it resets the fallback only.
///
/// **Refunds** ([`Backend::refund`]) take the same path as any call, so
/// they land on whichever backend is answering: the primary while its
/// circuit is closed and it answers, the fallback when the circuit is open
/// or the primary fails or times out, exactly as the acquire they undo was
/// most likely answered. A refund the fallback answers also takes its units
/// off the record of its keys, so refunded requests are not written back.
/// A refund that reaches the other backend than its acquire (the circuit
/// changed state in between) gives back units that backend did not count
/// for it; after an outage the write-back of the fallback's count then
/// balances it.
///
/// [`store`](Backend::store) is the primary's (settings are shared where
/// the limits are).
///
/// Cheap to clone (one `Arc`); clones share the breaker and the record.
///
/// ```
/// use std::time::Duration;
/// use tollgate::backend::{CircuitBreaker, Failover, MemoryBackend};
/// use tollgate::{FailMode, Quota, RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // In production the primary is a shared store, e.g. RedisBackend
/// // (feature `redis`); any `Backend` works.
/// let primary = MemoryBackend::new();
/// let backend = Failover::new(primary.clone(), MemoryBackend::new());
///
/// // Or with settings:
/// let backend = Failover::builder(primary, MemoryBackend::new())
///     .timeout(Duration::from_millis(200))
///     .breaker(CircuitBreaker::builder().name("redis").failure_threshold(3).build())
///     .max_reconcile_keys(50_000)
///     .build();
///
/// let _layer = RateLimitLayer::builder()
///     .quota(Quota::per_minute(60))
///     .backend(backend.clone())
///     // only reached if the fallback fails too
///     .fail_mode(FailMode::Closed)
///     .build()
///     .unwrap();
/// assert!(backend.health().status.is_healthy());
/// println!("{}", backend.health());
/// # }
/// ```
pub struct Failover<P, F> {
    shared: Arc<Shared<P, F>>,
}

impl<P, F> Clone for Failover<P, F> {
    fn clone(&self) -> Self {
        Failover {
            shared: self.shared.clone(),
        }
    }
}

impl<P: fmt::Debug, F: fmt::Debug> fmt::Debug for Failover<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("primary", &self.shared.primary)
            .field("fallback", &self.shared.fallback)
            .field("breaker", &self.shared.breaker)
            .field("timeout", &self.shared.timeout)
            .field("pending_reconciliation", &self.shared.ledger.len())
            .finish()
    }
}

struct Shared<P, F> {
    primary: P,
    fallback: F,
    breaker: CircuitBreaker,
    /// `None`: rely on the primary's own timeout.
    timeout: Option<Duration>,
    fallback_health: Tracker,
    ledger: Ledger,
    reconciling: AtomicBool,
    warned_no_runtime: AtomicBool,
}

/// Builds a [`Failover`]; see [`Failover::builder`].
pub struct FailoverBuilder<P, F> {
    primary: P,
    fallback: F,
    breaker: Option<CircuitBreaker>,
    timeout: Duration,
    max_reconcile_keys: usize,
}

impl<P, F> fmt::Debug for FailoverBuilder<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverBuilder")
            .field("breaker", &self.breaker)
            .field("timeout", &self.timeout)
            .field("max_reconcile_keys", &self.max_reconcile_keys)
            .finish_non_exhaustive()
    }
}

impl<P: Backend, F: Backend> FailoverBuilder<P, F> {
    /// The primary's circuit breaker (default [`CircuitBreaker::new`],
    /// named `"primary"`: opens after 5 consecutive failures, backoff 1 s
    /// doubling to 30 s with jitter).
    pub fn breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// How long a call to the primary may take before the fallback answers
    /// instead (default 1 s). `Duration::ZERO` sets none: the primary's
    /// own timeout applies (a networked backend should have one). Needs the
    /// tokio time driver, as the rest of tollgate does.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most (policy, key) pairs whose fallback consumption is recorded
    /// for write-back (default 100 000; 0 records nothing, so nothing is
    /// written back).
    pub fn max_reconcile_keys(mut self, max: usize) -> Self {
        self.max_reconcile_keys = max;
        self
    }

    /// Builds the chain.
    pub fn build(self) -> Failover<P, F> {
        let breaker = self
            .breaker
            .unwrap_or_else(|| CircuitBreaker::builder().name("primary").build());
        Failover {
            shared: Arc::new(Shared {
                primary: self.primary,
                fallback: self.fallback,
                breaker,
                timeout: (!self.timeout.is_zero()).then_some(self.timeout),
                fallback_health: Tracker::new(),
                ledger: Ledger::new(self.max_reconcile_keys),
                reconciling: AtomicBool::new(false),
                warned_no_runtime: AtomicBool::new(false),
            }),
        }
    }
}

impl<P: Backend, F: Backend> Failover<P, F> {
    /// `primary` behind a default [`CircuitBreaker`] and a 1 s timeout,
    /// with `fallback` answering when it cannot.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate::backend::{Backend, Failover, MemoryBackend};
    /// use tollgate::{key::Key, LimitSet, Policy, Quota};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let backend = Failover::new(MemoryBackend::new(), MemoryBackend::new());
    /// let set = LimitSet::single(Arc::new(Policy::new("api", Quota::per_minute(1))), Key::from("k"), 1);
    /// assert!(backend.acquire(&set).await.unwrap().allowed());
    /// assert!(!backend.acquire(&set).await.unwrap().allowed());
    /// // The primary answered both: the fallback was not involved.
    /// assert!(backend.fallback().is_empty());
    /// # }
    /// ```
    pub fn new(primary: P, fallback: F) -> Self {
        Self::builder(primary, fallback).build()
    }

    /// A builder, to set the breaker, the timeout and the bound on the
    /// reconciliation record.
    pub fn builder(primary: P, fallback: F) -> FailoverBuilder<P, F> {
        FailoverBuilder {
            primary,
            fallback,
            breaker: None,
            timeout: DEFAULT_TIMEOUT,
            max_reconcile_keys: DEFAULT_MAX_RECONCILE_KEYS,
        }
    }

    /// The primary backend.
    pub fn primary(&self) -> &P {
        &self.shared.primary
    }

    /// The fallback backend.
    pub fn fallback(&self) -> &F {
        &self.shared.fallback
    }

    /// The primary's circuit breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.shared.breaker
    }

    /// Each backend's state and the reconciliation backlog, for a health
    /// endpoint (`Display` writes one line).
    pub fn health(&self) -> Health {
        let s = &*self.shared;
        let primary = s.breaker.health();
        let fallback = s.fallback_health.health(CircuitState::Closed, None);
        let status = if primary.state == CircuitState::Closed {
            HealthStatus::Healthy
        } else if fallback.consecutive_failures == 0 {
            HealthStatus::Degraded
        } else {
            HealthStatus::Unavailable
        };
        Health {
            status,
            primary,
            fallback,
            pending_reconciliation: s.ledger.len(),
            dropped_reconciliation: s.ledger.dropped_total.load(Ordering::Relaxed),
            reconciling: s.reconciling.load(Ordering::Acquire),
        }
    }

    fn call(&self, op: Op, set: &LimitSet) -> Acquire<FailoverFuture<P, F>> {
        let shared = &self.shared;
        if op == Op::Reset {
            shared.ledger.forget(set);
        }
        let Some(permit) = shared.breaker.try_call() else {
            return shared.fallback_call(op, set);
        };
        match op.run(&shared.primary, set) {
            Acquire::Ready { result } => match result.unwrap_or_else(no_answer) {
                Ok(outcome) => {
                    permit.success();
                    shared.after_primary_success();
                    Acquire::ready(Ok(outcome))
                }
                Err(error) => {
                    permit.failure(&error);
                    shared.fallback_call(op, set)
                }
            },
            Acquire::Pending { future } => {
                let deadline = shared.timeout.and_then(|t| {
                    // Outside a runtime there is no timer to arm (and
                    // creating one would panic): rely on the primary's own.
                    tokio::runtime::Handle::try_current()
                        .ok()
                        .map(|_| Box::pin(tokio::time::sleep(t)))
                });
                Acquire::pending(FailoverFuture {
                    shared: shared.clone(),
                    set: set.clone(),
                    op,
                    stage: Stage::Primary {
                        future,
                        permit: Some(permit),
                        deadline,
                    },
                })
            }
        }
    }
}

fn no_answer() -> Result<Outcome, BackendError> {
    Err(BackendError::Unavailable("no answer".into()))
}

impl<P: Backend, F: Backend> Shared<P, F> {
    /// The fallback answers; what it admits is recorded.
    fn fallback_call(self: &Arc<Self>, op: Op, set: &LimitSet) -> Acquire<FailoverFuture<P, F>> {
        match op.run(&self.fallback, set) {
            Acquire::Ready { result } => {
                let result = result.unwrap_or_else(no_answer);
                self.fallback_answered(op, set, &result);
                Acquire::ready(result)
            }
            Acquire::Pending { future } => Acquire::pending(FailoverFuture {
                shared: self.clone(),
                set: set.clone(),
                op,
                stage: Stage::Fallback { future },
            }),
        }
    }

    fn fallback_answered(&self, op: Op, set: &LimitSet, result: &Result<Outcome, BackendError>) {
        let outcome = match result {
            Ok(outcome) => {
                self.fallback_health.success(true);
                outcome
            }
            Err(error) => {
                self.fallback_health.failure(error, true);
                return;
            }
        };
        match op {
            Op::Acquire if outcome.allowed() => {
                for (limit, d) in set.limits().iter().zip(outcome.decisions()) {
                    if d.allowed {
                        self.ledger.record(limit, limit.cost);
                    }
                }
            }
            Op::Absorb => {
                for limit in set.limits() {
                    self.ledger.record(limit, limit.cost);
                }
            }
            Op::Refund(_) => {
                for limit in set.limits() {
                    self.ledger.take(limit, limit.cost);
                }
            }
            _ => {}
        }
    }

    /// After a successful primary call: write back the outage, if any, in
    /// the background.
    fn after_primary_success(self: &Arc<Self>) {
        if self.ledger.len() == 0 || self.reconciling.swap(true, Ordering::AcqRel) {
            return;
        }
        let guard = Reconciling(self.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    guard.0.reconcile().await;
                    drop(guard);
                });
            }
            Err(_) => {
                drop(guard);
                if !self.warned_no_runtime.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        pending_keys = self.ledger.len(),
                        "tollgate: no tokio runtime to write back what the fallback admitted; \
                         it is kept until a call succeeds inside a runtime"
                    );
                }
            }
        }
    }

    async fn timed<Fut>(&self, call: Acquire<Fut>) -> Result<Outcome, BackendError>
    where
        Fut: Future<Output = Result<Outcome, BackendError>> + Unpin,
    {
        match self.timeout {
            Some(t) => tokio::time::timeout(t, call)
                .await
                .unwrap_or(Err(BackendError::Timeout(t))),
            None => call.await,
        }
    }

    /// What the fallback still counts for a key: its capacity minus what
    /// it has left now. Unknown (the fallback failed): everything recorded.
    async fn still_counted(&self, entry: &Recorded) -> u64 {
        let set = LimitSet::single(entry.policy.clone(), entry.key.clone(), 1);
        match self.fallback.peek(&set).await {
            Ok(outcome) => match outcome.decisions().first() {
                Some(d) => {
                    let quota = entry.policy.quota();
                    let capacity = if entry.policy.get_algorithm().is_windowed() {
                        quota.limit()
                    } else {
                        quota.burst()
                    };
                    capacity.saturating_sub(d.remaining)
                }
                None => entry.units,
            },
            Err(_) => entry.units,
        }
    }

    async fn reconcile(&self) {
        for _ in 0..RECONCILE_ROUNDS {
            let entries = self.ledger.drain();
            if entries.is_empty() {
                return;
            }
            let dropped = self.ledger.dropped.swap(0, Ordering::Relaxed);
            let report = self.replay(entries).await;
            match &report.error {
                None => tracing::info!(
                    keys = report.keys,
                    units = report.units,
                    over_limit = report.over_limit,
                    expired_units = report.expired_units,
                    dropped_keys = dropped,
                    "tollgate: wrote back into the primary what the fallback admitted during the outage"
                ),
                Some(error) => {
                    tracing::warn!(
                        %error,
                        written_keys = report.keys,
                        pending_keys = self.ledger.len(),
                        dropped_keys = dropped,
                        "tollgate: could not write back into the primary what the fallback admitted; \
                         kept for the next successful call"
                    );
                    return;
                }
            }
        }
    }

    async fn replay(&self, entries: Vec<Recorded>) -> Report {
        let mut report = Report::default();
        let mut rest = entries.into_iter();
        loop {
            let batch: Vec<Recorded> = rest.by_ref().take(RECONCILE_BATCH).collect();
            if batch.is_empty() {
                return report;
            }
            let mut set = LimitSet::new();
            let mut units = 0u64;
            for entry in &batch {
                let n = entry.units.min(self.still_counted(entry).await);
                report.expired_units += entry.units - n;
                if n > 0 {
                    set.push(entry.policy.clone(), entry.key.clone(), n);
                    units = units.saturating_add(n);
                }
            }
            if set.is_empty() {
                continue;
            }
            match self.timed(self.primary.absorb(&set)).await {
                Ok(outcome) => {
                    report.keys += set.len();
                    report.units = report.units.saturating_add(units);
                    report.over_limit += outcome.decisions().iter().filter(|d| !d.allowed).count();
                }
                Err(error) => {
                    for entry in batch.into_iter().chain(rest) {
                        self.ledger
                            .record_parts(entry.policy, entry.key, entry.units, false);
                    }
                    report.error = Some(error);
                    return report;
                }
            }
        }
    }
}

/// Clears the "reconciling" flag however the task ends.
struct Reconciling<P, F>(Arc<Shared<P, F>>);

impl<P, F> Drop for Reconciling<P, F> {
    fn drop(&mut self) {
        self.0.reconciling.store(false, Ordering::Release);
    }
}

#[derive(Default)]
struct Report {
    keys: usize,
    units: u64,
    over_limit: usize,
    expired_units: u64,
    error: Option<BackendError>,
}

impl<P: Backend, F: Backend> Backend for Failover<P, F> {
    type Future = FailoverFuture<P, F>;

    fn acquire(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.call(Op::Acquire, set)
    }

    fn peek(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.call(Op::Peek, set)
    }

    fn reset(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.call(Op::Reset, set)
    }

    fn absorb(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.call(Op::Absorb, set)
    }

    /// On the primary if it answers (circuit closed, no error within the
    /// timeout), else on the fallback, whose record of units to write
    /// back then loses the refunded units. See [`Failover`].
    fn refund(&self, set: &LimitSet, at: Nanos) -> Acquire<Self::Future> {
        self.call(Op::Refund(at), set)
    }

    /// The primary's settings store.
    fn store(&self) -> Option<Arc<dyn SettingsStore>> {
        self.shared.primary.store()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Acquire,
    Peek,
    Reset,
    Absorb,
    /// A refund of an acquire at this instant.
    Refund(Nanos),
}

impl Op {
    fn run<B: Backend>(self, backend: &B, set: &LimitSet) -> Acquire<B::Future> {
        match self {
            Op::Acquire => backend.acquire(set),
            Op::Peek => backend.peek(set),
            Op::Reset => backend.reset(set),
            Op::Absorb => backend.absorb(set),
            Op::Refund(at) => backend.refund(set, at),
        }
    }
}

/// The future of a [`Failover`] call whose primary (or fallback) answers
/// asynchronously: the primary's call raced against the timeout, then the
/// fallback if need be. `Unpin`; the only allocation is the timer.
pub struct FailoverFuture<P: Backend, F: Backend> {
    shared: Arc<Shared<P, F>>,
    set: LimitSet,
    op: Op,
    stage: Stage<P::Future, F::Future>,
}

enum Stage<PF, FF> {
    Primary {
        future: PF,
        permit: Option<Permit>,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    },
    Fallback {
        future: FF,
    },
    Done,
}

impl<P: Backend, F: Backend> fmt::Debug for FailoverFuture<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match self.stage {
            Stage::Primary { .. } => "primary",
            Stage::Fallback { .. } => "fallback",
            Stage::Done => "done",
        };
        f.debug_struct("FailoverFuture")
            .field("op", &self.op)
            .field("stage", &stage)
            .finish_non_exhaustive()
    }
}

impl<P: Backend, F: Backend> Future for FailoverFuture<P, F> {
    type Output = Result<Outcome, BackendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.stage {
                Stage::Primary {
                    future,
                    permit,
                    deadline,
                } => {
                    let error = match Pin::new(future).poll(cx) {
                        Poll::Ready(Ok(outcome)) => {
                            if let Some(p) = permit.take() {
                                p.success();
                            }
                            this.stage = Stage::Done;
                            this.shared.after_primary_success();
                            return Poll::Ready(Ok(outcome));
                        }
                        Poll::Ready(Err(error)) => error,
                        Poll::Pending => {
                            let expired = deadline
                                .as_mut()
                                .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                            if !expired {
                                return Poll::Pending;
                            }
                            BackendError::Timeout(this.shared.timeout.unwrap_or_default())
                        }
                    };
                    if let Some(p) = permit.take() {
                        p.failure(&error);
                    }
                    // The primary's future is dropped here (a timed-out
                    // call is abandoned).
                    match this.op.run(&this.shared.fallback, &this.set) {
                        Acquire::Ready { result } => {
                            let result = result.unwrap_or_else(no_answer);
                            this.shared.fallback_answered(this.op, &this.set, &result);
                            this.stage = Stage::Done;
                            return Poll::Ready(result);
                        }
                        Acquire::Pending { future } => this.stage = Stage::Fallback { future },
                    }
                }
                Stage::Fallback { future } => {
                    let Poll::Ready(result) = Pin::new(future).poll(cx) else {
                        return Poll::Pending;
                    };
                    this.shared.fallback_answered(this.op, &this.set, &result);
                    this.stage = Stage::Done;
                    return Poll::Ready(result);
                }
                Stage::Done => {
                    return Poll::Ready(Err(BackendError::Unavailable(
                        "failover future polled after completion".into(),
                    )))
                }
            }
        }
    }
}

/// How a [`Failover`] is doing, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// The primary's circuit is closed: it answers.
    Healthy,
    /// The primary's circuit is open or half-open; the fallback answers.
    Degraded,
    /// The primary's circuit is open or half-open and the fallback's last
    /// call failed: the layer's [`FailMode`](crate::FailMode) applies.
    Unavailable,
}

impl HealthStatus {
    /// `"healthy"`, `"degraded"` or `"unavailable"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unavailable => "unavailable",
        }
    }

    /// Whether this is [`HealthStatus::Healthy`].
    pub fn is_healthy(&self) -> bool {
        *self == HealthStatus::Healthy
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Failover::health`] reports: plain fields for a health endpoint,
/// and `Display` for one log line, e.g.:
///
/// ```text
/// degraded; primary open: 5 consecutive failures, last error "rate-limit backend timed out after 1s", last success 3.0s ago, next probe in 1.0s; fallback closed: 0 consecutive failures, last success 1.0ms ago; 12 keys pending reconciliation
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The overall verdict.
    pub status: HealthStatus,
    /// The primary, through its circuit breaker.
    pub primary: BackendHealth,
    /// The fallback (no breaker: always `Closed`; its failures are counted).
    pub fallback: BackendHealth,
    /// (Policy, key) pairs whose fallback consumption waits to be written
    /// back into the primary.
    pub pending_reconciliation: usize,
    /// Pairs dropped from the full record since the start (never written
    /// back).
    pub dropped_reconciliation: u64,
    /// Whether a write-back is running now.
    pub reconciling: bool,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; primary {}; fallback {}",
            self.status, self.primary, self.fallback
        )?;
        if self.pending_reconciliation > 0 {
            write!(
                f,
                "; {} key{} pending reconciliation",
                self.pending_reconciliation,
                if self.pending_reconciliation == 1 {
                    ""
                } else {
                    "s"
                }
            )?;
        }
        if self.reconciling {
            f.write_str("; reconciling")?;
        }
        if self.dropped_reconciliation > 0 {
            write!(
                f,
                "; {} dropped from the reconciliation record",
                self.dropped_reconciliation
            )?;
        }
        Ok(())
    }
}

// ---- the reconciliation record ----

/// One (policy, key) to write back.
struct Recorded {
    policy: Arc<Policy>,
    key: Key,
    units: u64,
}

type LedgerKey = (u64, Key);

/// Units admitted by the fallback per (policy, key), bounded, least
/// recently updated dropped first. Sharded when large, so that recording
/// during an outage (every admitted request) takes no global lock.
struct Ledger {
    shards: Box<[Mutex<LedgerShard>]>,
    shard_capacity: usize,
    max_keys: usize,
    hasher: RandomState,
    len: AtomicUsize,
    /// Dropped since the last write-back started.
    dropped: AtomicU64,
    dropped_total: AtomicU64,
    warned_full: AtomicBool,
}

#[derive(Default)]
struct LedgerShard {
    map: HashMap<LedgerKey, Entry>,
    /// Keys in update order, with the update's sequence number; an item
    /// whose number is no longer the entry's is stale and skipped.
    order: VecDeque<(LedgerKey, u64)>,
    seq: u64,
}

struct Entry {
    policy: Arc<Policy>,
    units: u64,
    seq: u64,
}

impl Ledger {
    fn new(max_keys: usize) -> Self {
        let shards = if max_keys >= SHARDED_FROM {
            LEDGER_SHARDS
        } else {
            1
        };
        Ledger {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            shard_capacity: max_keys / shards,
            max_keys,
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            warned_full: AtomicBool::new(false),
        }
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    fn shard(&self, key: &LedgerKey) -> MutexGuard<'_, LedgerShard> {
        let i = if self.shards.len() == 1 {
            0
        } else {
            self.hasher.hash_one(key) as usize % self.shards.len()
        };
        lock(&self.shards[i])
    }

    fn record(&self, limit: &Limit, units: u64) {
        self.record_parts(limit.policy.clone(), limit.key.clone(), units, true);
    }

    /// Adds `units` to a key's record. `touch` makes it the most recently
    /// updated; a restored entry (`touch` false) that is still there keeps
    /// its place.
    fn record_parts(&self, policy: Arc<Policy>, key: Key, units: u64, touch: bool) {
        if units == 0 || self.shard_capacity == 0 {
            return;
        }
        let k = (policy.id(), key);
        let mut guard = self.shard(&k);
        let LedgerShard { map, order, seq } = &mut *guard;
        *seq += 1;
        if let Some(e) = map.get_mut(&k) {
            e.units = e.units.saturating_add(units);
            e.policy = policy;
            if touch {
                e.seq = *seq;
                order.push_back((k, *seq));
            }
        } else {
            while map.len() >= self.shard_capacity {
                let Some((old, old_seq)) = order.pop_front() else {
                    break;
                };
                if map.get(&old).is_some_and(|e| e.seq == old_seq) {
                    map.remove(&old);
                    self.note_dropped();
                }
            }
            map.insert(
                k.clone(),
                Entry {
                    policy,
                    units,
                    seq: *seq,
                },
            );
            order.push_back((k, *seq));
            self.len.fetch_add(1, Ordering::AcqRel);
        }
        // Updates leave stale items behind: compact when they dominate.
        if order.len() > 2 * map.len() + 16 {
            order.retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    fn note_dropped(&self) {
        self.len.fetch_sub(1, Ordering::AcqRel);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_total.fetch_add(1, Ordering::Relaxed);
        if !self.warned_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_reconcile_keys = self.max_keys,
                "tollgate: the failover's reconciliation record is full; the least recently \
                 updated keys are dropped and their local consumption will not be written \
                 back. Raise Failover::builder().max_reconcile_keys() if this is not a flood."
            );
        }
    }

    /// Takes every entry, least recently updated first per shard.
    fn drain(&self) -> Vec<Recorded> {
        let mut out = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let LedgerShard { map, order, .. } = &mut *shard;
            for (k, s) in order.drain(..) {
                if map.get(&k).is_some_and(|e| e.seq == s) {
                    if let Some(e) = map.remove(&k) {
                        out.push(Recorded {
                            policy: e.policy,
                            key: k.1,
                            units: e.units,
                        });
                    }
                }
            }
            // Defensive: every entry has a current queue item.
            for ((_, key), e) in map.drain() {
                out.push(Recorded {
                    policy: e.policy,
                    key,
                    units: e.units,
                });
            }
        }
        self.len.fetch_sub(out.len(), Ordering::AcqRel);
        self.warned_full.store(false, Ordering::Relaxed);
        out
    }

    /// Takes up to `units` off a key's record (a refund answered by the
    /// fallback), forgetting the key at zero.
    fn take(&self, limit: &Limit, units: u64) {
        if units == 0 || self.len() == 0 {
            return;
        }
        let k = (limit.policy.id(), limit.key.clone());
        let mut shard = self.shard(&k);
        let Some(e) = shard.map.get_mut(&k) else {
            return;
        };
        e.units = e.units.saturating_sub(units);
        if e.units == 0 {
            shard.map.remove(&k);
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Forgets the set's keys (all their units taken off).
    fn forget(&self, set: &LimitSet) {
        for limit in set.limits() {
            self.take(limit, u64::MAX);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quota;

    fn limit(p: &Arc<Policy>, key: &str) -> Limit {
        Limit {
            policy: p.clone(),
            key: Key::from(key),
            cost: 1,
        }
    }

    fn keys(out: &[Recorded]) -> Vec<(String, u64)> {
        out.iter()
            .map(|r| {
                (
                    String::from_utf8_lossy(r.key.as_bytes()).into_owned(),
                    r.units,
                )
            })
            .collect()
    }

    #[test]
    fn the_record_merges_units_and_drops_the_least_recently_updated_key() {
        let p = Arc::new(Policy::new("p", Quota::per_minute(5)));
        let ledger = Ledger::new(2);
        ledger.record(&limit(&p, "a"), 1);
        ledger.record(&limit(&p, "b"), 1);
        ledger.record(&limit(&p, "a"), 2);
        // "b" is the least recently updated: it goes.
        ledger.record(&limit(&p, "c"), 1);
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger.dropped_total.load(Ordering::Relaxed), 1);
        assert_eq!(keys(&ledger.drain()), [("a".into(), 3), ("c".into(), 1)]);
        assert_eq!(ledger.len(), 0);
    }

    #[test]
    fn stale_queue_items_are_compacted() {
        let p = Arc::new(Policy::new("p", Quota::per_minute(5)));
        let ledger = Ledger::new(10);
        for _ in 0..10_000 {
            ledger.record(&limit(&p, "hot"), 1);
        }
        assert!(lock(&ledger.shards[0]).order.len() <= 20);
        assert_eq!(keys(&ledger.drain()), [("hot".into(), 10_000)]);
    }

    #[test]
    fn policies_keep_separate_records_and_reset_forgets_a_key() {
        let p = Arc::new(Policy::new("p", Quota::per_minute(5)));
        let q = Arc::new(Policy::new("q", Quota::per_minute(5)));
        let ledger = Ledger::new(10);
        ledger.record(&limit(&p, "k"), 1);
        ledger.record(&limit(&q, "k"), 1);
        assert_eq!(ledger.len(), 2);
        ledger.forget(&LimitSet::single(p, Key::from("k"), 0));
        let out = ledger.drain();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].policy.name(), "q");
    }

    #[test]
    fn a_large_record_is_sharded_and_stays_within_its_bound() {
        let p = Arc::new(Policy::new("p", Quota::per_minute(5)));
        let ledger = Ledger::new(5_000);
        assert_eq!(ledger.shards.len(), LEDGER_SHARDS);
        for i in 0..20_000u64 {
            ledger.record(
                &Limit {
                    policy: p.clone(),
                    key: Key::from(i),
                    cost: 1,
                },
                1,
            );
        }
        assert!(ledger.len() <= 5_000);
        assert_eq!(
            ledger.len() as u64 + ledger.dropped_total.load(Ordering::Relaxed),
            20_000
        );
        let n = ledger.len();
        assert_eq!(ledger.drain().len(), n);
        assert_eq!(ledger.len(), 0);
    }

    #[test]
    fn a_zero_bound_records_nothing() {
        let p = Arc::new(Policy::new("p", Quota::per_minute(5)));
        let ledger = Ledger::new(0);
        ledger.record(&limit(&p, "a"), 1);
        assert_eq!(ledger.len(), 0);
    }
}
