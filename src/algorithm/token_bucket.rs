//! Token bucket: `burst` tokens refilled continuously at `limit` per
//! `period`. The level is kept in nanoseconds of refill (tokens × interval)
//! so that refilling is exact integer addition.
//!
//! The level cannot go below zero, so a debt (units counted beyond the
//! level, by [`Algorithm::force`](super::Algorithm::force)) is kept by
//! moving `last` past `now` by the deficit: refill starts again only once the
//! debt is paid, which is exactly where GCRA's TAT would put it. A `last`
//! ahead of `now` (a debt, or a clock that went back) refills nothing until
//! `now` reaches it, and `retry_after` / `reset_after` include the wait.
//!
//! Refunded (see [`Algorithm::refund`](super::Algorithm::refund)): the
//! stored level gets `cost·T` back, capped at the capacity; `last` is kept.

use super::{mul, Commit, Decision, Input, State};
use crate::quota::Quota;
use crate::time::Nanos;

#[inline]
pub(super) fn check(quota: &Quota, state: &State, input: Input) -> (Decision, Option<Commit>) {
    let t = quota.emission_interval().as_u64().max(1);
    let capacity = mul(quota.burst(), t);
    let now = input.now.as_u64();
    let (level, last, debt) = level_at(state, capacity, now);
    let need = mul(input.cost, t);
    let limit = quota.limit();
    if level >= need {
        let left = level - need;
        let reset = debt.saturating_add(capacity - left);
        let decision = Decision::allow(limit, left / t, Nanos::new(reset));
        let commit = (input.cost > 0).then(|| {
            Commit::Replace(State::Bucket {
                level: Nanos::new(left),
                last: Nanos::new(last),
            })
        });
        (decision, commit)
    } else {
        let retry = (need <= capacity).then(|| Nanos::new(debt.saturating_add(need - level)));
        let reset = debt.saturating_add(capacity - level);
        (
            Decision::deny(limit, level / t, Nanos::new(reset), retry),
            None,
        )
    }
}

/// The level at `now`, the instant it is counted from, and the time until
/// refill starts again (non-zero only while `last` is ahead of `now`).
fn level_at(state: &State, capacity: u64, now: u64) -> (u64, u64, u64) {
    let (level, last) = match state {
        State::Bucket { level, last } => (level.as_u64().min(capacity), last.as_u64()),
        _ => (capacity, now),
    };
    // Refill for the time elapsed; a `last` ahead of `now` refills nothing.
    let level = level.saturating_add(now.saturating_sub(last)).min(capacity);
    (level, last.max(now), last.saturating_sub(now))
}

/// Takes `cost·T` from the level; a deficit moves `last` forward by itself.
pub(super) fn force(quota: &Quota, state: &State, input: Input) -> State {
    let t = quota.emission_interval().as_u64().max(1);
    let capacity = mul(quota.burst(), t);
    let (level, last, _) = level_at(state, capacity, input.now.as_u64());
    let need = mul(input.cost, t);
    if level >= need {
        State::Bucket {
            level: Nanos::new(level - need),
            last: Nanos::new(last),
        }
    } else {
        State::Bucket {
            level: Nanos::ZERO,
            last: Nanos::new(last.saturating_add(need - level)),
        }
    }
}

/// Gives `cost·T` back to the stored level, up to the capacity; any other
/// state is kept.
pub(super) fn refund(quota: &Quota, state: &State, input: Input) -> State {
    let t = quota.emission_interval().as_u64().max(1);
    let capacity = mul(quota.burst(), t);
    match state {
        State::Bucket { level, last } => State::Bucket {
            level: Nanos::new(
                level
                    .as_u64()
                    .saturating_add(mul(input.cost, t))
                    .min(capacity),
            ),
            last: *last,
        },
        other => other.clone(),
    }
}
