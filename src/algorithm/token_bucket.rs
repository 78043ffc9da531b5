//! Token bucket: `burst` tokens refilled continuously at `limit` per
//! `period`. The level is kept in nanoseconds of refill (tokens × interval)
//! so that refilling is exact integer addition.

use super::{mul, Commit, Decision, Input, State};
use crate::quota::Quota;
use crate::time::Nanos;

pub(super) fn check(quota: &Quota, state: &State, input: Input) -> (Decision, Option<Commit>) {
    let t = quota.emission_interval().as_u64().max(1);
    let capacity = mul(quota.burst(), t);
    let now = input.now.as_u64();
    let (level, last) = match state {
        State::Bucket { level, last } => (level.as_u64().min(capacity), last.as_u64()),
        _ => (capacity, now),
    };
    // Refill for the time elapsed; a clock behind `last` refills nothing.
    let level = level.saturating_add(now.saturating_sub(last)).min(capacity);
    let last = last.max(now);
    let need = mul(input.cost, t);
    let limit = quota.limit();
    if level >= need {
        let left = level - need;
        let decision = Decision::allow(limit, left / t, Nanos::new(capacity - left));
        let commit = (input.cost > 0).then(|| {
            Commit::Replace(State::Bucket {
                level: Nanos::new(left),
                last: Nanos::new(last),
            })
        });
        (decision, commit)
    } else {
        let retry = (need <= capacity).then(|| Nanos::new(need - level));
        (
            Decision::deny(limit, level / t, Nanos::new(capacity - level), retry),
            None,
        )
    }
}
