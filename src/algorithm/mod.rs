//! The six algorithms as pure state machines.
//!
//! Each is a function of (stored state, now, quota, cost) → (decision, the
//! write to make). Time is passed in, never read here, so the same code
//! serves the in-memory backend, the conformance table and the property
//! tests, and the Redis scripts mirror it line for line.
//!
//! All arithmetic is on integer nanoseconds ([`Nanos`]), widened to `u128`
//! where products could overflow; nothing is rounded until a header is
//! written.

mod fixed_window;
pub(crate) mod gcra;
mod leaky_bucket;
mod sliding_log;
mod sliding_window;
mod token_bucket;

use std::collections::VecDeque;
use std::time::Duration;

use crate::quota::Quota;
use crate::time::Nanos;

/// The largest limit the sliding window log accepts: it stores one
/// timestamp per admitted request, so memory grows with the limit. Above
/// this, use [`Algorithm::SlidingWindow`] (the counter), which stores three
/// numbers whatever the limit.
pub const MAX_LOG_LIMIT: u64 = 100_000;

/// How requests are counted against a [`Quota`].
///
/// See [`Quota`] for a table of what each admits with `per_second(10)`.
///
/// ```
/// use std::time::Duration;
/// use tollgate::Algorithm;
///
/// let a = Algorithm::SlidingWindow;
/// let q = Algorithm::LeakyBucketQueue { max_delay: Duration::from_millis(500) };
/// assert_ne!(a, q);
/// assert_eq!(Algorithm::default(), Algorithm::Gcra);
/// ```
///
/// ## Counting over the limit
///
/// Counting `c` units **whatever the limit says** is what
/// [`Backend::absorb`](crate::backend::Backend::absorb) runs: writing
/// back consumption that was already admitted elsewhere (by a fallback
/// during an outage), so a key may end up over its limit and pays the
/// excess back the way the algorithm repays any consumption.
///
/// The state written, with `T` the emission interval
/// (`period / limit`), `D = burst × T`, `c` the cost:
///
/// | algorithm | forced state |
/// |---|---|
/// | GCRA | `TAT' = max(TAT, now) + c·T` |
/// | token bucket | refill to `now` (capped at `D`), then take `c·T`; a deficit `d` leaves the level at 0 and moves `last` to `max(last, now) + d` (refill restarts once the debt is paid) |
/// | leaky bucket (meter and queue) | drain to `now`, then pour `c·T` with no ceiling; `last' = max(last, now)` |
/// | fixed window (aligned, staggered) | the current window's count `+ c` (forgotten when the window ends) |
/// | sliding window counter | roll the windows to `now`, then current count `+ c` |
/// | sliding window log | append `(now, c)` after dropping entries older than one period |
///
/// A cost of zero changes nothing. The decision:
///
/// - `allowed`: whether the units fitted (what `check` with this cost
///   would have said before the write);
/// - `limit`: the quota's limit;
/// - `remaining`, `reset_after`: what a peek reports right
///   after the write (`remaining` is 0 while the key is over its limit;
///   `reset_after` is when nothing counts any more, debt included);
/// - `retry_after`: `None` if a request of cost 1 would be admitted right
///   after the write, else when it would be (exact, like `check`'s);
/// - `delay`: zero.
///
/// ## Refunds
///
/// Giving back `c` units that a check at instant `at` admitted and
/// committed is what
/// [`Backend::refund`](crate::backend::Backend::refund) runs, and the
/// Rust twin of the Redis script's refund (mode `u`): for a policy that
/// counts only some responses (say, failed logins), the others are
/// refunded after the response, with the instant of their acquire
/// ([`Outcome::at`](crate::backend::Outcome::at)) and the same
/// `key_hash`.
///
/// The state written, with `T` the emission interval
/// (`period / limit`), `D = burst × T`, `c` the cost, `at` the instant
/// of the refunded acquire:
///
/// | algorithm | refunded state |
/// |---|---|
/// | GCRA | `TAT' = TAT − c·T`, saturating at zero |
/// | token bucket | `level' = min(level + c·T, D)`, `last` kept |
/// | leaky bucket (meter and queue) | `level' = level − c·T`, saturating at zero; `last` kept |
/// | fixed window (aligned, staggered) | `count − c` (saturating) if the stored window is the one holding `at`, else unchanged |
/// | sliding window counter | `curr − c` if the stored window holds `at`; `prev − c` if the stored window is the next one (rolled over since); else unchanged (saturating) |
/// | sliding window log | `c` taken off the newest entry at instant `at`, removed at zero; unchanged if there is none |
///
/// A cost of zero, a fresh state and a state of another algorithm's
/// kind change nothing: a refund never creates state.
///
/// **Exactness.** A refund at the acquire's own instant, with nothing
/// counted in between, gives back a state that peeks
/// exactly like the state before the acquire, and admits exactly the
/// same requests afterwards, for every algorithm (the token bucket's
/// cap never binds then: the level given back was there before). The
/// windows (fixed, counter, log) stay exact however late the refund
/// runs: the units are taken off the very count, or log entry, that
/// holds them, and nothing once that has expired. The buckets (GCRA,
/// token, leaky) only keep one level: if the key went idle between the
/// acquire and the refund, the units had already been repaid, and the
/// refund gives back up to `c·T` more (a token bucket never above its
/// capacity). Refunds are meant to follow their acquire within one
/// request's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// Generic cell rate algorithm (the default, as in governor): one word
    /// of state (the theoretical arrival time). Admits `burst` at once, then
    /// one request every `period / limit`.
    #[default]
    Gcra,
    /// Token bucket: `burst` tokens, refilled continuously at `limit` per
    /// `period`; a request takes `cost` tokens. Admits exactly what GCRA
    /// admits; it keeps the token level and the last refill instead.
    TokenBucket,
    /// Leaky bucket as a meter (policing): a request pours `cost` into a
    /// bucket of size `burst` that drains at `limit` per `period`; a request
    /// that would overflow is rejected.
    LeakyBucket,
    /// Leaky bucket as a queue, like nginx `limit_req burst= delay=`: the
    /// first `burst` requests pass at once; the ones after them are
    /// **delayed** (the service waits before calling the inner service) so
    /// that they leave at the sustained rate, as long as the wait is at most
    /// `max_delay`; beyond that they are rejected.
    LeakyBucketQueue {
        /// The longest a request may be held before it is passed on.
        max_delay: Duration,
    },
    /// Fixed window aligned to the clock (every window starts at a multiple
    /// of the period since the Unix epoch): `limit` per window.
    FixedWindow,
    /// Fixed window whose start is offset per key (a stable hash of the key
    /// modulo the period), so that clients' windows do not all reset at the
    /// same instant.
    FixedWindowStaggered,
    /// Sliding window counter: the current clock-aligned window's count plus
    /// the previous window's count weighted by how much of it still overlaps
    /// the sliding window. Three numbers of state.
    SlidingWindow,
    /// Sliding window log: one timestamp per admitted request; at most
    /// `limit` in **any** span of one period. Limits above
    /// [`MAX_LOG_LIMIT`] are a configuration error.
    SlidingWindowLog,
}

impl Algorithm {
    /// A short name, used in logs, metrics and `RateLimit-Policy` vendor
    /// parameters.
    pub const fn name(&self) -> &'static str {
        match self {
            Algorithm::Gcra => "gcra",
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::LeakyBucket => "leaky_bucket",
            Algorithm::LeakyBucketQueue { .. } => "leaky_bucket_queue",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::FixedWindowStaggered => "fixed_window_staggered",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::SlidingWindowLog => "sliding_window_log",
        }
    }

    /// Whether the algorithm is one of the windowed ones (no burst).
    pub const fn is_windowed(&self) -> bool {
        matches!(
            self,
            Algorithm::FixedWindow
                | Algorithm::FixedWindowStaggered
                | Algorithm::SlidingWindow
                | Algorithm::SlidingWindowLog
        )
    }

    /// Checks that `quota` can be enforced with this algorithm.
    pub fn validate(&self, quota: &Quota) -> Result<(), AlgorithmError> {
        if self.is_windowed() && quota.has_explicit_burst() && quota.burst() != quota.limit() {
            return Err(AlgorithmError::BurstNotSupported {
                algorithm: self.name(),
            });
        }
        if *self == Algorithm::SlidingWindowLog && quota.limit() > MAX_LOG_LIMIT {
            return Err(AlgorithmError::LogLimitTooLarge {
                limit: quota.limit(),
            });
        }
        if let Algorithm::LeakyBucketQueue { max_delay } = self {
            if *max_delay > crate::quota::MAX_PERIOD {
                return Err(AlgorithmError::MaxDelayTooLong(*max_delay));
            }
        }
        Ok(())
    }

    /// Where a fixed window of this key starts within each period: at the
    /// clock's period boundaries, or (staggered) offset by the key's hash.
    fn window_offset(&self, quota: &Quota, key_hash: u64) -> Nanos {
        match self {
            Algorithm::FixedWindowStaggered => {
                Nanos::new(key_hash % quota.period_nanos().as_u64().max(1))
            }
            _ => Nanos::ZERO,
        }
    }

    /// Decides one request. Pure: the caller passes the stored state and the
    /// time, and applies the returned [`Commit`] only if it wants the
    /// request counted (all limits of a set allowed it).
    #[inline]
    pub(crate) fn check(
        &self,
        quota: &Quota,
        state: &State,
        input: Input,
    ) -> (Decision, Option<Commit>) {
        match self {
            Algorithm::Gcra => gcra::check(quota, state, input),
            Algorithm::TokenBucket => token_bucket::check(quota, state, input),
            Algorithm::LeakyBucket => leaky_bucket::check(quota, state, input, Nanos::ZERO),
            Algorithm::LeakyBucketQueue { max_delay } => {
                leaky_bucket::check(quota, state, input, Nanos::from(*max_delay))
            }
            Algorithm::FixedWindow | Algorithm::FixedWindowStaggered => fixed_window::check(
                quota,
                state,
                input,
                self.window_offset(quota, input.key_hash),
            ),
            Algorithm::SlidingWindow => sliding_window::check(quota, state, input),
            Algorithm::SlidingWindowLog => sliding_log::check(quota, state, input),
        }
    }

    /// Counts `input.cost` units whatever the limit says (see
    /// "Counting over the limit" on [`Algorithm`]), and returns the
    /// resulting decision and the state to store. Pure, like `check`.
    pub(crate) fn force(&self, quota: &Quota, state: &State, input: Input) -> (Decision, State) {
        let (before, _) = self.check(quota, state, input);
        let next = if input.cost == 0 {
            state.clone()
        } else {
            match self {
                Algorithm::Gcra => gcra::force(quota, state, input),
                Algorithm::TokenBucket => token_bucket::force(quota, state, input),
                Algorithm::LeakyBucket | Algorithm::LeakyBucketQueue { .. } => {
                    leaky_bucket::force(quota, state, input)
                }
                Algorithm::FixedWindow | Algorithm::FixedWindowStaggered => fixed_window::force(
                    quota,
                    state,
                    input,
                    self.window_offset(quota, input.key_hash),
                ),
                Algorithm::SlidingWindow => sliding_window::force(quota, state, input),
                Algorithm::SlidingWindowLog => sliding_log::force(quota, state, input),
            }
        };
        let (one, _) = self.check(quota, &next, Input { cost: 1, ..input });
        let after = self.peek(quota, &next, input.now, input.key_hash);
        let decision = Decision {
            allowed: before.allowed,
            limit: quota.limit(),
            remaining: after.remaining,
            reset_after: after.reset_after,
            retry_after: if one.allowed { None } else { one.retry_after },
            delay: Nanos::ZERO,
        };
        (decision, next)
    }

    /// Gives back `input.cost` units that a `check` at instant `input.now`
    /// admitted and committed (see "Refunds" on [`Algorithm`]), and
    /// returns the state to store. Pure, like `check`.
    pub(crate) fn refund(&self, quota: &Quota, state: &State, input: Input) -> State {
        if input.cost == 0 {
            return state.clone();
        }
        match self {
            Algorithm::Gcra => gcra::refund(quota, state, input),
            Algorithm::TokenBucket => token_bucket::refund(quota, state, input),
            Algorithm::LeakyBucket | Algorithm::LeakyBucketQueue { .. } => {
                leaky_bucket::refund(quota, state, input)
            }
            Algorithm::FixedWindow | Algorithm::FixedWindowStaggered => fixed_window::refund(
                quota,
                state,
                input,
                self.window_offset(quota, input.key_hash),
            ),
            Algorithm::SlidingWindow => sliding_window::refund(quota, state, input),
            Algorithm::SlidingWindowLog => sliding_log::refund(state, input),
        }
    }

    /// What the state of a key is before any request: what `peek` reports.
    pub(crate) fn peek(&self, quota: &Quota, state: &State, now: Nanos, key_hash: u64) -> Decision {
        // A zero-cost check consumes nothing and is always allowed; its
        // remaining and reset are the current ones.
        let (d, _) = self.check(
            quota,
            state,
            Input {
                now,
                cost: 0,
                key_hash,
            },
        );
        d
    }
}

/// Why an algorithm cannot enforce a quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlgorithmError {
    /// Windowed algorithms admit `limit` per window and have no burst.
    #[error("{algorithm} has no burst: it admits exactly `limit` per window; remove .with_burst() or use Algorithm::Gcra / TokenBucket / LeakyBucket")]
    BurstNotSupported {
        /// The algorithm's name.
        algorithm: &'static str,
    },
    /// The sliding log stores one entry per request.
    #[error("sliding_window_log stores one timestamp per request; a limit of {limit} is above its maximum of 100000: use Algorithm::SlidingWindow")]
    LogLimitTooLarge {
        /// The limit asked for.
        limit: u64,
    },
    /// The queue's maximum delay is absurdly long.
    #[error("a leaky bucket queue delay of {0:?} is longer than 366 days")]
    MaxDelayTooLong(Duration),
}

/// What an algorithm is given besides state and quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Input {
    /// The instant of the request.
    pub(crate) now: Nanos,
    /// How many units the request takes (1 for a plain request; 0 peeks).
    pub(crate) cost: u64,
    /// A stable hash of the key, used to stagger per-key windows.
    pub(crate) key_hash: u64,
}

/// The answer for one limit: exact to the nanosecond; rounded only when a
/// header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// The quota's limit (what `X-RateLimit-Limit` reports).
    pub limit: u64,
    /// Requests of cost 1 that would still pass right now, after this one
    /// was counted (when allowed).
    pub remaining: u64,
    /// Time until the quota is fully back (nothing counted any more).
    pub reset_after: Nanos,
    /// When denied: time until a request of the same cost would be
    /// admitted, never earlier; `None` when allowed, or when the cost is
    /// larger than the whole quota and no wait helps.
    pub retry_after: Option<Nanos>,
    /// When allowed by [`Algorithm::LeakyBucketQueue`]: how long the request
    /// must wait before it is passed on. Zero otherwise.
    pub delay: Nanos,
}

impl Decision {
    pub(crate) fn allow(limit: u64, remaining: u64, reset_after: Nanos) -> Self {
        Decision {
            allowed: true,
            limit,
            remaining,
            reset_after,
            retry_after: None,
            delay: Nanos::ZERO,
        }
    }

    pub(crate) fn deny(
        limit: u64,
        remaining: u64,
        reset_after: Nanos,
        retry_after: Option<Nanos>,
    ) -> Self {
        Decision {
            allowed: false,
            limit,
            remaining,
            reset_after,
            retry_after,
            delay: Nanos::ZERO,
        }
    }

    /// Whether the request was denied and can never be admitted at its cost
    /// (the cost exceeds the quota's capacity).
    pub fn is_never_admissible(&self) -> bool {
        !self.allowed && self.retry_after.is_none()
    }
}

/// The stored state of one key under one algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub(crate) enum State {
    /// Never seen, or expired: the full quota is available.
    #[default]
    Fresh,
    /// GCRA: the theoretical arrival time of the next request.
    Gcra {
        /// Theoretical arrival time.
        tat: Nanos,
    },
    /// Token bucket and leaky bucket: a level measured in nanoseconds of
    /// refill (tokens × interval, or water × interval) at `last`.
    Bucket {
        /// Level at `last`.
        level: Nanos,
        /// When the level was last computed.
        last: Nanos,
    },
    /// Fixed window: the window's start and its count.
    Window {
        /// Start of the window.
        start: Nanos,
        /// Units counted in it.
        count: u64,
    },
    /// Sliding window counter: the current aligned window's start, the
    /// previous window's count and the current one's.
    Sliding {
        /// Start of the current window.
        start: Nanos,
        /// Count of the window before it.
        prev: u64,
        /// Count of the current window.
        curr: u64,
    },
    /// Sliding window log: (instant, cost) of admitted requests, oldest
    /// first.
    Log(VecDeque<(Nanos, u64)>),
}

impl State {
    /// Applies a [`Commit`] returned by [`Algorithm::check`].
    pub(crate) fn apply(&mut self, commit: Commit) {
        match commit {
            Commit::Replace(next) => *self = next,
            Commit::Log { at, period, cost } => {
                if !matches!(self, State::Log(_)) {
                    *self = State::Log(VecDeque::new());
                }
                if let State::Log(log) = self {
                    while log
                        .front()
                        .is_some_and(|(t, _)| t.saturating_add(period) <= at)
                    {
                        log.pop_front();
                    }
                    // In instant order: an earlier instant than the newest
                    // (a clock that went back; in Redis, the slots of a
                    // cluster set) goes where it belongs, near the end.
                    let at_or_before = log.iter().rposition(|(t, _)| *t <= at);
                    match at_or_before.and_then(|i| log.get_mut(i)) {
                        // Same instant: merge so the log never holds more
                        // entries than distinct admission instants.
                        Some((t, c)) if *t == at => *c = c.saturating_add(cost),
                        _ if cost > 0 => log.insert(at_or_before.map_or(0, |i| i + 1), (at, cost)),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The write that counts a request, returned by [`Algorithm::check`] and
/// applied with [`State::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Commit {
    /// Replace the state (every algorithm but the log).
    Replace(State),
    /// Drop log entries that are out of the window ending at `at`, then
    /// append one.
    Log {
        /// The admitted request's instant.
        at: Nanos,
        /// The window's length: an entry at `t` counts until `t + period`.
        period: Nanos,
        /// Its cost.
        cost: u64,
    },
}

/// `a * b / c` in 128 bits, rounded down, saturating to `u64::MAX`.
pub(crate) fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    if c == 0 {
        return u64::MAX;
    }
    let r = u128::from(a) * u128::from(b) / u128::from(c);
    u64::try_from(r).unwrap_or(u64::MAX)
}

/// `a * b`, saturating.
pub(crate) fn mul(a: u64, b: u64) -> u64 {
    a.saturating_mul(b)
}

#[cfg(test)]
pub(crate) mod tests;
