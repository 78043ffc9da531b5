//! [`RateLimit`], the service a [`RateLimitLayer`] makes.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::future::{Pending, ResponseFuture};
use super::gate::{Answer, Decide, Gate};
use super::{RateLimitLayer, ResponseBody};
use crate::backend::{Backend, MemoryBackend};
use crate::key::{ClientIp, KeyExtractor};
use crate::policy::LimitSet;
use crate::quota::Quota;
use crate::resolve::{Resolution, Settlements, Simple};
use crate::settings::forbidden;
use crate::time::Nanos;

/// The service made by [`RateLimitLayer`]: a request is keyed, checked,
/// and either passed on to the inner service (with rate-limit headers added
/// to its response) or answered by the limiter itself (429, or the
/// extractor's rejection).
///
/// `poll_ready` is the inner service's. Cloning is cheap (the inner
/// service's clone and one `Arc`).
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tollgate::{Quota, RateLimit};
/// use tower::service_fn;
///
/// let inner = service_fn(|_req: Request<String>| async {
///     Ok::<_, Infallible>(Response::new(String::from("hello")))
/// });
/// let service = RateLimit::new(inner, Quota::per_second(10));
/// let _inner = service.into_inner();
/// ```
pub struct RateLimit<S, K = ClientIp, B = MemoryBackend> {
    inner: S,
    gate: Arc<Gate<K, B>>,
}

impl<S> RateLimit<S> {
    /// `inner`, limited to `quota` per client IP with every default: the
    /// service [`RateLimitLayer::new`] makes.
    ///
    /// # Panics
    ///
    /// As [`RateLimitLayer::new`]: if `quota` cannot be enforced.
    pub fn new(inner: S, quota: Quota) -> Self {
        RateLimitLayer::new(quota).layer(inner)
    }

    /// The layer that makes this service: [`RateLimitLayer::new`].
    ///
    /// # Panics
    ///
    /// As [`RateLimitLayer::new`]: if `quota` cannot be enforced.
    pub fn layer(quota: Quota) -> RateLimitLayer {
        RateLimitLayer::new(quota)
    }
}

impl<S, K, B> RateLimit<S, K, B> {
    pub(crate) fn from_gate(inner: S, gate: Arc<Gate<K, B>>) -> Self {
        RateLimit { inner, gate }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, B> Clone for RateLimit<S, K, B> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<S: fmt::Debug, K, B> fmt::Debug for RateLimit<S, K, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("policy", &self.gate.resolver.default_policy())
            .finish_non_exhaustive()
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
        let gate = &*self.gate;
        let (parts, body) = req.into_parts();
        // The common case (one plain level, in memory, nobody tracing):
        // decided without a set, an outcome or a span.
        let resolution = if gate.simple && !tracing::enabled!(tracing::Level::DEBUG) {
            match gate.screen_simple(&parts) {
                Simple::Keyed(key, policy) => {
                    let cost = policy.cost();
                    let none = tracing::Span::none();
                    match gate.engine.check_one(&policy, &key, cost, &none) {
                        Some(verdict) => {
                            let answer = gate.respond(verdict, None);
                            let req = Request::from_parts(parts, body);
                            return self.answered(answer, req, none);
                        }
                        None => {
                            let set = LimitSet::single(policy.into_owned(), key, cost);
                            Resolution::Limit(set, Settlements::new())
                        }
                    }
                }
                Simple::Resolved(resolution) => resolution,
            }
        } else {
            gate.screen(&parts)
        };
        let (set, settlements, refusal) = match resolution {
            Resolution::Limit(set, settlements) => (set, settlements, None),
            Resolution::Refuse(set, problem) => (set, Settlements::new(), Some(problem)),
            Resolution::Unlimited => {
                let req = Request::from_parts(parts, body);
                return ResponseFuture::calling(self.inner.call(req), None, tracing::Span::none());
            }
            Resolution::Answer(problem) => {
                return ResponseFuture::done(problem.to_response(), tracing::Span::none())
            }
            Resolution::Forbidden => {
                return ResponseFuture::done(forbidden().to_response(), tracing::Span::none())
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
        // One limit and nothing to settle on a backend that answers at
        // once (in memory): decided without building an outcome.
        let entered = (!span.is_none()).then(|| span.enter());
        let quick = match (set.limits(), settlements.is_empty(), &refusal) {
            ([one], true, None) => gate
                .engine
                .check_one(&one.policy, &one.key, one.cost, &span),
            _ => None,
        };
        let answer = match quick {
            Some(verdict) => gate.respond(verdict, None),
            None => match gate.engine.acquire(&set).into_state() {
                Ok(result) => gate.answer(result, set, settlements, refusal, &span),
                Err(acquire) => {
                    drop(entered);
                    let pending = Pending {
                        inner: self.take_inner(),
                        req,
                        set,
                        settlements,
                        refusal,
                        started: std::time::Instant::now(),
                    };
                    return ResponseFuture::waiting(acquire, pending, self.gate.clone(), span);
                }
            },
        };
        drop(entered);
        self.answered(answer, req, span)
    }
}

impl<S, K, B> RateLimit<S, K, B> {
    /// The future of a request whose check is decided: the inner call
    /// (after a queueing delay, if any), or the limiter's own answer.
    fn answered<ReqBody, ResBody, F>(
        &mut self,
        answer: Answer,
        req: Request<ReqBody>,
        span: tracing::Span,
    ) -> ResponseFuture<S, ReqBody, F>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    {
        match answer {
            Answer::Pass(admission, delay) => {
                if delay > Nanos::ZERO {
                    let inner = self.take_inner();
                    return ResponseFuture::delaying(delay, inner, req, admission, span);
                }
                let fut = if span.is_none() {
                    self.inner.call(req)
                } else {
                    span.in_scope(|| self.inner.call(req))
                };
                ResponseFuture::calling(fut, admission, span)
            }
            Answer::Respond(res) => ResponseFuture::done(res, span),
        }
    }
}

impl<S: Clone, K, B> RateLimit<S, K, B> {
    /// The inner service that was driven to readiness goes with the
    /// future; this service keeps a fresh clone.
    fn take_inner(&mut self) -> S {
        let fresh = self.inner.clone();
        std::mem::replace(&mut self.inner, fresh)
    }
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
