//! Sliding window counter: the previous aligned window's count, weighted by
//! the share of it the sliding window still covers (rounded down), plus the
//! current window's count, must stay within `limit`.
//!
//! Forced (see [`Algorithm::force`](super::Algorithm::force)): the windows
//! are rolled to `now`, then `cost` is added to the current count with no
//! cap.
//!
//! Refunded (see [`Algorithm::refund`](super::Algorithm::refund)): `cost`
//! is taken off `curr` if the stored window holds the refunded instant, off
//! `prev` if the stored window is the next one (it rolled over since).

use super::{mul_div, Commit, Decision, Input, State};
use crate::quota::Quota;
use crate::time::Nanos;

/// The smallest offset `e` into a window at which
/// `floor(count × (p − e) / p) ≤ allowed`.
fn first_offset_within(count: u64, p: u64, allowed: u64) -> u64 {
    if count <= allowed {
        return 0;
    }
    let numerator = u128::from(allowed + 1) * u128::from(p) - 1;
    let span = numerator / u128::from(count);
    // `count > allowed` makes `span < p`.
    p - u64::try_from(span).unwrap_or(p)
}

#[inline]
pub(super) fn check(quota: &Quota, state: &State, input: Input) -> (Decision, Option<Commit>) {
    let p = quota.period_nanos().as_u64().max(1);
    let now = input.now.as_u64();
    let start = now - now % p;
    let elapsed = now - start;
    let (prev, curr) = counts(state, start, p);
    let weighted = mul_div(prev, p - elapsed, p);
    let used = weighted.saturating_add(curr);
    let limit = quota.limit();
    let cost = input.cost;
    // Time until nothing counts any more, given the counts.
    // Instants are offsets from `start`; `now` is `start + elapsed`.
    let after = |offset: u64| Nanos::new(offset - elapsed);
    let reset = |prev: u64, curr: u64| -> Nanos {
        if curr > 0 {
            after(p + first_offset_within(curr, p, 0))
        } else if mul_div(prev, p - elapsed, p) > 0 {
            after(first_offset_within(prev, p, 0))
        } else {
            Nanos::ZERO
        }
    };
    if used.saturating_add(cost) <= limit {
        let counted = curr + cost;
        let decision = Decision::allow(limit, limit - used - cost, reset(prev, counted));
        let commit = (cost > 0).then(|| {
            Commit::Replace(State::Sliding {
                start: Nanos::new(start),
                prev,
                curr: counted,
            })
        });
        (decision, commit)
    } else {
        let retry = if cost > limit {
            None
        } else if curr + cost <= limit {
            Some(after(first_offset_within(prev, p, limit - curr - cost)))
        } else {
            Some(after(p + first_offset_within(curr, p, limit - cost)))
        };
        (
            Decision::deny(limit, limit.saturating_sub(used), reset(prev, curr), retry),
            None,
        )
    }
}

/// The previous and current counts of the window starting at `start`.
fn counts(state: &State, start: u64, p: u64) -> (u64, u64) {
    match state {
        State::Sliding {
            start: s,
            prev,
            curr,
        } if s.as_u64() == start => (*prev, *curr),
        State::Sliding { start: s, curr, .. } if s.as_u64().saturating_add(p) == start => {
            (*curr, 0)
        }
        _ => (0, 0),
    }
}

/// Rolls the windows to `now` and adds `cost` to the current count.
pub(super) fn force(quota: &Quota, state: &State, input: Input) -> State {
    let p = quota.period_nanos().as_u64().max(1);
    let now = input.now.as_u64();
    let start = now - now % p;
    let (prev, curr) = counts(state, start, p);
    State::Sliding {
        start: Nanos::new(start),
        prev,
        curr: curr.saturating_add(input.cost),
    }
}

/// Takes `cost` off the count that holds the units counted at `input.now`:
/// `curr` while the stored window is that instant's, `prev` once it has
/// rolled over to the next window; otherwise, and for any other state, the
/// state is kept.
pub(super) fn refund(quota: &Quota, state: &State, input: Input) -> State {
    let p = quota.period_nanos().as_u64().max(1);
    let at = input.now.as_u64();
    let start = at - at % p;
    match state {
        State::Sliding {
            start: s,
            prev,
            curr,
        } if s.as_u64() == start => State::Sliding {
            start: *s,
            prev: *prev,
            curr: curr.saturating_sub(input.cost),
        },
        State::Sliding {
            start: s,
            prev,
            curr,
        } if s.as_u64() == start.saturating_add(p) => State::Sliding {
            start: *s,
            prev: prev.saturating_sub(input.cost),
            curr: *curr,
        },
        other => other.clone(),
    }
}
