//! The conformance table against the in-memory backend.

mod conformance;

use tollgate::MemoryBackend;

#[test]
fn memory_backend_passes_the_conformance_table() {
    let backend = MemoryBackend::new();
    conformance::run_table(|set, now| backend.acquire_at(set, now));
}

#[test]
fn memory_backend_passes_the_table_with_one_shard_and_a_tiny_bound() {
    // Every scenario's keys in one shard, with room for just them.
    let backend = MemoryBackend::builder().shards(1).max_keys(16).build();
    conformance::run_table(|set, now| backend.acquire_at(set, now));
}
