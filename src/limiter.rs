//! [`Limiter`]: the same policies, algorithms and backends without HTTP, a
//! front end over the engine.

use std::sync::Arc;

use crate::backend::{Backend, BackendError, MemoryBackend};
use crate::engine::{Engine, FailMode};
use crate::key::Key;
use crate::policy::{LimitSet, Policy, PolicyError};
use crate::quota::Quota;
use crate::{Algorithm, Decision};

/// Rate limiting for anything that is not an HTTP request: jobs, WebSocket
/// messages, gRPC streams, outgoing calls.
///
/// ```
/// use tollgate::{Limiter, Quota};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = Limiter::new(Quota::per_minute(2))?;
/// assert!(limiter.check("chat:alice", 1).await?.allowed);
/// assert_eq!(limiter.peek("chat:alice").await?.remaining, 1);
/// assert!(limiter.check("chat:alice", 1).await?.allowed);
/// let third = limiter.check("chat:alice", 1).await?;
/// assert!(!third.allowed);
/// assert!(third.retry_after.is_some());
/// limiter.reset("chat:alice").await?;
/// assert!(limiter.check("chat:alice", 1).await?.allowed);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Limiter<B = MemoryBackend> {
    policy: Arc<Policy>,
    /// A backend error is the caller's to handle: the engine only reports
    /// it (logged once per outage), so the fail mode is never applied.
    engine: Arc<Engine<B>>,
}

impl<B> Clone for Limiter<B> {
    fn clone(&self) -> Self {
        Limiter {
            policy: self.policy.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl Limiter {
    /// GCRA over `quota`, in memory.
    pub fn new(quota: Quota) -> Result<Self, PolicyError> {
        Limiter::with_policy(Policy::new("default", quota), MemoryBackend::new())
    }

    /// [`check`](Self::check) without a future, for the in-memory backend,
    /// which never waits: usable from synchronous code and outside a
    /// runtime, and the fastest check there is (nothing is cloned or
    /// allocated; see the README's performance section).
    ///
    /// ```
    /// use tollgate::{Limiter, Quota};
    ///
    /// let limiter = Limiter::new(Quota::per_minute(2))?;
    /// assert!(limiter.check_now("job:42", 1).allowed);
    /// assert!(limiter.check_now("job:42", 1).allowed);
    /// let third = limiter.check_now("job:42", 1);
    /// assert!(!third.allowed);
    /// assert!(third.retry_after.is_some());
    /// # Ok::<(), tollgate::policy::PolicyError>(())
    /// ```
    #[inline]
    pub fn check_now(&self, key: impl Into<Key>, cost: u64) -> Decision {
        self.engine.backend().check(&self.policy, &key.into(), cost)
    }
}

impl<B: Backend> Limiter<B> {
    /// A limiter for `policy` (name, quota, algorithm) on `backend`.
    pub fn with_policy(policy: Policy, backend: B) -> Result<Self, PolicyError> {
        policy.validate()?;
        Ok(Limiter {
            policy: Arc::new(policy),
            engine: Arc::new(Engine::new(backend, FailMode::Open, false, false)),
        })
    }

    /// A limiter with another algorithm, same policy and backend.
    pub fn algorithm(self, algorithm: Algorithm) -> Result<Self, PolicyError> {
        let policy = Policy::clone(&self.policy).with_algorithm(algorithm);
        Self::with_policy(policy, self.engine.backend().clone())
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        self.engine.backend()
    }

    fn set(&self, key: Key, cost: u64) -> LimitSet {
        LimitSet::single(self.policy.clone(), key, cost)
    }

    /// Checks `cost` units for `key` and counts them if allowed.
    pub async fn check(&self, key: impl Into<Key>, cost: u64) -> Result<Decision, BackendError> {
        let key = key.into();
        // In memory: answered at once, without a set.
        if let Some(decision) = self.engine.backend().acquire_now(&self.policy, &key, cost) {
            return Ok(decision);
        }
        let outcome = self.engine.acquire_reported(&self.set(key, cost)).await?;
        first(outcome.decisions())
    }

    /// Would one unit for `key` be allowed? Counts nothing; `remaining` is
    /// what is available now.
    pub async fn peek(&self, key: impl Into<Key>) -> Result<Decision, BackendError> {
        let outcome = self.engine.backend().peek(&self.set(key.into(), 1)).await?;
        first(outcome.decisions())
    }

    /// Gives `key` its full quota back.
    pub async fn reset(&self, key: impl Into<Key>) -> Result<(), BackendError> {
        self.engine
            .backend()
            .reset(&self.set(key.into(), 0))
            .await?;
        Ok(())
    }
}

fn first(decisions: &[Decision]) -> Result<Decision, BackendError> {
    decisions
        .first()
        .copied()
        .ok_or_else(|| BackendError::Unavailable("backend returned no decision".into()))
}
