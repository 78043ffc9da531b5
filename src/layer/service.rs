//! [`RateLimit`], the service, and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use smallvec::SmallVec;
use tower_service::Service;

use crate::algorithm::Decision;
use crate::backend::{Acquire, Backend, BackendError, Outcome};
use crate::body::ResponseBody;
use crate::headers;
use crate::key::KeyExtractor;
use crate::layer::{FailMode, Shared};
use crate::policy::forbidden;
use crate::policy::resolve::{CountsOnly, Resolution};
use crate::policy::{Access, LimitSet, Policy};
use crate::response::{Problem, RateLimited};
use crate::time::Nanos;

/// The service made by [`RateLimitLayer`](crate::RateLimitLayer).
///
/// `poll_ready` is the inner service's. A request is keyed, checked, and
/// either passed on (with rate-limit headers added to the response) or
/// answered by the limiter itself (429, or the extractor's rejection).
pub struct RateLimit<S, K, B> {
    inner: S,
    shared: Arc<Shared<K, B>>,
}

impl<S: Clone, K, B> Clone for RateLimit<S, K, B> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, K, B> fmt::Debug for RateLimit<S, K, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("policy", &self.shared.resolver.default_policy())
            .finish_non_exhaustive()
    }
}

impl<S, K, B> RateLimit<S, K, B> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<K, B>>) -> Self {
        RateLimit { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The outcome of a check, kept until the inner response arrives so its
/// headers can be written: only what the headers need (each policy with
/// its decision), because the response future carries it and moves it.
pub(crate) struct Checked {
    items: SmallVec<[(Arc<Policy>, Decision); 1]>,
    headers: headers::HeaderConfig,
    /// Limits that count only some responses, judged once the response
    /// head is there.
    refund: Option<Box<Refund>>,
}

impl Checked {
    fn new(
        mut set: LimitSet,
        outcome: &Outcome,
        headers: headers::HeaderConfig,
        refund: Option<Box<Refund>>,
    ) -> Self {
        let mut items = SmallVec::new();
        for (limit, decision) in set.drain_limits().zip(outcome.decisions()) {
            items.push((limit.policy, *decision));
        }
        Checked {
            items,
            headers,
            refund,
        }
    }

    /// The longest delay a queueing limit asks for.
    fn max_delay(&self) -> Nanos {
        self.items
            .iter()
            .map(|(_, d)| d.delay)
            .max()
            .unwrap_or(Nanos::ZERO)
    }
}

impl<S, K, B, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, K, B>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor,
    B: Backend,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let (parts, body) = req.into_parts();
        let (set, counts_only) = match screen(shared, &parts) {
            Resolution::Limit(set, counts_only) => (set, counts_only),
            Resolution::Unlimited => {
                let req = Request::from_parts(parts, body);
                return ResponseFuture::calling(self.inner.call(req), None, tracing::Span::none());
            }
            Resolution::Answer(problem) => {
                return ResponseFuture::done(problem.to_response(), tracing::Span::none())
            }
        };
        // Checked first so that, with no subscriber interested, no span is
        // built at all (not even the `log` fallback axum's default
        // features turn on).
        let span = if tracing::enabled!(tracing::Level::DEBUG) {
            let first = set.limits().first();
            tracing::debug_span!(
                "rate_limit",
                key = first.map(|l| tracing::field::display(&l.key)),
                policy = %PolicyNames(&set),
                outcome = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let req = Request::from_parts(parts, body);
        match shared.backend.acquire(&set) {
            Acquire::Ready { result } => {
                let result =
                    result.unwrap_or_else(|| Err(BackendError::Unavailable("no answer".into())));
                let _entered = (!span.is_none()).then(|| span.enter());
                match decide(&self.shared, result, set, counts_only, &span) {
                    Verdict::Pass(checked, delay) => {
                        drop(_entered);
                        if delay > crate::Nanos::ZERO {
                            let inner = self.inner.clone();
                            let inner = std::mem::replace(&mut self.inner, inner);
                            return ResponseFuture::delaying(delay, inner, req, checked, span);
                        }
                        let fut = if span.is_none() {
                            self.inner.call(req)
                        } else {
                            span.in_scope(|| self.inner.call(req))
                        };
                        ResponseFuture::calling(fut, checked, span)
                    }
                    Verdict::Answer(res) => {
                        drop(_entered);
                        ResponseFuture::done(res, span)
                    }
                }
            }
            Acquire::Pending { future } => {
                // The inner service that was driven to readiness goes with
                // the future; this service keeps a fresh clone.
                let inner = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, inner);
                ResponseFuture {
                    state: State::Waiting {
                        acquire: future,
                        pending: Some(Box::new(Pending {
                            inner,
                            req,
                            set,
                            counts_only,
                        })),
                        shared: self.shared.clone(),
                    },
                    span,
                }
            }
        }
    }
}

impl Checked {
    /// Adds the rate-limit headers of this check to `headers`.
    pub(crate) fn write_headers(&self, headers: &mut http::HeaderMap) {
        if self.headers.style == headers::HeaderStyle::None {
            return;
        }
        headers::write(headers, self.headers, &self.items, false);
    }
}

/// The whole check of a request head, awaited, for callers that are not
/// the service (the axum extractor): `Ok(None)` passes unlimited,
/// `Ok(Some)` passes with headers to add, `Err` is the answer (429, 403,
/// a key problem, 503 when closed). Rules' `count_only` is not applied:
/// the response is not seen here.
pub(crate) async fn check_head<K: KeyExtractor, B: Backend>(
    shared: &Arc<Shared<K, B>>,
    parts: &Parts,
) -> Result<Option<Checked>, Response<Bytes>> {
    let set = match screen(shared, parts) {
        Resolution::Limit(set, _) => set,
        Resolution::Unlimited => return Ok(None),
        Resolution::Answer(problem) => return Err(problem.to_response()),
    };
    let result = shared.backend.acquire(&set).await;
    match decide(
        shared,
        result,
        set,
        CountsOnly::new(),
        &tracing::Span::none(),
    ) {
        Verdict::Pass(checked, delay) => {
            if delay > Nanos::ZERO {
                tokio::time::sleep(delay.into()).await;
            }
            Ok(checked)
        }
        Verdict::Answer(res) => Err(res),
    }
}

/// A misconfigured layer's 500 first, then access lists by address (they
/// need no key), then the policy resolution: keys, key lists, the levels
/// that apply.
fn screen<K: KeyExtractor, B>(shared: &Shared<K, B>, parts: &Parts) -> Resolution {
    if let Some(problem) = &shared.misconfigured {
        return Resolution::Answer(problem.clone());
    }
    let access = shared.access.as_ref();
    match access.map_or(Access::Limit, |a| a.check_request(parts)) {
        Access::Deny => return Resolution::Answer(forbidden()),
        Access::Allow => return Resolution::Unlimited,
        Access::Limit => {}
    }
    shared.resolver.resolve(&shared.extractor, access, parts)
}

/// The names of a set's policies, comma-separated, for the span.
struct PolicyNames<'a>(&'a LimitSet);

impl fmt::Display for PolicyNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, limit) in self.0.limits().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(limit.policy.name())?;
        }
        Ok(())
    }
}

/// The limits of a passed request that count only some responses, and
/// how to give their units back.
struct Refund {
    limits: LimitSet,
    counts: SmallVec<[crate::policy::CountOnly; 1]>,
    at: Nanos,
    refunder: Arc<dyn Refunder>,
}

impl Refund {
    /// Refunds the limits whose predicate says `response` does not count.
    fn settle(self, response: &http::response::Parts) {
        let mut back = LimitSet::new();
        for (limit, counts) in self.limits.limits().iter().zip(&self.counts) {
            if !counts(response) {
                back.push(limit.policy.clone(), limit.key.clone(), limit.cost);
            }
        }
        if !back.is_empty() {
            self.refunder.refund(back, self.at);
        }
    }
}

/// Gives units back on the layer's backend, type-erased so the future's
/// type does not name it.
trait Refunder: Send + Sync {
    fn refund(&self, set: LimitSet, at: Nanos);
}

impl<K: Send + Sync, B: Backend> Refunder for Shared<K, B> {
    fn refund(&self, set: LimitSet, at: Nanos) {
        let failed = |error: BackendError| {
            tracing::debug!(%error, "tollgate: refund failed; the request stays counted");
        };
        match self.backend.refund(&set, at) {
            Acquire::Ready { result } => {
                if let Some(Err(error)) = result {
                    failed(error);
                }
            }
            Acquire::Pending { future } => match tokio::runtime::Handle::try_current() {
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

/// The refund plan of a passed request, if any of its limits counts only
/// some responses.
fn plan_refund<K: KeyExtractor, B: Backend>(
    shared: &Arc<Shared<K, B>>,
    set: &LimitSet,
    outcome: &Outcome,
    counts_only: CountsOnly,
) -> Option<Box<Refund>> {
    if counts_only.is_empty() {
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
    for (index, predicate) in counts_only {
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
    let refunder: Arc<dyn Refunder> = shared.clone();
    Some(Box::new(Refund {
        limits,
        counts,
        at,
        refunder,
    }))
}

/// What to do with a checked request.
enum Verdict {
    /// Call the inner service (after `delay`, for a queueing leaky
    /// bucket); add headers for this check, if any.
    Pass(Option<Checked>, crate::Nanos),
    /// Answer with this response.
    Answer(Response<Bytes>),
}

/// Turns a backend result into a verdict: headers, shadow mode, 429s and
/// the fail mode all live here, shared by the ready and the pending paths.
/// The outcome is recorded on `span` (handed in: looking up the current
/// span costs a dispatcher lookup on every request, span or not).
fn decide<K: KeyExtractor, B: Backend>(
    shared: &Arc<Shared<K, B>>,
    result: Result<Outcome, BackendError>,
    set: LimitSet,
    counts_only: CountsOnly,
    span: &tracing::Span,
) -> Verdict {
    let outcome = match result {
        Ok(outcome) => {
            shared.backend_recovered();
            outcome
        }
        Err(error) => {
            shared.warn_backend_once(&error);
            span.record("outcome", "backend_error");
            return match shared.fail_mode {
                FailMode::Open => Verdict::Pass(None, crate::Nanos::ZERO),
                FailMode::Closed => Verdict::Answer(
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Rate limiter unavailable",
                        "The rate limiter's backend could not be reached; try again shortly.",
                    )
                    .to_response(),
                ),
            };
        }
    };
    let allowed = outcome.allowed();
    let any_denied = outcome.decisions().iter().any(|d| !d.allowed);
    if any_denied && (shared.shadow || allowed) {
        report_shadow(&set, &outcome);
    }
    let refund = if allowed {
        plan_refund(shared, &set, &outcome, counts_only)
    } else {
        None
    };
    let checked = Checked::new(set, &outcome, shared.headers, refund);
    if allowed && !shared.shadow {
        let shadow_denied = any_denied;
        span.record(
            "outcome",
            if shadow_denied {
                "shadow_denied"
            } else {
                "allowed"
            },
        );
        let delay = checked.max_delay();
        return Verdict::Pass(Some(checked), delay);
    }
    if shared.shadow {
        let denied = !allowed;
        span.record("outcome", if denied { "shadow_denied" } else { "allowed" });
        // Shadow mode neither blocks nor holds a request back.
        return Verdict::Pass(shared.shadow_headers.then_some(checked), crate::Nanos::ZERO);
    }
    span.record("outcome", "denied");
    let items = &checked.items;
    let denied = RateLimited {
        violated: checked
            .items
            .iter()
            .filter(|(p, d)| !d.allowed && !p.is_shadow())
            .map(|(p, d)| (p.clone(), *d))
            .collect(),
        retry_after: headers::retry_after(items.iter().map(|(_, d)| d)),
    };
    tracing::debug!(
        policies = ?denied.violated_policies().collect::<SmallVec<[&str; 2]>>(),
        retry_after_ms = denied.retry_after().map(|d| d.as_millis() as u64),
        "tollgate: request denied"
    );
    let mut res = match &shared.on_rejected {
        Some(handler) => handler(&denied),
        None => denied.problem().to_response(),
    };
    let mut extra = http::HeaderMap::new();
    headers::write(&mut extra, shared.headers, items, true);
    for (name, value) in extra {
        // `try_entry` fails only on a map at its maximum size: the
        // header is left out rather than panicking.
        if let Some(Ok(entry)) = name.map(|name| res.headers_mut().try_entry(name)) {
            let _ = entry.or_try_insert(value);
        }
    }
    Verdict::Answer(res)
}

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

struct Pending<S, ReqBody> {
    inner: S,
    req: Request<ReqBody>,
    set: LimitSet,
    counts_only: CountsOnly,
}

pin_project! {
    /// The future of [`RateLimit`]: waits for a networked backend if it has
    /// to, holds a queued request for its delay, calls the inner service,
    /// then adds the rate-limit headers. Not boxed.
    pub struct ResponseFuture<S, ReqBody, F>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, F>,
        span: tracing::Span,
    }
}

/// The pending path needs the settings after the backend answers; kept
/// type-erased so the future's type does not name the extractor.
trait Decider: Send + Sync {
    fn decide(
        self: Arc<Self>,
        result: Result<Outcome, BackendError>,
        set: LimitSet,
        counts_only: CountsOnly,
        span: &tracing::Span,
    ) -> Verdict;
}

impl<K: KeyExtractor, B: Backend> Decider for Shared<K, B> {
    fn decide(
        self: Arc<Self>,
        result: Result<Outcome, BackendError>,
        set: LimitSet,
        counts_only: CountsOnly,
        span: &tracing::Span,
    ) -> Verdict {
        decide(&self, result, set, counts_only, span)
    }
}

pin_project! {
    // Only the common path (calling the inner service) is stored inline;
    // the rarer states are boxed so the future stays small to move.
    #[project = StateProj]
    enum State<S, ReqBody, F>
    where
        S: Service<Request<ReqBody>>,
    {
        Waiting {
            #[pin]
            acquire: F,
            pending: Option<Box<Pending<S, ReqBody>>>,
            shared: Arc<dyn Decider>,
        },
        Delaying {
            sleep: Pin<Box<tokio::time::Sleep>>,
            pending: Option<Box<(S, Request<ReqBody>, Option<Checked>)>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            checked: Option<Checked>,
        },
        Done {
            response: Option<Box<Response<Bytes>>>,
        },
    }
}

impl<S, ReqBody, F> ResponseFuture<S, ReqBody, F>
where
    S: Service<Request<ReqBody>>,
{
    fn done(response: Response<Bytes>, span: tracing::Span) -> Self {
        ResponseFuture {
            state: State::Done {
                response: Some(Box::new(response)),
            },
            span,
        }
    }

    fn calling(future: S::Future, checked: Option<Checked>, span: tracing::Span) -> Self {
        ResponseFuture {
            state: State::Calling { future, checked },
            span,
        }
    }

    fn delaying(
        delay: crate::Nanos,
        inner: S,
        req: Request<ReqBody>,
        checked: Option<Checked>,
        span: tracing::Span,
    ) -> Self {
        ResponseFuture {
            state: State::Delaying {
                sleep: Box::pin(tokio::time::sleep(delay.into())),
                pending: Some(Box::new((inner, req, checked))),
            },
            span,
        }
    }
}

impl<S, ReqBody, F, ResBody> Future for ResponseFuture<S, ReqBody, F>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    F: Future<Output = Result<Outcome, BackendError>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // Entering even a disabled span costs a dispatcher lookup.
        let _entered = (!this.span.is_none()).then(|| this.span.enter());
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting {
                    acquire,
                    pending,
                    shared,
                } => {
                    let result = ready!(acquire.poll(cx));
                    let Some(Pending {
                        mut inner,
                        req,
                        set,
                        counts_only,
                    }) = pending.take().map(|p| *p)
                    else {
                        return Poll::Ready(Ok(internal_error()));
                    };
                    match shared.clone().decide(result, set, counts_only, this.span) {
                        Verdict::Pass(checked, delay) => {
                            if delay > crate::Nanos::ZERO {
                                this.state.set(State::Delaying {
                                    sleep: Box::pin(tokio::time::sleep(delay.into())),
                                    pending: Some(Box::new((inner, req, checked))),
                                });
                            } else {
                                let future = inner.call(req);
                                this.state.set(State::Calling { future, checked });
                            }
                        }
                        Verdict::Answer(res) => {
                            return Poll::Ready(Ok(res.map(ResponseBody::full)));
                        }
                    }
                }
                StateProj::Delaying { sleep, pending } => {
                    ready!(sleep.as_mut().poll(cx));
                    let Some((mut inner, req, checked)) = pending.take().map(|p| *p) else {
                        return Poll::Ready(Ok(internal_error()));
                    };
                    let future = inner.call(req);
                    this.state.set(State::Calling { future, checked });
                }
                StateProj::Calling { future, checked } => {
                    let res = ready!(future.poll(cx))?;
                    let mut res = res.map(ResponseBody::inner);
                    if let Some(mut checked) = checked.take() {
                        if let Some(refund) = checked.refund.take() {
                            let (head, body) = res.into_parts();
                            refund.settle(&head);
                            res = Response::from_parts(head, body);
                        }
                        checked.write_headers(res.headers_mut());
                    }
                    return Poll::Ready(Ok(res));
                }
                StateProj::Done { response } => {
                    let res = response.take().map_or_else(internal_error_bytes, |r| *r);
                    return Poll::Ready(Ok(res.map(ResponseBody::full)));
                }
            }
        }
    }
}

/// Polled after completion: a contract violation by the caller, answered
/// with a 500 rather than a panic.
fn internal_error<B>() -> Response<ResponseBody<B>> {
    internal_error_bytes().map(ResponseBody::full)
}

fn internal_error_bytes() -> Response<Bytes> {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error",
        "tollgate: response future polled after completion",
    )
    .to_response()
}
