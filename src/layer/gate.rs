//! [`Gate`]: what the HTTP front ends (the [`RateLimit`](super::RateLimit)
//! service and the axum extractor) share. It describes a request (access
//! lists, keys, policy resolution), hands the [`LimitSet`] to the
//! [`Engine`], and turns the engine's verdict into HTTP: headers on a
//! passing response, or a 429, 403, 401 or 503 answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};

use crate::backend::{Backend, BackendError, Outcome};
use crate::engine::{Denial, Engine, Passed, Verdict};
use crate::headers::{self, HeaderConfig, HeaderStyle};
use crate::key::KeyExtractor;
use crate::policy::LimitSet;
use crate::problem::Problem;
use crate::resolve::{Resolution, Resolver, Settlements, Simple};
use crate::settings::{sync, Access, AccessList, StoreError};
use crate::time::Nanos;

/// A user's rejection handler.
pub(crate) type OnRejected = Arc<dyn Fn(&Denial) -> Response<Bytes> + Send + Sync>;

/// Everything a layer was built with, shared by every clone of the layer
/// and its services.
pub(crate) struct Gate<K, B> {
    pub(crate) extractor: K,
    pub(crate) resolver: Resolver,
    pub(crate) access: Option<AccessList>,
    pub(crate) engine: Engine<B>,
    pub(crate) headers: HeaderConfig,
    pub(crate) on_rejected: Option<OnRejected>,
    pub(crate) sync_interval: Duration,
    /// How the background reload of shared settings is going.
    pub(crate) sync_state: SyncState,
    /// One plain level keyed by the layer, no access list, no limit on
    /// rejected keys: requests take [`Gate::screen_simple`].
    pub(crate) simple: bool,
    /// How often the sampled gauges are refreshed.
    #[cfg(feature = "metrics")]
    pub(crate) metrics_interval: Duration,
}

/// How the reload of shared settings is going: when it last succeeded and
/// how many times it failed.
#[derive(Default)]
pub(crate) struct SyncState {
    /// When the last reload succeeded (`None`: not yet, or nothing to
    /// reload).
    last_ok: Mutex<Option<Instant>>,
    failures: AtomicU64,
}

impl SyncState {
    pub(crate) fn succeeded(&self) {
        *self.last_ok.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Since the last successful reload.
    pub(crate) fn age(&self) -> Option<Duration> {
        self.last_ok
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|at| at.elapsed())
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// What the HTTP front end does with a request once its check is decided.
pub(crate) enum Answer {
    /// Pass it on after `delay`, adding what `admission` reports to the
    /// response.
    Pass(Option<Admission>, Nanos),
    /// Answer it with this response.
    Respond(Response<Bytes>),
}

/// A passed check, kept until the response head arrives: the decisions
/// for its headers and what counts only some responses.
pub(crate) struct Admission {
    passed: Passed,
    headers: HeaderConfig,
}

impl Admission {
    /// Settles the limits that count only some responses against `res`,
    /// then adds the rate-limit headers to it.
    pub(crate) fn finish<T>(mut self, mut res: Response<T>) -> Response<T> {
        if self.passed.settles() {
            let (head, body) = res.into_parts();
            self.passed.settle(|counts| counts(&head));
            res = Response::from_parts(head, body);
        }
        self.write_headers(res.headers_mut());
        res
    }

    /// Adds the rate-limit headers of this check to `headers`.
    pub(crate) fn write_headers(&self, headers: &mut http::HeaderMap) {
        if self.headers.style == HeaderStyle::None {
            return;
        }
        headers::write(headers, self.headers, &self.passed.reported.items, false);
    }
}

impl<K: KeyExtractor, B: Backend> Gate<K, B> {
    /// Access lists by address first (they need no key), then the policy
    /// resolution: keys, key lists, the levels that apply.
    pub(crate) fn screen(&self, parts: &Parts) -> Resolution {
        let access = self.access.as_ref();
        let resolution = match access.map_or(Access::Limit, |a| a.check_request(parts)) {
            Access::Deny => Resolution::Forbidden,
            Access::Allow => Resolution::Unlimited,
            Access::Limit => self.resolver.resolve(&self.extractor, access, parts),
        };
        #[cfg(feature = "metrics")]
        if let Some(metrics) = self.engine.metrics() {
            count_settled(metrics, &resolution);
        }
        resolution
    }

    /// [`screen`](Gate::screen) for a `simple` gate: the key and its
    /// policy, without building a set.
    pub(crate) fn screen_simple(&self, parts: &Parts) -> Simple<'_> {
        let screened = self.resolver.simple(&self.extractor, parts);
        #[cfg(feature = "metrics")]
        if let (Simple::Resolved(resolution), Some(metrics)) = (&screened, self.engine.metrics()) {
            count_settled(metrics, resolution);
        }
        screened
    }

    /// The whole check of a request head, awaited, for callers that are
    /// not the service (the axum extractor): `Ok(None)` passes unlimited,
    /// `Ok(Some)` passes with headers to add, `Err` is the answer (429,
    /// 403, a key problem, 503 when closed). Rules' `count_only` is not
    /// applied: the response is not seen here.
    #[cfg(feature = "axum")]
    pub(crate) async fn check_head(
        &self,
        parts: &Parts,
    ) -> Result<Option<Admission>, Response<Bytes>> {
        let (set, refusal) = match self.screen(parts) {
            Resolution::Limit(set, _) => (set, None),
            Resolution::Refuse(set, problem) => (set, Some(problem)),
            Resolution::Unlimited => return Ok(None),
            Resolution::Answer(problem) => return Err(problem.to_response()),
            Resolution::Forbidden => return Err(crate::settings::forbidden().to_response()),
        };
        let result = self.engine.acquire_awaited(&set).await;
        let span = tracing::Span::none();
        match self.answer(result, set, Settlements::new(), refusal, &span) {
            Answer::Pass(admission, delay) => {
                if delay > Nanos::ZERO {
                    tokio::time::sleep(delay.into()).await;
                }
                Ok(admission)
            }
            Answer::Respond(res) => Err(res),
        }
    }
}

impl<K, B> Gate<K, B> {
    /// Brings the shared overrides and access lists up to date with the
    /// backend's store.
    pub(crate) async fn sync(&self) -> Result<(), StoreError> {
        sync::refresh(&self.resolver.overrides).await?;
        if let Some(access) = &self.access {
            sync::refresh(access).await?;
        }
        Ok(())
    }
}

/// The gate's answer once the backend has: on the ready path called on
/// the gate itself, on the pending path through `dyn Decide`, so the
/// response future's type does not name the extractor or the backend.
pub(crate) trait Decide: Send + Sync {
    /// The engine's verdict on the backend's `result` for `set`, as HTTP.
    /// With a `refusal` (a rejected key counted against the limit on
    /// rejected keys), a request that passes gets the refusal instead.
    fn answer(
        &self,
        result: Result<Outcome, BackendError>,
        set: LimitSet,
        settlements: Settlements,
        refusal: Option<Box<Problem>>,
        span: &tracing::Span,
    ) -> Answer;

    /// A networked backend call started at `started` has just answered.
    fn timed(&self, started: std::time::Instant);
}

impl<K: KeyExtractor, B: Backend> Decide for Gate<K, B> {
    fn answer(
        &self,
        result: Result<Outcome, BackendError>,
        set: LimitSet,
        settlements: Settlements,
        refusal: Option<Box<Problem>>,
        span: &tracing::Span,
    ) -> Answer {
        self.respond(self.engine.decide(result, set, settlements, span), refusal)
    }

    fn timed(&self, started: std::time::Instant) {
        self.engine.timed(started);
    }
}

impl<K, B> Gate<K, B> {
    /// The engine's `verdict` as HTTP: see [`Decide::answer`].
    pub(crate) fn respond(&self, verdict: Verdict, refusal: Option<Box<Problem>>) -> Answer {
        match (verdict, refusal) {
            // A rejected key is refused whether the limit on rejections
            // passed or could not be checked (fail open or closed): only
            // a denial turns it into a 429.
            (Verdict::Pass { .. } | Verdict::Unavailable, Some(problem)) => {
                Answer::Respond(problem.to_response())
            }
            (Verdict::Pass { passed, delay }, None) => {
                // Nothing to show (no headers, or only shadow decisions
                // kept out of them) and nothing to settle: the response
                // future carries nothing.
                let admission = passed
                    .filter(|passed| !passed.reported.items.is_empty() || passed.settles())
                    .map(|passed| Admission {
                        passed,
                        headers: self.headers,
                    });
                Answer::Pass(admission, delay)
            }
            (Verdict::Deny { denial, reported }, _) => {
                let Some(handler) = &self.on_rejected else {
                    // Our own answer carries only its content type: the
                    // headers go straight in.
                    let mut res = denial.problem().to_response();
                    headers::write(res.headers_mut(), self.headers, &reported.items, true);
                    headers::write_denial(res.headers_mut(), denial.retry_after());
                    return Answer::Respond(res);
                };
                // A handler's own headers win over ours.
                let mut res = handler(&denial);
                let mut extra = http::HeaderMap::new();
                headers::write(&mut extra, self.headers, &reported.items, true);
                headers::write_denial(&mut extra, denial.retry_after());
                for (name, value) in extra {
                    // `try_entry` fails only on a map at its maximum size:
                    // the header is left out rather than panicking.
                    if let Some(Ok(entry)) = name.map(|name| res.headers_mut().try_entry(name)) {
                        let _ = entry.or_try_insert(value);
                    }
                }
                Answer::Respond(res)
            }
            (Verdict::Unavailable, None) => Answer::Respond(
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Rate limiter unavailable",
                    "The rate limiter's backend could not be reached; try again shortly.",
                )
                .to_response(),
            ),
        }
    }
}

/// Counts a request settled before any limit.
#[cfg(feature = "metrics")]
fn count_settled(metrics: &crate::metrics::Instruments, resolution: &Resolution) {
    use crate::metrics::Settled;
    match resolution {
        Resolution::Limit(..) => {}
        Resolution::Unlimited => metrics.settled(Settled::Unlimited),
        Resolution::Forbidden => metrics.settled(Settled::Forbidden),
        Resolution::Answer(problem) => metrics.settled(Settled::KeyRejected(problem.status())),
        Resolution::Refuse(_, problem) => metrics.settled(Settled::KeyRejected(problem.status())),
    }
}

/// Starts the background reload of shared settings: it stops when the
/// last clone of the layer and its services is dropped.
pub(crate) fn spawn_sync<K, B>(gate: &Arc<Gate<K, B>>)
where
    K: Send + Sync + 'static,
    B: Send + Sync + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            "tollgate: no Tokio runtime at build(): shared overrides and access lists are reloaded only when RateLimitLayer::sync() is called"
        );
        return;
    };
    let weak: Weak<Gate<K, B>> = Arc::downgrade(gate);
    let interval = gate.sync_interval.max(Duration::from_millis(10));
    runtime.spawn(async move {
        let mut failing = false;
        loop {
            let Some(gate) = weak.upgrade() else { break };
            let synced = gate.sync().await;
            match &synced {
                Ok(_) => gate.sync_state.succeeded(),
                Err(_) => gate.sync_state.failed(),
            }
            match synced {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("tollgate: shared settings reloading again");
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "tollgate: could not reload shared overrides and access lists; keeping the last copy");
                }
                Err(_) => {}
            }
            drop(gate);
            tokio::time::sleep(interval).await;
        }
    });
}
