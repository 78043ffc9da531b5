//! The conformance table against the in-memory backend.

mod conformance;

use conformance::Op;
use tollgate::{
    backend::{MemoryBackend, Outcome},
    policy::LimitSet,
    time::Nanos,
};

fn run(backend: &MemoryBackend, op: Op, set: &LimitSet, now: Nanos) -> Outcome {
    match op {
        Op::Acquire => backend.acquire_at(set, now),
        Op::Refund => backend.refund_at(set, now),
    }
}

#[test]
fn memory_backend_passes_the_conformance_table() {
    let backend = MemoryBackend::new();
    conformance::run_table(|op, set, now| run(&backend, op, set, now));
}

#[test]
fn memory_backend_passes_the_table_with_one_shard_and_a_tiny_bound() {
    // Every scenario's keys (20) in one shard, with room for just them (a
    // key forgotten to make room is not refunded).
    let backend = MemoryBackend::builder().shards(1).max_keys(20).build();
    conformance::run_table(|op, set, now| run(&backend, op, set, now));
}
