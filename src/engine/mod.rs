//! The engine: what happens once a request is described as a
//! [`LimitSet`]. It runs the set on the backend, applies the fail mode and
//! shadow mode, plans the refunds of limits that count only some
//! responses, reports (tracing now, metrics next) and returns a
//! [`Verdict`].
//!
//! It knows nothing of HTTP: the Tower service and the axum extractor
//! (`layer`, `extract`) and [`Limiter`](crate::Limiter) are front ends over
//! it, and any other front end (a gRPC service, a message consumer) needs
//! nothing else.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use crate::backend::{Acquire, Backend, BackendError, Outcome};
use crate::key::Key;
use crate::policy::{LimitSet, Policy, ResponseCounts};
use crate::problem::Problem;
use crate::resolve::Settlements;
use crate::time::Nanos;
use crate::Decision;

mod watch;

use watch::Watch;
pub(crate) use watch::Watched;

/// What happens to a request when the backend cannot answer (an error or a
/// timeout).
///
/// There are three fail modes; two are set here, the third is a backend:
///
/// - **open** ([`FailMode::Open`], the default): the request passes, without
///   rate-limit headers; the failure is logged at `error` once per outage
///   and recorded per request as `outcome = "backend_error"` on the
///   `rate_limit` span.
/// - **closed** ([`FailMode::Closed`]): the request is answered `503
///   Service Unavailable` (problem+json) without reaching the service.
/// - **local**: wrap the backend in a [`Failover`](crate::backend::Failover)
///   with an in-memory fallback,
///   `.backend(Failover::new(primary, MemoryBackend::new()))`. Behind a
///   circuit breaker and a timeout, the fallback answers whenever the
///   primary cannot, so requests are still limited (per server, not
///   fleet-wide), 429s included, and the layer sees no error; what was
///   consumed locally is written back into the primary when it recovers.
///   This enum then only applies if the fallback fails too.
///
/// ```
/// use tollgate::backend::{Failover, MemoryBackend};
/// use tollgate::{FailMode, Quota, RateLimitLayer};
///
/// // "closed", with a local fallback first: 503 only if both fail.
/// let primary = MemoryBackend::new(); // e.g. RedisBackend (feature `redis`)
/// let layer = RateLimitLayer::builder()
///     .quota(Quota::per_second(10))
///     .backend(Failover::new(primary, MemoryBackend::new()))
///     .fail_mode(FailMode::Closed)
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailMode {
    /// Let the request through, log at `error` once per outage start and
    /// count it (default: a limiter outage should not become a site outage).
    #[default]
    Open,
    /// Answer `503 Service Unavailable` with a problem+json body.
    Closed,
}

/// The backend and what to do with its answers.
pub(crate) struct Engine<B> {
    backend: B,
    fail_mode: FailMode,
    /// The whole layer only reports.
    shadow: bool,
    /// Shadow decisions (the layer's, or a shadow level's) go in the headers.
    shadow_headers: bool,
    /// Whether verdicts carry the decisions to show the client: off for a
    /// front end that shows none (`HeaderStyle::None`), so nothing is
    /// gathered per request for nobody.
    report: bool,
    /// The backend's failures and latency, for health checks (and so that
    /// an outage is logged once).
    watch: Watch,
    /// The counters (feature `metrics`), when the front end counts.
    #[cfg(feature = "metrics")]
    metrics: Option<Arc<crate::metrics::Instruments>>,
}

impl<B> fmt::Debug for Engine<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("fail_mode", &self.fail_mode)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

/// What to do with a checked request.
pub(crate) enum Verdict {
    /// Let it through after `delay` (a queueing leaky bucket asks for
    /// one); `passed` is what to report and settle, `None` when there is
    /// nothing (fail open, shadow mode without headers).
    Pass {
        passed: Option<Passed>,
        delay: Nanos,
    },
    /// Refuse it (429): why, and the decisions to report with the refusal.
    Deny { denial: Denial, reported: Reported },
    /// The backend failed and the fail mode is closed (503).
    Unavailable,
}

/// The decisions a front end shows the client (the rate-limit headers):
/// every enforced level's, and a shadow level's only with
/// `shadow_headers(true)`, in the set's order.
#[derive(Default)]
pub(crate) struct Reported {
    pub(crate) items: SmallVec<[(Arc<Policy>, Decision); 1]>,
}

/// A request that passed: what to report, and what to settle once its
/// response is known.
pub(crate) struct Passed {
    pub(crate) reported: Reported,
    refund: Option<Box<dyn Settle>>,
}

impl Passed {
    /// Whether some limit waits for the response to be settled.
    pub(crate) fn settles(&self) -> bool {
        self.refund.is_some()
    }

    /// Gives back the units of every limit that counts only some responses
    /// and whose predicate, applied by `counts`, says this one does not
    /// count. Runs at most once.
    pub(crate) fn settle(&mut self, counts: impl Fn(&ResponseCounts) -> bool) {
        if let Some(refund) = self.refund.take() {
            refund.settle(&counts);
        }
    }
}

impl<B> Engine<B> {
    pub(crate) fn new(backend: B, fail_mode: FailMode, shadow: bool, shadow_headers: bool) -> Self {
        Engine {
            backend,
            fail_mode,
            shadow,
            shadow_headers,
            report: true,
            watch: Watch::new(),
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }

    /// The same engine, counting with `instruments`.
    #[cfg(feature = "metrics")]
    pub(crate) fn with_metrics(mut self, instruments: Arc<crate::metrics::Instruments>) -> Self {
        self.metrics = Some(instruments);
        self
    }

    /// The counters, if the engine counts.
    #[cfg(feature = "metrics")]
    pub(crate) fn metrics(&self) -> Option<&crate::metrics::Instruments> {
        self.metrics.as_deref()
    }

    /// What the engine knows of its backend's failures and latency.
    pub(crate) fn watched(&self) -> Watched {
        self.watch.watched()
    }

    /// The fail mode.
    pub(crate) fn fail_mode(&self) -> FailMode {
        self.fail_mode
    }

    /// The same engine, with verdicts that carry no decisions to show.
    pub(crate) fn without_report(mut self) -> Self {
        self.report = false;
        self
    }

    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }
}

impl<B: Backend> Engine<B> {
    /// Starts the backend call for `set`: ready at once in memory, a
    /// future on a network backend. Its result goes to [`Engine::decide`].
    pub(crate) fn acquire(&self, set: &LimitSet) -> Acquire<B::Future> {
        self.backend.acquire(set)
    }

    /// Acquires `set` and reports a backend failure or recovery, without
    /// applying the fail mode: for front ends that hand the error to their
    /// caller ([`Limiter`](crate::Limiter)).
    pub(crate) async fn acquire_reported(&self, set: &LimitSet) -> Result<Outcome, BackendError> {
        let result = self.acquire_awaited(set).await;
        self.note(&result);
        result
    }

    /// The backend's answer for `set`, awaited if it is networked (and
    /// then timed): for front ends that can wait in place. Its result goes
    /// to [`Engine::decide`].
    pub(crate) async fn acquire_awaited(&self, set: &LimitSet) -> Result<Outcome, BackendError> {
        match self.backend.acquire(set).into_state() {
            Ok(ready) => ready,
            Err(pending) => {
                let started = Instant::now();
                let result = pending.await;
                self.timed(started);
                result
            }
        }
    }

    /// A networked call started at `started` has just answered: how long
    /// it took goes to the health watch and the latency histogram.
    pub(crate) fn timed(&self, started: Instant) {
        let took = started.elapsed();
        self.watch.latency(took);
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.backend_call(crate::metrics::Operation::Acquire, took);
        }
    }

    /// Logs the start of an outage once, and its end; remembers and counts
    /// the error.
    fn note<T>(&self, result: &Result<T, BackendError>) {
        match result {
            Ok(_) => {
                if self.watch.success() {
                    tracing::info!("tollgate: rate-limit backend answering again");
                }
            }
            Err(error) => {
                #[cfg(feature = "metrics")]
                if let Some(metrics) = &self.metrics {
                    metrics.backend_error(error);
                }
                if self.watch.failure(error) {
                    tracing::error!(%error, fail_mode = ?self.fail_mode, "tollgate: rate-limit backend failed; applying the fail mode");
                }
            }
        }
    }

    /// Turns the backend's answer for `set` into a verdict: fail mode,
    /// shadow mode, the refund plan of `settlements`, 429s. The outcome is
    /// recorded on `span` (handed in: looking up the current span costs a
    /// dispatcher lookup on every request, span or not).
    pub(crate) fn decide(
        &self,
        result: Result<Outcome, BackendError>,
        mut set: LimitSet,
        settlements: Settlements,
        span: &tracing::Span,
    ) -> Verdict {
        self.note(&result);
        #[cfg(feature = "metrics")]
        self.count(&set, result.as_ref().ok());
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(_) => {
                span.record("outcome", "backend_error");
                return match self.fail_mode {
                    FailMode::Open => Verdict::Pass {
                        passed: None,
                        delay: Nanos::ZERO,
                    },
                    FailMode::Closed => Verdict::Unavailable,
                };
            }
        };
        let allowed = outcome.allowed();
        // One pass: whether any limit (a shadow one included) denied, and
        // the longest delay a queueing limit asks for.
        let (any_denied, delay) = outcome
            .decisions()
            .iter()
            .fold((false, Nanos::ZERO), |(denied, delay), d| {
                (denied || !d.allowed, delay.max(d.delay))
            });
        if any_denied && (self.shadow || allowed) {
            report_shadow(&set, &outcome);
        }
        let refund = if allowed {
            self.plan_refund(&set, &outcome, settlements)
        } else {
            None
        };
        if self.shadow {
            span.record("outcome", if allowed { "allowed" } else { "shadow_denied" });
            // Shadow mode neither blocks nor holds a request back; its
            // decisions go in the headers only on request, but what counts
            // only some responses is still settled.
            let reported = if self.shadow_headers {
                self.reported(&mut set, &outcome)
            } else {
                Reported::default()
            };
            return Verdict::Pass {
                passed: Some(Passed { reported, refund }),
                delay: Nanos::ZERO,
            };
        }
        if allowed {
            span.record(
                "outcome",
                if any_denied {
                    "shadow_denied"
                } else {
                    "allowed"
                },
            );
            let reported = self.reported(&mut set, &outcome);
            return Verdict::Pass {
                passed: Some(Passed { reported, refund }),
                delay,
            };
        }
        span.record("outcome", "denied");
        let violated: SmallVec<[(Arc<Policy>, Decision); 1]> = set
            .limits()
            .iter()
            .zip(outcome.decisions())
            .filter(|(l, d)| !d.allowed && !l.policy.is_shadow())
            .map(|(l, d)| (l.policy.clone(), *d))
            .collect();
        let denial = Denial {
            retry_after: crate::headers::retry_after(violated.iter().map(|(_, d)| d)),
            violated,
        };
        tracing::debug!(
            policies = ?denial.violated_policies().collect::<SmallVec<[&str; 2]>>(),
            retry_after_ms = denial.retry_after().map(|d| d.as_u64() / 1_000_000),
            "tollgate: request denied"
        );
        let reported = self.reported(&mut set, &outcome);
        Verdict::Deny { denial, reported }
    }

    /// The decisions to show the client: shadow levels only on request.
    /// The verdict [`decide`](Engine::decide) gives the one-limit set
    /// `(policy, key, cost)` with nothing to settle, when the backend
    /// answers it at once ([`Backend::acquire_now`]): a pass is built
    /// without the set or the outcome; a denial, and anything in shadow
    /// mode, goes through `decide`. `None`: the backend answers through
    /// [`acquire`](Engine::acquire).
    #[inline]
    pub(crate) fn check_one(
        &self,
        policy: &Arc<Policy>,
        key: &Key,
        cost: u64,
        span: &tracing::Span,
    ) -> Option<Verdict> {
        let decision = self.backend.acquire_now(policy, key, cost)?;
        if !decision.allowed || self.shadow {
            let outcome = Outcome::one(decision, decision.allowed || policy.is_shadow());
            let set = LimitSet::single(policy.clone(), key.clone(), cost);
            return Some(self.decide(Ok(outcome), set, Settlements::new(), span));
        }
        self.note(&Ok::<(), BackendError>(()));
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.decision(
                policy,
                key,
                crate::metrics::Outcome::Allowed,
                Some(&decision),
            );
        }
        span.record("outcome", "allowed");
        let mut reported = Reported::default();
        if self.report && (self.shadow_headers || !policy.is_shadow()) {
            reported.items.push((policy.clone(), decision));
        }
        Some(Verdict::Pass {
            passed: Some(Passed {
                reported,
                refund: None,
            }),
            delay: decision.delay,
        })
    }

    /// Counts each limit's decision (`None`: the backend failed).
    #[cfg(feature = "metrics")]
    fn count(&self, set: &LimitSet, outcome: Option<&Outcome>) {
        use crate::metrics::Outcome as Counted;
        let Some(metrics) = &self.metrics else {
            return;
        };
        let Some(outcome) = outcome else {
            let counted = match self.fail_mode {
                FailMode::Open => Counted::FailOpen,
                FailMode::Closed => Counted::FailClosed,
            };
            for limit in set.limits() {
                metrics.decision(&limit.policy, &limit.key, counted, None);
            }
            return;
        };
        for (limit, decision) in set.limits().iter().zip(outcome.decisions()) {
            let counted = if decision.allowed {
                Counted::Allowed
            } else if self.shadow || limit.policy.is_shadow() {
                Counted::ShadowDenied
            } else {
                Counted::Denied
            };
            metrics.decision(&limit.policy, &limit.key, counted, Some(decision));
        }
    }

    fn reported(&self, set: &mut LimitSet, outcome: &Outcome) -> Reported {
        let mut items = SmallVec::new();
        if !self.report {
            return Reported { items };
        }
        for (limit, decision) in set.drain_limits().zip(outcome.decisions()) {
            if self.shadow_headers || !limit.policy.is_shadow() {
                items.push((limit.policy, *decision));
            }
        }
        Reported { items }
    }

    /// The refund plan of a passed request, if any of its limits counts
    /// only some responses.
    fn plan_refund(
        &self,
        set: &LimitSet,
        outcome: &Outcome,
        settlements: Settlements,
    ) -> Option<Box<dyn Settle>> {
        if settlements.is_empty() {
            return None;
        }
        let Some(at) = outcome.at() else {
            tracing::debug!(
                "tollgate: the backend does not say when it decided; nothing can be refunded"
            );
            return None;
        };
        let mut limits = LimitSet::new();
        let mut counts = SmallVec::new();
        for (index, predicate) in settlements {
            let (Some(limit), Some(d)) = (set.limits().get(index), outcome.decisions().get(index))
            else {
                continue;
            };
            // Only what was counted can be given back.
            if d.allowed {
                limits.push(limit.policy.clone(), limit.key.clone(), limit.cost);
                counts.push(predicate);
            }
        }
        if limits.is_empty() {
            return None;
        }
        Some(Box::new(Refund {
            limits,
            counts,
            at,
            backend: self.backend.clone(),
        }))
    }
}

/// Logs each limit a shadow level or a shadow layer would have denied.
fn report_shadow(set: &LimitSet, outcome: &Outcome) {
    for (l, d) in set.limits().iter().zip(outcome.decisions()) {
        if !d.allowed {
            tracing::info!(
                target: "tollgate::shadow",
                policy = l.policy.name(),
                key = %l.key,
                retry_after_ms = d.retry_after.map(|r| r.as_u64() / 1_000_000),
                "tollgate: would deny (shadow mode)"
            );
        }
    }
}

/// A refund plan, type-erased so that what carries it (a response future)
/// does not name the backend.
trait Settle: Send + Sync {
    fn settle(self: Box<Self>, counts: &dyn Fn(&ResponseCounts) -> bool);
}

/// The limits of a passed request that count only some responses, and the
/// backend to give their units back on.
struct Refund<B> {
    limits: LimitSet,
    counts: SmallVec<[ResponseCounts; 1]>,
    at: Nanos,
    backend: B,
}

impl<B: Backend> Settle for Refund<B> {
    fn settle(self: Box<Self>, counts: &dyn Fn(&ResponseCounts) -> bool) {
        let mut back = LimitSet::new();
        for (limit, predicate) in self.limits.limits().iter().zip(&self.counts) {
            if !counts(predicate) {
                back.push(limit.policy.clone(), limit.key.clone(), limit.cost);
            }
        }
        if back.is_empty() {
            return;
        }
        let failed = |error: BackendError| {
            tracing::debug!(%error, "tollgate: refund failed; the request stays counted");
        };
        match self.backend.refund(&back, self.at).into_state() {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => failed(error),
            Err(future) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        if let Err(error) = future.await {
                            failed(error);
                        }
                    });
                }
                Err(_) => tracing::debug!("tollgate: no Tokio runtime to refund on"),
            },
        }
    }
}

/// What a rejection handler is told about a denied request: the policies
/// that denied it, with their decisions, and how long until it would be
/// admitted.
///
/// ```
/// use bytes::Bytes;
/// use tollgate::{Denial, Quota, RateLimitLayer};
///
/// let layer = RateLimitLayer::builder()
///     .quota(Quota::per_minute(5))
///     .on_rejected(|denial: &Denial| {
///         let secs = denial.retry_after().map_or(60, |wait| wait.as_secs_ceil());
///         http::Response::builder()
///             .status(429)
///             .body(Bytes::from(format!("slow down, try again in {secs}s")))
///             .unwrap()
///     })
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct Denial {
    violated: SmallVec<[(Arc<Policy>, Decision); 1]>,
    retry_after: Option<Nanos>,
}

impl Denial {
    /// The names of the policies that denied the request (shadow levels
    /// never deny).
    pub fn violated_policies(&self) -> impl Iterator<Item = &str> {
        self.violated.iter().map(|(p, _)| p.name())
    }

    /// The decisions of the denying policies.
    pub fn decisions(&self) -> impl Iterator<Item = (&Policy, &Decision)> {
        self.violated.iter().map(|(p, d)| (&**p, d))
    }

    /// How long until the request would be admitted (exact; the
    /// `Retry-After` header rounds it up). `None` when its cost exceeds a
    /// whole quota, so no wait helps.
    pub fn retry_after(&self) -> Option<Nanos> {
        self.retry_after
    }

    /// The default problem details for this denial: a 429 of the
    /// quota-exceeded type naming the violated policies.
    pub fn problem(&self) -> Problem {
        let mut detail = String::from("Quota exceeded for ");
        for (i, (p, _)) in self.violated.iter().enumerate() {
            if i > 0 {
                detail.push_str(", ");
            }
            let _ = write!(detail, "policy \"{}\" ({})", p.name(), p.quota());
        }
        match self.retry_after {
            Some(r) => {
                let _ = write!(detail, ". Retry in {} s.", r.as_secs_ceil());
            }
            None => detail
                .push_str(". This request costs more than the whole quota and cannot be admitted."),
        }
        let names = self
            .violated
            .iter()
            .map(|(p, _)| p.name().to_owned())
            .collect();
        Problem::quota_exceeded(detail, names)
    }
}

#[cfg(test)]
mod tests;
