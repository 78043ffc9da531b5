//! Redis Cluster: a set whose keys span slots, checked with one script call
//! per slot at one instant, all-or-nothing by refund (see
//! [Redis Cluster](super::RedisBackend#redis-cluster)).

use ::redis::cluster_routing::Slot;
use smallvec::SmallVec;

use super::call::{Call, Mode};
use super::reply::malformed;
use super::Inner;
use crate::backend::{BackendError, Outcome};
use crate::time::Nanos;
use crate::Decision;

/// The positions of `keys` grouped by cluster slot, groups in the order of
/// their first key.
pub(super) fn slot_groups(keys: &[String]) -> SmallVec<[(Slot, SmallVec<[usize; 2]>); 2]> {
    let mut groups: SmallVec<[(Slot, SmallVec<[usize; 2]>); 2]> = SmallVec::new();
    for (j, key) in keys.iter().enumerate() {
        let slot = Slot::for_key(key.as_bytes());
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, members)) => members.push(j),
            None => groups.push((slot, smallvec::smallvec![j])),
        }
    }
    groups
}

impl Inner {
    /// A set whose keys span cluster slots: one script call per slot, in
    /// order, all at one instant (the caller's, or the server clock the
    /// first slot's script read); an acquire that does not pass everywhere
    /// refunds what the slots that passed committed.
    pub(super) async fn run_split(
        &self,
        call: &Call,
        groups: &[(Slot, SmallVec<[usize; 2]>)],
    ) -> Result<Outcome, BackendError> {
        // Without an instant from the caller, the first slot's script reads
        // its master's `TIME` and reports it: the other slots run at that
        // instant, and no call spends a round trip of its own on `TIME`
        // (under a burst, every round trip waits behind the whole queue).
        let mut now = call.now;
        let mut decisions: SmallVec<[Option<Decision>; 4]> =
            smallvec::smallvec![None; call.keys.len()];
        let mut allowed = true;
        // Per group, the positions of the limits its acquire committed.
        let mut committed: SmallVec<[SmallVec<[usize; 2]>; 2]> = SmallVec::new();
        let mut failure = None;
        // Once a slot denied, the set is denied: the later slots are only
        // decided, so they commit nothing that would need a refund.
        let mut mode = call.mode;
        for (_, members) in groups {
            let outcome = match self.invoke(&call.subset(mode, now, members)).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if now.is_none() {
                // The first call; `parse_reply` always reports the instant.
                let at = outcome.at().ok_or_else(malformed)?;
                now = Some(at.as_u64());
            }
            allowed &= outcome.allowed();
            let mut done = SmallVec::new();
            for (&j, d) in members.iter().zip(outcome.decisions()) {
                // A passing acquire wrote every allowed limit.
                if mode == Mode::Acquire && outcome.allowed() && d.allowed {
                    done.push(j);
                }
                decisions[j] = Some(*d);
            }
            committed.push(done);
            if mode == Mode::Acquire && !outcome.allowed() {
                mode = Mode::Decide;
            }
        }
        // Set by the first call whenever any call succeeded.
        if let Some(at) = now {
            if call.mode == Mode::Acquire && (!allowed || failure.is_some()) {
                for done in committed.iter().filter(|d| !d.is_empty()) {
                    self.invoke_raw(&call.subset(Mode::Refund, Some(at), done))
                        .await?;
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let now = now.ok_or_else(malformed)?;
        let decisions = decisions
            .into_iter()
            .collect::<Option<SmallVec<[Decision; 2]>>>()
            .ok_or_else(malformed)?;
        Ok(Outcome::new(decisions, allowed).decided_at(Nanos::new(now)))
    }
}
