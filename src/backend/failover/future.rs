//! [`FailoverFuture`]: a [`Failover`](super::Failover) call in flight.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{Op, Shared};
use crate::backend::circuit::Permit;
use crate::backend::{Acquire, Backend, BackendError, Outcome};
use crate::policy::LimitSet;

/// The future of a [`Failover`](super::Failover) call whose primary (or fallback) answers
/// asynchronously: the primary's call raced against the timeout, then the
/// fallback if need be. `Unpin`; the only allocation is the timer.
pub struct FailoverFuture<P: Backend, F: Backend> {
    pub(super) shared: Arc<Shared<P, F>>,
    pub(super) set: LimitSet,
    pub(super) op: Op,
    pub(super) stage: Stage<P::Future, F::Future>,
}

/// Where a [`FailoverFuture`] is: waiting on the primary (against the
/// deadline), on the fallback, or done.
pub(super) enum Stage<PF, FF> {
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
                        Acquire::Ready(result) => {
                            this.shared.fallback_answered(this.op, &this.set, &result);
                            this.stage = Stage::Done;
                            return Poll::Ready(result);
                        }
                        Acquire::Pending(future) => this.stage = Stage::Fallback { future },
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
