//! Sliding window log: the (instant, cost) of every admitted request; at
//! most `limit` units in any span of one period. An entry admitted at `t`
//! stops counting at `t + period`.
//!
//! Forced (see [`Algorithm::force`](super::Algorithm::force)): an entry
//! `(now, cost)` is appended whatever the log holds.
//!
//! Refunded (see [`Algorithm::refund`](super::Algorithm::refund)): `cost`
//! is taken off the entry of the refunded instant (the newest one at that
//! instant), which is removed at zero.

use super::{Commit, Decision, Input, State};
use crate::quota::Quota;
use crate::time::Nanos;

pub(super) fn check(quota: &Quota, state: &State, input: Input) -> (Decision, Option<Commit>) {
    let p = quota.period_nanos().as_u64().max(1);
    let now = input.now.as_u64();
    let live = |t: &Nanos| t.as_u64().saturating_add(p) > now;
    let empty = std::collections::VecDeque::new();
    let log = match state {
        State::Log(log) => log,
        _ => &empty,
    };
    let mut used: u64 = 0;
    let mut newest: Option<u64> = None;
    for (t, c) in log.iter().filter(|(t, _)| live(t)) {
        used = used.saturating_add(*c);
        newest = Some(t.as_u64());
    }
    let limit = quota.limit();
    let cost = input.cost;
    let until_expiry = |t: u64| Nanos::new(t.saturating_add(p).saturating_sub(now));
    if used.saturating_add(cost) <= limit {
        let reset = match (cost > 0, newest) {
            (true, _) => Nanos::new(p),
            (false, Some(t)) => until_expiry(t),
            (false, None) => Nanos::ZERO,
        };
        let decision = Decision::allow(limit, limit - used - cost, reset);
        let commit = (cost > 0).then_some(Commit::Log {
            at: input.now,
            period: Nanos::new(p),
            cost,
        });
        (decision, commit)
    } else {
        let reset = newest.map_or(Nanos::ZERO, until_expiry);
        let retry = if cost > limit {
            None
        } else {
            // Free the oldest entries until the request fits.
            let need = used + cost - limit;
            let mut freed: u64 = 0;
            log.iter()
                .filter(|(t, _)| live(t))
                .find(|(_, c)| {
                    freed = freed.saturating_add(*c);
                    freed >= need
                })
                .map(|(t, _)| until_expiry(t.as_u64()))
        };
        (
            Decision::deny(limit, limit.saturating_sub(used), reset, retry),
            None,
        )
    }
}

/// Appends `(now, cost)` (dropping expired entries), past the limit if
/// need be.
pub(super) fn force(quota: &Quota, state: &State, input: Input) -> State {
    let mut next = state.clone();
    next.apply(Commit::Log {
        at: input.now,
        period: Nanos::new(quota.period_nanos().as_u64().max(1)),
        cost: input.cost,
    });
    next
}

/// Takes `cost` off the newest entry at instant `input.now`, removing it at
/// zero; a log without such an entry (expired, or never counted), and any
/// other state, is kept.
pub(super) fn refund(state: &State, input: Input) -> State {
    let mut next = state.clone();
    if let State::Log(log) = &mut next {
        if let Some(i) = log.iter().rposition(|(t, _)| *t == input.now) {
            if let Some((_, c)) = log.get_mut(i) {
                *c = c.saturating_sub(input.cost);
                if *c == 0 {
                    log.remove(i);
                }
            }
        }
    }
    next
}
