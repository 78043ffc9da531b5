//! [`Failover`]: a primary backend behind a circuit breaker, and a fallback
//! that answers when it cannot, with the outage written back afterwards.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::circuit::{CircuitBreaker, CircuitState, Tracker};
use super::{Acquire, Backend, BackendError, BackendStatus, Outcome, SettingsStore};
use crate::policy::LimitSet;
use crate::time::Nanos;

mod future;
mod health;
mod ledger;

pub use future::FailoverFuture;
pub use health::{Health, HealthStatus};

use future::Stage;
use ledger::{Ledger, Recorded};

/// The default per-call timeout of the primary.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The default bound on keys recorded for reconciliation.
const DEFAULT_MAX_RECONCILE_KEYS: usize = 100_000;

/// Limits written back per [`Backend::absorb`] call.
const RECONCILE_BATCH: usize = 32;

/// Rounds of write-back per recovery (consumption recorded while one round
/// runs is written by the next).
const RECONCILE_ROUNDS: usize = 3;

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
        // The fallback's health reads the breaker's clock: one clock for
        // the chain.
        let fallback_health = Tracker::new(breaker.clock().clone());
        Failover {
            shared: Arc::new(Shared {
                primary: self.primary,
                fallback: self.fallback,
                breaker,
                timeout: (!self.timeout.is_zero()).then_some(self.timeout),
                fallback_health,
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
    /// use tollgate::{Quota, key::Key, policy::{LimitSet, Policy}};
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
            dropped_reconciliation: s.ledger.dropped_total(),
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
            Acquire::Ready(result) => match result {
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
            Acquire::Pending(future) => {
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

impl<P: Backend, F: Backend> Shared<P, F> {
    /// The fallback answers; what it admits is recorded.
    fn fallback_call(self: &Arc<Self>, op: Op, set: &LimitSet) -> Acquire<FailoverFuture<P, F>> {
        match op.run(&self.fallback, set) {
            Acquire::Ready(result) => {
                self.fallback_answered(op, set, &result);
                Acquire::ready(result)
            }
            Acquire::Pending(future) => Acquire::pending(FailoverFuture {
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
                    let capacity = if entry.policy.algorithm().is_windowed() {
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
            let dropped = self.ledger.take_dropped();
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

    fn kind(&self) -> &'static str {
        "failover"
    }

    /// The primary behind the breaker (its circuit's view), the
    /// fallback (its failures counted), and the write-back backlog.
    fn status(&self) -> BackendStatus {
        let s = &*self.shared;
        let mut primary = s.primary.status();
        primary.circuit = Some(s.breaker.health());
        let mut fallback = s.fallback.status();
        fallback.circuit = Some(s.fallback_health.health(CircuitState::Closed, None));
        let mut status = BackendStatus::new(self.kind());
        status.pending_writeback = Some(s.ledger.len());
        status.parts = vec![primary, fallback];
        status
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
