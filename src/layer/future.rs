//! [`ResponseFuture`], the future of the [`RateLimit`](super::RateLimit)
//! service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::gate::{Admission, Answer, Decide};
use super::ResponseBody;
use crate::backend::{BackendError, Outcome};
use crate::policy::LimitSet;
use crate::problem::Problem;
use crate::resolve::Settlements;
use crate::time::Nanos;

pin_project! {
    /// The future of [`RateLimit`](super::RateLimit): waits for a networked
    /// backend if it has to, holds a queued request for its delay, calls
    /// the inner service, then adds the rate-limit headers. Not boxed.
    pub struct ResponseFuture<S, ReqBody, F>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, F>,
        span: tracing::Span,
    }
}

/// What the pending path keeps while the backend answers: the request, the
/// inner service driven to readiness, and what the gate needs to answer.
pub(super) struct Pending<S, ReqBody> {
    pub(super) inner: S,
    pub(super) req: Request<ReqBody>,
    pub(super) set: LimitSet,
    pub(super) settlements: Settlements,
    pub(super) refusal: Option<Box<Problem>>,
    /// When the backend call started (its latency is reported).
    pub(super) started: std::time::Instant,
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
            gate: Arc<dyn Decide>,
        },
        Delaying {
            sleep: Pin<Box<tokio::time::Sleep>>,
            pending: Option<Box<(S, Request<ReqBody>, Option<Admission>)>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            admission: Option<Admission>,
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
    pub(super) fn done(response: Response<Bytes>, span: tracing::Span) -> Self {
        ResponseFuture {
            state: State::Done {
                response: Some(Box::new(response)),
            },
            span,
        }
    }

    pub(super) fn calling(
        future: S::Future,
        admission: Option<Admission>,
        span: tracing::Span,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future, admission },
            span,
        }
    }

    pub(super) fn delaying(
        delay: Nanos,
        inner: S,
        req: Request<ReqBody>,
        admission: Option<Admission>,
        span: tracing::Span,
    ) -> Self {
        ResponseFuture {
            state: State::Delaying {
                sleep: Box::pin(tokio::time::sleep(delay.into())),
                pending: Some(Box::new((inner, req, admission))),
            },
            span,
        }
    }

    pub(super) fn waiting(
        acquire: F,
        pending: Pending<S, ReqBody>,
        gate: Arc<dyn Decide>,
        span: tracing::Span,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                acquire,
                pending: Some(Box::new(pending)),
                gate,
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
                    gate,
                } => {
                    let result = ready!(acquire.poll(cx));
                    let Some(Pending {
                        mut inner,
                        req,
                        set,
                        settlements,
                        refusal,
                        started,
                    }) = pending.take().map(|p| *p)
                    else {
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    gate.timed(started);
                    match gate.answer(result, set, settlements, refusal, this.span) {
                        Answer::Pass(admission, delay) => {
                            if delay > Nanos::ZERO {
                                this.state.set(State::Delaying {
                                    sleep: Box::pin(tokio::time::sleep(delay.into())),
                                    pending: Some(Box::new((inner, req, admission))),
                                });
                            } else {
                                let future = inner.call(req);
                                this.state.set(State::Calling { future, admission });
                            }
                        }
                        Answer::Respond(res) => {
                            return Poll::Ready(Ok(res.map(ResponseBody::full)));
                        }
                    }
                }
                StateProj::Delaying { sleep, pending } => {
                    ready!(sleep.as_mut().poll(cx));
                    let Some((mut inner, req, admission)) = pending.take().map(|p| *p) else {
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    let future = inner.call(req);
                    this.state.set(State::Calling { future, admission });
                }
                StateProj::Calling { future, admission } => {
                    let res = ready!(future.poll(cx))?.map(ResponseBody::inner);
                    let res = match admission.take() {
                        Some(admission) => admission.finish(res),
                        None => res,
                    };
                    return Poll::Ready(Ok(res));
                }
                StateProj::Done { response } => {
                    let res = match response.take() {
                        Some(res) => (*res).map(ResponseBody::full),
                        None => polled_after_completion(),
                    };
                    return Poll::Ready(Ok(res));
                }
            }
        }
    }
}

/// Polled after completion: a contract violation by the caller, answered
/// with a 500 rather than a panic.
fn polled_after_completion<B>() -> Response<ResponseBody<B>> {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error",
        "tollgate: response future polled after completion",
    )
    .to_response()
    .map(ResponseBody::full)
}
