//! GCRA, virtual-scheduling form: the state is the theoretical arrival time
//! (TAT) of the next request. With interval `T = period / limit` and
//! capacity `D = burst × T`, a request of cost `c` is admitted when
//! `max(TAT, now) + c·T − now ≤ D`.
//!
//! Forced (see [`Algorithm::force`](super::Algorithm::force)):
//! `TAT' = max(TAT, now) + c·T`, with no cap, so a key can be taken past its
//! capacity and pays the excess back at the sustained rate.
//!
//! Refunded (see [`Algorithm::refund`](super::Algorithm::refund)):
//! `TAT' = TAT − c·T`, saturating.

use super::{mul, Commit, Decision, Input, State};
use crate::quota::Quota;
use crate::time::Nanos;

pub(super) fn check(quota: &Quota, state: &State, input: Input) -> (Decision, Option<Commit>) {
    let stored = match state {
        State::Gcra { tat } => tat.as_u64(),
        _ => 0,
    };
    let (decision, next) = check_tat(quota, stored, input);
    let commit = next.map(|tat| {
        Commit::Replace(State::Gcra {
            tat: Nanos::new(tat),
        })
    });
    (decision, commit)
}

/// [`check`] on the bare TAT (0 for a fresh key), returning the TAT to
/// store, if any: the memory backend's fast path, inlined into it so the
/// decision never makes a round trip through memory.
#[inline]
pub(crate) fn check_tat(quota: &Quota, stored: u64, input: Input) -> (Decision, Option<u64>) {
    let t = quota.emission_interval().as_u64().max(1);
    let capacity = mul(quota.burst(), t);
    let now = input.now.as_u64();
    let tat = stored.max(now);
    let increment = mul(input.cost, t);
    let new_tat = tat.saturating_add(increment);
    let limit = quota.limit();
    if new_tat - now <= capacity {
        let remaining = (capacity - (new_tat - now)) / t;
        let decision = Decision::allow(limit, remaining, Nanos::new(new_tat - now));
        (decision, (input.cost > 0).then_some(new_tat))
    } else {
        let remaining = capacity.saturating_sub(tat - now) / t;
        let retry = (increment <= capacity).then(|| Nanos::new(new_tat - capacity - now));
        (
            Decision::deny(limit, remaining, Nanos::new(tat - now), retry),
            None,
        )
    }
}

/// `TAT' = max(TAT, now) + cost·T`, even beyond the capacity.
pub(super) fn force(quota: &Quota, state: &State, input: Input) -> State {
    let t = quota.emission_interval().as_u64().max(1);
    let stored = match state {
        State::Gcra { tat } => tat.as_u64(),
        _ => 0,
    };
    let tat = stored.max(input.now.as_u64());
    State::Gcra {
        tat: Nanos::new(tat.saturating_add(mul(input.cost, t))),
    }
}

/// `TAT' = TAT − cost·T` (saturating); any other state is kept.
pub(super) fn refund(quota: &Quota, state: &State, input: Input) -> State {
    let t = quota.emission_interval().as_u64().max(1);
    match state {
        State::Gcra { tat } => State::Gcra {
            tat: Nanos::new(tat.as_u64().saturating_sub(mul(input.cost, t))),
        },
        other => other.clone(),
    }
}
