//! Leaky bucket: a request pours `cost × interval` nanoseconds of water into
//! a bucket of capacity `burst × interval` that drains one nanosecond per
//! nanosecond. As a meter (`max_delay` zero) an overflowing request is
//! rejected; as a queue, a request that overflows by at most `max_delay` is
//! admitted and held for the overflow, so queued requests leave at the
//! sustained rate (nginx `limit_req burst= delay=`).
//!
//! Forced (see [`Algorithm::force`](super::Algorithm::force)): the water
//! is drained to `now`, then `cost × interval` is poured with no ceiling.
//!
//! Refunded (see [`Algorithm::refund`](super::Algorithm::refund)): the
//! stored water loses `cost × interval` (saturating); `last` is kept.

use super::{mul, Commit, Decision, Input, State};
use crate::quota::Quota;
use crate::time::Nanos;

#[inline]
pub(super) fn check(
    quota: &Quota,
    state: &State,
    input: Input,
    max_delay: Nanos,
) -> (Decision, Option<Commit>) {
    let t = quota.emission_interval().as_u64().max(1);
    let capacity = mul(quota.burst(), t);
    let ceiling = capacity.saturating_add(max_delay.as_u64());
    let now = input.now.as_u64();
    let (water, last) = match state {
        State::Bucket { level, last } => (level.as_u64(), last.as_u64()),
        _ => (0, now),
    };
    let water = water.saturating_sub(now.saturating_sub(last));
    let poured = water.saturating_add(mul(input.cost, t));
    let limit = quota.limit();
    if poured <= ceiling && mul(input.cost, t) <= capacity {
        // `remaining` counts what passes without delay.
        let mut decision = Decision::allow(
            limit,
            capacity.saturating_sub(poured) / t,
            Nanos::new(poured),
        );
        decision.delay = Nanos::new(poured.saturating_sub(capacity));
        let commit = (input.cost > 0).then(|| {
            Commit::Replace(State::Bucket {
                level: Nanos::new(poured),
                last: Nanos::new(now.max(last)),
            })
        });
        (decision, commit)
    } else {
        // A request larger than the bucket never fits, however long it waits.
        let retry = (mul(input.cost, t) <= capacity).then(|| Nanos::new(poured - ceiling));
        let remaining = capacity.saturating_sub(water) / t;
        (
            Decision::deny(limit, remaining, Nanos::new(water), retry),
            None,
        )
    }
}

/// Drains to `now`, then pours `cost·T` with no ceiling.
pub(super) fn force(quota: &Quota, state: &State, input: Input) -> State {
    let t = quota.emission_interval().as_u64().max(1);
    let now = input.now.as_u64();
    let (water, last) = match state {
        State::Bucket { level, last } => (level.as_u64(), last.as_u64()),
        _ => (0, now),
    };
    let water = water.saturating_sub(now.saturating_sub(last));
    State::Bucket {
        level: Nanos::new(water.saturating_add(mul(input.cost, t))),
        last: Nanos::new(now.max(last)),
    }
}

/// Takes `cost·T` off the stored water (saturating); any other state is
/// kept.
pub(super) fn refund(quota: &Quota, state: &State, input: Input) -> State {
    let t = quota.emission_interval().as_u64().max(1);
    match state {
        State::Bucket { level, last } => State::Bucket {
            level: Nanos::new(level.as_u64().saturating_sub(mul(input.cost, t))),
            last: *last,
        },
        other => other.clone(),
    }
}
