//! Fixed window: `limit` per window of one period. Windows start at
//! multiples of the period since the epoch, shifted by `offset` (zero when
//! clock-aligned, a per-key hash when staggered).
//!
//! Forced (see [`Algorithm::force`](super::Algorithm::force)): `cost` is
//! added to the current window's count with no cap; like any count, it is
//! forgotten when the window ends.
//!
//! Refunded (see [`Algorithm::refund`](super::Algorithm::refund)): `cost`
//! is taken off the count (saturating) only while the stored window is the
//! one holding the refunded instant.

use super::{Commit, Decision, Input, State};
use crate::quota::Quota;
use crate::time::Nanos;

#[inline]
pub(super) fn check(
    quota: &Quota,
    state: &State,
    input: Input,
    offset: Nanos,
) -> (Decision, Option<Commit>) {
    let p = quota.period_nanos().as_u64().max(1);
    let (start, phase, count) = window(state, p, input.now.as_u64(), offset);
    let limit = quota.limit();
    let until_end = Nanos::new(p - phase);
    let cost = input.cost;
    if count.saturating_add(cost) <= limit {
        let counted = count + cost;
        let reset = if counted == 0 { Nanos::ZERO } else { until_end };
        let decision = Decision::allow(limit, limit - counted, reset);
        let commit = (cost > 0).then(|| {
            Commit::Replace(State::Window {
                start: Nanos::new(start),
                count: counted,
            })
        });
        (decision, commit)
    } else {
        let retry = (cost <= limit).then_some(until_end);
        let reset = if count == 0 { Nanos::ZERO } else { until_end };
        (
            Decision::deny(limit, limit.saturating_sub(count), reset, retry),
            None,
        )
    }
}

/// The start of the window holding `now`, the phase of `now` in it, and the
/// count stored for that window.
fn window(state: &State, p: u64, now: u64, offset: Nanos) -> (u64, u64, u64) {
    let offset = offset.as_u64() % p;
    // Phase of `now` inside its window; computed without going below zero.
    let phase = (now % p + p - offset) % p;
    // Near zero a staggered window may start "before" the epoch: its start
    // saturates to zero, which no other window can have.
    let start = now.saturating_sub(phase);
    let count = match state {
        State::Window { start: s, count } if s.as_u64() == start => *count,
        _ => 0,
    };
    (start, phase, count)
}

/// Adds `cost` to the current window's count, past the limit if need be.
pub(super) fn force(quota: &Quota, state: &State, input: Input, offset: Nanos) -> State {
    let p = quota.period_nanos().as_u64().max(1);
    let (start, _, count) = window(state, p, input.now.as_u64(), offset);
    State::Window {
        start: Nanos::new(start),
        count: count.saturating_add(input.cost),
    }
}

/// Takes `cost` off the count if the stored window is the one holding
/// `input.now` (the instant of the refunded acquire); otherwise, and for
/// any other state, the state is kept.
pub(super) fn refund(quota: &Quota, state: &State, input: Input, offset: Nanos) -> State {
    let p = quota.period_nanos().as_u64().max(1);
    let (start, _, _) = window(state, p, input.now.as_u64(), offset);
    match state {
        State::Window { start: s, count } if s.as_u64() == start => State::Window {
            start: *s,
            count: count.saturating_sub(input.cost),
        },
        other => other.clone(),
    }
}
