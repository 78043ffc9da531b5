//! A full in-memory table takes newcomers in without freeing a limited
//! client: at the bound, a newcomer replaces the key closest to going idle,
//! never one whose last check was denied while another can go, and memory
//! stays flat. The same rules at a small bound run in a fraction of a
//! second; the default bound (one million keys) is checked once.

use std::sync::Arc;
use std::time::Duration;

use tollgate::backend::MemoryBackend;
use tollgate::key::Key;
use tollgate::policy::{LimitSet, Policy};
use tollgate::time::Nanos;
use tollgate::Quota;

/// Instants in seconds from an arbitrary origin.
fn at(secs: u64, nanos: u64) -> Nanos {
    Nanos::from_secs(1_700_000_000 + secs).saturating_add(Nanos::new(nanos))
}

fn set(policy: &Arc<Policy>, key: String) -> LimitSet {
    LimitSet::single(policy.clone(), Key::from(key), 1)
}

/// Puts `count` clients of `policy` at their limit at instant `t`: every
/// unit used, then one request denied.
fn limit_clients(backend: &MemoryBackend, policy: &Arc<Policy>, count: usize, t: Nanos) {
    let burst = policy.quota().burst();
    for i in 0..count {
        let client = set(policy, format!("limited-{i}"));
        for _ in 0..burst {
            assert!(backend.acquire_at(&client, t).allowed(), "client {i}");
        }
        assert!(!backend.acquire_at(&client, t).allowed(), "client {i}");
    }
}

/// `2 × cap` newcomers, one request each, spread over `span`: every one is
/// admitted; then every limited client is still denied, the table holds
/// exactly `cap` keys, and its memory did not move once it was full.
fn newcomers_get_in_and_limited_clients_stay_denied(
    backend: &MemoryBackend,
    newcomer: &Arc<Policy>,
    limited: &Arc<Policy>,
    limited_count: usize,
    start: u64,
    span: Duration,
) {
    let cap = backend.max_keys();
    let bytes_when_full = backend.allocated_bytes();
    let step = Nanos::from(span).as_u64() / (2 * cap as u64);
    for i in 0..2 * cap {
        let t = at(start, step * i as u64);
        let client = set(newcomer, format!("newcomer-{i}"));
        assert!(
            backend.acquire_at(&client, t).allowed(),
            "newcomer {i} was turned away"
        );
        assert!(backend.len() <= cap, "over the bound: {}", backend.len());
    }
    assert_eq!(backend.len(), cap, "the table stays at its bound");
    assert_eq!(
        backend.allocated_bytes(),
        bytes_when_full,
        "memory is flat once the table is full"
    );
    let end = at(start, Nanos::from(span).as_u64());
    for i in 0..limited_count {
        let client = set(limited, format!("limited-{i}"));
        assert!(
            !backend.acquire_at(&client, end).allowed(),
            "limited client {i} was freed"
        );
    }
}

#[test]
fn a_full_table_of_live_keys_lets_every_newcomer_in_and_keeps_limited_clients_denied() {
    const CAP: usize = 20_000;
    let backend = MemoryBackend::builder().max_keys(CAP).build();
    // One policy for all: 5 per hour, so a key stays live for 12 minutes
    // per request and nobody goes idle during the two minutes below.
    let policy = Arc::new(Policy::new("api", Quota::per_hour(5)));
    limit_clients(&backend, &policy, 1_000, at(0, 0));
    // Fill the rest of the table with clients that made one request.
    for i in 0..CAP - 1_000 {
        assert!(backend
            .acquire_at(&set(&policy, format!("filler-{i}")), at(1, 0))
            .allowed());
    }
    assert_eq!(backend.len(), CAP);
    assert_eq!(backend.evictions(), 0, "nothing forgotten below the bound");
    newcomers_get_in_and_limited_clients_stay_denied(
        &backend,
        &policy,
        &policy,
        1_000,
        2,
        Duration::from_secs(120),
    );
    assert_eq!(backend.evictions(), 2 * CAP as u64);
}

#[test]
fn a_table_full_of_ten_per_day_keys_lets_every_newcomer_in_and_keeps_limited_clients_denied() {
    const CAP: usize = 20_000;
    let backend = MemoryBackend::builder().max_keys(CAP).build();
    // A day's quota of 10: one request keeps a key live for 2.4 hours.
    let daily = Arc::new(Policy::new("daily", Quota::per_day(10)));
    for i in 0..CAP {
        assert!(backend
            .acquire_at(&set(&daily, format!("filler-{i}")), at(0, 0))
            .allowed());
    }
    assert_eq!(backend.len(), CAP);
    // The limited clients arrive in a full table, then use their quota.
    limit_clients(&backend, &daily, 1_000, at(1, 0));
    newcomers_get_in_and_limited_clients_stay_denied(
        &backend,
        &daily,
        &daily,
        1_000,
        2,
        Duration::from_secs(600),
    );
}

#[test]
fn a_newcomer_forgets_a_one_request_key_before_a_busier_one() {
    // What a forgotten client gains: under a flood of one-request keys,
    // the flood's keys are the closest to idle and go first, so clients
    // that used more of their quota keep their count.
    const CAP: usize = 2_000;
    let backend = MemoryBackend::builder().max_keys(CAP).build();
    let policy = Arc::new(Policy::new("api", Quota::per_hour(10)));
    for i in 0..CAP / 2 {
        let client = set(&policy, format!("busy-{i}"));
        for _ in 0..5 {
            assert!(backend.acquire_at(&client, at(0, 0)).allowed());
        }
    }
    for i in 0..4 * CAP {
        let t = at(1, i as u64 * 1_000_000);
        assert!(backend
            .acquire_at(&set(&policy, format!("flood-{i}")), t)
            .allowed());
    }
    let kept = (0..CAP / 2)
        .filter(|i| {
            let client = set(&policy, format!("busy-{i}"));
            backend.peek_at(&client, at(10, 0)).decisions()[0].remaining < 10
        })
        .count();
    // Each newcomer samples 32 keys where it will live; a busy key goes
    // only when every sampled key is busy: none did in 16 runs, allow 1 %.
    assert!(
        kept >= CAP / 2 - 10,
        "{kept} of {} busy clients kept",
        CAP / 2
    );
}

#[test]
fn a_million_clients_at_the_default_bound_are_all_admitted() {
    // Below the bound every newcomer gets a seat, however unevenly the
    // shards fill: none lands in a shared bucket or gets a 429.
    let backend = MemoryBackend::new();
    let policy = Arc::new(Policy::new("api", Quota::per_hour(1)));
    let max = backend.max_keys();
    let denied = (0..max as u32)
        .filter(|i| {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let client = LimitSet::single(policy.clone(), Key::from_ip(ip.into()), 1);
            !backend.acquire_at(&client, at(0, u64::from(*i))).allowed()
        })
        .count();
    assert_eq!(denied, 0, "first requests denied at the default bound");
    assert_eq!(backend.len(), max);
    assert_eq!(backend.evictions(), 0);
}
